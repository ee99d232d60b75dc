//! Chaos: an IMAP backlog ingested by `supportd run` while it is killed with SIGKILL at random
//! moments (and restarted), and while the SMTP relay refuses connections on and off. At the
//! end the invariants of "never lose a message" must hold:
//! - every message is exactly one ticket, one reply on its ticket, or one quarantine entry;
//! - every acknowledgement is delivered (every outbox row `sent`, every requester reached);
//! - a mail is delivered twice only when it was in flight at a kill (or when the relay went
//!   away right after taking it), and such duplicates are counted;
//! - INBOX ends empty: everything is in Processed or Quarantine.
//!
//! Size from the environment: `CHAOS_MESSAGES` (default 150), `CHAOS_KILLS` (default 4),
//! `CHAOS_SEED` (default: from the clock; printed, so a failing schedule can be replayed).
//! `scripts/chaos` runs the full version (1,000 messages, 20 kills).

// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Row};
use support::daemon::{Daemon, Setup, PASS, USER};
use support::{Dovecot, SmtpSink};

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// xorshift64*: a reproducible schedule from `CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration uniformly in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// What message `i` of the backlog is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A new question from its own sender: a ticket and an acknowledgement.
    New,
    /// The sender of message `i - 1` writing again, In-Reply-To that message: a reply.
    Reply,
    /// No sender at all: quarantined, moved to the Quarantine folder.
    Unparseable,
}

fn kind(i: usize) -> Kind {
    match i % 50 {
        25 => Kind::Unparseable,
        _ if i % 10 == 9 => Kind::Reply,
        _ => Kind::New,
    }
}

fn sender(i: usize) -> String {
    format!("chaos{i}@clinic.example")
}

fn message_id(i: usize) -> String {
    format!("chaos-{i}@clinic.example")
}

fn mail(i: usize) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    let id = message_id(i);
    match kind(i) {
        Kind::New => format!(
            "From: Nurse {i} <{}>\r\nTo: {USER}\r\nSubject: pager app error {i}\r\nMessage-ID: <{id}>\r\nDate: {date}\r\n\r\nThe pager app on ward tablet {i} shows an error when I log in.\r\n",
            sender(i)
        ),
        Kind::Reply => format!(
            "From: Nurse {} <{}>\r\nTo: {USER}\r\nSubject: Re: pager app error {}\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <{}>\r\nReferences: <{}>\r\nDate: {date}\r\n\r\nStill broken this morning.\r\n",
            i - 1,
            sender(i - 1),
            i - 1,
            message_id(i - 1),
            message_id(i - 1)
        ),
        Kind::Unparseable => format!(
            "Subject: no sender {i}\r\nMessage-ID: <{id}>\r\n\r\nwho sent this?\r\n"
        ),
    }
    .into_bytes()
}

/// One message the sink took: when (its file name starts with the arrival time in ns), its
/// Message-ID and envelope recipients.
struct Delivery {
    at: SystemTime,
    message_id: String,
    rcpt_to: Vec<String>,
}

fn deliveries(sink: &SmtpSink) -> Vec<Delivery> {
    let dir = sink.dir.join("mail/new");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the sink's mail dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
        let ns: u64 = stem[..20].parse().expect("arrival time in the file name");
        let raw = std::fs::read(&path).expect("read delivery");
        let text = String::from_utf8_lossy(&raw);
        let message_id = support::daemon::header(&text, "Message-ID")
            .expect("a Message-ID")
            .trim_matches(['<', '>'])
            .to_string();
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).expect("envelope"))
                .expect("envelope JSON");
        out.push(Delivery {
            at: UNIX_EPOCH + Duration::from_nanos(ns),
            message_id,
            rcpt_to: meta["rcpt_to"]
                .as_array()
                .expect("rcpt_to")
                .iter()
                .map(|r| r.as_str().expect("address").to_string())
                .collect(),
        });
    }
    out
}

/// Work done so far: mails taken in (stored or quarantined) plus acks sent.
async fn progress(db: &mut sqlx::SqliteConnection) -> u64 {
    let done: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM messages WHERE direction = 'inbound')
              + (SELECT COUNT(*) FROM quarantine)
              + (SELECT COUNT(*) FROM outbox WHERE status = 'sent')",
    )
    .fetch_one(db)
    .await
    .expect("progress")
    .get(0);
    u64::try_from(done).unwrap_or(0)
}

/// Whether `event` happened at most `window` after `at`.
fn soon_after(at: SystemTime, event: SystemTime, window: Duration) -> bool {
    event
        .duration_since(at)
        .is_ok_and(|elapsed| elapsed <= window)
}

/// Waits until the daemon started after the log was `offset` bytes long is ready (its signal
/// handlers are set: a SIGTERM before them would end it by the signal).
fn wait_ready_since(d: &Daemon, offset: usize) {
    d.wait("the daemon to be ready", Duration::from_secs(60), || {
        let log = d.log();
        log.get(offset..)?.contains("supportd ready").then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_relay_refusals_lose_nothing_and_double_only_mail_in_flight() {
    let n = usize::try_from(env_number("CHAOS_MESSAGES", 150)).expect("size");
    let kills = env_number("CHAOS_KILLS", 4);
    let seed = env_number(
        "CHAOS_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    );
    println!("chaos: {n} messages, {kills} kills, CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let mut sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    dovecot.append_all(USER, (0..n).map(mail)).await;
    let count = |k: Kind| (0..n).filter(|&i| kind(i) == k).count();
    let (new, replies, unparseable) = (
        count(Kind::New),
        count(Kind::Reply),
        count(Kind::Unparseable),
    );

    // The chaos phase. The work is `n` mails to take in plus `new` acks to send; each kill
    // comes at a random point of it (polled every few ms, plus up to 20 ms: any step of a
    // batch, a commit, a move, a send), or after 3 s without progress; the daemon restarts
    // within 0.3 s. Points that one batch's commit jumped past are taken right after the
    // restart: those kills land in start-up (migrations, login). Meanwhile the relay goes away for 0.2–1 s every 0.2–1.5 s.
    d.start();
    wait_ready_since(&d, 0);
    let db_url = format!("sqlite://{}", d.dir.path().join("supportd.db").display());
    let mut db = sqlx::SqliteConnection::connect(&db_url)
        .await
        .expect("connect");
    let work = (n + new) as u64;
    let mut points: Vec<u64> = (0..kills).map(|_| 1 + rng.next() % (work - 1)).collect();
    points.sort_unstable();
    let mut kill_times = Vec::new();
    let mut refusal_times = Vec::new();
    let mut sink_up = true;
    let mut next_toggle = Instant::now() + rng.millis(200, 1500);
    let mut progress_at_kills = Vec::new();
    let mut last_start = 0;
    for point in points {
        let mut last = (progress(&mut db).await, Instant::now());
        loop {
            if Instant::now() >= next_toggle {
                if sink_up {
                    sink.stop();
                    refusal_times.push(SystemTime::now());
                    next_toggle = Instant::now() + rng.millis(200, 1000);
                } else {
                    sink.start_again();
                    next_toggle = Instant::now() + rng.millis(200, 1500);
                }
                sink_up = !sink_up;
            }
            let now = progress(&mut db).await;
            if now != last.0 {
                last = (now, Instant::now());
            }
            if now >= point || last.1.elapsed() > Duration::from_secs(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        std::thread::sleep(rng.millis(0, 20));
        d.kill9();
        kill_times.push(SystemTime::now());
        progress_at_kills.push(progress(&mut db).await);
        std::thread::sleep(rng.millis(0, 300));
        last_start = d.log().len();
        d.start();
    }
    if !sink_up {
        sink.start_again();
    }
    let chaos_took = started.elapsed();
    // The last start has its signal handlers (a SIGTERM before them would end it by signal).
    wait_ready_since(&d, last_start);

    // Everything leaves the inbox: processed or quarantined.
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(200 * n as u64);
    loop {
        let inbox = dovecot.count(USER, "INBOX").await;
        let processed = dovecot.count(USER, "Processed").await;
        let quarantined = dovecot.count(USER, "Quarantine").await;
        if inbox == 0 && processed + quarantined >= n {
            assert_eq!(
                processed,
                new + replies,
                "Processed holds each good mail once"
            );
            assert_eq!(
                quarantined, unparseable,
                "Quarantine holds each bad mail once"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "INBOX {inbox}, Processed {processed}, Quarantine {quarantined} of {n}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ingest_took = started.elapsed();
    let folders: BTreeSet<String> = dovecot.folders(USER).await.into_iter().collect();
    let expected: BTreeSet<String> = ["INBOX", "Processed", "Quarantine"]
        .map(String::from)
        .into();
    assert_eq!(folders, expected);

    // The mail in flight at a kill waits for its lease (2 min), and mail refused by the relay
    // for its backoff: tests/daemon.rs proves those in real time. Here they are fast-forwarded
    // (due now) while the daemon is stopped, and a last start sends what is left.
    let (status, _) = d.terminate();
    assert!(status.success(), "{status:?}\n{}", d.log());
    let fast_forwarded = sqlx::query(
        "UPDATE outbox SET next_attempt_at = CAST(strftime('%s', 'now') AS INTEGER) WHERE status = 'queued'",
    )
    .execute(&mut db)
    .await
    .expect("fast-forward")
    .rows_affected();
    let offset = d.log().len();
    d.start();
    wait_ready_since(&d, offset);
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(50 * n as u64);
    loop {
        let queued: i64 = sqlx::query("SELECT COUNT(*) FROM outbox WHERE status <> 'sent'")
            .fetch_one(&mut db)
            .await
            .expect("count")
            .get(0);
        if queued == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{queued} outbox rows not sent\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_sent_took = started.elapsed();
    let (status, _) = d.terminate();
    assert!(status.success(), "{status:?}\n{}", d.log());
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");

    // Every message exactly once: its own ticket, or a reply on its original's ticket.
    let rows = sqlx::query(
        "SELECT m.message_id, t.number, m.internal FROM messages m JOIN tickets t ON t.id = m.ticket_id
          WHERE m.direction = 'inbound'",
    )
    .fetch_all(&mut db)
    .await
    .expect("messages");
    let stored: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    assert_eq!(rows.len(), stored.len(), "a Message-ID stored twice");
    assert_eq!(
        rows.len(),
        new + replies,
        "one inbound message per good mail"
    );
    let tickets: i64 = sqlx::query("SELECT COUNT(*) FROM tickets")
        .fetch_one(&mut db)
        .await
        .expect("tickets")
        .get(0);
    assert_eq!(tickets as usize, new, "one ticket per new mail");
    for i in (0..n).filter(|&i| kind(i) == Kind::Reply) {
        assert_eq!(
            stored.get(&message_id(i)),
            stored.get(&message_id(i - 1)),
            "message {i} is a reply on its original's ticket"
        );
    }
    for i in (0..n).filter(|&i| kind(i) == Kind::New) {
        assert!(stored.contains_key(&message_id(i)), "message {i} stored");
    }
    let quarantined: i64 = sqlx::query("SELECT COUNT(*) FROM quarantine")
        .fetch_one(&mut db)
        .await
        .expect("quarantine")
        .get(0);
    assert_eq!(quarantined as usize, unparseable);

    // Every ack delivered: one outbox row per ticket, all sent, each reached its requester.
    let acks: Vec<(String, String)> =
        sqlx::query("SELECT message_id, recipients FROM outbox WHERE kind = 'ack'")
            .fetch_all(&mut db)
            .await
            .expect("outbox")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    let outbox_rows: i64 = sqlx::query("SELECT COUNT(*) FROM outbox")
        .fetch_one(&mut db)
        .await
        .expect("outbox")
        .get(0);
    assert_eq!(acks.len(), new, "one ack per ticket");
    assert_eq!(outbox_rows as usize, new, "nothing but acks queued");
    let got = deliveries(&sink);
    let mut by_id: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
    for g in &got {
        by_id.entry(g.message_id.as_str()).or_default().push(g);
    }
    for (id, to) in &acks {
        let copies = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("ack {id} to {to} never arrived"));
        assert!(copies.iter().all(|c| c.rcpt_to == vec![to.clone()]), "{id}");
    }
    let requesters: BTreeSet<&str> = acks.iter().map(|(_, to)| to.as_str()).collect();
    assert_eq!(requesters.len(), new, "each requester acknowledged");
    assert_eq!(by_id.len(), new, "nothing but our acks arrived");

    // Duplicates: only the mail in flight when the daemon was killed (or when the relay went
    // away just after taking it): its first copy arrived shortly before that event.
    let window = Duration::from_secs(3);
    let mut at_kills = 0;
    let mut at_refusals = 0;
    for (id, copies) in &by_id {
        if copies.len() < 2 {
            continue;
        }
        let first = copies.iter().map(|c| c.at).min().expect("a copy");
        if kill_times.iter().any(|&k| soon_after(first, k, window)) {
            at_kills += copies.len() - 1;
        } else if refusal_times.iter().any(|&r| soon_after(first, r, window)) {
            at_refusals += copies.len() - 1;
        } else {
            panic!(
                "{id} arrived {} times, the first not in flight at a kill or a relay refusal",
                copies.len()
            );
        }
    }
    let duplicates = got.len() - by_id.len();
    assert_eq!(duplicates, at_kills + at_refusals);
    assert!(
        at_kills as u64 <= kills,
        "at most one mail is in flight per kill: {at_kills} duplicates for {kills} kills"
    );
    println!(
        "chaos: {n} messages ({new} new, {replies} replies, {unparseable} unparseable); \
         {kills} kills (at work done {progress_at_kills:?} of {work}), {} relay refusals; \
         {duplicates} duplicate deliveries ({at_kills} in flight at a kill, {at_refusals} at a \
         refusal); {fast_forwarded} queued rows fast-forwarded; chaos phase {:.1} s, inbox \
         empty after {:.1} s, every ack sent after {:.1} s; CHAOS_SEED={seed}",
        refusal_times.len(),
        chaos_took.as_secs_f64(),
        ingest_took.as_secs_f64(),
        all_sent_took.as_secs_f64(),
    );
}
