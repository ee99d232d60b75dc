//! The SQL behind agent notifications (issue 9): the attachments a notification links to,
//! and the per-sender record of notifications that lets a flood collapse into digests
//! (`agent_notices`, migration 0008). SQLite, like `queries.rs`.

use chrono::{DateTime, Utc};

use super::{args, exec, from_ts, query_all, query_one, ts, StoreError, Tx};
use crate::tickets::notify::StoredAttachment;

/// A notification held back for a digest, not yet listed in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotice {
    pub id: i64,
    pub ticket_id: i64,
    /// `new-ticket` | `customer-reply` (see `NotifyEvent::as_str`).
    pub event: String,
    pub at: DateTime<Utc>,
}

impl Tx {
    /// The attachments stored with the message `message_id` (ids for their web links).
    pub fn message_attachments(
        &mut self,
        message_id: &str,
    ) -> Result<Vec<StoredAttachment>, StoreError> {
        query_all(
            self.conn(),
            "SELECT a.id, a.filename, a.content_type, a.size FROM attachments a
               JOIN messages m ON m.id = a.message_row WHERE m.message_id = ?1 ORDER BY a.id",
            args![message_id],
            |r| {
                Ok(StoredAttachment {
                    id: r.get("id")?,
                    filename: r.get("filename")?,
                    content_type: r.get("content_type")?,
                    size: u64::try_from(r.get::<i64>("size")?).unwrap_or(0),
                })
            },
        )
    }

    /// How many Cc collaborators a ticket has.
    pub fn collaborator_count(&mut self, ticket_id: i64) -> Result<u32, StoreError> {
        query_one(
            self.conn(),
            "SELECT COUNT(*) AS n FROM participants WHERE ticket_id = ?1",
            args![ticket_id],
            |r| Ok(u32::try_from(r.get::<i64>("n")?).unwrap_or(u32::MAX)),
        )
    }

    /// For `sender_key`: how many individual notifications it caused since `since`, and when
    /// the oldest notification held for its digest was held, if one is. One round trip per
    /// notified mail; each part reads a short index range (`agent_notices_sender`, at most the
    /// limit's worth of rows; `agent_notices_pending`, the first row).
    pub fn notice_state(
        &mut self,
        sender_key: &str,
        since: DateTime<Utc>,
    ) -> Result<(u32, Option<DateTime<Utc>>), StoreError> {
        query_one(
            self.conn(),
            "SELECT (SELECT COUNT(*) FROM agent_notices
                      WHERE sender_key = ?1 AND held = 0 AND at > ?2) AS sent,
                    (SELECT at FROM agent_notices
                      WHERE sender_key = ?1 AND held = 1 AND digested_at IS NULL
                      ORDER BY id LIMIT 1) AS oldest",
            args![sender_key, ts(since)],
            |r| {
                Ok((
                    u32::try_from(r.get::<i64>("sent")?).unwrap_or(u32::MAX),
                    r.get::<Option<i64>>("oldest")?.map(from_ts),
                ))
            },
        )
    }

    /// Records a notification about `ticket_id` caused by `sender_key`: sent now, or `held`
    /// for a digest.
    pub fn record_notice(
        &mut self,
        sender_key: &str,
        ticket_id: i64,
        event: &str,
        at: DateTime<Utc>,
        held: bool,
    ) -> Result<(), StoreError> {
        if let Some(c) = self.holder() {
            c.defer(|d| d.notice(sender_key, ticket_id, event, ts(at), held));
            return Ok(());
        }
        exec(
            self.conn(),
            "INSERT INTO agent_notices (sender_key, ticket_id, event, at, held)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![sender_key, ticket_id, event, ts(at), i64::from(held)],
        )?;
        Ok(())
    }

    /// The notifications held for `sender_key`'s digest, oldest first.
    pub fn pending_notices(&mut self, sender_key: &str) -> Result<Vec<PendingNotice>, StoreError> {
        query_all(
            self.conn(),
            "SELECT id, ticket_id, event, at FROM agent_notices
              WHERE sender_key = ?1 AND held = 1 AND digested_at IS NULL ORDER BY id",
            args![sender_key],
            |r| {
                Ok(PendingNotice {
                    id: r.get("id")?,
                    ticket_id: r.get("ticket_id")?,
                    event: r.get("event")?,
                    at: from_ts(r.get("at")?),
                })
            },
        )
    }

    /// Senders whose oldest held notification was held at or before `cutoff`.
    pub fn senders_with_due_digests(
        &mut self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        query_all(
            self.conn(),
            "SELECT sender_key FROM agent_notices WHERE held = 1 AND digested_at IS NULL
              GROUP BY sender_key HAVING MIN(at) <= ?1 ORDER BY MIN(id)",
            args![ts(cutoff)],
            |r| r.get::<String>("sender_key"),
        )
    }

    /// Marks held notifications as listed in a digest queued at `at`.
    pub fn mark_digested(&mut self, ids: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
        for id in ids {
            exec(
                self.conn(),
                "UPDATE agent_notices SET digested_at = ?1 WHERE id = ?2",
                args![ts(at), id],
            )?;
        }
        Ok(())
    }
}
