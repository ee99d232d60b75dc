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
//! - [`config`]: TOML → validated [`config::Config`], every problem reported at once.
//! - [`mail`]: raw bytes → [`mail::parse::InboundMail`]; loops/bounces/bulk; quote
//!   stripping; outbound composition. Pure.
//! - [`triage`]: rules from `config/triage.toml` → category and urgency. Pure.
//! - [`tickets`]: the domain — access keys, tags, SLA, and [`tickets::decide`], the threading
//!   decision for one message; [`tickets::ack`] renders acknowledgements. Pure.
//! - [`templates`]: the mail templates (minijinja), built in and overridable.
//! - [`pipeline`]: the one orchestrator, one transaction per inbound message.
//! - [`store`]: sqlx over SQLite or PostgreSQL behind one interface; migrations only add.
//! - [`clock`]: time and randomness, fixed in tests.

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod mail;
pub mod pipeline;
pub mod store;
pub mod templates;
pub mod tickets;
pub mod triage;
