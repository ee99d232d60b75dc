//! The `supportd` command: parse arguments, load configuration, start tracing, dispatch.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use supportd::clock::{Clock, RandomIds, SystemClock};
use supportd::config::{Config, ConfigError};
use supportd::mail::address::EmailAddress;
use supportd::mail::parse::subject_and_body;
use supportd::mail::quote::strip_quotes;
use supportd::pipeline::{Pipeline, PipelineError, Source};
use supportd::store::{Store, StoreError};
use supportd::templates::Templates;
use supportd::tickets::{Role, TicketTag};
use supportd::triage::Rules;

/// sysexits(3): what an MTA understands.
const EX_DATAERR: u8 = 65;
const EX_SOFTWARE: u8 = 70;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

/// The built-in triage rules, used when the config names no rules file.
const DEFAULT_RULES: &str = include_str!("../config/triage.toml");

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
    Add {
        email: String,
        #[arg(long, default_value = "customer")]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
    },
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
        let code = if e.is_transient() || matches!(e, StoreError::Unavailable(_)) {
            EX_TEMPFAIL
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
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPPORTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

fn load_rules(config: &Config) -> Result<Rules, Failure> {
    let result = match &config.triage.rules_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read triage rules {}", path.display()))
                .map_err(|error| Failure {
                    code: EX_CONFIG,
                    error,
                })?;
            Rules::from_toml(&text, &path.display().to_string())
        }
        None => Rules::from_toml(DEFAULT_RULES, "built-in config/triage.toml"),
    };
    result.map_err(|e| Failure {
        code: EX_CONFIG,
        error: anyhow::Error::msg(e.to_string()),
    })
}

fn build_pipeline(config: Config) -> Result<Pipeline, Failure> {
    let rules = load_rules(&config)?;
    let templates = Templates::load(config.templates.dir.as_deref()).map_err(|e| Failure {
        code: EX_CONFIG,
        error: e.into(),
    })?;
    let tag = TicketTag::new(&config.support.ticket_tag).map_err(|e| Failure {
        code: EX_CONFIG,
        error: anyhow::Error::msg(format!("support.ticket_tag: {e}")),
    })?;
    Ok(Pipeline {
        config,
        rules,
        templates,
        tag,
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    })
}

/// Connects, migrates, and provisions the agents named in the config.
async fn open_store(config: &Config) -> Result<Store, Failure> {
    let store = Store::connect(&config.database.url).await?;
    store.migrate().await?;
    let now = SystemClock.now();
    for a in &config.agent {
        if let Some(email) = EmailAddress::parse(&a.email) {
            store
                .upsert_user(&email.to_string(), &email.key(), &a.name, &a.role, now)
                .await?;
        }
    }
    Ok(store)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    println!("{text}");
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::CheckConfig => check_config(&cli),
        Command::Classify { files } => classify(&cli, files),
        Command::Ingest { files } => ingest(&cli, files).await,
        Command::Migrate => {
            let config = load_config(&cli)?;
            open_store(&config).await?;
            println!("migrations applied to {}", config.database.url);
            Ok(0)
        }
        Command::Tickets { command } => {
            let store = open_store(&load_config(&cli)?).await?;
            match command {
                TicketsCommand::List { json } => {
                    let list = store.list_tickets().await?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        for t in list {
                            println!(
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
                    let Some(t) = store.ticket_detail(*number).await? else {
                        return Err(anyhow::anyhow!("no ticket #{number}").into());
                    };
                    if *json {
                        print_json(&t)?;
                    } else {
                        println!("Ticket #{} [{}] {}", t.number, t.status, t.subject);
                        println!("Requester: {} <{}>", t.requester.name, t.requester.email);
                        println!("Category:  {}   Urgency: {}", t.category, t.urgency);
                        println!(
                            "Due:       first response {}, resolution {}",
                            t.first_response_due, t.resolution_due
                        );
                        println!("Link key:  {}", t.access_key);
                        for m in &t.messages {
                            println!(
                                "\n--- {} {} {}{} ---\n{}",
                                m.created_at,
                                m.direction,
                                m.author,
                                if m.internal { " (internal)" } else { "" },
                                m.body
                            );
                            for a in &m.attachments {
                                println!(
                                    "[attachment] {} ({}, {} bytes)",
                                    a.filename, a.content_type, a.size
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
                    let list = store.list_outbox().await?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        for o in list {
                            println!(
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
                OutboxCommand::Show { id, raw: _ } => {
                    let Some(bytes) = store.outbox_raw(*id).await? else {
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
            let list = store.list_quarantine().await?;
            if *json {
                print_json(&list)?;
            } else {
                for q in list {
                    println!(
                        "{:<5} {} {:>9} bytes  {:<10} {}",
                        q.id, q.received_at, q.size, q.source, q.reason
                    );
                }
            }
            Ok(0)
        }
        Command::Users { command } => {
            let store = open_store(&load_config(&cli)?).await?;
            match command {
                UsersCommand::List { json } => {
                    let list = store.list_users().await?;
                    if *json {
                        print_json(&list)?;
                    } else {
                        for u in list {
                            println!("{:<35} {:<8} {:<8} {}", u.email, u.role, u.status, u.name);
                        }
                    }
                }
                UsersCommand::Add { email, role, name } => {
                    let Some(addr) = EmailAddress::parse(email) else {
                        return Err(Failure {
                            code: EX_DATAERR,
                            error: anyhow::anyhow!("`{email}` is not an email address"),
                        });
                    };
                    if Role::parse(role).is_none() {
                        return Err(Failure {
                            code: EX_DATAERR,
                            error: anyhow::anyhow!(
                                "role `{role}` must be customer, agent or admin"
                            ),
                        });
                    }
                    store
                        .upsert_user(
                            &addr.to_string(),
                            &addr.key(),
                            name,
                            role,
                            SystemClock.now(),
                        )
                        .await?;
                    println!("{addr} is now a {role}");
                }
            }
            Ok(0)
        }
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
    println!("configuration OK: {origin}");
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
    let rules = load_rules(&config)?;
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
        println!(
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
    let stdin_only = files.is_empty() || files.iter().all(|f| f.as_os_str() == "-");
    let inputs: Vec<PathBuf> = if stdin_only {
        vec![PathBuf::from("-")]
    } else {
        files.to_vec()
    };
    let mut code = 0;
    for file in &inputs {
        let (raw, name) = if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                eprintln!("supportd: cannot read standard input: {e}");
                code = EX_DATAERR;
                continue;
            }
            (buf, "stdin".to_string())
        } else {
            match std::fs::read(file) {
                Ok(raw) => (raw, file.display().to_string()),
                Err(e) => {
                    eprintln!("supportd: cannot read {}: {e}", file.display());
                    code = EX_DATAERR;
                    continue;
                }
            }
        };
        let source = Source {
            name: &name,
            received_at: None,
        };
        match pipeline.ingest(&store, &raw, source).await {
            Ok(outcome) => println!(
                "{}",
                serde_json::to_string(&outcome).context("cannot encode JSON")?
            ),
            Err(e) => {
                let transient = e.is_transient();
                eprintln!("supportd: {name}: {e}");
                return Err(Failure {
                    code: if transient || matches!(e, PipelineError::Store(_)) {
                        EX_TEMPFAIL
                    } else {
                        EX_SOFTWARE
                    },
                    error: anyhow::Error::msg(format!("{name} was not processed; retry later")),
                });
            }
        }
    }
    store.close().await;
    Ok(code)
}
