//! The `score` stage: Isolation Forest over each survey's feature vectors,
//! written as a new score version that becomes current in one step.

use std::collections::HashMap;

use sha2::Digest;

use super::relevance::{RelevanceModel, combine};
use super::{ForestParams, IsolationForest, Standardiser};
use crate::progress::Progress;
use crate::store::LabelBook;
use crate::store::{ModelRecord, ObjectKey, ScoreVersion, Store, StoreError};

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub forest: ForestParams,
    /// Scores written per store batch.
    pub write_batch: usize,
    /// Re-rank with the expert's labels (when there are any).
    pub rerank: bool,
    /// SIGKILL the process after writing this many batches (crash tests).
    pub crash_after_batches: Option<usize>,
}

#[derive(Debug, Default)]
pub struct ScoreReport {
    pub version: u32,
    pub n_scored: u64,
    /// (survey, objects scored, model id, model hash)
    pub per_survey: Vec<(String, u64, u32, String)>,
    /// Labelled objects the re-rank learnt from (0: anomaly scores only).
    pub relevance_labels: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions { forest: ForestParams::default(), write_batch: 50_000, rerank: true, crash_after_batches: None }
    }
}

/// The fitted pieces of one survey's anomaly model, as stored.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ForestModel {
    pub scaler: Standardiser,
    pub forest: IsolationForest,
    /// The active-learning re-rank, when labels were used.
    pub relevance: Option<RelevanceModel>,
}

/// Decodes a stored Isolation Forest model.
pub fn load_forest(record: &ModelRecord) -> Option<ForestModel> {
    postcard::from_bytes(&record.blob).ok()
}

/// Scores every image object that has features; returns once the new
/// version is current.
pub fn score_store(store: &Store, opts: &ScoreOptions, progress: &dyn Progress) -> Result<ScoreReport, StoreError> {
    let survey_of: HashMap<u32, String> = store.sources()?.into_iter().map(|(id, s)| (id, s.survey)).collect();
    // Gather each survey's feature matrix (rows × features, f32).
    let mut per_survey: HashMap<String, (Vec<ObjectKey>, Vec<f32>)> = HashMap::new();
    for item in store.iter_features() {
        let (key, rec) = item?;
        let Some(survey) = survey_of.get(&key.file) else { continue };
        let entry = per_survey.entry(survey.clone()).or_default();
        entry.0.push(key);
        entry.1.extend_from_slice(&rec.values);
    }
    progress.set_total(per_survey.values().map(|(k, _)| k.len() as u64).sum());
    let version = store.begin_scores()?;
    let mut report = ScoreReport { version, ..Default::default() };
    let mut batches = 0usize;
    let book = if opts.rerank { LabelBook::from_events(store.label_events()?) } else { LabelBook::default() };
    let mut surveys: Vec<_> = per_survey.into_iter().collect();
    surveys.sort_by(|a, b| a.0.cmp(&b.0));
    for (survey, (keys, raw)) in surveys {
        let Some(schema) = store.feature_schema(&survey)? else { continue };
        let n_features = schema.names.len();
        if keys.is_empty() || raw.len() != keys.len() * n_features {
            tracing::warn!("{survey}: feature rows do not match the schema; skipped");
            continue;
        }
        let scaler = Standardiser::fit(&raw, n_features);
        let x = scaler.transform(&raw);
        drop(raw);
        let forest = IsolationForest::fit(&x, scaler.n_out(), &opts.forest);
        let mut scores = forest.score(&x);
        // Active learning: what the expert said re-ranks the anomaly scores.
        let n_out = scaler.n_out();
        let mut lx = Vec::new();
        let mut ly = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(y) = book.get(*key).and_then(|l| l.target()).map(|t| f32::from(t.relevance)) {
                lx.extend_from_slice(&x[i * n_out..(i + 1) * n_out]);
                ly.push(y);
            }
        }
        let relevance = (!ly.is_empty()).then(|| RelevanceModel::fit(&lx, n_out, &ly));
        if let Some(model) = &relevance {
            let predicted = model.predict(&x);
            for (s, r) in scores.iter_mut().zip(predicted) {
                *s = combine(*s, r);
            }
            report.relevance_labels += model.n_labelled();
        }
        drop(x);
        let model = ForestModel { scaler, forest, relevance };
        let blob = postcard::to_allocvec(&model).expect("model encodes");
        let hash = hex(&sha2::Sha256::digest(&blob));
        let params = serde_json::to_string(&opts.forest).unwrap_or_default();
        let model_id = store.put_model(ModelRecord {
            id: 0,
            kind: "isolation-forest".into(),
            survey: survey.clone(),
            created: chrono::Utc::now().to_rfc3339(),
            params,
            features: schema.names.clone(),
            blob,
            hash: hash.clone(),
        })?;
        let pairs: Vec<(ObjectKey, f32)> = keys.iter().copied().zip(scores).collect();
        for chunk in pairs.chunks(opts.write_batch.max(1)) {
            store.put_scores(version, chunk)?;
            progress.advance(chunk.len() as u64);
            batches += 1;
            if opts.crash_after_batches == Some(batches) {
                store.flush()?;
                // A real SIGKILL half-way: no destructors, no clean-up.
                let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
                std::process::abort();
            }
        }
        report.n_scored += pairs.len() as u64;
        report.per_survey.push((survey, pairs.len() as u64, model_id, hash));
    }
    let method = if report.relevance_labels > 0 {
        format!("isolation-forest + relevance re-rank ({} labels)", report.relevance_labels)
    } else {
        "isolation-forest".into()
    };
    store.commit_scores(&ScoreVersion {
        version,
        models: report.per_survey.iter().map(|s| s.2).collect(),
        method,
        time: chrono::Utc::now().to_rfc3339(),
        n_scored: report.n_scored,
    })?;
    Ok(report)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
