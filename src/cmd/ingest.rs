use std::path::Path;

use color_eyre::Result;

use crate::cli::IngestArgs;
use crate::ingest::{IngestOptions, ingest};
use crate::store::Store;

pub fn run(store_path: &Path, args: &IngestArgs) -> Result<i32> {
    let store = Store::open_or_create(store_path)?;
    let _log = super::log_to(&store.log_dir());
    let opts = IngestOptions { survey: args.survey.clone(), max_batches: args.max_batches };
    let bar = super::Bar(super::progress_bar("ingest"));
    let started = std::time::Instant::now();
    let report = ingest(&store, &args.paths, &opts, &bar)?;
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
    } else {
        eprintln!(
            "{} problem(s); the rest went in. Fix the files and run the same command again to add them.",
            report.problems.len()
        );
        Ok(1)
    }
}
