//! The fit of one complex: weighted linear least squares for given widths,
//! grid + golden-section search of the widths, shift and broad component,
//! one clipping pass, and the flux covariance marginalised over the widths.

use super::linalg::{cho_inverse_block, cho_solve, cholesky};
use super::model::{Column, Fit, Param, Pixels, Role, Shape, golden};
use super::*;

pub(super) struct Fitter {
    pub(super) px: Pixels,
    /// Continuum polynomial variable t = (λ − mid) / half ∈ [−1, 1], per pixel.
    pub(super) t: Vec<f64>,
    pub(super) t_mid: f64,
    pub(super) t_half: f64,
    /// Observed centres (at the catalogue redshift) of the narrow components.
    pub(super) narrow: Vec<f64>,
    /// Observed centre of the complex's Balmer line (broad emission and
    /// stellar absorption), when it has one and its window is usable.
    pub(super) balmer_centre: Option<f64>,
    pub(super) zp1: f64,
    pub(super) degree: usize,
    /// Shape-independent parts of the normal equations: continuum block,
    /// continuum right-hand side, and Σ w f².
    pub(super) cont_a: [[f64; MAXP]; MAXP],
    pub(super) cont_b: [f64; MAXP],
    pub(super) wff: f64,
    /// Scratch: template values of each component over its pixel range.
    pub(super) g: Vec<f64>,
}

impl Fitter {
    pub(super) fn new(
        px: Pixels,
        region: (f64, f64),
        narrow: Vec<f64>,
        balmer_centre: Option<f64>,
        zp1: f64,
        degree: usize,
    ) -> Self {
        let mut f = Fitter {
            px,
            t: Vec::new(),
            t_mid: 0.5 * (region.0 + region.1),
            t_half: 0.5 * (region.1 - region.0),
            narrow,
            balmer_centre,
            zp1,
            degree,
            cont_a: [[0.0; MAXP]; MAXP],
            cont_b: [0.0; MAXP],
            wff: 0.0,
            g: Vec::new(),
        };
        f.prepare();
        f
    }

    /// Recomputes the shape-independent sums (after the pixel set changed).
    pub(super) fn prepare(&mut self) {
        let nc = self.degree + 1;
        self.t = self.px.lambda.iter().map(|l| (l - self.t_mid) / self.t_half).collect();
        (self.cont_a, self.cont_b, self.wff) = ([[0.0; MAXP]; MAXP], [0.0; MAXP], 0.0);
        for i in 0..self.px.len() {
            let (w, f) = (self.px.ivar[i], self.px.flux[i]);
            let mut tj = 1.0;
            for j in 0..nc {
                self.cont_b[j] += w * f * tj;
                let mut tk = tj * tj; // t^(j+k) from k = j
                for k in j..nc {
                    self.cont_a[j][k] += w * tk;
                    tk *= self.t[i];
                }
                tj *= self.t[i];
            }
            self.wff += w * f * f;
        }
    }

    /// Line-profile columns of a shape: the narrow lines, then the broad
    /// Balmer line, then the absorption's Gaussian and Lorentzian halves.
    pub(super) fn columns(&self, s: Shape) -> Vec<Column> {
        let doppler = 1.0 + s.shift / C_KMS;
        let col = |lorentz, c0: f64, width, role| Column { lorentz, centre: c0 * doppler, width, role, centre0: c0 };
        let mut out: Vec<Column> =
            self.narrow.iter().map(|&c| col(false, c, c * doppler * s.narrow / C_KMS, Role::Narrow)).collect();
        if let (Some(sb), Some(c)) = (s.broad, self.balmer_centre) {
            out.push(col(false, c, c * doppler * sb / C_KMS, Role::Broad));
        }
        if let (Some(fwhm), Some(c)) = (s.absorption, self.balmer_centre) {
            let fwhm = fwhm * self.zp1;
            out.push(col(false, c, fwhm / (8.0 * std::f64::consts::LN_2).sqrt(), Role::Absorption));
            out.push(col(true, c, 0.5 * fwhm, Role::Absorption));
        }
        out
    }

    pub(super) fn continuum(&self, theta: &[f64; MAXP], l: f64) -> f64 {
        let t = (l - self.t_mid) / self.t_half;
        (0..=self.degree).rev().fold(0.0, |acc, k| acc * t + theta[k])
    }

    /// Model flux density at pixel i.
    pub(super) fn model(&self, s: Shape, theta: &[f64; MAXP], i: usize) -> f64 {
        let l = self.px.lambda[i];
        let nc = self.degree + 1;
        let lines: f64 = self
            .columns(s)
            .iter()
            .enumerate()
            .filter(|(_, c)| (l - c.centre).abs() <= c.reach())
            .map(|(k, c)| theta[nc + k] * c.eval(l))
            .sum();
        self.continuum(theta, l) + lines
    }

    /// Weighted least squares for a fixed shape; None if under-determined.
    /// Each Gaussian only touches the pixels within ±6σ of it, so a narrow
    /// line costs a few dozen pixels whatever the region's size. The stellar
    /// absorption's amplitudes are constrained to absorb: a half that comes
    /// out as emission is fixed at zero and the rest solved again.
    pub(super) fn fit(&mut self, s: Shape, with_cov: bool) -> Option<Fit> {
        let nc = self.degree + 1;
        let cols = self.columns(s);
        let np = nc + cols.len();
        let n = self.px.len();
        if n < np + 3 {
            return None;
        }
        // A trough barely wider than the emission would trade flux with it
        // without bound (huge emission in a huge trough): not a model.
        if let (Some(fwhm), Some(c)) = (s.absorption, self.balmer_centre) {
            let narrow_sigma = c * s.narrow / C_KMS;
            if fwhm * self.zp1 / (8.0 * std::f64::consts::LN_2).sqrt() < MIN_ABSORPTION_TO_NARROW * narrow_sigma {
                return None;
            }
        }
        let mut a = self.cont_a;
        let mut b = self.cont_b;
        // Pixel range and offset into `g` of each component.
        let mut ranges = [(0usize, 0usize, 0usize); MAXP];
        self.g.clear();
        for (k, c) in cols.iter().enumerate() {
            let lo = self.px.lambda.partition_point(|&l| l < c.centre - c.reach());
            let hi = self.px.lambda.partition_point(|&l| l <= c.centre + c.reach());
            ranges[k] = (lo, hi, self.g.len());
            self.g.extend(self.px.lambda[lo..hi].iter().map(|&l| c.eval(l)));
        }
        for k in 0..cols.len() {
            let (lo, hi, off) = ranges[k];
            let p = nc + k;
            for i in lo..hi {
                let wg = self.px.ivar[i] * self.g[off + i - lo];
                b[p] += wg * self.px.flux[i];
                a[p][p] += wg * self.g[off + i - lo];
                let mut tj = 1.0;
                for row in a.iter_mut().take(nc) {
                    row[p] += wg * tj;
                    tj *= self.t[i];
                }
            }
            for l in k + 1..cols.len() {
                let (lo2, hi2, off2) = ranges[l];
                let mut sum = 0.0;
                for i in lo.max(lo2)..hi.min(hi2) {
                    sum += self.px.ivar[i] * self.g[off + i - lo] * self.g[off2 + i - lo2];
                }
                a[p][nc + l] += sum;
            }
        }
        let absorption: Vec<usize> =
            cols.iter().enumerate().filter(|(_, c)| c.role == Role::Absorption).map(|(k, _)| nc + k).collect();
        let mut fixed = [false; MAXP];
        let (l, theta) = loop {
            let l = cholesky(&a, np)?;
            let theta = cho_solve(&l, &b, np);
            let emitting: Vec<usize> = absorption.iter().copied().filter(|&p| !fixed[p] && theta[p] > 0.0).collect();
            if emitting.is_empty() {
                break (l, theta);
            }
            // Fix at zero: the parameter decouples (unit diagonal, zero
            // right-hand side) and contributes nothing to θ·b below.
            for p in emitting {
                fixed[p] = true;
                for (j, row) in a.iter_mut().enumerate().take(np) {
                    row[p] = 0.0;
                    if j == p {
                        row.iter_mut().for_each(|v| *v = 0.0);
                    }
                }
                a[p][p] = 1.0;
                b[p] = 0.0;
            }
        };
        // At the least-squares solution χ² = Σwf² − θ·b.
        let chi2 = (self.wff - theta.iter().zip(&b).map(|(t, b)| t * b).sum::<f64>()).max(0.0);
        let cov = if with_cov { cho_inverse_block(&l, np, np) } else { [[0.0; MAXP]; MAXP] };
        Some(Fit { theta, cov, chi2 })
    }

    pub(super) fn chi2(&mut self, s: Shape) -> f64 {
        self.fit(s, false).map_or(f64::INFINITY, |f| f.chi2)
    }

    /// Golden-section search of one parameter over [x − half, x + half]
    /// (search coordinates, clamped to its range); keeps the start if better.
    pub(super) fn golden_on(&mut self, s: Shape, p: Param, half: f64) -> (Shape, f64) {
        let (lo, hi, _, _) = p.range();
        let x0 = p.coord(p.get(&s));
        let (a, b) = ((x0 - half).max(p.coord(lo)), (x0 + half).min(p.coord(hi)));
        let (x, f) = golden(|x| self.chi2(p.with(s, p.value(x))), a, b);
        let f0 = self.chi2(s);
        if f < f0 { (p.with(s, p.value(x)), f) } else { (s, f0) }
    }

    /// Best point of a grid over the parameter's whole range.
    pub(super) fn grid(&mut self, s: Shape, p: Param) -> (Shape, f64) {
        let (lo, hi, n, _) = p.range();
        let (x_lo, step) = (p.coord(lo), p.step());
        let mut best = (s, f64::INFINITY);
        for i in 0..n {
            let t = p.with(s, p.value(x_lo + step * i as f64).clamp(lo, hi));
            let f = self.chi2(t);
            if f < best.1 {
                best = (t, f);
            }
        }
        best
    }

    /// Grid over the parameter's whole range, then golden section between
    /// the best point's neighbours.
    pub(super) fn scan(&mut self, s: Shape, p: Param) -> (Shape, f64) {
        let best = self.grid(s, p);
        if best.1.is_finite() { self.golden_on(best.0, p, p.step()) } else { best }
    }

    /// Local refinement of the absorption width, when the model has one.
    pub(super) fn refine_absorption(&mut self, s: Shape) -> Shape {
        if s.absorption.is_some() { self.golden_on(s, Param::Absorption, Param::Absorption.step()).0 } else { s }
    }

    /// Chooses the model's shape: narrow width and absorption width (always
    /// in a Balmer complex: its amplitude is what says how much absorption
    /// there is); a velocity shift only if it lowers χ² by more than
    /// [`SHIFT_DELTA_CHI2`] (the catalogue redshift is trusted otherwise, so
    /// noise is not chased); a broad component only if it lowers χ² by more
    /// than [`BROAD_DELTA_CHI2`].
    pub(super) fn choose_shape(&mut self) -> Option<Shape> {
        let absorption = self.balmer_centre.map(|_| ABSORPTION_START);
        let start = Shape { narrow: 100.0, shift: 0.0, broad: None, absorption };
        let (mut s, mut chi) = self.scan(start, Param::Narrow);
        if !chi.is_finite() {
            return None;
        }
        if s.absorption.is_some() {
            // Emission and absorption widths barely correlate (a few Å
            // against tens): one alternation settles them.
            (s, _) = self.scan(s, Param::Absorption);
            (s, chi) = self.golden_on(s, Param::Narrow, Param::Narrow.step());
        }
        let (t, _) = self.scan(s, Param::Shift);
        let (t, _) = self.golden_on(t, Param::Narrow, Param::Narrow.step());
        let (t, chi_t) = self.golden_on(t, Param::Shift, 0.5 * Param::Shift.step());
        if chi - chi_t > SHIFT_DELTA_CHI2 {
            (s, chi) = (t, chi_t);
        }
        if self.balmer_centre.is_some() {
            let shifted = s.shift != 0.0;
            // Narrow and broad widths are correlated: grid both, then
            // alternate local searches until χ² settles.
            let (lo, hi, n, _) = Param::Broad.range();
            let mut b = (s, f64::INFINITY);
            for i in 0..n {
                let sb = Param::Broad.value(Param::Broad.coord(lo) + Param::Broad.step() * i as f64).min(hi);
                let t = self.grid(Param::Broad.with(s, sb), Param::Narrow);
                if t.1 < b.1 {
                    b = t;
                }
            }
            let (mut b, mut chi_b) = b;
            for _ in 0..4 {
                let before = chi_b;
                (b, _) = self.golden_on(b, Param::Broad, Param::Broad.step());
                b = self.refine_absorption(b);
                (b, chi_b) = self.golden_on(b, Param::Narrow, Param::Narrow.step());
                if shifted {
                    (b, chi_b) = self.golden_on(b, Param::Shift, 0.5 * Param::Shift.step());
                }
                let gain = before - chi_b;
                if gain.is_nan() || gain <= 0.1 {
                    break;
                }
            }
            if chi - chi_b > BROAD_DELTA_CHI2 {
                s = b;
            }
        }
        Some(s)
    }

    /// Chooses the shape, drops continuum outliers against that model once,
    /// refines the shape and returns the final fit.
    pub(super) fn best_fit(&mut self) -> Option<Fit> {
        let mut s = self.choose_shape()?;
        let fit = self.finish(s)?;
        let keep: Vec<bool> = (0..self.px.len())
            .map(|i| {
                let z = (self.px.flux[i] - self.model(s, &fit.theta, i)) * self.px.ivar[i].sqrt();
                !self.px.continuum[i] || z.abs() <= CLIP_SIGMA
            })
            .collect();
        if keep.iter().all(|&k| k) {
            return Some(fit);
        }
        let old = std::mem::take(&mut self.px);
        for i in (0..keep.len()).filter(|&i| keep[i]) {
            self.px.push(old.lambda[i], old.flux[i], old.ivar[i], old.continuum[i]);
        }
        self.prepare();
        (s, _) = self.golden_on(s, Param::Narrow, Param::Narrow.step());
        s = self.refine_absorption(s);
        if s.shift != 0.0 {
            (s, _) = self.golden_on(s, Param::Shift, 0.5 * Param::Shift.step());
        }
        if s.broad.is_some() {
            (s, _) = self.golden_on(s, Param::Broad, Param::Broad.step());
        }
        self.finish(s)
    }

    /// The fit for the final shape, with the covariance of the linear
    /// parameters marginalised over the fitted non-linear ones (Gauss–Newton:
    /// the Jacobian gains one column per width, and one for the shift if it
    /// was fitted), so the widths' uncertainty is in the flux errors.
    pub(super) fn finish(&mut self, s: Shape) -> Option<Fit> {
        let mut fit = self.fit(s, true)?;
        if let Some(cov) = self.marginal_cov(s, &fit.theta) {
            fit.cov = cov;
        }
        Some(fit)
    }

    pub(super) fn marginal_cov(&self, s: Shape, theta: &[f64; MAXP]) -> Option<[[f64; MAXP]; MAXP]> {
        const M: usize = MAXP + 4;
        let nc = self.degree + 1;
        let cols = self.columns(s);
        let np = nc + cols.len();
        // Absorption halves fixed at zero by the constraint are not free.
        let free = |k: usize| cols[k].role != Role::Absorption || theta[nc + k] != 0.0;
        let any_abs = (0..cols.len()).any(|k| cols[k].role == Role::Absorption && free(k));
        // Extra columns: narrow width, then broad width, absorption width, shift.
        let mut next = np;
        let mut extra = |on: bool| {
            on.then(|| {
                next += 1;
                next - 1
            })
        };
        let w_narrow = extra(true);
        let w_broad = extra(s.broad.is_some() && self.balmer_centre.is_some());
        let w_abs = extra(any_abs);
        let w_shift = extra(s.shift != 0.0);
        let nq = next;
        let mut a = [[0.0; M]; M];
        let mut row = [0.0; M];
        for i in 0..self.px.len() {
            let l = self.px.lambda[i];
            row.fill(0.0);
            let t = self.t[i];
            let mut tk = 1.0;
            for v in row.iter_mut().take(nc) {
                *v = tk;
                tk *= t;
            }
            for (k, c) in cols.iter().enumerate() {
                if !free(k) || (l - c.centre).abs() > c.reach() {
                    continue;
                }
                let (g, dg_dlnw, dg_dc) = c.derivatives(l);
                row[nc + k] = g;
                // Widths as ln width, the shift in units of the narrow width:
                // only the conditioning depends on these choices.
                let width_col = match c.role {
                    Role::Narrow => w_narrow,
                    Role::Broad => w_broad,
                    Role::Absorption => w_abs,
                };
                if let Some(j) = width_col {
                    row[j] += theta[nc + k] * dg_dlnw;
                }
                if let Some(j) = w_shift {
                    // The width of velocity-width lines scales with the
                    // centre; the absorption's is fixed in Å.
                    let d_width = if c.role == Role::Absorption { 0.0 } else { dg_dlnw / c.centre };
                    let d_shift = (dg_dc + d_width) * c.centre0 / C_KMS;
                    row[j] += theta[nc + k] * d_shift * s.narrow;
                }
            }
            let w = self.px.ivar[i];
            for j in 0..nq {
                let wr = w * row[j];
                if wr != 0.0 {
                    for k in j..nq {
                        a[j][k] += wr * row[k];
                    }
                }
            }
        }
        for k in 0..cols.len() {
            if !free(k) {
                a[nc + k][nc + k] = 1.0;
            }
        }
        let l = cholesky(&a, nq)?;
        let mut cov = cho_inverse_block(&l, nq, np);
        for k in (0..cols.len()).filter(|&k| !free(k)) {
            cov[nc + k] = [0.0; MAXP];
            cov.iter_mut().for_each(|r| r[nc + k] = 0.0);
        }
        Some(cov)
    }
}
