//! Notification digests (issue 9, finding 6): one sender's mail flood must not become a flood
//! of agent notifications, and no ticket may go unannounced either.
//!
//! Each notification about a customer's mail is recorded per sender (`agent_notices`; the
//! sender is the address without its +detail, lower-cased, so `bob+1@` … `bob+100@` are one).
//! Up to `limits.notifications_per_sender_per_hour` of them in a rolling hour go out one by
//! one as usual. Past that, a mail's notification is *held*: its ticket's history says so
//! (`notify-held`) and the notification waits for a digest. A digest lists every held mail of
//! that sender, per agent (each entry routed like its own notification would have been, with
//! its ticket's agent-key address to answer through), as an ordinary outbox mail.
//!
//! When a digest goes out: once the oldest mail it would list has waited
//! `limits.notification_digest_minutes`. Two things look: the daemon, every minute
//! ([`Pipeline::send_due_digests`]), because after a flood stops no further mail may come
//! to trigger anything and the last held tickets would otherwise never be announced; and
//! the next mail from the same sender, at once, which keeps a running flood's digests on time
//! even where the daemon's sweep lags (and lets `supportd ingest` alone drive them). Not at
//! every held mail: a digest per held mail would be the flood again. So during a flood each
//! agent gets the first few notifications, then one digest per `notification_digest_minutes`.

use chrono::{DateTime, Duration, Utc};

use super::{Pipeline, PipelineError, Work};
use crate::mail::address::EmailAddress;
use std::collections::HashMap;

use crate::store::{blocking, Store, TicketRecord};
use crate::tickets::notify::{self, DigestEntry, DigestFacts, NotifyEvent, StaffMember};

impl Pipeline {
    /// Whether the notification about `ticket_id` caused by `sender`'s mail is held for a
    /// digest; either way it is recorded. Sends the sender's digest if it is due.
    pub(super) fn hold_for_digest(
        &self,
        tx: &mut Work,
        ticket_id: i64,
        event: NotifyEvent,
        sender: &EmailAddress,
        now: DateTime<Utc>,
    ) -> Result<bool, PipelineError> {
        let limit = self.config.limits.notifications_per_sender_per_hour;
        // Mail that may not cause mail at all (safe first import) is recorded elsewhere.
        if limit == 0 || tx.hold_outbound.is_some() {
            return Ok(false);
        }
        let key = sender.rate_key();
        let (sent, oldest_held) = tx.notice_state(&key, now - Duration::hours(1))?;
        let held = sent >= limit;
        tx.record_notice(&key, ticket_id, event.as_str(), now, held)?;
        if held {
            let detail = format!(
                "notification held for a digest: mail from {key} caused {sent} notifications \
                 within the hour (limits.notifications_per_sender_per_hour = {limit})"
            );
            tx.insert_event(ticket_id, now, "system", "notify-held", &detail)?;
        }
        // This mail's own held notification is the newest; only an older one can be due.
        if oldest_held.is_some_and(|oldest| oldest <= now - self.digest_wait()) {
            self.send_digest(tx, &key, now)?;
        }
        Ok(held)
    }

    fn digest_wait(&self) -> Duration {
        Duration::minutes(i64::from(self.config.limits.notification_digest_minutes))
    }

    /// Queues every digest that is due (the daemon calls this every minute), in one
    /// transaction; returns how many digest mails were queued.
    pub fn send_due_digests(&self, store: &Store) -> Result<usize, PipelineError> {
        blocking(|| {
            let now = self.clock.now();
            let mut open = store.begin()?;
            let mut tx = Work {
                tx: &mut open,
                ready: None,
                hold_outbound: None,
            };
            let mut queued = 0;
            for sender in tx.senders_with_due_digests(now - self.digest_wait())? {
                queued += self.send_digest(&mut tx, &sender, now)?;
            }
            drop(tx);
            open.commit()?;
            Ok(queued)
        })
    }

    /// Lists every held notification of `sender_key` in one digest per agent, and marks them
    /// listed; returns how many digest mails were queued.
    fn send_digest(
        &self,
        tx: &mut Work,
        sender_key: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, PipelineError> {
        let pending = tx.pending_notices(sender_key)?;
        if pending.is_empty() {
            return Ok(0);
        }
        let staff: Vec<StaffMember> = tx
            .active_staff()?
            .iter()
            .filter_map(|u| self.staff_member(u))
            .collect();
        let author = EmailAddress::parse(sender_key)
            .unwrap_or_else(|| EmailAddress::from_parts(sender_key, "invalid"));
        // Per agent (in order of first mention): the entries routed to them.
        let mut per_agent: Vec<(StaffMember, Vec<DigestEntry>)> = Vec::new();
        // Per ticket (in order of first mention): who its entries went to.
        let mut per_ticket: Vec<(i64, Vec<String>)> = Vec::new();
        let mut tickets: HashMap<i64, (TicketRecord, usize)> = HashMap::new();
        for p in &pending {
            let (t, slot) = match tickets.get(&p.ticket_id) {
                Some(known) => known.clone(),
                None => {
                    let mut t = tx.ticket_record(p.ticket_id)?;
                    // Created once here for tickets from before migration 0002.
                    t.agent_key = Some(self.agent_key(tx, &t)?.as_str().to_string());
                    per_ticket.push((t.id, Vec::new()));
                    let known = (t, per_ticket.len() - 1);
                    tickets.insert(p.ticket_id, known.clone());
                    known
                }
            };
            let assignee = t
                .assignee
                .as_ref()
                .filter(|a| a.active && a.role != "customer")
                .and_then(|a| self.staff_member(a));
            let event = NotifyEvent::parse(&p.event).unwrap_or(NotifyEvent::CustomerReply);
            let spared = event.spares_author().then_some(&author);
            let to = notify::route(assignee.as_ref(), &staff, &t.category, spared);
            let entry = DigestEntry {
                number: t.number,
                event,
                subject: t.subject.clone(),
                category: t.category.clone(),
                urgency: t.urgency,
                at: p.at,
                agent_key: self.agent_key(tx, &t)?,
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
        let support = self.desk.address.clone();
        for (agent, entries) in &per_agent {
            let facts = DigestFacts {
                support_name: &self.config.support.name,
                support_address: &support,
                tag: &self.tag,
                sender: sender_key,
                limit: self.config.limits.notifications_per_sender_per_hour,
                entries,
                message_id: self.ids.message_id(support.domain()),
                now,
            };
            let out = notify::digest(&facts, agent, &self.templates)?;
            self.send(tx, None, "notify-digest", &out, &[], None, now)?;
        }
        let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
        tx.mark_digested(&ids, now)?;
        for (ticket_id, names) in per_ticket {
            let detail = if names.is_empty() {
                "digest: no agent to notify".to_string()
            } else {
                format!("digest: {}", names.join(", "))
            };
            tx.insert_event(ticket_id, now, "system", "notified", &detail)?;
        }
        Ok(per_agent.len())
    }
}
