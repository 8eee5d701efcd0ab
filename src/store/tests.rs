use super::*;

pub(super) fn label_event_for_tests() -> LabelEvent {
    event(7)
}

fn event(row: u32) -> LabelEvent {
    LabelEvent {
        object: ObjectKey { file: 1, row },
        value: LabelValue::Relevance(5),
        tags: vec!["ring".into()],
        user: "tester".into(),
        time: "2026-01-01T00:00:00Z".into(),
        session: "s1".into(),
    }
}

#[test]
fn creates_then_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    assert!(matches!(Store::open(&path), Err(StoreError::Missing(_))));
    {
        let s = Store::open_or_create(&path).unwrap();
        s.append_label(&event(3)).unwrap();
    }
    let s = Store::open(&path).unwrap();
    let events = s.label_events().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, event(3));
}

#[test]
fn second_open_is_locked_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let _first = Store::open_or_create(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
    let text = err.to_string();
    // The message names the holder's process, user and host.
    let who = format!(
        "(pid {}, user {}, host {})",
        std::process::id(),
        crate::serve::current_user(),
        crate::serve::host_name()
    );
    assert!(text.starts_with(&format!("store {} is in use by `", path.display())), "{text}");
    assert!(text.contains(&who), "{text}");
}

#[test]
fn other_schema_version_names_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    Store::open_or_create(&path).unwrap().force_schema_version(SCHEMA_VERSION + 6).unwrap();
    let err = Store::open(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::SchemaMismatch { found, expected, .. } if found == SCHEMA_VERSION + 6 && expected == SCHEMA_VERSION)
    );
    assert!(text.contains(&format!("schema version {}", SCHEMA_VERSION + 6)), "{text}");
    assert!(text.contains(&format!("reads schema version {SCHEMA_VERSION}")), "{text}");
}

#[test]
fn refuses_a_foreign_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.tex"), "x").unwrap();
    let err = Store::open_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
}

#[test]
fn object_keys_order_by_file_then_row() {
    let a = ObjectKey { file: 1, row: 900 };
    let b = ObjectKey { file: 2, row: 0 };
    assert!(a.to_bytes() < b.to_bytes());
    assert_eq!(ObjectKey::from_bytes(&a.to_bytes()), Some(a));
}

#[test]
fn batches_rewrite_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_or_create(&dir.path().join("p.db")).unwrap();
    let row = IngestedRow {
        key: ObjectKey { file: 7, row: 1 },
        object: ObjectRecord {
            survey: "hsc".into(),
            id: "42".into(),
            ra: 1.0,
            dec: 2.0,
            kind: SourceKind::Images,
            props: vec![Prop::Float(1.5), Prop::Text("x".into())],
        },
        payload: Payload::Image(ImageRef {
            psf_fwhm: vec![0.6],
            pixel_scale: vec![0.168],
            bad_fraction: 0.0,
            band_flux: vec![0.0],
        }),
    };
    s.write_batch(std::slice::from_ref(&row)).unwrap();
    s.write_batch(std::slice::from_ref(&row)).unwrap();
    assert_eq!(s.objects.len(), 1);
    assert_eq!(s.find_id("hsc", "42").unwrap(), Some(row.key));
    assert_eq!(s.object(row.key).unwrap().unwrap(), row.object);
    assert_eq!(s.find_any("42").unwrap(), Vec::<ObjectKey>::new(), "no source registered for hsc yet");
}

#[test]
fn source_ids_stay_small_across_reopenings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let source = |p: &str| SourceFile {
        path: p.into(),
        survey: "hsc".into(),
        sample: String::new(),
        partition: None,
        kind: SourceKind::Images,
        size: 0,
        mtime: 0,
        n_rows: 0,
        rows_done: 0,
        n_objects: 0,
        n_rejected: 0,
        complete: false,
        columns: vec![],
        array_columns: vec![],
        bands: vec![],
        shape: (0, 0),
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        // Each run of oddity opens the store afresh.
        let s = Store::open_or_create(&path).unwrap();
        ids.push(s.add_source(&source(&format!("/f{i}.hdf5"))).unwrap());
    }
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}

#[test]
fn keyed_trees_round_trip_and_name_themselves_when_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_or_create(&dir.path().join("p.db")).unwrap();
    let (a, b) = (ObjectKey { file: 1, row: 2 }, ObjectKey { file: 1, row: 1 });
    let rec = |v: f32| FeatureRecord { values: vec![v, f32::NAN] };
    s.put_features(&[(a, rec(1.0)), (b, rec(2.0))]).unwrap();
    assert_eq!(s.features_of(a).unwrap().unwrap().values[0], 1.0);
    assert!(s.features_of(ObjectKey { file: 9, row: 9 }).unwrap().is_none());
    let keys: Vec<ObjectKey> = s.iter_features().map(|r| r.unwrap().0).collect();
    assert_eq!(keys, [b, a], "key order");
    let lines =
        LineRecord { lines: SpectralLines::default(), bpt: BptClass::Liner, bpt_xy: None, z: Some(0.1), problem: None };
    s.put_lines(&[(a, lines.clone())]).unwrap();
    assert_eq!(s.lines_of(a).unwrap(), Some(lines));

    // A value that does not decode, and a key that is not an object key.
    s.lines.insert(b.to_bytes(), &[0xff, 0xff, 0xff][..]).unwrap();
    let err = s.lines_of(b).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { tree: "lines", .. }), "{err}");
    s.features.insert(b"short", encode(&rec(3.0))).unwrap();
    let errs: Vec<StoreError> = s.iter_features().filter_map(|r| r.err()).collect();
    assert_eq!(errs.len(), 1);
    assert!(matches!(&errs[0], StoreError::Corrupt { tree: "features", why, .. } if why == "bad key"), "{}", errs[0]);
}

#[test]
fn kept_score_versions_survive_new_rankings_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_or_create(&dir.path().join("p.db")).unwrap();
    let k = |row| ObjectKey { file: 1, row };
    let info = |version, method: &str| ScoreVersion {
        version,
        models: vec![],
        method: method.into(),
        time: "t".into(),
        n_scored: 2,
    };
    let read = |v| s.scores_of_version(v).unwrap().map(|r| r.unwrap()).collect::<Vec<_>>();
    // v1 current (the forest).
    let v1 = s.begin_scores().unwrap();
    s.put_scores(v1, &[(k(1), 0.9), (k(2), 0.1)]).unwrap();
    s.commit_scores(&info(v1, "forest")).unwrap();
    // v2: a candidate kept but not current.
    let v2 = s.begin_scores().unwrap();
    assert_eq!(v2, v1 + 1);
    s.put_scores(v2, &[(k(1), 0.2), (k(2), 0.8)]).unwrap();
    s.keep_scores(&info(v2, "cnn"), "lost to the forest").unwrap();
    // v3 left half-written by a crash: purged by the next begin, v2 is not.
    let v3 = s.begin_scores().unwrap();
    s.put_scores(v3, &[(k(1), 0.5)]).unwrap();
    let v4 = s.begin_scores().unwrap();
    assert!(v4 > v2, "numbers never reuse a kept one: {v4}");
    assert!(read(v3).is_empty(), "the interrupted version is gone");
    assert_eq!(read(v2), vec![(k(1), 0.2), (k(2), 0.8)]);
    assert_eq!(s.current_scores().unwrap().unwrap().version, v1);
    assert_eq!(s.score_version(v2).unwrap().unwrap().method, "cnn");
    assert_eq!(s.kept_scores().unwrap()[0].why, "lost to the forest");
    // The forest is kept, then a new version becomes current: the forest stays readable.
    s.keep_scores(&info(v1, "forest"), "base of the combined ranking").unwrap();
    s.put_scores(v4, &[(k(1), 0.7), (k(2), 0.3)]).unwrap();
    s.commit_scores(&info(v4, "combined")).unwrap();
    assert_eq!(read(v1).len(), 2);
    assert_eq!(s.ranked().unwrap().map(|r| r.unwrap().0).collect::<Vec<_>>(), vec![k(1), k(2)]);
    // Promoting a kept version makes it current and no longer kept.
    s.commit_scores(&info(v2, "cnn")).unwrap();
    assert_eq!(s.current_scores().unwrap().unwrap().version, v2);
    assert!(s.kept_scores().unwrap().iter().all(|k| k.info.version != v2));
    assert!(read(v4).is_empty(), "the previous current, not kept, is dropped");
    assert_eq!(s.ranked().unwrap().map(|r| r.unwrap().0).collect::<Vec<_>>(), vec![k(2), k(1)]);
    // Dropping: gone; the current one cannot be dropped.
    s.drop_kept_scores(v1).unwrap();
    assert!(read(v1).is_empty() && s.score_version(v1).unwrap().is_none());
    s.drop_kept_scores(v2).unwrap();
    assert_eq!(read(v2).len(), 2);
    s.put_note("retrain", "{\"verdict\":\"x\"}").unwrap();
    assert_eq!(s.note("retrain").unwrap().as_deref(), Some("{\"verdict\":\"x\"}"));
    assert_eq!(s.note("other").unwrap(), None);
}
