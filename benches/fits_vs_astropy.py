"""FITS ingest bench: astropy.io.fits vs oddity on the same files, in one run.

Files are written by astropy: N SDSS-like `spec-PLATE-MJD-FIBER.fits`
(primary header, COADD table of 3800 rows: flux, loglam, ivar, and_mask,
or_mask, wdisp, sky, model; SPALL row with 40 columns) and N Legacy-Survey-
like grz cutouts (3 x 128 x 128 float32 cube, TAN WCS, BANDS = 'grz').

astropy reads, per file, what oddity's ingest reads: the spectrum columns and
the object row (id, position, redshift) with the same good-pixel summary, or
the cube with its WCS centre and pixel scale and the same per-band finite
sums. oddity ingests the folder into a fresh store (parses, checks, writes
and flushes sled). Both warm, three runs each alternating, median reported;
peak RSS of each child. Run again at N/4 files: peak RSS must not grow with
the file count.
"""
import os, shutil, statistics, sys, time

import numpy as np
from astropy.io import fits

oddity, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


def make(root, n):
    if os.path.exists(os.path.join(root, "done")):
        return
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "spectra"))
    os.makedirs(os.path.join(root, "cutouts"))
    rng = np.random.default_rng(0)
    npix = 3800
    loglam = (3.5792 + 1e-4 * np.arange(npix)).astype(np.float32)
    for i in range(n):
        ra, dec = 150 + i * 1e-3, 2 + (i % 100) * 1e-3
        prim = fits.PrimaryHDU()
        prim.header.update(PLUG_RA=ra, PLUG_DEC=dec, PLATEID=266, MJD=51630, FIBERID=i % 1000 + 1)
        cols = [fits.Column(name=nm, format=f, array=a) for nm, f, a in [
            ("flux", "E", rng.normal(5, 1, npix).astype(np.float32)),
            ("loglam", "E", loglam),
            ("ivar", "E", np.full(npix, 4, np.float32)),
            ("and_mask", "J", np.zeros(npix, np.int32)),
            ("or_mask", "J", np.zeros(npix, np.int32)),
            ("wdisp", "E", np.ones(npix, np.float32)),
            ("sky", "E", np.ones(npix, np.float32)),
            ("model", "E", np.ones(npix, np.float32)),
        ]]
        coadd = fits.BinTableHDU.from_columns(cols, name="COADD")
        meta = [fits.Column(name="SPECOBJID", format="19A", array=[f"{299489677444933632 + i}"]),
                fits.Column(name="PLUG_RA", format="D", array=[ra]),
                fits.Column(name="PLUG_DEC", format="D", array=[dec]),
                fits.Column(name="Z", format="E", array=[0.1]),
                fits.Column(name="Z_ERR", format="E", array=[1e-4]),
                fits.Column(name="CLASS", format="6A", array=["GALAXY"])]
        meta += [fits.Column(name=f"EXTRA{k}", format="E", array=[float(k)]) for k in range(34)]
        spall = fits.BinTableHDU.from_columns(meta, name="SPALL")
        fits.HDUList([prim, coadd, spall]).writeto(
            os.path.join(root, "spectra", f"spec-0266-51630-{i:05d}.fits"), overwrite=True)
        cube = rng.normal(0, 1, (3, 128, 128)).astype(np.float32)
        h = fits.PrimaryHDU(cube)
        h.header.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=ra, CRVAL2=dec, CRPIX1=64.5, CRPIX2=64.5,
                        CD1_1=-0.262 / 3600, CD1_2=0.0, CD2_1=0.0, CD2_2=0.262 / 3600, BANDS="grz")
        h.writeto(os.path.join(root, "cutouts", f"cutout_{i:05d}.fits"), overwrite=True)
    open(os.path.join(root, "done"), "w").close()


ASTROPY = r'''
import glob, os, sys, warnings
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
warnings.simplefilter("ignore")
n = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "spectra", "*.fits"))):
    with fits.open(f, memmap=False) as h:
        t = h[1].data
        lam = 10.0 ** t["loglam"]; flux = t["flux"]; ivar = t["ivar"]; mask = t["and_mask"]
        good = (ivar > 0) & (mask == 0) & np.isfinite(flux)
        row = h[2].data[0]
        _ = (row["SPECOBJID"], row["PLUG_RA"], row["PLUG_DEC"], row["Z"], row["Z_ERR"], good.sum(), lam[good].min())
        n += 1
for f in sorted(glob.glob(os.path.join(sys.argv[1], "cutouts", "*.fits"))):
    with fits.open(f, memmap=False) as h:
        data = h[0].data
        w = WCS(h[0].header, naxis=2)
        ra, dec = w.pixel_to_world_values((data.shape[2] - 1) / 2, (data.shape[1] - 1) / 2)
        scale = proj_plane_pixel_scales(w).mean() * 3600
        finite = np.isfinite(data)
        _ = (ra, dec, scale, np.where(finite, data, 0).sum(axis=(1, 2)), (~finite).mean())
        n += 1
print(n)
'''


def run(cmd):
    """Runs a child: (seconds, peak RSS MiB, stdout)."""
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


def bench(root):
    store = os.path.join(work, "bench-fits-store")
    ref = [sys.executable, "-c", ASTROPY, root]
    run(ref)  # warm the page cache
    times = {"astropy": [], "oddity": []}
    rss = {"astropy": 0.0, "oddity": 0.0}
    for _ in range(3):
        dt, mem, out = run(ref)
        times["astropy"].append(dt); rss["astropy"] = max(rss["astropy"], mem)
        shutil.rmtree(store, ignore_errors=True)
        dt, mem, _ = run([oddity, "--store", store, "ingest", root])
        times["oddity"].append(dt); rss["oddity"] = max(rss["oddity"], mem)
    return {k: statistics.median(v) for k, v in times.items()}, rss


small = max(n // 4, 1)
for count in (n, small):
    root = os.path.join(work, f"fits-{count}")
    make(root, count)
    files = 2 * count
    nbytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    med, rss = bench(root)
    print(f"FITS ingest bench: {files} files ({count} SDSS spectra + {count} grz 128x128 cutouts), "
          f"{nbytes / 2**20:.0f} MiB, {os.cpu_count()} cores")
    print(f"{'reader':<8} {'median s':>9} {'files/s':>9} {'peak RSS MiB':>13}")
    for k in ("astropy", "oddity"):
        print(f"{k:<8} {med[k]:>9.2f} {files / med[k]:>9.0f} {rss[k]:>13.0f}")
    print(f"ratio oddity/astropy files/s: {med['astropy'] / med['oddity']:.2f}x  (goal >= 2x)")
