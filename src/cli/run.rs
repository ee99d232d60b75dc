//! `supportd run`: the daemon (see `supportd::daemon`), started from the loaded config.

use supportd::config::Config;
use supportd::setup::Provision;

use super::{build_pipeline, open_store, provision_agents, Failure, EX_SOFTWARE};

pub async fn run(config: Config) -> Result<u8, Failure> {
    let pipeline = build_pipeline(config.clone())?;
    let store = open_store(&pipeline.config).await?;
    provision_agents(&pipeline, &store, Provision::Always)?;
    supportd::setup::reindex_kb_logged(&pipeline.config, &store, pipeline.clock.now())?;
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
    .map_err(|e| Failure::new(EX_SOFTWARE, e.into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_not_logged() {
        assert_eq!(
            redact("postgres://app:s3cr:et@db.example:5432/support"),
            "postgres://app:***@db.example:5432/support"
        );
        assert_eq!(
            redact("postgres://app@db.example/support"),
            "postgres://app@db.example/support"
        );
        assert_eq!(redact("sqlite://supportd.db"), "sqlite://supportd.db");
    }
}
