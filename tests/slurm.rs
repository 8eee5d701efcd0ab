//! On a real Slurm: `scripts/slurm-local` starts a single-node slurmctld +
//! slurmd on this machine (installing Debian's slurm-wlm and munge when
//! missing), then the small survey goes through ingest, features, fit,
//! score and merge as sbatch array jobs chained with afterok, and the merged
//! ranking must equal a single-machine run. Skipped, saying why, only when
//! this machine cannot run slurmd.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::pipeline::{ok, sliced_survey};

/// Starts the local Slurm; Err(why) when slurmd cannot run here.
fn slurm_up() -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local");
    let out = std::process::Command::new(&script).output().map_err(|e| format!("{}: {e}", script.display()))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
}

#[test]
fn the_survey_through_slurm_array_jobs_ranks_as_one_machine() {
    if let Err(why) = slurm_up() {
        println!("SKIPPED tests/slurm.rs: Slurm cannot run on this machine: {why}");
        eprintln!("SKIPPED tests/slurm.rs: Slurm cannot run on this machine: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let survey = sliced_survey(dir.path(), 1200);
    let sv = survey.as_str();
    let single = dir.path().join("single");
    let s = single.to_str().unwrap();
    ok(&["--store", s, "ingest", sv]);
    ok(&["--store", s, "crossmatch"]);
    ok(&["--store", s, "features"]);
    ok(&["--store", s, "score", "--seed", "5"]);

    let project = dir.path().join("project");
    let p = project.to_str().unwrap();
    let shards = dir.path().join("shards");
    let out = ok(&[
        "--store",
        p,
        "slurm",
        "all",
        sv,
        "-n",
        "3",
        "--shards",
        shards.to_str().unwrap(),
        "--seed",
        "5",
        "--cpus",
        "1",
    ]);
    assert!(out.contains("submitted ingest        array of 3"), "{out}");
    assert!(out.contains("submitted merge-scores"), "{out}");

    // Wait for the last job: status reads squeue and the task markers.
    let started = Instant::now();
    let status = loop {
        // While a merge or fit job holds the store, status shows the jobs only.
        let status = ok(&["--store", p, "status"]);
        let last = status.lines().find(|l| l.contains("merge-scores")).unwrap_or_default().to_string();
        if last.contains("1 done") || status.contains("failed") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(170), "jobs did not finish in time:\n{status}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(!status.contains("failed"), "{status}\n{}", logs(&shards));
    let status = ok(&["--store", p, "status"]);
    assert!(status.contains("jobs      slurm stage `all`"), "{status}");
    for job in ["ingest", "apply"] {
        assert!(
            status.lines().any(|l| l.contains(&format!("jobs      {job} ")) && l.contains("array of 3   3 done")),
            "{job}: {status}"
        );
    }
    let top = |store: &str| ok(&["--store", store, "top", "5000", "--tsv"]);
    let merged = top(p);
    assert_eq!(merged.lines().count(), 1 + 1200, "{merged}");
    assert_eq!(merged, top(s), "Slurm-merged and single-machine rankings differ");
    let t = ok(&["--store", p, "slurm", "retry"]);
    assert!(t.contains("nothing to retry"), "{t}");
}

fn logs(shards: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(shards.join("logs")).into_iter().flatten().flatten() {
        out.push_str(&format!("--- {}\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default()));
    }
    out
}
