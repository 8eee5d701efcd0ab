//! A retrain's challenger on trial, end to end through the labelling
//! screen: triage shows the team-draft interleaving of the current ranking
//! and the challenger, the expert labels what it shows, and a truly better
//! challenger wins its trial and becomes the ranking (`oddity status` says so).

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use common::screen::screen;
use common::*;
use oddity::retrain::trial::{self, TrialRules};
use oddity::store::{ObjectKey, ScoreVersion, Store};
use oddity::tui::app::App;
use oddity::tui::worker::Loader;
use oddity::tui::{Filter, Keymap, Ordering};

#[test]
fn a_truly_better_challenger_wins_its_trial_through_the_triage_screen() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = common::pipeline::scored_store_with(
        dir.path(),
        &["--galaxies", "300", "--size", "32", "--nside", "32", "--anomalies", "0.1", "--seed", "5"],
    );
    let s = store_path.to_str().unwrap();
    let truth: HashMap<String, bool> =
        common::pipeline::truth_rows(&dir.path().join("survey")).into_iter().map(|(id, _, y)| (id, y)).collect();
    let store = Store::open(&store_path).unwrap();
    let current = store.current_scores().unwrap().unwrap();
    let ranked: Vec<(ObjectKey, f32)> = store.ranked().unwrap().map(|r| r.unwrap()).collect();
    let good: std::collections::HashSet<ObjectKey> =
        ranked.iter().map(|r| r.0).filter(|&k| truth[&store.object(k).unwrap().unwrap().id]).collect();
    let interesting = |key: ObjectKey| good.contains(&key);
    // The challenger knows better: every interesting object above the rest,
    // each group in the forest's order.
    let better: Vec<(ObjectKey, f32)> =
        ranked.iter().map(|&(k, s)| (k, s.max(0.0) / 2.0 + if interesting(k) { 0.5 } else { 0.0 })).collect();
    let v = store.begin_scores().unwrap();
    store.put_scores(v, &better).unwrap();
    let challenger = ScoreVersion {
        version: v,
        models: vec![],
        method: "a better ranking".into(),
        time: String::new(),
        n_scored: better.len() as u64,
    };
    store.keep_scores(&challenger, "a retrain's candidate").unwrap();
    let rules = TrialRules { min_decisive: 10, cap: 200, level: 0.05 };
    trial::open(&store, current.version, &challenger, "cnn", rules, Some(current.version), vec![]).unwrap();
    drop(store);
    let status = text(&run(&["--store", s, "status"]));
    assert!(status.contains(&format!("trial     version {v} (cnn) against version {}", current.version)), "{status}");

    // The expert works through the default ordering for 40 objects.
    let store = Arc::new(Store::open(&store_path).unwrap());
    let mut app =
        App::new(store.clone(), Keymap::default_keys(), "tester".into(), Ordering::Score, Filter::Unlabelled).unwrap();
    let forest_top: Vec<ObjectKey> = ranked.iter().take(40).map(|r| r.0).collect();
    let mut shown = Vec::new();
    for i in 0..40 {
        let key = app.current().unwrap();
        // The info panel gives the place in the blind interleaving, not a
        // rank in the current ranking (nor which ranking picked it).
        let (place, _) = app.current_rank().unwrap();
        assert!(place.interleaved && place.n == i + 1, "{place:?} at {i}");
        if i == 2 {
            let mut loader = Loader::new(store.clone(), ratatui_image::picker::Picker::halfblocks());
            let screen = screen(&mut app, &mut loader, 160, 48);
            assert!(screen.contains("3rd in a trial's interleaving of two rankings"), "{screen}");
            assert!(!screen.contains("(score order)"), "{screen}");
        }
        shown.push(key);
        let c = if interesting(key) { 'a' } else { 'n' };
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)).unwrap();
    }
    assert_ne!(shown, forest_top, "the screen shows the interleaving, not the current ranking");
    let picks = store.picks_of_trial(1).unwrap();
    assert_eq!(picks.iter().take(40).map(|p| p.0).collect::<Vec<_>>(), shown, "every shown object was a pick");
    let by_challenger = picks.iter().take(40).filter(|p| p.1.challenger).count();
    assert_eq!(by_challenger, 20, "team draft: one pick each per round");
    let found = shown.iter().filter(|&&k| interesting(k)).count();
    let forest_found = forest_top.iter().filter(|&&k| interesting(k)).count();
    assert!(found > forest_found, "the expert finds more than in the current ranking: {found} vs {forest_found}");

    // Quitting the screen decides the trial (`oddity triage` does this when it holds the store).
    drop(app);
    let why = trial::decide(&store).unwrap().unwrap();
    eprintln!("{why}");
    assert!(why.starts_with(&format!("version {v} (cnn) won its trial ")), "{why}");
    assert_eq!(store.current_scores().unwrap().unwrap().version, v);
    drop(store);
    let status = text(&run(&["--store", s, "status"]));
    assert!(status.contains("last trial") && status.contains("won its trial"), "{status}");
}

/// Quitting `oddity triage` (which holds the store) decides the trial and
/// its summary says how it stands.
#[test]
fn quitting_triage_decides_the_trial_and_says_how_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = common::pipeline::scored_store(dir.path(), 60);
    {
        let store = Store::open(&store_path).unwrap();
        let current = store.current_scores().unwrap().unwrap();
        // The challenger ranks in reverse: the two teams never agree.
        let reverse: Vec<(ObjectKey, f32)> =
            store.ranked().unwrap().map(|r| r.unwrap()).map(|(k, s)| (k, -s)).collect();
        let v = store.begin_scores().unwrap();
        store.put_scores(v, &reverse).unwrap();
        let challenger =
            ScoreVersion { version: v, models: vec![], method: "reverse".into(), time: String::new(), n_scored: 60 };
        store.keep_scores(&challenger, "a retrain's candidate").unwrap();
        let rules = TrialRules { min_decisive: 4, cap: 200, level: 0.05 };
        trial::open(&store, current.version, &challenger, "cnn", rules, None, vec![]).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_oddity");
    let args =
        [bin, "--store", store_path.to_str().unwrap(), "triage", "--graphics", "halfblocks", "--on-quit", "never"];
    let t = common::tmux::Tmux::start("trial", 160, 48, &args, &[("TERM", "xterm-256color")]);
    t.wait_for("1 of ~", 20);
    // Everything shown is interesting: 4 picks each, 4-4.
    for i in 0..8 {
        t.keys(&["a"]);
        t.wait_for(&format!("{} of ~", i + 2), 10);
    }
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(10), 0);
    let out = t.wait_for("every label is saved", 10);
    assert!(out.contains("(cnn) stays on trial: 4-4 in 8 labelled picks"), "{out}");
}
