//! The SQL of issue 14's grouping and clocks: incidents (migration 0018), SLA alerts and the
//! near-duplicate lookup (0019). Plain SQL with `?N` placeholders, nothing SQLite-only.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::Row;
use super::{
    args, exec, from_ts, named, query_all, query_one, query_opt, rfc3339, ticket_list_item,
    ticket_summary, ts, Store, StoreError, TicketListItem, Tx, LIST_COLUMNS,
};
use crate::tickets::incident::{Candidate, IncidentRef, IncidentStatus};
use crate::tickets::sla::{Alert, ClockKind, SlaTicket, Stage};
use crate::tickets::TicketSummary;

/// The PostgreSQL advisory lock key that serialises incident numbering ("supportd" + 13,
/// the key that serialised ticket numbering before migration 0020).
const INCIDENT_NUMBER_LOCK: i64 = 0x7375_7070_6f72_0013;

/// Tickets compared with a new urgent ticket at most (the newest).
const MAX_CANDIDATES: i64 = 200;
/// Tickets of one incident loaded for `#incident resolve` at most.
pub const MAX_LINKED: i64 = 1000;

/// An earlier message of a sender: where it is and what it said.
#[derive(Debug, Clone)]
pub struct SentEarlier {
    pub ticket: TicketSummary,
    pub message_id: String,
    pub subject: String,
    pub body: String,
}

/// An incident and its state, as the ticket it is linked to sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentState {
    pub id: i64,
    pub number: i64,
    pub status: IncidentStatus,
}

/// `incidents list`.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentItem {
    pub number: i64,
    pub status: String,
    pub title: String,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    pub tickets: i64,
}

/// `incidents show N`.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentDetail {
    pub number: i64,
    pub status: String,
    pub title: String,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    pub resolved_by: String,
    pub resolution: String,
    pub tickets: Vec<TicketListItem>,
}

impl Tx {
    /// The sender's (user `author_id`) public inbound messages since `since`, oldest first:
    /// the near-duplicate lookup (index `messages_author`).
    pub fn messages_by_author_since(
        &mut self,
        author_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<SentEarlier>, StoreError> {
        let rows = query_all(
            self.conn(),
            "SELECT t.id, t.number, t.status, t.closed_at, m.message_id, m.subject, m.body
               FROM messages m JOIN tickets t ON t.id = m.ticket_id
              WHERE m.author_id = ?1 AND m.created_at >= ?2 AND m.direction = 'inbound'
                AND m.internal = 0 AND m.kind = 'customer'
              ORDER BY m.id LIMIT 50",
            args![author_id, ts(since)],
            |r| {
                Ok(SentEarlier {
                    ticket: ticket_summary(r)?,
                    message_id: r.get("message_id")?,
                    subject: r.get("subject")?,
                    body: r.get("body")?,
                })
            },
        )?;
        rows.into_iter()
            .map(|mut s| {
                s.ticket = self.with_participants(s.ticket)?;
                Ok(s)
            })
            .collect()
    }

    /// What grouping compares a new ticket with: tickets of urgency `max_level` or more
    /// urgent created since `since` and not closed, and the tickets of open incidents; the
    /// newest [`MAX_CANDIDATES`], each with its subject and first customer message.
    pub fn incident_candidates(
        &mut self,
        max_level: u8,
        since: DateTime<Utc>,
    ) -> Result<Vec<Candidate>, StoreError> {
        query_all(
            self.conn(),
            "SELECT t.id, t.number, t.created_at, t.subject, u.email, i.id AS i_id,
                    i.number AS i_number,
                    (SELECT m.body FROM messages m
                      WHERE m.ticket_id = t.id AND m.direction = 'inbound' AND m.internal = 0
                      ORDER BY m.id LIMIT 1) AS body
               FROM tickets t JOIN users u ON u.id = t.requester_id
               LEFT JOIN incidents i ON i.id = t.incident_id AND i.status = 'open'
              WHERE t.urgency <= ?1 AND t.id IN (
                        SELECT id FROM tickets WHERE created_at >= ?2 AND status <> 'closed'
                        UNION
                        SELECT t2.id FROM tickets t2 JOIN incidents i2 ON i2.id = t2.incident_id
                         WHERE i2.status = 'open')
              ORDER BY t.id DESC LIMIT ?3",
            args![i64::from(max_level), ts(since), MAX_CANDIDATES],
            |r| {
                let subject: String = r.get("subject")?;
                let body: Option<String> = r.get("body")?;
                Ok(Candidate {
                    id: r.get("id")?,
                    number: r.get("number")?,
                    created_at: from_ts(r.get("created_at")?),
                    text: format!("{subject}\n{}", body.unwrap_or_default()),
                    subject,
                    requester: r.get("email")?,
                    incident: match r.get::<Option<i64>>("i_id")? {
                        Some(id) => Some(IncidentRef {
                            id,
                            number: r.get("i_number")?,
                        }),
                        None => None,
                    },
                })
            },
        )
    }

    /// The number the next incident gets: `MAX(number) + 1`, read under SQLite's write
    /// lock, or on PostgreSQL under a transaction-scoped advisory lock taken first, so that
    /// replicas opening incidents at once take turns until the commit (asked only for a new
    /// ticket urgent enough to be grouped, when incidents are configured).
    pub fn next_incident_number(&mut self) -> Result<i64, StoreError> {
        if self.conn().is_pg() {
            query_one(
                self.conn(),
                "SELECT pg_advisory_xact_lock(?1) IS NULL AS locked",
                args![INCIDENT_NUMBER_LOCK],
                |row| row.get::<i64>("locked"),
            )?;
        }
        query_one(
            self.conn(),
            "SELECT COALESCE(MAX(number), 0) + 1 AS n FROM incidents",
            args![],
            |r| r.get("n"),
        )
    }

    pub fn insert_incident(
        &mut self,
        number: i64,
        title: &str,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        query_one(
            self.conn(),
            "INSERT INTO incidents (number, title, opened_at) VALUES (?1, ?2, ?3) RETURNING id",
            args![number, title, ts(at)],
            |r| r.get("id"),
        )
    }

    pub fn link_incident(&mut self, ticket_id: i64, incident_id: i64) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE tickets SET incident_id = ?2 WHERE id = ?1",
            args![ticket_id, incident_id],
        )?;
        Ok(())
    }

    pub fn resolve_incident(
        &mut self,
        incident_id: i64,
        by: &str,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "UPDATE incidents SET status = 'resolved', resolved_at = ?2, resolved_by = ?3,
                    resolution = ?4 WHERE id = ?1",
            args![incident_id, ts(at), by, text],
        )?;
        Ok(())
    }

    /// The incident ticket `ticket_id` is linked to, with the ids of its tickets (the first
    /// [`MAX_LINKED`], oldest first).
    pub fn incident_of(
        &mut self,
        ticket_id: i64,
    ) -> Result<Option<(IncidentRef, IncidentStatus, Vec<i64>)>, StoreError> {
        let Some(state) = query_opt(
            self.conn(),
            "SELECT i.id, i.number, i.status FROM tickets t JOIN incidents i ON i.id = t.incident_id
              WHERE t.id = ?1",
            args![ticket_id],
            incident_state,
        )?
        else {
            return Ok(None);
        };
        let ids = query_all(
            self.conn(),
            "SELECT id FROM tickets WHERE incident_id = ?1 ORDER BY id LIMIT ?2",
            args![state.id, MAX_LINKED],
            |r| r.get("id"),
        )?;
        Ok(Some((
            IncidentRef {
                id: state.id,
                number: state.number,
            },
            state.status,
            ids,
        )))
    }

    /// Every ticket whose first-response or resolution clock still runs (not closed).
    pub fn running_clocks(&mut self) -> Result<Vec<SlaTicket>, StoreError> {
        query_all(
            self.conn(),
            "SELECT id, number, created_at, first_response_due, resolution_due, first_response_at
               FROM tickets WHERE status <> 'closed' ORDER BY id",
            args![],
            |r| {
                Ok(SlaTicket {
                    id: r.get("id")?,
                    number: r.get("number")?,
                    created_at: from_ts(r.get("created_at")?),
                    first_response_due: from_ts(r.get("first_response_due")?),
                    resolution_due: from_ts(r.get("resolution_due")?),
                    first_response_at: r.get::<Option<i64>>("first_response_at")?.map(from_ts),
                })
            },
        )
    }

    /// The alerts already sent for tickets that are not closed.
    pub fn sent_sla_alerts(&mut self) -> Result<Vec<Alert>, StoreError> {
        query_all(
            self.conn(),
            "SELECT a.ticket_id, a.clock, a.stage, a.due_at FROM sla_alerts a
               JOIN tickets t ON t.id = a.ticket_id WHERE t.status <> 'closed'",
            args![],
            |r| {
                Ok(Alert {
                    ticket_id: r.get("ticket_id")?,
                    clock: named(r, "clock", "sla clock", ClockKind::parse)?,
                    stage: named(r, "stage", "sla stage", Stage::parse)?,
                    due_at: from_ts(r.get("due_at")?),
                })
            },
        )
    }

    pub fn record_sla_alert(&mut self, a: &Alert, at: DateTime<Utc>) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "INSERT INTO sla_alerts (ticket_id, clock, stage, due_at, sent_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            args![
                a.ticket_id,
                a.clock.as_str(),
                a.stage.as_str(),
                ts(a.due_at),
                ts(at)
            ],
        )?;
        Ok(())
    }
}

fn incident_state(r: &Row<'_>) -> Result<IncidentState, StoreError> {
    Ok(IncidentState {
        id: r.get("id")?,
        number: r.get("number")?,
        status: named(r, "status", "incident status", IncidentStatus::parse)?,
    })
}

impl Store {
    /// `incidents list`: newest first.
    pub fn list_incidents(&self) -> Result<Vec<IncidentItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT i.number, i.status, i.title, i.opened_at, i.resolved_at,
                        (SELECT COUNT(*) FROM tickets t WHERE t.incident_id = i.id) AS n
                   FROM incidents i ORDER BY i.number DESC",
                args![],
                |r| {
                    Ok(IncidentItem {
                        number: r.get("number")?,
                        status: r.get("status")?,
                        title: r.get("title")?,
                        opened_at: rfc3339(r.get("opened_at")?),
                        resolved_at: r.get::<Option<i64>>("resolved_at")?.map(rfc3339),
                        tickets: r.get("n")?,
                    })
                },
            )
        })
    }

    /// `incidents show N`.
    pub fn incident_detail(&self, number: i64) -> Result<Option<IncidentDetail>, StoreError> {
        self.with_conn(|c| {
            let Some((id, mut d)) = query_opt(
                c,
                "SELECT * FROM incidents WHERE number = ?1",
                args![number],
                |r| {
                    Ok((
                        r.get::<i64>("id")?,
                        IncidentDetail {
                            number: r.get("number")?,
                            status: r.get("status")?,
                            title: r.get("title")?,
                            opened_at: rfc3339(r.get("opened_at")?),
                            resolved_at: r.get::<Option<i64>>("resolved_at")?.map(rfc3339),
                            resolved_by: r.get("resolved_by")?,
                            resolution: r.get("resolution")?,
                            tickets: Vec::new(),
                        },
                    ))
                },
            )?
            else {
                return Ok(None);
            };
            d.tickets = query_all(
                c,
                &format!(
                    "SELECT {LIST_COLUMNS} FROM tickets t JOIN users u ON u.id = t.requester_id
                      WHERE t.incident_id = ?1 ORDER BY t.number"
                ),
                args![id],
                ticket_list_item,
            )?;
            Ok(Some(d))
        })
    }

    /// `tickets list --overdue`: tickets not closed whose first-response due time passed
    /// without an agent's public answer, or whose resolution due time passed.
    pub fn list_overdue(&self, now: DateTime<Utc>) -> Result<Vec<TicketListItem>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                &format!(
                    "SELECT {LIST_COLUMNS} FROM tickets t JOIN users u ON u.id = t.requester_id
                      WHERE t.status <> 'closed'
                        AND ((t.first_response_at IS NULL AND t.first_response_due < ?1)
                             OR t.resolution_due < ?1)
                      ORDER BY t.number"
                ),
                args![ts(now)],
                ticket_list_item,
            )
        })
    }

    /// The incident a ticket is linked to, with its public status and resolution text (the
    /// web page of the ticket).
    pub fn public_incident(
        &self,
        ticket_number: i64,
    ) -> Result<Option<(i64, String, String)>, StoreError> {
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT i.number, i.status, i.resolution FROM tickets t
                   JOIN incidents i ON i.id = t.incident_id WHERE t.number = ?1",
                args![ticket_number],
                |r| Ok((r.get("number")?, r.get("status")?, r.get("resolution")?)),
            )
        })
    }
}
