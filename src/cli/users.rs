//! `supportd users list|add|activate|deactivate`: end users, agents and admins.

use clap::Subcommand;

use supportd::clock::{Clock, SystemClock};
use supportd::config::Config;
use supportd::mail::address::EmailAddress;
use supportd::store::{UserItem, UserUpdate};
use supportd::tickets::Role;

use super::print::{print_list, Cell, ListArgs, Row};
use super::{open_store, Failure, EX_DATAERR};

#[derive(Subcommand)]
pub enum UsersCommand {
    List(ListArgs),
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
        /// A site admin of their organisation: sees every ticket of it on the web (/my).
        #[arg(long)]
        site_admin: bool,
    },
    /// Reactivate a deactivated user.
    Activate {
        email: String,
    },
    /// Deactivate a user: their mail is answered with how to be reactivated, never a ticket.
    Deactivate {
        email: String,
    },
}

pub async fn dispatch(config: &Config, command: &UsersCommand) -> Result<u8, Failure> {
    let store = open_store(config).await?;
    match command {
        UsersCommand::List(args) => print_list(&store.list_users()?, *args)?,
        UsersCommand::Activate { email } | UsersCommand::Deactivate { email } => {
            let addr = user_address(email)?;
            let active = matches!(command, UsersCommand::Activate { .. });
            if !store.set_user_active(&addr.key(), active)? {
                return Err(Failure::new(EX_DATAERR, anyhow::anyhow!("no user {addr}")));
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
            site_admin,
        } => {
            let addr = user_address(email)?;
            if Role::parse(role).is_none() {
                return Err(Failure::new(
                    EX_DATAERR,
                    anyhow::anyhow!("role `{role}` must be customer, agent or admin"),
                ));
            }
            store.save_user(
                &UserUpdate {
                    email: &addr.to_string(),
                    email_key: &addr.key(),
                    name,
                    role,
                    org: org.as_deref(),
                    support_user: support_user.then_some(true),
                    site_admin: site_admin.then_some(true),
                },
                SystemClock.now(),
            )?;
            outln!("{addr} is now a {role}");
        }
    }
    Ok(0)
}

fn user_address(email: &str) -> Result<EmailAddress, Failure> {
    EmailAddress::parse(email).ok_or_else(|| {
        Failure::new(
            EX_DATAERR,
            anyhow::anyhow!("`{email}` is not an email address"),
        )
    })
}

impl Row for UserItem {
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::theirs(&self.email).left(35),
            Cell::ours(&self.role).left(8),
            Cell::ours(&self.status).left(8),
            Cell::theirs(&self.org).left(20),
            Cell::ours(match (self.support_user, self.site_admin) {
                (true, true) => "su,sa",
                (true, false) => "su",
                (false, true) => "sa",
                (false, false) => "",
            })
            .left(6),
            Cell::theirs(&self.name),
        ]
    }
}
