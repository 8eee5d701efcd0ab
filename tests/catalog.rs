//! `oddity export --format catalog`: one row per object as Parquet, FITS and
//! CSV, read back here in Rust and (when its venv exists) by pandas/astropy.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use fitsrs::fits::Fits;
use fitsrs::hdu::HDU;
use fitsrs::hdu::data::bintable::{ColumnId, DataValue};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A scored store where a tight radius leaves most spectra unmatched, so
/// spectrum-only rows appear beside image rows.
fn store(dir: &Path) -> std::path::PathBuf {
    let survey = dir.join("survey");
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    for args in [
        vec![
            "synth",
            survey.to_str().unwrap(),
            "--galaxies",
            "150",
            "--size",
            "32",
            "--nside",
            "32",
            "--spectra",
            "0.3",
        ],
        vec!["--store", s, "ingest", survey.to_str().unwrap()],
        vec!["--store", s, "crossmatch", "--radius", "0.15arcsec"],
        vec!["--store", s, "features"],
        vec!["--store", s, "score"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    store
}

fn parquet_columns(path: &Path) -> (usize, HashMap<String, Vec<Option<String>>>) {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut cols: HashMap<String, Vec<Option<String>>> = HashMap::new();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        rows += batch.num_rows();
        for (i, f) in batch.schema().fields().iter().enumerate() {
            let a = batch.column(i);
            let out = cols.entry(f.name().clone()).or_default();
            for r in 0..a.len() {
                out.push(if a.is_null(r) {
                    None
                } else {
                    Some(
                        arrow_array::cast::AsArray::as_string_opt::<i32>(a.as_ref())
                            .map_or_else(|| arrow::util_display(a.as_ref(), r), |s| s.value(r).to_string()),
                    )
                });
            }
        }
    }
    (rows, cols)
}

/// Just enough of arrow's display for numbers and booleans.
mod arrow {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type, Int64Type};
    use arrow_schema::DataType;

    pub fn util_display(a: &dyn arrow_array::Array, r: usize) -> String {
        match a.data_type() {
            DataType::Float64 => a.as_primitive::<Float64Type>().value(r).to_string(),
            DataType::Float32 => a.as_primitive::<Float32Type>().value(r).to_string(),
            DataType::Int64 => a.as_primitive::<Int64Type>().value(r).to_string(),
            DataType::Boolean => a.as_boolean().value(r).to_string(),
            other => panic!("unexpected column type {other}"),
        }
    }
}

#[test]
fn catalogue_as_parquet_fits_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let s = store.to_str().unwrap();
    let (pq, fits, csv) = (dir.path().join("cat.parquet"), dir.path().join("cat.fits"), dir.path().join("cat.csv"));
    for out in [&pq, &fits, &csv] {
        let r = run(&["--store", s, "export", "--format", "catalog", "--out", out.to_str().unwrap()]);
        assert!(r.status.success(), "{}", text(&r));
        assert!(text(&r).contains("ranked"), "{}", text(&r));
    }
    let bad =
        run(&["--store", s, "export", "--format", "catalog", "--out", dir.path().join("x.xlsx").to_str().unwrap()]);
    assert!(!bad.status.success() && text(&bad).contains(".parquet, .fits or .csv"), "{}", text(&bad));

    // Parquet: every image (150) plus the spectra left unmatched.
    let (rows, cols) = parquet_columns(&pq);
    let kinds = &cols["kind"];
    let n_images = kinds.iter().filter(|k| k.as_deref() == Some("image")).count();
    let n_spectra = kinds.iter().filter(|k| k.as_deref() == Some("spectrum")).count();
    assert_eq!(n_images, 150);
    assert!(n_spectra > 0, "unmatched spectra get rows of their own");
    assert_eq!(rows, n_images + n_spectra);
    for name in [
        "ra",
        "dec",
        "spec_id",
        "sep_arcsec",
        "g-r",
        "r-i",
        "ha_flux",
        "ha_flux_err",
        "hb_ew",
        "bpt_x",
        "bpt_class",
        "score",
        "rank",
        "verdict",
    ] {
        assert!(cols.contains_key(name), "no column {name}");
    }
    let header_csv = std::fs::read_to_string(&csv).unwrap();
    let names: Vec<&str> = header_csv.lines().next().unwrap().split(',').collect();
    assert_eq!(names.len(), names.iter().collect::<std::collections::HashSet<_>>().len(), "unique column names");
    // Ranked rows first: rank is 1, 2, 3… down the file.
    let ranks: Vec<i64> = cols["rank"].iter().map_while(|r| r.as_ref().map(|r| r.parse().unwrap())).collect();
    assert_eq!(ranks, (1..=ranks.len() as i64).collect::<Vec<_>>());
    // Every image is ranked, and so are the spectrum-only candidates (scored
    // on their lines by `oddity score`).
    let ranked =
        |kind: &str| (0..rows).filter(|&r| kinds[r].as_deref() == Some(kind) && cols["rank"][r].is_some()).count();
    assert_eq!(ranked("image"), n_images, "every image is scored");
    assert_eq!(ranks.len(), n_images + ranked("spectrum"));
    // A spectrum row carries its own lines, measured fluxes with errors.
    let spec_rows: Vec<usize> = (0..rows).filter(|&r| kinds[r].as_deref() == Some("spectrum")).collect();
    assert!(spec_rows.iter().any(|&r| cols["ha_flux"][r].is_some() && cols["ha_flux_err"][r].is_some()));
    assert!(spec_rows.iter().all(|&r| cols["spec_id"][r] == cols["object_id"][r]));

    // FITS, read back with fitsrs: same rows, same positions and ranks.
    let mut hdus = Fits::from_reader(std::io::BufReader::new(std::fs::File::open(&fits).unwrap()));
    let mut found = false;
    while let Some(Ok(hdu)) = hdus.next() {
        if let HDU::XBinaryTable(hdu) = hdu {
            found = true;
            let mut data = hdus.get_data(&hdu).table_data();
            let values: Vec<DataValue> = data.select_fields(&[ColumnId::Name("ra"), ColumnId::Name("rank")]).collect();
            assert_eq!(values.len(), 2 * rows);
            for (r, pair) in values.chunks(2).enumerate() {
                let ra: f64 = cols["ra"][r].as_ref().unwrap().parse().unwrap();
                match pair {
                    [DataValue::Double { value, .. }, DataValue::Long { value: rank, .. }] => {
                        assert_eq!(*value, ra, "row {r}");
                        let want = cols["rank"][r].as_ref().map_or(i64::MIN, |v| v.parse().unwrap());
                        assert_eq!(*rank, want, "row {r}");
                    }
                    other => panic!("row {r}: {other:?}"),
                }
            }
        }
    }
    assert!(found, "no binary table in {}", fits.display());

    // CSV: a header and the same rows.
    let text = std::fs::read_to_string(&csv).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    assert_eq!(header[..5], ["object_id", "survey", "kind", "ra", "dec"]);
    assert_eq!(text.lines().count(), rows + 1);

    // pandas / astropy, in the venv the benches build (scripts/check-catalog
    // makes it): skipped, and said so, where it does not exist.
    let cache = std::env::var_os("ODDITY_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/oddity"));
    let python = cache.join("bench-venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_catalog.py");
    let ready = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import pandas, pyarrow, astropy"])
            .output()
            .is_ok_and(|o| o.status.success());
    if ready {
        let out = std::process::Command::new(&python).arg(&script).args([&pq, &fits, &csv]).output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    } else {
        eprintln!(
            "SKIPPED: pandas/astropy read-back ({} lacks pandas, pyarrow or astropy; run scripts/check-catalog)",
            python.display()
        );
    }
}
