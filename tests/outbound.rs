//! One way out (issue 10): every kind of outbound mail leaves through one queue function,
//! with one failure rule. With every template broken, no kind of mail can be rendered, and
//! each is handled the same way: nothing is queued, the ticket's history records the mail as
//! not sent (with the kind and the cause), the ingest reason says so, and the message that
//! caused it is processed all the same — never quarantined.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

const MX: &str = "mx.vendor.example";

/// Every template shipped but the acknowledgement, each failing at render time. (The ack
/// fails on every subject but the sample's: start-up renders a sample acknowledgement and
/// refuses a template that fails on it.)
const TEMPLATES: &[&str] = &[
    "agent-reply.txt",
    "closed.txt",
    "command-error.txt",
    "inactive.txt",
    "rejected.txt",
    "notify-agent.txt",
    "notify-digest.txt",
];

fn broken_desk() -> (tempfile::TempDir, Env) {
    let templates = tempfile::tempdir().unwrap();
    for name in TEMPLATES {
        std::fs::write(
            templates.path().join(name),
            "Hello {{ no_such_function() }}\n",
        )
        .unwrap();
    }
    std::fs::write(
        templates.path().join("ack.txt"),
        "{% if subject != \"check-config\" %}{{ no_such_function() }}{% endif %}\n",
    )
    .unwrap();
    let env = Env::with_config(&format!(
        "[templates]\ndir = \"{}\"\n\n[policy]\nauthserv_id = \"{MX}\"\n\n\
         [[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n",
        templates.path().display()
    ));
    (templates, env)
}

/// The kinds recorded as not sent on ticket `n`.
fn not_sent(env: &Env, n: i64) -> Vec<String> {
    env.ticket(n)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "not-sent")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect()
}

fn assert_not_sent(env: &Env, out: &Value, n: i64, kinds: &[&str]) {
    let details = not_sent(env, n);
    for kind in kinds {
        assert!(
            details
                .iter()
                .any(|d| d.starts_with(&format!("{kind}: cannot be rendered"))),
            "{kind} not recorded as not sent: {details:?}"
        );
        assert!(
            out["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("not sent: {kind}: cannot be rendered"))),
            "{kind}: the outcome says so: {out}"
        );
    }
}

#[test]
fn a_mail_that_cannot_be_rendered_is_handled_alike_for_every_kind() {
    let (_templates, env) = broken_desk();

    // A new ticket: its acknowledgement and the agents' notification.
    let out = env.ingest(&crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Subject: Pager messages not arriving\nMessage-ID: <c1@clinic.example>\n\n\
         No pager messages arrive on 4 West.\n",
    ));
    assert_eq!(out["action"], "created", "{out}");
    assert_not_sent(&env, &out, 1001, &["ack", "notify-agent"]);

    // A customer's reply with a command: the command-error answer and the notification.
    let out = env.ingest(&crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Subject: Re: Pager\nMessage-ID: <c2@clinic.example>\nIn-Reply-To: <c1@clinic.example>\n\n\
         #close\nStill nothing.\n",
    ));
    assert_eq!(out["action"], "replied", "{out}");
    assert_not_sent(&env, &out, 1001, &["command-error"]);

    // A verified agent's reply through the agent channel that closes the ticket: the relay
    // and the closing notice.
    let ticket = env.ticket(1001);
    let key = agent_key(&env);
    let out = env.ingest(&crlf(&format!(
        "Authentication-Results: {MX}; dmarc=pass header.from=vendor.example\n\
         From: Alice <alice@vendor.example>\nTo: support+a-{key}@vendor.example\n\
         Subject: Re: [#1001] Pager\nMessage-ID: <a1@vendor.example>\n\n\
         #close\nWe restarted the gateway.\n"
    )));
    assert_eq!(out["action"], "agent_reply", "{out}");
    assert_not_sent(&env, &out, 1001, &["agent-reply", "closed"]);
    assert_eq!(env.ticket(1001)["status"], "closed");
    assert_ne!(ticket["status"], "closed");

    // A refusal belongs to no ticket: the outcome says it was not sent.
    env.ok(&["users", "add", "eve@elsewhere.example"]);
    env.ok(&["users", "deactivate", "eve@elsewhere.example"]);
    let out = env.ingest(&crlf(
        "From: Eve <eve@elsewhere.example>\nTo: support@vendor.example\n\
         Subject: help\nMessage-ID: <e1@elsewhere.example>\n\nHello\n",
    ));
    assert_eq!(out["action"], "rejected", "{out}");
    assert!(
        out["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not sent: inactive: cannot be rendered")),
        "{out}"
    );

    // Nothing reached the outbox, and nothing was quarantined.
    assert!(env.outbox().is_empty(), "{:?}", env.outbox());
    assert!(env.quarantine().is_empty());
}

/// The ticket's agent key, as the notification (never sent here) would have carried it.
fn agent_key(env: &Env) -> String {
    use sqlx::{Connection, Row};
    if let Some(pg) = &env.pg {
        return pg
            .sql("SELECT agent_key FROM tickets WHERE number = 1001")
            .unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut db = sqlx::SqliteConnection::connect(&env.db_url).await.unwrap();
        sqlx::query("SELECT agent_key FROM tickets WHERE number = 1001")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get::<String, _>("agent_key")
    })
}
