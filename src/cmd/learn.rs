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

/// Deep features: every cutout through the fractal-pretrained backbone, PCA-reduced.
pub fn embed(store_path: &Path, args: &EmbedArgs) -> Result<i32> {
    let _log = super::log_to(&store_path.join("logs"));
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let opts = crate::learn::embed::EmbedOptions {
        net: net_size(args.net),
        components: args.components,
        seed: args.seed,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let report = crate::learn::embed::embed_store(store_path, &opts, &|line| {
        tracing::info!("{line}");
        eprintln!("{line}");
    })?;
    let mut out = String::new();
    for (survey, n, model, kept) in &report.per_survey {
        out.push_str(&format!(
            "{survey}: {n} cutouts embedded by pretrained model {model}; {} components keep {:.0}% of the variance\n",
            args.components,
            100.0 * kept
        ));
    }
    for (survey, why) in &report.skipped {
        out.push_str(&format!("{survey}: skipped: {why}\n"));
    }
    out.push_str(&format!("done in {:.0}s; `oddity score` ranks on them\n", started.elapsed().as_secs_f64()));
    let code = super::print(&out)?;
    Ok(if report.skipped.is_empty() { code } else { 1 })
}
