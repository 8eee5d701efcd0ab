//! Deep features (`oddity embed`): the fractal-pretrained backbone's pooled
//! embedding of every cutout, reduced by PCA to a few components that join
//! the hand-made features in the ranking, as Astronomaly does at scale with
//! CNN features. The backbone and the PCA are stored with the schema, so the
//! components are reproducible and `score` knows what it ranks on.
//!
//! Memory stays bounded: the PCA is fitted on a sample of at most
//! [`PCA_SAMPLE`] cutouts drawn by a hash of each cutout's (file path, row)
//! and the seed as the keys stream past, then every cutout is embedded and
//! projected in batches that go straight to the store.
//!
//! Beyond one machine the two halves run apart, as `score`'s do: `embed
//! --fit-only` fits a [`Projection`] (per survey: the backbone's weights, the
//! cutout shape and the PCA) once in the project store, whose hash-drawn
//! sample is the one a single machine draws, and saves it; `embed --apply`
//! embeds a shard with it; `oddity merge` carries the shards' components into
//! the project store and refuses a shard embedded with another projection.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor, nn};

use super::checkpoint;
use super::feed::{CutoutSpec, FeedOptions, feed};
use super::net::{Net, NetConfig};
use super::stage::{LearnError, NetSize, pretrain_store};
use super::train::PretrainParams;
use crate::shard::{EMBED_APPLIED_NOTE, EMBED_FIT_NOTE, projection_path};
use crate::store::{EmbeddingSchema, ModelRecord, ObjectKey, SourceFile, SourceKind, Store};

/// Cutouts the PCA is fitted on (a fixed pseudo-random sample).
pub const PCA_SAMPLE: usize = crate::shard::DEFAULT_EMBED_FIT_SAMPLE;
/// Bumped when the embedding or its reduction changes meaning.
pub const EMBEDDING_VERSION: u32 = 1;
/// Cutouts embedded per forward pass.
const BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Backbone to pretrain when the store has none for a survey's band count.
    pub net: NetSize,
    /// PCA components kept.
    pub components: usize,
    /// Fractal pretraining used when no pretrained backbone exists yet.
    pub pretrain: PretrainParams,
    pub seed: u64,
    /// Cutouts per survey the PCA is fitted on (all when fewer).
    pub fit_sample: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            net: NetSize::Tiny,
            components: 16,
            pretrain: PretrainParams {
                n_classes: 100,
                images_per_class: 20,
                epochs: 2,
                batch: 64,
                ..Default::default()
            },
            seed: 0,
            fit_sample: PCA_SAMPLE,
        }
    }
}

#[derive(Debug, Default)]
pub struct EmbedReport {
    /// (survey, objects embedded, pretrained model id, variance kept by the components)
    pub per_survey: Vec<(String, u64, u32, f32)>,
    /// Surveys pretrained for on the way (no backbone for their band count).
    pub pretrained: Vec<String>,
    /// Surveys skipped, with why.
    pub skipped: Vec<(String, String)>,
}

/// Embeds every image object of every survey: the projection fitted here,
/// then applied here; see the module docs.
pub fn embed_store(store_path: &Path, opts: &EmbedOptions, progress: &dyn Fn(&str)) -> Result<EmbedReport, LearnError> {
    let fit = fit_projection(store_path, opts, progress)?;
    let mut report = apply_projection(store_path, &fit.projection, progress)?;
    report.pretrained = fit.pretrained;
    report.skipped.retain(|(survey, _)| !fit.skipped.iter().any(|(s, _)| s == survey));
    report.skipped.extend(fit.skipped);
    Ok(report)
}

/// What `embed --fit-only` fits once for every shard: per survey, the
/// backbone, the cutout shape and the PCA of the hash-drawn sample.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Projection {
    pub version: u32,
    pub seed: u64,
    pub fit_sample: usize,
    pub surveys: Vec<SurveyProjection>,
}

/// What [`fit_projection`] made.
#[derive(Debug)]
pub struct ProjectionFit {
    pub projection: Projection,
    /// Surveys pretrained for on the way.
    pub pretrained: Vec<String>,
    /// Surveys left out, with why.
    pub skipped: Vec<(String, String)>,
}

/// One survey's projection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SurveyProjection {
    pub survey: String,
    pub bands: usize,
    /// (height, width) every cutout is resampled to: what most of the whole catalogue's have.
    pub shape: (usize, usize),
    /// The backbone: its `cnn-pretrain` model record in the fitting store, its
    /// architecture (JSON [`NetConfig`]), its checkpoint's hash and bytes.
    pub model: u32,
    pub net: String,
    pub backbone_hash: String,
    pub weights: Vec<u8>,
    /// Cutouts the PCA was fitted on.
    pub n_fitted: u64,
    pub schema: EmbeddingSchema,
}

impl Projection {
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("projection encodes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Projection> {
        postcard::from_bytes(bytes).ok()
    }

    /// SHA-256 of the encoding (hex): which projection a shard was embedded with.
    pub fn hash(&self) -> String {
        crate::shard::sha256_hex(&self.to_bytes())
    }
}

/// Saves a projection for the shards and records it as the store's fit.
pub fn save_projection(store: &Store, projection: &Projection) -> Result<PathBuf, LearnError> {
    let path = projection_path(store.path());
    let tmp = path.with_extension("bin.partial");
    std::fs::write(&tmp, projection.to_bytes())?;
    std::fs::rename(&tmp, &path)?;
    store.put_note(EMBED_FIT_NOTE, &projection.hash())?;
    Ok(path)
}

/// Reads a projection from a file, or from a project store's folder.
pub fn load_projection(path: &Path) -> Result<Projection, String> {
    let file = if path.is_dir() { projection_path(path) } else { path.to_path_buf() };
    let bytes = std::fs::read(&file).map_err(|e| format!("{}: no fitted projection there ({e})", file.display()))?;
    Projection::from_bytes(&bytes)
        .filter(|p| p.version == EMBEDDING_VERSION)
        .ok_or_else(|| format!("{}: not a projection of this oddity version", file.display()))
}

/// Fits the projection in the store at `store_path`, pretraining a backbone
/// first where it has none for a survey's band count.
pub fn fit_projection(
    store_path: &Path,
    opts: &EmbedOptions,
    progress: &dyn Fn(&str),
) -> Result<ProjectionFit, LearnError> {
    let mut projection = Projection {
        version: EMBEDDING_VERSION,
        seed: opts.seed,
        fit_sample: opts.fit_sample.max(1),
        surveys: Vec::new(),
    };
    let (mut skipped, mut pretrained) = (Vec::new(), Vec::new());
    let surveys = image_surveys(&Store::open(store_path)?)?;
    for (survey, sources) in surveys {
        let first = sources.values().next().expect("a survey has a source");
        let bands = first.bands.len().max(1);
        if let Some(odd) = sources.values().find(|s| s.bands.len().max(1) != bands) {
            let why = format!(
                "{} has {} bands, {} has {bands}: one survey, one band count",
                odd.path,
                odd.bands.len(),
                first.path
            );
            skipped.push((survey, why));
            continue;
        }
        // Cutouts of other sizes are resampled to the size most of them have.
        let mut sizes: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for s in sources.values() {
            *sizes.entry(s.shape).or_default() += s.n_objects;
        }
        let common = sizes.iter().max_by_key(|(s, n)| (**n, **s)).map(|(s, _)| *s).unwrap_or(first.shape);
        let shape = (common.0 as usize, common.1 as usize);
        // The store is let go while pretraining (which opens it itself).
        let found = pretrained_backbone(&Store::open(store_path)?, bands)?;
        let (backbone, record) = match found {
            Some(b) => b,
            None => {
                progress(&format!("{survey}: no pretrained backbone for {bands} bands; fractal pretraining first"));
                let params = PretrainParams { image_size: shape.0 as i64, seed: opts.seed, ..opts.pretrain.clone() };
                pretrain_store(store_path, opts.net, &params, &|_, _| {})?;
                pretrained.push(survey.clone());
                pretrained_backbone(&Store::open(store_path)?, bands)?
                    .ok_or_else(|| LearnError::Data("pretraining left no usable checkpoint".into()))?
            }
        };
        let store = Store::open(store_path)?;
        // The sample, drawn as the keys stream past: the same (path, row)s
        // in a shard's project as on one machine, whatever the object keys.
        let identity = crate::detect::sample::Identity::new(&store.sources()?);
        let mut drawn = crate::detect::sample::FitSample::new(projection.fit_sample);
        for key in store.image_keys_owned() {
            let key = key?;
            if sources.contains_key(&key.file) {
                drawn.offer(identity.draw(key, opts.seed), key, []);
            }
        }
        let sample_keys = drawn.sorted(|k| identity.order(k)).0;
        if sample_keys.is_empty() {
            continue;
        }
        let reader = CutoutSpec { sources: &sources, bands, shape };
        progress(&format!(
            "{survey}: fitting the projection on {} cutouts with model {}",
            sample_keys.len(),
            backbone.id
        ));
        let pca = fit_pca(&backbone, &reader, &sample_keys, opts.components)?;
        let path = record.blob_path().expect("checked by pretrained_backbone");
        let weights = std::fs::read(&path)?;
        projection.surveys.push(SurveyProjection {
            survey,
            bands,
            shape,
            model: backbone.id,
            net: record.params.clone(),
            backbone_hash: backbone.hash.clone(),
            weights,
            n_fitted: sample_keys.len() as u64,
            schema: EmbeddingSchema {
                version: EMBEDDING_VERSION,
                names: (0..pca.k).map(|i| format!("deep_{i:02}")).collect(),
                model: backbone.id,
                hash: backbone.hash.clone(),
                dims: pca.dims,
                mean: pca.mean,
                components: pca.components,
                explained: pca.explained,
            },
        });
    }
    Ok(ProjectionFit { projection, pretrained, skipped })
}

/// Embeds every image object of the store at `store_path` with a projection
/// fitted before (here or in the project): the components go to the store,
/// the projection's schema with them, and the store notes which projection
/// made them. Surveys the projection does not cover are skipped, saying why.
pub fn apply_projection(
    store_path: &Path,
    projection: &Projection,
    progress: &dyn Fn(&str),
) -> Result<EmbedReport, LearnError> {
    let mut report = EmbedReport::default();
    let store = Store::open(store_path)?;
    let hash = projection.hash();
    for (survey, sources) in image_surveys(&store)? {
        let Some(p) = projection.surveys.iter().find(|p| p.survey == survey) else {
            report.skipped.push((survey, "the projection has no fit for this survey".into()));
            continue;
        };
        if let Some(odd) = sources.values().find(|s| s.bands.len().max(1) != p.bands) {
            let why = format!("{} has {} bands, the projection {}", odd.path, odd.bands.len(), p.bands);
            report.skipped.push((survey, why));
            continue;
        }
        let backbone = projection_backbone(&store, p)?;
        let keys: Vec<ObjectKey> =
            store.image_keys_owned().filter_map(|k| k.ok()).filter(|k| sources.contains_key(&k.file)).collect();
        if keys.is_empty() {
            continue;
        }
        let reader = CutoutSpec { sources: &sources, bands: p.bands, shape: p.shape };
        progress(&format!("{survey}: embedding {} cutouts with projection {}", keys.len(), &hash[..12]));
        let pca = Pca {
            dims: p.schema.dims,
            k: p.schema.names.len(),
            mean: p.schema.mean.clone(),
            components: p.schema.components.clone(),
            explained: p.schema.explained.clone(),
        };
        embed_keys(&backbone, &reader, &keys, |start, e| {
            let rows: Vec<(ObjectKey, Vec<f32>)> = keys[start..].iter().copied().zip(pca.project(&e)).collect();
            Ok(store.put_embeddings(&rows)?)
        })?;
        store.put_embedding_schema(&survey, &p.schema)?;
        let kept = p.schema.explained.iter().sum::<f32>();
        report.per_survey.push((survey, keys.len() as u64, p.model, kept));
    }
    store.put_note(EMBED_APPLIED_NOTE, &hash)?;
    store.flush()?;
    Ok(report)
}

/// The backbone a projection carries, loaded from its weights (written
/// once under the store's models folder; the hash is checked on loading).
fn projection_backbone(store: &Store, p: &SurveyProjection) -> Result<Backbone, LearnError> {
    let cfg: NetConfig = serde_json::from_str(&p.net)
        .map_err(|e| LearnError::Data(format!("projection for {}: bad backbone architecture: {e}", p.survey)))?;
    let dir = store.path().join("models");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("projection-{}.safetensors", &p.backbone_hash[..16.min(p.backbone_hash.len())]));
    if checkpoint::content_hash(&path).ok().as_deref() != Some(p.backbone_hash.as_str()) {
        let tmp = path.with_extension("partial.safetensors");
        std::fs::write(&tmp, &p.weights)?;
        std::fs::rename(&tmp, &path)?;
    }
    let device = super::device();
    let mut vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &cfg);
    let hash = checkpoint::load(&mut vs, &path)?;
    if hash != p.backbone_hash {
        return Err(LearnError::Data(format!(
            "projection for {}: its backbone's weights do not match their hash",
            p.survey
        )));
    }
    Ok(Backbone { id: p.model, hash, net, _vs: vs, device })
}

/// Image sources grouped by survey (sorted, so the order is stable).
fn image_surveys(store: &Store) -> Result<BTreeMap<String, HashMap<u32, SourceFile>>, LearnError> {
    let mut out: BTreeMap<String, HashMap<u32, SourceFile>> = BTreeMap::new();
    for (id, s) in store.sources()? {
        if s.kind == SourceKind::Images && s.rows_done > 0 {
            out.entry(s.survey.clone()).or_default().insert(id, s);
        }
    }
    Ok(out)
}

/// A loaded pretrained backbone in eval mode.
struct Backbone {
    id: u32,
    hash: String,
    net: Net,
    _vs: nn::VarStore,
    device: Device,
}

/// The latest `cnn-pretrain` checkpoint for `bands` input channels, loaded,
/// with its model record.
fn pretrained_backbone(store: &Store, bands: usize) -> Result<Option<(Backbone, ModelRecord)>, LearnError> {
    let device = super::device();
    let mut best = None;
    for m in store.models_of_kind("cnn-pretrain")? {
        let Ok(cfg) = serde_json::from_str::<NetConfig>(&m.params) else { continue };
        if cfg.in_channels == bands as i64 && m.blob_path().is_some_and(|p| p.exists()) {
            best = Some((m, cfg));
        }
    }
    let Some((record, cfg)) = best else { return Ok(None) };
    let mut vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &cfg);
    let path = record.blob_path().expect("checked above");
    let hash = checkpoint::load(&mut vs, &path)?;
    Ok(Some((Backbone { id: record.id, hash, net, _vs: vs, device }, record)))
}

/// Pooled embeddings of `keys`, batch by batch in key order, read by the
/// reader pool while the backbone embeds the batch before ([`feed`]):
/// `each(start, e)` gets the N x D CPU embeddings of `keys[start..start + N]`.
fn embed_keys(
    b: &Backbone,
    spec: &CutoutSpec,
    keys: &[ObjectKey],
    mut each: impl FnMut(usize, Tensor) -> Result<(), LearnError>,
) -> Result<(), LearnError> {
    feed(spec, keys, &FeedOptions::new(BATCH, b.device), |start, x| {
        each(start, super::infer::embed(&b.net, &x, BATCH as i64, b.device).to_kind(Kind::Float))
    })
}

/// A fitted principal-component reduction.
struct Pca {
    dims: usize,
    k: usize,
    mean: Vec<f32>,
    /// k x dims, row-major.
    components: Vec<f32>,
    explained: Vec<f32>,
}

impl Pca {
    /// Rows of `e` (N x dims) projected on the components.
    fn project(&self, e: &Tensor) -> Vec<Vec<f32>> {
        let mean = Tensor::from_slice(&self.mean);
        let comps = Tensor::from_slice(&self.components).reshape([self.k as i64, self.dims as i64]);
        let z = (e - mean).matmul(&comps.tr()).contiguous();
        let flat: Vec<f32> = Vec::try_from(z.flatten(0, -1)).expect("f32 projections");
        flat.chunks(self.k.max(1)).map(<[f32]>::to_vec).collect()
    }
}

/// PCA of the embeddings of the sample's keys (eigenvectors of the
/// covariance by libtorch's symmetric eigensolver, largest first).
fn fit_pca(b: &Backbone, reader: &CutoutSpec, sample_keys: &[ObjectKey], components: usize) -> Result<Pca, LearnError> {
    let mut parts: Vec<Tensor> = Vec::new();
    embed_keys(b, reader, sample_keys, |_, e| {
        parts.push(e);
        Ok(())
    })?;
    let e = Tensor::cat(&parts, 0).to_kind(Kind::Double);
    let (n, dims) = (e.size()[0], e.size()[1]);
    let mean = e.mean_dim(0, false, Kind::Double);
    let centred = &e - &mean;
    let cov = centred.tr().matmul(&centred) / (n - 1).max(1) as f64;
    let (values, vectors) = cov.linalg_eigh("L");
    // eigh sorts ascending: take the last k, largest first.
    let k = (components as i64).min(dims);
    let order = Tensor::arange_start_step(dims - 1, dims - 1 - k, -1, (Kind::Int64, Device::Cpu));
    let top_vectors = vectors.index_select(1, &order).tr().contiguous();
    let total = values.clamp_min(0.0).sum(Kind::Double).double_value(&[]).max(1e-30);
    let top_values = values.index_select(0, &order).clamp_min(0.0) / total;
    let to_vec = |t: Tensor| -> Vec<f32> { Vec::try_from(t.to_kind(Kind::Float).flatten(0, -1)).expect("f32") };
    Ok(Pca {
        dims: dims as usize,
        k: k as usize,
        mean: to_vec(mean),
        components: to_vec(top_vectors),
        explained: to_vec(top_values),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{IngestOptions, ingest};
    use crate::learn::feed::{Tables, read_cutouts};
    use crate::progress::NoProgress;
    use crate::synth::{SynthConfig, write_survey};

    #[test]
    fn every_cutout_gets_the_components_of_its_own_embedding() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig { n_galaxies: 70, size: 32, nside: 2, ..Default::default() };
        write_survey(&dir.path().join("survey"), &cfg, &|_| {}).unwrap();
        let store_path = dir.path().join("store");
        let store = Store::open_or_create(&store_path).unwrap();
        ingest(&store, &[dir.path().join("survey")], &IngestOptions::default(), &NoProgress).unwrap();
        drop(store);
        let pretrain = PretrainParams {
            n_classes: 3,
            images_per_class: 4,
            epochs: 1,
            batch: 8,
            ..EmbedOptions::default().pretrain
        };
        let opts = EmbedOptions { components: 3, pretrain, ..Default::default() };
        let report = embed_store(&store_path, &opts, &|_| {}).unwrap();
        let store = Store::open(&store_path).unwrap();
        let keys: Vec<ObjectKey> = store.image_keys_owned().map(|k| k.unwrap()).collect();
        assert_eq!(report.per_survey.len(), 1);
        assert_eq!(report.per_survey[0].1, keys.len() as u64);
        assert_eq!(store.embedding_count(), keys.len());
        // Recomputed one at a time, each object's components are the stored ones:
        // the feed's batches came back in key order.
        let (survey, sources) = image_surveys(&store).unwrap().into_iter().next().unwrap();
        let schema = store.embedding_schema(&survey).unwrap().unwrap();
        let (b, _) = pretrained_backbone(&store, 5).unwrap().unwrap();
        let pca = Pca {
            dims: schema.dims,
            k: schema.names.len(),
            mean: schema.mean.clone(),
            components: schema.components.clone(),
            explained: schema.explained.clone(),
        };
        let spec = CutoutSpec { sources: &sources, bands: 5, shape: (32, 32) };
        for &k in keys.iter().step_by(9) {
            let x = Tensor::from_slice(&read_cutouts(&spec, &mut Tables::new(), &[k]).unwrap()).reshape([1, 5, 32, 32]);
            let e = super::super::infer::embed(&b.net, &x, 1, b.device).to_kind(Kind::Float);
            let want = &pca.project(&e)[0];
            let got = store.embedding_of(k).unwrap().unwrap();
            assert!(want.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-3), "{k:?}: {got:?} vs {want:?}");
        }
    }
}
