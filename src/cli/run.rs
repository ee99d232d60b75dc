//! `supportd run`: the daemon (see `supportd::daemon`), started from the loaded config.

use supportd::config::Config;
use supportd::setup::Provision;

use super::{build_pipeline, provision_agents, Failure, EX_SOFTWARE};

pub async fn run(config: Config) -> Result<u8, Failure> {
    let pipeline = build_pipeline(config.clone())?;
    let Some(store) = open_store_patiently(&pipeline.config).await? else {
        return Ok(0);
    };
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

/// Opens the database, waiting for it while it is unavailable (PostgreSQL not up yet, a
/// network partition at boot): the cause logged once, then retried with backoff from 1 s to
/// a minute, instead of exiting into a restart loop. A configuration error (a bad URL, a
/// missing right) still ends start-up. None: stopped (SIGTERM/SIGINT) while waiting.
async fn open_store_patiently(config: &Config) -> Result<Option<supportd::store::Store>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    let mut delay = std::time::Duration::from_secs(1);
    let mut last = String::new();
    loop {
        let error = match supportd::store::Store::connect(&config.database.url).await {
            Ok(store) => match store.migrate().await {
                Ok(()) => return Ok(Some(store)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if !error.is_transient() {
            return Err(error.into());
        }
        let text = error.to_string();
        if text != last {
            tracing::error!(error = %text, retry_in_seconds = delay.as_secs(),
                "the database is unavailable; retrying with backoff");
            last = text;
        } else {
            tracing::debug!(error = %text, "the database is still unavailable");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = term.recv() => return Ok(None),
            _ = int.recv() => return Ok(None),
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(60));
    }
}

/// A database URL without its password, for logs.
pub(crate) fn redact(url: &str) -> String {
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
