//! Shards, `oddity merge` and `oddity slurm --local`: the merged ranking is
//! the single-machine ranking, merging twice changes nothing, a missing or
//! unfinished shard is named and the rest merged, and a retry reruns only
//! the failed task.

mod common;

use std::path::Path;

use common::pipeline::{ok, sliced_survey};
use common::*;

fn top(store: &str) -> String {
    let out = ok(&["--store", store, "top", "5000", "--tsv"]);
    assert!(out.lines().count() > 1000, "{out}");
    out
}

#[test]
fn the_merged_ranking_is_the_single_machine_ranking_and_a_second_merge_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let survey = sliced_survey(dir.path(), 1500);
    // One machine, the forests fitted on a sample of 700 rows per group.
    let single = dir.path().join("single");
    let s = single.to_str().unwrap();
    ok(&["--store", s, "ingest", &survey]);
    ok(&["--store", s, "crossmatch"]);
    ok(&["--store", s, "features"]);
    ok(&["--store", s, "score", "--seed", "7", "--fit-sample", "700"]);

    // Three slices through the Slurm scripts run as two local processes.
    let project = dir.path().join("project");
    let p = project.to_str().unwrap();
    let shards = dir.path().join("shards");
    let out = ok(&[
        "--store",
        p,
        "slurm",
        "all",
        &survey,
        "--slices",
        "3",
        "--shards",
        shards.to_str().unwrap(),
        "--seed",
        "7",
        "--fit-sample",
        "700",
        "--local",
        "2",
    ]);
    assert!(out.contains("ran `all` as 5 local jobs"), "{out}");
    let merge_log = std::fs::read_to_string(shards.join("logs/merge-scores.log")).unwrap();
    assert!(merge_log.contains("ranked 1500 objects from the shards' scores"), "{merge_log}");
    assert!(!merge_log.contains("computed here"), "every forest score came from a shard: {merge_log}");
    // The pages the merge freed went back to the disk.
    assert!(merge_log.contains("compacted the store file"), "{merge_log}");
    // Every shard numbered its files from 1: the merge kept all objects apart.
    let ranking = top(p);
    assert_eq!(ranking.lines().count(), 1 + 1500);
    assert_eq!(ranking, top(s), "merged and single-machine rankings differ");

    // Merging the same shards again changes nothing: no new score version.
    let list: Vec<String> = (0..3).map(|i| shards.join(format!("shard-{i:04}")).display().to_string()).collect();
    let mut args = vec!["--store", p, "merge"];
    args.extend(list.iter().map(String::as_str));
    let again = ok(&args);
    assert!(again.contains("merged 0 shards") && again.contains("3 already merged"), "{again}");
    assert!(!again.contains("score version"), "{again}");
    assert!(!again.contains("compacted"), "nothing merged, nothing to give back: {again}");
    assert_eq!(top(p), ranking);
    let status = ok(&["--store", p, "status"]);
    assert!(status.contains("shards    3 merged"), "{status}");
    assert!(status.contains("apply         local      array of 3   3 done"), "{status}");
    assert!(status.contains("version 1 "), "{status}");
}

#[test]
fn a_missing_or_unfinished_shard_is_named_and_the_rest_merged() {
    let dir = tempfile::tempdir().unwrap();
    let survey = sliced_survey(dir.path(), 1500);
    let shard = |i: usize| dir.path().join(format!("shard-{i}")).display().to_string();
    for i in 0..2 {
        ok(&["--store", &shard(i), "ingest", "--slice", &format!("{i}/2"), &survey]);
    }
    ok(&["--store", &shard(0), "features"]);
    let project = dir.path().join("project");
    let p = project.to_str().unwrap();
    let out = run(&["--store", p, "merge", &shard(0), &shard(1), &shard(9)]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("merged 1 shards") && t.contains("2 failed"), "{t}");
    assert!(t.contains(&format!("error: shard {}: no features for", shard(1))), "{t}");
    assert!(t.contains(&format!("error: shard {}: missing", shard(9))), "{t}");
    // Once its features are there, the unfinished shard merges; the other stays merged.
    ok(&["--store", &shard(1), "features"]);
    let t = ok(&["--store", p, "merge", &shard(0), &shard(1)]);
    assert!(t.contains("merged 1 shards") && t.contains("1 already merged"), "{t}");
    let status = ok(&["--store", p, "status"]);
    assert!(status.contains("1,500 images"), "{status}");
    // A bad slice is one line naming it.
    let out = run(&["--store", &shard(5), "ingest", "--slice", "2/2", &survey]);
    assert!(text(&out).contains("slice `2/2`: expected I/N with 0 <= I < N"), "{}", text(&out));
}

#[test]
fn retry_reruns_only_the_failed_task_and_what_depends_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let survey = sliced_survey(dir.path(), 1500);
    let project = dir.path().join("project");
    let p = project.to_str().unwrap();
    let shards = dir.path().join("shards");
    // Slice 1's shard folder is taken by something else: its task fails.
    let blocker = shards.join("shard-0001");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("notes.txt"), "mine").unwrap();
    let args =
        ["--store", p, "slurm", "ingest", &survey, "-n", "3", "--shards", shards.to_str().unwrap(), "--local", "2"];
    let out = run(&args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("job ingest: task(s) 1 failed"), "{t}");
    let status = ok(&["--store", p, "status"]);
    assert!(status.contains("2 done, 1 failed  (failed: 1; `oddity slurm retry`)"), "{status}");
    assert!(status.contains("merge-ingest  -          job          1 not run"), "{status}");

    std::fs::remove_dir_all(&blocker).unwrap();
    let log0 = shards.join("logs/ingest-0.log");
    let before = std::fs::metadata(&log0).unwrap().modified().unwrap();
    let t = ok(&["--store", p, "slurm", "retry", "--local", "2"]);
    assert!(t.contains("retrying ingest tasks 1, then merge-ingest"), "{t}");
    assert_eq!(std::fs::metadata(&log0).unwrap().modified().unwrap(), before, "task 0 did not run again");
    let status = ok(&["--store", p, "status"]);
    assert!(
        status.contains("1,500 images") && status.contains("ingest        local      array of 3   3 done"),
        "{status}"
    );
    let t = ok(&["--store", p, "slurm", "retry", "--local", "2"]);
    assert!(t.contains("nothing to retry"), "{t}");
}

#[test]
fn scripts_follow_the_profile_and_flags_and_no_slurm_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let p = project.to_str().unwrap();
    let profile = dir.path().join("cluster.toml");
    std::fs::write(&profile, "partition = \"short\"\ncpus = 4\nmem = \"8G\"\nextra = [\"--qos=low\"]\n").unwrap();
    let shards = dir.path().join("sh");
    let out = ok(&[
        "--store",
        p,
        "slurm",
        "score",
        "-n",
        "4",
        "--shards",
        shards.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
        "--cpus",
        "2",
        "--dry-run",
    ]);
    assert!(out.contains("--dependency=afterok:<fit>") && out.contains("apply.sbatch"), "{out}");
    let apply = std::fs::read_to_string(shards.join("slurm/apply.sbatch")).unwrap();
    for want in ["#SBATCH --array=0-3", "#SBATCH --partition=short", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=8G"] {
        assert!(apply.contains(want), "{want} in {apply}");
    }
    assert!(apply.contains("#SBATCH --qos=low") && apply.contains("score --apply"), "{apply}");
    // A typo in the profile names the file and the key.
    std::fs::write(&profile, "partitoin = \"short\"\n").unwrap();
    let out = run(&["--store", p, "slurm", "score", "-n", "2", "--profile", profile.to_str().unwrap(), "--dry-run"]);
    assert!(text(&out).contains("cluster.toml") && text(&out).contains("partitoin"), "{}", text(&out));
    // Without Slurm: one line saying so, nothing hangs.
    let mut cmd = oddity();
    cmd.env("PATH", "/nonexistent").args([
        "--store",
        p,
        "slurm",
        "score",
        "-n",
        "2",
        "--shards",
        shards.to_str().unwrap(),
    ]);
    let out = spawn(cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()))
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("sbatch: not installed"), "{}", text(&out));
}

/// Every object's deep features in a store, by (survey, object id).
fn embeddings(store: &Path) -> std::collections::BTreeMap<(String, String), Vec<f32>> {
    let s = oddity::store::Store::open(store).unwrap();
    s.iter_embeddings()
        .map(|item| {
            let (key, e) = item.unwrap();
            let obj = s.object(key).unwrap().unwrap();
            ((obj.survey, obj.id), e)
        })
        .collect()
}

#[test]
fn shards_embedded_with_the_project_projection_merge_to_the_single_machine_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let survey = sliced_survey(dir.path(), 1500);
    // A small backbone, pretrained the same way (one thread: the same weights) in each store.
    let pretrain = |store: &str| {
        let args = ["--classes", "3", "--images-per-class", "4", "--size", "32", "--epochs", "1", "--batch", "8"];
        ok(&[&["--store", store, "pretrain", "--threads", "1"][..], &args[..]].concat());
    };
    let fit = ["embed", "--fit-only", "--seed", "3", "--fit-sample", "300", "--threads", "1"];
    // One machine: the projection fitted on a hash-drawn sample, then applied.
    let single = dir.path().join("single");
    let s = single.to_str().unwrap();
    ok(&["--store", s, "ingest", &survey]);
    pretrain(s);
    let out = ok(&[&["--store", s][..], &fit[..]].concat());
    assert!(out.contains("fitted the projection") && out.contains("300 cutouts"), "{out}");
    assert!(out.contains("embed --apply"), "{out}");
    ok(&["--store", s, "embed", "--apply", s, "--threads", "1"]);

    // Two shards through the Slurm scripts run locally: ingest + features,
    // merged; then the projection fitted in the project, applied in each
    // shard (`embed --apply`), and the shards merged again.
    let project = dir.path().join("project");
    let p = project.to_str().unwrap();
    let shards = dir.path().join("shards");
    let sh = shards.to_str().unwrap();
    let shard = |i: usize| shards.join(format!("shard-{i:04}")).display().to_string();
    ok(&["--store", p, "slurm", "ingest", &survey, "-n", "2", "--shards", sh, "--local", "2"]);
    pretrain(p);
    let run_embed = ["--seed", "3", "--embed-sample", "300", "--cpus", "1", "--local", "2"];
    let out = ok(&[&["--store", p, "slurm", "embed", "-n", "2", "--shards", sh][..], &run_embed[..]].concat());
    assert!(out.contains("ran `embed` as 3 local jobs"), "{out}");
    let script = std::fs::read_to_string(shards.join("slurm/embed.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-1") && script.contains("embed --apply"), "{script}");
    let fit_log = std::fs::read_to_string(shards.join("logs/embed-fit.log")).unwrap();
    assert!(fit_log.contains("fitted the projection") && fit_log.contains("300 cutouts"), "{fit_log}");
    let merge_log = std::fs::read_to_string(shards.join("logs/merge-embed.log")).unwrap();
    assert!(merge_log.contains("merged 2 shards") && merge_log.contains(" deep features"), "{merge_log}");
    let status = ok(&["--store", p, "status"]);
    assert!(status.contains("embed         local      array of 2   2 done"), "{status}");
    let (want, got) = (embeddings(&single), embeddings(&project));
    assert_eq!(want.len(), 1500);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    let worst = want.iter().map(|(k, w)| w.iter().zip(&got[k]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max));
    let worst = worst.fold(0.0f32, f32::max);
    eprintln!("merged vs single-machine embeddings: largest difference {worst}");
    assert!(worst <= 1e-5, "merged embeddings differ from one machine's by up to {worst}");
    let single_schema = oddity::store::Store::open(&single).unwrap().embedding_schema("hsc").unwrap();
    assert!(single_schema.is_some());
    assert_eq!(oddity::store::Store::open(&project).unwrap().embedding_schema("hsc").unwrap(), single_schema);
    // Merging again changes nothing.
    let again = ok(&["--store", p, "merge", &shard(0), &shard(1)]);
    assert!(again.contains("merged 0 shards") && again.contains("2 already merged"), "{again}");

    // Forests on hand-made and deep features, fitted once and applied in the
    // shards, the deep group included: the merged ranking is one machine's.
    ok(&["--store", s, "crossmatch"]);
    ok(&["--store", s, "features"]);
    let forests = ["--features", "both", "--seed", "7", "--fit-sample", "700"];
    ok(&[&["--store", s, "score"][..], &forests[..]].concat());
    ok(&[&["--store", p, "score", "--fit-only"][..], &forests[..]].concat());
    for i in 0..2 {
        let out = ok(&["--store", &shard(i), "score", "--apply", p]);
        assert!(!out.contains("scored at the merge"), "{out}");
    }
    let out = ok(&["--store", p, "merge", &shard(0), &shard(1)]);
    assert!(out.contains("ranked 1500 objects") && !out.contains("computed here"), "{out}");
    assert_eq!(top(p), top(s), "merged and single-machine rankings on hand-made + deep features differ");

    // The project fits another projection: a shard still holding the old one's
    // features is refused, named in one line, until it applies the new one.
    ok(&["--store", p, "embed", "--fit-only", "--seed", "4", "--components", "3", "--fit-sample", "300"]);
    let out = run(&["--store", p, "merge", &shard(0)]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = t.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(line.starts_with(&format!("error: shard {}: its deep features come from projection ", shard(0))), "{t}");
    assert!(line.contains("embed --apply"), "{t}");
    ok(&["--store", &shard(0), "embed", "--apply", p, "--threads", "1"]);
    let t = ok(&["--store", p, "merge", &shard(0)]);
    assert!(t.contains("merged 1 shards") && t.contains(" deep features") && !t.contains(" 0 deep features"), "{t}");
}
