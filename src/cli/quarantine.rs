//! `supportd quarantine list`: mail that could not be processed, kept verbatim.

use clap::Subcommand;

use supportd::config::Config;
use supportd::store::QuarantineItem;

use super::print::{print_list, Cell, ListArgs, Row};
use super::{open_store, Failure};

#[derive(Subcommand)]
pub enum QuarantineCommand {
    List(ListArgs),
}

pub async fn dispatch(config: &Config, command: &QuarantineCommand) -> Result<u8, Failure> {
    let store = open_store(config).await?;
    match command {
        QuarantineCommand::List(args) => print_list(&store.list_quarantine()?, *args)?,
    }
    Ok(0)
}

impl Row for QuarantineItem {
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::ours(self.id).left(5),
            Cell::ours(&self.received_at),
            Cell::ours(self.size).right(9),
            Cell::ours("bytes").left(6),
            Cell::theirs(&self.source).left(10),
            Cell::theirs(&self.reason),
        ]
    }
}
