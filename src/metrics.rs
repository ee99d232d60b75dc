//! The process's metrics, served by the web's `/metrics` in Prometheus text format (the
//! OpenMetrics flavour, through `prometheus-client`, never hand-formatted). Counters and
//! histograms are recorded where things happen (the pipeline, the IMAP tasks, the outbox
//! sender, the web); the database figures (tickets, outbox) are read at each scrape.
//!
//! One registry per process, made on first use: recording is a few atomic operations and
//! costs nothing when nobody scrapes (one-shot commands never do).

use std::sync::{Mutex, OnceLock, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabels {
    mailbox: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    mailbox: String,
    /// The replica holding the mailbox's lease.
    holder: String,
    /// This process's replica.
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route's pattern (`/t/{key}`), never the path: keys stay out of metrics.
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TicketLabels {
    status: String,
    urgency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    state: String,
}

fn ingest_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn delivery_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
    ])
}

struct Metrics {
    registry: Registry,
    ingested: Family<OutcomeLabels, Counter>,
    ingest_seconds: Histogram,
    imap_reconnects: Family<MailboxLabels, Counter>,
    imap_sync_errors: Family<MailboxLabels, Counter>,
    web_requests: Family<RequestLabels, Counter>,
    ack_delivery_seconds: Histogram,
    tickets: Family<TicketLabels, Gauge>,
    outbox: Family<OutboxLabels, Gauge>,
    mailbox_lease: Family<LeaseLabels, Gauge>,
    /// The holder last reported per mailbox, to remove its series when it changes.
    lease_holders: Mutex<Vec<LeaseLabels>>,
    /// One scrape at a time: the database gauges are cleared and set anew by each.
    scrape: Mutex<()>,
}

/// Registers each metric of `m` (a [`Metrics`]) under its name and help text: one table.
macro_rules! register {
    ($registry:ident, $m:ident, { $($field:ident => $name:literal, $help:literal;)* }) => {
        $( $registry.register($name, $help, $m.$field.clone()); )*
    };
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("supportd");
        let m = Metrics {
            registry: Registry::default(),
            ingested: Family::default(),
            ingest_seconds: ingest_histogram(),
            imap_reconnects: Family::default(),
            imap_sync_errors: Family::default(),
            web_requests: Family::default(),
            ack_delivery_seconds: delivery_histogram(),
            tickets: Family::default(),
            outbox: Family::default(),
            mailbox_lease: Family::default(),
            lease_holders: Mutex::new(Vec::new()),
            scrape: Mutex::new(()),
        };
        register!(registry, m, {
            ingested => "messages_ingested",
                "Messages through the pipeline, by outcome (created, replied, ..., quarantined)";
            ingest_seconds => "ingest_latency_seconds",
                "Time a message spends in the pipeline: its batch prepared (parse, triage) and committed";
            imap_reconnects => "imap_reconnects",
                "IMAP connections opened again after a failed session, per mailbox";
            imap_sync_errors => "imap_sync_errors",
                "IMAP sessions or syncs that failed, per mailbox";
            web_requests => "web_requests",
                "Web requests by route pattern and HTTP status";
            ack_delivery_seconds => "ack_delivery_latency_seconds",
                "Acknowledgements: from the outbox row's creation (whole seconds, as stored) to the relay's acceptance";
            tickets => "tickets",
                "Tickets by status and urgency (read from the database at each scrape)";
            outbox => "outbox",
                "Outbox mails by state: queued, sent, failed (read from the database at each scrape)";
            mailbox_lease => "mailbox_lease",
                "PostgreSQL replicas: 1 for the replica (holder) holding each mailbox's lease, as this replica sees it";
        });
        Metrics { registry, ..m }
    })
}

/// A message went through the pipeline with `outcome` (`created`, ...); its batch took
/// `seconds` from preparation to commit.
pub fn message_ingested(outcome: &str, seconds: f64) {
    let m = metrics();
    m.ingested
        .get_or_create(&OutcomeLabels {
            outcome: outcome.to_string(),
        })
        .inc();
    m.ingest_seconds.observe(seconds);
}

/// A mailbox task connects again after a failure.
pub fn imap_reconnect(mailbox: &str) {
    count_for(&metrics().imap_reconnects, mailbox);
}

/// A mailbox session or sync failed.
pub fn imap_sync_error(mailbox: &str) {
    count_for(&metrics().imap_sync_errors, mailbox);
}

fn count_for(family: &Family<MailboxLabels, Counter>, mailbox: &str) {
    family
        .get_or_create(&MailboxLabels {
            mailbox: mailbox.to_string(),
        })
        .inc();
}

/// A web request was answered.
pub fn web_request(route: &str, status: u16) {
    metrics()
        .web_requests
        .get_or_create(&RequestLabels {
            route: route.to_string(),
            status: status.to_string(),
        })
        .inc();
}

/// An outbox mail of `kind` was accepted by the relay `seconds` after it was queued.
pub fn mail_delivered(kind: &str, seconds: f64) {
    if kind == "ack" {
        metrics().ack_delivery_seconds.observe(seconds);
    }
}

/// Mailbox `mailbox`'s lease is held by `holder` (None: nobody known).
pub fn mailbox_lease(mailbox: &str, holder: Option<&str>) {
    let m = metrics();
    let mut last = m
        .lease_holders
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = last.iter().position(|l| l.mailbox == mailbox) {
        let old = last.swap_remove(i);
        m.mailbox_lease.remove(&old);
    }
    if let Some(holder) = holder {
        let labels = LeaseLabels {
            mailbox: mailbox.to_string(),
            holder: holder.to_string(),
            replica: crate::store::instance().replica.clone(),
        };
        m.mailbox_lease.get_or_create(&labels).set(1);
        last.push(labels);
    }
}

/// The text exposition, with the database figures of this scrape: `tickets` as (status,
/// urgency, count), `outbox` as (state, count). Each scrape sets them anew (a state that
/// empties shows 0 or disappears, never its last count).
pub fn render(tickets: &[(String, i64, i64)], outbox: &[(String, i64)]) -> String {
    let m = metrics();
    let _one = m.scrape.lock().unwrap_or_else(PoisonError::into_inner);
    m.tickets.clear();
    for (status, urgency, n) in tickets {
        m.tickets
            .get_or_create(&TicketLabels {
                status: status.clone(),
                urgency: urgency.to_string(),
            })
            .set(*n);
    }
    m.outbox.clear();
    for state in ["queued", "sent", "failed"] {
        m.outbox
            .get_or_create(&OutboxLabels {
                state: state.to_string(),
            })
            .set(0);
    }
    for (state, n) in outbox {
        m.outbox
            .get_or_create(&OutboxLabels {
                state: state.clone(),
            })
            .set(*n);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        message_ingested("created", 0.01);
        imap_reconnect("support");
        imap_sync_error("support");
        web_request("/t/{key}", 200);
        mail_delivered("ack", 1.0);
        let text = render(
            &[("open".into(), 2, 3)],
            &[("queued".into(), 1), ("sent".into(), 4)],
        );
        for line in [
            "supportd_messages_ingested_total{outcome=\"created\"}",
            "supportd_ingest_latency_seconds_bucket",
            "supportd_imap_reconnects_total{mailbox=\"support\"}",
            "supportd_imap_sync_errors_total{mailbox=\"support\"}",
            "supportd_web_requests_total{route=\"/t/{key}\",status=\"200\"}",
            "supportd_ack_delivery_latency_seconds_count",
            "supportd_tickets{status=\"open\",urgency=\"2\"} 3",
            "supportd_outbox{state=\"failed\"} 0",
            "supportd_outbox{state=\"sent\"} 4",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
