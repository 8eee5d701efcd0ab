"""Writes src/detect/forest/sklearn-fixture.json: a small scikit-learn
IsolationForest converted to oddity's stored model format, query rows, and
scikit-learn's scores for them. The unit test `scores_sklearn_trees_as_sklearn`
loads it to pin oddity's scoring (path lengths, c(n) at the leaves,
normalisation) to scikit-learn's `score_samples`, independently of how trees are
grown. Regenerate with the bench venv:
    ~/.cache/oddity/bench-venv/bin/python benches/iforest_sklearn_fixture.py
"""

import json
import os

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest


def c(n):
    """scikit-learn's _average_path_length for one leaf size."""
    return 0.0 if n <= 1 else 1.0 if n == 2 else 2 * (np.log(n - 1) + np.euler_gamma) - 2 * (n - 1) / n


def to_oddity(forest, n_features):
    """Re-lays each tree so that a split's children are adjacent and after it."""
    trees = []
    for est, feats in zip(forest.estimators_, forest.estimators_features_):
        t = est.tree_
        nodes = [None]
        stack = [(0, 0, 0)]  # (scikit-learn node, oddity node, depth)
        while stack:
            sk, at, depth = stack.pop()
            left, right = t.children_left[sk], t.children_right[sk]
            if left == -1:
                nodes[at] = {"Leaf": {"path": float(np.float32(depth + c(t.n_node_samples[sk])))}}
                continue
            # scikit-learn compares the f32 value with an f64 threshold: the largest
            # f32 not above it gives the same decisions.
            th = np.float32(t.threshold[sk])
            if th > t.threshold[sk]:
                th = np.nextafter(th, np.float32(-np.inf))
            first = len(nodes)
            nodes += [None, None]
            nodes[at] = {"Split": {"feature": int(feats[t.feature[sk]]), "threshold": float(th), "left": first}}
            stack += [(left, first, depth + 1), (right, first + 1, depth + 1)]
        trees.append(nodes)
    return {"format": 1, "n_features": n_features, "subsample": int(forest._max_samples),
            "params": {"n_estimators": len(trees), "max_samples": int(forest._max_samples),
                       "max_features": float(forest.max_features), "seed": 0},
            "trees": trees}


def main():
    rng = np.random.default_rng(7)
    n_features = 4
    x = rng.standard_normal((300, n_features)).astype(np.float32)
    x[:3] *= 6  # a few far points
    x[3:30, 1] = 0.5  # a pocket of ties
    forest = IsolationForest(n_estimators=6, max_samples=64, max_features=0.75, random_state=3).fit(x)
    queries = np.concatenate([x[:40], (3 * rng.standard_normal((20, n_features))).astype(np.float32)])
    expected = -forest.score_samples(queries)
    fixture = {
        "generator": f"benches/iforest_sklearn_fixture.py, scikit-learn {sklearn.__version__}",
        "model": to_oddity(forest, n_features),
        "queries": [float(v) for v in queries.ravel()],
        "expected": [float(v) for v in expected],
    }
    out = os.path.join(os.path.dirname(__file__), "..", "src", "detect", "forest", "sklearn-fixture.json")
    with open(out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(out)} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
