//! Web benchmark (not a test): run with `scripts/bench-web`, which installs `oha` (crates.io)
//! and calls `cargo test --release --test bench_web -- --ignored --nocapture`.
//! `GET /t/{key}` over 10,000 tickets (`BENCH_TICKETS`), keys taken at random by oha from a
//! URL list, served by `supportd run` ([web] listen) against a real Dovecot and SMTP sink:
//! - alone, for `BENCH_SECONDS` (10);
//! - while a backlog of 1,000 mails (for `BENCH_DURING_SECONDS`, 4) (`BENCH_BACKLOG`) waiting in the IMAP inbox is ingested:
//!   the daemon starts with the backlog in its inbox and oha starts as soon as the pages
//!   answer; the ingest rate is the backlog over the time until the last mail was moved.
//!
//! Target: >= 5,000 requests/s at p99 <= 20 ms on the 2-core machine.

// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::{customer_mail, Daemon, Setup, USER};
use support::{Dovecot, SmtpSink};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs oha for `seconds` over the URLs in `urls` with `connections`; returns its JSON summary.
fn oha(urls: &std::path::Path, seconds: usize, connections: usize) -> serde_json::Value {
    let oha = std::env::var("OHA").unwrap_or_else(|_| "oha".into());
    let out = Command::new(oha)
        .args(["--no-tui", "--output-format", "json", "--urls-from-file"])
        .arg(urls)
        .args(["-z", &format!("{seconds}s"), "-c", &connections.to_string()])
        .output()
        .expect("oha (scripts/bench-web installs it)");
    assert!(
        out.status.success(),
        "oha failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "oha's output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn report(what: &str, v: &serde_json::Value) {
    let s = &v["summary"];
    let p = &v["latencyPercentiles"];
    let ms = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN) * 1000.0;
    let codes = &v["statusCodeDistribution"];
    println!(
        "WEB {what}: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, success rate {:.4}, status codes {codes}",
        s["requestsPerSec"].as_f64().unwrap_or(f64::NAN),
        ms(&p["p50"]),
        ms(&p["p99"]),
        ms(&s["slowest"]),
        s["successRate"].as_f64().unwrap_or(f64::NAN),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench-web"]
async fn ticket_page_throughput_alone_and_during_an_imap_backlog() {
    let tickets = env_or("BENCH_TICKETS", 10_000);
    let backlog = env_or("BENCH_BACKLOG", 1_000);
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 16);
    // Short enough that the backlog keeps the daemon busy for most of it.
    let during_seconds = env_or("BENCH_DURING_SECONDS", 4);
    let dovecot = Dovecot::start(&[(USER, support::daemon::PASS)]);
    let sink = SmtpSink::start();
    let d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let port = support::free_port();
    d.append_config(&format!("\n[web]\nlisten = \"127.0.0.1:{port}\"\n"));

    // 10,000 tickets, through the pipeline in process (as `supportd ingest` would).
    let filled = Instant::now();
    {
        let config = supportd::config::Config::load(&d.config).unwrap();
        let pipeline = supportd::setup::build_pipeline(config).unwrap();
        let store = supportd::store::Store::connect(&pipeline.config.database.url)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let mails: Vec<Vec<u8>> = (0..tickets)
            .map(|i| {
                customer_mail(
                    5_000_000 + i,
                    &format!("n{i}@clinic{}.example", i % 13),
                    "pager messages delayed",
                )
            })
            .collect();
        for chunk in mails.chunks(100) {
            let items: Vec<(&[u8], supportd::pipeline::Source<'_>)> = chunk
                .iter()
                .map(|m| (m.as_slice(), supportd::pipeline::Source::ingest()))
                .collect();
            pipeline.ingest_batch(&store, &items).unwrap();
        }
        store.close().await;
    }
    println!("{tickets} tickets made in {:.1?}", filled.elapsed());
    let db = d.dir.path().join("supportd.db");
    let keys: Vec<String> = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut s = c.prepare("SELECT access_key FROM tickets").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(keys.len(), tickets);
    let urls = d.dir.path().join("urls.txt");
    let list: Vec<String> = keys
        .iter()
        .map(|k| format!("http://127.0.0.1:{port}/t/{k}"))
        .collect();
    std::fs::write(&urls, list.join("\n") + "\n").unwrap();

    // Alone.
    let mut d = d;
    d.start_ready();
    let warm = oha(&urls, 2, connections);
    report("warm-up (2 s)", &warm);
    let alone = oha(&urls, seconds, connections);
    report(
        &format!("alone ({seconds} s, {connections} connections)"),
        &alone,
    );
    d.terminate();

    // During a backlog: the mails wait in the inbox, then the daemon starts.
    {
        let mut s = dovecot.session(USER).await;
        for i in 0..backlog {
            let raw = customer_mail(
                7_000_000 + i,
                &format!("b{i}@clinic{}.example", i % 7),
                "pager messages delayed",
            );
            s.append("INBOX", None, None, &raw).await.expect("APPEND");
        }
        let _ = s.logout().await;
    }
    let processed_before = dovecot.count(USER, "Processed").await;
    let started = Instant::now();
    d.start();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", d.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let urls2 = urls.clone();
    let load = std::thread::spawn(move || oha(&urls2, during_seconds, connections));
    let load_started = started.elapsed();
    let drained = loop {
        let moved = dovecot.count(USER, "Processed").await - processed_before;
        if moved >= backlog {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "backlog not done: {moved}/{backlog}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let during = load.join().unwrap();
    report(
        &format!(
            "during the backlog ({during_seconds} s from {:.1?} after start; the backlog was done {:.1?} after start)",
            load_started, drained
        ),
        &during,
    );
    println!(
        "INGEST during the load: {backlog} mails committed and moved in {drained:.1?} = {:.0} mails/s",
        backlog as f64 / drained.as_secs_f64()
    );
    d.terminate();
}
