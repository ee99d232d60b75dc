//! The outbox sender: claims due rows, relays their stored bytes over SMTP, and marks them
//! `sent`; transient failures (4xx, connection trouble) retry with exponential backoff up to
//! `smtp.retry_hours`, permanent ones (5xx) mark the row `failed` with the server's reply.
//! At-least-once: a row is marked sent only after the server accepted it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::Address;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::{Smtp, TlsMode};
use crate::secrets;
use crate::store::OutboxJob;
use crate::tasks::{Backoff, Heartbeat, Shared};
use relay::{Relay, Security};

mod relay;

/// How long a claimed row is reserved for this sender before another may retry it, plus
/// [`relay::upload_allowance`] for its size; also how late, at worst, the mail in flight goes
/// out after a crash (kill -9, power loss).
const LEASE_SECONDS: i64 = 120;
/// One whole delivery attempt (connect, TLS, AUTH, transaction), plus the same allowance for
/// its size, ends well within the lease.
const SEND_BUDGET: Duration = Duration::from_secs(90);
/// Rows claimed per round. A claim is one statement, but on PostgreSQL it cost as much
/// server time as a new ticket's three inserts (~0.35 ms with its planning, measured with
/// pg_stat_statements in bench_replicas), paid once per mail when claimed one by one. Eight
/// at a time pays it once per eight mails during a backlog; when mail trickles in, a claim
/// still takes the one row that is due. What a crash strands is bounded by it: a restarted
/// process takes its own claims back at once (`take_back_claims`); only a replica that
/// never comes back leaves up to eight rows to wait out their lease.
const CLAIM_BATCH: i64 = 8;
/// Longest sleep when nothing is due. The pipeline of this process wakes the sender at once
/// when it queues mail; mail queued by another process is seen at the next look: `supportd
/// ingest` from the MTA (pipe mode, whose acks this daemon sends), `supportd serve`'s
/// sign-in links, a replica that has no sender running. A look is one indexed `MIN` query.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The outbox sender could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("smtp: {0}")]
    Config(String),
}

/// Builds the relay connection settings from `[smtp]`.
pub fn transport(s: &Smtp) -> Result<Relay, OutboxError> {
    let security = match s.tls {
        TlsMode::Implicit => Security::Implicit(
            crate::tls::client_config(s.ca_file.as_deref())
                .map_err(|e| OutboxError::Config(e.to_string()))?,
        ),
        TlsMode::Starttls => Security::StartTls(
            crate::tls::smtp_parameters(&s.host, s.ca_file.as_deref())
                .map_err(|e| OutboxError::Config(e.to_string()))?,
        ),
        // Only for a loopback host: `Config::parse` refuses it for any other.
        TlsMode::None => Security::None,
    };
    // Checked now, so a missing password file stops start-up with its name; read again at
    // every connection.
    let source = credential_source(s);
    source().map_err(OutboxError::Config)?;
    Ok(Relay::new(
        s.host.clone(),
        s.port,
        security,
        source,
        Duration::from_secs(60),
    ))
}

fn credential_source(s: &Smtp) -> relay::CredentialSource {
    let user = s.username.clone();
    let file = s.password_file.clone();
    let env = s.password_env.clone();
    Box::new(move || {
        let password =
            secrets::password(file.as_deref(), env.as_deref()).map_err(|e| e.to_string())?;
        Ok(match (&user, password) {
            (Some(user), Some(pass)) => Some(Credentials::new(user.clone(), pass)),
            _ => None,
        })
    })
}

/// What to do with a row after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    Retry { after: Duration, error: String },
    Failed(String),
}

/// The retry policy, pure: attempt `n` (0-based) failed with `error`.
pub fn verdict(
    permanent: bool,
    error: String,
    attempts_before: i64,
    age: ChronoDuration,
    horizon_hours: u32,
) -> Verdict {
    if permanent {
        return Verdict::Failed(error);
    }
    if age > ChronoDuration::hours(i64::from(horizon_hours)) {
        return Verdict::Failed(format!("gave up after {horizon_hours} h: {error}"));
    }
    // 30 s, 1 min, 2 min, ... capped at one hour.
    let exp = u32::try_from(attempts_before.clamp(0, 7)).unwrap_or(7);
    let secs = (30u64 << exp).min(3600);
    Verdict::Retry {
        after: Duration::from_secs(secs),
        error,
    }
}

/// Runs the sender until shutdown. `[smtp]` was checked with [`transport`] at start-up; should
/// it fail now (a restart after a panic, a password file gone meanwhile), that is logged.
pub async fn run(smtp: Smtp, shared: Arc<Shared>, heartbeat: Heartbeat) {
    let span = info_span!("outbox", smtp = %smtp.host);
    async move {
        let mut relay = match transport(&smtp) {
            Ok(relay) => relay,
            Err(e) => {
                error!(error = %e, "cannot start the outbox sender");
                return;
            }
        };
        let mut shutdown = shared.shutdown();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        // While no session with the relay can be had, pause between rows instead of trying
        // (and failing to log in) once per queued mail.
        let mut relay_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let from = shared.envelope_from();
        // The mail this replica had in flight when its previous run died goes out now.
        match crate::store::blocking(|| shared.store().take_back_claims(shared.now())) {
            Ok(0) => {}
            Ok(n) => info!(rows = n, "took back this replica's claims of an earlier run"),
            Err(e) => warn!(error = %e, "cannot take back earlier claims; they wait out their lease"),
        }
        loop {
            heartbeat.beat();
            if *shutdown.borrow() {
                break;
            }
            let now = shared.now();
            let jobs = match shared.store().claim_outbox(
                now,
                LEASE_SECONDS,
                relay::SLOW_LINK_BYTES_PER_SECOND,
                CLAIM_BATCH,
            ) {
                Ok(jobs) => {
                    backoff.reset();
                    jobs
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the outbox; retrying");
                    tokio::select! {
                        _ = heartbeat.while_waiting(tokio::time::sleep(backoff.next_delay())) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
            };
            let got_work = !jobs.is_empty();
            let mut relay_down = false;
            for job in jobs {
                // A send in flight finishes even during shutdown (bounded by the SMTP timeout).
                relay_down |= heartbeat
                    .while_waiting(deliver(&mut relay, &from, job, &smtp, &shared))
                    .await;
            }
            if relay_down {
                tokio::select! {
                    _ = heartbeat.while_waiting(tokio::time::sleep(relay_backoff.next_delay())) => continue,
                    _ = shutdown.changed() => break,
                }
            }
            if got_work {
                relay_backoff.reset();
                continue;
            }
            let wait = match shared.store().next_outbox_due() {
                Ok(Some(t)) => (t - shared.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE_WAIT),
                _ => IDLE_WAIT,
            };
            tokio::select! {
                _ = shared.outbox_woken() => {}
                _ = heartbeat.while_waiting(tokio::time::sleep(wait)) => {}
                _ = shutdown.changed() => break,
            }
        }
        relay.close().await;
    }
    .instrument(span)
    .await
}

/// Sends one row and records the outcome; true when no session with the relay could be had.
async fn deliver(
    relay: &mut Relay,
    from: &Address,
    job: OutboxJob,
    smtp: &Smtp,
    shared: &Shared,
) -> bool {
    let span = info_span!("send", outbox_id = job.id, attempt = job.attempts + 1);
    async {
        let mut relay_down = false;
        // One address lettre cannot use (stored before addresses were checked on the way
        // in) is left out; it never stops the mail to the others.
        let mut to: Vec<Address> = Vec::with_capacity(job.recipients.len());
        for r in &job.recipients {
            match r.parse::<Address>() {
                Ok(a) => to.push(a),
                Err(e) => warn!(recipient = %r, error = %e, "recipient left out: not an address"),
            }
        }
        let verdict = if to.is_empty() {
            Verdict::Failed("no deliverable recipient".into())
        } else {
            match Envelope::new(Some(from.clone()), to) {
                Err(e) => Verdict::Failed(format!("envelope: {e}")),
                Ok(envelope) => {
                    // Err((permanent, what the server or the network said)).
                    let budget = SEND_BUDGET + relay::upload_allowance(job.raw.len());
                    let attempt =
                        match tokio::time::timeout(budget, relay.send(&envelope, &job.raw)).await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => {
                                relay_down = e.is_session();
                                Err((e.is_permanent(), e.to_string()))
                            }
                            Err(_) => Err((false, format!("no delivery within {budget:?}"))),
                        };
                    match attempt {
                        Ok(()) => Verdict::Sent,
                        Err((permanent, error)) => verdict(
                            permanent,
                            error,
                            job.attempts,
                            shared.now() - job.created_at,
                            smtp.retry_hours,
                        ),
                    }
                }
            }
        };
        let store = shared.store();
        let result = match &verdict {
            Verdict::Sent => {
                info!("sent");
                let waited = (shared.now() - job.created_at).num_milliseconds();
                crate::metrics::mail_delivered(&job.kind, waited.max(0) as f64 / 1000.0);
                store.outbox_sent(job.id, shared.now())
            }
            Verdict::Retry { after, error } => {
                warn!(error = %error, retry_in = ?after, "send failed; will retry");
                let next = shared.now()
                    + ChronoDuration::from_std(*after).unwrap_or(ChronoDuration::seconds(60));
                store.outbox_retry(job.id, next, error)
            }
            Verdict::Failed(error) => {
                warn!(error = %error, "send failed permanently");
                store.outbox_failed(job.id, error)
            }
        };
        if let Err(e) = result {
            // The lease expires and the row is retried: at-least-once, never lost.
            warn!(error = %e, "cannot record the send result; the row will be retried");
        }
        relay_down
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy() {
        let h = ChronoDuration::hours(1);
        assert_eq!(
            verdict(true, "550".into(), 0, h, 48),
            Verdict::Failed("550".into())
        );
        assert_eq!(
            verdict(false, "451".into(), 0, h, 48),
            Verdict::Retry {
                after: Duration::from_secs(30),
                error: "451".into()
            }
        );
        assert!(
            matches!(verdict(false, "451".into(), 3, h, 48), Verdict::Retry { after, .. } if after == Duration::from_secs(240))
        );
        assert!(
            matches!(verdict(false, "451".into(), 30, h, 48), Verdict::Retry { after, .. } if after == Duration::from_secs(3600))
        );
        assert!(matches!(
            verdict(false, "451".into(), 3, ChronoDuration::hours(49), 48),
            Verdict::Failed(_)
        ));
    }
}
