//! Issue 14 scenarios through the built binary (`supportd ingest`, `sla check`, the CLI) on a
//! private SQLite database: near-duplicate merge, incidents (grouping, the one on-call mail,
//! incident acks, `#incident resolve`, no text across organisations), SLA reminders and
//! escalations.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

const ONCALL: &str = "oncall@vendor.example";
const AUTHSERV: &str = "mx.vendor.example";

fn incident_env() -> Env {
    Env::with_config(&format!(
        "[policy]\nauthserv_id = \"{AUTHSERV}\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice Agent\"\n\n[incidents]\noncall = \"{ONCALL}\"\n"
    ))
}

fn mail(from: &str, subject: &str, id: &str, body: &str) -> Vec<u8> {
    crlf(&format!(
        "From: {from}\nTo: {SUPPORT}\nSubject: {subject}\nDate: Thu, 03 Dec 2026 09:30:00 +0000\n\
         Message-ID: <{id}>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    ))
}

fn of_kind(env: &Env, kind: &str) -> Vec<Value> {
    env.outbox()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect()
}

fn event_kinds(t: &Value) -> Vec<String> {
    t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The same outage, reported by three organisations in their own words (each with a
/// private detail no one else may see).
const REPORTS: [(&str, &str, &str); 4] = [
    (
        "Ann Lee <ann@stbrigid-med.example>",
        "Pages stuck in queued",
        "Since 08:10 every page on the paging console sits in Queued and no pager receives \
         anything. Doctors are not being paged. Private: patient Jane Roe in bed 12.",
    ),
    (
        "Bob Ode <bob@mercy-hosp.example>",
        "pagers silent",
        "Our pagers are silent, the console shows all pages queued. Nobody on call gets paged. \
         Private: code word MERCY-77.",
    ),
    (
        "Cleo Diaz <cleo@valley-clinic.example>",
        "URGENT paging down",
        "Paging is down: pages queued on the console, pagers receive nothing since 8am. \
         Private: Dr. Sandoval's pager 4411.",
    ),
    (
        "Dan Roy <dan@lakeside.example>",
        "Pages not delivered",
        "Pages are queued in the console and never delivered to the pagers. Private: ward 3B.",
    ),
];

#[test]
fn near_duplicate_becomes_a_reply_without_a_second_ack() {
    let env = Env::new();
    let body = "The label printer in room 4 prints blank labels since this morning.";
    let first = env.ingest(&mail(
        "Ann Lee <ann@stbrigid-med.example>",
        "Blank labels",
        "a1@stbrigid-med.example",
        body,
    ));
    let n = created(&first);
    // Resent from another client: another Message-ID, rewrapped, a reply prefix.
    let again = env.ingest(&mail(
        "Ann Lee <ANN@stbrigid-med.example>",
        "Re: Blank labels",
        "a2@phone.stbrigid-med.example",
        "The label printer in room 4 prints blank\nlabels since this morning.",
    ));
    assert_eq!(again["action"], "replied", "{again}");
    assert_eq!(again["ticket"], n, "{again}");
    assert!(
        again["reason"].as_str().unwrap().contains("near-duplicate"),
        "{again}"
    );
    assert_eq!(env.tickets().len(), 1);
    assert_eq!(of_kind(&env, "ack").len(), 1, "no second ack");
    let t = env.ticket(n);
    assert!(
        event_kinds(&t).contains(&"near-duplicate".to_string()),
        "{t}"
    );
    let ids: Vec<&str> = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["a1@stbrigid-med.example", "a2@phone.stbrigid-med.example"]
    );

    // Another text, or another sender with the same text, is a new ticket.
    let other = env.ingest(&mail(
        "Ann Lee <ann@stbrigid-med.example>",
        "Blank labels",
        "a3@stbrigid-med.example",
        "Now the printer in room 5 jams too.",
    ));
    assert_eq!(other["action"], "created", "{other}");
    let colleague = env.ingest(&mail(
        "Carl <carl@stbrigid-med.example>",
        "Blank labels",
        "c1@stbrigid-med.example",
        body,
    ));
    assert_eq!(colleague["action"], "created", "{colleague}");
}

#[test]
fn near_duplicate_window_is_configurable_and_can_be_off() {
    let env = Env::with_config("[limits]\nnear_duplicate_minutes = 0\n");
    let body = "The label printer in room 4 prints blank labels.";
    let from = "Ann Lee <ann@stbrigid-med.example>";
    created(&env.ingest(&mail(from, "Blank labels", "b1@x.example", body)));
    let again = env.ingest(&mail(from, "Blank labels", "b2@x.example", body));
    assert_eq!(again["action"], "created", "merge off: {again}");
}

#[test]
fn similar_urgent_tickets_become_one_incident_with_one_oncall_mail() {
    let env = incident_env();
    let mut numbers = Vec::new();
    for (i, (from, subject, body)) in REPORTS.iter().enumerate() {
        let out = env.ingest(&mail(
            from,
            subject,
            &format!("r{i}@reporter.example"),
            body,
        ));
        numbers.push(created(&out));
    }
    // An unrelated urgent ticket in the same minutes stays out.
    let other = created(&env.ingest(&mail(
        "Eve <eve@stbrigid-med.example>",
        "Cannot log in to scheduling",
        "e1@stbrigid-med.example",
        "URGENT: nobody can log in to the scheduling module, the password is rejected for all staff.",
    )));

    let incidents = array(env.json(&["incidents", "list", "--json"]));
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["number"], 1);
    assert_eq!(incidents[0]["status"], "open");
    assert_eq!(incidents[0]["tickets"], 4);
    let shown = env.json(&["incidents", "show", "1", "--json"]);
    let linked: Vec<i64> = shown["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    assert_eq!(linked, numbers);
    assert!(!linked.contains(&other));
    let text = env.ok(&["incidents", "show", "1"]);
    assert!(text.contains("Incident #1 [open]"), "{text}");

    // ONE urgent mail to on-call, listing the first three; none for the fourth.
    let oncall = of_kind(&env, "incident-oncall");
    assert_eq!(oncall.len(), 1, "{oncall:?}");
    assert_eq!(oncall[0]["to"], ONCALL);
    let raw = env.outbox_raw(oncall[0]["id"].as_i64().unwrap());
    assert_eq!(header(&raw, "Importance").as_deref(), Some("high"), "{raw}");
    let body = text_body(raw.as_bytes());
    for n in &numbers[..3] {
        assert!(body.contains(&format!("[#{n}]")), "{body}");
    }
    assert!(!body.contains(&format!("[#{}]", numbers[3])), "{body}");

    // The first two got the usual ack; the one that opened it and the later one are told
    // it is a known incident, with its number, and nothing of anyone else's ticket.
    assert_eq!(
        of_kind(&env, "ack").len(),
        3,
        "two reporters + the unrelated one"
    );
    let incident_acks = of_kind(&env, "incident-ack");
    assert_eq!(incident_acks.len(), 2);
    for (i, row) in incident_acks.iter().enumerate() {
        let raw = env.outbox_raw(row["id"].as_i64().unwrap());
        let body = text_body(raw.as_bytes());
        assert!(body.contains("known incident"), "{body}");
        assert!(body.contains("incident #1"), "{body}");
        let own = numbers[2 + i];
        assert!(body.contains(&format!("ticket #{own}")), "{body}");
        for (j, (from, _, report)) in REPORTS.iter().enumerate() {
            if j != 2 + i {
                let private = report.split("Private: ").nth(1).unwrap();
                assert!(!body.contains(private), "leaks {private}: {body}");
                let addr = from.split('<').nth(1).unwrap().trim_end_matches('>');
                assert!(!body.contains(addr), "names {addr}: {body}");
            }
        }
    }
    // Agents were told through the incident, not once per grouped ticket.
    let t = env.ticket(numbers[3]);
    assert_eq!(t["incident"], 1);
    assert!(env.ticket(other)["incident"].is_null());
    let kinds = event_kinds(&t);
    assert!(kinds.contains(&"incident".to_string()), "{t}");
    assert!(kinds.contains(&"notify-folded".to_string()), "{t}");
}

#[test]
fn less_urgent_or_too_few_or_too_late_tickets_make_no_incident() {
    let env = incident_env();
    for (i, (from, subject, body)) in REPORTS.iter().take(2).enumerate() {
        created(&env.ingest(&mail(from, subject, &format!("s{i}@x.example"), body)));
    }
    assert!(array(env.json(&["incidents", "list", "--json"])).is_empty());
    // The window passes (the tickets' times moved back 16 minutes).
    env.exec_sql("UPDATE tickets SET created_at = created_at - 16 * 60");
    let (from, subject, body) = REPORTS[2];
    created(&env.ingest(&mail(from, subject, "s2@x.example", body)));
    assert!(array(env.json(&["incidents", "list", "--json"])).is_empty());
    assert!(of_kind(&env, "incident-oncall").is_empty());
}

/// The agent channel of a ticket as the on-call mail gives it, with a passing
/// Authentication-Results from our MTA.
fn agent_reply(env: &Env, id: &str, body: &str) -> Value {
    let oncall = of_kind(env, "incident-oncall");
    let raw = env.outbox_raw(oncall[0]["id"].as_i64().unwrap());
    let to = header(&raw, "Reply-To").unwrap();
    let to = to.split('<').nth(1).unwrap_or(&to).trim_end_matches('>');
    env.ingest(&crlf(&format!(
        "Authentication-Results: {AUTHSERV}; dkim=pass header.d=vendor.example; dmarc=pass header.from=vendor.example\n\
         From: Alice Agent <alice@vendor.example>\nTo: {to}\nSubject: Re: incident\n\
         Message-ID: <{id}>\nDate: Thu, 03 Dec 2026 10:30:00 +0000\n\n{body}\n"
    )))
}

#[test]
fn incident_resolve_mails_each_requester_once_and_closes_every_linked_ticket() {
    let env = incident_env();
    let mut numbers = Vec::new();
    for (i, (from, subject, body)) in REPORTS.iter().enumerate() {
        numbers.push(created(&env.ingest(&mail(
            from,
            subject,
            &format!("q{i}@reporter.example"),
            body,
        ))));
    }
    // Ann reports again in another ticket (after the near-duplicate window's text differs).
    numbers.push(created(&env.ingest(&mail(
        REPORTS[0].0,
        "still no pages",
        "q9@reporter.example",
        "Still every page sits queued on the paging console, pagers receive nothing.",
    ))));
    assert_eq!(
        env.json(&["incidents", "show", "1", "--json"])["tickets"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // A customer cannot resolve it: the usual command-error answer, nothing closed.
    let (from, _, _) = REPORTS[1];
    let out = env.ingest(&crlf(&format!(
        "From: {from}\nTo: {SUPPORT}\nSubject: Re: [#{}] pagers silent\nMessage-ID: <cust-cmd@x.example>\n\
         Date: Thu, 03 Dec 2026 10:00:00 +0000\n\n#incident resolve all fine\n",
        numbers[1]
    )));
    assert_eq!(out["action"], "replied", "{out}");
    assert_eq!(of_kind(&env, "command-error").len(), 1);
    assert_eq!(
        env.json(&["incidents", "show", "1", "--json"])["status"],
        "open"
    );

    // The verified agent resolves it.
    let out = agent_reply(
        &env,
        "resolve1@vendor.example",
        "#incident resolve The paging gateway lost its carrier link at 08:05; it was switched to the backup link at 10:20 and queued pages went out.",
    );
    assert_eq!(out["action"], "agent_reply", "{out}");
    let shown = env.json(&["incidents", "show", "1", "--json"]);
    assert_eq!(shown["status"], "resolved");
    assert_eq!(shown["resolved_by"], "alice@vendor.example");
    for t in shown["tickets"].as_array().unwrap() {
        assert_eq!(t["status"], "closed", "{t}");
    }
    // One mail per requester (Ann has two tickets: one mail), each naming only their ticket.
    let resolved = of_kind(&env, "incident-resolved");
    let mut to: Vec<String> = resolved
        .iter()
        .map(|r| r["to"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(
        to,
        vec![
            "ann@stbrigid-med.example",
            "bob@mercy-hosp.example",
            "cleo@valley-clinic.example",
            "dan@lakeside.example"
        ]
    );
    for r in &resolved {
        let body = text_body(env.outbox_raw(r["id"].as_i64().unwrap()).as_bytes());
        assert!(body.contains("backup link"), "{body}");
        assert!(body.contains("Incident #1"), "{body}");
        for (_, _, report) in REPORTS {
            let private = report.split("Private: ").nth(1).unwrap();
            assert!(!body.contains(private), "leaks {private}: {body}");
        }
    }
    assert!(of_kind(&env, "closed").is_empty(), "no second closing mail");

    // Resolving twice is refused with the agents' command error.
    let again = agent_reply(&env, "resolve2@vendor.example", "#incident resolve again");
    assert!(
        again["reason"].as_str().unwrap().contains("not understood"),
        "{again}"
    );
}

#[test]
fn incident_command_on_a_ticket_without_incident_is_refused() {
    let env = incident_env();
    for (i, (from, subject, body)) in REPORTS.iter().take(3).enumerate() {
        created(&env.ingest(&mail(from, subject, &format!("w{i}@x.example"), body)));
    }
    // Unlink them all: the command now names no incident.
    env.exec_sql("UPDATE tickets SET incident_id = NULL");
    let out = agent_reply(&env, "x1@vendor.example", "#incident resolve done");
    assert!(
        out["reason"].as_str().unwrap().contains("not understood"),
        "{out}"
    );
    let errors = of_kind(&env, "command-error");
    assert_eq!(errors.len(), 1);
    let body = text_body(env.outbox_raw(errors[0]["id"].as_i64().unwrap()).as_bytes());
    assert!(body.contains("linked to no incident"), "{body}");
}

fn sla_env(extra: &str) -> Env {
    Env::with_config(&format!(
        "[policy]\nauthserv_id = \"{AUTHSERV}\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice Agent\"\n\n[sla]\nsupervisor = \"boss@vendor.example\"\n{extra}"
    ))
}

/// Moves a ticket's clocks back by `minutes` (as if it had been created that long ago).
fn age(env: &Env, number: i64, minutes: i64) {
    let s = minutes * 60;
    env.exec_sql(&format!(
        "UPDATE tickets SET created_at = created_at - {s}, first_response_due = first_response_due - {s},
                resolution_due = resolution_due - {s} WHERE number = {number}"
    ));
}

fn sla_check(env: &Env) -> String {
    env.ok(&["sla", "check"])
}

#[test]
fn sla_reminder_then_escalation_each_once_across_restarts() {
    let env = sla_env("");
    let (from, subject, body) = REPORTS[0];
    let n = created(&env.ingest(&mail(from, subject, "sla1@x.example", body)));
    let t = env.ticket(n);
    assert_eq!(
        t["urgency"], 1,
        "a level-1 ticket: first response due in 1 h"
    );
    assert_eq!(sla_check(&env).trim(), "0 SLA mails queued");
    assert!(array(env.json(&["tickets", "list", "--overdue", "--json"])).is_empty());

    // 46 minutes in: past 75 % of the first-response hour.
    age(&env, n, 46);
    assert_eq!(sla_check(&env).trim(), "1 SLA mails queued");
    let reminders = of_kind(&env, "sla-reminder");
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0]["to"], "alice@vendor.example");
    let raw = env.outbox_raw(reminders[0]["id"].as_i64().unwrap());
    assert!(
        header(&raw, "Subject").unwrap().contains("first response"),
        "{raw}"
    );
    // Each `sla check` is a new process: what was sent is in the database.
    assert_eq!(sla_check(&env).trim(), "0 SLA mails queued");

    // Past the due time: one escalation to the supervisor, and the ticket is overdue.
    age(&env, n, 15);
    assert_eq!(sla_check(&env).trim(), "1 SLA mails queued");
    let escalations = of_kind(&env, "sla-escalation");
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0]["to"], "boss@vendor.example");
    assert_eq!(sla_check(&env).trim(), "0 SLA mails queued");
    let overdue = array(env.json(&["tickets", "list", "--overdue", "--json"]));
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0]["number"], n);
    let kinds = event_kinds(&env.ticket(n));
    assert!(kinds.contains(&"sla-reminder".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"sla-escalation".to_string()), "{kinds:?}");
}

#[test]
fn an_agents_public_reply_stops_the_first_response_clock() {
    let env = sla_env("remind_at_percent = 50\n");
    let (from, subject, body) = REPORTS[1];
    let n = created(&env.ingest(&mail(from, subject, "sla2@x.example", body)));
    // The agent answers through the notification's agent channel.
    let notify = of_kind(&env, "notify-agent");
    let raw = env.outbox_raw(notify[0]["id"].as_i64().unwrap());
    let to = header(&raw, "Reply-To").unwrap();
    let to = to.split('<').nth(1).unwrap_or(&to).trim_end_matches('>');
    let out = env.ingest(&crlf(&format!(
        "Authentication-Results: {AUTHSERV}; dkim=pass header.d=vendor.example; dmarc=pass header.from=vendor.example\n\
         From: Alice Agent <alice@vendor.example>\nTo: {to}\nSubject: Re: [#{n}] pagers silent\n\
         Message-ID: <answer@vendor.example>\nDate: Thu, 03 Dec 2026 10:30:00 +0000\n\nWe are looking at the paging gateway now.\n"
    )));
    assert_eq!(out["action"], "agent_reply", "{out}");
    // Long past the first-response due time, not past the resolution one (24 h for level 1).
    age(&env, n, 90);
    assert_eq!(sla_check(&env).trim(), "0 SLA mails queued");
    assert!(array(env.json(&["tickets", "list", "--overdue", "--json"])).is_empty());
    // The resolution clock still runs: at 50 % of 24 h the category's agents (Alice; nobody
    // is assigned) get a reminder.
    age(&env, n, 12 * 60 - 90);
    assert_eq!(sla_check(&env).trim(), "1 SLA mails queued");
    let r = of_kind(&env, "sla-reminder");
    assert!(
        header(&env.outbox_raw(r[0]["id"].as_i64().unwrap()), "Subject")
            .unwrap()
            .contains("resolution"),
        "{r:?}"
    );
}

/// The daemon checks the clocks by itself every `sla.check_seconds`, and what it sent is in
/// the database: a second daemon (a restart) sends nothing again.
#[test]
fn the_daemon_sends_a_due_reminder_once_across_a_restart() {
    let env = sla_env("check_seconds = 1\n");
    let (from, subject, body) = REPORTS[2];
    let n = created(&env.ingest(&mail(from, subject, "sla3@x.example", body)));
    age(&env, n, 50);
    let run_for = |seconds: u64| {
        let child = env
            .cmd()
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start supportd run");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while std::time::Instant::now() < deadline && of_kind(&env, "sla-reminder").is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        // Let a few more checks run before stopping it.
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let out = child.wait_with_output().expect("wait supportd run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run_for(15);
    assert_eq!(of_kind(&env, "sla-reminder").len(), 1, "one reminder");
    run_for(1);
    assert_eq!(
        of_kind(&env, "sla-reminder").len(),
        1,
        "none again after a restart"
    );
}
