//! Ingest of MultimodalUniverse HDF5 tables: round trip, idempotence,
//! resumption after SIGKILL, and bad input next to good input.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use oddity::ingest::{IngestOptions, ingest};
use oddity::progress::NoProgress;
use oddity::store::{Prop, SourceKind, Store};

fn synth(dir: &Path, galaxies: usize, size: usize) {
    let out = run(&[
        "synth",
        dir.to_str().unwrap(),
        "--galaxies",
        &galaxies.to_string(),
        "--size",
        &size.to_string(),
        "--nside",
        "32",
        "--spectra",
        "0.2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Rows in the survey's files, by kind, straight from HDF5.
fn rows_in_files(dir: &Path) -> (usize, usize) {
    let (files, _) = oddity::ingest::discover(&[dir.to_path_buf()]);
    let mut images = 0;
    let mut spectra = 0;
    for f in files {
        let h = hdf5::File::open(&f).unwrap();
        let n = h.dataset("ra").unwrap().shape()[0];
        if h.dataset("image_array").is_ok() {
            images += n;
        } else {
            spectra += n;
        }
    }
    (images, spectra)
}

#[test]
fn synth_survey_round_trip_and_idempotence() {
    let dir = tempfile::tempdir().unwrap();
    let survey = dir.path().join("survey");
    synth(&survey, 400, 32);
    let store = dir.path().join("store");
    let out = run(&["--store", store.to_str().unwrap(), "ingest", survey.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let (images, spectra) = rows_in_files(&survey);
    assert_eq!(images, 400);
    assert!(spectra > 0);
    assert_eq!(count_objects(&store), (images, spectra));

    // The store's copy agrees with the file, row by row.
    {
        let s = Store::open(&store).unwrap();
        let (id, src) = s.sources().unwrap().into_iter().find(|(_, s)| s.kind == SourceKind::Images).unwrap();
        let h = hdf5::File::open(&src.path).unwrap();
        let ids = h.dataset("object_id").unwrap().read_1d::<i64>().unwrap();
        let ra = h.dataset("ra").unwrap().read_1d::<f64>().unwrap();
        let key = s.find_id("hsc", &ids[0].to_string()).unwrap().expect("first object found by id");
        assert_eq!(key.file, id);
        let obj = s.object(key).unwrap().unwrap();
        assert_eq!(obj.ra, ra[0].rem_euclid(360.0));
        assert_eq!(src.bands.len(), 5);
        assert!(src.columns.contains(&"i_cmodel_mag".to_string()));
        let mag = src.columns.iter().position(|c| c == "i_cmodel_mag").unwrap();
        assert!(matches!(obj.props[mag], Prop::Float(_)));
        // Spectra come with string ids and their redshift.
        let (_, sdss) = s.sources().unwrap().into_iter().find(|(_, s)| s.kind == SourceKind::Spectra).unwrap();
        assert_eq!(sdss.survey, "sdss");
        let h = hdf5::File::open(&sdss.path).unwrap();
        let z = h.dataset("Z").unwrap().read_1d::<f32>().unwrap();
        let spec = s
            .spectrum(oddity::store::ObjectKey { file: s.source_id(&sdss.path).unwrap().unwrap(), row: 0 })
            .unwrap()
            .unwrap();
        assert_eq!(spec.z, Some(z[0]));
        assert!(spec.n_good > 100);
    }

    // Second run: nothing new, nothing duplicated.
    let out = run(&["--store", store.to_str().unwrap(), "ingest", survey.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ingested 0 objects"), "{}", text(&out));
    assert_eq!(count_objects(&store), (images, spectra));

    let status = run(&["--store", store.to_str().unwrap(), "status"]);
    let t = text(&status);
    assert!(status.status.success(), "{t}");
    assert!(t.contains(&format!("totals    {images} images, {spectra} spectra")), "{t}");
    assert!(t.contains("hsc") && t.contains("5 bands (HSC-G,HSC-R,HSC-I,HSC-Z,HSC-Y), 32x32 px"), "{t}");
}

#[test]
fn sigkill_mid_ingest_then_resume_equals_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let survey = dir.path().join("survey");
    synth(&survey, 3000, 64);
    let clean = dir.path().join("clean");
    let out = run(&["--store", clean.to_str().unwrap(), "ingest", survey.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let expected = count_objects(&clean);

    // Kill at growing delays until a kill lands half-way through (start-up,
    // libtorch's loading included, takes a few hundred ms; the ingest itself
    // well under a second).
    let mut saw_partial = false;
    for delay_ms in (0..80u64).map(|i| 150 + 20 * i) {
        let store = dir.path().join(format!("killed-{delay_ms}"));
        let mut child = spawn(
            oddity()
                .args(["--store", store.to_str().unwrap(), "ingest", survey.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if !store.join("store.redb").exists() {
            continue;
        }
        let partial = {
            let s = Store::open(&store).unwrap();
            let sources = s.sources().unwrap();
            !sources.is_empty() && sources.iter().any(|(_, s)| !s.complete)
        };
        let out = run(&["--store", store.to_str().unwrap(), "ingest", survey.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(count_objects(&store), expected, "after a kill at {delay_ms} ms");
        if partial {
            saw_partial = true;
            break;
        }
    }
    assert!(saw_partial, "no kill landed mid-ingest");
}

#[test]
fn interrupted_ingest_resumes_from_its_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = mmu_path(dir.path(), "hsc", 7);
    // 64x64x5 f32 = 80 KiB a row: a batch is ~400 rows.
    write_image_table(&path, &ImageTable { n: 1000, size: 64, ..Default::default() });
    let store = Store::open_or_create(&dir.path().join("store")).unwrap();
    let opts = IngestOptions { max_batches: Some(1), ..Default::default() };
    let first = ingest(&store, &[dir.path().join("hsc")], &opts, &NoProgress).unwrap();
    assert!(first.objects_added > 0 && first.objects_added < 1000, "{first:?}");
    let (_, src) = store.sources().unwrap().pop().unwrap();
    assert!(!src.complete);
    assert_eq!(src.rows_done, first.objects_added);
    let second = ingest(&store, &[dir.path().join("hsc")], &IngestOptions::default(), &NoProgress).unwrap();
    assert_eq!(first.objects_added + second.objects_added, 1000);
    assert!(store.sources().unwrap()[0].1.complete);
}

#[test]
fn bad_files_are_reported_and_good_ones_go_in() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("survey");
    write_image_table(&mmu_path(&root, "hsc", 1), &ImageTable { n: 20, ..Default::default() });
    write_image_table(&mmu_path(&root, "hsc", 2), &ImageTable { n: 20, first_id: 5000, ..Default::default() });
    // A truncated copy of a good file.
    let truncated = mmu_path(&root, "hsc", 3);
    write_image_table(&truncated, &ImageTable { n: 200, size: 32, first_id: 9000, ..Default::default() });
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(len / 2).unwrap();
    // image_array with the wrong shape.
    let wrong = mmu_path(&root, "hsc", 4);
    write_image_table(&wrong, &ImageTable { n: 5, first_id: 7000, bad_shape: Some(vec![5, 64]), ..Default::default() });
    // No ra.
    let no_ra = mmu_path(&root, "hsc", 5);
    write_image_table(&no_ra, &ImageTable { n: 5, first_id: 8000, with_ra: false, ..Default::default() });
    // Not HDF5 at all.
    let junk = mmu_path(&root, "hsc", 6);
    std::fs::write(&junk, b"this is not an HDF5 file").unwrap();
    // NaN coordinates for one object.
    let nan = mmu_path(&root, "hsc", 8);
    write_image_table(&nan, &ImageTable { n: 6, first_id: 6000, nan_ra_rows: vec![2], ..Default::default() });

    let store = dir.path().join("store");
    let out = run(&["--store", store.to_str().unwrap(), "ingest", root.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line_for = |p: &Path| -> String {
        t.lines()
            .find(|l| l.contains(p.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no line for {}:\n{t}", p.display()))
            .to_string()
    };
    let l = line_for(&truncated);
    assert!(
        l.starts_with("error: ") && (l.contains("truncated") || l.contains("cannot open") || l.contains("failed")),
        "{l}"
    );
    let l = line_for(&wrong);
    assert!(l.contains("`image_array` has shape [5, 64]"), "{l}");
    let l = line_for(&no_ra);
    assert!(l.contains("missing required field `ra`"), "{l}");
    let l = line_for(&junk);
    assert!(l.contains("cannot open as HDF5"), "{l}");
    let l = line_for(&nan);
    assert!(l.contains("object 6002 (row 2): coordinates are not finite"), "{l}");
    // Good files and the good rows of the NaN file are all in.
    assert_eq!(count_objects(&store), (20 + 20 + 5, 0), "{t}");
    assert!(t.contains("ingested 45 objects"), "{t}");
}

#[test]
fn three_band_files_and_string_ids() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = mmu_path(dir.path(), "legacysurvey", 11);
    write_image_table(
        &rgb,
        &ImageTable { n: 12, bands: vec!["r", "g", "b"], ids: Ids::FixedString, ..Default::default() },
    );
    let uni = mmu_path(dir.path(), "decals", 12);
    write_image_table(
        &uni,
        &ImageTable { n: 4, bands: vec!["g", "r", "z"], ids: Ids::VarString, ..Default::default() },
    );
    let store = Store::open_or_create(&dir.path().join("store")).unwrap();
    let report = ingest(&store, &[dir.path().to_path_buf()], &IngestOptions::default(), &NoProgress).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.objects_added, 16);
    let sources = store.sources().unwrap();
    let legacy = &sources.iter().find(|(_, s)| s.survey == "legacysurvey").unwrap().1;
    assert_eq!(legacy.bands, vec!["r", "g", "b"]);
    assert_eq!(legacy.shape, (8, 8));
    let key = store.find_id("legacysurvey", "obj-1003").unwrap().expect("fixed-length string id");
    assert_eq!(key.row, 3);
    let key = store.find_id("decals", "gal_1001_é").unwrap().expect("variable-length unicode id");
    assert_eq!(key.row, 1);
    let img = store.image(key).unwrap().unwrap();
    assert_eq!(img.band_flux.len(), 3);
    assert_eq!(store.find_any("obj-1000").unwrap().len(), 1);
}

#[test]
fn duplicate_ids_across_files_are_rejected_once() {
    let dir = tempfile::tempdir().unwrap();
    write_image_table(&mmu_path(dir.path(), "hsc", 1), &ImageTable { n: 5, ..Default::default() });
    write_image_table(&mmu_path(dir.path(), "hsc", 2), &ImageTable { n: 5, first_id: 1003, ..Default::default() });
    let store = Store::open_or_create(&dir.path().join("store")).unwrap();
    let report = ingest(&store, &[dir.path().to_path_buf()], &IngestOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.objects_added, 8);
    assert_eq!(report.rows_rejected, 2);
    assert!(report.problems[0].to_string().contains("object 1003 (row 0): duplicate id"), "{}", report.problems[0]);
}

#[test]
fn a_locked_store_and_a_foreign_schema_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let held = Store::open_or_create(&path).unwrap();
    let out = run(&["--store", path.to_str().unwrap(), "status"]);
    assert!(!out.status.success());
    // The message names the holder: process, user and host.
    let who = format!(
        "(pid {}, user {}, host {})",
        std::process::id(),
        oddity::serve::current_user(),
        oddity::serve::host_name()
    );
    let t = text(&out);
    assert!(t.contains(&format!("store {} is in use by `", path.display())) && t.contains(&who), "{t}");
    held.force_schema_version(99).unwrap();
    drop(held);
    let out = run(&["--store", path.to_str().unwrap(), "status"]);
    assert!(!out.status.success());
    let t = text(&out);
    let ours = format!("reads schema version {}", oddity::store::SCHEMA_VERSION);
    assert!(t.contains("has schema version 99") && t.contains(&ours), "{t}");
}
