//! # supportd
//!
//! A support-mailbox daemon: customers email support, supportd turns each message into a
//! ticket or a reply on one, triages it, acknowledges it, and relays agents' answers.
//!
//! # Architecture
//!
//! A pure core inside a thin I/O shell; data flows one way:
//! poller/CLI → [`pipeline`] → [`store`] → outbox → SMTP.
//!
//! - [`config`]: TOML → validated [`config::Config`], values read straight into domain types
//!   (addresses, roles, intake, URL, TLS mode), every problem reported at once through
//!   [`toml_check`] (``file:line: key `a.b[0].c`: message``).
//! - [`mail`]: raw bytes → [`mail::parse::InboundMail`]; loops/bounces/bulk; quote
//!   stripping; outbound composition. Pure.
//! - [`triage`]: rules from `config/triage.toml` → category and urgency. Pure.
//! - [`tickets`]: the domain — access keys, tags, SLA, and [`tickets::decide`], the threading
//!   decision for one message (threading, agent replies, intake policy); [`tickets::ack`],
//!   [`tickets::notify`] and [`tickets::replies`] render mails; [`tickets::commands`] parses
//!   agents' `#commands`; [`tickets::auth`] checks Authentication-Results. Pure.
//! - [`kb`]: the Help Center — `kb/*.md` articles (TOML front matter, Markdown), the
//!   suggestions a new ticket's acknowledgement lists, `#kb` drafts with people removed. Pure
//!   but for reading the directory; the FTS5 index lives in the [`store`].
//! - [`templates`]: the mail templates (minijinja), built in and overridable.
//! - [`pipeline`]: the one orchestrator; each inbound message prepared (parsed, triaged) on a
//!   worker thread within a time budget, then all or nothing, a savepoint in its batch's
//!   transaction. Also queues the agents' notification digests (the daemon sweeps them every
//!   minute).
//! - [`store`]: SQLite (rusqlite on the calling thread, sqlx migrations); migrations never drop data.
//! - [`clock`]: time and randomness, fixed in tests.
//! - [`imap`]: one task per mailbox — UID cursor, IDLE, flag/move only after commit; poison
//!   messages isolated by a per-UID attempt count.
//! - [`outbox`]: the SMTP sender task — claim, send, retry with backoff, fail on 5xx.
//! - [`tls`]: trust for IMAP and SMTP: the system store plus `ca_file`; never off.
//! - [`daemon`]: `supportd run` — starts the tasks, signals, systemd notify and watchdog.
//! - [`tasks`]: what the daemon's tasks share — [`tasks::Shared`] state, the watchdog's
//!   [`tasks::Heartbeat`], [`tasks::Backoff`]. Imports go one way: daemon → imap/outbox →
//!   tasks; only the binary imports daemon.
//! - [`setup`]: config → pipeline, once: who we are ([`tickets::desk::Desk`]), the checks
//!   against the rules and templates that `run`, `ingest` and `check-config` share, and the
//!   configured agents written to the users table.
//! - [`web`]: the customer's pages (axum): ticket page by access key, updates from the web
//!   (a message through the pipeline), attachments, sign-in by email and /my, /healthz,
//!   /metrics; served by `run` (`[web] listen`) or alone by `serve`.
//! - [`metrics`]: the process's Prometheus metrics, recorded where things happen.
//! - [`secrets`]: passwords from files/env.
//! - [`display`]: mail-borne text made safe for a terminal (controls, bidi overrides). Pure.
//!
//! The binary (`src/main.rs`) parses arguments, starts tracing, loads the config and hands
//! over to its `cli` module (`src/cli/`): one module per command group (`ingest`, including
//! `--dry-run`; `tickets`, `outbox`, `users`, `quarantine`, `classify`, `check-config`, `run`,
//! `serve`)
//! and one printer (`cli/print.rs`) for every list, text or JSON.

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod daemon;
pub mod display;
pub mod imap;
pub mod kb;
pub mod mail;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod rules_cache;
pub mod secrets;
pub mod setup;
pub mod store;
pub mod tasks;
pub mod templates;
pub mod tickets;
pub mod tls;
pub mod toml_check;
pub mod triage;
pub mod web;
