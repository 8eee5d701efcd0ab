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

use sha2::Digest;

use super::relevance::{PRIOR, RelevanceModel, RelevanceParams, combine};
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
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            forest: ForestParams { n_estimators: 200, ..ForestParams::default() },
            write_batch: 50_000,
            rerank: true,
            features: FeatureSet::Hand,
            crash_after_batches: None,
        }
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

/// Rows of one group: which candidates, and their values.
#[derive(Default)]
struct GroupRows {
    names: Vec<String>,
    members: Vec<usize>,
    values: Vec<f32>,
}

impl GroupRows {
    fn push(&mut self, candidate: usize, values: impl IntoIterator<Item = f32>) {
        self.members.push(candidate);
        self.values.extend(values);
    }
}

/// Fits a group's forest and returns its model and each member's tail probability.
fn fit_group(group: Group, rows: &GroupRows, params: &ForestParams) -> Option<(GroupModel, Vec<f32>, Vec<f32>)> {
    let nf = rows.names.len();
    if rows.members.is_empty() || nf == 0 {
        return None;
    }
    let scaler = Standardiser::fit(&rows.values, nf);
    let x = scaler.transform(&rows.values);
    let forest = IsolationForest::fit(&x, scaler.n_out(), params);
    let scores = forest.score(&x);
    let calibration = calibrate(&scores);
    let model = GroupModel { group, features: rows.names.clone(), scaler, forest, calibration };
    let tails = scores.iter().map(|&s| model.tail(s)).collect();
    Some((model, tails, x))
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
fn rank(store: &Store, opts: &ScoreOptions, held_out: &HashSet<ObjectKey>) -> Result<Ranking, StoreError> {
    let sources = store.sources()?;
    let survey_of: HashMap<u32, String> = sources.iter().map(|(id, s)| (*id, s.survey.clone())).collect();
    let spectrum_files: HashSet<u32> =
        sources.iter().filter(|(_, s)| s.kind == SourceKind::Spectra).map(|(id, _)| *id).collect();
    let mut notes = Vec::new();

    // Candidates: image objects with features, then spectra without an image.
    let mut keys: Vec<ObjectKey> = Vec::new();
    let mut population: Vec<String> = Vec::new();
    let mut image_rows: BTreeMap<String, BTreeMap<Group, GroupRows>> = BTreeMap::new();
    let mut spectrum = GroupRows {
        names: crate::features::SPECTRAL_FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut layouts: HashMap<String, Vec<(Group, Vec<usize>)>> = HashMap::new();
    let mut deep_ok: HashMap<String, bool> = HashMap::new();
    let use_hand = opts.features != FeatureSet::Deep;
    for item in store.iter_features() {
        let (key, rec) = item?;
        let Some(survey) = survey_of.get(&key.file) else { continue };
        if !layouts.contains_key(survey) {
            let Some(schema) = store.feature_schema(survey)? else { continue };
            let mut by_group: BTreeMap<Group, Vec<usize>> = BTreeMap::new();
            for (i, n) in schema.names.iter().enumerate() {
                by_group.entry(Group::of_feature(n)).or_default().push(i);
            }
            let groups = image_rows.entry(survey.clone()).or_default();
            for (g, cols) in &by_group {
                if *g != Group::Spectrum {
                    groups.entry(*g).or_default().names = cols.iter().map(|&i| schema.names[i].clone()).collect();
                }
            }
            let deep = match store.embedding_schema(survey)? {
                Some(s) if opts.features != FeatureSet::Hand => {
                    groups.entry(Group::Deep).or_default().names = s.names.clone();
                    true
                }
                None if opts.features != FeatureSet::Hand => {
                    notes.push(format!("{survey}: no deep features (run `oddity embed`): hand-made features only"));
                    false
                }
                _ => false,
            };
            deep_ok.insert(survey.clone(), deep);
            layouts.insert(survey.clone(), by_group.into_iter().collect());
        }
        let layout = &layouts[survey];
        let i = keys.len();
        keys.push(key);
        population.push(survey.clone());
        let groups = image_rows.get_mut(survey).expect("made above");
        for (g, cols) in layout {
            let values = cols.iter().map(|&c| rec.values.get(c).copied().unwrap_or(f32::NAN));
            match g {
                Group::Spectrum => {}
                Group::Shape if !use_hand && deep_ok[survey] => {}
                _ => groups.get_mut(g).expect("named above").push(i, values),
            }
        }
        if deep_ok[survey] {
            let d = groups.get_mut(&Group::Deep).expect("named above");
            match store.embedding_of(key)? {
                Some(e) if e.len() == d.names.len() => d.push(i, e),
                _ => {}
            }
        }
        if let Some(m) = store.spectrum_match(key)?
            && let Some(lines) = store.lines_of(m.other)?
        {
            spectrum.push(i, crate::features::spectral_values(Some(&lines)));
        }
    }
    let n_images = keys.len();
    for item in store.iter_lines() {
        let (key, lines) = item?;
        if !spectrum_files.contains(&key.file) || store.image_match(key)?.is_some() {
            continue;
        }
        let i = keys.len();
        keys.push(key);
        population.push(survey_of.get(&key.file).cloned().unwrap_or_default());
        spectrum.push(i, crate::features::spectral_values(Some(&lines)));
    }
    let spectrum_only = (keys.len() - n_images) as u64;

    // Each group's forest, and each candidate's tail probabilities.
    let n = keys.len();
    let mut parts: Vec<ScoreParts> = vec![ScoreParts::default(); n];
    // Standardised group values per candidate, for the relevance model.
    let mut standardised: Vec<BTreeMap<Group, Vec<f32>>> = vec![BTreeMap::new(); n];
    let mut models: BTreeMap<String, Vec<GroupModel>> = BTreeMap::new();
    let mut fit = |name: &str, group: Group, rows: &GroupRows, parts: &mut Vec<ScoreParts>| {
        if let Some((model, tails, x)) = fit_group(group, rows, &opts.forest) {
            let width = model.scaler.n_out();
            for ((&c, &p), z) in rows.members.iter().zip(&tails).zip(x.chunks(width)) {
                if group == Group::Quality {
                    parts[c].artefact = Some(1.0 - p);
                } else {
                    parts[c].groups.push((group.as_str().to_string(), p));
                    standardised[c].insert(group, z.to_vec());
                }
            }
            models.entry(name.to_string()).or_default().push(model);
        }
    };
    for (survey, groups) in &image_rows {
        for (g, rows) in groups {
            fit(survey, *g, rows, &mut parts);
        }
    }
    let spectra_name = spectra_population(&sources);
    fit(&spectra_name, Group::Spectrum, &spectrum, &mut parts);

    let mut scores: Vec<f32> = parts
        .iter_mut()
        .map(|p| {
            let m = p.groups.len() as i32;
            let pmin = p.groups.iter().map(|g| f64::from(g.1)).fold(1.0, f64::min);
            p.anomaly = if m == 0 { 0.0 } else { (1.0 - pmin).powi(m) as f32 };
            p.anomaly
        })
        .collect();

    // The re-rank, per population of candidates of one layout.
    let mut relevance_models: BTreeMap<String, RelevanceModel> = BTreeMap::new();
    let mut relevance_labels = 0;
    let book = if opts.rerank { LabelBook::from_events(store.label_events()?) } else { LabelBook::default() };
    let any_label = keys.iter().any(|k| !held_out.contains(k) && book.get(*k).and_then(|l| l.target()).is_some());
    if any_label {
        let mut by_population: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, p) in population.iter().enumerate() {
            by_population.entry(if i < n_images { p.as_str() } else { spectra_name.as_str() }).or_default().push(i);
        }
        for (name, members) in by_population {
            let layout: Vec<(Group, usize)> = models
                .get(name)
                .into_iter()
                .chain(models.get(&spectra_name))
                .flatten()
                .filter(|m| m.group != Group::Quality)
                .map(|m| (m.group, m.scaler.n_out()))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect();
            let row_of = |c: usize| relevance_row(&layout, &standardised[c], &parts[c]);
            let (mut labelled, mut targets, mut rest) = (Vec::new(), Vec::new(), Vec::new());
            for &c in &members {
                match book.get(keys[c]).and_then(|l| l.target()) {
                    Some(t) if !held_out.contains(&keys[c]) => {
                        labelled.push(c);
                        targets.push(f32::from(t.relevance));
                    }
                    _ => rest.push(c),
                }
            }
            let predicted: Vec<f32> = if labelled.is_empty() {
                vec![PRIOR; members.len()]
            } else {
                let width = layout.iter().map(|(_, w)| w + 2).sum::<usize>();
                let mut x = Vec::with_capacity((labelled.len() + rest.len()) * width);
                for &c in labelled.iter().chain(&rest) {
                    x.extend(row_of(c));
                }
                let params = RelevanceParams { seed: opts.forest.seed, ..Default::default() };
                let model = RelevanceModel::fit(&x, width, &targets, &params);
                relevance_labels += labelled.len();
                let p = model.predict_fitted(&x);
                relevance_models.insert(name.to_string(), model);
                p
            };
            let order: Vec<usize> = if labelled.is_empty() { members.clone() } else { [labelled, rest].concat() };
            for (&c, r) in order.iter().zip(predicted) {
                parts[c].relevance = Some(r);
                scores[c] = combine(parts[c].anomaly, r);
            }
        }
    }
    let feature_names = |name: &str| -> Vec<String> {
        models.get(name).into_iter().flatten().flat_map(|m| m.features.iter().cloned()).collect()
    };
    // Objects each model scored: a survey's images; every spectrum for the spectra's model.
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for p in &population[..n_images] {
        *counts.entry(p.as_str()).or_default() += 1;
    }
    *counts.entry(spectra_name.as_str()).or_default() += spectrum.members.len() as u64;
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
    Ok(Ranking { keys, scores, parts, models: records, spectrum_only, relevance_labels, notes })
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
    let ranking = rank(store, opts, held_out)?;
    Ok(ranking.keys.iter().zip(&ranking.scores).filter(|(k, _)| held_out.contains(k)).map(|(k, s)| (*k, *s)).collect())
}

/// Scores every candidate; returns once the new version is current.
pub fn score_store(store: &Store, opts: &ScoreOptions, progress: &dyn Progress) -> Result<ScoreReport, StoreError> {
    let ranking = rank(store, opts, &HashSet::new())?;
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
        let hash = hex(&sha2::Sha256::digest(&blob));
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
