//! What one inbound message means: the threading decision (SPEC §1) — duplicate, reply on
//! which ticket by which rule, an agent's reply (verified or not), a new ticket, a refusal —
//! from the message and what the store knows ([`Lookup`]). Pure.

use chrono::{DateTime, Duration, Utc};

use crate::mail::address::EmailAddress;
use crate::mail::loops::Origin;
use crate::mail::parse::InboundMail;

use super::{auth, AccessKey, Intake, KnownUser, Policy, Refusal, TicketStatus, TicketSummary};

/// Everything the store found that bears on one message.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The Message-ID is stored already.
    pub duplicate: bool,
    /// Ticket owning a Message-ID named by In-Reply-To or References.
    pub by_reference: Option<TicketSummary>,
    /// Ticket whose access key is the detail of a plus-addressed recipient.
    pub by_access_key: Option<TicketSummary>,
    /// Ticket whose agent key is the detail (`a-KEY`) of a plus-addressed recipient.
    pub by_agent_key: Option<TicketSummary>,
    /// Ticket of a mail we sent to agents only (a notification) that In-Reply-To or
    /// References names: with the agent key, the channel only agents receive.
    pub by_agent_mail: Option<TicketSummary>,
    /// Tickets whose numbers are tagged in the subject.
    pub by_tag: Vec<TicketSummary>,
    /// The sender, if already a user.
    pub sender: Option<KnownUser>,
    /// For bounces: the outbox row of ours that bounced, with its ticket.
    pub bounced: Option<(i64, TicketSummary)>,
    /// Acknowledgements queued to this sender within the last hour.
    pub recent_acks: u32,
    /// A message of this sender on another ticket, within `limits.near_duplicate_minutes`,
    /// whose normalised text is this one's (another Message-ID): that ticket and the
    /// message's Message-ID. Looked up only for mail that threads nowhere.
    pub near_duplicate: Option<(TicketSummary, String)>,
}

/// Which threading rule matched (SPEC §1, rules 2–4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRule {
    Reference,
    AccessKey,
    /// The agent channel: `support+a-KEY@…`, the Reply-To of agent notifications.
    AgentKey,
    SubjectTag,
}

impl ThreadRule {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadRule::Reference => "In-Reply-To/References",
            ThreadRule::AccessKey => "access key in recipient address",
            ThreadRule::AgentKey => "agent key in recipient address",
            ThreadRule::SubjectTag => "subject tag from a participant",
        }
    }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Already stored: nothing changes, nothing is sent.
    Duplicate,
    /// Recorded for the audit trail only (own mail, stray auto-replies and bounces).
    Ignored { reason: String },
    /// A bounce of our outbox row: internal note on its ticket, the row marked failed.
    Bounce {
        outbox_id: i64,
        ticket: TicketSummary,
    },
    /// An automatic answer (out of office) on a ticket: internal note, no state change.
    AutoReplyNote {
        ticket: TicketSummary,
        reason: String,
    },
    /// A reply on an existing ticket.
    Reply {
        ticket: TicketSummary,
        rule: ThreadRule,
        /// Status after the reply (closed/pending → open).
        reopen: bool,
    },
    /// A reply from an active agent or admin, authenticated and through the agent channel:
    /// commands, then relayed to the customer.
    AgentReply {
        ticket: TicketSummary,
        rule: ThreadRule,
    },
    /// Mail from an agent's address that failed authentication or did not come through the
    /// agent channel: an internal note flagged unverified, and the agents told. Never
    /// relayed; its commands never run.
    UnverifiedAgentMail {
        ticket: TicketSummary,
        reason: String,
    },
    /// Mail from a non-participant that threads to `ticket` only by a Message-ID: an internal
    /// note on it for the agents; for the sender, `then` (a new ticket, or a refusal), which
    /// says nothing about `ticket`. Never reopens, never relays.
    NonParticipant {
        ticket: TicketSummary,
        then: Box<Decision>,
    },
    /// Refused by the support policy (or an inactive user): recorded, politely answered.
    Rejected {
        refusal: Refusal,
        /// Whether to send the templated answer, or why not.
        reply: Result<(), String>,
    },
    /// The same text from the same sender as a message on `ticket` a few minutes ago, under
    /// another Message-ID (resent from another client, or sent to two of our addresses): a
    /// reply on that ticket, with no second acknowledgement.
    NearDuplicate {
        ticket: TicketSummary,
        /// The Message-ID of the earlier copy.
        of: String,
    },
    /// A new ticket; `ack` says whether to acknowledge or why not.
    NewTicket {
        ack: Result<(), String>,
        /// A closed ticket past `reopen_days` that this one continues.
        follows: Option<TicketSummary>,
    },
}

/// May this sender open a ticket under `intake`? Staff always may.
pub fn intake_allows(intake: Intake, sender: Option<&KnownUser>) -> Result<(), Refusal> {
    if sender.is_some_and(|u| u.role.is_staff()) {
        return Ok(());
    }
    match intake {
        Intake::Open => Ok(()),
        Intake::Known if sender.is_some_and(|u| u.known) => Ok(()),
        Intake::Known => Err(Refusal::UnknownSender),
        Intake::SupportUsers if sender.is_some_and(|u| u.support_user) => Ok(()),
        Intake::SupportUsers => Err(Refusal::NotSupportUser),
    }
}

/// Prefix of an agent key in a plus-address detail: `support+a-KEY@domain`.
pub const AGENT_KEY_PREFIX: &str = "a-";

/// Agent keys named by plus-addressed recipients (`local+a-KEY@domain`) of our own addresses.
pub fn agent_keys_in(mail: &InboundMail, own: &[EmailAddress]) -> Vec<AccessKey> {
    mail.to
        .iter()
        .chain(mail.cc.iter())
        .filter_map(|m| m.email.split_detail())
        .filter(|(base, _)| own.contains(base))
        .filter_map(|(_, detail)| {
            let d = detail.to_ascii_lowercase();
            AccessKey::parse(d.strip_prefix(AGENT_KEY_PREFIX)?)
        })
        .collect()
}

/// Safe first import: mail that reached the mailbox more than `max_age_hours` ago is imported
/// (tickets, replies, notes) but causes no mail at all — no acknowledgement, no agent
/// notification, no relayed reply, no refusal — so pointing supportd at an old inbox emails
/// nobody.
pub fn ack_age_permission(
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age_hours: u32,
) -> Result<(), String> {
    if now - received_at > Duration::hours(i64::from(max_age_hours)) {
        Err(format!(
            "not sent: the mail arrived {} h ago, more than limits.ack_max_age_hours",
            (now - received_at).num_hours()
        ))
    } else {
        Ok(())
    }
}

/// Access keys named by plus-addressed recipients of our own addresses.
pub fn access_keys_in(mail: &InboundMail, own: &[EmailAddress]) -> Vec<AccessKey> {
    mail.to
        .iter()
        .chain(mail.cc.iter())
        .filter_map(|m| m.email.split_detail())
        .filter(|(base, _)| own.contains(base))
        .filter_map(|(_, detail)| AccessKey::parse(detail))
        .collect()
}

/// Message-IDs that may thread this mail: In-Reply-To first, then References newest first,
/// each once (the parser already capped both lists).
pub fn referenced_ids(mail: &InboundMail) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    mail.in_reply_to
        .iter()
        .chain(mail.references.iter().rev())
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// Decides what `mail` means, given what the store knows. The first matching rule wins.
pub fn decide(
    mail: &InboundMail,
    origin: &Origin,
    lookup: &Lookup,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Decision {
    if lookup.duplicate {
        return Decision::Duplicate;
    }
    let from_self = policy.own_addresses.iter().any(|own| {
        *own == mail.sender.email
            || mail
                .sender
                .email
                .split_detail()
                .is_some_and(|(base, _)| base == *own)
    });
    if from_self {
        return Decision::Ignored {
            reason: "sent from our own support address".into(),
        };
    }
    if *origin == Origin::Bounce {
        return match &lookup.bounced {
            Some((outbox_id, ticket)) => Decision::Bounce {
                outbox_id: *outbox_id,
                ticket: ticket.clone(),
            },
            None => Decision::Ignored {
                reason: "delivery status notification for no mail of ours".into(),
            },
        };
    }

    let sender_key = mail.sender.email.key();
    let sender_is_staff = lookup.sender.as_ref().is_some_and(|u| u.role.is_staff());
    let participates = |t: &TicketSummary| sender_is_staff || t.participants.contains(&sender_key);
    // A Message-ID proves only that the sender saw the thread (anyone a customer forwards
    // to, or who guesses one); a key in the address or the tag from a participant is more.
    let by_reference = lookup.by_reference.clone();
    let stranger_reference = by_reference.clone().filter(|t| !participates(t));
    let threaded = by_reference
        .filter(|t| participates(t))
        .map(|t| (t, ThreadRule::Reference))
        .or_else(|| {
            lookup
                .by_access_key
                .clone()
                .map(|t| (t, ThreadRule::AccessKey))
        })
        .or_else(|| {
            lookup
                .by_agent_key
                .clone()
                .map(|t| (t, ThreadRule::AgentKey))
        })
        .or_else(|| {
            lookup
                .by_tag
                .iter()
                .find(|t| participates(t))
                .map(|t| (t.clone(), ThreadRule::SubjectTag))
        });

    if let Origin::AutoReply(reason) = origin {
        return match threaded.or_else(|| stranger_reference.map(|t| (t, ThreadRule::Reference))) {
            Some((ticket, _)) => Decision::AutoReplyNote {
                ticket,
                reason: reason.clone(),
            },
            None => Decision::Ignored {
                reason: format!("automatic reply ({reason}) to no ticket"),
            },
        };
    }

    if lookup.sender.as_ref().is_some_and(|u| !u.active) {
        return Decision::Rejected {
            refusal: Refusal::Inactive,
            reply: reply_permission(origin, lookup, policy),
        };
    }
    if sender_is_staff {
        if let Some(d) = agent_decision(mail, lookup, threaded.as_ref(), policy) {
            return d;
        }
    }
    let new_ticket =
        |follows: Option<TicketSummary>| match intake_allows(policy.intake, lookup.sender.as_ref())
        {
            Ok(()) => Decision::NewTicket {
                ack: ack_permission(origin, lookup, policy),
                follows,
            },
            Err(refusal) => Decision::Rejected {
                refusal,
                reply: reply_permission(origin, lookup, policy),
            },
        };

    match (threaded, stranger_reference) {
        (None, Some(ticket)) => Decision::NonParticipant {
            ticket,
            then: Box::new(new_ticket(None)),
        },
        (Some((ticket, rule)), _) => {
            let expired = ticket.status == TicketStatus::Closed
                && ticket.closed_at.is_some_and(|closed| {
                    now - closed > Duration::days(i64::from(policy.reopen_days))
                });
            if expired {
                new_ticket(Some(ticket))
            } else {
                let reopen = ticket.status != TicketStatus::Open;
                Decision::Reply {
                    ticket,
                    rule,
                    reopen,
                }
            }
        }
        (None, None) => match (&lookup.near_duplicate, new_ticket(None)) {
            (Some((ticket, of)), Decision::NewTicket { .. }) => Decision::NearDuplicate {
                ticket: ticket.clone(),
                of: of.clone(),
            },
            (_, d) => d,
        },
    }
}

/// What mail from an agent's address means when it threads to a ticket (None: it threads
/// nowhere, and may open a ticket like anyone's). Trusted only when it came through what only
/// agents receive (the agent-key address, or a reply to a notification) AND, unless the admin
/// opted out, our MTA authenticated it; anything else from an agent's address may be forged.
fn agent_decision(
    mail: &InboundMail,
    lookup: &Lookup,
    threaded: Option<&(TicketSummary, ThreadRule)>,
    policy: &Policy,
) -> Option<Decision> {
    let channel = lookup
        .by_agent_key
        .clone()
        .map(|t| (t, ThreadRule::AgentKey))
        .or_else(|| {
            lookup
                .by_agent_mail
                .clone()
                .map(|t| (t, ThreadRule::Reference))
        });
    let Some((ticket, rule)) = channel else {
        let (ticket, rule) = threaded?;
        return Some(Decision::UnverifiedAgentMail {
            ticket: ticket.clone(),
            reason: format!(
                "it reached the ticket by {}, not through the agent channel (the support+a-KEY \
                 address or a reply to an agent notification)",
                rule.as_str()
            ),
        });
    };
    if policy.agents_require_auth {
        if let Err(why) = auth::verify(
            &mail.authentication_results,
            &policy.authserv_id,
            mail.sender.email.domain(),
        ) {
            return Some(Decision::UnverifiedAgentMail {
                ticket,
                reason: why,
            });
        }
    }
    Some(Decision::AgentReply { ticket, rule })
}

fn ack_permission(origin: &Origin, lookup: &Lookup, policy: &Policy) -> Result<(), String> {
    if !policy.acknowledge {
        return Err("acknowledgements are turned off".into());
    }
    reply_permission(origin, lookup, policy)
}

/// May an automatic answer (ack, refusal, command error) go to this sender? Never to
/// automatic mail; at most `acks_per_sender_per_hour` of them together.
pub fn reply_permission(origin: &Origin, lookup: &Lookup, policy: &Policy) -> Result<(), String> {
    if let Some(reason) = origin.no_ack_reason() {
        return Err(format!("no acknowledgement to automatic mail: {reason}"));
    }
    if lookup.recent_acks >= policy.acks_per_sender_per_hour {
        return Err(format!(
            "acknowledgement rate limit: {} to this sender within the hour",
            lookup.recent_acks
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
