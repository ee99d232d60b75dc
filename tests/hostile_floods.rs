//! Hostile mail, issue 9 findings 4-7, through the built binary (offline `ingest`): a
//! collaborator flood, an address the composer cannot write, rate limits that `+detail`
//! must not dodge, a notification flood from one sender, and attachments that must not be
//! copied into every notification. Each test asserts the safe outcome: what is queued to
//! whom, what the ticket's history records, and (where the issue timed it) a generous bound.
//!
//! Agent replies here are verified the way agent mail must be: an `Authentication-Results`
//! header of our `authserv_id` with `dmarc=pass` for the agent's domain, threaded through the
//! agent-key address (`support+a-KEY@`) of the notification's Reply-To and its Message-ID.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const AUTHSERV: &str = "mx.vendor.example";

/// `[policy]` requiring authenticated agents, plus the agents, plus `limits`.
fn config(limits: &str, agents: &[(&str, &str)]) -> String {
    let mut text = format!(
        "[limits]\n{limits}\n\n[policy]\nagents_require_auth = true\nauthserv_id = \"{AUTHSERV}\"\n"
    );
    for (email, name) in agents {
        text.push_str(&format!(
            "\n[[agent]]\nemail = \"{email}\"\nname = \"{name}\"\n"
        ));
    }
    text
}

fn alice_env(limits: &str) -> Env {
    Env::with_config(&config(limits, &[("alice@vendor.example", "Alice Agent")]))
}

fn of_kind(env: &Env, kind: &str) -> Vec<Value> {
    env.outbox()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect()
}

fn id(o: &Value) -> i64 {
    o["id"].as_i64().expect("outbox id")
}

fn events(t: &Value) -> Vec<(String, String)> {
    t["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn event<'a>(events: &'a [(String, String)], kind: &str) -> Option<&'a str> {
    events
        .iter()
        .find(|(k, _)| k == kind)
        .map(|(_, d)| d.as_str())
}

fn collaborators(t: &Value) -> Vec<String> {
    t["collaborators"]
        .as_array()
        .expect("collaborators")
        .iter()
        .map(|p| p["email"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The address inside `Name <address>`.
fn bare(mailbox: &str) -> String {
    mailbox
        .rsplit('<')
        .next()
        .unwrap_or(mailbox)
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// Alice's verified answer to the notification about `ticket`, through its agent-key
/// Reply-To and In-Reply-To its Message-ID. `mime` is extra header lines (with CRLF) and
/// `body` the rest.
fn alice_answers(env: &Env, ticket: i64, msg_id: &str, mime: &str, body: &str) -> Value {
    let note = of_kind(env, "notify-agent")
        .into_iter()
        .find(|o| o["ticket"] == ticket)
        .expect("a notification about the ticket");
    let raw = env.outbox_raw(id(&note));
    let reply_to = bare(&header(&raw, "Reply-To").expect("Reply-To"));
    assert!(reply_to.starts_with("support+a-"), "{reply_to}");
    let notification = header(&raw, "Message-ID").expect("Message-ID");
    let mut mail = crlf(&format!(
        "Authentication-Results: {AUTHSERV}; dmarc=pass header.from=vendor.example\n\
         From: Alice Agent <alice@vendor.example>\nTo: {reply_to}\n\
         Subject: Re: [#{ticket}] your ticket\nMessage-ID: <{msg_id}>\n\
         In-Reply-To: {notification}\nReferences: {notification}\n"
    ));
    mail.extend_from_slice(mime.as_bytes());
    mail.extend_from_slice(b"\r\n");
    mail.extend_from_slice(body.as_bytes());
    env.ingest(&mail)
}

/// Ingests every mail in one `supportd ingest` run; the outcomes in order.
fn ingest_all(env: &Env, tag: &str, mails: &[Vec<u8>]) -> Vec<Value> {
    let mut paths = Vec::new();
    for (i, m) in mails.iter().enumerate() {
        let p = env.dir.path().join(format!("{tag}-{i:04}.eml"));
        std::fs::write(&p, m).expect("write mail");
        paths.push(p.to_str().expect("UTF-8 path").to_string());
    }
    let mut args = vec!["ingest"];
    args.extend(paths.iter().map(String::as_str));
    let out = env.ok(&args);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), mails.len(), "{out}");
    lines
}

fn db(env: &Env) -> rusqlite::Connection {
    let path = env.db_url.trim_start_matches("sqlite://");
    rusqlite::Connection::open(path).expect("open the test database")
}

fn recipients(o: &Value) -> Vec<String> {
    o["to"]
        .as_str()
        .expect("to")
        .split(',')
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Finding 4: a collaborator flood.

#[test]
fn ten_thousand_cc_keep_twenty_collaborators_and_replies_stay_small_and_fast() {
    let env = alice_env("");
    let cc: Vec<String> = (0..10_000)
        .map(|i| format!("staff{i}@cc.example"))
        .collect();
    let mail = crlf(&format!(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\nCc: {}\n\
         Subject: pager numbers changed\nMessage-ID: <flood-cc@clinic.example>\n\n\
         Please update the paging numbers.\n",
        cc.join(",\n ")
    ));
    let started = Instant::now();
    let n = created(&env.ingest(&mail));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "ticket took {took:?}");

    let t = env.ticket(n);
    let kept = collaborators(&t);
    assert_eq!(kept, cc[..20].to_vec(), "the first 20, in order");
    let ev = events(&t);
    let note = event(&ev, "cc-dropped").expect("a history note of the dropped addresses");
    assert!(
        note.starts_with("9980 To/Cc addresses dropped")
            && note.contains("limits.max_collaborators")
            && note.contains("staff20@cc.example"),
        "{note}"
    );
    // Dropped addresses cost nothing: no user rows for them.
    assert!(env.users().len() < 30, "{} users", env.users().len());

    let started = Instant::now();
    let out = alice_answers(
        &env,
        n,
        "a1@vendor.example",
        "",
        "New numbers are live.\r\n",
    );
    let took = started.elapsed();
    assert_eq!(out["action"], "agent_reply", "{out}");
    assert!(took < Duration::from_secs(30), "agent reply took {took:?}");
    let relays = of_kind(&env, "agent-reply");
    assert_eq!(relays.len(), 1, "one relay: {relays:?}");
    let to = recipients(&relays[0]);
    assert!(to.len() <= 21, "{} recipients", to.len());
    assert_eq!(to[0], "ann@clinic.example");
    assert_eq!(to[1..], cc[..20]);

    // A 21st collaborator by `#cc` is refused, and Alice is told why.
    let out = alice_answers(
        &env,
        n,
        "a2@vendor.example",
        "",
        "#cc zed@clinic.example\r\n\r\nAdding Zed.\r\n",
    );
    assert_eq!(out["action"], "agent_reply", "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("nothing executed or sent"),
        "{out}"
    );
    assert_eq!(collaborators(&env.ticket(n)).len(), 20);
    assert_eq!(of_kind(&env, "agent-reply").len(), 1, "nothing relayed");
    let errors = of_kind(&env, "command-error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["to"], "alice@vendor.example");
    let body = text_body(env.outbox_raw(id(&errors[0])).as_bytes());
    assert!(body.contains("limits.max_collaborators"), "{body}");
}

#[test]
fn max_collaborators_is_configurable() {
    let env = alice_env("max_collaborators = 2");
    let mail = crlf(
        "From: ann@clinic.example\nTo: support@vendor.example, b@clinic.example\n\
         Cc: c@clinic.example, d@clinic.example\nSubject: x\nMessage-ID: <m2@clinic.example>\n\nHi\n",
    );
    let n = created(&env.ingest(&mail));
    let t = env.ticket(n);
    assert_eq!(collaborators(&t), ["b@clinic.example", "c@clinic.example"]);
    let ev = events(&t);
    let note = event(&ev, "cc-dropped").expect("note");
    assert!(note.starts_with("1 To/Cc address dropped"), "{note}");
    assert!(note.contains("d@clinic.example"), "{note}");
}

// ---------------------------------------------------------------------------------------------
// Finding 5: an address the mail composer cannot write.

#[test]
fn an_undeliverable_cc_is_skipped_and_recorded_and_replies_still_go_out() {
    let env = alice_env("");
    let mail = crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Cc: <a..b@x.example>, Carol Diaz <carol@clinic.example>\nSubject: pages late\n\
         Message-ID: <bad-cc@clinic.example>\n\nPages arrive late.\n",
    );
    let n = created(&env.ingest(&mail));
    let t = env.ticket(n);
    assert_eq!(collaborators(&t), ["carol@clinic.example"]);
    let ev = events(&t);
    let note = event(&ev, "cc-skipped").expect("a history note of the skipped address");
    assert!(note.contains("a..b@x.example"), "{note}");

    let out = alice_answers(&env, n, "r1@vendor.example", "", "Looking into it.\r\n");
    assert_eq!(out["action"], "agent_reply", "{out}");
    let relays = of_kind(&env, "agent-reply");
    assert_eq!(relays.len(), 1);
    assert_eq!(relays[0]["to"], "ann@clinic.example,carol@clinic.example");
    assert!(env.quarantine().is_empty(), "{:?}", env.quarantine());

    // `#cc` of such an address is refused with a reason Alice can act on.
    let out = alice_answers(
        &env,
        n,
        "r2@vendor.example",
        "",
        "#cc a..b@x.example\r\n\r\nAdding them.\r\n",
    );
    assert!(
        out["reason"].as_str().unwrap().contains("nothing executed"),
        "{out}"
    );
    let errors = of_kind(&env, "command-error");
    assert_eq!(errors.len(), 1);
    let body = text_body(env.outbox_raw(id(&errors[0])).as_bytes());
    assert!(
        body.contains("mail cannot be sent to a..b@x.example"),
        "{body}"
    );
}

#[test]
fn a_bad_recipient_stored_before_the_fix_does_not_stop_the_relay() {
    let env = alice_env("");
    let mail = crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Cc: carol@clinic.example\nSubject: pages late\nMessage-ID: <old@clinic.example>\n\n\
         Pages arrive late.\n",
    );
    let n = created(&env.ingest(&mail));
    // What the old code stored for `Cc: <a..b@x.example>`.
    db(&env)
        .execute_batch(&format!(
            "INSERT INTO users (email, email_key, created_at) VALUES ('a..b@x.example', 'a..b@x.example', 0);
             INSERT INTO participants (ticket_id, user_id)
                  SELECT t.id, u.id FROM tickets t, users u
                   WHERE t.number = {n} AND u.email_key = 'a..b@x.example';"
        ))
        .expect("insert the old row");
    assert_eq!(collaborators(&env.ticket(n)).len(), 2);

    let out = alice_answers(&env, n, "r1@vendor.example", "", "Fixed.\r\n");
    assert_eq!(out["action"], "agent_reply", "{out}");
    let relays = of_kind(&env, "agent-reply");
    assert_eq!(relays.len(), 1, "relayed, not quarantined: {out}");
    assert_eq!(relays[0]["to"], "ann@clinic.example,carol@clinic.example");
    let raw = env.outbox_raw(id(&relays[0]));
    assert!(!raw.contains("a..b@"), "{raw}");
    let ev = events(&env.ticket(n));
    let note = event(&ev, "recipient-skipped").expect("what was left out is recorded");
    assert!(
        note.contains("agent-reply") && note.contains("a..b@x.example"),
        "{note}"
    );
    assert!(env.quarantine().is_empty());
}

#[test]
fn the_outbox_stores_recipients_as_a_list() {
    let env = alice_env("");
    let mail = crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Cc: \"o'neil, pat\" <Pat.ONeil+desk@Clinic.example>\nSubject: x\n\
         Message-ID: <list@clinic.example>\n\nHello\n",
    );
    let n = created(&env.ingest(&mail));
    alice_answers(&env, n, "r1@vendor.example", "", "Done.\r\n");
    let relay = &of_kind(&env, "agent-reply")[0];
    let rows: Vec<(i64, String, String)> = db(&env)
        .prepare(
            "SELECT position, address, rate_key FROM outbox_recipients WHERE outbox_id = ?1 ORDER BY position",
        )
        .expect("prepare")
        .query_map([id(relay)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        rows,
        [
            (0, "ann@clinic.example".into(), "ann@clinic.example".into()),
            (
                1,
                "pat.oneil+desk@clinic.example".into(),
                "pat.oneil@clinic.example".into()
            ),
        ]
    );
}

#[test]
fn migration_0008_splits_the_old_comma_joined_recipients_once() {
    use sqlx::Connection;
    let env = Env::new();
    // The schema before 0008 (every earlier migration), with old-style rows.
    let old = env.dir.path().join("old-migrations");
    std::fs::create_dir(&old).expect("mkdir");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&dir).expect("migrations") {
        let name = entry.expect("entry").file_name();
        if name.to_string_lossy().as_ref() < "0008" {
            std::fs::copy(dir.join(&name), old.join(&name)).expect("copy");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let options = env
            .db_url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("url")
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("db");
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .expect("old migrations")
            .run(&mut c)
            .await
            .expect("migrate to 0007");
        sqlx::raw_sql(
            "INSERT INTO outbox (kind, message_id, recipients, subject, raw, next_attempt_at, created_at)
                  VALUES ('agent-reply', 'r1@x', 'ann@clinic.example,Bob+7@clinic.example, we\"ird\\x@y.example', 's', x'53', 1, 100),
                         ('ack', 'r2@x', 'solo@clinic.example', 's', x'53', 1, 200);",
        )
        .execute(&mut c)
        .await
        .expect("old rows");
        c.close().await.expect("close");
    });
    assert_success(&env.run(&["migrate"]), "migrate to 0008");
    let rows: Vec<(String, i64, String, String, i64)> = db(&env)
        .prepare(
            "SELECT o.message_id, r.position, r.address, r.rate_key, r.created_at
               FROM outbox_recipients r JOIN outbox o ON o.id = r.outbox_id ORDER BY o.id, r.position",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let want: Vec<(String, i64, String, String, i64)> = vec![
        (
            "r1@x".into(),
            0,
            "ann@clinic.example".into(),
            "ann@clinic.example".into(),
            100,
        ),
        (
            "r1@x".into(),
            1,
            "Bob+7@clinic.example".into(),
            "bob@clinic.example".into(),
            100,
        ),
        (
            "r1@x".into(),
            2,
            "we\"ird\\x@y.example".into(),
            "we\"ird\\x@y.example".into(),
            100,
        ),
        (
            "r2@x".into(),
            0,
            "solo@clinic.example".into(),
            "solo@clinic.example".into(),
            200,
        ),
    ];
    assert_eq!(rows, want);
    // `outbox list` still shows the comma-joined form (SPEC §2 `to`).
    assert_eq!(env.outbox()[1]["to"], "solo@clinic.example");
}

// ---------------------------------------------------------------------------------------------
// Finding 6: rate limits.

#[test]
fn plus_detail_addresses_share_one_acknowledgement_limit() {
    let env = alice_env("");
    let mails: Vec<Vec<u8>> = (1..=30)
        .map(|i| {
            let from = if i % 2 == 0 { "Bob" } else { "bob" };
            crlf(&format!(
                "From: {from}+{i}@Clinic.example\nTo: support@vendor.example\n\
                 Subject: question {i}\nMessage-ID: <plus{i}@clinic.example>\n\nHello {i}\n"
            ))
        })
        .collect();
    let outcomes = ingest_all(&env, "plus", &mails);
    assert!(outcomes.iter().all(|o| o["action"] == "created"));
    let acks = of_kind(&env, "ack");
    assert_eq!(acks.len(), 5, "acks_per_sender_per_hour = 5: {acks:?}");
    let limited = outcomes
        .iter()
        .filter(|o| {
            o["reason"]
                .as_str()
                .is_some_and(|r| r.contains("rate limit"))
        })
        .count();
    assert_eq!(limited, 25);
}

/// Shifts every recorded notification `minutes` into the past: time passing, offline.
fn age_notices(env: &Env, minutes: i64) {
    db(env)
        .execute("UPDATE agent_notices SET at = at - ?1", [minutes * 60])
        .expect("age the notices");
}

/// Ticket numbers named in `kind` rows to `agent`: (rows, numbers with repetition).
fn named(env: &Env, kind: &str, agent: &str) -> (usize, Vec<i64>) {
    let rows: Vec<Value> = of_kind(env, kind)
        .into_iter()
        .filter(|o| o["to"] == agent)
        .collect();
    let mut numbers = Vec::new();
    for o in &rows {
        if kind == "notify-agent" {
            numbers.push(o["ticket"].as_i64().expect("ticket"));
        } else {
            let body = text_body(env.outbox_raw(id(o)).as_bytes());
            for line in body.lines() {
                if let Some(rest) = line.strip_prefix("[#") {
                    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    numbers.push(n.parse().expect("a ticket number"));
                }
            }
        }
    }
    (rows.len(), numbers)
}

#[test]
fn a_mail_flood_from_one_sender_collapses_into_digests_and_every_ticket_is_named() {
    let env = Env::with_config(&config(
        "notifications_per_sender_per_hour = 5\nnotification_digest_minutes = 15",
        &[
            ("alice@vendor.example", "Alice Agent"),
            ("dave@vendor.example", "Dave Desk"),
        ],
    ));
    let flood = |round: usize| -> Vec<Vec<u8>> {
        (0..40)
            .map(|i| {
                crlf(&format!(
                    "From: Monitor <monitor+{round}-{i}@clinic.example>\nTo: support@vendor.example\n\
                     Subject: disk alert {round}-{i}\nMessage-ID: <alert{round}-{i}@clinic.example>\n\n\
                     Disk almost full on node {i}.\n"
                ))
            })
            .collect()
    };
    let agents = ["alice@vendor.example", "dave@vendor.example"];

    // 40 mails at once: 5 notifications each, 35 held, no digest yet (none has waited).
    let round1 = ingest_all(&env, "r1", &flood(1));
    assert!(round1.iter().all(|o| o["action"] == "created"));
    for a in agents {
        assert_eq!(named(&env, "notify-agent", a).0, 5, "{a}");
        assert_eq!(named(&env, "notify-digest", a).0, 0, "{a}");
    }
    let held = round1[5]["ticket"].as_i64().unwrap();
    let ev = events(&env.ticket(held));
    let note = event(&ev, "notify-held").expect("the held notification is recorded");
    assert!(
        note.contains("monitor@clinic.example") && note.contains("5 notifications"),
        "{note}"
    );

    // 20 minutes later the next mail from the sender sends the digest of the 35 (and itself).
    age_notices(&env, 20);
    ingest_all(&env, "r2", &flood(2));
    for a in agents {
        assert_eq!(named(&env, "notify-agent", a).0, 5, "{a}");
        let (rows, numbers) = named(&env, "notify-digest", a);
        assert_eq!(rows, 1, "{a}");
        assert_eq!(numbers.len(), 36, "{a}: {numbers:?}");
    }

    // An hour later the limit starts over: 5 more individual notifications, and the 39
    // still held go out in a digest with the first of them.
    age_notices(&env, 61);
    ingest_all(&env, "r3", &flood(3));
    for a in agents {
        assert_eq!(named(&env, "notify-agent", a).0, 10, "{a}");
        assert_eq!(named(&env, "notify-digest", a).0, 2, "{a}");
    }

    // The flood stops: the daemon's sweep sends the last 35 once they have waited.
    let pipeline = |minutes: i64| {
        let config = supportd::config::Config::load(&env.config).expect("config");
        let mut p = supportd::setup::build_pipeline(config).expect("pipeline");
        p.clock = std::sync::Arc::new(supportd::clock::FixedClock(
            chrono::Utc::now() + chrono::Duration::minutes(minutes),
        ));
        p
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(supportd::store::Store::connect(&env.db_url))
        .expect("store");
    assert_eq!(pipeline(5).send_due_digests(&store).expect("sweep"), 0);
    assert_eq!(pipeline(16).send_due_digests(&store).expect("sweep"), 2);
    assert_eq!(pipeline(40).send_due_digests(&store).expect("sweep"), 0);

    // Every one of the 120 tickets reached each agent exactly once: by its own notification
    // or in a digest. 13 mails per agent instead of 120.
    let all: BTreeSet<i64> = env
        .tickets()
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    assert_eq!(all.len(), 120);
    for a in agents {
        let (singles, mut numbers) = named(&env, "notify-agent", a);
        let (digests, in_digests) = named(&env, "notify-digest", a);
        assert_eq!((singles, digests), (10, 3), "{a}");
        numbers.extend(in_digests);
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for n in numbers {
            *counts.entry(n).or_default() += 1;
        }
        assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), all, "{a}");
        assert!(counts.values().all(|&c| c == 1), "{a}: {counts:?}");
    }
    let digest = &of_kind(&env, "notify-digest")[0];
    assert!(digest["ticket"].is_null());
    let raw = env.outbox_raw(id(digest));
    assert_eq!(
        header(&raw, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    let subject = header(&raw, "Subject").unwrap();
    assert!(
        subject.starts_with("Digest: 36 mails from monitor@clinic.example"),
        "{subject}"
    );
    let body = text_body(raw.as_bytes());
    assert!(body.contains("    answer:  support+a-"), "{body}");
    // Each ticket's history says which digest named it.
    let ev = events(&env.ticket(held));
    assert!(
        ev.iter()
            .any(|(k, d)| k == "notified" && d.contains("digest: alice@vendor.example")),
        "{ev:?}"
    );
}

#[test]
fn digest_matches_golden() {
    use chrono::TimeZone;
    use supportd::mail::address::EmailAddress;
    use supportd::templates::Templates;
    use supportd::tickets::desk::Desk;
    use supportd::tickets::notify::{DigestEntry, DigestFacts, NotifyEvent, StaffMember};
    use supportd::tickets::outbound::{Content, Mail, MailKind, Stamp};
    use supportd::tickets::{AccessKey, TicketTag};

    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 23, 14, 5, 9)
        .unwrap();
    let support = EmailAddress::parse("support@vendor.example").unwrap();
    let tag = TicketTag::new("[#{number}]").unwrap();
    let entries = vec![
        DigestEntry {
            number: 1042,
            event: NotifyEvent::NewTicket,
            subject: "Disk almost full on node 7".into(),
            category: "general".into(),
            urgency: 3,
            at: now - chrono::Duration::minutes(16),
            agent_key: AccessKey::parse("a7m2qyx4t6w3rbp5n2ja").unwrap(),
        },
        DigestEntry {
            number: 1040,
            event: NotifyEvent::CustomerReply,
            subject: "Pages not arriving on 4 West".into(),
            category: "routing".into(),
            urgency: 1,
            at: now - chrono::Duration::minutes(2),
            agent_key: AccessKey::parse("a7m2qyx4t6w3rbp5n2jb").unwrap(),
        },
    ];
    let facts = DigestFacts {
        sender: "monitor@stbrigid-med.example".into(),
        limit: 10,
        entries,
    };
    let to = StaffMember {
        email: EmailAddress::parse("alice@vendor.example").unwrap(),
        name: "Alice Agent".into(),
        categories: vec![],
    };
    let desk = Desk::new(
        "Vendor Support",
        support,
        &[],
        "https://help.vendor.example",
        "",
        tag,
    );
    let mail = Mail {
        kind: MailKind::NotifyDigest,
        ticket: None,
        stamp: Stamp {
            message_id: "supportd.digest1@vendor.example".into(),
            date: now,
        },
        to_agents: true,
        history: None,
        with_inbound_attachments: false,
        content: Content::Digest { facts, to },
    };
    let out = mail
        .render(&desk, &Templates::load(None).unwrap(), &[])
        .unwrap();
    let bytes = out.to_bytes().unwrap();
    if let Err(diff) = check_golden(&fixture("golden/floods-notify-digest.eml"), &bytes) {
        panic!("{diff}");
    }
}

// ---------------------------------------------------------------------------------------------
// Finding 7: attachments.

/// A customer's mail with a text attachment of about `len` bytes.
fn mail_with_log(from: &str, msg_id: &str, len: usize) -> Vec<u8> {
    let line = "07:58:01.123 gateway: queue stalled, retrying delivery to pager 4711\n";
    let log = line.repeat(len / line.len() + 1);
    crlf(&format!(
        "From: {from}\nTo: support@vendor.example\nCc: carol@clinic.example\n\
         Subject: pages stuck, log attached\nMessage-ID: <{msg_id}>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=sep\n\n--sep\nContent-Type: text/plain\n\n\
         The gateway log is attached.\n--sep\nContent-Type: text/plain; name=gateway.log\n\
         Content-Disposition: attachment; filename=gateway.log\n\n{log}--sep--\n"
    ))
}

#[test]
fn notifications_link_attachments_instead_of_copying_them() {
    let agents: Vec<(String, String)> = (0..11)
        .map(|i| (format!("agent{i}@vendor.example"), format!("Agent {i}")))
        .collect();
    let agent_refs: Vec<(&str, &str)> = agents
        .iter()
        .map(|(e, n)| (e.as_str(), n.as_str()))
        .collect();
    let env = Env::with_config(&config("", &agent_refs));
    let mail = mail_with_log(
        "Ann Lee <ann@clinic.example>",
        "big@clinic.example",
        2_700_000,
    );
    let n = created(&env.ingest(&mail));
    let t = env.ticket(n);
    let size = t["messages"][0]["attachments"][0]["size"].as_i64().unwrap();
    assert!(size > 2_700_000, "{size}");
    let key = t["access_key"].as_str().unwrap();

    let notes = of_kind(&env, "notify-agent");
    assert_eq!(notes.len(), 11);
    for o in &notes {
        let raw = env.outbox_raw(id(o));
        assert!(raw.len() < 20_000, "a notification of {} bytes", raw.len());
        assert!(!raw.contains("queue stalled"), "the bytes are not copied");
        let body = text_body(raw.as_bytes());
        assert!(
            body.contains(&format!("gateway.log (text/plain, {size} bytes)")),
            "{body}"
        );
        let link = format!("{PUBLIC_URL}/t/{key}/a/");
        let at = body
            .find(&link)
            .unwrap_or_else(|| panic!("no link in {body}"));
        let id_digits: String = body[at + link.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(!id_digits.is_empty(), "{body}");
    }
}

#[test]
fn an_agent_reply_carries_its_attachment_once_to_all_recipients() {
    let env = alice_env("");
    let n = created(&env.ingest(&crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Cc: carol@clinic.example\nSubject: need the guide\nMessage-ID: <g@clinic.example>\n\n\
         Where is the guide?\n",
    )));
    let guide = "Step 1: open the console. Step 2: press reset.\n".repeat(6_000);
    let out = alice_answers(
        &env,
        n,
        "guide@vendor.example",
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n",
        &format!(
            "--x\r\nContent-Type: text/plain\r\n\r\nThe guide is attached.\r\n--x\r\n\
             Content-Type: text/plain; name=\"guide.txt\"\r\n\
             Content-Disposition: attachment; filename=\"guide.txt\"\r\n\r\n{}\r\n--x--\r\n",
            guide.replace('\n', "\r\n")
        ),
    );
    assert_eq!(out["action"], "agent_reply", "{out}");
    let relays = of_kind(&env, "agent-reply");
    assert_eq!(relays.len(), 1, "one row for requester and collaborators");
    assert_eq!(relays[0]["to"], "ann@clinic.example,carol@clinic.example");
    let raw = env.outbox_raw(id(&relays[0]));
    assert_eq!(
        raw.matches("filename=\"guide.txt\"").count(),
        1,
        "attached once"
    );
    assert!(
        raw.len() > guide.len() && raw.len() < guide.len() * 2,
        "{} bytes for a {}-byte guide",
        raw.len(),
        guide.len()
    );
}
