//! Active-learning re-rank, Astronomaly "protege" style (Lochner & Bassett
//! 2021): a random-forest regressor learns the expert's 0–5 relevance from
//! the features, and the ranking multiplies the anomaly score by the predicted
//! relevance — artefacts the expert rejected sink, objects like the ones they
//! liked rise.
//!
//! Two departures from a plain regressor on the labelled objects, both
//! measured with `oddity eval` on unlabelled objects:
//! - A sample of unlabelled objects joins the training set as relevance 0.5
//!   (positive–unlabelled learning; 0.5 rather than 0 so that objects like the
//!   ones the expert rejected sink below the unlabelled crowd): interesting objects are ~1% of a survey,
//!   so "unlabelled" is nearly always "boring", and with the handful of labels
//!   a session starts from (even interesting ones only) the forest still
//!   learns what sets them apart.
//! - Interesting objects (relevance >= 3) are weighted up so that they weigh
//!   as much as everything else together: they are rare, and the ranking is
//!   about them.
//!
//! Why hand-written: the regression trees are ~150 lines; smartcore's random
//! forest has no sample weights, and linfa has no random-forest regressor.
//! Trees are grown in parallel from per-tree ChaCha8 streams, so a seed gives
//! the same model whatever the thread count.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::store::INTERESTING_FROM;

/// Neutral relevance, for objects the model cannot judge.
pub const PRIOR: f32 = 2.5;
/// Weight of the re-rank: combined = anomaly x (FLOOR + (1-FLOOR) x r/5).
const FLOOR: f32 = 0.05;
/// Unlabelled objects that join the training set, as "probably boring".
pub const UNLABELLED_SAMPLE: usize = 5000;
/// The relevance they join with: below the neutral prior, above what the
/// expert rejected, so objects like rejected artefacts sink below the crowd.
const UNLABELLED_RELEVANCE: f32 = 0.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelevanceParams {
    pub n_trees: usize,
    pub min_leaf: usize,
    pub max_depth: usize,
    pub seed: u64,
}

impl Default for RelevanceParams {
    fn default() -> Self {
        RelevanceParams { n_trees: 100, min_leaf: 5, max_depth: 24, seed: 0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelevanceModel {
    n_features: usize,
    n_labelled: usize,
    trees: Vec<Vec<RegNode>>,
    /// Rows of the fitted matrix each tree was grown on (not stored: only
    /// [`RelevanceModel::predict_fitted`] needs them).
    #[serde(skip)]
    in_bag: Vec<Vec<bool>>,
}

/// A split (`feature`, `threshold`, children) or a leaf (`value`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RegNode {
    Split { feature: u32, threshold: f32, left: u32, right: u32 },
    Leaf { value: f32 },
}

impl RelevanceModel {
    /// `x`: rows (row-major, finite), `y`: relevance 0–5 of the labelled rows,
    /// which come first; the remaining rows are unlabelled, of which a sample
    /// of [`UNLABELLED_SAMPLE`] is taken as relevance 0.5.
    ///
    /// # Panics
    /// If `y` holds more rows than `x` or `n_features` does not divide `x.len()`.
    pub fn fit(x: &[f32], n_features: usize, y: &[f32], params: &RelevanceParams) -> RelevanceModel {
        assert!(n_features > 0 && x.len().is_multiple_of(n_features), "RelevanceModel::fit: whole rows");
        let n_rows = x.len() / n_features;
        assert!(y.len() <= n_rows, "RelevanceModel::fit: more targets than rows");
        let n_unlabelled = n_rows - y.len();
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let picks = sample(&mut rng, n_unlabelled, n_unlabelled.min(UNLABELLED_SAMPLE));
        let mut rows: Vec<usize> = (0..y.len()).collect();
        rows.extend(picks.iter().map(|i| y.len() + i));
        let mut targets: Vec<f32> = y.to_vec();
        targets.resize(rows.len(), UNLABELLED_RELEVANCE);
        let interesting = targets.iter().filter(|&&t| t >= f32::from(INTERESTING_FROM)).count();
        let up = if interesting > 0 { ((rows.len() - interesting) as f32 / interesting as f32).max(1.0) } else { 1.0 };
        let weights: Vec<f32> =
            targets.iter().map(|&t| if t >= f32::from(INTERESTING_FROM) { up } else { 1.0 }).collect();
        let data = Training { x, n_features, rows: &rows, y: &targets, w: &weights, params };
        let (trees, bags): (Vec<_>, Vec<Vec<u32>>) =
            (0..params.n_trees).into_par_iter().map(|t| data.grow(t as u64)).unzip();
        let in_bag = bags
            .iter()
            .map(|bag| {
                let mut seen = vec![false; n_rows];
                for &m in bag {
                    seen[rows[m as usize]] = true;
                }
                seen
            })
            .collect();
        RelevanceModel { n_features, n_labelled: y.len(), trees, in_bag }
    }

    /// Predictions for the rows of the matrix given to [`RelevanceModel::fit`]:
    /// a row the model trained on is judged only by the trees that did not see
    /// it (out of bag), so an unlabelled interesting object that happened to be
    /// drawn as "relevance 0" is not held down by its own draw.
    pub fn predict_fitted(&self, x: &[f32]) -> Vec<f32> {
        x.par_chunks(self.n_features)
            .enumerate()
            .map(|(i, row)| {
                let (mut sum, mut n) = (0f32, 0usize);
                for (tree, bag) in self.trees.iter().zip(&self.in_bag) {
                    if !bag.get(i).copied().unwrap_or(false) {
                        sum += leaf_value(tree, row);
                        n += 1;
                    }
                }
                if n > 0 { sum / n as f32 } else { self.predict_row(row) }
            })
            .collect()
    }

    pub fn n_labelled(&self) -> usize {
        self.n_labelled
    }

    /// Predicted relevance (0–5) of each row of `x`.
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        x.par_chunks(self.n_features).map(|row| self.predict_row(row)).collect()
    }

    fn predict_row(&self, row: &[f32]) -> f32 {
        if self.trees.is_empty() {
            return PRIOR;
        }
        let sum: f32 = self.trees.iter().map(|tree| leaf_value(tree, row)).sum();
        sum / self.trees.len() as f32
    }
}

fn leaf_value(tree: &[RegNode], row: &[f32]) -> f32 {
    let mut at = 0usize;
    loop {
        match tree[at] {
            RegNode::Leaf { value } => return value,
            RegNode::Split { feature, threshold, left, right } => {
                at = if row[feature as usize] <= threshold { left } else { right } as usize;
            }
        }
    }
}

/// The combined ranking score of an object.
pub fn combine(anomaly: f32, relevance: f32) -> f32 {
    anomaly * (FLOOR + (1.0 - FLOOR) * (relevance / 5.0).clamp(0.0, 1.0))
}

struct Training<'a> {
    x: &'a [f32],
    n_features: usize,
    /// Training rows of `x`, and their targets and weights.
    rows: &'a [usize],
    y: &'a [f32],
    w: &'a [f32],
    params: &'a RelevanceParams,
}

impl Training<'_> {
    /// One tree on a weighted bootstrap sample, sqrt(features) tried per split.
    /// One tree, and the training rows (indices into `rows`) it was grown on.
    fn grow(&self, index: u64) -> (Vec<RegNode>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.params.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = self.rows.len();
        let bag: Vec<u32> = (0..n).map(|_| rng.random_range(0..n as u32)).collect();
        let mut members = bag.clone();
        let mut nodes = Vec::new();
        self.node(&mut nodes, &mut members, 0, &mut rng);
        (nodes, bag)
    }

    fn value(&self, i: u32, f: usize) -> f32 {
        self.x[self.rows[i as usize] * self.n_features + f]
    }

    /// Grows the subtree of `members` at `nodes.len()`; returns its index.
    fn node(&self, nodes: &mut Vec<RegNode>, members: &mut [u32], depth: usize, rng: &mut ChaCha8Rng) -> u32 {
        let id = nodes.len() as u32;
        let (sw, swy) = members.iter().fold((0f64, 0f64), |(a, b), &i| {
            let w = f64::from(self.w[i as usize]);
            (a + w, b + w * f64::from(self.y[i as usize]))
        });
        let mean = if sw > 0.0 { (swy / sw) as f32 } else { 0.0 };
        nodes.push(RegNode::Leaf { value: mean });
        let min_leaf = self.params.min_leaf.max(1);
        let pure = members.iter().all(|&i| self.y[i as usize] == self.y[members[0] as usize]);
        if depth >= self.params.max_depth || members.len() < 2 * min_leaf || pure {
            return id;
        }
        let tries = (self.n_features as f64).sqrt().ceil() as usize;
        let mut best: Option<(f64, usize, f32)> = None;
        let mut order: Vec<(f32, u32)> = Vec::with_capacity(members.len());
        for f in sample(rng, self.n_features, tries.min(self.n_features)) {
            order.clear();
            order.extend(members.iter().map(|&i| (self.value(i, f), i)));
            order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            // Weighted variance reduction = maximise S_L^2/W_L + S_R^2/W_R.
            let (mut wl, mut sl) = (0f64, 0f64);
            for k in 0..order.len() - 1 {
                let i = order[k].1 as usize;
                wl += f64::from(self.w[i]);
                sl += f64::from(self.w[i]) * f64::from(self.y[i]);
                if k + 1 < min_leaf || order.len() - k - 1 < min_leaf || order[k].0 == order[k + 1].0 {
                    continue;
                }
                let (wr, sr) = (sw - wl, swy - sl);
                if wl <= 0.0 || wr <= 0.0 {
                    continue;
                }
                let gain = sl * sl / wl + sr * sr / wr;
                if best.is_none_or(|b| gain > b.0) {
                    best = Some((gain, f, 0.5 * (order[k].0 + order[k + 1].0)));
                }
            }
        }
        let Some((gain, feature, threshold)) = best else { return id };
        if gain <= swy * swy / sw + 1e-12 {
            return id;
        }
        let mut split = 0;
        for k in 0..members.len() {
            if self.value(members[k], feature) <= threshold {
                members.swap(split, k);
                split += 1;
            }
        }
        let (l, r) = members.split_at_mut(split);
        let left = self.node(nodes, l, depth + 1, rng);
        let right = self.node(nodes, r, depth + 1, rng);
        nodes[id as usize] = RegNode::Split { feature: feature as u32, threshold, left, right };
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_what_sets_the_labelled_interesting_objects_apart() {
        // 2-D: interesting objects sit near (3, 3); 20,000 unlabelled elsewhere,
        // 15 of them interesting too (what the ranking should find).
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut x = Vec::new();
        for _ in 0..8 {
            x.extend([3.0 + rng.random_range(-0.3..0.3), 3.0 + rng.random_range(-0.3..0.3)]);
        }
        for _ in 0..20 {
            x.extend([rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0)]);
        }
        let y: Vec<f32> = [vec![5.0; 8], vec![0.0; 20]].concat();
        let hidden_start = x.len() / 2;
        for i in 0..20_000 {
            if i < 15 {
                x.extend([3.0 + rng.random_range(-0.3..0.3), 3.0 + rng.random_range(-0.3..0.3)]);
            } else {
                x.extend([rng.random_range(-2.5..2.5), rng.random_range(-2.5..2.5)]);
            }
        }
        let m = RelevanceModel::fit(&x, 2, &y, &RelevanceParams::default());
        let p = m.predict_fitted(&x)[hidden_start..].to_vec();
        let hidden: f32 = p[..15].iter().sum::<f32>() / 15.0;
        let others: f32 = p[15..].iter().sum::<f32>() / (p.len() - 15) as f32;
        assert!(hidden > 2.0 && others < 0.7, "unlabelled interesting {hidden}, the rest {others}");
        // Ranked by it, the hidden ones come first.
        let mut rest: Vec<f32> = p[15..].to_vec();
        rest.sort_by(|a, b| b.total_cmp(a));
        let weakest = p[..15].iter().copied().fold(f32::INFINITY, f32::min);
        assert!(weakest > rest[20], "weakest hidden {weakest} vs the 20th of the rest {}", rest[20]);
        assert_eq!(m.n_labelled(), 28);
        // Same seed, same model.
        let again = RelevanceModel::fit(&x, 2, &y, &RelevanceParams::default());
        assert_eq!(again.predict(&x[..20]), m.predict(&x[..20]));
        // Stored, the model keeps its trees (not the bags) and predicts the same.
        let stored: RelevanceModel = postcard::from_bytes(&postcard::to_allocvec(&m).unwrap()).unwrap();
        assert_eq!(stored.predict(&x[..20]), m.predict(&x[..20]));
    }

    #[test]
    fn only_interesting_labels_still_rank_look_alikes_first() {
        // A session's start: a few interesting objects and nothing else labelled.
        let mut x = vec![4.0, 4.0, 4.1, 3.9, 3.9, 4.2];
        let y = [5.0, 5.0, 5.0];
        for i in 0..500 {
            x.extend([(i % 25) as f32 / 10.0 - 1.2, (i / 25) as f32 / 10.0 - 1.0]);
        }
        x.extend([4.05, 4.0]);
        let m = RelevanceModel::fit(&x, 2, &y, &RelevanceParams::default());
        let p = m.predict_fitted(&x);
        let lookalike = *p.last().unwrap();
        let typical = p[3..503].iter().copied().fold(0f32, f32::max);
        assert!(lookalike > 2.5 && typical < lookalike, "look-alike {lookalike}, best typical {typical}");
    }

    #[test]
    fn rejected_artefacts_sink_below_liked_objects() {
        // Equal anomaly scores: relevance decides.
        let boring = combine(0.7, 0.2);
        let liked = combine(0.7, 4.8);
        let neutral = combine(0.7, PRIOR);
        assert!(boring < neutral && neutral < liked);
        // A clearly more anomalous object still beats an equally judged one.
        assert!(combine(0.9, PRIOR) > combine(0.5, PRIOR));
    }
}
