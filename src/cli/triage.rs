//! The triage commands of `supportd` (issue 12): `classify [--explain] [--weights FILE]` and
//! `triage report|tune`, from the agents' corrections in the database or from labelled
//! folders of mail (`--corpus DIR`: `labels.tsv` with `file category urgency` columns).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use supportd::config::Config;
use supportd::mail::parse::subject_and_body;
use supportd::mail::quote::{strip_quotes, strip_quotes_of, triage_text};
use supportd::store::Store;
use supportd::triage::tune::{self, Sample, TuneError, TuneOptions};
use supportd::triage::{Classification, Evidence, Rules, Signals, TriageInput};

use super::{read_input, Failure, EX_CONFIG, EX_DATAERR};

#[derive(Args)]
pub struct ClassifyArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Show each feature's contribution to each decision (readable text, not JSON).
    #[arg(long)]
    pub explain: bool,
    /// Score with these learned weights instead of the installed ones (to try a tune).
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TriageCommand {
    /// The rules against the agents' final labels: confusion matrices, level 1-2 recall
    /// and false alarms.
    Report {
        /// Labelled folders of mail instead of the database's corrections.
        #[arg(long)]
        corpus: Vec<PathBuf>,
    },
    /// Fit the rule weights on the agents' corrections and write a weights file beside the
    /// rules; nothing is applied until an admin installs it.
    Tune {
        /// Labelled folders of mail instead of the database's corrections.
        #[arg(long)]
        corpus: Vec<PathBuf>,
        /// Where to write the weights (default: triage-weights.toml beside the rules file).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The share of the newest corrections held back to measure the result (0 to 0.9;
        /// 0 learns from all of them and measures nothing).
        #[arg(long, default_value_t = tune::HELD_BACK, value_parser = held_back_share)]
        hold_back: f64,
    },
}

impl TriageCommand {
    /// Whether the command reads the database.
    pub fn needs_store(&self) -> bool {
        match self {
            TriageCommand::Report { corpus } | TriageCommand::Tune { corpus, .. } => {
                corpus.is_empty()
            }
        }
    }
}

fn rules(config: &Config, weights: Option<&Path>) -> Result<Rules, Failure> {
    let config_error = |e: supportd::setup::SetupError| Failure {
        code: EX_CONFIG,
        error: e.into(),
    };
    let rules = supportd::setup::load_rules(config).map_err(config_error)?;
    match weights {
        Some(path) => supportd::setup::install_weights(rules, path).map_err(config_error),
        None => Ok(rules),
    }
}

/// Triage of one raw message, as the pipeline does it: quotes stripped, header signals read.
fn classify_raw(rules: &Rules, raw: &[u8]) -> Classification {
    with_input(raw, |input| rules.classify_mail(input))
}

fn with_input<T>(raw: &[u8], f: impl FnOnce(&TriageInput<'_>) -> T) -> T {
    let (subject, body) = subject_and_body(raw);
    let stripped = strip_quotes_of(&subject, &body);
    let body = triage_text(&subject, &body, &stripped);
    f(&TriageInput {
        subject: &subject,
        body: &body,
        signals: Signals::from_raw_headers(raw),
    })
}

#[derive(serde::Serialize)]
struct ClassifyLine<'a> {
    file: String,
    category: &'a str,
    urgency: u8,
    language: &'a str,
    reasons: &'a [String],
}

/// `supportd classify`: one JSON line per file (or, with `--explain`, a readable account).
pub fn classify(config: &Config, args: &ClassifyArgs) -> Result<u8, Failure> {
    let rules = rules(config, args.weights.as_deref())?;
    let mut code = 0;
    for file in &args.files {
        let Some(raw) = read_input(file, &mut code) else {
            continue;
        };
        if args.explain {
            let e = with_input(&raw, |input| rules.explain(input));
            outln!("{}:\n{e}", file.display());
            continue;
        }
        let c = classify_raw(&rules, &raw);
        let line = ClassifyLine {
            file: file.display().to_string(),
            category: &c.category,
            urgency: c.urgency,
            language: &c.language,
            reasons: &c.reasons,
        };
        outln!(
            "{}",
            serde_json::to_string(&line).context("cannot encode JSON")?
        );
    }
    Ok(code)
}

/// Samples from labelled folders: each mail classified by the current rules.
fn corpus_samples(rules: &Rules, dirs: &[PathBuf]) -> Result<Vec<Sample>, Failure> {
    let mut out = Vec::new();
    for dir in dirs {
        let labels = dir.join("labels.tsv");
        let text = std::fs::read_to_string(&labels).map_err(|e| Failure {
            code: EX_DATAERR,
            error: anyhow::anyhow!("cannot read {}: {e}", labels.display()),
        })?;
        for (n, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
            if line.trim().is_empty() || (n == 0 && cols.first() == Some(&"file")) {
                continue;
            }
            let bad = |what: &str| Failure {
                code: EX_DATAERR,
                error: anyhow::anyhow!("{}:{}: {what}", labels.display(), n + 1),
            };
            let [file, category, urgency, ..] = cols[..] else {
                return Err(bad("expected file, category, urgency"));
            };
            let urgency: u8 = urgency.parse().map_err(|_| bad("urgency must be 1-4"))?;
            let raw = std::fs::read(dir.join(file)).map_err(|e| bad(&format!("{file}: {e}")))?;
            let (c, evidence) = with_input(&raw, |input| rules.classify_with_evidence(input));
            out.push(Sample {
                evidence,
                rules_category: c.category,
                rules_urgency: c.urgency,
                final_category: category.to_string(),
                final_urgency: urgency,
            });
        }
    }
    Ok(out)
}

/// Samples from the database's corrections, oldest first.
fn stored_samples(store: &Store) -> Result<Vec<Sample>, Failure> {
    let mut out = Vec::new();
    let mut unreadable = 0;
    for c in store.corrections().map_err(|e| Failure {
        code: if e.is_transient() { 75 } else { 70 },
        error: e.into(),
    })? {
        let evidence: Evidence = match serde_json::from_str(&c.features) {
            Ok(e) => e,
            Err(_) => {
                unreadable += 1;
                Evidence::default()
            }
        };
        out.push(Sample {
            evidence,
            rules_category: c.rules_category,
            rules_urgency: c.rules_urgency,
            final_category: c.final_category,
            final_urgency: c.final_urgency,
        });
    }
    if unreadable > 0 {
        eprintln!("supportd: {unreadable} corrections have unreadable features; counted with none");
    }
    Ok(out)
}

/// `--hold-back`: a share from 0 to 0.9.
fn held_back_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=0.9).contains(&x) => Ok(x),
        _ => Err(format!(
            "`{s}` is not a share from 0 to 0.9 (0.2 holds back the newest fifth)"
        )),
    }
}

/// `supportd triage report|tune`.
pub fn triage(
    config: &Config,
    command: &TriageCommand,
    store: Option<&Store>,
) -> Result<u8, Failure> {
    let rules = rules(config, None)?;
    let (corpus, tune_to) = match command {
        TriageCommand::Report { corpus } => (corpus, None),
        TriageCommand::Tune {
            corpus,
            out,
            hold_back,
        } => (corpus, Some((out, *hold_back))),
    };
    let samples = match store {
        Some(store) if corpus.is_empty() => stored_samples(store)?,
        _ => corpus_samples(&rules, corpus)?,
    };
    let Some((out, held_back)) = tune_to else {
        let categories: Vec<String> = rules.categories().iter().map(|c| c.id.clone()).collect();
        if samples.is_empty() {
            outln!("no corrections yet: agents correct tickets with #urgency N and #category ID");
            return Ok(0);
        }
        outln!("{}", tune::report(&samples, &categories));
        return Ok(0);
    };
    let options = TuneOptions {
        held_back,
        ..TuneOptions::default()
    };
    let outcome = match tune::tune(&rules, &samples, options) {
        Ok(o) => o,
        Err(e @ TuneError::TooFew(_)) => {
            outln!("{e}");
            return Ok(0);
        }
    };
    let path = out
        .clone()
        .unwrap_or_else(|| supportd::setup::rules_dir(config).join("triage-weights.toml"));
    let measured = if outcome.held_back == 0 {
        "# (all to learn: none held back, so no figures).\n".to_string()
    } else {
        format!(
            "# ({} to learn, the newest {} held back to measure). On the held-back part:\n\
             #   as triaged: {}\n#   learned:    {}\n",
            outcome.trained, outcome.held_back, outcome.before, outcome.after
        )
    };
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let header = format!(
        "# Learned triage weights, written by `supportd triage tune` from {} corrections\n\
         {measured}\
         # Install: weights_file = \"{name}\" under [scoring] in the rules file, then restart\n\
         # or SIGHUP. Try first: supportd classify --weights {} FILE...\n",
        samples.len(),
        path.display(),
    );
    let text = outcome
        .weights
        .to_toml(&header)
        .map_err(anyhow::Error::msg)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if outcome.held_back == 0 {
        outln!(
            "learned from all {} corrections (none held back: no figures)",
            outcome.trained
        );
    } else {
        outln!(
            "learned from {} corrections; held back the newest {}:",
            outcome.trained,
            outcome.held_back
        );
        outln!("  before (as triaged):  {}", outcome.before);
        outln!("  after (learned):      {}", outcome.after);
    }
    if outcome.unknown_category > 0 {
        outln!(
            "{} of them name a category the rules no longer define: left out of the category's fit",
            outcome.unknown_category
        );
    }
    outln!("wrote {} (not installed)", path.display());
    outln!(
        "to install: add weights_file = \"{name}\" under [scoring] in the rules file, then restart or send SIGHUP"
    );
    Ok(0)
}

/// `SUPPORTD_TIMING=1 supportd ingest -` prints where one process spent its time, on one
/// stderr line (scripts/bench-pipe reads it). Off, it costs one environment lookup.
pub struct Timing;

static TIMING: std::sync::Mutex<Option<TimingState>> = std::sync::Mutex::new(None);

struct TimingState {
    start: std::time::Instant,
    last: std::time::Instant,
    marks: Vec<(&'static str, f64)>,
}

impl Timing {
    pub fn start() {
        if std::env::var_os("SUPPORTD_TIMING").is_some() {
            let now = std::time::Instant::now();
            *TIMING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(TimingState {
                start: now,
                last: now,
                marks: Vec::new(),
            });
        }
    }

    /// Ends the phase `name` (the time since the previous mark).
    pub fn mark(name: &'static str) {
        let mut guard = TIMING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = guard.as_mut() {
            let now = std::time::Instant::now();
            t.marks.push((name, (now - t.last).as_secs_f64() * 1e3));
            t.last = now;
        }
    }

    /// Measures parse + quote stripping + triage of the batch on their own (the pipeline
    /// then does them again, inside its call): the part of "pipeline" they account for.
    pub fn parse_triage(rules: &Rules, items: &[(&[u8], supportd::pipeline::Source<'_>)]) {
        if TIMING.lock().map(|g| g.is_none()).unwrap_or(true) {
            return;
        }
        Timing::mark("read");
        let t = std::time::Instant::now();
        for (raw, _) in items {
            if let Ok(m) = supportd::mail::parse::parse(raw) {
                std::hint::black_box(rules.classify(&m.subject, &strip_quotes(&m.body)));
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let mut guard = TIMING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(state) = guard.as_mut() {
            state.marks.push(("parse_triage", ms));
            state.last = std::time::Instant::now();
        }
    }

    pub fn report() {
        let guard = TIMING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = guard.as_ref() {
            let mut line = String::from("supportd-timing:");
            for (name, ms) in &t.marks {
                line.push_str(&format!(" {name}={ms:.3}"));
            }
            line.push_str(&format!(
                " total={:.3}",
                t.start.elapsed().as_secs_f64() * 1e3
            ));
            eprintln!("{line}");
        }
    }
}
