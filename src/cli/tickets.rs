//! `supportd tickets list|show`.

use clap::Subcommand;

use supportd::clock::{Clock, SystemClock};
use supportd::config::Config;
use supportd::display::{terminal_line as line, terminal_text};
use supportd::store::{TicketDetail, TicketListItem};

use super::print::{print_json, print_list, Cell, ListArgs, Row};
use super::{open_store, Failure};

#[derive(Subcommand)]
pub enum TicketsCommand {
    List {
        #[command(flatten)]
        list: ListArgs,
        /// Only tickets past a due time: first response (no agent's public answer yet) or
        /// resolution.
        #[arg(long)]
        overdue: bool,
    },
    Show {
        number: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn dispatch(config: &Config, command: &TicketsCommand) -> Result<u8, Failure> {
    let store = open_store(config).await?;
    match command {
        TicketsCommand::List { list, overdue } => {
            let rows = match overdue {
                true => store.list_overdue(SystemClock.now())?,
                false => store.list_tickets()?,
            };
            print_list(&rows, *list)?
        }
        TicketsCommand::Show { number, json } => {
            let Some(t) = store.ticket_detail(*number)? else {
                return Err(anyhow::anyhow!("no ticket #{number}").into());
            };
            if *json {
                print_json(&t)?;
            } else {
                show(&t);
            }
        }
    }
    Ok(0)
}

impl Row for TicketListItem {
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::ours(format!("#{}", self.number)).left(7),
            Cell::ours(&self.status).left(8),
            Cell::theirs(&self.category).left(18),
            Cell::ours(format!("U{}", self.urgency)),
            Cell::theirs(&self.requester.email).left(30),
            Cell::theirs(&self.subject),
        ]
    }
}

/// One ticket in full, for a person. Everything but numbers and our own timestamps and keys
/// can come from mail: escaped, so it cannot drive the terminal.
fn show(t: &TicketDetail) {
    outln!("Ticket #{} [{}] {}", t.number, t.status, line(&t.subject));
    outln!(
        "Requester: {} <{}>",
        line(&t.requester.name),
        line(&t.requester.email)
    );
    outln!("Category:  {}   Urgency: {}", line(&t.category), t.urgency);
    outln!(
        "Due:       first response {}, resolution {}",
        t.first_response_due,
        t.resolution_due
    );
    outln!("Link key:  {}", t.access_key);
    if let Some(a) = &t.assignee {
        outln!("Assignee:  {} <{}>", line(&a.name), line(&a.email));
    }
    if let Some(n) = t.incident {
        outln!("Incident:  #{n} (supportd incidents show {n})");
    }
    if let Some(at) = &t.first_response_at {
        outln!("Answered:  {at}");
    }
    if let Some(at) = &t.closed_at {
        outln!("Closed:    {at}");
    }
    for e in &t.events {
        outln!(
            "[event] {} {} {} {}",
            e.at,
            line(&e.actor),
            line(&e.kind),
            line(&e.detail)
        );
    }
    for m in &t.messages {
        outln!(
            "\n--- {} {} {}{} ---\n{}",
            m.created_at,
            m.direction,
            line(&m.author),
            if m.internal { " (internal)" } else { "" },
            terminal_text(&m.body)
        );
        for a in &m.attachments {
            outln!(
                "[attachment] {} ({}, {} bytes)",
                line(&a.filename),
                line(&a.content_type),
                a.size
            );
        }
    }
}
