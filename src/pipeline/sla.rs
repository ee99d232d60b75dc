//! The SLA check, the shell's side (the rule is in [`crate::tickets::sla`], the mails in
//! [`crate::tickets::plan::plan_sla_alert`]): the daemon runs it every `sla.check_seconds`,
//! `supportd sla check` once. Each alert sent is a row of `sla_alerts` written in the same
//! transaction as its outbox rows, so a restart never sends one twice.

use super::apply::Applier;
use super::{Pipeline, PipelineError};
use crate::store::{blocking, Store};
use crate::tickets::plan::plan_sla_alert;
use crate::tickets::sla::{due_alerts, AlertPolicy};

impl Pipeline {
    /// Queues every reminder and escalation that is due, in one transaction; returns how
    /// many mails were queued.
    pub fn send_sla_alerts(&self, store: &Store) -> Result<usize, PipelineError> {
        blocking(|| {
            let now = self.clock.now();
            let mut tx = store.begin()?;
            let policy = AlertPolicy {
                remind_at_percent: self.config.sla.remind_at_percent,
                escalate: self.config.sla.supervisor.is_some(),
                max_late: chrono::Duration::hours(AlertPolicy::MAX_LATE_HOURS),
            };
            let due = due_alerts(&tx.running_clocks()?, &tx.sent_sla_alerts()?, policy, now);
            if due.is_empty() {
                return Ok(0);
            }
            let staff = self.staff(&mut tx)?;
            let mut queued = 0;
            for alert in &due {
                let record = tx.ticket_record(alert.ticket_id)?;
                let (writes, mails) = plan_sla_alert(
                    alert,
                    &record,
                    &staff,
                    self.config.sla.supervisor.as_ref(),
                    &self.context(),
                    now,
                );
                let mut applier = Applier::new(self, &mut tx, now, None);
                for w in &writes {
                    applier.write(w)?;
                }
                for m in &mails {
                    applier.queue(m, None)?;
                }
                queued += mails.len();
                tx.record_sla_alert(alert, now)?;
            }
            tx.commit()?;
            Ok(queued)
        })
    }
}
