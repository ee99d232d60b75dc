//! Agents working from their mail client (issue 4), through the built binary: notifications,
//! agent replies from real clients, every command, spoofing protection, intake policies and
//! inactive users. Each test gets its own temp dir, SQLite database and config.

// Test helpers panic on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/agents");

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db: String,
}

const BASE_CONFIG: &str = r#"
[support]
name = "Example Support"
address = "support@example.test"
public_url = "https://support.example.test"
phone = "+1 555 0100"

[[agent]]
email = "alice@vendor.example"
name = "Alice Agent"

[[agent]]
email = "bob@vendor.example"
name = "Bob Billing"
categories = ["billing"]
"#;

/// Our receiving MTA's id in `Authentication-Results` (`[policy] authserv_id`).
const AUTHSERV_ID: &str = "mx.example.test";

impl Env {
    /// `policy` is appended to the `[policy]` table, which names our MTA's authserv-id.
    fn new(policy: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("supportd.toml");
        let mut text = BASE_CONFIG.to_string();
        text.push_str(&format!("\n[policy]\nauthserv_id = \"{AUTHSERV_ID}\"\n"));
        text.push_str(policy);
        text.push('\n');
        std::fs::write(&config, text).unwrap();
        let db = format!("sqlite://{}", dir.path().join("t.db").display());
        Env {
            _dir: dir,
            config,
            db,
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_supportd"))
            .arg("--config")
            .arg(&self.config)
            .arg("--database")
            .arg(&self.db)
            .args(args)
            .env_remove("SUPPORTD_CONFIG")
            .env_remove("SUPPORTD_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(bytes) = stdin {
                input.write_all(bytes).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args, None);
        assert_eq!(code, 0, "supportd {args:?} failed: {err}");
        out
    }

    fn ingest(&self, raw: &str) -> Value {
        let (code, out, err) = self.run(&["ingest", "-"], Some(raw.as_bytes()));
        assert_eq!(code, 0, "ingest failed: {err}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn ingest_fixture(&self, name: &str) -> Value {
        self.ingest(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap())
    }

    /// An agent's mail as it arrives through our MTA: answering the ticket's first agent
    /// notification (the placeholder `notify-1@example.test` becomes its real Message-ID) and
    /// with the MTA's passing `Authentication-Results` on top.
    fn ingest_agent(&self, raw: &str) -> Value {
        let notification = self.raw(&self.outbox_of("notify-agent")[0]["id"]);
        let id = header(&notification, "Message-ID").unwrap();
        let id = id.trim_matches(['<', '>']);
        let signed = format!(
            "Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=vendor.example; dmarc=pass header.from=vendor.example\r\n{}",
            raw.replace("notify-1@example.test", id)
        );
        self.ingest(&signed)
    }

    fn ingest_agent_fixture(&self, name: &str) -> Value {
        self.ingest_agent(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap())
    }

    fn outbox(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["outbox", "list", "--json"])).unwrap();
        v.as_array().unwrap().clone()
    }

    fn outbox_of(&self, kind: &str) -> Vec<Value> {
        self.outbox()
            .into_iter()
            .filter(|o| o["kind"] == kind)
            .collect()
    }

    fn raw(&self, id: &Value) -> String {
        self.ok(&["outbox", "show", &id.to_string(), "--raw"])
    }

    fn ticket(&self, number: i64) -> Value {
        serde_json::from_str(&self.ok(&["tickets", "show", &number.to_string(), "--json"])).unwrap()
    }

    /// A fresh routing ticket #1001 from Ann (Cc Carol), with Alice notified.
    fn with_ticket(policy: &str) -> Env {
        let env = Env::new(policy);
        let out = env.ingest_fixture("customer.eml");
        assert_eq!(out["action"], "created", "{out}");
        assert_eq!(out["ticket"], 1001);
        env
    }
}

fn agent_mail(from: &str, id: &str, headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: Example Support <support@example.test>\r\nSubject: Re: [#1001] Pager messages not arriving on 4 West\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <notify-1@example.test>\r\nReferences: <c1@clinic.example> <notify-1@example.test>\r\nDate: Mon, 23 Nov 2026 09:30:00 +0000\r\n{headers}\r\n{body}"
    )
}

fn alice(id: &str, body: &str) -> String {
    agent_mail("Alice Agent <alice@vendor.example>", id, "", body)
}

fn events(t: &Value) -> Vec<(String, String)> {
    t["events"]
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

/// A header's value, unfolded.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n")
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim().to_string())
}

#[test]
fn new_ticket_notifies_the_right_agents_with_attachments() {
    let env = Env::with_ticket("");
    let notes = env.outbox_of("notify-agent");
    // A routing ticket: Bob only handles billing, so Alice (every category) is told.
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["to"], "alice@vendor.example");
    let raw = env.raw(&notes[0]["id"]);
    let subject = header(&raw, "Subject").unwrap();
    assert!(subject.starts_with("[#1001] New ticket:"), "{subject}");
    assert!(subject.contains("urgency 2"), "{subject}");
    assert!(
        subject.contains("[routing,") || subject.contains("[care-team"),
        "{subject}"
    );
    assert_eq!(header(&raw, "Importance").as_deref(), Some("high"));
    assert_eq!(header(&raw, "X-Priority").as_deref(), Some("1"));
    let reply_to = header(&raw, "Reply-To").unwrap();
    assert!(reply_to.contains("support+a-"), "{reply_to}");
    let t = env.ticket(1001);
    assert!(!reply_to.contains(t["access_key"].as_str().unwrap()));
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<c1@clinic.example>")
    );
    assert!(raw.contains("no pager messages arrive on 4 West"), "{raw}");
    assert!(raw.contains("gateway.log (text/plain"), "{raw}");
    // Named and linked, not attached (issue 9): the bytes are stored once, with the message.
    let link = format!(
        "https://support.example.test/t/{}/a/",
        t["access_key"].as_str().unwrap()
    );
    assert!(raw.contains(&link), "{raw}");
    assert!(!raw.contains("filename=\"gateway.log\""), "{raw}");
    assert!(!raw.contains("multipart/mixed"), "{raw}");
    let own_id = header(&raw, "Message-ID").unwrap();
    let ack = env.raw(&env.outbox_of("ack")[0]["id"]);
    assert_ne!(header(&ack, "Message-ID").unwrap(), own_id);

    // A billing ticket goes to Bob, the billing agent.
    let billing = "From: Dan <dan@clinic.example>\r\nTo: support@example.test\r\nSubject: Invoice overcharge on our billing statement\r\nMessage-ID: <b1@clinic.example>\r\n\r\nOur invoice shows a duplicate charge, please refund the billing error.\r\n";
    let out = env.ingest(billing);
    let t = env.ticket(out["ticket"].as_i64().unwrap());
    if t["category"] == "billing" {
        let notes = env.outbox_of("notify-agent");
        assert_eq!(notes.last().unwrap()["to"], "bob@vendor.example");
    }
}

#[test]
fn replies_from_real_mail_clients_are_stripped_and_relayed() {
    for (fixture, kept, gone) in [
        (
            "gmail.eml",
            "We have restarted the paging gateway.",
            "wrote:",
        ),
        ("outlook.eml", "it is flowing again", "Sent: Monday"),
        (
            "apple.eml",
            "the paging gateway is back",
            "Sent from my iPhone",
        ),
        ("thunderbird.eml", "pages are arriving again", "+1 555 0199"),
    ] {
        let env = Env::with_ticket("");
        let out = env.ingest_agent_fixture(fixture);
        assert_eq!(out["action"], "agent_reply", "{fixture}: {out}");
        assert_eq!(out["ticket"], 1001);
        let relays = env.outbox_of("agent-reply");
        assert_eq!(relays.len(), 1, "{fixture}");
        assert_eq!(relays[0]["to"], "ann@clinic.example,carol@clinic.example");
        let raw = env.raw(&relays[0]["id"]);
        assert!(raw.contains(kept), "{fixture}: {raw}");
        assert!(!raw.contains(gone), "{fixture}: {raw}");
        assert!(!raw.contains("New ticket on ticket"), "{fixture}: {raw}");
        assert!(
            header(&raw, "From")
                .unwrap()
                .contains("<support@example.test>"),
            "{raw}"
        );
        let t = env.ticket(1001);
        let key = t["access_key"].as_str().unwrap();
        assert!(header(&raw, "Reply-To")
            .unwrap()
            .contains(&format!("support+{key}@")));
        assert!(header(&raw, "Subject").unwrap().contains("[#1001]"));
        assert_eq!(
            header(&raw, "In-Reply-To").as_deref(),
            Some("<c1@clinic.example>")
        );
        assert!(header(&raw, "Cc").unwrap().contains("carol@clinic.example"));
        assert!(header(&raw, "Auto-Submitted").is_none());
        assert!(t["first_response_at"].is_string(), "{fixture}: {t}");
        assert!(events(&t).iter().any(|(k, _)| k == "first-response"));
        // The customer's answer to the relay threads back as a customer reply.
        let id = header(&raw, "Message-ID").unwrap();
        let id = id.trim_matches(['<', '>']);
        let answer = format!("From: Ann Lee <ann@clinic.example>\r\nTo: support@example.test\r\nSubject: Re: [#1001] x\r\nMessage-ID: <ann2@clinic.example>\r\nIn-Reply-To: <{id}>\r\n\r\nYes, thank you, it works.\r\n");
        let out = env.ingest(&answer);
        assert_eq!(out["action"], "replied", "{out}");
        assert_eq!(env.outbox_of("notify-agent").len(), 2);
    }
}

#[test]
fn agent_reply_attachments_are_relayed() {
    let env = Env::with_ticket("");
    let mail = agent_mail(
        "alice@vendor.example",
        "att@vendor.example",
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n",
        "--x\r\nContent-Type: text/plain\r\n\r\nSee the attached guide.\r\n--x\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"guide.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--x--\r\n",
    );
    assert_eq!(env.ingest_agent(&mail)["action"], "agent_reply");
    let raw = env.raw(&env.outbox_of("agent-reply")[0]["id"]);
    assert!(raw.contains("filename=\"guide.pdf\""), "{raw}");
    assert!(raw.contains("See the attached guide."), "{raw}");
}

#[test]
fn reply_to_the_agent_address_threads_without_headers() {
    let env = Env::with_ticket("");
    let raw = env.raw(&env.outbox_of("notify-agent")[0]["id"]);
    let reply_to = header(&raw, "Reply-To").unwrap();
    let address = reply_to
        .rsplit('<')
        .next()
        .unwrap()
        .trim_end_matches('>')
        .to_string();
    // No tag, no References: only the agent key in the address.
    let mail = format!("From: alice@vendor.example\r\nTo: {address}\r\nSubject: the pager thing\r\nMessage-ID: <plain@vendor.example>\r\n\r\nFixed on our side.\r\n");
    let out = env.ingest_agent(&mail);
    assert_eq!(out["action"], "agent_reply", "{out}");
    assert_eq!(out["ticket"], 1001);
    assert_eq!(env.outbox_of("agent-reply").len(), 1);
}

#[test]
fn every_command() {
    let env = Env::with_ticket("");
    env.ok(&[
        "users",
        "add",
        "carl@vendor.example",
        "--role",
        "agent",
        "--name",
        "Carl",
    ]);
    let out = env.ingest_agent(&alice(
        "cmd1@vendor.example",
        "#urgency 1\r\n#category billing\r\n#assign carl@vendor.example\r\n#cc dave@clinic.example\r\n#pending\r\n\r\nWe are on it.\r\n",
    ));
    assert_eq!(out["action"], "agent_reply", "{out}");
    let t = env.ticket(1001);
    assert_eq!(t["urgency"], 1);
    assert_eq!(t["category"], "billing");
    assert_eq!(t["status"], "pending");
    assert_eq!(t["assignee"]["email"], "carl@vendor.example");
    let collaborators: Vec<&str> = t["collaborators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap())
        .collect();
    assert!(collaborators.contains(&"dave@clinic.example"), "{t}");
    let ev = events(&t);
    for kind in ["urgency", "category", "assign", "cc", "status", "reply"] {
        assert!(ev.iter().any(|(k, _)| k == kind), "{kind} missing: {ev:?}");
    }
    // The relay does not contain the commands and reaches the new Cc.
    let relay = env.outbox_of("agent-reply");
    assert!(relay[0]["to"]
        .as_str()
        .unwrap()
        .contains("dave@clinic.example"));
    let raw = env.raw(&relay[0]["id"]);
    assert!(raw.contains("We are on it."));
    assert!(!raw.contains("#urgency"), "{raw}");

    // A customer reply on a pending ticket opens it again and goes to the assignee only.
    let answer = "From: ann@clinic.example\r\nTo: support@example.test\r\nSubject: Re: [#1001] x\r\nMessage-ID: <ann-p@clinic.example>\r\n\r\nStill nothing.\r\n";
    assert_eq!(env.ingest(answer)["action"], "replied");
    assert_eq!(env.ticket(1001)["status"], "open");
    let notes = env.outbox_of("notify-agent");
    assert_eq!(notes.last().unwrap()["to"], "carl@vendor.example");

    // #assign me, #open (no change), then #close: the closing notice.
    env.ingest_agent(&alice("cmd2@vendor.example", "#assign me\r\n#open\r\n"));
    assert_eq!(
        env.ticket(1001)["assignee"]["email"],
        "alice@vendor.example"
    );
    let before = env.outbox_of("agent-reply").len();
    let out = env.ingest_agent(&alice("cmd3@vendor.example", "#close\r\n"));
    assert_eq!(out["action"], "agent_reply");
    let t = env.ticket(1001);
    assert_eq!(t["status"], "closed");
    assert!(t["closed_at"].is_string());
    assert_eq!(
        env.outbox_of("agent-reply").len(),
        before,
        "a bare #close relays no text"
    );
    let closed = env.outbox_of("closed");
    assert_eq!(closed.len(), 1);
    let raw = env.raw(&closed[0]["id"]);
    assert!(raw.contains("has been closed"), "{raw}");
    assert!(raw.contains("reply to this email"), "{raw}");
}

#[test]
fn closing_notice_can_be_turned_off() {
    let env = Env::new("");
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "phone = \"+1 555 0100\"",
        "phone = \"+1 555 0100\"\nnotify_on_close = false",
    );
    std::fs::write(&env.config, text).unwrap();
    env.ingest_fixture("customer.eml");
    env.ingest_agent(&alice("c@vendor.example", "#close\r\nDone, closing.\r\n"));
    assert_eq!(env.ticket(1001)["status"], "closed");
    assert!(env.outbox_of("closed").is_empty());
    assert_eq!(env.outbox_of("agent-reply").len(), 1);
}

#[test]
fn note_sends_nothing() {
    let env = Env::with_ticket("");
    let before = env.outbox().len();
    let out = env.ingest_agent(&alice(
        "note@vendor.example",
        "#note\r\nCustomer is on the old gateway firmware, do not tell them yet.\r\n",
    ));
    assert_eq!(out["action"], "agent_reply", "{out}");
    assert_eq!(env.outbox().len(), before);
    let t = env.ticket(1001);
    assert!(t["first_response_at"].is_null());
    let m = t["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(m["internal"], true);
    assert_eq!(m["kind"], "note");
    assert!(m["body"].as_str().unwrap().contains("old gateway firmware"));
}

#[test]
fn unknown_agent_command_executes_and_sends_nothing_but_an_error() {
    let env = Env::with_ticket("");
    let out = env.ingest_agent(&alice(
        "typo@vendor.example",
        "#ntoe\r\n#close\r\n#urgency 9\r\nInternal: customer owes us money.\r\n",
    ));
    assert_eq!(out["action"], "agent_reply");
    assert!(out["reason"].as_str().unwrap().contains("#ntoe"), "{out}");
    assert_eq!(env.ticket(1001)["status"], "open");
    assert!(env.outbox_of("agent-reply").is_empty());
    let errors = env.outbox_of("command-error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["to"], "alice@vendor.example");
    let raw = env.raw(&errors[0]["id"]);
    assert!(raw.contains("#ntoe"), "{raw}");
    assert!(raw.contains("#urgency 9"), "{raw}");
    assert!(!raw.contains("customer owes"), "{raw}");
}

#[test]
fn non_agent_close_is_ignored_with_an_error_reply() {
    let env = Env::with_ticket("");
    let mail = "From: Ann Lee <ann@clinic.example>\r\nTo: support@example.test\r\nSubject: Re: [#1001] Pager\r\nMessage-ID: <ann-close@clinic.example>\r\nIn-Reply-To: <c1@clinic.example>\r\n\r\n#close\r\nAll good now.\r\n";
    let out = env.ingest(mail);
    assert_eq!(out["action"], "replied", "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("non-agent"),
        "{out}"
    );
    assert_eq!(env.ticket(1001)["status"], "open");
    let errors = env.outbox_of("command-error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["to"], "ann@clinic.example");
    let raw = env.raw(&errors[0]["id"]);
    assert!(raw.contains("only accepted from agents"), "{raw}");
    assert_eq!(
        header(&raw, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
}

#[test]
fn forged_agent_mail_is_an_unverified_note() {
    let env = Env::with_ticket("");
    let before = env.outbox().len();
    // Forged: no header from our MTA (a header from the attacker's own server does not count).
    let forged = agent_mail(
        "Alice Agent <alice@vendor.example>",
        "forged@evil.example",
        "Authentication-Results: mx.evil.example; dmarc=pass header.from=vendor.example\r\n",
        "#close\r\nPlease send your password to reset@evil.example.\r\n",
    );
    let notification = env.raw(&env.outbox_of("notify-agent")[0]["id"]);
    let id = header(&notification, "Message-ID").unwrap();
    let out = env.ingest(&forged.replace("<notify-1@example.test>", &id));
    assert_eq!(out["action"], "ignored", "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("unverified"),
        "{out}"
    );
    // Nothing to the customer; the agents are told, Alice (whose address it bears) too.
    let after = env.outbox();
    assert_eq!(after.len(), before + 1, "{after:?}");
    let told = after.last().unwrap();
    assert_eq!(told["kind"], "notify-agent");
    assert_eq!(told["to"], "alice@vendor.example");
    let raw = env.raw(&told["id"]);
    assert!(
        header(&raw, "Subject").unwrap().contains("UNVERIFIED"),
        "{raw}"
    );
    assert!(raw.contains("NOT verified"), "{raw}");
    let t = env.ticket(1001);
    assert_eq!(t["status"], "open");
    let m = t["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(m["kind"], "unverified");
    assert_eq!(m["internal"], true);
    assert!(events(&t).iter().any(|(k, _)| k == "unverified"));

    // A DKIM pass for another domain is not enough either.
    let other = agent_mail(
        "alice@vendor.example",
        "other@vendor.example",
        "Authentication-Results: mx.example.test; dkim=pass header.d=evil.example; dmarc=fail header.from=vendor.example\r\n",
        "Hi\r\n",
    );
    assert_eq!(
        env.ingest(&other.replace("<notify-1@example.test>", &id))["action"],
        "ignored"
    );

    let genuine = agent_mail(
        "Alice Agent <alice@vendor.example>",
        "genuine@vendor.example",
        "Authentication-Results: mx.example.test;\r\n dkim=pass (2048-bit key) header.d=vendor.example header.s=s1;\r\n spf=pass smtp.mailfrom=vendor.example;\r\n dmarc=pass (p=REJECT) header.from=vendor.example\r\n",
        "Fixed, please check.\r\n",
    );
    let out = env.ingest(&genuine.replace("<notify-1@example.test>", &id));
    assert_eq!(out["action"], "agent_reply", "{out}");
    assert_eq!(env.outbox_of("agent-reply").len(), 1);
}

const STRANGER: &str = "From: Eve Stranger <eve@elsewhere.example>\r\nTo: support@example.test\r\nSubject: Please help\r\nMessage-ID: <eve1@elsewhere.example>\r\n\r\nI cannot log in.\r\n";

fn numbered(mail: &str, n: usize) -> String {
    mail.replace("<eve1@", &format!("<eve{n}@"))
}

#[test]
fn intake_open_accepts_anyone() {
    let env = Env::new("intake = \"open\"");
    assert_eq!(env.ingest(STRANGER)["action"], "created");
}

#[test]
fn intake_known_rejects_strangers_politely_and_rate_limited() {
    let env = Env::new("intake = \"known\"");
    let out = env.ingest(STRANGER);
    assert_eq!(out["action"], "rejected", "{out}");
    assert!(out["ticket"].is_null());
    assert!(out["reason"].as_str().unwrap().contains("known"), "{out}");
    let rejected = env.outbox_of("rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["to"], "eve@elsewhere.example");
    let raw = env.raw(&rejected[0]["id"]);
    assert!(raw.contains("site administrator"), "{raw}");
    assert!(raw.contains("elsewhere.example"), "{raw}");
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<eve1@elsewhere.example>")
    );
    // Recorded: the same message again is a duplicate.
    assert_eq!(env.ingest(STRANGER)["action"], "duplicate");
    for n in 2..=8 {
        assert_eq!(env.ingest(&numbered(STRANGER, n))["action"], "rejected");
    }
    assert_eq!(
        env.outbox_of("rejected").len(),
        5,
        "rate limit shared with acks"
    );
    assert!(env.ok(&["tickets", "list", "--json"]).trim() == "[]");

    // Once known, the same person may open tickets.
    env.ok(&["users", "add", "eve@elsewhere.example", "--name", "Eve"]);
    assert_eq!(env.ingest(&numbered(STRANGER, 20))["action"], "created");
    // Agents always may.
    let agent = "From: alice@vendor.example\r\nTo: support@example.test\r\nSubject: internal\r\nMessage-ID: <a-new@vendor.example>\r\n\r\ntest\r\n";
    assert_eq!(env.ingest(agent)["action"], "created");
}

#[test]
fn intake_support_users_only() {
    let env = Env::new("intake = \"support-users\"");
    env.ok(&[
        "users",
        "add",
        "eve@elsewhere.example",
        "--role",
        "customer",
    ]);
    let out = env.ingest(STRANGER);
    assert_eq!(out["action"], "rejected", "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("support user"),
        "{out}"
    );
    let raw = env.raw(&env.outbox_of("rejected")[0]["id"]);
    assert!(raw.contains("support contact"), "{raw}");
    env.ok(&[
        "users",
        "add",
        "eve@elsewhere.example",
        "--org",
        "Elsewhere Clinic",
        "--support-user",
    ]);
    let users: Value = serde_json::from_str(&env.ok(&["users", "list", "--json"])).unwrap();
    let eve = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "eve@elsewhere.example")
        .unwrap()
        .clone();
    assert_eq!(eve["org"], "Elsewhere Clinic");
    assert_eq!(eve["support_user"], true);
    assert_eq!(env.ingest(&numbered(STRANGER, 2))["action"], "created");
}

#[test]
fn inactive_users_are_told_how_to_be_reactivated() {
    let env = Env::new("");
    env.ok(&["users", "add", "eve@elsewhere.example", "--name", "Eve"]);
    env.ok(&["users", "deactivate", "eve@elsewhere.example"]);
    let out = env.ingest(STRANGER);
    assert_eq!(out["action"], "rejected", "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("deactivated"),
        "{out}"
    );
    let inactive = env.outbox_of("inactive");
    assert_eq!(inactive.len(), 1);
    let raw = env.raw(&inactive[0]["id"]);
    assert!(raw.contains("deactivated"), "{raw}");
    assert!(raw.contains("reactivated"), "{raw}");
    let (code, _, err) = env.run(&["users", "activate", "nobody@elsewhere.example"], None);
    assert_ne!(code, 0);
    assert!(err.contains("no user"), "{err}");
    env.ok(&["users", "activate", "eve@elsewhere.example"]);
    assert_eq!(env.ingest(&numbered(STRANGER, 2))["action"], "created");
}

// ---------------------------------------------------------------------------------------------
// Golden mails: every new template, fixed clock and ids, compared byte for byte with
// tests/fixtures/golden/agents-*.eml. `UPDATE_GOLDEN=1` rewrites them; review with `git diff`.

mod golden {
    use chrono::{DateTime, TimeZone, Utc};
    use supportd::mail::address::EmailAddress;
    use supportd::mail::compose::Party;
    use supportd::mail::parse::Attachment;
    use supportd::templates::Templates;
    use supportd::tickets::commands::NotUnderstood;
    use supportd::tickets::desk::Desk;
    use supportd::tickets::notify::{NotifyEvent, NotifyFacts, StaffMember, StoredAttachment};
    use supportd::tickets::outbound::{Content, Mail, MailKind, Stamp};
    use supportd::tickets::replies::{Answering, CustomerFacts};
    use supportd::tickets::{AccessKey, Refusal, TicketStatus, TicketTag};
    use supportd::triage::Rules;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden");

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).unwrap()
    }

    fn check(name: &str, bytes: &[u8]) {
        let path = format!("{DIR}/agents-{name}.eml");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, bytes).unwrap();
            return;
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (run with UPDATE_GOLDEN=1 to create it)"));
        if want != bytes {
            let (want, got) = (
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(bytes),
            );
            for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
                assert_eq!(w, g, "{path}: first difference on line {}", i + 1);
            }
            panic!("{path}: lengths differ:\n--- want\n{want}\n--- got\n{got}");
        }
    }

    fn party(name: &str, email: &str) -> Party {
        Party {
            name: Some(name.to_string()),
            email: EmailAddress::parse(email).unwrap(),
        }
    }

    fn desk() -> Desk {
        Desk::new(
            "Vendor Support",
            EmailAddress::parse("support@vendor.example").unwrap(),
            &[],
            "https://help.vendor.example/",
            "+1 555 0142",
            TicketTag::new("[#{number}]").unwrap(),
        )
    }

    /// Renders `content` the one way every mail is rendered, with `message_id`, and composes
    /// it with `attachments`.
    fn render(
        kind: MailKind,
        content: Content,
        message_id: &str,
        linked: &[StoredAttachment],
        attachments: &[Attachment],
    ) -> Vec<u8> {
        let mail = Mail {
            kind,
            ticket: None,
            stamp: Stamp {
                message_id: message_id.into(),
                date: now(),
            },
            to_agents: false,
            history: None,
            with_inbound_attachments: !linked.is_empty(),
            content,
        };
        let out = mail
            .render(&desk(), &Templates::load(None).unwrap(), linked)
            .unwrap();
        out.to_bytes_with(attachments).unwrap()
    }

    #[test]
    fn notify_agent() {
        let rules = Rules::from_toml(include_str!("../config/triage.toml"), "triage").unwrap();
        let attachments = vec![StoredAttachment {
            id: 17,
            filename: "gateway.log".into(),
            content_type: "text/plain".into(),
            size: 29,
        }];
        let ann = party("Ann Lee", "ann@stbrigid-med.example");
        for (name, event, level, text) in [
            (
                "notify-new-level1",
                NotifyEvent::NewTicket,
                1,
                "Since 07:50 no pages reach 4 West. Nurses cannot be reached.",
            ),
            (
                "notify-reply-level4",
                NotifyEvent::CustomerReply,
                4,
                "Still nothing, see the log.",
            ),
        ] {
            let facts = NotifyFacts {
                number: 1042,
                agent_key: AccessKey::parse("a7m2qyx4t6w3rbp5n2j4").unwrap(),
                access_key: AccessKey::parse("k7m2qyx4t6w3rbp5n2j4").unwrap(),
                event,
                subject: "Pages not arriving on 4 West".into(),
                status: TicketStatus::Open,
                author: ann.clone(),
                requester: ann.clone(),
                category: rules.category("routing").unwrap().clone(),
                level: rules.level(level).unwrap().clone(),
                first_response_due: now() + chrono::Duration::hours(1),
                resolution_due: now() + chrono::Duration::hours(24),
                first_response_at: None,
                assignee: (event == NotifyEvent::CustomerReply)
                    .then(|| "alice@vendor.example".to_string()),
                text: text.into(),
                attachments: Vec::new(),
                inbound_message_id: "20261123140200.77aa@mail.stbrigid-med.example".into(),
                inbound_references: Vec::new(),
            };
            let to = StaffMember {
                email: EmailAddress::parse("alice@vendor.example").unwrap(),
                name: "Alice Agent".into(),
                categories: vec![],
            };
            let content = Content::Notify { facts, to };
            let bytes = render(
                MailKind::NotifyAgent,
                content,
                "supportd.notify1@vendor.example",
                &attachments,
                &[],
            );
            check(name, &bytes);
        }
    }

    fn ticket() -> CustomerFacts {
        CustomerFacts {
            number: 1042,
            access_key: AccessKey::parse("k7m2qyx4t6w3rbp5n2j4").unwrap(),
            subject: "Pages not arriving on 4 West".into(),
            requester: party("Ann Lee", "ann@stbrigid-med.example"),
            cc: vec![party("Carol Diaz", "carol@stbrigid-med.example")],
            in_reply_to: Some("ann2@mail.stbrigid-med.example".into()),
            references: vec![
                "20261123140200.77aa@mail.stbrigid-med.example".into(),
                "ann2@mail.stbrigid-med.example".into(),
            ],
            reopen_days: 30,
            language: "en".into(),
        }
    }

    #[test]
    fn agent_reply_and_closed() {
        let guide = Attachment {
            filename: "restart-guide.pdf".into(),
            content_type: "application/pdf".into(),
            size: 9,
            content_id: None,
            data: b"%PDF-1.4\n".to_vec(),
        };
        let relay = Content::AgentReply {
            ticket: ticket(),
            agent_name: "Alice Agent".into(),
            text: "Hi Ann,\n\nWe restarted the paging gateway. Could you confirm pages arrive again?\n\nAlice".into(),
        };
        let id = "supportd.reply1@vendor.example";
        check(
            "agent-reply",
            &render(MailKind::AgentReply, relay, id, &[], &[guide]),
        );
        let closed = Content::Closed {
            ticket: ticket(),
            agent_name: "Alice Agent".into(),
        };
        check("closed", &render(MailKind::Closed, closed, id, &[], &[]));
    }

    fn answering(to: Party) -> Answering {
        Answering {
            to,
            subject: "Re: [#1042] Pages not arriving on 4 West".into(),
            message_id: "reply-with-commands@vendor.example".into(),
            references: Vec::new(),
            language: "en".into(),
        }
    }

    #[test]
    fn command_errors() {
        let errors = vec![
            NotUnderstood {
                line: "#ntoe".into(),
                why: "unknown command #ntoe".into(),
            },
            NotUnderstood {
                line: "#urgency 9".into(),
                why: "no urgency level 9; levels are 1, 2, 3, 4".into(),
            },
        ];
        let agent = Content::CommandError {
            answering: answering(party("Alice Agent", "alice@vendor.example")),
            number: 1042,
            from_agent: true,
            errors,
        };
        let bytes = render(
            MailKind::CommandError,
            agent,
            "supportd.err1@vendor.example",
            &[],
            &[],
        );
        check("command-error-agent", &bytes);
        let customer = Content::CommandError {
            answering: answering(party("Ann Lee", "ann@stbrigid-med.example")),
            number: 1042,
            from_agent: false,
            errors: vec![NotUnderstood {
                line: "#close".into(),
                why: "only agents may use commands".into(),
            }],
        };
        let bytes = render(
            MailKind::CommandError,
            customer,
            "supportd.err2@vendor.example",
            &[],
            &[],
        );
        check("command-error-customer", &bytes);
    }

    #[test]
    fn refusals() {
        for (name, refusal) in [
            ("rejected-known", Refusal::UnknownSender),
            ("rejected-support-users", Refusal::NotSupportUser),
            ("inactive", Refusal::Inactive),
        ] {
            let content = Content::Refusal {
                answering: Answering {
                    to: party("Eve Stranger", "eve@elsewhere.example"),
                    subject: "Cannot log in".into(),
                    message_id: "eve1@elsewhere.example".into(),
                    references: Vec::new(),
                    language: "en".into(),
                },
                refusal,
                org: "elsewhere.example".into(),
            };
            let id = format!("supportd.{name}@vendor.example");
            check(name, &render(MailKind::Rejected, content, &id, &[], &[]));
        }
    }
}
