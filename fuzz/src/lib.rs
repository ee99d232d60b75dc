//! What each fuzz target does with one input, shared by the AFL binaries (`fuzz_targets/`)
//! and by supportd's own test suite, which replays every input AFL found (crashes and hangs,
//! `tests/fixtures/fuzz/TARGET/`) through these same functions (`tests/fuzz_regressions.rs`
//! includes this file by path). Depends on nothing but supportd, chrono and serde_json.
//!
//! A target panics on a broken invariant: AFL records a panic as a crash.

#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use supportd::config::Config;
use supportd::mail::address::EmailAddress;
use supportd::mail::loops::{self, Origin};
use supportd::mail::parse::{self, InboundMail};
use supportd::mail::quote::strip_quotes;
use supportd::pipeline::Pipeline;
use supportd::tickets::notify::StaffMember;
use supportd::tickets::outbound::MailKind;
use supportd::tickets::plan::{self, Facts, NoticeState};
use supportd::tickets::{
    self, auth, commands, AccessKey, Decision, KnownUser, Lookup, Policy, Role, TicketRecord,
    TicketRef, TicketStatus, TicketSummary, UserRecord,
};
use supportd::triage::{Classification, Rules};

/// The targets, by the name `scripts/fuzz` and the regression fixtures use.
pub const TARGETS: &[&str] = &["pipeline", "auth", "config", "rules"];

/// The configuration the pipeline target decides under: default rules and templates, one
/// agent, authentication required, our authserv-id.
const CONFIG: &str = r#"
[support]
name = "Vendor Support"
address = "support@vendor.example"
public_url = "https://help.vendor.example"
phone = "+1 555 0142"

[policy]
intake = "open"
agents_require_auth = true
authserv_id = "mx.vendor.example"

[[agent]]
email = "alice@vendor.example"
name = "Alice"
"#;

/// Fixed access keys of the world's tickets (20 base32 characters, as issued).
const KEY_1001: &str = "abcdefghijklmnopqrst";
const AGENT_KEY_1001: &str = "bcdefghijklmnopqrstu";
const KEY_1002: &str = "cdefghijklmnopqrstuv";

/// What "the store" knows, built once per process: three tickets (open, closed long ago,
/// pending), the Message-IDs that thread to them, and four users. Each input is decided
/// against it the way [`Pipeline`] looks things up in the database.
pub struct World {
    pub pipeline: Pipeline,
    pub policy: Policy,
    pub now: DateTime<Utc>,
    tickets: HashMap<i64, TicketSummary>,
    message_ids: HashMap<&'static str, i64>,
    outbox_ids: HashMap<&'static str, i64>,
    access_keys: HashMap<&'static str, i64>,
    agent_keys: HashMap<&'static str, i64>,
    users: HashMap<&'static str, KnownUser>,
}

impl World {
    pub fn new() -> World {
        let config = Config::parse(CONFIG, "fuzz world").expect("the fuzz world's config");
        let pipeline = supportd::setup::build_pipeline(config).expect("the fuzz world's pipeline");
        let policy = pipeline.policy.clone();
        let now = Utc
            .with_ymd_and_hms(2026, 11, 18, 10, 0, 0)
            .single()
            .expect("a valid date");
        let ticket = |id: i64, status, closed_at, participants: &[&str]| TicketSummary {
            id,
            number: id,
            status,
            closed_at,
            participants: participants.iter().map(|p| p.to_string()).collect(),
        };
        let tickets = HashMap::from([
            (
                1001,
                ticket(
                    1001,
                    TicketStatus::Open,
                    None,
                    &["nora@harbor-clinic.test", "ann@harbor-clinic.test"],
                ),
            ),
            (
                1002,
                ticket(
                    1002,
                    TicketStatus::Closed,
                    Some(now - Duration::days(60)),
                    &["nora@harbor-clinic.test"],
                ),
            ),
            (
                1003,
                ticket(1003, TicketStatus::Pending, None, &["bob@clinic.example"]),
            ),
        ]);
        let user = |id, role, active, support_user, org: &str| KnownUser {
            id,
            role,
            active,
            support_user,
            // A user who may open tickets under intake `known`; collaborators are not.
            known: support_user || role != Role::Customer,
            org: org.to_string(),
        };
        World {
            pipeline,
            policy,
            now,
            tickets,
            message_ids: HashMap::from([
                ("first-1001@harbor-clinic.test", 1001),
                ("ack-1001@vendor.example", 1001),
                ("first-1002@harbor-clinic.test", 1002),
                ("notify-1003@vendor.example", 1003),
            ]),
            outbox_ids: HashMap::from([("ack-1001@vendor.example", 1)]),
            access_keys: HashMap::from([(KEY_1001, 1001), (KEY_1002, 1002)]),
            agent_keys: HashMap::from([(AGENT_KEY_1001, 1001)]),
            users: HashMap::from([
                (
                    "alice@vendor.example",
                    user(1, Role::Agent, true, false, "vendor.example"),
                ),
                (
                    "nora@harbor-clinic.test",
                    user(2, Role::Customer, true, true, "harbor-clinic.test"),
                ),
                (
                    "ivan@harbor-clinic.test",
                    user(3, Role::Customer, false, false, "harbor-clinic.test"),
                ),
                (
                    "flood@clinic.example",
                    user(4, Role::Customer, true, false, "clinic.example"),
                ),
            ]),
        }
    }

    fn ticket_of(&self, map: &HashMap<&'static str, i64>, key: &str) -> Option<TicketSummary> {
        map.get(key).and_then(|n| self.tickets.get(n)).cloned()
    }

    /// What `Pipeline::lookup` would find in a store holding this world.
    fn lookup(&self, mail: &InboundMail, origin: &Origin) -> Lookup {
        let sender_key = mail.sender.email.key();
        let mut l = Lookup {
            duplicate: self.message_ids.contains_key(mail.message_id.as_str()),
            sender: self.users.get(sender_key.as_str()).cloned(),
            recent_acks: if sender_key == "flood@clinic.example" {
                5
            } else {
                0
            },
            ..Lookup::default()
        };
        if l.duplicate {
            return l;
        }
        if *origin == Origin::Bounce {
            let mut ids = mail.embedded_message_ids.clone();
            ids.extend(tickets::referenced_ids(mail));
            l.bounced = ids.iter().find_map(|id| {
                let row = *self.outbox_ids.get(id.as_str())?;
                Some((row, self.ticket_of(&self.message_ids, id)?))
            });
            return l;
        }
        let own = &self.policy.own_addresses;
        l.by_reference = tickets::referenced_ids(mail)
            .iter()
            .find_map(|id| self.ticket_of(&self.message_ids, id));
        l.by_access_key = tickets::access_keys_in(mail, own)
            .iter()
            .find_map(|k| self.ticket_of(&self.access_keys, k.as_str()));
        l.by_agent_key = tickets::agent_keys_in(mail, own)
            .iter()
            .find_map(|k| self.ticket_of(&self.agent_keys, k.as_str()));
        l.by_tag = self
            .pipeline
            .desk
            .tag
            .numbers_in(&mail.subject)
            .iter()
            .filter_map(|n| self.tickets.get(n).cloned())
            .collect();
        l
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// Target `pipeline`: raw bytes → parse → loop classification → threading decision →
/// triage (new tickets) or command parsing (agent replies). Invariants: an agent reply is
/// authenticated; a new ticket's category and urgency exist in the rules.
pub fn pipeline(world: &World, raw: &[u8]) {
    let Ok(mail) = parse::parse(raw) else {
        return;
    };
    let origin = loops::origin(&mail);
    let lookup = world.lookup(&mail, &origin);
    let decision = tickets::decide(&mail, &origin, &lookup, &world.policy, world.now);
    // Triage once per input, as the pipeline does: the plan below uses the same class.
    let text = strip_quotes(&mail.body);
    let rules = &world.pipeline.rules;
    let class = rules.classify(&mail.subject, &text);
    match &decision {
        Decision::NewTicket { .. } => {
            assert!(
                rules.category(&class.category).is_some(),
                "triage chose an undefined category {:?}",
                class.category
            );
            assert!(
                rules.level(class.urgency).is_some(),
                "triage chose an undefined urgency {}",
                class.urgency
            );
        }
        Decision::AgentReply { .. } => {
            assert!(
                auth::verify(
                    &mail.authentication_results,
                    &world.policy.authserv_id,
                    mail.sender.email.domain()
                )
                .is_ok(),
                "an unauthenticated agent reply was trusted"
            );
            let parsed = commands::parse(&mail.body);
            assert!(parsed.text.len() <= mail.body.len());
        }
        _ => {}
    }
    let _ = tickets::reply_permission(&origin, &lookup, &world.policy);
    world.plan_and_render(&mail, &origin, &text, &class, lookup, decision);
}

impl World {
    /// The ticket `t` in full, as the store would give it.
    fn record(&self, t: &TicketSummary) -> TicketRecord {
        let key = |k: &str| AccessKey::parse(k).expect("a fixed key");
        TicketRecord {
            id: t.id,
            number: t.number,
            subject: format!("Ticket {}", t.number),
            status: t.status,
            closed_at: t.closed_at,
            category: "routing".into(),
            urgency: 2,
            access_key: key(if t.number == 1001 { KEY_1001 } else { KEY_1002 }),
            agent_key: (t.number == 1001).then(|| key(AGENT_KEY_1001)),
            created_at: self.now - Duration::days(1),
            first_response_due: self.now,
            resolution_due: self.now + Duration::days(1),
            first_response_at: None,
            requester: UserRecord {
                id: 2,
                email: "nora@harbor-clinic.test".into(),
                name: "Nora".into(),
                role: Role::Customer,
                active: true,
            },
            assignee: None,
            language: "en".into(),
            triage_category: "routing".into(),
            triage_urgency: 2,
        }
    }

    /// The rest of the way through the pure core: the decision's plan, and every planned
    /// mail rendered and composed the one way mail is. Invariants: only a verified agent's
    /// reply relays to the customer, and a mail that names a ticket names a real one.
    fn plan_and_render(
        &self,
        mail: &InboundMail,
        origin: &Origin,
        text: &str,
        class: &Classification,
        lookup: Lookup,
        decision: Decision,
    ) {
        let named = match &decision {
            Decision::Reply { ticket, .. }
            | Decision::AgentReply { ticket, .. }
            | Decision::UnverifiedAgentMail { ticket, .. }
            | Decision::NonParticipant { ticket, .. } => Some(self.record(ticket)),
            _ => None,
        };
        let agent = lookup
            .sender
            .as_ref()
            .filter(|u| u.role.is_staff())
            .map(|u| UserRecord {
                id: u.id,
                email: mail.sender.email.to_string(),
                name: "Alice".into(),
                role: u.role,
                active: u.active,
            });
        let relay_allowed = matches!(decision, Decision::AgentReply { .. });
        let facts = Facts {
            mail,
            origin,
            text,
            class,
            lookup,
            decision,
            received_at: self.now,
            now: self.now,
            ticket: named,
            collaborators: Vec::new(),
            customer_message_ids: vec!["first-1001@harbor-clinic.test".into()],
            next_number: 1004,
            staff: vec![StaffMember {
                email: EmailAddress::from_parts("alice", "vendor.example"),
                name: "Alice".into(),
                categories: Vec::new(),
            }],
            notices: NoticeState::default(),
            agent,
            assignable: Vec::new(),
            first_message: None,
            suggestions: Vec::new(),
            kb_source: None,
            incident_candidates: Vec::new(),
            next_incident_number: 1,
            incident: None,
        };
        let plan = plan::plan(&facts, &self.pipeline.context());
        for m in &plan.mails {
            assert!(
                relay_allowed || !matches!(m.kind, MailKind::AgentReply | MailKind::Closed),
                "a {:?} planned for mail that is no verified agent reply",
                m.kind
            );
            if let Some(TicketRef::Existing { number, .. }) = m.ticket {
                assert!(
                    self.tickets.contains_key(&number),
                    "mail for ticket #{number}"
                );
            }
            if let Ok(out) = m.render(&self.pipeline.desk, &self.pipeline.templates, &[]) {
                let _ = out.to_bytes_with(&mail.attachments);
            }
        }
        let _ = serde_json::to_string(&plan);
    }
}

/// Target `auth`: line 1 is the trusted authserv-id, line 2 the agent's domain, every further
/// line one raw `Authentication-Results` value. Invariant: a pass needs a header that names
/// the authserv-id and says `pass`.
pub fn auth(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let authserv_id = lines.next().unwrap_or_default();
    let domain = lines.next().unwrap_or_default();
    let results: Vec<String> = lines.map(str::to_string).collect();
    if auth::verify(&results, authserv_id, domain).is_ok() {
        let id = authserv_id.trim().to_ascii_lowercase();
        assert!(
            results.iter().any(|r| {
                let r = r.to_ascii_lowercase();
                r.contains(&id) && r.contains("pass")
            }),
            "a pass without a header naming {authserv_id:?} and a pass"
        );
    }
}

/// Target `config`: a config file. What loads must then yield its desk and tag.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = Config::parse(&text, "fuzz.toml") {
        if let Ok(tag) = tickets::TicketTag::new(&config.support.ticket_tag) {
            let subject = tag.tag_subject(1001, "Pager down");
            let _ = tag.numbers_in(&subject);
            // Who we are, as the pipeline builds it from what loaded.
            let s = &config.support;
            let desk = tickets::desk::Desk::new(
                &s.name,
                s.address.clone(),
                &s.extra_addresses,
                s.public_url.as_str(),
                &s.phone,
                tag,
            );
            let _ = desk.ticket_link(&tickets::AccessKey::from_random([0; 20]));
        }
    }
}

/// Target `rules`: a triage rules file through the loader (`Rules::from_toml`: reading,
/// validation, and the phrase index it builds in a few milliseconds). What loads must
/// classify; every error names a problem.
pub fn rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Rules::from_toml(&text, "fuzz-triage.toml") {
        Ok(rules) => {
            let _ = rules.classify("Pager down", "Nobody on 4 West can log in since 07:00.");
        }
        Err(e) => {
            assert!(!e.problems().is_empty(), "an error without a problem");
            let _ = e.to_string();
        }
    }
}

/// Runs `target` on `data` (the regression test's dispatcher).
pub fn run(target: &str, world: &World, data: &[u8]) {
    match target {
        "pipeline" => pipeline(world, data),
        "auth" => auth(data),
        "config" => config(data),
        "rules" => rules(data),
        other => panic!("no fuzz target `{other}`"),
    }
}
