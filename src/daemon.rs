//! `supportd run`: the IMAP pollers and the outbox sender as tasks sharing one store and one
//! pipeline, under systemd supervision (Type=notify, watchdog) and Unix signals:
//! SIGTERM/SIGINT stop taking work and finish what is in flight; SIGHUP reloads templates and
//! triage rules without dropping connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::pipeline::Pipeline;
use crate::setup::SetupError;
use crate::store::Store;
use crate::tasks::{Heartbeat, Shared};

/// How long shutdown waits for in-flight work before aborting tasks (systemd allows 90 s;
/// the contract is 10 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// How often the daemon queues the notification digests that are due (see
/// `pipeline/digest.rs`): a digest goes out at most this late after its time.
const DIGEST_SWEEP: Duration = Duration::from_secs(60);
/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("signal handling: {0}")]
    Signals(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// Runs until SIGTERM/SIGINT. `reload` rebuilds the pipeline on SIGHUP.
pub async fn run(
    pipeline: Pipeline,
    store: Store,
    reload: impl Fn() -> Result<Pipeline, SetupError>,
) -> Result<(), DaemonError> {
    let config = pipeline.config.clone();
    let start = Instant::now();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let support = &config.support.address;
    let envelope_from = lettre::Address::new(support.local(), support.domain())
        .map_err(|e| DaemonError::Setup(format!("support.address: {e}")))?;
    let shared = Arc::new(Shared::new(store, pipeline, shutdown_rx, envelope_from));
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let mut tasks = JoinSet::new();
    let mut beats = Vec::new();
    if !config.web.listen.is_empty() {
        // A port that cannot be bound stops start-up here, with its cause.
        let web = crate::web::Web::new(shared.clone())
            .await
            .map_err(|e| DaemonError::Setup(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(&config.web.listen)
            .await
            .map_err(|e| {
                DaemonError::Setup(format!("web: cannot listen on {}: {e}", config.web.listen))
            })?;
        info!(listen = %config.web.listen, "serving the web pages");
        let mut stop = shared.shutdown();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::web::serve(listener, web, shutdown).await {
                error!(error = %e, "the web server stopped");
            }
        });
    }
    for m in &config.mailbox {
        shared.watch_mailbox(&m.name, m.poll_seconds);
    }
    match &config.smtp {
        Some(smtp) => {
            // A bad [smtp] stops start-up here, with its cause.
            crate::outbox::transport(smtp).map_err(|e| DaemonError::Setup(e.to_string()))?;
            let hb = Heartbeat::new("outbox", start);
            beats.push(hb.clone());
            let (smtp, task_shared) = (smtp.clone(), shared.clone());
            tasks.spawn(supervise("outbox".into(), shared.clone(), move || {
                crate::outbox::run(smtp.clone(), task_shared.clone(), hb.clone())
            }));
        }
        None => warn!("no [smtp] configured: acknowledgements stay queued in the outbox"),
    }
    for m in &config.mailbox {
        let hb = Heartbeat::new(&format!("mailbox {}", m.name), start);
        beats.push(hb.clone());
        let (m, task_shared) = (m.clone(), shared.clone());
        tasks.spawn(supervise(
            format!("mailbox {}", m.name),
            shared.clone(),
            move || crate::imap::run(m.clone(), task_shared.clone(), hb.clone()),
        ));
    }
    if config.mailbox.is_empty() {
        warn!("no [[mailbox]] configured: only `supportd ingest` brings mail in");
    }
    let sweeps = [
        Sweep {
            name: "digests",
            every: DIGEST_SWEEP,
            run: Pipeline::send_due_digests,
            queued: "notification digests queued",
            failed: "cannot queue the due notification digests; will retry",
        },
        Sweep {
            name: "sla",
            every: Duration::from_secs(config.sla.check_seconds),
            run: Pipeline::send_sla_alerts,
            queued: "SLA reminders and escalations queued",
            failed: "cannot check the SLA clocks; will retry",
        },
    ];
    for sweep in sweeps {
        let hb = Heartbeat::new(sweep.name, start);
        beats.push(hb.clone());
        let task_shared = shared.clone();
        tasks.spawn(supervise(sweep.name.into(), shared.clone(), move || {
            sweep.run_until_shutdown(task_shared.clone(), hb.clone())
        }));
    }

    // READY once migrations ran (done by the caller) and the first mailbox connected.
    let mut ready = config.mailbox.is_empty();
    if ready {
        notify(&[sd_notify::NotifyState::Ready]);
        info!("supportd ready");
    }
    let watchdog = watchdog_interval();
    let ping_every = watchdog.map_or(Duration::from_secs(3600), |d| d / 3);
    let stuck = watchdog.map_or(Duration::MAX, stuck_after);
    let mut ticker = tokio::time::interval(ping_every);
    loop {
        tokio::select! {
            _ = shared.a_mailbox_connected(), if !ready => {
                ready = true;
                info!("supportd ready: first mailbox connected");
                notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = ticker.tick() => {
                if watchdog.is_some() {
                    match beats.iter().find(|b| b.age() > stuck) {
                        None => notify(&[sd_notify::NotifyState::Watchdog]),
                        Some(b) => error!(task = %b.name(), stuck_for = ?b.age(), "task stuck: withholding the watchdog ping"),
                    }
                }
            }
            _ = sighup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                match reload() {
                    Ok(p) => {
                        shared.replace_pipeline(p).await;
                        info!("SIGHUP: templates and triage rules reloaded");
                    }
                    Err(e) => error!(error = %e, "SIGHUP: reload failed; keeping the previous rules and templates"),
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            Some(done) = tasks.join_next() => {
                if let Err(e) = done {
                    error!(error = %e, "a task ended unexpectedly");
                }
            }
        }
    }
    info!("shutting down: finishing the message and the send in flight");
    notify(&[sd_notify::NotifyState::Stopping]);
    let _ = shutdown_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("tasks did not finish within {SHUTDOWN_GRACE:?}; aborting them (nothing is lost: uncommitted mail stays in the mailbox)");
        tasks.abort_all();
    }
    shared.store().close().await;
    info!("stopped");
    Ok(())
}

/// A periodic look at the database that may queue mail, until shutdown: the notification
/// digests that are due (after a mail flood stops, nothing else would announce its last held
/// tickets), and the SLA clocks (reminders before a due time, escalations after it; see
/// `pipeline/sla.rs`). What was sent is in the database, so a restart picks up where it was.
#[derive(Clone, Copy)]
struct Sweep {
    name: &'static str,
    every: Duration,
    run: fn(&Pipeline, &Store) -> Result<usize, crate::pipeline::PipelineError>,
    /// Logged with the number of mails queued.
    queued: &'static str,
    /// Logged with the error (the next sweep retries).
    failed: &'static str,
}

impl Sweep {
    async fn run_until_shutdown(self, shared: Arc<Shared>, heartbeat: Heartbeat) {
        let mut shutdown = shared.shutdown();
        loop {
            heartbeat.beat();
            if *shutdown.borrow() {
                break;
            }
            let pipeline = shared.pipeline().await;
            match (self.run)(&pipeline, shared.store()) {
                Ok(0) => {}
                Ok(n) => {
                    info!(mails = n, "{}", self.queued);
                    shared.wake_outbox();
                }
                Err(e) => warn!(error = %e, "{}", self.failed),
            }
            tokio::select! {
                _ = heartbeat.while_waiting(tokio::time::sleep(self.every)) => {}
                _ = shutdown.changed() => break,
            }
        }
    }
}

/// Runs the task `make` builds and, should it panic (a bug: nothing in it panics on input),
/// logs that and runs a new one 5 s later, so one bug does not silently end a mailbox.
async fn supervise<F, Fut>(name: String, shared: Arc<Shared>, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut shutdown = shared.shutdown();
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) => error!(task = %name, error = %e, "task panicked; restarting it in 5 s"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// How long a task may go without beating before the watchdog is no longer fed (systemd
/// then restarts the service): two watchdog periods, at least 30 s. Longer than any blocking
/// step of a healthy task (a database write waits at most 15 s for the lock).
fn stuck_after(watchdog: Duration) -> Duration {
    (watchdog * 2).max(Duration::from_secs(30))
}

/// `WATCHDOG_USEC` as sd_watchdog_enabled(3) reads it: it applies to us unless
/// `WATCHDOG_PID` names another process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => (usec > 0).then(|| Duration::from_micros(usec)),
    }
}

fn notify(state: &[sd_notify::NotifyState]) {
    // Without $NOTIFY_SOCKET (not under systemd) this is a no-op.
    if let Err(e) = sd_notify::notify(false, state) {
        warn!(error = %e, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_threshold_follows_the_watchdog_with_a_floor() {
        assert_eq!(
            stuck_after(Duration::from_secs(60)),
            Duration::from_secs(120)
        );
        assert_eq!(
            stuck_after(Duration::from_millis(1500)),
            Duration::from_secs(30)
        );
    }
}
