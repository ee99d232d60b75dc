//! Pure-core throughput: parse + quote stripping + classify of the triage corpus, one core.
//! `cargo bench --bench pipeline`; target ≥ 20,000 messages/s, measured with what a
//! deployment runs: the built-in rules with the shipped learned weights (`parse+classify`),
//! beside the rules alone (`parse+classify, rules alone`); `4kb/classify` uses the shipped
//! weights too (before 2026-12-06 it measured the rules alone). Also the triage set-up
//! from the rules' text (reading the rules, building the phrase trie, the first
//! classification; without the weights, target ≤ 5 ms): what a process pays when no
//! built-rules cache is there. A piped `supportd ingest -` normally reads the cache instead
//! (`scripts/bench-pipe` prints that set-up).

// Benchmark code: a missing fixture is a setup error worth a loud stop.
#![allow(clippy::expect_used)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use supportd::mail::parse::parse;
use supportd::mail::quote::strip_quotes;
use supportd::triage::Rules;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triage-dev");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("eml"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let mails = corpus();
    let rules = Rules::from_toml(supportd::setup::DEFAULT_RULES, "config/triage.toml")
        .expect("default rules");
    // What `supportd run` and `ingest` use with no rules file configured: the built-in rules
    // and the shipped weights they name.
    let shipped =
        supportd::setup::load_rules(&supportd::config::Config::default()).expect("shipped rules");
    let mut g = c.benchmark_group("triage-setup");
    g.bench_function("rules+automaton+first classify", |b| {
        b.iter(|| {
            let r = Rules::from_toml(supportd::setup::DEFAULT_RULES, "config/triage.toml")
                .expect("default rules");
            std::hint::black_box(r.classify("pages stuck", "Nobody can log in since 7."))
        })
    });
    g.bench_function("rules file read", |b| {
        b.iter(|| Rules::from_toml(supportd::setup::DEFAULT_RULES, "config/triage.toml"))
    });
    g.finish();
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(mails.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for raw in &mails {
                std::hint::black_box(parse(raw).ok());
            }
        })
    });
    for (name, r) in [
        ("parse+classify", &shipped),
        ("parse+classify, rules alone", &rules),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for raw in &mails {
                    if let Ok(m) = parse(raw) {
                        std::hint::black_box(r.classify(&m.subject, &strip_quotes(&m.body)));
                    }
                }
            })
        });
    }
    g.finish();

    // One generated ~4 KB customer mail of clinic vocabulary (the ingest bench's shape).
    let words = [
        "pager",
        "nurse",
        "physician",
        "schedule",
        "on-call",
        "console",
        "message",
        "routing",
        "login",
        "password",
        "invoice",
        "report",
        "unit",
        "ward",
        "clinic",
        "delayed",
        "queued",
    ];
    let mut body = String::new();
    let mut x: usize = 7;
    while body.len() < 3600 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        body.push_str(words[(x >> 33) % words.len()]);
        body.push(if (x >> 20).is_multiple_of(12) {
            '\n'
        } else {
            ' '
        });
    }
    let mut g = c.benchmark_group("4kb");
    g.throughput(Throughput::Elements(1));
    g.bench_function("strip_quotes", |b| {
        b.iter(|| strip_quotes(std::hint::black_box(&body)))
    });
    g.bench_function("classify", |b| {
        b.iter(|| shipped.classify("pager problem", std::hint::black_box(&body)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
