//! Evaluation against ground truth: ranking metrics, and a simulated expert
//! who labels what the tool shows, cycle after cycle, so that the effect of
//! active learning and retraining is measured rather than assumed.
//!
//! The truth file (the synthetic survey's `truth.csv`) is read here only; the
//! pipeline itself never sees it.

mod plot;

pub use plot::plot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::detect::{ScoreOptions, auroc, score_store};
use crate::ingest::NoProgress;
use crate::learn::{RetrainOptions, retrain};
use crate::store::{LabelEvent, LabelValue, ObjectKey, Store};

/// Average precision (area under the precision–recall curve, scikit-learn's
/// `average_precision_score`): Σ (R_k − R_{k−1}) P_k over the distinct score
/// thresholds, tied scores entering together. `None` without positives.
pub fn auprc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "auprc: one label per score");
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < order.len() {
        let value = scores[order[i]];
        while i < order.len() && scores[order[i]].total_cmp(&value).is_eq() {
            tp += usize::from(labels[order[i]]);
            seen += 1;
            i += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * (tp as f64 / seen as f64);
        last_recall = recall;
    }
    Some(ap)
}

/// The ranking (indices, best first): descending score, ties in index order
/// (the store's key order), so cuts through ties are reproducible.
fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// Fraction of the top `k` that are positive.
pub fn precision_at(scores: &[f32], labels: &[bool], k: usize) -> f64 {
    let k = k.min(scores.len()).max(1);
    ranking(scores).iter().take(k).filter(|&&i| labels[i]).count() as f64 / k as f64
}

/// Fraction of all positives found in the top `k`.
pub fn recall_at(scores: &[f32], labels: &[bool], k: usize) -> f64 {
    let positives = labels.iter().filter(|&&l| l).count().max(1);
    ranking(scores).iter().take(k).filter(|&&i| labels[i]).count() as f64 / positives as f64
}

/// Metrics of one ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub auroc: f64,
    pub auprc: f64,
    /// Precision in the top 1%.
    pub precision_top1: f64,
    /// Recall in the top 2,000 (or `recall_k`).
    pub recall_top: f64,
}

pub fn metrics(scores: &[f32], labels: &[bool], recall_k: usize) -> Metrics {
    Metrics {
        auroc: auroc(scores, labels).unwrap_or(f64::NAN),
        auprc: auprc(scores, labels).unwrap_or(f64::NAN),
        precision_top1: precision_at(scores, labels, scores.len().div_ceil(100)),
        recall_top: recall_at(scores, labels, recall_k),
    }
}

/// One row of the evaluation table.
#[derive(Debug, Clone)]
pub struct Row {
    pub cycle: usize,
    pub method: &'static str,
    pub labelled: usize,
    pub metrics: Metrics,
    /// Mean rank (0 = top) of the "boring" artefacts (satellite trails).
    pub artefact_rank: f64,
    /// Mean rank of the interesting anomalies.
    pub interesting_rank: f64,
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub cycles: usize,
    /// Candidates the simulated expert labels each cycle.
    pub per_cycle: usize,
    /// Interesting anomalies labelled before cycle 0.
    pub start: usize,
    pub recall_k: usize,
    /// FixMatch steps per cycle; 0 leaves the CNN out.
    pub cnn_steps: usize,
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { cycles: 3, per_cycle: 100, start: 10, recall_k: 2000, cnn_steps: 150, seed: 0 }
    }
}

/// Ground truth per object id: (interesting, kind).
pub fn read_truth(path: &Path) -> Result<HashMap<String, (bool, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col =
        |n: &str| header.iter().position(|h| *h == n).ok_or_else(|| format!("{}: no column `{n}`", path.display()));
    let (id, kind, interesting) = (col("object_id")?, col("kind")?, col("interesting")?);
    Ok(lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[id].to_string(), (f.get(interesting) == Some(&"1"), f.get(kind).unwrap_or(&"").to_string()))
        })
        .collect())
}

fn label(store: &Store, key: ObjectKey, value: LabelValue) -> Result<(), String> {
    let event = LabelEvent {
        object: key,
        value,
        tags: vec![],
        user: "simulated-expert".into(),
        time: chrono::Utc::now().to_rfc3339(),
        session: "eval".into(),
    };
    store.append_label(&event).map(|_| ()).map_err(|e| e.to_string())
}

/// Runs the simulated-expert loop on `store_path` (a working copy: labels are
/// written to it). Returns one row per cycle and method.
pub fn run(
    store_path: &Path,
    truth: &HashMap<String, (bool, String)>,
    opts: &EvalOptions,
    progress: &dyn Fn(&str),
) -> Result<Vec<Row>, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    // Objects scored, in key order, with their truth.
    let (keys, labels, kinds) = {
        let store = Store::open(store_path).map_err(err)?;
        let mut keys = Vec::new();
        let mut labels = Vec::new();
        let mut kinds = Vec::new();
        for item in store.iter_features() {
            let (key, _) = item.map_err(err)?;
            let obj = store.object(key).map_err(err)?.ok_or("object without record")?;
            let (interesting, kind) =
                truth.get(&obj.id).cloned().ok_or_else(|| format!("object {} is not in the truth file", obj.id))?;
            keys.push(key);
            labels.push(interesting);
            kinds.push(kind);
        }
        // The expert's first labels: some interesting anomalies.
        let mut interesting: Vec<usize> = (0..keys.len()).filter(|&i| labels[i]).collect();
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        interesting.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed));
        for &i in interesting.iter().take(opts.start) {
            label(&store, keys[i], LabelValue::Relevance(5))?;
        }
        (keys, labels, kinds)
    };
    let index: HashMap<ObjectKey, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut labelled: std::collections::HashSet<usize> = HashSet::new();
    let mut rows = Vec::new();
    let current_scores = |store: &Store| -> Result<Vec<f32>, String> {
        let mut scores = vec![f32::NEG_INFINITY; keys.len()];
        for item in store.ranked().map_err(err)? {
            let (k, s) = item.map_err(err)?;
            if let Some(&i) = index.get(&k) {
                scores[i] = s;
            }
        }
        Ok(scores)
    };
    let mean_rank = |scores: &[f32], want: &dyn Fn(usize) -> bool| -> f64 {
        let order = ranking(scores);
        let ranks: Vec<f64> = order.iter().enumerate().filter(|(_, i)| want(**i)).map(|(r, _)| r as f64).collect();
        if ranks.is_empty() { f64::NAN } else { ranks.iter().sum::<f64>() / ranks.len() as f64 }
    };
    for cycle in 0..=opts.cycles {
        {
            let store = Store::open(store_path).map_err(err)?;
            for (_, e) in store.label_events().map_err(err)? {
                if let Some(&i) = index.get(&e.object) {
                    labelled.insert(i);
                }
            }
        }
        let n_labelled = labelled.len();
        let mut methods: Vec<(&'static str, Vec<f32>)> = Vec::new();
        for (method, rerank) in [("isolation-forest", false), ("forest+re-rank", true)] {
            let store = Store::open(store_path).map_err(err)?;
            score_store(&store, &ScoreOptions { rerank, ..Default::default() }, &NoProgress).map_err(err)?;
            methods.push((method, current_scores(&store)?));
        }
        if opts.cnn_steps > 0 {
            let r = RetrainOptions {
                steps: opts.cnn_steps,
                batch: 8,
                mu: 2,
                pool: 512,
                seed: opts.seed + cycle as u64,
                ..Default::default()
            };
            match retrain(store_path, &r, &|_| {}) {
                Ok(report) => {
                    // The CNN's own ranking, whether or not it became current.
                    let store = Store::open(store_path).map_err(err)?;
                    let mut scores = vec![f32::NEG_INFINITY; keys.len()];
                    if let Some(v) = report.candidate("cnn").and_then(|c| c.version) {
                        for item in store.scores_of_version(v).map_err(err)? {
                            let (k, s) = item.map_err(err)?;
                            if let Some(&i) = index.get(&k) {
                                scores[i] = s;
                            }
                        }
                    }
                    methods.push(("fixmatch-cnn", scores));
                }
                Err(e) => progress(&format!("cycle {cycle}: no CNN ({e})")),
            }
        }
        for (method, scores) in &methods {
            rows.push(Row {
                cycle,
                method,
                labelled: n_labelled,
                metrics: metrics(scores, &labels, opts.recall_k),
                artefact_rank: mean_rank(scores, &|i| kinds[i] == "trail"),
                interesting_rank: mean_rank(scores, &|i| labels[i]),
            });
        }
        progress(&format!("cycle {cycle}: {n_labelled} labelled"));
        if cycle == opts.cycles {
            break;
        }
        // The expert labels the top unlabelled candidates of the re-ranked list:
        // interesting ones 5, artefacts and normal galaxies 0.
        let shown = &methods[1].1;
        let store = Store::open(store_path).map_err(err)?;
        let mut n = 0;
        for i in ranking(shown) {
            if n == opts.per_cycle {
                break;
            }
            if labelled.contains(&i) {
                continue;
            }
            label(&store, keys[i], LabelValue::Relevance(if labels[i] { 5 } else { 0 }))?;
            labelled.insert(i);
            n += 1;
        }
    }
    Ok(rows)
}

use std::collections::HashSet;

/// The table as text, one line per cycle and method.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>5} {:<17} {:>8} {:>7} {:>7} {:>9} {:>10} {:>10} {:>10}\n",
        "cycle", "method", "labelled", "AUROC", "AUPRC", "prec@1%", "recall@k", "rank int.", "rank trail"
    );
    for r in rows {
        out.push_str(&format!(
            "{:>5} {:<17} {:>8} {:>7.3} {:>7.3} {:>9.3} {:>10.3} {:>10.0} {:>10.0}\n",
            r.cycle,
            r.method,
            r.labelled,
            r.metrics.auroc,
            r.metrics.auprc,
            r.metrics.precision_top1,
            r.metrics.recall_top,
            r.interesting_rank,
            r.artefact_rank
        ));
    }
    out
}

/// The table as CSV.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "cycle,method,labelled,auroc,auprc,precision_top1pct,recall_top_k,mean_rank_interesting,mean_rank_artefacts\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{:.5},{:.5},{:.5},{:.5},{:.1},{:.1}\n",
            r.cycle,
            r.method,
            r.labelled,
            r.metrics.auroc,
            r.metrics.auprc,
            r.metrics.precision_top1,
            r.metrics.recall_top,
            r.interesting_rank,
            r.artefact_rank
        ));
    }
    out
}

/// Copies a store directory (not open by anyone) to `dest` for evaluation.
pub fn copy_store(src: &Path, dest: &Path) -> std::io::Result<PathBuf> {
    fn copy_dir(a: &Path, b: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(b)?;
        for entry in std::fs::read_dir(a)? {
            let entry = entry?;
            let target = b.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_dir(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    copy_dir(src, dest)?;
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_by_hand() {
        // Ranked: P N P N → precision at the hits 1/1 and 2/3 → AP = (1 + 2/3)/2.
        let ap = auprc(&[0.9, 0.8, 0.7, 0.6], &[true, false, true, false]).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{ap}");
        assert_eq!(auprc(&[0.9, 0.8], &[true, true]), Some(1.0));
        assert_eq!(auprc(&[0.9, 0.8], &[false, false]), None);
        // Ties enter together: all four tied, 2 positives → AP = 0.5 (scikit-learn).
        let ap = auprc(&[0.5; 4], &[true, false, true, false]).unwrap();
        assert!((ap - 0.5).abs() < 1e-12, "{ap}");
        // One positive tied with one negative at the top: precision 1/2 there.
        let ap = auprc(&[0.9, 0.9, 0.1], &[true, false, false]).unwrap();
        assert!((ap - 0.5).abs() < 1e-12, "{ap}");
    }

    #[test]
    fn precision_and_recall_at_k() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5];
        let labels = [true, false, true, false, true];
        assert_eq!(precision_at(&scores, &labels, 1), 1.0);
        assert_eq!(precision_at(&scores, &labels, 2), 0.5);
        assert!((recall_at(&scores, &labels, 3) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(recall_at(&scores, &labels, 10), 1.0);
        // Ties: broken by index, reproducibly.
        assert_eq!(precision_at(&[0.5, 0.5], &[false, true], 1), 0.0);
        let m = metrics(&scores, &labels, 3);
        assert!((m.auroc - 0.5).abs() < 1e-12, "3 of 6 positive-negative pairs in order: {m:?}");
        assert_eq!(m.precision_top1, 1.0, "top 1% of 5 is the first object");
    }
}
