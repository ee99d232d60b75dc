//! PostgreSQL only: the append-only rows of a transaction, held back and written together.
//!
//! On PostgreSQL every statement is a round trip to the server, and a new ticket's history
//! events, its notification records and its queued mails (outbox row, recipients, agent-mail
//! record, history message) were five of its twelve. None of them is read back by the
//! statement that follows it, so a [`super::pg::PgConn`] keeps them here and writes them all
//! in ONE statement just before the next statement of any kind is sent on that connection
//! (and so before `COMMIT`, and before the pipeline releases a message's savepoint, which
//! flushes explicitly so that an error is that message's). Every other statement therefore
//! sees exactly the rows it would have seen had each been written at once: only the number
//! of round trips changes. A rollback of the transaction (whole, or to a savepoint) drops
//! what is held first (`Tx` does, before it sends `ROLLBACK`): every held row came after the
//! last statement sent, so after any savepoint still open.
//!
//! Each table is one `INSERT … SELECT FROM UNNEST(arrays)` in the order the rows were held,
//! so ids (history order) are as they would have been.

use super::sql::Arg;

/// The rows held back on one connection.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    events: Events,
    notices: Notices,
    mails: Mails,
}

#[derive(Debug, Default)]
struct Events {
    ticket: Vec<i64>,
    at: Vec<i64>,
    actor: Vec<String>,
    kind: Vec<String>,
    detail: Vec<String>,
}

#[derive(Debug, Default)]
struct Notices {
    sender_key: Vec<String>,
    ticket: Vec<i64>,
    event: Vec<String>,
    at: Vec<i64>,
    held: Vec<i64>,
}

/// Queued mails; a NULL ticket or author id is held as 0 (no row has id 0) and made NULL
/// again in SQL.
#[derive(Debug, Default)]
struct Mails {
    ticket: Vec<i64>,
    kind: Vec<String>,
    message_id: Vec<String>,
    recipients: Vec<String>,
    subject: Vec<String>,
    raw: Vec<Vec<u8>>,
    at: Vec<i64>,
    to_agents: Vec<i64>,
    history: Vec<i64>,
    author: Vec<String>,
    author_id: Vec<i64>,
    body: Vec<String>,
    /// The envelope recipients of all mails, flat: which mail (its Message-ID), position,
    /// address, rate key.
    rcpt_of: Vec<String>,
    rcpt_position: Vec<i64>,
    rcpt_address: Vec<String>,
    rcpt_rate_key: Vec<String>,
}

/// One queued mail, as [`super::Tx::queue_mail`] gives it.
pub(crate) struct HeldMail<'a> {
    pub ticket: Option<i64>,
    pub kind: &'a str,
    pub message_id: &'a str,
    /// The envelope recipients: (address as stored, rate key).
    pub recipients: Vec<(String, String)>,
    pub subject: &'a str,
    pub raw: &'a [u8],
    pub at: i64,
    pub to_agents: bool,
    /// Its place on the ticket's history: (author, author's user id, body).
    pub history: Option<(&'a str, Option<i64>, &'a str)>,
}

/// The one statement that writes everything held (arrays may be empty: their INSERT then
/// writes nothing). `?N` as everywhere in the store.
const FLUSH: &str = "WITH
    ev AS (
        INSERT INTO events (ticket_id, at, actor, kind, detail)
        SELECT t, a, ac, k, d
          FROM UNNEST(?1::bigint[], ?2::bigint[], ?3::text[], ?4::text[], ?5::text[])
               WITH ORDINALITY AS e(t, a, ac, k, d, ord)
         ORDER BY ord),
    nt AS (
        INSERT INTO agent_notices (sender_key, ticket_id, event, at, held)
        SELECT s, t, e, a, h
          FROM UNNEST(?6::text[], ?7::bigint[], ?8::text[], ?9::bigint[], ?10::bigint[])
               WITH ORDINALITY AS n(s, t, e, a, h, ord)
         ORDER BY ord),
    x AS (
        SELECT * FROM UNNEST(?11::bigint[], ?12::text[], ?13::text[], ?14::text[], ?15::text[],
                             ?16::bytea[], ?17::bigint[], ?18::bigint[], ?19::bigint[],
                             ?20::text[], ?21::bigint[], ?22::text[])
               WITH ORDINALITY AS x(ticket, kind, message_id, recipients, subject, raw, at,
                                    to_agents, history, author, author_id, body, ord)),
    o AS (
        INSERT INTO outbox (ticket_id, kind, message_id, recipients, subject, raw,
                            next_attempt_at, created_at)
        SELECT NULLIF(ticket, 0), kind, message_id, recipients, subject, raw, at, at
          FROM x ORDER BY ord
        RETURNING id, message_id, created_at),
    r AS (
        INSERT INTO outbox_recipients (outbox_id, position, address, rate_key, created_at)
        SELECT o.id, y.position, y.address, y.rate_key, o.created_at
          FROM UNNEST(?23::text[], ?24::bigint[], ?25::text[], ?26::text[])
               AS y(message_id, position, address, rate_key)
          JOIN o ON o.message_id = y.message_id),
    am AS (
        INSERT INTO agent_mail (message_id, ticket_id)
        SELECT message_id, ticket FROM x WHERE to_agents = 1 AND ticket <> 0
        ON CONFLICT DO NOTHING),
    h AS (
        INSERT INTO messages (ticket_id, message_id, direction, kind, author, author_id,
                              internal, subject, body, created_at)
        SELECT ticket, message_id, 'outbound', kind, author, NULLIF(author_id, 0), 0, subject,
               body, at
          FROM x WHERE history = 1 AND ticket <> 0 ORDER BY ord)
    SELECT 1";

impl Deferred {
    pub(crate) fn is_empty(&self) -> bool {
        self.events.ticket.is_empty()
            && self.notices.ticket.is_empty()
            && self.mails.message_id.is_empty()
    }

    pub(crate) fn event(&mut self, ticket: i64, at: i64, actor: &str, kind: &str, detail: &str) {
        let e = &mut self.events;
        e.ticket.push(ticket);
        e.at.push(at);
        e.actor.push(actor.to_string());
        e.kind.push(kind.to_string());
        e.detail.push(detail.to_string());
    }

    pub(crate) fn notice(
        &mut self,
        sender_key: &str,
        ticket: i64,
        event: &str,
        at: i64,
        held: bool,
    ) {
        let n = &mut self.notices;
        n.sender_key.push(sender_key.to_string());
        n.ticket.push(ticket);
        n.event.push(event.to_string());
        n.at.push(at);
        n.held.push(i64::from(held));
    }

    pub(crate) fn mail(&mut self, m: HeldMail<'_>) {
        let q = &mut self.mails;
        q.ticket.push(m.ticket.unwrap_or(0));
        q.kind.push(m.kind.to_string());
        q.message_id.push(m.message_id.to_string());
        q.recipients.push(
            m.recipients
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        q.subject.push(m.subject.to_string());
        q.raw.push(m.raw.to_vec());
        q.at.push(m.at);
        q.to_agents.push(i64::from(m.to_agents));
        q.history.push(i64::from(m.history.is_some()));
        let (author, author_id, body) = m.history.unwrap_or(("", None, ""));
        q.author.push(author.to_string());
        q.author_id.push(author_id.unwrap_or(0));
        q.body.push(body.to_string());
        for (position, (address, rate_key)) in m.recipients.into_iter().enumerate() {
            q.rcpt_of.push(m.message_id.to_string());
            q.rcpt_position
                .push(i64::try_from(position).unwrap_or(i64::MAX));
            q.rcpt_address.push(address);
            q.rcpt_rate_key.push(rate_key);
        }
    }

    /// The statement that writes everything held, with its parameters.
    pub(crate) fn statement(&self) -> (&'static str, Vec<Arg<'_>>) {
        let (e, n, m) = (&self.events, &self.notices, &self.mails);
        let args = vec![
            Arg::Ints(&e.ticket),
            Arg::Ints(&e.at),
            Arg::Texts(&e.actor),
            Arg::Texts(&e.kind),
            Arg::Texts(&e.detail),
            Arg::Texts(&n.sender_key),
            Arg::Ints(&n.ticket),
            Arg::Texts(&n.event),
            Arg::Ints(&n.at),
            Arg::Ints(&n.held),
            Arg::Ints(&m.ticket),
            Arg::Texts(&m.kind),
            Arg::Texts(&m.message_id),
            Arg::Texts(&m.recipients),
            Arg::Texts(&m.subject),
            Arg::Blobs(&m.raw),
            Arg::Ints(&m.at),
            Arg::Ints(&m.to_agents),
            Arg::Ints(&m.history),
            Arg::Texts(&m.author),
            Arg::Ints(&m.author_id),
            Arg::Texts(&m.body),
            Arg::Texts(&m.rcpt_of),
            Arg::Ints(&m.rcpt_position),
            Arg::Texts(&m.rcpt_address),
            Arg::Texts(&m.rcpt_rate_key),
        ];
        (FLUSH, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_rows_become_one_statement_with_one_array_per_column() {
        let mut d = Deferred::default();
        assert!(d.is_empty());
        d.event(7, 100, "system", "created", "");
        d.notice("a@x", 7, "new-ticket", 100, false);
        d.mail(HeldMail {
            ticket: None,
            kind: "ack",
            message_id: "m1@v",
            recipients: vec![("a@x".into(), "a@x".into()), ("b@x".into(), "b@x".into())],
            subject: "s",
            raw: b"raw",
            at: 100,
            to_agents: false,
            history: None,
        });
        assert!(!d.is_empty());
        let (sql, args) = d.statement();
        // Every ?N of the statement has its argument.
        let highest = (1..=40).filter(|i| sql.contains(&format!("?{i}:"))).max();
        assert_eq!(highest, Some(args.len()));
        assert!(
            matches!(args[10], Arg::Ints([0])),
            "a NULL ticket is held as 0"
        );
        assert!(matches!(args[13], Arg::Texts([joined]) if joined == "a@x,b@x"));
        assert!(matches!(args[23], Arg::Ints([0, 1])), "recipient positions");
    }
}
