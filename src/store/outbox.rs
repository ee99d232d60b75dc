//! The outbox: every outbound mail is a row here first; the sender task claims, sends and
//! settles them; bounces find their row; agents' mail is remembered for the agent channel.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::deferred::HeldMail;
use super::sql::ToArg;
use super::NewMessage;
use super::{
    args, blob_param, exec, fill_blob, from_ts, query_all, query_one, query_opt, rfc3339,
    ticket_summary, ts, Store, StoreError, Tx,
};
use crate::mail::address::EmailAddress;
use crate::tickets::TicketSummary;

/// A mail to send.
#[derive(Debug, Clone)]
pub struct NewOutbox<'a> {
    pub ticket_id: Option<i64>,
    pub kind: &'a str,
    pub message_id: &'a str,
    /// The envelope recipients, in order: stored as a list (`outbox_recipients`), each with
    /// its rate key, and shown comma-joined by `outbox list`.
    pub recipients: &'a [EmailAddress],
    pub subject: &'a str,
    pub raw: &'a [u8],
    pub created_at: DateTime<Utc>,
}

/// A queued mail as it goes on its ticket's history (an outbound message row with the
/// outbox row's Message-ID, kind, subject and time).
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    pub author: &'a str,
    pub author_id: Option<i64>,
    /// The text shown in the history (the mail's body).
    pub body: &'a str,
}

/// `outbox list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub ticket: Option<i64>,
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: String,
}

/// One outbox row claimed for delivery.
#[derive(Debug, Clone)]
pub struct OutboxJob {
    pub id: i64,
    /// Its kind (`ack`, ...), for the delivery-latency metric.
    pub kind: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
}

impl Tx {
    /// The outbox row one of `ids` names (a bounce's original), with its ticket.
    pub fn outbox_by_message_ids(
        &mut self,
        ids: &[String],
    ) -> Result<Option<(i64, TicketSummary)>, StoreError> {
        for id in ids {
            let found = query_opt(
                self.conn(),
                "SELECT o.id AS outbox_id, t.id, t.number, t.status, t.closed_at FROM outbox o
                   JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id = ?1",
                args![id.as_str()],
                |row| Ok((row.get::<i64>("outbox_id")?, ticket_summary(row)?)),
            )?;
            if let Some((outbox_id, t)) = found {
                let t = self.with_participants(t)?;
                return Ok(Some((outbox_id, t)));
            }
        }
        Ok(None)
    }

    /// Records that `message_id` went to agents only (see [`Tx::ticket_by_agent_mail`]).
    pub fn record_agent_mail(
        &mut self,
        message_id: &str,
        ticket_id: i64,
    ) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "INSERT INTO agent_mail (message_id, ticket_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            args![message_id, ticket_id],
        )?;
        Ok(())
    }

    pub fn queue_outbox(&mut self, o: &NewOutbox<'_>) -> Result<(), StoreError> {
        self.queue_mail(o, false, None)
    }

    /// Queues a mail: its outbox row with its recipients, and when `o` has a ticket, its
    /// record as mail to agents only (`to_agents`, see [`Tx::ticket_by_agent_mail`]) and its
    /// place on the ticket's history (`history`). On PostgreSQL, where each statement is a
    /// round trip, the rows are held back and written with the transaction's next statement
    /// (see `deferred`); on SQLite, one statement per row, at once.
    pub fn queue_mail(
        &mut self,
        o: &NewOutbox<'_>,
        to_agents: bool,
        history: Option<&Outbound<'_>>,
    ) -> Result<(), StoreError> {
        let shown: Vec<String> = o.recipients.iter().map(EmailAddress::key).collect();
        let to_agents = to_agents && o.ticket_id.is_some();
        let history = history.filter(|_| o.ticket_id.is_some());
        // A blob SQLite could not hold is refused on both backends alike.
        let (raw, at) = (blob_param(o.raw)?, ts(o.created_at));
        if let Some(c) = self.holder() {
            let recipients = shown
                .into_iter()
                .zip(o.recipients.iter().map(EmailAddress::rate_key))
                .collect();
            c.defer(|d| {
                d.mail(HeldMail {
                    ticket: o.ticket_id,
                    kind: o.kind,
                    message_id: o.message_id,
                    recipients,
                    subject: o.subject,
                    raw: o.raw,
                    at,
                    to_agents,
                    history: history.map(|h| (h.author, h.author_id, h.body)),
                })
            });
            return Ok(());
        }
        let conn = self.conn();
        let joined = shown.join(",");
        let row = [
            o.ticket_id.to_arg(),
            o.kind.to_arg(),
            o.message_id.to_arg(),
            joined.to_arg(),
            o.subject.to_arg(),
            raw,
            at.to_arg(),
        ];
        let id = query_one(
            conn,
            "INSERT INTO outbox (ticket_id, kind, message_id, recipients, subject, raw, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
            &row,
            |row| row.get("id"),
        )?;
        fill_blob(conn, "outbox", "raw", id, o.raw)?;
        for (position, (address, r)) in shown.iter().zip(o.recipients).enumerate() {
            exec(
                conn,
                "INSERT INTO outbox_recipients (outbox_id, position, address, rate_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                args![
                    id,
                    i64::try_from(position).unwrap_or(i64::MAX),
                    address,
                    r.rate_key(),
                    ts(o.created_at)
                ],
            )?;
        }
        if let Some(ticket) = o.ticket_id {
            if to_agents {
                self.record_agent_mail(o.message_id, ticket)?;
            }
            if let Some(h) = history {
                self.insert_message(&NewMessage {
                    ticket_id: ticket,
                    message_id: o.message_id,
                    direction: "outbound",
                    kind: o.kind,
                    author: h.author,
                    author_id: h.author_id,
                    internal: false,
                    subject: o.subject,
                    body: h.body,
                    raw: None,
                    created_at: o.created_at,
                })?;
            }
        }
        Ok(())
    }

    pub fn fail_outbox(&mut self, id: i64, error: &str) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE outbox SET status = 'failed', last_error = ?1 WHERE id = ?2",
            args![error, id],
        )?;
        Ok(())
    }
}

impl Store {
    pub fn list_outbox(&self) -> Result<Vec<OutboxItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT o.id, t.number, o.kind, o.recipients, o.subject, o.status, o.attempts, o.last_error, o.created_at
                   FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id ORDER BY o.id",
                args![],
                |r| {
                    Ok(OutboxItem {
                        id: r.get("id")?,
                        ticket: r.get("number")?,
                        kind: r.get("kind")?,
                        to: r.get("recipients")?,
                        subject: r.get("subject")?,
                        status: r.get("status")?,
                        attempts: r.get("attempts")?,
                        last_error: r.get("last_error")?,
                        created_at: rfc3339(r.get("created_at")?),
                    })
                },
            )
        })
    }

    /// The exact bytes of an outbox mail.
    pub fn outbox_raw(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_conn(|c| {
            query_opt(c, "SELECT raw FROM outbox WHERE id = ?1", args![id], |r| {
                r.get::<Vec<u8>>("raw")
            })
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
        // On PostgreSQL, replicas claim side by side: the rows one is claiming are skipped
        // by the others (FOR UPDATE SKIP LOCKED) instead of waited for. The claim records
        // which process made it (`outbox_claims`, see [`Store::take_back_claims`]).
        let me = super::instance();
        let job = |r: &super::sql::Row<'_>| {
            Ok(OutboxJob {
                id: r.get("id")?,
                kind: r.get("kind")?,
                recipients: Vec::new(),
                raw: r.get("raw")?,
                attempts: r.get("attempts")?,
                created_at: from_ts(r.get("created_at")?),
            })
        };
        if self.is_postgres() {
            // One statement, one round trip: the claim, its record and the recipient lists.
            return self.with_conn(|c| {
                query_all(
                    c,
                    "WITH claimed AS (
                         UPDATE outbox SET next_attempt_at = ?1 + length(raw) / ?2
                          WHERE id IN (SELECT id FROM outbox
                                        WHERE status = 'queued' AND next_attempt_at <= ?3
                                        ORDER BY next_attempt_at, id LIMIT ?4 FOR UPDATE SKIP LOCKED)
                         RETURNING id, kind, raw, attempts, created_at),
                     mine AS (
                         INSERT INTO outbox_claims (outbox_id, replica, instance, claimed_at)
                         SELECT id, ?5, ?6, ?3 FROM claimed
                         ON CONFLICT (outbox_id) DO UPDATE SET replica = excluded.replica,
                             instance = excluded.instance, claimed_at = excluded.claimed_at)
                     SELECT c.id, c.kind, c.raw, c.attempts, c.created_at,
                            ARRAY(SELECT r.address FROM outbox_recipients r
                                   WHERE r.outbox_id = c.id ORDER BY r.position) AS recipients
                       FROM claimed c ORDER BY c.id",
                    args![
                        ts(now) + lease_seconds,
                        per_second,
                        ts(now),
                        limit,
                        me.replica,
                        me.run
                    ],
                    |r| {
                        let mut j = job(r)?;
                        j.recipients = r.texts("recipients")?;
                        Ok(j)
                    },
                )
            });
        }
        super::blocking(|| {
            let tx = self.begin()?;
            let c = tx.conn();
            let sql = "UPDATE outbox SET next_attempt_at = ?1 + length(raw) / ?2
                  WHERE id IN (SELECT id FROM outbox
                                WHERE status = 'queued' AND next_attempt_at <= ?3
                                ORDER BY next_attempt_at, id LIMIT ?4)
                 RETURNING id, kind, raw, attempts, created_at";
            let mut jobs = query_all(
                c,
                sql,
                args![ts(now) + lease_seconds, per_second, ts(now), limit],
                job,
            )?;
            // The stored list, address by address (migration 0008): never a string split on
            // commas, which a quoted local part may contain.
            for job in &mut jobs {
                job.recipients = query_all(
                    c,
                    "SELECT address FROM outbox_recipients WHERE outbox_id = ?1 ORDER BY position",
                    args![job.id],
                    |r| r.get::<String>("address"),
                )?;
                exec(
                    c,
                    "INSERT INTO outbox_claims (outbox_id, replica, instance, claimed_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (outbox_id) DO UPDATE SET replica = excluded.replica,
                         instance = excluded.instance, claimed_at = excluded.claimed_at",
                    args![job.id, me.replica, me.run, ts(now)],
                )?;
            }
            tx.commit()?;
            Ok(jobs)
        })
    }

    /// Makes the rows this replica claimed in an earlier run of its process (killed, or
    /// crashed, with their mail in flight) due at once; returns how many. Another replica's
    /// claims keep their lease. Call it when the sender starts.
    pub fn take_back_claims(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let me = super::instance();
        self.with_conn(|c| {
            exec(
                c,
                "UPDATE outbox SET next_attempt_at = ?1
                  WHERE status = 'queued' AND next_attempt_at > ?1
                    AND id IN (SELECT outbox_id FROM outbox_claims
                                WHERE replica = ?2 AND instance <> ?3)",
                args![ts(now), me.replica, me.run],
            )
        })
    }

    /// Who claimed outbox row `id` last: (replica, run).
    pub fn outbox_claim(&self, id: i64) -> Result<Option<(String, String)>, StoreError> {
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT replica, instance FROM outbox_claims WHERE outbox_id = ?1",
                args![id],
                |r| Ok((r.get("replica")?, r.get("instance")?)),
            )
        })
    }

    /// When the next queued row falls due, if any.
    pub fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with_conn(|c| {
            query_one(
                c,
                "SELECT MIN(next_attempt_at) AS t FROM outbox WHERE status = 'queued'",
                args![],
                |r| Ok(r.get::<Option<i64>>("t")?.map(from_ts)),
            )
        })
    }

    pub fn outbox_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.settle(
            "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = ''
              WHERE id = ?1",
            args![id, ts(now)],
        )
    }

    /// Runs `update` (on outbox row `?1`) and ends the row's claim: settled, it is no longer
    /// anyone's (a retry's backoff is not taken back). One statement on PostgreSQL, whose
    /// statements are round trips; two on SQLite, in autocommit as before.
    fn settle(&self, update: &str, args: &[super::sql::Arg<'_>]) -> Result<(), StoreError> {
        let release = "DELETE FROM outbox_claims WHERE outbox_id = ?1";
        self.with_conn(|c| {
            if c.is_pg() {
                exec(c, &format!("WITH released AS ({release}) {update}"), args)?;
                return Ok(());
            }
            exec(c, update, args)?;
            exec(c, release, &args[..1])?;
            Ok(())
        })
    }

    pub fn outbox_retry(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.settle(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
              WHERE id = ?1",
            args![id, ts(next_attempt_at), error],
        )
    }

    pub fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.settle(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?2
              WHERE id = ?1",
            args![id, error],
        )
    }

    /// Puts a failed row back in the queue (admin action after fixing the cause).
    pub fn outbox_requeue(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            let n = exec(
                c,
                "UPDATE outbox SET status = 'queued', next_attempt_at = ?1, attempts = 0 WHERE id = ?2 AND status = 'failed'",
                args![ts(now), id],
            )?;
            Ok(n == 1)
        })
    }
}
