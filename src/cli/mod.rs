//! The command line: the clap types, the exit codes, and [`dispatch`] to one module per
//! command group. Each group opens what it needs (config → pipeline → store) and prints
//! through [`print`]: every list through one printer, with mail-borne text escaped.
//!
//! The CLI lives in the binary, not the library: it is the edge where errors become exit
//! codes and text (`anyhow`, clap, stdout), and the library's callers (tests, the daemon, a
//! future web page) need none of it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use supportd::config::{Config, ConfigError};
use supportd::pipeline::Pipeline;
use supportd::setup::Provision;
use supportd::store::{Store, StoreError};

/// Writes a line to stdout; a closed pipe (`supportd tickets list | head`) ends the process
/// quietly instead of panicking like `println!` would.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod check;
mod db;
mod incidents;
mod ingest;
mod kb;
mod outbox;
mod print;
mod quarantine;
mod run;
mod serve;
mod tickets;
pub mod triage;
mod users;

/// sysexits(3): what an MTA understands.
pub const EX_DATAERR: u8 = 65;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "supportd",
    version,
    about = "Support-mailbox daemon: email in, tickets out."
)]
pub struct Cli {
    /// Configuration file (else $SUPPORTD_CONFIG, else built-in defaults).
    #[arg(long, global = true, env = "SUPPORTD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL, overriding the config (sqlite://PATH or postgres://...).
    #[arg(long, global = true, env = "SUPPORTD_DATABASE_URL")]
    pub database: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// The daemon: IMAP pollers and the outbox sender, until SIGTERM.
    Run,
    /// Raw messages through the pipeline (MTA pipe mode); `-` or no FILE reads stdin.
    Ingest {
        files: Vec<PathBuf>,
        /// Print what would happen to each message (its plan, as JSON); write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Triage only: category, urgency and language of each file, no database.
    Classify(triage::ClassifyArgs),
    /// Triage against the agents' corrections (report), and learning from them (tune).
    Triage {
        #[command(subcommand)]
        command: triage::TriageCommand,
    },
    /// Tickets.
    Tickets {
        #[command(subcommand)]
        command: tickets::TicketsCommand,
    },
    /// Outbound mail queue.
    Outbox {
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
    /// Mail that could not be processed.
    Quarantine {
        #[command(subcommand)]
        command: quarantine::QuarantineCommand,
    },
    /// End users, agents and admins.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// The Help Center: `kb reindex` rebuilds its index from `[kb] dir`.
    Kb {
        #[command(subcommand)]
        command: kb::KbCommand,
    },
    /// The Help Center articles a mail's acknowledgement would suggest, with scores.
    Suggest(kb::SuggestArgs),
    /// Incidents: similar urgent tickets linked together.
    Incidents {
        #[command(subcommand)]
        command: incidents::IncidentsCommand,
    },
    /// Service-level clocks.
    Sla {
        #[command(subcommand)]
        command: incidents::SlaCommand,
    },
    /// Apply database migrations.
    Migrate,
    /// Database administration: copy a deployment's data between databases.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Validate the configuration, rules and templates; report every problem.
    CheckConfig,
    /// The web pages alone, against the same database (`run` serves them too when
    /// `[web] listen` is set), until SIGTERM.
    Serve {
        /// IP:PORT to listen on (default: `[web] listen`, else 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
}

impl Command {
    /// The daemon (a multi-threaded runtime, info logs) rather than a one-shot command.
    pub fn is_daemon(&self) -> bool {
        matches!(self, Command::Run | Command::Serve { .. })
    }
}

/// Runs the command `cli` names with the loaded `config`; Ok is the exit code.
pub async fn dispatch(cli: &Cli, config: Config) -> Result<u8, Failure> {
    match &cli.command {
        Command::CheckConfig => check::check_config(cli, config),
        Command::Classify(args) => triage::classify(&config, args),
        Command::Triage { command } => {
            let store = match command.needs_store() {
                true => Some(open_store(&config).await?),
                false => None,
            };
            triage::triage(&config, command, store.as_ref())
        }
        Command::Ingest { files, dry_run } => ingest::ingest(config, files, *dry_run).await,
        Command::Run => run::run(config).await,
        Command::Serve { listen } => serve::serve(config, listen.as_deref()).await,
        Command::Migrate => migrate(&config).await,
        Command::Kb { command } => kb::dispatch(&config, command).await,
        Command::Suggest(args) => kb::suggest(config, args).await,
        Command::Incidents { command } => incidents::dispatch(&config, command).await,
        Command::Sla { command } => incidents::sla(config, command).await,
        Command::Db { command } => db::dispatch(command).await,
        Command::Tickets { command } => tickets::dispatch(&config, command).await,
        Command::Outbox { command } => outbox::dispatch(&config, command).await,
        Command::Quarantine { command } => quarantine::dispatch(&config, command).await,
        Command::Users { command } => users::dispatch(&config, command).await,
    }
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: u8, error: anyhow::Error) -> Failure {
        Failure { code, error }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::new(EX_SOFTWARE, error)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = if e.is_transient() {
            EX_TEMPFAIL
        } else if matches!(e, StoreError::BadUrl(..) | StoreError::Denied(_)) {
            EX_CONFIG
        } else {
            EX_SOFTWARE
        };
        Failure::new(code, e.into())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(EX_CONFIG, anyhow::Error::msg(e.to_string()))
    }
}

/// The config file `cli` names (else built-in defaults), with `--database` applied.
pub fn load_config(cli: &Cli) -> Result<Config, Failure> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(url) = &cli.database {
        config.database.url = url.clone();
    }
    Ok(config)
}

fn build_pipeline(config: Config) -> Result<Pipeline, Failure> {
    supportd::setup::build_pipeline(config).map_err(setup_failure)
}

/// [`build_pipeline`] with the triage rules through their cache (`[triage] cache_dir`):
/// for `ingest`, which an MTA runs once per message.
fn build_pipeline_cached(config: Config) -> Result<Pipeline, Failure> {
    let cache = supportd::setup::rules_cache_dir(&config);
    supportd::setup::build_pipeline_cached(config, cache.as_deref()).map_err(setup_failure)
}

fn setup_failure(e: supportd::setup::SetupError) -> Failure {
    match e {
        supportd::setup::SetupError::Store(e) => e.into(),
        e => Failure::new(EX_CONFIG, e.into()),
    }
}

/// A mail file named on the command line; None (said on stderr, `code` set to
/// [`EX_DATAERR`]) for one that cannot be read, so the others are still handled.
fn read_input(file: &std::path::Path, code: &mut u8) -> Option<Vec<u8>> {
    match std::fs::read(file) {
        Ok(raw) => Some(raw),
        Err(e) => {
            eprintln!("supportd: cannot read {}: {e}", file.display());
            *code = EX_DATAERR;
            None
        }
    }
}

/// Connects and migrates.
async fn open_store(config: &Config) -> Result<Store, Failure> {
    let store = Store::connect(&config.database.url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The config's `[[agent]]` entries into the users table (see `setup::provision_agents`).
fn provision_agents(p: &Pipeline, store: &Store, when: Provision) -> Result<(), Failure> {
    supportd::setup::provision_agents(&p.config, store, p.clock.now(), when)?;
    Ok(())
}

async fn migrate(config: &Config) -> Result<u8, Failure> {
    open_store(config).await?;
    outln!(
        "migrations applied to {}",
        run::redact(&config.database.url)
    );
    Ok(0)
}
