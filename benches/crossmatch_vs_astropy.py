"""Cross-match bench: astropy vs oddity, same positions, same run.

1M x 1M positions over the whole sky: half of catalogue b are catalogue a's
points moved by up to 1.5" (so about a third land within 1"), the rest random.
astropy: SkyCoord.match_to_catalog_sky + separation cut (its documented way);
oddity: sky::crossmatch in Nearest mode (the same definition). Both timed
after loading, peak RSS of each child process reported, matches compared.
"""
import os, subprocess, sys, time
import numpy as np

target_bench, work = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
radius = 1.0
os.makedirs(work, exist_ok=True)
rng = np.random.default_rng(1)

def sphere(k):
    ra = rng.uniform(0, 360, k)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, k)))
    return ra, dec

a_ra, a_dec = sphere(n)
half = n // 2
off = rng.uniform(-1.5, 1.5, (2, half)) / 3600.0
b_dec1 = np.clip(a_dec[:half] + off[1], -90, 90)
b_ra1 = (a_ra[:half] + off[0] / np.maximum(np.cos(np.radians(a_dec[:half])), 1e-6)) % 360
b_ra2, b_dec2 = sphere(n - half)
b_ra, b_dec = np.concatenate([b_ra1, b_ra2]), np.concatenate([b_dec1, b_dec2])
perm = rng.permutation(n)
b_ra, b_dec = b_ra[perm], b_dec[perm]
for name, arr in [("a_ra", a_ra), ("a_dec", a_dec), ("b_ra", b_ra), ("b_dec", b_dec)]:
    arr.astype("<f8").tofile(os.path.join(work, name + ".bin"))

ASTROPY = r'''
import sys, time, resource, numpy as np
from astropy.coordinates import SkyCoord
import astropy.units as u
w, radius = sys.argv[1], float(sys.argv[2])
ld = lambda n: np.fromfile(f"{w}/{n}.bin", dtype="<f8")
a = SkyCoord(ld("a_ra") * u.deg, ld("a_dec") * u.deg)
b = SkyCoord(ld("b_ra") * u.deg, ld("b_dec") * u.deg)
t = time.perf_counter()
idx, sep, _ = a.match_to_catalog_sky(b)
ok = sep.arcsec <= radius
out = np.where(ok, idx, -1).astype("<i8")
dt = time.perf_counter() - t
out.tofile(f"{w}/astropy_idx.bin")
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"astropy_seconds={dt:.3f} astropy_rss_mib={rss:.0f} matches={int(ok.sum())}")
'''

def kv(line):
    return dict(p.split("=") for p in line.split())

env = dict(os.environ)
for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    env.pop(k, None)
ast = kv(subprocess.run([sys.executable, "-c", ASTROPY, work, str(radius)], check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
odd = kv(subprocess.run([target_bench, work, str(radius)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
ta, to = float(ast["astropy_seconds"]), float(odd["oddity_seconds"])
print(f"cross-match bench: {n:,} x {n:,} positions, radius {radius}\", {os.cpu_count()} cores")
print(f"{'':<8} {'seconds':>8} {'peak RSS MiB':>13} {'matches':>9}")
print(f"{'astropy':<8} {ta:>8.3f} {float(ast['astropy_rss_mib']):>13.0f} {int(ast['matches']):>9}")
print(f"{'oddity':<8} {to:>8.3f} {float(odd['oddity_rss_mib']):>13.0f} {int(odd['matches']):>9}")
print(f"speed-up oddity vs astropy: {ta / to:.1f}x (goal >= 5x); objects whose match differs: {odd['differing']}")
