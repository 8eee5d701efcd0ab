//! Command-line interface (clap derive). One variant per subcommand; the
//! work lives in `cmd::*`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "oddity", version, about = "Find the rare, interesting objects among millions of galaxies", long_about = None)]
pub struct Cli {
    /// Project store (a directory, created on first use).
    #[arg(long, global = true, env = "ODDITY_STORE", default_value = "oddity.db")]
    pub store: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic survey (images + spectra + ground truth) in the MultimodalUniverse layout.
    Synth(SynthArgs),
    /// Ingest survey files (MultimodalUniverse HDF5, FITS spectra and cutouts, image folders).
    Ingest(IngestArgs),
    /// Match images to spectra on the sky (nearest within a radius, one-to-one).
    Crossmatch(CrossmatchArgs),
    /// Compute morphology, colour and emission-line (BPT) features.
    Features,
    /// Score every object for anomaly (Isolation Forest) as a new ranking.
    Score(ScoreArgs),
    /// Print the top candidates of the current ranking.
    Top(TopArgs),
    /// Label candidates in the terminal (cutout, spectrum, single-key labels).
    Triage(TriageArgs),
    /// Deep features: embed every cutout with the fractal-pretrained backbone (PCA-reduced).
    Embed(EmbedArgs),
    /// Pretrain the CNN backbone on procedurally generated IFS fractals.
    Pretrain(PretrainArgs),
    /// Retrain the CNN with FixMatch on the labels, then rescore every object.
    Retrain(RetrainArgs),
    /// Simulated-expert evaluation against ground truth (on a copy of the store).
    Eval(EvalArgs),
    /// Write the labels for other tools (CSV, Astronomaly, AnomalyMatch).
    Export(ExportArgs),
    /// Show what the store holds.
    Status(StatusArgs),
    /// Fold shards (stores written by slices of the input) into the project store.
    Merge(MergeArgs),
    /// Run a stage over slices as Slurm array jobs (or as local processes with --local).
    Slurm(SlurmArgs),
    /// Copy a store written by an older oddity (sled engine) into this version's format.
    UpgradeStore,
    /// Shrink the store's file: give the pages freed by re-scores and merges back to the disk.
    Compact,
}

#[derive(Debug, clap::Args)]
pub struct SlurmArgs {
    #[command(subcommand)]
    pub action: SlurmAction,
}

#[derive(Debug, Subcommand)]
pub enum SlurmAction {
    /// Ingest + features per slice into shards (array job), then merge them (afterok).
    Ingest(SlurmStageArgs),
    /// Fit the forests once, apply them per shard (array job), then merge the scores.
    Score(SlurmStageArgs),
    /// Both: ingest, merge, fit, score, merge, chained with afterok.
    All(SlurmStageArgs),
    /// After ingest: fit the embedding's projection once, embed per shard (array job), then merge.
    Embed(SlurmStageArgs),
    /// Resubmit only the failed tasks of the last submission, and what depends on them.
    Retry(SlurmRunArgs),
}

#[derive(Debug, clap::Args)]
pub struct SlurmStageArgs {
    /// Survey files or folders (for ingest and all).
    pub paths: Vec<PathBuf>,
    /// Number of slices (array tasks).
    #[arg(long, short = 'n')]
    pub slices: usize,
    /// Folder of the shards, scripts and task logs (default: <store>.shards next to the store).
    #[arg(long)]
    pub shards: Option<PathBuf>,
    /// Seed of the forests (as `oddity score --seed`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows each group's forest is fitted on.
    #[arg(long, default_value_t = crate::detect::DEFAULT_FIT_SAMPLE)]
    pub fit_sample: usize,
    /// Cutouts per survey the embedding's PCA is fitted on (for embed).
    #[arg(long, default_value_t = crate::shard::DEFAULT_EMBED_FIT_SAMPLE)]
    pub embed_sample: usize,
    /// Write the scripts and print the commands without submitting.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: SlurmRunArgs,
}

#[derive(Debug, clap::Args)]
pub struct SlurmRunArgs {
    /// No Slurm: run the same task scripts as this many local processes.
    #[arg(long, value_name = "N")]
    pub local: Option<usize>,
    /// Resources from a TOML profile (partition, cpus, mem, time, account, extra = [...]).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    #[arg(long)]
    pub partition: Option<String>,
    /// CPUs per task.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory per task (e.g. 8G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Time limit per task (e.g. 02:00:00).
    #[arg(long)]
    pub time: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    /// The oddity binary the tasks run (default: this one).
    #[arg(long)]
    pub oddity: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Shard stores (e.g. shards/*); a missing or unfinished one is named and the rest merged.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Cross-match radius over the merged catalogue (default: the project's last, else 1arcsec).
    #[arg(long)]
    pub radius: Option<String>,
    /// Seconds to wait for the project store while another process holds it.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Leave the store file as it is after merging (by default the pages a
    /// merge freed are handed back to the disk, as `oddity compact` does).
    #[arg(long)]
    pub no_compact: bool,
}

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output folder.
    pub out: PathBuf,
    /// Number of galaxies with images.
    #[arg(long, default_value_t = 20_000)]
    pub galaxies: usize,
    /// Cutout size in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of galaxies with an SDSS-like spectrum.
    #[arg(long, default_value_t = 0.15)]
    pub spectra: f64,
    /// Fraction of galaxies that are anomalies.
    #[arg(long, default_value_t = 0.01)]
    pub anomalies: f64,
    /// HEALPix nside of the file partitions.
    #[arg(long, default_value_t = 64)]
    pub nside: u32,
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Files or folders: MultimodalUniverse HDF5, SDSS spec FITS, FITS cutouts,
    /// PNG/JPEG/TIFF cutouts (recognised by content; folders are walked).
    /// Without paths, the files listed in --catalog.
    #[arg(required_unless_present = "catalog")]
    pub paths: Vec<PathBuf>,
    /// Survey name for files outside the `<survey>/<sample>/healpix=N/` layout
    /// (default: the parent folder's name).
    #[arg(long)]
    pub survey: Option<String>,
    /// Band names in the files' order (comma-separated), overriding FITS
    /// FILTER/BAND keywords, HDF5 `image_band` and image channels; names the one
    /// band of (N, H, W) HDF5 images.
    #[arg(long, value_delimiter = ',')]
    pub bands: Option<Vec<String>>,
    /// Catalogue CSV with columns file (or filename), object_id, ra, dec
    /// [, pixel_scale, ...]: positions and ids of image files and FITS without WCS.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Arcsec per pixel for cutouts whose file and catalogue give none.
    #[arg(long, value_name = "ARCSEC")]
    pub pixel_scale: Option<f32>,
    /// Only slice I of N of the files (HEALPix partitions kept together), e.g. into a shard: 3/16.
    #[arg(long, value_name = "I/N")]
    pub slice: Option<crate::shard::Slice>,
    /// Stop after this many batches (testing interrupted runs).
    #[arg(long, hide = true)]
    pub max_batches: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one file per line as well.
    #[arg(long)]
    pub files: bool,
}

#[derive(Debug, clap::Args)]
pub struct CrossmatchArgs {
    /// Match radius: 1arcsec, 0.5", 2arcmin, 0.001deg (a bare number is arcsec).
    #[arg(long, default_value = "1arcsec")]
    pub radius: String,
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Number of trees.
    #[arg(long, default_value_t = 200)]
    pub trees: usize,
    /// Rows drawn to grow each tree.
    #[arg(long, default_value_t = 256)]
    pub max_samples: usize,
    /// Fraction of features each tree may split on.
    #[arg(long, default_value_t = 1.0)]
    pub max_features: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Anomaly scores only: ignore the expert's labels (no active-learning re-rank).
    #[arg(long)]
    pub no_rerank: bool,
    /// Image features ranked on: hand-made, deep (`oddity embed`), or both.
    #[arg(long, default_value = "hand", value_parser = ["hand", "deep", "both"])]
    pub features: String,
    /// Rows each group's forest is fitted on (a sample drawn by the seed; all rows if fewer).
    #[arg(long, default_value_t = crate::detect::DEFAULT_FIT_SAMPLE)]
    pub fit_sample: usize,
    /// Fit the forests for shards and save them (`<store>/forests.bin`); score nothing.
    #[arg(long, conflicts_with = "apply")]
    pub fit_only: bool,
    /// In a shard: apply forests saved by `--fit-only` (a file or the project store) for `oddity merge`.
    #[arg(long, value_name = "FOREST_FILE")]
    pub apply: Option<PathBuf>,
    /// Seconds to wait for the store while another process holds it.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Scores written per store batch.
    #[arg(long, hide = true, default_value_t = 50_000)]
    pub write_batch: usize,
    /// Abort after writing this many batches (testing crash safety).
    #[arg(long, hide = true)]
    pub crash_after_batches: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// How many candidates.
    #[arg(default_value_t = 20)]
    pub n: usize,
    /// Only the tab-separated table, no comment line.
    #[arg(long)]
    pub tsv: bool,
}

#[derive(Debug, clap::Args)]
pub struct TriageArgs {
    /// How to draw cutouts.
    #[arg(long, value_enum, default_value = "auto")]
    pub graphics: Graphics,
    /// Keymap TOML overriding the defaults (default ~/.config/oddity/keymap.toml).
    #[arg(long)]
    pub keymap: Option<std::path::PathBuf>,
    /// Ordering: score, id, random, recent (labelled), uncertain.
    #[arg(long, default_value = "score", value_parser = ["score", "id", "random", "recent", "uncertain"])]
    pub order: String,
    /// Show labelled objects too (default: unlabelled only).
    #[arg(long)]
    pub all: bool,
    /// Fraction of candidates shown to every expert of a team (to measure
    /// agreement); the rest are shared out, each to one expert. Set by the
    /// first triage on a store (the one that serves it).
    #[arg(long, default_value_t = 0.0, value_parser = overlap_fraction)]
    pub overlap: f64,
    /// When quitting with new labels: start a background retrain, ask, or never.
    #[arg(long, default_value = "retrain", value_parser = ["retrain", "ask", "never"])]
    pub on_quit: String,
    /// Extra arguments for that retrain (e.g. "--steps 1000 --net lite0").
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub retrain_args: String,
}

fn overlap_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not a fraction between 0 and 1")) }
}

/// How cutouts reach the terminal (`tui::Graphics`, which has no clap in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Graphics {
    /// Ask the terminal (kitty, sixel, iTerm2), else half-blocks.
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    /// Unicode half-blocks: works in every colour terminal.
    Halfblocks,
}

impl From<Graphics> for crate::tui::Graphics {
    fn from(g: Graphics) -> Self {
        match g {
            Graphics::Auto => Self::Auto,
            Graphics::Kitty => Self::Kitty,
            Graphics::Sixel => Self::Sixel,
            Graphics::Iterm2 => Self::Iterm2,
            Graphics::Halfblocks => Self::Halfblocks,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Everything: relevance, verdict, tags, favourite, users, disagreement, score.
    Csv,
    /// Astronomaly's labels file: id,human_label (0–5).
    Astronomaly,
    /// AnomalyMatch's labeled_data.csv: filename,label (anomaly/normal).
    Anomalymatch,
    /// One row per object: position, ids, match, every feature, line fluxes,
    /// BPT, score and rank, labels. Parquet, FITS or CSV by the --out
    /// extension (.parquet, .fits, .csv; CSV to stdout without --out).
    Catalog,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Output file (default: stdout; a catalogue's format follows its extension).
    #[arg(long, short)]
    pub out: Option<std::path::PathBuf>,
    /// Image file extension for AnomalyMatch file names.
    #[arg(long, default_value = "png")]
    pub image_ext: String,
}

/// Network size: `tiny` for CPUs and tests, `lite0` for GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Net {
    Tiny,
    Lite0,
}

#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    #[arg(long, value_enum, default_value = "tiny")]
    pub net: Net,
    /// Fractal classes (the paper uses ~1000; on a CPU start smaller).
    #[arg(long, default_value_t = 100)]
    pub classes: usize,
    #[arg(long, default_value_t = 50)]
    pub images_per_class: usize,
    /// Image size in pixels (0: the survey's cutout size).
    #[arg(long, default_value_t = 0)]
    pub size: i64,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch CPU threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
}

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Backbone pretrained first when the store has none for a survey's band count.
    #[arg(long, value_enum, default_value = "tiny")]
    pub net: Net,
    /// Principal components kept of the pooled embedding.
    #[arg(long, default_value_t = 16)]
    pub components: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch CPU threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Cutouts per survey the PCA is fitted on (drawn by a hash of (file, row) and the seed; all if fewer).
    #[arg(long, default_value_t = crate::shard::DEFAULT_EMBED_FIT_SAMPLE)]
    pub fit_sample: usize,
    /// Fit the projection (backbone + PCA) for shards and save it (`<store>/projection.bin`); embed nothing.
    #[arg(long, conflicts_with = "apply")]
    pub fit_only: bool,
    /// In a shard: embed with a projection saved by `--fit-only` (a file or the project store) for `oddity merge`.
    #[arg(long, value_name = "PROJECTION_FILE")]
    pub apply: Option<PathBuf>,
    /// Seconds to wait for the store while another process holds it.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
}

#[derive(Debug, clap::Args)]
pub struct RetrainArgs {
    #[arg(long, value_enum, default_value = "tiny")]
    pub net: Net,
    /// Training steps.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Labelled batch size B (the unlabelled batch is mu x B).
    #[arg(long = "batch-size", default_value_t = 16)]
    pub batch: usize,
    /// Unlabelled images per labelled one in a batch (2 ranked the demo survey's
    /// held-out objects better than 5, in half the time).
    #[arg(long, default_value_t = 2)]
    pub mu: usize,
    /// Unlabelled images sampled for FixMatch.
    #[arg(long, default_value_t = 2048)]
    pub pool: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of each class's labels held back to judge the new model (at least one each).
    #[arg(long, default_value_t = crate::retrain::gate::HOLD_BACK)]
    pub hold_back: f64,
    /// Expected fraction of anomalies among unlabelled objects: they are learnt as normal
    /// with the positive-unlabelled risk for it (0: FixMatch pseudo-labels instead).
    #[arg(long, default_value_t = 0.01)]
    pub prior: f64,
    /// A challenger the held-out gate does not promote goes on trial: triage
    /// interleaves it with the current ranking (team draft) until this many
    /// of its or the current ranking's picks are labelled interesting...
    #[arg(long, default_value_t = 20)]
    pub trial_min: usize,
    /// ...and wins if a one-sided sign test on them says so at this level...
    #[arg(long, default_value_t = 0.05)]
    pub trial_level: f64,
    /// ...or is rejected after this many labelled picks.
    #[arg(long, default_value_t = 200)]
    pub trial_cap: usize,
    /// Keep challengers the gate does not promote as versions only, never on trial.
    #[arg(long)]
    pub no_trial: bool,
    /// Train from scratch when the store has no fractal-pretrained backbone,
    /// instead of pretraining one first (once per store, ~1-2 min on a CPU).
    #[arg(long)]
    pub no_pretrain: bool,
    /// Fractal classes of that automatic pretraining.
    #[arg(long, default_value_t = 100)]
    pub pretrain_classes: usize,
    /// Images per fractal class of that automatic pretraining.
    #[arg(long, default_value_t = 50)]
    pub pretrain_images_per_class: usize,
    /// Epochs of that automatic pretraining.
    #[arg(long, default_value_t = 5)]
    pub pretrain_epochs: usize,
    /// Seconds to wait for the store if another process holds it.
    #[arg(long, default_value_t = 86_400)]
    pub wait: u64,
    /// For schedulers and GPU nodes: no progress lines, only the summary.
    #[arg(long = "batch")]
    pub batch_mode: bool,
    /// libtorch CPU threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// SIGKILL after writing this many score batches (testing crash safety).
    #[arg(long, hide = true)]
    pub crash_after_batches: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Ground truth (the synthetic survey's truth.csv: object_id, kind, interesting).
    #[arg(long)]
    pub truth: std::path::PathBuf,
    /// Where the working copy of the store and eval.csv go.
    #[arg(long, default_value = "oddity-eval")]
    pub out: std::path::PathBuf,
    #[arg(long, default_value_t = 3)]
    pub cycles: usize,
    /// Candidates the simulated expert labels per cycle.
    #[arg(long, default_value_t = 100)]
    pub per_cycle: usize,
    /// Interesting anomalies labelled before the first cycle.
    #[arg(long, default_value_t = 10)]
    pub start: usize,
    /// Recall is measured in the top K.
    #[arg(long, default_value_t = 2000)]
    pub recall_k: usize,
    /// CNN training steps per cycle, as `oddity retrain --steps` (0: no CNN).
    #[arg(long, default_value_t = 300)]
    pub cnn_steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch CPU threads.
    #[arg(long)]
    pub threads: Option<i32>,
}
