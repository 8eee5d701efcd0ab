"""Ingest bench: h5py vs oddity on the same files, in one run.

h5py reads, per file, every column oddity's ingest reads (ids, coordinates,
catalogue columns, image/spectrum arrays and their metadata) — the way a
notebook does, one whole dataset at a time. oddity ingests the same files
into a fresh store (reads in bounded batches, checks every row, computes
pixel/spectrum summaries, writes and flushes sled). Both run warm (files in
the page cache), three times each, alternating; the median is reported.
Peak RSS of each run is measured on the child process.
"""
import os, resource, shutil, statistics, subprocess, sys, time, glob

oddity, survey, work = sys.argv[1:4]
files = sorted(glob.glob(os.path.join(survey, "**", "*.hdf5"), recursive=True))
nbytes = sum(os.path.getsize(f) for f in files)

H5PY = r'''
import sys, glob, os, h5py, numpy as np
rows = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.hdf5"), recursive=True)):
    with h5py.File(f, "r") as h:
        n = h["ra"].shape[0]
        for name in h:
            a = h[name][...]
            if name == "image_array":
                bad = (~np.isfinite(a)).sum(axis=(1, 2, 3))   # same per-object check as oddity
            if name == "spectrum_flux":
                good = np.isfinite(a).sum(axis=1)
        rows += n
print(rows)
'''

def run(cmd):
    """Runs a child, returns (seconds, peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        out = os.open(os.path.join(work, "child.out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1); os.dup2(devnull, 2)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{cmd} failed with status {status}")
    return dt, usage.ru_maxrss / 1024, open(os.path.join(work, "child.out")).read().strip()

h5py_cmd = [sys.executable, "-c", H5PY, survey]
store = os.path.join(work, "bench-store")
run(h5py_cmd)  # warm the page cache
times = {"h5py": [], "oddity": []}
rss = {"h5py": 0.0, "oddity": 0.0}
rows = 0
for _ in range(3):
    dt, mem, out = run(h5py_cmd)
    rows = int(out)
    times["h5py"].append(dt); rss["h5py"] = max(rss["h5py"], mem)
    shutil.rmtree(store, ignore_errors=True)
    dt, mem, _ = run([oddity, "--store", store, "ingest", survey])
    times["oddity"].append(dt); rss["oddity"] = max(rss["oddity"], mem)

med = {k: statistics.median(v) for k, v in times.items()}
print(f"ingest bench: {len(files)} files, {rows} rows, {nbytes / 2**20:.0f} MiB, {os.cpu_count()} cores")
print(f"{'reader':<8} {'median s':>9} {'rows/s':>10} {'MiB/s':>8} {'peak RSS MiB':>13}")
for k in ("h5py", "oddity"):
    print(f"{k:<8} {med[k]:>9.2f} {rows / med[k]:>10.0f} {nbytes / 2**20 / med[k]:>8.0f} {rss[k]:>13.0f}")
print(f"ratio oddity/h5py read rate: {med['h5py'] / med['oddity']:.2f}x  (goal >= 1.0x)")
