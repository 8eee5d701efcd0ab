//! `oddity score` and `oddity top`: a new ranking becomes current only when
//! complete; a crash half-way leaves the previous one intact.

mod common;

use common::*;
use oddity::store::Store;

fn prepared_store(dir: &std::path::Path) -> std::path::PathBuf {
    let survey = dir.join("survey");
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    for args in [
        vec![
            "synth",
            survey.to_str().unwrap(),
            "--galaxies",
            "300",
            "--size",
            "32",
            "--nside",
            "32",
            "--anomalies",
            "0.05",
        ],
        vec!["--store", s, "ingest", survey.to_str().unwrap()],
        vec!["--store", s, "crossmatch"],
        vec!["--store", s, "features"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    store
}

fn top(store: &str) -> String {
    let out = run(&["--store", store, "top", "300", "--tsv"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_crash_mid_score_keeps_the_previous_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let store = prepared_store(dir.path());
    let s = store.to_str().unwrap();
    let out = run(&["--store", s, "score", "--seed", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("scored 300 objects as score version 1"), "{}", text(&out));
    let before = top(s);
    assert_eq!(before.lines().count(), 301);

    // A second scoring with another seed dies after two of its six batches.
    let out = run(&["--store", s, "score", "--seed", "2", "--write-batch", "50", "--crash-after-batches", "2"]);
    assert!(!out.status.success(), "the crash hook aborts the process");
    assert_eq!(top(s), before, "the old ranking is intact after the crash");
    {
        let st = Store::open(&store).unwrap();
        assert_eq!(st.current_scores().unwrap().unwrap().version, 1);
        assert_eq!(st.all_scores().unwrap().len(), 300);
    }

    // The next complete run replaces it and leaves no debris behind.
    let out = run(&["--store", s, "score", "--seed", "2", "--write-batch", "50"]);
    assert!(out.status.success(), "{}", text(&out));
    let after = top(s);
    assert_ne!(after, before, "another seed gives another ranking");
    let st = Store::open(&store).unwrap();
    let current = st.current_scores().unwrap().unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(st.all_scores().unwrap().len(), 300);
    assert_eq!(st.ranked().unwrap().count(), 300, "one index entry per object, no leftovers");
    let model = st.model(current.models[0]).unwrap().unwrap();
    assert_eq!(model.kind, "isolation-forest");
    assert_eq!(model.features, st.feature_schema("hsc").unwrap().unwrap().names);
    let forest = oddity::detect::load_forest(&model).expect("stored model decodes");
    assert_eq!(forest.forest.n_trees(), 200);
}

#[test]
fn ranking_streams_most_anomalous_first_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let store = prepared_store(dir.path());
    let s = store.to_str().unwrap();
    assert!(run(&["--store", s, "score"]).status.success());
    let first = top(s);
    let scores: Vec<f64> = first.lines().skip(1).map(|l| l.split('\t').nth(5).unwrap().parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "descending");
    assert!(scores.iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert!(run(&["--store", s, "score"]).status.success());
    assert_eq!(top(s), first, "same seed, same ranking");
    let status = text(&run(&["--store", s, "status"]));
    assert!(status.contains("scores    300 objects, version 2 by isolation-forest"), "{status}");
}
