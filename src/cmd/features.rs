use std::path::Path;

use color_eyre::Result;

use crate::features::compute;
use crate::store::Store;

/// Computes morphology, colour and spectral-line features for every object.
pub fn run(store_path: &Path) -> Result<i32> {
    let store = Store::open(store_path)?;
    let _log = super::log_to(&store.log_dir());
    if store.crossmatch_info()?.is_none() {
        eprintln!(
            "note: no cross-match yet, so image features carry no spectral lines (run `oddity crossmatch` first)"
        );
    }
    let bar = super::Bar(super::progress_bar("features"));
    let started = std::time::Instant::now();
    let report = compute(&store, &bar)?;
    bar.0.finish_and_clear();
    for (path, problem) in &report.problems {
        eprintln!("error: {path}: {problem}");
        tracing::error!("{path}: {problem}");
    }
    let bpt: Vec<String> = report.bpt_counts.iter().map(|(c, n)| format!("{} {n}", c.as_str())).collect();
    let problems: Vec<String> = report.line_problems.iter().map(|(why, n)| format!("{why} {n}")).collect();
    let not_measured = match report.line_problems.iter().map(|(_, n)| n).sum::<u64>() {
        0 => String::new(),
        n => format!("lines not measured for {n} spectra: {} (`oddity status`, TUI info panel)\n", problems.join(", ")),
    };
    super::print(&format!(
        "features for {} images and {} spectra from {} files in {:.1}s ({} files already done)\nBPT classes: {}\n{not_measured}",
        report.images,
        report.spectra,
        report.files_done,
        started.elapsed().as_secs_f64(),
        report.files_skipped,
        if bpt.is_empty() { "none".into() } else { bpt.join(", ") }
    ))?;
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}
