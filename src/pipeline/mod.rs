//! The one orchestrator. Data goes one way: source → prepare → gather → decide and plan →
//! apply → outbox.
//!
//! - [`prepare`]: parse, HTML to text, quotes, triage — before any transaction, on a worker
//!   thread, within a time budget;
//! - [`facts`]: the one read step, what the store knows about the message;
//! - [`crate::tickets::plan`]: the pure core says everything that happens, as a [`Plan`];
//! - [`apply`]: the plan's rows, and every mail through one queue function.
//!
//! Each message is all or nothing: a savepoint in its batch's transaction (on PostgreSQL,
//! first tried without savepoints, and redone with them when a message fails). `supportd ingest`
//! calls [`Pipeline::ingest_batch`], IMAP polling its two halves
//! ([`Pipeline::prepare_batch`], [`Pipeline::commit_batch`]); the caller acknowledges the
//! source (IMAP flag/move, MTA exit 0) only after the commit returned Ok.
//! `supportd ingest --dry-run` prints the plan instead ([`Pipeline::dry_run`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, info_span, warn};

use crate::clock::{Clock, IdSource};
use crate::config::Config;
use crate::mail::address::EmailAddress;
use crate::store::{blocking, Store, StoreError, Tx};
use crate::templates::{TemplateError, Templates};
use crate::tickets::desk::Desk;
use crate::tickets::plan::{self, Context, Plan};
use crate::tickets::Policy;
use crate::triage::Rules;

pub use crate::tickets::plan::Action;

mod apply;
mod digest;
mod facts;
pub mod prepare;
mod signin;
mod sla;
pub use prepare::{Prepared, Ready};
pub use signin::{SignInAsk, SignInRequest};

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
    /// What decisions need of the config, built once (see [`crate::setup`]).
    pub policy: Policy,
    /// `[[agent]] categories`: which categories each agent is notified about.
    pub staff_categories: Vec<(EmailAddress, Vec<String>)>,
    /// Who we are: built once from the config (see [`crate::setup`]).
    pub desk: Desk,
    /// Shared with the preparation threads (see [`prepare`]).
    pub rules: Arc<Rules>,
    pub templates: Templates,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
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

impl Source<'static> {
    /// A message given to `supportd ingest`.
    pub fn ingest() -> Source<'static> {
        Source {
            name: "ingest",
            uid: None,
            received_at: None,
        }
    }
}

impl Pipeline {
    /// Runs several raw messages through the pipeline: [`Pipeline::prepare_batch`], then
    /// [`Pipeline::commit_batch`]. Outcomes are in input order.
    pub fn ingest_batch(
        &self,
        store: &Store,
        items: &[(&[u8], Source<'_>)],
    ) -> Result<Vec<Outcome>, PipelineError> {
        let started = std::time::Instant::now();
        let prepared = self.prepare_batch(items, &|| {})?;
        let outcomes = self.commit_batch(store, items, &prepared)?;
        count_ingested(&outcomes, started);
        Ok(outcomes)
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
            if tx.is_postgres() && prepared.len() > 1 {
                // Never worth the batch: on any failure (a statement timeout included) each
                // new ticket ranks its own, as one alone does. A database that is gone fails
                // the restart, and the batch waits for it as before.
                if let Err(e) = self.prefetch_suggestions(&mut tx, prepared) {
                    warn!(error = %e, "ranking the Help Center for the whole batch failed");
                    tx.restart()?;
                }
            }
            // On PostgreSQL a savepoint costs two round trips per message: the batch is
            // first tried without them. Should any message fail (or conflict with another
            // replica's commit), the whole try is rolled back and the batch done again, each
            // message in its savepoint. SQLite's savepoints cost nothing worth saving.
            let tried = if tx.is_postgres() {
                match self.store_all(&mut tx, items, prepared, Guard::None) {
                    Ok(done) => Some(done),
                    Err(e) if e.is_transient() && !is_conflict(&e) => return Err(e),
                    Err(_) => {
                        tx.restart()?;
                        None
                    }
                }
            } else {
                None
            };
            let done = match tried {
                Some(done) => done,
                None => self.store_all(&mut tx, items, prepared, Guard::Savepoint)?,
            };
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

    /// Every message of a batch in `tx` (see [`Pipeline::commit_batch`]): with [`Guard::None`]
    /// the first error of any message ends the try; with [`Guard::Savepoint`] a message that
    /// fails for any reason but an unavailable database is quarantined.
    fn store_all(
        &self,
        tx: &mut Tx,
        items: &[(&[u8], Source<'_>)],
        prepared: &[Prepared],
        guard: Guard,
    ) -> Result<Vec<(tracing::Span, Outcome)>, PipelineError> {
        let mut done = Vec::with_capacity(items.len());
        for (&(raw, source), prepared) in items.iter().zip(prepared) {
            let span = message_span(source);
            let now = self.clock.now();
            let outcome =
                match span.in_scope(|| self.process(tx, prepared, raw, source, now, guard)) {
                    Ok(outcome) => outcome,
                    Err(e) if e.is_transient() || guard == Guard::None => return Err(e),
                    Err(e) => {
                        let reason = format!("could not be processed: {e}");
                        self.quarantine(tx, raw, &reason, source, now)?
                    }
                };
            span.record("message_id", outcome.message_id.as_deref().unwrap_or(""));
            if let Some(t) = outcome.ticket {
                span.record("ticket", t);
            }
            done.push((span, outcome));
        }
        Ok(done)
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

    /// One message. With [`Guard::Savepoint`], inside its own savepoint of the batch
    /// transaction `tx`: on an error the savepoint is rolled back (the rest of the batch
    /// stays) and the error returned. With [`Guard::None`], straight in `tx` (an error leaves
    /// the transaction to be rolled back whole).
    fn process(
        &self,
        tx: &mut Tx,
        prepared: &Prepared,
        raw: &[u8],
        source: Source<'_>,
        now: DateTime<Utc>,
        guard: Guard,
    ) -> Result<Outcome, PipelineError> {
        let ready = match prepared {
            Prepared::Ready(ready) => ready,
            Prepared::Aside(reason) => return Ok(self.quarantine(tx, raw, reason, source, now)?),
        };
        let received_at = source.received_at.unwrap_or(now);
        // The rows the store held back (PostgreSQL, see store::deferred) are written before
        // the message counts as applied, so that an error in them is this message's.
        let apply = |tx: &mut Tx| {
            let outcome = self
                .gather(tx, ready, received_at, now)
                .map_err(PipelineError::from)
                .and_then(|facts| {
                    let plan = plan::plan(&facts, &self.context());
                    apply::Applier::new(self, tx, now, Some((ready, raw))).apply(&plan)
                })?;
            tx.flush()?;
            Ok(outcome)
        };
        if guard == Guard::None {
            return apply(tx);
        }
        // On PostgreSQL another replica may have committed the same message (a takeover
        // mid-batch, the same mail in two mailboxes) while this transaction ran: its unique
        // Message-ID then conflicts. The message is looked at once more, after the other
        // commit, and is seen as the duplicate it is. A conflict on the second look is in
        // the data itself.
        let looks = if tx.is_postgres() { 2 } else { 1 };
        for look in 1..=looks {
            tx.savepoint()?;
            match apply(tx) {
                Ok(outcome) => {
                    tx.release_savepoint()?;
                    return Ok(outcome);
                }
                Err(PipelineError::Store(StoreError::Conflict)) if look < looks => {
                    tx.rollback_to_savepoint()?;
                }
                // A unique constraint violated inside our own write lock is in the data itself
                // (no other writer ran meanwhile): retrying later would stall the mailbox on
                // this message, so keep it aside.
                Err(PipelineError::Store(StoreError::Conflict)) => {
                    tx.rollback_to_savepoint()?;
                    let reason = "it conflicts with a stored row (unique constraint)";
                    return Ok(self.quarantine(tx, raw, reason, source, now)?);
                }
                Err(e) => {
                    tx.rollback_to_savepoint()?;
                    return Err(e);
                }
            }
        }
        Err(StoreError::Corrupt("no look at the message was made".into()).into())
    }

    /// What [`plan::plan`] needs besides the facts.
    pub fn context(&self) -> Context<'_> {
        Context {
            desk: &self.desk,
            policy: &self.policy,
            rules: &self.rules,
            ids: self.ids.as_ref(),
        }
    }

    /// What would happen to `raw`, without writing anything: its [`Plan`], or why it would be
    /// quarantined (`supportd ingest --dry-run`). Reads in a transaction that is rolled back.
    pub fn dry_run(
        &self,
        store: &Store,
        raw: &[u8],
    ) -> Result<Result<Plan, String>, PipelineError> {
        let prepared = self.prepare_batch(&[(raw, Source::ingest())], &|| {})?;
        let ready = match prepared.into_iter().next() {
            Some(Prepared::Ready(ready)) => ready,
            // The reason `ingest` would quarantine it with (too large, over its budget).
            Some(Prepared::Aside(reason)) => return Ok(Err(reason)),
            None => return Ok(Err("it cannot be parsed or processed".into())),
        };
        blocking(|| {
            let mut tx = store.read()?;
            let now = self.clock.now();
            let facts = self.gather(&mut tx, &ready, now, now)?;
            Ok(Ok(plan::plan(&facts, &self.context())))
        })
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
}

/// How the messages of a batch are kept apart in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Not at all: the first error ends the try (rolled back whole, then redone guarded).
    None,
    /// Each message in a savepoint of its own.
    Savepoint,
}

/// Whether the error is another writer's commit of the same row.
fn is_conflict(e: &PipelineError) -> bool {
    matches!(e, PipelineError::Store(StoreError::Conflict))
}

/// Counts committed outcomes in the process's metrics (`/metrics`): each message's outcome,
/// and its batch's time from `started` (before preparation) to the commit.
pub fn count_ingested(outcomes: &[Outcome], started: std::time::Instant) {
    let seconds = started.elapsed().as_secs_f64();
    for o in outcomes {
        crate::metrics::message_ingested(o.action.as_str(), seconds);
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
