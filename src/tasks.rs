//! Task plumbing shared by the daemon's long-running tasks (the IMAP pollers, the outbox
//! sender, the digest sweep): the state they share, their heartbeat for the watchdog, and
//! reconnect backoff. The daemon builds these; the tasks only use them, so the imports go one
//! way: daemon → imap/outbox → tasks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify, RwLock};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::pipeline::Pipeline;
use crate::store::Store;

/// How often a task that is waiting (IDLE, a poll interval, a backoff, a bounded network
/// exchange) reports that it is alive.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// State every task shares.
pub struct Shared {
    store: Store,
    /// Swapped whole on SIGHUP; tasks take the current one per message.
    pipeline: RwLock<Arc<Pipeline>>,
    clock: Arc<dyn Clock>,
    outbox_wake: Notify,
    connected: Notify,
    shutdown: watch::Receiver<bool>,
    envelope_from: lettre::Address,
    /// The mailboxes this process runs, as `/healthz` reports them.
    mailboxes: Mutex<Vec<MailboxHealth>>,
    /// Mailbox leases this process holds (PostgreSQL replicas).
    leases: std::sync::atomic::AtomicUsize,
}

/// One mailbox task's health, as `/healthz` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MailboxHealth {
    pub name: String,
    /// Its `poll_seconds`: ten of them without a good sync make the process unhealthy.
    pub poll_seconds: u64,
    /// The end of its last successful sync.
    pub last_sync: Option<DateTime<Utc>>,
    /// Waiting in IDLE on a live session now (a quiet mailbox syncs only every 25 minutes).
    pub idle: bool,
    /// When the task was started (the age of a mailbox that never synced).
    pub started: DateTime<Utc>,
    /// On PostgreSQL, the replica holding the mailbox's lease (this one, or the one this
    /// process stands by for); None on SQLite, or while nobody is known to hold it.
    pub lease_holder: Option<String>,
}

impl Shared {
    /// The tasks' shared state; `shutdown` turns true when they are to finish.
    pub fn new(
        store: Store,
        pipeline: Pipeline,
        shutdown: watch::Receiver<bool>,
        envelope_from: lettre::Address,
    ) -> Shared {
        Shared {
            store,
            clock: pipeline.clock.clone(),
            pipeline: RwLock::new(Arc::new(pipeline)),
            outbox_wake: Notify::new(),
            connected: Notify::new(),
            shutdown,
            envelope_from,
            mailboxes: Mutex::new(Vec::new()),
            leases: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The daemon starts a task for mailbox `name`.
    pub fn watch_mailbox(&self, name: &str, poll_seconds: u64) {
        let started = self.now();
        self.with_mailbox(name, |_| {});
        let mut all = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = all.iter_mut().find(|m| m.name == name) {
            m.poll_seconds = poll_seconds;
            m.started = started;
        }
    }

    /// Mailbox `name` finished a sync.
    pub fn mailbox_synced(&self, name: &str) {
        let now = self.now();
        self.with_mailbox(name, |m| m.last_sync = Some(now));
    }

    /// Mailbox `name` entered (true) or left (false) IDLE.
    pub fn mailbox_idle(&self, name: &str, idle: bool) {
        self.with_mailbox(name, |m| m.idle = idle);
    }

    /// This process took mailbox `name`'s lease.
    pub fn lease_taken(&self, name: &str) {
        self.leases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.mailbox_lease(name, Some(crate::store::instance().replica.clone()));
    }

    /// This process let mailbox `name`'s lease go.
    pub fn lease_released(&self, name: &str) {
        let _ = self.leases.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| Some(n.saturating_sub(1)),
        );
        self.mailbox_lease(name, None);
    }

    /// How many mailbox leases this process holds.
    pub fn leases_held(&self) -> usize {
        self.leases.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Mailbox `name`'s lease is held by `holder` (None: by nobody known).
    pub fn mailbox_lease(&self, name: &str, holder: Option<String>) {
        crate::metrics::mailbox_lease(name, holder.as_deref());
        self.with_mailbox(name, |m| m.lease_holder = holder);
    }

    /// The mailboxes this process runs (none for `supportd serve`).
    pub fn mailboxes(&self) -> Vec<MailboxHealth> {
        self.mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn with_mailbox(&self, name: &str, f: impl FnOnce(&mut MailboxHealth)) {
        let now = self.now();
        let mut all = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let i = match all.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                all.push(MailboxHealth {
                    name: name.to_string(),
                    poll_seconds: 60,
                    last_sync: None,
                    idle: false,
                    started: now,
                    lease_holder: None,
                });
                all.len() - 1
            }
        };
        if let Some(m) = all.get_mut(i) {
            f(m);
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.read().await.clone()
    }

    /// Replaces the pipeline (SIGHUP): messages already taken finish with the previous one.
    pub async fn replace_pipeline(&self, pipeline: Pipeline) {
        *self.pipeline.write().await = Arc::new(pipeline);
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Tells the outbox sender that mail was queued (no fixed sleep in the hot path).
    pub fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    pub async fn outbox_woken(&self) {
        self.outbox_wake.notified().await;
    }

    pub fn mailbox_connected(&self) {
        self.connected.notify_one();
    }

    /// Resolves once a mailbox said it connected (the daemon is then ready).
    pub async fn a_mailbox_connected(&self) {
        self.connected.notified().await;
    }

    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// The SMTP envelope sender: our support address.
    pub fn envelope_from(&self) -> lettre::Address {
        self.envelope_from.clone()
    }
}

/// Progress marker of one task, read by the watchdog. A task beats when it makes progress
/// and, through [`Heartbeat::while_waiting`], all along a wait that is bounded or meant to be
/// long (IDLE for 25 minutes, a 5-minute reconnect backoff). A task that stops beating is
/// blocked outside any such wait: a hung database call, a deadlock, a busy loop.
#[derive(Clone)]
pub struct Heartbeat {
    name: Arc<str>,
    /// tokio's clock (the monotonic clock, paused in unit tests).
    start: Instant,
    last_ms: Arc<AtomicI64>,
}

impl Heartbeat {
    /// The heartbeat of the task `name`; `start` is the daemon's start, shared by all.
    pub fn new(name: &str, start: Instant) -> Heartbeat {
        Heartbeat {
            name: name.into(),
            start,
            last_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn beat(&self) {
        let ms = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Awaits `fut`, beating every second meanwhile: for waits only, never for work whose
    /// hang should count as stuck.
    pub async fn while_waiting<F: std::future::Future>(&self, fut: F) -> F::Output {
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(BEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut fut => {
                    self.beat();
                    return out;
                }
                _ = tick.tick() => self.beat(),
            }
        }
    }

    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        let now = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        Duration::from_millis(u64::try_from(now - last).unwrap_or(0))
    }
}

/// Exponential backoff with ±25 % jitter, so replicas and mailboxes don't retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            current: base,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let mut b = [0u8; 2];
        let r = if getrandom::fill(&mut b).is_ok() {
            f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
        } else {
            0.5
        };
        d.mul_f64(0.75 + r * 0.5)
    }

    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiting_beats_and_idling_without_it_ages() {
        let hb = Heartbeat::new("t", Instant::now());
        hb.beat();
        // A long wait through while_waiting keeps the heartbeat young all along ...
        let waited = hb.clone();
        let wait = tokio::spawn(async move {
            waited
                .while_waiting(tokio::time::sleep(Duration::from_secs(600)))
                .await;
        });
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert!(hb.age() <= BEAT_EVERY * 2, "age {:?}", hb.age());
        }
        wait.await.unwrap();
        // ... while a task that neither works nor waits through it grows old.
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(hb.age() >= Duration::from_secs(100));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_within_the_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let within = |d: Duration, nominal: u64| {
            let n = Duration::from_secs(nominal);
            d >= n.mul_f64(0.75) && d <= n.mul_f64(1.25)
        };
        for nominal in [1, 2, 4, 4] {
            let d = b.next_delay();
            assert!(within(d, nominal), "{d:?} is not {nominal} s ± 25 %");
        }
        b.reset();
        assert!(within(b.next_delay(), 1));
    }
}
