//! The `score` stage: one Isolation Forest per feature group, combined so that
//! no object is odd merely for having or lacking a modality, an artefact score
//! of its own for data quality, and the expert's labels re-ranking the result;
//! written as a new score version that becomes current in one step.
//!
//! Groups: the image's shape (morphology), its colours, its deep features
//! (`oddity embed`), and the spectrum (emission lines, BPT). Each group's forest
//! is fitted on the objects that have it, and its score becomes a tail
//! probability p (the fraction of those objects at least as odd). An object
//! with m groups scores (1 − min p)^m (Šidák): under "nothing odd" that is
//! uniform whatever m is, so having a spectrum neither helps nor hurts, while a
//! tiny p in any one group (an odd colour, an AGN spectrum) still stands out.
//! Spectra with no image within the match radius are candidates too, scored on
//! their spectrum alone. Sky level, sky noise and masked pixels form the
//! "quality" group, whose oddness is the artefact score shown beside the
//! ranking, never part of it.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::relevance::{PRIOR, RelevanceModel, RelevanceParams, combine};
use super::sample::{FitSample, Identity};
use super::{ForestParams, IsolationForest, Standardiser};
use crate::progress::Progress;
use crate::store::{LabelBook, ModelRecord, ObjectKey, ScoreParts, ScoreVersion, SourceKind, Store, StoreError};

/// Which image features the ranking uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FeatureSet {
    /// Hand-made morphology and colours.
    Hand,
    /// The backbone's embedding (`oddity embed`) and colours.
    Deep,
    /// Both.
    Both,
}

impl FeatureSet {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureSet::Hand => "hand",
            FeatureSet::Deep => "deep",
            FeatureSet::Both => "both",
        }
    }
}

/// A feature group, scored by a forest of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Group {
    Shape,
    Colour,
    Deep,
    Spectrum,
    /// Data quality: the artefact score, not the ranking.
    Quality,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Shape => "shape",
            Group::Colour => "colour",
            Group::Deep => "deep",
            Group::Spectrum => "spectrum",
            Group::Quality => "quality",
        }
    }

    /// The group of a hand-made image feature, by its name.
    pub fn of_feature(name: &str) -> Group {
        const QUALITY: [&str; 3] = ["nonfinite_frac", "sky_level", "sky_noise"];
        if QUALITY.contains(&name) {
            Group::Quality
        } else if crate::features::morphology::is_colour_name(name) {
            Group::Colour
        } else if crate::features::SPECTRAL_FEATURE_NAMES.contains(&name) {
            Group::Spectrum
        } else {
            Group::Shape
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub forest: ForestParams,
    /// Scores written per store batch.
    pub write_batch: usize,
    /// Re-rank with the expert's labels (when there are any).
    pub rerank: bool,
    pub features: FeatureSet,
    /// SIGKILL the process after writing this many batches (crash tests).
    pub crash_after_batches: Option<usize>,
    /// Rows a group's forest, scaler and calibration are fitted on: a sample
    /// drawn by a hash of each row's (file path, row) and the seed, so every
    /// machine draws the same one whatever its object keys (all rows when
    /// there are no more than this). Fitting only, just the sample is held,
    /// drawn as the rows stream past ([`super::sample::FitSample`]).
    pub fit_sample: usize,
    /// Forests fitted before (`oddity score --fit-only`): applied, not refitted.
    pub fitted: Option<std::sync::Arc<FittedForests>>,
    /// Take each row's forest score from the store's shard scores
    /// (`oddity score --apply` in the shards, folded by `oddity merge`) when
    /// they were made by `fitted`; rows without one are scored here.
    pub shard_scores: bool,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            forest: ForestParams { n_estimators: 200, ..ForestParams::default() },
            write_batch: 50_000,
            rerank: true,
            features: FeatureSet::Hand,
            crash_after_batches: None,
            fit_sample: DEFAULT_FIT_SAMPLE,
            fitted: None,
            shard_scores: false,
        }
    }
}

/// Default [`ScoreOptions::fit_sample`].
pub const DEFAULT_FIT_SAMPLE: usize = 1_000_000;

/// Every population's group forests, fitted once on a sample of the whole
/// catalogue: what shards apply so that their scores are comparable.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FittedForests {
    pub forest: ForestParams,
    pub feature_set: FeatureSet,
    pub fit_sample: usize,
    /// (population: a survey's images, or the spectra), its group models.
    pub populations: Vec<(String, Vec<GroupModel>)>,
}

impl FittedForests {
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("forests encode")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<FittedForests> {
        postcard::from_bytes(bytes).ok()
    }

    /// SHA-256 of the encoding (hex): which fit a shard's scores came from.
    pub fn hash(&self) -> String {
        crate::shard::sha256_hex(&self.to_bytes())
    }

    pub fn group(&self, population: &str, group: Group) -> Option<&GroupModel> {
        self.populations.iter().find(|(p, _)| p == population)?.1.iter().find(|m| m.group == group)
    }
}

#[derive(Debug, Default)]
pub struct ScoreReport {
    pub version: u32,
    pub n_scored: u64,
    /// (population, objects scored, model id, model hash): one per image survey,
    /// one for the spectra.
    pub per_survey: Vec<(String, u64, u32, String)>,
    /// Spectra with no image in the match radius, ranked on their own.
    pub spectrum_only: u64,
    /// Labelled objects the re-rank learnt from (0: anomaly scores only).
    pub relevance_labels: usize,
    /// Why the deep features were not used, when they were asked for.
    pub notes: Vec<String>,
}

/// One group's fitted forest, with what turns its scores into tail probabilities.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GroupModel {
    pub group: Group,
    pub features: Vec<String>,
    pub scaler: Standardiser,
    pub forest: IsolationForest,
    /// (score, tail probability) at log-spaced tail probabilities of the fitted
    /// objects, by ascending score.
    pub calibration: Vec<(f32, f32)>,
}

impl GroupModel {
    /// The fraction of the fitted objects whose score is at least `score`,
    /// interpolated in log p; beyond the most extreme fitted score it keeps
    /// falling, so the order of the scores is kept.
    pub fn tail(&self, score: f32) -> f32 {
        let c = &self.calibration;
        let Some(&(top, p_top)) = c.last() else { return 1.0 };
        if score >= top {
            return p_top * (-(score - top) * 50.0).exp();
        }
        let i = c.partition_point(|&(s, _)| s <= score);
        if i == 0 {
            return 1.0;
        }
        let ((s0, p0), (s1, p1)) = (c[i - 1], c[i]);
        let t = if s1 > s0 { (score - s0) / (s1 - s0) } else { 1.0 };
        (p0.ln() + t * (p1.ln() - p0.ln())).exp()
    }

    /// Which features made `row` (raw values, as stored) odd: (name, share, robust z).
    pub fn drivers(&self, row: &[f32]) -> Vec<(String, f32, f32)> {
        let z = self.scaler.transform(row);
        let share = self.forest.attribution(&z);
        let mut out: Vec<(String, f32, f32)> = (0..self.features.len())
            .map(|i| (self.features[i].clone(), share[i], z[i]))
            .chain(self.scaler.flagged_features().iter().enumerate().map(|(j, &f)| {
                (format!("{} missing", self.features[f]), share[self.features.len() + j], z[self.features.len() + j])
            }))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// The fitted pieces of one population's ranking, as stored in its model record.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ForestModel {
    pub groups: Vec<GroupModel>,
    /// The active-learning re-rank, when labels were used.
    pub relevance: Option<RelevanceModel>,
    pub feature_set: FeatureSet,
}

impl ForestModel {
    pub fn group(&self, g: Group) -> Option<&GroupModel> {
        self.groups.iter().find(|m| m.group == g)
    }
}

/// Decodes a stored ranking model.
pub fn load_forest(record: &ModelRecord) -> Option<ForestModel> {
    postcard::from_bytes(&record.blob).ok()
}

/// The whole ranking, in memory: scores and their parts, per candidate.
struct Ranking {
    keys: Vec<ObjectKey>,
    scores: Vec<f32>,
    parts: Vec<ScoreParts>,
    /// (population name, candidates, model) for the records.
    models: Vec<(String, u64, ForestModel, Vec<String>)>,
    spectrum_only: u64,
    relevance_labels: usize,
    notes: Vec<String>,
}

/// Rows of one group: which candidates, and their values; or, when only
/// fitting, the fit sample alone, drawn as the rows stream past.
#[derive(Default)]
struct GroupRows {
    names: Vec<String>,
    members: Vec<usize>,
    /// The object whose data each row is (a matched spectrum for the spectrum group).
    sources: Vec<ObjectKey>,
    values: Vec<f32>,
    /// Fit-only: the sample, and nothing else is kept.
    sample: Option<FitSample>,
}

impl GroupRows {
    /// A group that keeps every row, or only the fit sample (`Some(draw)`).
    fn new(names: Vec<String>, sampling: Option<&Draw>) -> GroupRows {
        GroupRows { names, sample: sampling.map(|d| FitSample::new(d.cap)), ..Default::default() }
    }

    fn push(
        &mut self,
        candidate: usize,
        source: ObjectKey,
        sampling: Option<&Draw>,
        values: impl IntoIterator<Item = f32>,
    ) {
        match (&mut self.sample, sampling) {
            (Some(s), Some(d)) => s.offer(d.identity.draw(source, d.seed), source, values),
            _ => {
                self.members.push(candidate);
                self.sources.push(source);
                self.values.extend(values);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.sample.as_ref().is_none_or(FitSample::is_empty)
    }

    /// The fit sample's values in (path, row) order: the rows drawn by the
    /// hash of their (path, row) and the seed, all of them when there are no
    /// more than the cap.
    fn fit_values(&self, identity: &Identity, seed: u64, cap: usize) -> Vec<f32> {
        let order = |k: ObjectKey| identity.order(k);
        if let Some(s) = &self.sample {
            return s.sorted(order).1;
        }
        let nf = self.names.len();
        let mut s = FitSample::new(cap);
        for (i, &key) in self.sources.iter().enumerate() {
            s.offer(identity.draw(key, seed), key, self.values[i * nf..(i + 1) * nf].iter().copied());
        }
        s.sorted(order).1
    }
}

/// How the fit sample is drawn while the rows stream past (`score --fit-only`).
struct Draw<'a> {
    identity: &'a Identity,
    seed: u64,
    cap: usize,
}

/// How a group's forest is fitted and applied.
struct FitContext<'a> {
    opts: &'a ScoreOptions,
    identity: &'a Identity,
    store: &'a Store,
    /// Rows scored here although shard scores were asked for.
    scored_here: std::cell::Cell<u64>,
}

/// Fits a group's scaler, forest and calibration on the sample of its rows.
fn fit_model(group: Group, rows: &GroupRows, ctx: &FitContext) -> GroupModel {
    let nf = rows.names.len();
    // Fitted in (path, row) order: the same forest whatever the object keys.
    let values = rows.fit_values(ctx.identity, ctx.opts.forest.seed, ctx.opts.fit_sample.max(1));
    let scaler = Standardiser::fit(&values, nf);
    let x = scaler.transform(&values);
    let forest = IsolationForest::fit(&x, scaler.n_out(), &ctx.opts.forest);
    let calibration = calibrate(&forest.score(&x));
    GroupModel { group, features: rows.names.clone(), scaler, forest, calibration }
}

/// Each row's tail probability under `model`, and its standardised values.
fn apply_model(model: &GroupModel, rows: &GroupRows, ctx: &FitContext) -> Result<(Vec<f32>, Vec<f32>), StoreError> {
    let x = model.scaler.transform(&rows.values);
    let width = model.scaler.n_out();
    let mut scores = vec![f32::NAN; rows.members.len()];
    if ctx.opts.shard_scores {
        for (s, &key) in scores.iter_mut().zip(&rows.sources) {
            *s = ctx.store.shard_score(key, group_byte(model.group))?.unwrap_or(f32::NAN);
        }
    }
    let missing: Vec<usize> = (0..scores.len()).filter(|&i| scores[i].is_nan()).collect();
    if !missing.is_empty() {
        if ctx.opts.shard_scores {
            ctx.scored_here.set(ctx.scored_here.get() + missing.len() as u64);
        }
        let xm: Vec<f32> = missing.iter().flat_map(|&i| x[i * width..(i + 1) * width].iter().copied()).collect();
        for (&i, s) in missing.iter().zip(model.forest.score(&xm)) {
            scores[i] = s;
        }
    }
    Ok((scores.iter().map(|&s| model.tail(s)).collect(), x))
}

/// The byte a group is stored under in the shard-score tree.
pub fn group_byte(g: Group) -> u8 {
    match g {
        Group::Shape => 0,
        Group::Colour => 1,
        Group::Deep => 2,
        Group::Spectrum => 3,
        Group::Quality => 4,
    }
}

/// (score, tail probability) pairs at log-spaced tail probabilities from 1/n to 1.
fn calibrate(scores: &[f32]) -> Vec<(f32, f32)> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let n = sorted.len();
    let mut out: Vec<(f32, f32)> = Vec::new();
    let steps = 400;
    for k in 0..=steps {
        // Tail probability p = (rank + 1) / n with rank log-spaced over 0..n-1.
        let rank = ((n as f64).powf(k as f64 / steps as f64) - 1.0).round() as usize;
        let rank = rank.min(n - 1);
        let p = (rank + 1) as f32 / n as f32;
        let s = sorted[rank];
        if out.last().is_none_or(|&(last, _)| s < last) {
            out.push((s, p));
        }
    }
    out.reverse();
    out
}

/// Scores every candidate, leaving out the labels of `held_out`.
fn rank(
    store: &Store,
    opts: &ScoreOptions,
    held_out: &HashSet<ObjectKey>,
    fit_only: bool,
) -> Result<Ranking, StoreError> {
    let sources = store.sources()?;
    let mut notes = Vec::new();
    let identity = Identity::new(&sources);
    // Fitting only: each group keeps its fit sample alone, drawn as the rows stream past.
    let sampling = fit_only.then(|| Draw { identity: &identity, seed: opts.forest.seed, cap: opts.fit_sample.max(1) });
    let c = Candidates::gather(store, &sources, opts, sampling, &mut notes)?;
    let spectra_name = spectra_population(&sources);
    let ctx = FitContext { opts, identity: &identity, store, scored_here: std::cell::Cell::new(0) };
    let fitted = fit_groups(&c, &ctx, &spectra_name, fit_only, &mut notes)?;
    if ctx.scored_here.get() > 0 {
        notes.push(format!("{} group scores had no shard score and were computed here", ctx.scored_here.get()));
    }
    let spectrum_only = (c.keys.len() - c.n_images) as u64;
    if fit_only {
        let models = fitted
            .models
            .into_iter()
            .map(|(name, groups)| {
                (name, 0, ForestModel { groups, relevance: None, feature_set: opts.features }, Vec::new())
            })
            .collect();
        let (keys, scores, parts) = (Vec::new(), Vec::new(), Vec::new());
        return Ok(Ranking { keys, scores, parts, models, spectrum_only, relevance_labels: 0, notes });
    }
    let Fitted { mut parts, standardised, models } = fitted;
    let mut scores: Vec<f32> = parts.iter_mut().map(combine_groups).collect();
    let rr = Rerank { store, opts, held_out, identity: &identity, spectra_name: &spectra_name, models: &models };
    let (mut relevance_models, relevance_labels) = rr.apply(&c, &standardised, &mut parts, &mut scores)?;
    let feature_names = |name: &str| -> Vec<String> {
        models.get(name).into_iter().flatten().flat_map(|m| m.features.iter().cloned()).collect()
    };
    // Objects each model scored: a survey's images; every spectrum for the spectra's model.
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for p in &c.population[..c.n_images] {
        *counts.entry(p.as_str()).or_default() += 1;
    }
    *counts.entry(spectra_name.as_str()).or_default() += c.spectrum.members.len() as u64;
    let records = models
        .iter()
        .map(|(name, groups)| {
            let model = ForestModel {
                groups: groups.clone(),
                relevance: relevance_models.remove(name),
                feature_set: opts.features,
            };
            (name.clone(), counts.get(name.as_str()).copied().unwrap_or(0), model, feature_names(name))
        })
        .collect();
    Ok(Ranking { keys: c.keys, scores, parts, models: records, spectrum_only, relevance_labels, notes })
}

/// Šidák combination of a candidate's group tail probabilities, (1 − min p)^m:
/// its anomaly score, also kept in its parts.
fn combine_groups(p: &mut ScoreParts) -> f32 {
    let m = p.groups.len() as i32;
    let pmin = p.groups.iter().map(|g| f64::from(g.1)).fold(1.0, f64::min);
    p.anomaly = if m == 0 { 0.0 } else { (1.0 - pmin).powi(m) as f32 };
    p.anomaly
}

/// The candidates and their rows per feature group: image objects with
/// features (by survey), then spectra without an image. When only fitting
/// (`sampling`), no candidate is kept, only each group's fit sample.
struct Candidates<'a> {
    sampling: Option<Draw<'a>>,
    keys: Vec<ObjectKey>,
    /// Each candidate's population (its survey).
    population: Vec<String>,
    image_rows: BTreeMap<String, BTreeMap<Group, GroupRows>>,
    spectrum: GroupRows,
    /// The first `n_images` candidates are image objects.
    n_images: usize,
}

/// A survey's feature columns by group, and whether it brings deep features.
struct SurveyLayout {
    by_group: Vec<(Group, Vec<usize>)>,
    deep: bool,
}

impl<'a> Candidates<'a> {
    fn gather(
        store: &Store,
        sources: &[(u32, crate::store::SourceFile)],
        opts: &ScoreOptions,
        sampling: Option<Draw<'a>>,
        notes: &mut Vec<String>,
    ) -> Result<Self, StoreError> {
        let survey_of: HashMap<u32, String> = sources.iter().map(|(id, s)| (*id, s.survey.clone())).collect();
        let spectral_names = crate::features::SPECTRAL_FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
        let mut c = Candidates {
            spectrum: GroupRows::new(spectral_names, sampling.as_ref()),
            sampling,
            keys: Vec::new(),
            population: Vec::new(),
            image_rows: BTreeMap::new(),
            n_images: 0,
        };
        let mut layouts: HashMap<String, SurveyLayout> = HashMap::new();
        for item in store.iter_features() {
            let (key, rec) = item?;
            let Some(survey) = survey_of.get(&key.file) else { continue };
            if !layouts.contains_key(survey) {
                let Some(layout) = c.layout(store, survey, opts, notes)? else { continue };
                layouts.insert(survey.clone(), layout);
            }
            c.push_image(store, key, &rec.values, survey, &layouts[survey], opts)?;
        }
        c.n_images = c.keys.len();
        let spectrum_files: HashSet<u32> =
            sources.iter().filter(|(_, s)| s.kind == SourceKind::Spectra).map(|(id, _)| *id).collect();
        for item in store.iter_lines() {
            let (key, lines) = item?;
            if !spectrum_files.contains(&key.file) || store.image_match(key)?.is_some() {
                continue;
            }
            let i = c.keys.len();
            if c.sampling.is_none() {
                c.keys.push(key);
                c.population.push(survey_of.get(&key.file).cloned().unwrap_or_default());
            }
            c.spectrum.push(i, key, c.sampling.as_ref(), crate::features::spectral_values(Some(&lines)));
        }
        Ok(c)
    }

    /// A survey's layout from its feature (and embedding) schema, naming the
    /// rows of each of its groups; `None` when it has no feature schema.
    fn layout(
        &mut self,
        store: &Store,
        survey: &str,
        opts: &ScoreOptions,
        notes: &mut Vec<String>,
    ) -> Result<Option<SurveyLayout>, StoreError> {
        let Some(schema) = store.feature_schema(survey)? else { return Ok(None) };
        let mut by_group: BTreeMap<Group, Vec<usize>> = BTreeMap::new();
        for (i, n) in schema.names.iter().enumerate() {
            by_group.entry(Group::of_feature(n)).or_default().push(i);
        }
        let groups = self.image_rows.entry(survey.to_string()).or_default();
        let sampling = self.sampling.as_ref();
        for (g, cols) in &by_group {
            if *g != Group::Spectrum {
                let names = cols.iter().map(|&i| schema.names[i].clone()).collect();
                groups.entry(*g).or_insert_with(|| GroupRows::new(Vec::new(), sampling)).names = names;
            }
        }
        let deep = match store.embedding_schema(survey)? {
            Some(s) if opts.features != FeatureSet::Hand => {
                groups.entry(Group::Deep).or_insert_with(|| GroupRows::new(Vec::new(), sampling)).names =
                    s.names.clone();
                true
            }
            None if opts.features != FeatureSet::Hand => {
                notes.push(format!("{survey}: no deep features (run `oddity embed`): hand-made features only"));
                false
            }
            _ => false,
        };
        Ok(Some(SurveyLayout { by_group: by_group.into_iter().collect(), deep }))
    }

    /// Adds an image object: its values per group, its embedding, and its
    /// matched spectrum's line features.
    fn push_image(
        &mut self,
        store: &Store,
        key: ObjectKey,
        values: &[f32],
        survey: &str,
        layout: &SurveyLayout,
        opts: &ScoreOptions,
    ) -> Result<(), StoreError> {
        let use_hand = opts.features != FeatureSet::Deep;
        let i = self.keys.len();
        let sampling = self.sampling.as_ref();
        if sampling.is_none() {
            self.keys.push(key);
            self.population.push(survey.to_string());
        }
        let groups = self.image_rows.get_mut(survey).expect("layout made the survey's groups");
        for (g, cols) in &layout.by_group {
            let row = cols.iter().map(|&c| values.get(c).copied().unwrap_or(f32::NAN));
            match g {
                Group::Spectrum => {}
                Group::Shape if !use_hand && layout.deep => {}
                _ => groups.get_mut(g).expect("named by the layout").push(i, key, sampling, row),
            }
        }
        if layout.deep {
            let d = groups.get_mut(&Group::Deep).expect("named by the layout");
            if let Some(e) = store.embedding_of(key)?
                && e.len() == d.names.len()
            {
                d.push(i, key, sampling, e);
            }
        }
        if let Some(m) = store.spectrum_match(key)?
            && let Some(lines) = store.lines_of(m.other)?
        {
            self.spectrum.push(i, m.other, sampling, crate::features::spectral_values(Some(&lines)));
        }
        Ok(())
    }
}

/// Each candidate's group tail probabilities, its standardised values per
/// group (for the relevance model), and the group models by population.
struct Fitted {
    parts: Vec<ScoreParts>,
    standardised: Vec<BTreeMap<Group, Vec<f32>>>,
    models: BTreeMap<String, Vec<GroupModel>>,
}

/// Fits (or takes from `opts.fitted`) each group's forest and, unless
/// `fit_only`, applies it to the group's rows.
fn fit_groups(
    c: &Candidates,
    ctx: &FitContext,
    spectra_name: &str,
    fit_only: bool,
    notes: &mut Vec<String>,
) -> Result<Fitted, StoreError> {
    let n = c.keys.len();
    let mut out = Fitted {
        parts: vec![ScoreParts::default(); n],
        standardised: vec![BTreeMap::new(); n],
        models: BTreeMap::new(),
    };
    let mut fit = |name: &str, group: Group, rows: &GroupRows| -> Result<(), StoreError> {
        if rows.is_empty() || rows.names.is_empty() {
            return Ok(());
        }
        let model = match &ctx.opts.fitted {
            // The spectra's forest is the one population with a spectrum group.
            Some(f) if group == Group::Spectrum => {
                f.populations.iter().flat_map(|(_, ms)| ms.iter()).find(|m| m.group == Group::Spectrum).cloned()
            }
            Some(f) => f.group(name, group).cloned(),
            None => Some(fit_model(group, rows, ctx)),
        };
        let Some(model) = model.filter(|m| m.features == rows.names) else {
            notes.push(format!("{name}: no fitted {} forest for these features: not scored", group.as_str()));
            return Ok(());
        };
        if !fit_only {
            let (tails, x) = apply_model(&model, rows, ctx)?;
            let width = model.scaler.n_out();
            for ((&m, &p), z) in rows.members.iter().zip(&tails).zip(x.chunks(width)) {
                if group == Group::Quality {
                    out.parts[m].artefact = Some(1.0 - p);
                } else {
                    out.parts[m].groups.push((group.as_str().to_string(), p));
                    out.standardised[m].insert(group, z.to_vec());
                }
            }
        }
        out.models.entry(name.to_string()).or_default().push(model);
        Ok(())
    };
    for (survey, groups) in &c.image_rows {
        for (g, rows) in groups {
            fit(survey, *g, rows)?;
        }
    }
    fit(spectra_name, Group::Spectrum, &c.spectrum)?;
    Ok(out)
}

/// The re-rank: per population of candidates of one layout, a relevance
/// model trained on the expert's labels (less `held_out`) and combined with
/// the anomaly score.
struct Rerank<'a> {
    store: &'a Store,
    opts: &'a ScoreOptions,
    held_out: &'a HashSet<ObjectKey>,
    identity: &'a Identity,
    spectra_name: &'a str,
    models: &'a BTreeMap<String, Vec<GroupModel>>,
}

impl Rerank<'_> {
    /// Updates parts and scores; returns the relevance models by population
    /// and the number of labels they learnt from.
    fn apply(
        &self,
        c: &Candidates,
        standardised: &[BTreeMap<Group, Vec<f32>>],
        parts: &mut [ScoreParts],
        scores: &mut [f32],
    ) -> Result<(BTreeMap<String, RelevanceModel>, usize), StoreError> {
        let mut relevance_models: BTreeMap<String, RelevanceModel> = BTreeMap::new();
        let mut relevance_labels = 0;
        let book =
            if self.opts.rerank { LabelBook::from_events(self.store.label_events()?) } else { LabelBook::default() };
        let target = |k: ObjectKey| book.get(k).and_then(|l| l.target()).filter(|_| !self.held_out.contains(&k));
        if !c.keys.iter().any(|&k| target(k).is_some()) {
            return Ok((relevance_models, 0));
        }
        let mut by_population: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, p) in c.population.iter().enumerate() {
            by_population.entry(if i < c.n_images { p.as_str() } else { self.spectra_name }).or_default().push(i);
        }
        for (name, mut members) in by_population {
            // In path order, as the forests: the same re-rank whatever the object keys.
            members.sort_by_key(|&m| self.identity.order(c.keys[m]));
            let layout = self.relevance_layout(name);
            let (mut labelled, mut targets, mut rest) = (Vec::new(), Vec::new(), Vec::new());
            for &m in &members {
                match target(c.keys[m]) {
                    Some(t) => {
                        labelled.push(m);
                        targets.push(f32::from(t.relevance));
                    }
                    None => rest.push(m),
                }
            }
            let predicted: Vec<f32> = if labelled.is_empty() {
                vec![PRIOR; members.len()]
            } else {
                let width = layout.iter().map(|(_, w)| w + 2).sum::<usize>();
                let mut x = Vec::with_capacity((labelled.len() + rest.len()) * width);
                for &m in labelled.iter().chain(&rest) {
                    x.extend(relevance_row(&layout, &standardised[m], &parts[m]));
                }
                let params = RelevanceParams { seed: self.opts.forest.seed, ..Default::default() };
                let model = RelevanceModel::fit(&x, width, &targets, &params);
                relevance_labels += labelled.len();
                let p = model.predict_fitted(&x);
                relevance_models.insert(name.to_string(), model);
                p
            };
            let order: Vec<usize> = if labelled.is_empty() { members.clone() } else { [labelled, rest].concat() };
            for (&m, r) in order.iter().zip(predicted) {
                parts[m].relevance = Some(r);
                scores[m] = combine(parts[m].anomaly, r);
            }
        }
        Ok((relevance_models, relevance_labels))
    }

    /// The (group, width) columns a population's relevance rows have.
    fn relevance_layout(&self, name: &str) -> Vec<(Group, usize)> {
        self.models
            .get(name)
            .into_iter()
            .chain(self.models.get(self.spectra_name))
            .flatten()
            .filter(|m| m.group != Group::Quality)
            .map(|m| (m.group, m.scaler.n_out()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect()
    }
}

/// What the relevance model sees of a candidate: for each group of its
/// layout, its standardised values (zeros when it lacks the group), a 0/1
/// "has it" flag and the group's surprise −log10 p.
fn relevance_row(layout: &[(Group, usize)], values: &BTreeMap<Group, Vec<f32>>, parts: &ScoreParts) -> Vec<f32> {
    let mut row = Vec::new();
    for &(g, width) in layout {
        match values.get(&g) {
            Some(v) if v.len() == width => {
                row.extend(v.iter().map(|x| x.clamp(-1e6, 1e6)));
                row.push(1.0);
            }
            _ => {
                row.extend(std::iter::repeat_n(0.0, width));
                row.push(0.0);
            }
        }
        let p = parts.groups.iter().find(|(n, _)| n == g.as_str()).map(|x| x.1).unwrap_or(1.0);
        row.push(-p.max(1e-12).log10());
    }
    row
}

/// Name of the population of spectra ("sdss", or several names joined).
fn spectra_population(sources: &[(u32, crate::store::SourceFile)]) -> String {
    let names: std::collections::BTreeSet<&str> =
        sources.iter().filter(|(_, s)| s.kind == SourceKind::Spectra).map(|(_, s)| s.survey.as_str()).collect();
    if names.is_empty() { "spectra".into() } else { names.into_iter().collect::<Vec<_>>().join("+") }
}

/// The scores the current method gives the `held_out` objects had their labels
/// not been given (for comparing a retrained model fairly on held-back labels).
pub fn score_without(
    store: &Store,
    held_out: &HashSet<ObjectKey>,
    opts: &ScoreOptions,
) -> Result<HashMap<ObjectKey, f32>, StoreError> {
    let ranking = rank(store, opts, held_out, false)?;
    Ok(ranking.keys.iter().zip(&ranking.scores).filter(|(k, _)| held_out.contains(k)).map(|(k, s)| (*k, *s)).collect())
}

/// Scores every candidate; returns once the new version is current.
pub fn score_store(store: &Store, opts: &ScoreOptions, progress: &dyn Progress) -> Result<ScoreReport, StoreError> {
    let ranking = rank(store, opts, &HashSet::new(), false)?;
    progress.set_total(ranking.keys.len() as u64);
    let version = store.begin_scores()?;
    let mut report = ScoreReport {
        version,
        spectrum_only: ranking.spectrum_only,
        relevance_labels: ranking.relevance_labels,
        notes: ranking.notes,
        ..Default::default()
    };
    let mut model_ids = Vec::new();
    for (name, n, model, features) in ranking.models {
        let blob = postcard::to_allocvec(&model).expect("model encodes");
        let hash = crate::shard::sha256_hex(&blob);
        let params = serde_json::json!({ "forest": opts.forest, "features": opts.features.as_str() }).to_string();
        let id = store.put_model(ModelRecord {
            id: 0,
            kind: "isolation-forest".into(),
            survey: name.clone(),
            created: chrono::Utc::now().to_rfc3339(),
            params,
            features,
            blob,
            hash: hash.clone(),
        })?;
        model_ids.push(id);
        report.per_survey.push((name, n, id, hash));
    }
    let mut batches = 0usize;
    let rows: Vec<(usize, ObjectKey)> = ranking.keys.iter().copied().enumerate().collect();
    for chunk in rows.chunks(opts.write_batch.max(1)) {
        let scores: Vec<(ObjectKey, f32)> = chunk.iter().map(|&(i, k)| (k, ranking.scores[i])).collect();
        let parts: Vec<(ObjectKey, ScoreParts)> = chunk.iter().map(|&(i, k)| (k, ranking.parts[i].clone())).collect();
        store.put_scores(version, &scores)?;
        store.put_score_parts(version, &parts)?;
        progress.advance(chunk.len() as u64);
        batches += 1;
        if opts.crash_after_batches == Some(batches) {
            store.flush()?;
            // A real SIGKILL half-way: no destructors, no clean-up.
            let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
            std::process::abort();
        }
    }
    report.n_scored = ranking.keys.len() as u64;
    let mut method = format!("isolation-forest per group ({} features)", opts.features.as_str());
    if report.relevance_labels > 0 {
        method.push_str(&format!(" + relevance re-rank ({} labels)", report.relevance_labels));
    }
    store.commit_scores(&ScoreVersion {
        version,
        models: model_ids,
        method,
        time: chrono::Utc::now().to_rfc3339(),
        n_scored: report.n_scored,
    })?;
    Ok(report)
}

/// Fits every population's group forests once, on the sample
/// ([`ScoreOptions::fit_sample`]), without scoring anything: what
/// `oddity score --fit-only` saves for the shards to apply.
pub fn fit_forests(store: &Store, opts: &ScoreOptions) -> Result<FittedForests, StoreError> {
    let ranking =
        rank(store, &ScoreOptions { fitted: None, shard_scores: false, ..opts.clone() }, &HashSet::new(), true)?;
    Ok(FittedForests {
        forest: opts.forest.clone(),
        feature_set: opts.features,
        fit_sample: opts.fit_sample,
        populations: ranking.models.into_iter().map(|(name, _, m, _)| (name, m.groups)).collect(),
    })
}

/// A survey's groups in a shard: (group byte, model, the model's features' columns).
type Layout<'a> = Vec<(u8, &'a GroupModel, Vec<Option<usize>>)>;
/// Rows waiting to be scored, per (survey, group byte).
type Pending = HashMap<(String, u8), (Vec<ObjectKey>, Vec<f32>)>;

/// What [`apply_forests`] did in a shard.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub images: u64,
    pub spectra: u64,
    /// Groups left to the merge (deep features when the shard has none).
    pub notes: Vec<String>,
}

/// Applies forests fitted on the whole catalogue to the objects of one
/// shard: each image's hand-made groups and each spectrum's lines get their
/// forest score, stored as shard scores for `oddity merge` to fold in. The
/// spectrum group's score belongs to the spectrum, so an image matched to a
/// spectrum in another shard still gets it at the merge.
pub fn apply_forests(
    store: &Store,
    forests: &FittedForests,
    progress: &dyn Progress,
) -> Result<ApplyReport, StoreError> {
    let mut report = ApplyReport::default();
    let sources = store.sources()?;
    let survey_of: HashMap<u32, String> = sources.iter().map(|(id, s)| (*id, s.survey.clone())).collect();
    let spectrum_files: HashSet<u32> =
        sources.iter().filter(|(_, s)| s.kind == SourceKind::Spectra).map(|(id, _)| *id).collect();
    progress.set_total(store.feature_count() as u64);
    store.clear_shard_scores()?;
    // Per survey: (group byte, model, columns of the model's features in the schema).
    let mut layouts: HashMap<String, Layout> = HashMap::new();
    let mut pending: Pending = HashMap::new();
    for item in store.iter_features() {
        let (key, rec) = item?;
        let Some(survey) = survey_of.get(&key.file) else { continue };
        if !layouts.contains_key(survey) {
            let Some(layout) = survey_layout(store, forests, survey, &mut report.notes)? else { continue };
            layouts.insert(survey.clone(), layout);
        }
        for (g, m, cols) in &layouts[survey] {
            let values = if *g == group_byte(Group::Deep) {
                // As `score` does: an object without deep features has no deep group.
                match store.embedding_of(key)? {
                    Some(e) if e.len() == m.features.len() => e,
                    _ => continue,
                }
            } else {
                cols.iter().map(|c| c.and_then(|c| rec.values.get(c).copied()).unwrap_or(f32::NAN)).collect()
            };
            let entry = pending.entry((survey.clone(), *g)).or_default();
            entry.0.push(key);
            entry.1.extend(values);
        }
        report.images += 1;
        progress.advance(1);
        flush_pending(store, &mut pending, &layouts, false)?;
    }
    flush_pending(store, &mut pending, &layouts, true)?;
    report.spectra = apply_spectrum_forest(store, forests, &spectrum_files)?;
    store.set_shard_scores_model(&forests.hash())?;
    Ok(report)
}

/// Rows scored and stored per batch when applying forests.
const APPLY_CHUNK: usize = 20_000;

/// Scores and stores the pending rows of each (survey, group) that has a
/// whole chunk waiting, or every pending row when `all`.
fn flush_pending(
    store: &Store,
    pending: &mut Pending,
    layouts: &HashMap<String, Layout>,
    all: bool,
) -> Result<(), StoreError> {
    for ((survey, g), (keys, values)) in pending.iter_mut() {
        if keys.is_empty() || (!all && keys.len() < APPLY_CHUNK) {
            continue;
        }
        let model = layouts[survey].iter().find(|(b, _, _)| b == g).expect("layout").1;
        put_group_scores(store, model, *g, keys, values)?;
    }
    Ok(())
}

/// Scores rows (`values`, row-major) with a group's forest, stores them as
/// shard scores, and empties both buffers for the next chunk.
fn put_group_scores(
    store: &Store,
    model: &GroupModel,
    group: u8,
    keys: &mut Vec<ObjectKey>,
    values: &mut Vec<f32>,
) -> Result<(), StoreError> {
    let scores = model.forest.score(&model.scaler.transform(values));
    let rows: Vec<(ObjectKey, u8, f32)> = keys.iter().zip(scores).map(|(&k, s)| (k, group, s)).collect();
    keys.clear();
    values.clear();
    store.put_shard_scores(&rows)
}

/// Which of a survey's fitted image forests this shard can apply, with the
/// columns of their features in its schema; None while the survey has no
/// feature schema here. Groups left to the merge are noted.
fn survey_layout<'f>(
    store: &Store,
    forests: &'f FittedForests,
    survey: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Layout<'f>>, StoreError> {
    let Some(schema) = store.feature_schema(survey)? else { return Ok(None) };
    let models = forests.populations.iter().find(|(p, _)| p == survey).map(|(_, m)| m.as_slice());
    let mut layout = Vec::new();
    for m in models.unwrap_or_default() {
        if m.group == Group::Spectrum {
            continue;
        }
        if m.group == Group::Deep {
            // The shard's deep features (`embed --apply`), when they are the ones fitted on.
            match store.embedding_schema(survey)? {
                Some(s) if s.names == m.features => layout.push((group_byte(m.group), m, Vec::new())),
                _ => notes
                    .push(format!("{survey}: no deep features here (run `oddity embed --apply`): scored at the merge")),
            }
            continue;
        }
        let cols = m.features.iter().map(|f| schema.names.iter().position(|n| n == f)).collect();
        layout.push((group_byte(m.group), m, cols));
    }
    if models.is_none() {
        notes.push(format!("{survey}: no forests fitted for this survey: scored at the merge"));
    }
    Ok(Some(layout))
}

/// Scores every spectrum with lines, whether or not an image matches it,
/// with the fitted spectrum forest (if any); returns how many.
fn apply_spectrum_forest(
    store: &Store,
    forests: &FittedForests,
    spectrum_files: &HashSet<u32>,
) -> Result<u64, StoreError> {
    let Some(model) = forests.populations.iter().flat_map(|(_, ms)| ms.iter()).find(|m| m.group == Group::Spectrum)
    else {
        return Ok(0);
    };
    let mut n = 0;
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let g = group_byte(Group::Spectrum);
    for item in store.iter_lines() {
        let (key, lines) = item?;
        if !spectrum_files.contains(&key.file) {
            continue;
        }
        keys.push(key);
        values.extend(crate::features::spectral_values(Some(&lines)));
        n += 1;
        if keys.len() >= APPLY_CHUNK {
            put_group_scores(store, model, g, &mut keys, &mut values)?;
        }
    }
    if !keys.is_empty() {
        put_group_scores(store, model, g, &mut keys, &mut values)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_tails_follow_the_ranks_and_keep_the_order() {
        let scores: Vec<f32> = (0..10_000).map(|i| 0.3 + 0.4 * i as f32 / 10_000.0).collect();
        let cal = calibrate(&scores);
        let m = GroupModel {
            group: Group::Shape,
            features: vec!["a".into()],
            scaler: Standardiser::fit(&[0.0, 1.0], 1),
            forest: IsolationForest::fit(&[0.0, 1.0], 1, &ForestParams::default()),
            calibration: cal,
        };
        // The top score is 1 in 10,000; the median about one half.
        assert!((m.tail(scores[9_999]) - 1e-4).abs() < 2e-5, "{}", m.tail(scores[9_999]));
        assert!((m.tail(scores[5_000]) - 0.5).abs() < 0.02, "{}", m.tail(scores[5_000]));
        assert_eq!(m.tail(0.0), 1.0);
        // Strictly falling with the score, beyond the fitted range too.
        let t: Vec<f32> = [0.5, 0.6, 0.69, 0.7, 0.75, 0.9].iter().map(|&s| m.tail(s)).collect();
        assert!(t.windows(2).all(|w| w[1] < w[0]), "{t:?}");
    }

    #[test]
    fn fitting_only_holds_the_fit_sample_alone_and_fits_the_forests_scoring_fits() {
        use crate::ingest::{IngestOptions, ingest};
        use crate::progress::NoProgress;
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::synth::SynthConfig {
            n_galaxies: 300,
            size: 24,
            nside: 2,
            spectrum_fraction: 0.5,
            ..Default::default()
        };
        crate::synth::write_survey(&dir.path().join("survey"), &cfg, &|_| {}).unwrap();
        let store = Store::open_or_create(&dir.path().join("store")).unwrap();
        ingest(&store, &[dir.path().join("survey")], &IngestOptions::default(), &NoProgress).unwrap();
        crate::shard::crossmatch_store(&store, 1.0).unwrap();
        crate::features::compute(&store, &NoProgress).unwrap();
        let cap = 40;
        let opts = ScoreOptions {
            forest: ForestParams { n_estimators: 10, seed: 3, ..ForestParams::default() },
            fit_sample: cap,
            ..Default::default()
        };
        let sources = store.sources().unwrap();
        let identity = Identity::new(&sources);
        let draw = Draw { identity: &identity, seed: 3, cap };
        let c = Candidates::gather(&store, &sources, &opts, Some(draw), &mut Vec::new()).unwrap();
        // No candidate and no row kept beyond each group's sample, though every row streamed past.
        assert!(c.keys.is_empty() && c.population.is_empty());
        let groups: Vec<&GroupRows> = c.image_rows.values().flat_map(|g| g.values()).chain([&c.spectrum]).collect();
        assert!(groups.len() >= 4);
        for g in &groups {
            assert!(g.members.is_empty() && g.sources.is_empty() && g.values.is_empty());
            let s = g.sample.as_ref().expect("fit-only groups sample");
            assert!(s.held() <= cap, "{} held", s.held());
        }
        assert!(groups.iter().any(|g| g.sample.as_ref().unwrap().seen() >= 300), "every image streamed past");
        // The forests are those `score` fits from every row in memory.
        let fitted = fit_forests(&store, &opts).unwrap();
        let full = rank(&store, &opts, &HashSet::new(), false).unwrap();
        let full: Vec<(String, Vec<u8>)> =
            full.models.iter().map(|(n, _, m, _)| (n.clone(), postcard::to_allocvec(&m.groups).unwrap())).collect();
        let streamed: Vec<(String, Vec<u8>)> =
            fitted.populations.iter().map(|(n, g)| (n.clone(), postcard::to_allocvec(g).unwrap())).collect();
        assert_eq!(streamed, full);
    }

    #[test]
    fn groups_by_feature_name() {
        assert_eq!(Group::of_feature("sky_noise"), Group::Quality);
        assert_eq!(Group::of_feature("colour_HSC-G_HSC-R"), Group::Colour);
        assert_eq!(Group::of_feature("g-r"), Group::Colour);
        assert_eq!(Group::of_feature("F606W-F814W"), Group::Colour);
        assert_eq!(Group::of_feature("ew_ha"), Group::Spectrum);
        assert_eq!(Group::of_feature("iso10_iso5_dq"), Group::Shape);
        // Sizes in arcsec (scaled cutouts) or pixels (no scale) are shape.
        assert_eq!(Group::of_feature("r50_arcsec"), Group::Shape);
        assert_eq!(Group::of_feature("r50_px"), Group::Shape);
    }
}
