//! The `supportd` command: parse arguments, load configuration, start tracing, dispatch.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use supportd::clock::{Clock, SystemClock};
use supportd::config::{Config, ConfigError};
use supportd::display::{json_for_terminal, terminal_line as line, terminal_text};
use supportd::mail::address::EmailAddress;
use supportd::mail::parse::subject_and_body;
use supportd::mail::quote::strip_quotes;
use supportd::pipeline::{Pipeline, Source};
use supportd::setup::Provision;
use supportd::store::{Store, StoreError};
use supportd::tickets::Role;

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
    /// Triage only: category and urgency of each file, no database.
    Classify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
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

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            code: EX_CONFIG,
            error: anyhow::Error::msg(e.to_string()),
        }
    }
}

fn main() -> ExitCode {
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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    // The daemon logs its work; one-shot commands only warnings (stdout carries their output).
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPPORTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A filter of the output layer itself, after the admin's directives: no `SUPPORTD_LOG`
    // (a bare `trace`, a target, a span directive) can turn these events back on.
    let no_secrets = tracing_subscriber::filter::filter_fn(|m| !carries_secrets(m));
    // Colour only on a terminal: the journal and log files get plain text.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer.with_filter(no_secrets)).init(),
        LogFormat::Json => registry.with(layer.json().with_filter(no_secrets)).init(),
    }
}

/// Libraries whose trace-level events print protocol lines verbatim, credentials included:
/// async-imap traces every command it sends (`LOGIN "user" "password"`, the XOAUTH2 token of
/// `AUTHENTICATE`) and every response (whole mails). Their debug level and above stay.
const VERBATIM_PROTOCOL_TARGETS: &[&str] = &["async_imap", "imap_proto"];

fn carries_secrets(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() == tracing::Level::TRACE
        && VERBATIM_PROTOCOL_TARGETS.iter().any(|t| {
            meta.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
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
    supportd::setup::build_pipeline(config).map_err(setup_failure)
}

fn setup_failure(e: supportd::setup::SetupError) -> Failure {
    match e {
        supportd::setup::SetupError::Store(e) => e.into(),
        e => Failure {
            code: EX_CONFIG,
            error: e.into(),
        },
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

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    outln!("{}", json_for_terminal(&text));
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::CheckConfig => check_config(&cli),
        Command::Classify { files } => classify(&cli, files),
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
                                line(&t.category),
                                t.urgency,
                                line(&t.requester.email),
                                line(&t.subject)
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
                        // Everything but numbers and our own timestamps and keys can come
                        // from mail: escaped, so it cannot drive the terminal.
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
                                line(&o.to),
                                line(&o.subject),
                                line(&o.last_error)
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
                        line(&q.source),
                        line(&q.reason)
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
                                line(&u.email),
                                u.role,
                                u.status,
                                line(&u.org),
                                if u.support_user { "su" } else { "" },
                                line(&u.name)
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
    provision_agents(&pipeline, &store, Provision::Always)?;
    tracing::info!(
        database = %redact(&config.database.url),
        mailboxes = config.mailbox.len(),
        "supportd starting"
    );
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let reload_store = store.clone();
    supportd::daemon::run(pipeline, store, move || {
        supportd::setup::reload(config.clone(), &reload_store)
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

/// Every check `run` makes at start-up, without a database or a mail server.
fn check_config(cli: &Cli) -> Result<u8, Failure> {
    let config = load_config(cli)?;
    let pipeline = build_pipeline(config)?;
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

#[derive(serde::Serialize)]
struct ClassifyLine<'a> {
    file: String,
    category: &'a str,
    urgency: u8,
    reasons: &'a [String],
}

fn classify(cli: &Cli, files: &[PathBuf]) -> Result<u8, Failure> {
    let config = load_config(cli)?;
    let rules = supportd::setup::load_rules(&config).map_err(|e| Failure {
        code: EX_CONFIG,
        error: e.into(),
    })?;
    let mut code = 0;
    for file in files {
        let raw = match std::fs::read(file) {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("supportd: cannot read {}: {e}", file.display());
                code = EX_DATAERR;
                continue;
            }
        };
        let (subject, body) = subject_and_body(&raw);
        let c = rules.classify(&subject, &strip_quotes(&body));
        let line = ClassifyLine {
            file: file.display().to_string(),
            category: &c.category,
            urgency: c.urgency,
            reasons: &c.reasons,
        };
        outln!(
            "{}",
            serde_json::to_string(&line).context("cannot encode JSON")?
        );
    }
    Ok(code)
}

async fn ingest(cli: &Cli, files: &[PathBuf]) -> Result<u8, Failure> {
    let config = load_config(cli)?;
    let pipeline = build_pipeline(config)?;
    let store = open_store(&pipeline.config).await?;
    provision_agents(&pipeline, &store, Provision::IfChanged)?;
    let stdin_only = files.is_empty() || files.iter().all(|f| f.as_os_str() == "-");
    let inputs: Vec<PathBuf> = if stdin_only {
        vec![PathBuf::from("-")]
    } else {
        files.to_vec()
    };
    let mut code = 0;
    let max_bytes = pipeline.config.limits.max_message_bytes;
    // Up to this many messages share one transaction (each is still all or nothing).
    const CHUNK: usize = 100;
    for chunk in inputs.chunks(CHUNK) {
        // (raw, name, why only its header is kept) per readable input, in input order.
        let mut read: Vec<(Vec<u8>, String, Option<String>)> = Vec::with_capacity(chunk.len());
        for file in chunk {
            if file.as_os_str() == "-" {
                match read_stdin(std::io::stdin().lock(), max_bytes) {
                    Ok(Stdin::Whole(raw)) => read.push((raw, "stdin".to_string(), None)),
                    Ok(Stdin::Oversized { header, size }) => {
                        let over = pipeline.too_large(size).unwrap_or_default();
                        let reason = format!(
                            "{over}; only its header was kept (standard input is read up to \
                             limits.max_message_bytes + {STDIN_MARGIN} bytes)"
                        );
                        read.push((header, "stdin".to_string(), Some(reason)));
                    }
                    Err(e) => {
                        eprintln!("supportd: cannot read standard input: {e}");
                        code = EX_DATAERR;
                    }
                }
            } else {
                match std::fs::read(file) {
                    Ok(raw) => read.push((raw, file.display().to_string(), None)),
                    Err(e) => {
                        eprintln!("supportd: cannot read {}: {e}", file.display());
                        code = EX_DATAERR;
                    }
                }
            }
        }
        let source = |name| Source {
            name,
            uid: None,
            received_at: None,
        };
        let whole: Vec<(&[u8], Source<'_>)> = read
            .iter()
            .filter(|(_, _, cut)| cut.is_none())
            .map(|(raw, name, _)| (raw.as_slice(), source(name)))
            .collect();
        let retry_later = |e: &dyn std::fmt::Display| {
            // Only the database failing ends a batch early (a message that fails otherwise
            // is quarantined): the MTA should try again later.
            let names: Vec<&str> = read.iter().map(|(_, n, _)| n.as_str()).collect();
            eprintln!("supportd: {}: {e}", names.join(", "));
            Failure {
                code: EX_TEMPFAIL,
                error: anyhow::Error::msg(format!(
                    "{} was not processed; retry later",
                    names.join(", ")
                )),
            }
        };
        let mut outcomes = match pipeline.ingest_batch(&store, &whole) {
            Ok(outcomes) => outcomes.into_iter(),
            Err(e) => return Err(retry_later(&e)),
        };
        for (header, name, cut) in &read {
            let outcome = match cut {
                None => outcomes.next(),
                Some(reason) => match pipeline.set_aside(&store, header, reason, source(name)) {
                    Ok(outcome) => Some(outcome),
                    Err(e) => return Err(retry_later(&e)),
                },
            };
            if let Some(outcome) = outcome {
                let json = serde_json::to_string(&outcome).context("cannot encode JSON")?;
                // The Message-ID is the sender's text.
                outln!("{}", json_for_terminal(&json));
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
    store.close().await;
    Ok(code)
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
