use std::path::Path;

use color_eyre::Result;

use crate::cli::IngestArgs;
use crate::ingest::{Catalog, IngestOptions, find_inputs, ingest_files};
use crate::store::Store;

pub fn run(store_path: &Path, args: &IngestArgs) -> Result<i32> {
    let opts = IngestOptions {
        survey: args.survey.clone(),
        max_batches: args.max_batches,
        bands: args.bands.clone(),
        catalog: args.catalog.clone(),
        pixel_scale: args.pixel_scale,
    };
    if let Some(s) = opts.pixel_scale.filter(|s| !(s.is_finite() && *s > 0.0)) {
        eprintln!("error: --pixel-scale {s}: expected arcsec per pixel > 0");
        return Ok(2);
    }
    // Everything that can be checked without a store is, so that a typo
    // never leaves an empty store behind.
    let catalog = match &args.catalog {
        Some(p) => match Catalog::read(p) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(1);
            }
        },
        None => None,
    };
    let (files, problems) = find_inputs(&args.paths, catalog.as_ref());
    if files.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!("nothing to ingest: no HDF5, FITS, PNG, JPEG or TIFF files found; the store was not touched");
        return Ok(1);
    }
    let store = Store::open_or_create(store_path)?;
    let _log = super::log_to(&store.log_dir());
    let bar = super::Bar(super::progress_bar("ingest"));
    let started = std::time::Instant::now();
    let report = ingest_files(&store, files, problems, catalog.as_ref(), &opts, &bar)?;
    bar.0.finish_and_clear();
    for p in &report.problems {
        eprintln!("error: {p}");
        tracing::error!("{p}");
    }
    println!(
        "ingested {} objects from {} files in {:.1}s ({} already in, {} failed, {} objects rejected) into {}",
        report.objects_added,
        report.files_ingested,
        started.elapsed().as_secs_f64(),
        report.files_skipped,
        report.files_failed,
        report.rows_rejected,
        store.path().display()
    );
    if report.ok() {
        Ok(0)
    } else if report.objects_added == 0 && report.files_skipped == 0 {
        eprintln!(
            "{} problem(s) and nothing went in. Fix the files and run the same command again.",
            report.problems.len()
        );
        Ok(1)
    } else {
        eprintln!(
            "{} problem(s); the rest went in. Fix the files and run the same command again to add them.",
            report.problems.len()
        );
        Ok(1)
    }
}
