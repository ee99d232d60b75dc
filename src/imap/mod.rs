//! IMAP intake: one task per configured mailbox. It fetches every message above the stored UID
//! cursor (BODY.PEEK[], so reading never sets \Seen), runs each through the pipeline, and only
//! after the pipeline's transaction committed flags it \Seen or moves it; then it advances the
//! cursor. A crash anywhere in between re-fetches the message, which the pipeline recognises
//! as a duplicate: nothing is lost and nothing is doubled. Waits with IDLE where offered.

pub mod connect;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio::sync::watch;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::Mailbox;
use crate::daemon::{Backoff, Heartbeat, Shared};
use crate::pipeline::{Action, PipelineError, Source};
use crate::store::StoreError;
use connect::ImapSession;

/// Re-issue IDLE well before the 30-minute server timeout of RFC 2177.
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// Any single IMAP command (other than IDLE) that takes longer is treated as a dead connection.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// A fetch batch holds at most this many bytes of mail (peak memory), or one larger message.
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
const BATCH_MAX: usize = 100;
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
        loop {
            hb.beat();
            if *shutdown.borrow() {
                return;
            }
            match session(&mailbox, &shared, &hb, &mut shutdown, &mut backoff).await {
                Ok(()) => return,
                Err(e) => {
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

/// One connected session: sync, then wait (IDLE or poll), until an error or shutdown.
async fn session(
    m: &Mailbox,
    shared: &Shared,
    hb: &Heartbeat,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Result<(), ImapError> {
    let mut session = hb.while_waiting(connect::open(m)).await?;
    let caps = bounded(hb, "CAPABILITY", session.capabilities()).await?;
    let has_idle = caps.has_str("IDLE");
    let has_move = caps.has_str("MOVE");
    let has_uidplus = caps.has_str("UIDPLUS");
    info!(idle = has_idle, r#move = has_move, "connected");
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
        sync(
            &mut session,
            m,
            shared,
            hb,
            uidvalidity,
            has_move,
            has_uidplus,
        )
        .await?;
        backoff.reset();
        hb.beat();
        let more_mail = drain_unsolicited(&mut session);
        if *shutdown.borrow() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
            return Ok(());
        }
        if more_mail && resyncs < MAX_RESYNCS {
            // Mail that arrived during the sync was announced then (an untagged EXISTS during
            // our FETCH or MOVE); IDLE would not announce it again: sync once more first.
            // Bounded, in case a server announces EXISTS after every command.
            resyncs += 1;
            debug!("new mail announced during the sync; syncing again");
            continue;
        }
        resyncs = 0;
        if has_idle {
            let mut idle = session.idle();
            bounded(hb, "IDLE", idle.init()).await?;
            let stopped = {
                let (wait, stop) = idle.wait_with_timeout(IDLE_RENEW);
                tokio::select! {
                    r = hb.while_waiting(wait) => {
                        // Benchmarks time supportd's share of IDLE latency from this line.
                        debug!(response = ?r?, "IDLE woke");
                        false
                    }
                    _ = shutdown.changed() => { drop(stop); true }
                }
            };
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

/// Fetches and processes everything above the cursor, in UID order, in bounded batches.
async fn sync(
    session: &mut ImapSession,
    m: &Mailbox,
    shared: &Shared,
    hb: &Heartbeat,
    uidvalidity: u32,
    has_move: bool,
    has_uidplus: bool,
) -> Result<(), ImapError> {
    let store = shared.store();
    let mut last = match store.cursor(&m.name, &m.folder)? {
        Some((v, uid)) if v == uidvalidity => uid,
        Some((v, _)) => {
            warn!(
                old = v,
                new = uidvalidity,
                "UIDVALIDITY changed: rescanning the folder; stored Message-IDs prevent duplicates"
            );
            0
        }
        None => 0,
    };
    // Sizes first, so a batch never holds more than BATCH_BYTES of mail in memory. Each
    // response is dropped as soon as it is read: async-imap's responses keep the read buffer
    // they were parsed from, so collecting 10,000 of them held ~80 MB.
    let sizes: Vec<(u32, u64)> = {
        let mut stream = bounded(
            hb,
            "UID FETCH sizes",
            session.uid_fetch(format!("{}:*", last.saturating_add(1)), "(UID RFC822.SIZE)"),
        )
        .await?;
        let mut v = Vec::new();
        while let Some(f) = bounded(hb, "UID FETCH sizes", stream.try_next()).await? {
            if let Some(uid) = f.uid.filter(|uid| *uid > last) {
                // `N:*` always returns the last message, even below N.
                v.push((uid, u64::from(f.size.unwrap_or(0))));
            }
        }
        v.sort_unstable();
        v
    };
    if sizes.is_empty() {
        if store.cursor(&m.name, &m.folder)? != Some((uidvalidity, last)) {
            store.set_cursor(&m.name, &m.folder, uidvalidity, last, shared.now())?;
        }
        return Ok(());
    }
    debug!(count = sizes.len(), "new messages");
    for (batch, bytes) in batches(&sizes) {
        let set = uid_set(&batch);
        let mut fetched = {
            let stream = bounded(
                hb,
                "UID FETCH",
                session.uid_fetch(&set, "(UID INTERNALDATE BODY.PEEK[])"),
            )
            .await?;
            bounded_for(
                hb,
                "UID FETCH",
                fetch_limit(bytes),
                stream.try_collect::<Vec<_>>(),
            )
            .await?
        };
        fetched.sort_by_key(|f| f.uid);
        let mut done = Vec::new();
        let mut quarantined = Vec::new();
        let mut failure = None;
        for f in &fetched {
            let Some(uid) = f.uid else { continue };
            let raw = f.body().unwrap_or_default();
            let received_at: Option<DateTime<Utc>> =
                f.internal_date().map(|d| d.with_timezone(&Utc));
            let source_name = format!("imap:{}/{}:{uid}", m.name, m.folder);
            let pipeline = shared.pipeline().await;
            let span = info_span!(
                "message",
                uid,
                message_id = tracing::field::Empty,
                ticket = tracing::field::Empty
            );
            let result = span.in_scope(|| {
                pipeline.ingest(
                    store,
                    raw,
                    Source {
                        name: &source_name,
                        received_at,
                    },
                )
            });
            match result {
                Ok(outcome) => {
                    span.record("message_id", outcome.message_id.as_deref().unwrap_or(""));
                    if let Some(t) = outcome.ticket {
                        span.record("ticket", t);
                    }
                    if outcome.action == Action::Quarantined {
                        quarantined.push(uid);
                    } else {
                        done.push(uid);
                    }
                    hb.beat();
                }
                Err(e) => {
                    // Leave this and every later message untouched in the mailbox; retry.
                    failure = Some(e);
                    break;
                }
            }
        }
        // Everything in `done`/`quarantined` is committed: now it may leave the inbox.
        if !done.is_empty() {
            shared.wake_outbox();
            match &m.processed_folder {
                Some(folder) => {
                    move_uids(session, hb, &done, folder, has_move, has_uidplus).await?
                }
                None => flag_seen(session, hb, &done).await?,
            }
        }
        if !quarantined.is_empty() {
            move_uids(
                session,
                hb,
                &quarantined,
                &m.quarantine_folder,
                has_move,
                has_uidplus,
            )
            .await?;
        }
        if let Some(&max) = done.iter().chain(&quarantined).max() {
            last = last.max(max);
            store.set_cursor(&m.name, &m.folder, uidvalidity, last, shared.now())?;
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Splits (uid, size) pairs into batches bounded in bytes and count, each with its bytes.
fn batches(sizes: &[(u32, u64)]) -> Vec<(Vec<u32>, u64)> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in sizes {
        if !current.is_empty() && (bytes + size > BATCH_BYTES || current.len() >= BATCH_MAX) {
            out.push((std::mem::take(&mut current), bytes));
            bytes = 0;
        }
        current.push(uid);
        bytes += size;
    }
    if !current.is_empty() {
        out.push((current, bytes));
    }
    out
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn flag_seen(
    session: &mut ImapSession,
    hb: &Heartbeat,
    uids: &[u32],
) -> Result<(), ImapError> {
    let stream = bounded(
        hb,
        "UID STORE",
        session.uid_store(uid_set(uids), "+FLAGS.SILENT (\\Seen)"),
    )
    .await?;
    bounded(hb, "UID STORE", stream.try_collect::<Vec<_>>()).await?;
    Ok(())
}

/// UID MOVE where offered (RFC 6851), else COPY + \Deleted + (UID) EXPUNGE.
async fn move_uids(
    session: &mut ImapSession,
    hb: &Heartbeat,
    uids: &[u32],
    folder: &str,
    has_move: bool,
    has_uidplus: bool,
) -> Result<(), ImapError> {
    let set = uid_set(uids);
    if has_move {
        bounded(hb, "UID MOVE", session.uid_mv(&set, folder)).await?;
        return Ok(());
    }
    bounded(hb, "UID COPY", session.uid_copy(&set, folder)).await?;
    let stream = bounded(
        hb,
        "UID STORE",
        session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)"),
    )
    .await?;
    bounded(hb, "UID STORE", stream.try_collect::<Vec<_>>()).await?;
    if has_uidplus {
        let stream = bounded(hb, "UID EXPUNGE", session.uid_expunge(&set)).await?;
        bounded(hb, "UID EXPUNGE", stream.try_collect::<Vec<_>>()).await?;
    } else {
        let stream = bounded(hb, "EXPUNGE", session.expunge()).await?;
        bounded(hb, "EXPUNGE", stream.try_collect::<Vec<_>>()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_bytes_and_count() {
        let sizes: Vec<(u32, u64)> = vec![(1, 1), (2, BATCH_BYTES), (3, 10), (4, 10)];
        assert_eq!(
            batches(&sizes),
            vec![(vec![1], 1), (vec![2], BATCH_BYTES), (vec![3, 4], 20)]
        );
        let many: Vec<(u32, u64)> = (1..=250).map(|u| (u, 1)).collect();
        let b = batches(&many);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].0.len(), BATCH_MAX);
    }

    #[test]
    fn a_large_fetch_gets_time_for_its_size() {
        assert_eq!(fetch_limit(0), COMMAND_TIMEOUT);
        // 25 MB at 32 KiB/s: ~13 minutes on top of the command timeout.
        let big = fetch_limit(25_000_000);
        assert!(big > COMMAND_TIMEOUT + Duration::from_secs(700), "{big:?}");
    }
}
