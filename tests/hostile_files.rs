//! Issue 9, findings 8 and 11: what supportd leaves in files and on terminals. The IMAP
//! password stays out of the log at any log level; the database files are private whatever
//! the umask; `tickets show` cannot be made to drive the terminal; `ingest -` holds a bounded
//! amount of standard input; attachment names lose bidi overrides and are cut to 255 bytes.

// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
mod support;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sqlx::{Connection, Row};
use support::daemon::{customer_mail, Daemon, Setup, PASS, USER};
use support::{Dovecot, DovecotOptions, SmtpSink};

/// Finding 8: `SUPPORTD_LOG=trace` turns on async-imap's protocol trace, whose LOGIN line
/// carried the password verbatim. The daemon logs in, takes a mail, and stops: every other
/// trace event is there, the password is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imap_password_is_not_logged_at_trace_level() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    for (format, directives) in [
        ("text", "trace"),
        // A target directive and a span directive, each naming async-imap's level outright.
        (
            "json",
            "trace,async_imap=trace,async_imap::imap_stream=trace",
        ),
        ("text", "[mailbox]=trace,async_imap=trace"),
    ] {
        let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
        let before = sink.count();
        let n = before + 1;
        dovecot
            .append(
                USER,
                "INBOX",
                &customer_mail(n, &format!("trace{n}@clinic.example"), "pager login error"),
            )
            .await;
        d.start_with(&["--log-format", format], &[("SUPPORTD_LOG", directives)]);
        sink.wait_for(n, Duration::from_secs(30));
        d.terminate();
        let log = d.log();
        assert!(
            log.contains("TRACE") || log.contains("\"level\":\"TRACE\""),
            "{directives}: trace level was on (otherwise nothing was tested)\n{log}"
        );
        assert!(log.contains("connected"), "{directives}: logged in\n{log}");
        assert!(
            !log.contains(PASS),
            "{directives}: the IMAP password is in the log:\n{}",
            log.lines()
                .filter(|l| l.contains(PASS))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            !log.contains("async_imap"),
            "{directives}: async-imap's protocol trace is on"
        );
    }
}

/// Finding 8, XOAUTH2: the bearer token goes out in AUTHENTICATE, which async-imap's trace
/// printed too (base64, as easy to read as plain text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xoauth2_token_is_not_logged_at_trace_level() {
    const TOKEN: &str = "ya29.secret-bearer-token";
    let dovecot = Dovecot::start_with(
        &[(USER, PASS)],
        DovecotOptions {
            oauth: true,
            ..DovecotOptions::default()
        },
    );
    dovecot.set_oauth_tokens(&[(TOKEN, USER)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let text = std::fs::read_to_string(&d.config).expect("config");
    let start = text.find("password_file = ").expect("password_file line");
    let end = start + text[start..].find('\n').expect("end of line");
    let text = format!(
        "{}oauth_token_command = \"printf '%s\\\\n' {TOKEN}\"{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&d.config, text).expect("config");
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(1, "oauth-trace@clinic.example", "pager login error"),
        )
        .await;
    d.start_with(&[], &[("SUPPORTD_LOG", "trace")]);
    sink.wait_for(1, Duration::from_secs(30));
    d.terminate();
    assert_eq!(dovecot.oauth_requests(), vec![TOKEN.to_string()]);
    let log = d.log();
    assert!(log.contains("TRACE"), "trace level was on\n{log}");
    assert!(!log.contains(TOKEN), "the token is in the log");
    assert!(
        !log.contains("async_imap"),
        "async-imap's protocol trace is on"
    );
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Finding 11: the database holds every customer's mail. Created under `umask 000`, it and
/// its WAL and shared-memory files are still 0600.
#[test]
fn database_files_are_private_whatever_the_umask() {
    // With an agent in the config, `ingest -` writes (the agent's user row) before it waits
    // for its mail on stdin, so a connection holds the WAL and shared-memory files open
    // meanwhile (SQLite deletes them with the last connection that has them open).
    let env = Env::with_config(
        "[policy]\nauthserv_id = \"mx.vendor.example\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n",
    );
    let db = env.dir.path().join("supportd.db");
    assert!(!db.exists());
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_supportd"))
        .arg("--config")
        .arg(&env.config)
        .arg("ingest")
        .arg("-")
        .env_remove("SUPPORTD_DATABASE_URL")
        .env_remove("SUPPORTD_CONFIG")
        .current_dir(env.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn supportd");
    let files =
        ["supportd.db", "supportd.db-wal", "supportd.db-shm"].map(|f| env.dir.path().join(f));
    // The migration's own connection makes and drops the WAL once at start-up: read the
    // modes once all three files stay.
    let start = Instant::now();
    let modes = loop {
        let modes: Option<Vec<u32>> = files
            .iter()
            .map(|f| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| m.permissions().mode() & 0o777)
            })
            .collect();
        if let Some(modes) = modes {
            break modes;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the database files never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // The umask really was 000: a file the same shell makes is world-writable.
    let probe = env.dir.path().join("probe");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; : > \"$0\"")
        .arg(&probe)
        .status()
        .expect("sh");
    assert!(status.success());
    assert_eq!(format!("{:o}", mode(&probe)), "666");
    for (f, m) in files.iter().zip(modes) {
        assert_eq!(format!("{m:o}"), "600", "{}", f.display());
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&crlf(
            "From: a@clinic.example\nSubject: hello\nMessage-ID: <umask@clinic.example>\n\nhi\n",
        ))
        .expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert_success(&out, "supportd ingest -");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"created\""));
    assert_eq!(format!("{:o}", mode(&db)), "600");
}

/// Finding 11: mail-borne text in `tickets show` is shown, not obeyed. ESC and C1 sequences
/// (colour, clear screen, OSC 8 hyperlinks, OSC 0 window titles), a bare CR that would
/// overwrite the line, bidi overrides in the subject and the sender's name, and a
/// control-laden attachment name. Line breaks in the body stay readable, and the JSON output
/// keeps the exact text while printing no raw control character either.
#[test]
fn tickets_show_escapes_control_and_bidi_characters() {
    let env = Env::new();
    let raw = crlf(
        "From: =?UTF-8?B?TWFs4oCubG9yeQ==?= <mallory@clinic.example>\n\
         To: support@vendor.example\n\
         Subject: =?UTF-8?B?UGFnZXIg4oCuZGVzcmV2ZXI=?=\n\
         Message-ID: <ansi@clinic.example>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b\"\n\
         \n\
         --b\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         First line \u{1b}[31mred\u{1b}[0m\n\
         \u{1b}]8;;http://evil.example/\u{7}click here\u{1b}]8;;\u{7}\n\
         \u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}1;1H\n\
         Approved by support\rDenied\n\
         \tindented last line\n\
         --b\n\
         Content-Type: application/pdf\n\
         Content-Disposition: attachment; filename*=UTF-8''scan%1B%5B8m%E2%80%AEfdp.exe\n\
         Content-Transfer-Encoding: base64\n\
         \n\
         JVBERi0xLjQK\n\
         --b--\n",
    );
    let number = created(&env.ingest(&raw));
    let out = env.ok(&["tickets", "show", &number.to_string()]);
    let shown: Vec<&str> = out.lines().collect();
    for c in out.chars() {
        let raw_control = c.is_control() && c != '\n' && c != '\t';
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(
            !raw_control && !bidi,
            "raw U+{:04X} in `tickets show`:\n{out}",
            u32::from(c)
        );
    }
    // What was there is visible, escaped.
    assert!(out.contains("Pager \\u{202e}desrever"), "{out}");
    assert!(out.contains("Mal\\u{202e}lory"), "{out}");
    assert!(out.contains("First line \\x1b[31mred\\x1b[0m"), "{out}");
    assert!(
        out.contains("\\x1b]8;;http://evil.example/\\x07click here"),
        "{out}"
    );
    assert!(out.contains("\\x1b]0;owned\\x07\\x1b[2J\\x9b1;1H"), "{out}");
    assert!(out.contains("Approved by support\\x0dDenied"), "{out}");
    // Line breaks and the tab of the body are kept: each body line is a line of output.
    let first = shown
        .iter()
        .position(|l| l.starts_with("First line"))
        .expect("body shown");
    assert!(shown[first + 1].starts_with("\\x1b]8;;"), "{out}");
    assert_eq!(shown[first + 4], "\tindented last line", "{out}");
    // The attachment's name lost its controls and the bidi override when it was stored.
    assert!(
        out.contains("[attachment] scan[8mfdp.exe (application/pdf"),
        "{out}"
    );

    // JSON: the same text exactly (a consumer decodes what the mail said), no raw controls.
    let json_out = env.ok(&["tickets", "show", &number.to_string(), "--json"]);
    assert!(
        !json_out
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "raw control characters in the JSON output:\n{json_out}"
    );
    let t: serde_json::Value = serde_json::from_str(&json_out).expect("JSON");
    assert_eq!(t["subject"], "Pager \u{202e}desrever");
    let body = t["messages"][0]["body"].as_str().expect("body");
    assert!(
        body.contains("\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}1;1H"),
        "{body:?}"
    );
    assert_eq!(
        t["messages"][0]["attachments"][0]["filename"],
        "scan[8mfdp.exe"
    );
}

/// Finding 11: `ingest -` reads at most `limits.max_message_bytes` plus a 64 KiB margin into
/// memory. A larger mail is quarantined with the reason and only its header section is
/// stored; a mail within the margin is quarantined whole (the pipeline's one size rule); a
/// mail under the limit is processed.
#[tokio::test]
async fn ingest_from_stdin_keeps_only_the_header_of_an_oversized_mail() {
    let env = Env::with_config("[limits]\nmax_message_bytes = 4096\n");
    let header = crlf(
        "From: Nora Quint <nquint@harbor-clinic.test>\n\
         To: support@vendor.example\n\
         Subject: the whole archive\n\
         Message-ID: <huge@harbor-clinic.test>\n\
         \n",
    );
    let mut huge = header.clone();
    let line = b"The attached export is large and goes on and on and on and on.\r\n";
    while huge.len() < 3 * 1024 * 1024 {
        huge.extend_from_slice(line);
    }
    let o = env.ingest_stdin(&huge);
    assert_eq!(o["action"], "quarantined", "{o}");
    let reason = o["reason"].as_str().expect("reason");
    assert!(
        reason.contains(&format!(
            "message of {} bytes exceeds limits.max_message_bytes = 4096",
            huge.len()
        )),
        "{reason}"
    );
    assert!(reason.contains("only its header was kept"), "{reason}");
    let q = env.quarantine();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["source"], "stdin");
    assert_eq!(q[0]["size"], header.len(), "only the header is stored");
    let mut db = sqlx::SqliteConnection::connect(&env.db_url)
        .await
        .expect("connect");
    let stored: Vec<u8> = sqlx::query("SELECT raw FROM quarantine")
        .fetch_one(&mut db)
        .await
        .expect("row")
        .try_get("raw")
        .expect("raw");
    assert_eq!(stored, header);
    assert_eq!(env.tickets().len(), 0);

    // Over the limit but within the margin: in memory already, quarantined verbatim.
    let mut over = crlf(
        "From: Nora Quint <nquint@harbor-clinic.test>\n\
         Subject: a bit too big\n\
         Message-ID: <over@harbor-clinic.test>\n\n",
    );
    while over.len() < 10_000 {
        over.extend_from_slice(line);
    }
    let o = env.ingest_stdin(&over);
    assert_eq!(o["action"], "quarantined", "{o}");
    let q = env.quarantine();
    assert_eq!(q.len(), 2);
    assert!(q.iter().any(|e| e["size"] == over.len()), "{q:?}");

    // Under the limit: a ticket.
    let small = crlf(
        "From: Nora Quint <nquint@harbor-clinic.test>\n\
         Subject: small\n\
         Message-ID: <small@harbor-clinic.test>\n\nfits\n",
    );
    created(&env.ingest_stdin(&small));
}

/// Finding 11: attachment names lose bidi controls and other invisible format characters,
/// and are cut to 255 bytes on a character boundary, keeping their extension.
#[test]
fn attachment_names_lose_bidi_controls_and_are_capped() {
    let env = Env::new();
    let long = format!("{}.pdf", "%C3%A9".repeat(300));
    let raw = crlf(&format!(
        "From: Nora Quint <nquint@harbor-clinic.test>\n\
         To: support@vendor.example\n\
         Subject: two files\n\
         Message-ID: <names@harbor-clinic.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b\"\n\
         \n\
         --b\n\
         Content-Type: text/plain\n\
         \n\
         See the attached.\n\
         --b\n\
         Content-Type: application/octet-stream\n\
         Content-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEfdp%E2%81%A6%E2%80%8B.exe\n\
         \n\
         MZ\n\
         --b\n\
         Content-Type: application/pdf\n\
         Content-Disposition: attachment; filename*=UTF-8''{long}\n\
         \n\
         %PDF\n\
         --b--\n"
    ));
    let number = created(&env.ingest(&raw));
    let t = env.ticket(number);
    let names: Vec<String> = t["messages"][0]["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .map(|a| a["filename"].as_str().expect("filename").to_string())
        .collect();
    assert_eq!(names.len(), 2, "{t}");
    assert_eq!(names[0], "invoicefdp.exe");
    assert_eq!(names[1], format!("{}.pdf", "é".repeat(125)));
    assert!(names[1].len() <= 255);
}
