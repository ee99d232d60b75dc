//! Values in and out of rows, for every store module: blobs (bound in place on SQLite),
//! timestamps (seconds since the epoch), and the rows that several queries share (a
//! ticket's summary or list item, a user).

use chrono::{DateTime, Utc};

use super::sql::{Arg, Db, Row};
use super::{Person, StoreError, TicketListItem, STREAM_BLOB_BYTES};
use crate::tickets::{KnownUser, Role, TicketStatus, TicketSummary, UserRecord};

/// A blob parameter. On SQLite a large one is bound as a zero-filled placeholder that
/// [`fill_blob`] then writes in place, so a 25 MB attachment is not copied once more into
/// SQLite's bind buffer. The placeholder stays compact only in the LAST column of a table
/// (SQLite expands it otherwise): keep large blobs there.
pub(crate) fn blob_param(data: &[u8]) -> Result<Arg<'_>, StoreError> {
    if i32::try_from(data.len()).is_err() {
        return Err(StoreError::Corrupt(format!(
            "blob of {} bytes is too large",
            data.len()
        )));
    }
    Ok(Arg::Blob(data))
}

/// Writes a large blob announced by [`blob_param`] into row `rowid` (no-op for small ones,
/// and on PostgreSQL, where the bytes were bound).
pub(crate) fn fill_blob(
    db: Db<'_>,
    table: &str,
    column: &str,
    rowid: i64,
    data: &[u8],
) -> Result<(), StoreError> {
    let Db::Lite(conn) = db else {
        return Ok(());
    };
    if data.len() <= STREAM_BLOB_BYTES {
        return Ok(());
    }
    let mut blob = conn.blob_open("main", table, column, rowid, false)?;
    blob.write_at(data, 0)?;
    // Closing reports what dropping would swallow (in autocommit, the commit itself).
    blob.close()?;
    Ok(())
}

pub(crate) fn rfc3339(t: i64) -> String {
    from_ts(t).to_rfc3339()
}

pub(crate) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

pub(crate) fn from_ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// A text column holding one of an enum's names (`parse`); a name it does not know makes
/// the row corrupt (`{what} `{name}``).
pub(crate) fn named<T>(
    row: &Row<'_>,
    col: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let name: String = row.get(col)?;
    parse(&name).ok_or_else(|| StoreError::Corrupt(format!("{what} `{name}`")))
}

pub(crate) fn ticket_summary(row: &Row<'_>) -> Result<TicketSummary, StoreError> {
    Ok(TicketSummary {
        id: row.get("id")?,
        number: row.get("number")?,
        status: named(row, "status", "ticket status", TicketStatus::parse)?,
        closed_at: row.get::<Option<i64>>("closed_at")?.map(from_ts),
        participants: Vec::new(),
    })
}

/// A user row (its columns prefixed with `prefix` in a join).
pub(crate) fn user_row(row: &Row<'_>, prefix: &str) -> Result<UserRecord, StoreError> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(UserRecord {
        id: row.get(col("id").as_str())?,
        email: row.get(col("email").as_str())?,
        name: row.get(col("name").as_str())?,
        role: named(row, &col("role"), "user role", Role::parse)?,
        active: row.get::<String>(col("status").as_str())? == "active",
    })
}

pub(crate) fn known_user(row: &Row<'_>) -> Result<KnownUser, StoreError> {
    let status: String = row.get("status")?;
    Ok(KnownUser {
        id: row.get("id")?,
        role: named(row, "role", "user role", Role::parse)?,
        active: status == "active",
        support_user: row.get::<i64>("support_user")? != 0,
        known: row.get::<i64>("known")? != 0,
        org: crate::tickets::effective_org(
            &row.get::<String>("org")?,
            &row.get::<String>("email")?,
        ),
    })
}

/// The columns [`ticket_list_item`] reads (`t`: tickets, `u`: the requester).
pub(crate) const LIST_COLUMNS: &str =
    "t.number, t.subject, t.status, t.category, t.urgency, t.created_at,
                            u.email, u.name";

/// A row of `tickets list` (and of an incident's tickets).
pub(crate) fn ticket_list_item(r: &Row<'_>) -> Result<TicketListItem, StoreError> {
    Ok(TicketListItem {
        number: r.get("number")?,
        subject: r.get("subject")?,
        status: r.get("status")?,
        category: r.get("category")?,
        urgency: r.get("urgency")?,
        requester: Person {
            email: r.get("email")?,
            name: r.get("name")?,
        },
        created_at: rfc3339(r.get("created_at")?),
    })
}
