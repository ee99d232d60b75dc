//! Whole scenarios through the built binary on a private SQLite database: new tickets and
//! their acknowledgements, every threading rule, loops, bounces, bulk mail, rate limits,
//! reopening, and the CLI's configuration and database failure modes (SPEC §1–§3).

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::*;
use serde_json::Value;
use supportd::triage::Rules;

fn rules() -> Rules {
    Rules::from_toml(include_str!("../config/triage.toml"), "config/triage.toml")
        .expect("built-in rules")
}

/// The ack queued for `ticket`: (outbox row, raw bytes).
fn ack_of(env: &Env, ticket: i64) -> (Value, String) {
    let acks: Vec<Value> = env
        .outbox()
        .into_iter()
        .filter(|o| o["ticket"] == ticket && o["kind"] == "ack")
        .collect();
    assert_eq!(acks.len(), 1, "exactly one ack for #{ticket}: {acks:?}");
    let row = acks.into_iter().next().expect("one ack");
    let raw = env.outbox_raw(row["id"].as_i64().expect("outbox id"));
    (row, raw)
}

/// The Message-ID (without brackets) of a raw message.
fn message_id(raw: &str) -> String {
    header(raw, "Message-ID")
        .expect("Message-ID header")
        .trim_matches(['<', '>'])
        .to_string()
}

fn messages(ticket: &Value) -> &Vec<Value> {
    ticket["messages"].as_array().expect("messages array")
}

/// A plain customer mail; `extra` is more header lines (each ending in `\n`).
fn mail(from: &str, to: &str, subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    crlf(&format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nDate: Tue, 24 Nov 2026 09:30:00 -0500\n\
         Message-ID: <{id}>\n{extra}MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    ))
}

const RAY: &str = "Ray Donnelly <rdonnelly@stbrigid-med.example>";
const RAY_ID: &str = "20261118053700.1ca5ebf0@mail.stbrigid-med.example";

/// Ingests the urgent console-pages mail: (ticket number, ticket JSON, ack raw).
fn urgent_ticket(env: &Env) -> (i64, Value, String) {
    let n = created(&env.ingest_file(&fixture("mail/console-pages-queued.eml")));
    let (_, raw) = ack_of(env, n);
    (n, env.ticket(n), raw)
}

#[test]
fn new_ticket_is_acknowledged_with_every_fact() {
    let env = Env::new();
    let outcome = env.ingest_file(&fixture("mail/console-pages-queued.eml"));
    let n = created(&outcome);
    assert_eq!(outcome["message_id"], RAY_ID);
    assert!(outcome["reason"].is_null(), "{outcome}");

    let t = env.ticket(n);
    assert_eq!(t["number"], n);
    assert_eq!(t["status"], "open");
    assert_eq!(t["subject"], "console pages stuck in queued");
    assert_eq!(t["requester"]["email"], "rdonnelly@stbrigid-med.example");
    assert_eq!(t["requester"]["name"], "Ray Donnelly");
    assert_eq!(t["category"], "routing");
    let urgency = t["urgency"].as_u64().expect("urgency") as u8;
    assert!(urgency <= 2, "pages to doctors stopped: level 1-2, got {t}");
    let key = t["access_key"].as_str().expect("access key").to_string();
    assert!(key.len() >= 16, "access key too short: {key}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "access key must be URL-safe: {key}"
    );
    assert!(!key.contains(&n.to_string()), "key derived from number?");
    assert!(t["first_response_due"].is_string() && t["resolution_due"].is_string());
    let msgs = messages(&t);
    assert_eq!(msgs[0]["message_id"], RAY_ID);
    assert_eq!(msgs[0]["direction"], "inbound");
    assert_eq!(msgs[0]["internal"], false);
    assert!(msgs[0]["body"]
        .as_str()
        .unwrap_or_default()
        .contains("sitting at\n\"Queued\""));

    let list = env.tickets();
    assert_eq!(list.len(), 1);
    for k in [
        "number",
        "subject",
        "status",
        "category",
        "urgency",
        "requester",
    ] {
        assert!(list[0].get(k).is_some(), "tickets list lacks {k}: {list:?}");
    }

    let (row, raw) = ack_of(&env, n);
    assert_eq!(row["to"], "rdonnelly@stbrigid-med.example");
    assert_eq!(row["status"], "queued");
    assert_eq!(row["attempts"], 0);
    assert_eq!(
        row["subject"],
        format!("[#{n}] console pages stuck in queued")
    );
    let from = header(&raw, "From").expect("From");
    assert!(from.contains(SUPPORT), "{from}");
    assert_eq!(
        header(&raw, "Subject").as_deref(),
        Some(format!("[#{n}] console pages stuck in queued").as_str())
    );
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some(format!("<{RAY_ID}>").as_str())
    );
    assert!(header(&raw, "References")
        .expect("References")
        .contains(&format!("<{RAY_ID}>")));
    assert_eq!(
        header(&raw, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    let ack_id = message_id(&raw);
    assert!(
        ack_id.ends_with("@vendor.example"),
        "our own Message-ID: {ack_id}"
    );
    assert_ne!(ack_id, RAY_ID);
    assert!(header(&raw, "To")
        .expect("To")
        .contains("rdonnelly@stbrigid-med.example"));

    let rules = rules();
    let level = rules.level(urgency).expect("level");
    let category = rules.category("routing").expect("category");
    let body = text_body(raw.as_bytes());
    for needle in [
        n.to_string(),
        key.clone(),
        format!("{PUBLIC_URL}/t/{key}"),
        category.name.clone(),
        format!("level {urgency}"),
        format!("{} hour", level.first_response_hours),
        format!("{} hours", level.resolution_hours),
        PHONE.to_string(),
    ] {
        assert!(body.contains(&needle), "ack body lacks {needle:?}:\n{body}");
    }
    assert!(
        body.to_lowercase().contains("call"),
        "phone advice:\n{body}"
    );
    // The ack is part of the ticket's history.
    assert!(messages(&t)
        .iter()
        .any(|m| m["message_id"] == ack_id.as_str() && m["direction"] == "outbound"));
}

#[test]
fn routine_ticket_gets_no_phone_advice() {
    let env = Env::new();
    let n = created(&env.ingest_file(&fixture("mail/office-address-change.eml")));
    let t = env.ticket(n);
    assert_eq!(t["category"], "user-info");
    assert_eq!(t["urgency"], 4);
    let (_, raw) = ack_of(&env, n);
    assert_eq!(
        header(&raw, "Subject").as_deref(),
        Some(format!("[#{n}] Fwd: new office address").as_str())
    );
    let body = text_body(raw.as_bytes());
    assert!(body.contains("level 4"), "{body}");
    assert!(
        !body.contains("call support now"),
        "no advice to call now at level 4:\n{body}"
    );
    // Only the line for a triage miss: whom to call if patient care is affected after all.
    assert!(
        body.contains(&format!(
            "If patient care is affected right now, call {PHONE}."
        )),
        "{body}"
    );
    assert!(header(&raw, "Importance").is_none(), "not urgent:\n{raw}");
}

#[test]
fn same_message_twice_is_a_duplicate() {
    let env = Env::new();
    let path = fixture("mail/console-pages-queued.eml");
    let n = created(&env.ingest_file(&path));
    let before = env.ticket(n);
    let again = env.ingest_file(&path);
    assert_eq!(again["action"], "duplicate", "{again}");
    assert_eq!(again["message_id"], RAY_ID);
    // Through stdin too (an MTA re-delivering): same bytes, same answer.
    assert_eq!(
        env.ingest_stdin(&std::fs::read(&path).expect("fixture"))["action"],
        "duplicate"
    );
    assert_eq!(env.outbox().len(), 1, "nothing new in the outbox");
    assert_eq!(env.tickets().len(), 1);
    assert_eq!(messages(&env.ticket(n)).len(), messages(&before).len());
}

#[test]
fn reply_threads_by_in_reply_to_the_customer_mail_and_our_ack() {
    let env = Env::new();
    let (n, _, ack) = urgent_ticket(&env);
    let ack_id = message_id(&ack);

    let r1 = env.ingest(&mail(
        RAY,
        SUPPORT,
        "Re: console pages",
        "reply-1@mail.stbrigid-med.example",
        &format!("In-Reply-To: <{RAY_ID}>\n"),
        "Forgot to say: the overhead paging still works.",
    ));
    assert_eq!(r1["action"], "replied", "{r1}");
    assert_eq!(r1["ticket"], n);

    let r2 = env.ingest(&mail(
        RAY,
        SUPPORT,
        "Re: your acknowledgement",
        "reply-2@mail.stbrigid-med.example",
        &format!("In-Reply-To: <{ack_id}>\n"),
        "Called the number, we're on with Sam now.",
    ));
    assert_eq!(r2["action"], "replied", "{r2}");
    assert_eq!(r2["ticket"], n);

    let t = env.ticket(n);
    let ids: Vec<&str> = messages(&t)
        .iter()
        .filter_map(|m| m["message_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"reply-1@mail.stbrigid-med.example"),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"reply-2@mail.stbrigid-med.example"),
        "{ids:?}"
    );
    assert!(messages(&t).iter().any(|m| m["body"]
        .as_str()
        .unwrap_or_default()
        .contains("overhead paging still works")));
    assert_eq!(env.tickets().len(), 1, "replies open no ticket");
    assert_eq!(env.outbox().len(), 1, "replies are not acknowledged");
}

#[test]
fn reply_threads_by_references_only() {
    let env = Env::new();
    let (n, _, ack) = urgent_ticket(&env);
    // The requester's mail client kept only References (oldest first), no In-Reply-To.
    // (A colleague who is no participant would not thread by them: see hostile_agents.rs.)
    let r = env.ingest(&mail(
        RAY,
        SUPPORT,
        "pages",
        "refs-only@mail.stbrigid-med.example",
        &format!(
            "References: <{RAY_ID}>\n <{}> <unrelated@elsewhere.example>\n",
            message_id(&ack)
        ),
        "Still queued here on the third floor.",
    ));
    assert_eq!(r["action"], "replied", "{r}");
    assert_eq!(r["ticket"], n);
    assert_eq!(env.tickets().len(), 1);
}

#[test]
fn reply_threads_by_plus_address_access_key() {
    let env = Env::new();
    let (n, t, ack) = urgent_ticket(&env);
    let key = t["access_key"].as_str().expect("key");
    // The ack's Reply-To is the plus-address, so a plain "reply" lands there.
    let reply_to = header(&ack, "Reply-To").expect("Reply-To");
    let (local, domain) = SUPPORT.split_once('@').expect("address");
    let plus = format!("{local}+{key}@{domain}");
    assert!(reply_to.contains(&plus), "{reply_to}");

    let r = env.ingest(&mail(
        RAY,
        &format!("Vendor Support <{plus}>"),
        "more detail",
        "plus-1@mail.stbrigid-med.example",
        "",
        "The console shows error 0x31 in the status bar.",
    ));
    assert_eq!(r["action"], "replied", "{r}");
    assert_eq!(r["ticket"], n);

    // A key that belongs to no ticket threads nothing.
    let stray = env.ingest(&mail(
        RAY,
        &format!("{local}+aaaaaaaaaaaaaaaaaaaa@{domain}"),
        "another question",
        "plus-2@mail.stbrigid-med.example",
        "",
        "Different topic: how do I export the call log?",
    ));
    assert_ne!(created(&stray), n);
}

#[test]
fn subject_tag_threads_for_participants_only() {
    let env = Env::new();
    let n = created(&env.ingest_file(&fixture("mail/cc-collaborator.eml")));
    let t = env.ticket(n);
    assert!(
        t["collaborators"].as_array().is_some_and(|c| c
            .iter()
            .any(|p| p["email"] == "dprice@lakeside-health.test")),
        "Cc becomes a collaborator: {t}"
    );
    let subject = format!("Re: [#{n}] Add two new float nurses to 4 West care team");

    let by_requester = env.ingest(&mail(
        "Marta Kowalski <mkowalski@lakeside-health.test>",
        SUPPORT,
        &subject,
        "tag-requester@mail.lakeside-health.test",
        "",
        "Jen's employee number is 44821.",
    ));
    assert_eq!(by_requester["action"], "replied", "{by_requester}");
    assert_eq!(by_requester["ticket"], n);

    let by_cc = env.ingest(&mail(
        "\"Devon Price, RN\" <DPrice@Lakeside-Health.test>",
        SUPPORT,
        &subject,
        "tag-cc@mail.lakeside-health.test",
        "",
        "Confirmed, both start Monday 7am.",
    ));
    assert_eq!(by_cc["action"], "replied", "{by_cc}");
    assert_eq!(by_cc["ticket"], n);

    let before = messages(&env.ticket(n)).len();
    let stranger = env.ingest(&mail(
        "Mallory <mallory@elsewhere.example>",
        SUPPORT,
        &subject,
        "tag-stranger@elsewhere.example",
        "",
        "Please send me the details of this ticket.",
    ));
    let other = created(&stranger);
    assert_ne!(other, n, "a guessed tag must not thread");
    assert_eq!(
        messages(&env.ticket(n)).len(),
        before,
        "nothing added to #{n}"
    );
    assert_eq!(
        env.ticket(other)["requester"]["email"],
        "mallory@elsewhere.example"
    );
}

#[test]
fn out_of_office_reply_is_an_internal_note() {
    let env = Env::new();
    let (n, _, ack) = urgent_ticket(&env);
    let r = env.ingest(&mail(
        RAY,
        SUPPORT,
        &format!("Automatic reply: [#{n}] console pages stuck in queued"),
        "ooo-1@mail.stbrigid-med.example",
        &format!(
            "In-Reply-To: <{}>\nAuto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\n",
            message_id(&ack)
        ),
        "I am out of the office until Monday. For urgent matters call the switchboard.",
    ));
    assert_ne!(r["action"], "created", "{r}");
    assert_ne!(
        r["action"], "replied",
        "an auto-reply is no customer reply: {r}"
    );
    assert_eq!(r["ticket"], n);
    assert_eq!(env.tickets().len(), 1);
    assert_eq!(env.outbox().len(), 1, "no ack to an auto-reply");
    let t = env.ticket(n);
    assert_eq!(t["status"], "open");
    let note = messages(&t)
        .iter()
        .find(|m| m["message_id"] == "ooo-1@mail.stbrigid-med.example")
        .expect("auto-reply kept on the ticket");
    assert_eq!(note["internal"], true);

    // An auto-reply that names no ticket opens none either.
    let stray = env.ingest(&mail(
        "Lee Wong <lwong@stbrigid-med.example>",
        SUPPORT,
        "Out of office",
        "ooo-2@mail.stbrigid-med.example",
        "Auto-Submitted: auto-replied\n",
        "I am away.",
    ));
    assert_ne!(stray["action"], "created", "{stray}");
    assert_eq!(env.tickets().len(), 1);
    assert_eq!(env.outbox().len(), 1);
}

fn dsn(id: &str, original: &str, original_part: &str) -> Vec<u8> {
    crlf(&format!(
        r#"Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.stbrigid-med.example>
To: {SUPPORT}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 23 Nov 2026 16:00:00 -0500
Message-ID: <{id}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-7Q2"

--dsn-7Q2
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.stbrigid-med.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<rdonnelly@stbrigid-med.example>: host mailstore.stbrigid-med.example said:
    550 5.1.1 <rdonnelly@stbrigid-med.example>: Recipient address rejected:
    User unknown in local recipient table

--dsn-7Q2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.stbrigid-med.example
Arrival-Date: Mon, 23 Nov 2026 15:59:58 -0500

Final-Recipient: rfc822; rdonnelly@stbrigid-med.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--dsn-7Q2
Content-Type: {original_part}
Content-Description: Undelivered Message

{original}
--dsn-7Q2--
"#
    ))
}

#[test]
fn bounce_of_our_ack_fails_the_outbox_row_and_notes_the_ticket() {
    let env = Env::new();
    let (n, _, ack) = urgent_ticket(&env);
    let (row, _) = ack_of(&env, n);
    // The DSN returns our ack verbatim (message/rfc822).
    let r = env.ingest(&dsn(
        "bounce-1@mx.stbrigid-med.example",
        ack.trim_end(),
        "message/rfc822",
    ));
    assert_ne!(r["action"], "created", "{r}");
    assert_eq!(r["ticket"], n, "{r}");
    assert_eq!(env.tickets().len(), 1, "a bounce never opens a ticket");
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 1, "no ack to a bounce");
    assert_eq!(outbox[0]["id"], row["id"]);
    assert_eq!(outbox[0]["status"], "failed", "{outbox:?}");
    let t = env.ticket(n);
    let note = messages(&t)
        .iter()
        .find(|m| m["message_id"] == "bounce-1@mx.stbrigid-med.example")
        .expect("bounce kept on the ticket");
    assert_eq!(note["internal"], true);
    assert_eq!(t["status"], "open");
}

#[test]
fn bounce_with_headers_only_finds_our_mail() {
    let env = Env::new();
    let (n, _, ack) = urgent_ticket(&env);
    let other = created(&env.ingest_file(&fixture("mail/office-address-change.eml")));
    // Only the original's headers come back (text/rfc822-headers).
    let r = env.ingest(&dsn(
        "bounce-2@mx.stbrigid-med.example",
        header_section(&ack),
        "text/rfc822-headers",
    ));
    assert_eq!(r["ticket"], n, "{r}");
    assert_eq!(env.tickets().len(), 2);
    let outbox = env.outbox();
    let status = |t: i64| {
        outbox
            .iter()
            .find(|o| o["ticket"] == t)
            .map(|o| o["status"].clone())
    };
    assert_eq!(status(n), Some(Value::from("failed")));
    assert_eq!(
        status(other),
        Some(Value::from("queued")),
        "only ours failed"
    );

    // A DSN about mail we never sent opens nothing.
    let stray = env.ingest(&dsn(
        "bounce-3@mx.stbrigid-med.example",
        "From: someone@stbrigid-med.example\nMessage-ID: <not-ours@stbrigid-med.example>\nSubject: hi\n",
        "text/rfc822-headers",
    ));
    assert_ne!(stray["action"], "created", "{stray}");
    assert_eq!(env.tickets().len(), 2);
}

#[test]
fn bounce_from_a_null_sender_still_finds_our_mail() {
    let env = Env::new();
    let (n, _, ack) = urgent_ticket(&env);
    // Some MTAs write `From: MAILER DAEMON <>`: no address at all, yet a bounce of ours.
    let raw = String::from_utf8(dsn(
        "bounce-null@mx.stbrigid-med.example",
        header_section(&ack),
        "text/rfc822-headers",
    ))
    .expect("utf-8")
    .replace(
        "From: Mail Delivery System <MAILER-DAEMON@mx.stbrigid-med.example>",
        "From: MAILER DAEMON <>",
    );
    let r = env.ingest(raw.as_bytes());
    assert_eq!(r["ticket"], n, "{r}");
    assert_ne!(r["action"], "quarantined", "{r}");
    assert_eq!(env.outbox()[0]["status"], "failed");
    assert_eq!(env.tickets().len(), 1);
}

#[test]
fn bulk_and_list_mail_opens_a_ticket_without_ack() {
    let env = Env::new();
    for (file, why) in [
        ("mail/list-newsletter.eml", "list"),
        ("mail/precedence-bulk.eml", "bulk"),
    ] {
        let r = env.ingest_file(&fixture(file));
        let n = created(&r);
        let reason = r["reason"].as_str().unwrap_or_default().to_lowercase();
        assert!(reason.contains(why), "{file}: reason should say why: {r}");
        assert!(
            env.outbox().iter().all(|o| o["ticket"] != n),
            "{file} must not be acknowledged"
        );
    }
    assert_eq!(env.outbox().len(), 0);
    assert_eq!(env.tickets().len(), 2);
}

fn flood(env: &Env, sender: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            env.ingest(&mail(
                sender,
                SUPPORT,
                &format!("Question {i} about the schedule export"),
                &format!("flood-{i}-{}", sender.replace(['<', '>', ' ', '@'], "")),
                "",
                &format!("Question number {i}: where do I find the export button?"),
            ))
        })
        .collect()
}

#[test]
fn acks_are_rate_limited_per_sender() {
    let env = Env::new();
    let outcomes = flood(&env, "pat@busy-clinic.test", 6);
    for o in &outcomes {
        created(o);
    }
    let acks = env
        .outbox()
        .iter()
        .filter(|o| o["kind"] == "ack" && o["to"] == "pat@busy-clinic.test")
        .count();
    assert_eq!(acks, 5, "default limit is 5 per hour");
    for o in &outcomes[..5] {
        assert!(o["reason"].is_null(), "{o}");
    }
    let reason = outcomes[5]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rate limit"), "{}", outcomes[5]);
    // The limit is per sender: someone else still gets an ack.
    let other = created(&env.ingest_file(&fixture("mail/console-pages-queued.eml")));
    ack_of(&env, other);
}

#[test]
fn ack_rate_limit_is_configurable() {
    let env = Env::with_config("[limits]\nacks_per_sender_per_hour = 2\n");
    let outcomes = flood(&env, "Pat Quinn <pat@busy-clinic.test>", 3);
    assert_eq!(env.outbox().len(), 2);
    assert_eq!(env.tickets().len(), 3);
    assert!(outcomes[2]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("rate limit"));
}

#[test]
fn html_only_mail_becomes_readable_text() {
    let env = Env::new();
    let n = created(&env.ingest_file(&fixture("mail/html-only.eml")));
    let t = env.ticket(n);
    let body = messages(&t)[0]["body"].as_str().expect("body").to_string();
    for needle in [
        "monthly message volume report",
        "completely blank",
        "Message Volume by Department",
        "quality committee on Friday",
    ] {
        assert!(body.contains(needle), "lacks {needle:?}:\n{body}");
    }
    for tag in ["<p>", "<b>", "</", "<br", "&ndash;", "font-family", "<html"] {
        assert!(!body.contains(tag), "markup {tag:?} left in:\n{body}");
    }
    assert_eq!(t["category"], "reporting");
}

#[test]
fn attachments_are_listed_with_type_and_size() {
    let env = Env::new();
    let n = created(&env.ingest_file(&fixture("mail/attachments.eml")));
    let t = env.ticket(n);
    let first = &messages(&t)[0];
    assert!(first["body"]
        .as_str()
        .unwrap_or_default()
        .contains("December on-call schedule"));
    let atts = first["attachments"].as_array().expect("attachments");
    let find = |name: &str| {
        atts.iter()
            .find(|a| a["filename"] == name)
            .unwrap_or_else(|| panic!("no {name} in {atts:?}"))
    };
    // Decoded sizes of the fixture's base64 parts.
    let pdf = find("oncall-december-2026.pdf");
    assert_eq!(pdf["content_type"], "application/pdf");
    assert_eq!(pdf["size"], 218);
    let png = find("import-error.png");
    assert_eq!(png["content_type"], "image/png");
    assert_eq!(png["size"], 76);
    assert_eq!(
        atts.len(),
        2,
        "the text and HTML bodies are no attachments: {atts:?}"
    );
}

/// Closes ticket `number` as if an agent had, `days_ago` days ago (no CLI for it yet).
async fn close_ticket(env: &Env, number: i64, days_ago: i64) {
    use sqlx::Connection;
    let at = (Utc::now() - Duration::days(days_ago)).timestamp();
    if let Some(pg) = &env.pg {
        let sql = format!(
            "UPDATE tickets SET status = 'closed', closed_at = {at} WHERE number = {number} \
             RETURNING id"
        );
        assert!(pg.sql(&sql).is_some(), "ticket {number} closed");
        return;
    }
    let mut db = sqlx::SqliteConnection::connect(&env.db_url)
        .await
        .expect("connect");
    let done =
        sqlx::query("UPDATE tickets SET status = 'closed', closed_at = $1 WHERE number = $2")
            .bind(at)
            .bind(number)
            .execute(&mut db)
            .await
            .expect("close ticket");
    assert_eq!(done.rows_affected(), 1);
}

#[tokio::test]
async fn reply_reopens_a_closed_ticket_then_expires() {
    let env = Env::new();
    let (n, _, _) = urgent_ticket(&env);
    close_ticket(&env, n, 2).await;
    assert_eq!(env.ticket(n)["status"], "closed");

    let r = env.ingest(&mail(
        RAY,
        SUPPORT,
        "Re: console pages stuck in queued",
        "reopen-1@mail.stbrigid-med.example",
        &format!("In-Reply-To: <{RAY_ID}>\n"),
        "It is happening again since 6:00.",
    ));
    assert_eq!(r["action"], "replied", "{r}");
    assert_eq!(r["ticket"], n);
    assert_eq!(env.ticket(n)["status"], "open", "a reply reopens");
    assert_eq!(env.tickets().len(), 1);

    // Closed longer ago than reopen_days (30): a new ticket that links the old one.
    close_ticket(&env, n, 40).await;
    let r = env.ingest(&mail(
        RAY,
        SUPPORT,
        "Re: console pages stuck in queued",
        "reopen-2@mail.stbrigid-med.example",
        &format!("In-Reply-To: <{RAY_ID}>\n"),
        "Same problem as last time, pages queued again.",
    ));
    let newer = created(&r);
    assert_ne!(newer, n);
    assert_eq!(env.ticket(n)["status"], "closed");
    assert_eq!(env.ticket(newer)["follows"], n);
}

#[test]
fn mail_from_our_own_address_is_ignored() {
    let env = Env::new();
    let r = env.ingest_file(&fixture("mail/from-support.eml"));
    assert_eq!(r["action"], "ignored", "{r}");
    assert!(r["ticket"].is_null());
    assert!(
        r["reason"].as_str().unwrap_or_default().contains("own"),
        "{r}"
    );
    assert_eq!(env.tickets().len(), 0);
    assert_eq!(env.outbox().len(), 0);
    // Re-fetching it is recognised.
    assert_eq!(
        env.ingest_file(&fixture("mail/from-support.eml"))["action"],
        "duplicate"
    );
}

#[test]
fn missing_message_id_gets_a_stable_synthetic_one() {
    let env = Env::new();
    let path = fixture("mail/no-message-id.eml");
    let first = env.ingest_file(&path);
    created(&first);
    let id = first["message_id"]
        .as_str()
        .expect("synthetic id")
        .to_string();
    assert!(!id.is_empty() && id.contains('@'), "{id}");
    let again = env.ingest_stdin(&std::fs::read(&path).expect("fixture"));
    assert_eq!(again["action"], "duplicate", "{again}");
    assert_eq!(again["message_id"], id.as_str());
    assert_eq!(env.tickets().len(), 1);
    // The ack still threads under the synthetic id.
    let (_, raw) = ack_of(&env, first["ticket"].as_i64().expect("n"));
    assert_eq!(
        header(&raw, "In-Reply-To"),
        Some(format!("<{id}>")),
        "{raw}"
    );
}

#[test]
fn users_are_provisioned_with_names_and_roles() {
    let env = Env::with_config("[policy]\nauthserv_id = \"mx.vendor.example\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n");
    created(&env.ingest_file(&fixture("mail/cc-collaborator.eml")));
    env.ok(&[
        "users",
        "add",
        "Hal@Vendor.example",
        "--role",
        "admin",
        "--name",
        "Hal",
    ]);
    let users = env.users();
    let find = |email: &str| {
        users
            .iter()
            .find(|u| {
                u["email"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            })
            .unwrap_or_else(|| panic!("no {email} in {users:?}"))
    };
    let marta = find("mkowalski@lakeside-health.test");
    assert_eq!(marta["name"], "Marta Kowalski");
    assert_eq!(marta["role"], "customer");
    assert_eq!(marta["status"], "active");
    assert_eq!(
        find("dprice@lakeside-health.test")["name"],
        "Devon Price, RN"
    );
    assert_eq!(find("alice@vendor.example")["role"], "agent");
    assert_eq!(find("hal@vendor.example")["role"], "admin");
    assert!(
        users.iter().all(|u| u["email"] != SUPPORT),
        "our own address is no user"
    );
    // A bad role is refused.
    assert!(!env
        .run(&["users", "add", "x@vendor.example", "--role", "wizard"])
        .status
        .success());
}

#[test]
fn check_config_names_file_line_and_key_of_every_problem() {
    let env = Env::new();
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[support]\n\
         name = \"Vendor Support\"\n\
         address = \"not-an-address\"\n\
         phne = \"+1 555 0100\"\n\
         ticket_tag = \"[#]\"\n\
         \n\
         [limits]\n\
         max_message_bytes = \"big\"\n\
         acks_per_sender_per_hour = 5\n\
         \n\
         [databse]\n\
         url = \"sqlite://x.db\"\n",
    )
    .expect("write");
    let out = env
        .bare_cmd()
        .arg("--config")
        .arg(&bad)
        .arg("check-config")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad config accepted:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let file = bad.display().to_string();
    for (line, key) in [
        (3, "support.address"),
        (4, "support.phne"),
        (5, "support.ticket_tag"),
        (8, "limits.max_message_bytes"),
        (11, "databse"),
    ] {
        let located = format!("{file}:{line}");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&located) && l.contains(key)),
            "no line naming {located} and {key}:\n{stderr}"
        );
    }

    // The good one passes.
    let ok = env.run(&["check-config"]);
    assert_success(&ok, "check-config");
    // A missing file is an error naming it.
    let missing = env.dir.path().join("nope.toml");
    let out = env
        .bare_cmd()
        .arg("--config")
        .arg(&missing)
        .arg("check-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing.display().to_string()));
}

/// Waits up to `limit` for `child` to exit; kills it and fails if it is still running.
fn exit_within(mut child: std::process::Child, limit: std::time::Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `run` refuses at start-up what `check-config` reports, also the cross-checks against the
/// triage rules that only `check-config` used to make; so does `ingest`.
#[test]
fn run_refuses_an_agent_category_the_rules_lack() {
    let env = Env::with_config(
        "[policy]\nauthserv_id = \"mx.vendor.example\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\ncategories = [\"billing\", \"biling\"]\n",
    );
    // Line 15 of the config Env writes: the [[agent]] table starts at line 13.
    let located = format!(
        "{}:15: key `agent[0].categories[1]`: `biling` is no category of the triage rules",
        env.config.display()
    );
    for args in [&["check-config"][..], &["run"], &["ingest", "-"]] {
        let child = env
            .cmd()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = exit_within(child, std::time::Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {stderr}");
        assert!(stderr.contains(&located), "{args:?}: {stderr}");
    }
    // Nothing was written: the database was not even created.
    assert!(!env.dir.path().join("supportd.db").exists());
}

/// The configured agents are written to the users table by `run` (start-up and SIGHUP) and
/// by `ingest` when the list changed since it was last written; never by the other commands.
#[test]
fn agents_are_written_at_start_up_and_when_the_list_changed() {
    let agent = "[policy]\nauthserv_id = \"mx.vendor.example\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n";
    let env = Env::with_config(agent);
    let role = |env: &Env| -> Option<(String, String)> {
        env.users()
            .into_iter()
            .find(|u| u["email"] == "alice@vendor.example")
            .map(|u| {
                (
                    u["role"].as_str().unwrap_or_default().to_string(),
                    u["name"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    // A list command writes nothing.
    assert_eq!(role(&env), None);
    env.ok(&["tickets", "list"]);
    assert_eq!(role(&env), None);
    // The first ingest writes them ...
    created(&env.ingest_file(&fixture("mail/console-pages-queued.eml")));
    assert_eq!(role(&env), Some(("agent".into(), "Alice".into())));
    // ... later ones do not while the list is unchanged (an admin's change stays) ...
    env.ok(&["users", "add", "alice@vendor.example", "--role", "customer"]);
    env.ingest_file(&fixture("mail/office-address-change.eml"));
    assert_eq!(role(&env), Some(("customer".into(), "Alice".into())));
    // ... and do once it changed.
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(&env.config, text.replace("\"Alice\"", "\"Alice A.\"")).expect("config");
    env.ingest_file(&fixture("mail/cc-collaborator.eml"));
    assert_eq!(role(&env), Some(("agent".into(), "Alice A.".into())));

    // `run` writes them at start-up whatever changed, and again on SIGHUP.
    env.ok(&["users", "add", "alice@vendor.example", "--role", "customer"]);
    let mut daemon = env
        .cmd()
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn run");
    // SIGHUP is handled once the daemon says it is ready (no mailbox: right after start-up).
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let stderr = daemon.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("supportd ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    let until_agent = |what: &str| {
        let start = std::time::Instant::now();
        while role(&env).map(|r| r.0) != Some("agent".into()) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{what}: alice is not an agent again"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    until_agent("start-up");
    ready
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("run is ready");
    env.ok(&["users", "add", "alice@vendor.example", "--role", "customer"]);
    let pid = daemon.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.is_ok_and(|s| s.success()));
    until_agent("SIGHUP");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let start = std::time::Instant::now();
    while daemon.try_wait().expect("wait").is_none() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "run did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn unavailable_database_exits_tempfail() {
    let env = Env::new();
    let mail = fixture("mail/console-pages-queued.eml");
    let mail = mail.to_str().expect("path");
    // A path below a regular file can never be created, not even by root.
    let blocker = env.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").expect("write");
    let unwritable = format!("sqlite://{}/supportd.db", blocker.display());
    let out = env
        .cmd()
        .args(["--database", &unwritable, "ingest", mail])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{unwritable}:\n{stderr}");
    assert!(stderr.contains("not-a-dir"), "names the path: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "no outcome printed");
    // The override really overrode: the config's database was never created.
    assert!(!env.dir.path().join("supportd.db").exists());
}

/// PostgreSQL that does not answer: a clear error naming the server (never the password),
/// and EX_TEMPFAIL so that an MTA retries the mail later.
#[test]
fn unreachable_postgres_exits_tempfail_with_a_clear_error() {
    let env = Env::new();
    let mail = fixture("mail/console-pages-queued.eml");
    let out = env
        .cmd()
        .args([
            "--database",
            "postgres://supportd:secret@127.0.0.1:1/supportd",
            "ingest",
            mail.to_str().expect("path"),
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr
            .contains("PostgreSQL at postgres://supportd:****@127.0.0.1:1/supportd is unreachable"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unreadable_input_exits_dataerr() {
    let env = Env::new();
    let out = env.run(&["ingest", "/nonexistent/supportd-test.eml"]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
}

/// Every outbound mail leaves through one queue with one failure rule: a mail that cannot be
/// rendered (here: an admin's ack template that breaks on one subject) is not sent, and
/// that is recorded in the ticket's history; the message itself is processed all the same,
/// like the messages around it in its batch.
#[test]
fn a_mail_that_cannot_be_rendered_is_recorded_as_not_sent() {
    let templates = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        templates.path().join("ack.txt"),
        "Ticket #{{ number }}: {{ subject }}\n{% if subject == \"boom\" %}{{ no_such_function() }}{% endif %}\n",
    )
    .expect("template");
    let env = Env::with_config(&format!(
        "[templates]\ndir = \"{}\"\n",
        templates.path().display()
    ));
    let lines = ingest_batch(&env, &["first", "boom", "third"]);
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(actions, vec!["created", "created", "created"], "{lines:?}");
    let boom = env.ticket(1002);
    let events = boom["events"].to_string();
    assert!(
        events.contains("not-sent") && events.contains("ack: cannot be rendered"),
        "{events}"
    );
    let outbox = env.outbox();
    let acks: Vec<&Value> = outbox.iter().filter(|o| o["kind"] == "ack").collect();
    assert_eq!(acks.len(), 2, "the other two acks are queued: {outbox:?}");
    assert!(acks.iter().all(|o| o["ticket"] != 1002));
    assert!(env.quarantine().is_empty());
}

/// Files given to one `ingest` share a transaction, a savepoint per message: a message the
/// pipeline fails on (here: a row in its way, a unique constraint) is quarantined alone with
/// the reason, everything it had written so far (its new ticket and user) undone, and the
/// messages around it are kept.
#[test]
fn a_message_failing_inside_a_batch_is_set_aside_alone() {
    let env = Env::new();
    let first = created(&env.ingest(&mail(
        "Ann <ann@clinic.example>",
        SUPPORT,
        "pager",
        "ann-1@clinic.example",
        "",
        "The pager app shows an error.",
    )));
    assert_eq!(first, 1001);
    // A stranger's mail naming Ann's Message-ID opens a ticket of its own and leaves an
    // internal note on #1001; a row already holding that note's Message-ID makes it fail
    // after its ticket was written.
    if let Some(pg) = &env.pg {
        pg.sql(
            "INSERT INTO messages (ticket_id, message_id, direction, kind, author, created_at)
             VALUES (1, 'note.1001.batch-1@clinic.example', 'inbound', 'x', 'x', 0)",
        );
    } else {
        use sqlx::Connection;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut db = sqlx::SqliteConnection::connect(&env.db_url)
                .await
                .expect("db");
            sqlx::query(
                "INSERT INTO messages (ticket_id, message_id, direction, kind, author, created_at)
                 VALUES (1, 'note.1001.batch-1@clinic.example', 'inbound', 'x', 'x', 0)",
            )
            .execute(&mut db)
            .await
            .expect("planted row");
        });
    }
    let lines = ingest_batch(&env, &["second", "third", "fourth"]);
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        vec!["created", "quarantined", "created"],
        "{lines:?}"
    );
    let reason = lines[1]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("unique constraint"), "{reason}");
    let tickets = env.tickets();
    let subjects: Vec<&str> = tickets
        .iter()
        .map(|t| t["subject"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        subjects,
        vec!["pager", "second", "fourth"],
        "the failed message left nothing behind"
    );
    let users = array(env.json(&["users", "list", "--json"]));
    assert!(
        users.iter().all(|u| u["email"] != "n1@clinic.example"),
        "its user was undone with it: {users:?}"
    );
    assert_eq!(env.quarantine().len(), 1);
}

/// Ingests one mail per subject in one `ingest` call (one batch); the middle one (index 1)
/// names Ann's first message, as a stranger's reply would.
fn ingest_batch(env: &Env, subjects: &[&str]) -> Vec<Value> {
    let paths: Vec<String> = subjects
        .iter()
        .enumerate()
        .map(|(i, subject)| {
            let raw = mail(
                &format!("Nurse {i} <n{i}@clinic.example>"),
                SUPPORT,
                subject,
                &format!("batch-{i}@clinic.example"),
                if i == 1 {
                    "In-Reply-To: <ann-1@clinic.example>\n"
                } else {
                    ""
                },
                "The pager app shows an error.",
            );
            let path = env.dir.path().join(format!("batch-{i}.eml"));
            std::fs::write(&path, raw).expect("write");
            path.display().to_string()
        })
        .collect();
    let mut args = vec!["ingest"];
    args.extend(paths.iter().map(String::as_str));
    let out = env.run(&args);
    assert_success(&out, "supportd ingest (a batch)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}
