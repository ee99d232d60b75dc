//! `supportd ingest --dry-run`: each message's Plan printed as JSON, one line per input
//! (`{"file", "plan", "quarantined"}`), and nothing written (issue 10, "Plan, then apply").

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const RAY_ID: &str = "20261118053700.1ca5ebf0@mail.stbrigid-med.example";
const RAY_EMAIL: &str = "rdonnelly@stbrigid-med.example";

/// Runs `ingest --dry-run` on `files`: (exit code, one JSON value per stdout line).
fn dry_run(env: &Env, files: &[&Path]) -> (Option<i32>, Vec<Value>) {
    let mut cmd = env.cmd();
    cmd.args(["ingest", "--dry-run"]).args(files);
    let out = cmd.output().expect("run supportd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out.status.code(), lines)
}

/// The one line of a dry run of `file`, which must succeed.
fn plan_of(env: &Env, file: &Path) -> Value {
    let (code, lines) = dry_run(env, &[file]);
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line per input: {lines:?}");
    let line = lines.into_iter().next().expect("one line");
    assert_eq!(line["file"], file.to_str().expect("UTF-8 path"), "{line}");
    line
}

fn writes_named<'a>(plan: &'a Value, write: &str) -> Vec<&'a Value> {
    plan["writes"]
        .as_array()
        .expect("writes")
        .iter()
        .filter(|w| w["write"] == write)
        .collect()
}

fn mail_kinds(plan: &Value) -> Vec<&str> {
    plan["mails"]
        .as_array()
        .expect("mails")
        .iter()
        .map(|m| m["kind"].as_str().expect("kind"))
        .collect()
}

#[test]
fn a_new_mail_plans_a_ticket_and_its_ack_and_writes_nothing() {
    let env = Env::new();
    let file = fixture("mail/console-pages-queued.eml");
    let line = plan_of(&env, &file);
    assert!(line["quarantined"].is_null(), "{line}");
    let plan = &line["plan"];
    assert_eq!(plan["message_id"], RAY_ID);
    assert_eq!(plan["action"], "created");
    let new_ticket = writes_named(plan, "create-ticket");
    assert_eq!(new_ticket.len(), 1, "{plan}");
    assert_eq!(new_ticket[0]["number"], 1001, "{plan}");
    assert_eq!(new_ticket[0]["subject"], "console pages stuck in queued");
    assert_eq!(plan["ticket"]["new"]["number"], 1001, "{plan}");
    assert_eq!(mail_kinds(plan), vec!["ack"], "{plan}");
    let ack = &plan["mails"][0];
    assert_eq!(ack["content"]["requester"]["email"], RAY_EMAIL, "{ack}");
    assert_eq!(ack["ticket"]["new"]["number"], 1001, "{ack}");

    // Nothing was written: no ticket, no outbox row, no user, no quarantined copy.
    assert!(env.tickets().is_empty());
    assert!(env.outbox().is_empty());
    assert!(env.quarantine().is_empty());
    assert!(
        env.users().iter().all(|u| u["email"] != RAY_EMAIL),
        "the sender was not provisioned"
    );

    // The same mail ingested for real does what was planned.
    let n = created(&env.ingest_file(&file));
    assert_eq!(n, 1001);
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0]["kind"], "ack");
    assert_eq!(outbox[0]["to"], RAY_EMAIL);
}

#[test]
fn a_reply_plans_on_the_existing_ticket() {
    let env = Env::new();
    let n = created(&env.ingest_file(&fixture("mail/console-pages-queued.eml")));
    let before = env.ticket(n);
    let outbox_before = env.outbox().len();
    let reply = env.dir.path().join("reply.eml");
    std::fs::write(
        &reply,
        crlf(&format!(
            "From: Ray Donnelly <{RAY_EMAIL}>\nTo: {SUPPORT}\nSubject: Re: console pages\n\
             Date: Tue, 24 Nov 2026 09:30:00 -0500\nMessage-ID: <reply-1@mail.stbrigid-med.example>\n\
             In-Reply-To: <{RAY_ID}>\n\nForgot to say: the overhead paging still works.\n"
        )),
    )
    .expect("write reply");

    let line = plan_of(&env, &reply);
    let plan = &line["plan"];
    assert_eq!(plan["action"], "replied", "{plan}");
    assert_eq!(plan["ticket"]["existing"]["number"], n, "{plan}");
    assert!(writes_named(plan, "create-ticket").is_empty(), "{plan}");
    let recorded = writes_named(plan, "message");
    assert_eq!(recorded.len(), 1, "{plan}");
    assert_eq!(recorded[0]["ticket"]["existing"]["number"], n, "{plan}");

    // The ticket and the queue are as they were.
    assert_eq!(
        env.ticket(n)["messages"].as_array().map(Vec::len),
        before["messages"].as_array().map(Vec::len)
    );
    assert_eq!(env.outbox().len(), outbox_before);
    assert_eq!(env.tickets().len(), 1);
}

#[test]
fn unprocessable_and_unreadable_inputs_are_named_and_the_rest_planned() {
    let env = Env::new();
    let junk = env.dir.path().join("junk.eml");
    std::fs::write(&junk, b"no header at all").expect("write junk");
    let missing = env.dir.path().join("missing.eml");
    let good = fixture("mail/console-pages-queued.eml");
    let (code, lines) = dry_run(&env, &[&junk, &missing, &good]);
    // Unreadable input is EX_DATAERR, as for `ingest`; the others are still planned.
    assert_eq!(code, Some(65), "{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["file"], junk.to_str().expect("UTF-8"));
    assert!(lines[0]["plan"].is_null(), "{}", lines[0]);
    assert!(
        lines[0]["quarantined"]
            .as_str()
            .is_some_and(|r| r.contains("no sender address")),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["plan"]["action"], "created", "{}", lines[1]);
    assert!(env.quarantine().is_empty(), "a dry run quarantines nothing");
    assert!(env.tickets().is_empty());
}
