//! Emission-line fluxes, equivalent widths, S/N and the BPT class of a 1-D
//! spectrum.
//!
//! # Measurement method
//!
//! Wavelengths are observed vacuum Å, strictly ascending; padding to a
//! common length (wavelength 0, negative or NaN, as MultimodalUniverse
//! writes it) is dropped at either end, and a spectrum with repeated,
//! descending or interior-NaN wavelengths is rejected with a
//! [`LineProblem`]. A line of rest wavelength λ₀ is looked for at λ₀(1+z). A
//! pixel is usable when its flux and ivar are finite, ivar > 0 and (if a
//! mask is given) its mask is 0.
//!
//! Lines are fitted in three complexes by weighted linear least squares:
//!
//! * \[OII\]3727.1+3729.9 (the doublet; reported summed as "\[OII\]3728"),
//!   rest 3670–3785 Å, linear continuum;
//! * Hβ + \[OIII\]4960 + \[OIII\]5008, rest 4760–5080 Å, quadratic continuum;
//! * \[NII\]6550 + Hα + \[NII\]6585 + \[SII\]6718 + \[SII\]6733, rest 6330–6860 Å,
//!   quadratic continuum.
//!
//! The model of a complex is a polynomial continuum plus one unit-flux
//! Gaussian per line at its fixed rest wavelength, all narrow lines sharing
//! one velocity width, and — in the Hβ and Hα complexes — the stellar Balmer
//! absorption trough the emission sits in: a pseudo-Voigt profile at the
//! Balmer line (a Gaussian and a Lorentzian of one FWHM, 8–40 Å rest, with
//! independent amplitudes, each constrained to absorb), fitted jointly with
//! the emission. This is the "joint emission + Balmer-absorption" variant of
//! what the SDSS pipeline and MPA-JHU do with population-synthesis
//! templates: A-star wings are far broader than nebular lines, so the two
//! separate cleanly, and without it the trough eats the emission (Hβ of old
//! galaxies came out at half its flux, or negative). For given non-linear parameters the model is linear in
//! the continuum coefficients and line fluxes, so those come from one
//! weighted least-squares solve whose covariance gives the flux errors (the
//! continuum's uncertainty included). Blended lines (Hα/\[NII\], the \[SII\] and
//! \[OII\] doublets) are thus deblended jointly rather than integrated in
//! windows. The non-linear parameters are searched on grids refined by
//! golden sections on χ²:
//!
//! * the narrow σ (20–450 km/s, instrumental included);
//! * a velocity shift shared by the complex (±200 km/s), kept only if it
//!   lowers χ² by more than [`SHIFT_DELTA_CHI2`]: catalogue redshifts are off
//!   by 10–30 km/s, which at S/N ≳ 200 biases fixed-centre fluxes by many σ,
//!   while a free shift on a faint line would chase noise;
//! * the absorption FWHM (always, in the Balmer complexes);
//! * for the Balmer complexes, one broad Gaussian at Hα / Hβ (σ 700–3500
//!   km/s), kept only if it lowers χ² by more than [`BROAD_DELTA_CHI2`]: a
//!   type-1 AGN's broad-line region then no longer leaks into the narrow
//!   fluxes the BPT diagram needs. Narrow and broad widths are searched
//!   jointly (they correlate).
//!
//! After the model is chosen, continuum pixels (outside every line window)
//! more than 4σ off it (cosmic rays, sky residuals) are dropped once and the
//! parameters refined.
//!
//! A line is reported (`Some`) only if its window, ±[`WINDOW_REST`] Å rest
//! frame around the centre, lies inside the wavelength range and at least half
//! of the window's pixels are usable (a line whose window fails is also left
//! out of the model). `flux_err` is the square root of the flux variance from
//! the least-squares covariance, marginalised over the fitted widths (and
//! shift, when kept) by a Gauss–Newton step (on SDSS-like synthetic spectra
//! the pulls (measured − true)/flux_err have rms 1.0–1.1);
//! `snr = flux / flux_err`; `continuum` is the fitted continuum at the line
//! centre; `ew = flux / continuum / (1+z)` in rest-frame Å (positive for
//! emission, NaN where the continuum is not positive).

mod bpt;
mod complexes;
mod fit;
mod linalg;
mod model;
mod spectrum;
#[cfg(test)]
mod tests;

// The measurements are store records (a line record holds them).
pub use crate::store::{BptClass, LineMeasurement, LineProblem, SpectralLines};

pub use bpt::{bpt_class, bpt_region, kauffmann03, kewley01, schawinski07, unclassifiable_reason, why_unclassifiable};
pub use spectrum::data_span;

use complexes::COMPLEXES;
use spectrum::Spectrum;

/// Speed of light, km/s.
const C_KMS: f64 = 299_792.458;
/// Half-width (rest-frame Å) of the window a line must have mostly usable.
pub const WINDOW_REST: f64 = 7.0;
/// χ² improvement a broad Balmer component needs to be kept (≈5σ for two
/// extra parameters).
pub const BROAD_DELTA_CHI2: f64 = 25.0;
/// Least S/N of each of the four BPT lines for a class to be given.
pub const BPT_MIN_SNR: f32 = 3.0;

/// Narrow-line σ search range (km/s, intrinsic + instrumental).
const NARROW_KMS: (f64, f64) = (20.0, 450.0);
const NARROW_GRID: usize = 14;
/// Shared velocity shift search range (±km/s) and grid points.
const SHIFT_KMS: f64 = 200.0;
const SHIFT_GRID: usize = 17;
/// χ² improvement a velocity shift needs to be kept (3σ for one parameter).
pub const SHIFT_DELTA_CHI2: f64 = 9.0;
/// Broad-line σ search range (km/s).
const BROAD_KMS: (f64, f64) = (700.0, 3500.0);
const BROAD_GRID: usize = 8;
const GOLDEN_ITERS: usize = 12;
/// Stellar Balmer absorption: rest-frame FWHM search range (Å), grid
/// points and starting value.
const ABSORPTION_FWHM: (f64, f64) = (8.0, 40.0);
const ABSORPTION_GRID: usize = 7;
const ABSORPTION_START: f64 = 15.0;
/// Least ratio of the absorption's Gaussian σ to the narrow lines' σ.
const MIN_ABSORPTION_TO_NARROW: f64 = 2.0;
/// Residual (in σ) beyond which a continuum pixel is clipped.
const CLIP_SIGMA: f64 = 4.0;
/// Most parameters of any complex: 3 continuum + 5 narrow + 1 broad + 2
/// absorption.
const MAXP: usize = 11;

/// Measures the emission lines of one spectrum (see the module docs for the
/// method). `lambda` is observed vacuum Å, ascending apart from padding at
/// either end ([`data_span`]); `flux`, `ivar` and the optional `mask` have
/// the same length; `z` is the catalogue redshift. When no line at all can
/// be measured, says why.
pub fn measure_lines(
    lambda: &[f32],
    flux: &[f32],
    ivar: &[f32],
    mask: Option<&[i32]>,
    z: Option<f64>,
) -> Result<SpectralLines, LineProblem> {
    let n = lambda.len();
    let Some(z) = z.filter(|z| z.is_finite()) else { return Err(LineProblem::NoRedshift) };
    if z <= -0.5 || z >= 10.0 {
        return Err(LineProblem::BadRedshift(z as f32));
    }
    if flux.len() != n || ivar.len() != n || mask.is_some_and(|m| m.len() != n) {
        let m = mask.map_or(n, <[i32]>::len);
        return Err(LineProblem::LengthMismatch(n as u32, flux.len() as u32, ivar.len() as u32, m as u32));
    }
    let span = data_span(lambda)?;
    let (lambda, flux, ivar) = (&lambda[span.clone()], &flux[span.clone()], &ivar[span.clone()]);
    let mask = mask.map(|m| &m[span]);
    let spec = Spectrum { lambda, flux, ivar, mask, zp1: 1.0 + z };
    if !(0..lambda.len()).any(|i| spec.usable(i)) {
        return Err(LineProblem::NoUsablePixels);
    }
    let mut out = [None; 7];
    for complex in COMPLEXES.iter() {
        spec.measure_complex(complex, &mut out);
    }
    if out.iter().all(Option::is_none) {
        let (lo, hi) = (lambda[0], lambda[lambda.len() - 1]);
        let inside = COMPLEXES.iter().flat_map(|c| c.narrow.iter()).any(|c| {
            c.rest * spec.zp1 - WINDOW_REST * spec.zp1 >= lo as f64
                && c.rest * spec.zp1 + WINDOW_REST * spec.zp1 <= hi as f64
        });
        return Err(if inside {
            LineProblem::LinesMasked
        } else {
            LineProblem::OutOfRange { lambda_min: lo, lambda_max: hi, z: z as f32 }
        });
    }
    let [ha, nii_6585, hb, oiii_5008, oii_3728, sii_6718, sii_6733] = out;
    Ok(SpectralLines { ha, nii_6585, hb, oiii_5008, oii_3728, sii_6718, sii_6733 })
}
