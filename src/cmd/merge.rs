use std::path::Path;

use color_eyre::Result;

use crate::cli::MergeArgs;
use crate::shard::{ShardOutcome, merge};
use crate::store::{Store, StoreError, compact_store};

/// Folds shards into the project store; exit 1 when a shard could not be merged.
pub fn run(store_path: &Path, args: &MergeArgs) -> Result<i32> {
    let radius = match &args.radius {
        Some(r) => Some(crate::sky::parse_radius(r).map_err(|e| color_eyre::eyre::eyre!(e))?),
        None => None,
    };
    let store = Store::open_waiting(store_path, true, std::time::Duration::from_secs(args.wait))?;
    let _log = super::log_to(&store.log_dir());
    let started = std::time::Instant::now();
    let bar = super::Bar(super::progress_bar("merge"));
    let report = merge(&store, &args.shards, radius, &bar)?;
    bar.0.finish_and_clear();
    let mut out = String::new();
    let (mut merged, mut already) = (0, 0);
    for (path, outcome) in &report.shards {
        match outcome {
            ShardOutcome::Merged { objects, features, scores, embeddings } => {
                merged += 1;
                out.push_str(&format!(
                    "  merged  {}: {objects} objects, {features} feature rows, {scores} shard scores, \
                     {embeddings} deep features\n",
                    path.display()
                ));
            }
            ShardOutcome::AlreadyMerged => already += 1,
            ShardOutcome::Failed(why) => {
                eprintln!("error: shard {}: {why}", path.display());
                tracing::error!("shard {}: {why}", path.display());
            }
        }
    }
    for path in &report.stale_scores {
        eprintln!(
            "note: shard {}: its scores come from other forests than the project's fit: left aside \
             (run `oddity --store {} score --apply {}`)",
            path.display(),
            path.display(),
            crate::shard::forests_path(store.path()).display()
        );
    }
    let mut head = format!(
        "merged {merged} shards into {} in {:.1}s ({already} already merged, {} failed)\n",
        store.path().display(),
        started.elapsed().as_secs_f64(),
        report.failed()
    );
    head.push_str(&out);
    if let Some(m) = &report.crossmatch {
        head.push_str(&format!(
            "  cross-matched the merged catalogue: {} pairs within {}\" ({} across partitions)\n",
            m.n_matches, m.radius_arcsec, m.n_across_partitions
        ));
    }
    if let Some(s) = &report.scores {
        head.push_str(&format!(
            "  ranked {} objects from the shards' scores as score version {}\n",
            s.n_scored, s.version
        ));
        for note in &s.notes {
            head.push_str(&format!("  note: {note}\n"));
        }
    }
    super::print(&head)?;
    drop(store);
    if merged > 0 && !args.no_compact {
        compact_after_merge(store_path)?;
    }
    Ok(if report.failed() == 0 { 0 } else { 1 })
}

/// A merge rewrites scores and cross-matches, and the engine reuses the
/// pages that frees but never returns them: without this a project store
/// grew to twice a one-machine store. Another process may take the store
/// between the merge and this; then the file stays as it is, and says so.
fn compact_after_merge(store_path: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    match compact_store(store_path) {
        Ok((before, after)) => {
            super::print(&format!(
                "  compacted the store file: {:.1} MiB -> {:.1} MiB in {:.1}s\n",
                mib(before),
                mib(after),
                started.elapsed().as_secs_f64()
            ))?;
            Ok(())
        }
        Err(e @ StoreError::Locked { .. }) => {
            eprintln!("note: the store file was not compacted ({e}); `oddity compact` does it later");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
