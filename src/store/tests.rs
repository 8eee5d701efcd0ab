use super::*;

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
