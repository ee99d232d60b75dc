//! IMAP intake: one task per configured mailbox. It fetches every message above the stored UID
//! cursor (BODY.PEEK[], so reading never sets \Seen), runs each through the pipeline, and only
//! after the pipeline's transaction committed flags it \Seen or moves it; then it advances the
//! cursor. A crash anywhere in between re-fetches the message, which the pipeline recognises
//! as a duplicate: nothing is lost and nothing is doubled. Waits with IDLE where offered.

mod batches;
pub mod connect;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::sync::watch;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::Mailbox;
use crate::pipeline::PipelineError;
use crate::store::StoreError;
use crate::tasks::{Backoff, Heartbeat, Shared};
use connect::ImapSession;

/// Re-issue IDLE well before the 30-minute server timeout of RFC 2177.
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// Any single IMAP command (other than IDLE) that takes longer is treated as a dead connection.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Syncs in a row, without IDLE in between, for mail announced while syncing.
const MAX_RESYNCS: u32 = 3;
/// The slowest download we wait for (the outbox allows uploads the same rate).
const SLOW_LINK_BYTES_PER_SECOND: u64 = 32 * 1024;

/// Why a mailbox session ended.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("login failed: {0}")]
    Auth(String),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("IMAP protocol: {0}")]
    Protocol(String),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("configuration: {0}")]
    Config(String),
    #[error("pipeline: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// One IMAP exchange, bounded by [`COMMAND_TIMEOUT`]; the watchdog sees the task waiting.
async fn bounded<T, E: Into<ImapError>>(
    hb: &Heartbeat,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    bounded_for(hb, what, COMMAND_TIMEOUT, fut).await
}

async fn bounded_for<T, E: Into<ImapError>>(
    hb: &Heartbeat,
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match hb.while_waiting(tokio::time::timeout(limit, fut)).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(ImapError::Timeout(what)),
    }
}

/// How long fetching `bytes` of mail may take: the command timeout plus the bytes at a slow
/// link's rate, so a 25 MB message over a poor line is not cut off and refetched forever.
fn fetch_limit(bytes: u64) -> Duration {
    COMMAND_TIMEOUT + Duration::from_secs(bytes / SLOW_LINK_BYTES_PER_SECOND)
}

/// Runs one mailbox until shutdown, reconnecting with backoff after any failure.
pub async fn run(mailbox: Mailbox, shared: Arc<Shared>, hb: Heartbeat) {
    let span = info_span!("mailbox", mailbox = %mailbox.name, host = %mailbox.host);
    async move {
        let mut shutdown = shared.shutdown();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut last_error = String::new();
        let mut failed = false;
        loop {
            hb.beat();
            if *shutdown.borrow() {
                return;
            }
            if failed {
                crate::metrics::imap_reconnect(&mailbox.name);
            }
            // On PostgreSQL: work the mailbox only while holding its lease.
            let lease = match lease(&mailbox.name, &shared, &hb, &mut shutdown).await {
                Some(lease) => lease,
                None => return,
            };
            let worked = match &lease {
                Some(held) => tokio::select! {
                    r = session(&mailbox, &shared, &hb, &mut shutdown, &mut backoff, &mut last_error) => r,
                    () = lost(held, &hb) => {
                        warn!("lost the mailbox lease (its database connection broke); \
                               stopping work on the mailbox until it is held again");
                        Err(ImapError::Store(StoreError::Unavailable("mailbox lease lost".into())))
                    }
                },
                None => {
                    session(
                        &mailbox,
                        &shared,
                        &hb,
                        &mut shutdown,
                        &mut backoff,
                        &mut last_error,
                    )
                    .await
                }
            };
            if lease.is_some() {
                shared.lease_released(&mailbox.name);
            }
            drop(lease);
            match worked {
                Ok(()) => return,
                Err(e) => {
                    failed = true;
                    shared.mailbox_idle(&mailbox.name, false);
                    crate::metrics::imap_sync_error(&mailbox.name);
                    let text = e.to_string();
                    // Log a failure once; repeats of the same cause go to debug.
                    if text != last_error {
                        warn!(error = %text, "mailbox session failed; reconnecting with backoff");
                        last_error = text;
                    } else {
                        debug!(error = %text, "mailbox session failed again");
                    }
                }
            }
            let wait = backoff.next_delay();
            tokio::select! {
                _ = hb.while_waiting(tokio::time::sleep(wait)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
    .instrument(span)
    .await
}

/// How often a replica without a mailbox's lease asks for it again, on the connection it
/// keeps for that (a dead holder's lease ends when the server sees its connection close: a
/// takeover within this of that moment).
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often the holder checks that its lease connection is alive.
const LEASE_CHECK: Duration = Duration::from_secs(5);

/// Rounds a mailbox may be seen without any holder before a replica over its fair share
/// takes it all the same (the replicas under their share did not, in that time).
const ORPHAN_ROUNDS: u32 = 5;

/// Waits until this process holds `mailbox`'s lease: Some(Some(lease)) on PostgreSQL,
/// Some(None) on SQLite (no lease needed), None on shutdown.
///
/// Replicas share the mailboxes: one takes a free mailbox only while it holds fewer than its
/// fair share (the mailboxes divided by the live replicas, rounded up), or when nobody took
/// it for [`ORPHAN_ROUNDS`] rounds. The first round only announces this replica (its standby
/// connection), so replicas started together see each other before taking any. Leases are
/// not moved while held: a replica that starts later stands by until a mailbox is free.
async fn lease(
    mailbox: &str,
    shared: &Shared,
    hb: &Heartbeat,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Option<crate::store::Lease>> {
    use crate::store::LeaseTry;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut said = String::new();
    let mut standby = None;
    let mut first = true;
    let mut unheld = 0u32;
    loop {
        hb.beat();
        if *shutdown.borrow() {
            return None;
        }
        let take = !first && (unheld >= ORPHAN_ROUNDS || under_share(shared));
        let asked =
            crate::store::blocking(|| shared.store().try_lease(mailbox, standby.take(), take));
        first = false;
        let wait = match asked {
            Ok(LeaseTry::NotNeeded) => return Some(None),
            Ok(LeaseTry::Held(lease)) => {
                info!(replica = %crate::store::instance().replica, "holds the mailbox lease");
                shared.lease_taken(mailbox);
                return Some(Some(lease));
            }
            Ok(LeaseTry::HeldBy(holder, kept)) => {
                standby = Some(kept);
                match &holder {
                    Some(h) => {
                        unheld = 0;
                        if *h != said {
                            info!(holder = %h, "another replica works this mailbox; standing by");
                            said = h.clone();
                        }
                    }
                    None => unheld += 1,
                }
                shared.mailbox_lease(mailbox, holder);
                // Standing by is this replica's work for the mailbox: ready.
                shared.mailbox_connected();
                LEASE_RETRY
            }
            Err(e) => {
                let text = e.to_string();
                if text != said {
                    warn!(error = %text, "cannot ask for the mailbox lease; retrying");
                    said = text;
                }
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = hb.while_waiting(tokio::time::sleep(wait)) => {}
            _ = shutdown.changed() => return None,
        }
    }
}

/// Whether this replica holds fewer leases than its fair share.
fn under_share(shared: &Shared) -> bool {
    let replicas = crate::store::blocking(|| shared.store().live_replicas()).unwrap_or(1);
    let mailboxes = shared.mailboxes().len().max(1);
    shared.leases_held() < mailboxes.div_ceil(replicas)
}

/// Resolves when the lease's connection stops answering.
async fn lost(lease: &crate::store::Lease, hb: &Heartbeat) {
    loop {
        hb.while_waiting(tokio::time::sleep(LEASE_CHECK)).await;
        if !lease.alive() {
            return;
        }
    }
}

/// Server capabilities that change how a session works.
#[derive(Debug, Clone, Copy)]
struct Caps {
    idle: bool,
    r#move: bool,
    uidplus: bool,
}

/// One connected session: sync, then wait (IDLE or poll), until an error or shutdown.
async fn session(
    m: &Mailbox,
    shared: &Shared,
    hb: &Heartbeat,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    last_error: &mut String,
) -> Result<(), ImapError> {
    let mut session = hb.while_waiting(connect::open(m)).await?;
    let listed = bounded(hb, "CAPABILITY", session.capabilities()).await?;
    let caps = Caps {
        idle: listed.has_str("IDLE"),
        r#move: listed.has_str("MOVE"),
        uidplus: listed.has_str("UIDPLUS"),
    };
    info!(idle = caps.idle, r#move = caps.r#move, "connected");
    ensure_folder(&mut session, hb, &m.quarantine_folder).await?;
    if let Some(f) = &m.processed_folder {
        ensure_folder(&mut session, hb, f).await?;
    }
    shared.mailbox_connected();
    let mut resyncs = 0;
    loop {
        let uidvalidity = bounded(hb, "SELECT", session.select(&m.folder))
            .await?
            .uid_validity
            .unwrap_or(0);
        let synced = sync::sync(&mut session, m, shared, hb, shutdown, uidvalidity, caps).await?;
        shared.mailbox_synced(&m.name);
        backoff.reset();
        // A failure that comes back after a good sync is news again: log it again.
        last_error.clear();
        hb.beat();
        let announced = synced.announced | drain_unsolicited(&mut session);
        if *shutdown.borrow() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
            return Ok(());
        }
        // Sync until a sync finds nothing new. Mail that arrived during this one may have
        // been announced during our own commands (IDLE would not announce it again), or not
        // at all where the announcement queue overflowed; the next sync's FETCH finds it.
        if synced.processed > 0 {
            resyncs = 0;
            continue;
        }
        if (announced || !synced.complete) && resyncs < MAX_RESYNCS {
            // Bounded: a server may announce EXISTS after every command, or keep a message
            // out of its FETCH answers.
            resyncs += 1;
            debug!("new mail announced, or a message not returned; syncing again");
            continue;
        }
        resyncs = 0;
        if caps.idle {
            let mut idle = session.idle();
            bounded(hb, "IDLE", idle.init()).await?;
            shared.mailbox_idle(&m.name, true);
            let stopped = {
                // async-imap's own timeout restarts with every "* OK Still here" keepalive
                // (Dovecot sends one every 2 minutes): renew on a fixed schedule instead.
                let (wait, stop) = idle.wait_with_timeout(IDLE_RENEW);
                tokio::select! {
                    r = tokio::time::timeout(IDLE_RENEW, hb.while_waiting(wait)) => {
                        match r {
                            // Benchmarks time supportd's share of IDLE latency from this line.
                            Ok(r) => debug!(response = ?r?, "IDLE woke"),
                            Err(_) => debug!("renewing IDLE"),
                        }
                        false
                    }
                    _ = shutdown.changed() => { drop(stop); true }
                }
            };
            shared.mailbox_idle(&m.name, false);
            session = bounded(hb, "DONE", idle.done()).await?;
            if stopped {
                let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
                return Ok(());
            }
        } else {
            tokio::select! {
                _ = hb.while_waiting(tokio::time::sleep(Duration::from_secs(m.poll_seconds))) => {}
                _ = shutdown.changed() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
                    return Ok(());
                }
            }
        }
    }
}

/// Empties the unsolicited-response queue; true when it announced new mail.
fn drain_unsolicited(session: &mut ImapSession) -> bool {
    let mut new_mail = false;
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        new_mail |= matches!(
            response,
            async_imap::types::UnsolicitedResponse::Exists(_)
                | async_imap::types::UnsolicitedResponse::Recent(_)
        );
    }
    new_mail
}

async fn ensure_folder(
    session: &mut ImapSession,
    hb: &Heartbeat,
    name: &str,
) -> Result<(), ImapError> {
    let exists = {
        let list = bounded(hb, "LIST", session.list(Some(""), Some(name))).await?;
        let names: Vec<_> = bounded(hb, "LIST", list.try_collect::<Vec<_>>()).await?;
        names.iter().any(|n| n.name() == name)
    };
    if !exists {
        info!(folder = name, "creating folder");
        bounded(hb, "CREATE", session.create(name)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_fetch_gets_time_for_its_size() {
        assert_eq!(fetch_limit(0), COMMAND_TIMEOUT);
        // 25 MB at 32 KiB/s: ~13 minutes on top of the command timeout.
        let big = fetch_limit(25_000_000);
        assert!(big > COMMAND_TIMEOUT + Duration::from_secs(700), "{big:?}");
    }
}
