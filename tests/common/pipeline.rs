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

/// Runs oddity with `args`, which must succeed; its stdout and stderr.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

/// A small demo-like survey of `galaxies` over several HEALPix partitions
/// (what the shard and Slurm tests slice), written to `dir/survey`.
pub fn sliced_survey(dir: &Path, galaxies: usize) -> String {
    let survey = dir.join("survey");
    let s = survey.to_str().unwrap().to_string();
    let n = galaxies.to_string();
    ok(&["synth", &s, "--galaxies", &n, "--size", "32", "--nside", "16", "--spectra", "0.2", "--anomalies", "0.02"]);
    s
}

/// (id, kind, interesting) rows of a synthetic survey's truth.csv.
pub fn truth_rows(survey: &Path) -> Vec<(String, String, bool)> {
    std::fs::read_to_string(survey.join("truth.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[2].to_string(), f[3] == "1")
        })
        .collect()
}
