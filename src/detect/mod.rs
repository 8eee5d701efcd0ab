//! Anomaly detection: an Isolation Forest (Liu, Ting & Zhou 2008) with
//! scikit-learn's semantics, a robust standardiser to feed it, and AUROC.
//!
//! Why hand-written: the `score` stage needs, together, scikit-learn's scores
//! (so users can compare with Astronomaly and their notebooks), f32 matrices of
//! 10^7 x 10^2, bit-identical results for a seed whatever the thread count, a
//! compact serde model, and cache-friendly blocked scoring on all cores. On
//! crates.io, `extended-isolation-forest` (0.2.3, 2022) is the *extended*
//! variant (random hyperplane cuts, so not scikit-learn's scores) over
//! `[f64; N]` rows with a const-generic dimension, scoring one row per call;
//! `rustyml` models its IsolationForest on scikit-learn but keeps boxed
//! recursive f64 trees inside a large ML and deep-learning library. The forest
//! itself is a few hundred lines, pinned to scikit-learn by a fixture test.
//!
//! Typical use (the `score` stage):
//! ```no_run
//! use oddity::detect::{ForestParams, IsolationForest, Standardiser};
//! # let (raw, n_features) = (vec![0.0f32; 64], 8);
//! let scaler = Standardiser::fit(&raw, n_features);
//! let x = scaler.transform(&raw);
//! let forest = IsolationForest::fit(&x, scaler.n_out(), &ForestParams::default());
//! let scores = forest.score(&x); // in [0, 1], higher = more anomalous
//! ```

mod forest;
mod metrics;
mod standardise;

pub use forest::{ForestParams, IsolationForest, ModelError};
pub use metrics::{auprc, auroc};
pub use standardise::Standardiser;

/// Euler–Mascheroni constant, as `np.euler_gamma`.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// c(n): the average path length of an unsuccessful search in a binary search
/// tree of `n` points, which normalises isolation depths. As scikit-learn's
/// `_average_path_length`: 0 for n <= 1, 1 for n == 2, else
/// 2 H(n-1) - 2 (n-1)/n with H(i) = ln(i) + γ.
pub fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n == 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}

#[cfg(test)]
mod tests {
    use super::average_path_length as c;

    #[test]
    fn average_path_length_matches_scikit_learn() {
        assert_eq!(c(0.0), 0.0);
        assert_eq!(c(1.0), 0.0);
        assert_eq!(c(2.0), 1.0);
        // Values printed by scikit-learn 1.9's `_average_path_length` (np.euler_gamma).
        assert!((c(256.0) - 10.244_770_920_119_917).abs() < 1e-12);
        assert!((c(3.0) - 1.207_392_357_589_623).abs() < 1e-12);
        assert!((c(4096.0) - 15.789_963_603_627_406).abs() < 1e-12);
        // The same from the formula written out independently.
        for n in [3.0f64, 10.0, 255.0, 256.0, 1000.0, 1e6] {
            let harmonic = (n - 1.0).ln() + 0.577_215_664_901_532_9;
            assert!((c(n) - (2.0 * harmonic - 2.0 * (n - 1.0) / n)).abs() < 1e-12);
        }
        // c grows like 2 ln n: monotone from 2 on.
        assert!((2..5000).all(|n| c(n as f64 + 1.0) > c(n as f64)));
    }
}

pub mod relevance;
pub mod sample;
mod stage;
pub use stage::{
    ApplyReport, DEFAULT_FIT_SAMPLE, FeatureSet, FittedForests, ForestModel, Group, GroupModel, ScoreOptions,
    ScoreReport, apply_forests, fit_forests, group_byte, load_forest, score_store, score_without,
};
