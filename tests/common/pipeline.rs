//! A small scored store, made once per test binary run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use super::{run, text};

/// synth → ingest → crossmatch → features → score into `dir/store`.
pub fn scored_store(dir: &Path, galaxies: usize) -> PathBuf {
    let n = galaxies.to_string();
    scored_store_with(
        dir,
        &["--galaxies", &n, "--size", "32", "--nside", "32", "--spectra", "0.3", "--anomalies", "0.05"],
    )
}

/// The same with the synthetic survey made by `synth OUT <synth_args>`.
pub fn scored_store_with(dir: &Path, synth_args: &[&str]) -> PathBuf {
    let survey = dir.join("survey");
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    let mut synth = vec!["synth", survey.to_str().unwrap()];
    synth.extend_from_slice(synth_args);
    for args in [
        synth,
        vec!["--store", s, "ingest", survey.to_str().unwrap()],
        vec!["--store", s, "crossmatch"],
        vec!["--store", s, "features"],
        vec!["--store", s, "score"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    store
}
