//! The I/O shell around triage's pure core: the built rules, with the learned weights they
//! install, kept between processes. An MTA pipes each message to its own `supportd ingest
//! -`, and reading and building the shipped rules (their TOML, the phrase trie of ~1,500
//! patterns, the weights' TOML) is most of what such a process spends. The file holds the
//! whole [`Rules`] as built, keyed by the rules text and by this very binary, with the key of
//! the weights text they were built with: a process that finds it reads it back and
//! neither parses nor checks the TOML again (the same text through the same binary gives the
//! same outcome, and only rules that passed every check are ever written).
//!
//! Safe by construction: a file for other rules, other weights, another build of supportd,
//! or one that does not decode is ignored and replaced. The cache is only an optimisation:
//! every failure to read or write it is logged at debug level and nothing else.
//!
//! The same keying records other start-up checks that passed ([`checked`], [`mark_checked`]:
//! the templates', see `setup::build_pipeline_cached`), so that a later process of the same
//! binary, on the same input, may skip them.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::triage::Rules;

/// The cache's file name in its directory.
pub const FILE_NAME: &str = "supportd-triage.cache";

/// Bumped when the file's layout changes (the binary's identity covers code changes too).
const FORMAT: u32 = 5;

/// What a file holds: the key it was written under and the value.
#[derive(Serialize, Deserialize)]
struct Cached<T> {
    format: u32,
    key: u64,
    value: T,
}

/// Built rules and the key of the weights text installed in them (`None`: no weights).
#[derive(Serialize, Deserialize)]
struct Built<R> {
    rules: R,
    weights: Option<u64>,
}

/// The rules from `text`, through the cache file in `dir`: read back when it holds rules
/// this binary built from this text, with weights from the text `weights_text` now gives
/// for the file they name; otherwise `build` makes them (and says which weights text it
/// installed) and they are written there for the next process. Errors are `build`'s.
pub fn load<E>(
    text: &str,
    dir: &Path,
    weights_text: impl Fn(&str) -> Result<Cow<'static, str>, E>,
    build: impl FnOnce() -> Result<(Rules, Option<Cow<'static, str>>), E>,
) -> Result<Rules, E> {
    let path = dir.join(FILE_NAME);
    let Some(key) = key(text) else {
        return build().map(|(rules, _)| rules);
    };
    if let Some(built) = read::<Built<Rules>>(&path, key) {
        let weights = match built.rules.weights_file() {
            Some(name) => weights_text(name).ok().map(|t| weights_key(&t)),
            None => None,
        };
        let consistent = built.rules.consistent();
        if weights == built.weights && consistent {
            return Ok(built.rules);
        }
        let why = if consistent {
            "the weights changed"
        } else {
            "the rules read back do not hang together"
        };
        tracing::debug!(path = %path.display(), "triage cache: {why}; rebuilding");
    }
    let (rules, weights) = build()?;
    let built = Built {
        rules: &rules,
        weights: weights.as_ref().map(weights_key),
    };
    write(&path, key, &built);
    Ok(rules)
}

/// Whether a check of `material` (the whole input it depends on, as text) passed in an
/// earlier process of this very binary: [`mark_checked`] left file `name` in `dir` for it.
pub fn checked(dir: &Path, name: &str, material: &str) -> bool {
    key(material).is_some_and(|key| read::<()>(&dir.join(name), key).is_some())
}

/// Records in file `name` of `dir` that a check of `material` passed (see [`checked`]).
pub fn mark_checked(dir: &Path, name: &str, material: &str) {
    if let Some(key) = key(material) {
        write(&dir.join(name), key, &());
    }
}

/// How much of each end of the built-in weights text [`weights_key`] hashes.
const BUILT_IN_SAMPLE: usize = 64 * 1024;

/// The key of a weights text, within one build (the file's key names the build by the
/// executable's size and modification time). A text borrowed for `'static` is the built-in
/// one, compiled into this very executable: its length and its first and last 64 KiB stand
/// for it (a retrain rewrites the header's figures and every decision's weights, and the
/// executable changes too), instead of hashing its ~2.7 MB in every piped process (~1.2 M
/// instructions). A file's text is hashed whole.
#[allow(clippy::ptr_arg)] // whether the text is borrowed (built in) or owned (a file) is the point
fn weights_key(text: &Cow<'static, str>) -> u64 {
    let hash = |parts: &[&[u8]]| foldhash::fast::FixedState::default().hash_one(parts);
    match text {
        Cow::Borrowed(t) => {
            let b = t.as_bytes();
            let head = b.get(..BUILT_IN_SAMPLE).unwrap_or(b);
            let tail = b
                .get(b.len().saturating_sub(BUILT_IN_SAMPLE)..)
                .unwrap_or(b);
            (1 << 63) | hash(&[&(b.len() as u64).to_le_bytes(), head, tail])
        }
        Cow::Owned(t) => hash(&[t.as_bytes()]) & !(1 << 63),
    }
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
            tracing::debug!(path = %path.display(), "cache file is for other input or another build");
            None
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cache file does not decode");
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
    use std::cell::Cell;

    use super::*;
    use crate::triage::Weights;

    const RULES: &str = crate::setup::DEFAULT_RULES;
    const WEIGHTS: &str = crate::setup::DEFAULT_WEIGHTS;

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

    /// The rules in `text` with `weights` installed when they name a weights file, as
    /// `setup` builds them.
    fn fresh(
        text: &str,
        weights: &'static str,
    ) -> Result<(Rules, Option<Cow<'static, str>>), String> {
        let rules = Rules::from_toml(text, "triage.toml").map_err(|e| e.to_string())?;
        if rules.weights_file().is_none() {
            return Ok((rules, None));
        }
        let w = Weights::from_toml(weights, "w.toml")?;
        Ok((
            rules.with_weights(w)?,
            Some(Cow::Owned(weights.to_string())),
        ))
    }

    /// `load` with the weights text `weights`, read from a file as an admin's tuned weights
    /// are (owned text: the built-in weights are borrowed); `built` counts the builds.
    fn load_with(
        text: &str,
        weights: &'static str,
        dir: &Path,
        built: &Cell<u32>,
    ) -> Result<Rules, String> {
        load(
            text,
            dir,
            |_| Ok(Cow::Owned(weights.to_string())),
            || {
                built.set(built.get() + 1);
                fresh(text, weights)
            },
        )
    }

    fn same_answers(a: &Rules, b: &Rules) {
        for (subject, body) in MAILS {
            assert_eq!(classify(a, subject, body), classify(b, subject, body));
        }
        let input = crate::triage::TriageInput {
            subject: MAILS[0].0,
            body: MAILS[0].1,
            signals: Default::default(),
        };
        assert_eq!(
            format!("{:?}", a.explain(&input)),
            format!("{:?}", b.explain(&input))
        );
    }

    #[test]
    fn a_second_load_reads_the_file_and_classifies_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let built = Cell::new(0);
        let first = load_with(RULES, WEIGHTS, dir.path(), &built).unwrap();
        assert_eq!(built.get(), 1);
        assert!(
            dir.path().join(FILE_NAME).exists(),
            "the first load writes the cache"
        );
        let second = load_with(RULES, WEIGHTS, dir.path(), &built).unwrap();
        assert_eq!(
            built.get(),
            1,
            "the second load reads the file, builds nothing"
        );
        assert!(
            second.weights().is_some(),
            "the weights come with the rules"
        );
        assert_eq!(second.weights(), first.weights());
        assert!(second.consistent());
        let (expected, _) = fresh(RULES, WEIGHTS).unwrap();
        same_answers(&first, &expected);
        same_answers(&second, &expected);
        // Every development mail: the rules read back (their trie's edges sorted, the
        // n-gram table in ten-thousandths) decide and explain as the ones just built.
        let seen = crate::triage::each_dev_mail(|path, input| {
            let (a, b) = (second.classify_mail(input), expected.classify_mail(input));
            assert_eq!(
                (&a.category, a.urgency, &a.reasons),
                (&b.category, b.urgency, &b.reasons),
                "{}",
                path.display()
            );
        });
        assert!(seen > 50, "{seen} mails");
        assert_eq!(second.categories().len(), expected.categories().len());
        assert_eq!(second.default_urgency(), expected.default_urgency());
    }

    #[test]
    fn other_rules_do_not_read_the_file_of_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let built = Cell::new(0);
        load_with(RULES, WEIGHTS, dir.path(), &built).unwrap();
        // The same rules with one pattern changed: another key, so built afresh.
        let changed = RULES.replacen("\"covering\"", "\"kovering\"", 1);
        assert_ne!(changed, RULES);
        let r = load_with(&changed, WEIGHTS, dir.path(), &built).unwrap();
        assert_eq!(built.get(), 2);
        same_answers(&r, &fresh(&changed, WEIGHTS).unwrap().0);
        // ... and the file is now theirs.
        load_with(&changed, WEIGHTS, dir.path(), &built).unwrap();
        assert_eq!(built.get(), 2);
    }

    #[test]
    fn other_weights_rebuild_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let built = Cell::new(0);
        let first = load_with(RULES, WEIGHTS, dir.path(), &built).unwrap();
        // Retrained weights: the same rules text, another weights text.
        let bias = WEIGHTS.find("\nbias = ").unwrap() + 1;
        let end = bias + WEIGHTS[bias..].find('\n').unwrap();
        // The same length: a file's text is hashed, not measured.
        let line = &WEIGHTS[bias..end];
        let last = if line.ends_with('1') { "2" } else { "1" };
        let other: &'static str = Box::leak(
            format!(
                "{}{}{last}{}",
                &WEIGHTS[..bias],
                &line[..line.len() - 1],
                &WEIGHTS[end..]
            )
            .into_boxed_str(),
        );
        assert_ne!(other, WEIGHTS);
        assert_eq!(other.len(), WEIGHTS.len());
        let second = load_with(RULES, other, dir.path(), &built).unwrap();
        assert_eq!(built.get(), 2, "weights that changed are read again");
        let (expected, _) = fresh(RULES, other).unwrap();
        assert_eq!(second.weights(), expected.weights());
        same_answers(&second, &expected);
        // The built-in text (borrowed: part of this executable, which the file's key names)
        // is keyed by its length, and never taken for a file's text.
        let builtin = weights_key(&Cow::Borrowed(WEIGHTS));
        assert_eq!(builtin, weights_key(&Cow::Borrowed(WEIGHTS)));
        assert_ne!(builtin, weights_key(&Cow::Owned(WEIGHTS.to_string())));
        // A retrained built-in text of the same length (its bias changed) is another key.
        assert_ne!(builtin, weights_key(&Cow::Borrowed(other)));
        assert!(first.weights().is_some());
        // A weights file that can no longer be read: built again, and its error is the build's.
        let failed = load(
            RULES,
            dir.path(),
            |_| Err("cannot read".to_string()),
            || Err::<(Rules, Option<Cow<'static, str>>), _>("cannot read the weights".to_string()),
        );
        assert_eq!(failed.unwrap_err(), "cannot read the weights");
    }

    #[test]
    fn a_damaged_or_foreign_file_is_replaced_and_bad_rules_still_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let built = Cell::new(0);
        for junk in [&b""[..], b"\x01\x02garbage", &[0xff; 64]] {
            std::fs::write(&path, junk).unwrap();
            let before = built.get();
            let r = load_with(RULES, WEIGHTS, dir.path(), &built).unwrap();
            assert_eq!(built.get(), before + 1);
            same_answers(&r, &fresh(RULES, WEIGHTS).unwrap().0);
            load_with(RULES, WEIGHTS, dir.path(), &built).unwrap();
            assert_eq!(built.get(), before + 1, "rewritten");
        }
        // Broken rules are reported as without a cache, and leave the file alone.
        let broken = format!("{RULES}\n[[rule]]\nid = \"x\"\n");
        let e = load_with(&broken, WEIGHTS, dir.path(), &built).unwrap_err();
        assert!(e.contains("triage.toml"), "{e}");
        let before = built.get();
        load_with(RULES, WEIGHTS, dir.path(), &built).unwrap();
        assert_eq!(built.get(), before, "the good rules' file is still there");
    }

    #[test]
    fn an_unwritable_directory_only_costs_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir");
        let built = Cell::new(0);
        let r = load_with(RULES, WEIGHTS, &missing, &built).unwrap();
        assert!(!missing.join(FILE_NAME).exists());
        assert!(!r.categories().is_empty());
    }
}
