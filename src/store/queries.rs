//! The SQL of supportd, in the dialect both backends accept.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{from_ts, known_user, ticket_summary, ts, Store, StoreError, Tx};
use crate::tickets::{KnownUser, TicketStatus, TicketSummary};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub email_key: &'a str,
    pub name: &'a str,
    pub role: &'a str,
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
    pub recipients: &'a str,
    pub subject: &'a str,
    pub raw: &'a [u8],
    pub created_at: DateTime<Utc>,
}

impl Tx {
    /// The ticket owning the first of `ids` that we know (received or sent).
    pub async fn ticket_by_message_ids(
        &mut self,
        ids: &[String],
    ) -> Result<Option<TicketSummary>, StoreError> {
        for id in ids {
            // A message on the ticket's history first, else one we sent that is not on it
            // (agent notifications).
            let row = sqlx::query(
                "SELECT id, number, status, closed_at FROM (
                     SELECT 0 AS pref, t.id, t.number, t.status, t.closed_at FROM messages m
                       JOIN tickets t ON t.id = m.ticket_id WHERE m.message_id = $1
                     UNION ALL
                     SELECT 1 AS pref, t.id, t.number, t.status, t.closed_at FROM outbox o
                       JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id = $1
                 ) AS found ORDER BY pref LIMIT 1",
            )
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?;
            if row.is_some() {
                return self.summary_of(row).await;
            }
        }
        Ok(None)
    }

    pub async fn ticket_by_access_key(
        &mut self,
        key: &str,
    ) -> Result<Option<TicketSummary>, StoreError> {
        let row =
            sqlx::query("SELECT id, number, status, closed_at FROM tickets WHERE access_key = $1")
                .bind(key)
                .fetch_optional(self.conn())
                .await?;
        self.summary_of(row).await
    }

    pub async fn ticket_by_number(
        &mut self,
        number: i64,
    ) -> Result<Option<TicketSummary>, StoreError> {
        let row =
            sqlx::query("SELECT id, number, status, closed_at FROM tickets WHERE number = $1")
                .bind(number)
                .fetch_optional(self.conn())
                .await?;
        self.summary_of(row).await
    }

    /// The summary (with participants) of a `tickets` row, if one was found.
    pub(crate) async fn summary_of(
        &mut self,
        row: Option<sqlx::any::AnyRow>,
    ) -> Result<Option<TicketSummary>, StoreError> {
        match row {
            Some(row) => self
                .with_participants(ticket_summary(&row)?)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    pub(crate) async fn with_participants(
        &mut self,
        mut t: TicketSummary,
    ) -> Result<TicketSummary, StoreError> {
        let rows = sqlx::query(
            "SELECT u.email_key FROM tickets t JOIN users u ON u.id = t.requester_id WHERE t.id = $1
             UNION
             SELECT u.email_key FROM participants p JOIN users u ON u.id = p.user_id WHERE p.ticket_id = $1",
        )
        .bind(t.id)
        .fetch_all(self.conn())
        .await?;
        t.participants = rows
            .iter()
            .map(|r| r.try_get::<String, _>("email_key"))
            .collect::<Result<_, _>>()?;
        Ok(t)
    }

    /// The outbox row one of `ids` names (a bounce's original), with its ticket.
    pub async fn outbox_by_message_ids(
        &mut self,
        ids: &[String],
    ) -> Result<Option<(i64, TicketSummary)>, StoreError> {
        for id in ids {
            let row = sqlx::query(
                "SELECT o.id AS outbox_id, t.id, t.number, t.status, t.closed_at FROM outbox o
                   JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?;
            if let Some(row) = row {
                let outbox_id: i64 = row.try_get("outbox_id")?;
                let t = self.with_participants(ticket_summary(&row)?).await?;
                return Ok(Some((outbox_id, t)));
            }
        }
        Ok(None)
    }

    pub async fn user_by_email(
        &mut self,
        email_key: &str,
    ) -> Result<Option<KnownUser>, StoreError> {
        let row = sqlx::query(
            "SELECT id, role, status, support_user, org, email FROM users WHERE email_key = $1",
        )
        .bind(email_key)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(known_user).transpose()
    }

    /// The first questions about every message, in one round trip: is its Message-ID stored,
    /// who is its sender, and how many automatic answers (acknowledgements, refusals, command
    /// errors: they share one rate limit) went to the sender since `since`.
    pub async fn first_look(
        &mut self,
        message_id: &str,
        sender_key: &str,
        since: DateTime<Utc>,
    ) -> Result<(bool, Option<KnownUser>, u32), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM messages WHERE message_id = $1)
                  + (SELECT COUNT(*) FROM ignored_mail WHERE message_id = $1) AS known,
                    (SELECT COUNT(*) FROM outbox
                      WHERE kind IN ('ack', 'rejected', 'inactive', 'command-error')
                        AND recipients = $2 AND created_at > $3) AS acks,
                    u.id, u.role, u.status, u.support_user, u.org, u.email
               FROM (SELECT 1 AS one) AS x LEFT JOIN users u ON u.email_key = $2",
        )
        .bind(message_id)
        .bind(sender_key)
        .bind(ts(since))
        .fetch_one(self.conn())
        .await?;
        let known = row.try_get::<i64, _>("known")? > 0;
        let acks = u32::try_from(row.try_get::<i64, _>("acks")?).unwrap_or(u32::MAX);
        let sender = match row.try_get::<Option<i64>, _>("id")? {
            Some(_) => Some(known_user(&row)?),
            None => None,
        };
        Ok((known, sender, acks))
    }

    pub async fn insert_user(
        &mut self,
        u: &NewUser<'_>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO users (email, email_key, name, role, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(u.email)
        .bind(u.email_key)
        .bind(u.name)
        .bind(u.role)
        .bind(ts(at))
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Finds or provisions a customer; returns its id.
    pub async fn ensure_user(
        &mut self,
        u: &NewUser<'_>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        match self.user_by_email(u.email_key).await? {
            Some(known) => Ok(known.id),
            None => self.insert_user(u, at).await,
        }
    }

    /// Creates a ticket with the next number; returns (id, number).
    pub async fn insert_ticket(&mut self, t: &NewTicket<'_>) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "INSERT INTO tickets (number, access_key, subject, status, category, urgency, triage_reasons,
                                  requester_id, follows_ticket_id, created_at, updated_at,
                                  first_response_due, resolution_due, agent_key)
             VALUES ((SELECT COALESCE(MAX(number), 1000) + 1 FROM tickets), $1, $2, 'open', $3, $4, $5,
                     $6, $7, $8, $8, $9, $10, $11)
             RETURNING id, number",
        )
        .bind(t.access_key)
        .bind(t.subject)
        .bind(t.category)
        .bind(i64::from(t.urgency))
        .bind(t.triage_reasons)
        .bind(t.requester_id)
        .bind(t.follows_ticket_id)
        .bind(ts(t.created_at))
        .bind(ts(t.first_response_due))
        .bind(ts(t.resolution_due))
        .bind(t.agent_key)
        .fetch_one(self.conn())
        .await?;
        Ok((row.try_get("id")?, row.try_get("number")?))
    }

    pub async fn add_participant(
        &mut self,
        ticket_id: i64,
        user_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO participants (ticket_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(ticket_id)
        .bind(user_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO messages (ticket_id, message_id, direction, kind, author, author_id, internal,
                                   subject, body, raw, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(m.ticket_id)
        .bind(m.message_id)
        .bind(m.direction)
        .bind(m.kind)
        .bind(m.author)
        .bind(m.author_id)
        .bind(i64::from(m.internal))
        .bind(m.subject)
        .bind(m.body)
        .bind(m.raw)
        .bind(ts(m.created_at))
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get("id")?)
    }

    pub async fn insert_attachment(
        &mut self,
        message_row: i64,
        a: &crate::mail::parse::Attachment,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO attachments (message_row, filename, content_type, size, content_id, data)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(message_row)
        .bind(a.filename.as_str())
        .bind(a.content_type.as_str())
        .bind(i64::try_from(a.size).unwrap_or(i64::MAX))
        .bind(a.content_id.as_deref())
        // Bind borrowed bytes: sqlx copies blobs itself, a clone here would be one copy more
        // of a possibly 25 MB attachment.
        .bind(a.data.as_slice())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn set_status(
        &mut self,
        ticket_id: i64,
        status: TicketStatus,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let closed_at = (status == TicketStatus::Closed).then(|| ts(at));
        sqlx::query(
            "UPDATE tickets SET status = $1, closed_at = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(closed_at)
        .bind(ts(at))
        .bind(ticket_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn touch_ticket(
        &mut self,
        ticket_id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET updated_at = $1 WHERE id = $2")
            .bind(ts(at))
            .bind(ticket_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn queue_outbox(&mut self, o: &NewOutbox<'_>) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO outbox (ticket_id, kind, message_id, recipients, subject, raw, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
        )
        .bind(o.ticket_id)
        .bind(o.kind)
        .bind(o.message_id)
        .bind(o.recipients)
        .bind(o.subject)
        .bind(o.raw)
        .bind(ts(o.created_at))
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get("id")?)
    }

    pub async fn fail_outbox(&mut self, id: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET status = 'failed', last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn insert_ignored(
        &mut self,
        message_id: &str,
        sender: &str,
        subject: &str,
        reason: &str,
        raw: &[u8],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ignored_mail (message_id, sender, subject, reason, raw, received_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(message_id)
        .bind(sender)
        .bind(subject)
        .bind(reason)
        .bind(raw)
        .bind(ts(at))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn insert_event(
        &mut self,
        ticket_id: i64,
        at: DateTime<Utc>,
        actor: &str,
        kind: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO events (ticket_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ticket_id)
        .bind(ts(at))
        .bind(actor)
        .bind(kind)
        .bind(detail)
        .execute(self.conn())
        .await?;
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
    pub async fn list_tickets(&self) -> Result<Vec<TicketListItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.number, t.subject, t.status, t.category, t.urgency, t.created_at, u.email, u.name
               FROM tickets t JOIN users u ON u.id = t.requester_id ORDER BY t.number",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TicketListItem {
                    number: r.try_get("number")?,
                    subject: r.try_get("subject")?,
                    status: r.try_get("status")?,
                    category: r.try_get("category")?,
                    urgency: r.try_get("urgency")?,
                    requester: Person {
                        email: r.try_get("email")?,
                        name: r.try_get("name")?,
                    },
                    created_at: rfc3339(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    pub async fn ticket_detail(&self, number: i64) -> Result<Option<TicketDetail>, StoreError> {
        let Some(t) = sqlx::query(
            "SELECT t.*, u.email AS r_email, u.name AS r_name, a.email AS a_email, a.name AS a_name,
                    f.number AS follows_number
               FROM tickets t JOIN users u ON u.id = t.requester_id
               LEFT JOIN users a ON a.id = t.assignee_id
               LEFT JOIN tickets f ON f.id = t.follows_ticket_id
              WHERE t.number = $1",
        )
        .bind(number)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let id: i64 = t.try_get("id")?;
        let collaborators = sqlx::query(
            "SELECT u.email, u.name FROM participants p JOIN users u ON u.id = p.user_id
              WHERE p.ticket_id = $1 ORDER BY u.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(Person {
                email: r.try_get("email")?,
                name: r.try_get("name")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let mut messages = Vec::new();
        for m in sqlx::query(
            "SELECT id, message_id, direction, kind, author, internal, subject, body, created_at
               FROM messages WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        {
            let attachments = sqlx::query(
                "SELECT filename, content_type, size FROM attachments WHERE message_row = $1 ORDER BY id",
            )
            .bind(m.try_get::<i64, _>("id")?)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|a| {
                Ok(AttachmentView {
                    filename: a.try_get("filename")?,
                    content_type: a.try_get("content_type")?,
                    size: a.try_get("size")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            messages.push(MessageView {
                message_id: m.try_get("message_id")?,
                direction: m.try_get("direction")?,
                kind: m.try_get("kind")?,
                author: m.try_get("author")?,
                internal: m.try_get::<i64, _>("internal")? != 0,
                subject: m.try_get("subject")?,
                body: m.try_get("body")?,
                created_at: rfc3339(m.try_get("created_at")?),
                attachments,
            });
        }
        let events = sqlx::query(
            "SELECT at, actor, kind, detail FROM events WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|e| {
            Ok(EventView {
                at: rfc3339(e.try_get("at")?),
                actor: e.try_get("actor")?,
                kind: e.try_get("kind")?,
                detail: e.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let reasons: String = t.try_get("triage_reasons")?;
        let assignee = match t.try_get::<Option<String>, _>("a_email")? {
            Some(email) => Some(Person {
                email,
                name: t
                    .try_get::<Option<String>, _>("a_name")?
                    .unwrap_or_default(),
            }),
            None => None,
        };
        Ok(Some(TicketDetail {
            number: t.try_get("number")?,
            access_key: t.try_get("access_key")?,
            subject: t.try_get("subject")?,
            status: t.try_get("status")?,
            category: t.try_get("category")?,
            urgency: t.try_get("urgency")?,
            triage_reasons: reasons
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            requester: Person {
                email: t.try_get("r_email")?,
                name: t.try_get("r_name")?,
            },
            collaborators,
            assignee,
            follows: t.try_get("follows_number")?,
            created_at: rfc3339(t.try_get("created_at")?),
            first_response_due: rfc3339(t.try_get("first_response_due")?),
            resolution_due: rfc3339(t.try_get("resolution_due")?),
            first_response_at: t
                .try_get::<Option<i64>, _>("first_response_at")?
                .map(rfc3339),
            closed_at: t.try_get::<Option<i64>, _>("closed_at")?.map(rfc3339),
            messages,
            events,
        }))
    }

    pub async fn list_outbox(&self) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, t.number, o.kind, o.recipients, o.subject, o.status, o.attempts, o.last_error, o.created_at
               FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id ORDER BY o.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.try_get("id")?,
                    ticket: r.try_get("number")?,
                    kind: r.try_get("kind")?,
                    to: r.try_get("recipients")?,
                    subject: r.try_get("subject")?,
                    status: r.try_get("status")?,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    created_at: rfc3339(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// The exact bytes of an outbox mail.
    pub async fn outbox_raw(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT raw FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| r.try_get::<Vec<u8>, _>("raw"))
            .transpose()
            .map_err(Into::into)
    }

    pub async fn list_users(&self) -> Result<Vec<UserItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT email, name, role, status, org, support_user FROM users ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UserItem {
                    email: r.try_get("email")?,
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                    status: r.try_get("status")?,
                    org: super::effective_org(
                        &r.try_get::<String, _>("org")?,
                        &r.try_get::<String, _>("email")?,
                    ),
                    support_user: r.try_get::<i64, _>("support_user")? != 0,
                })
            })
            .collect()
    }

    /// Creates or updates a user's role and name (agents from config, `users add`).
    pub async fn upsert_user(
        &self,
        email: &str,
        email_key: &str,
        name: &str,
        role: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (email, email_key, name, role, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (email_key) DO UPDATE SET role = excluded.role,
                 name = CASE WHEN excluded.name = '' THEN users.name ELSE excluded.name END",
        )
        .bind(email)
        .bind(email_key)
        .bind(name)
        .bind(role)
        .bind(ts(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn list_quarantine(&self) -> Result<Vec<QuarantineItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, reason, source, size, digest, received_at FROM quarantine ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineItem {
                    id: r.try_get("id")?,
                    reason: r.try_get("reason")?,
                    source: r.try_get("source")?,
                    size: r.try_get("size")?,
                    digest: r.try_get("digest")?,
                    received_at: rfc3339(r.try_get("received_at")?),
                })
            })
            .collect()
    }

    /// Keeps an unprocessable message verbatim; a second copy of the same bytes is a no-op.
    pub async fn quarantine(
        &self,
        digest: &str,
        reason: &str,
        source: &str,
        raw: &[u8],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO quarantine (digest, reason, source, size, raw, received_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(reason)
        .bind(source)
        .bind(i64::try_from(raw.len()).unwrap_or(i64::MAX))
        .bind(raw)
        .bind(ts(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
