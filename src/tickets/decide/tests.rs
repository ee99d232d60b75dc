//! The threading decision, case by case.

use super::*;
use crate::mail::loops;
use crate::mail::parse::parse;
use crate::tickets::{Role, TicketTag, ACCESS_KEY_LEN};
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

/// The policy the threading and planning tests start from.
pub(crate) fn policy() -> Policy {
    Policy {
        own_addresses: vec![EmailAddress::parse("support@example.test").unwrap()],
        reopen_days: 30,
        acks_per_sender_per_hour: 5,
        acknowledge: true,
        intake: Intake::Open,
        agents_require_auth: true,
        authserv_id: "mx.vendor.example".into(),
        ack_max_age_hours: 24,
        max_collaborators: 20,
        notify_agents: true,
        notify_on_close: true,
        notifications_per_sender_per_hour: 10,
        notification_digest_minutes: 15,
        kb_dir: "kb".into(),
        near_duplicate_minutes: 10,
        incidents: crate::tickets::incident::IncidentPolicy::default(),
    }
}

fn user(role: Role, active: bool, support_user: bool) -> KnownUser {
    KnownUser {
        id: 9,
        role,
        active,
        support_user,
        known: true,
        org: "clinic.example".into(),
    }
}

fn ticket(number: i64, status: TicketStatus, participants: &[&str]) -> TicketSummary {
    TicketSummary {
        id: number,
        number,
        status,
        closed_at: (status == TicketStatus::Closed).then(|| now() - Duration::days(2)),
        participants: participants.iter().map(|s| s.to_string()).collect(),
    }
}

fn mail(headers: &str) -> InboundMail {
    parse(format!("{headers}\r\n\r\nbody\r\n").as_bytes()).unwrap()
}

fn run(m: &InboundMail, l: &Lookup) -> Decision {
    decide(m, &loops::origin(m), l, &policy(), now())
}

#[test]
fn access_keys_are_random_looking_and_parse_back() {
    let k = AccessKey::from_random([7; ACCESS_KEY_LEN]);
    assert_eq!(k.as_str().len(), 20);
    assert_eq!(AccessKey::parse(&k.as_str().to_uppercase()), Some(k));
    assert_eq!(AccessKey::parse("short"), None);
    assert_eq!(AccessKey::parse("0000000000000000000o"), None);
}

#[test]
fn tags() {
    let t = TicketTag::new("[#{number}]").unwrap();
    assert_eq!(t.numbers_in("Re: [#1042] pager [#7]"), vec![1042, 7]);
    assert_eq!(t.tag_subject(5, "Re: [#5] x"), "Re: [#5] x");
    assert_eq!(t.tag_subject(5, "x"), "[#5] x");
    let t = TicketTag::new("(Ticket {number})").unwrap();
    assert_eq!(t.numbers_in("Re: (Ticket 12) a"), vec![12]);
}

#[test]
fn rules_in_order() {
    let m = mail("From: ann@clinic.example\r\nSubject: Re: [#2] x");
    let mut l = Lookup {
        by_reference: Some(ticket(1, TicketStatus::Open, &["ann@clinic.example"])),
        by_access_key: Some(ticket(3, TicketStatus::Open, &[])),
        by_tag: vec![ticket(2, TicketStatus::Open, &["ann@clinic.example"])],
        ..Lookup::default()
    };
    assert!(
        matches!(run(&m, &l), Decision::Reply { ticket, rule: ThreadRule::Reference, .. } if ticket.number == 1)
    );
    l.by_reference = None;
    assert!(
        matches!(run(&m, &l), Decision::Reply { ticket, rule: ThreadRule::AccessKey, .. } if ticket.number == 3)
    );
    l.by_access_key = None;
    assert!(
        matches!(run(&m, &l), Decision::Reply { ticket, rule: ThreadRule::SubjectTag, .. } if ticket.number == 2)
    );
    l.duplicate = true;
    assert_eq!(run(&m, &l), Decision::Duplicate);
}

#[test]
fn old_mail_is_not_acknowledged() {
    assert!(ack_age_permission(now() - Duration::hours(23), now(), 24).is_ok());
    assert!(ack_age_permission(now() - Duration::hours(25), now(), 24).is_err());
}

#[test]
fn tag_from_stranger_opens_new_ticket() {
    let m = mail("From: mallory@evil.example\r\nSubject: Re: [#2] x");
    let l = Lookup {
        by_tag: vec![ticket(2, TicketStatus::Open, &["ann@clinic.example"])],
        ..Lookup::default()
    };
    assert!(matches!(
        run(&m, &l),
        Decision::NewTicket {
            follows: None,
            ack: Ok(())
        }
    ));
}

#[test]
fn closed_ticket_reopens_then_expires() {
    let m = mail("From: ann@clinic.example");
    let mut t = ticket(4, TicketStatus::Closed, &["ann@clinic.example"]);
    let l = Lookup {
        by_reference: Some(t.clone()),
        ..Lookup::default()
    };
    assert!(matches!(run(&m, &l), Decision::Reply { reopen: true, .. }));
    t.closed_at = Some(now() - Duration::days(31));
    let l = Lookup {
        by_reference: Some(t),
        ..Lookup::default()
    };
    assert!(matches!(run(&m, &l), Decision::NewTicket { follows: Some(f), .. } if f.number == 4));
}

#[test]
fn loops_and_limits() {
    let ooo = mail("From: ann@clinic.example\r\nAuto-Submitted: auto-replied");
    assert!(matches!(
        run(&ooo, &Lookup::default()),
        Decision::Ignored { .. }
    ));
    let l = Lookup {
        by_reference: Some(ticket(1, TicketStatus::Open, &[])),
        ..Lookup::default()
    };
    assert!(matches!(run(&ooo, &l), Decision::AutoReplyNote { .. }));
    let bulk = mail("From: news@vendor.example\r\nPrecedence: bulk");
    assert!(matches!(
        run(&bulk, &Lookup::default()),
        Decision::NewTicket { ack: Err(_), .. }
    ));
    let own = mail("From: Support <SUPPORT+abc@example.test>");
    assert!(matches!(
        run(&own, &Lookup::default()),
        Decision::Ignored { .. }
    ));
    let person = mail("From: ann@clinic.example");
    let limited = Lookup {
        recent_acks: 5,
        ..Lookup::default()
    };
    assert!(
        matches!(run(&person, &limited), Decision::NewTicket { ack: Err(r), .. } if r.contains("rate limit"))
    );
}

#[test]
fn keys_from_plus_addresses_of_our_address_only() {
    let key = "abcdefghijklmnopqrst";
    let m = mail(&format!(
        "From: ann@clinic.example\r\nTo: support+{key}@Example.TEST, other+{key}@example.test"
    ));
    let keys = access_keys_in(&m, &policy().own_addresses);
    assert_eq!(keys, vec![AccessKey::parse(key).unwrap()]);
}

const SIGNED: &str =
    "Authentication-Results: mx.vendor.example; dmarc=pass header.from=vendor.example\r\n";

fn agent_lookup() -> Lookup {
    Lookup {
        sender: Some(user(Role::Agent, true, false)),
        ..Lookup::default()
    }
}

#[test]
fn agent_replies_need_the_agent_channel_and_authentication() {
    let m = mail(&format!("From: alice@vendor.example\r\nTo: support+a-abcdefghijklmnopqrst@example.test\r\n{SIGNED}Subject: Re: [#7] x"));
    assert_eq!(
        agent_keys_in(&m, &policy().own_addresses),
        vec![AccessKey::parse("abcdefghijklmnopqrst").unwrap()]
    );
    assert!(access_keys_in(&m, &policy().own_addresses).is_empty());
    let t7 = ticket(7, TicketStatus::Open, &["ann@clinic.example"]);
    // The agent key address, authenticated.
    let l = Lookup {
        by_agent_key: Some(t7.clone()),
        ..agent_lookup()
    };
    assert!(matches!(
        run(&m, &l),
        Decision::AgentReply { rule: ThreadRule::AgentKey, ticket } if ticket.number == 7
    ));
    // A reply to a notification we sent to agents, authenticated.
    let l = Lookup {
        by_agent_mail: Some(t7.clone()),
        by_reference: Some(t7.clone()),
        ..agent_lookup()
    };
    assert!(matches!(
        run(&m, &l),
        Decision::AgentReply { rule: ThreadRule::Reference, ticket } if ticket.number == 7
    ));
    // The same without Authentication-Results: unverified.
    let bare = mail("From: alice@vendor.example\r\nSubject: Re: [#7] x");
    assert!(matches!(
        run(&bare, &l),
        Decision::UnverifiedAgentMail { reason, ticket } if reason.contains("authserv-id") && ticket.number == 7
    ));
    // ... unless the admin opted out of authentication (the channel still counts).
    let lax = Policy {
        agents_require_auth: false,
        ..policy()
    };
    assert!(matches!(
        decide(&bare, &loops::origin(&bare), &l, &lax, now()),
        Decision::AgentReply { .. }
    ));
    // A customer with the same mail is a customer reply.
    let l = Lookup {
        sender: Some(user(Role::Customer, true, false)),
        by_tag: vec![ticket(7, TicketStatus::Open, &["alice@vendor.example"])],
        ..Lookup::default()
    };
    assert!(matches!(run(&m, &l), Decision::Reply { .. }));
}

/// Finding 1 of the security review: an agent's From with a guessed subject tag, or a
/// customer's Message-ID, is never trusted, authenticated or not.
#[test]
fn agent_mail_outside_the_agent_channel_is_unverified() {
    let forged = mail(&format!(
        "From: Alice <alice@vendor.example>\r\n{SIGNED}Subject: Re: [#1001] x"
    ));
    let by_tag = Lookup {
        by_tag: vec![ticket(1001, TicketStatus::Open, &["ann@clinic.example"])],
        ..agent_lookup()
    };
    for p in [
        policy(),
        Policy {
            agents_require_auth: false,
            ..policy()
        },
    ] {
        assert!(matches!(
            decide(&forged, &loops::origin(&forged), &by_tag, &p, now()),
            Decision::UnverifiedAgentMail { reason, ticket }
                if reason.contains("agent channel") && ticket.number == 1001
        ));
    }
    let by_customer_message = Lookup {
        by_reference: Some(ticket(1001, TicketStatus::Closed, &["ann@clinic.example"])),
        ..agent_lookup()
    };
    assert!(matches!(
        run(&forged, &by_customer_message),
        Decision::UnverifiedAgentMail { .. }
    ));
    // Threading nowhere, an agent's mail opens a ticket like anyone's.
    assert!(matches!(
        run(&forged, &agent_lookup()),
        Decision::NewTicket { .. }
    ));
}

/// Finding 10: a stranger with a real In-Reply-To neither joins nor reopens the ticket.
#[test]
fn non_participants_threading_by_message_id_become_notes() {
    let m =
        mail("From: mallory@evil.example\r\nIn-Reply-To: <c1@clinic.example>\r\nSubject: Re: x");
    let closed = ticket(4, TicketStatus::Closed, &["ann@clinic.example"]);
    let l = Lookup {
        by_reference: Some(closed.clone()),
        ..Lookup::default()
    };
    assert!(matches!(
        run(&m, &l),
        Decision::NonParticipant { ticket, then }
            if ticket.number == 4 && matches!(*then, Decision::NewTicket { ack: Ok(()), follows: None })
    ));
    // Under intake `known`, the stranger is refused; the note is still kept.
    let p = Policy {
        intake: Intake::Known,
        ..policy()
    };
    assert!(matches!(
        decide(&m, &loops::origin(&m), &l, &p, now()),
        Decision::NonParticipant { then, .. } if matches!(*then, Decision::Rejected { .. })
    ));
    // The access key in the address is the customer's own secret: a reply.
    let l = Lookup {
        by_reference: Some(closed.clone()),
        by_access_key: Some(closed.clone()),
        ..Lookup::default()
    };
    assert!(matches!(
        run(&m, &l),
        Decision::Reply {
            rule: ThreadRule::AccessKey,
            reopen: true,
            ..
        }
    ));
    // A participant's reply by Message-ID is a reply, as ever.
    let ann = mail("From: ann@clinic.example\r\nIn-Reply-To: <c1@clinic.example>");
    let l = Lookup {
        by_reference: Some(closed),
        ..Lookup::default()
    };
    assert!(matches!(
        run(&ann, &l),
        Decision::Reply {
            rule: ThreadRule::Reference,
            ..
        }
    ));
}

/// Finding 9: only admin-made users and accepted requesters are "known".
#[test]
fn collaborators_are_not_known_users() {
    let collaborator = KnownUser {
        known: false,
        ..user(Role::Customer, true, false)
    };
    assert_eq!(
        intake_allows(Intake::Known, Some(&collaborator)),
        Err(Refusal::UnknownSender)
    );
    assert_eq!(
        intake_allows(Intake::Known, Some(&user(Role::Customer, true, false))),
        Ok(())
    );
    let staff = KnownUser {
        known: false,
        ..user(Role::Agent, true, false)
    };
    assert_eq!(intake_allows(Intake::Known, Some(&staff)), Ok(()));
}

#[test]
fn intake_policies_and_inactive_users() {
    let m = mail("From: ann@clinic.example\r\nSubject: help");
    let run_with = |intake: Intake, sender: Option<KnownUser>| {
        let l = Lookup {
            sender,
            ..Lookup::default()
        };
        let p = Policy { intake, ..policy() };
        decide(&m, &loops::origin(&m), &l, &p, now())
    };
    let created = |d: &Decision| matches!(d, Decision::NewTicket { .. });
    let refused = |d: &Decision, r: Refusal| matches!(d, Decision::Rejected { refusal, reply: Ok(()) } if *refusal == r);
    assert!(created(&run_with(Intake::Open, None)));
    assert!(refused(
        &run_with(Intake::Known, None),
        Refusal::UnknownSender
    ));
    assert!(created(&run_with(
        Intake::Known,
        Some(user(Role::Customer, true, false))
    )));
    assert!(refused(
        &run_with(
            Intake::SupportUsers,
            Some(user(Role::Customer, true, false))
        ),
        Refusal::NotSupportUser
    ));
    assert!(created(&run_with(
        Intake::SupportUsers,
        Some(user(Role::Customer, true, true))
    )));
    assert!(created(&run_with(
        Intake::SupportUsers,
        Some(user(Role::Agent, true, false))
    )));
    assert!(refused(
        &run_with(Intake::Open, Some(user(Role::Customer, false, true))),
        Refusal::Inactive
    ));
    // Refusal answers share the acknowledgement rate limit and skip automatic mail.
    let l = Lookup {
        recent_acks: 5,
        ..Lookup::default()
    };
    let p = Policy {
        intake: Intake::Known,
        ..policy()
    };
    assert!(matches!(
        decide(&m, &loops::origin(&m), &l, &p, now()),
        Decision::Rejected { reply: Err(_), .. }
    ));
    let bulk = mail("From: news@clinic.example\r\nPrecedence: bulk");
    assert!(matches!(
        decide(&bulk, &loops::origin(&bulk), &Lookup::default(), &p, now()),
        Decision::Rejected { reply: Err(_), .. }
    ));
}

#[test]
fn a_near_duplicate_is_a_reply_on_the_first_ticket_unless_refused_or_threaded() {
    let m = mail("From: ann@clinic.example\r\nSubject: Printer");
    let first = ticket(5, TicketStatus::Open, &["ann@clinic.example"]);
    let mut l = Lookup {
        sender: Some(user(Role::Customer, true, false)),
        near_duplicate: Some((first.clone(), "x1@clinic.example".into())),
        ..Lookup::default()
    };
    assert!(
        matches!(run(&m, &l), Decision::NearDuplicate { ticket, of } if ticket.number == 5 && of == "x1@clinic.example")
    );
    // Mail that threads is a reply by its rule.
    l.by_access_key = Some(ticket(3, TicketStatus::Open, &[]));
    assert!(matches!(run(&m, &l), Decision::Reply { ticket, .. } if ticket.number == 3));
    // A deactivated sender is refused as ever.
    l.by_access_key = None;
    l.sender = Some(user(Role::Customer, false, false));
    assert!(matches!(run(&m, &l), Decision::Rejected { .. }));
}
