use std::path::Path;

use color_eyre::Result;

use crate::cli::{ScoreArgs, TopArgs};
use crate::detect::{FeatureSet, ForestParams, ScoreOptions, score_store};
use crate::store::Store;

/// Scores every object with an Isolation Forest; the new ranking replaces
/// the old one only once it is complete.
pub fn run(store_path: &Path, args: &ScoreArgs) -> Result<i32> {
    let store = Store::open_waiting(store_path, false, std::time::Duration::from_secs(args.wait))?;
    let _log = super::log_to(&store.log_dir());
    if store.feature_count() == 0 && args.apply.is_none() {
        eprintln!("error: no features in {}: run `oddity features` first", store.path().display());
        return Ok(1);
    }
    let opts = score_options(args);
    if args.fit_only {
        return fit_only(&store, &opts);
    }
    if let Some(file) = &args.apply {
        return apply(&store, file);
    }
    let bar = super::Bar(super::progress_bar("score"));
    let started = std::time::Instant::now();
    let report = score_store(&store, &opts, &bar)?;
    bar.0.finish_and_clear();
    let mut out = format!(
        "scored {} objects as score version {} in {:.1}s\n",
        report.n_scored,
        report.version,
        started.elapsed().as_secs_f64()
    );
    for note in &report.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    if report.spectrum_only > 0 {
        out.push_str(&format!(
            "  {} spectra without an image in the match radius ranked on their spectrum\n",
            report.spectrum_only
        ));
    }
    if report.relevance_labels > 0 {
        out.push_str(&format!(
            "  re-ranked with the expert's relevance from {} labelled objects\n",
            report.relevance_labels
        ));
    }
    for (survey, n, model, hash) in &report.per_survey {
        out.push_str(&format!(
            "  {survey:<14} {n:>10} objects  model {model} (isolation forests per feature group, sha256 {})\n",
            &hash[..12]
        ));
    }
    out.push_str("see the best candidates with `oddity top 20`\n");
    super::print(&out)
}

/// The scoring options the flags ask for.
fn score_options(args: &ScoreArgs) -> ScoreOptions {
    ScoreOptions {
        forest: ForestParams {
            n_estimators: args.trees,
            max_samples: args.max_samples,
            max_features: args.max_features,
            seed: args.seed,
        },
        write_batch: args.write_batch,
        rerank: !args.no_rerank,
        features: match args.features.as_str() {
            "deep" => FeatureSet::Deep,
            "both" => FeatureSet::Both,
            _ => FeatureSet::Hand,
        },
        crash_after_batches: args.crash_after_batches,
        fit_sample: args.fit_sample.max(1),
        fitted: None,
        shard_scores: false,
    }
}

/// `score --fit-only`: fits the forests once, for shards to apply.
fn fit_only(store: &Store, opts: &ScoreOptions) -> Result<i32> {
    let started = std::time::Instant::now();
    let forests = crate::detect::fit_forests(store, opts)?;
    let path = crate::shard::save_fit(store, &forests)?;
    let mut out = format!(
        "fitted the forests on a sample of at most {} rows per group in {:.1}s: {}\n",
        opts.fit_sample,
        started.elapsed().as_secs_f64(),
        path.display()
    );
    for (population, groups) in &forests.populations {
        let names: Vec<&str> = groups.iter().map(|g| g.group.as_str()).collect();
        out.push_str(&format!("  {population:<14} {}\n", names.join(", ")));
    }
    out.push_str("apply them in each shard with `oddity --store SHARD score --apply ");
    out.push_str(&format!("{}`, then `oddity merge SHARD...`\n", path.display()));
    super::print(&out)
}

/// `score --apply FILE`: applies fitted forests to this shard.
fn apply(store: &Store, file: &Path) -> Result<i32> {
    let file = if file.is_dir() { crate::shard::forests_path(file) } else { file.to_path_buf() };
    let forests = match std::fs::read(&file).ok().and_then(|b| crate::detect::FittedForests::from_bytes(&b)) {
        Some(f) => f,
        None => {
            eprintln!(
                "error: {}: no fitted forests there (run `oddity --store PROJECT score --fit-only` first)",
                file.display()
            );
            return Ok(1);
        }
    };
    let bar = super::Bar(super::progress_bar("apply"));
    let started = std::time::Instant::now();
    let report = crate::detect::apply_forests(store, &forests, &bar)?;
    bar.0.finish_and_clear();
    let mut out = format!(
        "applied forests {} to {} images and {} spectra in {:.1}s: fold them in with `oddity merge`\n",
        &forests.hash()[..12],
        report.images,
        report.spectra,
        started.elapsed().as_secs_f64()
    );
    for note in &report.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    super::print(&out)
}

/// Prints the top candidates of the current ranking, for scripts and for
/// people without a TUI.
pub fn top(store_path: &Path, args: &TopArgs) -> Result<i32> {
    let cmd = crate::serve::wire::Command::Top { n: args.n, tsv: args.tsv };
    let (text, code) = super::local_or_served(store_path, cmd, |store| top_text(store, args.n, args.tsv))?;
    super::finish(&text, code)
}

/// The best `n` candidates as a table: (text, exit code).
pub(crate) fn top_text(store: &Store, n: usize, tsv: bool) -> Result<(String, i32)> {
    let Some(version) = store.current_scores()? else {
        return Ok((format!("error: no scores in {}: run `oddity score` first\n", store.path().display()), 1));
    };
    let mut out = String::new();
    if !tsv {
        out.push_str(&format!(
            "# score version {} ({}, {}), {} objects\n",
            version.version, version.method, version.time, version.n_scored
        ));
    }
    out.push_str("rank\tsurvey\tobject_id\tra\tdec\tscore\n");
    for (rank, item) in store.ranked()?.take(n).enumerate() {
        let (key, score) = item?;
        let Some(obj) = store.object(key)? else { continue };
        out.push_str(&format!("{}\t{}\t{}\t{:.6}\t{:.6}\t{score:.4}\n", rank + 1, obj.survey, obj.id, obj.ra, obj.dec));
    }
    Ok((out, 0))
}
