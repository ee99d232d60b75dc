//! Notifications to agents, and their digests (issue 9, finding 6): one sender's flood of
//! mail must not become a flood of notifications, and no ticket may go unannounced either.
//!
//! Each notification about a customer's mail is recorded per sender (the address without its
//! +detail, lower-cased, so `bob+1@` … `bob+100@` are one). Up to
//! `limits.notifications_per_sender_per_hour` of them in a rolling hour go out one by one.
//! Past that, a mail's notification is *held*: its ticket's history says so (`notify-held`)
//! and it waits for a digest, which lists every held mail of that sender, per agent (each
//! entry routed like its own notification would have been, with its ticket's agent-key
//! address to answer through).
//!
//! A digest goes out once the oldest mail it lists has waited
//! `limits.notification_digest_minutes`. Two things look: the daemon, every minute (after a
//! flood stops no further mail may come to trigger anything), and the next mail from the same
//! sender, at once ([`Plan::digest_due`]), which keeps a running flood's digests on time even
//! where the daemon's sweep lags and lets `supportd ingest` alone drive them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{older_than, Builder, Context, Write};
use crate::mail::address::EmailAddress;
use crate::mail::compose::Party;
use crate::tickets::notify::{
    self, DigestEntry, DigestFacts, NotifyEvent, NotifyFacts, StaffMember,
};
use crate::tickets::outbound::{Content, Mail, MailKind};
use crate::tickets::{AccessKey, TicketRecord, TicketRef, UserRecord};

/// One sender's notifications within the last hour, for the digest rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NoticeState {
    /// Notifications that went out individually.
    pub sent: u32,
    /// The oldest notification held and not yet in a digest.
    pub oldest_held: Option<DateTime<Utc>>,
}

/// A party as mails address them.
pub(super) fn party(u: &UserRecord) -> Party {
    Party {
        name: Some(u.name.clone()).filter(|n| !n.is_empty()),
        email: EmailAddress::parse(&u.email)
            .unwrap_or_else(|| EmailAddress::from_parts(&u.email, "invalid")),
    }
}

/// The ticket's assignee, when an active agent mail can be sent to.
fn assignee(t: &TicketRecord, staff: &[StaffMember]) -> Option<StaffMember> {
    let a = t.assignee.as_ref().filter(|a| a.is_active_staff())?;
    let email = EmailAddress::parse(&a.email)?;
    staff.iter().find(|s| s.email == email).cloned()
}

impl Builder<'_, '_> {
    /// Notifies the agents (assignee, category agents or all) about this message on `record`.
    /// Its author is left out, except for unverified agent mail: the agent whose address it
    /// bears must hear of it. `link`: the message's attachments are named and linked.
    pub(super) fn notify(
        &mut self,
        ticket: TicketRef,
        record: &TicketRecord,
        event: NotifyEvent,
        text: &str,
        link: bool,
    ) {
        let (f, c) = (self.f, self.c);
        if !c.policy.notify_agents || f.staff.is_empty() {
            return;
        }
        let assignee = assignee(record, &f.staff);
        let author = event.spares_author().then_some(&f.mail.sender.email);
        let to = notify::route(assignee.as_ref(), &f.staff, &record.category, author);
        if to.is_empty() || self.hold_for_digest(ticket, event) {
            return;
        }
        let agent_key = match &record.agent_key {
            Some(k) => k.clone(),
            None => {
                let key = c.ids.access_key();
                self.write(Write::AgentKey {
                    ticket,
                    key: key.clone(),
                });
                key
            }
        };
        let facts = NotifyFacts {
            number: record.number,
            agent_key,
            access_key: record.access_key.clone(),
            event,
            subject: record.subject.clone(),
            status: record.status,
            author: Party {
                name: f.mail.sender.name.clone(),
                email: f.mail.sender.email.clone(),
            },
            requester: party(&record.requester),
            category: c.category(&record.category),
            level: c.level(record.urgency),
            first_response_due: record.first_response_due,
            resolution_due: record.resolution_due,
            first_response_at: record.first_response_at,
            assignee: record.assignee.as_ref().map(|a| a.email.clone()),
            text: text.to_string(),
            attachments: Vec::new(),
            inbound_message_id: f.mail.message_id.clone(),
            inbound_references: f.mail.references.clone(),
        };
        for agent in &to {
            let stamp = c.stamp(f.now);
            self.mail(Mail {
                kind: MailKind::NotifyAgent,
                ticket: Some(ticket),
                stamp,
                to_agents: true,
                history: None,
                with_inbound_attachments: link && !f.mail.attachments.is_empty(),
                content: Content::Notify {
                    facts: facts.clone(),
                    to: agent.clone(),
                },
            });
        }
        let names: Vec<String> = to.iter().map(|a| a.email.to_string()).collect();
        self.event(ticket, "system", "notified", names.join(", "));
    }

    /// Whether this message's notification is held for a digest; either way it is recorded.
    /// Also asks for the sender's digest when one is due.
    fn hold_for_digest(&mut self, ticket: TicketRef, event: NotifyEvent) -> bool {
        let (f, c) = (self.f, self.c);
        let limit = c.policy.notifications_per_sender_per_hour;
        // Mail that may not cause mail at all (safe first import) is recorded elsewhere.
        if limit == 0 || self.plan.hold.is_some() {
            return false;
        }
        let key = f.mail.sender.email.rate_key();
        let held = f.notices.sent >= limit;
        self.write(Write::Notice {
            ticket,
            event,
            held,
        });
        if held {
            let detail = format!(
                "notification held for a digest: mail from {key} caused {} notifications \
                 within the hour (limits.notifications_per_sender_per_hour = {limit})",
                f.notices.sent
            );
            self.event(ticket, "system", "notify-held", detail);
        }
        // This mail's own held notification is the newest; only an older one can be due.
        let due = f
            .notices
            .oldest_held
            .is_some_and(|oldest| older_than(oldest, c.policy.notification_digest_minutes, f.now));
        if due {
            self.plan.digest_due = Some(key);
        }
        held
    }
}

/// A notification held for a digest, with its ticket.
#[derive(Debug, Clone)]
pub struct HeldNotice {
    /// The `agent_notices` row.
    pub id: i64,
    pub ticket: TicketRecord,
    pub event: NotifyEvent,
    pub at: DateTime<Utc>,
}

/// What a sender's digest is made of.
#[derive(Debug, Clone)]
pub struct DigestInput {
    /// The sender (address without +detail).
    pub sender: String,
    /// Oldest first.
    pub held: Vec<HeldNotice>,
    pub staff: Vec<StaffMember>,
    pub now: DateTime<Utc>,
}

/// The digest mails (one per agent) for `d`'s held notifications, the agent keys tickets from
/// before migration 0002 need, and one `notified` event per ticket. The caller marks the
/// notices listed.
pub fn plan_digest(d: &DigestInput, c: &Context<'_>) -> (Vec<Write>, Vec<Mail>) {
    let mut writes = Vec::new();
    let author = EmailAddress::parse(&d.sender)
        .unwrap_or_else(|| EmailAddress::from_parts(&d.sender, "invalid"));
    // Per agent (in order of first mention): the entries routed to them.
    let mut per_agent: Vec<(StaffMember, Vec<DigestEntry>)> = Vec::new();
    // Per ticket (in order of first mention): who its entries went to.
    let mut per_ticket: Vec<(TicketRef, Vec<String>)> = Vec::new();
    let mut keys: HashMap<i64, AccessKey> = HashMap::new();
    for h in &d.held {
        let t = &h.ticket;
        let tref = TicketRef::Existing {
            id: t.id,
            number: t.number,
        };
        let agent_key = match (&t.agent_key, keys.get(&t.id)) {
            (Some(k), _) | (None, Some(k)) => k.clone(),
            (None, None) => {
                let key = c.ids.access_key();
                writes.push(Write::AgentKey {
                    ticket: tref,
                    key: key.clone(),
                });
                keys.insert(t.id, key.clone());
                key
            }
        };
        let slot = match per_ticket.iter().position(|(r, _)| *r == tref) {
            Some(i) => i,
            None => {
                per_ticket.push((tref, Vec::new()));
                per_ticket.len() - 1
            }
        };
        let assignee = assignee(t, &d.staff);
        let spared = h.event.spares_author().then_some(&author);
        let to = notify::route(assignee.as_ref(), &d.staff, &t.category, spared);
        let entry = DigestEntry {
            number: t.number,
            event: h.event,
            subject: t.subject.clone(),
            category: t.category.clone(),
            urgency: t.urgency,
            at: h.at,
            agent_key,
        };
        for agent in to {
            let names = &mut per_ticket[slot].1;
            let name = agent.email.to_string();
            if !names.contains(&name) {
                names.push(name);
            }
            match per_agent.iter_mut().find(|(a, _)| a.email == agent.email) {
                Some((_, entries)) => entries.push(entry.clone()),
                None => per_agent.push((agent, vec![entry.clone()])),
            }
        }
    }
    let mails = per_agent
        .into_iter()
        .map(|(agent, entries)| Mail {
            kind: MailKind::NotifyDigest,
            ticket: None,
            stamp: c.stamp(d.now),
            to_agents: true,
            history: None,
            with_inbound_attachments: false,
            content: Content::Digest {
                facts: DigestFacts {
                    sender: d.sender.clone(),
                    limit: c.policy.notifications_per_sender_per_hour,
                    entries,
                },
                to: agent,
            },
        })
        .collect();
    for (ticket, names) in per_ticket {
        let detail = if names.is_empty() {
            "digest: no agent to notify".to_string()
        } else {
            format!("digest: {}", names.join(", "))
        };
        writes.push(Write::Event {
            ticket,
            actor: "system".into(),
            kind: "notified".into(),
            detail,
        });
    }
    (writes, mails)
}
