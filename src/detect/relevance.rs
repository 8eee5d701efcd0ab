//! Active-learning re-rank, Astronomaly "protege" style (Lochner & Bassett
//! 2021): a regressor learns the expert's 0–5 relevance scores from the
//! features, and the ranking multiplies the anomaly score by the predicted
//! relevance — artefacts the expert rejected sink, objects like the ones
//! they liked rise.
//!
//! The regressor is a k-nearest-neighbour average (inverse-distance weights)
//! of the labelled objects' relevance in standardised feature space, shrunk
//! towards a neutral prior for objects much farther from every label than the
//! labels are from each other: with the handful of labels a session gives, a
//! local average is what the data supports, and it needs no training. Cost is
//! O(objects x labelled x features).

use rayon::prelude::*;

/// Neutral relevance for objects far from every labelled one.
pub const PRIOR: f32 = 2.5;
/// Neighbours averaged.
const K: usize = 5;
/// Weight of the re-rank: combined = anomaly x (FLOOR + (1-FLOOR) x r/5).
const FLOOR: f32 = 0.2;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RelevanceModel {
    n_features: usize,
    /// Labelled rows (standardised), row-major.
    x: Vec<f32>,
    y: Vec<f32>,
    /// Kernel width: the median distance from a labelled object to its
    /// nearest labelled neighbour (robust to the feature count).
    bandwidth: f32,
}

impl RelevanceModel {
    /// `x`: labelled rows (standardised), `y`: relevance 0–5.
    pub fn fit(x: &[f32], n_features: usize, y: &[f32]) -> RelevanceModel {
        assert_eq!(x.len(), y.len() * n_features, "one row per relevance score");
        let n = y.len();
        let mut nearest: Vec<f32> = (0..n)
            .map(|i| {
                (0..n)
                    .filter(|&j| j != i)
                    .map(|j| dist2(&x[i * n_features..(i + 1) * n_features], &x[j * n_features..(j + 1) * n_features]))
                    .fold(f32::INFINITY, f32::min)
                    .sqrt()
            })
            .filter(|d| d.is_finite() && *d > 0.0)
            .collect();
        nearest.sort_by(f32::total_cmp);
        // With one label (or all identical) fall back to the feature scale:
        // standardised features have unit spread, so sqrt(n_features).
        let bandwidth = nearest.get(nearest.len() / 2).copied().unwrap_or((n_features as f32).sqrt()).max(1e-3);
        RelevanceModel { n_features, x: x.to_vec(), y: y.to_vec(), bandwidth }
    }

    pub fn n_labelled(&self) -> usize {
        self.y.len()
    }

    /// Predicted relevance (0–5) of each row of `x` (standardised).
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let f = self.n_features;
        let k = K.min(self.y.len());
        let h = self.bandwidth;
        x.par_chunks(f)
            .map_init(
                || Vec::with_capacity(self.y.len()),
                |near: &mut Vec<(f32, f32)>, row| {
                    near.clear();
                    near.extend(
                        self.y.iter().enumerate().map(|(j, &y)| (dist2(row, &self.x[j * f..(j + 1) * f]).sqrt(), y)),
                    );
                    near.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
                    let (mut num, mut den) = (0.0f32, 0.0f32);
                    for &(d, y) in &near[..k] {
                        let w = 1.0 / (d + 0.05 * h);
                        num += w * y;
                        den += w;
                    }
                    let local = num / den;
                    // Far beyond the labels' own spacing: trust the prior.
                    let nearest = near[..k].iter().map(|p| p.0).fold(f32::INFINITY, f32::min);
                    let trust = (-(nearest / (4.0 * h)).powi(2)).exp();
                    trust * local + (1.0 - trust) * PRIOR
                },
            )
            .collect()
    }
}

/// The combined ranking score of an object.
pub fn combine(anomaly: f32, relevance: f32) -> f32 {
    anomaly * (FLOOR + (1.0 - FLOOR) * (relevance / 5.0).clamp(0.0, 1.0))
}

fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(p, q)| if p.is_finite() && q.is_finite() { (p - q) * (p - q) } else { 0.0 }).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_labels_dominate_far_ones_fall_back_to_the_prior() {
        // Two labelled clusters in 2-D: boring at (5, 5), interesting at (-5, 5).
        let x = [5.0, 5.0, 5.2, 4.9, -5.0, 5.0, -4.8, 5.1];
        let y = [0.0, 0.0, 5.0, 5.0];
        let m = RelevanceModel::fit(&x, 2, &y);
        let p = m.predict(&[5.1, 5.0, -5.1, 5.0, 0.0, -40.0]);
        assert!(p[0] < 0.5, "{p:?}");
        assert!(p[1] > 4.5, "{p:?}");
        assert!((p[2] - PRIOR).abs() < 0.01, "far from every label: the prior, {p:?}");
    }

    #[test]
    fn rejected_artefacts_sink_below_liked_objects() {
        // Equal anomaly scores: relevance decides.
        let boring = combine(0.7, 0.2);
        let liked = combine(0.7, 4.8);
        let neutral = combine(0.7, PRIOR);
        assert!(boring < neutral && neutral < liked);
        // A clearly more anomalous object still beats a neutral one.
        assert!(combine(0.9, PRIOR) > combine(0.5, PRIOR));
    }

    #[test]
    fn a_single_label_works() {
        let m = RelevanceModel::fit(&[1.0, 1.0], 2, &[5.0]);
        let p = m.predict(&[1.0, 1.0]);
        assert!(p[0] > 4.0, "{p:?}");
    }
}
