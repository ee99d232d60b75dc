//! One sync of a mailbox: everything above the UID cursor fetched in bounded batches, run
//! through the pipeline, then flagged or moved, and the cursor advanced over what was
//! committed; poison messages set aside (see [`sync`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::batches::{batches, uid_set, Batch, Kind, BATCH_BYTES, POISON_AFTER};
use super::connect::ImapSession;
use super::{bounded, bounded_for, drain_unsolicited, fetch_limit, Caps, ImapError};
use crate::config::Mailbox;
use crate::pipeline::{Action, Outcome, Pipeline, PipelineError, Prepared, Source};
use crate::store::{Attempt, Folder, Store};
use crate::tasks::{Heartbeat, Shared};

/// What one sync did.
#[derive(Debug, Default)]
pub(super) struct Synced {
    /// Messages committed (or quarantined) and moved or flagged.
    pub(super) processed: usize,
    /// New mail was announced while we worked.
    pub(super) announced: bool,
    /// False when the sync stopped early: shutdown, or a message the server did not return.
    pub(super) complete: bool,
}

/// Fetches and processes everything above the cursor, in UID order, in bounded batches.
/// The cursor only ever moves over a prefix of UIDs that were all committed and moved.
///
/// # Poison messages
/// Every batch's attempt is recorded in the database before its FETCH and forgotten once its
/// messages are committed ([`Store::begin_attempt`], [`Store::end_attempt`]). A message left
/// with an unfinished attempt — the process crashed or was killed (the watchdog included),
/// the connection broke or the FETCH timed out or could not be parsed — is fetched and
/// processed alone at the next sync, so that its next failure is its own. After
/// [`POISON_AFTER`] unfinished attempts alone it is quarantined without being processed: its
/// header is fetched alone and stored with the reason (if that fails too, a record naming the
/// UID), and the message goes to the quarantine folder, so the mailbox goes on.
///
/// Falling back to smaller fetches happens across connections: async-imap closes a session's
/// stream on a response it cannot parse, and a server that cannot produce a message may drop
/// the connection (Dovecot does for a maildir file whose size is not the one in its name), so
/// the count in the database carries the evidence from one session to the next. A database
/// that is unavailable is no message's fault: such an attempt is taken back.
pub(super) async fn sync(
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
    let folder = Folder {
        mailbox: &m.name,
        folder: &m.folder,
        uidvalidity,
    };
    let attempts: HashMap<u32, Attempt> = store
        .attempts(folder, last)?
        .into_iter()
        .map(|a| (a.uid, a))
        .collect();
    // New mail by SEARCH first: its answer is only numbers, so a message whose FETCH the
    // server cannot produce is still listed, and isolated, instead of cutting off the list
    // (and all mail after it) at every sync. \Deleted mail is someone's deletion (or our own
    // copy left behind by a server without UID EXPUNGE): not new mail.
    let listed: Vec<u32> = {
        let found = bounded(
            hb,
            "UID SEARCH",
            session.uid_search(format!("UID {}:* UNDELETED", last.saturating_add(1))),
        )
        .await?;
        // `N:*` always matches the last message, even below N.
        let mut v: Vec<u32> = found.into_iter().filter(|uid| *uid > last).collect();
        v.sort_unstable();
        v
    };
    if listed.is_empty() {
        if store.cursor(&m.name, &m.folder)? != Some((uidvalidity, last)) {
            store.set_cursor(&m.name, &m.folder, uidvalidity, last, shared.now())?;
        }
        return Ok(synced);
    }
    let poisoned = |uid: &u32| {
        attempts
            .get(uid)
            .is_some_and(|a| a.attempts >= POISON_AFTER)
    };
    // Sizes, so a batch never holds more than BATCH_BYTES of mail in memory (not of poison
    // messages: their FETCH may be what fails). Each response is dropped as soon as it is
    // read: async-imap's responses keep the read buffer they were parsed from, so collecting
    // 10,000 of them held ~80 MB.
    let to_size: Vec<u32> = listed.iter().copied().filter(|u| !poisoned(u)).collect();
    let mut sizes: HashMap<u32, u64> = HashMap::new();
    let listing: Result<(), ImapError> = async {
        if to_size.is_empty() {
            return Ok(());
        }
        let mut stream = bounded(
            hb,
            "UID FETCH sizes",
            session.uid_fetch(uid_set(&to_size), "(UID RFC822.SIZE)"),
        )
        .await?;
        while let Some(f) = bounded(hb, "UID FETCH sizes", stream.try_next()).await? {
            if let (Some(uid), Some(size)) = (f.uid, f.size) {
                sizes.entry(uid).or_insert(u64::from(size));
            }
        }
        Ok(())
    }
    .await;
    let first_unlisted = to_size.iter().find(|uid| !sizes.contains_key(uid)).copied();
    match (listing, first_unlisted) {
        (Ok(()), None) => {}
        // A timeout says nothing about any one message (and leaves the session unusable).
        (Err(e @ ImapError::Timeout(_)), _) | (Err(e), None) => return Err(e),
        (result, Some(first)) => {
            // A server may end a FETCH early by closing the connection on a message it
            // cannot read (async-imap then reports a short answer, not an error), or answer
            // it with an error, or with a response async-imap cannot parse (which closes
            // the session's stream). The listing stopped at that message: when the session
            // is gone, it is the one to count. Otherwise the server merely left messages
            // out, and they go alone.
            if bounded(hb, "NOOP", session.noop()).await.is_err() {
                let why = match result {
                    Ok(()) => format!(
                        "the server closed the connection while listing the size of UID {first}"
                    ),
                    Err(e) => format!("listing the size of UID {first} failed: {e}"),
                };
                store.begin_attempt(folder, &[first], shared.now())?;
                store.attempt_failed(folder, &[first], &why)?;
                return Err(ImapError::Protocol(why));
            }
        }
    }
    // A message of unknown size (expunged meanwhile; left out by the server) gets a batch of
    // its own.
    let sized: Vec<(u32, u64)> = listed
        .iter()
        .map(|uid| (*uid, sizes.get(uid).copied().unwrap_or(BATCH_BYTES)))
        .collect();
    debug!(count = sized.len(), "new messages");
    let max_bytes = shared.pipeline().await.config.limits.max_message_bytes;
    for Batch {
        uids: batch,
        bytes,
        kind,
    } in batches(&sized, max_bytes, &attempts)
    {
        let alone = batch.len() == 1;
        // Recorded (committed) before the FETCH: should the process die from here until the
        // commit, the next sync knows.
        store.begin_attempt(folder, &batch, shared.now())?;
        // An oversized message is not downloaded: its header is kept with the reason, and
        // the message itself goes to the quarantine folder, intact. So is a poison message's,
        // unless fetching its header failed before too.
        let query = match kind {
            Kind::Whole => Some("(UID INTERNALDATE BODY.PEEK[])"),
            Kind::Oversized => Some("(UID INTERNALDATE BODY.PEEK[HEADER])"),
            Kind::Poison { attempts } if attempts <= POISON_AFTER => {
                Some("(UID INTERNALDATE BODY.PEEK[HEADER])")
            }
            Kind::Poison { .. } => None,
        };
        let set = uid_set(&batch);
        let fetched = match query {
            None => Vec::new(),
            Some(query) => {
                let answer: Result<Vec<_>, ImapError> = async {
                    let stream = bounded(hb, "UID FETCH", session.uid_fetch(&set, query)).await?;
                    bounded_for(
                        hb,
                        "UID FETCH",
                        fetch_limit(bytes.min(max_bytes)),
                        stream.try_collect::<Vec<_>>(),
                    )
                    .await
                }
                .await;
                match answer {
                    Ok(fetched) => fetched,
                    Err(e) => {
                        // The attempt stays counted; the session ends and reconnects.
                        let _ = store.attempt_failed(folder, &batch, &e.to_string());
                        return Err(e);
                    }
                }
            }
        };
        // By UID, first answer wins; answers without the requested data (a flag update sent
        // during our FETCH) are not messages.
        let mut by_uid = std::collections::BTreeMap::new();
        for f in &fetched {
            let data = if kind == Kind::Whole {
                f.body()
            } else {
                f.header()
            };
            if let (Some(uid), Some(raw)) = (f.uid, data) {
                by_uid.entry(uid).or_insert((raw, f));
            }
        }
        // The prefix of the batch the server returned, in UID order. A message not returned
        // (expunged meanwhile, or a server error) and every later one wait for the next
        // sync, so the cursor never passes it; its attempt stays counted (a server that
        // cannot produce it makes it a poison message), the later ones' are taken back. A
        // poison message is set aside with whatever of it was returned, even nothing.
        let mut present = Vec::new();
        for (i, &uid) in batch.iter().enumerate() {
            let Some(&(raw, f)) = by_uid.get(&uid) else {
                if let Kind::Poison { .. } = kind {
                    present.push((uid, &[][..], None));
                    continue;
                }
                debug!(
                    uid,
                    "message not returned by FETCH; retrying at the next sync"
                );
                synced.complete = false;
                let _ = store.attempt_failed(folder, &[uid], "not in the server's FETCH answer");
                if let Some(later) = batch.get(i + 1..).filter(|l| !l.is_empty()) {
                    store.undo_attempt(folder, later, false)?;
                }
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
        let result = match (kind, items.first()) {
            (_, None) => Ok(Vec::new()),
            (Kind::Poison { attempts: tried }, Some(&(raw, source))) => {
                let earlier = batch.first().and_then(|uid| attempts.get(uid));
                let reason = poison_reason(
                    tried,
                    earlier.map_or("", |a| a.last_error.as_str()),
                    !raw.is_empty(),
                    source.uid.unwrap_or(0),
                    uidvalidity,
                    &m.quarantine_folder,
                );
                pipeline
                    .set_aside(store, raw, &reason, source)
                    .map(|o| vec![o])
            }
            (Kind::Oversized, Some(&(raw, source))) => {
                let reason = format!(
                    "{}; only its header is stored, the message is in the IMAP folder {}",
                    pipeline.too_large(bytes).unwrap_or_default(),
                    m.quarantine_folder
                );
                pipeline
                    .set_aside(store, raw, &reason, source)
                    .map(|o| vec![o])
            }
            // One transaction for the batch. The database being unavailable leaves the whole
            // batch where it is, to be retried later; anything else a message fails on sets
            // that one message aside (see Pipeline::commit_batch).
            (Kind::Whole, Some(_)) => ingest_guarded(&pipeline, store, &items, hb),
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
            Err(e) => {
                if e.is_transient() {
                    // Not these messages' fault: no attempt of theirs to count.
                    let tried: Vec<u32> = present.iter().map(|(uid, ..)| *uid).collect();
                    let _ = store.undo_attempt(folder, &tried, alone);
                }
                failure = Some(e);
            }
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
        let handled: Vec<u32> = done.iter().chain(&quarantined).copied().collect();
        if !handled.is_empty() {
            store.make_durable(shared.now())?;
            store.end_attempt(folder, &handled)?;
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
        if let Some(&max) = handled.iter().max() {
            last = last.max(max);
            store.set_cursor(&m.name, &m.folder, uidvalidity, last, shared.now())?;
        }
        synced.processed += handled.len();
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

/// Why a poison message is quarantined: `attempts` unfinished attempts alone, the failure
/// last seen (empty after a crash or kill), and what of it is kept.
fn poison_reason(
    attempts: u32,
    last_error: &str,
    header_kept: bool,
    uid: u32,
    uidvalidity: u32,
    quarantine_folder: &str,
) -> String {
    let cause = if last_error.is_empty() {
        "the process crashed or was killed while working on it".to_string()
    } else {
        format!("last failure: {last_error}")
    };
    let kept = if header_kept {
        "only its header is stored".to_string()
    } else {
        format!(
            "unparseable or failed FETCH response: nothing of it could be read (UID {uid}, \
             UIDVALIDITY {uidvalidity})"
        )
    };
    format!(
        "poison message: {attempts} attempts to fetch and process it alone did not finish \
         ({cause}); {kept}; the message is in the IMAP folder {quarantine_folder}"
    )
}

/// The pipeline on a batch: prepared (each message within its time budget, reporting
/// progress to the watchdog as it goes), then committed, with a panic in the transaction (a
/// bug: the pipeline is written not to panic on any input) contained: the batch is then run
/// again one message at a time, and the message that panics is set aside, so the mailbox goes
/// on. A panic while preparing is caught on the preparation thread already.
fn ingest_guarded(
    pipeline: &Pipeline,
    store: &Store,
    items: &[(&[u8], Source<'_>)],
    hb: &Heartbeat,
) -> Result<Vec<Outcome>, PipelineError> {
    let started = std::time::Instant::now();
    let outcomes = ingest_guarded_batch(pipeline, store, items, hb)?;
    crate::pipeline::count_ingested(&outcomes, started);
    Ok(outcomes)
}

fn ingest_guarded_batch(
    pipeline: &Pipeline,
    store: &Store,
    items: &[(&[u8], Source<'_>)],
    hb: &Heartbeat,
) -> Result<Vec<Outcome>, PipelineError> {
    let prepared = pipeline.prepare_batch(items, &|| hb.beat())?;
    let guarded = |items: &[(&[u8], Source<'_>)], prepared: &[Prepared]| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline.commit_batch(store, items, prepared)
        }))
    };
    if let Ok(result) = guarded(items, &prepared) {
        return result;
    }
    let mut outcomes = Vec::with_capacity(items.len());
    for (item, prepared) in items.iter().zip(&prepared) {
        match guarded(std::slice::from_ref(item), std::slice::from_ref(prepared)) {
            Ok(result) => outcomes.extend(result?),
            Err(_) => {
                let reason = "supportd panicked on this message (a bug; please report it)";
                outcomes.push(pipeline.set_aside(store, item.0, reason, item.1)?);
            }
        }
    }
    Ok(outcomes)
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
    fn a_poison_reason_says_what_happened_and_where_the_message_is() {
        let r = poison_reason(2, "", true, 7, 99, "Quarantine");
        assert!(r.starts_with("poison message: 2 attempts"), "{r}");
        assert!(r.contains("crashed or was killed"), "{r}");
        assert!(r.contains("only its header is stored"), "{r}");
        assert!(r.ends_with("in the IMAP folder Quarantine"), "{r}");
        let r = poison_reason(3, "timed out during UID FETCH", false, 7, 99, "Quarantine");
        assert!(
            r.contains("last failure: timed out during UID FETCH"),
            "{r}"
        );
        assert!(r.contains("unparseable or failed FETCH response"), "{r}");
        assert!(r.contains("UID 7, UIDVALIDITY 99"), "{r}");
    }
}
