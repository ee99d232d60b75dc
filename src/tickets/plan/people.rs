//! Cc collaborators (issue 9, findings 4 and 5): who may be added to a ticket, and who a mail
//! to the customer side may go to. Every address must be one the mail composer can write
//! (`compose::deliverable`, lettre's rules), checked when it is stored and again when mail
//! is composed (for rows stored before the check); a ticket keeps at most
//! `limits.max_collaborators`. What is left out is recorded in the ticket's history.

use std::collections::HashSet;

use super::notice::party;
use super::{Builder, Write};
use crate::mail::address::EmailAddress;
use crate::mail::compose::{deliverable, Party};
use crate::tickets::replies::CustomerFacts;
use crate::tickets::{TicketRecord, TicketRef};

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

impl Builder<'_, '_> {
    /// A new ticket's To and Cc addresses as collaborators: not our own addresses nor the
    /// sender; only addresses mail can be sent to (the others are skipped, `cc-skipped`); at
    /// most `limits.max_collaborators` (the rest are dropped, `cc-dropped`). Past the limit
    /// addresses are only counted: 10,000 Cc cost no user rows.
    pub(super) fn collaborators(&mut self, ticket: TicketRef) {
        let (f, c) = (self.f, self.c);
        let max = c.policy.max_collaborators;
        let mut seen: HashSet<String> = HashSet::new();
        let mut undeliverable: Vec<String> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        let mut dropped_count = 0usize;
        for cc in f.mail.to.iter().chain(&f.mail.cc) {
            if c.desk.is_ours(&cc.email) || cc.email == f.mail.sender.email {
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
            seen.insert(key);
            self.write(Write::Collaborator {
                ticket,
                email: cc.email.to_string(),
                name: cc.name.clone().unwrap_or_default(),
            });
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
            self.event(ticket, "system", "cc-skipped", detail);
        }
        if dropped_count > 0 {
            let detail = format!(
                "{dropped_count} To/Cc address{} dropped: a ticket keeps at most {max} \
                 collaborators (limits.max_collaborators); dropped: {}",
                if dropped_count == 1 { "" } else { "es" },
                some_of(dropped_count, &dropped)
            );
            self.event(ticket, "system", "cc-dropped", detail);
        }
    }

    /// Why an agent's `#cc EMAIL` cannot be done, if it cannot: mail cannot be sent to the
    /// address, or the ticket is full (its collaborators plus the `#cc`s before this one in
    /// the same reply reach `limits.max_collaborators`).
    pub(super) fn cc_refusal(
        &self,
        email: &EmailAddress,
        earlier: &[&EmailAddress],
    ) -> Option<String> {
        if !deliverable(email) {
            return Some(format!("mail cannot be sent to {email}"));
        }
        let current = &self.f.collaborators;
        let key = email.key();
        let is_current = |k: &str| current.iter().any(|u| u.email.to_lowercase() == k);
        if is_current(&key) {
            return None;
        }
        let mut planned: HashSet<String> = earlier.iter().map(|e| e.key()).collect();
        planned.retain(|k| !is_current(k));
        if current.len() + planned.len() >= self.c.policy.max_collaborators {
            return Some(format!(
                "the ticket has {} collaborators already, the most limits.max_collaborators allows",
                current.len() + planned.len()
            ));
        }
        None
    }

    /// The customer side of a mail of `kind` on ticket `t`, with `added` (this reply's
    /// `#cc`s) among the collaborators: the requester and the collaborators mail can be sent
    /// to, at most `limits.max_collaborators` of the latter. Addresses stored before these
    /// checks existed are left out here, never made a reason for the whole mail to fail;
    /// what was left out is recorded (`recipient-skipped`). Without a deliverable requester
    /// the first deliverable collaborator takes the To. None when nobody is left.
    pub(super) fn customer_side(
        &mut self,
        ticket: TicketRef,
        t: &TicketRecord,
        added: &[EmailAddress],
        kind: &str,
    ) -> Option<CustomerFacts> {
        let f = self.f;
        let max = self.c.policy.max_collaborators;
        let requester_key = t.requester.email.to_lowercase();
        let mut collaborators: Vec<Party> = f
            .collaborators
            .iter()
            .filter(|u| u.email.to_lowercase() != requester_key)
            .map(party)
            .collect();
        for e in added {
            if e.key() != requester_key && !collaborators.iter().any(|p| p.email == *e) {
                collaborators.push(Party {
                    name: None,
                    email: e.clone(),
                });
            }
        }
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
        let requester = party(&t.requester);
        let to = if deliverable(&requester.email) {
            Some(requester)
        } else {
            note(&requester);
            (!cc.is_empty()).then(|| cc.remove(0))
        };
        if skipped_count > 0 {
            let detail = format!(
                "{kind}: mail cannot be sent to {}; left out",
                some_of(skipped_count, &skipped)
            );
            self.event(ticket, "system", "recipient-skipped", detail);
        }
        if over > 0 {
            let detail = format!(
                "{kind}: {over} collaborators over limits.max_collaborators = {max} left out"
            );
            self.event(ticket, "system", "recipient-skipped", detail);
        }
        let Some(requester) = to else {
            let detail = format!("{kind}: not sent, no recipient mail can be sent to");
            self.event(ticket, "system", "recipient-skipped", detail);
            return None;
        };
        let ids = &f.customer_message_ids;
        Some(CustomerFacts {
            number: t.number,
            access_key: t.access_key.clone(),
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
            reopen_days: self.c.policy.reopen_days,
            language: t.language.clone(),
        })
    }
}
