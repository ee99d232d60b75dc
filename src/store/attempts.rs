//! Poison-message isolation: IMAP messages whose fetch-and-process attempt began and did not
//! finish (table `intake_attempts`, migration 0007; the IMAP poller's rules are in `imap`).
//!
//! Each write is its own small transaction, committed before the message is fetched: with
//! WAL it survives a crash or `kill -9` of the process (a power cut may lose it, which costs
//! at most one more attempt).

use chrono::{DateTime, Utc};

use super::sql::Arg;
use super::{args, blocking, exec, query_all, ts, Store, StoreError};

/// A mailbox folder at one UIDVALIDITY: where a UID means one message.
#[derive(Debug, Clone, Copy)]
pub struct Folder<'a> {
    pub mailbox: &'a str,
    pub folder: &'a str,
    pub uidvalidity: u32,
}

/// One message's unfinished attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub uid: u32,
    /// 0: it was in a batch whose attempt did not finish; n: n attempts on it alone did not.
    pub attempts: u32,
    /// The failure seen, when the process lived to see it; empty after a crash or kill.
    pub last_error: String,
}

impl Store {
    /// The unfinished attempts in `f`. Rows of another UIDVALIDITY, or of UIDs at or below
    /// `cursor` (handled since, or gone), are deleted instead.
    pub fn attempts(&self, f: Folder<'_>, cursor: u32) -> Result<Vec<Attempt>, StoreError> {
        self.with_conn(|c| {
            let rows = query_all(
                c,
                "SELECT uidvalidity, uid, attempts, last_error FROM intake_attempts
                  WHERE mailbox = ?1 AND folder = ?2 ORDER BY uid",
                args![f.mailbox, f.folder],
                |r| {
                    let v: i64 = r.get("uidvalidity")?;
                    let uid: i64 = r.get("uid")?;
                    let n: i64 = r.get("attempts")?;
                    Ok((
                        v,
                        Attempt {
                            uid: u32::try_from(uid).unwrap_or(0),
                            attempts: u32::try_from(n).unwrap_or(0),
                            last_error: r.get("last_error")?,
                        },
                    ))
                },
            )?;
            let current = i64::from(f.uidvalidity);
            let live = |(v, a): &(i64, Attempt)| *v == current && a.uid > cursor;
            if !rows.iter().all(live) {
                exec(
                    c,
                    "DELETE FROM intake_attempts WHERE mailbox = ?1 AND folder = ?2
                        AND (uidvalidity <> ?3 OR uid <= ?4)",
                    args![f.mailbox, f.folder, current, i64::from(cursor)],
                )?;
            }
            Ok(rows.into_iter().filter(live).map(|(_, a)| a).collect())
        })
    }

    /// Records that an attempt at `uids` begins: a batch of several marks each (attempts
    /// stay as they are, 0 for a new row); an attempt at one message alone counts one more.
    pub fn begin_attempt(
        &self,
        f: Folder<'_>,
        uids: &[u32],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let alone = i64::from(uids.len() == 1);
        if self.is_postgres() {
            // The whole batch in one statement (one round trip, atomic by itself).
            let uids: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
            return self.with_conn(|c| {
                exec(
                    c,
                    "INSERT INTO intake_attempts (mailbox, folder, uidvalidity, uid, attempts, updated_at)
                     SELECT ?1, ?2, ?3, u, ?5, ?6 FROM UNNEST(?4::bigint[]) AS u
                     ON CONFLICT (mailbox, folder, uidvalidity, uid) DO UPDATE
                        SET attempts = intake_attempts.attempts + excluded.attempts,
                            updated_at = excluded.updated_at",
                    args![
                        f.mailbox,
                        f.folder,
                        i64::from(f.uidvalidity),
                        uids,
                        alone,
                        ts(now)
                    ],
                )
                .map(drop)
            });
        }
        self.each_uid(
            f,
            uids,
            "INSERT INTO intake_attempts (mailbox, folder, uidvalidity, uid, attempts, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (mailbox, folder, uidvalidity, uid) DO UPDATE
                SET attempts = intake_attempts.attempts + excluded.attempts,
                    updated_at = excluded.updated_at",
            args![alone, ts(now)],
        )
    }

    /// Notes the failure an attempt at `uids` ended with (the process lived to see it).
    pub fn attempt_failed(
        &self,
        f: Folder<'_>,
        uids: &[u32],
        error: &str,
    ) -> Result<(), StoreError> {
        self.each_uid(
            f,
            uids,
            "UPDATE intake_attempts SET last_error = ?5
              WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
            args![error],
        )
    }

    /// Takes back [`Store::begin_attempt`] for `uids` of an attempt that ended for no fault of
    /// theirs (the database unavailable; not reached in their batch): a batch's marks are
    /// deleted, a lone attempt is counted one less.
    pub fn undo_attempt(&self, f: Folder<'_>, uids: &[u32], alone: bool) -> Result<(), StoreError> {
        let sql = if alone {
            "UPDATE intake_attempts SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
              WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4"
        } else {
            "DELETE FROM intake_attempts
              WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4 AND attempts = 0"
        };
        self.each_uid(f, uids, sql, args![])
    }

    /// Forgets the attempts at `uids`: they are committed (stored or quarantined).
    pub fn end_attempt(&self, f: Folder<'_>, uids: &[u32]) -> Result<(), StoreError> {
        if self.is_postgres() {
            let uids: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
            return self.with_conn(|c| {
                exec(
                    c,
                    "DELETE FROM intake_attempts
                      WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ANY(?4)",
                    args![f.mailbox, f.folder, i64::from(f.uidvalidity), uids],
                )
                .map(drop)
            });
        }
        self.each_uid(
            f,
            uids,
            "DELETE FROM intake_attempts
              WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
            args![],
        )
    }

    /// Runs `sql` once for each of `uids`, in one transaction: `?1`–`?4` are the folder
    /// and the UID, `?5` onwards `extra`.
    fn each_uid(
        &self,
        f: Folder<'_>,
        uids: &[u32],
        sql: &str,
        extra: &[Arg<'_>],
    ) -> Result<(), StoreError> {
        blocking(|| {
            let tx = self.begin()?;
            for &uid in uids {
                let key = [
                    Arg::Text(Some(f.mailbox)),
                    Arg::Text(Some(f.folder)),
                    Arg::Int(Some(i64::from(f.uidvalidity))),
                    Arg::Int(Some(i64::from(uid))),
                ];
                exec(tx.conn(), sql, &[&key[..], extra].concat())?;
            }
            tx.commit()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    fn counts(v: &[Attempt]) -> Vec<(u32, u32)> {
        v.iter().map(|a| (a.uid, a.attempts)).collect()
    }

    #[tokio::test]
    async fn attempts_are_counted_taken_back_and_forgotten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = store(&dir).await;
        let now = Utc::now();
        let f = Folder {
            mailbox: "support",
            folder: "INBOX",
            uidvalidity: 7,
        };
        // A batch that did not finish marks its messages without counting.
        s.begin_attempt(f, &[3, 4, 5], now).expect("begin");
        assert_eq!(
            counts(&s.attempts(f, 0).expect("rows")),
            vec![(3, 0), (4, 0), (5, 0)]
        );
        // Alone, each attempt counts.
        s.begin_attempt(f, &[4], now).expect("begin");
        s.begin_attempt(f, &[4], now).expect("begin");
        s.attempt_failed(f, &[4], "IMAP: connection closed")
            .expect("failed");
        let rows = s.attempts(f, 0).expect("rows");
        assert_eq!(counts(&rows), vec![(3, 0), (4, 2), (5, 0)]);
        assert_eq!(rows[1].last_error, "IMAP: connection closed");
        // Taken back: the batch mark goes, the lone attempt counts one less.
        s.undo_attempt(f, &[5], false).expect("undo");
        s.undo_attempt(f, &[4], true).expect("undo");
        assert_eq!(
            counts(&s.attempts(f, 0).expect("rows")),
            vec![(3, 0), (4, 1)]
        );
        // Committed: forgotten.
        s.end_attempt(f, &[3]).expect("end");
        assert_eq!(counts(&s.attempts(f, 0).expect("rows")), vec![(4, 1)]);
        // Another folder or UIDVALIDITY is another message.
        let other = Folder {
            uidvalidity: 8,
            ..f
        };
        s.begin_attempt(other, &[9], now).expect("begin");
        assert_eq!(counts(&s.attempts(other, 0).expect("rows")), vec![(9, 1)]);
        // ... and the old UIDVALIDITY's rows are pruned once the folder moved on.
        assert_eq!(
            s.with_conn(|c| crate::store::query_one(
                c,
                "SELECT COUNT(*) AS n FROM intake_attempts",
                args![],
                |r| r.get::<i64>("n")
            ))
            .expect("count"),
            1
        );
        // Rows at or below the cursor are pruned too.
        s.begin_attempt(other, &[10], now).expect("begin");
        assert_eq!(counts(&s.attempts(other, 9).expect("rows")), vec![(10, 1)]);
        assert_eq!(counts(&s.attempts(other, 0).expect("rows")), vec![(10, 1)]);
    }
}
