//! Every input the fuzzers found (a crash, or over 100 ms), replayed through the very code the
//! fuzz target runs (`fuzz/src/lib.rs`, included here by path): `tests/fixtures/fuzz/TARGET/*`.
//! Each must now run without panicking, within a generous bound (this is a debug build; the
//! fuzzer's 100 ms are in release). The fuzzers' seeds are replayed too, so the harness itself
//! is tested with every `cargo test`.

// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Debug build, shared CPU: "no longer minutes", not a benchmark.
const BOUND: Duration = Duration::from_secs(5);

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str, world: &fuzz::World, inputs: &[PathBuf]) {
    for path in inputs {
        let data = std::fs::read(path).expect("read input");
        let started = Instant::now();
        fuzz::run(target, world, &data);
        let took = started.elapsed();
        assert!(took < BOUND, "{target}: {} took {took:?}", path.display());
    }
}

#[test]
fn fuzz_findings_and_seeds_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let world = fuzz::World::new();
    let mut replayed = 0;
    for target in fuzz::TARGETS {
        let mut inputs = files(&root.join("tests/fixtures/fuzz").join(target));
        inputs.extend(files(&root.join("fuzz/seeds").join(target)));
        replay(target, &world, &inputs);
        replayed += inputs.len();
    }
    // The pipeline target's seeds are the mail fixtures.
    let mail: Vec<PathBuf> = ["golden", "mail", "agents"]
        .iter()
        .flat_map(|d| files(&root.join("tests/fixtures").join(d)))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    assert!(!mail.is_empty());
    replay("pipeline", &world, &mail);
    assert!(replayed > 10, "the seeds are there: {replayed}");
}
