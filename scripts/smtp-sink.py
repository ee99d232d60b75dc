#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for supportd's tests and demo: it stores what it receives.

Every accepted message is written to DIR/new/ as two files with the same stem:
  STEM.json  the envelope: {"mail_from", "rcpt_to": [...], "auth_user", "tls", "received_at"}
  STEM.eml   the message exactly as received (CRLF line ends, dot-unstuffed)
Both are written to DIR/tmp/ first and renamed, the JSON before the EML, so a reader that
lists *.eml never sees a half-written message. Stems sort in arrival order.

Rejections and other transaction events are appended, one JSON object per line, to
DIR/events.jsonl.

Behaviour is re-read from --control-file at every SMTP command of a transaction, so a test
switches it at run time by rewriting that file (write a temp file and rename it). Contents,
one word and an optional count:
  accept                  (also: missing or empty file) take every message
  tempfail                451 for every RCPT TO
  tempfail-data           451 after DATA (the message is received, then refused)
  permfail                550 for every RCPT TO
  permfail-data           554 after DATA
  MODE N                  refuse only the next N commands (RCPT or DATA, as per MODE; one
                          per transaction for single-recipient mail), then accept again;
                          the file is rewritten with the remaining count.

Options: --auth USER:PASS requires AUTH PLAIN/LOGIN with these credentials (allowed without
TLS: loopback tests); --tls-cert/--tls-key offer STARTTLS (add --require-starttls to refuse
mail before it), or, with --implicit-tls, TLS from the first byte (SMTPS, as on port 465). --ready-file is created once the server accepts connections.
Stops cleanly on SIGTERM or SIGINT, and by itself when its parent process goes away.
"""

import argparse
import json
import os
import signal
import ssl
import sys
import threading
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

MODES = {
    "accept": None,
    "tempfail": ("rcpt", "451 4.3.0 Temporary failure (smtp-sink: tempfail)"),
    "tempfail-data": ("data", "451 4.3.0 Temporary failure (smtp-sink: tempfail-data)"),
    "permfail": ("rcpt", "550 5.1.1 Mailbox unavailable (smtp-sink: permfail)"),
    "permfail-data": ("data", "554 5.6.0 Message refused (smtp-sink: permfail-data)"),
}


def log(msg):
    print(f"smtp-sink[{os.getpid()}] {msg}", file=sys.stderr, flush=True)


class Sink:
    def __init__(self, directory, control_file):
        self.dir = directory
        self.control_file = control_file
        self.lock = threading.Lock()
        self.seq = 0
        for sub in ("tmp", "new"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)

    # --- behaviour control -------------------------------------------------------------
    def _read_control(self):
        if not self.control_file:
            return "accept", None
        try:
            with open(self.control_file, encoding="utf-8") as f:
                words = f.read().split()
        except FileNotFoundError:
            return "accept", None
        if not words:
            return "accept", None
        mode = words[0]
        if mode not in MODES:
            log(f"unknown mode {mode!r} in {self.control_file}; accepting")
            return "accept", None
        count = None
        if len(words) > 1:
            try:
                count = int(words[1])
            except ValueError:
                log(f"bad count {words[1]!r} in {self.control_file}; ignoring it")
        return mode, count

    def _consume(self, mode, count):
        """One transaction failed under a counted mode: decrement the count in the file."""
        if count is None:
            return
        left = count - 1
        text = f"{mode} {left}\n" if left > 0 else "accept\n"
        tmp = f"{self.control_file}.sink-tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, self.control_file)

    def _failure_at(self, stage):
        """The reply to give at this stage, or None. Counted modes are consumed here."""
        with self.lock:
            mode, count = self._read_control()
            rule = MODES[mode]
            if rule is None or rule[0] != stage:
                return None
            if count is not None and count <= 0:
                return None
            self._consume(mode, count)
            return rule[1]

    def _event(self, **fields):
        fields["at"] = time.time()
        with self.lock, open(os.path.join(self.dir, "events.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(fields) + "\n")

    # --- aiosmtpd hooks ----------------------------------------------------------------
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self._failure_at("rcpt")
        if reply is not None:
            log(f"RCPT {address}: {reply}")
            self._event(event="rejected", stage="rcpt", reply=reply,
                        mail_from=envelope.mail_from, rcpt=address)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self._failure_at("data")
        if reply is not None:
            log(f"DATA from {envelope.mail_from}: {reply}")
            self._event(event="rejected", stage="data", reply=reply,
                        mail_from=envelope.mail_from, rcpt_to=list(envelope.rcpt_tos))
            return reply
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        auth_user = None
        if session.auth_data is not None:
            data = session.auth_data
            auth_user = data.login.decode() if isinstance(data, LoginPassword) else str(data)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "auth_user": auth_user,
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "received_at": time.time(),
        }
        with self.lock:
            self.seq += 1
            stem = f"{time.time_ns():020d}-{os.getpid()}-{self.seq:06d}"
        tmp_json = os.path.join(self.dir, "tmp", stem + ".json")
        tmp_eml = os.path.join(self.dir, "tmp", stem + ".eml")
        with open(tmp_json, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        with open(tmp_eml, "wb") as f:
            f.write(raw)
        os.replace(tmp_json, os.path.join(self.dir, "new", stem + ".json"))
        os.replace(tmp_eml, os.path.join(self.dir, "new", stem + ".eml"))
        log(f"stored {stem}: from {envelope.mail_from} to {envelope.rcpt_tos} ({len(raw)} bytes)")
        self._event(event="stored", stem=stem, mail_from=envelope.mail_from,
                    rcpt_to=list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        if not ok:
            log(f"AUTH {mechanism} failed")
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: aiosmtpd sends the 535 itself (handled=True would send nothing).
        return AuthResult(success=False, handled=False)

    return authenticator


def main():
    # aiosmtpd warns about AUTH without TLS; that is the point of a loopback test server.
    warnings.filterwarnings("ignore", category=UserWarning, module="aiosmtpd")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True, help="where messages are stored (tmp/, new/)")
    p.add_argument("--control-file", help="behaviour switch, re-read per command")
    p.add_argument("--auth", metavar="USER:PASS", help="require AUTH PLAIN/LOGIN")
    p.add_argument("--tls-cert", help="PEM certificate chain: offer STARTTLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--require-starttls", action="store_true", help="refuse mail before STARTTLS")
    p.add_argument("--implicit-tls", action="store_true",
                   help="with --tls-cert: TLS from the first byte (SMTPS) instead of STARTTLS")
    p.add_argument("--ready-file", help="created once the server accepts connections")
    args = p.parse_args()

    kwargs = {"server_hostname": "smtp-sink.test", "ident": "supportd smtp-sink"}
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep:
            p.error("--auth needs USER:PASS")
        kwargs.update(
            auth_required=True,
            auth_require_tls=False,
            authenticator=make_authenticator(user, password),
        )
    if args.tls_cert:
        if not args.tls_key:
            p.error("--tls-cert needs --tls-key")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.implicit_tls:
            kwargs.update(ssl_context=ctx)
        else:
            kwargs.update(tls_context=ctx, require_starttls=args.require_starttls)

    sink = Sink(args.dir, args.control_file)
    controller = Controller(sink, hostname=args.host, port=args.port, **kwargs)
    controller.start()
    log(f"listening on {args.host}:{args.port} (auth={'yes' if args.auth else 'no'}, "
        f"starttls={'yes' if args.tls_cert and not args.implicit_tls else 'no'}, "
        f"implicit_tls={'yes' if args.implicit_tls else 'no'}), storing in {args.dir}")
    if args.ready_file:
        with open(args.ready_file, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # A test process killed without clean-up must not leave servers behind: exit with it.
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:
            log("parent process gone")
            break
    controller.stop()
    log("stopped")


if __name__ == "__main__":
    main()
