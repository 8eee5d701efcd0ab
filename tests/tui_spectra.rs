//! The spectrum in the triage screen: wavelength ticks that follow `r`,
//! line labels, the BPT view, and spectrum-only candidates (no image
//! within the match radius) shown full height and reachable by `/`.

mod common;

use common::screen::screen;

use std::path::Path;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use oddity::features::spectral::BptClass;
use oddity::store::{ScoreVersion, SourceKind, Store};
use oddity::tui::app::App;
use oddity::tui::worker::Loader;
use oddity::tui::{Filter, Keymap, Ordering};

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn loader(store: &Arc<Store>) -> Loader {
    Loader::new(store.clone(), ratatui_image::picker::Picker::halfblocks())
}

/// synth → ingest → crossmatch (radius) → features → score.
fn pipeline(dir: &Path, radius: &str) -> std::path::PathBuf {
    let survey = dir.join("survey");
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    for args in [
        vec![
            "synth",
            survey.to_str().unwrap(),
            "--galaxies",
            "120",
            "--size",
            "32",
            "--nside",
            "32",
            "--spectra",
            "0.4",
        ],
        vec!["--store", s, "ingest", survey.to_str().unwrap()],
        vec!["--store", s, "crossmatch", "--radius", radius],
        vec!["--store", s, "features"],
        vec!["--store", s, "score"],
    ] {
        let out = common::run(&args);
        assert!(out.status.success(), "{args:?}: {}", common::text(&out));
    }
    store
}

#[test]
fn spectrum_panel_has_ticks_labels_and_a_bpt_view() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&pipeline(dir.path(), "1arcsec")).unwrap());
    let mut app = App::new(
        store.clone(),
        Keymap::default_keys(),
        "tester".into(),
        Ordering::Score,
        Filter::Bpt(BptClass::StarForming),
    )
    .unwrap();
    let mut loader = loader(&store);
    let observed = screen(&mut app, &mut loader, 160, 48);
    // Wavelength ticks (round thousands of Å) and the frame under the plot.
    assert!(observed.contains("Å observed"), "{observed}");
    assert!(observed.contains("6000") && observed.contains("8000"), "{observed}");
    // Markers labelled at 160 columns; Hα and [NII] share a label.
    assert!(observed.contains("Hα/[NII]") || observed.contains("Hα"), "{observed}");
    assert!(observed.contains("[OIII]") && observed.contains("Hβ"), "{observed}");
    // `r` changes the axis, not only the title.
    app.on_key(key('r')).unwrap();
    let rest = screen(&mut app, &mut loader, 160, 48);
    assert!(rest.contains("Å rest"), "{rest}");
    let tick_row = |s: &str, unit: &str| s.lines().find(|l| l.contains(unit)).unwrap().to_string();
    assert_ne!(tick_row(&observed, "Å observed"), tick_row(&rest, "Å rest").replace("Å rest", "Å observed"));

    // B: the survey on the BPT diagram with this object marked.
    app.on_key(key('B')).unwrap();
    let bpt = screen(&mut app, &mut loader, 160, 48);
    for want in ["BPT", "Kauffmann 2003", "Kewley 2001", "Schawinski 2007", "star-forming", "✚"] {
        assert!(bpt.contains(want), "no {want}: {bpt}");
    }
    assert!(bpt.contains("unclassifiable, by reason:"), "{bpt}");
    app.on_key(key('B')).unwrap();
    assert!(app.bpt.is_none());
}

#[test]
fn spectrum_only_candidates_show_full_height_and_are_reached_by_id() {
    let dir = tempfile::tempdir().unwrap();
    // A tight radius leaves most spectra without an image.
    let store = Arc::new(Store::open(&pipeline(dir.path(), "0.15arcsec")).unwrap());
    let lonely: Vec<_> = store
        .iter_objects()
        .map(|r| r.unwrap())
        .filter(|(k, o)| o.kind == SourceKind::Spectra && store.image_match(*k).unwrap().is_none())
        .collect();
    let matched: Vec<_> = store
        .iter_objects()
        .map(|r| r.unwrap())
        .filter(|(k, o)| o.kind == SourceKind::Spectra && store.image_match(*k).unwrap().is_some())
        .collect();
    assert!(lonely.len() > 2, "{} unmatched spectra", lonely.len());
    // The ranking puts spectrum-only objects in (the scoring stage's job):
    // here one tops a new score version.
    let mut scores: Vec<_> = store.ranked().unwrap().map(|r| r.unwrap()).collect();
    scores.push((lonely[0].0, 0.99));
    let version = store.begin_scores().unwrap();
    store.put_scores(version, &scores).unwrap();
    store
        .commit_scores(&ScoreVersion {
            version,
            models: vec![],
            method: "test".into(),
            time: "2026-11-25T10:00:00+00:00".into(),
            n_scored: scores.len() as u64,
        })
        .unwrap();

    let mut app =
        App::new(store.clone(), Keymap::default_keys(), "tester".into(), Ordering::Score, Filter::All).unwrap();
    let mut loader = loader(&store);
    assert_eq!(app.current(), Some(lonely[0].0));
    let s = screen(&mut app, &mut loader, 120, 40);
    assert!(s.contains("spectrum only: no image within the cross-match radius"), "{s}");
    assert!(s.contains(&lonely[0].1.id), "{s}");
    // Full height: the spectrum's box starts on the first row, and no cutout.
    assert!(s.lines().next().unwrap().contains("spectrum ·"), "{s}");
    assert!(!s.contains("asinh"), "no cutout panel: {s}");
    // Labelling works on it like on any candidate.
    app.on_key(key('a')).unwrap();
    app.wait_saved().unwrap();
    assert!(app.book.get(lonely[0].0).is_some());

    // `/` reaches an unranked spectrum-only object by its id…
    app.on_key(key('/')).unwrap();
    for c in lonely[1].1.id.chars() {
        app.on_key(key(c)).unwrap();
    }
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)).unwrap();
    assert_eq!(app.current(), Some(lonely[1].0), "{:?}", app.message);
    let s = screen(&mut app, &mut loader, 120, 40);
    assert!(s.contains(&lonely[1].1.id), "{s}");
    // …and a matched spectrum's id goes to its image.
    if let Some((k, spec)) = matched.first() {
        app.on_key(key('/')).unwrap();
        for c in spec.id.chars() {
            app.on_key(key(c)).unwrap();
        }
        app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)).unwrap();
        assert_eq!(app.current(), store.image_match(*k).unwrap().map(|m| m.other));
    }
}
