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
use crate::pipeline::{Action, Outcome, Pipeline, PipelineError, Source};
use crate::store::{Store, StoreError};
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
            match session(
                &mailbox,
                &shared,
                &hb,
                &mut shutdown,
                &mut backoff,
                &mut last_error,
            )
            .await
            {
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
        let synced = sync(&mut session, m, shared, hb, shutdown, uidvalidity, caps).await?;
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

/// What one sync did.
#[derive(Debug, Default)]
struct Synced {
    /// Messages committed (or quarantined) and moved or flagged.
    processed: usize,
    /// New mail was announced while we worked.
    announced: bool,
    /// False when the sync stopped early: shutdown, or a message the server did not return.
    complete: bool,
}

/// Fetches and processes everything above the cursor, in UID order, in bounded batches.
/// The cursor only ever moves over a prefix of UIDs that were all committed and moved.
async fn sync(
    session: &mut ImapSession,
    m: &Mailbox,
    shared: &Shared,
    hb: &Heartbeat,
    shutdown: &watch::Receiver<bool>,
    uidvalidity: u32,
    caps: Caps,
) -> Result<Synced, ImapError> {
    let store = shared.store();
    let mut synced = Synced {
        complete: true,
        ..Synced::default()
    };
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
            session.uid_fetch(
                format!("{}:*", last.saturating_add(1)),
                "(UID RFC822.SIZE FLAGS)",
            ),
        )
        .await?;
        let mut v = Vec::new();
        while let Some(f) = bounded(hb, "UID FETCH sizes", stream.try_next()).await? {
            if f.flags()
                .any(|flag| flag == async_imap::types::Flag::Deleted)
            {
                // Someone deleted it (or it is our own copy left behind by a server without
                // UID EXPUNGE): not new mail.
                continue;
            }
            if let Some(uid) = f.uid.filter(|uid| *uid > last) {
                // `N:*` always returns the last message, even below N. A message of unknown
                // size gets a batch of its own.
                v.push((uid, f.size.map_or(BATCH_BYTES, u64::from)));
            }
        }
        v.sort_unstable();
        v.dedup_by_key(|(uid, _)| *uid);
        v
    };
    if sizes.is_empty() {
        if store.cursor(&m.name, &m.folder)? != Some((uidvalidity, last)) {
            store.set_cursor(&m.name, &m.folder, uidvalidity, last, shared.now())?;
        }
        return Ok(synced);
    }
    debug!(count = sizes.len(), "new messages");
    let max_bytes = shared.pipeline().await.config.limits.max_message_bytes;
    for Batch {
        uids: batch,
        bytes,
        oversized,
    } in batches(&sizes, max_bytes)
    {
        // An oversized message is not downloaded: its header is kept with the reason, and
        // the message itself goes to the quarantine folder, intact.
        let oversized = oversized.then_some(bytes);
        let query = if oversized.is_some() {
            "(UID INTERNALDATE BODY.PEEK[HEADER])"
        } else {
            "(UID INTERNALDATE BODY.PEEK[])"
        };
        let set = uid_set(&batch);
        let fetched = {
            let stream = bounded(hb, "UID FETCH", session.uid_fetch(&set, query)).await?;
            bounded_for(
                hb,
                "UID FETCH",
                fetch_limit(bytes.min(max_bytes)),
                stream.try_collect::<Vec<_>>(),
            )
            .await?
        };
        // By UID, first answer wins; answers without the requested data (a flag update sent
        // during our FETCH) are not messages.
        let mut by_uid = std::collections::BTreeMap::new();
        for f in &fetched {
            let data = if oversized.is_some() {
                f.header()
            } else {
                f.body()
            };
            if let (Some(uid), Some(raw)) = (f.uid, data) {
                by_uid.entry(uid).or_insert((raw, f));
            }
        }
        // The prefix of the batch the server returned, in UID order. A message not returned
        // (expunged meanwhile, or a server error) and every later one wait for the next
        // sync, so the cursor never passes it.
        let mut present = Vec::new();
        for &uid in &batch {
            let Some(&(raw, f)) = by_uid.get(&uid) else {
                debug!(
                    uid,
                    "message not returned by FETCH; retrying at the next sync"
                );
                synced.complete = false;
                break;
            };
            let received_at: Option<DateTime<Utc>> =
                f.internal_date().map(|d| d.with_timezone(&Utc));
            present.push((uid, raw, received_at));
        }
        let names: Vec<String> = present
            .iter()
            .map(|(uid, ..)| format!("imap:{}/{}:{uid}", m.name, m.folder))
            .collect();
        let items: Vec<(&[u8], Source<'_>)> = present
            .iter()
            .zip(&names)
            .map(|(&(uid, raw, received_at), name)| {
                let uid = Some(uid);
                (
                    raw,
                    Source {
                        name,
                        uid,
                        received_at,
                    },
                )
            })
            .collect();
        let pipeline = shared.pipeline().await;
        let result = match (oversized, items.first()) {
            (_, None) => Ok(Vec::new()),
            (Some(size), Some(&(raw, source))) => {
                let reason = format!(
                    "{}; only its header is stored, the message is in the IMAP folder {}",
                    pipeline.too_large(size).unwrap_or_default(),
                    m.quarantine_folder
                );
                pipeline
                    .set_aside(store, raw, &reason, source)
                    .map(|o| vec![o])
            }
            // One transaction for the batch. The database being unavailable leaves the whole
            // batch where it is, to be retried later; anything else a message fails on sets
            // that one message aside (see Pipeline::ingest_batch).
            (None, Some(_)) => ingest_guarded(&pipeline, store, &items),
        };
        let mut done = Vec::new();
        let mut quarantined = Vec::new();
        let mut failure = None;
        match result {
            Ok(outcomes) => {
                for (&(uid, ..), outcome) in present.iter().zip(&outcomes) {
                    if outcome.action == Action::Quarantined {
                        quarantined.push(uid);
                    } else {
                        done.push(uid);
                    }
                }
            }
            Err(e) => failure = Some(e),
        }
        hb.beat();
        if *shutdown.borrow() {
            // Stop taking new mail; what is committed still leaves the inbox below.
            synced.complete = false;
        }
        drop(items);
        drop(by_uid);
        drop(fetched);
        // Everything in `done`/`quarantined` is committed; once that is on disk for good, it
        // may leave the inbox.
        if !done.is_empty() || !quarantined.is_empty() {
            store.make_durable(shared.now())?;
        }
        if !done.is_empty() {
            shared.wake_outbox();
            match &m.processed_folder {
                Some(folder) => move_uids(session, hb, &done, folder, caps).await?,
                None => flag_seen(session, hb, &done).await?,
            }
        }
        if !quarantined.is_empty() {
            move_uids(session, hb, &quarantined, &m.quarantine_folder, caps).await?;
        }
        // Handled messages are a prefix of the batch, so the cursor passes none left behind.
        if let Some(&max) = done.iter().chain(&quarantined).max() {
            last = last.max(max);
            store.set_cursor(&m.name, &m.folder, uidvalidity, last, shared.now())?;
        }
        synced.processed += done.len() + quarantined.len();
        // MOVE answers with one EXPUNGE per message; empty the queue (100 entries, the
        // overflow is dropped) after every batch, noting any new mail it announced.
        synced.announced |= drain_unsolicited(session);
        if let Some(e) = failure {
            return Err(e.into());
        }
        if !synced.complete {
            break;
        }
    }
    Ok(synced)
}

/// The pipeline on a batch, with a panic (a bug: the pipeline is written not to panic on any
/// input) contained: the batch is then run again one message at a time, and the message that
/// panics is set aside, so the mailbox goes on.
fn ingest_guarded(
    pipeline: &Pipeline,
    store: &Store,
    items: &[(&[u8], Source<'_>)],
) -> Result<Vec<Outcome>, PipelineError> {
    let guarded = |items: &[(&[u8], Source<'_>)]| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline.ingest_batch(store, items)
        }))
    };
    if let Ok(result) = guarded(items) {
        return result;
    }
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        match guarded(std::slice::from_ref(item)) {
            Ok(result) => outcomes.extend(result?),
            Err(_) => {
                let reason = "supportd panicked on this message (a bug; please report it)";
                outcomes.push(pipeline.set_aside(store, item.0, reason, item.1)?);
            }
        }
    }
    Ok(outcomes)
}

/// One FETCH worth of messages.
#[derive(Debug, PartialEq, Eq)]
struct Batch {
    uids: Vec<u32>,
    bytes: u64,
    /// A single message over `limits.max_message_bytes`: only its header is fetched.
    oversized: bool,
}

/// Splits (uid, size) pairs, in UID order, into batches bounded in bytes and count; a message
/// larger than `max_message` is a batch of its own.
fn batches(sizes: &[(u32, u64)], max_message: u64) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in sizes {
        let alone = size > max_message;
        if !current.is_empty()
            && (alone || bytes + size > BATCH_BYTES || current.len() >= BATCH_MAX)
        {
            out.push(Batch {
                uids: std::mem::take(&mut current),
                bytes,
                oversized: false,
            });
            bytes = 0;
        }
        if alone {
            out.push(Batch {
                uids: vec![uid],
                bytes: size,
                oversized: true,
            });
            continue;
        }
        current.push(uid);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(Batch {
            uids: current,
            bytes,
            oversized: false,
        });
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

/// UID MOVE where offered (RFC 6851), else COPY + \Deleted + UID EXPUNGE (UIDPLUS), else a
/// plain EXPUNGE, but only when no other message in the folder is flagged \Deleted (someone's
/// mail marked for deletion is not ours to expunge); then our copies stay behind, flagged.
async fn move_uids(
    session: &mut ImapSession,
    hb: &Heartbeat,
    uids: &[u32],
    folder: &str,
    caps: Caps,
) -> Result<(), ImapError> {
    let set = uid_set(uids);
    if caps.r#move {
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
    if caps.uidplus {
        let stream = bounded(hb, "UID EXPUNGE", session.uid_expunge(&set)).await?;
        bounded(hb, "UID EXPUNGE", stream.try_collect::<Vec<_>>()).await?;
        return Ok(());
    }
    let deleted = bounded(hb, "UID SEARCH", session.uid_search("DELETED")).await?;
    if deleted.iter().all(|uid| uids.contains(uid)) {
        let stream = bounded(hb, "EXPUNGE", session.expunge()).await?;
        bounded(hb, "EXPUNGE", stream.try_collect::<Vec<_>>()).await?;
    } else {
        warn!(
            others = deleted.len().saturating_sub(uids.len()),
            "not expunging: other messages in the folder are flagged \\Deleted and this \
             server lacks UID EXPUNGE; our copies stay there flagged \\Deleted"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_bytes_and_count() {
        let b = |uids: Vec<u32>, bytes, oversized| Batch {
            uids,
            bytes,
            oversized,
        };
        let sizes: Vec<(u32, u64)> = vec![(1, 1), (2, BATCH_BYTES), (3, 10), (4, 10)];
        assert_eq!(
            batches(&sizes, u64::MAX),
            vec![
                b(vec![1], 1, false),
                b(vec![2], BATCH_BYTES, false),
                b(vec![3, 4], 20, false)
            ]
        );
        let many: Vec<(u32, u64)> = (1..=250).map(|u| (u, 1)).collect();
        let all = batches(&many, u64::MAX);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].uids.len(), BATCH_MAX);
    }

    #[test]
    fn an_oversized_message_is_a_batch_of_its_own() {
        let sizes: Vec<(u32, u64)> = vec![(1, 10), (2, 5_000), (3, 10), (4, 10)];
        let all = batches(&sizes, 1_000);
        assert_eq!(all.len(), 3);
        assert_eq!(
            (all[0].uids.as_slice(), all[0].oversized),
            (&[1][..], false)
        );
        assert_eq!((all[1].uids.as_slice(), all[1].oversized), (&[2][..], true));
        assert_eq!(
            (all[2].uids.as_slice(), all[2].oversized),
            (&[3, 4][..], false)
        );
    }

    #[test]
    fn a_large_fetch_gets_time_for_its_size() {
        assert_eq!(fetch_limit(0), COMMAND_TIMEOUT);
        // 25 MB at 32 KiB/s: ~13 minutes on top of the command timeout.
        let big = fetch_limit(25_000_000);
        assert!(big > COMMAND_TIMEOUT + Duration::from_secs(700), "{big:?}");
    }
}
