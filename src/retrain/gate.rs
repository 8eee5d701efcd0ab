//! Whether a retrained model may become the ranking: a stratified slice of
//! the expert's labels is held back from training, and every candidate
//! ranking (the current one, the CNN, their rank average) is judged on it. A
//! candidate replaces the current ranking only if it ranks the held-back
//! labels strictly better (AUROC).

use std::collections::{HashMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectKey, Store, StoreError};

/// Labels of each class a retrain needs: some to train on, some to hold back.
pub const MIN_PER_CLASS: usize = 2;

/// Default fraction of each class's labels held back.
pub const HOLD_BACK: f64 = 0.25;

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
        }
    }
}

/// The index of the ranking to use: `candidates[0]` is the current one and
/// stays unless another ranks the held-back labels strictly better (AUROC;
/// AUPRC breaks ties between the challengers).
pub fn winner(candidates: &[Candidate]) -> usize {
    let Some(current) = candidates.first() else { return 0 };
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate().skip(1) {
        let beats_current = c.auroc > current.auroc || (current.auroc.is_nan() && !c.auroc.is_nan());
        let beats_best = best == 0
            || c.auroc > candidates[best].auroc
            || (c.auroc == candidates[best].auroc && c.auprc > candidates[best].auprc);
        if beats_current && beats_best {
            best = i;
        }
    }
    best
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

    #[test]
    fn a_challenger_must_beat_the_current_ranking() {
        let c = |name: &str, auroc, auprc| Candidate {
            name: name.into(),
            method: String::new(),
            version: None,
            auroc,
            auprc,
        };
        assert_eq!(winner(&[c("current", 0.8, 0.5), c("cnn", 0.7, 0.9), c("combined", 0.8, 0.9)]), 0);
        assert_eq!(winner(&[c("current", 0.8, 0.5), c("cnn", 0.85, 0.2), c("combined", 0.9, 0.1)]), 2);
        assert_eq!(winner(&[c("current", 0.8, 0.5), c("cnn", 0.9, 0.2), c("combined", 0.9, 0.3)]), 2);
        assert_eq!(winner(&[c("current", f64::NAN, 0.5), c("cnn", 0.6, 0.2)]), 1);
        assert_eq!(winner(&[c("current", 0.8, 0.5)]), 0);
    }
}
