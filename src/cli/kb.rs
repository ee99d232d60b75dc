//! The Help Center's commands (issue 14): `kb reindex` rebuilds the index from `[kb] dir`,
//! and `suggest FILE...` shows which articles a mail's acknowledgement would list.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use supportd::config::Config;
use supportd::kb::suggest::{mail_terms, select, terms, Tuning};
use supportd::mail::parse::subject_and_body;
use supportd::mail::quote::strip_quotes;
use supportd::triage::{Signals, TriageInput};

use super::{build_pipeline, open_store, read_input, Failure, EX_CONFIG};

#[derive(Subcommand)]
pub enum KbCommand {
    /// Rebuild the Help Center's index from `[kb] dir` (start-up and SIGHUP do it too).
    Reindex,
}

#[derive(Args)]
pub struct SuggestArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also show the candidates below the threshold.
    #[arg(long)]
    pub all: bool,
}

/// Candidates ranked per mail; enough to show what `--all` is about.
const CANDIDATES: u32 = 10;

pub async fn dispatch(config: &Config, command: &KbCommand) -> Result<u8, Failure> {
    match command {
        KbCommand::Reindex => {
            let store = open_store(config).await?;
            let now = chrono::Utc::now();
            let loaded = supportd::setup::reindex_kb(config, &store, now)?;
            outln!(
                "indexed {} article{} from {}",
                loaded.articles.len(),
                if loaded.articles.len() == 1 { "" } else { "s" },
                config.kb.dir.display()
            );
            if loaded.problems.is_empty() {
                return Ok(0);
            }
            eprintln!("{}", loaded.report());
            eprintln!(
                "supportd: {} file{} left out of the Help Center",
                loaded.problems.len(),
                if loaded.problems.len() == 1 { "" } else { "s" }
            );
            Ok(EX_CONFIG)
        }
    }
}

/// `supportd suggest`: for each file, the suggestions that pass the threshold with their
/// scores (the articles the acknowledgement would list), or one `no suggestion` line.
pub async fn suggest(config: Config, args: &SuggestArgs) -> Result<u8, Failure> {
    let pipeline = build_pipeline(config)?;
    let store = open_store(&pipeline.config).await?;
    let kb = &pipeline.config.kb;
    let tuning = Tuning {
        threshold: kb.suggest_threshold,
        min_words: usize::try_from(kb.suggest_min_words).unwrap_or(usize::MAX),
        max: usize::try_from(kb.max_suggestions).unwrap_or(usize::MAX),
    };
    let mut code = 0;
    for file in &args.files {
        let Some(raw) = read_input(file, &mut code) else {
            continue;
        };
        let (subject, body) = subject_and_body(&raw);
        let text = strip_quotes(&body);
        let language = pipeline
            .rules
            .classify_mail(&TriageInput {
                subject: &subject,
                body: &text,
                signals: Signals::default(),
            })
            .language;
        let candidates = store.kb_candidates(&mail_terms(&subject, &text), CANDIDATES)?;
        let (pass, below) = select(candidates, tuning, &language);
        let name = file.display();
        if pass.is_empty() {
            outln!("{name}: no suggestion");
        }
        for c in &pass {
            let link = pipeline.desk.help_link(&c.slug);
            outln!("{name}: {:.2} {} {link} {}", c.score, c.slug, c.title);
        }
        if args.all {
            let words = terms(&subject, &text).join(" ");
            outln!("{name}: words: {words}");
            for c in &below {
                outln!(
                    "{name}: below {:.2} {} {} (words: {})",
                    c.score,
                    c.slug,
                    c.title,
                    c.matched.join(", ")
                );
            }
        }
    }
    Ok(code)
}
