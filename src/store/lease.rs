//! Mailbox leases (issue 13): on PostgreSQL one replica at a time works each mailbox. The
//! lease is a session advisory lock held on a connection of its own: it ends when that
//! connection does — at once on a graceful stop or a kill -9 (the server sees the socket
//! close), after TCP keepalive when the host or the network dies (see README, Replicas).
//! SQLite needs none: one daemon per database file.

use sha2::{Digest as _, Sha256};

use super::pg::PgConn;
use super::sql::{args, query_one, query_opt, Db};
use super::{blocking, instance, Store, StoreError};

/// The PostgreSQL `application_name` of lease connections: `supportd lease REPLICA`
/// (at most 63 bytes), which is how every replica sees who holds a mailbox.
const LEASE_APP: &str = "supportd lease ";

/// A held mailbox lease; dropping it releases the mailbox.
pub struct Lease {
    conn: PgConn,
    mailbox: String,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("mailbox", &self.mailbox)
            .finish()
    }
}

/// The advisory lock key of a mailbox: 62 bits of a hash of its name.
fn key(mailbox: &str) -> i64 {
    let digest = Sha256::digest(format!("supportd mailbox lease\0{mailbox}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(b) & 0x3FFF_FFFF_FFFF_FFFF
}

/// A standby's lease connection, kept to ask again without reconnecting.
pub struct Standby {
    conn: PgConn,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Standby")
    }
}

/// Who may work a mailbox now.
#[derive(Debug)]
pub enum LeaseTry {
    /// SQLite: no lease is needed.
    NotNeeded,
    Held(Lease),
    /// Another replica holds it (its name, when the server says); ask again with the
    /// returned connection.
    HeldBy(Option<String>, Standby),
}

/// `supportd lease REPLICA`, cut to PostgreSQL's 63 bytes on a character boundary.
fn application_name() -> String {
    let mut app = format!("{LEASE_APP}{}", instance().replica);
    let mut end = app.len().min(63);
    while !app.is_char_boundary(end) {
        end -= 1;
    }
    app.truncate(end);
    app
}

impl Store {
    /// Tries to take the lease of `mailbox` (never waits), on `standby`'s connection when
    /// given (asking again), else on a new one. With `take` false it only looks (and keeps
    /// the connection, which tells the other replicas this one is alive).
    pub fn try_lease(
        &self,
        mailbox: &str,
        standby: Option<Standby>,
        take: bool,
    ) -> Result<LeaseTry, StoreError> {
        let conn = match standby {
            Some(Standby { conn }) => conn,
            None => {
                let Some(conn) = self.pg_detached()? else {
                    return Ok(LeaseTry::NotNeeded);
                };
                // SET takes no parameters: the name is quoted as a literal.
                let app = application_name().replace('\'', "''");
                blocking(|| conn.simple(&format!("SET application_name = '{app}'")))?;
                conn
            }
        };
        blocking(|| {
            let got = if take {
                query_one(
                    Db::Pg(&conn),
                    "SELECT pg_try_advisory_lock(?1) AS got",
                    args![key(mailbox)],
                    |r| r.get::<i64>("got"),
                )?
            } else {
                0
            };
            if got != 0 {
                Ok(LeaseTry::Held(Lease {
                    conn,
                    mailbox: mailbox.to_string(),
                }))
            } else {
                Ok(LeaseTry::HeldBy(
                    self.lease_holder(mailbox)?,
                    Standby { conn },
                ))
            }
        })
    }

    /// How many replicas have mailbox tasks on this database now (their lease and standby
    /// connections are named after them); at least 1.
    pub fn live_replicas(&self) -> Result<usize, StoreError> {
        if !self.is_postgres() {
            return Ok(1);
        }
        let n = self.with_conn(|c| {
            query_one(
                c,
                "SELECT COUNT(DISTINCT application_name) AS n FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name LIKE 'supportd lease %'",
                args![],
                |r| r.get::<i64>("n"),
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(1).max(1))
    }

    /// The replica holding `mailbox`'s lease, if any (None on SQLite).
    pub fn lease_holder(&self, mailbox: &str) -> Result<Option<String>, StoreError> {
        if !self.is_postgres() {
            return Ok(None);
        }
        let k = key(mailbox);
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT a.application_name AS app FROM pg_locks l
                   JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid::bigint = ?1 AND l.objid::bigint = ?2
                  LIMIT 1",
                args![k >> 32, k & 0xFFFF_FFFF],
                |r| r.get::<Option<String>>("app"),
            )
        })
        .map(|app| {
            app.flatten()
                .map(|a| a.strip_prefix(LEASE_APP).unwrap_or(&a).to_string())
        })
    }
}

impl Lease {
    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// Whether the lease's connection still answers (the lock lives as long as it does).
    pub fn alive(&self) -> bool {
        blocking(|| {
            query_one(Db::Pg(&self.conn), "SELECT 1 AS one", args![], |r| {
                r.get::<i64>("one")
            })
            .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_positive_and_distinct() {
        assert_eq!(key("support"), key("support"));
        assert_ne!(key("support"), key("billing"));
        assert!(key("support") >= 0);
    }
}
