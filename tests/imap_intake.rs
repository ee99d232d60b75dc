//! IMAP intake against a real Dovecot, the parts of the mailbox protocol that vary between
//! servers and deployments: XOAUTH2 (token file, token command, a refreshed token after a
//! refusal), certificate verification, servers without IDLE, MOVE or UIDPLUS, a UIDVALIDITY
//! change, and the systemd watchdog through a long quiet IDLE.

// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::daemon::{customer_mail, Daemon, Setup, PASS, USER};
use support::{Dovecot, DovecotOptions, SmtpSink};

/// Replaces the mailbox's `password_file` line with `line` (an OAuth token source).
fn use_instead_of_password(d: &Daemon, line: &str) {
    let text = std::fs::read_to_string(&d.config).expect("config");
    let (start, end) = {
        let start = text
            .find("password_file = ")
            .expect("password_file in the config");
        let end = start + text[start..].find('\n').expect("end of line");
        (start, end)
    };
    let text = format!("{}{line}{}", &text[..start], &text[end..]);
    std::fs::write(&d.config, text).expect("config");
}

fn oauth_dovecot() -> Dovecot {
    Dovecot::start_with(
        &[(USER, PASS)],
        DovecotOptions {
            oauth: true,
            ..DovecotOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_token_file_is_read_again_after_a_refusal() {
    let dovecot = oauth_dovecot();
    dovecot.set_oauth_tokens(&[("fresh-token", USER)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let token_file = d.dir.path().join("oauth-token");
    std::fs::write(&token_file, "expired-token\n").expect("token file");
    use_instead_of_password(
        &d,
        &format!("oauth_token_file = \"{}\"", token_file.display()),
    );
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(1, "oauth@clinic.example", "pager app error"),
        )
        .await;
    d.start();
    let refusal = d.wait_log_line("login failed", Duration::from_secs(20));
    // The token helper (here: the test) writes a fresh token; the next attempt reads it.
    std::fs::write(&token_file, "fresh-token\n").expect("token file");
    // Dovecot answers a bad token with an XOAUTH2 error challenge (JSON), which supportd
    // acknowledges with an empty response; the server's words reach the log.
    assert!(
        d.log().contains("XOAUTH2 token refused"),
        "{refusal}\n{}\n{}",
        d.log(),
        dovecot.log()
    );
    assert!(
        dovecot
            .oauth_requests()
            .contains(&"expired-token".to_string()),
        "Dovecot asked the token endpoint: {:?}",
        dovecot.oauth_requests()
    );
    assert!(d.tickets().is_empty());
    assert_eq!(dovecot.list_folder(USER, "INBOX").await.len(), 1);
    let acks = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(acks[0].rcpt_to, vec!["oauth@clinic.example"]);
    dovecot
        .wait_for_folder(USER, "Processed", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        dovecot.oauth_requests().last().map(String::as_str),
        Some("fresh-token")
    );
    let log = d.log();
    assert!(log.contains("supportd ready"), "{log}");
    assert!(
        !log.contains("fresh-token"),
        "tokens never reach the log\n{log}"
    );
    let (status, _) = d.terminate();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_token_from_a_helper_command() {
    let dovecot = oauth_dovecot();
    dovecot.set_oauth_tokens(&[("token-from-helper", USER)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup {
        tls: "implicit",
        ..Setup::standard(&dovecot, sink.port)
    });
    use_instead_of_password(
        &d,
        "oauth_token_command = \"printf '%s\\\\n' token-from-helper\"",
    );
    d.start_ready();
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(2, "helper@clinic.example", "cannot log in"),
        )
        .await;
    let acks = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(acks[0].rcpt_to, vec!["helper@clinic.example"]);
    assert_eq!(
        dovecot.oauth_requests(),
        vec!["token-from-helper".to_string()]
    );
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_certificate_is_refused_and_the_mail_waits() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    // Without the test CA, Dovecot's certificate chains to nothing the system trusts.
    let text = std::fs::read_to_string(&d.config).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ca_file = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&d.config, text).expect("config");
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(3, "tls@clinic.example", "pager app error"),
        )
        .await;
    d.start();
    let line = d.wait_log_line("mailbox session failed", Duration::from_secs(20));
    assert!(
        line.contains("TLS") && line.contains("certificate"),
        "the cause is named: {line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        d.log().matches("mailbox session failed").count(),
        1,
        "the same failure is logged once\n{}",
        d.log()
    );
    assert_eq!(dovecot.list_folder(USER, "INBOX").await.len(), 1);
    assert!(d.tickets().is_empty());
    assert_eq!(sink.count(), 0);
    d.terminate();
}

/// A server that offers neither IDLE nor MOVE (UIDPLUS as given): supportd polls every
/// `poll_seconds` and moves with COPY, STORE \Deleted and UID EXPUNGE. Without UIDPLUS, a
/// plain EXPUNGE would also remove a message someone else flagged \Deleted: then supportd
/// leaves its own copies flagged instead, and never imports the deleted message.
async fn polls_and_copies(capabilities: &str, uidplus: bool) {
    let dovecot = Dovecot::start_with(
        &[(USER, PASS)],
        DovecotOptions {
            capabilities: Some(capabilities.into()),
            ..DovecotOptions::default()
        },
    );
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    if !uidplus {
        let mut s = dovecot.session(USER).await;
        let staff = customer_mail(9, "spam@clinic.example", "deleted by an agent");
        s.append("INBOX", Some("(\\Deleted)"), None, &staff)
            .await
            .expect("APPEND");
        let _ = s.logout().await;
    }
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(10, "early@clinic.example", "pager app error"),
        )
        .await;
    d.start_ready();
    sink.wait_for(1, Duration::from_secs(20));
    let log = d.log();
    let connected = log
        .lines()
        .find(|l| l.contains("connected"))
        .unwrap_or_default();
    assert!(
        connected.contains("idle=false") && connected.contains("move=false"),
        "{connected}"
    );
    // Mail arriving later is found by the next poll.
    let appended = Instant::now();
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(11, "later@clinic.example", "schedule question"),
        )
        .await;
    let acks = sink.wait_for(2, Duration::from_secs(20));
    assert!(
        appended.elapsed() < Duration::from_secs(5),
        "poll_seconds = 1"
    );
    assert_eq!(acks[1].rcpt_to, vec!["later@clinic.example"]);
    let processed = dovecot
        .wait_for_folder(USER, "Processed", 2, Duration::from_secs(10))
        .await;
    assert_eq!(processed.len(), 2);
    if uidplus {
        d.wait("the inbox to be empty", Duration::from_secs(10), || {
            dovecot
                .list_folder_blocking(USER, "INBOX")
                .is_empty()
                .then_some(())
        });
    } else {
        let inbox = dovecot.list_folder(USER, "INBOX").await;
        assert_eq!(inbox.len(), 3, "nothing expunged");
        assert!(inbox.iter().all(|m| m.1.iter().any(|f| f == "\\Deleted")));
        assert!(d.log().contains("not expunging"), "{}", d.log());
    }
    assert_eq!(d.tickets().len(), 2, "the deleted message is not imported");
    let log = d.log();
    assert!(!log.contains("session failed"), "{log}");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_or_move_it_polls_and_uses_uid_expunge() {
    polls_and_copies("IMAP4rev1 SASL-IR LITERAL+ ID ENABLE UIDPLUS", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_move_or_uidplus_it_polls_and_expunges() {
    polls_and_copies("IMAP4rev1 SASL-IR LITERAL+ ID ENABLE", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_rescans_without_acknowledging_again() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    // Flagged \Seen in place: the old mail is still in the folder when its UIDs change.
    let mut d = Daemon::configure(&Setup {
        processed: false,
        ..Setup::standard(&dovecot, sink.port)
    });
    dovecot
        .append_all(
            USER,
            (0..2)
                .map(|i| customer_mail(20 + i, &format!("v{i}@clinic.example"), "pager app error")),
        )
        .await;
    d.start_ready();
    sink.wait_for(2, Duration::from_secs(20));
    d.terminate();

    // A server migration or a rebuilt index: same mail, new UIDVALIDITY.
    let before = dovecot.doveadm(&[
        "-f",
        "flow",
        "mailbox",
        "status",
        "-u",
        USER,
        "uidvalidity",
        "INBOX",
    ]);
    dovecot.doveadm(&[
        "mailbox",
        "update",
        "-u",
        USER,
        "--uid-validity",
        "4242",
        "INBOX",
    ]);
    let after = dovecot.doveadm(&[
        "-f",
        "flow",
        "mailbox",
        "status",
        "-u",
        USER,
        "uidvalidity",
        "INBOX",
    ]);
    assert_ne!(before, after, "UIDVALIDITY changed");
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(22, "v2@clinic.example", "pager app error"),
        )
        .await;
    d.start();
    sink.wait_for(3, Duration::from_secs(20));
    d.wait("the rescan", Duration::from_secs(10), || {
        d.log().contains("UIDVALIDITY changed").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.count(), 3, "old mail is not acknowledged again");
    assert_eq!(d.tickets().len(), 3);
    let inbox = dovecot.list_folder(USER, "INBOX").await;
    assert_eq!(inbox.len(), 3);
    assert!(inbox.iter().all(|m| m.1.iter().any(|f| f == "\\Seen")));
    d.terminate();
}

/// IDLE may sit quiet for 25 minutes; that is waiting, not being stuck. With a 1.5 s
/// watchdog, supportd counts a task as stuck after 30 s without a beat: a quiet IDLE of 40 s
/// must keep the pings coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_quiet_idle_keeps_feeding_the_watchdog() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let socket = d.start_notified(&[], "1500000", Duration::from_secs(5));
    let started = Instant::now();
    let mut last_ping = None;
    let mut buf = [0u8; 512];
    while started.elapsed() < Duration::from_secs(42) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // A signal to the test process (a child's exit) interrupts the wait: wait again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no sd_notify message for 5 s ({e})\n{}", d.log()),
        };
        if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
            last_ping = Some(started.elapsed());
        }
    }
    let last = last_ping.expect("watchdog pings");
    assert!(
        last > Duration::from_secs(39),
        "pings stopped at {last:?}\n{}",
        d.log()
    );
    assert!(!d.log().contains("stuck"), "{}", d.log());
    // And it still works after the quiet spell.
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(30, "quiet@clinic.example", "pager app error"),
        )
        .await;
    sink.wait_for(1, Duration::from_secs(10));
    d.terminate();
}

/// A message over `limits.max_message_bytes` is not downloaded: its header and the reason are
/// kept, the message itself goes to the quarantine folder intact, and later mail goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_set_aside_without_being_downloaded() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    d.append_config("\n[limits]\nmax_message_bytes = 200000\n");
    let mut big = customer_mail(50, "scanner@clinic.example", "scanned rota").to_vec();
    big.truncate(big.len() - 2);
    big.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\r\n".as_slice(), 30_000).flatten(),
    );
    let big_len = big.len();
    dovecot.append(USER, "INBOX", &big).await;
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(51, "after@clinic.example", "pager app error"),
        )
        .await;
    d.start();
    let acks = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(acks[0].rcpt_to, vec!["after@clinic.example"]);
    let q = dovecot
        .wait_for_folder(USER, "Quarantine", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        q[0].2.len(),
        big_len,
        "the message itself is intact on the server"
    );
    let rows = d.json(&["quarantine", "list", "--json"]);
    let rows = rows.as_array().expect("quarantine rows");
    assert_eq!(rows.len(), 1);
    let reason = rows[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exceeds limits.max_message_bytes"),
        "{reason}"
    );
    assert!(reason.contains("Quarantine"), "{reason}");
    // The database keeps the header only: far less than the message.
    let db = std::fs::metadata(d.dir.path().join("supportd.db")).map_or(0, |m| m.len());
    assert!(
        db < big_len as u64,
        "database {db} bytes, message {big_len}"
    );
    assert_eq!(d.tickets().len(), 1);
    d.terminate();
}

/// Mail that arrives while a long backlog is being worked through is found without waiting
/// for the next arrival: moving a batch floods the announcement queue with EXPUNGEs, so
/// supportd syncs again after every sync that found mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_arriving_during_a_backlog_is_not_left_waiting() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    dovecot
        .append_all(
            USER,
            (0..300).map(|i| {
                let from = format!("b{i}@clinic{}.example", i % 7);
                customer_mail(1000 + i, &from, "pager delayed")
            }),
        )
        .await;
    d.start();
    // The backlog is under way.
    dovecot
        .wait_for_folder(USER, "Processed", 50, Duration::from_secs(60))
        .await;
    dovecot
        .append(
            USER,
            "INBOX",
            &customer_mail(2000, "late@clinic.example", "urgent: nobody can page"),
        )
        .await;
    let all = dovecot
        .wait_for_folder(USER, "Processed", 301, Duration::from_secs(120))
        .await;
    assert_eq!(all.len(), 301);
    assert!(dovecot.list_folder(USER, "INBOX").await.is_empty());
    d.terminate();
}

/// SIGTERM in the middle of a backlog: the sync stops after the batch it is on (which still
/// leaves the inbox), the process exits 0 well within 10 s without aborting anything, and a
/// restart picks up exactly where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_backlog_stops_cleanly_and_resumes() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    // Large enough that SIGTERM lands mid-backlog (batches of 100, several hundred a second).
    let n = 1000;
    dovecot
        .append_all(
            USER,
            (0..n)
                .map(|i| customer_mail(3000 + i, &format!("t{i}@clinic.example"), "pager delayed")),
        )
        .await;
    d.start();
    // The backlog is under way: watched with STATUS, which costs nothing next to a FETCH.
    let started = Instant::now();
    while dovecot.count(USER, "Processed").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, took) = d.terminate();
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    let log = d.log();
    assert!(!log.contains("aborting"), "nothing was cut off\n{log}");
    let stopped_at = d.tickets().len();
    assert!(
        stopped_at < n,
        "the backlog finished before SIGTERM; nothing was tested"
    );
    // Everything committed before the stop left the inbox; nothing else did.
    let moved = dovecot.list_folder(USER, "Processed").await.len();
    assert_eq!(moved, stopped_at, "committed = moved at the stop");

    d.start();
    dovecot
        .wait_for_folder(USER, "Processed", n, Duration::from_secs(120))
        .await;
    let tickets = d.wait("every ticket", Duration::from_secs(30), || {
        let t = d.tickets();
        (t.len() >= n).then_some(t)
    });
    assert_eq!(tickets.len(), n, "each message exactly one ticket");
    d.terminate();
}
