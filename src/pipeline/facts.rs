//! The one read step: what the store knows that bears on one prepared message, gathered
//! into [`Facts`] before anything is decided. First the threading lookups (a bounded number:
//! the keys were capped in `prepare`), then, once the pure [`decide`] has said which ticket the
//! message concerns, that ticket in full and whatever the plan for it needs (the staff to
//! notify, the agent and the users `#assign` names, the next ticket number).

use chrono::{DateTime, Duration, Utc};

use super::prepare::{self, Prepared, Ready};
use super::Pipeline;
use crate::kb::suggest;
use crate::mail::address::EmailAddress;
use crate::mail::compose::deliverable;
use crate::mail::loops::Origin;
use crate::store::{StoreError, Tx};
use crate::tickets::commands::{self, Assignee, Command};
use crate::tickets::incident::LinkedIncident;
use crate::tickets::notify::StaffMember;
use crate::tickets::outbound::MailKind;
use crate::tickets::plan::{Facts, KbSource, NoticeState};
use crate::tickets::{decide, similar, Decision, Lookup, TicketSummary, UserRecord};

/// How many ranked articles a suggestion chooses from (see [`crate::kb::suggest::select`]).
const SUGGESTION_CANDIDATES: u32 = 10;

impl Pipeline {
    /// Everything [`crate::tickets::plan::plan`] needs to know about `ready`.
    pub(super) fn gather<'r>(
        &self,
        tx: &mut Tx,
        ready: &'r Ready,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Facts<'r>, StoreError> {
        let lookup = self.lookup(tx, ready, now)?;
        let decision = decide(&ready.mail, &ready.origin, &lookup, &self.policy, now);
        let mut f = Facts {
            mail: &ready.mail,
            origin: &ready.origin,
            text: &ready.text,
            class: &ready.class,
            lookup,
            decision,
            received_at,
            now,
            ticket: None,
            collaborators: Vec::new(),
            customer_message_ids: Vec::new(),
            next_number: 0,
            staff: Vec::new(),
            notices: NoticeState::default(),
            agent: None,
            assignable: Vec::new(),
            first_message: None,
            suggestions: Vec::new(),
            kb_source: None,
            incident_candidates: Vec::new(),
            next_incident_number: 0,
            incident: None,
        };
        let (named, opens, notifies) = scope(&f.decision);
        if let Some(t) = named {
            f.ticket = Some(tx.ticket_record(t.id)?);
        }
        if opens {
            f.next_number = tx.next_ticket_number()?;
            let incidents = &self.policy.incidents;
            if incidents.applies_to(ready.class.urgency) {
                let since = received_at - incidents.window();
                f.incident_candidates = tx.incident_candidates(incidents.max_level, since)?;
                f.next_incident_number = tx.next_incident_number()?;
            }
        }
        if acknowledges_new_ticket(&f.decision) {
            f.suggestions = self.suggestions(tx, ready)?;
        }
        if notifies && self.policy.notify_agents {
            f.staff = self.staff(tx)?;
            if self.policy.notifications_per_sender_per_hour > 0 {
                let (sent, oldest_held) = tx.notice_state(
                    &ready.mail.sender.email.rate_key(),
                    now - Duration::hours(1),
                )?;
                f.notices = NoticeState { sent, oldest_held };
            }
        }
        if let Decision::AgentReply { ticket, .. } | Decision::UnverifiedAgentMail { ticket, .. } =
            &f.decision
        {
            f.agent = tx.user_record(&ready.mail.sender.email.key())?;
            if matches!(f.decision, Decision::AgentReply { .. }) {
                f.collaborators = tx.collaborators(ticket.id)?;
                f.customer_message_ids = tx.customer_message_ids(ticket.id)?;
                for e in assigned(&ready.text) {
                    if let Some(u) = tx.user_record(&e.key())? {
                        f.assignable.push((e.key(), u));
                    }
                }
                if corrects_triage(&ready.text) {
                    f.first_message = tx.first_customer_message(ticket.id)?;
                }
                if drafts_article(&ready.text) {
                    let mut names: Vec<String> = f
                        .collaborators
                        .iter()
                        .flat_map(|u| [u.name.clone(), u.email.clone()])
                        .collect();
                    for u in tx.active_staff()? {
                        names.extend([u.name, u.email]);
                    }
                    f.kb_source = Some(KbSource {
                        last_answer: tx.last_public_answer(ticket.id)?,
                        names,
                    });
                }
                if resolves_incident(&ready.text) {
                    if let Some((incident, status, ids)) = tx.incident_of(ticket.id)? {
                        let mut tickets = Vec::with_capacity(ids.len());
                        for id in ids {
                            tickets.push(tx.ticket_record(id)?);
                        }
                        f.incident = Some(LinkedIncident {
                            incident,
                            status,
                            tickets,
                        });
                    }
                }
            }
        }
        Ok(f)
    }

    /// Ranks the Help Center for the messages of a batch in one go ([`Tx::kb_prefetch`]),
    /// before any is decided: [`Pipeline::suggestions`] of those that open a ticket then
    /// reads the answer instead of asking. A message that names a ticket is most likely a
    /// reply and is left out; should it open a ticket after all, it asks on its own.
    pub(super) fn prefetch_suggestions(
        &self,
        tx: &mut Tx,
        prepared: &[Prepared],
    ) -> Result<(), StoreError> {
        let terms: Vec<Vec<String>> = prepared
            .iter()
            .filter_map(|p| match p {
                Prepared::Ready(ready) if !ready.names_a_ticket() => self.suggestion_terms(ready),
                _ => None,
            })
            .collect();
        tx.kb_prefetch(&terms, SUGGESTION_CANDIDATES)
    }

    /// The words a message's suggestions are ranked on; None when there is nothing to rank
    /// (suggestions turned off, or no word left).
    fn suggestion_terms(&self, ready: &Ready) -> Option<Vec<String>> {
        if self.config.kb.max_suggestions == 0 {
            return None;
        }
        Some(suggest::mail_terms(&ready.mail.subject, &ready.text)).filter(|w| !w.is_empty())
    }

    /// The Help Center articles a new ticket's acknowledgement lists (see [`crate::kb::suggest`]).
    fn suggestions(
        &self,
        tx: &mut Tx,
        ready: &Ready,
    ) -> Result<Vec<crate::kb::Suggestion>, StoreError> {
        let kb = &self.config.kb;
        let Some(words) = self.suggestion_terms(ready) else {
            return Ok(Vec::new());
        };
        let candidates = tx.kb_candidates(&words, SUGGESTION_CANDIDATES)?;
        let tuning = suggest::Tuning {
            threshold: kb.suggest_threshold,
            min_words: usize::try_from(kb.suggest_min_words).unwrap_or(usize::MAX),
            max: usize::try_from(kb.max_suggestions).unwrap_or(usize::MAX),
        };
        let (pass, _) = suggest::select(candidates, tuning, &ready.class.language);
        Ok(pass
            .into_iter()
            .map(|c| crate::kb::Suggestion {
                link: self.desk.help_link(&c.slug),
                slug: c.slug,
                title: c.title,
                score: c.score,
            })
            .collect())
    }

    /// The active agents and admins that mail can be sent to, as routing sees them.
    pub(super) fn staff(&self, tx: &mut Tx) -> Result<Vec<StaffMember>, StoreError> {
        Ok(tx
            .active_staff()?
            .iter()
            .filter_map(|u| self.staff_member(u))
            .collect())
    }

    /// An active agent or admin as routing sees them; None for an address mail cannot be
    /// sent to (one bad staff address must not fail every notification).
    fn staff_member(&self, u: &UserRecord) -> Option<StaffMember> {
        let email = EmailAddress::parse(&u.email).filter(deliverable)?;
        let categories = self
            .staff_categories
            .iter()
            .find(|(e, _)| *e == email)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        Some(StaffMember {
            email,
            name: u.name.clone(),
            categories,
        })
    }

    /// The threading lookups: a bounded number, the keys for which were extracted (and
    /// capped) in [`prepare`].
    fn lookup(&self, tx: &mut Tx, ready: &Ready, now: DateTime<Utc>) -> Result<Lookup, StoreError> {
        let mail = &ready.mail;
        // Automatic answers are counted per address without its +detail (issue 9).
        let (duplicate, sender, recent_acks) = tx.first_look(
            &mail.message_id,
            &mail.sender.email.key(),
            &mail.sender.email.rate_key(),
            now - Duration::hours(1),
            MailKind::AUTOMATIC_ANSWERS.map(MailKind::as_str),
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
        let threads = l.by_reference.is_some()
            || l.by_access_key.is_some()
            || l.by_agent_key.is_some()
            || !l.by_tag.is_empty();
        let minutes = self.policy.near_duplicate_minutes;
        if let (false, true, Some(u)) = (threads, minutes > 0, &l.sender) {
            if !u.role.is_staff() {
                let since = now - Duration::minutes(i64::from(minutes));
                let subject = similar::normalised_subject(&mail.subject);
                let body = similar::normalised(&mail.body);
                l.near_duplicate = tx
                    .messages_by_author_since(u.id, since)?
                    .into_iter()
                    .find(|m| {
                        m.message_id != mail.message_id
                            && similar::normalised_subject(&m.subject) == subject
                            && similar::normalised(&m.body) == body
                    })
                    .map(|m| (m.ticket, m.message_id));
            }
        }
        Ok(l)
    }
}

/// What a decision needs loaded: the existing ticket it names in full, whether it opens a
/// ticket, whether it may notify agents.
fn scope(d: &Decision) -> (Option<&TicketSummary>, bool, bool) {
    match d {
        Decision::Reply { ticket, .. }
        | Decision::AgentReply { ticket, .. }
        | Decision::UnverifiedAgentMail { ticket, .. } => (Some(ticket), false, true),
        Decision::NonParticipant { ticket, then } => {
            let (_, opens, _) = scope(then);
            (Some(ticket), opens, true)
        }
        Decision::NearDuplicate { ticket, .. } => (Some(ticket), false, false),
        Decision::NewTicket { .. } => (None, true, true),
        Decision::Duplicate
        | Decision::Ignored { .. }
        | Decision::Bounce { .. }
        | Decision::AutoReplyNote { .. }
        | Decision::Rejected { .. } => (None, false, false),
    }
}

/// Whether the decision opens a ticket and acknowledges it (its ack may suggest articles).
fn acknowledges_new_ticket(d: &Decision) -> bool {
    match d {
        Decision::NewTicket { ack, .. } => ack.is_ok(),
        Decision::NonParticipant { then, .. } => acknowledges_new_ticket(then),
        _ => false,
    }
}

/// Whether an agent's reply asks for a Help Center draft (`#kb`).
fn drafts_article(text: &str) -> bool {
    commands::parse(text)
        .commands
        .iter()
        .any(|c| matches!(c, Command::Kb(_)))
}

/// Whether an agent's reply changes what triage said (`#category`, `#urgency`).
fn corrects_triage(text: &str) -> bool {
    commands::parse(text)
        .commands
        .iter()
        .any(|c| matches!(c, Command::Category(_) | Command::Urgency(_)))
}

/// Whether an agent's reply has an `#incident` command.
fn resolves_incident(text: &str) -> bool {
    commands::parse(text)
        .commands
        .iter()
        .any(|c| matches!(c, Command::IncidentResolve(_)))
}

/// The addresses an agent's `#assign` commands name.
fn assigned(text: &str) -> Vec<EmailAddress> {
    commands::parse(text)
        .commands
        .into_iter()
        .filter_map(|c| match c {
            Command::Assign(Assignee::Email(e)) => Some(e),
            _ => None,
        })
        .collect()
}
