//! `supportd ingest [--dry-run] [FILE...|-]`: raw messages through the pipeline (MTA pipe
//! mode), one JSON line per message; with `--dry-run`, each message's Plan instead, and
//! nothing written.

use std::io::Read;
use std::path::PathBuf;

use serde::Serialize;

use supportd::config::Config;
use supportd::pipeline::{Pipeline, PipelineError, Source};
use supportd::store::Store;
use supportd::tickets::plan::Plan;

use super::print::print_json_line;
use super::triage::Timing;
use super::{
    build_pipeline_cached, open_store, provision_agents, Failure, EX_DATAERR, EX_TEMPFAIL,
};
use supportd::setup::Provision;

pub async fn ingest(config: Config, files: &[PathBuf], dry_run: bool) -> Result<u8, Failure> {
    let pipeline = build_pipeline_cached(config)?;
    Timing::mark("setup");
    let store = open_store(&pipeline.config).await?;
    Timing::mark("open");
    // An MTA-only deployment gets its agents too; one read unless the list changed.
    provision_agents(&pipeline, &store, Provision::IfChanged)?;
    let stdin_only = files.is_empty() || files.iter().all(|f| f.as_os_str() == "-");
    let inputs: Vec<PathBuf> = if stdin_only {
        vec![PathBuf::from("-")]
    } else {
        files.to_vec()
    };
    if dry_run {
        let code = plan_each(&pipeline, &store, &inputs)?;
        store.close().await;
        return Ok(code);
    }
    let mut code = 0;
    // Up to this many messages share one transaction (each is still all or nothing).
    const CHUNK: usize = 100;
    for chunk in inputs.chunks(CHUNK) {
        let read = read_inputs(&pipeline, chunk, &mut code);
        let source = |name| Source {
            name,
            uid: None,
            received_at: None,
        };
        let whole: Vec<(&[u8], Source<'_>)> = read
            .iter()
            .filter(|input| input.cut.is_none())
            .map(|input| (input.raw.as_slice(), source(&input.name)))
            .collect();
        let retry_later = |e: &dyn std::fmt::Display| {
            // Only the database failing ends a batch early (a message that fails otherwise
            // is quarantined): the MTA should try again later.
            let names: Vec<&str> = read.iter().map(|input| input.name.as_str()).collect();
            eprintln!("supportd: {}: {e}", names.join(", "));
            Failure::new(
                EX_TEMPFAIL,
                anyhow::Error::msg(format!(
                    "{} was not processed; retry later",
                    names.join(", ")
                )),
            )
        };
        Timing::parse_triage(&pipeline.rules, &whole);
        let result = pipeline.ingest_batch(&store, &whole);
        Timing::mark("pipeline");
        let mut outcomes = match result {
            Ok(outcomes) => outcomes.into_iter(),
            Err(e) => return Err(retry_later(&e)),
        };
        for input in &read {
            let outcome = match &input.cut {
                None => outcomes.next(),
                Some(reason) => {
                    match pipeline.set_aside(&store, &input.raw, reason, source(&input.name)) {
                        Ok(outcome) => Some(outcome),
                        Err(e) => return Err(retry_later(&e)),
                    }
                }
            };
            if let Some(outcome) = outcome {
                // The Message-ID is the sender's text: printed terminal-safe.
                print_json_line(&outcome)?;
            }
        }
    }
    // Before the exit status tells the MTA it may drop its copy: on disk for good.
    if let Err(e) = store.make_durable(pipeline.clock.now()) {
        eprintln!("supportd: {e}");
        return Err(Failure::new(
            EX_TEMPFAIL,
            anyhow::Error::msg("the mail was not made durable; retry later"),
        ));
    }
    Timing::mark("durable");
    store.close().await;
    Timing::report();
    // The process ends here: the rules' trie and the templates go with it at once, instead
    // of one free at a time (~1.2 M instructions for each message an MTA pipes in). The
    // pipeline holds memory only, nothing to flush or close.
    std::mem::forget(pipeline);
    Ok(code)
}

/// One line of `ingest --dry-run`: the input and what would happen to it.
#[derive(Serialize)]
struct DryRunLine<'a> {
    file: &'a str,
    /// Everything the message would cause; None when it would be quarantined.
    plan: Option<Plan>,
    /// Why it would be quarantined.
    quarantined: Option<String>,
}

/// `--dry-run`: each input's [`Plan`] from what the store knows now; nothing is written
/// (the store reads in a transaction that is rolled back). Each plan is decided on its own,
/// as if the inputs before it had not been ingested.
fn plan_each(pipeline: &Pipeline, store: &Store, inputs: &[PathBuf]) -> Result<u8, Failure> {
    let mut code = 0;
    // One input in memory at a time.
    let each = inputs.iter().map(std::slice::from_ref);
    for input in each.flat_map(|file| read_inputs(pipeline, file, &mut code)) {
        let answer = match &input.cut {
            Some(reason) => Err(reason.clone()),
            None => match pipeline.dry_run(store, &input.raw) {
                Ok(answer) => answer,
                Err(e) if e.is_transient() => {
                    let code = EX_TEMPFAIL;
                    return Err(Failure::new(code, dry_run_error(&input.name, e)));
                }
                // What `ingest` would quarantine the message for.
                Err(e) => Err(format!("could not be processed: {e}")),
            },
        };
        let (plan, quarantined) = match answer {
            Ok(plan) => (Some(plan), None),
            Err(reason) => (None, Some(reason)),
        };
        print_json_line(&DryRunLine {
            file: &input.name,
            plan,
            quarantined,
        })?;
    }
    Ok(code)
}

fn dry_run_error(name: &str, e: PipelineError) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("{name}: cannot plan it; retry later"))
}

/// One input as read.
struct Input {
    raw: Vec<u8>,
    /// The file name, or `stdin`.
    name: String,
    /// Why only its header was kept (standard input over the size limit): it is quarantined
    /// with this reason.
    cut: Option<String>,
}

/// Reads `files` (`-` = standard input) in order. An unreadable one is reported on stderr
/// and sets `code` to EX_DATAERR; the others are read.
fn read_inputs(pipeline: &Pipeline, files: &[PathBuf], code: &mut u8) -> Vec<Input> {
    let max_bytes = pipeline.config.limits.max_message_bytes;
    let mut read = Vec::with_capacity(files.len());
    for file in files {
        if file.as_os_str() == "-" {
            let name = "stdin".to_string();
            match read_stdin(std::io::stdin().lock(), max_bytes) {
                Ok(Stdin::Whole(raw)) => read.push(Input {
                    raw,
                    name,
                    cut: None,
                }),
                Ok(Stdin::Oversized { header, size }) => {
                    let over = pipeline.too_large(size).unwrap_or_default();
                    let reason = format!(
                        "{over}; only its header was kept (standard input is read up to \
                         limits.max_message_bytes + {STDIN_MARGIN} bytes)"
                    );
                    read.push(Input {
                        raw: header,
                        name,
                        cut: Some(reason),
                    });
                }
                Err(e) => {
                    eprintln!("supportd: cannot read standard input: {e}");
                    *code = EX_DATAERR;
                }
            }
        } else {
            match std::fs::read(file) {
                Ok(raw) => read.push(Input {
                    raw,
                    name: file.display().to_string(),
                    cut: None,
                }),
                Err(e) => {
                    eprintln!("supportd: cannot read {}: {e}", file.display());
                    *code = EX_DATAERR;
                }
            }
        }
    }
    read
}

/// How far past `limits.max_message_bytes` standard input is still read into memory: the
/// trace headers an MTA adds on delivery (Received, Return-Path, Delivered-To) to a mail it
/// accepted at the same size limit. Such a mail is still quarantined whole, by the pipeline's
/// one size rule; only a larger one is cut to its header.
const STDIN_MARGIN: u64 = 64 * 1024;

/// The most of an oversized mail's header section kept (a header section is a few KB).
const HEADER_KEPT: usize = 64 * 1024;

/// What `ingest -` read from standard input.
#[derive(Debug, PartialEq, Eq)]
enum Stdin {
    Whole(Vec<u8>),
    /// Larger than `max_bytes` + [`STDIN_MARGIN`]: its header section (at most
    /// [`HEADER_KEPT`] bytes) and its full size. The rest was read and dropped, so an MTA
    /// writing into the pipe sees its mail taken instead of a broken pipe.
    Oversized {
        header: Vec<u8>,
        size: u64,
    },
}

/// Reads one message, holding at most `max_bytes` + [`STDIN_MARGIN`] bytes in memory.
fn read_stdin(input: impl Read, max_bytes: u64) -> std::io::Result<Stdin> {
    let cap = max_bytes.saturating_add(STDIN_MARGIN);
    let mut input = input;
    let mut raw = Vec::new();
    (&mut input).take(cap).read_to_end(&mut raw)?;
    let held = u64::try_from(raw.len()).unwrap_or(u64::MAX);
    if held < cap {
        return Ok(Stdin::Whole(raw));
    }
    let rest = std::io::copy(&mut input, &mut std::io::sink())?;
    if rest == 0 {
        return Ok(Stdin::Whole(raw));
    }
    let end = header_end(&raw).unwrap_or(raw.len()).min(HEADER_KEPT);
    raw.truncate(end);
    Ok(Stdin::Oversized {
        header: raw,
        size: held.saturating_add(rest),
    })
}

/// Where the header section ends: just after the empty line (CRLF or LF) that closes it.
fn header_end(raw: &[u8]) -> Option<usize> {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn stdin_is_read_up_to_the_limit_plus_the_margin() {
        let mail = b"From: a@b.example\r\nSubject: x\r\n\r\nbody".to_vec();
        assert_eq!(
            read_stdin(&mail[..], 10).unwrap(),
            Stdin::Whole(mail.clone())
        );
        // Exactly the cap is still whole (nothing was left unread).
        let exact = vec![b'x'; 10 + STDIN_MARGIN as usize];
        assert_eq!(read_stdin(&exact[..], 10).unwrap(), Stdin::Whole(exact));
    }

    #[test]
    fn oversized_stdin_keeps_the_header_and_the_size() {
        let mut big = b"From: a@b.example\r\nSubject: big\r\n\r\n".to_vec();
        let header_len = big.len();
        big.extend(std::iter::repeat_n(b'z', 200_000));
        match read_stdin(&big[..], 1000).unwrap() {
            Stdin::Oversized { header, size } => {
                assert_eq!(header, big[..header_len].to_vec());
                assert_eq!(size, big.len() as u64);
            }
            other => panic!("{other:?}"),
        }
        // No header/body separator at all: a bounded prefix.
        let junk = vec![b'q'; 300_000];
        match read_stdin(&junk[..], 1000).unwrap() {
            Stdin::Oversized { header, size } => {
                assert_eq!(header.len(), HEADER_KEPT);
                assert_eq!(size, 300_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_section_end() {
        assert_eq!(header_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_end(b"A: b\r\n\r\nbody\n\n"), Some(8));
        assert_eq!(header_end(b"A: b\r\n"), None);
    }
}
