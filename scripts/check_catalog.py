"""Reads an oddity catalogue back with pandas (Parquet, CSV) and astropy
(FITS) and checks that the three agree. Usage: check_catalog.py CAT.parquet CAT.fits CAT.csv"""
import sys

import numpy as np
import pandas as pd
from astropy.table import Table

pq, fits, csv = sys.argv[1:4]
a = pd.read_parquet(pq)
c = pd.read_csv(csv)
t = Table.read(fits, hdu="CATALOG")
assert len(a) == len(c) == len(t), (len(a), len(c), len(t))
assert list(a.columns) == list(c.columns) == list(t.colnames), "column names differ"
for name in ["ra", "dec", "sep_arcsec", "ha_flux", "g-r", "score"]:
    x, y, z = a[name].to_numpy(float), c[name].to_numpy(float), np.asarray(t[name], dtype=float)
    assert np.allclose(x, y, equal_nan=True, rtol=1e-6), name
    assert np.allclose(x, z, equal_nan=True, rtol=1e-6), name
assert (a["object_id"].astype(str).to_numpy() == np.char.strip(np.asarray(t["object_id"]).astype(str))).all()
rank = np.ma.filled(t["rank"].astype(float), np.nan) if np.ma.isMaskedArray(t["rank"]) else np.asarray(t["rank"], float)
rank[rank < -1e18] = np.nan
assert np.allclose(a["rank"].to_numpy(float), rank, equal_nan=True)
assert str(t["ra"].unit) == "deg" and str(t["sep_arcsec"].unit) == "arcsec"
print(f"pandas/pyarrow and astropy read {len(a)} rows x {len(a.columns)} columns; Parquet, FITS and CSV agree")
