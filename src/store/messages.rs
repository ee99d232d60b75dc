//! Messages of a ticket with their attachments, events, and the mail that makes no ticket
//! (ignored, quarantined).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::Arg;
use super::{
    args, blob_param, exec, fill_blob, query_all, query_one, query_opt, rfc3339, ts, Store,
    StoreError, Tx,
};

/// A message to record on a ticket.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub ticket_id: i64,
    pub message_id: &'a str,
    pub direction: &'a str,
    pub kind: &'a str,
    pub author: &'a str,
    pub author_id: Option<i64>,
    pub internal: bool,
    pub subject: &'a str,
    pub body: &'a str,
    pub raw: Option<&'a [u8]>,
    pub created_at: DateTime<Utc>,
}

/// `quarantine list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineItem {
    pub id: i64,
    pub reason: String,
    pub source: String,
    pub size: i64,
    pub digest: String,
    pub received_at: String,
}

impl Tx {
    pub fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<i64, StoreError> {
        let conn = self.conn();
        let (internal, created_at) = (i64::from(m.internal), ts(m.created_at));
        let columns = args![
            m.ticket_id,
            m.message_id,
            m.direction,
            m.kind,
            m.author,
            m.author_id,
            internal,
            m.subject,
            m.body,
            created_at,
        ];
        // On PostgreSQL the raw bytes go in with the row, one round trip (the foreign key is
        // checked at the statement's end, when the message row exists).
        if let (true, Some(raw)) = (conn.is_pg(), m.raw) {
            let mut with_raw = columns.to_vec();
            with_raw.push(blob_param(raw)?);
            return query_one(
                conn,
                "WITH m AS (
                     INSERT INTO messages (ticket_id, message_id, direction, kind, author, author_id,
                                           internal, subject, body, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id),
                 r AS (INSERT INTO message_raw (message_row, raw) SELECT id, ?11 FROM m)
                 SELECT id FROM m",
                &with_raw,
                |row| row.get("id"),
            );
        }
        let id = query_one(
            conn,
            "INSERT INTO messages (ticket_id, message_id, direction, kind, author, author_id, internal,
                                   subject, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
            columns,
            |row| row.get("id"),
        )?;
        if let Some(raw) = m.raw {
            // The blob is the table's last column, so a large one stays a compact zeroblob
            // until fill_blob streams the bytes in (migration 0004).
            exec(
                conn,
                "INSERT INTO message_raw (message_row, raw) VALUES (?1, ?2)",
                args![id, blob_param(raw)?],
            )?;
            fill_blob(conn, "message_raw", "raw", id, raw)?;
        }
        Ok(id)
    }

    pub fn insert_attachment(
        &mut self,
        message_row: i64,
        a: &crate::mail::parse::Attachment,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        let id = query_one(
            conn,
            "INSERT INTO attachments (message_row, filename, content_type, size, content_id, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            args![
                message_row,
                a.filename.as_str(),
                a.content_type.as_str(),
                i64::try_from(a.size).unwrap_or(i64::MAX),
                a.content_id.as_deref(),
                // Borrowed bytes, never a clone (a possibly 25 MB attachment); a large one is
                // bound as a zero-filled placeholder and written in place just below.
                blob_param(a.data.as_slice())?,
            ],
            |row| row.get("id"),
        )?;
        fill_blob(conn, "attachments", "data", id, a.data.as_slice())?;
        Ok(id)
    }

    /// Keeps an unprocessable message verbatim with its reason; a second copy of the same
    /// bytes is a no-op. Row and bytes go in together, in the caller's transaction: a
    /// half-written row would turn a retry into a no-op.
    pub fn insert_quarantine(
        &mut self,
        digest: &str,
        reason: &str,
        source: &str,
        raw: &[u8],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.insert_raw(
            "quarantine",
            "INSERT INTO quarantine (digest, reason, source, size, raw, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (digest) DO NOTHING RETURNING id",
            args![
                digest,
                reason,
                source,
                i64::try_from(raw.len()).unwrap_or(i64::MAX),
                blob_param(raw)?,
                ts(at),
            ],
            raw,
        )
    }

    pub fn insert_ignored(
        &mut self,
        message_id: &str,
        sender: &str,
        subject: &str,
        reason: &str,
        raw: &[u8],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.insert_raw(
            "ignored_mail",
            "INSERT INTO ignored_mail (message_id, sender, subject, reason, raw, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (message_id) DO NOTHING RETURNING id",
            args![
                message_id,
                sender,
                subject,
                reason,
                blob_param(raw)?,
                ts(at)
            ],
            raw,
        )
    }

    /// Inserts a row of `table` holding a mail verbatim in its `raw` column (`insert`: ON
    /// CONFLICT DO NOTHING RETURNING id), then writes the bytes in place; a duplicate
    /// inserts nothing.
    fn insert_raw(
        &mut self,
        table: &str,
        insert: &str,
        args: &[Arg<'_>],
        raw: &[u8],
    ) -> Result<(), StoreError> {
        let c = self.conn();
        let inserted = query_opt(c, insert, args, |row| row.get::<i64>("id"))?;
        if let Some(id) = inserted {
            fill_blob(c, table, "raw", id, raw)?;
        }
        Ok(())
    }

    pub fn insert_event(
        &mut self,
        ticket_id: i64,
        at: DateTime<Utc>,
        actor: &str,
        kind: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        if let Some(c) = self.holder() {
            c.defer(|d| d.event(ticket_id, ts(at), actor, kind, detail));
            return Ok(());
        }
        exec(
            self.conn(),
            "INSERT INTO events (ticket_id, at, actor, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![ticket_id, ts(at), actor, kind, detail],
        )?;
        Ok(())
    }
}

impl Store {
    pub fn list_quarantine(&self) -> Result<Vec<QuarantineItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT id, reason, source, size, digest, received_at FROM quarantine ORDER BY id",
                args![],
                |r| {
                    Ok(QuarantineItem {
                        id: r.get("id")?,
                        reason: r.get("reason")?,
                        source: r.get("source")?,
                        size: r.get("size")?,
                        digest: r.get("digest")?,
                        received_at: rfc3339(r.get("received_at")?),
                    })
                },
            )
        })
    }
}
