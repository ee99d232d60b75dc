"""Labelled triage sets for scripts/triage-figures and scripts/triage-loso: read a set's
labels.tsv (file, category, urgency[, language]), classify its mail with a supportd binary
(`supportd classify [--weights FILE] FILE...`, one JSON line per file) and count what it got
right."""
import json
import os
import subprocess
import sys


def labels(d):
    """The rows of `d`/labels.tsv, header and blank lines left out."""
    out = []
    with open(os.path.join(d, "labels.tsv"), encoding="utf-8") as f:
        for n, line in enumerate(f):
            cols = [c.strip() for c in line.rstrip("\n").split("\t")]
            if line.strip() and not (n == 0 and cols[0] == "file"):
                out.append(cols)
    return out


def classify(bin, d, rows, env, weights=None):
    """File name -> supportd's JSON answer for the mails of `rows` in `d`."""
    cmd = [bin, "classify", *([] if weights is None else ["--weights", weights])]
    cmd += [os.path.join(d, r[0]) for r in rows]
    out = subprocess.run(cmd, capture_output=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{d}: supportd classify failed: {out.stderr.decode(errors='replace')}")
    got = {}
    for line in out.stdout.decode().splitlines():
        if line.strip():
            v = json.loads(line)
            got[os.path.basename(v["file"])] = v
    return got


def count(rows, got):
    """Counts against the labels: n, category and urgency right, level 1-2 mails (hi) and
    those answered 1-2 (hok), level 3-4 mails (lo) and those raised to 1-2 (up), labelled
    languages (ln) and those right (lok); and the misses, as lines."""
    f = dict(n=0, cat=0, urg=0, hi=0, hok=0, lo=0, up=0, ln=0, lok=0)
    misses = []
    for r in rows:
        v, u = got[r[0]], int(r[2])
        f["n"] += 1
        f["cat"] += v["category"] == r[1]
        f["urg"] += v["urgency"] == u
        if u <= 2:
            f["hi"] += 1
            f["hok"] += v["urgency"] <= 2
        else:
            f["lo"] += 1
            f["up"] += v["urgency"] <= 2
        if len(r) > 3 and r[3]:
            f["ln"] += 1
            f["lok"] += v["language"] == r[3]
        if v["category"] != r[1] or v["urgency"] != u:
            misses.append(f"  {r[0]}: expected {r[1]}/{u}, got {v['category']}/{v['urgency']}")
    return f, misses


def pct(a, b):
    return f"{100 * a / b:.1f} %" if b else "-"


def line(f):
    """The four figures of `count`'s result, as one line."""
    return (f"category {pct(f['cat'], f['n'])}, urgency exact {pct(f['urg'], f['n'])}, "
            f"level 1-2 recall {pct(f['hok'], f['hi'])} ({f['hok']}/{f['hi']}), "
            f"level 3-4 raised {pct(f['up'], f['lo'])} ({f['up']}/{f['lo']})")
