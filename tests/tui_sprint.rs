//! Labelling sprints end to end: no key lost whatever the graphics, the
//! screen refusing to start without a terminal, and three experts on one
//! store while the serving one is killed.

mod common;

use std::collections::HashMap;

use common::tmux::Tmux;
use oddity::store::{LabelValue, ObjectKey, Store};

fn triage(name: &str, store: &std::path::Path, graphics: &str) -> Tmux {
    let bin = env!("CARGO_BIN_EXE_oddity");
    Tmux::start(
        name,
        160,
        48,
        &[bin, "--store", store.to_str().unwrap(), "triage", "--graphics", graphics, "--on-quit", "never"],
        &[("TERM", "xterm-256color")],
    )
}

#[test]
fn keys_typed_at_start_are_all_stored_in_order_for_every_graphics_mode() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 60);
    let ranked: Vec<ObjectKey> = {
        let s = Store::open(&store).unwrap();
        s.ranked().unwrap().map(|r| r.unwrap().0).collect()
    };
    let keys = ["a", "n", "5", "0", "x", "1", "a", "n"];
    let values = [
        LabelValue::Anomaly,
        LabelValue::Normal,
        LabelValue::Relevance(5),
        LabelValue::Relevance(0),
        LabelValue::Unsure,
        LabelValue::Relevance(1),
        LabelValue::Anomaly,
        LabelValue::Normal,
    ];
    // `auto` in tmux: tmux answers the probe itself (no kitty; sixel only
    // when built with it); the others are forced.
    for (round, graphics) in ["auto", "halfblocks", "kitty", "sixel", "iterm2"].iter().enumerate() {
        let t = triage(&format!("keys-{graphics}"), &store, graphics);
        // The instant the process starts: before its screen, during the probe.
        t.keys(&keys);
        t.wait_for(" 8 labels ·", 30);
        t.keys(&["q"]);
        assert_eq!(t.wait_exit(10), 0, "{graphics}");
        drop(t);
        let s = Store::open(&store).unwrap();
        let events = s.label_events().unwrap();
        let these = &events[round * 8..];
        assert_eq!(these.len(), 8, "{graphics}: {these:?}");
        for (i, (_, e)) in these.iter().enumerate() {
            assert_eq!(e.value, values[i], "{graphics}: label {i}");
            assert_eq!(e.object, ranked[round * 8 + i], "{graphics}: label {i} landed on the wrong object");
        }
    }
}

#[test]
fn triage_without_a_terminal_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 20);
    let child = common::spawn(
        common::oddity()
            .args(["--store", store.to_str().unwrap(), "triage"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: oddity triage needs a terminal"), "{err}");
}

/// The pid of the oddity process serving the store (from the lock file).
fn server_pid(store: &std::path::Path) -> u32 {
    let holder = std::fs::read_to_string(store.join("oddity.lock")).unwrap();
    let pid = holder.split("pid ").nth(1).and_then(|r| r.split(',').next()).unwrap();
    pid.trim().parse().unwrap()
}

#[test]
fn three_experts_share_a_store_and_carry_on_when_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::pipeline::scored_store(dir.path(), 80);
    let s = store.to_str().unwrap();
    let a = triage("team-a", &store, "halfblocks");
    a.wait_for("1 of ~", 30);
    let b = triage("team-b", &store, "halfblocks");
    b.wait_for("1 of ~", 30);
    let c = triage("team-c", &store, "halfblocks");
    c.wait_for("1 of ~", 30);
    let a_pid = server_pid(&store);
    for (t, k) in [(&a, "a"), (&b, "n"), (&c, "5")] {
        t.keys(&[k, k, k]);
    }
    for t in [&a, &b, &c] {
        t.wait_for(" 3 labels ·", 20);
    }
    a.wait_for("team 3 experts 9 labels", 20);
    // Other commands are served instead of refused.
    let status = common::run(&["--store", s, "status"]);
    assert!(status.status.success(), "{}", common::text(&status));
    assert!(common::text(&status).contains("labels    9 events"), "{}", common::text(&status));
    let top = common::run(&["--store", s, "top", "3", "--tsv"]);
    assert!(top.status.success() && common::text(&top).lines().count() == 4, "{}", common::text(&top));
    let csv = dir.path().join("labels.csv");
    let export = common::run(&["--store", s, "export", "--out", csv.to_str().unwrap()]);
    assert!(export.status.success(), "{}", common::text(&export));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1 + 9);
    // Work that writes the store is still refused, and told who holds it.
    let score = common::run(&["--store", s, "score"]);
    let text = common::text(&score);
    assert!(!score.status.success() && text.contains(&format!("`oddity triage` (pid {a_pid}")), "{text}");
    // So is the science catalogue (every object, Parquet/FITS): one line, the holder named.
    let cat = common::run(&["--store", s, "export", "--format", "catalog"]);
    let text = common::text(&cat);
    assert!(!cat.status.success() && text.contains("needs the store itself"), "{text}");
    assert!(text.contains(&format!("pid {a_pid}")) && text.trim().lines().count() == 1, "{text}");

    // The serving expert's process dies without a word.
    assert!(std::process::Command::new("kill").args(["-9", &a_pid.to_string()]).status().unwrap().success());
    assert_eq!(a.wait_exit(10), 137);
    // The others go on: one takes the store over, the other connects to it.
    b.keys(&["n", "n"]);
    b.wait_for(" 5 labels ·", 30);
    c.keys(&["0"]);
    c.wait_for(" 4 labels ·", 30);
    c.wait_for("team 2 experts", 20);
    for t in [&b, &c] {
        t.keys(&["q"]);
        assert_eq!(t.wait_exit(20), 0);
    }
    drop((a, b, c));

    let st = Store::open(&store).unwrap();
    let events = st.label_events().unwrap();
    assert_eq!(events.len(), 12, "every acknowledged label is on disk: {events:?}");
    // Disjoint candidates: no object was given to two experts.
    let mut by_object: HashMap<ObjectKey, std::collections::HashSet<String>> = HashMap::new();
    for (_, e) in &events {
        by_object.entry(e.object).or_default().insert(e.session.clone());
    }
    assert!(by_object.values().all(|s| s.len() == 1), "{by_object:?}");
    let me = oddity::serve::current_user();
    assert!(events.iter().all(|(_, e)| e.user == me));
}
