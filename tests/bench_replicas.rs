//! Replica benchmark (not a test): run with `scripts/bench-replicas`, which calls
//! `cargo test --release --test bench_replicas -- --ignored --nocapture`.
//! In one run, against a real Dovecot (4 mailboxes) and SMTP sink on loopback:
//! - ingest throughput of a backlog (`BENCH_BACKLOG`, default 10,000, spread over the 4
//!   mailboxes) on SQLite (one daemon), on PostgreSQL with 1 replica and with 2 replicas:
//!   from the first ticket to the last mail moved to Processed, and to the last ack
//!   accepted by SMTP;
//! - p50/p99 from IMAP arrival (APPEND's OK) to the ack accepted by SMTP, for
//!   `BENCH_LATENCY` (default 200) mails appended at ~20/s to idle daemons.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/pg.rs"]
mod pg;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::daemon::{customer_mail, Daemon, Setup, PASS, USER};
use support::{Dovecot, SmtpSink};

const USERS: [&str; 4] = [
    USER,
    "support2@example.test",
    "support3@example.test",
    "support4@example.test",
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Arrival time (from the sink's file name) per envelope recipient.
fn arrivals(sink: &SmtpSink) -> HashMap<String, SystemTime> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(sink.dir.join("mail/new")) else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let Ok(ns) = stem.get(..20).unwrap_or("").parse::<u64>() else {
            continue;
        };
        let Ok(meta) =
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap_or_default())
        else {
            continue;
        };
        for r in meta["rcpt_to"].as_array().into_iter().flatten() {
            if let Some(r) = r.as_str() {
                out.insert(r.to_string(), UNIX_EPOCH + Duration::from_nanos(ns));
            }
        }
    }
    out
}

struct Figures {
    what: String,
    ingest_per_s: f64,
    acked_per_s: f64,
    p50: Duration,
    p99: Duration,
}

async fn scenario(what: &str, postgres: bool, replicas: usize, n: usize, lat: usize) -> Figures {
    let users: Vec<(&str, &str)> = USERS.iter().map(|u| (*u, PASS)).collect();
    let dovecot = Dovecot::start(&users);
    let sink = SmtpSink::start();
    let db = postgres.then(pg::PgDb::new);
    let mut daemons: Vec<Daemon> = (0..replicas)
        .map(|_| Daemon::configure(&Setup::standard(&dovecot, sink.port)))
        .collect();
    let mut text = std::fs::read_to_string(&daemons[0].config).expect("config");
    if let Some(db) = &db {
        let start = text.find("url = \"sqlite://").expect("database url");
        let end = start + text[start..].find('\n').expect("line end");
        text = format!("{}url = \"{}\"{}", &text[..start], db.url, &text[end..]);
    }
    let first = text.find("[[mailbox]]").expect("mailbox");
    let smtp = text.find("[smtp]").expect("smtp");
    let template = text[first..smtp].to_string();
    for (i, user) in USERS.iter().enumerate().skip(1) {
        text.push_str(
            &template
                .replace(
                    "name = \"support\"",
                    &format!("name = \"support{}\"", i + 1),
                )
                .replace(
                    &format!("username = \"{USER}\""),
                    &format!("username = \"{user}\""),
                ),
        );
    }
    for d in &daemons {
        std::fs::write(&d.config, &text).expect("config");
    }
    // The backlog, round-robin over the mailboxes, one sender per mail (no rate limit).
    let filling = Instant::now();
    let per = n / USERS.len();
    for (k, user) in USERS.iter().enumerate() {
        dovecot
            .append_all(
                user,
                (0..per).map(|i| {
                    let j = k * per + i;
                    customer_mail(j, &format!("u{j}@clinic{}.example", j % 7), "pager delayed")
                }),
            )
            .await;
    }
    let total = per * USERS.len();
    println!(
        "{what}: {total} mails appended in {:.1?}",
        filling.elapsed()
    );
    for (i, d) in daemons.iter_mut().enumerate() {
        d.start_with(&[], &[("SUPPORTD_REPLICA", &format!("r{i}"))]);
    }
    let started = Instant::now();
    let mut first_at = None;
    // One session per mailbox for the polling (STATUS), not a login per poll: the logins
    // cost Dovecot more CPU than the daemons' own IMAP work, on the same 2 cores.
    let mut watch = Vec::new();
    for u in USERS {
        watch.push(dovecot.session(u).await);
    }
    let moved = loop {
        let mut moved = 0;
        for s in &mut watch {
            moved += s
                .status("Processed", "(MESSAGES)")
                .await
                .map_or(0, |m| m.exists as usize);
        }
        if moved > 0 && first_at.is_none() {
            first_at = Some(Instant::now());
        }
        if moved >= total {
            break Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{what}: {moved}/{total}\n{}",
            daemons[0].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for mut s in watch {
        let _ = s.logout().await;
    }
    let first_at = first_at.unwrap_or(started);
    let acked = loop {
        if sink.count() >= total {
            break Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{what}: {} acks of {total}",
            sink.count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ingest_per_s = total as f64 / (moved - first_at).as_secs_f64();
    let acked_per_s = total as f64 / (acked - first_at).as_secs_f64();
    println!(
        "{what}: ingested {total} in {:.1?} after the first ({:.1?} after start) = {ingest_per_s:.0}/s; \
         acks accepted by SMTP {:.1?} after the first = {acked_per_s:.0}/s",
        moved - first_at,
        moved - started,
        acked - first_at,
    );

    // Latency: mails arriving one by one at idle daemons.
    let mut sessions = Vec::new();
    for u in USERS {
        sessions.push(dovecot.session(u).await);
    }
    let mut arrived = HashMap::new();
    for i in 0..lat {
        let to = format!("lat{i}@clinic.example");
        let raw = customer_mail(1_000_000 + i, &to, "pager down");
        let s = &mut sessions[i % USERS.len()];
        s.append("INBOX", None, None, &raw).await.expect("APPEND");
        arrived.insert(to, SystemTime::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for mut s in sessions {
        let _ = s.logout().await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.count() < total + lat {
        assert!(Instant::now() < deadline, "{what}: latency acks missing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = arrivals(&sink);
    // An ack may be seen before APPEND's answer is (a poll caught the mail while this task
    // waited for a CPU on the loaded machine): counted as no latency at all.
    let early = arrived
        .iter()
        .filter(|(to, at)| got.get(*to).is_some_and(|g| g < *at))
        .count();
    let mut lats: Vec<Duration> = arrived
        .iter()
        .filter_map(|(to, at)| {
            got.get(to)
                .map(|g| g.duration_since(*at).unwrap_or(Duration::ZERO))
        })
        .collect();
    lats.sort();
    if early > 0 {
        println!("{what}: {early} ack(s) seen before APPEND's answer, counted as 0 ms");
    }
    if lats.len() != lat {
        // Which: not acked; and any recipient acked twice.
        let missing: Vec<&String> = arrived.keys().filter(|to| !got.contains_key(*to)).collect();
        let mut per: HashMap<String, usize> = HashMap::new();
        for m in sink.messages() {
            for r in &m.rcpt_to {
                *per.entry(r.clone()).or_default() += 1;
            }
        }
        let twice: Vec<(&String, &usize)> = per.iter().filter(|(_, n)| **n > 1).collect();
        panic!(
            "{what}: {} of {lat} latency mails acked; not acked: {missing:?}; acked more than \
             once: {twice:?}",
            lats.len()
        );
    }
    let p50 = lats[lats.len() / 2];
    let p99 = lats[(lats.len() * 99 / 100).min(lats.len() - 1)];
    println!(
        "{what}: IMAP arrival → ack accepted by SMTP: p50 {p50:.1?}, p99 {p99:.1?} ({lat} mails)"
    );
    for d in &mut daemons {
        d.terminate();
    }
    Figures {
        what: what.to_string(),
        ingest_per_s,
        acked_per_s,
        p50,
        p99,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench-replicas"]
async fn replicas_throughput_and_latency() {
    let n = env("BENCH_BACKLOG", 10_000);
    let lat = env("BENCH_LATENCY", 200);
    // BENCH_ONLY=sqlite,pg1,pg2 (any of them, comma-separated) runs only those scenarios.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |key: &str| only.is_empty() || only.split(',').any(|k| k.trim() == key);
    let mut all = Vec::new();
    if wanted("sqlite") {
        all.push(scenario("SQLite, 1 daemon", false, 1, n, lat).await);
    }
    if wanted("pg1") {
        all.push(scenario("PostgreSQL, 1 replica", true, 1, n, lat).await);
    }
    if wanted("pg2") {
        all.push(scenario("PostgreSQL, 2 replicas", true, 2, n, lat).await);
    }
    println!(
        "\n{:<24} {:>12} {:>12} {:>10} {:>10}",
        "", "ingest/s", "acked/s", "p50", "p99"
    );
    for f in &all {
        println!(
            "{:<24} {:>12.0} {:>12.0} {:>10.1?} {:>10.1?}",
            f.what, f.ingest_per_s, f.acked_per_s, f.p50, f.p99
        );
    }
}
