//! Replays every committed fuzz input on stable: `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`, through the same
//! `presence_server::fuzz_targets` functions libFuzzer runs, so the
//! properties they check hold in every `cargo test` without nightly.
//!
//! A test binary of its own: it needs nothing the `it` suite starts, and
//! stays fast (a few seconds).

use std::panic::catch_unwind;
use std::path::{Path, PathBuf};

use presence_server::fuzz_targets;

/// Every input of `target`, corpus first; a missing directory is empty.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// Runs every input, then fails naming each one whose property broke.
fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("readable fuzz input");
            catch_unwind(|| run(&data)).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: {failed:#?}");
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn client_message_corpus_holds() {
    replay("client_message", fuzz_targets::client_message);
}

#[test]
fn csv_import_corpus_holds() {
    replay("csv_import", fuzz_targets::csv_import);
}

#[test]
fn token_corpus_holds() {
    replay("token", fuzz_targets::token);
}

#[test]
fn frame_codec_corpus_holds() {
    replay("frame_codec", fuzz_targets::frame_codec);
}

#[test]
fn history_range_corpus_holds() {
    replay("history_range", fuzz_targets::history_range);
}

/// The corpus is committed: an empty one means the replay tests nothing.
#[test]
fn every_target_has_a_corpus() {
    for target in [
        "client_message",
        "csv_import",
        "token",
        "frame_codec",
        "history_range",
    ] {
        assert!(
            !inputs(target).is_empty(),
            "no committed input for {target}"
        );
    }
}
