//! The SQL behind agents working from their mail client: agent keys, staff, commands, and
//! the `users` administration commands. SQLite, like `queries.rs`.

use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

use super::{
    exec, from_ts, query_all, query_one, query_opt, ticket_summary, ts, Store, StoreError, Tx,
};
use crate::tickets::{TicketStatus, TicketSummary};

/// A ticket as agent commands and agent mail need it.
#[derive(Debug, Clone)]
pub struct TicketRecord {
    pub id: i64,
    pub number: i64,
    pub subject: String,
    pub status: TicketStatus,
    pub category: String,
    pub urgency: u8,
    pub access_key: String,
    /// NULL for tickets from before migration 0002 until their first notification.
    pub agent_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub requester: UserRecord,
    pub assignee: Option<UserRecord>,
}

/// A user with what mails need to address them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: String,
    pub active: bool,
}

fn user_record(row: &Row<'_>, prefix: &str) -> Result<UserRecord, StoreError> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(UserRecord {
        id: row.get(col("id").as_str())?,
        email: row.get(col("email").as_str())?,
        name: row.get(col("name").as_str())?,
        role: row.get(col("role").as_str())?,
        active: row.get::<_, String>(col("status").as_str())? == "active",
    })
}

impl Tx {
    pub fn ticket_record(&mut self, ticket_id: i64) -> Result<TicketRecord, StoreError> {
        query_one(
            self.conn(),
            "SELECT t.id, t.number, t.subject, t.status, t.category, t.urgency, t.access_key,
                    t.agent_key, t.created_at, t.first_response_due, t.resolution_due,
                    t.first_response_at,
                    r.id AS r_id, r.email AS r_email, r.name AS r_name, r.role AS r_role,
                    r.status AS r_status,
                    a.id AS a_id, a.email AS a_email, a.name AS a_name, a.role AS a_role,
                    a.status AS a_status
               FROM tickets t JOIN users r ON r.id = t.requester_id
               LEFT JOIN users a ON a.id = t.assignee_id
              WHERE t.id = ?1",
            params![ticket_id],
            |t| {
                let status: String = t.get("status")?;
                let assignee = match t.get::<_, Option<i64>>("a_id")? {
                    Some(_) => Some(user_record(t, "a_")?),
                    None => None,
                };
                Ok(TicketRecord {
                    id: t.get("id")?,
                    number: t.get("number")?,
                    subject: t.get("subject")?,
                    status: TicketStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("ticket status `{status}`")))?,
                    category: t.get("category")?,
                    urgency: u8::try_from(t.get::<_, i64>("urgency")?).unwrap_or(u8::MAX),
                    access_key: t.get("access_key")?,
                    agent_key: t.get("agent_key")?,
                    created_at: from_ts(t.get("created_at")?),
                    first_response_due: from_ts(t.get("first_response_due")?),
                    resolution_due: from_ts(t.get("resolution_due")?),
                    first_response_at: t.get::<_, Option<i64>>("first_response_at")?.map(from_ts),
                    requester: user_record(t, "r_")?,
                    assignee,
                })
            },
        )
    }

    pub fn set_agent_key(&mut self, ticket_id: i64, key: &str) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET agent_key = ?1 WHERE id = ?2",
            params![key, ticket_id],
        )?;
        Ok(())
    }

    pub fn ticket_by_agent_key(&mut self, key: &str) -> Result<Option<TicketSummary>, StoreError> {
        let summary = query_opt(
            self.conn(),
            "SELECT id, number, status, closed_at FROM tickets WHERE agent_key = ?1",
            params![key],
            ticket_summary,
        )?;
        self.summary_of(summary)
    }

    /// Active agents and admins.
    pub fn active_staff(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        query_all(
            self.conn(),
            "SELECT id, email, name, role, status FROM users
              WHERE role IN ('agent', 'admin') AND status = 'active' ORDER BY id",
            params![],
            |r| user_record(r, ""),
        )
    }

    pub fn user_record(&mut self, email_key: &str) -> Result<Option<UserRecord>, StoreError> {
        query_opt(
            self.conn(),
            "SELECT id, email, name, role, status FROM users WHERE email_key = ?1",
            params![email_key],
            |r| user_record(r, ""),
        )
    }

    /// The Cc collaborators of a ticket.
    pub fn collaborators(&mut self, ticket_id: i64) -> Result<Vec<UserRecord>, StoreError> {
        query_all(
            self.conn(),
            "SELECT u.id, u.email, u.name, u.role, u.status FROM participants p
               JOIN users u ON u.id = p.user_id WHERE p.ticket_id = ?1 ORDER BY u.id",
            params![ticket_id],
            |r| user_record(r, ""),
        )
    }

    /// Message-IDs of the customers' messages on a ticket, oldest first.
    pub fn customer_message_ids(&mut self, ticket_id: i64) -> Result<Vec<String>, StoreError> {
        query_all(
            self.conn(),
            "SELECT message_id FROM messages
              WHERE ticket_id = ?1 AND direction = 'inbound' AND kind = 'customer' ORDER BY id",
            params![ticket_id],
            |r| Ok(r.get::<_, String>("message_id")?),
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
            params![ts(at), ticket_id],
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
            params![
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
            params![category, ts(at), ticket_id],
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
            params![user_id, ts(at), ticket_id],
        )?;
        Ok(())
    }
}

/// A user for `supportd users add`.
#[derive(Debug, Clone)]
pub struct UserUpdate<'a> {
    pub email: &'a str,
    pub email_key: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    /// None keeps the stored organisation ('' = the email domain).
    pub org: Option<&'a str>,
    /// None keeps the stored flag.
    pub support_user: Option<bool>,
}

impl Store {
    /// Creates or updates a user (role always; name, org and flag when given).
    pub fn save_user(&self, u: &UserUpdate<'_>, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "INSERT INTO users (email, email_key, name, role, org, support_user, known, created_at)
                 VALUES (?1, ?2, ?3, ?4, COALESCE(?5, ''), COALESCE(?6, 0), 1, ?7)
                 ON CONFLICT (email_key) DO UPDATE SET role = excluded.role, known = 1,
                     name = CASE WHEN excluded.name = '' THEN users.name ELSE excluded.name END,
                     org = CASE WHEN ?5 IS NULL THEN users.org ELSE excluded.org END,
                     support_user = CASE WHEN ?6 IS NULL THEN users.support_user
                                         ELSE excluded.support_user END",
                params![
                    u.email,
                    u.email_key,
                    u.name,
                    u.role,
                    u.org,
                    u.support_user.map(i64::from),
                    ts(at)
                ],
            )?;
            Ok(())
        })
    }

    /// Activates or deactivates a user; false when there is no such user.
    pub fn set_user_active(&self, email_key: &str, active: bool) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            let done = exec(
                c,
                "UPDATE users SET status = ?1 WHERE email_key = ?2",
                params![if active { "active" } else { "inactive" }, email_key],
            )?;
            Ok(done > 0)
        })
    }
}
