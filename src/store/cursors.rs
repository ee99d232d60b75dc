//! IMAP intake checkpoints and the durability barrier before mail leaves the inbox.

use chrono::{DateTime, Utc};

use super::{args, exec, query_opt, ts, Store, StoreError};

impl Store {
    /// (UIDVALIDITY, last committed UID) of a mailbox folder.
    pub fn cursor(&self, mailbox: &str, folder: &str) -> Result<Option<(u32, u32)>, StoreError> {
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT uidvalidity, last_uid FROM mailbox_cursors WHERE mailbox = ?1 AND folder = ?2",
                args![mailbox, folder],
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
        self.with_conn(|db| {
            // PostgreSQL's commits are durable already (synchronous_commit).
            let super::Db::Lite(c) = db else {
                return Ok(());
            };
            c.execute_batch("PRAGMA synchronous = FULL")?;
            let written = exec(
                db,
                "INSERT INTO durability_marks (id, synced_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET synced_at = excluded.synced_at",
                args![ts(now)],
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
                args![
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
}
