//! Whether a retrained model may become the ranking: a stratified slice of
//! the expert's labels is held back from training, and every candidate
//! ranking (the current one, the CNN, their rank average) is judged on it. A
//! candidate replaces the current ranking only if it ranks the held-back
//! labels better (AUROC), there are at least [`MIN_HELD`] of each class, and
//! it ranks them at least as well in [`SURE`] of paired bootstrap resamples:
//! a handful of held-back labels cannot promote a worse model by chance.

use std::collections::{HashMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectKey, Store, StoreError};

/// Labels of each class a retrain needs: some to train on, some to hold back.
pub const MIN_PER_CLASS: usize = 2;

/// Default fraction of each class's labels held back.
pub const HOLD_BACK: f64 = 0.25;

/// Share of paired bootstrap resamples of the held-back labels in which a
/// candidate must rank them at least as well as the current ranking to replace it.
pub const SURE: f64 = 0.9;

/// Held-back labels of each class below which no candidate replaces the
/// current ranking (with 4 + 4 a model at chance on the survey won by luck).
pub const MIN_HELD: usize = 5;

/// Bootstrap resamples of the held-back labels.
const RESAMPLES: usize = 1000;

/// The expert's labels split into what the CNN learns from and what judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// (object, interesting), sorted by object.
    pub train: Vec<(ObjectKey, bool)>,
    pub held: Vec<(ObjectKey, bool)>,
}

/// Holds back `fraction` of each class (at least one, and at least one left
/// to train on), drawn only from the labels `eligible` accepts (those the
/// current ranking has not seen). `labels` are (object, interesting).
/// Deterministic for a seed. Err names what is missing.
pub fn split(
    labels: &[(ObjectKey, bool)],
    eligible: &dyn Fn(ObjectKey) -> bool,
    fraction: f64,
    seed: u64,
) -> Result<Split, String> {
    let mut sorted = labels.to_vec();
    sorted.sort();
    sorted.dedup_by_key(|l| l.0);
    let mut held: HashSet<ObjectKey> = HashSet::new();
    for class in [true, false] {
        let total = sorted.iter().filter(|l| l.1 == class).count();
        let mut pick: Vec<ObjectKey> = sorted.iter().filter(|l| l.1 == class && eligible(l.0)).map(|l| l.0).collect();
        let name = if class { "interesting" } else { "boring" };
        if total < MIN_PER_CLASS || pick.is_empty() {
            return Err(format!(
                "{total} {name} labels, {} of them new to the current ranking: a retrain needs at least \
                 {MIN_PER_CLASS}, some of them new, to hold one back and check the new model on it",
                pick.len()
            ));
        }
        pick.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ u64::from(class)));
        let n = ((fraction * pick.len() as f64).round() as usize).max(1).min(pick.len()).min(total - 1);
        held.extend(&pick[..n]);
    }
    let (held, train): (Vec<_>, Vec<_>) = sorted.into_iter().partition(|l| held.contains(&l.0));
    Ok(Split { train, held })
}

/// Where a value falls in a score distribution: the fraction of scores
/// below it (ties count one half), in [0, 1]. Turns rankings on different
/// scales into one scale for rank averaging.
#[derive(Debug, Clone)]
pub struct Ranks {
    sorted: Vec<f32>,
}

impl Ranks {
    pub fn new(values: impl IntoIterator<Item = f32>) -> Ranks {
        let mut sorted: Vec<f32> = values.into_iter().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f32::total_cmp);
        Ranks { sorted }
    }

    pub fn percentile(&self, v: f32) -> f32 {
        if self.sorted.is_empty() || v.is_nan() {
            return 0.0;
        }
        let below = self.sorted.partition_point(|x| *x < v);
        let up_to = self.sorted.partition_point(|x| *x <= v);
        ((below + up_to) as f64 / (2 * self.sorted.len()) as f64) as f32
    }
}

/// One ranking judged on the held-back labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// "current", "cnn" or "combined".
    pub name: String,
    /// What made it, for people.
    pub method: String,
    /// Its score version (a candidate the final step never wrote has none).
    pub version: Option<u32>,
    pub auroc: f64,
    pub auprc: f64,
    /// Share of bootstrap resamples of the held-back labels in which it
    /// ranked them at least as well as the current ranking (challengers only).
    #[serde(default)]
    pub sure: Option<f64>,
    /// Its scores of the held-back objects and their labels (not kept).
    #[serde(skip)]
    held: Vec<(f32, bool)>,
}

impl Candidate {
    pub fn judged(name: &str, method: String, held: &[(ObjectKey, bool)], scores: &[f32]) -> Candidate {
        let labels: Vec<bool> = held.iter().map(|h| h.1).collect();
        Candidate {
            name: name.into(),
            method,
            version: None,
            auroc: crate::detect::auroc(scores, &labels).unwrap_or(f64::NAN),
            auprc: crate::detect::auprc(scores, &labels).unwrap_or(f64::NAN),
            sure: None,
            held: scores.iter().copied().zip(labels).collect(),
        }
    }
}

/// Share of stratified paired bootstrap resamples of the held-back labels in
/// which `c` has an AUROC at least as high as `current`'s (both judged on the same objects).
fn share_not_worse(c: &Candidate, current: &Candidate, seed: u64) -> f64 {
    use rand::Rng;
    if current.auroc.is_nan() {
        return if c.auroc.is_nan() { 0.0 } else { 1.0 };
    }
    if c.held.len() != current.held.len() || c.held.is_empty() {
        return 0.0;
    }
    let (pos, neg): (Vec<usize>, Vec<usize>) = (0..c.held.len()).partition(|&i| c.held[i].1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut a, mut b, mut y) = (Vec::new(), Vec::new(), Vec::new());
    let mut wins = 0;
    for _ in 0..RESAMPLES {
        a.clear();
        b.clear();
        y.clear();
        for class in [&pos, &neg] {
            for _ in 0..class.len() {
                let i = class[rng.random_range(0..class.len())];
                a.push(c.held[i].0);
                b.push(current.held[i].0);
                y.push(c.held[i].1);
            }
        }
        let (ac, ab) = (crate::detect::auroc(&a, &y), crate::detect::auroc(&b, &y));
        if let (Some(ac), Some(ab)) = (ac, ab)
            && ac >= ab
        {
            wins += 1;
        }
    }
    wins as f64 / RESAMPLES as f64
}

/// The index of the ranking to use: `candidates[0]` is the current one and
/// stays unless another ranks the held-back labels better, on at least
/// [`MIN_HELD`] of each class, and at least as well in [`SURE`] of the
/// resamples (the higher AUROC, then AUPRC, wins among challengers).
/// Records each challenger's share in `sure`.
pub fn winner(candidates: &mut [Candidate], seed: u64) -> usize {
    let Some((current, challengers)) = candidates.split_first_mut() else { return 0 };
    let positives = current.held.iter().filter(|h| h.1).count();
    let enough = positives >= MIN_HELD && current.held.len() - positives >= MIN_HELD;
    let mut best: Option<(usize, f64, f64)> = None;
    for (i, c) in challengers.iter_mut().enumerate() {
        let sure = share_not_worse(c, current, seed);
        c.sure = Some(sure);
        let beats_current = c.auroc > current.auroc || (current.auroc.is_nan() && !c.auroc.is_nan());
        let promotable = current.auroc.is_nan() || (enough && sure >= SURE);
        let beats_best = best.is_none_or(|(_, auroc, auprc)| c.auroc > auroc || (c.auroc == auroc && c.auprc > auprc));
        if beats_current && promotable && beats_best {
            best = Some((i + 1, c.auroc, c.auprc));
        }
    }
    best.map_or(0, |b| b.0)
}

/// The scores the default ranking (per-group forests + relevance re-rank)
/// would give the `held_out` objects had their labels not been given.
pub fn score_without(store: &Store, held_out: &HashSet<ObjectKey>) -> Result<HashMap<ObjectKey, f32>, StoreError> {
    crate::detect::score_without(store, held_out, &crate::detect::ScoreOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(row: u32) -> ObjectKey {
        ObjectKey { file: 1, row }
    }

    #[test]
    fn split_is_stratified_keeps_both_classes_and_is_seeded() {
        let labels: Vec<(ObjectKey, bool)> = (0..40).map(|r| (k(r), r % 5 == 0)).collect();
        let s = split(&labels, &|_| true, 0.25, 7).unwrap();
        let count = |v: &[(ObjectKey, bool)], c: bool| v.iter().filter(|l| l.1 == c).count();
        assert_eq!((count(&s.held, true), count(&s.held, false)), (2, 8));
        assert_eq!((count(&s.train, true), count(&s.train, false)), (6, 24));
        assert_eq!(split(&labels, &|_| true, 0.25, 7).unwrap(), s);
        assert_ne!(split(&labels, &|_| true, 0.25, 8).unwrap(), s);
        // Two of a class: one held back, one trained on.
        let two = [(k(1), true), (k(2), true), (k(3), false), (k(4), false), (k(5), false)];
        let s = split(&two, &|_| true, 0.25, 0).unwrap();
        assert_eq!((count(&s.held, true), count(&s.train, true)), (1, 1));
        // One of a class: no split, and the message says what is missing.
        let e = split(&two[1..], &|_| true, 0.25, 0).unwrap_err();
        assert!(e.starts_with("1 interesting labels"), "{e}");
        // Only new labels are held back.
        let s = split(&labels, &|key| key.row >= 30, 0.5, 0).unwrap();
        assert!(s.held.iter().all(|l| l.0.row >= 30), "{:?}", s.held);
        assert_eq!(count(&s.held, true), 1);
        let e = split(&labels, &|key| key.row == 35, 0.5, 0).unwrap_err();
        assert!(e.contains("boring labels, 0 of them new"), "{e}");
    }

    #[test]
    fn percentiles_put_scales_side_by_side() {
        let r = Ranks::new([0.1, 0.2, 0.2, 0.9, f32::NAN]);
        assert_eq!(r.percentile(0.0), 0.0);
        assert_eq!(r.percentile(0.2), 0.5);
        assert_eq!(r.percentile(0.15), 0.25);
        assert_eq!(r.percentile(5.0), 1.0);
        assert_eq!(r.percentile(f32::NAN), 0.0);
        assert_eq!(Ranks::new([]).percentile(1.0), 0.0);
    }

    /// A candidate judged on `n` interesting and `n` boring held-back labels,
    /// ranking `right` of the pairs correctly.
    fn judged(name: &str, n: usize, scores_of: impl Fn(usize, bool) -> f32) -> Candidate {
        let held: Vec<(ObjectKey, bool)> = (0..2 * n).map(|i| (k(i as u32), i < n)).collect();
        let scores: Vec<f32> = held.iter().enumerate().map(|(i, h)| scores_of(i % n, h.1)).collect();
        Candidate::judged(name, String::new(), &held, &scores)
    }

    #[test]
    fn a_challenger_must_beat_the_current_ranking_surely() {
        // Current: interesting objects only a little above the boring ones.
        let current = |n| judged("current", n, |i, y| if y { i as f32 } else { i as f32 - 2.0 });
        let perfect = |n| judged("cnn", n, |i, y| if y { 100.0 + i as f32 } else { i as f32 });
        let worse = |n| judged("combined", n, |i, y| if y { i as f32 - 3.0 } else { i as f32 });
        // Clearly better on 40 + 40 labels: promoted.
        let mut c = vec![current(40), worse(40), perfect(40)];
        assert_eq!(winner(&mut c, 0), 2);
        assert!(c[2].sure.unwrap() >= SURE && c[1].sure.unwrap() < 0.1, "{c:?}");
        // A worse challenger never replaces the current ranking.
        assert_eq!(winner(&mut [current(40), worse(40)], 0), 0);
        // Too few held-back labels to tell a better model from luck.
        let mut c = vec![current(MIN_HELD - 1), perfect(MIN_HELD - 1)];
        assert_eq!(winner(&mut c, 0), 0);
        assert!(c[1].auroc > c[0].auroc, "{c:?}");
        // Better on the whole but often worse in the resamples: not sure enough.
        // The current ranking interleaves the classes; the challenger lifts two
        // interesting objects to the top and drops another to the bottom.
        let slightly = |n| judged("current", n, |i, y| i as f32 + if y { 0.5 } else { 0.0 });
        let noisy = |n| {
            judged("cnn", n, |i, y| match (y, i) {
                (true, 0 | 1) => 100.0,
                (true, 5) => -100.0,
                (y, i) => i as f32 + if y { 0.5 } else { 0.0 },
            })
        };
        let mut c = vec![slightly(6), noisy(6)];
        assert_eq!(winner(&mut c, 0), 0, "{c:?}");
        assert!(c[1].auroc > c[0].auroc && c[1].sure.unwrap() < SURE, "{c:?}");
        // No current ranking: any judged candidate is taken.
        let mut none = current(5);
        none.auroc = f64::NAN;
        assert_eq!(winner(&mut [none, perfect(5)], 0), 1);
        assert_eq!(winner(&mut [current(5)], 0), 0);
    }
}
