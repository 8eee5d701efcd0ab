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
    // The crashed run's number is not reused: versions only grow.
    assert_eq!(current.version, 3);
    assert_eq!(st.all_scores().unwrap().len(), 300);
    assert_eq!(st.ranked().unwrap().count(), 300, "one index entry per object, no leftovers");
    let model = st.model(current.models[0]).unwrap().unwrap();
    assert_eq!(model.kind, "isolation-forest");
    let forest = oddity::detect::load_forest(&model).expect("stored model decodes");
    // One forest per feature group; every image feature but the spectral ones is in one.
    use oddity::detect::Group;
    let names = st.feature_schema("hsc").unwrap().unwrap().names;
    let image_features: Vec<&String> = names.iter().filter(|n| Group::of_feature(n) != Group::Spectrum).collect();
    assert_eq!(model.features.len(), image_features.len());
    for g in [Group::Shape, Group::Colour, Group::Quality] {
        assert_eq!(forest.group(g).unwrap_or_else(|| panic!("{g:?}")).forest.n_trees(), 200);
    }
    assert!(forest.group(Group::Spectrum).is_none(), "spectra have their own model");
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

/// The modality-fairness and spectrum-only checks, on one survey: 1,000
/// galaxies, 30% with spectra; the spectra of one image file have no images.
#[test]
fn no_object_is_odd_for_having_a_spectrum_and_lone_spectra_are_ranked() {
    let dir = tempfile::tempdir().unwrap();
    let survey = dir.path().join("survey");
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let out = run(&[
        "synth",
        survey.to_str().unwrap(),
        "--galaxies",
        "1000",
        "--size",
        "32",
        "--nside",
        "32",
        "--spectra",
        "0.3",
        "--anomalies",
        "0.0",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Drop one image file: its spectra are left without images.
    let images = survey.join("hsc").join("pdr3_synth");
    let first = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    for args in [
        vec!["--store", s, "ingest", survey.to_str().unwrap()],
        vec!["--store", s, "crossmatch"],
        vec!["--store", s, "features"],
        vec!["--store", s, "score"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        if args[2] == "score" {
            assert!(text(&out).contains("spectra without an image in the match radius ranked"), "{}", text(&out));
        }
    }
    let st = Store::open(&store).unwrap();
    let ranked: Vec<oddity::store::ObjectKey> = st.ranked().unwrap().map(|r| r.unwrap().0).collect();
    let n = ranked.len();
    let spectrum_files: std::collections::HashSet<u32> = st
        .sources()
        .unwrap()
        .into_iter()
        .filter(|(_, f)| f.kind == oddity::store::SourceKind::Spectra)
        .map(|(id, _)| id)
        .collect();
    let lone = ranked.iter().filter(|k| spectrum_files.contains(&k.file)).count();
    assert!(lone > 0, "spectra without images are candidates");
    assert_eq!(n, st.image_count() + lone);
    // Having a spectrum moves no galaxy (all ordinary here): the galaxies with
    // one fill the top quarter of the ranking about as much as when the same
    // galaxies are ranked with no spectrum matched at all. (Spectra go to the
    // brightest galaxies, which differ in shape: the comparison keeps that.)
    let with_spectrum: std::collections::HashSet<oddity::store::ObjectKey> = ranked
        .iter()
        .filter(|k| !spectrum_files.contains(&k.file) && st.spectrum_match(**k).unwrap().is_some())
        .copied()
        .collect();
    let top_share = |st: &Store| {
        let images: Vec<_> =
            st.ranked().unwrap().map(|r| r.unwrap().0).filter(|k| !spectrum_files.contains(&k.file)).collect();
        let top = &images[..images.len() / 4];
        top.iter().filter(|k| with_spectrum.contains(k)).count() as f64 / top.len() as f64
    };
    let matched = top_share(&st);
    let matches = st.crossmatch_info().unwrap();
    assert!(matches.is_some() && with_spectrum.len() > 100);
    drop(st);
    for args in [vec!["--store", s, "crossmatch", "--radius", "0.000001"], vec!["--store", s, "score"]] {
        assert!(run(&args).status.success());
    }
    let st = Store::open(&store).unwrap();
    let unmatched = top_share(&st);
    assert!((matched - unmatched).abs() < 0.06, "top-quarter share {matched:.2} matched vs {unmatched:.2} unmatched");
    // What made each score is stored: groups, and the artefact score apart.
    let parts = st.score_parts_of(ranked[0]).unwrap().unwrap();
    assert!(!parts.groups.is_empty());
    let image = ranked.iter().find(|k| !spectrum_files.contains(&k.file)).unwrap();
    assert!(st.score_parts_of(*image).unwrap().unwrap().artefact.is_some());
}
