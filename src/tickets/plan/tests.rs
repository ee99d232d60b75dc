//! The planner without a database: facts in, a plan out.

use chrono::TimeZone;

use super::*;
use crate::clock::SequentialIds;
use crate::mail::address::EmailAddress;
use crate::mail::loops;
use crate::mail::parse::parse;
use crate::tickets::decide::decide;
use crate::tickets::{AccessKey, Role, TicketTag};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

/// Ticket 1001 of ann@clinic.example, as threading finds it.
fn ann_ticket(status: TicketStatus, closed_at: Option<DateTime<Utc>>) -> TicketSummary {
    TicketSummary {
        id: 1001,
        number: 1001,
        status,
        closed_at,
        participants: vec!["ann@clinic.example".into()],
    }
}

/// An active, known sender of `org`.
fn known(id: i64, role: Role, org: &str) -> KnownUser {
    KnownUser {
        id,
        role,
        active: true,
        support_user: false,
        known: true,
        org: org.into(),
    }
}

struct World {
    desk: Desk,
    policy: Policy,
    rules: Rules,
    ids: SequentialIds,
}

impl World {
    fn new() -> World {
        let desk = Desk::new(
            "Support",
            addr("support@example.test"),
            &[],
            "https://help.example.test",
            "+1 555 0100",
            TicketTag::new("[#{number}]").unwrap(),
        );
        let policy = Policy {
            own_addresses: desk.own.clone(),
            authserv_id: "mx.example.test".into(),
            max_collaborators: 2,
            ..crate::tickets::decide::tests::policy()
        };
        let rules =
            Rules::from_toml(include_str!("../../../config/triage.toml"), "triage").unwrap();
        World {
            desk,
            policy,
            rules,
            ids: SequentialIds::default(),
        }
    }

    fn context(&self) -> Context<'_> {
        Context {
            desk: &self.desk,
            policy: &self.policy,
            rules: &self.rules,
            ids: &self.ids,
        }
    }
}

fn alice() -> StaffMember {
    StaffMember {
        email: addr("alice@vendor.example"),
        name: "Alice".into(),
        categories: Vec::new(),
    }
}

fn record(number: i64, status: TicketStatus) -> TicketRecord {
    TicketRecord {
        id: number,
        number,
        subject: "Pager".into(),
        status,
        closed_at: None,
        category: "routing".into(),
        urgency: 2,
        access_key: AccessKey::parse("abcdefghijklmnopqrst").unwrap(),
        agent_key: AccessKey::parse("bcdefghijklmnopqrsta"),
        created_at: now(),
        first_response_due: now(),
        resolution_due: now(),
        first_response_at: None,
        requester: UserRecord {
            id: 1,
            email: "ann@clinic.example".into(),
            name: "Ann".into(),
            role: Role::Customer,
            active: true,
        },
        assignee: None,
        language: "en".into(),
        triage_category: "routing".into(),
        triage_urgency: 2,
    }
}

/// Plans `raw` with the store knowing `lookup` (and `ticket` in full).
fn plan_of(
    w: &World,
    raw: &str,
    lookup: Lookup,
    ticket: Option<TicketRecord>,
    received: DateTime<Utc>,
) -> Plan {
    plan_with(w, raw, lookup, ticket, received, Vec::new())
}

/// [`plan_of`], with the recent urgent tickets incident grouping compares with.
fn plan_with(
    w: &World,
    raw: &str,
    lookup: Lookup,
    ticket: Option<TicketRecord>,
    received: DateTime<Utc>,
    incident_candidates: Vec<crate::tickets::incident::Candidate>,
) -> Plan {
    let mail = parse(raw.replace('\n', "\r\n").as_bytes()).unwrap();
    let origin = loops::origin(&mail);
    let text = crate::mail::quote::strip_quotes(&mail.body);
    let class = w.rules.classify(&mail.subject, &text);
    let decision = decide(&mail, &origin, &lookup, &w.policy, now());
    let agent = lookup
        .sender
        .as_ref()
        .filter(|u| u.role.is_staff())
        .map(|u| UserRecord {
            id: u.id,
            email: mail.sender.email.to_string(),
            name: "Alice".into(),
            role: u.role,
            active: true,
        });
    let facts = Facts {
        mail: &mail,
        origin: &origin,
        text: &text,
        class: &class,
        lookup,
        decision,
        received_at: received,
        now: now(),
        ticket,
        collaborators: Vec::new(),
        customer_message_ids: vec!["c1@clinic.example".into()],
        next_number: 1001,
        staff: vec![alice()],
        notices: NoticeState::default(),
        agent,
        assignable: Vec::new(),
        first_message: None,
        suggestions: Vec::new(),
        kb_source: None,
        incident_candidates,
        next_incident_number: 7,
        incident: None,
    };
    plan(&facts, &w.context())
}

fn kinds(p: &Plan) -> Vec<&'static str> {
    p.mails.iter().map(|m| m.kind.as_str()).collect()
}

const NEW: &str = "From: Ann <ann@clinic.example>\nTo: support@example.test\nCc: b@clinic.example, c@clinic.example, d@clinic.example\nSubject: Pages not arriving\nMessage-ID: <c1@clinic.example>\n\nNo pages reach 4 West since 07:50.\n";

#[test]
fn a_new_ticket_is_provisioned_created_recorded_notified_and_acknowledged() {
    let w = World::new();
    let p = plan_of(&w, NEW, Lookup::default(), None, now());
    assert_eq!(p.action, Action::Created);
    assert_eq!(p.ticket, Some(TicketRef::New { number: 1001 }));
    assert!(matches!(
        p.writes[0],
        Write::ProvisionSender { known: true }
    ));
    assert!(matches!(&p.writes[1], Write::CreateTicket(t) if t.number == 1001));
    assert!(
        matches!(&p.writes[2], Write::Message { kind, internal: false, .. } if kind == "customer")
    );
    let collaborators = p
        .writes
        .iter()
        .filter(|w| matches!(w, Write::Collaborator { .. }))
        .count();
    assert_eq!(collaborators, 2, "max_collaborators = 2");
    assert!(p
        .writes
        .iter()
        .any(|w| matches!(w, Write::Event { kind, .. } if kind == "cc-dropped")));
    assert_eq!(kinds(&p), vec!["notify-agent", "ack"]);
    assert!(p.mails[0].to_agents && !p.mails[1].to_agents);
    assert!(p.hold.is_none());
    // The plan is data: it prints as JSON for `ingest --dry-run`.
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"write\":\"create-ticket\""), "{json}");
}

#[test]
fn old_mail_holds_every_mail_and_says_why() {
    let w = World::new();
    let p = plan_of(
        &w,
        NEW,
        Lookup::default(),
        None,
        now() - Duration::hours(30),
    );
    assert!(p
        .hold
        .as_deref()
        .is_some_and(|h| h.contains("ack_max_age_hours")));
    assert_eq!(
        kinds(&p),
        vec!["notify-agent", "ack"],
        "planned, then held by the queue"
    );
    assert_eq!(p.reason, p.hold);
}

#[test]
fn a_customer_reply_with_commands_reopens_and_answers_the_commands() {
    let w = World::new();
    let t = record(1001, TicketStatus::Closed);
    let summary = ann_ticket(TicketStatus::Closed, Some(now()));
    let lookup = Lookup {
        by_reference: Some(summary),
        sender: Some(known(1, Role::Customer, "clinic.example")),
        ..Lookup::default()
    };
    let raw = "From: ann@clinic.example\nSubject: Re: x\nIn-Reply-To: <c1@clinic.example>\nMessage-ID: <c2@clinic.example>\n\n#close\nStill broken.\n";
    let p = plan_of(&w, raw, lookup, Some(t), now());
    assert_eq!(p.action, Action::Replied);
    assert!(p.writes.iter().any(|w| matches!(
        w,
        Write::Status {
            status: TicketStatus::Open,
            ..
        }
    )));
    assert_eq!(kinds(&p), vec!["command-error", "notify-agent"]);
    assert!(p.reason.as_deref().is_some_and(|r| r.contains("non-agent")));
}

#[test]
fn a_verified_agent_close_relays_and_sends_the_closing_notice() {
    let w = World::new();
    let t = record(1001, TicketStatus::Open);
    let summary = ann_ticket(TicketStatus::Open, None);
    let lookup = Lookup {
        by_agent_key: Some(summary),
        sender: Some(known(7, Role::Agent, "vendor.example")),
        ..Lookup::default()
    };
    let raw = "Authentication-Results: mx.example.test; dmarc=pass header.from=vendor.example\nFrom: alice@vendor.example\nTo: support+a-bcdefghijklmnopqrsta@example.test\nSubject: Re: x\nMessage-ID: <a1@vendor.example>\n\n#close\nFixed on our side.\n";
    let p = plan_of(&w, raw, lookup, Some(t), now());
    assert_eq!(p.action, Action::AgentReply, "{p:?}");
    assert_eq!(kinds(&p), vec!["agent-reply", "closed"]);
    assert!(p.writes.iter().any(|w| matches!(
        w,
        Write::Status {
            status: TicketStatus::Closed,
            ..
        }
    )));
    assert!(p
        .writes
        .iter()
        .any(|w| matches!(w, Write::FirstResponse { .. })));
    assert!(p.mails[0].with_inbound_attachments && p.mails[0].history.is_some());
}

#[test]
fn a_near_duplicate_is_a_reply_without_ack_or_notification() {
    let w = World::new();
    let summary = ann_ticket(TicketStatus::Open, None);
    let lookup = Lookup {
        sender: Some(known(1, Role::Customer, "clinic.example")),
        near_duplicate: Some((summary, "c0@clinic.example".into())),
        ..Lookup::default()
    };
    let p = plan_of(
        &w,
        NEW,
        lookup,
        Some(record(1001, TicketStatus::Open)),
        now(),
    );
    assert_eq!(p.action, Action::Replied);
    assert_eq!(
        p.ticket,
        Some(TicketRef::Existing {
            id: 1001,
            number: 1001
        })
    );
    assert!(p.mails.is_empty(), "{:?}", kinds(&p));
    assert!(p
        .writes
        .iter()
        .any(|w| matches!(w, Write::Event { kind, detail, .. } if kind == "near-duplicate" && detail.contains("c0@clinic.example"))));
    assert!(!p.writes.iter().any(|w| matches!(w, Write::CreateTicket(_))));
}

#[test]
fn the_third_alike_urgent_ticket_opens_an_incident_pages_oncall_once_and_gets_an_incident_ack() {
    let mut w = World::new();
    w.policy.incidents.oncall = Some(addr("oncall@vendor.example"));
    let urgent = "From: Ann <ann@clinic.example>\nTo: support@example.test\nSubject: Pages stuck in queued\nMessage-ID: <u3@clinic.example>\n\nEvery page on the paging console sits in Queued, no pager receives anything. Doctors are not paged.\n";
    let cand = |id: i64, text: &str| crate::tickets::incident::Candidate {
        id,
        number: 990 + id,
        created_at: now() - Duration::minutes(5),
        subject: "pages".into(),
        requester: format!("r{id}@other.example"),
        text: text.into(),
        incident: None,
    };
    let cands = vec![
        cand(1, "Pagers silent\nOur pagers are silent, the console shows all pages queued, nobody gets paged."),
        cand(2, "Paging down\nPaging is down: pages queued on the console, pagers receive nothing."),
    ];
    let p = plan_with(&w, urgent, Lookup::default(), None, now(), cands);
    let opened = p.writes.iter().find_map(|w| match w {
        Write::OpenIncident {
            number, tickets, ..
        } => Some((*number, tickets.len())),
        _ => None,
    });
    assert_eq!(opened, Some((7, 3)), "{:?}", p.writes);
    assert_eq!(kinds(&p), vec!["incident-oncall", "incident-ack"]);
    // Without an on-call address: nothing grouped, the usual notification and ack.
    let w = World::new();
    let cands = vec![
        cand(1, "Pagers silent, pages queued on the console"),
        cand(2, "Paging down: pages queued on the console"),
    ];
    let p = plan_with(&w, urgent, Lookup::default(), None, now(), cands);
    assert_eq!(kinds(&p), vec!["notify-agent", "ack"]);
}
