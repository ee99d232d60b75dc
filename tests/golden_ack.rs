//! Golden acknowledgements: for a fixed clock and fixed ids, the rendered ack must equal
//! `tests/fixtures/golden/ack-level1.eml` / `ack-level4.eml` byte for byte (the bytes the
//! outbox stores and SMTP sends). `UPDATE_GOLDEN=1` rewrites them; review with `git diff`.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{check_golden, fixture};
use supportd::mail::address::EmailAddress;
use supportd::mail::compose::Party;
use supportd::templates::Templates;
use supportd::tickets::ack::AckFacts;
use supportd::tickets::desk::Desk;
use supportd::tickets::outbound::{Content, Mail, MailKind, Stamp};
use supportd::tickets::{AccessKey, Sla, TicketTag};
use supportd::triage::Rules;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).unwrap()
}

/// Renders the ack for a ticket at `urgency` in `category`.
fn render(urgency: u8, category: &str, subject: &str, requester: Party) -> Vec<u8> {
    let rules = Rules::from_toml(include_str!("../config/triage.toml"), "config/triage.toml")
        .expect("built-in rules");
    let level = rules.level(urgency).expect("level");
    let category = rules.category(category).expect("category");
    let templates = Templates::load(None).expect("built-in templates");
    let support = EmailAddress::parse("support@vendor.example").expect("address");
    let tag = TicketTag::new("[#{number}]").expect("tag");
    let key = AccessKey::parse("k7m2qyx4t6w3rbp5n2j4").expect("key");
    let received = now() - chrono::Duration::minutes(3);
    let facts = AckFacts {
        number: 1042,
        access_key: key,
        subject: subject.to_string(),
        requester,
        category: category.clone(),
        level: level.clone(),
        sla: Sla::starting(received, level.first_response_hours, level.resolution_hours),
        inbound_message_id: "20261123140200.77aa@mail.stbrigid-med.example".into(),
        inbound_references: vec!["earlier.thread@mail.stbrigid-med.example".to_string()],
        language: "en".into(),
        suggestions: Vec::new(),
    };
    let desk = Desk::new(
        "Vendor Support",
        support,
        &[],
        "https://help.vendor.example/",
        "+1 555 0142",
        tag,
    );
    let mail = Mail {
        kind: MailKind::Ack,
        ticket: None,
        stamp: Stamp {
            message_id: "supportd.00112233445566778899aabbccddeeff@vendor.example".into(),
            date: now(),
        },
        to_agents: false,
        history: None,
        with_inbound_attachments: false,
        content: Content::Ack(facts),
    };
    mail.render(&desk, &templates, &[])
        .expect("render")
        .to_bytes()
        .expect("compose")
}

#[test]
fn level1_ack_matches_golden() {
    let bytes = render(
        1,
        "routing",
        "console pages stuck in queued",
        Party {
            name: Some("Ray Donnelly".into()),
            email: EmailAddress::parse("rdonnelly@stbrigid-med.example").unwrap(),
        },
    );
    if let Err(diff) = check_golden(&fixture("golden/ack-level1.eml"), &bytes) {
        panic!("{diff}");
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("+1 555 0142"), "level 1 advises the phone");
}

#[test]
fn level4_ack_matches_golden() {
    // A non-ASCII name and subject exercise the RFC 2047 encoding of the headers.
    let bytes = render(
        4,
        "user-info",
        "Änderung der Adresse – Praxis Süd",
        Party {
            name: Some("Françoise Müller".into()),
            email: EmailAddress::parse("fmuller@praxis-sued.example").unwrap(),
        },
    );
    if let Err(diff) = check_golden(&fixture("golden/ack-level4.eml"), &bytes) {
        panic!("{diff}");
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.contains("call support now"),
        "level 4 does not advise calling now"
    );
    // A miss by triage still tells the customer what to do (issue 12).
    assert!(
        text.contains("If patient care is affected right now, call +1 555 0142."),
        "{text}"
    );
}

/// The same facts always give the same bytes (no hidden clock or randomness).
#[test]
fn ack_rendering_is_deterministic() {
    let requester = || Party {
        name: None,
        email: EmailAddress::parse("x@clinic.example").unwrap(),
    };
    assert_eq!(
        render(2, "routing", "s", requester()),
        render(2, "routing", "s", requester())
    );
}
