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
    // 3 cycles x (forest, re-rank), and from cycle 1 the retrain's two
    // candidates (the CNN, and the CNN rank-averaged with the re-rank): with
    // only anomalies labelled at cycle 0 there is nothing normal to learn from.
    assert_eq!(rows.len(), 3 * 2 + 2 * 2, "{csv}");
    assert!(rows.iter().any(|r| r[0] == "2" && r[1] == "cnn + re-rank"), "{csv}");
    assert!(!rows.iter().any(|r| r[0] == "0" && r[1] == "fixmatch-cnn"), "{csv}");
    assert!(rows.iter().any(|r| r[0] == "2" && r[1] == "fixmatch-cnn"), "{csv}");
    let cell = |cycle: &str, method: &str, column: usize| -> f64 {
        rows.iter().find(|r| r[0] == cycle && r[1] == method).unwrap_or_else(|| panic!("{cycle} {method}\n{csv}"))
            [column]
            .parse()
            .unwrap()
    };
    // The expert works through the re-ranked list: 5 start labels, then 30 a cycle.
    assert_eq!((cell("0", "re-rank hand", 2), cell("2", "re-rank hand", 2)), (5.0, 65.0), "{csv}");
    // Active learning: the second cycle's 30 labels find interesting objects
    // at a far higher rate than their ~7% share of the survey.
    let found = cell("2", "re-rank hand", 3) - cell("1", "re-rank hand", 3);
    assert!(found >= 8.0, "{found} interesting among the 30 shown in cycle 2:\n{t}");
    // Metrics cover only what the expert has not labelled: at cycle 0 the
    // rank of the interesting anomalies is among ~595 objects, not 600.
    assert!(cell("0", "forest hand", 8) < 595.0);
    // The curves as a PNG beside the CSV.
    let png = std::fs::read(out_dir.join("eval.png")).expect("eval.png written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture, {} bytes", png.len());
    // The real store got no simulated labels.
    let s = oddity::store::Store::open(&store).unwrap();
    assert_eq!(s.label_events().unwrap().len(), 0);
    assert!(t.contains("AUROC") && t.contains("fixmatch-cnn"), "{t}");
}
