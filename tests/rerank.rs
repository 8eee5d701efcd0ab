//! Active-learning re-rank: after the expert labels some anomalies, the
//! unlabelled objects like the ones they liked rise and artefacts like the
//! ones they rejected sink (measured on the synthetic survey's truth).

mod common;

use std::collections::HashMap;

use common::*;
use oddity::store::{LabelEvent, LabelValue, Store};

#[test]
fn labels_move_similar_unlabelled_objects() {
    let dir = tempfile::tempdir().unwrap();
    let survey = dir.path().join("survey");
    let store_path = common::pipeline::scored_store_with(
        dir.path(),
        &["--galaxies", "900", "--size", "48", "--nside", "32", "--anomalies", "0.1", "--seed", "7"],
    );
    let s = store_path.to_str().unwrap();
    let truth: HashMap<String, String> =
        common::pipeline::truth_rows(&survey).into_iter().map(|(id, kind, _)| (id, kind)).collect();
    let ranks = |store: &Store| -> HashMap<String, usize> {
        store.ranked().unwrap().enumerate().map(|(i, r)| (store.object(r.unwrap().0).unwrap().unwrap().id, i)).collect()
    };
    let store = Store::open(&store_path).unwrap();
    let before = ranks(&store);
    // The expert labels half of each kind: interesting ones 5, trails 0.
    let mut held_out: Vec<(String, String)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ids: Vec<&String> = truth.keys().collect();
    ids.sort();
    for id in ids {
        let kind = &truth[id];
        if kind == "normal" {
            continue;
        }
        let n = seen.entry(kind.clone()).or_default();
        *n += 1;
        if (*n).is_multiple_of(2) {
            held_out.push((id.clone(), kind.clone()));
            continue;
        }
        let value = if kind == "trail" { LabelValue::Relevance(0) } else { LabelValue::Relevance(5) };
        store
            .append_label(&LabelEvent {
                object: store.find_id("hsc", id).unwrap().unwrap(),
                value,
                tags: vec![],
                user: "expert".into(),
                time: "t".into(),
                session: "s".into(),
            })
            .unwrap();
    }
    drop(store);
    let out = run(&["--store", s, "score"]);
    assert!(out.status.success() && text(&out).contains("re-ranked with the expert's relevance"), "{}", text(&out));
    let store = Store::open(&store_path).unwrap();
    assert!(store.current_scores().unwrap().unwrap().method.contains("relevance re-rank"));
    let after = ranks(&store);
    let mean = |ranks: &HashMap<String, usize>, trail: bool| {
        let v: Vec<f64> =
            held_out.iter().filter(|(_, k)| (k == "trail") == trail).map(|(id, _)| ranks[id] as f64).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (interesting_before, interesting_after) = (mean(&before, false), mean(&after, false));
    let (trail_before, trail_after) = (mean(&before, true), mean(&after, true));
    eprintln!(
        "held-out interesting mean rank {interesting_before:.0} -> {interesting_after:.0}; trails {trail_before:.0} -> {trail_after:.0}"
    );
    assert!(
        interesting_after < interesting_before,
        "interesting objects rise: {interesting_before} -> {interesting_after}"
    );
    assert!(trail_after > trail_before, "artefacts sink: {trail_before} -> {trail_after}");
    // --no-rerank gives the plain anomaly ranking back.
    drop(store);
    assert!(run(&["--store", s, "score", "--no-rerank"]).status.success());
    let store = Store::open(&store_path).unwrap();
    assert_eq!(ranks(&store), before);
}
