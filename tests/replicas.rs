//! The proof of replicas (issue 13): two `supportd run` with the same config on one
//! PostgreSQL database, one Dovecot mailbox holding a backlog (`REPLICAS_MESSAGES`, default
//! 1,000), a real SMTP sink. The replica holding the mailbox's lease is killed with SIGKILL
//! mid-way and started again. At the end:
//! - exactly one ticket per message, numbers unique and increasing from 1001, with no gap
//!   but the numbers of the batch the kill cut short (README: PostgreSQL and replicas);
//! - exactly one ack per ticket at the SMTP server, except for mail whose send was in flight
//!   at the kill (counted, at most one per sender of the killed replica);
//! - the mailbox emptied into Processed;
//! - the other replica took the mailbox over within 30 s of the kill.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/pg.rs"]
mod pg;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Row};
use support::daemon::{Daemon, Setup, PASS, USER};
use support::{Dovecot, SmtpSink};

fn message_id(i: usize) -> String {
    format!("replica-{i}@clinic.example")
}

fn mail(i: usize) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "From: Nurse {i} <nurse{i}@clinic.example>\r\nTo: {USER}\r\nSubject: pager app error {i}\r\n\
         Message-ID: <{}>\r\nDate: {date}\r\n\r\nThe pager app on ward tablet {i} shows an error.\r\n",
        message_id(i)
    )
    .into_bytes()
}

/// (arrival, Message-ID, recipients) of every mail the sink took.
fn deliveries(sink: &SmtpSink) -> Vec<(SystemTime, String, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(sink.dir.join("mail/new")) else {
        return out;
    };
    for entry in dir {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
        let ns: u64 = stem[..20].parse().expect("arrival time in the file name");
        let raw = std::fs::read(&path).expect("read delivery");
        let text = String::from_utf8_lossy(&raw);
        let id = support::daemon::header(&text, "Message-ID")
            .expect("a Message-ID")
            .trim_matches(['<', '>'])
            .to_string();
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).expect("envelope"))
                .expect("envelope JSON");
        let to = meta["rcpt_to"]
            .as_array()
            .expect("rcpt_to")
            .iter()
            .map(|r| r.as_str().expect("address").to_string())
            .collect();
        out.push((UNIX_EPOCH + Duration::from_nanos(ns), id, to));
    }
    out
}

async fn scalar(db: &mut sqlx::PgConnection, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

fn wait_log(d: &Daemon, from: usize, needle: &str, limit: Duration) -> Instant {
    let started = Instant::now();
    loop {
        if d.log().get(from..).is_some_and(|l| l.contains(needle)) {
            return Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "no `{needle}` within {limit:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_mid_backlog_lose_and_double_nothing() {
    let n: usize = std::env::var("REPLICAS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let started = Instant::now();
    let db = pg::PgDb::new();
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut a = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let mut b = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    // One config for both replicas, on PostgreSQL.
    let text = std::fs::read_to_string(&a.config).expect("config");
    let start = text.find("url = \"sqlite://").expect("database url");
    let end = start + text[start..].find('\n').expect("line end");
    let text = format!("{}url = \"{}\"{}", &text[..start], db.url, &text[end..]);
    std::fs::write(&a.config, &text).expect("config");
    std::fs::write(&b.config, &text).expect("config");
    dovecot.append_all(USER, (0..n).map(mail)).await;

    a.start_with(&[], &[("SUPPORTD_REPLICA", "a")]);
    b.start_with(&[], &[("SUPPORTD_REPLICA", "b")]);
    wait_log(&a, 0, "supportd ready", Duration::from_secs(60));
    wait_log(&b, 0, "supportd ready", Duration::from_secs(60));

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    // Mid-way through the backlog, kill the replica working the mailbox.
    let half = i64::try_from(n / 2).expect("n");
    let deadline = Instant::now() + Duration::from_secs(120);
    while scalar(
        &mut conn,
        "SELECT COUNT(*) FROM messages WHERE direction = 'inbound'",
    )
    .await
        < half
    {
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a_holds = a.log().contains("holds the mailbox lease");
    let (killed, survivor) = if a_holds {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let killed_name = if a_holds { "a" } else { "b" };
    let survivor_log_at = survivor.log().len();
    let at_kill = scalar(
        &mut conn,
        "SELECT COUNT(*) FROM messages WHERE direction = 'inbound'",
    )
    .await;
    killed.kill9();
    let kill_time = SystemTime::now();
    let killed_at = Instant::now();
    let took_over = wait_log(
        survivor,
        survivor_log_at,
        "holds the mailbox lease",
        Duration::from_secs(30),
    );
    let takeover = took_over - killed_at;
    // The killed replica comes back (same replica name): it stands by, and takes back the
    // claims of its earlier run at once.
    let restart_log_at = killed.log().len();
    killed.start_with(&[], &[("SUPPORTD_REPLICA", killed_name)]);
    wait_log(
        killed,
        restart_log_at,
        "supportd ready",
        Duration::from_secs(60),
    );

    // Everything leaves INBOX for Processed, and every ack is sent.
    let deadline =
        Instant::now() + Duration::from_secs(120) + Duration::from_millis(100 * n as u64);
    loop {
        let inbox = dovecot.count(USER, "INBOX").await;
        let processed = dovecot.count(USER, "Processed").await;
        let unsent = scalar(
            &mut conn,
            "SELECT COUNT(*) FROM outbox WHERE status <> 'sent'",
        )
        .await;
        let tickets = scalar(&mut conn, "SELECT COUNT(*) FROM tickets").await;
        if inbox == 0 && processed == n && unsent == 0 && tickets == n as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "INBOX {inbox}, Processed {processed} of {n}, {tickets} tickets, {unsent} unsent\n--- a\n{}\n--- b\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    for d in [&mut a, &mut b] {
        let (status, _) = d.terminate();
        assert!(status.success(), "{status:?}\n{}", d.log());
        assert!(!d.log().contains("panicked"), "{}", d.log());
    }

    // Exactly one ticket per message, numbers sequential and unique.
    let rows = sqlx::query(
        "SELECT m.message_id, t.number FROM messages m JOIN tickets t ON t.id = m.ticket_id
          WHERE m.direction = 'inbound' ORDER BY t.number",
    )
    .fetch_all(&mut conn)
    .await
    .expect("messages");
    assert_eq!(rows.len(), n, "one inbound message per mail");
    let by_id: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    assert_eq!(by_id.len(), n, "a Message-ID stored twice");
    for i in 0..n {
        assert!(by_id.contains_key(&message_id(i)), "message {i} stored");
    }
    // Numbers come from a sequence (migration 0020): unique, increasing with the ticket rows,
    // and without a gap except the numbers the killed replica's open batch had taken (at
    // most one batch, 100 mails, of new tickets).
    let numbers: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(1)).collect();
    assert_eq!(numbers.first(), Some(&1001), "the first ticket is 1001");
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "ticket numbers unique: {numbers:?}"
    );
    let gaps = numbers.last().map_or(0, |last| last - 1000) - n as i64;
    println!("ticket numbers: {n} tickets, {gaps} numbers lost with the killed batch");
    assert!(
        (0..=100).contains(&gaps),
        "{gaps} numbers missing, more than one batch: {numbers:?}"
    );
    let by_row: Vec<i64> = sqlx::query("SELECT number FROM tickets ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("tickets")
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect();
    let mut sorted = by_row.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, numbers, "one number per ticket row");

    // Exactly one ack per ticket at the SMTP server; a second copy only for the mail in
    // flight when the killed replica died (its first copy arrived just before the kill).
    let acks: Vec<(String, String)> =
        sqlx::query("SELECT message_id, recipients FROM outbox WHERE kind = 'ack'")
            .fetch_all(&mut conn)
            .await
            .expect("outbox")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(acks.len(), n, "one ack queued per ticket");
    let got = deliveries(&sink);
    let mut copies: BTreeMap<&str, Vec<SystemTime>> = BTreeMap::new();
    for (at, id, _) in &got {
        copies.entry(id.as_str()).or_default().push(*at);
    }
    for (id, to) in &acks {
        let c = copies
            .get(id.as_str())
            .unwrap_or_else(|| panic!("ack {id} to {to} never arrived"));
        assert!(!c.is_empty());
    }
    assert_eq!(copies.len(), n, "nothing but our acks arrived");
    let mut in_flight = 0;
    for (id, at) in &copies {
        if at.len() < 2 {
            continue;
        }
        let first = *at.iter().min().expect("a copy");
        let before_kill = kill_time
            .duration_since(first)
            .is_ok_and(|d| d <= Duration::from_secs(3));
        assert!(
            before_kill,
            "{id} arrived {} times, the first not in flight at the kill",
            at.len()
        );
        in_flight += at.len() - 1;
    }
    assert!(
        in_flight <= 1,
        "at most the one mail in flight at the kill is sent twice: {in_flight}"
    );
    let mailbox_moves = dovecot.count(USER, "Processed").await;
    assert_eq!(mailbox_moves, n);
    println!(
        "replicas: {n} messages, replica {killed_name} killed at {at_kill} ingested; the other \
         took the mailbox over after {:.1} s; {in_flight} duplicate ack(s) (in flight at the \
         kill); all done in {:.1} s",
        takeover.as_secs_f64(),
        took.as_secs_f64()
    );
}

/// GET `path` from 127.0.0.1:`port`: the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect web");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn json_of(port: u16) -> serde_json::Value {
    serde_json::from_str(&http_get(port, "/healthz")).expect("healthz JSON")
}

/// /healthz and /metrics of each replica say which replica holds which mailbox; a graceful
/// stop hands the mailbox over at once (within the standby's 1 s retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_show_the_lease_holder_and_a_graceful_stop_hands_over_at_once() {
    let db = pg::PgDb::new();
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut a = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let mut b = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let text = std::fs::read_to_string(&a.config).expect("config");
    let start = text.find("url = \"sqlite://").expect("database url");
    let end = start + text[start..].find('\n').expect("line end");
    let text = format!("{}url = \"{}\"{}", &text[..start], db.url, &text[end..]);
    let (pa, pb) = (support::free_port(), support::free_port());
    std::fs::write(
        &a.config,
        format!("{text}\n[web]\nlisten = \"127.0.0.1:{pa}\"\n"),
    )
    .expect("config");
    std::fs::write(
        &b.config,
        format!("{text}\n[web]\nlisten = \"127.0.0.1:{pb}\"\n"),
    )
    .expect("config");
    a.start_with(&[], &[("SUPPORTD_REPLICA", "a")]);
    wait_log(&a, 0, "holds the mailbox lease", Duration::from_secs(60));
    b.start_with(&[], &[("SUPPORTD_REPLICA", "b")]);
    wait_log(&b, 0, "standing by", Duration::from_secs(60));

    let ha = json_of(pa);
    let hb = json_of(pb);
    assert_eq!(ha["replica"], "a", "{ha}");
    assert_eq!(ha["mailboxes"][0]["lease_holder"], "a", "{ha}");
    assert_eq!(ha["mailboxes"][0]["works_here"], true, "{ha}");
    assert_eq!(hb["replica"], "b", "{hb}");
    assert_eq!(hb["mailboxes"][0]["lease_holder"], "a", "{hb}");
    assert_eq!(hb["mailboxes"][0]["works_here"], false, "{hb}");
    assert_eq!(hb["status"], "ok", "a standby is healthy: {hb}");
    let metrics = http_get(pb, "/metrics");
    assert!(
        metrics.contains(r#"supportd_mailbox_lease{mailbox="support",holder="a",replica="b"} 1"#),
        "{metrics}"
    );

    // A graceful stop: the standby holds the mailbox within about a second.
    let b_log_at = b.log().len();
    let (status, _) = a.terminate();
    assert!(status.success(), "{}", a.log());
    let stopped = Instant::now();
    wait_log(
        &b,
        b_log_at,
        "holds the mailbox lease",
        Duration::from_secs(5),
    );
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}"
    );
    let hb = json_of(pb);
    assert_eq!(hb["mailboxes"][0]["lease_holder"], "b", "{hb}");
    assert_eq!(hb["mailboxes"][0]["works_here"], true, "{hb}");
    let (status, _) = b.terminate();
    assert!(status.success(), "{}", b.log());
    println!("graceful handover in {:.2} s", handover.as_secs_f64());
}
