//! The daemon's own state: IMAP cursors and the outbox sender's claims.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{exec, from_ts, query_all, query_one, query_opt, ts, Store, StoreError};

/// One outbox row claimed for delivery.
#[derive(Debug, Clone)]
pub struct OutboxJob {
    pub id: i64,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// (UIDVALIDITY, last committed UID) of a mailbox folder.
    pub fn cursor(&self, mailbox: &str, folder: &str) -> Result<Option<(u32, u32)>, StoreError> {
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT uidvalidity, last_uid FROM mailbox_cursors WHERE mailbox = ?1 AND folder = ?2",
                params![mailbox, folder],
                |r| {
                    let v: i64 = r.get("uidvalidity")?;
                    let u: i64 = r.get("last_uid")?;
                    Ok((u32::try_from(v).unwrap_or(0), u32::try_from(u).unwrap_or(0)))
                },
            )
        })
    }

    /// Makes every transaction committed so far survive a power cut: commits one small write
    /// with `synchronous = FULL`, which syncs the WAL holding all earlier commits (they were
    /// committed with NORMAL: safe from crashes, not from power loss). Call it before mail
    /// leaves the IMAP inbox or the MTA is told the mail was taken: one sync per batch.
    pub fn make_durable(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute_batch("PRAGMA synchronous = FULL")?;
            let written = exec(
                c,
                "INSERT INTO durability_marks (id, synced_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET synced_at = excluded.synced_at",
                params![ts(now)],
            );
            // The pooled connection goes back to NORMAL whatever happened.
            let reset = c.execute_batch("PRAGMA synchronous = NORMAL");
            written?;
            reset?;
            Ok(())
        })
    }

    pub fn set_cursor(
        &self,
        mailbox: &str,
        folder: &str,
        uidvalidity: u32,
        last_uid: u32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "INSERT INTO mailbox_cursors (mailbox, folder, uidvalidity, last_uid, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (mailbox, folder) DO UPDATE
                    SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,
                        updated_at = excluded.updated_at",
                params![
                    mailbox,
                    folder,
                    i64::from(uidvalidity),
                    i64::from(last_uid),
                    ts(now)
                ],
            )?;
            Ok(())
        })
    }

    /// Claims up to `limit` due rows for `lease` seconds (plus their upload allowance) by
    /// moving their due time past the lease, so two senders never take the same row; a
    /// crashed sender's lease simply expires and the row is sent again (at-least-once).
    pub fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_seconds: i64,
        slow_link_bytes_per_second: u64,
        limit: i64,
    ) -> Result<Vec<OutboxJob>, StoreError> {
        // A large mail's lease grows with its size (it may take that long to upload).
        let per_second = i64::try_from(slow_link_bytes_per_second.max(1)).unwrap_or(i64::MAX);
        // One statement: SQLite runs it under the write lock, so the rows it picks are
        // claimed by no one else in between (and a sender costs one write per claim).
        self.with_conn(|c| {
            let mut jobs = query_all(
                c,
                "UPDATE outbox SET next_attempt_at = ?1 + length(raw) / ?2
                  WHERE id IN (SELECT id FROM outbox
                                WHERE status = 'queued' AND next_attempt_at <= ?3
                                ORDER BY next_attempt_at, id LIMIT ?4)
                 RETURNING id, raw, attempts, created_at",
                params![ts(now) + lease_seconds, per_second, ts(now), limit],
                |r| {
                    Ok(OutboxJob {
                        id: r.get("id")?,
                        recipients: Vec::new(),
                        raw: r.get("raw")?,
                        attempts: r.get("attempts")?,
                        created_at: from_ts(r.get("created_at")?),
                    })
                },
            )?;
            // The stored list, address by address (migration 0008): never a string split on
            // commas, which a quoted local part may contain.
            for job in &mut jobs {
                job.recipients = query_all(
                    c,
                    "SELECT address FROM outbox_recipients WHERE outbox_id = ?1 ORDER BY position",
                    params![job.id],
                    |r| Ok(r.get::<_, String>("address")?),
                )?;
            }
            Ok(jobs)
        })
    }

    /// When the next queued row falls due, if any.
    pub fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with_conn(|c| {
            query_one(
                c,
                "SELECT MIN(next_attempt_at) AS t FROM outbox WHERE status = 'queued'",
                params![],
                |r| Ok(r.get::<_, Option<i64>>("t")?.map(from_ts)),
            )
        })
    }

    pub fn outbox_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "UPDATE outbox SET status = 'sent', sent_at = ?1, attempts = attempts + 1, last_error = ''
                  WHERE id = ?2",
                params![ts(now), id],
            )?;
            Ok(())
        })
    }

    pub fn outbox_retry(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?1, last_error = ?2 WHERE id = ?3",
                params![ts(next_attempt_at), error, id],
            )?;
            Ok(())
        })
    }

    pub fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?1 WHERE id = ?2",
                params![error, id],
            )?;
            Ok(())
        })
    }

    /// Puts a failed row back in the queue (admin action after fixing the cause).
    pub fn outbox_requeue(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            let n = exec(
                c,
                "UPDATE outbox SET status = 'queued', next_attempt_at = ?1, attempts = 0 WHERE id = ?2 AND status = 'failed'",
                params![ts(now), id],
            )?;
            Ok(n == 1)
        })
    }
}
