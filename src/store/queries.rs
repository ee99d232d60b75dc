//! The SQL of supportd (SQLite, `?N` placeholders), run through rusqlite on the calling thread.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::{
    blob_param, exec, fill_blob, from_ts, known_user, query_all, query_one, query_opt,
    ticket_summary, ts, Store, StoreError, Tx,
};
use crate::mail::address::EmailAddress;
use crate::tickets::{KnownUser, TicketStatus, TicketSummary};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub email_key: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    /// May open tickets under intake `known` (an admin made them, or they requested a ticket).
    pub known: bool,
}

/// A ticket to create.
#[derive(Debug, Clone)]
pub struct NewTicket<'a> {
    pub access_key: &'a str,
    /// The second secret, for the agents' reply channel (`support+a-KEY@`).
    pub agent_key: &'a str,
    pub subject: &'a str,
    pub category: &'a str,
    pub urgency: u8,
    pub triage_reasons: &'a str,
    pub requester_id: i64,
    pub follows_ticket_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
}

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

impl Tx {
    /// The ticket owning the first of `ids` that we know (received or sent).
    pub fn ticket_by_message_ids(
        &mut self,
        ids: &[String],
    ) -> Result<Option<TicketSummary>, StoreError> {
        for id in ids {
            // A message on the ticket's history first, else one we sent that is not on it
            // (agent notifications).
            let found = query_opt(
                self.conn(),
                "SELECT id, number, status, closed_at FROM (
                     SELECT 0 AS pref, t.id, t.number, t.status, t.closed_at FROM messages m
                       JOIN tickets t ON t.id = m.ticket_id WHERE m.message_id = ?1
                     UNION ALL
                     SELECT 1 AS pref, t.id, t.number, t.status, t.closed_at FROM outbox o
                       JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id = ?1
                 ) AS found ORDER BY pref LIMIT 1",
                params![id.as_str()],
                ticket_summary,
            )?;
            if found.is_some() {
                return self.summary_of(found);
            }
        }
        Ok(None)
    }

    pub fn ticket_by_access_key(&mut self, key: &str) -> Result<Option<TicketSummary>, StoreError> {
        let found = query_opt(
            self.conn(),
            "SELECT id, number, status, closed_at FROM tickets WHERE access_key = ?1",
            params![key],
            ticket_summary,
        )?;
        self.summary_of(found)
    }

    pub fn ticket_by_number(&mut self, number: i64) -> Result<Option<TicketSummary>, StoreError> {
        let found = query_opt(
            self.conn(),
            "SELECT id, number, status, closed_at FROM tickets WHERE number = ?1",
            params![number],
            ticket_summary,
        )?;
        self.summary_of(found)
    }

    /// The summary with participants of a `tickets` row (mapped with [`ticket_summary`]), if
    /// one was found.
    pub(crate) fn summary_of(
        &mut self,
        found: Option<TicketSummary>,
    ) -> Result<Option<TicketSummary>, StoreError> {
        match found {
            Some(t) => self.with_participants(t).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn with_participants(
        &mut self,
        mut t: TicketSummary,
    ) -> Result<TicketSummary, StoreError> {
        t.participants = query_all(
            self.conn(),
            "SELECT u.email_key FROM tickets t JOIN users u ON u.id = t.requester_id WHERE t.id = ?1
             UNION
             SELECT u.email_key FROM participants p JOIN users u ON u.id = p.user_id WHERE p.ticket_id = ?1",
            params![t.id],
            |r| Ok(r.get::<_, String>("email_key")?),
        )?;
        Ok(t)
    }

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
                params![id.as_str()],
                |row| Ok((row.get::<_, i64>("outbox_id")?, ticket_summary(row)?)),
            )?;
            if let Some((outbox_id, t)) = found {
                let t = self.with_participants(t)?;
                return Ok(Some((outbox_id, t)));
            }
        }
        Ok(None)
    }

    /// The ticket owning a mail we sent to agents only, named by the first of `ids` that is
    /// one: the agents' own channel into a ticket.
    pub fn ticket_by_agent_mail(
        &mut self,
        ids: &[String],
    ) -> Result<Option<TicketSummary>, StoreError> {
        for id in ids {
            let found = query_opt(
                self.conn(),
                "SELECT t.id, t.number, t.status, t.closed_at FROM agent_mail a
                   JOIN tickets t ON t.id = a.ticket_id WHERE a.message_id = ?1",
                params![id.as_str()],
                ticket_summary,
            )?;
            if found.is_some() {
                return self.summary_of(found);
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
            params![message_id, ticket_id],
        )?;
        Ok(())
    }

    /// The requester of an accepted ticket becomes a known user.
    pub fn mark_known(&mut self, user_id: i64) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE users SET known = 1 WHERE id = ?1 AND known = 0",
            params![user_id],
        )?;
        Ok(())
    }

    pub fn user_by_email(&mut self, email_key: &str) -> Result<Option<KnownUser>, StoreError> {
        query_opt(
            self.conn(),
            "SELECT id, role, status, support_user, org, email, known FROM users WHERE email_key = ?1",
            params![email_key],
            known_user,
        )
    }

    /// The first questions about every message, in one round trip: is its Message-ID stored,
    /// who is its sender (by `sender_key`), and how many automatic answers (acknowledgements,
    /// refusals, command errors: they share one rate limit) went to the sender's `rate_key`
    /// (the address without +detail) since `since`.
    pub fn first_look(
        &mut self,
        message_id: &str,
        sender_key: &str,
        rate_key: &str,
        since: DateTime<Utc>,
    ) -> Result<(bool, Option<KnownUser>, u32), StoreError> {
        query_one(
            self.conn(),
            "SELECT (SELECT COUNT(*) FROM messages WHERE message_id = ?1)
                  + (SELECT COUNT(*) FROM ignored_mail WHERE message_id = ?1) AS stored,
                    (SELECT COUNT(*) FROM outbox_recipients r JOIN outbox o ON o.id = r.outbox_id
                      WHERE r.rate_key = ?4 AND r.created_at > ?3
                        AND o.kind IN ('ack', 'rejected', 'inactive', 'command-error')) AS acks,
                    u.id, u.role, u.status, u.support_user, u.org, u.email, u.known
               FROM (SELECT 1 AS one) AS x LEFT JOIN users u ON u.email_key = ?2",
            params![message_id, sender_key, ts(since), rate_key],
            |row| {
                let known = row.get::<_, i64>("stored")? > 0;
                let acks = u32::try_from(row.get::<_, i64>("acks")?).unwrap_or(u32::MAX);
                let sender = match row.get::<_, Option<i64>>("id")? {
                    Some(_) => Some(known_user(row)?),
                    None => None,
                };
                Ok((known, sender, acks))
            },
        )
    }

    pub fn insert_user(&mut self, u: &NewUser<'_>, at: DateTime<Utc>) -> Result<i64, StoreError> {
        query_one(
            self.conn(),
            "INSERT INTO users (email, email_key, name, role, known, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            params![u.email, u.email_key, u.name, u.role, u.known, ts(at)],
            |row| Ok(row.get("id")?),
        )
    }

    /// Finds or provisions a customer; returns its id.
    pub fn ensure_user(&mut self, u: &NewUser<'_>, at: DateTime<Utc>) -> Result<i64, StoreError> {
        match self.user_by_email(u.email_key)? {
            Some(known) => Ok(known.id),
            None => self.insert_user(u, at),
        }
    }

    /// Creates a ticket with the next number; returns (id, number).
    pub fn insert_ticket(&mut self, t: &NewTicket<'_>) -> Result<(i64, i64), StoreError> {
        query_one(
            self.conn(),
            "INSERT INTO tickets (number, access_key, subject, status, category, urgency, triage_reasons,
                                  requester_id, follows_ticket_id, created_at, updated_at,
                                  first_response_due, resolution_due, agent_key)
             VALUES ((SELECT COALESCE(MAX(number), 1000) + 1 FROM tickets), ?1, ?2, 'open', ?3, ?4, ?5,
                     ?6, ?7, ?8, ?8, ?9, ?10, ?11)
             RETURNING id, number",
            params![
                t.access_key,
                t.subject,
                t.category,
                i64::from(t.urgency),
                t.triage_reasons,
                t.requester_id,
                t.follows_ticket_id,
                ts(t.created_at),
                ts(t.first_response_due),
                ts(t.resolution_due),
                t.agent_key,
            ],
            |row| Ok((row.get("id")?, row.get("number")?)),
        )
    }

    pub fn add_participant(&mut self, ticket_id: i64, user_id: i64) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "INSERT INTO participants (ticket_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![ticket_id, user_id],
        )?;
        Ok(())
    }

    pub fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<i64, StoreError> {
        let conn = self.conn();
        let id = query_one(
            conn,
            "INSERT INTO messages (ticket_id, message_id, direction, kind, author, author_id, internal,
                                   subject, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
            params![
                m.ticket_id,
                m.message_id,
                m.direction,
                m.kind,
                m.author,
                m.author_id,
                i64::from(m.internal),
                m.subject,
                m.body,
                ts(m.created_at),
            ],
            |row| Ok(row.get("id")?),
        )?;
        if let Some(raw) = m.raw {
            // The blob is the table's last column, so a large one stays a compact zeroblob
            // until fill_blob streams the bytes in (migration 0004).
            exec(
                conn,
                "INSERT INTO message_raw (message_row, raw) VALUES (?1, ?2)",
                params![id, blob_param(raw)?],
            )?;
            fill_blob(conn, "message_raw", "raw", id, raw)?;
        }
        Ok(id)
    }

    pub fn insert_attachment(
        &mut self,
        message_row: i64,
        a: &crate::mail::parse::Attachment,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        exec(
            conn,
            "INSERT INTO attachments (message_row, filename, content_type, size, content_id, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                message_row,
                a.filename.as_str(),
                a.content_type.as_str(),
                i64::try_from(a.size).unwrap_or(i64::MAX),
                a.content_id.as_deref(),
                // Borrowed bytes, never a clone (a possibly 25 MB attachment); a large one is
                // bound as a zero-filled placeholder and written in place just below.
                blob_param(a.data.as_slice())?,
            ],
        )?;
        fill_blob(
            conn,
            "attachments",
            "data",
            conn.last_insert_rowid(),
            a.data.as_slice(),
        )?;
        Ok(())
    }

    pub fn set_status(
        &mut self,
        ticket_id: i64,
        status: TicketStatus,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let closed_at = (status == TicketStatus::Closed).then(|| ts(at));
        exec(
            self.conn(),
            "UPDATE tickets SET status = ?1, closed_at = ?2, updated_at = ?3 WHERE id = ?4",
            params![status.as_str(), closed_at, ts(at), ticket_id],
        )?;
        Ok(())
    }

    pub fn touch_ticket(&mut self, ticket_id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET updated_at = ?1 WHERE id = ?2",
            params![ts(at), ticket_id],
        )?;
        Ok(())
    }

    pub fn queue_outbox(&mut self, o: &NewOutbox<'_>) -> Result<i64, StoreError> {
        let shown: Vec<String> = o.recipients.iter().map(EmailAddress::key).collect();
        let conn = self.conn();
        let id = query_one(
            conn,
            "INSERT INTO outbox (ticket_id, kind, message_id, recipients, subject, raw, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
            params![
                o.ticket_id,
                o.kind,
                o.message_id,
                shown.join(","),
                o.subject,
                blob_param(o.raw)?,
                ts(o.created_at),
            ],
            |row| Ok(row.get("id")?),
        )?;
        fill_blob(conn, "outbox", "raw", id, o.raw)?;
        for (position, (address, r)) in shown.iter().zip(o.recipients).enumerate() {
            exec(
                conn,
                "INSERT INTO outbox_recipients (outbox_id, position, address, rate_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id,
                    i64::try_from(position).unwrap_or(i64::MAX),
                    address,
                    r.rate_key(),
                    ts(o.created_at)
                ],
            )?;
        }
        Ok(id)
    }

    pub fn fail_outbox(&mut self, id: i64, error: &str) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE outbox SET status = 'failed', last_error = ?1 WHERE id = ?2",
            params![error, id],
        )?;
        Ok(())
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
        let c = self.conn();
        let inserted = exec(
            c,
            "INSERT INTO quarantine (digest, reason, source, size, raw, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (digest) DO NOTHING",
            params![
                digest,
                reason,
                source,
                i64::try_from(raw.len()).unwrap_or(i64::MAX),
                blob_param(raw)?,
                ts(at),
            ],
        )?;
        // A duplicate inserts nothing (and last_insert_rowid() is then some earlier row's).
        if inserted > 0 {
            fill_blob(c, "quarantine", "raw", c.last_insert_rowid(), raw)?;
        }
        Ok(())
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
        let conn = self.conn();
        let inserted = exec(
            conn,
            "INSERT INTO ignored_mail (message_id, sender, subject, reason, raw, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (message_id) DO NOTHING",
            params![
                message_id,
                sender,
                subject,
                reason,
                blob_param(raw)?,
                ts(at)
            ],
        )?;
        // Skipped as a duplicate: no new row, and last_insert_rowid() is some earlier row's.
        if inserted > 0 {
            fill_blob(conn, "ignored_mail", "raw", conn.last_insert_rowid(), raw)?;
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
        exec(
            self.conn(),
            "INSERT INTO events (ticket_id, at, actor, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ticket_id, ts(at), actor, kind, detail],
        )?;
        Ok(())
    }
}

/// A ticket in `tickets list`.
#[derive(Debug, Clone, Serialize)]
pub struct TicketListItem {
    pub number: i64,
    pub subject: String,
    pub status: String,
    pub category: String,
    pub urgency: i64,
    pub requester: Person,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub email: String,
    pub name: String,
}

/// `tickets show NUMBER --json`.
#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    pub number: i64,
    pub access_key: String,
    pub subject: String,
    pub status: String,
    pub category: String,
    pub urgency: i64,
    pub triage_reasons: Vec<String>,
    pub requester: Person,
    pub collaborators: Vec<Person>,
    pub assignee: Option<Person>,
    pub follows: Option<i64>,
    pub created_at: String,
    pub first_response_due: String,
    pub resolution_due: String,
    pub first_response_at: Option<String>,
    pub closed_at: Option<String>,
    pub messages: Vec<MessageView>,
    pub events: Vec<EventView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub message_id: String,
    pub direction: String,
    pub kind: String,
    pub author: String,
    pub internal: bool,
    pub subject: String,
    pub body: String,
    pub created_at: String,
    pub attachments: Vec<AttachmentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentView {
    pub filename: String,
    pub content_type: String,
    pub size: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub detail: String,
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

/// `users list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct UserItem {
    pub email: String,
    pub name: String,
    pub role: String,
    pub status: String,
    /// Explicit, else the email domain.
    pub org: String,
    pub support_user: bool,
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

fn rfc3339(t: i64) -> String {
    from_ts(t).to_rfc3339()
}

impl Store {
    pub fn list_tickets(&self) -> Result<Vec<TicketListItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT t.number, t.subject, t.status, t.category, t.urgency, t.created_at, u.email, u.name
                   FROM tickets t JOIN users u ON u.id = t.requester_id ORDER BY t.number",
                [],
                |r| {
                    Ok(TicketListItem {
                        number: r.get("number")?,
                        subject: r.get("subject")?,
                        status: r.get("status")?,
                        category: r.get("category")?,
                        urgency: r.get("urgency")?,
                        requester: Person {
                            email: r.get("email")?,
                            name: r.get("name")?,
                        },
                        created_at: rfc3339(r.get("created_at")?),
                    })
                },
            )
        })
    }

    pub fn ticket_detail(&self, number: i64) -> Result<Option<TicketDetail>, StoreError> {
        self.with_conn(|c| {
            let Some((id, mut detail)) = query_opt(
                c,
                "SELECT t.*, u.email AS r_email, u.name AS r_name, a.email AS a_email, a.name AS a_name,
                        f.number AS follows_number
                   FROM tickets t JOIN users u ON u.id = t.requester_id
                   LEFT JOIN users a ON a.id = t.assignee_id
                   LEFT JOIN tickets f ON f.id = t.follows_ticket_id
                  WHERE t.number = ?1",
                params![number],
                |t| {
                    let id: i64 = t.get("id")?;
                    let reasons: String = t.get("triage_reasons")?;
                    let assignee = match t.get::<_, Option<String>>("a_email")? {
                        Some(email) => Some(Person {
                            email,
                            name: t.get::<_, Option<String>>("a_name")?.unwrap_or_default(),
                        }),
                        None => None,
                    };
                    let detail = TicketDetail {
                        number: t.get("number")?,
                        access_key: t.get("access_key")?,
                        subject: t.get("subject")?,
                        status: t.get("status")?,
                        category: t.get("category")?,
                        urgency: t.get("urgency")?,
                        triage_reasons: reasons
                            .split('\n')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect(),
                        requester: Person {
                            email: t.get("r_email")?,
                            name: t.get("r_name")?,
                        },
                        collaborators: Vec::new(),
                        assignee,
                        follows: t.get("follows_number")?,
                        created_at: rfc3339(t.get("created_at")?),
                        first_response_due: rfc3339(t.get("first_response_due")?),
                        resolution_due: rfc3339(t.get("resolution_due")?),
                        first_response_at: t
                            .get::<_, Option<i64>>("first_response_at")?
                            .map(rfc3339),
                        closed_at: t.get::<_, Option<i64>>("closed_at")?.map(rfc3339),
                        messages: Vec::new(),
                        events: Vec::new(),
                    };
                    Ok((id, detail))
                },
            )?
            else {
                return Ok(None);
            };
            detail.collaborators = query_all(
                c,
                "SELECT u.email, u.name FROM participants p JOIN users u ON u.id = p.user_id
                  WHERE p.ticket_id = ?1 ORDER BY u.id",
                params![id],
                |r| {
                    Ok(Person {
                        email: r.get("email")?,
                        name: r.get("name")?,
                    })
                },
            )?;
            let messages = query_all(
                c,
                "SELECT id, message_id, direction, kind, author, internal, subject, body, created_at
                   FROM messages WHERE ticket_id = ?1 ORDER BY id",
                params![id],
                |m| {
                    Ok((
                        m.get::<_, i64>("id")?,
                        MessageView {
                            message_id: m.get("message_id")?,
                            direction: m.get("direction")?,
                            kind: m.get("kind")?,
                            author: m.get("author")?,
                            internal: m.get::<_, i64>("internal")? != 0,
                            subject: m.get("subject")?,
                            body: m.get("body")?,
                            created_at: rfc3339(m.get("created_at")?),
                            attachments: Vec::new(),
                        },
                    ))
                },
            )?;
            for (message_row, mut m) in messages {
                m.attachments = query_all(
                    c,
                    "SELECT filename, content_type, size FROM attachments WHERE message_row = ?1 ORDER BY id",
                    params![message_row],
                    |a| {
                        Ok(AttachmentView {
                            filename: a.get("filename")?,
                            content_type: a.get("content_type")?,
                            size: a.get("size")?,
                        })
                    },
                )?;
                detail.messages.push(m);
            }
            detail.events = query_all(
                c,
                "SELECT at, actor, kind, detail FROM events WHERE ticket_id = ?1 ORDER BY id",
                params![id],
                |e| {
                    Ok(EventView {
                        at: rfc3339(e.get("at")?),
                        actor: e.get("actor")?,
                        kind: e.get("kind")?,
                        detail: e.get("detail")?,
                    })
                },
            )?;
            Ok(Some(detail))
        })
    }

    pub fn list_outbox(&self) -> Result<Vec<OutboxItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT o.id, t.number, o.kind, o.recipients, o.subject, o.status, o.attempts, o.last_error, o.created_at
                   FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id ORDER BY o.id",
                [],
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
            query_opt(
                c,
                "SELECT raw FROM outbox WHERE id = ?1",
                params![id],
                |r| Ok(r.get::<_, Vec<u8>>("raw")?),
            )
        })
    }

    pub fn list_users(&self) -> Result<Vec<UserItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT email, name, role, status, org, support_user FROM users ORDER BY id",
                [],
                |r| {
                    Ok(UserItem {
                        email: r.get("email")?,
                        name: r.get("name")?,
                        role: r.get("role")?,
                        status: r.get("status")?,
                        org: super::effective_org(
                            &r.get::<_, String>("org")?,
                            &r.get::<_, String>("email")?,
                        ),
                        support_user: r.get::<_, i64>("support_user")? != 0,
                    })
                },
            )
        })
    }

    /// Creates or updates a user's role and name (agents from config, `users add`).
    pub fn upsert_user(
        &self,
        email: &str,
        email_key: &str,
        name: &str,
        role: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "INSERT INTO users (email, email_key, name, role, known, created_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5)
                 ON CONFLICT (email_key) DO UPDATE SET role = excluded.role, known = 1,
                     name = CASE WHEN excluded.name = '' THEN users.name ELSE excluded.name END",
                params![email, email_key, name, role, ts(at)],
            )?;
            Ok(())
        })
    }

    pub fn list_quarantine(&self) -> Result<Vec<QuarantineItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT id, reason, source, size, digest, received_at FROM quarantine ORDER BY id",
                [],
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
