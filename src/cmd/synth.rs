use color_eyre::Result;

use crate::cli::SynthArgs;
use crate::synth::{SynthConfig, write_survey};

pub fn run(args: &SynthArgs) -> Result<i32> {
    let cfg = SynthConfig {
        n_galaxies: args.galaxies,
        size: args.size,
        seed: args.seed,
        spectrum_fraction: args.spectra,
        anomaly_fraction: args.anomalies,
        nside: args.nside,
    };
    let bar = super::progress_bar("synth");
    bar.set_length(cfg.n_galaxies as u64);
    let summary = write_survey(&args.out, &cfg, &|k| bar.inc(k))?;
    bar.finish_and_clear();
    println!(
        "wrote {} images and {} spectra ({} anomalies) in {} files under {}",
        summary.n_images,
        summary.n_spectra,
        summary.n_anomalies,
        summary.files.len(),
        args.out.display()
    );
    println!("ground truth (for `oddity eval`, never ingested): {}", summary.truth.display());
    Ok(0)
}
