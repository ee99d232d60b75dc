//! The SQL behind agents working from their mail client: agent keys, staff, commands, and
//! the `users` administration commands. Same portable dialect as `queries.rs`.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_ts, ts, Store, StoreError, Tx};
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

fn user_record(row: &sqlx::any::AnyRow, prefix: &str) -> Result<UserRecord, StoreError> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(UserRecord {
        id: row.try_get(col("id").as_str())?,
        email: row.try_get(col("email").as_str())?,
        name: row.try_get(col("name").as_str())?,
        role: row.try_get(col("role").as_str())?,
        active: row.try_get::<String, _>(col("status").as_str())? == "active",
    })
}

impl Tx {
    pub async fn ticket_record(&mut self, ticket_id: i64) -> Result<TicketRecord, StoreError> {
        let t = sqlx::query(
            "SELECT t.id, t.number, t.subject, t.status, t.category, t.urgency, t.access_key,
                    t.agent_key, t.created_at, t.first_response_due, t.resolution_due,
                    t.first_response_at,
                    r.id AS r_id, r.email AS r_email, r.name AS r_name, r.role AS r_role,
                    r.status AS r_status,
                    a.id AS a_id, a.email AS a_email, a.name AS a_name, a.role AS a_role,
                    a.status AS a_status
               FROM tickets t JOIN users r ON r.id = t.requester_id
               LEFT JOIN users a ON a.id = t.assignee_id
              WHERE t.id = $1",
        )
        .bind(ticket_id)
        .fetch_one(self.conn())
        .await?;
        let status: String = t.try_get("status")?;
        let assignee = match t.try_get::<Option<i64>, _>("a_id")? {
            Some(_) => Some(user_record(&t, "a_")?),
            None => None,
        };
        Ok(TicketRecord {
            id: t.try_get("id")?,
            number: t.try_get("number")?,
            subject: t.try_get("subject")?,
            status: TicketStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("ticket status `{status}`")))?,
            category: t.try_get("category")?,
            urgency: u8::try_from(t.try_get::<i64, _>("urgency")?).unwrap_or(u8::MAX),
            access_key: t.try_get("access_key")?,
            agent_key: t.try_get("agent_key")?,
            created_at: from_ts(t.try_get("created_at")?),
            first_response_due: from_ts(t.try_get("first_response_due")?),
            resolution_due: from_ts(t.try_get("resolution_due")?),
            first_response_at: t
                .try_get::<Option<i64>, _>("first_response_at")?
                .map(from_ts),
            requester: user_record(&t, "r_")?,
            assignee,
        })
    }

    pub async fn set_agent_key(&mut self, ticket_id: i64, key: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET agent_key = $1 WHERE id = $2")
            .bind(key)
            .bind(ticket_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn ticket_by_agent_key(
        &mut self,
        key: &str,
    ) -> Result<Option<TicketSummary>, StoreError> {
        let row =
            sqlx::query("SELECT id, number, status, closed_at FROM tickets WHERE agent_key = $1")
                .bind(key)
                .fetch_optional(self.conn())
                .await?;
        self.summary_of(row).await
    }

    /// Active agents and admins.
    pub async fn active_staff(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query(
            "SELECT id, email, name, role, status FROM users
              WHERE role IN ('agent', 'admin') AND status = 'active' ORDER BY id",
        )
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(|r| user_record(r, ""))
        .collect()
    }

    pub async fn user_record(&mut self, email_key: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query("SELECT id, email, name, role, status FROM users WHERE email_key = $1")
            .bind(email_key)
            .fetch_optional(self.conn())
            .await?
            .as_ref()
            .map(|r| user_record(r, ""))
            .transpose()
    }

    /// The Cc collaborators of a ticket.
    pub async fn collaborators(&mut self, ticket_id: i64) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query(
            "SELECT u.id, u.email, u.name, u.role, u.status FROM participants p
               JOIN users u ON u.id = p.user_id WHERE p.ticket_id = $1 ORDER BY u.id",
        )
        .bind(ticket_id)
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(|r| user_record(r, ""))
        .collect()
    }

    /// Message-IDs of the customers' messages on a ticket, oldest first.
    pub async fn customer_message_ids(
        &mut self,
        ticket_id: i64,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "SELECT message_id FROM messages
              WHERE ticket_id = $1 AND direction = 'inbound' AND kind = 'customer' ORDER BY id",
        )
        .bind(ticket_id)
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("message_id").map_err(Into::into))
        .collect()
    }

    /// Stops the first-response clock; later answers leave it alone. True if it was running.
    pub async fn set_first_response(
        &mut self,
        ticket_id: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tickets SET first_response_at = $1 WHERE id = $2 AND first_response_at IS NULL",
        )
        .bind(ts(at))
        .bind(ticket_id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_urgency(
        &mut self,
        ticket_id: i64,
        urgency: u8,
        first_response_due: DateTime<Utc>,
        resolution_due: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tickets SET urgency = $1, first_response_due = $2, resolution_due = $3,
                                updated_at = $4 WHERE id = $5",
        )
        .bind(i64::from(urgency))
        .bind(ts(first_response_due))
        .bind(ts(resolution_due))
        .bind(ts(at))
        .bind(ticket_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn set_category(
        &mut self,
        ticket_id: i64,
        category: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET category = $1, updated_at = $2 WHERE id = $3")
            .bind(category)
            .bind(ts(at))
            .bind(ticket_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn set_assignee(
        &mut self,
        ticket_id: i64,
        user_id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET assignee_id = $1, updated_at = $2 WHERE id = $3")
            .bind(user_id)
            .bind(ts(at))
            .bind(ticket_id)
            .execute(self.conn())
            .await?;
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
    pub async fn save_user(&self, u: &UserUpdate<'_>, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (email, email_key, name, role, org, support_user, created_at)
             VALUES ($1, $2, $3, $4, COALESCE($5, ''), COALESCE($6, 0), $7)
             ON CONFLICT (email_key) DO UPDATE SET role = excluded.role,
                 name = CASE WHEN excluded.name = '' THEN users.name ELSE excluded.name END,
                 org = CASE WHEN $5 IS NULL THEN users.org ELSE excluded.org END,
                 support_user = CASE WHEN $6 IS NULL THEN users.support_user
                                     ELSE excluded.support_user END",
        )
        .bind(u.email)
        .bind(u.email_key)
        .bind(u.name)
        .bind(u.role)
        .bind(u.org)
        .bind(u.support_user.map(i64::from))
        .bind(ts(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Activates or deactivates a user; false when there is no such user.
    pub async fn set_user_active(&self, email_key: &str, active: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET status = $1 WHERE email_key = $2")
            .bind(if active { "active" } else { "inactive" })
            .bind(email_key)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
