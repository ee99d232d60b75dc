//! Persistence: SQLite, the embedded default, or PostgreSQL (several replicas on one
//! database), behind one synchronous interface. Each statement is written once ([`sql`]):
//! the SQL both accept, `?N` placeholders; [`pg`] runs it through sqlx's PostgreSQL driver.
//!
//! Every inbound message is ONE unit of work ([`Tx`], `BEGIN IMMEDIATE` … `COMMIT`): it commits
//! whole or not at all. The statements run on the calling thread through rusqlite (cached,
//! prepared statements), not through an async driver's worker thread: sqlx-sqlite's hand-off to
//! its worker cost ~150 µs per statement on our 2-core VM, and a new ticket takes a dozen
//! statements (see README, Performance). Callers inside the tokio runtime call in through
//! [`blocking`], which moves the thread's other tasks away for the duration.
//!
//! Migrations stay with sqlx (`migrations/sqlite` and its mirror `migrations/postgres`, the
//! `_sqlx_migrations` table, `sqlx migrate` for admins). SQL is written with `?N` placeholders.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

mod attempts;
mod copy;
mod corrections;
mod cursors;
mod deferred;
mod incidents;
mod kb;
mod lease;
mod messages;
mod notices;
mod outbox;
pub(crate) mod pg;
mod rows;
mod settings;
pub(crate) mod sql;
mod tickets;
mod users;
mod web;
pub use attempts::{Attempt, Folder};
pub use copy::{CopyError, TableCopy};
pub use corrections::Correction;
pub use incidents::{IncidentDetail, IncidentItem, IncidentState, SentEarlier, MAX_LINKED};
pub use kb::{KbArticle, KbHit};
pub use lease::{Lease, LeaseTry, Standby};
pub use messages::{NewMessage, QuarantineItem};
pub use notices::PendingNotice;
pub use outbox::{NewOutbox, Outbound, OutboxItem, OutboxJob};
pub use pg::round_trips as pg_round_trips;
pub(crate) use rows::{
    blob_param, fill_blob, from_ts, known_user, named, rfc3339, ticket_list_item, ticket_summary,
    ts, user_row, LIST_COLUMNS,
};
pub(crate) use sql::{args, exec, query_all, query_one, query_opt};
use sql::{Db, Row};
pub use tickets::{
    AttachmentView, EventView, MessageView, NewTicket, Person, TicketDetail, TicketListItem,
};
pub use users::{NewUser, UserItem, UserUpdate};
pub use web::{
    AttachmentFile, OutboxBacklog, PublicAttachment, PublicMessage, SignIn, SignInUser, TicketLine,
    TicketPage, WebUser,
};

/// How long a writer waits for another writer's lock before the work counts as unavailable
/// (and is retried later: the mail stays in the mailbox).
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between attempts when SQLite refuses a lock without waiting for it.
const BUSY_RETRY: Duration = Duration::from_millis(10);

/// SQLITE_BUSY or SQLITE_LOCKED, any extended code.
fn rusqlite_busy(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi::ErrorCode as C;
    e.sqlite_error_code()
        .is_some_and(|c| matches!(c, C::DatabaseBusy | C::DatabaseLocked))
}

/// Idle connections kept open for reuse.
const POOL_IDLE: usize = 4;
/// Prepared statements cached per connection (supportd has about fifty distinct ones).
const STATEMENT_CACHE: usize = 128;
/// Blobs above this size are written in place with SQLite's incremental blob I/O instead of
/// being bound (binding copies the whole value once more).
const STREAM_BLOB_BYTES: usize = 256 * 1024;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a concurrent writer stored the same row first")]
    Conflict,
    #[error("database error: {0}")]
    Query(#[source] rusqlite::Error),
    #[error("database error: {0}")]
    Sql(String),
    /// The database user lacks a right (PostgreSQL's insufficient_privilege), named.
    #[error("{0}")]
    Denied(String),
    #[error("unsupported database URL `{0}`: {1}")]
    BadUrl(String, &'static str),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Worth retrying later (an MTA should get EX_TEMPFAIL).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode as C;
        let Some(failure) = e.sqlite_error() else {
            return StoreError::Query(e);
        };
        match failure.code {
            C::ConstraintViolation
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict
            }
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::SystemIoFailure
            | C::CannotOpen
            | C::DiskFull
            | C::ReadOnly
            | C::FileLockingProtocolFailed
            | C::OutOfMemory => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Query(e),
        }
    }
}

/// Who this process is, for the claims it makes (outbox rows) and the leases it holds
/// (mailboxes): its replica's name and this run of it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `SUPPORTD_REPLICA`, else the host name: stable across restarts, distinct per replica.
    pub replica: String,
    /// Random per process start.
    pub run: String,
}

/// This process's [`Instance`], made on first use.
pub fn instance() -> &'static Instance {
    static ME: std::sync::OnceLock<Instance> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let replica = std::env::var("SUPPORTD_REPLICA")
            .ok()
            .filter(|r| !r.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "supportd".to_string());
        let mut bytes = [0u8; 6];
        // Without OS randomness the pid and start time still tell runs apart.
        let _ = getrandom::fill(&mut bytes);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Instance {
            replica,
            run: format!("{}-{started}-{random}", std::process::id()),
        }
    })
}

/// Runs blocking database work from anywhere: inside the multi-threaded runtime (the daemon)
/// through `block_in_place`, so the worker's other tasks move to another thread; on a
/// current-thread runtime (one-shot commands, tests) or outside any runtime, inline.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The database, shared by every task of the process.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Backend>,
}

#[derive(Debug)]
enum Backend {
    Lite(Inner),
    Pg(pg::PgBackend),
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    flags: OpenFlags,
    idle: Mutex<Vec<Connection>>,
}

/// What a database URL names.
enum Url {
    Lite(PathBuf, OpenFlags),
    Pg(String),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Creates a missing database file readable by its owner only (0600, whatever the umask):
/// it holds every customer's mail. SQLite gives the `-wal`, `-shm` and `-journal` files it
/// creates beside it the database file's own mode. An existing file keeps its mode.
fn create_private(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let unavailable =
        |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // The umask may have taken bits from 0600 (never added any): set it exactly.
        Ok(file) => file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(unavailable),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

/// The database file of a `sqlite://` URL; `None` for PostgreSQL or a malformed URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    match parse_url(url) {
        Ok(Url::Lite(path, _)) => Some(path),
        _ => None,
    }
}

/// `postgres://…` / `postgresql://…` (sqlx's options: `sslmode`, `sslrootcert`, ...), or
/// SQLite: see [`parse_sqlite_url`].
fn parse_url(url: &str) -> Result<Url, StoreError> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Ok(Url::Pg(url.to_string()));
    }
    let (path, flags) = parse_sqlite_url(url)?;
    Ok(Url::Lite(path, flags))
}

/// `sqlite://PATH`, `sqlite:PATH`, with an optional `?mode=ro|rw|rwc` (default rwc).
fn parse_sqlite_url(url: &str) -> Result<(PathBuf, OpenFlags), StoreError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(StoreError::BadUrl(
            url.to_string(),
            "expected sqlite://PATH or postgres://USER@HOST/DATABASE",
        ));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::BadUrl(
            url.to_string(),
            "supportd needs a database file, not an in-memory database",
        ));
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        flags = match pair {
            "mode=ro" => OpenFlags::SQLITE_OPEN_READ_ONLY,
            "mode=rw" => OpenFlags::SQLITE_OPEN_READ_WRITE,
            "mode=rwc" => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            _ => {
                return Err(StoreError::BadUrl(
                    url.to_string(),
                    "the only URL option is mode=ro|rw|rwc",
                ))
            }
        };
    }
    // Each connection is used by one thread at a time (the pool hands it out whole).
    Ok((PathBuf::from(path), flags | OpenFlags::SQLITE_OPEN_NO_MUTEX))
}

impl Store {
    /// Opens the database (creating the file when missing). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let (path, flags) = match parse_url(url)? {
            Url::Lite(path, flags) => (path, flags),
            Url::Pg(url) => {
                let backend = blocking(|| pg::PgBackend::connect(&url))?;
                return Ok(Store {
                    inner: Arc::new(Backend::Pg(backend)),
                });
            }
        };
        if flags.contains(OpenFlags::SQLITE_OPEN_CREATE) {
            create_private(&path)?;
        }
        let store = Store {
            inner: Arc::new(Backend::Lite(Inner {
                path,
                flags,
                idle: Mutex::new(Vec::new()),
            })),
        };
        // Open one connection now so a bad path fails here, with its cause.
        blocking(|| store.get().map(drop))?;
        Ok(store)
    }

    /// Applies pending migrations (through sqlx, which keeps the `_sqlx_migrations` ledger).
    ///
    /// Processes sharing a database (`supportd run` and an `ingest` or `tickets list` started
    /// at the same moment) take turns: sqlx's migrator is not safe against a second process
    /// migrating the same fresh file (both create the first tables), so migrating holds an
    /// exclusive lock on `PATH.migrate-lock`. A database already up to date is seen with one
    /// read and no lock (every MTA `ingest` asks).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        use sqlx::Connection as _;
        let inner = match &*self.inner {
            Backend::Lite(inner) => inner,
            Backend::Pg(pg) => {
                if blocking(|| self.up_to_date(&pg::PG_MIGRATIONS)) {
                    return Ok(());
                }
                return blocking(|| pg.migrate());
            }
        };
        if blocking(|| self.up_to_date(&SQLITE_MIGRATIONS)) {
            return Ok(());
        }
        let lock_path = {
            let mut p = inner.path.clone().into_os_string();
            p.push(".migrate-lock");
            PathBuf::from(p)
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", lock_path.display())))?;
        blocking(|| lock.lock())
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", lock_path.display())))?;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&inner.path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        // The file is turned to WAL by `open` first, which retries the refusals other
        // processes opening a fresh file at the same moment cause; sqlx's connection then
        // finds it WAL already and needs no exclusive lock to set it.
        blocking(|| self.get().map(drop))?;
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let result = SQLITE_MIGRATIONS.run(&mut conn).await;
        let _ = conn.close().await;
        // Released when `lock` is dropped (or the process ends).
        drop(lock);
        result?;
        Ok(())
    }

    /// Whether every embedded migration is applied already (false on any doubt).
    fn up_to_date(&self, migrations: &sqlx::migrate::Migrator) -> bool {
        let Some(latest) = migrations.iter().map(|m| m.version).max() else {
            return true;
        };
        // A missing ledger is an error on PostgreSQL (which would abort a transaction):
        // asked outside one, each statement on its own.
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success",
                args![],
                |r| r.get::<Option<i64>>("v"),
            )
        })
        .ok()
        .flatten()
        .flatten()
        .is_some_and(|v| v >= latest)
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.inner, Backend::Pg(_))
    }

    fn lite(&self) -> Result<&Inner, StoreError> {
        match &*self.inner {
            Backend::Lite(inner) => Ok(inner),
            Backend::Pg(_) => Err(StoreError::Corrupt(
                "a SQLite connection asked of a PostgreSQL store".into(),
            )),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let inner = self.lite()?;
        let conn = Connection::open_with_flags(&inner.path, inner.flags)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", inner.path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer; NORMAL is durable across crashes with WAL
        // (a power loss may undo the last commits, never corrupt; see make_durable).
        // temp_store = MEMORY keeps the per-message savepoint journals of a batch in memory
        // (a temp file took ~50 writes per message).
        // Turning a fresh file to WAL takes an exclusive lock from a shared one. When
        // several processes open a new database at the same moment (the daemon, an admin's
        // command, MTA deliveries), SQLite refuses all but one at once instead of calling
        // the busy handler (it would deadlock): the others retry until BUSY_TIMEOUT.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
                 PRAGMA temp_store = MEMORY;",
            ) {
                Ok(()) => break,
                Err(e) if rusqlite_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(BUSY_RETRY);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // No checkpoint when the last connection closes: the WAL file stays (its commits
        // are as durable there as in the database file; `make_durable` synced it) and is
        // checkpointed by SQLite's automatic checkpoint once it passes 1,000 pages. A
        // short-lived process (`ingest -`, one per message from the MTA) otherwise paid a
        // checkpoint (two syncs), the WAL's deletion, and on the next start its re-creation
        // (a header sync and a directory sync): four of its five syncs.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// A connection from the idle list, or a new one.
    fn get(&self) -> Result<Pooled, StoreError> {
        let idle = self
            .lite()?
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        Ok(Pooled {
            conn: Some(conn),
            inner: Arc::clone(&self.inner),
        })
    }

    /// Runs `f` on a connection outside any explicit transaction (reads, single statements).
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        blocking(|| match &*self.inner {
            Backend::Lite(_) => {
                let conn = self.get()?;
                f(Db::Lite(conn.conn()))
            }
            Backend::Pg(pg) => {
                let conn = pg.acquire()?;
                f(Db::Pg(&conn))
            }
        })
    }

    /// A PostgreSQL connection of its own, outside the pool (mailbox leases).
    pub(crate) fn pg_detached(&self) -> Result<Option<pg::PgConn>, StoreError> {
        match &*self.inner {
            Backend::Lite(_) => Ok(None),
            Backend::Pg(pg) => blocking(|| pg.detached()).map(Some),
        }
    }

    /// Starts one unit of work. It takes the write lock up front (`BEGIN IMMEDIATE`), so two
    /// writers queue on the busy timeout instead of failing when a read would upgrade to a
    /// write. Blocking: call it inside [`blocking`] when on the runtime.
    ///
    /// On PostgreSQL it is a plain `BEGIN` (READ COMMITTED): replicas write side by side;
    /// what must be unique is (ticket numbers: a sequence, see [`Tx::next_ticket_number`];
    /// incident numbers: an advisory transaction lock; unique Message-IDs: a unique
    /// violation is a [`StoreError::Conflict`], see the pipeline).
    pub fn begin(&self) -> Result<Tx, StoreError> {
        self.start(BEGIN_WRITE.0, BEGIN_WRITE.1, false)
    }

    /// A read-only look (`BEGIN DEFERRED`, rolled back when dropped): `ingest --dry-run`.
    /// Blocking, like [`Store::begin`].
    pub fn read(&self) -> Result<Tx, StoreError> {
        self.start("BEGIN DEFERRED", "BEGIN", true)
    }

    fn start(&self, lite: &str, postgres: &str, read_only: bool) -> Result<Tx, StoreError> {
        let conn = match &*self.inner {
            Backend::Lite(_) => {
                let conn = self.get()?;
                conn.conn().execute_batch(lite)?;
                TxConn::Lite(conn)
            }
            Backend::Pg(pg) => {
                let conn = pg.acquire()?;
                conn.simple(postgres)?;
                TxConn::Pg(conn)
            }
        };
        Ok(Tx {
            conn,
            open: true,
            read_only,
            numbers: Numbers::default(),
            staff: None,
            kb_any: None,
            kb_ranked: None,
        })
    }

    /// Drops the idle connections (no checkpoint on close: see `open`).
    pub async fn close(&self) {
        match &*self.inner {
            Backend::Lite(inner) => {
                let idle =
                    std::mem::take(&mut *inner.idle.lock().unwrap_or_else(PoisonError::into_inner));
                blocking(|| drop(idle));
            }
            Backend::Pg(pg) => blocking(|| pg.close()),
        }
    }
}

/// A connection that goes back to the idle list when dropped.
struct Pooled {
    conn: Option<Connection>,
    inner: Arc<Backend>,
}

impl Pooled {
    fn conn(&self) -> &Connection {
        match &self.conn {
            Some(c) => c,
            // `conn` is Some from construction until drop.
            None => unreachable!("pooled connection used after drop"),
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let (Some(conn), Backend::Lite(inner)) = (self.conn.take(), &*self.inner) {
            let mut idle = inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < POOL_IDLE && conn.is_autocommit() {
                idle.push(conn);
            }
        }
    }
}

/// One open transaction; rolled back when dropped without [`Tx::commit`].
pub struct Tx {
    conn: TxConn,
    open: bool,
    /// [`Store::read`]: looks, takes nothing (no ticket number from the sequence).
    read_only: bool,
    /// PostgreSQL's ticket numbers taken by this transaction (see [`Tx::next_ticket_number`]).
    numbers: Numbers,
    /// [`Tx::active_staff`], once read.
    staff: Option<Vec<crate::tickets::UserRecord>>,
    /// Whether the Help Center has articles, once asked ([`Tx::kb_candidates`]).
    kb_any: Option<bool>,
    /// [`Tx::kb_prefetch`]'s rankings.
    kb_ranked: Option<kb::Ranked>,
}

/// How a writing transaction starts: on SQLite, and on PostgreSQL (see [`Store::begin`]).
/// PostgreSQL's JIT is off inside it (one round trip still): it compiles a statement whose
/// estimated cost passes `jit_above_cost`, which took ~0.4 s here for the Help Center
/// ranking of a batch that then ran in 10 ms. `SET LOCAL`, not a connection option, so that
/// poolers (PgBouncer refuses startup options it does not know) and the database's own
/// settings elsewhere are left alone.
const BEGIN_WRITE: (&str, &str) = ("BEGIN IMMEDIATE", "BEGIN; SET LOCAL jit = off");

/// The ticket numbers a PostgreSQL transaction took from the sequence. A sequence is not
/// transactional: a number whose ticket was undone (its message's savepoint rolled back, or
/// the batch redone) would be a gap. It is kept instead, and given to the transaction's next
/// new ticket. Only the numbers still spare when the transaction ends are lost.
#[derive(Debug, Default)]
struct Numbers {
    /// Taken and in use, in the order taken.
    taken: Vec<i64>,
    /// How many of `taken` came before the current savepoint.
    mark: usize,
    /// Freed by a rollback, smallest first: given out before a new one is taken.
    spare: Vec<i64>,
}

impl Numbers {
    fn reuse(&mut self) -> Option<i64> {
        (!self.spare.is_empty()).then(|| self.spare.remove(0))
    }

    fn take(&mut self, n: i64) {
        self.taken.push(n);
    }

    /// The numbers taken since `from` (an index into `taken`) are free again.
    fn free_from(&mut self, from: usize) {
        let from = from.min(self.taken.len());
        self.spare.extend(self.taken.drain(from..));
        self.spare.sort_unstable();
        self.mark = self.mark.min(self.taken.len());
    }
}

enum TxConn {
    Lite(Pooled),
    Pg(pg::PgConn),
}

impl Tx {
    /// Starts one message's part of a batch transaction: undone alone by
    /// [`Tx::rollback_to_savepoint`], kept by [`Tx::release_savepoint`].
    pub fn savepoint(&mut self) -> Result<(), StoreError> {
        sql::batch(self.conn(), "SAVEPOINT message")?;
        self.numbers.mark = self.numbers.taken.len();
        Ok(())
    }

    pub fn release_savepoint(&mut self) -> Result<(), StoreError> {
        sql::batch(self.conn(), "RELEASE SAVEPOINT message")
    }

    /// Undoes everything since [`Tx::savepoint`]; the rest of the transaction stays.
    pub fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        self.discard_held();
        sql::batch(
            self.conn(),
            "ROLLBACK TO SAVEPOINT message; RELEASE SAVEPOINT message",
        )?;
        self.numbers.free_from(self.numbers.mark);
        Ok(())
    }

    /// Undoes the whole transaction and starts a new writing one ([`Store::begin`]'s) on
    /// the same connection (a batch tried without savepoints that must be redone with
    /// them). The ticket numbers it took are given again (see [`Numbers`]).
    pub fn restart(&mut self) -> Result<(), StoreError> {
        let begin = match self.conn {
            TxConn::Lite(_) => BEGIN_WRITE.0,
            TxConn::Pg(_) => BEGIN_WRITE.1,
        };
        // Should ROLLBACK fail, the transaction counts as open still (Drop tries again).
        self.discard_held();
        sql::batch(self.conn(), "ROLLBACK")?;
        self.open = false;
        self.numbers.free_from(0);
        sql::batch(self.conn(), begin)?;
        self.open = true;
        Ok(())
    }

    pub fn commit(mut self) -> Result<(), StoreError> {
        sql::batch(self.conn(), "COMMIT")?;
        self.open = false;
        Ok(())
    }

    /// On PostgreSQL, the connection that holds append-only rows back (see `deferred`);
    /// None on SQLite, where a statement costs no round trip and is run at once.
    pub(crate) fn holder(&self) -> Option<&pg::PgConn> {
        match &self.conn {
            TxConn::Lite(_) => None,
            TxConn::Pg(c) => Some(c),
        }
    }

    /// Forgets the rows held back (PostgreSQL), before a rollback that would undo them.
    fn discard_held(&self) {
        if let Some(c) = self.holder() {
            c.discard();
        }
    }

    /// Writes the rows held back now (PostgreSQL; nothing to do on SQLite), so that an
    /// error in them is reported here, for the message that queued them, and not by
    /// whichever statement comes next.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        match self.holder() {
            Some(c) => c.flush(),
            None => Ok(()),
        }
    }

    pub(crate) fn conn(&self) -> Db<'_> {
        match &self.conn {
            TxConn::Lite(c) => Db::Lite(c.conn()),
            TxConn::Pg(c) => Db::Pg(c),
        }
    }

    /// Whether this transaction is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, TxConn::Pg(_))
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            // A failed rollback leaves the connection inside a transaction; it is then
            // closed instead of reused (Pooled's drop; a detached PostgreSQL connection).
            self.discard_held();
            if sql::batch(self.conn(), "ROLLBACK").is_err() {
                if let TxConn::Pg(c) = &self.conn {
                    c.detach();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        let (path, flags) =
            parse_sqlite_url("sqlite:///var/lib/supportd/supportd.db").expect("url");
        assert_eq!(path, PathBuf::from("/var/lib/supportd/supportd.db"));
        assert!(flags.contains(OpenFlags::SQLITE_OPEN_CREATE));
        let (path, flags) = parse_sqlite_url("sqlite:relative.db?mode=ro").expect("url");
        assert_eq!(path, PathBuf::from("relative.db"));
        assert!(flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY));
        assert!(!flags.contains(OpenFlags::SQLITE_OPEN_CREATE));
        assert!(matches!(
            parse_url("postgres://u@h/db?sslmode=verify-full"),
            Ok(Url::Pg(_))
        ));
        for bad in [
            "sqlite::memory:",
            "sqlite://x.db?cache=shared",
            "mysql://h/db",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::BadUrl(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn busy_and_unique_violations_are_classified() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch("CREATE TABLE t (k TEXT UNIQUE); INSERT INTO t VALUES ('a');")
            .expect("schema");
        let dup = conn
            .execute("INSERT INTO t VALUES ('a')", [])
            .map_err(StoreError::from);
        assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(StoreError::from(busy).is_transient());
        let syntax = conn.execute("SELEC 1", []).map_err(StoreError::from);
        assert!(matches!(syntax, Err(StoreError::Query(_))), "{syntax:?}");
    }
}
