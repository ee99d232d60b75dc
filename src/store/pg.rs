//! PostgreSQL through sqlx's driver, behind the store's synchronous interface.
//!
//! The store is called from synchronous code (the Plan applier inside one transaction, on
//! the daemon's workers through [`super::blocking`], and from one-shot commands on a
//! current-thread runtime). sqlx is async, so the PostgreSQL connections live on a small
//! runtime of their own (one worker thread, "supportd-pg"), which drives their sockets and
//! timers; a statement is awaited on the calling thread with a plain executor while that
//! runtime's context is entered. The calling thread only waits, whatever runtime it belongs
//! to: no `block_on` inside a runtime, no deadlock on a current-thread runtime.

use std::cell::Cell;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor as _, Postgres};

use super::deferred::Deferred;
use super::sql::{first_line, pg_sql, Arg};
use super::StoreError;

/// Connections kept per process (the pipeline's transaction, the sender, the web, the
/// IMAP workers' attempts and cursors; replicas each have their own).
const POOL_MAX: u32 = 10;
/// How long to wait for a free connection, or for a new one to open.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);

thread_local! {
    /// Statements sent to PostgreSQL from this thread (each one round trip).
    static ROUND_TRIPS: Cell<u64> = const { Cell::new(0) };
}

/// How many statements (round trips to the server) the calling thread has sent to
/// PostgreSQL so far: a diagnostic for tests and benchmarks. Per thread, because a
/// statement is awaited on the thread that asked for it, so concurrent tests do not mix.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.with(Cell::get)
}

pub(crate) static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The PostgreSQL side of a [`super::Store`].
pub(crate) struct PgBackend {
    /// Some until dropped (a runtime may not be dropped inside another one: shut down).
    rt: Option<tokio::runtime::Runtime>,
    pool: Option<PgPool>,
    /// The URL without its password, for messages.
    pub(crate) shown: String,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("url", &self.shown)
            .finish()
    }
}

/// Runs `fut` to completion on the calling thread, with the PostgreSQL runtime's context
/// entered (sqlx's sockets and timers belong to it; its worker drives them).
pub(crate) fn wait<F: Future>(rt: &tokio::runtime::Handle, fut: F) -> F::Output {
    let _entered = rt.enter();
    futures::executor::block_on(fut)
}

/// A URL for messages: the password replaced.
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "postgres://…".to_string(),
    }
}

impl PgBackend {
    /// Opens the pool and one connection now, so that a wrong host, password, database or
    /// certificate fails here with its cause.
    pub(crate) fn connect(url: &str) -> Result<PgBackend, StoreError> {
        let shown = shown_url(url);
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::BadUrl(shown.clone(), bad_url(&e)))?;
        let options = options.application_name("supportd");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("supportd-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start a thread: {e}")))?;
        // One connection first, outside the pool, so that the cause of a failure (refused,
        // unknown host, password, certificate) is reported as it is, at once; the pool
        // would retry until its timeout and report only that.
        let first = wait(rt.handle(), async {
            use sqlx::Connection as _;
            let conn = sqlx::PgConnection::connect_with(&options).await?;
            conn.close().await
        });
        if let Err(e) = first {
            rt.shutdown_background();
            return Err(connect_error(&shown, e));
        }
        let pool = {
            let _entered = rt.enter();
            PgPoolOptions::new()
                .max_connections(POOL_MAX)
                .min_connections(0)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                // No ping before each use (a round trip per statement outside a
                // transaction); a broken connection fails its statement, which is
                // reported as unavailable and retried by the caller.
                .test_before_acquire(false)
                .connect_lazy_with(options)
        };
        Ok(PgBackend {
            rt: Some(rt),
            pool: Some(pool),
            shown,
        })
    }

    pub(crate) fn handle(&self) -> Result<&tokio::runtime::Handle, StoreError> {
        self.rt
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or_else(|| StoreError::Unavailable("the database was closed".into()))
    }

    fn pool(&self) -> Result<&PgPool, StoreError> {
        self.pool
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the database was closed".into()))
    }

    /// A connection of the pool, for one statement or one transaction.
    pub(crate) fn acquire(&self) -> Result<PgConn, StoreError> {
        let rt = self.handle()?.clone();
        let pool = self.pool()?;
        let conn = wait(&rt, pool.acquire()).map_err(|e| connect_error(&self.shown, e))?;
        Ok(PgConn {
            conn: Mutex::new(Some(Held::Pooled(conn))),
            rt,
            deferred: Mutex::new(Box::default()),
        })
    }

    /// A connection of its own, outside the pool (a lease's advisory locks live as long as
    /// it does, and end when it is closed).
    pub(crate) fn detached(&self) -> Result<PgConn, StoreError> {
        let conn = self.acquire()?;
        conn.detach();
        Ok(conn)
    }

    /// Applies `migrations/postgres` (sqlx takes an advisory lock: replicas starting
    /// together take turns).
    pub(crate) fn migrate(&self) -> Result<(), StoreError> {
        let pool = self.pool()?;
        match wait(self.handle()?, PG_MIGRATIONS.run(pool)) {
            Ok(()) => Ok(()),
            Err(e) => Err(migrate_error(e)),
        }
    }

    pub(crate) fn close(&self) {
        if let (Ok(rt), Ok(pool)) = (self.handle(), self.pool()) {
            wait(rt, pool.close());
        }
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            {
                let _entered = rt.enter();
                drop(self.pool.take());
            }
            rt.shutdown_background();
        }
    }
}

/// A pooled connection, or one taken out of the pool for good.
enum Held {
    Pooled(PoolConnection<Postgres>),
    Own(sqlx::PgConnection),
}

impl Held {
    fn conn(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Held::Pooled(c) => c,
            Held::Own(c) => c,
        }
    }
}

/// One PostgreSQL connection, used by one statement at a time.
pub(crate) struct PgConn {
    conn: Mutex<Option<Held>>,
    rt: tokio::runtime::Handle,
    /// Rows of the open transaction held back until the next statement (see `deferred`);
    /// boxed, as a connection is carried by value in a transaction.
    deferred: Mutex<Box<Deferred>>,
}

impl PgConn {
    /// Holds rows back, to be written with the next statement sent (see `deferred`).
    pub(crate) fn defer(&self, hold: impl FnOnce(&mut Deferred)) {
        hold(&mut self.deferred.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Writes the rows held back, in one statement (none when nothing is held).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let held = {
            let mut held = self.deferred.lock().unwrap_or_else(PoisonError::into_inner);
            if held.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut **held)
        };
        let (sql, args) = held.statement();
        let q = bind(sql, &args);
        self.send(sql, move |c| Box::pin(async move { q.execute(c).await }))
            .map(drop)
    }

    /// Drops the rows held back: the transaction's owner is rolling back past them (they
    /// all came after the last statement sent, so after any savepoint still open).
    pub(crate) fn discard(&self) {
        **self.deferred.lock().unwrap_or_else(PoisonError::into_inner) = Deferred::default();
    }

    /// Runs `sql`, after the rows held back.
    fn run<T>(
        &self,
        sql: &str,
        f: impl for<'c> FnOnce(
            &'c mut sqlx::PgConnection,
        ) -> futures::future::BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.flush()?;
        self.send(sql, f)
    }

    /// One statement, one round trip.
    fn send<T>(
        &self,
        sql: &str,
        f: impl for<'c> FnOnce(
            &'c mut sqlx::PgConnection,
        ) -> futures::future::BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(held) = guard.as_mut() else {
            return Err(StoreError::Unavailable("the connection was closed".into()));
        };
        ROUND_TRIPS.with(|n| n.set(n.get() + 1));
        wait(&self.rt, f(held.conn())).map_err(|e| statement_error(sql, e))
    }

    pub(crate) fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<usize, StoreError> {
        let q = bind(sql, args);
        let done = self.run(sql, move |c| Box::pin(async move { q.execute(c).await }))?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    pub(crate) fn fetch_optional(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<PgRow>, StoreError> {
        let q = bind(sql, args);
        self.run(sql, move |c| {
            Box::pin(async move { q.fetch_optional(c).await })
        })
    }

    pub(crate) fn fetch_all(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<PgRow>, StoreError> {
        let q = bind(sql, args);
        self.run(sql, move |c| Box::pin(async move { q.fetch_all(c).await }))
    }

    /// Statements without parameters, through the simple protocol (`BEGIN`, `SAVEPOINT`…).
    pub(crate) fn simple(&self, sql: &str) -> Result<(), StoreError> {
        let text = sql.to_string();
        self.run(sql, move |c| {
            // The store's own fixed statements (BEGIN, SAVEPOINT, SET application_name with
            // a quoted literal).
            Box::pin(async move {
                c.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(text)))
                    .await
                    .map(drop)
            })
        })
    }

    /// Takes the connection out of the pool for good: it is closed when dropped, never
    /// handed to another user with its session state (advisory locks; after a failed
    /// rollback, an unknown transaction).
    pub(crate) fn detach(&self) {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Held::Pooled(conn)) = guard.take() {
            let _entered = self.rt.enter();
            *guard = Some(Held::Own(conn.detach()));
        }
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Returning a connection to the pool spawns on the pool's runtime.
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let _entered = self.rt.enter();
        drop(conn);
    }
}

/// The statement with its parameters bound. The SQL is the store's own text (its `?N` made
/// `$N`; identifiers in `db copy` come from the catalog, quoted): values are always bound
/// parameters, never spliced in, hence the assertion sqlx asks for.
fn bind(
    sql: &str,
    args: &[Arg<'_>],
) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(pg_sql(sql)));
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            // PostgreSQL's text cannot hold NUL (SQLite's can): a NUL a hostile mail put in a
            // header or body is stored as U+FFFD, the same way in lookups, so a re-sent
            // copy still matches its Message-ID.
            Arg::Text(Some(t)) if t.contains('\0') => q.bind(t.replace('\0', "\u{FFFD}")),
            Arg::Text(v) => q.bind(v),
            Arg::Blob(b) => q.bind(b),
            Arg::NullBlob => q.bind(None::<Vec<u8>>),
            Arg::Ints(v) => q.bind(v),
            // NUL as in Text (recipient lists and keys never hold one; the rule stays one).
            Arg::Texts(v) if v.iter().any(|t| t.contains('\0')) => q.bind(
                v.iter()
                    .map(|t| t.replace('\0', "\u{FFFD}"))
                    .collect::<Vec<String>>(),
            ),
            Arg::Texts(v) => q.bind(v),
            Arg::Blobs(v) => q.bind(v),
        };
    }
    q
}

fn bad_url(e: &sqlx::Error) -> &'static str {
    let _ = e;
    "not a valid postgres:// URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=…])"
}

/// An error of opening a connection.
fn connect_error(shown: &str, e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(d) => {
            StoreError::Unavailable(format!("PostgreSQL at {shown} refused the connection: {d}"))
        }
        sqlx::Error::Tls(t) => StoreError::Unavailable(format!(
            "TLS to PostgreSQL at {shown} failed (check sslmode and the CA file, sslrootcert): {t}"
        )),
        // rustls' verdict on the server's certificate arrives as an I/O error.
        other if other.to_string().contains("certificate") => StoreError::Unavailable(format!(
            "TLS to PostgreSQL at {shown} failed (check sslmode and the CA file, sslrootcert): {other}"
        )),
        other => StoreError::Unavailable(format!("PostgreSQL at {shown} is unreachable: {other}")),
    }
}

/// An error of a statement, classified like SQLite's (see `From<rusqlite::Error>`).
fn statement_error(sql: &str, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        let code = d.code().map(|c| c.to_string()).unwrap_or_default();
        return match code.as_str() {
            // unique_violation; serialization_failure and deadlock_detected: another
            // replica's transaction won, retry.
            "23505" | "40001" | "40P01" => StoreError::Conflict,
            // insufficient_privilege: name the right (the statement's verb) and the object.
            "42501" => StoreError::Denied(format!(
                "the database user lacks the {} right: {d} (statement: {})",
                verb(sql),
                first_line(sql)
            )),
            c if c.starts_with("08") || c.starts_with("57") || c.starts_with("53") => {
                StoreError::Unavailable(format!("PostgreSQL: {d}"))
            }
            // read_only_sql_transaction (a standby): unavailable here, not a bug.
            "25006" => StoreError::Unavailable(format!("PostgreSQL: {d}")),
            _ => StoreError::Sql(format!("{d} (statement: {})", first_line(sql))),
        };
    }
    error(e)
}

/// A migration error; a missing right is named (migrations create tables and indexes).
fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    let (inner, version) = match &e {
        M::Execute(inner) => (inner, None),
        M::ExecuteMigration(inner, v) => (inner, Some(*v)),
        _ => return StoreError::Migrate(e),
    };
    match inner {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42501") => {
            StoreError::Denied(format!(
                "the database user lacks a right migrations need (CREATE on the database's \
                 schema, ownership of supportd's tables){}: {d}",
                version
                    .map(|v| format!(", applying migration {v}"))
                    .unwrap_or_default()
            ))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(format!("PostgreSQL: {inner}"))
        }
        _ => StoreError::Migrate(e),
    }
}

/// The right a statement needs, from its first word.
fn verb(sql: &str) -> String {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "WITH" => "SELECT".to_string(),
        _ => first,
    }
}

/// Any other sqlx error.
pub(crate) fn error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(format!("PostgreSQL: {e}")),
        sqlx::Error::Database(d) => StoreError::Sql(d.to_string()),
        other => StoreError::Sql(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            shown_url("postgres://supportd:s3cret@db.example:5432/supportd?sslmode=verify-full"),
            "postgres://supportd:****@db.example:5432/supportd?sslmode=verify-full"
        );
        assert_eq!(verb("  insert into tickets"), "INSERT");
    }
}
