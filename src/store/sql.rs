//! The one way the store's modules talk SQL, whichever the backend: a statement is written
//! once, with `?N` placeholders, in the SQL both SQLite and PostgreSQL accept; [`Db`] runs it
//! on a SQLite connection (rusqlite, on the calling thread) or on a PostgreSQL connection
//! (sqlx, see [`super::pg`]), where `?N` becomes `$N`. Parameters are [`Arg`]s (typed even
//! when NULL: PostgreSQL wants a NULL's type), rows are read through [`Row::get`].

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::Row as _;

use super::pg::PgConn;
use super::{StoreError, STREAM_BLOB_BYTES};

/// A connection of either backend, for one statement at a time.
#[derive(Clone, Copy)]
pub(crate) enum Db<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(&'a PgConn),
}

impl Db<'_> {
    pub(crate) fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

/// One statement parameter. Booleans and small integers are INTEGER / BIGINT columns.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(&'a [u8]),
    NullBlob,
    /// A BIGINT[] (PostgreSQL only: `= ANY(?1)`, `UNNEST(?1::bigint[])`).
    Ints(&'a [i64]),
    /// A TEXT[] (PostgreSQL only).
    Texts(&'a [String]),
    /// A BYTEA[] (PostgreSQL only: the held-back outbox rows, see `deferred`).
    Blobs(&'a [Vec<u8>]),
}

/// What may be a statement parameter (see the `args!` macro).
pub(crate) trait ToArg {
    fn to_arg(&self) -> Arg<'_>;
}

impl ToArg for Arg<'_> {
    fn to_arg(&self) -> Arg<'_> {
        *self
    }
}
impl ToArg for i64 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(Some(*self))
    }
}
impl ToArg for Option<i64> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(*self)
    }
}
impl ToArg for u8 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(Some(i64::from(*self)))
    }
}
impl ToArg for bool {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(Some(i64::from(*self)))
    }
}
impl ToArg for str {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(Some(self))
    }
}
impl ToArg for String {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(Some(self))
    }
}
impl ToArg for Option<&str> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(*self)
    }
}
impl ToArg for Option<String> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self.as_deref())
    }
}
impl ToArg for [u8] {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}
impl ToArg for [i64] {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Ints(self)
    }
}
impl ToArg for Vec<i64> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Ints(self)
    }
}
impl ToArg for [String] {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Texts(self)
    }
}
impl ToArg for Vec<String> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Texts(self)
    }
}
impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_arg(&self) -> Arg<'_> {
        (**self).to_arg()
    }
}

/// The parameters of a statement: `args![a, b, c]`.
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::sql::ToArg::to_arg(&$x)),*][..]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(v)),
            Arg::Int(None) | Arg::Text(None) | Arg::NullBlob => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
            Arg::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            // A large blob: a zero-filled placeholder that `fill_blob` writes in place, so
            // a 25 MB attachment is not copied once more into SQLite's bind buffer.
            Arg::Blob(b) if b.len() > STREAM_BLOB_BYTES => {
                ToSqlOutput::ZeroBlob(i32::try_from(b.len()).unwrap_or(i32::MAX))
            }
            Arg::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            // Arrays are for PostgreSQL's statements only; SQLite's side of a store function
            // loops instead.
            Arg::Ints(_) | Arg::Texts(_) | Arg::Blobs(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "an array parameter in a SQLite statement".into(),
                ))
            }
        })
    }
}

/// A result row of either backend.
pub(crate) enum Row<'a> {
    Lite(&'a rusqlite::Row<'a>),
    Pg(&'a sqlx::postgres::PgRow),
}

/// What a column may be read as.
pub(crate) trait FromCol: rusqlite::types::FromSql + Sized {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError>;
}

fn pg_int(row: &sqlx::postgres::PgRow, name: &str) -> Result<Option<i64>, StoreError> {
    use sqlx::{TypeInfo as _, ValueRef as _};
    let raw = row.try_get_raw(name).map_err(super::pg::error)?;
    if raw.is_null() {
        return Ok(None);
    }
    // Our columns are BIGINT; literals and a few functions give INT4 or BOOL.
    let kind = raw.type_info().name().to_string();
    let v = match kind.as_str() {
        "INT8" => row.try_get::<i64, _>(name),
        "INT4" => row.try_get::<i32, _>(name).map(i64::from),
        "INT2" => row.try_get::<i16, _>(name).map(i64::from),
        "BOOL" => row.try_get::<bool, _>(name).map(i64::from),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "column {name} is {kind}, expected an integer"
            )))
        }
    };
    v.map(Some).map_err(super::pg::error)
}

fn null(name: &str) -> StoreError {
    StoreError::Corrupt(format!("column {name} is NULL"))
}

impl FromCol for i64 {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError> {
        pg_int(row, name)?.ok_or_else(|| null(name))
    }
}
impl FromCol for Option<i64> {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError> {
        pg_int(row, name)
    }
}
impl FromCol for f64 {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError> {
        use sqlx::{TypeInfo as _, ValueRef as _};
        let raw = row.try_get_raw(name).map_err(super::pg::error)?;
        if raw.is_null() {
            return Err(null(name));
        }
        // Ranks are REAL (ts_rank_cd), sums and products of them DOUBLE PRECISION.
        let kind = raw.type_info().name().to_string();
        match kind.as_str() {
            "FLOAT8" => row.try_get::<f64, _>(name),
            "FLOAT4" => row.try_get::<f32, _>(name).map(f64::from),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "column {name} is {kind}, expected a number"
                )))
            }
        }
        .map_err(super::pg::error)
    }
}
impl FromCol for String {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError> {
        row.try_get::<String, _>(name).map_err(super::pg::error)
    }
}
impl FromCol for Option<String> {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError> {
        row.try_get::<Option<String>, _>(name)
            .map_err(super::pg::error)
    }
}
impl FromCol for Vec<u8> {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError> {
        row.try_get::<Vec<u8>, _>(name).map_err(super::pg::error)
    }
}

impl FromCol for Option<Vec<u8>> {
    fn from_pg(row: &sqlx::postgres::PgRow, name: &str) -> Result<Self, StoreError> {
        row.try_get::<Option<Vec<u8>>, _>(name)
            .map_err(super::pg::error)
    }
}

impl Row<'_> {
    /// Column `name`, as `T`.
    pub(crate) fn get<T: FromCol>(&self, name: &str) -> Result<T, StoreError> {
        match self {
            Row::Lite(r) => Ok(r.get::<_, T>(name)?),
            Row::Pg(r) => T::from_pg(r, name),
        }
    }

    /// Column `name`, a TEXT[] (PostgreSQL's `ARRAY(SELECT …)`; SQLite has no arrays).
    pub(crate) fn texts(&self, name: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Row::Lite(_) => Err(StoreError::Corrupt(format!(
                "column {name}: an array asked of SQLite"
            ))),
            Row::Pg(r) => r.try_get::<Vec<String>, _>(name).map_err(super::pg::error),
        }
    }
}

/// `?N` → `$N` (outside quoted strings): the one spelling difference of our statements.
pub(crate) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// Executes one statement; returns the number of rows changed.
pub(crate) fn exec(db: Db<'_>, sql: &str, args: &[Arg<'_>]) -> Result<usize, StoreError> {
    match db {
        Db::Lite(c) => Ok(c
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args.iter()))?),
        Db::Pg(c) => c.execute(sql, args),
    }
}

/// The first row of a query, mapped, if there is one.
pub(crate) fn query_opt<T>(
    db: Db<'_>,
    sql: &str,
    args: &[Arg<'_>],
    f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    match db {
        Db::Lite(c) => {
            let mut stmt = c.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            match rows.next()? {
                Some(row) => f(&Row::Lite(row)).map(Some),
                None => Ok(None),
            }
        }
        Db::Pg(c) => match c.fetch_optional(sql, args)? {
            Some(row) => f(&Row::Pg(&row)).map(Some),
            None => Ok(None),
        },
    }
}

/// The one row a query must return (aggregates, `INSERT … RETURNING`).
pub(crate) fn query_one<T>(
    db: Db<'_>,
    sql: &str,
    args: &[Arg<'_>],
    f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    query_opt(db, sql, args, f)?
        .ok_or_else(|| StoreError::Corrupt(format!("no row returned by: {}", first_line(sql))))
}

/// Every row of a query, mapped.
pub(crate) fn query_all<T>(
    db: Db<'_>,
    sql: &str,
    args: &[Arg<'_>],
    mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    match db {
        Db::Lite(c) => {
            let mut stmt = c.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(f(&Row::Lite(row))?);
            }
            Ok(out)
        }
        Db::Pg(c) => c
            .fetch_all(sql, args)?
            .iter()
            .map(|r| f(&Row::Pg(r)))
            .collect(),
    }
}

/// Runs statements without parameters or results (`BEGIN`, `SAVEPOINT`, ...).
pub(crate) fn batch(db: Db<'_>, sql: &str) -> Result<(), StoreError> {
    match db {
        Db::Lite(c) => Ok(c.execute_batch(sql)?),
        Db::Pg(c) => c.simple(sql),
    }
}

pub(crate) fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_strings() {
        assert_eq!(
            pg_sql("SELECT ?1, '?2', ?12 FROM t WHERE a = ?3 AND b = 'x?'"),
            "SELECT $1, '?2', $12 FROM t WHERE a = $3 AND b = 'x?'"
        );
    }
}
