//! `supportd serve`: the web pages alone, against the same database as `supportd run` (for a
//! separate unit, `systemd/supportd-web.service`). No mailbox, no sender: an update from the
//! web is committed with its outbox rows, and the daemon's sender delivers them. SIGTERM and
//! SIGINT finish the requests in flight; SIGHUP reloads the rules and mail templates.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use supportd::config::{Config, Web};
use supportd::tasks::Shared;

use super::{build_pipeline, open_store, Failure, EX_CONFIG, EX_SOFTWARE};

pub async fn serve(config: Config, listen: Option<&str>) -> Result<u8, Failure> {
    let pipeline = build_pipeline(config.clone())?;
    let store = open_store(&pipeline.config).await?;
    supportd::setup::reindex_kb_logged(&pipeline.config, &store, pipeline.clock.now())?;
    let addr = listen
        .map(str::to_string)
        .or_else(|| Some(config.web.listen.clone()).filter(|l| !l.is_empty()))
        .unwrap_or_else(|| Web::SERVE_DEFAULT.to_string());
    let support = &config.support.address;
    let envelope_from = lettre::Address::new(support.local(), support.domain())
        .map_err(|e| Failure::new(EX_CONFIG, anyhow::anyhow!("support.address: {e}")))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(store, pipeline, stop_rx, envelope_from));
    let web = supportd::web::Web::new(shared.clone())
        .await
        .map_err(|e| Failure::new(EX_SOFTWARE, e.into()))?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Failure::new(EX_CONFIG, anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
    tracing::info!(listen = %addr, "serving the web pages");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut signals = (
        signal(SignalKind::terminate()).map_err(io_failure)?,
        signal(SignalKind::interrupt()).map_err(io_failure)?,
        signal(SignalKind::hangup()).map_err(io_failure)?,
    );
    let reload_shared = shared.clone();
    let watcher = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = signals.0.recv() => break,
                _ = signals.1.recv() => break,
                _ = signals.2.recv() => match supportd::setup::build_pipeline(config.clone()) {
                    Ok(p) => {
                        if let Err(e) = supportd::setup::reindex_kb_logged(&p.config, reload_shared.store(), p.clock.now()) {
                            tracing::error!(error = %e, "SIGHUP: the Help Center could not be reindexed");
                        }
                        reload_shared.replace_pipeline(p).await;
                        tracing::info!("SIGHUP: templates, triage rules and the Help Center reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed; keeping the previous ones"),
                },
            }
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(true);
    });
    let mut stop = shared.shutdown();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    supportd::web::serve(listener, web, shutdown)
        .await
        .map_err(io_failure)?;
    watcher.abort();
    shared.store().close().await;
    tracing::info!("stopped");
    Ok(0)
}

fn io_failure(e: std::io::Error) -> Failure {
    Failure::new(EX_SOFTWARE, e.into())
}
