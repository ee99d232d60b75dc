//! Cc collaborators (issue 9, findings 4 and 5): who may be added to a ticket, and who a mail
//! to the customer side may go to. Every address must be one the mail composer can write
//! (`compose::deliverable`, lettre's rules), checked when it is stored and again when mail
//! is composed (for rows stored before the check); a ticket keeps at most
//! `limits.max_collaborators`. What is left out is recorded in the ticket's history.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::Pipeline;
use crate::mail::address::EmailAddress;
use crate::mail::compose::{deliverable, Party};
use crate::mail::parse::InboundMail;
use crate::store::{NewUser, StoreError, Tx};

/// How many left-out addresses a history note names (it always gives the count).
const NAMED_IN_NOTE: usize = 5;

/// `n` addresses, the first few named.
fn some_of(n: usize, named: &[String]) -> String {
    let shown = named.join(", ");
    if n > named.len() {
        format!("{shown}, … ({n} in all)")
    } else {
        shown
    }
}

impl Pipeline {
    fn max_collaborators(&self) -> usize {
        usize::try_from(self.config.limits.max_collaborators).unwrap_or(usize::MAX)
    }

    /// Adds a new ticket's To and Cc addresses as collaborators: not our own addresses nor the
    /// sender; only addresses mail can be sent to (the others are skipped, `cc-skipped`); at
    /// most `limits.max_collaborators` (the rest are dropped, `cc-dropped`). Past the limit
    /// addresses are only counted: 10,000 Cc cost no user rows.
    pub(super) fn add_collaborators(
        &self,
        tx: &mut Tx,
        ticket_id: i64,
        mail: &InboundMail,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let own = self.desk.own.clone();
        let max = self.max_collaborators();
        let mut seen: HashSet<String> = HashSet::new();
        let mut undeliverable: Vec<String> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        let mut dropped_count = 0usize;
        for cc in mail.to.iter().chain(&mail.cc) {
            let is_ours = own
                .iter()
                .any(|o| *o == cc.email || cc.email.split_detail().is_some_and(|(b, _)| b == *o));
            if is_ours || cc.email == mail.sender.email {
                continue;
            }
            let key = cc.email.key();
            if seen.contains(&key) {
                continue;
            }
            if seen.len() >= max {
                dropped_count += 1;
                if dropped.len() < NAMED_IN_NOTE {
                    dropped.push(cc.email.to_string());
                }
                continue;
            }
            if !deliverable(&cc.email) {
                undeliverable.push(cc.email.to_string());
                continue;
            }
            seen.insert(key.clone());
            let uid = tx.ensure_user(
                &NewUser {
                    email: &cc.email.to_string(),
                    email_key: &key,
                    name: cc.name.as_deref().unwrap_or(""),
                    role: "customer",
                    known: false,
                },
                now,
            )?;
            tx.add_participant(ticket_id, uid)?;
        }
        if !undeliverable.is_empty() {
            let n = undeliverable.len();
            undeliverable.truncate(NAMED_IN_NOTE);
            let detail = format!(
                "{n} To/Cc address{} skipped, mail cannot be sent to {}: {}",
                if n == 1 { "" } else { "es" },
                if n == 1 { "it" } else { "them" },
                some_of(n, &undeliverable)
            );
            tx.insert_event(ticket_id, now, "system", "cc-skipped", &detail)?;
        }
        if dropped_count > 0 {
            let detail = format!(
                "{dropped_count} To/Cc address{} dropped: a ticket keeps at most {max} \
                 collaborators (limits.max_collaborators); dropped: {}",
                if dropped_count == 1 { "" } else { "es" },
                some_of(dropped_count, &dropped)
            );
            tx.insert_event(ticket_id, now, "system", "cc-dropped", &detail)?;
        }
        Ok(())
    }

    /// Why an agent's `#cc EMAIL` cannot be done, if it cannot: mail cannot be sent to the
    /// address, or the ticket is full (its collaborators plus the `#cc`s before this one in
    /// the same reply reach `limits.max_collaborators`). The agent is told, like any refused
    /// command.
    pub(super) fn cc_refusal(
        &self,
        tx: &mut Tx,
        ticket_id: i64,
        email: &EmailAddress,
        earlier: &[&EmailAddress],
    ) -> Result<Option<String>, StoreError> {
        if !deliverable(email) {
            return Ok(Some(format!("mail cannot be sent to {email}")));
        }
        let current = tx.collaborators(ticket_id)?;
        let key = email.key();
        if current.iter().any(|u| u.email.to_lowercase() == key) {
            return Ok(None);
        }
        let mut planned: HashSet<String> = earlier.iter().map(|e| e.key()).collect();
        planned.retain(|k| !current.iter().any(|u| u.email.to_lowercase() == *k));
        let max = self.max_collaborators();
        if current.len() + planned.len() >= max {
            return Ok(Some(format!(
                "the ticket has {} collaborators already, the most limits.max_collaborators allows",
                current.len() + planned.len()
            )));
        }
        Ok(None)
    }

    /// The customer side of a mail of `kind` on ticket `ticket_id`: the requester and the
    /// collaborators that mail can be sent to, at most `limits.max_collaborators` of the
    /// latter. Addresses stored before these checks existed are left out here, never made a
    /// reason for the whole mail to fail; what was left out is recorded (`recipient-skipped`).
    /// Without a deliverable requester the first deliverable collaborator takes the To.
    /// None when nobody is left.
    pub(super) fn deliverable_side(
        &self,
        tx: &mut Tx,
        ticket_id: i64,
        kind: &str,
        requester: Party,
        collaborators: Vec<Party>,
        now: DateTime<Utc>,
    ) -> Result<Option<(Party, Vec<Party>)>, StoreError> {
        let max = self.max_collaborators();
        let mut skipped: Vec<String> = Vec::new();
        let mut skipped_count = 0usize;
        let mut over = 0usize;
        let mut note = |p: &Party| {
            skipped_count += 1;
            if skipped.len() < NAMED_IN_NOTE {
                skipped.push(p.email.to_string());
            }
        };
        let mut cc = Vec::new();
        for p in collaborators {
            if !deliverable(&p.email) {
                note(&p);
            } else if cc.len() >= max {
                over += 1;
            } else {
                cc.push(p);
            }
        }
        let to = if deliverable(&requester.email) {
            Some(requester)
        } else {
            note(&requester);
            (!cc.is_empty()).then(|| cc.remove(0))
        };
        let mut notes = Vec::new();
        if skipped_count > 0 {
            notes.push(format!(
                "{kind}: mail cannot be sent to {}; left out",
                some_of(skipped_count, &skipped)
            ));
        }
        if over > 0 {
            notes.push(format!(
                "{kind}: {over} collaborators over limits.max_collaborators = {max} left out"
            ));
        }
        if to.is_none() {
            notes.push(format!(
                "{kind}: not sent, no recipient mail can be sent to"
            ));
        }
        for detail in notes {
            tx.insert_event(ticket_id, now, "system", "recipient-skipped", &detail)?;
        }
        Ok(to.map(|to| (to, cc)))
    }
}
