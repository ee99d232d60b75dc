//! Everything costly about a message, done before its write transaction opens, within a time
//! budget per message.
//!
//! Parsing, HTML to text, quote stripping and triage depend only on the message's bytes (and
//! the rules), and a crafted message can make them slow. Done inside the batch's write
//! transaction, they made every other writer wait (a second `supportd ingest` failed with
//! "database is locked"). So each message is *prepared* first, into a [`Prepared`], and the
//! transaction only looks up, decides and writes.
//!
//! # The time budget
//!
//! Rust cannot interrupt a computation, so preparation runs on a worker thread and the caller
//! waits for each message at most `limits.processing_budget_seconds`. A message that takes
//! longer is quarantined ("processing budget exceeded"): the caller abandons that worker (it
//! runs on, alone, until its message is done, then exits; its result is dropped) and starts a
//! fresh worker for the rest of the batch. Abandoned workers hold CPU and memory, so at most
//! [`MAX_RUNAWAYS`] may exist in the process at once: past that, the caller waits for the
//! overrunning message to finish (and quarantines it all the same) instead of leaving another
//! one behind. While it waits it reports no progress, so a preparation that never ends is
//! seen by the daemon's watchdog, and the restart it causes counts as a failed attempt of that
//! IMAP message (see `imap`): after two, it is quarantined unprocessed.
//!
//! One worker thread serves a whole batch (one thread start per batch, not per message); a
//! panic while preparing a message is caught on the worker and quarantines that message.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, LazyLock};
use std::thread;
use std::time::Duration;

use tracing::{error, warn};

use super::{Pipeline, PipelineError};
use crate::mail::address::EmailAddress;
use crate::mail::loops::{self, Origin};
use crate::mail::parse::{self, InboundMail};
use crate::mail::quote::{strip_quotes_of, triage_text};
use crate::tickets::{self, AccessKey, TicketTag};
use crate::triage::{Classification, Rules, Signals, TriageInput};

/// Abandoned preparations (over their budget, still computing) allowed at once, process-wide.
pub const MAX_RUNAWAYS: usize = 2;

/// Per kind (tag numbers, access keys, agent keys), distinct values looked up in the store at
/// most: a subject with 100,000 `[#N]` tags must not mean 100,000 lookups in the transaction.
pub const MAX_LOOKUPS: usize = 20;

/// How much of a message's text triage reads.
pub const TRIAGE_BYTES: usize = 64 * 1024;

/// The first `max` bytes of `s`, cut on a character boundary.
fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The quarantine reason of a message over its time budget.
pub const BUDGET_EXCEEDED: &str = "processing budget exceeded";

const PANICKED: &str = "supportd panicked on this message (a bug; please report it)";

/// The process's abandoned workers still running (see [`MAX_RUNAWAYS`]).
static RUNAWAYS: LazyLock<Arc<Runaways>> = LazyLock::new(|| Arc::new(Runaways::new(MAX_RUNAWAYS)));

/// A count of abandoned workers still running, with its ceiling.
#[derive(Debug)]
pub(super) struct Runaways {
    running: AtomicUsize,
    max: usize,
}

impl Runaways {
    pub(super) fn new(max: usize) -> Runaways {
        Runaways {
            running: AtomicUsize::new(0),
            max,
        }
    }

    /// The process-wide count.
    pub(super) fn process() -> Arc<Runaways> {
        Arc::clone(&RUNAWAYS)
    }

    /// Takes a place for one more runaway, if there is one.
    fn enter(&self) -> bool {
        self.running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Runaways still running now.
    #[cfg(test)]
    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// What a worker runs for each message.
pub(super) type Job = Arc<dyn Fn(&[u8]) -> Prepared + Send + Sync>;

/// One message, prepared for its transaction.
#[derive(Debug)]
pub enum Prepared {
    /// Parsed and analysed: the transaction looks up, decides and writes.
    Ready(Box<Ready>),
    /// To be quarantined verbatim with this reason (unparseable, too large, over its budget).
    Aside(String),
}

/// What the transaction needs from a message besides the store: all of it computed from the
/// message's bytes and the rules, none of it costly to use.
#[derive(Debug)]
pub struct Ready {
    pub mail: InboundMail,
    pub origin: Origin,
    /// [`tickets::referenced_ids`]: In-Reply-To, then References newest first (at most 200).
    pub referenced: Vec<String>,
    /// Ticket access keys in plus-addresses of our own addresses (at most [`MAX_LOOKUPS`]).
    pub access_keys: Vec<AccessKey>,
    /// Agent keys likewise (at most [`MAX_LOOKUPS`]).
    pub agent_keys: Vec<AccessKey>,
    /// Ticket numbers in subject tags, distinct (at most [`MAX_LOOKUPS`]).
    pub tags: Vec<i64>,
    /// The body without quoted text and signature: what triage scores, agents' `#commands`
    /// are read from and notifications quote.
    pub text: String,
    /// Triage of the subject and `text`, used when the message opens a ticket.
    pub class: Classification,
}

impl Ready {
    /// Whether the message names a ticket: it refers to one of our messages, carries a
    /// subject tag, or is addressed with an access or agent key. Such a message is most
    /// likely a reply (what it is, only the lookup and [`crate::tickets::decide`] say).
    pub fn names_a_ticket(&self) -> bool {
        !(self.referenced.is_empty()
            && self.tags.is_empty()
            && self.access_keys.is_empty()
            && self.agent_keys.is_empty())
    }
}

/// What preparing needs, owned, so a worker thread can outlive the caller's wait.
#[derive(Clone)]
pub(super) struct Preparer {
    rules: Arc<Rules>,
    tag: TicketTag,
    own: Arc<Vec<EmailAddress>>,
    max_message_bytes: u64,
}

impl Preparer {
    pub(super) fn new(p: &Pipeline) -> Preparer {
        Preparer {
            rules: Arc::clone(&p.rules),
            tag: p.desk.tag.clone(),
            own: Arc::new(p.desk.own.clone()),
            max_message_bytes: p.config.limits.max_message_bytes,
        }
    }

    /// [`Preparer::prepare`] as a worker's job.
    pub(super) fn into_job(self) -> Job {
        Arc::new(move |raw: &[u8]| self.prepare(raw))
    }

    /// Prepares one message; no budget (see [`prepare_all`]).
    pub(super) fn prepare(&self, raw: &[u8]) -> Prepared {
        let size = u64::try_from(raw.len()).unwrap_or(u64::MAX);
        if let Some(reason) = super::too_large(size, self.max_message_bytes) {
            return Prepared::Aside(reason);
        }
        let mail = match parse::parse(raw) {
            Ok(m) => m,
            Err(e) => return Prepared::Aside(e.to_string()),
        };
        let text = strip_quotes_of(&mail.subject, &mail.body);
        // The sender's own signals (Importance, X-Priority) count too. Triage reads the top of
        // the text: what is broken and for whom is said there, and a 20 MB log pasted into a
        // mail must not cost seconds.
        let read = triage_text(&mail.subject, &mail.body, &text);
        let class = self.rules.classify_mail(&TriageInput {
            subject: &mail.subject,
            body: head(&read, TRIAGE_BYTES),
            signals: Signals::from_raw_headers(raw),
        });
        Prepared::Ready(Box::new(Ready {
            origin: loops::origin(&mail),
            referenced: tickets::referenced_ids(&mail),
            access_keys: distinct(tickets::access_keys_in(&mail, &self.own), |k| {
                k.as_str().to_string()
            }),
            agent_keys: distinct(tickets::agent_keys_in(&mail, &self.own), |k| {
                k.as_str().to_string()
            }),
            tags: distinct(self.tag.numbers_in(&mail.subject), |n| *n),
            text,
            class,
            mail,
        }))
    }
}

/// The first [`MAX_LOOKUPS`] distinct items, in order.
fn distinct<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(key(i)))
        .take(MAX_LOOKUPS)
        .collect()
}

/// Prepares `raws` in order with `job` (a [`Preparer`]'s `prepare`), each within `budget`
/// (see the module documentation), calling `progress` after each. Fails only when no worker
/// thread can be started (transient).
pub(super) fn prepare_all(
    job: &Job,
    raws: &[&[u8]],
    budget: Duration,
    runaways: &Arc<Runaways>,
    progress: &dyn Fn(),
) -> Result<Vec<Prepared>, PipelineError> {
    let start = || Worker::start(Arc::clone(job), Arc::clone(runaways));
    let mut worker: Option<Worker> = None;
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let w = match worker.take() {
            Some(w) => w,
            None => start()?,
        };
        // A worker takes one message at a time: the budget counts only this one's work.
        let w = match w.jobs.send(raw.to_vec()) {
            Ok(()) => w,
            // Its thread is gone (it cannot be: jobs never panic through). Try a fresh one.
            Err(mpsc::SendError(raw)) => {
                let fresh = start()?;
                fresh
                    .jobs
                    .send(raw)
                    .map_err(|_| PipelineError::Worker("a new worker ended at once".into()))?;
                fresh
            }
        };
        let prepared = match w.results.recv_timeout(budget) {
            Ok(Ok(prepared)) => {
                worker = Some(w);
                prepared
            }
            Ok(Err(_panic)) => {
                worker = Some(w);
                Prepared::Aside(PANICKED.into())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Prepared::Aside(PANICKED.into()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if runaways.enter() {
                    warn!(
                        budget_seconds = budget.as_secs_f64(),
                        "message over its processing budget: quarantined; its preparation runs on alone until it ends"
                    );
                    w.abandon();
                } else {
                    error!(
                        budget_seconds = budget.as_secs_f64(),
                        runaways = runaways.max,
                        "message over its processing budget while earlier runaway preparations still run: waiting for it to end (it is quarantined all the same)"
                    );
                    if w.results.recv().is_ok() {
                        worker = Some(w);
                    }
                }
                Prepared::Aside(BUDGET_EXCEEDED.into())
            }
        };
        out.push(prepared);
        progress();
    }
    Ok(out)
}

/// A preparation thread fed one message at a time.
struct Worker {
    jobs: mpsc::Sender<Vec<u8>>,
    results: mpsc::Receiver<thread::Result<Prepared>>,
    /// Set once the caller stopped waiting for it; it then leaves its [`Runaways`] when it
    /// ends.
    abandoned: Arc<AtomicBool>,
}

impl Worker {
    fn start(job: Job, runaways: Arc<Runaways>) -> Result<Worker, PipelineError> {
        let (jobs, queue) = mpsc::channel::<Vec<u8>>();
        let (done, results) = mpsc::channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&abandoned);
        thread::Builder::new()
            .name("supportd-prepare".into())
            .spawn(move || {
                for raw in queue {
                    let prepared = catch_unwind(AssertUnwindSafe(|| job(&raw)));
                    drop(raw);
                    if done.send(prepared).is_err() {
                        break;
                    }
                }
                // The flag is set before the caller drops its channel ends, and the loop
                // above only ends once they are dropped.
                if flag.load(Ordering::SeqCst) {
                    runaways.leave();
                }
            })
            .map_err(|e| PipelineError::Worker(e.to_string()))?;
        Ok(Worker {
            jobs,
            results,
            abandoned,
        })
    }

    /// Leaves the worker to finish its message alone (counted in its [`Runaways`] already).
    fn abandon(self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    #[test]
    fn triage_reads_the_head_cut_on_a_character_boundary() {
        assert_eq!(head("abc", 10), "abc");
        assert_eq!(head("abcdef", 3), "abc");
        // 'é' is two bytes: a cut inside it keeps the character out.
        assert_eq!(head("aé", 2), "a");
        assert_eq!(
            head(&"x".repeat(TRIAGE_BYTES * 3), TRIAGE_BYTES).len(),
            TRIAGE_BYTES
        );
    }

    /// A job that takes `ms` milliseconds for a message `b"sleep <ms>"`, panics on
    /// `b"panic"`, and sets aside everything else with its text as the reason.
    fn job() -> Job {
        Arc::new(|raw: &[u8]| {
            let text = String::from_utf8_lossy(raw).to_string();
            if let Some(ms) = text.strip_prefix("sleep ") {
                thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            }
            if text == "panic" {
                panic!("test panic");
            }
            Prepared::Aside(text)
        })
    }

    fn reasons(p: &[Prepared]) -> Vec<String> {
        p.iter()
            .map(|p| match p {
                Prepared::Aside(r) => r.clone(),
                Prepared::Ready(_) => "ready".into(),
            })
            .collect()
    }

    fn wait_until(what: &str, check: impl Fn() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_message_over_budget_is_set_aside_and_the_batch_goes_on() {
        let runaways = Arc::new(Runaways::new(2));
        let beats = AtomicUsize::new(0);
        let started = Instant::now();
        let out = prepare_all(
            &job(),
            &[b"a", b"sleep 2500", b"b", b"c"],
            Duration::from_millis(600),
            &runaways,
            &|| {
                beats.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        // Not waiting for the 2.5-second message to end.
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(reasons(&out), vec!["a", BUDGET_EXCEEDED, "b", "c"]);
        assert_eq!(beats.load(Ordering::SeqCst), 4);
        // The runaway is counted until it ends, then leaves.
        assert_eq!(runaways.running(), 1);
        wait_until("the runaway to end", || runaways.running() == 0);
    }

    #[test]
    fn a_panic_sets_aside_that_message_only() {
        let runaways = Arc::new(Runaways::new(2));
        let out = prepare_all(
            &job(),
            &[b"panic", b"c"],
            Duration::from_secs(30),
            &runaways,
            &|| {},
        )
        .unwrap();
        assert_eq!(reasons(&out), vec![PANICKED, "c"]);
        assert_eq!(runaways.running(), 0);
    }

    #[test]
    fn past_the_runaway_ceiling_the_caller_waits_instead_of_abandoning() {
        let runaways = Arc::new(Runaways::new(1));
        let started = Instant::now();
        let out = prepare_all(
            &job(),
            &[b"sleep 3000", b"sleep 1500", b"d"],
            Duration::from_millis(500),
            &runaways,
            &|| {},
        )
        .unwrap();
        // The first is abandoned (the one place), the second waited for to its end (~2 s);
        // waiting for the first instead would take 3.5 s.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1500), "{took:?}");
        assert!(took < Duration::from_millis(3400), "{took:?}");
        assert_eq!(reasons(&out), vec![BUDGET_EXCEEDED, BUDGET_EXCEEDED, "d"]);
        assert!(runaways.running() <= 1);
        wait_until("the runaway to end", || runaways.running() == 0);
    }

    #[test]
    fn distinct_keeps_order_and_caps() {
        let v: Vec<i64> = (0..100).flat_map(|n| [n, n]).collect();
        let d = distinct(v, |n| *n);
        assert_eq!(d, (0..MAX_LOOKUPS as i64).collect::<Vec<_>>());
    }
}
