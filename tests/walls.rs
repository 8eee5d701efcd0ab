//! The walls between modules, read from the sources: the store depends on no
//! stage above it, only the command line knows clap, and only the
//! `oddity-learn` binary's modules know libtorch.

use std::path::Path;

/// (path under src/, text) of every Rust source under `dir`.
fn sources(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    walkdir::WalkDir::new(root.join(dir))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| {
            let rel = e.path().strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect()
}

/// Whether `text` holds `word` not preceded by part of an identifier
/// (`tch::` is libtorch, `Stretch::` is not).
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word)
        .any(|(i, _)| !text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'))
}

/// Files under `dir` (except those `allowed`) that mention any of `needles`.
fn offenders(dir: &str, needles: &[&str], allowed: &[&str]) -> Vec<String> {
    sources(dir)
        .into_iter()
        .filter(|(rel, _)| !allowed.iter().any(|a| rel.starts_with(a)))
        .filter_map(|(rel, text)| {
            let hits: Vec<&str> = needles.iter().copied().filter(|n| mentions(&text, n)).collect();
            (!hits.is_empty()).then(|| format!("{rel}: {hits:?}"))
        })
        .collect()
}

#[test]
fn the_store_uses_no_stage_above_it() {
    let above = ["crate::features", "crate::ingest", "crate::detect", "crate::sky", "crate::render", "crate::tui"];
    let more = ["crate::cmd", "crate::cli", "crate::synth", "crate::learn", "crate::eval"];
    let found = offenders("store", &[&above[..], &more[..]].concat(), &[]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn only_the_command_line_knows_clap() {
    let found = offenders("", &["clap"], &["cli.rs", "cmd/", "main.rs", "bin/"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn only_oddity_learn_modules_know_libtorch() {
    let found = offenders(
        "",
        &["tch::", "torch_sys"],
        &["learn/", "eval/", "bin/oddity-learn.rs", "cmd/learn.rs", "cmd/eval.rs"],
    );
    assert!(found.is_empty(), "{found:#?}");
}
