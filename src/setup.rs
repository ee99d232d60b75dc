//! Building a [`Pipeline`] from a [`Config`]: reads the triage rules and templates it names
//! (or the built-in ones). Used at start-up and on SIGHUP.

use std::sync::Arc;

use crate::clock::{RandomIds, SystemClock};
use crate::config::Config;
use crate::mail::address::EmailAddress;
use crate::mail::compose::Party;
use crate::pipeline::Pipeline;
use crate::templates::Templates;
use crate::tickets::ack::AckFacts;
use crate::tickets::desk::Desk;
use crate::tickets::outbound::{Content, Mail, MailKind, Stamp};
use crate::tickets::{AccessKey, Sla, ACCESS_KEY_LEN};
use crate::tickets::{Policy, TicketTag};
use crate::triage::Rules;

/// The built-in triage rules, used when the config names no rules file.
pub const DEFAULT_RULES: &str = include_str!("../config/triage.toml");

/// A rules file, template or tag that cannot be used; the message names which.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The triage rules the config names, or the built-in ones.
pub fn load_rules(config: &Config) -> Result<Rules, SetupError> {
    match &config.triage.rules_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SetupError(format!("cannot read triage rules {}: {e}", path.display()))
            })?;
            Rules::from_toml(&text, &path.display().to_string())
        }
        None => Rules::from_toml(DEFAULT_RULES, "built-in config/triage.toml"),
    }
    .map_err(|e| SetupError(e.to_string()))
}

/// The decisions' knobs, from the config, once.
pub fn policy(config: &Config, desk: &Desk) -> Policy {
    Policy {
        own_addresses: desk.own.clone(),
        reopen_days: config.support.reopen_days,
        acks_per_sender_per_hour: config.limits.acks_per_sender_per_hour,
        acknowledge: config.support.acknowledge,
        intake: config.policy.intake,
        agents_require_auth: config.policy.agents_require_auth,
        authserv_id: config.policy.authserv_id.clone(),
        ack_max_age_hours: config.limits.ack_max_age_hours,
        max_collaborators: usize::try_from(config.limits.max_collaborators).unwrap_or(usize::MAX),
        notify_agents: config.support.notify_agents,
        notify_on_close: config.support.notify_on_close,
        notifications_per_sender_per_hour: config.limits.notifications_per_sender_per_hour,
        notification_digest_minutes: config.limits.notification_digest_minutes,
    }
}

/// A pipeline with the real clock and OS randomness.
pub fn build_pipeline(config: Config) -> Result<Pipeline, SetupError> {
    let rules = load_rules(&config)?;
    let templates =
        Templates::load(config.templates.dir.as_deref()).map_err(|e| SetupError(e.to_string()))?;
    let tag = TicketTag::new(&config.support.ticket_tag)
        .map_err(|e| SetupError(format!("support.ticket_tag: {e}")))?;
    let desk = Desk::new(
        &config.support.name,
        config.support_address(),
        &config.own_addresses(),
        &config.support.public_url,
        &config.support.phone,
        tag,
    );
    let policy = policy(&config, &desk);
    let staff_categories = config
        .agent
        .iter()
        .filter_map(|a| Some((EmailAddress::parse(&a.email)?, a.categories.clone())))
        .collect();
    Ok(Pipeline {
        config,
        policy,
        staff_categories,
        desk,
        rules: Arc::new(rules),
        templates,
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    })
}

/// The checks that need more than the config file itself: every `[[agent]] categories` entry
/// names a category of the triage rules, and the templates render (a sample acknowledgement
/// through the one renderer, so a broken template fails at start-up, not on a customer).
pub fn cross_check(p: &Pipeline) -> Result<(), SetupError> {
    for (i, a) in p.config.agent.iter().enumerate() {
        for c in &a.categories {
            if p.rules.category(c).is_none() {
                return Err(SetupError(format!(
                    "agent[{i}].categories: `{c}` is no category of the triage rules"
                )));
            }
        }
    }
    let level = p
        .rules
        .levels()
        .first()
        .cloned()
        .ok_or_else(|| SetupError("the triage rules define no urgency level".into()))?;
    let category = p
        .rules
        .categories()
        .first()
        .cloned()
        .ok_or_else(|| SetupError("the triage rules define no category".into()))?;
    let now = p.clock.now();
    let sample = Mail {
        kind: MailKind::Ack,
        ticket: None,
        stamp: Stamp {
            message_id: "check-config@localhost".into(),
            date: now,
        },
        to_agents: false,
        history: None,
        with_inbound_attachments: false,
        content: Content::Ack(AckFacts {
            number: 1001,
            access_key: AccessKey::from_random([0; ACCESS_KEY_LEN]),
            subject: "check-config".into(),
            requester: Party {
                name: Some("Test".into()),
                email: EmailAddress::from_parts("test", "clinic.example"),
            },
            sla: Sla::starting(now, level.first_response_hours, level.resolution_hours),
            category,
            level,
            inbound_message_id: "check@clinic.example".into(),
            inbound_references: Vec::new(),
        }),
    };
    sample
        .render(&p.desk, &p.templates, &[])
        .map_err(|e| SetupError(e.to_string()))?;
    Ok(())
}
