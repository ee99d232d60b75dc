//! `supportd incidents list|show` and `supportd sla check`.

use clap::Subcommand;

use supportd::config::Config;
use supportd::display::terminal_line as line;
use supportd::store::IncidentItem;

use super::print::{print_json, print_list, Cell, ListArgs, Row};
use super::{build_pipeline, open_store, provision_agents, Failure};
use supportd::setup::Provision;

#[derive(Subcommand)]
pub enum IncidentsCommand {
    /// Every incident, newest first.
    List(ListArgs),
    /// One incident with its linked tickets.
    Show {
        number: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum SlaCommand {
    /// Queue the reminders and escalations that are due now, once (the daemon does this
    /// every `sla.check_seconds`).
    Check,
}

pub async fn dispatch(config: &Config, command: &IncidentsCommand) -> Result<u8, Failure> {
    let store = open_store(config).await?;
    match command {
        IncidentsCommand::List(args) => print_list(&store.list_incidents()?, *args)?,
        IncidentsCommand::Show { number, json } => {
            let Some(d) = store.incident_detail(*number)? else {
                return Err(anyhow::anyhow!("no incident #{number}").into());
            };
            if *json {
                print_json(&d)?;
            } else {
                outln!("Incident #{} [{}] {}", d.number, d.status, line(&d.title));
                outln!("Opened:    {}", d.opened_at);
                if let Some(at) = &d.resolved_at {
                    outln!("Resolved:  {at} by {}", line(&d.resolved_by));
                    outln!("Text:      {}", line(&d.resolution));
                }
                for t in &d.tickets {
                    outln!(
                        "  #{:<6} {:<8} U{} {:<30} {}",
                        t.number,
                        t.status,
                        t.urgency,
                        line(&t.requester.email),
                        line(&t.subject)
                    );
                }
            }
        }
    }
    Ok(0)
}

pub async fn sla(config: Config, command: &SlaCommand) -> Result<u8, Failure> {
    match command {
        SlaCommand::Check => {
            let pipeline = build_pipeline(config)?;
            let store = open_store(&pipeline.config).await?;
            provision_agents(&pipeline, &store, Provision::IfChanged)?;
            let n = pipeline
                .send_sla_alerts(&store)
                .map_err(|e| Failure::new(super::EX_TEMPFAIL, e.into()))?;
            outln!("{n} SLA mails queued");
            store.close().await;
        }
    }
    Ok(0)
}

impl Row for IncidentItem {
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::ours(format!("#{}", self.number)).left(6),
            Cell::ours(&self.status).left(9),
            Cell::ours(format!("{} tickets", self.tickets)).left(11),
            Cell::ours(&self.opened_at).left(26),
            Cell::theirs(&self.title),
        ]
    }
}
