//! The one printer: every list (`tickets list`, `outbox list`, `users list`,
//! `quarantine list`) prints through [`print_list`], as a table of text or as JSON, and every
//! JSON answer through [`print_json`] or [`print_json_line`]. Text from mail or from users
//! (subjects, names, addresses, reasons) only reaches a table as a [`Cell::theirs`], which
//! escapes control and bidi characters; JSON is made terminal-safe the same way.

use std::fmt::Display;

use anyhow::Context as _;
use serde::Serialize;

use supportd::display::{json_for_terminal, terminal_line};

use super::Failure;

/// One row of a list: its JSON form is the row itself (serde, the field names SPEC §2
/// fixes); its text form is [`Row::cells`].
pub trait Row: Serialize {
    /// The row's columns for a text table, in order.
    fn cells(&self) -> Vec<Cell>;
}

/// The options every list command takes.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ListArgs {
    /// A JSON array instead of text (the field names SPEC §2 fixes).
    #[arg(long)]
    pub json: bool,
}

/// A list, as pretty JSON (an array) or one text line per row.
pub fn print_list<R: Row>(rows: &[R], args: ListArgs) -> Result<(), Failure> {
    if args.json {
        return print_json(rows);
    }
    for row in rows {
        outln!("{}", text_line(&row.cells()));
    }
    Ok(())
}

/// A value as pretty-printed JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    outln!("{}", json_for_terminal(&text));
    Ok(())
}

/// A value as JSON on one line (`ingest`, `classify`: one line per message or file).
pub fn print_json_line<T: Serialize + ?Sized>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string(value).context("cannot encode JSON")?;
    outln!("{}", json_for_terminal(&text));
    Ok(())
}

/// One column of a text row: already safe to print, padded to its width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    text: String,
    width: usize,
    right: bool,
}

impl Cell {
    /// A value of ours (a number, a status, a kind, a timestamp we wrote): printed as is.
    pub fn ours(value: impl Display) -> Cell {
        Cell {
            text: value.to_string(),
            width: 0,
            right: false,
        }
    }

    /// Text that can come from mail or from a user: every control and bidi character shown
    /// as an escape, so it can neither drive the terminal nor reorder the line.
    pub fn theirs(text: &str) -> Cell {
        Cell::ours(terminal_line(text))
    }

    /// Padded on the right to at least `width` characters.
    pub fn left(mut self, width: usize) -> Cell {
        self.width = width;
        self
    }

    /// Padded on the left to at least `width` characters (numbers).
    pub fn right(mut self, width: usize) -> Cell {
        self.width = width;
        self.right = true;
        self
    }
}

/// The cells joined by one space, each padded to its width.
fn text_line(cells: &[Cell]) -> String {
    cells
        .iter()
        .map(|c| match c.right {
            true => format!("{:>w$}", c.text, w = c.width),
            false => format!("{:<w$}", c.text, w = c.width),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_padded_and_joined_by_one_space() {
        let line = text_line(&[
            Cell::ours(7).left(5),
            Cell::ours(1234).right(9),
            Cell::ours("bytes").left(6),
            Cell::theirs("last"),
            Cell::theirs(""),
        ]);
        assert_eq!(line, "7          1234 bytes  last ");
    }

    #[test]
    fn their_text_is_escaped_ours_is_not() {
        let hostile = "Re: \u{1b}[2Jpager\u{202e}fdp.exe\r";
        let line = text_line(&[Cell::theirs(hostile).left(40)]);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.starts_with("Re: \\x1b[2Jpager\\u{202e}fdp.exe\\x0d"));
        assert_eq!(line.chars().count(), 40);
    }
}
