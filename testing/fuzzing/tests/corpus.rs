//! Every committed corpus file of every fuzz target (`fuzz/corpus/<target>/`), through the
//! target's body: the targets keep compiling with the workspace, and what the fuzzer found
//! interesting keeps being run by the normal suite. Regression inputs of crashes found live in
//! the same corpora (named `crash-*`).
//!
//! `OVNET_WRITE_SEEDS=1 cargo test -p ovnet-fuzzing --test corpus` (re)writes the hand-made
//! seed inputs (`seed-*`) the corpora started from; see `seeds` below.

use std::path::{Path, PathBuf};

use ovnet_fuzzing::TARGETS;

mod seeds;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_runs_through_its_target() {
    if std::env::var_os("OVNET_WRITE_SEEDS").is_some() {
        for (target, inputs) in seeds::all() {
            let dir = corpus_dir(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in inputs {
                std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
    }
    for (target, run) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 5,
            "corpus {} has {} files: a target needs a corpus",
            dir.display(),
            files.len()
        );
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            run(&bytes);
        }
        eprintln!("{target}: {} corpus files ran", files.len());
    }
}

#[test]
fn the_seeds_run_too() {
    for (target, inputs) in seeds::all() {
        let run = TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        for (name, bytes) in inputs {
            eprintln!("{target}/{name}");
            run(&bytes);
        }
    }
}
