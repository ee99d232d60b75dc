//! The one clock and the one source of randomness, so tests can fix both.

use chrono::{DateTime, Utc};

use crate::tickets::{AccessKey, ACCESS_KEY_LEN};

/// Where "now" comes from. The core never reads the system time itself.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always says the same time (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

pub use crate::tickets::IdSource;

/// Keys and ids from the operating system's random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl RandomIds {
    fn bytes<const N: usize>() -> [u8; N] {
        let mut b = [0u8; N];
        if getrandom::fill(&mut b).is_err() {
            // The OS generator does not fail on any supported platform; should it ever, a
            // key must still never be guessable, so refuse to continue rather than weaken it.
            std::process::abort();
        }
        b
    }
}

impl IdSource for RandomIds {
    fn access_key(&self) -> AccessKey {
        AccessKey::from_random(Self::bytes::<ACCESS_KEY_LEN>())
    }

    fn message_id(&self, domain: &str) -> String {
        let hex: String = Self::bytes::<16>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("supportd.{hex}@{domain}")
    }
}

/// Deterministic ids (tests): keys and ids numbered from a counter.
#[derive(Debug, Default)]
pub struct SequentialIds(std::sync::atomic::AtomicU64);

impl IdSource for SequentialIds {
    fn access_key(&self) -> AccessKey {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut bytes = [0u8; ACCESS_KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from((n >> (i % 8)) & 31).unwrap_or(0) ^ u8::try_from(i).unwrap_or(0);
        }
        AccessKey::from_random(bytes)
    }

    fn message_id(&self, domain: &str) -> String {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("supportd.test{n}@{domain}")
    }
}
