//! What the web pages read and write (issue 11): a ticket's public view by its access key,
//! its public attachments, sign-in links and sessions, the lists of /my, and the figures of
//! /healthz and /metrics. Updates from the web do not write here: they are messages, and
//! go through the pipeline like mail.

use chrono::{DateTime, Utc};

use super::{args, exec, from_ts, query_all, query_one, query_opt, ts, Store, StoreError, Tx};

/// Messages a customer sees: the public ones, and the agents' relayed replies, whose
/// attachments went to the customer with the relay (the text went as the public outbound copy).
const PUBLIC: &str = "(m.internal = 0 OR (m.direction = 'inbound' AND m.kind = 'agent'))";

/// A ticket as its requester and collaborators see it.
#[derive(Debug, Clone)]
pub struct TicketPage {
    pub id: i64,
    pub number: i64,
    pub access_key: String,
    pub subject: String,
    pub status: String,
    pub category: String,
    pub urgency: u8,
    pub created_at: DateTime<Utc>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub requester_id: i64,
    pub requester_email: String,
    pub requester_name: String,
    /// The requester's organisation (explicit, else the email domain).
    pub org: String,
    pub assignee_name: Option<String>,
    /// The closed ticket this one continues.
    pub follows: Option<i64>,
    /// The requester and the Cc collaborators (user ids).
    pub participants: Vec<i64>,
    /// The public thread, oldest first.
    pub messages: Vec<PublicMessage>,
}

#[derive(Debug, Clone)]
pub struct PublicMessage {
    pub id: i64,
    pub direction: String,
    pub kind: String,
    pub author_email: String,
    /// The author's user name ('' when unknown or none).
    pub author_name: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub attachments: Vec<PublicAttachment>,
}

#[derive(Debug, Clone)]
pub struct PublicAttachment {
    pub id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
}

/// An attachment's bytes, for download.
#[derive(Debug, Clone)]
pub struct AttachmentFile {
    pub ticket_number: i64,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct WebUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub site_admin: bool,
    pub org: String,
}

/// One line of the lists on /my.
#[derive(Debug, Clone)]
pub struct TicketLine {
    pub number: i64,
    pub access_key: String,
    pub subject: String,
    pub status: String,
    pub urgency: i64,
    pub updated_at: DateTime<Utc>,
}

/// What following a sign-in link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// Signed in: the session was created.
    Done {
        user_id: i64,
    },
    Expired,
    /// Used before (single use).
    Used,
    /// No such link, or its user is no longer active.
    Unknown,
}

/// An active user a sign-in link may be mailed to.
#[derive(Debug, Clone)]
pub struct SignInUser {
    pub id: i64,
    pub email: String,
    pub name: String,
}

/// The outbox, for /healthz.
#[derive(Debug, Clone, Default)]
pub struct OutboxBacklog {
    pub queued: i64,
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// The SQL expression of a user's organisation (see `tickets::effective_org`): the explicit
/// one, else the part of the email after its last `@`, lower-cased.
const ORG_OF_R: &str = "(CASE WHEN trim(r.org) <> '' THEN trim(r.org)
     ELSE lower(substr(r.email, length(rtrim(r.email, replace(r.email, '@', ''))) + 1)) END)";

impl Store {
    /// The ticket whose access key is `key`, with its public thread.
    pub fn ticket_page(&self, key: &str) -> Result<Option<TicketPage>, StoreError> {
        self.with_conn(|c| {
            let sql = format!(
                "SELECT t.id, t.number, t.access_key, t.subject, t.status, t.category, t.urgency,
                        t.created_at, t.first_response_due, t.resolution_due, t.first_response_at,
                        t.closed_at, r.id AS r_id, r.email AS r_email, r.name AS r_name,
                        {ORG_OF_R} AS r_org, a.id AS a_id, a.name AS a_name,
                        f.number AS follows_number
                   FROM tickets t JOIN users r ON r.id = t.requester_id
                   LEFT JOIN users a ON a.id = t.assignee_id
                   LEFT JOIN tickets f ON f.id = t.follows_ticket_id
                  WHERE t.access_key = ?1"
            );
            let Some(mut page) = query_opt(c, &sql, args![key], |t| {
                // An agent's address is not the customer's business: a name, or a role.
                let assignee = t.get::<Option<i64>>("a_id")?.map(|_| {
                    t.get::<Option<String>>("a_name")
                        .ok()
                        .flatten()
                        .filter(|n| !n.trim().is_empty())
                        .unwrap_or_else(|| "a support agent".to_string())
                });
                Ok(TicketPage {
                    id: t.get("id")?,
                    number: t.get("number")?,
                    access_key: t.get("access_key")?,
                    subject: t.get("subject")?,
                    status: t.get("status")?,
                    category: t.get("category")?,
                    urgency: u8::try_from(t.get::<i64>("urgency")?).unwrap_or(u8::MAX),
                    created_at: from_ts(t.get("created_at")?),
                    first_response_due: from_ts(t.get("first_response_due")?),
                    resolution_due: from_ts(t.get("resolution_due")?),
                    first_response_at: t.get::<Option<i64>>("first_response_at")?.map(from_ts),
                    closed_at: t.get::<Option<i64>>("closed_at")?.map(from_ts),
                    requester_id: t.get("r_id")?,
                    requester_email: t.get("r_email")?,
                    requester_name: t.get("r_name")?,
                    org: t.get("r_org")?,
                    assignee_name: assignee,
                    follows: t.get("follows_number")?,
                    participants: Vec::new(),
                    messages: Vec::new(),
                })
            })?
            else {
                return Ok(None);
            };
            page.participants = query_all(
                c,
                "SELECT user_id FROM participants WHERE ticket_id = ?1",
                args![page.id],
                |r| r.get::<i64>("user_id"),
            )?;
            page.participants.push(page.requester_id);
            let sql = format!(
                "SELECT m.id, m.direction, m.kind, m.author, m.internal, m.body, m.created_at,
                        COALESCE(u.name, '') AS author_name
                   FROM messages m LEFT JOIN users u ON u.id = m.author_id
                  WHERE m.ticket_id = ?1 AND {PUBLIC} ORDER BY m.id"
            );
            let rows = query_all(c, &sql, args![page.id], |m| {
                Ok((
                    m.get::<i64>("internal")? != 0,
                    PublicMessage {
                        id: m.get("id")?,
                        direction: m.get("direction")?,
                        kind: m.get("kind")?,
                        author_email: m.get("author")?,
                        author_name: m.get("author_name")?,
                        body: m.get("body")?,
                        created_at: from_ts(m.get("created_at")?),
                        attachments: Vec::new(),
                    },
                ))
            })?;
            let sql = format!(
                "SELECT a.id, a.message_row, a.filename, a.content_type, a.size
                   FROM attachments a JOIN messages m ON m.id = a.message_row
                  WHERE m.ticket_id = ?1 AND {PUBLIC} ORDER BY a.id"
            );
            let mut files = query_all(c, &sql, args![page.id], |a| {
                Ok((
                    a.get::<i64>("message_row")?,
                    PublicAttachment {
                        id: a.get("id")?,
                        filename: a.get("filename")?,
                        content_type: a.get("content_type")?,
                        size: a.get("size")?,
                    },
                ))
            })?;
            // A relayed agent reply (internal, with the agent's commands) lends its files to
            // the public copy that follows it; its text stays internal.
            let mut carried: Vec<PublicAttachment> = Vec::new();
            for (internal, mut m) in rows {
                let own: Vec<PublicAttachment> = files
                    .iter()
                    .filter(|(row, _)| *row == m.id)
                    .map(|(_, a)| a.clone())
                    .collect();
                files.retain(|(row, _)| *row != m.id);
                if internal {
                    carried.extend(own);
                    continue;
                }
                m.attachments = std::mem::take(&mut carried);
                m.attachments.extend(own);
                page.messages.push(m);
            }
            Ok(Some(page))
        })
    }

    /// Attachment `id`, when it belongs to the public thread of the ticket with access key
    /// `key`.
    pub fn public_attachment(
        &self,
        key: &str,
        id: i64,
    ) -> Result<Option<AttachmentFile>, StoreError> {
        self.with_conn(|c| {
            let sql = format!(
                "SELECT t.number, a.filename, a.content_type, a.data
                   FROM attachments a JOIN messages m ON m.id = a.message_row
                   JOIN tickets t ON t.id = m.ticket_id
                  WHERE a.id = ?2 AND t.access_key = ?1 AND {PUBLIC}"
            );
            query_opt(c, &sql, args![key, id], |r| {
                Ok(AttachmentFile {
                    ticket_number: r.get("number")?,
                    filename: r.get("filename")?,
                    content_type: r.get("content_type")?,
                    data: r.get("data")?,
                })
            })
        })
    }

    /// The access key of ticket `number`.
    pub fn access_key_of(&self, number: i64) -> Result<Option<String>, StoreError> {
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT access_key FROM tickets WHERE number = ?1",
                args![number],
                |r| r.get("access_key"),
            )
        })
    }

    /// Follows a sign-in link (its token's hash): once, before it expires, for an active
    /// user. On success the session (`session_hash`, until `session_expires`) is created in
    /// the same transaction. Expired rows of both tables are cleared on the way.
    pub fn sign_in(
        &self,
        token_hash: &str,
        session_hash: &str,
        now: DateTime<Utc>,
        session_expires: DateTime<Utc>,
    ) -> Result<SignIn, StoreError> {
        super::blocking(|| {
            let tx = self.begin()?;
            let c = tx.conn();
            exec(
                c,
                "DELETE FROM web_sessions WHERE expires_at < ?1",
                args![ts(now)],
            )?;
            let found = query_opt(
                c,
                "SELECT s.id, s.user_id, s.expires_at, s.used_at, u.status
                   FROM web_signins s LEFT JOIN users u ON u.id = s.user_id
                  WHERE s.token_hash = ?1",
                args![token_hash],
                |r| {
                    Ok((
                        r.get::<i64>("id")?,
                        r.get::<Option<i64>>("user_id")?,
                        r.get::<i64>("expires_at")?,
                        r.get::<Option<i64>>("used_at")?,
                        r.get::<Option<String>>("status")?,
                    ))
                },
            )?;
            let outcome = match found {
                None | Some((_, None, ..)) => SignIn::Unknown,
                Some((_, _, _, Some(_), _)) => SignIn::Used,
                Some((_, _, expires, _, _)) if expires <= ts(now) => SignIn::Expired,
                Some((_, _, _, _, status)) if status.as_deref() != Some("active") => {
                    SignIn::Unknown
                }
                Some((id, Some(user_id), ..)) => {
                    exec(
                        c,
                        "UPDATE web_signins SET used_at = ?1 WHERE id = ?2",
                        args![ts(now), id],
                    )?;
                    exec(
                        c,
                        "INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        args![session_hash, user_id, ts(now), ts(session_expires)],
                    )?;
                    SignIn::Done { user_id }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    /// The active user of a live session (its cookie's hash).
    pub fn session_user(
        &self,
        session_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebUser>, StoreError> {
        self.with_conn(|c| {
            let sql = format!(
                "SELECT r.id, r.email, r.name, r.site_admin, {ORG_OF_R} AS org
                   FROM web_sessions s JOIN users r ON r.id = s.user_id
                  WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND r.status = 'active'"
            );
            query_opt(c, &sql, args![session_hash, ts(now)], |r| {
                Ok(WebUser {
                    id: r.get("id")?,
                    email: r.get("email")?,
                    name: r.get("name")?,
                    site_admin: r.get::<i64>("site_admin")? != 0,
                    org: r.get("org")?,
                })
            })
        })
    }

    pub fn end_session(&self, session_hash: &str) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "DELETE FROM web_sessions WHERE token_hash = ?1",
                args![session_hash],
            )?;
            Ok(())
        })
    }

    /// /my: the tickets `user` requested, those they are a Cc collaborator on, and (for a
    /// site admin) every ticket of their organisation; newest activity first, at most
    /// `limit` each.
    #[allow(clippy::type_complexity)]
    pub fn my_tickets(
        &self,
        user: &WebUser,
        limit: i64,
    ) -> Result<(Vec<TicketLine>, Vec<TicketLine>, Vec<TicketLine>), StoreError> {
        self.with_conn(|c| {
            let line = |r: &super::Row<'_>| {
                Ok(TicketLine {
                    number: r.get("number")?,
                    access_key: r.get("access_key")?,
                    subject: r.get("subject")?,
                    status: r.get("status")?,
                    urgency: r.get("urgency")?,
                    updated_at: from_ts(r.get("updated_at")?),
                })
            };
            const COLS: &str =
                "t.number, t.access_key, t.subject, t.status, t.urgency, t.updated_at";
            let mine = query_all(
                c,
                &format!(
                    "SELECT {COLS} FROM tickets t WHERE t.requester_id = ?1
                      ORDER BY t.updated_at DESC, t.id DESC LIMIT ?2"
                ),
                args![user.id, limit],
                line,
            )?;
            let cced = query_all(
                c,
                &format!(
                    "SELECT {COLS} FROM tickets t JOIN participants p ON p.ticket_id = t.id
                      WHERE p.user_id = ?1 AND t.requester_id <> ?1
                      ORDER BY t.updated_at DESC, t.id DESC LIMIT ?2"
                ),
                args![user.id, limit],
                line,
            )?;
            let team = if user.site_admin {
                query_all(
                    c,
                    &format!(
                        "SELECT {COLS} FROM tickets t JOIN users r ON r.id = t.requester_id
                          WHERE {ORG_OF_R} = ?1
                          ORDER BY t.updated_at DESC, t.id DESC LIMIT ?2"
                    ),
                    args![user.org, limit],
                    line,
                )?
            } else {
                Vec::new()
            };
            Ok((mine, cced, team))
        })
    }

    /// The secret the web signs its CSRF tokens with: made once (`candidate`, when none is
    /// stored yet) and shared by every process serving the pages of this database.
    pub fn web_secret(&self, candidate: &str, now: DateTime<Utc>) -> Result<String, StoreError> {
        self.with_conn(|c| {
            let read = |c: super::Db<'_>| {
                query_opt(
                    c,
                    "SELECT value FROM settings WHERE key = 'web_secret'",
                    args![],
                    |r| r.get::<String>("value"),
                )
            };
            if let Some(secret) = read(c)? {
                return Ok(secret);
            }
            exec(
                c,
                "INSERT INTO settings (key, value, updated_at) VALUES ('web_secret', ?1, ?2)
                 ON CONFLICT (key) DO NOTHING",
                args![candidate, ts(now)],
            )?;
            // Another process may have made it first: theirs is the one.
            read(c)?.ok_or_else(|| StoreError::Corrupt("the web secret was not stored".into()))
        })
    }

    /// The database answers (a read of one row).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| query_one(c, "SELECT 1 AS one", args![], |r| r.get::<i64>("one")))
            .map(drop)
    }

    pub fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        self.with_conn(|c| {
            query_one(
                c,
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE status = 'queued'",
                args![],
                |r| {
                    Ok(OutboxBacklog {
                        queued: r.get("n")?,
                        oldest_queued_at: r.get::<Option<i64>>("oldest")?.map(from_ts),
                    })
                },
            )
        })
    }

    /// Tickets by (status, urgency) and outbox rows by status, for /metrics.
    #[allow(clippy::type_complexity)]
    pub fn counts(&self) -> Result<(Vec<(String, i64, i64)>, Vec<(String, i64)>), StoreError> {
        self.with_conn(|c| {
            let tickets = query_all(
                c,
                "SELECT status, urgency, COUNT(*) AS n FROM tickets GROUP BY status, urgency",
                args![],
                |r| Ok((r.get("status")?, r.get("urgency")?, r.get("n")?)),
            )?;
            let outbox = query_all(
                c,
                "SELECT status, COUNT(*) AS n FROM outbox GROUP BY status",
                args![],
                |r| Ok((r.get("status")?, r.get("n")?)),
            )?;
            Ok((tickets, outbox))
        })
    }
}

impl Tx {
    /// Sign-in requests for `address_hash` since `since` (the per-address rate limit).
    pub fn signins_since(
        &mut self,
        address_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        query_one(
            self.conn(),
            "SELECT COUNT(*) AS n FROM web_signins WHERE address_hash = ?1 AND created_at > ?2",
            args![address_hash, ts(since)],
            |r| Ok(u32::try_from(r.get::<i64>("n")?).unwrap_or(u32::MAX)),
        )
    }

    /// The language of the user's latest ticket ('' when none was detected or they have
    /// none): the language their sign-in mail is written in.
    pub fn latest_language(&mut self, user_id: i64) -> Result<String, StoreError> {
        Ok(query_opt(
            self.conn(),
            "SELECT language FROM tickets WHERE requester_id = ?1 ORDER BY id DESC LIMIT 1",
            args![user_id],
            |r| r.get::<String>("language"),
        )?
        .unwrap_or_default())
    }

    /// The active user with this address (lower-cased key), if any.
    pub fn signin_user(&mut self, email_key: &str) -> Result<Option<SignInUser>, StoreError> {
        query_opt(
            self.conn(),
            "SELECT id, email, name FROM users WHERE email_key = ?1 AND status = 'active'",
            args![email_key],
            |r| {
                Ok(SignInUser {
                    id: r.get("id")?,
                    email: r.get("email")?,
                    name: r.get("name")?,
                })
            },
        )
    }

    /// Records one sign-in request; clears requests older than a day.
    pub fn insert_signin(
        &mut self,
        token_hash: &str,
        address_hash: &str,
        user_id: Option<i64>,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let c = self.conn();
        exec(
            c,
            "DELETE FROM web_signins WHERE created_at < ?1",
            args![ts(now) - 86_400],
        )?;
        exec(
            c,
            "INSERT INTO web_signins (token_hash, address_hash, user_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![token_hash, address_hash, user_id, ts(now), ts(expires)],
        )?;
        Ok(())
    }
}
