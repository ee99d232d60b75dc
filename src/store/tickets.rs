//! Tickets: threading lookups, creation, the changes agents' commands make, and the
//! read views of `tickets list|show`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::Arg;
use super::{
    args, exec, from_ts, named, query_all, query_one, query_opt, rfc3339, ticket_list_item,
    ticket_summary, ts, user_row, Store, StoreError, Tx,
};
use crate::tickets::{AccessKey, TicketRecord, TicketStatus, TicketSummary, UserRecord};

/// A ticket to create.
#[derive(Debug, Clone)]
pub struct NewTicket<'a> {
    /// Taken from [`Tx::next_ticket_number`] in the same transaction.
    pub number: i64,
    pub access_key: &'a str,
    /// The second secret, for the agents' reply channel (`support+a-KEY@`).
    pub agent_key: &'a str,
    pub subject: &'a str,
    pub category: &'a str,
    pub urgency: u8,
    pub triage_reasons: &'a str,
    /// The customer's language, as triage detected it.
    pub language: &'a str,
    pub requester_id: i64,
    pub follows_ticket_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
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
    /// The customer's language (ISO 639-1), as triage detected it.
    pub language: String,
    pub requester: Person,
    pub collaborators: Vec<Person>,
    pub assignee: Option<Person>,
    pub follows: Option<i64>,
    /// The number of the incident the ticket is linked to.
    pub incident: Option<i64>,
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

impl Tx {
    /// The ticket owning the first of `ids` that we know (received or sent).
    pub fn ticket_by_message_ids(
        &mut self,
        ids: &[String],
    ) -> Result<Option<TicketSummary>, StoreError> {
        // A message on the ticket's history first, else one we sent that is not on it
        // (agent notifications).
        self.ticket_of_first(
            ids,
            "SELECT id, number, status, closed_at FROM (
                 SELECT 0 AS pref, t.id, t.number, t.status, t.closed_at FROM messages m
                   JOIN tickets t ON t.id = m.ticket_id WHERE m.message_id = ?1
                 UNION ALL
                 SELECT 1 AS pref, t.id, t.number, t.status, t.closed_at FROM outbox o
                   JOIN tickets t ON t.id = o.ticket_id WHERE o.message_id = ?1
             ) AS found ORDER BY pref LIMIT 1",
        )
    }

    pub fn ticket_by_access_key(&mut self, key: &str) -> Result<Option<TicketSummary>, StoreError> {
        self.ticket_where(
            "SELECT id, number, status, closed_at FROM tickets WHERE access_key = ?1",
            args![key],
        )
    }

    pub fn ticket_by_number(&mut self, number: i64) -> Result<Option<TicketSummary>, StoreError> {
        self.ticket_where(
            "SELECT id, number, status, closed_at FROM tickets WHERE number = ?1",
            args![number],
        )
    }

    /// The ticket `sql` finds (columns as [`ticket_summary`] reads them), with its
    /// participants.
    fn ticket_where(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<TicketSummary>, StoreError> {
        let found = query_opt(self.conn(), sql, args, ticket_summary)?;
        self.summary_of(found)
    }

    /// The ticket `sql` finds for the first of `ids` (`?1`) that names one.
    fn ticket_of_first(
        &mut self,
        ids: &[String],
        sql: &str,
    ) -> Result<Option<TicketSummary>, StoreError> {
        for id in ids {
            if let Some(t) = self.ticket_where(sql, args![id.as_str()])? {
                return Ok(Some(t));
            }
        }
        Ok(None)
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
            args![t.id],
            |r| r.get::<String>("email_key"),
        )?;
        Ok(t)
    }

    /// The ticket owning a mail we sent to agents only, named by the first of `ids` that is
    /// one: the agents' own channel into a ticket.
    pub fn ticket_by_agent_mail(
        &mut self,
        ids: &[String],
    ) -> Result<Option<TicketSummary>, StoreError> {
        self.ticket_of_first(
            ids,
            "SELECT t.id, t.number, t.status, t.closed_at FROM agent_mail a
               JOIN tickets t ON t.id = a.ticket_id WHERE a.message_id = ?1",
        )
    }

    /// The number the next ticket gets (1001 for the first).
    ///
    /// On SQLite, `MAX(number) + 1`, read inside the writing transaction, whose write lock
    /// keeps it free until the ticket is inserted: sequential without gaps.
    ///
    /// On PostgreSQL, replicas write side by side: the number comes from the sequence
    /// `ticket_numbers` (migration 0020), which serialises nobody beyond the one `nextval`.
    /// Numbers are unique and increase in the order they are taken; a replica may commit a
    /// later number before another commits an earlier one. A number taken by a message that
    /// is then undone is given to this transaction's next new ticket (see `Numbers`); one is
    /// lost (a gap) only when the transaction ends without a new ticket to give it to, or
    /// rolls back whole (the database gone mid-batch, the process killed). A read-only look
    /// ([`Store::read`], `ingest --dry-run`) takes nothing: it shows the next free number.
    pub fn next_ticket_number(&mut self) -> Result<i64, StoreError> {
        if !self.conn().is_pg() {
            return query_one(
                self.conn(),
                "SELECT COALESCE(MAX(number), 1000) + 1 AS next FROM tickets",
                args![],
                |row| row.get("next"),
            );
        }
        if self.read_only {
            return query_one(
                self.conn(),
                "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next
                   FROM ticket_numbers",
                args![],
                |row| row.get("next"),
            );
        }
        let n = match self.numbers.reuse() {
            Some(n) => n,
            None => query_one(
                self.conn(),
                "SELECT nextval('ticket_numbers') AS next",
                args![],
                |row| row.get("next"),
            )?,
        };
        self.numbers.take(n);
        Ok(n)
    }

    /// Creates a ticket; returns its row id.
    pub fn insert_ticket(&mut self, t: &NewTicket<'_>) -> Result<i64, StoreError> {
        query_one(
            self.conn(),
            "INSERT INTO tickets (number, access_key, subject, status, category, urgency, triage_reasons,
                                  requester_id, follows_ticket_id, created_at, updated_at,
                                  first_response_due, resolution_due, agent_key, language,
                                  triage_category, triage_urgency)
             VALUES (?12, ?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?13, ?3, ?4)
             RETURNING id",
            args![
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
                t.number,
                t.language,
            ],
            |row| row.get("id"),
        )
    }

    pub fn add_participant(&mut self, ticket_id: i64, user_id: i64) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "INSERT INTO participants (ticket_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            args![ticket_id, user_id],
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
            args![status.as_str(), closed_at, ts(at), ticket_id],
        )?;
        Ok(())
    }

    pub fn touch_ticket(&mut self, ticket_id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET updated_at = ?1 WHERE id = ?2",
            args![ts(at), ticket_id],
        )?;
        Ok(())
    }

    pub fn ticket_record(&mut self, ticket_id: i64) -> Result<TicketRecord, StoreError> {
        query_one(
            self.conn(),
            "SELECT t.id, t.number, t.subject, t.status, t.closed_at, t.category, t.urgency,
                    t.access_key, t.agent_key, t.created_at, t.first_response_due, t.resolution_due,
                    t.first_response_at, t.language, t.triage_category, t.triage_urgency,
                    r.id AS r_id, r.email AS r_email, r.name AS r_name, r.role AS r_role,
                    r.status AS r_status,
                    a.id AS a_id, a.email AS a_email, a.name AS a_name, a.role AS a_role,
                    a.status AS a_status
               FROM tickets t JOIN users r ON r.id = t.requester_id
               LEFT JOIN users a ON a.id = t.assignee_id
              WHERE t.id = ?1",
            args![ticket_id],
            |t| {
                let access_key: String = t.get("access_key")?;
                let assignee = match t.get::<Option<i64>>("a_id")? {
                    Some(_) => Some(user_row(t, "a_")?),
                    None => None,
                };
                Ok(TicketRecord {
                    id: t.get("id")?,
                    number: t.get("number")?,
                    subject: t.get("subject")?,
                    status: named(t, "status", "ticket status", TicketStatus::parse)?,
                    closed_at: t.get::<Option<i64>>("closed_at")?.map(from_ts),
                    category: t.get("category")?,
                    urgency: u8::try_from(t.get::<i64>("urgency")?).unwrap_or(u8::MAX),
                    access_key: AccessKey::stored(access_key),
                    agent_key: t.get::<Option<String>>("agent_key")?.map(AccessKey::stored),
                    created_at: from_ts(t.get("created_at")?),
                    first_response_due: from_ts(t.get("first_response_due")?),
                    resolution_due: from_ts(t.get("resolution_due")?),
                    first_response_at: t.get::<Option<i64>>("first_response_at")?.map(from_ts),
                    language: t.get("language")?,
                    triage_category: t.get("triage_category")?,
                    triage_urgency: u8::try_from(t.get::<i64>("triage_urgency")?).unwrap_or(0),
                    requester: user_row(t, "r_")?,
                    assignee,
                })
            },
        )
    }

    pub fn set_agent_key(&mut self, ticket_id: i64, key: &str) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET agent_key = ?1 WHERE id = ?2",
            args![key, ticket_id],
        )?;
        Ok(())
    }

    pub fn ticket_by_agent_key(&mut self, key: &str) -> Result<Option<TicketSummary>, StoreError> {
        let summary = query_opt(
            self.conn(),
            "SELECT id, number, status, closed_at FROM tickets WHERE agent_key = ?1",
            args![key],
            ticket_summary,
        )?;
        self.summary_of(summary)
    }

    /// The Cc collaborators of a ticket.
    pub fn collaborators(&mut self, ticket_id: i64) -> Result<Vec<UserRecord>, StoreError> {
        query_all(
            self.conn(),
            "SELECT u.id, u.email, u.name, u.role, u.status FROM participants p
               JOIN users u ON u.id = p.user_id WHERE p.ticket_id = ?1 ORDER BY u.id",
            args![ticket_id],
            |r| user_row(r, ""),
        )
    }

    /// The subject and text of the ticket's first customer message (what triage saw).
    pub fn first_customer_message(
        &mut self,
        ticket_id: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        query_opt(
            self.conn(),
            "SELECT subject, body FROM messages
              WHERE ticket_id = ?1 AND direction = 'inbound' AND kind = 'customer'
              ORDER BY id LIMIT 1",
            args![ticket_id],
            |r| Ok((r.get("subject")?, r.get("body")?)),
        )
    }

    /// The ticket's last public answer: the text of the latest agent reply that was relayed
    /// to the customer side (stored without its commands), if any.
    pub fn last_public_answer(&mut self, ticket_id: i64) -> Result<Option<String>, StoreError> {
        query_opt(
            self.conn(),
            "SELECT body FROM messages
              WHERE ticket_id = ?1 AND direction = 'inbound' AND kind = 'agent'
                AND trim(body) != ''
              ORDER BY id DESC LIMIT 1",
            args![ticket_id],
            |r| r.get::<String>("body"),
        )
    }

    /// Message-IDs of the customers' messages on a ticket, oldest first.
    pub fn customer_message_ids(&mut self, ticket_id: i64) -> Result<Vec<String>, StoreError> {
        query_all(
            self.conn(),
            "SELECT message_id FROM messages
              WHERE ticket_id = ?1 AND direction = 'inbound' AND kind = 'customer' ORDER BY id",
            args![ticket_id],
            |r| r.get::<String>("message_id"),
        )
    }

    /// Stops the first-response clock; later answers leave it alone. True if it was running.
    pub fn set_first_response(
        &mut self,
        ticket_id: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = exec(
            self.conn(),
            "UPDATE tickets SET first_response_at = ?1 WHERE id = ?2 AND first_response_at IS NULL",
            args![ts(at), ticket_id],
        )?;
        Ok(done > 0)
    }

    pub fn set_urgency(
        &mut self,
        ticket_id: i64,
        urgency: u8,
        first_response_due: DateTime<Utc>,
        resolution_due: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET urgency = ?1, first_response_due = ?2, resolution_due = ?3,
                                updated_at = ?4 WHERE id = ?5",
            args![
                i64::from(urgency),
                ts(first_response_due),
                ts(resolution_due),
                ts(at),
                ticket_id
            ],
        )?;
        Ok(())
    }

    pub fn set_category(
        &mut self,
        ticket_id: i64,
        category: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET category = ?1, updated_at = ?2 WHERE id = ?3",
            args![category, ts(at), ticket_id],
        )?;
        Ok(())
    }

    pub fn set_assignee(
        &mut self,
        ticket_id: i64,
        user_id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET assignee_id = ?1, updated_at = ?2 WHERE id = ?3",
            args![user_id, ts(at), ticket_id],
        )?;
        Ok(())
    }
}

impl Store {
    pub fn list_tickets(&self) -> Result<Vec<TicketListItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT t.number, t.subject, t.status, t.category, t.urgency, t.created_at, u.email, u.name
                   FROM tickets t JOIN users u ON u.id = t.requester_id ORDER BY t.number",
                args![],
                ticket_list_item,
            )
        })
    }

    pub fn ticket_detail(&self, number: i64) -> Result<Option<TicketDetail>, StoreError> {
        self.with_conn(|c| {
            let Some((id, mut detail)) = query_opt(
                c,
                "SELECT t.*, u.email AS r_email, u.name AS r_name, a.email AS a_email, a.name AS a_name,
                        f.number AS follows_number, i.number AS incident_number
                   FROM tickets t JOIN users u ON u.id = t.requester_id
                   LEFT JOIN users a ON a.id = t.assignee_id
                   LEFT JOIN tickets f ON f.id = t.follows_ticket_id
                   LEFT JOIN incidents i ON i.id = t.incident_id
                  WHERE t.number = ?1",
                args![number],
                |t| {
                    let id: i64 = t.get("id")?;
                    let reasons: String = t.get("triage_reasons")?;
                    let assignee = match t.get::<Option<String>>("a_email")? {
                        Some(email) => Some(Person {
                            email,
                            name: t.get::<Option<String>>("a_name")?.unwrap_or_default(),
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
                        language: t.get("language")?,
                        requester: Person {
                            email: t.get("r_email")?,
                            name: t.get("r_name")?,
                        },
                        collaborators: Vec::new(),
                        assignee,
                        follows: t.get("follows_number")?,
                        incident: t.get("incident_number")?,
                        created_at: rfc3339(t.get("created_at")?),
                        first_response_due: rfc3339(t.get("first_response_due")?),
                        resolution_due: rfc3339(t.get("resolution_due")?),
                        first_response_at: t
                            .get::<Option<i64>>("first_response_at")?
                            .map(rfc3339),
                        closed_at: t.get::<Option<i64>>("closed_at")?.map(rfc3339),
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
                args![id],
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
                args![id],
                |m| {
                    Ok((
                        m.get::<i64>("id")?,
                        MessageView {
                            message_id: m.get("message_id")?,
                            direction: m.get("direction")?,
                            kind: m.get("kind")?,
                            author: m.get("author")?,
                            internal: m.get::<i64>("internal")? != 0,
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
                    args![message_row],
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
                args![id],
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
}
