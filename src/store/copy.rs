//! `supportd db copy`: every table of one database into another (SQLite → PostgreSQL to
//! move a deployment; any direction works), then a verification of row counts and of a
//! checksum over every row and column, blobs included, on both sides.
//!
//! The tables and their columns are read from the databases' catalogs, so tables added by
//! later migrations are copied too (parents first: a known order, then the rest by name).
//! Rows keep their ids; PostgreSQL's identity sequences are moved past them afterwards.
//! Rows go in with `ON CONFLICT DO NOTHING`: a second copy into the same target adds nothing
//! (the command refuses a non-empty target unless `--force`).

use sha2::{Digest as _, Sha256};

use super::sql::{args, exec, query_all, query_one, Arg, Db, Row};
use super::{blocking, Store, StoreError};

/// Parents before children (foreign keys); tables not listed follow, by name.
const ORDER: &[&str] = &[
    "users",
    "incidents",
    "tickets",
    "participants",
    "messages",
    "message_raw",
    "attachments",
    "outbox",
    "outbox_recipients",
    "outbox_claims",
    "agent_mail",
    "ignored_mail",
    "quarantine",
    "events",
    "mailbox_cursors",
    "intake_attempts",
    "agent_notices",
    "corrections",
    "settings",
    "web_signins",
    "web_sessions",
    "durability_marks",
];

/// Rows read and written per transaction.
const PAGE: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Blob,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// Primary key columns (the copy's and the checksum's order).
    key: Vec<String>,
}

/// One table's copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableCopy {
    pub table: String,
    pub source_rows: i64,
    /// Rows this run inserted (0 for rows the target had already).
    pub copied: i64,
    pub target_rows: i64,
    /// SHA-256 over every row and column (blobs included), in primary-key order.
    pub source_sha256: String,
    pub target_sha256: String,
}

impl TableCopy {
    pub fn verified(&self) -> bool {
        self.source_rows == self.target_rows && self.source_sha256 == self.target_sha256
    }
}

/// Why a copy did not start or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the target database is not empty ({0}); use --force to copy into it anyway (rows it has already are kept)")]
    NotEmpty(String),
    #[error("table {table}: {problem}")]
    Schema { table: String, problem: String },
}

enum Val {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl Val {
    fn read(row: &Row<'_>, c: &Column) -> Result<Val, StoreError> {
        Ok(match c.kind {
            Kind::Int => Val::Int(row.get(&c.name)?),
            Kind::Text => Val::Text(row.get(&c.name)?),
            Kind::Blob => Val::Blob(row.get(&c.name)?),
        })
    }

    fn arg(&self) -> Arg<'_> {
        match self {
            Val::Int(v) => Arg::Int(*v),
            Val::Text(v) => Arg::Text(v.as_deref()),
            // PostgreSQL wants a NULL typed as the column is.
            Val::Blob(Some(b)) => Arg::Blob(b),
            Val::Blob(None) => Arg::NullBlob,
        }
    }

    fn hash(&self, h: &mut Sha256) {
        match self {
            Val::Int(None) | Val::Text(None) | Val::Blob(None) => h.update([0u8]),
            Val::Int(Some(v)) => {
                h.update([1u8]);
                h.update(v.to_be_bytes());
            }
            Val::Text(Some(s)) => {
                h.update([2u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
            Val::Blob(Some(b)) => {
                h.update([3u8]);
                h.update((b.len() as u64).to_be_bytes());
                h.update(b);
            }
        }
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn kind_of(table: &str, column: &str, declared: &str) -> Result<Kind, CopyError> {
    let d = declared.to_ascii_lowercase();
    if d.contains("int") {
        Ok(Kind::Int)
    } else if d.contains("text") || d.contains("char") {
        Ok(Kind::Text)
    } else if d.contains("blob") || d == "bytea" {
        Ok(Kind::Blob)
    } else {
        Err(CopyError::Schema {
            table: table.to_string(),
            problem: format!("column {column} has type {declared}, which the copy does not know"),
        })
    }
}

/// The tables of a database, parents first. Left out: the migrations' ledger, and the Help
/// Center's index (`kb_*`: a cache of the `kb/` files, different on each backend, rebuilt by
/// `kb reindex` and at every start).
fn tables(db: Db<'_>) -> Result<Vec<Table>, CopyError> {
    let names: Vec<String> = if db.is_pg() {
        query_all(
            db,
            "SELECT table_name::text AS name FROM information_schema.tables
              WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
                AND table_name <> '_sqlx_migrations' AND table_name NOT LIKE 'kb\\_%'",
            args![],
            |r| r.get("name"),
        )?
    } else {
        query_all(
            db,
            "SELECT name FROM sqlite_master WHERE type = 'table'
                AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'
                AND name NOT LIKE 'kb\\_%' ESCAPE '\\'",
            args![],
            |r| r.get("name"),
        )?
    };
    let mut ordered: Vec<String> = ORDER
        .iter()
        .filter(|t| names.iter().any(|n| n == *t))
        .map(|t| t.to_string())
        .collect();
    let mut rest: Vec<String> = names
        .iter()
        .filter(|n| !ORDER.contains(&n.as_str()))
        .cloned()
        .collect();
    rest.sort();
    ordered.extend(rest);
    ordered.into_iter().map(|name| table(db, name)).collect()
}

fn table(db: Db<'_>, name: String) -> Result<Table, CopyError> {
    let cols: Vec<(String, String, i64)> = if db.is_pg() {
        query_all(
            db,
            "SELECT c.column_name::text AS name, c.data_type::text AS type,
                    CASE WHEN EXISTS (
                        SELECT 1 FROM pg_index i JOIN pg_attribute a
                          ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                         WHERE i.indrelid = (current_schema() || '.' || ?1)::regclass
                           AND i.indisprimary AND a.attname = c.column_name)
                         THEN 1 ELSE 0 END AS pk
               FROM information_schema.columns c
              WHERE c.table_schema = current_schema() AND c.table_name = ?1
              ORDER BY c.ordinal_position",
            args![name],
            |r| Ok((r.get("name")?, r.get("type")?, r.get("pk")?)),
        )?
    } else {
        query_all(
            db,
            "SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid",
            args![name],
            |r| Ok((r.get("name")?, r.get("type")?, r.get("pk")?)),
        )?
    };
    let mut columns = Vec::new();
    let mut key = Vec::new();
    for (column, declared, pk) in cols {
        columns.push(Column {
            kind: kind_of(&name, &column, &declared)?,
            name: column.clone(),
        });
        if pk != 0 {
            key.push(column);
        }
    }
    if key.is_empty() {
        // No primary key: every column orders the rows.
        key = columns.iter().map(|c| c.name.clone()).collect();
    }
    Ok(Table { name, columns, key })
}

fn count(db: Db<'_>, t: &str) -> Result<i64, StoreError> {
    query_one(
        db,
        &format!("SELECT COUNT(*) AS n FROM {}", quoted(t)),
        args![],
        |r| r.get("n"),
    )
}

/// Pages of a table's rows in primary-key order.
fn page(db: Db<'_>, t: &Table, offset: i64) -> Result<Vec<Vec<Val>>, StoreError> {
    let cols: Vec<String> = t.columns.iter().map(|c| quoted(&c.name)).collect();
    let order: Vec<String> = t.key.iter().map(|c| quoted(c)).collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {} LIMIT ?1 OFFSET ?2",
        cols.join(", "),
        quoted(&t.name),
        order.join(", ")
    );
    query_all(db, &sql, args![PAGE, offset], |r| {
        t.columns.iter().map(|c| Val::read(r, c)).collect()
    })
}

/// (rows, SHA-256 hex) of a table.
fn checksum(store: &Store, t: &Table) -> Result<(i64, String), StoreError> {
    let mut h = Sha256::new();
    let mut rows = 0i64;
    loop {
        let got = store.with_conn(|c| page(c, t, rows))?;
        let n = i64::try_from(got.len()).unwrap_or(i64::MAX);
        for row in &got {
            for v in row {
                v.hash(&mut h);
            }
        }
        rows += n;
        if n < PAGE {
            break;
        }
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((rows, hex))
}

impl Store {
    /// Copies every table of this database into `target` (both migrated already), then
    /// verifies counts and checksums. Refuses a target holding any row unless `force`.
    pub fn copy_to(&self, target: &Store, force: bool) -> Result<Vec<TableCopy>, CopyError> {
        blocking(|| {
            let source_tables = self.with_conn(|c| tables(c).map_err(copy_to_store))?;
            let target_tables = target.with_conn(|c| tables(c).map_err(copy_to_store))?;
            if !force {
                let mut filled = Vec::new();
                for t in &target_tables {
                    let n = target.with_conn(|c| count(c, &t.name))?;
                    if n > 0 {
                        filled.push(format!("{}: {n} rows", t.name));
                    }
                }
                if !filled.is_empty() {
                    return Err(CopyError::NotEmpty(filled.join(", ")));
                }
            }
            let mut report = Vec::new();
            for t in &source_tables {
                let Some(into) = target_tables.iter().find(|x| x.name == t.name) else {
                    return Err(CopyError::Schema {
                        table: t.name.clone(),
                        problem: "missing in the target (are both at the same migration?)".into(),
                    });
                };
                for c in &t.columns {
                    if !into.columns.iter().any(|x| x.name == c.name) {
                        return Err(CopyError::Schema {
                            table: t.name.clone(),
                            problem: format!("column {} is missing in the target", c.name),
                        });
                    }
                }
                let copied = copy_table(self, target, t)?;
                if target.is_postgres()
                    && t.key == ["id"]
                    && t.columns
                        .iter()
                        .any(|c| c.name == "id" && c.kind == Kind::Int)
                {
                    target.with_conn(|c| {
                        query_one(
                            c,
                            &format!(
                                "SELECT setval(pg_get_serial_sequence(?1, 'id'),
                                               (SELECT COALESCE(MAX(id), 0) + 1 FROM {}), false) AS v",
                                quoted(&t.name)
                            ),
                            args![t.name],
                            |r| r.get::<Option<i64>>("v"),
                        )
                    })?;
                }
                let (source_rows, source_sha256) = checksum(self, t)?;
                let (target_rows, target_sha256) = checksum(target, t)?;
                report.push(TableCopy {
                    table: t.name.clone(),
                    source_rows,
                    copied,
                    target_rows,
                    source_sha256,
                    target_sha256,
                });
            }
            if target.is_postgres() {
                // The next ticket number follows the copied tickets (migration 0020).
                target.with_conn(|c| {
                    query_one(
                        c,
                        "SELECT setval('ticket_numbers', GREATEST(COALESCE(MAX(number), 1000), 1000)) AS v
                           FROM tickets",
                        args![],
                        |r| r.get::<i64>("v"),
                    )
                })?;
            }
            Ok(report)
        })
    }
}

fn copy_to_store(e: CopyError) -> StoreError {
    match e {
        CopyError::Store(e) => e,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// Copies one table page by page, each page in one target transaction.
fn copy_table(source: &Store, target: &Store, t: &Table) -> Result<i64, StoreError> {
    let cols: Vec<String> = t.columns.iter().map(|c| quoted(&c.name)).collect();
    let marks: Vec<String> = (1..=t.columns.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        quoted(&t.name),
        cols.join(", "),
        marks.join(", ")
    );
    let mut offset = 0i64;
    let mut copied = 0i64;
    loop {
        let rows = source.with_conn(|c| page(c, t, offset))?;
        let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        if n > 0 {
            let tx = target.begin()?;
            for row in &rows {
                let args: Vec<Arg<'_>> = row.iter().map(Val::arg).collect();
                let done = exec(tx.conn(), &sql, &args)?;
                if done > 0 {
                    // Large SQLite blobs were bound as placeholders: write them in place.
                    if let (Db::Lite(_), Some(id)) = (tx.conn(), rowid_of(t, row)) {
                        for (c, v) in t.columns.iter().zip(row) {
                            if let Val::Blob(Some(b)) = v {
                                super::fill_blob(tx.conn(), &t.name, &c.name, id, b)?;
                            }
                        }
                    }
                }
                copied += i64::try_from(done).unwrap_or(0);
            }
            tx.commit()?;
        }
        offset += n;
        if n < PAGE {
            break;
        }
    }
    Ok(copied)
}

/// The SQLite rowid of a row whose table has one integer primary key.
fn rowid_of(t: &Table, row: &[Val]) -> Option<i64> {
    let [key] = t.key.as_slice() else {
        return None;
    };
    t.columns
        .iter()
        .zip(row)
        .find(|(c, _)| &c.name == key)
        .and_then(|(_, v)| match v {
            Val::Int(Some(id)) => Some(*id),
            _ => None,
        })
}
