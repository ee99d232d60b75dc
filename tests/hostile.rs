//! Hostile and odd input through the built binary: nothing panics, every message gets a valid
//! action and exit 0, and nothing is lost (a ticket message, an ignored record, or a verbatim
//! quarantine entry). Plus a batch of real-world messages from CPython's email test suite.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use sqlx::{Connection, Row};

const FROM: &str = "From: Nora Quint <nquint@harbor-clinic.test>\r\n";
const TO: &str = "To: support@vendor.example\r\n";

/// Ingests `raw` and checks that it is accounted for somewhere; returns the outcome.
fn accounted(env: &Env, raw: &[u8], what: &str) -> Value {
    let quarantined_before = env.quarantine().len();
    let o = env.ingest(raw);
    match o["action"].as_str().unwrap_or_default() {
        "quarantined" => {
            assert!(
                o["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{what}: quarantine needs a reason: {o}"
            );
            assert_eq!(
                env.quarantine().len(),
                quarantined_before + 1,
                "{what}: quarantined but not listed"
            );
        }
        "created" | "replied" => {
            let n = o["ticket"].as_i64().expect("ticket");
            let t = env.ticket(n);
            let id = o["message_id"].as_str().expect("message id");
            // PostgreSQL's text cannot hold NUL: it stores U+FFFD (README, PostgreSQL).
            let stored = if env.pg.is_some() {
                id.replace('\0', "\u{FFFD}")
            } else {
                id.to_string()
            };
            let id = stored.as_str();
            assert!(
                t["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["message_id"] == id)),
                "{what}: message {id} not on ticket #{n}"
            );
        }
        "ignored" | "duplicate" | "rejected" => {}
        other => panic!("{what}: unexpected action {other}: {o}"),
    }
    o
}

/// A tiny deterministic generator, so the garbage is the same on every run.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn empty_input_is_quarantined() {
    let env = Env::new();
    let o = env.ingest_stdin(b"");
    assert_eq!(o["action"], "quarantined", "{o}");
    assert!(o["reason"].as_str().unwrap_or_default().contains("empty"));
    let q = env.quarantine();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["size"], 0);
    assert_eq!(q[0]["source"], "stdin");
    // Whitespace only is no message either.
    assert_eq!(
        accounted(&env, b"\r\n \r\n\t", "blank")["action"],
        "quarantined"
    );
}

#[test]
fn binary_garbage_never_crashes() {
    let env = Env::new();
    for (i, len) in [1usize, 17, 4096, 65_536].into_iter().enumerate() {
        let raw = garbage(len, 0x9E37_79B9_7F4A_7C15 + i as u64);
        accounted(&env, &raw, &format!("{len} random bytes"));
    }
    // Garbage after a valid header section still makes a ticket.
    let mut raw = format!("{FROM}{TO}Subject: binary body\r\n\r\n").into_bytes();
    raw.extend(garbage(10_000, 42));
    let o = accounted(&env, &raw, "binary body");
    created(&o);
}

#[test]
fn nul_bytes_in_headers_and_body() {
    let env = Env::new();
    let raw = b"From: Nora\0Quint <nquint@harbor-clinic.test>\r\nTo: support@vendor.example\r\nSubject: pager\0 alerts \0missing\r\nMessage-ID: <nul\0bytes@harbor-clinic.test>\r\n\r\nThe pager\0 app drops alerts.\0\0\r\nSecond line.\r\n";
    let o = accounted(&env, raw, "NUL bytes");
    if o["action"] == "created" {
        let t = env.ticket(o["ticket"].as_i64().expect("n"));
        let body = t["messages"][0]["body"].as_str().unwrap_or_default();
        assert!(body.contains("Second line."), "body cut at NUL: {body:?}");
        // Ack rendering survived the NULs too.
        assert_eq!(env.outbox().len(), 1);
    }
    // Re-ingest is recognised, NULs and all.
    assert_eq!(env.ingest(raw)["action"], "duplicate");
}

#[test]
fn two_megabyte_header_lines() {
    let env = Env::new();
    let long = "x".repeat(2 * 1024 * 1024);
    let filler = format!("{FROM}{TO}X-Filler: {long}\r\nSubject: huge header\r\nMessage-ID: <huge-1@harbor-clinic.test>\r\n\r\nbody\r\n");
    let o = accounted(&env, filler.as_bytes(), "2 MB X-Filler");
    assert_eq!(o["action"], "created", "{o}");
    let subject = format!(
        "{FROM}{TO}Subject: {long}\r\nMessage-ID: <huge-2@harbor-clinic.test>\r\n\r\nbody\r\n"
    );
    accounted(&env, subject.as_bytes(), "2 MB Subject");
    let folded: String = (0..40_000).map(|i| format!(" <r{i}@x.test>\r\n")).collect();
    let refs = format!("{FROM}{TO}Subject: refs\r\nReferences:{folded}Message-ID: <huge-3@harbor-clinic.test>\r\n\r\nbody\r\n");
    accounted(&env, refs.as_bytes(), "40k References");
}

#[test]
fn thousands_of_nested_multiparts() {
    let env = Env::new();
    let depth = 3000;
    let mut raw = format!("{FROM}{TO}Subject: nested\r\nMessage-ID: <nested@harbor-clinic.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
    for i in 1..depth {
        raw.push_str(&format!(
            "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
            i - 1
        ));
    }
    raw.push_str(&format!(
        "--b{}\r\nContent-Type: text/plain\r\n\r\ndeep inside\r\n",
        depth - 1
    ));
    for i in (0..depth).rev() {
        raw.push_str(&format!("--b{i}--\r\n"));
    }
    accounted(&env, raw.as_bytes(), "3000 nested multiparts");
    // Also 3000 nested message/rfc822 parts.
    let mut raw = String::new();
    for _ in 0..depth {
        raw.push_str(&format!("{FROM}Content-Type: message/rfc822\r\n\r\n"));
    }
    raw.push_str("Subject: innermost\r\n\r\nhi\r\n");
    accounted(&env, raw.as_bytes(), "3000 nested message/rfc822");
}

#[test]
fn bad_base64_attachment() {
    let env = Env::new();
    let raw = crlf(&format!(
        "{FROM}{TO}Subject: lab interface log attached\nMessage-ID: <b64@harbor-clinic.test>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n\
         --zz\nContent-Type: text/plain\n\nLog attached.\n\
         --zz\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; filename=\"interface.log\"\n\n\
         !!!!not*base64~~~~\n====\nAAA\n--zz--\n"
    ));
    let o = accounted(&env, &raw, "bad base64");
    let t = env.ticket(created(&o));
    assert!(t["messages"][0]["body"]
        .as_str()
        .unwrap_or_default()
        .contains("Log attached."));
    let atts = t["messages"][0]["attachments"].as_array().expect("atts");
    assert!(
        atts.iter().any(|a| a["filename"] == "interface.log"),
        "the broken attachment is kept: {atts:?}"
    );
}

#[test]
fn unknown_charset() {
    let env = Env::new();
    let raw = crlf(&format!(
        "{FROM}{TO}Subject: =?x-klingon-7?Q?tlhIngan_Hol?= pager\nMessage-ID: <charset@harbor-clinic.test>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=\"x-klingon-7\"\n\n\
         Pages to the night nurse are not arriving.\n"
    ));
    let o = accounted(&env, &raw, "unknown charset");
    let t = env.ticket(created(&o));
    assert!(t["messages"][0]["body"]
        .as_str()
        .unwrap_or_default()
        .contains("Pages to the night nurse are not arriving."));
    assert!(t["subject"].as_str().unwrap_or_default().contains("pager"));
}

#[test]
fn missing_from_is_quarantined_with_a_reason() {
    let env = Env::new();
    let raw = crlf(&format!(
        "{TO}Subject: who am I\nMessage-ID: <nofrom@harbor-clinic.test>\n\nNo sender here.\n"
    ));
    let o = accounted(&env, &raw, "missing From");
    assert_eq!(o["action"], "quarantined", "{o}");
    let q = env.quarantine();
    assert_eq!(q.len(), 1);
    let reason = q[0]["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("sender") || reason.contains("from"),
        "{reason}"
    );
    assert_eq!(q[0]["size"], raw.len());
    assert_eq!(env.tickets().len(), 0);
    assert_eq!(env.outbox().len(), 0);
    // The same bytes again: still one entry, still exit 0.
    assert_eq!(env.ingest(&raw)["action"], "quarantined");
    assert_eq!(env.quarantine().len(), 1);
}

#[tokio::test]
async fn oversized_message_is_quarantined_verbatim() {
    let env = Env::with_config("[limits]\nmax_message_bytes = 4096\n");
    let body = "The attached export is large. ".repeat(400);
    let raw = crlf(&format!(
        "{FROM}{TO}Subject: big export\nMessage-ID: <big@harbor-clinic.test>\n\n{body}\n"
    ));
    assert!(raw.len() > 4096);
    let o = accounted(&env, &raw, "oversized");
    assert_eq!(o["action"], "quarantined", "{o}");
    assert!(o["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("max_message_bytes"));
    let q = env.quarantine();
    assert_eq!(q[0]["size"], raw.len());
    assert_eq!(env.tickets().len(), 0);

    if env.pg.is_some() {
        // The bytes as stored are checked on SQLite; on PostgreSQL by `db copy`'s checksums
        // (tests/backends.rs).
        return;
    }
    let mut db = sqlx::SqliteConnection::connect(&env.db_url)
        .await
        .expect("connect");
    let row = sqlx::query("SELECT raw FROM quarantine WHERE id = $1")
        .bind(q[0]["id"].as_i64().expect("id"))
        .fetch_one(&mut db)
        .await
        .expect("row");
    let stored: Vec<u8> = row.try_get("raw").expect("raw");
    assert!(stored == raw, "quarantine must keep the bytes verbatim");

    // Just under the limit is processed normally.
    let small = crlf(&format!(
        "{FROM}{TO}Subject: small\nMessage-ID: <small@harbor-clinic.test>\n\nfits\n"
    ));
    created(&env.ingest(&small));
}

#[test]
fn five_hundred_recipients() {
    let env = Env::new();
    let to: Vec<String> = (0..500)
        .map(|i| format!("\"Staff {i}\" <staff{i}@harbor-clinic.test>"))
        .collect();
    let raw = crlf(&format!(
        "{FROM}To: support@vendor.example,\n {}\nCc: {}\nSubject: all-staff: new paging numbers\n\
         Message-ID: <many@harbor-clinic.test>\n\nPlease update the paging numbers.\n",
        to[..250].join(",\n "),
        to[250..].join(",\n ")
    ));
    let o = accounted(&env, &raw, "500 recipients");
    let n = created(&o);
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        outbox[0]["to"], "nquint@harbor-clinic.test",
        "the ack goes to the sender only"
    );
    let raw_ack = env.outbox_raw(outbox[0]["id"].as_i64().expect("id"));
    assert!(
        !raw_ack.contains("staff1@"),
        "no recipient copied into the ack"
    );
    env.ticket(n);
}

#[test]
fn header_injection_in_subject_and_name_stays_in_its_header() {
    let env = Env::new();
    // CR/LF hidden in RFC 2047 encoded words (Q and B) in the subject and the display name.
    // base64 of "Nora\r\nBcc: victim-b@evil.test".
    let b64 = "Tm9yYQ0KQmNjOiB2aWN0aW0tYkBldmlsLnRlc3Q=";
    let raw = crlf(&format!(
        "From: =?UTF-8?B?{b64}?= <nquint@harbor-clinic.test>\n{TO}\
         Subject: =?UTF-8?Q?Pager_down=0D=0ABcc:_victim-q@evil.test=0D=0AX-Injected:_yes?=\n\
         Message-ID: <inject@harbor-clinic.test>\n\nPagers are down.\n"
    ));
    let o = accounted(&env, &raw, "header injection");
    let n = created(&o);
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["to"], "nquint@harbor-clinic.test");
    let ack = env.outbox_raw(outbox[0]["id"].as_i64().expect("id"));
    let names: Vec<String> = headers(&ack)
        .into_iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    assert!(!names.contains(&"bcc".to_string()), "injected Bcc:\n{ack}");
    assert!(
        !names.contains(&"x-injected".to_string()),
        "injected header:\n{ack}"
    );
    // Nor a line of the body that looks like one: names and subjects are single lines.
    let body = text_body(ack.as_bytes());
    assert!(
        !header_section(&ack)
            .lines()
            .chain(body.lines())
            .any(|l| l.starts_with("Bcc:") || l.starts_with("X-Injected:")),
        "{ack}\n{body}"
    );
    assert_eq!(names.iter().filter(|n| *n == "subject").count(), 1, "{ack}");
    for line in ack.split("\r\n") {
        assert!(
            !line.contains('\r') && !line.contains('\n'),
            "bare CR/LF in {line:?}"
        );
    }
    assert!(header(&ack, "Subject")
        .expect("Subject")
        .contains(&format!("[#{n}]")));
}

#[test]
fn real_world_messages_from_cpython() {
    let dir = fixture("realworld");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("realworld fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the CPython messages in {dir:?}"
    );
    let env = Env::new();
    let mut actions = std::collections::BTreeMap::<String, usize>::new();
    // All of them in one run, as an MTA queue flush would.
    let mut cmd = env.cmd();
    cmd.arg("ingest").args(&files);
    let out = cmd.output().expect("run");
    assert_success(&out, "ingest realworld/*");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files.len(), "one outcome per file:\n{stdout}");
    let mut seen_ids = Vec::new();
    for (file, line) in files.iter().zip(&lines) {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        check_outcome(&v);
        let action = v["action"].as_str().unwrap_or_default().to_string();
        // Some of CPython's samples share a Message-ID; only those may be duplicates.
        assert_eq!(
            action == "duplicate",
            seen_ids.contains(&v["message_id"]),
            "{}: {v}",
            file.display()
        );
        if !v["message_id"].is_null() {
            seen_ids.push(v["message_id"].clone());
        }
        *actions.entry(action).or_default() += 1;
    }
    eprintln!("real-world actions: {actions:?}");
    assert!(
        actions.get("created").copied().unwrap_or(0) >= files.len() / 2,
        "most real-world mail should make tickets: {actions:?}"
    );
    // And each again one by one: re-delivery changes nothing.
    let tickets = env.tickets().len();
    for f in &files {
        let again = env.ingest_file(f);
        assert!(
            ["duplicate", "quarantined"].contains(&again["action"].as_str().unwrap_or_default()),
            "{}: {again}",
            f.display()
        );
    }
    assert_eq!(env.tickets().len(), tickets);
}
