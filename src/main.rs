//! The `supportd` command: parse arguments, load configuration, start tracing, dispatch.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use supportd::clock::{Clock, SystemClock};
use supportd::config::{Config, ConfigError};
use supportd::mail::address::EmailAddress;
use supportd::pipeline::{Pipeline, Source};
use supportd::store::{Store, StoreError};
use supportd::tickets::Role;

mod triage_cli;

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

/// sysexits(3): what an MTA understands.
const EX_DATAERR: u8 = 65;
const EX_SOFTWARE: u8 = 70;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "supportd",
    version,
    about = "Support-mailbox daemon: email in, tickets out."
)]
struct Cli {
    /// Configuration file (else $SUPPORTD_CONFIG, else built-in defaults).
    #[arg(long, global = true, env = "SUPPORTD_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL, overriding the config (sqlite://PATH or postgres://...).
    #[arg(long, global = true, env = "SUPPORTD_DATABASE_URL")]
    database: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: IMAP pollers and the outbox sender, until SIGTERM.
    Run,
    /// Raw messages through the pipeline (MTA pipe mode); `-` or no FILE reads stdin.
    Ingest { files: Vec<PathBuf> },
    /// Triage only: category, urgency and language of each file, no database.
    Classify(triage_cli::ClassifyArgs),
    /// Triage against the agents' corrections (report), and learning from them (tune).
    Triage {
        #[command(subcommand)]
        command: triage_cli::TriageCommand,
    },
    /// Tickets.
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Outbound mail queue.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Mail that could not be processed.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// End users, agents and admins.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Apply database migrations.
    Migrate,
    /// Validate the configuration, rules and templates; report every problem.
    CheckConfig,
}

#[derive(Subcommand)]
enum TicketsCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        number: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print the exact RFC 5322 bytes that are (or were) sent.
    Show {
        id: i64,
        #[arg(long)]
        raw: bool,
    },
    /// Put a failed row back in the queue (after fixing its cause).
    Retry { id: i64 },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a user or update their role (and name, organisation, support-user flag).
    Add {
        email: String,
        /// customer | agent | admin
        #[arg(long, default_value = "customer")]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Organisation (default: the email domain).
        #[arg(long)]
        org: Option<String>,
        /// A support user of their organisation: may open tickets under `intake = "support-users"`.
        #[arg(long)]
        support_user: bool,
    },
    /// Reactivate a deactivated user.
    Activate { email: String },
    /// Deactivate a user: their mail is answered with how to be reactivated, never a ticket.
    Deactivate { email: String },
}

fn user_address(email: &str) -> Result<EmailAddress, Failure> {
    EmailAddress::parse(email).ok_or_else(|| Failure {
        code: EX_DATAERR,
        error: anyhow::anyhow!("`{email}` is not an email address"),
    })
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            code: EX_SOFTWARE,
            error,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = if e.is_transient() {
            EX_TEMPFAIL
        } else if matches!(e, StoreError::BadUrl(..)) {
            EX_CONFIG
        } else {
            EX_SOFTWARE
        };
        Failure {
            code,
            error: e.into(),
        }
    }
}

impl From<triage_cli::CliError> for Failure {
    fn from(e: triage_cli::CliError) -> Self {
        Failure {
            code: e.code,
            error: e.error,
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            code: EX_CONFIG,
            error: anyhow::Error::msg(e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    triage_cli::Timing::start();
    let cli = Cli::parse();
    init_tracing(cli.log_format, matches!(cli.command, Command::Run));
    // One process-wide crypto provider (lettre and IMAP use rustls with ring); an
    // error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One-shot commands do one thing at a time on one thread (their database work runs
    // inline); the daemon runs its mailboxes and the outbox sender in parallel.
    let mut builder = if matches!(cli.command, Command::Run) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("supportd: cannot start the async runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("supportd: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn init_tracing(format: LogFormat, daemon: bool) {
    // The daemon logs its work; one-shot commands only warnings (stdout carries their output).
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPPORTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: the journal and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(cli: &Cli) -> Result<Config, Failure> {
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
    supportd::setup::build_pipeline(config).map_err(|e| Failure {
        code: EX_CONFIG,
        error: e.into(),
    })
}

/// Connects, migrates, and provisions the agents named in the config.
async fn open_store(config: &Config) -> Result<Store, Failure> {
    let store = Store::connect(&config.database.url).await?;
    store.migrate().await?;
    let now = SystemClock.now();
    for a in &config.agent {
        if let Some(email) = EmailAddress::parse(&a.email) {
            store.upsert_user(&email.to_string(), &email.key(), &a.name, &a.role, now)?;
        }
    }
    Ok(store)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    outln!("{text}");
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::CheckConfig => check_config(&cli),
        Command::Classify(args) => Ok(triage_cli::classify(&load_config(&cli)?, args)?),
        Command::Triage { command } => {
            let config = load_config(&cli)?;
            let store = match command.needs_store() {
                true => Some(open_store(&config).await?),
                false => None,
            };
            Ok(triage_cli::triage(&config, command, store.as_ref())?)
        }
        Command::Ingest { files } => ingest(&cli, files).await,
        Command::Run => run(&cli).await,
        Command::Migrate => {
            let config = load_config(&cli)?;
            open_store(&config).await?;
            outln!("migrations applied to {}", config.database.url);
            Ok(0)
        }
        Command::Tickets { command } => {
            let store = open_store(&load_config(&cli)?).await?;
            match command {
                TicketsCommand::List { json } => {
                    let list = store.list_tickets()?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        for t in list {
                            outln!(
                                "#{:<6} {:<8} {:<18} U{} {:<30} {}",
                                t.number,
                                t.status,
                                t.category,
                                t.urgency,
                                t.requester.email,
                                t.subject
                            );
                        }
                    }
                }
                TicketsCommand::Show { number, json } => {
                    let Some(t) = store.ticket_detail(*number)? else {
                        return Err(anyhow::anyhow!("no ticket #{number}").into());
                    };
                    if *json {
                        print_json(&t)?;
                    } else {
                        outln!("Ticket #{} [{}] {}", t.number, t.status, t.subject);
                        outln!("Requester: {} <{}>", t.requester.name, t.requester.email);
                        outln!("Category:  {}   Urgency: {}", t.category, t.urgency);
                        outln!(
                            "Due:       first response {}, resolution {}",
                            t.first_response_due,
                            t.resolution_due
                        );
                        outln!("Link key:  {}", t.access_key);
                        if let Some(a) = &t.assignee {
                            outln!("Assignee:  {} <{}>", a.name, a.email);
                        }
                        if let Some(at) = &t.first_response_at {
                            outln!("Answered:  {at}");
                        }
                        if let Some(at) = &t.closed_at {
                            outln!("Closed:    {at}");
                        }
                        for e in &t.events {
                            outln!("[event] {} {} {} {}", e.at, e.actor, e.kind, e.detail);
                        }
                        for m in &t.messages {
                            outln!(
                                "\n--- {} {} {}{} ---\n{}",
                                m.created_at,
                                m.direction,
                                m.author,
                                if m.internal { " (internal)" } else { "" },
                                m.body
                            );
                            for a in &m.attachments {
                                outln!(
                                    "[attachment] {} ({}, {} bytes)",
                                    a.filename,
                                    a.content_type,
                                    a.size
                                );
                            }
                        }
                    }
                }
            }
            Ok(0)
        }
        Command::Outbox { command } => {
            let store = open_store(&load_config(&cli)?).await?;
            match command {
                OutboxCommand::List { json } => {
                    let list = store.list_outbox()?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        for o in list {
                            outln!(
                                "{:<5} {:<7} {:<6} #{:<6} {:<30} {} {}",
                                o.id,
                                o.status,
                                o.kind,
                                o.ticket.map(|n| n.to_string()).unwrap_or_default(),
                                o.to,
                                o.subject,
                                o.last_error
                            );
                        }
                    }
                }
                OutboxCommand::Retry { id } => {
                    if !store.outbox_requeue(*id, SystemClock.now())? {
                        return Err(anyhow::anyhow!(
                            "outbox mail {id} is not failed (or does not exist)"
                        )
                        .into());
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
        Command::Quarantine {
            command: QuarantineCommand::List { json },
        } => {
            let store = open_store(&load_config(&cli)?).await?;
            let list = store.list_quarantine()?;
            if *json {
                print_json(&list)?;
            } else {
                for q in list {
                    outln!(
                        "{:<5} {} {:>9} bytes  {:<10} {}",
                        q.id,
                        q.received_at,
                        q.size,
                        q.source,
                        q.reason
                    );
                }
            }
            Ok(0)
        }
        Command::Users { command } => {
            let store = open_store(&load_config(&cli)?).await?;
            match command {
                UsersCommand::List { json } => {
                    let list = store.list_users()?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        for u in list {
                            outln!(
                                "{:<35} {:<8} {:<8} {:<20} {:<3} {}",
                                u.email,
                                u.role,
                                u.status,
                                u.org,
                                if u.support_user { "su" } else { "" },
                                u.name
                            );
                        }
                    }
                }
                UsersCommand::Activate { email } | UsersCommand::Deactivate { email } => {
                    let addr = user_address(email)?;
                    let active = matches!(command, UsersCommand::Activate { .. });
                    if !store.set_user_active(&addr.key(), active)? {
                        return Err(Failure {
                            code: EX_DATAERR,
                            error: anyhow::anyhow!("no user {addr}"),
                        });
                    }
                    let state = if active { "active" } else { "inactive" };
                    outln!("{addr} is now {state}");
                }
                UsersCommand::Add {
                    email,
                    role,
                    name,
                    org,
                    support_user,
                } => {
                    let addr = user_address(email)?;
                    if Role::parse(role).is_none() {
                        return Err(Failure {
                            code: EX_DATAERR,
                            error: anyhow::anyhow!(
                                "role `{role}` must be customer, agent or admin"
                            ),
                        });
                    }
                    store.save_user(
                        &supportd::store::UserUpdate {
                            email: &addr.to_string(),
                            email_key: &addr.key(),
                            name,
                            role,
                            org: org.as_deref(),
                            support_user: support_user.then_some(true),
                        },
                        SystemClock.now(),
                    )?;
                    outln!("{addr} is now a {role}");
                }
            }
            Ok(0)
        }
    }
}

async fn run(cli: &Cli) -> Result<u8, Failure> {
    let config = load_config(cli)?;
    let pipeline = build_pipeline(config.clone())?;
    let store = open_store(&pipeline.config).await?;
    tracing::info!(
        database = %redact(&config.database.url),
        mailboxes = config.mailbox.len(),
        "supportd starting"
    );
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    supportd::daemon::run(pipeline, store, move || {
        supportd::setup::build_pipeline(config.clone())
    })
    .await
    .map_err(|e| Failure {
        code: EX_SOFTWARE,
        error: e.into(),
    })?;
    Ok(0)
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn check_config(cli: &Cli) -> Result<u8, Failure> {
    let config = load_config(cli)?;
    let pipeline = build_pipeline(config)?;
    // Render a sample acknowledgement so a broken template fails here, not on a customer.
    let sample = b"From: Test <test@clinic.example>\r\nSubject: check-config\r\nMessage-ID: <check@clinic.example>\r\n\r\nsample\r\n";
    let mail = supportd::mail::parse::parse(sample).map_err(|e| anyhow::anyhow!("{e}"))?;
    let class = pipeline.rules.classify(&mail.subject, &mail.body);
    let level = pipeline
        .rules
        .level(class.urgency)
        .ok_or_else(|| anyhow::anyhow!("triage rules define no level {}", class.urgency))?;
    let category = pipeline
        .rules
        .category(&class.category)
        .ok_or_else(|| anyhow::anyhow!("triage rules define no category {}", class.category))?;
    let support = pipeline.config.support_address();
    let key = supportd::tickets::AccessKey::from_random([0; supportd::tickets::ACCESS_KEY_LEN]);
    let now = SystemClock.now();
    let facts = supportd::tickets::ack::AckFacts {
        support_name: &pipeline.config.support.name,
        support_address: &support,
        public_url: &pipeline.config.support.public_url,
        phone: &pipeline.config.support.phone,
        tag: &pipeline.tag,
        number: 1,
        access_key: &key,
        subject: &mail.subject,
        requester: supportd::mail::compose::Party {
            name: mail.sender.name.clone(),
            email: mail.sender.email.clone(),
        },
        category,
        level,
        sla: supportd::tickets::Sla::starting(
            now,
            level.first_response_hours,
            level.resolution_hours,
        ),
        inbound_message_id: &mail.message_id,
        inbound_references: &[],
        message_id: "check@localhost".into(),
        now,
    };
    for (i, a) in pipeline.config.agent.iter().enumerate() {
        for c in &a.categories {
            if pipeline.rules.category(c).is_none() {
                return Err(Failure {
                    code: EX_CONFIG,
                    error: anyhow::anyhow!(
                        "agent[{i}].categories: `{c}` is no category of the triage rules"
                    ),
                });
            }
        }
    }
    supportd::tickets::ack::acknowledgement(&facts, &pipeline.templates).map_err(|e| Failure {
        code: EX_CONFIG,
        error: e.into(),
    })?;
    let origin = cli
        .config
        .as_deref()
        .map(Path::display)
        .map(|d| d.to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    for w in pipeline.config.warnings() {
        outln!("warning: {w}");
    }
    outln!("configuration OK: {origin}");
    Ok(0)
}

async fn ingest(cli: &Cli, files: &[PathBuf]) -> Result<u8, Failure> {
    let config = load_config(cli)?;
    let pipeline = build_pipeline(config)?;
    triage_cli::Timing::mark("setup");
    let store = open_store(&pipeline.config).await?;
    triage_cli::Timing::mark("open");
    let stdin_only = files.is_empty() || files.iter().all(|f| f.as_os_str() == "-");
    let inputs: Vec<PathBuf> = if stdin_only {
        vec![PathBuf::from("-")]
    } else {
        files.to_vec()
    };
    let mut code = 0;
    // Up to this many messages share one transaction (each is still all or nothing).
    const CHUNK: usize = 100;
    for chunk in inputs.chunks(CHUNK) {
        let mut read = Vec::with_capacity(chunk.len());
        for file in chunk {
            if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                match std::io::stdin().read_to_end(&mut buf) {
                    Ok(_) => read.push((buf, "stdin".to_string())),
                    Err(e) => {
                        eprintln!("supportd: cannot read standard input: {e}");
                        code = EX_DATAERR;
                    }
                }
            } else {
                match std::fs::read(file) {
                    Ok(raw) => read.push((raw, file.display().to_string())),
                    Err(e) => {
                        eprintln!("supportd: cannot read {}: {e}", file.display());
                        code = EX_DATAERR;
                    }
                }
            }
        }
        let items: Vec<(&[u8], Source<'_>)> = read
            .iter()
            .map(|(raw, name)| {
                (
                    raw.as_slice(),
                    Source {
                        name,
                        uid: None,
                        received_at: None,
                    },
                )
            })
            .collect();
        triage_cli::Timing::parse_triage(&pipeline.rules, &items);
        let result = pipeline.ingest_batch(&store, &items);
        triage_cli::Timing::mark("pipeline");
        match result {
            Ok(outcomes) => {
                for outcome in outcomes {
                    outln!(
                        "{}",
                        serde_json::to_string(&outcome).context("cannot encode JSON")?
                    );
                }
            }
            // Only the database failing ends a batch early (a message that fails otherwise is
            // quarantined): the MTA should try again later.
            Err(e) => {
                let names: Vec<&str> = read.iter().map(|(_, n)| n.as_str()).collect();
                eprintln!("supportd: {}: {e}", names.join(", "));
                return Err(Failure {
                    code: EX_TEMPFAIL,
                    error: anyhow::Error::msg(format!(
                        "{} was not processed; retry later",
                        names.join(", ")
                    )),
                });
            }
        }
    }
    // Before the exit status tells the MTA it may drop its copy: on disk for good.
    if let Err(e) = store.make_durable(pipeline.clock.now()) {
        eprintln!("supportd: {e}");
        return Err(Failure {
            code: EX_TEMPFAIL,
            error: anyhow::Error::msg("the mail was not made durable; retry later"),
        });
    }
    triage_cli::Timing::mark("durable");
    store.close().await;
    triage_cli::Timing::report();
    Ok(code)
}
