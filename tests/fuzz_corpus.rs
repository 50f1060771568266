//! The fuzz corpora as regression tests: every file of
//! `fuzz/corpus/<target>/` through the body its target runs
//! (`tests/fuzz_bodies/`), on stable, without cargo-fuzz.

mod fuzz_bodies;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs `body` on every file of the target's corpus; fails naming each file
/// it panicked on.
fn replay(target: &str, body: impl Fn(&[u8])) {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: an empty corpus", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files fail (the panics are above):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

const TARGETS: &[&str] = &[
    "unit_syntax",
    "exec_split",
    "annotations",
    "store_scan",
    "config",
    "closure_cache",
    "generator",
];

#[test]
fn every_fuzz_target_has_a_corpus_replayed_here() {
    let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".rs").unwrap_or(&name).to_owned()
        })
        .collect();
    targets.sort();
    let mut replayed: Vec<&str> = TARGETS.to_vec();
    replayed.sort();
    assert_eq!(targets, replayed);
    for target in TARGETS {
        let source =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{target}.rs"))).unwrap();
        assert!(
            source.contains("tests/fuzz_bodies/mod.rs"),
            "fuzz/fuzz_targets/{target}.rs does not run the body in tests/fuzz_bodies"
        );
    }
}

#[test]
fn unit_syntax_corpus() {
    replay("unit_syntax", fuzz_bodies::unit_syntax);
}

#[test]
fn exec_split_corpus() {
    replay("exec_split", fuzz_bodies::exec_split);
}

#[test]
fn annotations_corpus() {
    replay("annotations", fuzz_bodies::annotations);
}

#[test]
fn store_scan_corpus() {
    replay("store_scan", fuzz_bodies::store_scan);
}

#[test]
fn config_corpus() {
    replay("config", fuzz_bodies::config);
}

#[test]
fn closure_cache_corpus() {
    replay("closure_cache", fuzz_bodies::closure_cache);
}

#[test]
fn generator_corpus() {
    let base = camino::Utf8PathBuf::from(format!(
        "{}/ncg-test-fuzz-generator-{}",
        std::env::temp_dir().display(),
        std::process::id()
    ));
    let root = fuzz_bodies::GeneratorRoot::new(base);
    replay("generator", |data| root.run(data));
}
