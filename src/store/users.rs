//! Users: who a sender is, provisioning, staff, and the `users` administration commands.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    args, exec, known_user, query_all, query_one, query_opt, ts, user_row, Store, StoreError, Tx,
};
use crate::tickets::{KnownUser, UserRecord};

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
    pub site_admin: bool,
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
    /// Sees every ticket of their organisation on the web (/my); None keeps the stored flag.
    pub site_admin: Option<bool>,
}

impl Tx {
    /// The requester of an accepted ticket becomes a known user.
    pub fn mark_known(&mut self, user_id: i64) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE users SET known = 1 WHERE id = ?1 AND known = 0",
            args![user_id],
        )?;
        Ok(())
    }

    pub fn user_by_email(&mut self, email_key: &str) -> Result<Option<KnownUser>, StoreError> {
        query_opt(
            self.conn(),
            "SELECT id, role, status, support_user, org, email, known FROM users WHERE email_key = ?1",
            args![email_key],
            known_user,
        )
    }

    /// The first questions about every message, in one round trip: is its Message-ID stored,
    /// who is its sender (by `sender_key`), and how many automatic answers (acknowledgements,
    /// refusals, command errors: they share one rate limit) went to the sender's `rate_key`
    /// (the address without +detail) since `since`.
    /// `answers`: the outbox kinds that share the rate limit (decided in the core:
    /// [`crate::tickets::outbound::MailKind::AUTOMATIC_ANSWERS`]).
    pub fn first_look(
        &mut self,
        message_id: &str,
        sender_key: &str,
        rate_key: &str,
        since: DateTime<Utc>,
        answers: [&str; 5],
    ) -> Result<(bool, Option<KnownUser>, u32), StoreError> {
        query_one(
            self.conn(),
            "SELECT (SELECT COUNT(*) FROM messages WHERE message_id = ?1)
                  + (SELECT COUNT(*) FROM ignored_mail WHERE message_id = ?1) AS stored,
                    (SELECT COUNT(*) FROM outbox_recipients r JOIN outbox o ON o.id = r.outbox_id
                      WHERE r.rate_key = ?4 AND r.created_at > ?3
                        AND o.kind IN (?5, ?6, ?7, ?8, ?9)) AS acks,
                    u.id, u.role, u.status, u.support_user, u.org, u.email, u.known
               FROM (SELECT 1 AS one) AS x LEFT JOIN users u ON u.email_key = ?2",
            args![
                message_id,
                sender_key,
                ts(since),
                rate_key,
                answers[0],
                answers[1],
                answers[2],
                answers[3],
                answers[4]
            ],
            |row| {
                let known = row.get::<i64>("stored")? > 0;
                let acks = u32::try_from(row.get::<i64>("acks")?).unwrap_or(u32::MAX);
                let sender = match row.get::<Option<i64>>("id")? {
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
            args![u.email, u.email_key, u.name, u.role, u.known, ts(at)],
            |row| row.get("id"),
        )
    }

    /// Provisions a sender the first look found no user for; returns its id. One statement
    /// (the insert); should the address have been stored since (another replica's commit),
    /// that user's id is looked up instead.
    pub fn provision_user(
        &mut self,
        u: &NewUser<'_>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let inserted = query_opt(
            self.conn(),
            "INSERT INTO users (email, email_key, name, role, known, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (email_key) DO NOTHING RETURNING id",
            args![u.email, u.email_key, u.name, u.role, u.known, ts(at)],
            |row| row.get::<i64>("id"),
        )?;
        match inserted {
            Some(id) => Ok(id),
            None => self.ensure_user(u, at),
        }
    }

    /// Finds or provisions a customer; returns its id.
    pub fn ensure_user(&mut self, u: &NewUser<'_>, at: DateTime<Utc>) -> Result<i64, StoreError> {
        match self.user_by_email(u.email_key)? {
            Some(known) => Ok(known.id),
            None => self.insert_user(u, at),
        }
    }

    /// Active agents and admins: read once per transaction (ingest only provisions
    /// customers, so its own writes never change the list; a batch sees the staff as they
    /// were at its first notification).
    pub fn active_staff(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        if let Some(staff) = &self.staff {
            return Ok(staff.clone());
        }
        let staff = query_all(
            self.conn(),
            "SELECT id, email, name, role, status FROM users
              WHERE role IN ('agent', 'admin') AND status = 'active' ORDER BY id",
            args![],
            |r| user_row(r, ""),
        )?;
        self.staff = Some(staff.clone());
        Ok(staff)
    }

    pub fn user_record(&mut self, email_key: &str) -> Result<Option<UserRecord>, StoreError> {
        query_opt(
            self.conn(),
            "SELECT id, email, name, role, status FROM users WHERE email_key = ?1",
            args![email_key],
            |r| user_row(r, ""),
        )
    }
}

impl Store {
    pub fn list_users(&self) -> Result<Vec<UserItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT email, name, role, status, org, support_user, site_admin FROM users ORDER BY id",
                args![],
                |r| {
                    Ok(UserItem {
                        email: r.get("email")?,
                        name: r.get("name")?,
                        role: r.get("role")?,
                        status: r.get("status")?,
                        org: crate::tickets::effective_org(
                            &r.get::<String>("org")?,
                            &r.get::<String>("email")?,
                        ),
                        support_user: r.get::<i64>("support_user")? != 0,
                        site_admin: r.get::<i64>("site_admin")? != 0,
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
                args![email, email_key, name, role, ts(at)],
            )?;
            Ok(())
        })
    }

    /// Creates or updates a user (role always; name, org and flag when given).
    pub fn save_user(&self, u: &UserUpdate<'_>, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "INSERT INTO users (email, email_key, name, role, org, support_user, known, created_at,
                                    site_admin)
                 VALUES (?1, ?2, ?3, ?4, COALESCE(?5, ''), COALESCE(?6, 0), 1, ?7, COALESCE(?8, 0))
                 ON CONFLICT (email_key) DO UPDATE SET role = excluded.role, known = 1,
                     name = CASE WHEN excluded.name = '' THEN users.name ELSE excluded.name END,
                     org = CASE WHEN ?5 IS NULL THEN users.org ELSE excluded.org END,
                     support_user = CASE WHEN ?6 IS NULL THEN users.support_user
                                         ELSE excluded.support_user END,
                     site_admin = CASE WHEN ?8 IS NULL THEN users.site_admin
                                       ELSE excluded.site_admin END",
                args![
                    u.email,
                    u.email_key,
                    u.name,
                    u.role,
                    u.org,
                    u.support_user.map(i64::from),
                    ts(at),
                    u.site_admin.map(i64::from)
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
                args![if active { "active" } else { "inactive" }, email_key],
            )?;
            Ok(done > 0)
        })
    }
}
