//! Applying a [`Plan`] inside the caller's transaction: each [`Write`] becomes its rows, and
//! every [`Mail`] leaves through ONE function, [`Applier::queue`], whatever its kind: the hold
//! rule (safe first import: recorded as not sent), the failure rule (a mail that cannot be
//! rendered or composed is recorded as not sent, and the message that caused it is processed
//! all the same), then the outbox row, the agent-channel record and the ticket's history.

use chrono::{DateTime, Utc};
use tracing::warn;

use super::prepare::Ready;
use super::{Outcome, Pipeline, PipelineError};
use crate::mail::compose::ComposeError;
use crate::store::{
    Correction, NewMessage, NewOutbox, NewTicket, NewUser, Outbound, StoreError, Tx,
};
use crate::tickets::notify::StoredAttachment;
use crate::tickets::outbound::{Content, Mail, MailKind};
use crate::tickets::plan::{Plan, UserRef, Write};
use crate::tickets::TicketRef;

/// One plan being applied: the ids the store hands out as it goes.
pub(super) struct Applier<'a> {
    pub(super) p: &'a Pipeline,
    pub(super) tx: &'a mut Tx,
    pub(super) now: DateTime<Utc>,
    /// The message the plan is about, with its raw bytes (None: a digest sweep).
    pub(super) message: Option<(&'a Ready, &'a [u8])>,
    /// The row of the ticket the plan creates, once created.
    new_ticket: Option<i64>,
    /// The sender's user row, once provisioned.
    sender: Option<i64>,
    /// The message's attachments as stored (what notifications link to).
    linked: Vec<StoredAttachment>,
    /// The mails that did not go out, and why (added to the outcome's reason).
    not_sent: Vec<String>,
    /// Why a `#kb` draft could not be written (its mail to the agent says so).
    kb_failed: Option<String>,
}

fn missing(what: &str) -> PipelineError {
    StoreError::Corrupt(format!("the plan names {what} before it exists")).into()
}

impl<'a> Applier<'a> {
    pub(super) fn new(
        p: &'a Pipeline,
        tx: &'a mut Tx,
        now: DateTime<Utc>,
        message: Option<(&'a Ready, &'a [u8])>,
    ) -> Applier<'a> {
        Applier {
            p,
            tx,
            now,
            message,
            new_ticket: None,
            sender: None,
            linked: Vec::new(),
            not_sent: Vec::new(),
            kb_failed: None,
        }
    }

    fn ticket(&self, t: TicketRef) -> Result<i64, PipelineError> {
        match t {
            TicketRef::Existing { id, .. } => Ok(id),
            TicketRef::New { .. } => self.new_ticket.ok_or_else(|| missing("a new ticket")),
        }
    }

    fn user(&self, u: UserRef) -> Result<i64, PipelineError> {
        match u {
            UserRef::Id(id) => Ok(id),
            UserRef::Sender => self.sender.ok_or_else(|| missing("the sender as a user")),
        }
    }

    fn message(&self) -> Result<(&'a Ready, &'a [u8]), PipelineError> {
        self.message.ok_or_else(|| missing("a message"))
    }

    /// Writes everything, queues every mail, and says what happened.
    pub(super) fn apply(&mut self, plan: &Plan) -> Result<Outcome, PipelineError> {
        for w in &plan.writes {
            self.write(w)?;
        }
        for m in &plan.mails {
            self.queue(m, plan.hold.as_deref())?;
        }
        if let Some(sender) = &plan.digest_due {
            self.p.send_digest(self.tx, sender, self.now)?;
        }
        // A held mail is already in the plan's reason; a failed one is news.
        let mut reason: Vec<String> = plan.reason.iter().cloned().collect();
        if plan.hold.is_none() {
            reason.append(&mut self.not_sent);
        }
        Ok(Outcome {
            message_id: Some(plan.message_id.clone()),
            action: plan.action,
            ticket: plan.ticket.map(TicketRef::number),
            reason: (!reason.is_empty()).then(|| reason.join("; ")),
        })
    }

    pub(super) fn write(&mut self, w: &Write) -> Result<(), PipelineError> {
        let now = self.now;
        match w {
            Write::ProvisionSender { known } => {
                let (ready, _) = self.message()?;
                let s = &ready.mail.sender;
                let id = self.tx.provision_user(
                    &NewUser {
                        email: &s.email.to_string(),
                        email_key: &s.email.key(),
                        name: s.name.as_deref().unwrap_or(""),
                        role: "customer",
                        known: *known,
                    },
                    now,
                )?;
                self.sender = Some(id);
            }
            Write::MarkKnown { user } => self.tx.mark_known(*user)?,
            Write::CreateTicket(t) => {
                let requester_id = self.user(t.requester)?;
                let id = self.tx.insert_ticket(&NewTicket {
                    number: t.number,
                    access_key: t.access_key.as_str(),
                    agent_key: t.agent_key.as_str(),
                    subject: &t.subject,
                    category: &t.category,
                    urgency: t.urgency,
                    triage_reasons: &t.triage_reasons,
                    language: &t.language,
                    requester_id,
                    follows_ticket_id: t.follows,
                    created_at: t.created_at,
                    first_response_due: t.sla.first_response_due,
                    resolution_due: t.sla.resolution_due,
                })?;
                self.new_ticket = Some(id);
            }
            Write::Collaborator {
                ticket,
                email,
                name,
            } => {
                let ticket = self.ticket(*ticket)?;
                let key = email.to_lowercase();
                let uid = self.tx.ensure_user(
                    &NewUser {
                        email,
                        email_key: &key,
                        name,
                        role: "customer",
                        known: false,
                    },
                    now,
                )?;
                self.tx.add_participant(ticket, uid)?;
            }
            Write::Message {
                ticket,
                kind,
                internal,
                author,
                body,
                at,
            } => {
                let ticket_id = self.ticket(*ticket)?;
                let author_id = author.map(|a| self.user(a)).transpose()?;
                let (ready, raw) = self.message()?;
                let mail = &ready.mail;
                let row = self.tx.insert_message(&NewMessage {
                    ticket_id,
                    message_id: &mail.message_id,
                    direction: "inbound",
                    kind,
                    author: &mail.sender.email.to_string(),
                    author_id,
                    internal: *internal,
                    subject: &mail.subject,
                    body: body.as_deref().unwrap_or(&mail.body),
                    raw: Some(raw),
                    created_at: *at,
                })?;
                for a in &mail.attachments {
                    let id = self.tx.insert_attachment(row, a)?;
                    self.linked.push(StoredAttachment {
                        id,
                        filename: a.filename.clone(),
                        content_type: a.content_type.clone(),
                        size: u64::try_from(a.size).unwrap_or(u64::MAX),
                    });
                }
            }
            Write::Note {
                ticket,
                message_id,
                kind,
                body,
                at,
            } => {
                let ticket_id = self.ticket(*ticket)?;
                let (ready, _) = self.message()?;
                self.tx.insert_message(&NewMessage {
                    ticket_id,
                    message_id,
                    direction: "inbound",
                    kind,
                    author: &ready.mail.sender.email.to_string(),
                    author_id: None,
                    internal: true,
                    subject: &ready.mail.subject,
                    body,
                    raw: None,
                    created_at: *at,
                })?;
            }
            Write::Event {
                ticket,
                actor,
                kind,
                detail,
            } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.insert_event(ticket, now, actor, kind, detail)?;
            }
            Write::Status { ticket, status } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.set_status(ticket, *status, now)?;
            }
            Write::Urgency { ticket, level, sla } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.set_urgency(
                    ticket,
                    *level,
                    sla.first_response_due,
                    sla.resolution_due,
                    now,
                )?;
            }
            Write::Category { ticket, id } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.set_category(ticket, id, now)?;
            }
            Write::Assign { ticket, user } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.set_assignee(ticket, *user, now)?;
            }
            Write::FirstResponse { ticket } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.set_first_response(ticket, now)?;
            }
            Write::Touch { ticket } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.touch_ticket(ticket, now)?;
            }
            Write::AgentKey { ticket, key } => {
                let ticket = self.ticket(*ticket)?;
                self.tx.set_agent_key(ticket, key.as_str())?;
            }
            Write::Ignored { reason } => {
                let (ready, raw) = self.message()?;
                let mail = &ready.mail;
                self.tx.insert_ignored(
                    &mail.message_id,
                    &mail.sender.email.to_string(),
                    &mail.subject,
                    reason,
                    raw,
                    now,
                )?;
            }
            Write::FailOutbox { id, error } => self.tx.fail_outbox(*id, error)?,
            Write::KbDraft {
                ticket,
                file,
                markdown,
            } => {
                let dir = self.p.config.kb.drafts_dir();
                if let Err(e) = write_draft(&dir, file, markdown) {
                    let why = format!("{}: {e}", dir.join(file).display());
                    warn!(error = %why, "#kb draft not written");
                    let t = self.ticket(*ticket)?;
                    self.tx
                        .insert_event(t, self.now, "system", "kb-draft-failed", &why)?;
                    self.kb_failed = Some(e.to_string());
                }
            }
            Write::Correction {
                ticket,
                language,
                rules_category,
                rules_urgency,
                final_category,
                final_urgency,
                features,
            } => {
                let ticket_id = self.ticket(*ticket)?;
                self.tx.save_correction(&Correction {
                    ticket_id,
                    features: features.clone(),
                    language: language.clone(),
                    rules_category: rules_category.clone(),
                    rules_urgency: *rules_urgency,
                    final_category: final_category.clone(),
                    final_urgency: *final_urgency,
                    created_at: now,
                    updated_at: now,
                })?;
            }
            Write::OpenIncident {
                number,
                title,
                tickets,
            } => {
                let id = self.tx.insert_incident(*number, title, now)?;
                for t in tickets {
                    let t = self.ticket(*t)?;
                    self.tx.link_incident(t, id)?;
                }
            }
            Write::LinkIncident { incident, ticket } => {
                let t = self.ticket(*ticket)?;
                self.tx.link_incident(t, *incident)?;
            }
            Write::ResolveIncident { incident, by, text } => {
                self.tx.resolve_incident(*incident, by, text, now)?;
            }
            Write::Notice {
                ticket,
                event,
                held,
            } => {
                let ticket = self.ticket(*ticket)?;
                let (ready, _) = self.message()?;
                let key = ready.mail.sender.email.rate_key();
                self.tx
                    .record_notice(&key, ticket, event.as_str(), now, *held)?;
            }
        }
        Ok(())
    }

    /// The one way out: every mail of every kind is queued here, or recorded as not sent.
    pub(super) fn queue(&mut self, mail: &Mail, hold: Option<&str>) -> Result<(), PipelineError> {
        let kind = mail.kind.as_str();
        let ticket = mail.ticket.map(|t| self.ticket(t)).transpose()?;
        if let Some(why) = hold {
            return self.not_sent(ticket, &format!("{kind}: {why}"));
        }
        let p = self.p;
        // A draft that could not be written: its mail says why instead of where.
        let failed;
        let mail = match (&mail.content, &self.kb_failed) {
            (Content::KbDraft { .. }, Some(why)) => {
                let mut m = mail.clone();
                if let Content::KbDraft { error, .. } = &mut m.content {
                    *error = Some(why.clone());
                }
                failed = m;
                &failed
            }
            _ => mail,
        };
        let linked: &[StoredAttachment] = match mail.kind {
            MailKind::NotifyAgent if mail.with_inbound_attachments => &self.linked,
            _ => &[],
        };
        let out = match mail.render(&p.desk, &p.templates, linked) {
            Ok(out) => out,
            Err(e) => return self.not_sent(ticket, &format!("{kind}: cannot be rendered: {e}")),
        };
        let attached = match (mail.kind, self.message) {
            (MailKind::NotifyAgent, _) | (_, None) => &[][..],
            (_, Some((ready, _))) if mail.with_inbound_attachments => &ready.mail.attachments[..],
            _ => &[][..],
        };
        let bytes = match out.to_bytes_with(attached) {
            Ok(bytes) => bytes,
            Err(e @ (ComposeError::Address(_) | ComposeError::Build(_))) => {
                return self.not_sent(ticket, &format!("{kind}: cannot be composed: {e}"))
            }
        };
        // With its ticket: remembered as mail to agents, and on the ticket's history.
        let history = mail.history.as_ref().map(|author| Outbound {
            author: &author.email,
            author_id: author.user_id,
            body: &out.body,
        });
        self.tx.queue_mail(
            &NewOutbox {
                ticket_id: ticket,
                kind,
                message_id: &out.message_id,
                recipients: &out.envelope(),
                subject: &out.subject,
                raw: &bytes,
                created_at: self.now,
            },
            mail.to_agents,
            history.as_ref(),
        )?;
        Ok(())
    }

    /// The mails queued through [`Applier::queue`] that did not go out, and why.
    pub(super) fn not_sent_reasons(&self) -> &[String] {
        &self.not_sent
    }

    /// A mail that does not go out: recorded in its ticket's history (or the log, for a mail
    /// that belongs to no ticket).
    fn not_sent(&mut self, ticket: Option<i64>, detail: &str) -> Result<(), PipelineError> {
        self.not_sent.push(format!("not sent: {detail}"));
        match ticket {
            Some(t) => self
                .tx
                .insert_event(t, self.now, "system", "not-sent", detail)?,
            None => warn!(detail, "mail not sent"),
        }
        Ok(())
    }
}

/// Writes a `#kb` draft as `dir/file` (the directory made when missing), through a temporary
/// file renamed into place: an admin never sees half a draft. A file of the same name (the
/// same title on the same ticket) is replaced by the newer answer.
fn write_draft(dir: &std::path::Path, file: &str, markdown: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, markdown)?;
    std::fs::rename(&tmp, dir.join(file))
}
