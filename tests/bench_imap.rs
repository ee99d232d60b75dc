//! Daemon benchmark (not a test): run with `scripts/bench-imap`, which calls
//! `cargo test --release --test bench_imap -- --ignored --nocapture`.
//! Measures, against a real Dovecot and SMTP server on loopback:
//! - backlog: N messages (default 10,000; `BENCH_BACKLOG`) in the inbox, plus a few 25 MB
//!   attachment mails, ingested (tickets committed, mail moved to Processed) per second;
//! - peak RSS of `supportd run` during that backlog (VmHWM);
//! - IDLE latency: arrival in the inbox → acknowledgement accepted by the SMTP server (median).

// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::daemon::{customer_mail, Daemon, Setup, USER};
use support::{Dovecot, SmtpSink};

/// A ~25 MB message (just under the default 25 MiB `max_message_bytes`): one PDF attachment.
fn big_mail(i: usize) -> Vec<u8> {
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    let payload = line.repeat(25_000_000 / line.len());
    format!(
        "From: Scanner {i} <scan{i}@clinic.example>\r\nTo: {USER}\r\nSubject: scanned schedule {i}\r\nMessage-ID: <big-{i}@clinic.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe on-call schedule is attached.\r\n--b\r\nContent-Type: application/pdf; name=schedule.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{payload}--b--\r\n"
    )
    .into_bytes()
}

/// For every "sent" log event, the time since the "IDLE woke" event before it.
fn own_share(log: &str) -> Vec<Duration> {
    let mut woke = None;
    let mut out = Vec::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(at) = v["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        match v["fields"]["message"].as_str() {
            Some("IDLE woke") => woke = Some(at),
            Some("sent") => {
                if let Some(w) = woke.take() {
                    out.extend((at - w).to_std().ok());
                }
            }
            _ => {}
        }
    }
    out
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench-imap"]
async fn backlog_throughput_rss_and_idle_latency() {
    let n: usize = std::env::var("BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let big = 3;
    let dovecot = Dovecot::start(&[(USER, support::daemon::PASS)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    // IDLE latency first, on an idle daemon with an empty inbox. JSON logs at debug level
    // time supportd's own share: from "IDLE woke" to "sent" (accepted by the SMTP server).
    d.start_with(
        &["--log-format", "json"],
        &[("SUPPORTD_LOG", "info,supportd::imap=debug")],
    );
    d.wait("the daemon to be ready", Duration::from_secs(30), || {
        d.log().contains("supportd ready").then_some(())
    });
    // Two clocks per message, on an open session: from sending APPEND (an upper bound), and
    // from its tagged OK, the moment the mail is in the mailbox ("arrival").
    let mut from_append = Vec::new();
    let mut from_arrival = Vec::new();
    let mut writer = dovecot.session(USER).await;
    for i in 0..21 {
        let before = sink.count();
        let raw = customer_mail(
            1_000_000 + i,
            &format!("lat{i}@clinic.example"),
            "pager down",
        );
        let sent = Instant::now();
        writer
            .append("INBOX", None, None, &raw)
            .await
            .expect("APPEND");
        let arrived = Instant::now();
        while sink.count() <= before {
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "no ack\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        from_append.push(sent.elapsed());
        from_arrival.push(arrived.elapsed());
        // Quiet between samples, as between real arrivals.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = writer.logout().await;
    for (what, mut lat) in [
        ("from sending APPEND", from_append),
        ("from APPEND's OK (arrival)", from_arrival),
    ] {
        lat.sort();
        println!(
            "IDLE: ack accepted by SMTP, {what}: median {:?}, min {:?}, max {:?} (21 messages)",
            lat[lat.len() / 2],
            lat[0],
            lat[lat.len() - 1]
        );
    }
    let mut share = own_share(&d.log());
    share.sort();
    if !share.is_empty() {
        println!(
            "IDLE: supportd's share (IDLE notification → ack accepted): median {:?}, max {:?} ({} messages)",
            share[share.len() / 2],
            share[share.len() - 1],
            share.len()
        );
    }
    d.terminate();

    let filling = Instant::now();
    {
        let mut s = dovecot.session(USER).await;
        for i in 0..n {
            let raw = customer_mail(
                i,
                &format!("u{}@clinic{}.example", i % 5000, i % 7),
                "pager messages delayed",
            );
            s.append("INBOX", None, None, &raw).await.expect("APPEND");
            if i == n / 2 {
                for b in 0..big {
                    s.append("INBOX", None, None, big_mail(b))
                        .await
                        .expect("APPEND big");
                }
            }
        }
        let _ = s.logout().await;
    }
    let total = n + big;
    println!(
        "backlog of {total} messages appended in {:.1?}",
        filling.elapsed()
    );

    let baseline = dovecot.count(USER, "Processed").await;
    let started = Instant::now();
    // The environment systemd/supportd.service gives the daemon (BENCH_MALLOC_ARENA_MAX=0:
    // glibc's default, for comparison).
    let arenas = std::env::var("BENCH_MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into());
    if arenas == "0" {
        d.start();
    } else {
        d.start_with(&[], &[("MALLOC_ARENA_MAX", arenas.as_str())]);
    }
    let pid = d.pid().expect("pid");
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss_kb(pid));
        let moved = dovecot.count(USER, "Processed").await - baseline;
        if moved >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "backlog not done: {moved}/{total}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    peak = peak.max(peak_rss_kb(pid));
    println!(
        "BACKLOG: {total} messages ingested and moved in {took:.1?} = {:.0} messages/s; peak RSS {} MB (MALLOC_ARENA_MAX={arenas})",
        total as f64 / took.as_secs_f64(),
        peak / 1024
    );

    d.terminate();
}
