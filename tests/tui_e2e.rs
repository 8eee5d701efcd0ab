//! The triage screen as a person uses it: the real binary in tmux.

mod common;

use common::tmux::Tmux;
use oddity::store::{LabelValue, Store};

fn triage(name: &str, store: &std::path::Path, w: u16, h: u16) -> Tmux {
    let bin = env!("CARGO_BIN_EXE_oddity");
    Tmux::start(
        name,
        w,
        h,
        &[bin, "--store", store.to_str().unwrap(), "triage", "--graphics", "halfblocks"],
        &[("USER", "e2e-user"), ("TERM", "xterm-256color")],
    )
}

#[test]
fn label_next_undo_tag_resize_quit() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 100);
    let first_id = {
        let s = Store::open(&store).unwrap();
        let (k, _) = s.ranked().unwrap().next().unwrap().unwrap();
        s.object(k).unwrap().unwrap().id
    };
    let t = triage("main", &store, 200, 60);
    let screen = t.wait_for("1 of ~", 20);
    assert!(screen.contains("object") && screen.contains("spectrum"), "{screen}");
    t.wait_for(&first_id, 20);
    t.wait_for("score ", 20);

    t.keys(&["a"]);
    t.wait_for("saved ✓ anomaly", 10);
    t.wait_for("2 of ~", 10);
    t.keys(&["l"]);
    t.wait_for("3 of ~", 10);
    t.keys(&["u"]);
    t.wait_for("undone ✓", 10);
    let s = t.wait_for("1 of ~", 10);
    assert!(s.contains(&first_id), "undo goes back to the object: {s}");
    t.keys(&["t"]);
    t.wait_for("custom…", 10);
    t.keys(&["2"]);
    t.wait_for("saved ✓ tag ring", 10);

    // Tiny terminal: text only, no panic; and back.
    t.resize(40, 12);
    t.wait_for("enlarge to 60x16", 10);
    t.resize(200, 60);
    t.wait_for("spectrum", 10);
    t.keys(&["?"]);
    t.wait_for("label anomaly", 10);
    // Any key closes the help (a bare Escape followed at once by `q` could
    // reach the program as alt-q).
    t.keys(&["w"]);
    t.wait_until_gone("label anomaly", 10);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(10), 0);
    let out = t.wait_for("every label is saved", 10);
    assert!(out.contains("session: 1 labels") && out.contains("1 tag ring"), "{out}");

    let s = Store::open(&store).unwrap();
    let events = s.label_events().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    let first_key = s.find_id("hsc", &first_id).unwrap().unwrap();
    assert_eq!(events[0].1.value, LabelValue::Anomaly);
    assert_eq!(events[1].1.value, LabelValue::Retract(events[0].0));
    assert_eq!(events[2].1.value, LabelValue::Tag);
    assert_eq!(events[2].1.tags, vec!["ring".to_string()]);
    // The labeller is who runs the process ($USER is not asked).
    let me = oddity::serve::current_user();
    assert!(events.iter().all(|(_, e)| e.object == first_key && e.user == me), "{events:?}");
}

#[test]
fn a_label_shown_saved_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 60);
    let t = triage("kill", &store, 160, 48);
    t.wait_for("1 of ~", 20);
    t.keys(&["5"]);
    t.wait_for("saved ✓ relevance 5", 10);
    // Killed the moment the screen says saved: no chance to flush on exit.
    let pid = t.pid();
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    assert_eq!(t.wait_exit(10), 137, "killed by SIGKILL");
    let s = Store::open(&store).unwrap();
    let events = s.label_events().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.value, LabelValue::Relevance(5));
}

#[test]
fn no_colour_and_tiny_terminals_start_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 40);
    let bin = env!("CARGO_BIN_EXE_oddity");
    let t = Tmux::start(
        "tiny",
        40,
        12,
        &[bin, "--store", store.to_str().unwrap(), "triage", "--graphics", "halfblocks"],
        &[("NO_COLOR", "1"), ("TERM", "xterm")],
    );
    t.wait_for("enlarge to 60x16", 20);
    t.keys(&["n"]);
    t.wait_for("saved ✓ normal", 10);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(10), 0);
}

#[test]
fn gallery_page_labelled_normal_in_tmux() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 80);
    // 110x31: 6 columns x 3 rows of thumbnails.
    let t = triage("gallery", &store, 110, 31);
    t.wait_for("1 of ~", 20);
    t.keys(&["g"]);
    t.wait_for("╔", 10);
    t.keys(&["x"]);
    t.wait_for("saved ✓ unsure", 10);
    t.keys(&["N"]);
    t.wait_for("saved ✓ 17 normal on this page", 10);
    t.wait_for("19 of ~", 10);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(10), 0);
    let out = t.wait_for("the next retrain will learn from", 10);
    assert!(out.contains("learn from 0 interesting and 17 boring objects"), "{out}");
    assert!(out.contains("(no retrain yet: it holds back labels of both classes"), "{out}");
    let s = Store::open(&store).unwrap();
    let events = s.label_events().unwrap();
    assert_eq!(events.len(), 18);
    assert_eq!(events[0].1.value, LabelValue::Unsure);
    assert!(events[1..].iter().all(|(_, e)| e.value == LabelValue::Normal));
    // The page is the first 18 of the ranking.
    let ranked: Vec<_> = s.ranked().unwrap().take(18).map(|r| r.unwrap().0).collect();
    let labelled: Vec<_> = events.iter().map(|(_, e)| e.object).collect();
    assert_eq!(labelled, ranked);
}

#[test]
fn quitting_with_new_labels_starts_a_background_retrain() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 60);
    let bin = env!("CARGO_BIN_EXE_oddity");
    let t = Tmux::start(
        "onquit",
        160,
        48,
        &[
            bin,
            "--store",
            store.to_str().unwrap(),
            "triage",
            "--graphics",
            "halfblocks",
            "--retrain-args",
            "--no-pretrain --steps 10 --batch-size 4 --mu 1 --pool 16 --threads 1",
        ],
        &[("TERM", "xterm-256color")],
    );
    t.wait_for("1 of ~", 20);
    // Two of each class: a retrain holds some of each back to check itself.
    t.keys(&["a"]);
    t.wait_for("1 labels", 10);
    t.keys(&["a"]);
    t.wait_for("2 labels", 10);
    t.keys(&["n"]);
    t.wait_for("3 labels", 10);
    t.keys(&["n"]);
    t.wait_for("4 labels", 10);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(10), 0);
    t.wait_for("retrain started in the background", 10);
    // The retrain runs detached and ends with a new score version.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let state = oddity::store::read_retrain_status(&store).map(|s| s.0).unwrap_or_default();
        if state == "done" {
            break;
        }
        assert!(state != "failed", "{:?}", oddity::store::read_retrain_status(&store));
        assert!(
            std::time::Instant::now() < deadline,
            "retrain did not finish: {:?}",
            oddity::store::read_retrain_status(&store)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Its report says what it learnt from and what it was judged on (the
    // ranking becomes the CNN's only if it beat the current one).
    let s = Store::open(&store).unwrap();
    let report = oddity::retrain::last_report(&s).unwrap().expect("the retrain's verdict is kept");
    assert_eq!((report.trained_on, report.held_back), ((1, 1), (1, 1)), "{report:?}");
    let cnn = report.candidate("cnn").unwrap().version.unwrap();
    let v = s.score_version(cnn).unwrap().unwrap();
    assert!(v.method.starts_with("fixmatch-cnn (1 interesting, 1 boring labels)"), "{}", v.method);
}
