//! The pipeline's agent side (issue 4): notifications to agents, agent replies with their
//! commands, held (unauthenticated) agent mail, and mail refused by the intake policy.
//! The decisions are made in [`crate::tickets`]; this module only applies them.

use chrono::{DateTime, Utc};

use super::Work;
use super::{Action, Outcome, Pipeline, PipelineError};
use crate::mail::address::EmailAddress;
use crate::mail::compose::{deliverable, ComposeError, Outgoing, Party};
use crate::mail::parse::{Attachment, InboundMail};
use crate::store::{NewMessage, NewOutbox, NewUser, StoreError, TicketRecord, Tx, UserRecord};
use crate::tickets::commands::{self, Assignee, Command, NotUnderstood};
use crate::tickets::notify::{self, NotifyEvent, NotifyFacts, StaffMember};
use crate::tickets::replies::{self, Answering, Sender, TicketFacts};
use crate::tickets::{AccessKey, KnownUser, Refusal, Sla, TicketStatus, TicketSummary};
use crate::triage::{Category, Level};

/// A command with its arguments resolved against the store and the triage rules.
enum Step {
    Status(TicketStatus),
    Urgency(Level),
    Category(Category),
    Assign(UserRecord),
    Cc(EmailAddress),
}

impl Pipeline {
    fn sender<'a>(&'a self, support: &'a EmailAddress) -> Sender<'a> {
        Sender {
            support_name: &self.config.support.name,
            support_address: support,
            public_url: &self.desk.public_url,
            phone: &self.config.support.phone,
        }
    }

    fn level_of(&self, urgency: u8) -> Result<Level, PipelineError> {
        self.rules
            .level(urgency)
            .or_else(|| self.rules.levels().last())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("triage rules define no levels".into()).into())
    }

    fn category_of(&self, id: &str) -> Category {
        self.rules
            .category(id)
            .cloned()
            .unwrap_or_else(|| Category {
                id: id.to_string(),
                name: id.to_string(),
            })
    }

    /// Queues one mail (and, when `history`, records it on the ticket as an outbound message).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &self,
        tx: &mut Work,
        ticket_id: Option<i64>,
        kind: &str,
        out: &Outgoing,
        attachments: &[Attachment],
        history: Option<(&str, Option<i64>)>,
        now: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        if let Some(why) = tx.hold_outbound.clone() {
            if let Some(ticket_id) = ticket_id {
                tx.insert_event(
                    ticket_id,
                    now,
                    "system",
                    "not-sent",
                    &format!("{kind}: {why}"),
                )?;
            }
            return Ok(());
        }
        let bytes = match out.to_bytes_with(attachments) {
            Ok(bytes) => bytes,
            // An address lettre cannot write (say, a sender's): this mail is not sent, which
            // is recorded; the message that caused it is processed all the same.
            Err(e @ ComposeError::Address(_)) => {
                if let Some(ticket_id) = ticket_id {
                    tx.insert_event(
                        ticket_id,
                        now,
                        "system",
                        "not-sent",
                        &format!("{kind}: {e}"),
                    )?;
                }
                return Ok(());
            }
            Err(e) => {
                return Err(
                    StoreError::Corrupt(format!("{kind} mail cannot be composed: {e}")).into(),
                )
            }
        };
        tx.queue_outbox(&NewOutbox {
            ticket_id,
            kind,
            message_id: &out.message_id,
            recipients: &out.envelope(),
            subject: &out.subject,
            raw: &bytes,
            created_at: now,
        })?;
        if let (Some(ticket_id), Some((author, author_id))) = (ticket_id, history) {
            tx.insert_message(&NewMessage {
                ticket_id,
                message_id: &out.message_id,
                direction: "outbound",
                kind,
                author,
                author_id,
                internal: false,
                subject: &out.subject,
                body: &out.body,
                raw: None,
                created_at: now,
            })?;
        }
        Ok(())
    }

    /// Records an inbound mail on a ticket with `body` (agent mail keeps only the new text;
    /// the raw bytes are kept verbatim anyway).
    #[allow(clippy::too_many_arguments)]
    fn record_with_body(
        &self,
        tx: &mut Tx,
        mail: &InboundMail,
        raw: &[u8],
        ticket_id: i64,
        kind: &str,
        author_id: Option<i64>,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let row = tx.insert_message(&NewMessage {
            ticket_id,
            message_id: &mail.message_id,
            direction: "inbound",
            kind,
            author: &mail.sender.email.to_string(),
            author_id,
            internal: true,
            subject: &mail.subject,
            body,
            raw: Some(raw),
            created_at: at,
        })?;
        for a in &mail.attachments {
            tx.insert_attachment(row, a)?;
        }
        Ok(())
    }

    /// The ticket's agent key, created for tickets from before migration 0002.
    pub(super) fn agent_key(&self, tx: &mut Tx, t: &TicketRecord) -> Result<AccessKey, StoreError> {
        if let Some(k) = t.agent_key.as_deref().and_then(AccessKey::parse) {
            return Ok(k);
        }
        let k = self.ids.access_key();
        tx.set_agent_key(t.id, k.as_str())?;
        Ok(k)
    }

    /// An active agent or admin as routing sees them; None for an address mail cannot be
    /// sent to (one bad staff address must not fail every notification).
    pub(super) fn staff_member(&self, u: &UserRecord) -> Option<StaffMember> {
        let email = EmailAddress::parse(&u.email).filter(deliverable)?;
        let categories = self
            .config
            .agent
            .iter()
            .find(|a| a.email == email)
            .map(|a| a.categories.clone())
            .unwrap_or_default();
        Some(StaffMember {
            email,
            name: u.name.clone(),
            categories,
        })
    }

    /// Notifies the agents (assignee, category agents or all) about a mail on a ticket. Its
    /// author is left out, except for unverified agent mail: the agent whose address it
    /// bears must hear of it.
    pub(super) fn notify_agents(
        &self,
        tx: &mut Work,
        ticket_id: i64,
        event: NotifyEvent,
        mail: &InboundMail,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, PipelineError> {
        if !self.config.support.notify_agents {
            return Ok(0);
        }
        let staff: Vec<StaffMember> = tx
            .active_staff()?
            .iter()
            .filter_map(|u| self.staff_member(u))
            .collect();
        if staff.is_empty() {
            return Ok(0);
        }
        let t = tx.ticket_record(ticket_id)?;
        let assignee = t
            .assignee
            .as_ref()
            .filter(|a| a.active && a.role != "customer")
            .and_then(|a| self.staff_member(a));
        let author = event.spares_author().then_some(&mail.sender.email);
        let to = notify::route(assignee.as_ref(), &staff, &t.category, author);
        if to.is_empty() {
            return Ok(0);
        }
        if self.hold_for_digest(tx, t.id, event, &mail.sender.email, now)? {
            return Ok(0);
        }
        let key = self.agent_key(tx, &t)?;
        let access_key = AccessKey::parse(&t.access_key)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket #{} access key", t.number)))?;
        // Named and linked, never attached: the bytes are stored once, with the message.
        let attachments = match mail.attachments.is_empty() {
            true => Vec::new(),
            false => tx.message_attachments(&mail.message_id)?,
        };
        let level = self.level_of(t.urgency)?;
        let category = self.category_of(&t.category);
        let support = self.desk.address.clone();
        for agent in &to {
            let facts = NotifyFacts {
                support_name: &self.config.support.name,
                support_address: &support,
                tag: &self.tag,
                number: t.number,
                agent_key: &key,
                access_key: &access_key,
                public_url: &self.desk.public_url,
                event,
                subject: &t.subject,
                status: t.status,
                author: Party {
                    name: mail.sender.name.clone(),
                    email: mail.sender.email.clone(),
                },
                requester: party(&t.requester),
                category: &category,
                level: &level,
                first_response_due: t.first_response_due,
                resolution_due: t.resolution_due,
                first_response_at: t.first_response_at,
                assignee: t.assignee.as_ref().map(|a| a.email.clone()),
                text,
                attachments: &attachments,
                inbound_message_id: &mail.message_id,
                inbound_references: &mail.references,
                message_id: self.ids.message_id(support.domain()),
                now,
            };
            let out = notify::notification(&facts, agent, &self.templates)?;
            self.send(tx, Some(t.id), "notify-agent", &out, &[], None, now)?;
            tx.record_agent_mail(&out.message_id, t.id)?;
        }
        let names: Vec<String> = to.iter().map(|a| a.email.to_string()).collect();
        tx.insert_event(t.id, now, "system", "notified", &names.join(", "))?;
        Ok(to.len())
    }

    /// A customer's reply beyond recording it: agents are told, and commands a non-agent
    /// wrote are refused with an explanation.
    pub(super) fn after_customer_reply(
        &self,
        tx: &mut Work,
        mail: &InboundMail,
        ticket: &TicketSummary,
        can_answer: Result<(), String>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, PipelineError> {
        // Quotes were stripped before the transaction (see `prepare`).
        let text = tx.text().to_string();
        let parsed = commands::parse(&text);
        let mut note = None;
        if !parsed.command_lines.is_empty() {
            let lines = parsed.command_lines.join(", ");
            tx.insert_event(
                ticket.id,
                now,
                &mail.sender.email.to_string(),
                "commands-ignored",
                &format!("not an agent: {lines}"),
            )?;
            note = Some(format!("commands from a non-agent not executed: {lines}"));
            if can_answer.is_ok() {
                let errors: Vec<NotUnderstood> = parsed
                    .command_lines
                    .iter()
                    .map(|l| NotUnderstood {
                        line: l.clone(),
                        why: "only agents may use commands".into(),
                    })
                    .collect();
                self.command_error(tx, mail, ticket.id, ticket.number, false, &errors, now)?;
            }
        }
        self.notify_agents(tx, ticket.id, NotifyEvent::CustomerReply, mail, &text, now)?;
        Ok(note)
    }

    #[allow(clippy::too_many_arguments)]
    fn command_error(
        &self,
        tx: &mut Work,
        mail: &InboundMail,
        ticket_id: i64,
        number: i64,
        from_agent: bool,
        errors: &[NotUnderstood],
        now: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        let support = self.desk.address.clone();
        let answering = Answering::sender_of(mail);
        let out = replies::command_error(
            &self.sender(&support),
            &answering,
            &self.tag,
            number,
            from_agent,
            errors,
            self.ids.message_id(support.domain()),
            now,
            &self.templates,
        )?;
        self.send(tx, Some(ticket_id), "command-error", &out, &[], None, now)?;
        if from_agent {
            tx.record_agent_mail(&out.message_id, ticket_id)?;
        }
        Ok(())
    }

    /// Mail from an agent's address that was not verified: an internal note flagged
    /// "unverified", and the agents told (the named agent too). Nothing is relayed and no
    /// command runs: it may be forged.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn unverified_agent_mail(
        &self,
        tx: &mut Work,
        mail: &InboundMail,
        raw: &[u8],
        ticket: &TicketSummary,
        reason: &str,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let author = tx.user_record(&mail.sender.email.key())?.map(|u| u.id);
        self.record_with_body(
            tx,
            mail,
            raw,
            ticket.id,
            "unverified",
            author,
            &mail.body,
            received_at,
        )?;
        let why = format!("unverified agent mail, kept as an internal note: {reason}");
        tx.insert_event(
            ticket.id,
            now,
            &mail.sender.email.to_string(),
            "unverified",
            &why,
        )?;
        let text = format!(
            "This mail bears an agent's address but was NOT verified, so it was not sent to the\n\
             customer and its commands were not run. Why: {reason}.\n\
             If you wrote it, reply to this notification instead (its Reply-To is the agent\n\
             channel), from a mailbox your mail server authenticates.\n\n{}",
            tx.text()
        );
        self.notify_agents(
            tx,
            ticket.id,
            NotifyEvent::UnverifiedAgentMail,
            mail,
            &text,
            now,
        )?;
        Ok(self.outcome(mail, Action::Ignored, Some(ticket.number), Some(why)))
    }

    /// A non-participant's mail that named a message of `ticket`: kept there as an internal
    /// note for the agents (its copy has a Message-ID of its own: the original belongs to
    /// what `outcome` made of it). Returns the note for the outcome's reason.
    pub(super) fn non_participant_note(
        &self,
        tx: &mut Work,
        mail: &InboundMail,
        ticket: &TicketSummary,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<String, PipelineError> {
        let became = match (outcome.action, outcome.ticket) {
            (Action::Created, Some(n)) => format!("it opened ticket #{n}"),
            (action, _) => format!("it was {}", action.as_str()),
        };
        let text = tx.text();
        let body = format!(
            "From {}, who is not a participant of this ticket, by a Message-ID of its \
             thread; {became}. Not added to this ticket, not relayed.\n\n{text}",
            mail.sender.email
        );
        tx.insert_message(&NewMessage {
            ticket_id: ticket.id,
            message_id: &format!("note.{}.{}", ticket.number, mail.message_id),
            direction: "inbound",
            kind: "non-participant",
            author: &mail.sender.email.to_string(),
            author_id: None,
            internal: true,
            subject: &mail.subject,
            body: &body,
            raw: None,
            created_at: now,
        })?;
        tx.insert_event(
            ticket.id,
            now,
            &mail.sender.email.to_string(),
            "non-participant",
            &format!("mail by a Message-ID of this ticket from a non-participant; {became}"),
        )?;
        self.notify_agents(tx, ticket.id, NotifyEvent::NonParticipant, mail, &body, now)?;
        Ok(format!(
            "the sender is no participant of ticket #{}, which its Message-ID names: kept there as an internal note",
            ticket.number
        ))
    }

    /// Mail refused by the intake policy or from a deactivated user.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reject(
        &self,
        tx: &mut Work,
        mail: &InboundMail,
        raw: &[u8],
        refusal: Refusal,
        reply: Result<(), String>,
        sender: Option<&KnownUser>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let reason = refusal.reason();
        tx.insert_ignored(
            &mail.message_id,
            &mail.sender.email.to_string(),
            &mail.subject,
            &format!("rejected: {reason}"),
            raw,
            now,
        )?;
        let answered = match reply {
            Err(why) => format!("not answered: {why}"),
            Ok(()) => {
                let support = self.desk.address.clone();
                let org = sender
                    .map(|u| u.org.clone())
                    .unwrap_or_else(|| mail.sender.email.domain().to_string());
                let answering = Answering::sender_of(mail);
                let out = replies::refusal(
                    &self.sender(&support),
                    &answering,
                    refusal,
                    &org,
                    self.ids.message_id(support.domain()),
                    now,
                    &self.templates,
                )?;
                self.send(tx, None, refusal.kind(), &out, &[], None, now)?;
                "answered".to_string()
            }
        };
        Ok(self.outcome(
            mail,
            Action::Rejected,
            None,
            Some(format!("{reason}; {answered}")),
        ))
    }

    /// An agent's reply: commands, then the text relayed to the customer (or kept as a note).
    pub(super) fn agent_reply(
        &self,
        tx: &mut Work,
        mail: &InboundMail,
        raw: &[u8],
        ticket: &TicketSummary,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let agent = tx
            .user_record(&mail.sender.email.key())?
            .ok_or_else(|| StoreError::Corrupt("agent reply from no stored user".into()))?;
        let actor = agent.email.clone();
        // Quotes were stripped before the transaction (see `prepare`).
        let text = tx.text().to_string();
        let parsed = commands::parse(&text);
        let mut errors = parsed.not_understood.clone();
        let mut steps = Vec::new();
        for c in &parsed.commands {
            let refuse = |why: String| NotUnderstood {
                line: c.display(),
                why,
            };
            match c {
                Command::Close => steps.push(Step::Status(TicketStatus::Closed)),
                Command::Pending => steps.push(Step::Status(TicketStatus::Pending)),
                Command::Open => steps.push(Step::Status(TicketStatus::Open)),
                Command::Note => {}
                Command::Urgency(n) => match self.rules.level(*n) {
                    Some(l) => steps.push(Step::Urgency(l.clone())),
                    None => {
                        let known: Vec<String> = self
                            .rules
                            .levels()
                            .iter()
                            .map(|l| l.level.to_string())
                            .collect();
                        errors.push(refuse(format!(
                            "no urgency level {n}; levels are {}",
                            known.join(", ")
                        )));
                    }
                },
                Command::Category(id) => match self.rules.category(id) {
                    Some(cat) => steps.push(Step::Category(cat.clone())),
                    None => {
                        let known: Vec<&str> = self
                            .rules
                            .categories()
                            .iter()
                            .map(|c| c.id.as_str())
                            .collect();
                        errors.push(refuse(format!(
                            "no category `{id}`; categories are {}",
                            known.join(", ")
                        )));
                    }
                },
                Command::Assign(Assignee::Me) => steps.push(Step::Assign(agent.clone())),
                Command::Assign(Assignee::Email(e)) => match tx.user_record(&e.key())? {
                    Some(u) if u.active && u.role != "customer" => steps.push(Step::Assign(u)),
                    _ => errors.push(refuse(format!("{e} is no active agent"))),
                },
                Command::Cc(e) => {
                    let earlier: Vec<&EmailAddress> = steps
                        .iter()
                        .filter_map(|s| match s {
                            Step::Cc(e) => Some(e),
                            _ => None,
                        })
                        .collect();
                    match self.cc_refusal(tx, ticket.id, e, &earlier)? {
                        None => steps.push(Step::Cc(e.clone())),
                        Some(why) => errors.push(refuse(why)),
                    }
                }
            }
        }

        if !errors.is_empty() {
            // All or nothing: a mistyped `#note` must not send an internal text to the customer.
            self.record_with_body(
                tx,
                mail,
                raw,
                ticket.id,
                "agent-refused",
                Some(agent.id),
                &text,
                received_at,
            )?;
            let lines: Vec<&str> = errors.iter().map(|e| e.line.as_str()).collect();
            let lines = lines.join(", ");
            tx.insert_event(ticket.id, now, &actor, "commands-refused", &lines)?;
            self.command_error(tx, mail, ticket.id, ticket.number, true, &errors, now)?;
            return Ok(self.outcome(
                mail,
                Action::AgentReply,
                Some(ticket.number),
                Some(format!(
                    "commands not understood ({lines}): nothing executed or sent, kept as an internal note"
                )),
            ));
        }

        let note = parsed.is_note();
        self.record_with_body(
            tx,
            mail,
            raw,
            ticket.id,
            if note { "note" } else { "agent" },
            Some(agent.id),
            &parsed.text,
            received_at,
        )?;
        let before = tx.ticket_record(ticket.id)?;
        let mut status = before.status;
        let mut closed_now = false;
        let mut done: Vec<String> = Vec::new();
        for step in steps {
            match step {
                Step::Status(s) if s == status => {}
                Step::Status(s) => {
                    tx.set_status(ticket.id, s, now)?;
                    let detail = format!("{} → {}", status.as_str(), s.as_str());
                    tx.insert_event(ticket.id, now, &actor, "status", &detail)?;
                    closed_now = s == TicketStatus::Closed;
                    status = s;
                    done.push(format!("#{}", s.as_str()));
                }
                Step::Urgency(level) => {
                    let sla = Sla::starting(
                        before.created_at,
                        level.first_response_hours,
                        level.resolution_hours,
                    );
                    tx.set_urgency(
                        ticket.id,
                        level.level,
                        sla.first_response_due,
                        sla.resolution_due,
                        now,
                    )?;
                    let detail = format!("{} → {}", before.urgency, level.level);
                    tx.insert_event(ticket.id, now, &actor, "urgency", &detail)?;
                    done.push(format!("#urgency {}", level.level));
                }
                Step::Category(cat) => {
                    tx.set_category(ticket.id, &cat.id, now)?;
                    let detail = format!("{} → {}", before.category, cat.id);
                    tx.insert_event(ticket.id, now, &actor, "category", &detail)?;
                    done.push(format!("#category {}", cat.id));
                }
                Step::Assign(user) => {
                    tx.set_assignee(ticket.id, user.id, now)?;
                    tx.insert_event(ticket.id, now, &actor, "assign", &user.email)?;
                    done.push(format!("#assign {}", user.email));
                }
                Step::Cc(email) => {
                    let uid = tx.ensure_user(
                        &NewUser {
                            email: &email.to_string(),
                            email_key: &email.key(),
                            name: "",
                            role: "customer",
                            known: false,
                        },
                        now,
                    )?;
                    tx.add_participant(ticket.id, uid)?;
                    // Only a verified agent gets here; an outsider is worth a line of history.
                    let org = before.requester.email.rsplit('@').next().unwrap_or("");
                    let detail = if email.domain().eq_ignore_ascii_case(org) {
                        email.to_string()
                    } else {
                        format!("{email} (outside the organisation's domain {org})")
                    };
                    tx.insert_event(ticket.id, now, &actor, "cc", &detail)?;
                    done.push(format!("#cc {email}"));
                }
            }
        }
        tx.touch_ticket(ticket.id, now)?;

        let mut reason = Vec::new();
        if note {
            tx.insert_event(ticket.id, now, &actor, "note", "internal note")?;
            reason.push("internal note; nothing sent".to_string());
        } else {
            let t = tx.ticket_record(ticket.id)?;
            let relay = !parsed.text.trim().is_empty() || !mail.attachments.is_empty();
            let support = self.desk.address.clone();
            let relay_side = match relay {
                true => self.customer_side(tx, &t, "agent-reply", now)?,
                false => None,
            };
            if relay && relay_side.is_none() {
                reason.push("not relayed: no recipient mail can be sent to".to_string());
            }
            if let Some(side) = relay_side {
                let out = replies::agent_reply(
                    &self.sender(&support),
                    &self.ticket_facts(&side, now),
                    &agent.name,
                    &parsed.text,
                    &self.templates,
                )?;
                self.send(
                    tx,
                    Some(t.id),
                    "agent-reply",
                    &out,
                    &mail.attachments,
                    Some((&actor, Some(agent.id))),
                    now,
                )?;
                if tx.set_first_response(t.id, now)? {
                    tx.insert_event(t.id, now, &actor, "first-response", "")?;
                }
                tx.insert_event(t.id, now, &actor, "reply", &out.recipients().join(", "))?;
                reason.push(format!("relayed to {}", out.recipients().join(", ")));
            }
            let close_side = match closed_now && self.config.support.notify_on_close {
                true => self.customer_side(tx, &t, "closed", now)?,
                false => None,
            };
            if let Some(side) = close_side {
                let out = replies::closed_notice(
                    &self.sender(&support),
                    &self.ticket_facts(&side, now),
                    &agent.name,
                    &self.templates,
                )?;
                self.send(
                    tx,
                    Some(t.id),
                    "closed",
                    &out,
                    &[],
                    Some((&support.to_string(), None)),
                    now,
                )?;
                reason.push("closing notice sent".into());
            }
        }
        if !done.is_empty() {
            reason.push(format!("commands: {}", done.join(" ")));
        }
        Ok(self.outcome(
            mail,
            Action::AgentReply,
            Some(ticket.number),
            (!reason.is_empty()).then(|| reason.join("; ")),
        ))
    }

    /// Who a mail of `kind` to the ticket's customer goes to, and how it threads; None when
    /// mail can be sent to none of them (see `deliverable_side`, which records what it left
    /// out).
    fn customer_side(
        &self,
        tx: &mut Tx,
        t: &TicketRecord,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<CustomerSide>, PipelineError> {
        let ids = tx.customer_message_ids(t.id)?;
        let cc = tx
            .collaborators(t.id)?
            .iter()
            .filter(|u| u.email.to_lowercase() != t.requester.email.to_lowercase())
            .map(party)
            .collect();
        let Some((requester, cc)) =
            self.deliverable_side(tx, t.id, kind, party(&t.requester), cc, now)?
        else {
            return Ok(None);
        };
        let access_key = AccessKey::parse(&t.access_key)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket #{} access key", t.number)))?;
        Ok(Some(CustomerSide {
            number: t.number,
            access_key,
            subject: t.subject.clone(),
            requester,
            cc,
            in_reply_to: ids.last().cloned(),
            // The first message and the latest few keep the thread without growing forever.
            references: ids
                .first()
                .into_iter()
                .chain(ids.iter().skip(1).rev().take(8).rev())
                .cloned()
                .collect(),
        }))
    }

    fn ticket_facts<'a>(&'a self, c: &'a CustomerSide, now: DateTime<Utc>) -> TicketFacts<'a> {
        TicketFacts {
            tag: &self.tag,
            number: c.number,
            access_key: &c.access_key,
            subject: &c.subject,
            requester: c.requester.clone(),
            cc: c.cc.clone(),
            in_reply_to: c.in_reply_to.clone(),
            references: c.references.clone(),
            reopen_days: self.config.support.reopen_days,
            message_id: self.ids.message_id(self.desk.domain()),
            now,
        }
    }
}

/// A ticket's customer side, owned (what [`TicketFacts`] borrows).
struct CustomerSide {
    number: i64,
    access_key: AccessKey,
    subject: String,
    requester: Party,
    cc: Vec<Party>,
    in_reply_to: Option<String>,
    references: Vec<String>,
}

fn party(u: &UserRecord) -> Party {
    Party {
        name: Some(u.name.clone()).filter(|n| !n.is_empty()),
        email: EmailAddress::parse(&u.email)
            .unwrap_or_else(|| EmailAddress::from_parts(&u.email, "invalid")),
    }
}
