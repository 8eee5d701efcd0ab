"""CNN inference including I/O: PyTorch DataLoader + h5py vs oddity's feed, same run.

Both read every image of the same HDF5 files, normalise each cutout the same
way (per band: border median sky, MAD noise, asinh((x - sky) / 3 noise), NaN
to 0) and score batches of 256 with the same network (benches/cnn_vs_pytorch.py
builds PyTorch's twin of src/learn/net.rs), on the CPU with the same number
of threads: libtorch/torch intra-op threads = THREADS, and THREADS reader
threads (oddity) or DataLoader workers (PyTorch). Each side first makes a
warm-up pass (page cache, allocator), then a timed one; the synchronous
rows read and compute in turn (readers = 0, num_workers = 0).
Usage: infer_vs_pytorch.py BENCH_BIN STORE SURVEY THREADS [tiny|lite0]
"""
import glob, os, subprocess, sys, time
import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnn_vs_pytorch import build  # noqa: E402

BATCH = 256


def normalise(x):
    """x: n x c x h x w float32, normalised in place as src/learn/feed.rs normalise() does."""
    n, c, h, w = x.shape
    mask = np.zeros((h, w), bool)
    mask[:2, :] = mask[-2:, :] = mask[:, :2] = mask[:, -2:] = True
    border = x[:, :, mask]  # n x c x k
    k = border.shape[-1]
    # The same order statistic (element k/2 of the sorted border) as select_nth_unstable.
    sky = np.partition(border, k // 2, axis=-1)[..., k // 2]
    dev = np.abs(border - sky[..., None])
    noise = np.maximum(1.4826 * np.partition(dev, k // 2, axis=-1)[..., k // 2], 1e-6)
    y = np.arcsinh((x - sky[..., None, None]) / (3.0 * noise[..., None, None]))
    return np.where(np.isfinite(y), y, 0.0).astype(np.float32)


class Cutouts(Dataset):
    """One item = BATCH consecutive rows of one file (h5py reads slices, as a notebook would)."""

    def __init__(self, files):
        self.items = []
        for f in files:
            with h5py.File(f, "r") as h:
                n = h["image_array"].shape[0]
            self.items += [(f, s, min(s + BATCH, n)) for s in range(0, n, BATCH)]
        self.open = {}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        f, s, e = self.items[i]
        if f not in self.open:  # one handle per worker process
            self.open[f] = h5py.File(f, "r")
        x = self.open[f]["image_array"][s:e].astype(np.float32)
        return torch.from_numpy(normalise(x))


def bench_torch(files, threads, workers, name):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build(name)
    ds = Cutouts(files)
    rows = []
    for _ in range(2):  # warm-up, timed
        kw = dict(prefetch_factor=2, persistent_workers=False) if workers else {}
        loader = DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers, **kw)
        t = time.perf_counter(); n = 0
        with torch.no_grad():
            for x in loader:
                n += net(x).shape[0]
        rows.append((n, time.perf_counter() - t))
    n, s = rows[-1]
    return n / s, n, sum(p.numel() for p in net.parameters())


if __name__ == "__main__":
    bench_bin, store, survey, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    name = sys.argv[5] if len(sys.argv) > 5 else "tiny"
    files = []
    for f in sorted(glob.glob(os.path.join(survey, "**", "*.hdf5"), recursive=True)):
        with h5py.File(f, "r") as h:
            if "image_array" in h:
                files.append(f)
    load = os.getloadavg()[0]
    ours = {}
    out = subprocess.run([bench_bin, store, str(threads), name], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        kv = dict(p.split("=") for p in line.split())
        ours[kv["mode"]] = (float(kv["images_per_s"]), int(kv["images"]), int(kv["params"]))
    sync_rate, n_sync, params = bench_torch(files, threads, 0, name)
    pool_rate, n_pool, _ = bench_torch(files, threads, threads, name)
    assert params == ours["feed"][2], f"PyTorch {params} vs oddity {ours['feed'][2]} parameters: not the same network"
    mb = sum(os.path.getsize(f) for f in files) / 2**20
    print(f"CNN inference including I/O: {len(files)} HDF5 files, {n_pool} images ({ours['feed'][1]} in the store), "
          f"{mb:.0f} MiB, net {name} ({params} params), batch {BATCH}, {threads} threads, CPU ({os.cpu_count()} cores), "
          f"torch {torch.__version__}, load {load:.1f} before / {os.getloadavg()[0]:.1f} after")
    print(f"{'mode':<34} {'PyTorch img/s':>14} {'oddity img/s':>13} {'ratio':>6}")
    print(f"{'synchronous (read, then compute)':<34} {sync_rate:>14.0f} {ours['synchronous'][0]:>13.0f} "
          f"{ours['synchronous'][0] / sync_rate:>6.2f}")
    print(f"{f'{threads} readers / workers, overlapped':<34} {pool_rate:>14.0f} {ours['feed'][0]:>13.0f} "
          f"{ours['feed'][0] / pool_rate:>6.2f}")
    print("goal: oddity >= 1.0x PyTorch DataLoader + h5py (overlapped row)")
