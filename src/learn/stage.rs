//! The `pretrain` and `retrain` stages over a store.
//!
//! The store allows one process at a time and the expert may be labelling
//! while a retrain runs, so a run (1) opens the store briefly and takes a
//! snapshot of what it needs (labels, image references, the latest
//! pretrained checkpoint), (2) closes it and trains without any lock, reading
//! pixels straight from the survey files, and (3) reopens it for a short
//! exclusive step that writes the model record and the new score version,
//! waiting for the store to be free. Progress goes to `<store>/retrain.json`,
//! a plain file `oddity status` reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Kind, Tensor, nn};

use super::checkpoint;
use super::infer::predict;
use super::net::{Net, NetConfig, copy_backbone};
use super::train::{FixMatchParams, Labelled, PretrainParams, fixmatch_train, pretrain};
use crate::ingest::{SourceReader, open_source};
use crate::store::{LabelBook, ModelRecord, ObjectKey, ScoreVersion, SourceFile, SourceKind, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Data(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Network size: `tiny` for CPUs and tests, `lite0` for GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum NetSize {
    Tiny,
    Lite0,
}

impl NetSize {
    fn config(self, channels: i64, classes: i64) -> NetConfig {
        match self {
            NetSize::Tiny => NetConfig::tiny(channels, classes),
            NetSize::Lite0 => NetConfig::lite0(channels, classes),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetrainOptions {
    pub net: NetSize,
    pub steps: usize,
    pub batch: usize,
    pub mu: usize,
    /// Unlabelled images sampled for FixMatch.
    pub pool: usize,
    pub seed: u64,
    /// How long to wait for the store at the end (the TUI may hold it).
    pub wait: Duration,
    /// SIGKILL the process after this many score batches (crash tests).
    pub crash_after_batches: Option<usize>,
}

impl Default for RetrainOptions {
    fn default() -> Self {
        RetrainOptions {
            net: NetSize::Tiny,
            steps: 300,
            batch: 16,
            mu: 5,
            pool: 2048,
            seed: 0,
            wait: Duration::from_secs(24 * 3600),
            crash_after_batches: None,
        }
    }
}

#[derive(Debug)]
pub struct RetrainReport {
    pub version: u32,
    pub model: u32,
    pub hash: String,
    pub n_anomalies: usize,
    pub n_normals: usize,
    pub n_scored: usize,
    pub device: String,
}

/// What a retrain takes from the store before letting go of it.
struct Snapshot {
    sources: HashMap<u32, SourceFile>,
    images: Vec<ObjectKey>,
    labelled: Vec<(ObjectKey, i64)>,
    pretrained: Option<(PathBuf, NetConfig)>,
    events: usize,
    bands: usize,
    shape: (usize, usize),
}

/// Writes the progress file read by `oddity status`.
pub fn write_status(store: &Path, state: &str, message: &str) {
    let body = serde_json::json!({
        "state": state,
        "message": message,
        "pid": std::process::id(),
        "time": chrono::Utc::now().to_rfc3339(),
    });
    let path = store.join("retrain.json");
    let tmp = store.join("retrain.json.partial");
    if std::fs::write(&tmp, body.to_string()).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

/// The last retrain's state, if any: (state, message, time).
pub fn read_status(store: &Path) -> Option<(String, String, String)> {
    let text = std::fs::read_to_string(store.join("retrain.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Some((s("state"), s("message"), s("time")))
}

fn snapshot(store_path: &Path) -> Result<Snapshot, LearnError> {
    let store = Store::open(store_path)?;
    let sources: HashMap<u32, SourceFile> =
        store.sources()?.into_iter().filter(|(_, s)| s.kind == SourceKind::Images).collect();
    let first = sources.values().next().ok_or_else(|| LearnError::Data("no image objects in the store".into()))?;
    let (bands, shape) = (first.bands.len().max(1), (first.shape.0 as usize, first.shape.1 as usize));
    // One network takes one band count: the first survey's. Cutouts of other
    // sizes are resampled to its cutout size (see `load_images`).
    let images: Vec<ObjectKey> = store
        .image_keys_owned()
        .filter_map(|k| k.ok())
        .filter(|k| sources.get(&k.file).is_some_and(|s| s.bands.len().max(1) == bands))
        .collect();
    let events = store.label_events()?;
    let n_events = events.len();
    let book = LabelBook::from_events(events);
    let mut labelled: Vec<(ObjectKey, i64)> = book
        .targets()
        .filter(|(k, _)| sources.contains_key(&k.file))
        .map(|(k, t)| (k, i64::from(t.interesting)))
        .collect();
    labelled.sort();
    let mut pretrained = None;
    for item in store.models_of_kind("cnn-pretrain")? {
        let cfg: Option<NetConfig> = serde_json::from_str(&item.params).ok();
        if let (Some(cfg), Some(path)) = (cfg, item.blob_path()) {
            if cfg.in_channels == bands as i64 && path.exists() {
                pretrained = Some((path, cfg));
            }
        }
    }
    Ok(Snapshot { sources, images, labelled, pretrained, events: n_events, bands, shape })
}

/// Per-band robust normalisation for the network: sky (border median)
/// subtracted, divided by the sky noise, asinh-compressed; NaN become 0.
pub fn normalise(pixels: &mut [f32], bands: usize, h: usize, w: usize) {
    for b in 0..bands {
        let band = &mut pixels[b * h * w..(b + 1) * h * w];
        let mut border: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .filter(|&(y, x)| y < 2 || x < 2 || y + 2 >= h || x + 2 >= w)
            .map(|(y, x)| band[y * w + x])
            .filter(|v| v.is_finite())
            .collect();
        let median = |v: &mut Vec<f32>| -> f32 {
            if v.is_empty() {
                return 0.0;
            }
            let m = v.len() / 2;
            *v.select_nth_unstable_by(m, f32::total_cmp).1
        };
        let sky = median(&mut border);
        let mut dev: Vec<f32> = border.iter().map(|v| (v - sky).abs()).collect();
        let noise = (1.4826 * median(&mut dev)).max(1e-6);
        for v in band.iter_mut() {
            *v = if v.is_finite() { ((*v - sky) / (3.0 * noise)).asinh() } else { 0.0 };
        }
    }
}

/// Reads and normalises the cutouts of `keys` (grouped by file), N×C×H×W.
fn load_images(snap: &Snapshot, keys: &[ObjectKey]) -> Result<Tensor, LearnError> {
    let (c, (h, w)) = (snap.bands, snap.shape);
    let mut out = vec![0f32; keys.len() * c * h * w];
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let mut tables: HashMap<u32, Box<dyn SourceReader>> = HashMap::new();
    for i in order {
        let key = keys[i];
        let source = &snap.sources[&key.file];
        if let std::collections::hash_map::Entry::Vacant(slot) = tables.entry(key.file) {
            slot.insert(open_source(source).map_err(|e| LearnError::Data(format!("{}: {e}", source.path)))?);
        }
        let px = tables[&key.file]
            .read_images(key.row as usize..key.row as usize + 1)
            .map_err(|e| LearnError::Data(format!("{}: {e}", source.path)))?;
        let dst = &mut out[i * c * h * w..(i + 1) * c * h * w];
        let (sh, sw) = (source.shape.0 as usize, source.shape.1 as usize);
        if let Some(src) = px.data.as_slice().filter(|s| s.len() == c * sh * sw) {
            if (sh, sw) == (h, w) {
                dst.copy_from_slice(src);
                normalise(dst, c, h, w);
            } else {
                let mut own = src.to_vec();
                normalise(&mut own, c, sh, sw);
                dst.copy_from_slice(&resample(&own, c, (sh, sw), (h, w)));
            }
        }
    }
    Ok(Tensor::from_slice(&out).reshape([keys.len() as i64, c as i64, h as i64, w as i64]))
}

/// Resamples a normalised C×H×W cutout to `to` (antialiased bilinear, so
/// larger cutouts are averaged down rather than aliased), for a network that
/// takes one input size whatever the cutouts' sizes.
pub fn resample(pixels: &[f32], c: usize, from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    let x = Tensor::from_slice(pixels).reshape([1, c as i64, from.0 as i64, from.1 as i64]);
    let y = x.internal_upsample_bilinear2d_aa([to.0 as i64, to.1 as i64], false, None, None);
    Vec::<f32>::try_from(&y.reshape([-1])).expect("f32 pixels")
}

/// Opens the store, waiting while another process (the TUI) holds it.
fn open_when_free(store_path: &Path, wait: Duration) -> Result<Store, LearnError> {
    let deadline = Instant::now() + wait;
    loop {
        match Store::open(store_path) {
            Ok(s) => return Ok(s),
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                write_status(store_path, "waiting", "trained; waiting for the store (is `oddity triage` open?)");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// FixMatch retrain from the expert's labels, then inference over every
/// image object, written as a new score version.
pub fn retrain(store_path: &Path, opts: &RetrainOptions, progress: &dyn Fn(&str)) -> Result<RetrainReport, LearnError> {
    write_status(store_path, "running", "taking a snapshot of the labels");
    let snap = snapshot(store_path)?;
    let n_anomalies = snap.labelled.iter().filter(|(_, y)| *y == 1).count();
    let n_normals = snap.labelled.len() - n_anomalies;
    if n_anomalies == 0 || n_normals == 0 {
        let msg = format!(
            "retrain needs labelled anomalies and normals (have {n_anomalies} and {n_normals}): label some in `oddity triage`"
        );
        write_status(store_path, "failed", &msg);
        return Err(LearnError::Data(msg));
    }
    let device = super::device();
    tch::manual_seed(opts.seed as i64);
    write_status(
        store_path,
        "running",
        &format!("training on {n_anomalies} anomalies and {n_normals} normals ({device:?})"),
    );
    progress(&format!("training on {n_anomalies} anomalies, {n_normals} normals, device {device:?}"));

    // Labelled images, and an unlabelled pool sampled from the rest.
    let labelled_keys: Vec<ObjectKey> = snap.labelled.iter().map(|(k, _)| *k).collect();
    let labels: Vec<i64> = snap.labelled.iter().map(|(_, y)| *y).collect();
    let mut pool: Vec<ObjectKey> =
        snap.images.iter().copied().filter(|k| labelled_keys.binary_search(k).is_err()).collect();
    pool.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed));
    pool.truncate(opts.pool);
    let labelled = Labelled { images: load_images(&snap, &labelled_keys)?, labels };
    let unlabelled = load_images(&snap, &pool)?;

    let cfg = opts.net.config(snap.bands as i64, 2);
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &cfg);
    if let Some((path, pre_cfg)) = &snap.pretrained {
        let mut pre_vs = nn::VarStore::new(device);
        let _pre = Net::new(&pre_vs.root(), pre_cfg);
        checkpoint::load(&mut pre_vs, path)?;
        match copy_backbone(&pre_vs, &vs) {
            Ok(n) => progress(&format!("backbone from the fractal-pretrained checkpoint ({n} tensors)")),
            Err(e) => progress(&format!("pretrained checkpoint does not fit ({e}); training from scratch")),
        }
    }
    let params =
        FixMatchParams { steps: opts.steps, batch: opts.batch, mu: opts.mu, seed: opts.seed, ..Default::default() };
    let report = fixmatch_train(&net, &vs, &labelled, &unlabelled, &params, device, &|s| {
        if s.step % 50 == 0 {
            tracing::info!(step = s.step, loss = s.loss, mask = s.mask_rate, "fixmatch");
        }
    });
    let last = report.last().map(|s| s.loss).unwrap_or(f64::NAN);
    drop(labelled);
    drop(unlabelled);

    // Checkpoint next to the store, content-hashed.
    let models_dir = store_path.join("models");
    std::fs::create_dir_all(&models_dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let path = models_dir.join(format!("fixmatch-{stamp}-{}.safetensors", std::process::id()));
    let hash = checkpoint::save(&vs, &path)?;

    // Inference over every image object, in batches read file by file.
    write_status(store_path, "running", "scoring every object with the new model");
    let mut scores: Vec<(ObjectKey, f32)> = Vec::with_capacity(snap.images.len());
    for chunk in snap.images.chunks(512) {
        let x = load_images(&snap, chunk)?;
        let p = predict(&net, &x.to_kind(Kind::Float), 128, device);
        scores.extend(chunk.iter().copied().zip(p));
    }

    // The short exclusive step.
    let store = open_when_free(store_path, opts.wait)?;
    let params_json = serde_json::json!({
        "net": cfg,
        "fixmatch": { "steps": opts.steps, "batch": opts.batch, "mu": opts.mu, "tau": params.tau, "lambda_u": params.lambda_u, "seed": opts.seed },
        "labels": { "anomalies": n_anomalies, "normals": n_normals, "events": snap.events },
        "final_loss": last,
        "checkpoint": path.to_string_lossy(),
    });
    let model = store.put_model(ModelRecord {
        id: 0,
        kind: "fixmatch-cnn".into(),
        survey: snap.sources.values().next().map(|s| s.survey.clone()).unwrap_or_default(),
        created: chrono::Utc::now().to_rfc3339(),
        params: params_json.to_string(),
        features: vec![],
        blob: path.to_string_lossy().as_bytes().to_vec(),
        hash: hash.clone(),
    })?;
    let version = store.begin_scores()?;
    for (i, chunk) in scores.chunks(20_000).enumerate() {
        store.put_scores(version, chunk)?;
        if opts.crash_after_batches == Some(i + 1) {
            store.flush()?;
            let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
            std::process::abort();
        }
    }
    store.commit_scores(&ScoreVersion {
        version,
        models: vec![model],
        method: format!("fixmatch-cnn ({n_anomalies} anomalies, {n_normals} normals labelled)"),
        time: chrono::Utc::now().to_rfc3339(),
        n_scored: scores.len() as u64,
    })?;
    let report = RetrainReport {
        version,
        model,
        hash,
        n_anomalies,
        n_normals,
        n_scored: scores.len(),
        device: format!("{device:?}"),
    };
    write_status(
        store_path,
        "done",
        &format!("score version {version} from model {model} ({} labels)", n_anomalies + n_normals),
    );
    Ok(report)
}

/// Fractal pretraining of the backbone; the checkpoint goes next to the store
/// and a `cnn-pretrain` model record points at it.
pub fn pretrain_store(
    store_path: &Path,
    net: NetSize,
    params: &PretrainParams,
    progress: &dyn Fn(usize, f64),
) -> Result<(u32, String, f64), LearnError> {
    let channels = {
        let store = Store::open(store_path)?;
        store
            .sources()?
            .into_iter()
            .find(|(_, s)| s.kind == SourceKind::Images)
            .map(|(_, s)| s.bands.len().max(1) as i64)
            .ok_or_else(|| LearnError::Data("no image objects in the store: ingest first".into()))?
    };
    let device = super::device();
    // Same seed, same initial weights: a pretraining run can be reproduced.
    tch::manual_seed(params.seed as i64);
    write_status(store_path, "running", "fractal pretraining");
    let cfg = net.config(channels, params.n_classes as i64);
    let (vs, _net, loss) = pretrain(&cfg, params, device, progress);
    let models_dir = store_path.join("models");
    std::fs::create_dir_all(&models_dir)?;
    let path = models_dir.join(format!("pretrain-{}.safetensors", chrono::Utc::now().format("%Y%m%dT%H%M%S")));
    let hash = checkpoint::save(&vs, &path)?;
    let store = open_when_free(store_path, Duration::from_secs(24 * 3600))?;
    let mut cfg_used = cfg.clone();
    cfg_used.num_classes = params.n_classes as i64;
    let id = store.put_model(ModelRecord {
        id: 0,
        kind: "cnn-pretrain".into(),
        survey: String::new(),
        created: chrono::Utc::now().to_rfc3339(),
        params: serde_json::to_string(&cfg_used).unwrap_or_default(),
        features: vec![],
        blob: path.to_string_lossy().as_bytes().to_vec(),
        hash: hash.clone(),
    })?;
    write_status(store_path, "done", &format!("pretrained model {id} (loss {loss:.3})"));
    Ok((id, hash, loss))
}

#[cfg(test)]
mod resample_tests {
    use super::resample;

    #[test]
    fn resampling_keeps_levels_and_takes_the_target_size() {
        let flat = vec![2.5f32; 3 * 40 * 30];
        let out = resample(&flat, 3, (40, 30), (16, 16));
        assert_eq!(out.len(), 3 * 16 * 16);
        assert!(out.iter().all(|v| (v - 2.5).abs() < 1e-5));
        // A left-to-right ramp stays a ramp with the same mean, band by band.
        let ramp: Vec<f32> = (0..2 * 64 * 64).map(|i| (i % 64) as f32 + 100.0 * (i / 4096) as f32).collect();
        let out = resample(&ramp, 2, (64, 64), (32, 32));
        for b in 0..2 {
            let band = &out[b * 1024..(b + 1) * 1024];
            let mean = band.iter().sum::<f32>() / 1024.0;
            assert!((mean - (31.5 + 100.0 * b as f32)).abs() < 0.05, "{mean}");
            assert!(band[1] > band[0] && band[31] > band[30]);
        }
    }
}
