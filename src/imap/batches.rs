//! How the messages above the cursor are cut into FETCH batches: bounded in bytes and count,
//! with an oversized message, a suspect and a poison message each in a batch of its own.
//! Pure.

use std::collections::HashMap;

use crate::store::Attempt;

/// A fetch batch holds at most this many bytes of mail (peak memory), or one larger message.
pub(super) const BATCH_BYTES: u64 = 8 * 1024 * 1024;
pub(super) const BATCH_MAX: usize = 100;

/// Unfinished attempts at a message alone after which it is quarantined without being
/// processed (see `sync`).
pub(super) const POISON_AFTER: u32 = 2;

/// How a batch is fetched and handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Downloaded and processed.
    Whole,
    /// A single message over `limits.max_message_bytes`: only its header is fetched.
    Oversized,
    /// A single message with this many unfinished attempts alone (at least
    /// [`POISON_AFTER`]): quarantined unprocessed, with its header if that can be fetched.
    Poison { attempts: u32 },
}

/// One FETCH worth of messages.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Batch {
    pub(super) uids: Vec<u32>,
    pub(super) bytes: u64,
    pub(super) kind: Kind,
}

/// Splits (uid, size) pairs, in UID order, into batches bounded in bytes and count. These
/// are batches of their own: a message larger than `max_message`, and one with an unfinished
/// attempt in `attempts` (a poison message once it has [`POISON_AFTER`] of them).
pub(super) fn batches(
    sizes: &[(u32, u64)],
    max_message: u64,
    attempts: &HashMap<u32, Attempt>,
) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in sizes {
        let alone = match attempts.get(&uid).map(|a| a.attempts) {
            Some(n) if n >= POISON_AFTER => Some(Kind::Poison { attempts: n }),
            _ if size > max_message => Some(Kind::Oversized),
            Some(_) => Some(Kind::Whole),
            None => None,
        };
        if !current.is_empty()
            && (alone.is_some() || bytes + size > BATCH_BYTES || current.len() >= BATCH_MAX)
        {
            out.push(Batch {
                uids: std::mem::take(&mut current),
                bytes,
                kind: Kind::Whole,
            });
            bytes = 0;
        }
        if let Some(kind) = alone {
            out.push(Batch {
                uids: vec![uid],
                bytes: size,
                kind,
            });
            continue;
        }
        current.push(uid);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(Batch {
            uids: current,
            bytes,
            kind: Kind::Whole,
        });
    }
    out
}

/// An IMAP sequence set of `uids`, runs of consecutive UIDs as ranges (`1:3,7`): a backlog
/// of 20,000 must not become a command line longer than the server accepts (64 KiB).
pub(super) fn uid_set(uids: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while let Some(&start) = uids.get(i) {
        let mut end = start;
        while uids
            .get(i + 1)
            .is_some_and(|&next| Some(next) == end.checked_add(1))
        {
            end = uids[i + 1];
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> HashMap<u32, Attempt> {
        HashMap::new()
    }

    fn tried(rows: &[(u32, u32)]) -> HashMap<u32, Attempt> {
        rows.iter()
            .map(|&(uid, attempts)| {
                (
                    uid,
                    Attempt {
                        uid,
                        attempts,
                        last_error: String::new(),
                    },
                )
            })
            .collect()
    }

    fn shape(all: &[Batch]) -> Vec<(Vec<u32>, Kind)> {
        all.iter().map(|b| (b.uids.clone(), b.kind)).collect()
    }

    #[test]
    fn batches_respect_bytes_and_count() {
        let b = |uids: Vec<u32>, bytes| Batch {
            uids,
            bytes,
            kind: Kind::Whole,
        };
        let sizes: Vec<(u32, u64)> = vec![(1, 1), (2, BATCH_BYTES), (3, 10), (4, 10)];
        assert_eq!(
            batches(&sizes, u64::MAX, &none()),
            vec![b(vec![1], 1), b(vec![2], BATCH_BYTES), b(vec![3, 4], 20)]
        );
        let many: Vec<(u32, u64)> = (1..=250).map(|u| (u, 1)).collect();
        let all = batches(&many, u64::MAX, &none());
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].uids.len(), BATCH_MAX);
    }

    #[test]
    fn an_oversized_message_is_a_batch_of_its_own() {
        let sizes: Vec<(u32, u64)> = vec![(1, 10), (2, 5_000), (3, 10), (4, 10)];
        assert_eq!(
            shape(&batches(&sizes, 1_000, &none())),
            vec![
                (vec![1], Kind::Whole),
                (vec![2], Kind::Oversized),
                (vec![3, 4], Kind::Whole)
            ]
        );
    }

    #[test]
    fn after_a_failed_batch_its_messages_go_alone_and_a_poison_message_is_set_aside() {
        let sizes: Vec<(u32, u64)> = (1..=8).map(|u| (u, 10)).collect();
        // 3 and 4 were in a batch that did not finish; 6 failed once alone, 7 twice, 8 three
        // times (its header FETCH failed too).
        let attempts = tried(&[(3, 0), (4, 0), (6, 1), (7, 2), (8, 3)]);
        assert_eq!(
            shape(&batches(&sizes, 1_000, &attempts)),
            vec![
                (vec![1, 2], Kind::Whole),
                (vec![3], Kind::Whole),
                (vec![4], Kind::Whole),
                (vec![5], Kind::Whole),
                (vec![6], Kind::Whole),
                (vec![7], Kind::Poison { attempts: 2 }),
                (vec![8], Kind::Poison { attempts: 3 }),
            ]
        );
        // A suspect too large to download stays header-only; a poison message is poison
        // whatever its size.
        let sizes: Vec<(u32, u64)> = vec![(1, 5_000), (2, 5_000)];
        assert_eq!(
            shape(&batches(&sizes, 1_000, &tried(&[(1, 1), (2, 2)]))),
            vec![
                (vec![1], Kind::Oversized),
                (vec![2], Kind::Poison { attempts: 2 })
            ]
        );
    }

    #[test]
    fn uid_sets_use_ranges() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        let backlog: Vec<u32> = (1..=20_000).chain([20_002]).collect();
        assert_eq!(uid_set(&backlog), "1:20000,20002");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }
}
