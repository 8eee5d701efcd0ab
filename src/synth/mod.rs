//! A realistic, seeded, deterministic synthetic survey in the MultimodalUniverse
//! HDF5 layout: HSC-like 5-band cutouts, SDSS-like spectra for a subset, a
//! sprinkling of anomalies, and a ground-truth table to evaluate against.
//!
//! ```text
//! out/hsc/pdr3_synth/healpix=N/001-of-001.hdf5   images, by image position
//! out/sdss/synth/healpix=N/001-of-001.hdf5       spectra, by fibre position
//! out/truth.csv                                  ground truth (never ingested)
//! ```
//!
//! Image files (N objects): `object_id` i64 (N), `ra`/`dec` f64 (N, degrees,
//! ra in [0, 360)), `healpix` i64 (N), `image_array` f32 (N, 5, size, size)
//! in nanomaggies, `image_band` fixed ASCII[8] (N, 5) "HSC-G".."HSC-Y",
//! `image_psf_fwhm` f32 (N, 5) arcsec, `image_scale` f32 (N, 5) arcsec/pixel,
//! `{g,r,i,z,y}_cmodel_mag`, `i_extendedness_value`, `i_sdssshape_shape11`
//! f32 (N). NaN marks missing pixels.
//!
//! Spectrum files: `object_id` fixed ASCII[16] (N) "sdss-000001234", `ra`,
//! `dec` f64, `healpix` i64, `spectrum_lambda`/`_flux`/`_ivar`/`_lsf_sigma`
//! f32 (N, L) and `spectrum_mask` i32 (N, L) (vacuum Å; 1e-17 erg/s/cm²/Å;
//! LSF σ in Å; mask ≠ 0 ⇔ ivar = 0), `Z`, `Z_ERR` f32 (N).
//!
//! In every other spectrum file (odd HEALPix cells) each spectrum covers its
//! own stretch of the grid and is padded at the end to the common length
//! with zeros (wavelength, flux, ivar, mask), as MultimodalUniverse's files are.
//!
//! `truth.csv`: `object_id,spec_id,kind,interesting,bpt_class,z`, then the
//! true narrow emission-line fluxes of the spectrum (`ha_flux`,
//! `nii_6585_flux`, `hb_flux`, `oiii_5008_flux`, `oii_3728_flux`,
//! `sii_6718_flux`, `sii_6733_flux`; 1e-17 erg/s/cm², 0 = no emission) and
//! the rest-frame EW of its stellar Hβ absorption (`hb_abs_ew`, Å); one row
//! per image object in object order.
//!
//! Every random number of object i comes from ChaCha8 streams keyed by
//! (seed, i, purpose), so the output does not depend on thread scheduling.

mod bpt;
mod galaxy;
mod image;
mod math;
mod sky;
mod spectrum;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use color_eyre::eyre::{Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use galaxy::{Assignment, Context, Galaxy, Kind};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub n_galaxies: usize,
    /// Cutout side in pixels (0.168"/pixel).
    pub size: usize,
    pub seed: u64,
    /// Fraction of galaxies with a spectrum (brighter ones preferred).
    pub spectrum_fraction: f64,
    /// Fraction of galaxies that are anomalies, dealt evenly across kinds.
    pub anomaly_fraction: f64,
    /// HEALPix nside of the file partitioning (a power of two).
    pub nside: u32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self { n_galaxies: 20_000, size: 64, seed: 42, spectrum_fraction: 0.15, anomaly_fraction: 0.01, nside: 64 }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    pub n_images: usize,
    pub n_spectra: usize,
    pub n_anomalies: usize,
    /// Every HDF5 file written, images then spectra, each sorted by cell.
    pub files: Vec<PathBuf>,
    pub truth: PathBuf,
}

/// Purpose of a per-object random stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Plan = 0,
    Image = 1,
    Spectrum = 2,
    Brightness = 3,
}

/// The random stream of one object for one purpose.
pub(crate) fn object_rng(seed: u64, index: usize, purpose: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((index as u64) << 2) | purpose as u64);
    rng
}

/// The stream for survey-wide decisions (never used by any object).
fn survey_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::MAX);
    rng
}

/// Relative path of a sample's cell file, MMU style.
fn cell_path(sample: &Path, cell: u64) -> PathBuf {
    sample.join(format!("healpix={cell}")).join("001-of-001.hdf5")
}

/// Decides everything about every object (no pixels yet).
pub(crate) fn plan_survey(cfg: &SynthConfig) -> Result<Vec<Galaxy>> {
    let Some(depth) = sky::depth_of(cfg.nside) else {
        bail!("nside must be a power of two (got {})", cfg.nside);
    };
    if cfg.size < 16 {
        bail!("cutout size must be at least 16 pixels (got {})", cfg.size);
    }
    for (name, f) in [("spectrum_fraction", cfg.spectrum_fraction), ("anomaly_fraction", cfg.anomaly_fraction)] {
        if !(0.0..=1.0).contains(&f) {
            bail!("{name} must be within [0, 1] (got {f})");
        }
    }
    let n = cfg.n_galaxies;
    let mut srng = survey_rng(cfg.seed);
    let clusters = galaxy::draw_clusters(&mut srng, (n / 2500).max(1));

    // Anomalies: a random subset, dealt round-robin so every kind appears.
    let n_anomalies = ((n as f64 * cfg.anomaly_fraction).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut srng);
    let mut kinds = vec![Kind::Normal; n];
    for (j, &i) in order.iter().take(n_anomalies).enumerate() {
        kinds[i] = Kind::ANOMALIES[j % Kind::ANOMALIES.len()];
    }

    // Brightness, then spectra for the brightest (with scatter, as fibre
    // targeting is not a hard magnitude cut); AGN anomalies always get one.
    let bright: Vec<(f64, f64)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = object_rng(cfg.seed, i, Stream::Brightness);
            let imag = galaxy::draw_imag(&mut rng);
            let scatter: f64 = StandardNormal.sample(&mut rng);
            (imag, imag + 0.5 * scatter)
        })
        .collect();
    let n_agn = kinds.iter().filter(|k| **k == Kind::Agn).count();
    let n_spec = ((n as f64 * cfg.spectrum_fraction).round() as usize).max(n_agn).min(n);
    let key = |i: usize| {
        if kinds[i] == Kind::Agn { f64::NEG_INFINITY } else { bright[i].1 }
    };
    let mut by_key: Vec<usize> = (0..n).collect();
    by_key.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
    let mut has_spec = vec![false; n];
    by_key.iter().take(n_spec).for_each(|&i| has_spec[i] = true);

    // A handful of spectra sit across a HEALPix border from their image.
    let mut spec_objects: Vec<usize> = (0..n).filter(|&i| has_spec[i]).collect();
    let n_border = if n_spec == 0 { 0 } else { (n_spec / 100).clamp(3, 50).min(n_spec) };
    spec_objects.shuffle(&mut srng);
    let mut border = vec![false; n];
    spec_objects.iter().take(n_border).for_each(|&i| border[i] = true);

    let mut number = 0;
    let assignments: Vec<Assignment> = (0..n)
        .map(|i| Assignment {
            index: i,
            kind: kinds[i],
            imag: bright[i].0,
            spectrum: has_spec[i].then(|| {
                number += 1;
                number
            }),
            border: border[i],
        })
        .collect();
    let ctx = Context { cfg, depth, clusters: &clusters };
    Ok(assignments
        .par_iter()
        .map(|a| galaxy::plan(&ctx, a, &mut object_rng(cfg.seed, a.index, Stream::Plan)))
        .collect())
}

/// Writes a synthetic survey under `out` (see the module docs for the
/// layout). `progress` is called with the number of galaxies written, batch
/// by batch.
pub fn write_survey(out: &Path, cfg: &SynthConfig, progress: &(dyn Fn(u64) + Sync)) -> Result<SynthSummary> {
    let gals = plan_survey(cfg)?;
    let images_dir = out.join("hsc").join("pdr3_synth");
    let spectra_dir = out.join("sdss").join("synth");
    writer::clear_sample(&images_dir)?;
    writer::clear_sample(&spectra_dir)?;

    let mut image_cells: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut spectrum_cells: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for g in &gals {
        image_cells.entry(g.healpix).or_default().push(g.index);
        if let Some(sp) = &g.spectrum {
            spectrum_cells.entry(sp.healpix).or_default().push(g.index);
        }
    }

    let mut files = Vec::with_capacity(image_cells.len() + spectrum_cells.len());
    let mut images = writer::ImageWriter::new(cfg.size, cfg.seed);
    for (&cell, rows) in &image_cells {
        let path = cell_path(&images_dir, cell);
        images.write(&path, &gals, rows, progress)?;
        files.push(path);
    }
    drop(images);
    let mut spectra = writer::SpectrumWriter::new(cfg.seed);
    for (&cell, rows) in &spectrum_cells {
        let path = cell_path(&spectra_dir, cell);
        // Every other cell is padded to a common length, MultimodalUniverse style.
        spectra.write(&path, &gals, rows, cell % 2 == 1)?;
        files.push(path);
    }
    let truth = out.join("truth.csv");
    writer::write_truth(&truth, &gals)?;

    tracing::info!(images = gals.len(), files = files.len(), "synthetic survey written to {}", out.display());
    Ok(SynthSummary {
        n_images: gals.len(),
        n_spectra: spectrum_cells.values().map(Vec::len).sum(),
        n_anomalies: gals.iter().filter(|g| g.kind != Kind::Normal).count(),
        files,
        truth,
    })
}
