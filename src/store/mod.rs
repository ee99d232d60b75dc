//! Persistence: one interface over SQLite (the embedded default) and PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver: a portable dialect (`$N`
//! placeholders, `RETURNING`, `ON CONFLICT`, integers for timestamps and booleans). Only the
//! migrations (`migrations/sqlite`, `migrations/postgres`) and connection set-up differ.
//! A [`Tx`] is one inbound message's unit of work: everything it writes commits or nothing does.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

use crate::tickets::{KnownUser, Role, TicketStatus, TicketSummary};

mod agents;
mod daemon;
mod queries;
pub use agents::{TicketRecord, UserRecord, UserUpdate};
pub use daemon::OutboxJob;
pub use queries::*;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a concurrent writer stored the same row first")]
    Conflict,
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    #[error("unsupported database URL `{0}` (use sqlite:// or postgres://)")]
    BadUrl(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Worth retrying later (an MTA should get EX_TEMPFAIL).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::Conflict => true,
            StoreError::Query(e) => is_busy(e),
            _ => false,
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message().to_ascii_lowercase();
            msg.contains("database is locked") || msg.contains("busy")
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            _ => StoreError::Query(e),
        }
    }
}

/// The database, shared by every task of the process.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl Store {
    /// Connects (creating a SQLite file when missing). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|_| StoreError::BadUrl(url.clone()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(15))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; NORMAL is durable with WAL.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 15000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => {
                return Err(StoreError::BadUrl(
                    "postgres:// (PostgreSQL support is not built yet)".into(),
                ))
            }
        }
        Ok(())
    }

    /// Starts one unit of work. SQLite takes the write lock up front so two writers queue on
    /// busy_timeout instead of failing when the first read would upgrade to a write.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx { tx })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One open transaction.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

pub(crate) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

pub(crate) fn from_ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

pub(crate) fn ticket_summary(row: &sqlx::any::AnyRow) -> Result<TicketSummary, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(TicketSummary {
        id: row.try_get("id")?,
        number: row.try_get("number")?,
        status: TicketStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket status `{status}`")))?,
        closed_at: row.try_get::<Option<i64>, _>("closed_at")?.map(from_ts),
        participants: Vec::new(),
    })
}

pub(crate) fn known_user(row: &sqlx::any::AnyRow) -> Result<KnownUser, StoreError> {
    let role: String = row.try_get("role")?;
    let status: String = row.try_get("status")?;
    Ok(KnownUser {
        id: row.try_get("id")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("user role `{role}`")))?,
        active: status == "active",
        support_user: row.try_get::<i64, _>("support_user")? != 0,
        org: effective_org(
            &row.try_get::<String, _>("org")?,
            &row.try_get::<String, _>("email")?,
        ),
    })
}

/// Organisation of a user: explicit, else the email domain.
pub fn effective_org(org: &str, email: &str) -> String {
    if org.trim().is_empty() {
        email.rsplit('@').next().unwrap_or("").to_ascii_lowercase()
    } else {
        org.trim().to_string()
    }
}
