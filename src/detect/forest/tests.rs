use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::*;
use crate::detect::auroc;

/// `n x nf` standard normal values.
fn gaussian(n: usize, nf: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * nf).map(|_| rng.sample(StandardNormal)).collect()
}

/// Straightforward per-row descent of the stored trees: the reference the
/// blocked, branch-free kernel must reproduce bit for bit.
fn reference_scores(forest: &IsolationForest, data: &[f32]) -> Vec<f32> {
    let trees: Vec<Vec<StoredNode>> = forest.trees.iter().map(Tree::to_stored).collect();
    let norm = trees.len() as f64 * average_path_length(forest.subsample as f64);
    data.chunks(forest.n_features)
        .map(|row| {
            let mut sum = 0f64;
            for tree in &trees {
                let mut at = 0;
                let path = loop {
                    match tree[at] {
                        StoredNode::Leaf { path } => break path,
                        StoredNode::Split { feature, threshold, left } => {
                            at = left as usize + usize::from(row[feature as usize] > threshold);
                        }
                    }
                };
                sum += f64::from(path);
            }
            (-(sum / norm)).exp2() as f32
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn planted_outliers_get_the_top_scores() {
    let (n, nf, planted) = (5000, 8, 20);
    let mut data = gaussian(n, nf, 1);
    // Far points: every feature 5–7 sigma out, random signs.
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for x in &mut data[..planted * nf] {
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        *x = sign * rng.random_range(5.0..7.0);
    }
    let forest = IsolationForest::fit(&data, nf, &ForestParams::default());
    let scores = forest.score(&data);
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut top = order[..planted].to_vec();
    top.sort_unstable();
    assert_eq!(top, (0..planted).collect::<Vec<_>>());
    // scikit-learn 1.9 on such data (6 seeds): inlier median 0.42–0.44, inlier
    // max 0.58–0.61, planted min 0.72–0.74.
    let mut inliers = scores[planted..].to_vec();
    inliers.sort_by(f32::total_cmp);
    let median = inliers[inliers.len() / 2];
    assert!((0.41..0.45).contains(&median), "inlier median {median}");
    assert!(scores[..planted].iter().all(|&s| s > 0.69), "{:?}", &scores[..planted]);
    assert_eq!(auroc(&scores, &(0..n).map(|i| i < planted).collect::<Vec<_>>()), Some(1.0));
}

#[test]
fn blocked_kernel_matches_a_plain_descent() {
    // 1000 rows: several full blocks and a partial one, for the largest blocks
    // (6 features) and the smallest (200); half the features per tree.
    for nf in [6, 200] {
        let train = gaussian(3000, nf, 3);
        let params = ForestParams { n_estimators: 37, max_samples: 200, max_features: 0.5, seed: 9 };
        let forest = IsolationForest::fit(&train, nf, &params);
        let query: Vec<f32> = gaussian(1000, nf, 4).iter().map(|x| 3.0 * x).collect();
        let scores = forest.score(&query);
        assert_eq!(bits(&scores), bits(&reference_scores(&forest, &query)));
        let mut out = vec![0.0; 1000];
        forest.score_into(&query, &mut out);
        assert_eq!(bits(&out), bits(&scores));
        assert!(forest.score(&[]).is_empty());
        // The portable kernel gives the same bits as the AVX2 build `score` picks.
        let mut portable = vec![0.0; 1000];
        for (rows, out) in query.chunks(100 * nf).zip(portable.chunks_mut(100)) {
            forest.score_block(rows, out);
        }
        assert_eq!(bits(&portable), bits(&scores));
    }
}

#[test]
fn trees_follow_scikit_learn_growth_rules() {
    let nf = 8;
    let data = gaussian(2000, nf, 5);
    let params = ForestParams { n_estimators: 50, max_samples: 100, max_features: 0.25, seed: 1 };
    let forest = IsolationForest::fit(&data, nf, &params);
    assert_eq!((forest.n_trees(), forest.subsample(), forest.n_features()), (50, 100, nf));
    let height = 7; // ceil(log2(100))
    let mut used_anywhere = vec![false; nf];
    for tree in &forest.trees {
        let stored = tree.to_stored();
        assert!(tree.depth <= height && tree.depth >= 1);
        assert!(stored.len() < 2 * 100, "a binary tree on 100 rows");
        let mut features = std::collections::BTreeSet::new();
        // Walk every root-to-leaf path: depth within the limit, leaf path = depth + c(n) >= depth.
        let mut stack = vec![(0usize, 0u32)];
        let mut leaves = 0;
        while let Some((at, depth)) = stack.pop() {
            match stored[at] {
                StoredNode::Split { feature, left, .. } => {
                    features.insert(feature);
                    stack.extend([(left as usize, depth + 1), (left as usize + 1, depth + 1)]);
                }
                StoredNode::Leaf { path } => {
                    leaves += 1;
                    assert!(depth <= tree.depth);
                    assert!(path >= depth as f32);
                    // Leaves above the height limit hold a single row (c(1) = 0).
                    if depth < height {
                        assert_eq!(path, depth as f32);
                    }
                }
            }
        }
        assert_eq!(leaves, stored.len().div_ceil(2), "every node reachable");
        // max_features = 0.25 of 8: each tree splits on at most 2 features.
        assert!(features.len() <= 2, "{features:?}");
        features.iter().for_each(|&f| used_anywhere[f as usize] = true);
    }
    assert!(used_anywhere.iter().all(|&u| u), "feature subsets vary between trees");
    // Leaves of a tree partition its 100 rows: the expected path over training
    // rows is about c(100) (the normalisation is sound).
    let mean = forest.score(&data).iter().map(|&s| f64::from(s)).sum::<f64>() / 2000.0;
    assert!((0.4..0.5).contains(&mean), "{mean}");
}

#[test]
fn constant_features_are_never_split_on() {
    // Feature 0 constant, feature 1 varying: every split uses feature 1.
    let data: Vec<f32> = gaussian(500, 1, 6).into_iter().flat_map(|x| [4.0, x]).collect();
    let forest = IsolationForest::fit(&data, 2, &ForestParams::default());
    for tree in &forest.trees {
        for node in tree.to_stored() {
            if let StoredNode::Split { feature, .. } = node {
                assert_eq!(feature, 1);
            }
        }
    }
    // All features constant: each tree is one leaf of 256 rows, path c(256): score 0.5.
    let forest = IsolationForest::fit(&[1.0; 1000], 2, &ForestParams::default());
    assert!(forest.trees.iter().all(|t| t.nodes.len() == 1 && t.depth == 0));
    for s in forest.score(&[1.0, 1.0, 50.0, -3.0]) {
        assert!((s - 0.5).abs() < 1e-6, "{s}");
    }
}

#[test]
fn non_finite_values_keep_the_model_valid() {
    // Not the intended input (Standardiser imputes), but it must not break the
    // model: finite thresholds, a JSON round trip, scores in [0, 1].
    let mut data = gaussian(400, 3, 11);
    for (i, x) in data.iter_mut().enumerate().step_by(7) {
        *x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
    }
    let forest = IsolationForest::fit(&data, 3, &ForestParams { n_estimators: 30, ..Default::default() });
    let json = serde_json::to_string(&forest).unwrap();
    let back: IsolationForest = serde_json::from_str(&json).unwrap();
    let scores = back.score(&data);
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert_eq!(bits(&scores), bits(&forest.score(&data)));
    assert_eq!(bits(&scores), bits(&reference_scores(&forest, &data)));
}

#[test]
fn degenerate_inputs_score_one_half() {
    // As scikit-learn: with one training row c(1) = 0 and the score is 2^-1.
    let p = ForestParams::default();
    for (data, nf) in [(vec![1.0, 2.0], 2), (vec![], 3)] {
        let forest = IsolationForest::fit(&data, nf, &p);
        assert_eq!(forest.score(&vec![7.0; 2 * nf]), vec![0.5; 2]);
    }
    let forest = IsolationForest::fit(&[1.0, 2.0, 3.0], 1, &ForestParams { n_estimators: 0, ..p.clone() });
    assert_eq!(forest.score(&[1.0]), vec![0.5]);
    // Two rows, height 1: one split, leaves of one row at depth 1: path 1 = c(2).
    let forest = IsolationForest::fit(&[0.0, 1.0], 1, &p);
    assert_eq!(forest.subsample(), 2);
    assert_eq!(forest.score(&[-5.0, 0.5, 9.0]), vec![0.5; 3]);
}

#[test]
fn same_seed_same_result_whatever_the_thread_count() {
    let data = gaussian(3000, 5, 7);
    let params = ForestParams { seed: 42, ..ForestParams::default() };
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let forest = IsolationForest::fit(&data, 5, &params);
            (postcard::to_allocvec(&forest).unwrap(), bits(&forest.score(&data)))
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.0, two.0, "identical trees");
    assert_eq!(one.1, two.1, "identical scores");
    assert_eq!(one, run(2));
    let other = IsolationForest::fit(&data, 5, &ForestParams { seed: 43, ..params.clone() });
    assert_ne!(bits(&other.score(&data)), one.1, "the seed matters");
}

#[test]
fn serde_round_trip_keeps_scores() {
    let data = gaussian(1000, 4, 8);
    let forest = IsolationForest::fit(&data, 4, &ForestParams { n_estimators: 20, ..Default::default() });
    let json = serde_json::to_string(&forest).unwrap();
    let from_json: IsolationForest = serde_json::from_str(&json).unwrap();
    let from_bin: IsolationForest = postcard::from_bytes(&postcard::to_allocvec(&forest).unwrap()).unwrap();
    let expected = bits(&forest.score(&data));
    assert_eq!(bits(&from_json.score(&data)), expected);
    assert_eq!(bits(&from_bin.score(&data)), expected);
    assert_eq!(serde_json::to_string(&from_json).unwrap(), json);
    assert_eq!(from_bin.params(), forest.params());
}

#[test]
fn malformed_models_are_errors() {
    let good =
        |trees| StoredForest { format: FORMAT, n_features: 2, subsample: 4, params: ForestParams::default(), trees };
    let leaf = StoredNode::Leaf { path: 1.0 };
    let split = |feature, left| StoredNode::Split { feature, threshold: 0.5, left };
    let load = |s: StoredForest| serde_json::from_str::<IsolationForest>(&serde_json::to_string(&s).unwrap());
    assert!(load(good(vec![vec![split(1, 1), leaf, leaf]])).is_ok());
    assert!(load(good(vec![vec![split(2, 1), leaf, leaf]])).is_err(), "feature out of range");
    assert!(load(good(vec![vec![split(0, 2), leaf, leaf]])).is_err(), "child out of range");
    assert!(load(good(vec![vec![split(0, 0), leaf, leaf]])).is_err(), "self loop");
    assert!(load(good(vec![vec![]])).is_err(), "empty tree");
    assert!(load(StoredForest { format: 99, ..good(vec![]) }).is_err(), "unknown format");
    assert!(load(StoredForest { n_features: 0, ..good(vec![]) }).is_err());
}

#[test]
#[should_panic(expected = "score_into")]
fn scoring_rows_of_the_wrong_width_panics() {
    let forest = IsolationForest::fit(&gaussian(10, 3, 0), 3, &ForestParams::default());
    forest.score_into(&[0.0; 6], &mut [0.0; 3]);
}

#[test]
fn scores_sklearn_trees_as_sklearn() {
    // A scikit-learn forest converted to the stored format, with scikit-learn's
    // own scores (benches/iforest_sklearn_fixture.py): pins path lengths, leaf
    // c(n) and normalisation to `-score_samples`, whatever the tree growing.
    #[derive(serde::Deserialize)]
    struct Fixture {
        model: IsolationForest,
        queries: Vec<f32>,
        expected: Vec<f64>,
    }
    let fixture: Fixture = serde_json::from_str(include_str!("sklearn-fixture.json")).unwrap();
    let scores = fixture.model.score(&fixture.queries);
    assert_eq!(scores.len(), fixture.expected.len());
    for (ours, theirs) in scores.iter().zip(&fixture.expected) {
        assert!((f64::from(*ours) - theirs).abs() < 1e-6, "{ours} vs scikit-learn {theirs}");
    }
}
