//! Isolation Forest: growing the trees (cheap) and scoring rows (the hot path).
//!
//! Trees are grown as scikit-learn's `IsolationForest` grows its `ExtraTreeRegressor`s:
//! a subsample of `min(max_samples, n)` distinct rows per tree, a height limit of
//! ceil(log2(subsample)), and at each node a uniformly random non-constant feature
//! with a uniformly random threshold in [min, max) of that feature in the node
//! (rows with x <= threshold go left). A leaf holding n training rows at depth d
//! adds d + c(n) to a row's path length, and the score is
//! 2^(-mean path / c(subsample)), the negation of scikit-learn's `score_samples`.
//!
//! Scoring layout: each tree is a flat array of 12-byte nodes whose right child
//! sits next to the left one, and each leaf points at itself with a threshold of
//! +inf. A row then descends a tree in exactly `depth` branch-free steps
//! (`node = left + (x > threshold)`), and a block of rows descends one level at
//! a time, so the CPU overlaps the independent loads of many rows while the tree
//! (a few KiB) stays in L1.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::average_path_length;

/// Hyper-parameters of [`IsolationForest::fit`], with scikit-learn's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    /// Number of trees (scikit-learn's `n_estimators`).
    pub n_estimators: usize,
    /// Rows drawn, without replacement, to grow each tree; capped at the number
    /// of rows (scikit-learn's integer `max_samples`; 0 counts as 1).
    pub max_samples: usize,
    /// Fraction of the features each tree may split on: `max(1, ⌊f · n_features⌋)`
    /// of them, drawn without replacement per tree (scikit-learn's float
    /// `max_features`; 1.0 = all; values outside (0, 1] are clamped).
    pub max_features: f32,
    /// Seed: the same seed and data give bit-identical trees and scores.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams { n_estimators: 100, max_samples: 256, max_features: 1.0, seed: 0 }
    }
}

/// A fitted Isolation Forest. Serialisable with serde so the `score` stage can
/// store the model next to the scores it made. The stored form is validated on
/// deserialisation, so a corrupt model is a [`ModelError`], not a wrong index
/// in the scoring loop.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "StoredForest", into = "StoredForest")]
pub struct IsolationForest {
    n_features: usize,
    /// Rows each tree was grown on: min(max_samples, n_rows).
    subsample: usize,
    params: ForestParams,
    trees: Vec<Tree>,
}

/// One tree in its scoring layout (see the module docs).
#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<Node>,
    /// Per node: the path length d + c(n) a row ending there adds (0 for splits).
    path: Vec<f32>,
    /// Steps from the root that bring every row to its leaf.
    depth: u32,
}

/// A split, or a leaf when `left` is the node's own index (threshold +inf, so
/// the step `left + (x > threshold)` stays put).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    feature: u32,
    threshold: f32,
    left: u32,
}

/// Most rows scored together (the size of the per-block stack arrays).
const BLOCK: usize = 256;

/// Bytes of input rows per block: half of a 32 KiB L1 data cache, so that the
/// rows and the tree being walked both stay in L1 (9% faster than 64 KiB
/// blocks at 64 features on a Zen 4 core), while 32+ rows per level still
/// give the CPU plenty of independent loads to overlap.
const BLOCK_BYTES: usize = 16 << 10;

impl IsolationForest {
    /// Grows the forest on `data`, row-major `n_rows x n_features`.
    ///
    /// Values should be finite (use [`super::Standardiser`] first): a NaN goes
    /// left at every split and ±inf counts as ±f32::MAX, which keeps trees
    /// valid but says nothing useful about the row. Trees are grown in parallel, each
    /// from its own ChaCha8 stream (seed, tree index), so results do not depend
    /// on the thread count. With no rows, every row later scores 0.5.
    ///
    /// # Panics
    /// If `n_features` is 0 or does not divide `data.len()`.
    pub fn fit(data: &[f32], n_features: usize, params: &ForestParams) -> IsolationForest {
        assert!(n_features > 0, "IsolationForest::fit: n_features must be > 0");
        assert!(
            data.len().is_multiple_of(n_features),
            "IsolationForest::fit: data length {} is not a multiple of n_features {n_features}",
            data.len()
        );
        assert!(n_features <= u32::MAX as usize, "IsolationForest::fit: too many features");
        let n_rows = data.len() / n_features;
        let subsample = params.max_samples.max(1).min(n_rows);
        // scikit-learn: max(1, int(max_features * n_features)); the product in f32
        // so that e.g. 0.7 of 10 features is 7, as the decimal literal means.
        let tree_features = ((params.max_features * n_features as f32).floor() as usize).clamp(1, n_features);
        // scikit-learn: ceil(log2(max(max_samples, 2))).
        let height = usize::BITS - (subsample.max(2) - 1).leading_zeros();
        let grower = Grower { data, n_rows, n_features, subsample, tree_features, height };
        let trees = (0..params.n_estimators)
            .into_par_iter()
            .map(|index| Tree::compile(&grower.grow(params.seed, index as u64)))
            .collect();
        IsolationForest { n_features, subsample, params: params.clone(), trees }
    }

    /// Anomaly scores of the rows of `data` (row-major, `n_features` columns),
    /// in [0, 1], higher = more anomalous: 2^(-E[h(x)] / c(subsample)), which is
    /// minus scikit-learn's `score_samples`. Inliers score around 0.4–0.5.
    /// Values should be finite, as for `fit`; a NaN goes left at every split.
    ///
    /// # Panics
    /// If `data.len()` is not a multiple of the fitted `n_features`.
    pub fn score(&self, data: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; data.len() / self.n_features];
        self.score_into(data, &mut out);
        out
    }

    /// [`Self::score`] into a caller's buffer of one score per row (for
    /// streaming through a file without a second allocation).
    ///
    /// # Panics
    /// If `data.len()` is not `out.len() * n_features`.
    pub fn score_into(&self, data: &[f32], out: &mut [f32]) {
        assert_eq!(
            data.len(),
            out.len() * self.n_features,
            "IsolationForest::score_into: data must hold out.len() rows of {} features",
            self.n_features
        );
        // Rows are independent and each row sums its trees in a fixed order,
        // so the split into blocks cannot change a score.
        let block = (BLOCK_BYTES / (4 * self.n_features)).clamp(32, BLOCK);
        let avx2 = has_avx2();
        data.par_chunks(block * self.n_features).zip(out.par_chunks_mut(block)).for_each(|(rows, out)| {
            if avx2 {
                // SAFETY: the CPU has AVX2 (checked at run time just above).
                #[cfg(target_arch = "x86_64")]
                return unsafe { self.score_block_avx2(rows, out) };
            }
            self.score_block(rows, out)
        });
    }

    /// [`Self::score_block`] compiled for AVX2: the same IEEE operations per
    /// row, so the same bits, but 15–25% faster on a Zen 4 core (VEX encoding,
    /// vectorised per-tree bookkeeping). Chosen at run time so that the binary
    /// still runs on any x86-64.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn score_block_avx2(&self, rows: &[f32], out: &mut [f32]) {
        self.score_block(rows, out)
    }

    /// Scores at most [`BLOCK`] rows: every tree in turn, one level at a time.
    #[inline(always)]
    fn score_block(&self, rows: &[f32], out: &mut [f32]) {
        let n = out.len();
        let nf = self.n_features;
        let mut node = [0u32; BLOCK];
        let mut sum = [0f64; BLOCK];
        let (node, sum) = (&mut node[..n], &mut sum[..n]);
        assert_eq!(rows.len(), n * nf, "the SAFETY argument below needs whole rows");
        for tree in &self.trees {
            node.fill(0);
            for _ in 0..tree.depth {
                for (r, at) in node.iter_mut().enumerate() {
                    // SAFETY: a `Tree` exists only through `Tree::compile` of a grown or
                    // validated tree, so `at` (0, or `left` / `left + 1` of a split, or a
                    // leaf's own index) is < nodes.len(), and `feature` < n_features
                    // (0 for leaves); r < n and rows.len() == n * nf. Bounds checks
                    // here cost ~15% of scoring time.
                    let Node { feature, threshold, left } = unsafe { *tree.nodes.get_unchecked(*at as usize) };
                    let x = unsafe { *rows.get_unchecked(r * nf + feature as usize) };
                    *at = left + u32::from(x > threshold);
                }
            }
            for (s, &at) in sum.iter_mut().zip(node.iter()) {
                *s += f64::from(tree.path[at as usize]);
            }
        }
        let norm = self.trees.len() as f64 * average_path_length(self.subsample as f64);
        for (o, &s) in out.iter_mut().zip(sum.iter()) {
            // As scikit-learn: with one training row (or no trees) the ratio is taken as 1.
            let ratio = if norm > 0.0 { s / norm } else { 1.0 };
            *o = (-ratio).exp2() as f32;
        }
    }

    /// Which features isolated one row (finite, standardised like `fit`'s
    /// input): each tree credits the features of the splits on the row's path
    /// with 1/(path length), so the splits of short paths — the ones that make
    /// the row anomalous — weigh most; the credits are normalised to sum to 1.
    ///
    /// # Panics
    /// If `row.len()` differs from the fitted `n_features`.
    pub fn attribution(&self, row: &[f32]) -> Vec<f32> {
        assert_eq!(row.len(), self.n_features, "IsolationForest::attribution: one value per feature");
        let mut credit = vec![0f64; self.n_features];
        let mut visited = Vec::new();
        for tree in &self.trees {
            visited.clear();
            let mut at = 0usize;
            for _ in 0..tree.depth {
                let node = tree.nodes[at];
                if node.left as usize == at {
                    break;
                }
                visited.push(node.feature as usize);
                at = node.left as usize + usize::from(row[node.feature as usize] > node.threshold);
            }
            let length = f64::from(tree.path[at]).max(1.0);
            for &f in &visited {
                credit[f] += 1.0 / length;
            }
        }
        let total: f64 = credit.iter().sum();
        credit.iter().map(|c| if total > 0.0 { (c / total) as f32 } else { 0.0 }).collect()
    }

    /// Number of input features the forest was fitted on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Rows each tree was grown on: min(max_samples, rows given to `fit`).
    pub fn subsample(&self) -> usize {
        self.subsample
    }

    /// The parameters the forest was fitted with.
    pub fn params(&self) -> &ForestParams {
        &self.params
    }
}

/// Whether [`IsolationForest::score_block_avx2`] may run here.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Everything one tree's growth needs; shared read-only by the parallel growers.
struct Grower<'a> {
    data: &'a [f32],
    n_rows: usize,
    n_features: usize,
    subsample: usize,
    tree_features: usize,
    height: u32,
}

impl Grower<'_> {
    /// Grows tree `index` from its own ChaCha8 stream of `seed`.
    fn grow(&self, seed: u64, index: u64) -> Vec<StoredNode> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let m = self.subsample;
        // Sorted so that the gather below walks the input forwards.
        let mut rows = sample(&mut rng, self.n_rows, m).into_vec();
        rows.sort_unstable();
        let mut features = if self.tree_features == self.n_features {
            (0..self.n_features).collect()
        } else {
            sample(&mut rng, self.n_features, self.tree_features).into_vec()
        };
        features.sort_unstable();
        // The subsample, column-major: a node scans one feature of its rows.
        // ±inf become ±f32::MAX (the same side of every finite threshold) so
        // that thresholds stay finite and the model stays serialisable.
        let mut columns = vec![0f32; features.len() * m];
        for (i, &row) in rows.iter().enumerate() {
            let x = &self.data[row * self.n_features..(row + 1) * self.n_features];
            for (j, &f) in features.iter().enumerate() {
                columns[j * m + i] = x[f].clamp(-f32::MAX, f32::MAX);
            }
        }
        let mut build = Build {
            rng,
            columns: &columns,
            m,
            features: &features,
            candidates: (0..features.len()).collect(),
            height: self.height,
            nodes: vec![StoredNode::Leaf { path: 0.0 }],
        };
        let mut members: Vec<u32> = (0..m as u32).collect();
        build.node(0, &mut members, 0);
        build.nodes
    }
}

/// The state of one tree's recursive growth.
struct Build<'a> {
    rng: ChaCha8Rng,
    /// The tree's subsample, one column of `m` values per tree feature.
    columns: &'a [f32],
    m: usize,
    /// Input index of each tree feature.
    features: &'a [usize],
    /// Tree-feature positions, drawn from without replacement at each node.
    candidates: Vec<usize>,
    height: u32,
    nodes: Vec<StoredNode>,
}

impl Build<'_> {
    /// Makes node `id` from the subsample rows in `members` at `depth`.
    fn node(&mut self, id: usize, members: &mut [u32], depth: u32) {
        let leaf = StoredNode::Leaf { path: depth as f32 + average_path_length(members.len() as f64) as f32 };
        if depth >= self.height || members.len() < 2 {
            self.nodes[id] = leaf;
            return;
        }
        // Like scikit-learn's random splitter: draw features until one is not
        // constant in the node; a leaf when all are. Any order of `candidates`
        // gives uniform draws, so it is not reset between nodes.
        let mut left_to_draw = self.candidates.len();
        let (j, lo, hi) = loop {
            if left_to_draw == 0 {
                self.nodes[id] = leaf;
                return;
            }
            let pick = self.rng.random_range(0..left_to_draw);
            left_to_draw -= 1;
            self.candidates.swap(pick, left_to_draw);
            let j = self.candidates[left_to_draw];
            let column = &self.columns[j * self.m..(j + 1) * self.m];
            let (lo, hi) = members.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &i| {
                let x = column[i as usize];
                (lo.min(x), hi.max(x))
            });
            // scikit-learn treats ranges below 1e-7 as constant; only a true
            // constant is, here, so features in tiny physical units still split.
            if hi > lo {
                break (j, lo, hi);
            }
        };
        let u: f64 = self.rng.random();
        let mut threshold = (f64::from(lo) + u * (f64::from(hi) - f64::from(lo))) as f32;
        if threshold >= hi {
            // Rounded up to the max: scikit-learn then takes the min, so both sides stay non-empty.
            threshold = lo;
        }
        let column = &self.columns[j * self.m..(j + 1) * self.m];
        // A NaN goes left, as when scoring (where `x > threshold` is false for it).
        let mut split = 0;
        for k in 0..members.len() {
            let x = column[members[k] as usize];
            if x <= threshold || x.is_nan() {
                members.swap(k, split);
                split += 1;
            }
        }
        let left = self.nodes.len();
        self.nodes.push(leaf);
        self.nodes.push(leaf);
        self.nodes[id] = StoredNode::Split { feature: self.features[j] as u32, threshold, left: left as u32 };
        let (l, r) = members.split_at_mut(split);
        self.node(left, l, depth + 1);
        self.node(left + 1, r, depth + 1);
    }
}

/// A node as stored: children of a split are adjacent (right = left + 1) and
/// come after it; a leaf holds the path length d + c(n) it adds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum StoredNode {
    Split { feature: u32, threshold: f32, left: u32 },
    Leaf { path: f32 },
}

/// The serialised form of [`IsolationForest`].
#[derive(Serialize, Deserialize)]
struct StoredForest {
    format: u32,
    n_features: usize,
    subsample: usize,
    params: ForestParams,
    trees: Vec<Vec<StoredNode>>,
}

const FORMAT: u32 = 1;

/// Why a stored model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("isolation forest format {0} is not supported (this build reads {FORMAT})")]
    Format(u32),
    #[error("isolation forest tree {tree} is malformed: {why}")]
    Tree { tree: usize, why: &'static str },
    #[error("isolation forest has no features")]
    NoFeatures,
}

impl Tree {
    /// The scoring layout of a valid tree (as grown, or checked by `validate`).
    fn compile(stored: &[StoredNode]) -> Tree {
        let mut nodes = Vec::with_capacity(stored.len());
        let mut path = vec![0f32; stored.len()];
        let mut node_depth = vec![0u32; stored.len()];
        let mut depth = 0;
        for (i, node) in stored.iter().enumerate() {
            match *node {
                StoredNode::Split { feature, threshold, left } => {
                    nodes.push(Node { feature, threshold, left });
                    // Parents come first, so a node's depth is final when it is reached;
                    // max() bounds every path even in a (malformed but valid) shared child.
                    for child in [left as usize, left as usize + 1] {
                        node_depth[child] = node_depth[child].max(node_depth[i] + 1);
                    }
                }
                StoredNode::Leaf { path: p } => {
                    nodes.push(Node { feature: 0, threshold: f32::INFINITY, left: i as u32 });
                    path[i] = p;
                    depth = depth.max(node_depth[i]);
                }
            }
        }
        Tree { nodes, path, depth }
    }

    /// Checks what scoring relies on: children in bounds and after their parent
    /// (so every descent ends in a leaf), features in range, finite thresholds.
    fn validate(stored: &[StoredNode], n_features: usize) -> Result<(), &'static str> {
        if stored.is_empty() {
            return Err("no nodes");
        }
        if stored.len() > u32::MAX as usize {
            return Err("too many nodes");
        }
        for (i, node) in stored.iter().enumerate() {
            match *node {
                StoredNode::Split { feature, threshold, left } => {
                    if feature as usize >= n_features {
                        return Err("split on a feature out of range");
                    }
                    if !threshold.is_finite() {
                        return Err("non-finite threshold");
                    }
                    if (left as usize) <= i || left as usize + 1 >= stored.len() {
                        return Err("child index out of order or out of range");
                    }
                }
                StoredNode::Leaf { path } => {
                    if !(path.is_finite() && path >= 0.0) {
                        return Err("leaf path length not a finite non-negative number");
                    }
                }
            }
        }
        Ok(())
    }

    fn to_stored(&self) -> Vec<StoredNode> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if n.left as usize == i {
                    StoredNode::Leaf { path: self.path[i] }
                } else {
                    StoredNode::Split { feature: n.feature, threshold: n.threshold, left: n.left }
                }
            })
            .collect()
    }
}

impl TryFrom<StoredForest> for IsolationForest {
    type Error = ModelError;

    fn try_from(s: StoredForest) -> Result<Self, ModelError> {
        if s.format != FORMAT {
            return Err(ModelError::Format(s.format));
        }
        if s.n_features == 0 {
            return Err(ModelError::NoFeatures);
        }
        let trees = s
            .trees
            .iter()
            .enumerate()
            .map(|(tree, nodes)| {
                Tree::validate(nodes, s.n_features).map_err(|why| ModelError::Tree { tree, why })?;
                Ok(Tree::compile(nodes))
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(IsolationForest { n_features: s.n_features, subsample: s.subsample, params: s.params, trees })
    }
}

impl From<IsolationForest> for StoredForest {
    fn from(f: IsolationForest) -> Self {
        StoredForest {
            format: FORMAT,
            n_features: f.n_features,
            subsample: f.subsample,
            params: f.params,
            trees: f.trees.iter().map(Tree::to_stored).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
