//! `supportd outbox list|show|retry`: the outbound mail queue.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;

use supportd::clock::{Clock, SystemClock};
use supportd::config::Config;
use supportd::store::OutboxItem;

use super::print::{print_list, Cell, ListArgs, Row};
use super::{open_store, Failure};

#[derive(Subcommand)]
pub enum OutboxCommand {
    List(ListArgs),
    /// Print the exact RFC 5322 bytes that are (or were) sent.
    Show {
        id: i64,
        #[arg(long)]
        raw: bool,
    },
    /// Put a failed row back in the queue (after fixing its cause).
    Retry {
        id: i64,
    },
}

pub async fn dispatch(config: &Config, command: &OutboxCommand) -> Result<u8, Failure> {
    let store = open_store(config).await?;
    match command {
        OutboxCommand::List(args) => print_list(&store.list_outbox()?, *args)?,
        OutboxCommand::Retry { id } => {
            if !store.outbox_requeue(*id, SystemClock.now())? {
                return Err(
                    anyhow::anyhow!("outbox mail {id} is not failed (or does not exist)").into(),
                );
            }
            outln!("outbox mail {id} queued again");
        }
        OutboxCommand::Show { id, raw: _ } => {
            let Some(bytes) = store.outbox_raw(*id)? else {
                return Err(anyhow::anyhow!("no outbox mail {id}").into());
            };
            std::io::stdout()
                .write_all(&bytes)
                .context("cannot write to stdout")?;
        }
    }
    Ok(0)
}

impl Row for OutboxItem {
    fn cells(&self) -> Vec<Cell> {
        let ticket = self.ticket.map(|n| n.to_string()).unwrap_or_default();
        vec![
            Cell::ours(self.id).left(5),
            Cell::ours(&self.status).left(7),
            Cell::ours(&self.kind).left(6),
            Cell::ours(format!("#{ticket}")).left(7),
            Cell::theirs(&self.to).left(30),
            Cell::theirs(&self.subject),
            Cell::theirs(&self.last_error),
        ]
    }
}
