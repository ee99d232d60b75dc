//! Notification digests, the shell's side (the rule is in [`crate::tickets::plan`]'s
//! `notice` module): the daemon's sweep every minute, and a sender's due digest when their
//! next mail asks for it. Digest mails leave through the same queue as every other mail.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::apply::Applier;
use super::{Pipeline, PipelineError};
use crate::store::{blocking, Store, StoreError, Tx};
use crate::tickets::notify::NotifyEvent;
use crate::tickets::plan::{plan_digest, DigestInput, HeldNotice};
use crate::tickets::TicketRecord;

impl Pipeline {
    fn digest_wait(&self) -> Duration {
        Duration::minutes(i64::from(self.policy.notification_digest_minutes))
    }

    /// Queues every digest that is due (the daemon calls this every minute), in one
    /// transaction; returns how many digest mails were queued.
    pub fn send_due_digests(&self, store: &Store) -> Result<usize, PipelineError> {
        blocking(|| {
            let now = self.clock.now();
            let mut tx = store.begin()?;
            let mut queued = 0;
            for sender in tx.senders_with_due_digests(now - self.digest_wait())? {
                queued += self.send_digest(&mut tx, &sender, now)?;
            }
            tx.commit()?;
            Ok(queued)
        })
    }

    /// Lists every held notification of `sender_key` in one digest per agent, and marks them
    /// listed; returns how many digest mails were queued.
    pub(super) fn send_digest(
        &self,
        tx: &mut Tx,
        sender_key: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, PipelineError> {
        let pending = tx.pending_notices(sender_key)?;
        if pending.is_empty() {
            return Ok(0);
        }
        let staff = self.staff(tx)?;
        let mut records: HashMap<i64, TicketRecord> = HashMap::new();
        let mut held = Vec::with_capacity(pending.len());
        for p in &pending {
            let ticket = match records.get(&p.ticket_id) {
                Some(t) => t.clone(),
                None => {
                    let t = tx.ticket_record(p.ticket_id)?;
                    records.insert(p.ticket_id, t.clone());
                    t
                }
            };
            held.push(HeldNotice {
                id: p.id,
                ticket,
                event: NotifyEvent::parse(&p.event).unwrap_or(NotifyEvent::CustomerReply),
                at: p.at,
            });
        }
        let input = DigestInput {
            sender: sender_key.to_string(),
            held,
            staff,
            now,
        };
        let (writes, mails) = plan_digest(&input, &self.context());
        let mut applier = Applier::new(self, tx, now, None);
        for w in &writes {
            applier.write(w)?;
        }
        for m in &mails {
            applier.queue(m, None)?;
        }
        let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
        tx.mark_digested(&ids, now)
            .map_err(|e: StoreError| PipelineError::from(e))?;
        Ok(mails.len())
    }
}
