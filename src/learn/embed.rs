//! Deep features (`oddity embed`): the fractal-pretrained backbone's pooled
//! embedding of every cutout, reduced by PCA to a few components that join
//! the hand-made features in the ranking, as Astronomaly does at scale with
//! CNN features. The backbone and the PCA are stored with the schema, so the
//! components are reproducible and `score` knows what it ranks on.
//!
//! Memory stays bounded: the PCA is fitted on a fixed sample of at most
//! [`PCA_SAMPLE`] cutouts, then every cutout is embedded and projected in
//! batches that go straight to the store.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rand::SeedableRng;
use rand::seq::index::sample;
use tch::{Device, Kind, Tensor, nn};

use super::checkpoint;
use super::feed::{CutoutSpec, FeedOptions, feed};
use super::net::{Net, NetConfig};
use super::stage::{LearnError, NetSize, pretrain_store};
use super::train::PretrainParams;
use crate::store::{EmbeddingSchema, ObjectKey, SourceFile, SourceKind, Store};

/// Cutouts the PCA is fitted on (a fixed pseudo-random sample).
pub const PCA_SAMPLE: usize = 20_000;
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

/// Embeds every image object of every survey; see the module docs.
pub fn embed_store(store_path: &Path, opts: &EmbedOptions, progress: &dyn Fn(&str)) -> Result<EmbedReport, LearnError> {
    let mut report = EmbedReport::default();
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
            report.skipped.push((survey, why));
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
        let backbone = match found {
            Some(b) => b,
            None => {
                progress(&format!("{survey}: no pretrained backbone for {bands} bands; fractal pretraining first"));
                let params = PretrainParams { image_size: shape.0 as i64, seed: opts.seed, ..opts.pretrain.clone() };
                pretrain_store(store_path, opts.net, &params, &|_, _| {})?;
                report.pretrained.push(survey.clone());
                pretrained_backbone(&Store::open(store_path)?, bands)?
                    .ok_or_else(|| LearnError::Data("pretraining left no usable checkpoint".into()))?
            }
        };
        let store = Store::open(store_path)?;
        let keys: Vec<ObjectKey> =
            store.image_keys_owned().filter_map(|k| k.ok()).filter(|k| sources.contains_key(&k.file)).collect();
        if keys.is_empty() {
            continue;
        }
        let reader = CutoutSpec { sources: &sources, bands, shape };
        progress(&format!("{survey}: embedding {} cutouts with model {}", keys.len(), backbone.id));
        let pca = fit_pca(&backbone, &reader, &keys, opts)?;
        let names: Vec<String> = (0..pca.k).map(|i| format!("deep_{i:02}")).collect();
        embed_keys(&backbone, &reader, &keys, |start, e| {
            let rows: Vec<(ObjectKey, Vec<f32>)> = keys[start..].iter().copied().zip(pca.project(&e)).collect();
            Ok(store.put_embeddings(&rows)?)
        })?;
        let kept = pca.explained.iter().sum::<f32>();
        store.put_embedding_schema(
            &survey,
            &EmbeddingSchema {
                version: EMBEDDING_VERSION,
                names,
                model: backbone.id,
                hash: backbone.hash.clone(),
                dims: pca.dims,
                mean: pca.mean,
                components: pca.components,
                explained: pca.explained,
            },
        )?;
        report.per_survey.push((survey, keys.len() as u64, backbone.id, kept));
    }
    Ok(report)
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

/// The latest `cnn-pretrain` checkpoint for `bands` input channels, loaded.
fn pretrained_backbone(store: &Store, bands: usize) -> Result<Option<Backbone>, LearnError> {
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
    Ok(Some(Backbone { id: record.id, hash, net, _vs: vs, device }))
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

/// PCA of the embeddings of a fixed sample of `keys` (eigenvectors of the
/// covariance by libtorch's symmetric eigensolver, largest first).
fn fit_pca(b: &Backbone, reader: &CutoutSpec, keys: &[ObjectKey], opts: &EmbedOptions) -> Result<Pca, LearnError> {
    let mut picks: Vec<usize> = if keys.len() > PCA_SAMPLE {
        sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed), keys.len(), PCA_SAMPLE).into_vec()
    } else {
        (0..keys.len()).collect()
    };
    picks.sort_unstable();
    let sample_keys: Vec<ObjectKey> = picks.iter().map(|&i| keys[i]).collect();
    let mut parts: Vec<Tensor> = Vec::new();
    embed_keys(b, reader, &sample_keys, |_, e| {
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
    let k = (opts.components as i64).min(dims);
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
        let b = pretrained_backbone(&store, 5).unwrap().unwrap();
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
