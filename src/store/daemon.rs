//! The daemon's own state: IMAP cursors and the outbox sender's claims.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_ts, ts, Store, StoreError};

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
    pub async fn cursor(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Option<(u32, u32)>, StoreError> {
        let row = sqlx::query(
            "SELECT uidvalidity, last_uid FROM mailbox_cursors WHERE mailbox = $1 AND folder = $2",
        )
        .bind(mailbox)
        .bind(folder)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => {
                let v: i64 = r.try_get("uidvalidity")?;
                let u: i64 = r.try_get("last_uid")?;
                Ok(Some((
                    u32::try_from(v).unwrap_or(0),
                    u32::try_from(u).unwrap_or(0),
                )))
            }
            None => Ok(None),
        }
    }

    pub async fn set_cursor(
        &self,
        mailbox: &str,
        folder: &str,
        uidvalidity: u32,
        last_uid: u32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mailbox_cursors (mailbox, folder, uidvalidity, last_uid, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (mailbox, folder) DO UPDATE
                SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,
                    updated_at = excluded.updated_at",
        )
        .bind(mailbox)
        .bind(folder)
        .bind(i64::from(uidvalidity))
        .bind(i64::from(last_uid))
        .bind(ts(now))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Claims up to `limit` due rows for `lease` seconds. A claim is a conditional update, so
    /// two senders (replicas) never take the same row; a crashed sender's lease simply expires
    /// and the row is sent again (at-least-once).
    pub async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_seconds: i64,
        limit: i64,
    ) -> Result<Vec<OutboxJob>, StoreError> {
        let due = sqlx::query(
            "SELECT id, next_attempt_at FROM outbox
              WHERE status = 'queued' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(ts(now))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut jobs = Vec::new();
        for row in due {
            let id: i64 = row.try_get("id")?;
            let was: i64 = row.try_get("next_attempt_at")?;
            let claimed = sqlx::query(
                "UPDATE outbox SET next_attempt_at = $1
                  WHERE id = $2 AND status = 'queued' AND next_attempt_at = $3",
            )
            .bind(ts(now) + lease_seconds)
            .bind(id)
            .bind(was)
            .execute(self.pool())
            .await?
            .rows_affected();
            if claimed != 1 {
                continue;
            }
            let r = sqlx::query(
                "SELECT recipients, raw, attempts, created_at FROM outbox WHERE id = $1",
            )
            .bind(id)
            .fetch_one(self.pool())
            .await?;
            let recipients: String = r.try_get("recipients")?;
            jobs.push(OutboxJob {
                id,
                recipients: recipients
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                raw: r.try_get("raw")?,
                attempts: r.try_get("attempts")?,
                created_at: from_ts(r.try_get("created_at")?),
            });
        }
        Ok(jobs)
    }

    /// When the next queued row falls due, if any.
    pub async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row =
            sqlx::query("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE status = 'queued'")
                .fetch_one(self.pool())
                .await?;
        Ok(row.try_get::<Option<i64>, _>("t")?.map(from_ts))
    }

    pub async fn outbox_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1, last_error = ''
              WHERE id = $2",
        )
        .bind(ts(now))
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn outbox_retry(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(ts(next_attempt_at))
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = $1 WHERE id = $2",
        )
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Puts a failed row back in the queue (admin action after fixing the cause).
    pub async fn outbox_requeue(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE outbox SET status = 'queued', next_attempt_at = $1, attempts = 0 WHERE id = $2 AND status = 'failed'",
        )
        .bind(ts(now))
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
