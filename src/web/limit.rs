//! Per-client-address limits (in the memory of the process): failed ticket lookups (unknown
//! keys: 20 a minute, then 429 for every lookup until the oldest failure is a minute old) and
//! sign-in requests. Only what counts is counted — a limiter that counted every request would
//! need a peek that the keyed GCRA crates do not offer, so this is a small sliding window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The window every limit counts over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; past it, addresses with nothing in the window are forgotten.
const MAX_CLIENTS: usize = 100_000;

/// At most `max` events per client address within [`WINDOW`].
pub struct PerClient {
    max: usize,
    clients: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl PerClient {
    pub fn new(max: usize) -> PerClient {
        PerClient {
            max,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` has used up its events.
    pub fn blocked(&self, client: IpAddr) -> bool {
        self.blocked_at(client, Instant::now())
    }

    /// Counts one event of `client`.
    pub fn record(&self, client: IpAddr) {
        self.record_at(client, Instant::now());
    }

    fn blocked_at(&self, client: IpAddr, now: Instant) -> bool {
        let mut all = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        match all.get_mut(&client) {
            Some(events) => {
                prune(events, now);
                events.len() >= self.max
            }
            None => false,
        }
    }

    fn record_at(&self, client: IpAddr, now: Instant) {
        let mut all = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if all.len() >= MAX_CLIENTS && !all.contains_key(&client) {
            all.retain(|_, events| {
                prune(events, now);
                !events.is_empty()
            });
        }
        let events = all.entry(client).or_default();
        prune(events, now);
        events.push_back(now);
        // Beyond `max` only the newest matter.
        while events.len() > self.max {
            events.pop_front();
        }
    }
}

fn prune(events: &mut VecDeque<Instant>, now: Instant) {
    while events
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        events.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_failures_a_minute_then_blocked_until_they_age() {
        let l = PerClient::new(20);
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let b: IpAddr = "198.51.100.8".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(!l.blocked_at(a, t0), "blocked after {i}");
            l.record_at(a, t0 + Duration::from_millis(i));
        }
        assert!(l.blocked_at(a, t0 + Duration::from_secs(1)));
        assert!(!l.blocked_at(b, t0), "per address");
        // A minute after the first failure, one slot is free again.
        assert!(!l.blocked_at(a, t0 + WINDOW));
    }
}
