//! The one orchestrator: raw bytes → prepare (parse, HTML to text, quotes, triage: before any
//! transaction, within a time budget, see [`prepare`]) → load what the store knows → decide →
//! apply, each message all or nothing (a savepoint in its batch's transaction). `supportd
//! ingest` calls [`Pipeline::ingest_batch`], IMAP polling its two halves
//! ([`Pipeline::prepare_batch`], [`Pipeline::commit_batch`]); the caller acknowledges the
//! source (IMAP flag/move, MTA exit 0) only after the commit returned Ok.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, info_span, warn};

use crate::clock::{Clock, IdSource};
use crate::config::Config;
use crate::mail::compose::Party;
use crate::mail::loops::Origin;
use crate::mail::parse::InboundMail;
use crate::store::{blocking, NewMessage, NewOutbox, NewTicket, NewUser, Store, StoreError, Tx};
use crate::templates::{TemplateError, Templates};
use crate::tickets::ack::{acknowledgement, AckFacts};
use crate::tickets::{
    self, Decision, KnownUser, Lookup, Sla, TicketStatus, TicketSummary, TicketTag,
};
use crate::triage::Rules;

mod agents;
mod collaborators;
mod digest;
pub mod prepare;
pub use prepare::{Prepared, Ready};

/// What happened to one message (SPEC §2 `ingest` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Replied,
    AgentReply,
    Duplicate,
    Ignored,
    Rejected,
    Quarantined,
}

impl Action {
    /// The name in `ingest` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Replied => "replied",
            Action::AgentReply => "agent_reply",
            Action::Duplicate => "duplicate",
            Action::Ignored => "ignored",
            Action::Rejected => "rejected",
            Action::Quarantined => "quarantined",
        }
    }
}

/// One line of `ingest` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub message_id: Option<String>,
    pub action: Action,
    pub ticket: Option<i64>,
    pub reason: Option<String>,
}

/// A message could not be processed *now*; it stays where it is and is retried.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// No thread to prepare messages on (the system is out of threads or memory).
    #[error("cannot start a worker thread: {0}")]
    Worker(String),
}

impl PipelineError {
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Store(e) => e.is_transient(),
            PipelineError::Template(_) => false,
            PipelineError::Worker(_) => true,
        }
    }
}

/// Everything the pipeline needs besides the store; cheap to share between tasks.
pub struct Pipeline {
    pub config: Config,
    /// Who we are: built once from the config (see [`crate::setup`]).
    pub desk: crate::tickets::desk::Desk,
    /// Shared with the preparation threads (see [`prepare`]).
    pub rules: Arc<Rules>,
    pub templates: Templates,
    pub tag: TicketTag,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
}

/// The batch's transaction as one message's work sees it: the store's [`Tx`] (through
/// `Deref`), what was prepared from the message before the transaction, and whether this
/// message may queue mail at all.
pub(crate) struct Work<'a> {
    tx: &'a mut Tx,
    /// The message, parsed and analysed (None for work on no message: the digest sweep).
    /// Costly analysis of the message belongs in [`prepare`], not here: this runs holding
    /// the database's write lock.
    ready: Option<&'a Ready>,
    /// Why this message must queue no outbound mail (the safe-first-import rule holds old
    /// mail back), if it must not. Decided per message in `apply`.
    hold_outbound: Option<String>,
}

impl Work<'_> {
    /// The message's text without quotes and signature (empty outside a message).
    fn text(&self) -> &str {
        self.ready.map_or("", |r| r.text.as_str())
    }
}

impl std::ops::Deref for Work<'_> {
    type Target = Tx;
    fn deref(&self) -> &Tx {
        self.tx
    }
}

impl std::ops::DerefMut for Work<'_> {
    fn deref_mut(&mut self) -> &mut Tx {
        self.tx
    }
}

/// Where a message came from, for the audit trail and logs.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    /// The IMAP UID, for the message's log span; None from `supportd ingest`.
    pub uid: Option<u32>,
    /// When it reached us (IMAP INTERNALDATE); None = now.
    pub received_at: Option<DateTime<Utc>>,
}

impl Pipeline {
    /// Runs several raw messages through the pipeline: [`Pipeline::prepare_batch`], then
    /// [`Pipeline::commit_batch`]. Outcomes are in input order.
    pub fn ingest_batch(
        &self,
        store: &Store,
        items: &[(&[u8], Source<'_>)],
    ) -> Result<Vec<Outcome>, PipelineError> {
        let prepared = self.prepare_batch(items, &|| {})?;
        self.commit_batch(store, items, &prepared)
    }

    /// Prepares each message (parse, HTML to text, quote stripping, triage) outside any
    /// transaction, on a worker thread, each within `limits.processing_budget_seconds`: a
    /// message over it is set aside to be quarantined with the reason "processing budget
    /// exceeded" (see [`prepare`] for how). `progress` is called after each message. Fails
    /// only when no thread can be started (transient).
    pub fn prepare_batch(
        &self,
        items: &[(&[u8], Source<'_>)],
        progress: &dyn Fn(),
    ) -> Result<Vec<Prepared>, PipelineError> {
        let job = prepare::Preparer::new(self).into_job();
        let raws: Vec<&[u8]> = items.iter().map(|(raw, _)| *raw).collect();
        let budget = self.config.limits.processing_budget();
        let runaways = prepare::Runaways::process();
        blocking(|| prepare::prepare_all(&job, &raws, budget, &runaways, progress))
    }

    /// Stores prepared messages in ONE database transaction, each in a savepoint of its own,
    /// so each message is still all or nothing, but a batch costs one commit (one write of the
    /// pages every message touches) instead of one per message. `prepared` is
    /// [`Pipeline::prepare_batch`]'s answer for `items`. Outcomes are in input order. The
    /// transaction only looks up, decides and writes; on the daemon's runtime it runs inside
    /// [`blocking`], so the worker's other tasks carry on elsewhere meanwhile.
    ///
    /// A message that fails for any reason but an unavailable database is quarantined with
    /// the error as its reason: it would fail the same way at every retry. When the database
    /// is unavailable (busy beyond the timeout, gone), the whole batch is rolled back and the
    /// error returned: nothing was stored, so nothing may be acknowledged at the source.
    pub fn commit_batch(
        &self,
        store: &Store,
        items: &[(&[u8], Source<'_>)],
        prepared: &[Prepared],
    ) -> Result<Vec<Outcome>, PipelineError> {
        if items.len() != prepared.len() {
            return Err(StoreError::Corrupt(format!(
                "{} messages to store but {} prepared",
                items.len(),
                prepared.len()
            ))
            .into());
        }
        blocking(|| {
            let mut tx = store.begin()?;
            let mut done = Vec::with_capacity(items.len());
            for (&(raw, source), prepared) in items.iter().zip(prepared) {
                let span = message_span(source);
                let now = self.clock.now();
                let outcome =
                    match span.in_scope(|| self.process(&mut tx, prepared, raw, source, now)) {
                        Ok(outcome) => outcome,
                        Err(e) if e.is_transient() => return Err(e),
                        Err(e) => {
                            let reason = format!("could not be processed: {e}");
                            self.quarantine(&mut tx, raw, &reason, source, now)?
                        }
                    };
                span.record("message_id", outcome.message_id.as_deref().unwrap_or(""));
                if let Some(t) = outcome.ticket {
                    span.record("ticket", t);
                }
                done.push((span, outcome));
            }
            tx.commit()?;
            // Logged once committed: until then nothing was processed.
            Ok(done
                .into_iter()
                .map(|(span, outcome)| {
                    span.in_scope(|| log_outcome(&outcome));
                    outcome
                })
                .collect())
        })
    }

    /// Quarantines a message without processing it (kept verbatim with `reason`): for mail
    /// the daemon will not process, such as an oversized message.
    pub fn set_aside(
        &self,
        store: &Store,
        raw: &[u8],
        reason: &str,
        source: Source<'_>,
    ) -> Result<Outcome, PipelineError> {
        blocking(|| {
            let mut tx = store.begin()?;
            let outcome = self.quarantine(&mut tx, raw, reason, source, self.clock.now())?;
            tx.commit()?;
            message_span(source).in_scope(|| log_outcome(&outcome));
            Ok(outcome)
        })
    }

    /// Why a message of `size` bytes is not processed, if it is over `limits.max_message_bytes`
    /// (the IMAP poller asks before downloading it).
    pub fn too_large(&self, size: u64) -> Option<String> {
        too_large(size, self.config.limits.max_message_bytes)
    }

    /// One message, inside its own savepoint of the batch transaction `tx`. On an error the
    /// savepoint is rolled back (the rest of the batch stays) and the error returned.
    fn process(
        &self,
        tx: &mut Tx,
        prepared: &Prepared,
        raw: &[u8],
        source: Source<'_>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let ready = match prepared {
            Prepared::Ready(ready) => ready,
            Prepared::Aside(reason) => return Ok(self.quarantine(tx, raw, reason, source, now)?),
        };
        tx.savepoint()?;
        let mut work = Work {
            tx,
            ready: Some(ready),
            hold_outbound: None,
        };
        let applied = self
            .apply(&mut work, ready, raw, source, now)
            .and_then(|outcome| self.note_html_fallback(&mut work, outcome, now));
        match applied {
            Ok(outcome) => {
                tx.release_savepoint()?;
                Ok(outcome)
            }
            // A unique constraint violated inside our own write lock is in the data itself
            // (no other writer ran meanwhile): retrying later would stall the mailbox on this
            // message, so keep it aside.
            Err(PipelineError::Store(StoreError::Conflict)) => {
                tx.rollback_to_savepoint()?;
                let reason = "it conflicts with a stored row (unique constraint)";
                Ok(self.quarantine(tx, raw, reason, source, now)?)
            }
            Err(e) => {
                tx.rollback_to_savepoint()?;
                Err(e)
            }
        }
    }

    /// An HTML body shown stripped rather than rendered is said so: in the ticket's history
    /// (for the agents) and in the outcome's reason.
    fn note_html_fallback(
        &self,
        tx: &mut Work,
        mut outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let Some(note) = tx.ready.and_then(|r| r.mail.html_fallback.as_deref()) else {
            return Ok(outcome);
        };
        if outcome.action == Action::Duplicate {
            return Ok(outcome);
        }
        if let Some(number) = outcome.ticket {
            if let Some(t) = tx.ticket_by_number(number)? {
                tx.insert_event(t.id, now, "system", "html-fallback", note)?;
            }
        }
        outcome.reason = Some(match outcome.reason.take() {
            Some(r) => format!("{r}; {note}"),
            None => note.to_string(),
        });
        Ok(outcome)
    }

    fn quarantine(
        &self,
        tx: &mut Tx,
        raw: &[u8],
        reason: &str,
        source: Source<'_>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        // The digest keeps one row per distinct message. A record without bytes (an IMAP
        // message whose FETCH never succeeded) is told apart by its source and reason.
        let digest_input = if raw.is_empty() {
            format!("no bytes\n{}\n{reason}", source.name).into_bytes()
        } else {
            Vec::new()
        };
        let hashed: &[u8] = if raw.is_empty() { &digest_input } else { raw };
        let digest: String = Sha256::digest(hashed)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        tx.insert_quarantine(&digest, reason, source.name, raw, now)?;
        Ok(Outcome {
            message_id: None,
            action: Action::Quarantined,
            ticket: None,
            reason: Some(reason.to_string()),
        })
    }

    /// Decides and records one parsed message inside the caller's transaction.
    fn apply(
        &self,
        tx: &mut Work,
        ready: &Ready,
        raw: &[u8],
        source: Source<'_>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let mail = &ready.mail;
        let origin = &ready.origin;
        let lookup = self.lookup(tx, ready, now)?;
        let policy = tickets::Policy {
            own_addresses: self.desk.own.clone(),
            reopen_days: self.config.support.reopen_days,
            acks_per_sender_per_hour: self.config.limits.acks_per_sender_per_hour,
            acknowledge: self.config.support.acknowledge,
            intake: self.config.policy.intake,
            agents_require_auth: self.config.policy.agents_require_auth,
            authserv_id: self.config.policy.authserv_id.clone(),
        };
        let decision = tickets::decide(mail, origin, &lookup, &policy, now);
        let received_at = source.received_at.unwrap_or(now);
        tx.hold_outbound =
            tickets::ack_age_permission(received_at, now, self.config.limits.ack_max_age_hours)
                .err();
        self.apply_decision(
            tx,
            decision,
            mail,
            raw,
            origin,
            &lookup,
            &policy,
            received_at,
            now,
        )
    }

    /// Carries out one [`Decision`] inside the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    fn apply_decision(
        &self,
        tx: &mut Work,
        decision: Decision,
        mail: &InboundMail,
        raw: &[u8],
        origin: &Origin,
        lookup: &Lookup,
        policy: &tickets::Policy,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let outcome = match decision {
            Decision::Duplicate => {
                return Ok(Outcome {
                    message_id: Some(mail.message_id.clone()),
                    action: Action::Duplicate,
                    ticket: None,
                    reason: None,
                })
            }
            Decision::Ignored { reason } => {
                tx.insert_ignored(
                    &mail.message_id,
                    &mail.sender.email.to_string(),
                    &mail.subject,
                    &reason,
                    raw,
                    now,
                )?;
                self.outcome(mail, Action::Ignored, None, Some(reason))
            }
            Decision::Bounce { outbox_id, ticket } => {
                let reason = format!("delivery failure of outbox mail {outbox_id}");
                self.record_inbound(tx, mail, raw, &ticket, "bounce", true, None, received_at)?;
                tx.fail_outbox(outbox_id, &format!("bounced: {}", first_line(&mail.body)))?;
                tx.insert_event(ticket.id, now, "system", "bounce", &reason)?;
                self.outcome(mail, Action::Ignored, Some(ticket.number), Some(reason))
            }
            Decision::AutoReplyNote { ticket, reason } => {
                self.record_inbound(
                    tx,
                    mail,
                    raw,
                    &ticket,
                    "auto-reply",
                    true,
                    None,
                    received_at,
                )?;
                let reason = format!("automatic reply kept as an internal note: {reason}");
                self.outcome(mail, Action::Ignored, Some(ticket.number), Some(reason))
            }
            Decision::Reply {
                ticket,
                rule,
                reopen,
            } => {
                let author = match &lookup.sender {
                    Some(u) => Some(u.id),
                    None => Some(self.ensure_sender(tx, mail, false, now)?),
                };
                self.record_inbound(
                    tx,
                    mail,
                    raw,
                    &ticket,
                    "customer",
                    false,
                    author,
                    received_at,
                )?;
                tx.touch_ticket(ticket.id, now)?;
                let actor = mail.sender.email.to_string();
                if reopen {
                    tx.set_status(ticket.id, TicketStatus::Open, now)?;
                    let detail = format!("{} → open by a reply", ticket.status.as_str());
                    tx.insert_event(ticket.id, now, &actor, "status", &detail)?;
                }
                tx.insert_event(ticket.id, now, &actor, "reply", rule.as_str())?;
                let can_answer = tickets::reply_permission(origin, lookup, policy);
                let note = self.after_customer_reply(tx, mail, &ticket, can_answer, now)?;
                let mut reason = format!("threaded by {}", rule.as_str());
                if let Some(note) = note {
                    reason = format!("{reason}; {note}");
                }
                self.outcome(mail, Action::Replied, Some(ticket.number), Some(reason))
            }
            Decision::AgentReply { ticket, rule: _ } => {
                self.agent_reply(tx, mail, raw, &ticket, received_at, now)?
            }
            Decision::UnverifiedAgentMail { ticket, reason } => {
                self.unverified_agent_mail(tx, mail, raw, &ticket, &reason, received_at, now)?
            }
            Decision::NonParticipant { ticket, then } => {
                let mut outcome = self.apply_decision(
                    tx,
                    *then,
                    mail,
                    raw,
                    origin,
                    lookup,
                    policy,
                    received_at,
                    now,
                )?;
                let note = self.non_participant_note(tx, mail, &ticket, &outcome, now)?;
                outcome.reason = Some(match outcome.reason {
                    Some(r) => format!("{r}; {note}"),
                    None => note,
                });
                outcome
            }
            Decision::Rejected { refusal, reply } => {
                self.reject(tx, mail, raw, refusal, reply, lookup.sender.as_ref(), now)?
            }
            Decision::NewTicket { ack, follows } => {
                let sender = lookup.sender.as_ref();
                self.create_ticket(tx, mail, raw, sender, ack, follows, received_at, now)?
            }
        };
        Ok(outcome)
    }

    /// What the store knows about a message: a bounded number of lookups, the keys for which
    /// were extracted (and capped) in [`prepare`].
    fn lookup(&self, tx: &mut Tx, ready: &Ready, now: DateTime<Utc>) -> Result<Lookup, StoreError> {
        let mail = &ready.mail;
        let sender_key = mail.sender.email.key();
        // Automatic answers are counted per address without its +detail (issue 9).
        let (duplicate, sender, recent_acks) = tx.first_look(
            &mail.message_id,
            &sender_key,
            &mail.sender.email.rate_key(),
            now - Duration::hours(1),
        )?;
        let mut l = Lookup {
            duplicate,
            sender,
            recent_acks,
            ..Lookup::default()
        };
        if l.duplicate {
            return Ok(l);
        }
        if ready.origin == Origin::Bounce {
            let mut ids: Vec<String> = mail
                .embedded_message_ids
                .iter()
                .take(prepare::MAX_LOOKUPS)
                .cloned()
                .collect();
            ids.extend(ready.referenced.iter().cloned());
            l.bounced = tx.outbox_by_message_ids(&ids)?;
            return Ok(l);
        }
        l.by_reference = tx.ticket_by_message_ids(&ready.referenced)?;
        if l.sender.as_ref().is_some_and(|u| u.role.is_staff()) {
            l.by_agent_mail = tx.ticket_by_agent_mail(&ready.referenced)?;
        }
        for key in &ready.access_keys {
            if let Some(t) = tx.ticket_by_access_key(key.as_str())? {
                l.by_access_key = Some(t);
                break;
            }
        }
        for key in &ready.agent_keys {
            if let Some(t) = tx.ticket_by_agent_key(key.as_str())? {
                l.by_agent_key = Some(t);
                break;
            }
        }
        for &number in &ready.tags {
            if let Some(t) = tx.ticket_by_number(number)? {
                l.by_tag.push(t);
            }
        }
        Ok(l)
    }

    /// The sender as a user, provisioned as a customer (`known`: may open tickets under
    /// intake `known`, true only for the requester of an accepted ticket).
    fn ensure_sender(
        &self,
        tx: &mut Tx,
        mail: &InboundMail,
        known: bool,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        tx.ensure_user(
            &NewUser {
                email: &mail.sender.email.to_string(),
                email_key: &mail.sender.email.key(),
                name: mail.sender.name.as_deref().unwrap_or(""),
                role: "customer",
                known,
            },
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn record_inbound(
        &self,
        tx: &mut Tx,
        mail: &InboundMail,
        raw: &[u8],
        ticket: &TicketSummary,
        kind: &str,
        internal: bool,
        author_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let row = tx.insert_message(&NewMessage {
            ticket_id: ticket.id,
            message_id: &mail.message_id,
            direction: "inbound",
            kind,
            author: &mail.sender.email.to_string(),
            author_id,
            internal,
            subject: &mail.subject,
            body: &mail.body,
            raw: Some(raw),
            created_at: at,
        })?;
        for a in &mail.attachments {
            tx.insert_attachment(row, a)?;
        }
        Ok(row)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_ticket(
        &self,
        tx: &mut Work,
        mail: &InboundMail,
        raw: &[u8],
        known_sender: Option<&KnownUser>,
        ack: Result<(), String>,
        follows: Option<TicketSummary>,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        // Accepted under the intake policy: the requester is a known user from now on.
        let requester_id = match known_sender {
            Some(u) if u.known => u.id,
            Some(u) => {
                tx.mark_known(u.id)?;
                u.id
            }
            None => self.ensure_sender(tx, mail, true, now)?,
        };
        let ack = match &tx.hold_outbound {
            Some(why) => Err(why.clone()),
            None => ack,
        };
        // Classified before the transaction (see `prepare`).
        let Some(class) = tx.ready.map(|r| &r.class) else {
            return Err(StoreError::Corrupt("a ticket without a message".into()).into());
        };
        let level = self
            .rules
            .level(class.urgency)
            .or_else(|| self.rules.levels().last())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("triage rules define no levels".into()))?;
        let category = self
            .rules
            .category(&class.category)
            .cloned()
            .unwrap_or_else(|| crate::triage::Category {
                id: class.category.clone(),
                name: class.category.clone(),
            });
        let sla = Sla::starting(
            received_at,
            level.first_response_hours,
            level.resolution_hours,
        );
        let access_key = self.ids.access_key();
        let subject = if mail.subject.is_empty() {
            "(no subject)".to_string()
        } else {
            mail.subject.clone()
        };
        let (ticket_id, number) = tx.insert_ticket(&NewTicket {
            access_key: access_key.as_str(),
            agent_key: self.ids.access_key().as_str(),
            subject: &subject,
            category: &class.category,
            urgency: level.level,
            triage_reasons: &class.reasons.join("\n"),
            requester_id,
            follows_ticket_id: follows.as_ref().map(|t| t.id),
            created_at: received_at,
            first_response_due: sla.first_response_due,
            resolution_due: sla.resolution_due,
        })?;
        let ticket = TicketSummary {
            id: ticket_id,
            number,
            status: TicketStatus::Open,
            closed_at: None,
            participants: Vec::new(),
        };
        self.record_inbound(
            tx,
            mail,
            raw,
            &ticket,
            "customer",
            false,
            Some(requester_id),
            received_at,
        )?;
        self.add_collaborators(tx, ticket_id, mail, now)?;
        let actor = mail.sender.email.to_string();
        let detail = format!(
            "category {} urgency {} ({})",
            class.category,
            level.level,
            class.reasons.join(", ")
        );
        tx.insert_event(ticket_id, now, &actor, "created", &detail)?;
        if let Some(old) = &follows {
            let detail = format!("continues closed ticket #{}", old.number);
            tx.insert_event(ticket_id, now, "system", "follows", &detail)?;
        }

        self.notify_agents(
            tx,
            ticket_id,
            tickets::notify::NotifyEvent::NewTicket,
            mail,
            &mail.body,
            now,
        )?;

        let reason = match ack {
            Err(why) => Some(why),
            Ok(()) => {
                let support = self.desk.address.clone();
                let facts = AckFacts {
                    support_name: &self.config.support.name,
                    support_address: &support,
                    public_url: &self.desk.public_url,
                    phone: &self.config.support.phone,
                    tag: &self.tag,
                    number,
                    access_key: &access_key,
                    subject: &mail.subject,
                    requester: Party {
                        name: mail.sender.name.clone(),
                        email: mail.sender.email.clone(),
                    },
                    category: &category,
                    level: &level,
                    sla,
                    inbound_message_id: &mail.message_id,
                    inbound_references: &mail.references,
                    message_id: self.ids.message_id(support.domain()),
                    now,
                };
                let out = acknowledgement(&facts, &self.templates)?;
                match out.to_bytes() {
                    Ok(bytes) => {
                        tx.queue_outbox(&NewOutbox {
                            ticket_id: Some(ticket_id),
                            kind: "ack",
                            message_id: &out.message_id,
                            recipients: &out.envelope(),
                            subject: &out.subject,
                            raw: &bytes,
                            created_at: now,
                        })?;
                        tx.insert_message(&NewMessage {
                            ticket_id,
                            message_id: &out.message_id,
                            direction: "outbound",
                            kind: "ack",
                            author: &support.to_string(),
                            author_id: None,
                            internal: false,
                            subject: &out.subject,
                            body: &out.body,
                            raw: None,
                            created_at: now,
                        })?;
                        None
                    }
                    Err(e) => Some(format!("no acknowledgement: {e}")),
                }
            }
        };
        let mut outcome = self.outcome(mail, Action::Created, Some(number), reason);
        if let (Some(old), None) = (&follows, &outcome.reason) {
            outcome.reason = Some(format!("follows closed ticket #{}", old.number));
        }
        Ok(outcome)
    }

    fn outcome(
        &self,
        mail: &InboundMail,
        action: Action,
        ticket: Option<i64>,
        reason: Option<String>,
    ) -> Outcome {
        Outcome {
            message_id: Some(mail.message_id.clone()),
            action,
            ticket,
            reason,
        }
    }
}

/// Why a message of `size` bytes is not processed, if it is over `max` bytes.
fn too_large(size: u64, max: u64) -> Option<String> {
    (size > max)
        .then(|| format!("message of {size} bytes exceeds limits.max_message_bytes = {max}"))
}

/// The span of one message: its IMAP UID (under the mailbox's span), Message-ID and ticket.
fn message_span(source: Source<'_>) -> tracing::Span {
    info_span!(
        "message",
        source = source.name,
        uid = source.uid,
        message_id = tracing::field::Empty,
        ticket = tracing::field::Empty
    )
}

fn log_outcome(o: &Outcome) {
    let reason = o.reason.as_deref().unwrap_or("");
    match o.action {
        Action::Quarantined => warn!(reason, "message quarantined"),
        action => info!(action = ?action, reason, "message processed"),
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}
