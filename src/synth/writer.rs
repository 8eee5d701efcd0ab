//! Writes planned objects as MultimodalUniverse-style HDF5 tables (one
//! dataset per column, first axis = object) and the ground-truth CSV.
//!
//! Pixel and spectrum arrays are rendered and written in batches so memory
//! stays bounded whatever the survey size. Each file is written under a
//! temporary name and renamed when complete, so an interrupted run never
//! leaves a truncated `*.hdf5` behind for ingest to trip on.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use color_eyre::eyre::{Result, WrapErr, eyre};
use hdf5::types::FixedAscii;
use ndarray::{Array2, ArrayView2, ArrayView4, s};
use rayon::prelude::*;

use super::galaxy::{BANDS, Galaxy, PIXEL_SCALE};
use super::{Stream, image, object_rng, spectrum};

/// Objects rendered per write: ~42 MB of 64×64 cutouts (two such buffers
/// in flight), ~40 MB of spectra.
pub const BATCH: usize = 512;

/// Writes a 1-D column.
fn column<T: hdf5::H5Type>(file: &hdf5::File, name: &str, data: &[T]) -> Result<()> {
    file.new_dataset_builder().with_data(data).create(name).wrap_err_with(|| format!("dataset {name}"))?;
    Ok(())
}

fn column_2d<T: hdf5::H5Type>(file: &hdf5::File, name: &str, data: ArrayView2<T>) -> Result<()> {
    file.new_dataset_builder().with_data(data).create(name).wrap_err_with(|| format!("dataset {name}"))?;
    Ok(())
}

fn ascii<const N: usize>(s: &str) -> Result<FixedAscii<N>> {
    FixedAscii::<N>::from_ascii(s.as_bytes()).map_err(|e| eyre!("{s:?} as a fixed-length string: {e}"))
}

/// Creates the file under a temporary name, fills it, then renames it.
fn atomically(path: &Path, fill: impl FnOnce(&hdf5::File) -> Result<()>) -> Result<()> {
    let dir = path.parent().ok_or_else(|| eyre!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("hdf5.partial");
    let result = (|| -> Result<()> {
        // No object timestamps (the root group's included), so the same
        // survey gives byte-identical files.
        let file = hdf5::File::with_options().with_fcpl(|p| p.obj_track_times(false)).create(&tmp)?;
        fill(&file)?;
        file.close()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.wrap_err_with(|| format!("writing {}", path.display()))
}

/// Writes HSC-like image files. Owns its batch buffers so they are
/// allocated (and page-faulted in) once per survey, not once per file.
pub struct ImageWriter {
    size: usize,
    seed: u64,
    /// Double buffering: one batch is written while the next renders.
    front: Vec<f32>,
    back: Vec<f32>,
}

impl ImageWriter {
    pub fn new(size: usize, seed: u64) -> Self {
        Self { size, seed, front: Vec::new(), back: Vec::new() }
    }

    /// Writes one file holding `rows` (indices into `gals`).
    pub fn write(
        &mut self,
        path: &Path,
        gals: &[Galaxy],
        rows: &[usize],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let (size, seed) = (self.size, self.seed);
        let per = 5 * size * size;
        let n = rows.len();
        for buf in [&mut self.front, &mut self.back] {
            if buf.len() < BATCH.min(n) * per {
                buf.resize(BATCH.min(n) * per, 0.0);
            }
        }
        let (front, back) = (&mut self.front, &mut self.back);
        atomically(path, |file| {
            let g = |k: usize| &gals[rows[k]];
            column(file, "object_id", &(0..n).map(|k| g(k).object_id).collect::<Vec<i64>>())?;
            column(file, "ra", &(0..n).map(|k| g(k).ra).collect::<Vec<f64>>())?;
            column(file, "dec", &(0..n).map(|k| g(k).dec).collect::<Vec<f64>>())?;
            column(file, "healpix", &(0..n).map(|k| g(k).healpix as i64).collect::<Vec<i64>>())?;
            let bands: Vec<FixedAscii<8>> = BANDS.iter().map(|b| ascii(b)).collect::<Result<_>>()?;
            let band_rows = Array2::from_shape_fn((n, 5), |(_, b)| bands[b]);
            column_2d(file, "image_band", band_rows.view())?;
            let psf = Array2::from_shape_fn((n, 5), |(k, b)| g(k).psf_fwhm[b]);
            column_2d(file, "image_psf_fwhm", psf.view())?;
            column_2d(file, "image_scale", Array2::from_elem((n, 5), PIXEL_SCALE as f32).view())?;
            for (b, name) in ["g", "r", "i", "z", "y"].iter().enumerate() {
                column(file, &format!("{name}_cmodel_mag"), &(0..n).map(|k| g(k).mags[b]).collect::<Vec<f32>>())?;
            }
            column(file, "i_extendedness_value", &(0..n).map(|k| g(k).extendedness).collect::<Vec<f32>>())?;
            column(file, "i_sdssshape_shape11", &(0..n).map(|k| g(k).shape11).collect::<Vec<f32>>())?;

            let ds = file.new_dataset::<f32>().shape((n, 5, size, size)).create("image_array")?;
            let mut pending: Option<(usize, usize)> = None; // (first row, rows) held in `back`
            let batches = (0..n).step_by(BATCH).map(|s| (s, &rows[s..(s + BATCH).min(n)]));
            for (start, chunk) in batches.chain(std::iter::once((n, &rows[..0]))) {
                let write = || -> Result<()> {
                    if let Some((first, len)) = pending {
                        let view = ArrayView4::from_shape((len, 5, size, size), &back[..len * per])?;
                        ds.write_slice(view, s![first..first + len, .., .., ..])?;
                        progress(len as u64);
                    }
                    Ok(())
                };
                // Each object has its own noise stream: rayon's scheduling
                // cannot change a pixel.
                let render = || {
                    front[..chunk.len() * per].par_chunks_mut(per).zip(chunk.par_iter()).for_each(|(out, &i)| {
                        image::render(&gals[i], size, &mut object_rng(seed, i, Stream::Image), out);
                    });
                };
                rayon::join(write, render).0?;
                pending = (!chunk.is_empty()).then_some((start, chunk.len()));
                std::mem::swap(front, back);
            }
            Ok(())
        })
    }
}

/// Most pixels a padded file's spectra lose at the blue start / red end
/// (each row its own), made up with zero padding at the end.
pub const MAX_SKIP: usize = 20;
pub const MAX_CUT: usize = 60;

/// Writes SDSS-like spectrum files, reusing its batch buffers across files.
pub struct SpectrumWriter {
    seed: u64,
    lambda_rows: Vec<f32>,
    flux: Vec<f32>,
    ivar: Vec<f32>,
    lsf: Vec<f32>,
    mask: Vec<i32>,
}

impl SpectrumWriter {
    pub fn new(seed: u64) -> Self {
        Self { seed, lambda_rows: Vec::new(), flux: Vec::new(), ivar: Vec::new(), lsf: Vec::new(), mask: Vec::new() }
    }

    /// Writes one file holding the spectra of `rows` (indices into `gals`).
    /// In a `padded` file, as in MultimodalUniverse's, every spectrum keeps
    /// its own stretch of the grid (up to [`MAX_SKIP`] pixels fewer at the
    /// blue start, [`MAX_CUT`] at the red end) and is padded at the end to the
    /// common length with zeros: wavelength, flux, ivar, mask and LSF 0.
    pub fn write(&mut self, path: &Path, gals: &[Galaxy], rows: &[usize], padded: bool) -> Result<()> {
        let n = rows.len();
        let l = spectrum::n_pixels();
        let cap = BATCH.min(n) * l;
        if self.flux.len() < cap {
            self.lambda_rows.resize(cap, 0.0);
            self.flux.resize(cap, 0.0);
            self.ivar.resize(cap, 0.0);
            self.lsf.resize(cap, 0.0);
            self.mask.resize(cap, 0);
        }
        let Self { seed, lambda_rows, flux, ivar, lsf, mask } = self;
        let seed = *seed;
        atomically(path, |file| {
            let sp = |k: usize| gals[rows[k]].spectrum.as_ref().expect("row without a spectrum");
            let ids: Vec<FixedAscii<16>> = (0..n).map(|k| ascii(&sp(k).id())).collect::<Result<_>>()?;
            column(file, "object_id", &ids)?;
            column(file, "ra", &(0..n).map(|k| sp(k).ra).collect::<Vec<f64>>())?;
            column(file, "dec", &(0..n).map(|k| sp(k).dec).collect::<Vec<f64>>())?;
            column(file, "healpix", &(0..n).map(|k| sp(k).healpix as i64).collect::<Vec<i64>>())?;
            column(file, "Z", &(0..n).map(|k| sp(k).z_measured as f32).collect::<Vec<f32>>())?;
            column(file, "Z_ERR", &(0..n).map(|k| sp(k).z_err as f32).collect::<Vec<f32>>())?;

            let create = |name: &str| file.new_dataset::<f32>().shape((n, l)).create(name);
            let (ds_lambda, ds_flux, ds_ivar, ds_lsf) = (
                create("spectrum_lambda")?,
                create("spectrum_flux")?,
                create("spectrum_ivar")?,
                create("spectrum_lsf_sigma")?,
            );
            let ds_mask = file.new_dataset::<i32>().shape((n, l)).create("spectrum_mask")?;

            for (start, chunk) in (0..n).step_by(BATCH).map(|s| (s, &rows[s..(s + BATCH).min(n)])) {
                let m = chunk.len() * l;
                let (lam, flux, ivar, lsf, mask) =
                    (&mut lambda_rows[..m], &mut flux[..m], &mut ivar[..m], &mut lsf[..m], &mut mask[..m]);
                lam.par_chunks_mut(l)
                    .zip(flux.par_chunks_mut(l))
                    .zip(ivar.par_chunks_mut(l))
                    .zip(lsf.par_chunks_mut(l))
                    .zip(mask.par_chunks_mut(l))
                    .zip(chunk.par_iter())
                    .for_each(|(((((la, f), iv), ls), mk), &i)| {
                        let plan = gals[i].spectrum.as_ref().expect("row without a spectrum");
                        let mut rng = object_rng(seed, i, Stream::Spectrum);
                        spectrum::render(plan, &mut rng, f, iv, mk, ls);
                        la.iter_mut().enumerate().for_each(|(k, v)| *v = spectrum::wavelength(k) as f32);
                        if padded {
                            use rand::Rng;
                            let (skip, cut) = (rng.random_range(0..=MAX_SKIP), rng.random_range(0..=MAX_CUT));
                            let keep = l - skip - cut;
                            la.copy_within(skip..skip + keep, 0);
                            f.copy_within(skip..skip + keep, 0);
                            iv.copy_within(skip..skip + keep, 0);
                            ls.copy_within(skip..skip + keep, 0);
                            mk.copy_within(skip..skip + keep, 0);
                            for a in [&mut la[keep..], &mut f[keep..], &mut iv[keep..], &mut ls[keep..]] {
                                a.fill(0.0);
                            }
                            mk[keep..].fill(0);
                        }
                    });
                let sel = s![start..start + chunk.len(), ..];
                let shape = (chunk.len(), l);
                ds_lambda.write_slice(ArrayView2::from_shape(shape, &*lam)?, sel)?;
                ds_flux.write_slice(ArrayView2::from_shape(shape, &*flux)?, sel)?;
                ds_ivar.write_slice(ArrayView2::from_shape(shape, &*ivar)?, sel)?;
                ds_lsf.write_slice(ArrayView2::from_shape(shape, &*lsf)?, sel)?;
                ds_mask.write_slice(ArrayView2::from_shape(shape, &*mask)?, sel)?;
            }
            Ok(())
        })
    }
}

/// Columns of `truth.csv`: the true narrow-line fluxes follow the class.
pub const TRUTH_HEADER: &str = "object_id,spec_id,kind,interesting,bpt_class,z,\
ha_flux,nii_6585_flux,hb_flux,oiii_5008_flux,oii_3728_flux,sii_6718_flux,sii_6733_flux,hb_abs_ew";

/// Writes `truth.csv`: one row per image object, in object order.
pub fn write_truth(path: &Path, gals: &[Galaxy]) -> Result<()> {
    let tmp = path.with_extension("csv.partial");
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(fs::File::create(&tmp)?);
        writeln!(w, "{TRUTH_HEADER}")?;
        for g in gals {
            let spec_id = g.spectrum.as_ref().map(|s| s.id()).unwrap_or_default();
            let bpt = g.bpt_class().map_or("none", |c| c.as_str());
            // Fluxes in the spectrum's units (1e-17 erg/s/cm²); empty without one.
            let fluxes = match &g.spectrum {
                Some(sp) => {
                    let f: Vec<String> = sp.true_fluxes().iter().map(|f| format!("{f:.5}")).collect();
                    format!("{},{:.3}", f.join(","), sp.balmer_absorption_ew("Hβ"))
                }
                None => ",".repeat(7),
            };
            writeln!(
                w,
                "{},{},{},{},{},{:.5},{fluxes}",
                g.object_id,
                spec_id,
                g.kind.as_str(),
                u8::from(g.kind.interesting()),
                bpt,
                g.z
            )?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().wrap_err_with(|| format!("writing {}", path.display()))
}

/// Removes the `healpix=*/001-of-001.hdf5` files (and emptied cell
/// directories) a previous run left in a sample directory, so a smaller or
/// re-seeded survey does not leave stale cells behind. Nothing else is touched.
pub fn clear_sample(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let cell: PathBuf = entry?.path();
        let is_cell = cell.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("healpix="));
        if !is_cell || !cell.is_dir() {
            continue;
        }
        for name in ["001-of-001.hdf5", "001-of-001.hdf5.partial"] {
            let f = cell.join(name);
            if f.exists() {
                fs::remove_file(&f).wrap_err_with(|| format!("removing stale {}", f.display()))?;
            }
        }
        let _ = fs::remove_dir(&cell); // only succeeds if now empty
    }
    Ok(())
}
