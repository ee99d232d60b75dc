//! The `supportd` command: parse arguments, start tracing, load configuration, dispatch (to
//! [`cli`], one module per command group).

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{Cli, Failure, LogFormat, EX_SOFTWARE};

fn main() -> ExitCode {
    cli::triage::Timing::start();
    let cli = Cli::parse();
    let daemon = cli.command.is_daemon();
    init_tracing(cli.log_format, daemon);
    // One process-wide crypto provider (lettre and IMAP use rustls with ring); an
    // error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One-shot commands do one thing at a time on one thread (their database work runs
    // inline); the daemon runs its mailboxes and the outbox sender in parallel.
    let mut builder = if daemon {
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
    let done = cli::load_config(&cli).map(|config| runtime.block_on(cli::dispatch(&cli, config)));
    match done.and_then(|code| code) {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("supportd: {error:#}");
            ExitCode::from(code)
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
