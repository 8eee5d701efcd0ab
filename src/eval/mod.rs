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

pub use crate::detect::auprc;
use crate::detect::{FeatureSet, ScoreOptions, auroc, score_store};
use crate::learn::{RetrainOptions, retrain};
use crate::progress::NoProgress;
use crate::store::{LabelBook, LabelEvent, LabelValue, ObjectKey, Store};

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

/// Kinds of interesting anomaly the synthetic survey plants, for per-kind figures.
pub const KINDS: [&str; 5] = ["ring", "merger", "lens", "colour", "agn"];
/// The kind an expert finds boring (satellite trails), whose rank is reported.
pub const ARTEFACT_KIND: &str = "trail";

/// One row of the evaluation table: one method's ranking after one cycle.
#[derive(Debug, Clone)]
pub struct Row {
    pub cycle: usize,
    pub method: String,
    /// Objects the simulated expert has labelled (shown) so far.
    pub labelled: usize,
    /// Interesting objects among them: what the expert has found so far.
    pub found: usize,
    /// Metrics over the objects the expert has NOT labelled.
    pub metrics: Metrics,
    /// Mean rank (0 = top), among the unlabelled, of the boring artefacts (satellite trails).
    pub artefact_rank: f64,
    /// Mean rank, among the unlabelled, of the interesting anomalies.
    pub interesting_rank: f64,
    /// Per kind of [`KINDS`]: (found by the expert so far, recall in the top K of the unlabelled, total).
    pub kinds: Vec<(usize, f64, usize)>,
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
    /// The feature set whose re-ranked list the expert works through (the default ranking).
    pub shown: FeatureSet,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            cycles: 3,
            per_cycle: 100,
            start: 10,
            recall_k: 2000,
            cnn_steps: RetrainOptions::default().steps,
            seed: 0,
            shown: ScoreOptions::default().features,
        }
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
    let spec = header.iter().position(|h| *h == "spec_id");
    let mut truth = HashMap::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let f: Vec<&str> = l.split(',').collect();
        let value = (f.get(interesting) == Some(&"1"), f.get(kind).unwrap_or(&"").to_string());
        // A spectrum is what its object is: spectrum-only candidates are judged by it.
        if let Some(s) = spec.and_then(|c| f.get(c)).filter(|s| !s.is_empty()) {
            truth.insert(s.to_string(), value.clone());
        }
        truth.insert(f[id].to_string(), value);
    }
    Ok(truth)
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

/// The candidates of a scored store, in key order, with their truth.
struct Truth {
    keys: Vec<ObjectKey>,
    interesting: Vec<bool>,
    kinds: Vec<String>,
    index: HashMap<ObjectKey, usize>,
}

fn candidates(store: &Store, truth: &HashMap<String, (bool, String)>) -> Result<Truth, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    let mut keys: Vec<ObjectKey> = Vec::new();
    for item in store.ranked().map_err(err)? {
        keys.push(item.map_err(err)?.0);
    }
    keys.sort();
    let (mut interesting, mut kinds) = (Vec::new(), Vec::new());
    for &key in &keys {
        let obj = store.object(key).map_err(err)?.ok_or("a scored object without record")?;
        let (i, kind) =
            truth.get(&obj.id).cloned().ok_or_else(|| format!("object {} is not in the truth file", obj.id))?;
        interesting.push(i);
        kinds.push(kind);
    }
    let index = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    Ok(Truth { keys, interesting, kinds, index })
}

/// Runs the simulated-expert loop on `store_path` (a working copy: labels are
/// written to it). Returns one row per cycle and method.
pub fn run(
    store_path: &Path,
    truth: &HashMap<String, (bool, String)>,
    opts: &EvalOptions,
    progress: &dyn Fn(&str),
) -> Result<Vec<Row>, String> {
    let (t, deep) = first_labels(store_path, truth, opts)?;
    let mut feature_sets: Vec<FeatureSet> =
        if deep { vec![FeatureSet::Hand, FeatureSet::Deep, FeatureSet::Both] } else { vec![FeatureSet::Hand] };
    // The shown feature set is scored last: its re-rank is the ranking the store serves.
    feature_sets.sort_by_key(|&f| f == opts.shown);
    let mut labelled: HashSet<usize> = HashSet::new();
    let mut rows = Vec::new();
    for cycle in 0..=opts.cycles {
        read_labelled(store_path, &t, &mut labelled)?;
        let mut methods = forest_rankings(store_path, &t, &feature_sets)?;
        if opts.cnn_steps > 0 {
            let (cnn, promoted) = cnn_rankings(store_path, &t, opts, cycle, progress)?;
            if let Some(name) = promoted {
                progress(&format!("cycle {cycle}: the retrain's gate made {name} the ranking the expert sees next"));
            }
            methods.extend(cnn);
        }
        let found = labelled.iter().filter(|&&i| t.interesting[i]).count();
        for (method, scores) in &methods {
            rows.push(evaluate(&t, &labelled, scores, cycle, method, found, opts.recall_k));
        }
        progress(&format!("cycle {cycle}: {} labelled, {found} interesting found", labelled.len()));
        if cycle == opts.cycles {
            break;
        }
        for line in expert_labels(store_path, &t, opts.per_cycle, &mut labelled)? {
            progress(&format!("cycle {cycle}: {line}"));
        }
    }
    Ok(rows)
}

fn store_err(e: crate::store::StoreError) -> String {
    e.to_string()
}

/// Scores the store once (forest only) to list the candidates, and labels
/// the expert's first finds: `opts.start` interesting anomalies drawn with
/// the seed. Also says whether the store has CNN embeddings.
fn first_labels(
    store_path: &Path,
    truth: &HashMap<String, (bool, String)>,
    opts: &EvalOptions,
) -> Result<(Truth, bool), String> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let store = Store::open(store_path).map_err(store_err)?;
    score_store(&store, &ScoreOptions { rerank: false, ..Default::default() }, &NoProgress).map_err(store_err)?;
    let t = candidates(&store, truth)?;
    let mut interesting: Vec<usize> = (0..t.keys.len()).filter(|&i| t.interesting[i]).collect();
    interesting.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed));
    for &i in interesting.iter().take(opts.start) {
        label(&store, t.keys[i], LabelValue::Relevance(5))?;
    }
    let deep = store.embedding_count() > 0;
    Ok((t, deep))
}

/// Adds every candidate the store has a label for to `labelled`.
fn read_labelled(store_path: &Path, t: &Truth, labelled: &mut HashSet<usize>) -> Result<(), String> {
    let store = Store::open(store_path).map_err(store_err)?;
    for (_, e) in store.label_events().map_err(store_err)? {
        if let Some(&i) = t.index.get(&e.object) {
            labelled.insert(i);
        }
    }
    Ok(())
}

/// Scores per candidate (in `t`'s order; NEG_INFINITY where unscored) from
/// a store's (key, score) items.
fn scores_in_order<E: std::fmt::Display>(
    t: &Truth,
    items: impl IntoIterator<Item = Result<(ObjectKey, f32), E>>,
) -> Result<Vec<f32>, String> {
    let mut scores = vec![f32::NEG_INFINITY; t.keys.len()];
    for item in items {
        let (k, s) = item.map_err(|e| e.to_string())?;
        if let Some(&i) = t.index.get(&k) {
            scores[i] = s;
        }
    }
    Ok(scores)
}

/// The forest ranking, and the re-ranked one, of each feature set.
fn forest_rankings(store_path: &Path, t: &Truth, feature_sets: &[FeatureSet]) -> Result<Methods, String> {
    let mut methods = Vec::new();
    for &features in feature_sets {
        for rerank in [false, true] {
            let store = Store::open(store_path).map_err(store_err)?;
            let o = ScoreOptions { rerank, features, ..Default::default() };
            score_store(&store, &o, &NoProgress).map_err(store_err)?;
            let name = format!("{}{}", if rerank { "re-rank " } else { "forest " }, features.as_str());
            methods.push((name, scores_in_order(t, store.ranked().map_err(store_err)?)?));
        }
    }
    Ok(methods)
}

/// Retrains the CNN on the labels so far and returns its own rankings
/// (alone, and combined with the re-rank), whether or not they became
/// current, and the one its gate made the ranking, if any. A failed retrain
/// is reported and gives none.
fn cnn_rankings(
    store_path: &Path,
    t: &Truth,
    opts: &EvalOptions,
    cycle: usize,
    progress: &dyn Fn(&str),
) -> Result<(Methods, Option<String>), String> {
    // The retrain a user gets (its batch, pool and automatic pretraining), only the steps chosen.
    let r = RetrainOptions { steps: opts.cnn_steps, seed: opts.seed + cycle as u64, ..Default::default() };
    let report = match retrain(store_path, &r, &|_| {}) {
        Ok(report) => report,
        Err(e) => {
            progress(&format!("cycle {cycle}: no CNN ({e})"));
            return Ok((Vec::new(), None));
        }
    };
    let store = Store::open(store_path).map_err(store_err)?;
    let mut methods = Vec::new();
    let mut promoted = None;
    for (candidate, name) in [("cnn", "fixmatch-cnn"), ("combined", "cnn + re-rank")] {
        let Some(v) = report.candidate(candidate).and_then(|c| c.version) else { continue };
        if report.promoted == Some(v) {
            promoted = Some(name.to_string());
        }
        methods.push((name.to_string(), scores_in_order(t, store.scores_of_version(v).map_err(store_err)?)?));
    }
    Ok((methods, promoted))
}

/// The expert labels the first `per_cycle` unlabelled candidates triage
/// shows (the store's default ordering through the screen's own queue: the
/// re-rank, what a retrain's gate promoted, or a trial's interleaving of the
/// current ranking and a challenger): interesting ones 5, artefacts and
/// normal galaxies 0. Then the session ends, which may decide the trial.
/// Returns what happened to the trial, for the progress lines.
fn expert_labels(
    store_path: &Path,
    t: &Truth,
    per_cycle: usize,
    labelled: &mut HashSet<usize>,
) -> Result<Vec<String>, String> {
    use crate::retrain::trial;
    use crate::tui::{Filter, Ordering, queue::Queue};
    let store = Store::open(store_path).map_err(store_err)?;
    let book = LabelBook::from_events(store.label_events().map_err(store_err)?);
    let mut queue =
        Queue::new(&store, &book, Ordering::Score, Filter::Unlabelled, "simulated-expert").map_err(store_err)?;
    queue.fill(per_cycle, &store, &book).map_err(store_err)?;
    for key in queue.items.into_iter().take(per_cycle) {
        let Some(&i) = t.index.get(&key) else { continue };
        label(&store, key, LabelValue::Relevance(if t.interesting[i] { 5 } else { 0 }))?;
        labelled.insert(i);
    }
    let mut lines = Vec::new();
    if let Some((tr, tally, _)) = trial::standing(&store).map_err(store_err)?.filter(|s| s.0.closed.is_none()) {
        lines.push(format!(
            "shown an interleaving of version {} and challenger version {} ({}): {} + {} picks labelled, \
             {} interesting (challenger first)",
            tr.current,
            tr.challenger,
            tr.name,
            tally.labelled[1],
            tally.labelled[0],
            tally.score()
        ));
    }
    lines.extend(trial::decide(&store).map_err(store_err)?);
    Ok(lines)
}

/// One method's figures, over the objects the expert has not labelled.
fn evaluate(
    t: &Truth,
    labelled: &HashSet<usize>,
    scores: &[f32],
    cycle: usize,
    method: &str,
    found: usize,
    recall_k: usize,
) -> Row {
    let rest: Vec<usize> = (0..t.keys.len()).filter(|i| !labelled.contains(i)).collect();
    let s: Vec<f32> = rest.iter().map(|&i| scores[i]).collect();
    let y: Vec<bool> = rest.iter().map(|&i| t.interesting[i]).collect();
    let order = ranking(&s);
    let mean_rank = |want: &dyn Fn(usize) -> bool| -> f64 {
        let ranks: Vec<f64> =
            order.iter().enumerate().filter(|(_, i)| want(rest[**i])).map(|(r, _)| r as f64).collect();
        if ranks.is_empty() { f64::NAN } else { ranks.iter().sum::<f64>() / ranks.len() as f64 }
    };
    let top: HashSet<usize> = order.iter().take(recall_k).map(|&i| rest[i]).collect();
    let kinds = KINDS
        .iter()
        .map(|kind| {
            let of_kind = |i: &usize| t.kinds[*i] == *kind;
            let total = (0..t.keys.len()).filter(of_kind).count();
            let found = labelled.iter().filter(|i| of_kind(i)).count();
            let left = rest.iter().filter(|i| of_kind(i)).count();
            let in_top = top.iter().filter(|i| of_kind(i)).count();
            (found, if left > 0 { in_top as f64 / left as f64 } else { f64::NAN }, total)
        })
        .collect();
    Row {
        cycle,
        method: method.to_string(),
        labelled: labelled.len(),
        found,
        metrics: metrics(&s, &y, recall_k),
        artefact_rank: mean_rank(&|i| t.kinds[i] == ARTEFACT_KIND),
        interesting_rank: mean_rank(&|i| t.interesting[i]),
        kinds,
    }
}

use std::collections::HashSet;

/// The columns of the table and the CSV: (header, CSV header, value as text).
/// Rankings by method name, each a score per candidate.
type Methods = Vec<(String, Vec<f32>)>;

type Column = (&'static str, &'static str, fn(&Row) -> String);

fn columns() -> Vec<Column> {
    vec![
        ("cycle", "cycle", |r| r.cycle.to_string()),
        ("method", "method", |r| r.method.clone()),
        ("labelled", "labelled", |r| r.labelled.to_string()),
        ("found", "found", |r| r.found.to_string()),
        ("AUROC", "auroc", |r| format!("{:.3}", r.metrics.auroc)),
        ("AUPRC", "auprc", |r| format!("{:.3}", r.metrics.auprc)),
        ("prec@1%", "precision_top1pct", |r| format!("{:.3}", r.metrics.precision_top1)),
        ("recall@k", "recall_top_k", |r| format!("{:.3}", r.metrics.recall_top)),
        ("rank int.", "mean_rank_interesting", |r| format!("{:.0}", r.interesting_rank)),
        ("rank trail", "mean_rank_artefacts", |r| format!("{:.0}", r.artefact_rank)),
        ("found r/m/l/c/a", "found_by_kind", |r| r.kinds.iter().map(|k| k.0.to_string()).collect::<Vec<_>>().join("/")),
        ("recall@k r/m/l/c/a", "recall_top_k_by_kind", |r| {
            r.kinds.iter().map(|k| format!("{:.2}", k.1)).collect::<Vec<_>>().join("/")
        }),
    ]
}

/// The table as text, one line per cycle and method. Metrics are over the
/// objects the expert has not labelled; "found" counts the interesting ones
/// among those the expert has; per kind: ring/merger/lens/colour/agn.
pub fn table(rows: &[Row]) -> String {
    let cols = columns();
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cols.iter().map(|c| (c.2)(r)).collect()).collect();
    let width: Vec<usize> = (0..cols.len())
        .map(|j| cells.iter().map(|row| row[j].chars().count()).chain([cols[j].0.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<&str>| -> String {
        let v: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(j, s)| if j == 1 { format!("{s:<w$}", w = width[j]) } else { format!("{s:>w$}", w = width[j]) })
            .collect();
        v.join(" ") + "\n"
    };
    let mut out = line(cols.iter().map(|c| c.0).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The table as CSV (same columns).
pub fn csv(rows: &[Row]) -> String {
    let cols = columns();
    let mut out = cols.iter().map(|c| c.1).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        out.push_str(&(cols.iter().map(|c| (c.2)(r)).collect::<Vec<_>>().join(",") + "\n"));
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
    fn figures_cover_only_what_the_expert_has_not_labelled() {
        // Ten objects ranked 0..9 by score; 0, 1 and 5 are interesting; the
        // expert has labelled 0 and 1: what is left ranks one interesting (5)
        // among eight, at rank 3 of them.
        let keys: Vec<ObjectKey> = (0..10).map(|row| ObjectKey { file: 1, row }).collect();
        let interesting: Vec<bool> = (0..10).map(|i| [0, 1, 5].contains(&i)).collect();
        let mut kinds = vec!["normal".to_string(); 10];
        kinds[0] = "ring".into();
        kinds[1] = "ring".into();
        kinds[5] = "lens".into();
        kinds[9] = "trail".into();
        let index = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let t = Truth { keys, interesting, kinds, index };
        let scores: Vec<f32> = (0..10).map(|i| 1.0 - i as f32 / 10.0).collect();
        let labelled: HashSet<usize> = [0, 1].into();
        let row = evaluate(&t, &labelled, &scores, 0, "m", 2, 4);
        assert_eq!(row.labelled, 2);
        // Positive 5 outranks 5 of the 7 negatives left (6, 7, 8, 9 below; 2, 3, 4 above).
        assert!((row.metrics.auroc - 4.0 / 7.0).abs() < 1e-12, "{:?}", row.metrics);
        assert_eq!(row.interesting_rank, 3.0);
        assert_eq!(row.artefact_rank, 7.0);
        assert_eq!(row.metrics.recall_top, 1.0, "5 is in the top 4 of the rest");
        // Per kind: rings all found, the lens not found but in the top 4 of the rest.
        assert_eq!(row.kinds[0].0, 2);
        assert_eq!((row.kinds[2].0, row.kinds[2].1, row.kinds[2].2), (0, 1.0, 1));
        let text = table(std::slice::from_ref(&row));
        assert!(text.contains("found r/m/l/c/a") && text.contains("2/0/0/0/0"), "{text}");
        assert!(csv(&[row]).starts_with("cycle,method,labelled,found,auroc"));
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
