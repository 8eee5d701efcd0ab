//! One spectrum's usable pixels: padding and wavelength-grid checks, line
//! windows, and the measurement of one complex from them.

use super::complexes::{Complex, OII, SLOTS, rest};
use super::fit::Fitter;
use super::model::Pixels;
use super::{LineMeasurement, LineProblem, WINDOW_REST};

/// The pixels of a spectrum that hold data: padding (wavelength zero,
/// negative or NaN, as MultimodalUniverse pads spectra to a common length)
/// is dropped at either end; inside, wavelengths must be finite and strictly
/// ascending.
pub fn data_span(lambda: &[f32]) -> Result<std::ops::Range<usize>, LineProblem> {
    let valid = |l: f32| l.is_finite() && l > 0.0;
    let Some(first) = lambda.iter().position(|&l| valid(l)) else { return Err(LineProblem::NoWavelengths) };
    let last = lambda.iter().rposition(|&l| valid(l)).unwrap_or(first);
    for k in first + 1..=last {
        let (prev, l) = (lambda[k - 1], lambda[k]);
        if !valid(l) {
            return Err(LineProblem::WavelengthGap { pixel: k as u32 });
        }
        if l == prev {
            return Err(LineProblem::RepeatedWavelength { pixel: k as u32, lambda: l });
        }
        if l < prev {
            return Err(LineProblem::DescendingWavelength { pixel: k as u32, lambda: l, previous: prev });
        }
    }
    Ok(first..last + 1)
}

pub(super) struct Spectrum<'a> {
    pub(super) lambda: &'a [f32],
    pub(super) flux: &'a [f32],
    pub(super) ivar: &'a [f32],
    pub(super) mask: Option<&'a [i32]>,
    pub(super) zp1: f64,
}

impl Spectrum<'_> {
    pub(super) fn usable(&self, i: usize) -> bool {
        let (f, w) = (self.flux[i], self.ivar[i]);
        f.is_finite() && w.is_finite() && w > 0.0 && self.mask.is_none_or(|m| m[i] == 0)
    }

    /// Index range of pixels with observed wavelength in [lo, hi].
    pub(super) fn range(&self, lo: f64, hi: f64) -> std::ops::Range<usize> {
        let a = self.lambda.partition_point(|&l| (l as f64) < lo);
        let b = self.lambda.partition_point(|&l| (l as f64) <= hi);
        a..b.max(a)
    }

    /// Whether the window around an observed centre is inside the data and
    /// at least half usable.
    pub(super) fn window_ok(&self, centre: f64) -> bool {
        let half = WINDOW_REST * self.zp1;
        let (first, last) = (self.lambda[0] as f64, self.lambda[self.lambda.len() - 1] as f64);
        if centre - half < first || centre + half > last {
            return false;
        }
        let r = self.range(centre - half, centre + half);
        let total = r.len();
        let usable = r.filter(|&i| self.usable(i)).count();
        total > 0 && 2 * usable >= total
    }

    pub(super) fn measure_complex(&self, cx: &Complex, out: &mut [Option<LineMeasurement>; 7]) {
        let zp1 = self.zp1;
        // Components whose own window is unusable are left out of the model
        // (they would make the normal matrix singular); lines fed by one are
        // not reported.
        let mut narrow = Vec::with_capacity(cx.narrow.len());
        let mut dropped = [false; 7];
        for c in &cx.narrow {
            if self.window_ok(c.rest * zp1) {
                narrow.push(*c);
            } else if let Some(s) = c.slot {
                dropped[s] = true;
            }
        }
        // [OII]: the reported window is the blend's, centred on the table value.
        if cx.narrow.iter().any(|c| c.slot == Some(OII)) && !self.window_ok(rest(SLOTS[OII]) * zp1) {
            dropped[OII] = true;
        }
        if narrow.iter().all(|c| c.slot.is_none_or(|s| dropped[s])) {
            return;
        }

        let r = self.range(cx.region.0 * zp1, cx.region.1 * zp1);
        let (lo, hi) = (cx.region.0 * zp1, cx.region.1 * zp1);
        let mut px = Pixels::default();
        for i in r.filter(|&i| self.usable(i)) {
            let l = self.lambda[i] as f64;
            let in_line = cx.narrow.iter().any(|c| (l - c.rest * zp1).abs() <= WINDOW_REST * zp1);
            px.push(l, self.flux[i] as f64, self.ivar[i] as f64, !in_line);
        }
        let balmer_centre = cx.balmer.filter(|s| !dropped[*s]).map(|s| rest(SLOTS[s]) * zp1);
        let narrow_centres = narrow.iter().map(|c| c.rest * zp1).collect();
        let mut fitter = Fitter::new(px, (lo, hi), narrow_centres, balmer_centre, zp1, cx.degree);
        let Some(fit) = fitter.best_fit() else { return };

        let p0 = cx.degree + 1;
        for slot in 0..7 {
            let comps: Vec<usize> =
                narrow.iter().enumerate().filter(|(_, c)| c.slot == Some(slot)).map(|(k, _)| p0 + k).collect();
            if comps.is_empty() || dropped[slot] {
                continue;
            }
            let flux: f64 = comps.iter().map(|&k| fit.theta[k]).sum();
            let var: f64 =
                comps.iter().flat_map(|&k| comps.iter().map(move |&l| (k, l))).map(|(k, l)| fit.cov[k][l]).sum();
            let err = var.sqrt();
            if !(flux.is_finite() && err > 0.0 && err.is_finite()) {
                continue;
            }
            let continuum = fitter.continuum(&fit.theta, rest(SLOTS[slot]) * zp1);
            let ew = if continuum > 0.0 { flux / continuum / zp1 } else { f64::NAN };
            out[slot] = Some(LineMeasurement {
                flux: flux as f32,
                flux_err: err as f32,
                ew: ew as f32,
                snr: (flux / err) as f32,
                continuum: continuum as f32,
            });
        }
    }
}
