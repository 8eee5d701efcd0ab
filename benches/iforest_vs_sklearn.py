"""Isolation Forest, scikit-learn vs oddity, side by side (driven by scripts/bench-iforest).

For each size N: an N x 64 float32 standard-normal matrix with 0.1% planted
outliers (3 random features shifted 4-6 sigma) is written once to the cache as
raw little-endian f32 plus one label byte per row. Then, each in a fresh child
process so that peak RSS is its own: scikit-learn's IsolationForest(n_estimators=100,
max_samples=256, n_jobs=-1, random_state=0) fit + score_samples, and the Rust
bench binary (its command follows `--`). Both time fit + score only, not I/O.
Prints a table: wall and CPU seconds, speed-ups, AUROC on the planted labels, peak RSS, and
how closely the two forests' scores agree.

usage: iforest_vs_sklearn.py --work DIR [--sizes N ...] -- RUST_COMMAND...
       iforest_vs_sklearn.py --sklearn X.bin Y.bin SCORES.bin   (the child)
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

FEATURES = 64
OUTLIER_FRACTION = 0.001
SEED = 20080101  # Liu, Ting & Zhou 2008


def generate(n, x_path, y_path):
    """Writes the data set in 500k-row chunks so the driver stays small."""
    rng = np.random.default_rng(SEED)
    n_out = max(1, int(n * OUTLIER_FRACTION))
    rows = np.sort(rng.choice(n, n_out, replace=False))
    feats = np.stack([rng.choice(FEATURES, 3, replace=False) for _ in range(n_out)])
    shifts = rng.choice([-1.0, 1.0], (n_out, 3)) * rng.uniform(4.0, 6.0, (n_out, 3))
    labels = np.zeros(n, np.uint8)
    labels[rows] = 1
    chunk = 500_000
    with open(x_path + ".partial", "wb") as f:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            x = rng.standard_normal((hi - lo, FEATURES), dtype=np.float32)
            sel = (rows >= lo) & (rows < hi)
            for r, fs, sh in zip(rows[sel], feats[sel], shifts[sel]):
                x[r - lo, fs] += sh.astype(np.float32)
            x.astype("<f4").tofile(f)
    labels.tofile(y_path)
    os.replace(x_path + ".partial", x_path)


def run_sklearn(x_path, y_path, scores_path):
    """The child: fit + score with scikit-learn, one JSON line on stdout."""
    import sklearn
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    x = np.fromfile(x_path, dtype="<f4").reshape(-1, FEATURES)
    y = np.fromfile(y_path, dtype=np.uint8)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    forest = IsolationForest(n_estimators=100, max_samples=256, n_jobs=-1, random_state=0).fit(x)
    fit_s = time.perf_counter() - start
    scores = -forest.score_samples(x)  # oddity's sign: higher = more anomalous
    total_s = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime - cpu_start
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    auc = roc_auc_score(y, scores)
    scores.astype("<f4").tofile(scores_path)
    # Untimed baseline for the agreement columns: how far two scikit-learn
    # forests that differ only in their seed agree with each other.
    other = -IsolationForest(n_estimators=100, max_samples=256, n_jobs=-1, random_state=1).fit(x).score_samples(x)
    print(json.dumps({"fit_s": fit_s, "score_s": total_s - fit_s, "total_s": total_s, "cpu_s": cpu_s, "auroc": auc,
                      "peak_rss_mib": peak, "version": sklearn.__version__,
                      "r_seeds": float(np.corrcoef(scores, other)[0, 1])}))


def last_json(stdout):
    return json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--sklearn":
        return run_sklearn(*sys.argv[2:])
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    opts = parser.parse_args(argv[:cut])
    rust = argv[cut + 1:]
    os.makedirs(opts.work, exist_ok=True)

    # numpy runs slower with these set (they are meant for other builds); only
    # scikit-learn's process loses them.
    py_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    results = []
    for n in opts.sizes:
        x_path = os.path.join(opts.work, f"iforest-{n}x{FEATURES}.f32")
        y_path = os.path.join(opts.work, f"iforest-{n}x{FEATURES}.labels")
        if not (os.path.exists(x_path) and os.path.exists(y_path)):
            print(f"bench-iforest: generating {n} x {FEATURES}", file=sys.stderr)
            generate(n, x_path, y_path)
        sk_scores = os.path.join(opts.work, f"iforest-{n}.sklearn-scores")
        od_scores = os.path.join(opts.work, f"iforest-{n}.oddity-scores")
        print(f"bench-iforest: {n} rows: scikit-learn", file=sys.stderr)
        sk = last_json(subprocess.run([sys.executable, __file__, "--sklearn", x_path, y_path, sk_scores],
                                      env=py_env, check=True, capture_output=True, text=True).stdout)
        print(f"bench-iforest: {n} rows: oddity", file=sys.stderr)
        od = last_json(subprocess.run(rust + ["--data", x_path, "--labels", y_path, "--features", str(FEATURES),
                                              "--scores-out", od_scores],
                                      check=True, stdout=subprocess.PIPE, text=True).stdout)
        a = np.fromfile(sk_scores, dtype="<f4").astype(np.float64)
        b = np.fromfile(od_scores, dtype="<f4").astype(np.float64)
        sk["r"] = float(np.corrcoef(a, b)[0, 1])
        sk["mean_diff"] = float(np.mean(b - a))
        results.append((n, sk, od))
        for p in (sk_scores, od_scores):
            os.remove(p)

    lines = [
        f"Isolation Forest fit + score, 100 trees x 256 samples, {FEATURES} f32 features, "
        f"{OUTLIER_FRACTION:.1%} planted outliers",
        f"{os.cpu_count()} cores ({cpu_name()}); scikit-learn {results[0][1]['version']} (n_jobs=-1), "
        f"numpy {np.__version__}; oddity on {results[0][2]['threads']} rayon threads",
        "",
        f"{'rows':>9} | {'sklearn s':>9} {'(fit)':>7} | {'oddity s':>8} {'(fit)':>7} | {'speed-up':>8} | "
        f"{'CPU s sk':>8} {'CPU s od':>8} {'ratio':>6} | "
        f"{'AUROC sk':>8} {'AUROC od':>8} {'diff':>8} | {'RSS sk MiB':>10} {'RSS od MiB':>10} | "
        f"{'r od-sk':>7} {'r sk-sk':>7} {'mean od-sk':>10}",
    ]
    for n, sk, od in results:
        lines.append(
            f"{n:>9} | {sk['total_s']:>9.2f} {sk['fit_s']:>7.2f} | {od['total_s']:>8.2f} {od['fit_s']:>7.3f} | "
            f"{sk['total_s'] / od['total_s']:>7.1f}x | "
            f"{sk['cpu_s']:>8.2f} {od['cpu_s']:>8.2f} {sk['cpu_s'] / od['cpu_s']:>5.1f}x | "
            f"{sk['auroc']:>8.4f} {od['auroc']:>8.4f} "
            f"{od['auroc'] - sk['auroc']:>+8.4f} | {sk['peak_rss_mib']:>10.0f} {od['peak_rss_mib']:>10.0f} | "
            f"{sk['r']:>7.4f} {sk['r_seeds']:>7.4f} {sk['mean_diff']:>+10.4f}"
        )
    lines.append("")
    lines.append("r od-sk: Pearson correlation of oddity's and scikit-learn's scores over all rows; r sk-sk: the same")
    lines.append("between scikit-learn forests with random_state 0 and 1 (so what random trees alone give);")
    lines.append("mean od-sk: mean score difference. Times: fit + score only, data already in memory;")
    lines.append("CPU s: user + system time of all threads over the same span (steadier than wall time when")
    lines.append(f"other jobs share the cores; load average at the end: {os.getloadavg()[0]:.1f}).")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
