//! `GET /healthz`: JSON for load balancers and monitoring. 200 when healthy; 503 when the
//! database does not answer, or a mailbox this process runs has had no good sync for 10 of
//! its poll intervals (a mailbox waiting in IDLE on a live session is healthy: a quiet one
//! syncs only when IDLE is renewed). `supportd serve` runs no mailbox: its answer lists none.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Web;

/// Poll intervals without a good sync after which a mailbox is unhealthy.
pub const STALE_INTERVALS: u64 = 10;

#[derive(Serialize)]
struct Database {
    reachable: bool,
    error: Option<String>,
}

#[derive(Serialize)]
struct Mailbox {
    name: String,
    last_sync: Option<DateTime<Utc>>,
    /// Seconds since the last good sync (or since the task started, before the first).
    age_seconds: i64,
    idle: bool,
    healthy: bool,
    /// PostgreSQL replicas: the replica holding this mailbox's lease (null on SQLite).
    lease_holder: Option<String>,
    /// Whether this process works the mailbox now (false: another replica holds its lease
    /// and this one stands by, which is healthy).
    works_here: bool,
}

#[derive(Serialize)]
struct Outbox {
    queued: Option<i64>,
    oldest_queued_at: Option<DateTime<Utc>>,
    oldest_queued_age_seconds: Option<i64>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    /// This process's replica name (`SUPPORTD_REPLICA`, else the host name).
    replica: String,
    database: Database,
    mailboxes: Vec<Mailbox>,
    /// False for `supportd serve`: the mailboxes run in another process.
    runs_mailboxes: bool,
    outbox: Outbox,
}

pub async fn healthz(State(web): State<Arc<Web>>) -> Response {
    let now = web.shared.now();
    let store = web.store();
    let (database, outbox) = match store.ping().and_then(|()| store.outbox_backlog()) {
        Ok(b) => (
            Database {
                reachable: true,
                error: None,
            },
            Outbox {
                queued: Some(b.queued),
                oldest_queued_at: b.oldest_queued_at,
                oldest_queued_age_seconds: b.oldest_queued_at.map(|t| (now - t).num_seconds()),
            },
        ),
        Err(e) => (
            Database {
                reachable: false,
                error: Some(e.to_string()),
            },
            Outbox {
                queued: None,
                oldest_queued_at: None,
                oldest_queued_age_seconds: None,
            },
        ),
    };
    let watched = web.shared.mailboxes();
    let mailboxes: Vec<Mailbox> = watched
        .iter()
        .map(|m| {
            let me = &supportd_replica();
            let works_here = m.lease_holder.as_ref().is_none_or(|h| h == me);
            let since = m.last_sync.unwrap_or(m.started);
            let age = (now - since).num_seconds();
            let limit =
                i64::try_from(m.poll_seconds.saturating_mul(STALE_INTERVALS)).unwrap_or(i64::MAX);
            Mailbox {
                name: m.name.clone(),
                last_sync: m.last_sync,
                age_seconds: age,
                idle: m.idle,
                healthy: !works_here || m.idle || age <= limit,
                lease_holder: m.lease_holder.clone(),
                works_here,
            }
        })
        .collect();
    let healthy = database.reachable && mailboxes.iter().all(|m| m.healthy);
    let body = Health {
        status: if healthy { "ok" } else { "unhealthy" },
        replica: supportd_replica(),
        database,
        runs_mailboxes: !watched.is_empty(),
        mailboxes,
        outbox,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn supportd_replica() -> String {
    crate::store::instance().replica.clone()
}
