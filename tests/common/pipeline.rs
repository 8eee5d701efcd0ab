//! A small scored store, made once per test binary run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use super::{run, text};

/// synth → ingest → crossmatch → features → score into `dir/store`.
pub fn scored_store(dir: &Path, galaxies: usize) -> PathBuf {
    let survey = dir.join("survey");
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    let n = galaxies.to_string();
    for args in [
        vec!["synth", survey.to_str().unwrap(), "--galaxies", &n, "--size", "32", "--nside", "32", "--spectra", "0.3", "--anomalies", "0.05"],
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
