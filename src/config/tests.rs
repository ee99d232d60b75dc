//! Unit tests of the config: each bad value → its file:line:key message.

use super::*;
use crate::mail::address::EmailAddress;
use crate::tickets::{Intake, Role};

#[test]
fn defaults_are_valid() {
    let c = Config::parse("", "t.toml").unwrap();
    assert_eq!(c.support.reopen_days, 30);
    assert_eq!(c.limits.acks_per_sender_per_hour, 5);
    assert_eq!(c.limits.max_collaborators, 20);
    assert_eq!(c.limits.notifications_per_sender_per_hour, 10);
    assert_eq!(c.limits.notification_digest_minutes, 15);
    let err = Config::parse("[limits]\nnotification_digest_minutes = 0\n", "t.toml").unwrap_err();
    assert_eq!(err.problems[0].key, "limits.notification_digest_minutes");
    assert_eq!(c.database.url, "sqlite://supportd.db");
}

#[test]
fn reports_every_problem_with_line_and_key() {
    let text = "[support]\naddress = \"support@example.test\"\nreopn_days = 3\n\n[limits]\nmax_message_bytes = \"big\"\n\n[[mailbox]]\nhost = \"imap.example.test\"\nusername = \"u\"\npassword_env = \"X\"\ntls = \"none\"\n";
    let err = Config::parse(text, "s.toml").unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.problems.len(), 3, "{shown}");
    assert_eq!(err.problems[0].line, Some(3));
    assert_eq!(err.problems[0].key, "support.reopn_days");
    assert_eq!(err.problems[1].line, Some(6));
    assert_eq!(err.problems[1].key, "limits.max_message_bytes");
    assert_eq!(err.problems[2].key, "mailbox[0].tls");
    assert_eq!(err.problems[2].line, Some(12));
    assert!(
        shown.contains("s.toml:3: key `support.reopn_days`"),
        "{shown}"
    );
}

#[test]
fn processing_budget_is_seconds_within_bounds() {
    let c = Config::parse("", "t.toml").unwrap();
    assert_eq!(
        c.limits.processing_budget(),
        std::time::Duration::from_secs(10)
    );
    let c = Config::parse("[limits]\nprocessing_budget_seconds = 0.25\n", "t.toml").unwrap();
    assert_eq!(
        c.limits.processing_budget(),
        std::time::Duration::from_millis(250)
    );
    let c = Config::parse("[limits]\nprocessing_budget_seconds = 3\n", "t.toml").unwrap();
    assert_eq!(
        c.limits.processing_budget(),
        std::time::Duration::from_secs(3)
    );
    for bad in ["0", "-1", "61", "nan", "inf"] {
        let text = format!("[limits]\nprocessing_budget_seconds = {bad}\n");
        let err = Config::parse(&text, "b.toml").unwrap_err();
        assert_eq!(err.problems.len(), 1, "{bad}: {err}");
        assert_eq!(err.problems[0].key, "limits.processing_budget_seconds");
        assert_eq!(err.problems[0].line, Some(2), "{bad}");
    }
}

#[test]
fn missing_required_mailbox_key_is_reported() {
    let err = Config::parse("[[mailbox]]\nport = 993\n", "m.toml").unwrap_err();
    assert!(err.to_string().contains("host"), "{err}");
}

/// Parses `text`, expecting exactly one problem; returns its rendered line.
fn one_problem(text: &str) -> String {
    let err = Config::parse(text, "c.toml").unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    let shown = err.to_string();
    shown.lines().nth(1).unwrap_or_default().trim().to_string()
}

#[test]
fn typed_fields_refuse_bad_values_at_their_line_and_key() {
    for (text, expected) in [
        (
            "[support]\naddress = \"not-an-address\"\n",
            "c.toml:2: key `support.address`: `not-an-address` is not an email address",
        ),
        (
            "[support]\n\naddress = \"a,b@example.test\"\n",
            "c.toml:3: key `support.address`: `a,b@example.test` cannot be written as the sender of a mail",
        ),
        (
            "[support]\nextra_addresses = [\n  \"help@example.test\",\n  \"nope\",\n]\n",
            "c.toml:4: key `support.extra_addresses[1]`: `nope` is not an email address",
        ),
        (
            "[support]\npublic_url = \"support.example.test\"\n",
            "c.toml:2: key `support.public_url`: `support.example.test` must start with http:// or https://",
        ),
        (
            "[support]\npublic_url = \"ftp://example.test\"\n",
            "c.toml:2: key `support.public_url`: `ftp://example.test` must start with http:// or https://",
        ),
        (
            "[support]\npublic_url = \"https://example.test/s?x=1\"\n",
            "c.toml:2: key `support.public_url`: `https://example.test/s?x=1` must have no ?query or #fragment: ticket links are appended to it",
        ),
        (
            "[support]\npublic_url = \"https://example.test/#top\"\n",
            "c.toml:2: key `support.public_url`: `https://example.test/#top` must have no ?query or #fragment: ticket links are appended to it",
        ),
        (
            "[support]\npublic_url = \"https://u:pw@example.test\"\n",
            "c.toml:2: key `support.public_url`: `https://u:pw@example.test` must not carry a user name or password: it is shown to customers",
        ),
        (
            "[support]\npublic_url = \"http://\"\n",
            "c.toml:2: key `support.public_url`: `http://` is not a valid URL: empty host",
        ),
        (
            "[policy]\nintake = \"closed\"\n",
            "c.toml:2: key `policy.intake`: unknown variant `closed`, expected one of `open`, `known`, `support-users`",
        ),
        (
            "[policy]\nagents_require_auth = false\n[[agent]]\nemail = \"alice\"\n",
            "c.toml:4: key `agent[0].email`: `alice` is not an email address",
        ),
        (
            "[policy]\nagents_require_auth = false\n[[agent]]\nemail = \"a,b@example.test\"\n",
            "c.toml:4: key `agent[0].email`: `a,b@example.test` cannot be written as the recipient of a mail",
        ),
        (
            "[policy]\nagents_require_auth = false\n[[agent]]\nemail = \"a@example.test\"\nrole = \"customer\"\n",
            "c.toml:5: key `agent[0].role`: `customer` must be `agent` or `admin`",
        ),
        (
            "[[mailbox]]\nhost = \"imap.example.test\"\nusername = \"u\"\npassword_env = \"X\"\ntls = \"none\"\n",
            "c.toml:5: key `mailbox[0].tls`: `none` is only allowed for a loopback host, not `imap.example.test`",
        ),
        (
            "[smtp]\nhost = \"smtp.example.test\"\ntls = \"none\"\n",
            "c.toml:3: key `smtp.tls`: `none` is only allowed for a loopback host, not `smtp.example.test`",
        ),
        (
            "[smtp]\nhost = \"smtp.example.test\"\ntls = \"plain\"\n",
            "c.toml:3: key `smtp.tls`: unknown variant `plain`, expected one of `implicit`, `starttls`, `none`",
        ),
    ] {
        assert_eq!(one_problem(text), expected, "{text}");
    }
}

#[test]
fn every_bad_typed_value_is_reported_at_once() {
    let text = "[support]\naddress = \"nobody\"\npublic_url = \"example.test\"\n\n[policy]\nintake = \"everyone\"\nagents_require_auth = false\n\n[[agent]]\nemail = \"x\"\n\n[[agent]]\nemail = \"b@example.test\"\nrole = \"boss\"\n\n[smtp]\nhost = \"smtp.example.test\"\ntls = \"none\"\n";
    let err = Config::parse(text, "c.toml").unwrap_err();
    let got: Vec<_> = err
        .problems
        .iter()
        .map(|p| (p.line, p.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(2), "support.address"),
            (Some(3), "support.public_url"),
            (Some(6), "policy.intake"),
            (Some(10), "agent[0].email"),
            (Some(14), "agent[1].role"),
            (Some(18), "smtp.tls"),
        ],
        "{err}"
    );
}

#[test]
fn typed_fields_hold_domain_values() {
    let c = Config::parse(
        "[support]\naddress = \"Help@Example.TEST\"\nextra_addresses = [\"desk@example.test\"]\npublic_url = \"https://Example.test/support/\"\n\n[policy]\nintake = \"support-users\"\nagents_require_auth = false\n\n[[agent]]\nemail = \"hal@example.test\"\nrole = \"admin\"\n\n[[agent]]\nemail = \"alice@example.test\"\n\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n\n[[mailbox]]\nhost = \"localhost\"\nusername = \"u\"\npassword_env = \"X\"\ntls = \"none\"\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(
        c.support.address,
        EmailAddress::parse("help@example.test").unwrap()
    );
    assert_eq!(c.support.extra_addresses.len(), 1);
    // A path prefix is kept; the host is normalised.
    assert_eq!(
        c.support.public_url.as_str(),
        "https://example.test/support/"
    );
    assert_eq!(c.policy.intake, Intake::SupportUsers);
    assert_eq!(c.agent[0].role, Role::Admin);
    assert_eq!(c.agent[1].role, Role::Agent, "the default role");
    assert_eq!(c.source.origin, "c.toml");
    // The built-in defaults.
    let d = Config::default();
    assert_eq!(d.support.address.to_string(), "support@localhost");
    assert_eq!(d.support.public_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(d.policy.intake, Intake::Open);
}

#[test]
fn later_problems_are_located_in_the_loaded_file() {
    let c = Config::parse(
        "[policy]\nagents_require_auth = false\n\n[[agent]]\nemail = \"a@example.test\"\ncategories = [\"x\"]\n",
        "c.toml",
    )
    .unwrap();
    let err = c.problems(vec![(
        "agent[0].categories[0]".into(),
        "`x` is unknown".into(),
    )]);
    assert_eq!(
        err.to_string(),
        "c.toml: 1 configuration problem\n  c.toml:6: key `agent[0].categories[0]`: `x` is unknown"
    );
}

#[test]
fn loopback_hosts() {
    assert!(is_loopback("127.0.0.1"));
    assert!(is_loopback("localhost"));
    assert!(is_loopback("[::1]"));
    assert!(!is_loopback("imap.example.test"));
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config/supportd.toml");
    Config::parse(text, "config/supportd.toml").unwrap();
}

#[test]
fn incidents_and_sla_keys_are_checked() {
    let c = Config::parse("", "t.toml").unwrap();
    assert!(c.incidents.enabled);
    assert_eq!(
        (
            c.incidents.max_level,
            c.incidents.min_tickets,
            c.incidents.window_minutes
        ),
        (2, 3, 15)
    );
    assert_eq!(c.sla.remind_at_percent, 75);
    assert_eq!(c.limits.near_duplicate_minutes, 10);
    let text = "[incidents]\nmax_level = 7\nmin_tickets = 1\nwindow_minutes = 0\nsimilarity = 1.5\noncall = \"not an address\"\n\n[sla]\nremind_at_percent = 100\nsupervisor = \"boss@example.test\"\n";
    let err = Config::parse(text, "i.toml").unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "incidents.oncall",
        "incidents.max_level",
        "incidents.min_tickets",
        "incidents.window_minutes",
        "incidents.similarity",
        "sla.remind_at_percent",
    ] {
        assert!(keys.contains(&k), "{k} not reported: {err}");
    }
    let ok = Config::parse(
        "[incidents]\noncall = \"oncall@vendor.example\"\n[sla]\nsupervisor = \"boss@vendor.example\"\n",
        "ok.toml",
    )
    .unwrap();
    assert_eq!(
        ok.incidents.oncall.unwrap().to_string(),
        "oncall@vendor.example"
    );
}

#[test]
fn database_urls_sqlite_or_postgres() {
    for good in [
        "sqlite:///var/lib/supportd/supportd.db",
        "postgres://supportd@db.example.test/supportd",
        "postgresql://supportd:pw@10.0.0.5:5433/support?sslmode=verify-full&sslrootcert=/etc/ca.pem",
    ] {
        let c = Config::parse(&format!("[database]\nurl = \"{good}\"\n"), "d.toml").unwrap();
        assert_eq!(c.database.url, good);
    }
    for bad in ["postgres:///supportd", "mysql://db/x", "supportd.db"] {
        let err = Config::parse(&format!("[database]\nurl = \"{bad}\"\n"), "d.toml").unwrap_err();
        assert_eq!(err.problems[0].key, "database.url", "{bad}");
        assert_eq!(err.problems[0].line, Some(2), "{bad}");
    }
}
