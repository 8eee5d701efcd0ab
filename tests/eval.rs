//! `oddity eval`: the simulated-expert loop runs end to end on a small
//! survey, leaves the real store untouched, and improves over cycle 0.

mod common;

use common::*;

#[test]
fn the_simulated_expert_loop_improves_the_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store_with(
        dir.path(),
        &["--galaxies", "600", "--size", "32", "--nside", "32", "--anomalies", "0.08", "--seed", "11"],
    );
    let truth = dir.path().join("survey").join("truth.csv");
    let out_dir = dir.path().join("eval");
    let out = run(&[
        "--store",
        store.to_str().unwrap(),
        "eval",
        "--truth",
        truth.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--cycles",
        "2",
        "--per-cycle",
        "30",
        "--start",
        "5",
        "--recall-k",
        "60",
        "--cnn-steps",
        "20",
        "--threads",
        "1",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let csv = std::fs::read_to_string(out_dir.join("eval.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(|l| l.split(',').map(String::from).collect()).collect();
    // 3 cycles x 3 methods, less the CNN at cycle 0: with only anomalies
    // labelled there is nothing normal to learn from yet.
    assert_eq!(rows.len(), 3 * 3 - 1, "{csv}");
    assert!(!rows.iter().any(|r| r[0] == "0" && r[1] == "fixmatch-cnn"), "{csv}");
    assert!(rows.iter().any(|r| r[0] == "2" && r[1] == "fixmatch-cnn"), "{csv}");
    let auprc = |cycle: &str, method: &str| -> f64 {
        rows.iter().find(|r| r[0] == cycle && r[1] == method).unwrap_or_else(|| panic!("{cycle} {method}\n{csv}"))[4]
            .parse()
            .unwrap()
    };
    assert!(auprc("2", "forest+re-rank") > auprc("0", "forest+re-rank"), "active learning improves AUPRC:\n{t}");
    // The forest alone does not learn from labels: the same every cycle.
    assert_eq!(auprc("0", "isolation-forest"), auprc("2", "isolation-forest"));
    // The curves as a PNG beside the CSV.
    let png = std::fs::read(out_dir.join("eval.png")).expect("eval.png written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture, {} bytes", png.len());
    // The real store got no simulated labels.
    let s = oddity::store::Store::open(&store).unwrap();
    assert_eq!(s.label_events().unwrap().len(), 0);
    assert!(t.contains("AUROC") && t.contains("fixmatch-cnn"), "{t}");
}
