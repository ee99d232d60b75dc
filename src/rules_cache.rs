//! The I/O shell around triage's pure core: the built rules (and the learned weights, in a
//! file of their own), kept between processes: an MTA pipes each message to its own
//! `supportd ingest -`, and building the phrase trie of the shipped rules is ~25 M of the
//! ~40 M instructions such a process spends. The file holds the [`PhraseSet`] that
//! [`Rules::from_toml`] built, keyed by the rules text and by this very binary; a process
//! that finds it reads the TOML as always (every other check runs again) and claims the
//! patterns from the set instead of compiling them.
//!
//! Safe by construction: a file for other rules, another build of supportd, or one that does
//! not decode is ignored and replaced; a set whose patterns differ from the text's, in
//! content or order, is discarded and the rules are built afresh. The cache is only an
//! optimisation: every failure to read or write it is logged at debug level and nothing else.

use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::triage::phrases::PhraseSet;
use crate::triage::{Rules, TriageError, Weights};

/// The cache's file name in its directory.
pub const FILE_NAME: &str = "supportd-triage.cache";
/// The learned weights' cache, beside it (reading the weights' TOML is ~24 M instructions).
pub const WEIGHTS_FILE_NAME: &str = "supportd-weights.cache";

/// Bumped when the file's layout changes (the binary's identity covers code changes too).
const FORMAT: u32 = 1;

/// What a file holds: the key it was written under and the value.
#[derive(Serialize, Deserialize)]
struct Cached<T> {
    format: u32,
    key: u64,
    value: T,
}

/// The rules from `text`, through the cache file in `dir`: read from it when it holds this
/// text's phrases built by this binary, otherwise built and written there for the next
/// process. Errors are those of [`Rules::from_toml`].
pub fn load(text: &str, origin: &str, dir: &Path) -> Result<Rules, TriageError> {
    let path = dir.join(FILE_NAME);
    let Some(key) = key(text) else {
        return Rules::from_toml(text, origin);
    };
    if let Some(phrases) = read::<PhraseSet>(&path, key) {
        if let Some(rules) = Rules::from_toml_replaying(text, origin, phrases) {
            return Ok(rules);
        }
        tracing::debug!(path = %path.display(), "triage cache does not fit the rules; rebuilding");
    }
    let rules = Rules::from_toml(text, origin)?;
    write(&path, key, rules.phrases());
    Ok(rules)
}

/// The learned weights in `text` (read from `origin`), through the cache file in `dir`, as
/// [`load`] does for the rules. Errors are those of [`Weights::from_toml`].
pub fn load_weights(text: &str, origin: &str, dir: &Path) -> Result<Weights, String> {
    let path = dir.join(WEIGHTS_FILE_NAME);
    let Some(key) = key(text) else {
        return Weights::from_toml(text, origin);
    };
    if let Some(weights) = read::<Weights>(&path, key) {
        return Ok(weights);
    }
    let weights = Weights::from_toml(text, origin)?;
    write(&path, key, &weights);
    Ok(weights)
}

/// The key of `text` for this build of supportd: its format, version, and the executable's
/// size and modification time (a rebuilt binary never reads an older one's file). `None`
/// when the executable cannot be found: then there is no cache.
fn key(text: &str) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let mut h = foldhash::fast::FixedState::default().build_hasher();
    (FORMAT, env!("CARGO_PKG_VERSION"), meta.len()).hash(&mut h);
    (modified.as_secs(), modified.subsec_nanos()).hash(&mut h);
    text.hash(&mut h);
    Some(h.finish())
}

fn read<T: serde::de::DeserializeOwned>(path: &Path, key: u64) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match postcard::from_bytes::<Cached<T>>(&bytes) {
        Ok(c) if c.format == FORMAT && c.key == key => Some(c.value),
        Ok(_) => {
            tracing::debug!(path = %path.display(), "triage cache is for other rules or another build");
            None
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "triage cache does not decode");
            None
        }
    }
}

/// Writes the cache beside its final name and renames it into place, so that a reader sees
/// a whole file or none (concurrent writers of the same rules write the same bytes).
fn write<T: Serialize>(path: &Path, key: u64, value: &T) {
    let bytes = match postcard::to_allocvec(&Cached {
        format: FORMAT,
        key,
        value,
    }) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(error = %e, "triage cache: cannot encode");
            return;
        }
    };
    let tmp = temp_name(path);
    let written = (|| -> std::io::Result<()> {
        let mut f = new_file(&tmp)?;
        f.write_all(&bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(path = %path.display(), error = %e, "triage cache not written");
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(name)
}

#[cfg(unix)]
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = crate::setup::DEFAULT_RULES;

    fn classify(r: &Rules, subject: &str, body: &str) -> (String, u8) {
        let c = r.classify(subject, body);
        (c.category, c.urgency)
    }

    const MAILS: &[(&str, &str)] = &[
        (
            "Pager down",
            "Nobody on 4 West can log in since 07:00 and we cannot reach the on-call surgeon.",
        ),
        (
            "Invoice question",
            "Could you resend last month's invoice when you get a chance?",
        ),
        (
            "Personne ne peut se connecter",
            "Aucune infirmière ne peut se connecter sur les appareils partagés depuis cette nuit.",
        ),
    ];

    #[test]
    fn a_second_load_reads_the_file_and_classifies_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(RULES, "triage.toml", dir.path()).unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(path.exists(), "the first load writes the cache");
        let key = key(RULES).unwrap();
        assert!(
            read::<PhraseSet>(&path, key).is_some(),
            "the file decodes with this text's key"
        );
        let second = load(RULES, "triage.toml", dir.path()).unwrap();
        let fresh = Rules::from_toml(RULES, "triage.toml").unwrap();
        for (subject, body) in MAILS {
            let expected = classify(&fresh, subject, body);
            assert_eq!(classify(&first, subject, body), expected);
            assert_eq!(classify(&second, subject, body), expected);
        }
        let input = crate::triage::TriageInput {
            subject: MAILS[0].0,
            body: MAILS[0].1,
            signals: Default::default(),
        };
        let explained = |r: &Rules| format!("{:?}", r.explain(&input));
        assert_eq!(explained(&second), explained(&fresh));
    }

    #[test]
    fn other_rules_do_not_read_the_file_of_the_first() {
        let dir = tempfile::tempdir().unwrap();
        load(RULES, "triage.toml", dir.path()).unwrap();
        // The same rules with one pattern changed: another key, so built afresh.
        let changed = RULES.replacen("\"covering\"", "\"kovering\"", 1);
        assert_ne!(changed, RULES);
        assert!(read::<PhraseSet>(&dir.path().join(FILE_NAME), key(&changed).unwrap()).is_none());
        let r = load(&changed, "triage.toml", dir.path()).unwrap();
        let fresh = Rules::from_toml(&changed, "triage.toml").unwrap();
        for (subject, body) in MAILS {
            assert_eq!(classify(&r, subject, body), classify(&fresh, subject, body));
        }
        // ... and the file is now theirs.
        assert!(read::<PhraseSet>(&dir.path().join(FILE_NAME), key(&changed).unwrap()).is_some());
    }

    #[test]
    fn a_set_of_other_patterns_is_not_replayed() {
        let built = Rules::from_toml(RULES, "triage.toml").unwrap();
        let changed = RULES.replacen("\"covering\"", "\"kovering\"", 1);
        let phrases = || postcard::from_bytes(&postcard::to_allocvec(built.phrases()).unwrap());
        assert!(Rules::from_toml_replaying(RULES, "t", phrases().unwrap()).is_some());
        assert!(
            Rules::from_toml_replaying(&changed, "t", phrases().unwrap()).is_none(),
            "a pattern that differs is not claimed"
        );
    }

    #[test]
    fn a_damaged_or_foreign_file_is_replaced_and_bad_rules_still_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for junk in [&b""[..], b"\x01\x02garbage", &[0xff; 64]] {
            std::fs::write(&path, junk).unwrap();
            let r = load(RULES, "triage.toml", dir.path()).unwrap();
            assert_eq!(
                classify(&r, MAILS[0].0, MAILS[0].1),
                classify(
                    &Rules::from_toml(RULES, "t").unwrap(),
                    MAILS[0].0,
                    MAILS[0].1
                )
            );
            assert!(
                read::<PhraseSet>(&path, key(RULES).unwrap()).is_some(),
                "rewritten"
            );
        }
        // Broken rules are reported as without a cache, and leave the file alone.
        let broken = format!("{RULES}\n[[rule]]\nid = \"x\"\n");
        let e = load(&broken, "triage.toml", dir.path()).unwrap_err();
        assert!(e.to_string().contains("triage.toml"), "{e}");
        assert!(read::<PhraseSet>(&path, key(RULES).unwrap()).is_some());
    }

    #[test]
    fn the_weights_are_cached_beside_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let text = crate::setup::DEFAULT_WEIGHTS;
        let first = load_weights(text, "w.toml", dir.path()).unwrap();
        let path = dir.path().join(WEIGHTS_FILE_NAME);
        assert!(read::<Weights>(&path, key(text).unwrap()).is_some());
        let second = load_weights(text, "w.toml", dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first, Weights::from_toml(text, "w.toml").unwrap());
        std::fs::write(&path, b"junk").unwrap();
        assert_eq!(load_weights(text, "w.toml", dir.path()).unwrap(), first);
        let e = load_weights("ngram_buckets = 0", "bad.toml", dir.path()).unwrap_err();
        assert!(e.contains("bad.toml"), "{e}");
    }

    #[test]
    fn an_unwritable_directory_only_costs_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir");
        let r = load(RULES, "triage.toml", &missing).unwrap();
        assert!(!missing.join(FILE_NAME).exists());
        assert!(!r.categories().is_empty());
    }
}
