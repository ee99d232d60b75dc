//! Issue 9, findings 1, 2, 9 and 10, through the built binary: nobody speaks as an agent but an
//! agent, and nobody joins a ticket by knowing a Message-ID. Each test replays the attack of
//! the security review and asserts the safe outcome: what is recorded, and which mail is
//! queued to whom (nothing to the attacker, nothing relayed to the customer).

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

/// Our receiving MTA, as `[policy] authserv_id` names it.
const MX: &str = "mx.vendor.example";

/// The default policy (agents_require_auth = true, the default) with our MTA's id, and
/// Alice as an agent.
fn desk(extra: &str) -> Env {
    Env::with_config(&format!(
        "[policy]\nauthserv_id = \"{MX}\"\n{extra}\n\n\
         [[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n"
    ))
}

/// Ann's ticket #1001 (Cc Carol); Alice gets the notification.
fn ticket(env: &Env) -> Value {
    let out = env.ingest(&crlf(
        "From: Ann Lee <ann@clinic.example>\n\
         To: support@vendor.example\n\
         Cc: Carol Diaz <carol@clinic.example>\n\
         Subject: Pager messages not arriving\n\
         Message-ID: <c1@clinic.example>\n\n\
         Since this morning no pager messages arrive on 4 West.\n",
    ));
    assert_eq!(created(&out), 1001, "{out}");
    out
}

fn of_kind(env: &Env, kind: &str) -> Vec<Value> {
    env.outbox()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect()
}

/// The Message-ID of the (first) notification Alice got about #1001.
fn notification_id(env: &Env) -> String {
    let n = &of_kind(env, "notify-agent")[0];
    let raw = env.outbox_raw(n["id"].as_i64().unwrap());
    header(&raw, "Message-ID").unwrap()
}

fn collaborators(env: &Env) -> Vec<String> {
    env.ticket(1001)["collaborators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap().to_string())
        .collect()
}

fn events(env: &Env, number: i64) -> Vec<(String, String)> {
    env.ticket(number)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every recipient of every queued mail, lower-cased.
fn recipients(env: &Env) -> Vec<String> {
    env.outbox()
        .iter()
        .flat_map(|o| {
            o["to"]
                .as_str()
                .unwrap()
                .split(',')
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asserts that `out` was kept as an unverified note on #1001 and changed nothing else: no
/// mail to the customer or the attacker, no Cc added, still open.
fn assert_unverified(env: &Env, out: &Value, before: usize) {
    assert_eq!(out["action"], "ignored", "{out}");
    assert_eq!(out["ticket"], 1001, "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("unverified"),
        "{out}"
    );
    let t = env.ticket(1001);
    assert_eq!(t["status"], "open", "{t}");
    let last = t["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "unverified");
    assert_eq!(last["internal"], true);
    assert!(!collaborators(env).iter().any(|c| c.contains("evil")));
    let outbox = env.outbox();
    let new: Vec<&Value> = outbox.iter().skip(before).collect();
    assert_eq!(new.len(), 1, "only the agents are told: {new:?}");
    assert_eq!(new[0]["kind"], "notify-agent");
    assert_eq!(new[0]["to"], "alice@vendor.example");
    assert!(
        !recipients(env).iter().any(|r| r.contains("evil")),
        "{outbox:?}"
    );
    assert!(of_kind(env, "agent-reply").is_empty());
    assert!(of_kind(env, "closed").is_empty());
}

/// Finding 1: `From: Alice`, `Re: [#1001]`, `#cc mallory` / `#close`, under the default
/// config. Before: relayed to the customer, mallory added, the ticket closed, nobody told.
#[test]
fn forged_agent_from_with_a_guessed_tag_is_an_unverified_note() {
    let env = desk("");
    ticket(&env);
    let before = env.outbox().len();
    let forged = crlf(
        "From: Alice <alice@vendor.example>\n\
         To: support@vendor.example\n\
         Subject: Re: [#1001] Pager messages not arriving\n\
         Message-ID: <forged1@evil.example>\n\n\
         #cc mallory@evil.example\n#close\n\
         Please confirm your login at https://evil.example/reset\n",
    );
    let out = env.ingest(&forged);
    assert_unverified(&env, &out, before);
    let note = &of_kind(&env, "notify-agent")[1];
    let raw = env.outbox_raw(note["id"].as_i64().unwrap());
    assert!(
        header(&raw, "Subject").unwrap().contains("UNVERIFIED"),
        "{raw}"
    );
    assert!(
        raw.contains("not through the agent"),
        "the agents learn why: {raw}"
    );
    assert!(events(&env, 1001).iter().any(|(k, _)| k == "unverified"));

    // Authenticated by our MTA but still through the customer's thread (a Message-ID of
    // Ann's), not the agent channel: the same.
    let before = env.outbox().len();
    let signed = crlf(&format!(
        "Authentication-Results: {MX}; dkim=pass header.d=vendor.example; dmarc=pass header.from=vendor.example\n\
         From: Alice <alice@vendor.example>\n\
         To: support@vendor.example\n\
         Subject: Re: Pager messages not arriving\n\
         Message-ID: <forged2@vendor.example>\n\
         In-Reply-To: <c1@clinic.example>\n\n\
         #close\nDone.\n"
    ));
    assert_unverified(&env, &env.ingest(&signed), before);

    // Through the agent channel but without our MTA's verdict: the same.
    let before = env.outbox().len();
    let id = notification_id(&env);
    let unsigned = crlf(&format!(
        "From: Alice <alice@vendor.example>\n\
         To: support@vendor.example\n\
         Subject: Re: [#1001] Pager messages not arriving\n\
         Message-ID: <forged3@evil.example>\n\
         In-Reply-To: {id}\n\n\
         #cc mallory@evil.example\nHello\n"
    ));
    assert_unverified(&env, &env.ingest(&unsigned), before);
}

/// Finding 1: the genuine agent (authenticated, answering the notification) still works,
/// and a `#cc` outside the customer's organisation is recorded as such.
#[test]
fn a_verified_agent_reply_runs_commands_and_notes_outside_cc() {
    let env = desk("");
    ticket(&env);
    let id = notification_id(&env);
    let genuine = crlf(&format!(
        "Authentication-Results: {MX}; dkim=pass header.d=vendor.example; dmarc=pass header.from=vendor.example\n\
         From: Alice <alice@vendor.example>\n\
         To: support@vendor.example\n\
         Subject: Re: [#1001] Pager messages not arriving\n\
         Message-ID: <genuine@vendor.example>\n\
         In-Reply-To: {id}\n\n\
         #cc it-desk@outsourced.example\n\
         We restarted the gateway.\n"
    ));
    let out = env.ingest(&genuine);
    assert_eq!(out["action"], "agent_reply", "{out}");
    assert!(collaborators(&env).contains(&"it-desk@outsourced.example".to_string()));
    let cc = events(&env, 1001)
        .into_iter()
        .find(|(k, _)| k == "cc")
        .unwrap();
    assert!(cc.1.contains("outside the organisation"), "{cc:?}");
    let relay = &of_kind(&env, "agent-reply")[0];
    assert!(relay["to"].as_str().unwrap().contains("ann@clinic.example"));
}

/// `agents_require_auth = false` is an explicit, warned opt-out, and even then the agent
/// channel is required.
#[test]
fn opting_out_of_authentication_is_warned_and_keeps_the_channel_rule() {
    let env = desk("agents_require_auth = false");
    let out = env.run(&["check-config"]);
    assert_success(&out, "check-config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: policy.agents_require_auth = false"),
        "{text}"
    );
    ticket(&env);
    let before = env.outbox().len();
    let tag_only = crlf(
        "From: Alice <alice@vendor.example>\n\
         To: support@vendor.example\n\
         Subject: Re: [#1001] x\n\
         Message-ID: <tag-only@evil.example>\n\n\
         #close\n",
    );
    assert_unverified(&env, &env.ingest(&tag_only), before);

    // Agents configured, authentication required (the default), but no authserv_id: refused.
    let env = Env::with_config("[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n");
    let out = env.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.authserv_id"), "{err}");
}

/// Finding 2: only the topmost Authentication-Results of our authserv-id counts, quoted
/// strings and comments split nothing, and properties belong to their own method.
#[test]
fn authentication_results_cannot_be_forged_by_the_sender() {
    let env = desk("");
    ticket(&env);
    let id = notification_id(&env);
    for (name, results) in [
        (
            "forged lower header",
            format!(
                "Authentication-Results: {MX}; dkim=fail header.d=vendor.example; dmarc=fail header.from=vendor.example\n\
                 Authentication-Results: {MX}; dmarc=pass header.from=vendor.example\n"
            ),
        ),
        (
            "semicolon in a quoted value",
            format!(
                "Authentication-Results: {MX}; spf=pass smtp.mailfrom=\"x;dkim=pass header.d=vendor.example y=\"@evil.example\n"
            ),
        ),
        (
            "property of another method",
            format!(
                "Authentication-Results: {MX}; dkim=pass header.d=evil.example header.from=vendor.example\n"
            ),
        ),
    ] {
        let before = env.outbox().len();
        let mail = crlf(&format!(
            "{results}From: Alice <alice@vendor.example>\n\
             To: support@vendor.example\n\
             Subject: Re: [#1001] x\n\
             Message-ID: <ar-{}@evil.example>\n\
             In-Reply-To: {id}\n\n\
             #close\n",
            name.replace(' ', "-")
        ));
        let out = env.ingest(&mail);
        assert_unverified(&env, &out, before);
        assert!(
            out["reason"].as_str().unwrap().contains(MX),
            "{name}: the reason names the verdict: {out}"
        );
    }
}

/// Finding 9: a stranger Cc'd once by a known user, or who replied once, does not become a
/// "known" user who may open tickets.
#[test]
fn collaborators_and_repliers_do_not_become_known() {
    let env = desk("intake = \"known\"");
    env.ok(&["users", "add", "ann@clinic.example", "--name", "Ann"]);
    ticket(&env);
    let carol = crlf(
        "From: Carol Diaz <carol@clinic.example>\n\
         To: support@vendor.example\n\
         Subject: A new problem of my own\n\
         Message-ID: <carol-new@clinic.example>\n\n\
         Please open a ticket for me.\n",
    );
    let out = env.ingest(&carol);
    assert_eq!(out["action"], "rejected", "{out}");
    // Carol's reply on the ticket she is Cc'd on is still a reply.
    let reply = crlf(
        "From: Carol Diaz <carol@clinic.example>\n\
         To: support@vendor.example\n\
         Subject: Re: [#1001] Pager messages not arriving\n\
         Message-ID: <carol-re@clinic.example>\n\
         In-Reply-To: <c1@clinic.example>\n\n\
         Same here on 5 East.\n",
    );
    assert_eq!(env.ingest(&reply)["action"], "replied");
    assert_eq!(
        env.ingest(&crlf(
            "From: Carol Diaz <carol@clinic.example>\n\
         To: support@vendor.example\n\
         Subject: Another new problem\n\
         Message-ID: <carol-new2@clinic.example>\n\n\
         And another.\n",
        ))["action"],
        "rejected"
    );
    // Ann, the admin-made user whose ticket was accepted, stays known.
    let ann = crlf(
        "From: Ann Lee <ann@clinic.example>\n\
         To: support@vendor.example\n\
         Subject: Second question\n\
         Message-ID: <c2@clinic.example>\n\n\
         Another one.\n",
    );
    assert_eq!(env.ingest(&ann)["action"], "created");
    let users = env.users();
    let known = |e: &str| users.iter().find(|u| u["email"] == e).unwrap().clone();
    assert_eq!(known("carol@clinic.example")["role"], "customer");
}

/// Finding 10: a stranger with a real In-Reply-To of the customer's message neither joins
/// nor reopens the (closed) ticket, and learns nothing about it: they get an ordinary new
/// ticket of their own, and the agents an internal note on the old one.
#[test]
fn a_stranger_with_a_real_message_id_gets_a_ticket_of_their_own() {
    let env = desk("");
    ticket(&env);
    let id = notification_id(&env);
    let close = crlf(&format!(
        "Authentication-Results: {MX}; dmarc=pass header.from=vendor.example\n\
         From: Alice <alice@vendor.example>\n\
         To: support@vendor.example\n\
         Subject: Re: [#1001] x\n\
         Message-ID: <close@vendor.example>\n\
         In-Reply-To: {id}\n\n\
         #close\nFixed.\n"
    ));
    assert_eq!(env.ingest(&close)["action"], "agent_reply");
    assert_eq!(env.ticket(1001)["status"], "closed");
    let before = env.outbox().len();

    let stranger = crlf(
        "From: Mallory <mallory@evil.example>\n\
         To: support@vendor.example\n\
         Subject: Re: Pager messages not arriving\n\
         Message-ID: <m1@evil.example>\n\
         In-Reply-To: <c1@clinic.example>\n\n\
         #close\nWhat was the fix? Please send me the details.\n",
    );
    let out = env.ingest(&stranger);
    assert_eq!(out["action"], "created", "{out}");
    assert_eq!(out["ticket"], 1002, "{out}");
    let old = env.ticket(1001);
    assert_eq!(old["status"], "closed", "never reopens");
    let note = old["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(note["kind"], "non-participant");
    assert_eq!(note["internal"], true);
    assert!(note["body"].as_str().unwrap().contains("What was the fix"));
    assert!(events(&env, 1001)
        .iter()
        .any(|(k, _)| k == "non-participant"));
    assert!(!collaborators(&env).iter().any(|c| c.contains("evil")));

    // What Mallory gets: an ordinary ack of #1002 that names nothing of #1001.
    let new: Vec<Value> = env.outbox().into_iter().skip(before).collect();
    let to_mallory: Vec<&Value> = new
        .iter()
        .filter(|o| o["to"].as_str().unwrap().contains("mallory"))
        .collect();
    assert_eq!(to_mallory.len(), 1, "{new:?}");
    assert_eq!(to_mallory[0]["kind"], "ack");
    let ack = env.outbox_raw(to_mallory[0]["id"].as_i64().unwrap());
    assert!(ack.contains("1002"), "{ack}");
    assert!(!ack.contains("1001"), "{ack}");
    let old_key = old["access_key"].as_str().unwrap();
    assert!(!ack.contains(old_key), "{ack}");
    // No relay, no command error, nothing to Ann or Carol.
    assert!(new
        .iter()
        .all(|o| !o["to"].as_str().unwrap().contains("clinic.example")));
    assert!(of_kind(&env, "command-error").is_empty());
}
