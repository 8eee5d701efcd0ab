//! The `pretrain` and `retrain` stages over a store.
//!
//! The store allows one process at a time and the expert may be labelling
//! while a retrain runs, so a run (1) takes the retrain lock (one retrain at
//! a time), opens the store briefly and takes a snapshot of what it needs
//! (labels, image references, the current ranking and its scores for the
//! labels held back, the latest pretrained checkpoint), (2) closes it and
//! trains without the store lock, reading pixels straight from the survey
//! files, and (3) reopens it for a short exclusive step that writes the model
//! record and the candidate score versions, waiting for the store to be
//! free. A candidate becomes the ranking only if it ranks the held-back
//! labels better than the current ranking ([`super::gate`]) and no newer
//! ranking was made meanwhile. Progress goes to `<store>/retrain.json`, a
//! plain file `oddity status` reads; the verdict is kept in the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Tensor, nn};

use super::checkpoint;
#[cfg(doc)]
use super::feed::normalised_cutout;
use super::feed::{CutoutSpec, FeedOptions, ReadError, Tables, feed, read_cutouts};
use super::infer::predict_logit;
use super::net::{Net, NetConfig, copy_backbone};
use super::train::{FixMatchParams, Labelled, PretrainParams, fixmatch_train, pretrain};
use crate::retrain::gate::{self, Candidate, Ranks, Split};
use crate::retrain::lock::RetrainLock;
use crate::retrain::trial::{self, TrialRules};
use crate::retrain::{NOTE_LAST, NOTE_RANKING, RankingNote, RetrainReport};
use crate::store::{LabelBook, ModelRecord, ObjectKey, ScoreVersion, SourceFile, SourceKind, Store, StoreError};
pub use crate::store::{read_retrain_status as read_status, write_retrain_status as write_status};

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
    #[error("a retrain is already running on this store ({0}); not starting another")]
    Busy(String),
}

impl From<ReadError> for LearnError {
    fn from(e: ReadError) -> Self {
        LearnError::Data(e.0)
    }
}

/// Network size: `tiny` for CPUs and tests, `lite0` for GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Fraction of each class's labels held back to judge the new model.
    pub hold_back: f64,
    /// Expected fraction of anomalies among the unlabelled images (0: plain
    /// FixMatch pseudo-labels instead of positive-unlabelled learning).
    pub prior: f64,
    /// Fractal pretraining to run first when the store has no pretrained
    /// backbone for this network (image size 0: the cutout size); `None`
    /// trains from scratch then.
    pub pretrain: Option<PretrainParams>,
    /// How long to wait for the store at the end (the TUI may hold it).
    pub wait: Duration,
    /// SIGKILL the process after this many score batches (crash tests).
    pub crash_after_batches: Option<usize>,
    /// A challenger the held-out gate does not promote goes on trial under
    /// these rules (None: it is only kept as a version).
    pub trial: Option<TrialRules>,
}

impl Default for RetrainOptions {
    fn default() -> Self {
        RetrainOptions {
            net: NetSize::Tiny,
            steps: 300,
            batch: 16,
            mu: 2,
            pool: 2048,
            seed: 0,
            hold_back: gate::HOLD_BACK,
            prior: 0.01,
            pretrain: Some(auto_pretrain_params(0, 0)),
            wait: Duration::from_secs(24 * 3600),
            crash_after_batches: None,
            trial: Some(TrialRules::default()),
        }
    }
}

/// Images one network can take: same bands (cutouts of other sizes are
/// resampled to the group's input size, see [`normalised_cutout`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    bands: Vec<String>,
}

/// A group's surveys, objects, (interesting, boring) training labels and
/// objects per cutout size.
#[derive(Debug, Default)]
struct GroupInfo {
    surveys: Vec<String>,
    objects: usize,
    interesting: usize,
    boring: usize,
    shapes: BTreeMap<(u32, u32), usize>,
}

impl GroupInfo {
    /// The network's input size: the size most of the group's cutouts have.
    fn shape(&self) -> (u32, u32) {
        self.shapes.iter().max_by_key(|(s, n)| (**n, **s)).map(|(s, _)| *s).unwrap_or_default()
    }
}

/// What a retrain takes from the store before letting go of it.
#[derive(Debug)]
struct Snapshot {
    sources: HashMap<u32, SourceFile>,
    bands: usize,
    shape: (usize, usize),
    /// Image objects of the group trained on, in key order.
    images: Vec<ObjectKey>,
    split: Split,
    /// The training labels inside the group, (object, 0/1).
    train: Vec<(ObjectKey, i64)>,
    skipped: Vec<String>,
    pretrained: Option<(PathBuf, NetConfig)>,
    events: usize,
    current: Option<ScoreVersion>,
    /// The forest ranking a combination builds on, with its scores in key order.
    base: Option<ScoreVersion>,
    base_scores: Scores,
    /// Scores of the held-back objects from rankings that never saw their labels.
    current_held: Vec<f32>,
    base_held: Vec<f32>,
    /// What "current" was judged as, for the verdict.
    current_desc: String,
    labels_seen: Vec<u64>,
    /// What became of the trial that was open when this retrain started.
    trial_decided: Option<String>,
}

fn describe_group(g: &GroupKey, info: &GroupInfo) -> String {
    let (h, w) = info.shape();
    let others = if info.shapes.len() > 1 { ", other sizes resampled" } else { "" };
    format!("{} ({} bands, {h}x{w} px{others}, {} objects)", info.surveys.join("+"), g.bands.len().max(1), info.objects)
}

fn snapshot(store_path: &Path, opts: &RetrainOptions) -> Result<Snapshot, LearnError> {
    let store = open_when_free(store_path, opts.wait, "waiting for the store to take a snapshot of the labels")?;
    // The open trial is decided first: if its challenger won, this retrain builds on it.
    let trial_decided = trial::decide(&store)?;
    let sources: HashMap<u32, SourceFile> =
        store.sources()?.into_iter().filter(|(_, s)| s.kind == SourceKind::Images).collect();
    if sources.is_empty() {
        return Err(LearnError::Data("no image objects in the store".into()));
    }
    let events = store.label_events()?;
    let n_events = events.len();
    let book = LabelBook::from_events(events);
    let mut labels: Vec<(ObjectKey, bool)> =
        book.targets().filter(|(k, _)| sources.contains_key(&k.file)).map(|(k, t)| (k, t.interesting)).collect();
    labels.sort();
    let labels_seen: Vec<u64> = labels.iter().map(|l| l.0.as_u64()).collect();
    let rankings = Rankings::read(&store)?;
    let judge = HeldBack::split(&store, &labels, &rankings, opts)?;

    let ChosenGroup { key: chosen, shape, skipped } = choose_group(&sources, &judge.split.train)?;
    let group_of = |file: u32| sources.get(&file).map(|s| GroupKey { bands: s.bands.clone() });
    let in_group = |k: &ObjectKey| group_of(k.file).as_ref() == Some(&chosen);
    let images: Vec<ObjectKey> = store.image_keys_owned().filter_map(|k| k.ok()).filter(in_group).collect();
    let train: Vec<(ObjectKey, i64)> =
        judge.split.train.iter().filter(|l| in_group(&l.0)).map(|&(k, y)| (k, i64::from(y))).collect();
    let bands = chosen.bands.len().max(1);
    let pretrained = find_pretrained(&store, &opts.net.config(bands as i64, 2))?;
    Ok(Snapshot {
        bands,
        shape: (shape.0 as usize, shape.1 as usize),
        sources,
        images,
        split: judge.split,
        train,
        skipped,
        pretrained,
        events: n_events,
        current: rankings.current,
        base: rankings.base,
        base_scores: rankings.base_scores,
        current_held: judge.current_held,
        base_held: judge.base_held,
        current_desc: judge.current_desc,
        labels_seen,
        trial_decided,
    })
}

/// The ranking a retrain starts from: the current version, the note saying
/// a retrain made it (then only labels newer than it can judge it, and it
/// combines with the forest it was built on), and that forest ranking.
struct Rankings {
    current: Option<ScoreVersion>,
    note: Option<RankingNote>,
    base: Option<ScoreVersion>,
    base_scores: Scores,
}

impl Rankings {
    fn read(store: &Store) -> Result<Self, LearnError> {
        let current = store.current_scores()?;
        let note: Option<RankingNote> = store
            .note(NOTE_RANKING)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .filter(|n: &RankingNote| current.as_ref().is_some_and(|c| c.version == n.version));
        let base = match &note {
            Some(n) => match n.base {
                Some(b) => store.score_version(b)?,
                None => None,
            },
            None => current.clone(),
        };
        let mut base_scores = Vec::new();
        if let Some(b) = &base {
            for item in store.scores_of_version(b.version)? {
                base_scores.push(item?);
            }
        }
        Ok(Rankings { current, note, base, base_scores })
    }

    /// The base ranking's score of `k` (NaN when it has none).
    fn base_at(&self, k: ObjectKey) -> f32 {
        self.base_scores.binary_search_by_key(&k, |s| s.0).map(|i| self.base_scores[i].1).unwrap_or(f32::NAN)
    }
}

/// The labels held back to judge the new model, with their scores from the
/// rankings it competes with, made without them.
struct HeldBack {
    split: Split,
    current_held: Vec<f32>,
    base_held: Vec<f32>,
    /// What "current" was judged as, for the verdict.
    current_desc: String,
}

impl HeldBack {
    fn split(
        store: &Store,
        labels: &[(ObjectKey, bool)],
        r: &Rankings,
        opts: &RetrainOptions,
    ) -> Result<Self, LearnError> {
        let scored = |k: ObjectKey| r.base.is_none() || r.base_scores.binary_search_by_key(&k, |s| s.0).is_ok();
        let (fraction, seed) = (opts.hold_back, opts.seed);
        let any_scored = || gate::split(labels, &|k| scored(k), fraction, seed).map_err(LearnError::Data);
        let (split, judged_unseen) = match &r.note {
            Some(n) => {
                let seen: HashSet<u64> = n.labels_seen.iter().copied().collect();
                match gate::split(labels, &|k| scored(k) && !seen.contains(&k.as_u64()), fraction, seed) {
                    Ok(s) => (s, true),
                    // Not enough new labels to judge the retrained ranking fairly: judge
                    // against what the default ranking gives without the held-back labels.
                    Err(_) => (any_scored()?, false),
                }
            }
            None => (any_scored()?, false),
        };
        let held = &split.held;
        let (current_held, base_held, current_desc) = if judged_unseen {
            let cur: Vec<f32> =
                held.iter().map(|h| store.score_of(h.0).map(|s| s.unwrap_or(f32::NAN))).collect::<Result<_, _>>()?;
            let desc = format!("the current ranking (version {})", r.current.as_ref().map(|c| c.version).unwrap_or(0));
            (cur, held.iter().map(|h| r.base_at(h.0)).collect(), desc)
        } else if let Some(current) = &r.current {
            let held_keys: HashSet<ObjectKey> = held.iter().map(|h| h.0).collect();
            let without = gate::score_without(store, &held_keys)?;
            let s: Vec<f32> = held.iter().map(|h| without.get(&h.0).copied().unwrap_or(f32::NAN)).collect();
            let desc = if r.note.is_some() {
                "forest + re-rank without the held-back labels (the current ranking has seen them all)".to_string()
            } else {
                format!("the current ranking (version {}) without the held-back labels", current.version)
            };
            (s.clone(), s, desc)
        } else {
            (vec![f32::NAN; held.len()], vec![f32::NAN; held.len()], "no ranking yet".into())
        };
        Ok(HeldBack { split, current_held, base_held, current_desc })
    }
}

/// One network takes one band set (cutouts of other sizes are resampled to
/// the group's commonest size): the group with the most training labels of
/// both classes, its input size, and why the others are skipped.
fn choose_group(sources: &HashMap<u32, SourceFile>, train: &[(ObjectKey, bool)]) -> Result<ChosenGroup, LearnError> {
    let mut groups: BTreeMap<GroupKey, GroupInfo> = BTreeMap::new();
    for s in sources.values() {
        let g = groups.entry(GroupKey { bands: s.bands.clone() }).or_default();
        if !g.surveys.contains(&s.survey) {
            g.surveys.push(s.survey.clone());
        }
        g.objects += s.n_objects as usize;
        *g.shapes.entry(s.shape).or_default() += s.n_objects as usize;
    }
    for (k, interesting) in train {
        let group = sources.get(&k.file).and_then(|s| groups.get_mut(&GroupKey { bands: s.bands.clone() }));
        if let Some(g) = group {
            if *interesting { g.interesting += 1 } else { g.boring += 1 }
        }
    }
    let chosen = groups
        .iter()
        .filter(|(_, g)| g.interesting > 0 && g.boring > 0)
        .max_by_key(|(_, g)| (g.interesting + g.boring, g.objects))
        .map(|(k, _)| k.clone())
        .ok_or_else(|| {
            LearnError::Data("no set of images of one band set has both interesting and boring training labels".into())
        })?;
    let mut skipped = Vec::new();
    for (k, g) in &groups {
        if *k != chosen {
            let why = if g.interesting == 0 || g.boring == 0 {
                format!("{} interesting and {} boring training labels", g.interesting, g.boring)
            } else {
                format!("{} training labels; the CNN trains on the group with the most", g.interesting + g.boring)
            };
            skipped.push(format!("{}: {why}", describe_group(k, g)));
        }
    }
    let shape = groups[&chosen].shape();
    Ok(ChosenGroup { key: chosen, shape, skipped })
}

/// The band set a retrain trains on, its input size, and why others are skipped.
struct ChosenGroup {
    key: GroupKey,
    shape: (u32, u32),
    skipped: Vec<String>,
}

/// The newest pretrained backbone of this very network (same size, same bands).
fn find_pretrained(store: &Store, want: &NetConfig) -> Result<Option<(PathBuf, NetConfig)>, LearnError> {
    let mut pretrained = None;
    for item in store.models_of_kind("cnn-pretrain")? {
        let cfg: Option<NetConfig> = serde_json::from_str(&item.params).ok();
        if let (Some(cfg), Some(path)) = (cfg, item.blob_path())
            && (NetConfig { num_classes: 2, ..cfg.clone() }) == *want
            && path.exists()
        {
            pretrained = Some((path, cfg));
        }
    }
    Ok(pretrained)
}

/// Reads cutouts of one band set and size from the survey files, keeping
/// the files open between calls.
struct Cutouts<'a> {
    sources: &'a HashMap<u32, SourceFile>,
    bands: usize,
    shape: (usize, usize),
    tables: Tables,
}

impl<'a> Cutouts<'a> {
    fn new(sources: &'a HashMap<u32, SourceFile>, bands: usize, shape: (usize, usize)) -> Self {
        Cutouts { sources, bands, shape, tables: Tables::default() }
    }

    /// The normalised cutouts of `keys`, N×C×H×W.
    fn load(&mut self, keys: &[ObjectKey]) -> Result<Tensor, LearnError> {
        let (c, (h, w)) = (self.bands, self.shape);
        let px = read_cutouts(&self.spec(), &mut self.tables, keys)?;
        Ok(Tensor::from_slice(&px).reshape([keys.len() as i64, c as i64, h as i64, w as i64]))
    }

    fn spec(&self) -> CutoutSpec<'a> {
        CutoutSpec { sources: self.sources, bands: self.bands, shape: self.shape }
    }
}

/// Opens the store, waiting while another process (the TUI) holds it.
fn open_when_free(store_path: &Path, wait: Duration, why: &str) -> Result<Store, LearnError> {
    let deadline = Instant::now() + wait;
    loop {
        match Store::open(store_path) {
            Ok(s) => return Ok(s),
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                write_status(store_path, "waiting", &format!("{why} (is `oddity triage` open?)"));
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A ranking's scores in object key order.
type Scores = Vec<(ObjectKey, f32)>;

/// Counts (interesting, boring).
fn counts(labels: &[(ObjectKey, bool)]) -> (usize, usize) {
    let i = labels.iter().filter(|l| l.1).count();
    (i, labels.len() - i)
}

/// The CNN's logits and the base ranking's scores as rank percentiles,
/// sorted once for judging and for writing the candidates.
struct RankScales {
    cnn: Ranks,
    base: Ranks,
}

impl RankScales {
    fn new(snap: &Snapshot, logits: &[f32]) -> Self {
        RankScales { cnn: Ranks::new(logits.iter().copied()), base: Ranks::new(snap.base_scores.iter().map(|s| s.1)) }
    }
}

/// The candidate rankings over every object, in key order: the CNN's rank
/// percentile (objects outside the group it trained on keep the current
/// ranking's percentile), and the rank average of CNN and current ranking.
fn candidate_scores(snap: &Snapshot, logits: &[f32], ranks: &RankScales) -> (Scores, Scores) {
    let (cnn_ranks, base_ranks) = (&ranks.cnn, &ranks.base);
    let (mut cnn, mut combined) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    let (a, b) = (&snap.images, &snap.base_scores);
    while i < a.len() || j < b.len() {
        let (key, c, f) = match (a.get(i), b.get(j)) {
            (Some(&ka), Some(&(kb, s))) if ka == kb => {
                i += 1;
                j += 1;
                (ka, Some(cnn_ranks.percentile(logits[i - 1])), Some(base_ranks.percentile(s)))
            }
            (Some(&ka), Some(&(kb, _))) if ka < kb => {
                i += 1;
                (ka, Some(cnn_ranks.percentile(logits[i - 1])), None)
            }
            (Some(&ka), None) => {
                i += 1;
                (ka, Some(cnn_ranks.percentile(logits[i - 1])), None)
            }
            (_, Some(&(kb, s))) => {
                j += 1;
                (kb, None, Some(base_ranks.percentile(s)))
            }
            (None, None) => break,
        };
        cnn.push((key, c.or(f).unwrap_or(0.0)));
        combined.push((
            key,
            match (c, f) {
                (Some(c), Some(f)) => 0.5 * (c + f),
                (c, f) => c.or(f).unwrap_or(0.0),
            },
        ));
    }
    (cnn, combined)
}

/// FixMatch retrain from the expert's labels (less a held-back slice), then
/// inference over every image object of the group trained on; the CNN and
/// its rank average with the current ranking are written as score versions,
/// and one becomes the ranking only if it ranks the held-back labels better.
pub fn retrain(store_path: &Path, opts: &RetrainOptions, progress: &dyn Fn(&str)) -> Result<RetrainReport, LearnError> {
    let _lock = RetrainLock::acquire(store_path).map_err(LearnError::Busy)?;
    write_status(store_path, "starting", "taking a snapshot of the labels");
    let snap = snapshot(store_path, opts)?;
    if let Some(t) = &snap.trial_decided {
        progress(t);
    }
    for s in &snap.skipped {
        progress(&format!("skipped {s}"));
    }
    let held_back = counts(&snap.split.held);
    let n_anomalies = snap.train.iter().filter(|(_, y)| *y == 1).count();
    let trained_on = (n_anomalies, snap.train.len() - n_anomalies);
    let device = super::device();
    let started = Instant::now();
    tch::manual_seed(opts.seed as i64);
    let training = format!(
        "training on {} interesting and {} boring labels, {} + {} held back",
        trained_on.0, trained_on.1, held_back.0, held_back.1
    );
    write_status(store_path, "running", &format!("{training} ({device:?})"));
    progress(&format!("{training} to judge the model, device {device:?}"));

    let mut cutouts = Cutouts::new(&snap.sources, snap.bands, snap.shape);
    let (labelled, unlabelled) = training_images(&mut cutouts, &snap, opts)?;
    let cfg = opts.net.config(snap.bands as i64, 2);
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &cfg);
    start_from_backbone(store_path, &snap, opts, &cfg, &vs, progress)?;
    let params = FixMatchParams {
        steps: opts.steps,
        batch: opts.batch,
        mu: opts.mu,
        seed: opts.seed,
        prior: (opts.prior > 0.0).then_some(opts.prior),
        ..Default::default()
    };
    let steps = fixmatch_train(&net, &vs, &labelled, &unlabelled, &params, device, &|s| {
        if s.step % 50 == 0 {
            tracing::info!(
                step = s.step,
                loss = s.loss,
                mask = s.mask_rate,
                pseudo_anomaly = s.pseudo_anomaly,
                "fixmatch"
            );
        }
    });
    let final_loss = steps.last().map(|s| s.loss).unwrap_or(f64::NAN);
    progress(&format!("trained {} steps in {:.0}s", opts.steps, started.elapsed().as_secs_f64()));
    drop((labelled, unlabelled));
    let (checkpoint, hash) = save_checkpoint(store_path, &vs)?;

    write_status(store_path, "running", "scoring every object with the new model");
    let logits = score_images(&net, &cutouts, &snap.images, device)?;
    drop(cutouts);
    progress(&format!("scored {} objects after {:.0}s", logits.len(), started.elapsed().as_secs_f64()));
    let methods = Methods::new(&snap, trained_on);
    let ranks = RankScales::new(&snap, &logits);
    let mut candidates = judge(&snap, &logits, &ranks, &methods);

    // The short exclusive step.
    let store = open_when_free(store_path, opts.wait, "trained; waiting for the store")?;
    let now = store.current_scores()?;
    let stale = now.as_ref().map(|v| v.version) != snap.current.as_ref().map(|v| v.version);
    let trained = Trained { cfg: &cfg, params: &params, trained_on, held_back, final_loss, checkpoint: &checkpoint };
    let model = record_model(&store, &snap, opts, &trained, &hash)?;
    let versions = write_candidates(&store, &snap, &logits, &ranks, &methods, model, opts.crash_after_batches)?;
    for c in candidates.iter_mut() {
        if let Some(v) = versions.get(&c.name) {
            c.version = Some(v.version);
        }
    }
    let (promoted, mut verdict) = verdict(&snap, &mut candidates, &versions, now.as_ref(), stale, held_back, opts.seed);
    let running = trial::running(&store)?;
    let plan = trial_plan(promoted.is_some(), stale, snap.current.is_some(), opts.trial.is_some(), running.is_some());
    let mut keep = None;
    match (plan, &running, &snap.current, opts.trial) {
        (TrialPlan::End, _, _, _) => {
            if let Some(why) =
                trial::supersede(&store, &format!("the gate promoted retrain model {model}'s candidate"))?
            {
                progress(&why);
            }
        }
        (TrialPlan::Continue, Some(t), _, _) => {
            let score = trial::standing(&store)?.map(|s| s.1.score()).unwrap_or_default();
            verdict.push_str(&format!(
                "; version {} ({}) stays on trial against it ({score} so far), so these candidates are kept as \
                 versions only",
                t.challenger, t.name
            ));
            keep = Some(t.challenger);
        }
        (TrialPlan::Open, _, Some(current), Some(rules)) => {
            verdict.push_str(&put_on_trial(&store, &snap, current, &candidates, &versions, rules)?);
        }
        _ => {}
    }
    if let Some(v) = promoted {
        promote(&store, &snap, &versions, v)?;
    }
    drop_older_candidates(&store, &versions, keep)?;
    let report = RetrainReport {
        model,
        hash,
        trained_on,
        held_back,
        n_scored: logits.len(),
        device: format!("{device:?}"),
        candidates,
        promoted,
        verdict,
        skipped: snap.skipped.clone(),
        finished: chrono::Utc::now().to_rfc3339(),
    };
    store.put_note(NOTE_LAST, &serde_json::to_string(&report).unwrap_or_default())?;
    // "done" means the store is free again: closed (flushed) first.
    drop(store);
    write_status(store_path, "done", &report.verdict);
    Ok(report)
}

/// What a retrain trained, for its model record.
struct Trained<'a> {
    cfg: &'a NetConfig,
    params: &'a FixMatchParams,
    trained_on: (usize, usize),
    held_back: (usize, usize),
    final_loss: f64,
    checkpoint: &'a Path,
}

/// Records the trained network in the store: its id.
fn record_model(
    store: &Store,
    snap: &Snapshot,
    opts: &RetrainOptions,
    t: &Trained,
    hash: &str,
) -> Result<u32, LearnError> {
    let params = t.params;
    let params_json = serde_json::json!({
        "net": t.cfg,
        "fixmatch": { "steps": opts.steps, "batch": opts.batch, "mu": opts.mu, "tau": params.tau, "lambda_u": params.lambda_u, "prior": params.prior, "seed": opts.seed },
        "labels": { "interesting": t.trained_on.0, "boring": t.trained_on.1, "held_back": t.held_back, "events": snap.events },
        "final_loss": t.final_loss,
        "checkpoint": t.checkpoint.to_string_lossy(),
    });
    Ok(store.put_model(ModelRecord {
        id: 0,
        kind: "fixmatch-cnn".into(),
        survey: snap.survey_trained_on(),
        created: chrono::Utc::now().to_rfc3339(),
        params: params_json.to_string(),
        features: vec![],
        blob: t.checkpoint.to_string_lossy().as_bytes().to_vec(),
        hash: hash.to_string(),
    })?)
}

impl Snapshot {
    /// The survey of the group trained on (for the model record).
    fn survey_trained_on(&self) -> String {
        let file = self.images.first().map(|k| k.file).unwrap_or(0);
        self.sources.get(&file).map(|s| s.survey.clone()).unwrap_or_default()
    }
}

/// The labelled images, and an unlabelled pool sampled from the rest.
fn training_images(
    cutouts: &mut Cutouts,
    snap: &Snapshot,
    opts: &RetrainOptions,
) -> Result<(Labelled, Tensor), LearnError> {
    let labelled_keys: Vec<ObjectKey> = snap.train.iter().map(|(k, _)| *k).collect();
    let labels: Vec<i64> = snap.train.iter().map(|(_, y)| *y).collect();
    let all_labelled: HashSet<ObjectKey> = snap.split.train.iter().chain(&snap.split.held).map(|l| l.0).collect();
    let mut pool: Vec<ObjectKey> = snap.images.iter().copied().filter(|k| !all_labelled.contains(k)).collect();
    pool.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed));
    pool.truncate(opts.pool);
    let labelled = Labelled { images: cutouts.load(&labelled_keys)?, labels };
    Ok((labelled, cutouts.load(&pool)?))
}

/// Loads the fractal-pretrained backbone into `vs`, pretraining one first
/// when the store has none for this network and `opts.pretrain` allows it.
fn start_from_backbone(
    store_path: &Path,
    snap: &Snapshot,
    opts: &RetrainOptions,
    cfg: &NetConfig,
    vs: &nn::VarStore,
    progress: &dyn Fn(&str),
) -> Result<(), LearnError> {
    let mut pretrained = snap.pretrained.clone();
    if let (None, Some(pre)) = (&pretrained, &opts.pretrain) {
        let size = if pre.image_size > 0 { pre.image_size } else { snap.shape.0.min(snap.shape.1) as i64 };
        let pre = PretrainParams { image_size: size, seed: opts.seed, ..pre.clone() };
        progress("no fractal-pretrained backbone for this network yet: pretraining one first (once per store)");
        write_status(store_path, "running", "pretraining the backbone on fractals (once per store)");
        let t = Instant::now();
        let (id, _, loss, path, pre_cfg) = pretrain_and_record(store_path, cfg, &pre, opts.wait, &|_, _| {})?;
        progress(&format!("pretrained model {id} in {:.0}s (loss {loss:.3})", t.elapsed().as_secs_f64()));
        pretrained = Some((path, pre_cfg));
        // The fine-tuning starts from the same random state with or without pretraining.
        tch::manual_seed(opts.seed as i64);
    }
    if let Some((path, pre_cfg)) = &pretrained {
        let mut pre_vs = nn::VarStore::new(vs.device());
        let _pre = Net::new(&pre_vs.root(), pre_cfg);
        checkpoint::load(&mut pre_vs, path)?;
        match copy_backbone(&pre_vs, vs) {
            Ok(n) => progress(&format!("backbone from the fractal-pretrained checkpoint ({n} tensors)")),
            Err(e) => progress(&format!("pretrained checkpoint does not fit ({e}); training from scratch")),
        }
    }
    Ok(())
}

/// Saves the weights next to the store, content-hashed: (path, sha256).
fn save_checkpoint(store_path: &Path, vs: &nn::VarStore) -> Result<(PathBuf, String), LearnError> {
    let models_dir = store_path.join("models");
    std::fs::create_dir_all(&models_dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let path = models_dir.join(format!("fixmatch-{stamp}-{}.safetensors", std::process::id()));
    let hash = checkpoint::save(vs, &path)?;
    Ok((path, hash))
}

/// The network's logit for every image, in `images` order: batches read by
/// the reader pool while the network scores the one before ([`feed`]).
fn score_images(
    net: &Net,
    cutouts: &Cutouts,
    images: &[ObjectKey],
    device: tch::Device,
) -> Result<Vec<f32>, LearnError> {
    let mut logits: Vec<f32> = Vec::with_capacity(images.len());
    feed(&cutouts.spec(), images, &FeedOptions::new(256, device), |_, x| {
        logits.extend(predict_logit(net, &x, 256, device));
        Ok::<_, LearnError>(())
    })?;
    Ok(logits)
}

/// How the candidate rankings are described in their score versions.
struct Methods {
    cnn: String,
    combined: String,
}

impl Methods {
    fn new(snap: &Snapshot, (interesting, boring): (usize, usize)) -> Self {
        let cnn = format!("fixmatch-cnn ({interesting} interesting, {boring} boring labels)");
        let base = snap.base.as_ref().map(|b| b.method.clone()).unwrap_or_default();
        Methods { combined: format!("rank average of {cnn} and {base}"), cnn }
    }
}

/// The candidates judged on the held-back labels: the current ranking (as
/// it was made without them), the CNN and, over a base ranking, their rank average.
fn judge(snap: &Snapshot, logits: &[f32], ranks: &RankScales, methods: &Methods) -> Vec<Candidate> {
    let held = &snap.split.held;
    let (cnn_ranks, base_ranks) = (&ranks.cnn, &ranks.base);
    let cnn_of = |k: ObjectKey| snap.images.binary_search(&k).ok().map(|i| cnn_ranks.percentile(logits[i]));
    let mut cnn_held = Vec::new();
    let mut comb_held = Vec::new();
    for (h, &b) in held.iter().zip(&snap.base_held) {
        let base_pct = (!b.is_nan()).then(|| base_ranks.percentile(b));
        let c = cnn_of(h.0);
        cnn_held.push(c.or(base_pct).unwrap_or(0.0));
        comb_held.push(match (c, base_pct) {
            (Some(c), Some(f)) => 0.5 * (c + f),
            (c, f) => c.or(f).unwrap_or(0.0),
        });
    }
    let mut candidates = Vec::new();
    if let Some(c) = &snap.current {
        let mut cur = Candidate::judged("current", c.method.clone(), held, &snap.current_held);
        cur.version = Some(c.version);
        candidates.push(cur);
    }
    candidates.push(Candidate::judged("cnn", methods.cnn.clone(), held, &cnn_held));
    if snap.base.is_some() {
        candidates.push(Candidate::judged("combined", methods.combined.clone(), held, &comb_held));
    }
    candidates
}

/// Writes the candidate rankings as kept score versions, by candidate name.
fn write_candidates(
    store: &Store,
    snap: &Snapshot,
    logits: &[f32],
    ranks: &RankScales,
    methods: &Methods,
    model: u32,
    crash_after_batches: Option<usize>,
) -> Result<HashMap<String, ScoreVersion>, LearnError> {
    let (cnn_scores, comb_scores) = candidate_scores(snap, logits, ranks);
    let mut batches = 0;
    let mut write = |scores: &[(ObjectKey, f32)], method: &str, models: Vec<u32>| -> Result<ScoreVersion, LearnError> {
        let version = store.begin_scores()?;
        for chunk in scores.chunks(20_000) {
            store.put_scores(version, chunk)?;
            batches += 1;
            if crash_after_batches == Some(batches) {
                store.flush()?;
                let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
                std::process::abort();
            }
        }
        let info = ScoreVersion {
            version,
            models,
            method: method.to_string(),
            time: chrono::Utc::now().to_rfc3339(),
            n_scored: scores.len() as u64,
        };
        store.keep_scores(&info, "a retrain's candidate")?;
        Ok(info)
    };
    let mut versions: HashMap<String, ScoreVersion> = HashMap::new();
    versions.insert("cnn".into(), write(&cnn_scores, &methods.cnn, vec![model])?);
    if let Some(base) = &snap.base {
        let mut models = vec![model];
        models.extend(base.models.clone());
        versions.insert("combined".into(), write(&comb_scores, &methods.combined, models)?);
    }
    Ok(versions)
}

/// Which candidate becomes the ranking (none when the current one ranks the
/// held-back labels best, or a newer ranking was made meanwhile), and why.
fn verdict(
    snap: &Snapshot,
    candidates: &mut [Candidate],
    versions: &HashMap<String, ScoreVersion>,
    now: Option<&ScoreVersion>,
    stale: bool,
    held_back: (usize, usize),
    seed: u64,
) -> (Option<u32>, String) {
    let best = if snap.current.is_some() { gate::winner(candidates, seed) } else { 0 };
    let figures = candidates.iter().map(|c| format!("{} {:.3}", c.name, c.auroc)).collect::<Vec<_>>().join(", ");
    let on = format!("on {} interesting and {} boring held-back labels", held_back.0, held_back.1);
    let mut kept: Vec<String> = versions.values().map(|v| v.version.to_string()).collect();
    kept.sort();
    let kept = kept.join(", ");
    if stale {
        let n = now.map(|v| format!("version {} ({})", v.version, v.method)).unwrap_or("none".into());
        let why = format!("a newer ranking, {n}, was made while this retrain ran");
        (
            None,
            format!(
                "the ranking stayed: {why}; its candidates are kept as versions {kept} (held-out AUROC {figures} {on})"
            ),
        )
    } else if candidates[best].name == "current" {
        let v = snap.current.as_ref().map(|c| c.version).unwrap_or(0);
        let why = if held_back.0.min(held_back.1) < gate::MIN_HELD {
            format!(
                "too few held-back labels to tell a better model from luck (at least {} of each class)",
                gate::MIN_HELD
            )
        } else {
            format!(
                "no candidate ranked the held-back labels better than {}, and at least as well in {:.0}% of resamples of them",
                snap.current_desc,
                gate::SURE * 100.0
            )
        };
        (
            None,
            format!(
                "the ranking stayed (version {v}): {why} (AUROC {figures} {on}); the candidates are kept as versions {kept}"
            ),
        )
    } else {
        let win = &candidates[best];
        let v = win.version.unwrap_or(0);
        let against = match (&snap.current, win.sure) {
            (Some(_), Some(sure)) => {
                format!(
                    " than {}, and at least as well in {:.0}% of resamples of them",
                    snap.current_desc,
                    sure * 100.0
                )
            }
            _ => String::new(),
        };
        let why = format!("it ranks the held-back labels better{against} (AUROC {figures} {on})");
        (Some(v), format!("version {v} ({}) is now the ranking: {why}", win.name))
    }
}

/// Makes candidate version `v` the ranking, noting what it was built from.
fn promote(store: &Store, snap: &Snapshot, versions: &HashMap<String, ScoreVersion>, v: u32) -> Result<(), LearnError> {
    let info = versions.values().find(|i| i.version == v).cloned().expect("promoted candidate written");
    Ok(crate::retrain::promote(store, &info, snap.base.as_ref().map(|b| b.version), snap.labels_seen.clone())?)
}

/// Puts the best challenger the gate did not promote on trial against the
/// current ranking (an online trial in triage, [`trial`]), unless it ranks
/// the held-back labels worse than [`trial::FLOOR`]. Returns the verdict's addition.
fn put_on_trial(
    store: &Store,
    snap: &Snapshot,
    current: &ScoreVersion,
    candidates: &[Candidate],
    versions: &HashMap<String, ScoreVersion>,
    rules: TrialRules,
) -> Result<String, LearnError> {
    let best = candidates
        .iter()
        .filter(|c| c.name != "current" && c.auroc >= trial::FLOOR && versions.contains_key(&c.name))
        .max_by(|a, b| a.auroc.total_cmp(&b.auroc).then(a.auprc.total_cmp(&b.auprc)));
    let Some(c) = best else {
        return Ok(format!("; no candidate goes on trial (none has a held-out AUROC of {} or more)", trial::FLOOR));
    };
    let info = &versions[&c.name];
    let base = snap.base.as_ref().map(|b| b.version);
    trial::open(store, current.version, info, &c.name, rules, base, snap.labels_seen.clone())?;
    Ok(format!(
        "; version {} ({}) goes on trial against it: triage interleaves the two rankings, and it becomes the \
         ranking if the expert finds more interesting objects among its picks (at least {} interesting picks, \
         one-sided sign test at {}; rejected after {} labelled picks)",
        info.version, c.name, rules.min_decisive, rules.level, rules.cap
    ))
}

/// What a finished retrain does about trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrialPlan {
    /// Nothing goes on trial.
    Nothing,
    /// Its best challenger goes on trial.
    Open,
    /// The open trial goes on until it is decided (its candidates are kept as versions only).
    Continue,
    /// The gate promoted a candidate: the open trial ends undecided.
    End,
}

/// A trial runs until it is decided: a retrain that finishes while one is
/// open leaves it (one trial at a time, and a new one would throw away the
/// picks so far); one whose candidate the gate promotes ends it. A retrain
/// overtaken by a newer ranking (`stale`), or with no current ranking to
/// try against, or with trials off, opens none.
fn trial_plan(promoted: bool, stale: bool, has_current: bool, trials: bool, running: bool) -> TrialPlan {
    match (promoted, running) {
        (true, true) => TrialPlan::End,
        (true, false) => TrialPlan::Nothing,
        (false, true) => TrialPlan::Continue,
        (false, false) if !stale && has_current && trials => TrialPlan::Open,
        _ => TrialPlan::Nothing,
    }
}

/// Keeps this retrain's candidates, the open trial's challenger and the
/// forest ranking the current one builds on; older candidates go.
fn drop_older_candidates(
    store: &Store,
    versions: &HashMap<String, ScoreVersion>,
    on_trial: Option<u32>,
) -> Result<(), LearnError> {
    let current_base: Option<u32> = store
        .note(NOTE_RANKING)?
        .and_then(|t| serde_json::from_str::<RankingNote>(&t).ok())
        .filter(|n| store.current_scores().ok().flatten().is_some_and(|c| c.version == n.version))
        .and_then(|n| n.base);
    for k in store.kept_scores()? {
        let v = k.info.version;
        if !versions.values().any(|i| i.version == v) && Some(v) != current_base && Some(v) != on_trial {
            store.drop_kept_scores(v)?;
        }
    }
    Ok(())
}

/// The fractal pretraining a retrain runs first when the store has no
/// pretrained backbone for its network (once per store and network): 100
/// classes x 50 images x 5 epochs. On the demo survey it lifts the CNN's
/// held-out AUROC from 0.73 to 0.83 (`experiments` below).
pub fn auto_pretrain_params(image_size: i64, seed: u64) -> PretrainParams {
    PretrainParams {
        n_classes: 100,
        images_per_class: 50,
        image_size,
        epochs: 5,
        batch: 64,
        seed,
        ..Default::default()
    }
}

/// Pretrains a backbone of `cfg` (its class count replaced by the fractal
/// classes) and records it: (model id, hash, final loss, checkpoint, config).
fn pretrain_and_record(
    store_path: &Path,
    cfg: &NetConfig,
    params: &PretrainParams,
    wait: Duration,
    progress: &dyn Fn(usize, f64),
) -> Result<(u32, String, f64, PathBuf, NetConfig), LearnError> {
    let device = super::device();
    // Same seed, same initial weights: a pretraining run can be reproduced.
    tch::manual_seed(params.seed as i64);
    let cfg = NetConfig { num_classes: params.n_classes as i64, ..cfg.clone() };
    let (vs, _net, loss) = pretrain(&cfg, params, device, progress);
    let models_dir = store_path.join("models");
    std::fs::create_dir_all(&models_dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let path = models_dir.join(format!("pretrain-{stamp}-{}.safetensors", std::process::id()));
    let hash = checkpoint::save(&vs, &path)?;
    let store = open_when_free(store_path, wait, "pretrained; waiting for the store")?;
    let id = store.put_model(ModelRecord {
        id: 0,
        kind: "cnn-pretrain".into(),
        survey: String::new(),
        created: chrono::Utc::now().to_rfc3339(),
        params: serde_json::to_string(&cfg).unwrap_or_default(),
        features: vec![],
        blob: path.to_string_lossy().as_bytes().to_vec(),
        hash: hash.clone(),
    })?;
    Ok((id, hash, loss, path, cfg))
}

/// Fractal pretraining of the backbone; the checkpoint goes next to the store
/// and a `cnn-pretrain` model record points at it. `params.image_size` 0
/// means the store's cutout size.
pub fn pretrain_store(
    store_path: &Path,
    net: NetSize,
    params: &PretrainParams,
    progress: &dyn Fn(usize, f64),
) -> Result<(u32, String, f64), LearnError> {
    let (channels, size) = {
        let store = Store::open(store_path)?;
        store
            .sources()?
            .into_iter()
            .find(|(_, s)| s.kind == SourceKind::Images)
            .map(|(_, s)| (s.bands.len().max(1) as i64, s.shape.0.min(s.shape.1) as i64))
            .ok_or_else(|| LearnError::Data("no image objects in the store: ingest first".into()))?
    };
    let params =
        PretrainParams { image_size: if params.image_size > 0 { params.image_size } else { size }, ..params.clone() };
    write_status(store_path, "running", "fractal pretraining");
    let cfg = net.config(channels, params.n_classes as i64);
    let (id, hash, loss, _, _) =
        pretrain_and_record(store_path, &cfg, &params, Duration::from_secs(24 * 3600), progress)?;
    write_status(store_path, "done", &format!("pretrained model {id} (loss {loss:.3})"));
    Ok((id, hash, loss))
}

#[cfg(test)]
mod resample_tests {
    use crate::learn::feed::resample;

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

#[cfg(test)]
mod trial_tests {
    use super::{TrialPlan, trial_plan};

    #[test]
    fn a_trial_runs_until_decided_and_a_promotion_ends_it() {
        // (promoted, stale, has current, trials on, a trial running)
        assert_eq!(trial_plan(false, false, true, true, false), TrialPlan::Open);
        assert_eq!(trial_plan(false, false, true, true, true), TrialPlan::Continue);
        assert_eq!(trial_plan(true, false, true, true, true), TrialPlan::End);
        assert_eq!(trial_plan(true, false, true, true, false), TrialPlan::Nothing);
        assert_eq!(trial_plan(false, true, true, true, false), TrialPlan::Nothing, "overtaken by a newer ranking");
        assert_eq!(trial_plan(false, false, false, true, false), TrialPlan::Nothing, "nothing to try against");
        assert_eq!(trial_plan(false, false, true, false, false), TrialPlan::Nothing, "--no-trial");
    }
}

#[cfg(test)]
mod experiments {
    //! Measuring the CNN on the demo survey while changing one thing at a
    //! time: `ODDITY_DEMO=DIR cargo test --release --lib learn::stage::experiments -- --ignored --nocapture`
    //! (DIR holds `survey/truth.csv` and a scored `oddity.db`). The images are
    //! cached in DIR/cnn-cache.safetensors after the first run.
    use super::*;
    use crate::learn::train::FixMatchParams;
    use tch::Kind;

    const KINDS: [&str; 7] = ["normal", "ring", "merger", "lens", "colour", "agn", "trail"];

    fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
        std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
    }

    /// (labelled images, labels, pool, eval images, eval kinds)
    fn data(demo: &Path) -> (Tensor, Vec<i64>, Tensor, Tensor, Vec<i64>) {
        // LABELS=top: 10 interesting at random + the forest's top 90 (as an
        // expert working down the ranking); LABELS=random: 30 interesting +
        // 70 other objects at random.
        let mode: String = env("LABELS", "top".to_string());
        let cache = demo.join(format!("cnn-cache-{mode}.safetensors"));
        if !cache.exists() {
            let truth = crate::eval::read_truth(&demo.join("survey/truth.csv")).unwrap();
            let store = Store::open(&demo.join("oddity.db")).unwrap();
            let sources: HashMap<u32, SourceFile> =
                store.sources().unwrap().into_iter().filter(|(_, s)| s.kind == SourceKind::Images).collect();
            let any = sources.values().next().unwrap();
            let (bands, shape) = (any.bands.len(), (any.shape.0 as usize, any.shape.1 as usize));
            let mut ranked = Vec::new();
            for item in store.ranked().unwrap() {
                let (k, _) = item.unwrap();
                let (_, kind) = truth[&store.object(k).unwrap().unwrap().id].clone();
                ranked.push((k, KINDS.iter().position(|x| *x == kind).unwrap() as i64));
            }
            drop(store);
            let interesting = |c: i64| (1..=5).contains(&c);
            let mut pos: Vec<usize> = (0..ranked.len()).filter(|&i| interesting(ranked[i].1)).collect();
            pos.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
            let chosen: Vec<usize> = if mode == "random" {
                let mut others: Vec<usize> = (0..ranked.len()).filter(|&i| !interesting(ranked[i].1)).collect();
                others.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
                pos[..30].iter().chain(&others[..70]).copied().collect()
            } else {
                let first: Vec<usize> = pos[..10].to_vec();
                let mut chosen = first.clone();
                chosen.extend((0..ranked.len()).filter(|i| !first.contains(i)).take(90));
                chosen
            };
            let chosen_set: HashSet<usize> = chosen.iter().copied().collect();
            let mut rest: Vec<usize> = (0..ranked.len()).filter(|i| !chosen_set.contains(i)).collect();
            rest.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
            let pool: Vec<usize> = rest[..4096].to_vec();
            let mut eval: Vec<usize> = rest[4096..].iter().copied().filter(|&i| ranked[i].1 != 0).collect();
            eval.extend(rest[4096..].iter().copied().filter(|&i| ranked[i].1 == 0).take(3000));
            let keys = |ix: &[usize]| ix.iter().map(|&i| ranked[i].0).collect::<Vec<_>>();
            let yl: Vec<i64> = chosen.iter().map(|&i| i64::from(interesting(ranked[i].1))).collect();
            let ke: Vec<i64> = eval.iter().map(|&i| ranked[i].1).collect();
            let mut cut = Cutouts::new(&sources, bands, shape);
            let xl = cut.load(&keys(&chosen)).unwrap();
            let xu = cut.load(&keys(&pool)).unwrap();
            let xe = cut.load(&keys(&eval)).unwrap();
            Tensor::write_safetensors(
                &[
                    ("xl", xl.to_kind(Kind::Half)),
                    ("yl", Tensor::from_slice(&yl)),
                    ("xu", xu.to_kind(Kind::Half)),
                    ("xe", xe.to_kind(Kind::Half)),
                    ("ke", Tensor::from_slice(&ke)),
                ],
                &cache,
            )
            .unwrap();
        }
        let t: HashMap<String, Tensor> = Tensor::read_safetensors(&cache).unwrap().into_iter().collect();
        let f = |n: &str| t[n].to_kind(Kind::Float);
        (f("xl"), Vec::try_from(&t["yl"]).unwrap(), f("xu"), f("xe"), Vec::try_from(&t["ke"]).unwrap())
    }

    #[test]
    #[ignore]
    fn demo_experiment() {
        let demo = PathBuf::from(std::env::var("ODDITY_DEMO").expect("ODDITY_DEMO=dir"));
        tch::set_num_threads(env("THREADS", 2));
        let (xl, yl, xu, xe, ke) = data(&demo);
        let pool: i64 = env("POOL", 2048);
        let xu = xu.narrow(0, 0, pool.min(xu.size()[0]));
        eprintln!(
            "labelled {} ({} interesting), pool {}, eval {}",
            yl.len(),
            yl.iter().sum::<i64>(),
            xu.size()[0],
            ke.len()
        );
        let seed: u64 = env("SEED", 0);
        tch::manual_seed(seed as i64);
        let cfg = NetSize::Tiny.config(xl.size()[1], 2);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = Net::new(&vs.root(), &cfg);
        let pretrained: String = env("PRETRAINED", String::new());
        if !pretrained.is_empty() {
            let mut pre_vs = nn::VarStore::new(tch::Device::Cpu);
            let _pre = Net::new(&pre_vs.root(), &NetSize::Tiny.config(xl.size()[1], env("PRETRAINED_CLASSES", 100)));
            checkpoint::load(&mut pre_vs, Path::new(&pretrained)).unwrap();
            eprintln!("backbone from {pretrained}: {} tensors", copy_backbone(&pre_vs, &vs).unwrap());
        }
        let prior: f64 = env("PRIOR", 0.0);
        let params = FixMatchParams {
            steps: env("STEPS", 150),
            batch: env("BATCH", 8),
            mu: env("MU", 2),
            lr: env("LR", 0.03),
            optimizer: if env("OPT", "sgd".to_string()) == "adamw" {
                crate::learn::train::Optimizer::AdamW
            } else {
                crate::learn::train::Optimizer::Sgd
            },
            weight_decay: env("WD", 5e-4),
            tau: env("TAU", 0.95),
            lambda_u: env("LAMBDA", 1.0),
            prior: (prior > 0.0).then_some(prior),
            seed,
            apply_ema: env("EMA", 1) == 1,
            ..Default::default()
        };
        eprintln!("{params:?}");
        let t = Instant::now();
        let report = fixmatch_train(
            &net,
            &vs,
            &Labelled { images: xl.shallow_clone(), labels: yl.clone() },
            &xu,
            &params,
            tch::Device::Cpu,
            &|s| {
                if s.step % 25 == 0 {
                    eprintln!(
                        "step {:>4} loss {:.3} sup {:.3} unsup {:.3} mask {:.2} pseudo-anomaly {:.2}",
                        s.step, s.loss, s.sup_loss, s.unsup_loss, s.mask_rate, s.pseudo_anomaly
                    );
                }
            },
        );
        eprintln!("trained in {:.0}s ({} steps)", t.elapsed().as_secs_f64(), report.steps);
        let logit = |x: &Tensor| -> Vec<f32> {
            let l = tch::no_grad(|| {
                let parts: Vec<Tensor> = (0..x.size()[0])
                    .step_by(256)
                    .map(|s| net.forward_t(&x.narrow(0, s, 256.min(x.size()[0] - s)), false))
                    .collect();
                Tensor::cat(&parts, 0)
            });
            Vec::try_from(&(l.select(1, 1) - l.select(1, 0))).unwrap()
        };
        let sl = logit(&xl);
        let train_auc = crate::detect::auroc(&sl, &yl.iter().map(|&y| y == 1).collect::<Vec<_>>()).unwrap();
        let se = logit(&xe);
        let y: Vec<bool> = ke.iter().map(|&k| (1..=5).contains(&k)).collect();
        let m = crate::eval::metrics(&se, &y, 200);
        let mut line =
            format!("RESULT train AUROC {train_auc:.3} | held-out AUROC {:.3} AUPRC {:.3} |", m.auroc, m.auprc);
        for (c, kind) in KINDS.iter().enumerate().skip(1) {
            let (s, l): (Vec<f32>, Vec<bool>) =
                ke.iter().zip(&se).filter(|(k, _)| **k == 0 || **k == c as i64).map(|(k, s)| (*s, *k != 0)).unzip();
            line += &format!(" {kind} {:.2}", crate::detect::auroc(&s, &l).unwrap_or(f64::NAN));
        }
        eprintln!("{line}");
    }
}
