use std::path::Path;
use std::time::Duration;

use color_eyre::Result;

use crate::cli::{EmbedArgs, Net, PretrainArgs, RetrainArgs};
use crate::learn::train::PretrainParams;
use crate::learn::{LearnError, NetSize, RetrainOptions, pretrain_store, retrain, write_status};

fn net_size(net: Net) -> NetSize {
    match net {
        Net::Tiny => NetSize::Tiny,
        Net::Lite0 => NetSize::Lite0,
    }
}

/// Fractal pretraining of the CNN backbone (no data or weights downloaded).
pub fn pretrain(store_path: &Path, args: &PretrainArgs) -> Result<i32> {
    let _log = super::log_to(&store_path.join("logs"));
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let params = PretrainParams {
        n_classes: args.classes,
        images_per_class: args.images_per_class,
        image_size: args.size,
        epochs: args.epochs,
        batch: args.batch,
        seed: args.seed,
        ..Default::default()
    };
    let bar = super::progress_bar("pretrain");
    bar.set_length(args.epochs as u64);
    let started = std::time::Instant::now();
    let (id, hash, loss) = pretrain_store(store_path, net_size(args.net), &params, &|epoch, loss| {
        bar.set_position(epoch as u64 + 1);
        bar.set_message(format!("loss {loss:.3}"));
    })
    .inspect_err(|e| write_status(store_path, "failed", &e.to_string()))?;
    bar.finish_and_clear();
    super::print(&format!(
        "pretrained {:?} on {} fractal classes in {:.0}s: final loss {loss:.3}, model {id} (sha256 {})\n",
        args.net,
        args.classes,
        started.elapsed().as_secs_f64(),
        &hash[..12]
    ))
}

/// FixMatch retrain from the labels, then a new score version.
pub fn retrain_cmd(store_path: &Path, args: &RetrainArgs) -> Result<i32> {
    let _log = super::log_to(&store_path.join("logs"));
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let opts = RetrainOptions {
        net: net_size(args.net),
        steps: args.steps,
        batch: args.batch,
        mu: args.mu,
        pool: args.pool,
        seed: args.seed,
        hold_back: args.hold_back,
        prior: args.prior,
        pretrain: (!args.no_pretrain).then(|| crate::learn::train::PretrainParams {
            n_classes: args.pretrain_classes,
            images_per_class: args.pretrain_images_per_class,
            epochs: args.pretrain_epochs,
            ..crate::learn::auto_pretrain_params(0, args.seed)
        }),
        wait: Duration::from_secs(args.wait),
        crash_after_batches: args.crash_after_batches,
        trial: (!args.no_trial).then_some(crate::retrain::trial::TrialRules {
            min_decisive: args.trial_min,
            cap: args.trial_cap,
            level: args.trial_level,
        }),
    };
    let started = std::time::Instant::now();
    let quiet = args.batch_mode;
    let report = retrain(store_path, &opts, &|line| {
        tracing::info!("{line}");
        if !quiet {
            eprintln!("{line}");
        }
    })
    .inspect_err(|e| {
        // A second retrain must not overwrite the running one's progress.
        if !matches!(e, LearnError::Busy(_)) {
            write_status(store_path, "failed", &e.to_string())
        }
    })?;
    let mut out = format!(
        "retrained on {} interesting and {} boring labels ({}) in {:.0}s; scored {} objects (model {}, sha256 {})\n",
        report.trained_on.0,
        report.trained_on.1,
        report.device,
        started.elapsed().as_secs_f64(),
        report.n_scored,
        report.model,
        &report.hash[..12]
    );
    for c in &report.candidates {
        out += &format!(
            "  {:<9} version {:>3}  held-out AUROC {:.3}  AUPRC {:.3}  {}\n",
            c.name,
            c.version.map(|v| v.to_string()).unwrap_or_default(),
            c.auroc,
            c.auprc,
            c.method
        );
    }
    for s in &report.skipped {
        out += &format!("skipped {s}\n");
    }
    out += &report.verdict;
    out.push('\n');
    super::print(&out)
}

/// Deep features: every cutout through the fractal-pretrained backbone,
/// PCA-reduced; or, for shards, the projection fitted once (`--fit-only`)
/// and applied per shard (`--apply`).
pub fn embed(store_path: &Path, args: &EmbedArgs) -> Result<i32> {
    let _log = super::log_to(&store_path.join("logs"));
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let opts = crate::learn::embed::EmbedOptions {
        net: net_size(args.net),
        components: args.components,
        seed: args.seed,
        fit_sample: args.fit_sample.max(1),
        ..Default::default()
    };
    if args.wait > 0 {
        // Batch jobs meet a person's `oddity status` or TUI: wait for the store to be free.
        drop(crate::store::Store::open_waiting(store_path, false, Duration::from_secs(args.wait))?);
    }
    let started = std::time::Instant::now();
    let say = |line: &str| {
        tracing::info!("{line}");
        eprintln!("{line}");
    };
    if args.fit_only {
        return embed_fit_only(store_path, &opts, &say);
    }
    let report = match &args.apply {
        Some(from) => {
            let projection = match crate::learn::embed::load_projection(from) {
                Ok(p) => p,
                Err(why) => {
                    eprintln!("error: {why} (run `oddity --store PROJECT embed --fit-only` first)");
                    return Ok(1);
                }
            };
            crate::learn::embed::apply_projection(store_path, &projection, &say)?
        }
        None => crate::learn::embed::embed_store(store_path, &opts, &say)?,
    };
    let mut out = String::new();
    for (survey, n, model, kept) in &report.per_survey {
        out.push_str(&format!(
            "{survey}: {n} cutouts embedded by pretrained model {model}; the components keep {:.0}% of the variance\n",
            100.0 * kept
        ));
    }
    for (survey, why) in &report.skipped {
        out.push_str(&format!("{survey}: skipped: {why}\n"));
    }
    let next = if args.apply.is_some() { "fold them in with `oddity merge`" } else { "`oddity score` ranks on them" };
    out.push_str(&format!("done in {:.0}s; {next}\n", started.elapsed().as_secs_f64()));
    let code = super::print(&out)?;
    Ok(if report.skipped.is_empty() { code } else { 1 })
}

/// `embed --fit-only`: fits the projection once, for shards to apply.
fn embed_fit_only(store_path: &Path, opts: &crate::learn::embed::EmbedOptions, say: &dyn Fn(&str)) -> Result<i32> {
    let started = std::time::Instant::now();
    let fit = crate::learn::embed::fit_projection(store_path, opts, say)?;
    let store = crate::store::Store::open(store_path)?;
    let path = crate::learn::embed::save_projection(&store, &fit.projection)?;
    let mut out = format!(
        "fitted the projection {} on a sample of at most {} cutouts per survey in {:.0}s: {}\n",
        &fit.projection.hash()[..12],
        fit.projection.fit_sample,
        started.elapsed().as_secs_f64(),
        path.display()
    );
    for p in &fit.projection.surveys {
        out.push_str(&format!(
            "  {:<14} {} cutouts, backbone model {}, {} components keep {:.0}% of the variance\n",
            p.survey,
            p.n_fitted,
            p.model,
            p.schema.names.len(),
            100.0 * p.schema.explained.iter().sum::<f32>()
        ));
    }
    for (survey, why) in &fit.skipped {
        out.push_str(&format!("{survey}: skipped: {why}\n"));
    }
    out.push_str(&format!(
        "apply it in each shard with `oddity --store SHARD embed --apply {}`, then `oddity merge SHARD...`\n",
        path.display()
    ));
    let code = super::print(&out)?;
    Ok(if fit.skipped.is_empty() { code } else { 1 })
}
