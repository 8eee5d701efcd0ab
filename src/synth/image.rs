//! Renders a planned object into a 5-band cutout: unit-flux templates of its
//! components, mixed per band, blurred by that band's Gaussian PSF, plus sky
//! noise and missing-data defects.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::galaxy::{Arms, Defect, Galaxy, PIXEL_SCALE, Shape};
use super::math::{gamma_p, ln_gamma, sersic_b};

/// Renders the object with noise and defects into `out` (5 × size × size,
/// band-major, rows of x).
pub fn render(g: &Galaxy, size: usize, rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let model = render_model(g, size);
    let npix = size * size;
    for b in 0..5 {
        let (sigma, level) = (f64::from(g.sky_sigma[b]), f64::from(g.sky_level[b]));
        for (o, &m) in out[b * npix..(b + 1) * npix].iter_mut().zip(&model[b * npix..(b + 1) * npix]) {
            let noise: f64 = rng.sample(StandardNormal);
            *o = (f64::from(m) + level + sigma * noise) as f32;
        }
    }
    if let Some(d) = g.defect {
        apply_defect(d, size, out);
    }
}

/// The noise-free, PSF-convolved model (5 × size × size, nanomaggies/pixel).
pub fn render_model(g: &Galaxy, size: usize) -> Vec<f32> {
    let npix = size * size;
    let mut planes = vec![0f32; 5 * npix];
    for c in &g.components {
        let t = template(&c.shape, size);
        for (b, &f) in c.flux.iter().enumerate() {
            if f != 0.0 {
                for (p, v) in planes[b * npix..(b + 1) * npix].iter_mut().zip(&t) {
                    *p += (f * v) as f32;
                }
            }
        }
    }
    for b in 0..5 {
        let sigma_px = f64::from(g.psf_fwhm[b]) / 2.3548 / PIXEL_SCALE;
        blur(&mut planes[b * npix..(b + 1) * npix], size, sigma_px);
    }
    planes
}

/// Unit-flux image of a shape (before the PSF).
fn template(shape: &Shape, size: usize) -> Vec<f64> {
    match *shape {
        Shape::Sersic { x, y, re, n, q, pa, arms } => sersic(size, x, y, re, n, q, pa, arms),
        Shape::Point { x, y } => {
            let mut t = vec![0.0; size * size];
            splat(&mut t, size, x, y, 1.0);
            t
        }
        Shape::Blob { x, y, sigma } => {
            let mut t = vec![0.0; size * size];
            stamp(&mut t, size, x, y, sigma, 1.0);
            t
        }
        Shape::Ring { x, y, radius, width, q, pa, knots, knot_amp, phase } => {
            let (c, s) = (pa.cos(), pa.sin());
            normalised(sampled(size, 2, |u, v| {
                let (dx, dy) = (u - x, v - y);
                let (a, b) = (dx * c + dy * s, (-dx * s + dy * c) / q);
                let r = (a * a + b * b).sqrt();
                let theta = b.atan2(a);
                (-0.5 * ((r - radius) / width).powi(2)).exp()
                    * (1.0 + knot_amp * (f64::from(knots) * theta + phase).cos())
            }))
        }
        Shape::Arc { x, y, radius, width, phi, spread } => normalised(sampled(size, 2, |u, v| {
            let (dx, dy) = (u - x, v - y);
            let r = (dx * dx + dy * dy).sqrt();
            let dphi = wrap_angle(dy.atan2(dx) - phi);
            (-0.5 * ((r - radius) / width).powi(2) - 0.5 * (dphi / spread).powi(2)).exp()
        })),
        Shape::Tail { x, y, r0, r1, theta0, sweep, width } => {
            // Gaussian knots along a spiral segment, widening and fading.
            let mut t = vec![0.0; size * size];
            let steps = 200;
            for k in 0..steps {
                let s = (k as f64 + 0.5) / steps as f64;
                let r = r0 + (r1 - r0) * s;
                let th = theta0 + sweep * s;
                let w = width * (1.0 + s);
                stamp(&mut t, size, x + r * th.cos(), y + r * th.sin(), w, (-1.5 * s).exp());
            }
            normalised(t)
        }
        Shape::Trail { x, y, angle, width } => {
            let (nx, ny) = (-angle.sin(), angle.cos());
            normalised(sampled(size, 1, |u, v| {
                let d = (u - x) * nx + (v - y) * ny;
                (-0.5 * (d / width).powi(2)).exp()
            }))
        }
    }
}

fn wrap_angle(a: f64) -> f64 {
    let tau = std::f64::consts::TAU;
    (a + std::f64::consts::PI).rem_euclid(tau) - std::f64::consts::PI
}

/// Scales a template to unit sum (for shapes fully inside the cutout by
/// construction; an all-zero template stays zero).
fn normalised(mut t: Vec<f64>) -> Vec<f64> {
    let s: f64 = t.iter().sum();
    if s > 0.0 {
        t.iter_mut().for_each(|v| *v /= s);
    }
    t
}

/// Pixel averages of f over k × k sub-samples.
fn sampled(size: usize, k: usize, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let mut t = vec![0.0; size * size];
    let inv = 1.0 / k as f64;
    for j in 0..size {
        for i in 0..size {
            let mut acc = 0.0;
            for sj in 0..k {
                for si in 0..k {
                    acc += f(i as f64 + (si as f64 + 0.5) * inv, j as f64 + (sj as f64 + 0.5) * inv);
                }
            }
            t[j * size + i] = acc * inv * inv;
        }
    }
    t
}

/// Adds `w` at a sub-pixel position, shared bilinearly between the four
/// nearest pixel centres (flux off the cutout is lost).
fn splat(t: &mut [f64], size: usize, x: f64, y: f64, w: f64) {
    let (fx, fy) = (x - 0.5, y - 0.5);
    let (i0, j0) = (fx.floor(), fy.floor());
    let (ax, ay) = (fx - i0, fy - j0);
    for (dj, wy) in [(0, 1.0 - ay), (1, ay)] {
        for (di, wx) in [(0, 1.0 - ax), (1, ax)] {
            let (i, j) = (i0 as i64 + di, j0 as i64 + dj);
            if (0..size as i64).contains(&i) && (0..size as i64).contains(&j) {
                t[j as usize * size + i as usize] += w * wx * wy;
            }
        }
    }
}

/// Adds a small Gaussian of total weight `w` (sampled, truncated at 3σ).
fn stamp(t: &mut [f64], size: usize, x: f64, y: f64, sigma: f64, w: f64) {
    let r = (3.0 * sigma).ceil() as i64 + 1;
    let (ci, cj) = (x.floor() as i64, y.floor() as i64);
    let mut local = Vec::with_capacity(((2 * r + 1) * (2 * r + 1)) as usize);
    let mut sum = 0.0;
    for j in cj - r..=cj + r {
        for i in ci - r..=ci + r {
            let (dx, dy) = (i as f64 + 0.5 - x, j as f64 + 0.5 - y);
            let v = (-0.5 * (dx * dx + dy * dy) / (sigma * sigma)).exp();
            sum += v;
            local.push((i, j, v));
        }
    }
    for (i, j, v) in local {
        if (0..size as i64).contains(&i) && (0..size as i64).contains(&j) {
            t[j as usize * size + i as usize] += w * v / sum;
        }
    }
}

/// Sérsic template with unit *total* flux (to infinity), so that the light
/// a cutout truncates is really missing.
///
/// The cusp of high-n profiles is unresolved even with sub-sampling, so the
/// flux inside a small central ellipse is set from the analytic enclosed
/// fraction and the difference is put in the central pixel (the PSF spreads
/// it anyway).
#[allow(clippy::too_many_arguments)]
fn sersic(size: usize, x0: f64, y0: f64, re: f64, n: f64, q: f64, pa: f64, arms: Option<Arms>) -> Vec<f64> {
    let b = sersic_b(n);
    let q = q.max(0.05);
    // Surface brightness at re for unit total flux:
    // F = 2π q re² n e^b b^(−2n) Γ(2n) I_e.
    let ln_norm = (2.0 * std::f64::consts::PI * q * re * re * n).ln() + b - 2.0 * n * b.ln() + ln_gamma(2.0 * n);
    let ie = (-ln_norm).exp();
    let (c, s) = (pa.cos(), pa.sin());
    let (inv_n, inv_q) = (1.0 / n, 1.0 / q);
    // Squared elliptical radius of a point, with its disc-plane coordinates.
    let ell = |u: f64, v: f64| {
        let (dx, dy) = (u - x0, v - y0);
        let (a, bb) = (dx * c + dy * s, (dy * c - dx * s) * inv_q);
        (a * a + bb * bb, a, bb)
    };
    let exponential = (n - 1.0).abs() < 1e-12;
    let inv_re2 = 1.0 / (re * re);
    // Profile from the squared elliptical radius: no powf and no sqrt for
    // n ≠ 1, and f32 transcendentals (ample for pixels). This is the
    // renderer's hot loop.
    let (half_inv_n, ln_ie_b, b32) = ((0.5 * inv_n) as f32, (ie.ln() + b) as f32, b as f32);
    let profile = |r2: f64, a: f64, bb: f64| {
        let x2 = (r2 * inv_re2) as f32; // (r / re)²
        let x = if exponential { x2.sqrt() } else { (half_inv_n * x2.max(1e-30).ln()).exp() };
        let mut i = (ln_ie_b - b32 * x).exp();
        if let Some(arm) = arms {
            // m = 2 logarithmic spiral, cos(2θ + ψ(r)), fading in outside the
            // bulge region; cos 2θ and sin 2θ come from (a + i·bb)² / r²
            // without an atan2.
            let rr = x2.sqrt();
            let fade = ((rr - 0.2) / 0.4).clamp(0.0, 1.0);
            if fade > 0.0 {
                let (a, bb, r2) = (a as f32, bb as f32, r2 as f32);
                let (cos2, sin2) = ((a * a - bb * bb) / r2, 2.0 * a * bb / r2);
                let (sin_psi, cos_psi) = (arm.phase as f32 - 2.0 * rr.ln() / arm.tan_pitch as f32).sin_cos();
                i *= 1.0 + arm.amplitude as f32 * fade * (cos2 * cos_psi - sin2 * sin_psi);
            }
        }
        f64::from(i)
    };

    // One sample per pixel, except near the centre where the profile is
    // steep: further out the midpoint rule's errors are tiny and cancel in
    // the total (Σ ∇²I ≈ 0), and the PSF hides any redistribution within a
    // pixel.
    let core = 2.0_f64.min(re);
    let fine2 = (core + 0.75 * inv_q).powi(2);
    let medium2 = (2.0 * core + 1.0 + inv_q).powi(2);
    let mut t = vec![0.0; size * size];
    let mut inner = Vec::new();
    for (j, row) in t.chunks_exact_mut(size).enumerate() {
        let v = j as f64 + 0.5;
        for (i, px) in row.iter_mut().enumerate() {
            let (r2, a, bb) = ell(i as f64 + 0.5, v);
            if r2 < medium2 {
                inner.push((i, j, if r2 < fine2 { 6 } else { 3 }));
            } else {
                *px = profile(r2, a, bb);
            }
        }
    }
    let core_numeric = subsample(&mut t, size, &inner, core, ell, profile);
    // Put the cusp's missing flux in the central pixel.
    let core_exact = gamma_p(2.0 * n, b * (core / re).powf(inv_n));
    let (ci, cj) = (x0.floor(), y0.floor());
    if (0.0..size as f64).contains(&ci) && (0.0..size as f64).contains(&cj) {
        t[cj as usize * size + ci as usize] += core_exact - core_numeric;
    }
    t
}

/// Fills the pixels of `inner` ((x, y, k) each) with the mean of k×k
/// sub-samples of `profile` (at the elliptical radius `ell` gives); returns
/// the numeric flux inside the elliptical radius `core`.
fn subsample(
    t: &mut [f64],
    size: usize,
    inner: &[(usize, usize, usize)],
    core: f64,
    ell: impl Fn(f64, f64) -> (f64, f64, f64),
    profile: impl Fn(f64, f64, f64) -> f64,
) -> f64 {
    let mut core_numeric = 0.0;
    for &(i, j, k) in inner {
        let inv = 1.0 / k as f64;
        let mut acc = 0.0;
        for sj in 0..k {
            for si in 0..k {
                let (r2, a, bb) = ell(i as f64 + (si as f64 + 0.5) * inv, j as f64 + (sj as f64 + 0.5) * inv);
                let val = profile(r2, a, bb);
                acc += val;
                if r2 < core * core {
                    core_numeric += val * inv * inv;
                }
            }
        }
        t[j * size + i] = acc * inv * inv;
    }
    core_numeric
}

/// In-place separable Gaussian blur with zero padding (light scattered off
/// the cutout is lost, as in a real cutout). Written as shifted slice
/// multiply-adds so the compiler vectorises it: this is the hot loop.
fn blur(plane: &mut [f32], size: usize, sigma: f64) {
    let r = (3.5 * sigma).ceil() as usize;
    let mut kernel: Vec<f64> = (0..=2 * r).map(|k| (-0.5 * ((k as f64 - r as f64) / sigma).powi(2)).exp()).collect();
    let s: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= s);
    let kernel: Vec<f32> = kernel.into_iter().map(|k| k as f32).collect();

    let mut tmp = vec![0f32; size * size];
    for (src, dst) in plane.chunks_exact(size).zip(tmp.chunks_exact_mut(size)) {
        for (t, &w) in kernel.iter().enumerate() {
            // dst[i] += w · src[i + t − r] wherever that pixel exists.
            if t >= r {
                let o = t - r;
                if o < size {
                    dst[..size - o].iter_mut().zip(&src[o..]).for_each(|(d, s)| *d += w * s);
                }
            } else {
                let o = r - t;
                if o < size {
                    dst[o..].iter_mut().zip(&src[..size - o]).for_each(|(d, s)| *d += w * s);
                }
            }
        }
    }
    plane.fill(0.0);
    for (j, dst) in plane.chunks_exact_mut(size).enumerate() {
        for (t, &w) in kernel.iter().enumerate() {
            let jj = (j + t).wrapping_sub(r);
            if jj < size {
                dst.iter_mut().zip(&tmp[jj * size..(jj + 1) * size]).for_each(|(d, s)| *d += w * s);
            }
        }
    }
}

fn apply_defect(d: Defect, size: usize, out: &mut [f32]) {
    let npix = size * size;
    match d {
        Defect::Column { x, from, bands } => {
            for b in (0..5).filter(|b| bands & (1 << b) != 0) {
                for y in from..size {
                    out[b * npix + y * size + x] = f32::NAN;
                }
            }
        }
        Defect::Block { band, x0, y0, w, h } => {
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    out[band * npix + y * size + x] = f32::NAN;
                }
            }
        }
        Defect::Corner { corner, extent } => {
            for y in 0..size {
                for x in 0..size {
                    let (cx, cy) = (
                        if corner & 1 == 0 { x } else { size - 1 - x },
                        if corner & 2 == 0 { y } else { size - 1 - y },
                    );
                    if cx + cy < extent {
                        for b in 0..5 {
                            out[b * npix + y * size + x] = f32::NAN;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sersic_templates_hold_their_flux() {
        // Small galaxies in a big stamp: nearly all the light is inside.
        for (n, re, q) in [(4.0, 1.5, 0.8), (4.0, 3.0, 0.5), (1.0, 4.0, 0.3), (2.5, 0.8, 1.0)] {
            let t = sersic(96, 48.3, 47.8, re, n, q, 0.7, None);
            let sum: f64 = t.iter().sum();
            // Analytic fraction inside the inscribed circle is a lower bound.
            let inside = gamma_p(2.0 * n, sersic_b(n) * (47.0 / re).powf(1.0 / n));
            assert!(sum > inside - 0.01 && sum < 1.005, "n={n} re={re}: {sum} vs ≥{inside}");
        }
    }

    #[test]
    fn blur_conserves_flux_away_from_edges() {
        let mut t = vec![0.0; 32 * 32];
        splat(&mut t, 32, 16.2, 15.7, 1.0);
        let mut t: Vec<f32> = t.into_iter().map(|v| v as f32).collect();
        blur(&mut t, 32, 2.0);
        let sum: f64 = t.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        // Symmetric about the source, peaked at it.
        let peak = t.iter().cloned().fold(0.0, f32::max);
        assert!(peak == t[15 * 32 + 16] || peak == t[16 * 32 + 16] || peak == t[15 * 32 + 15]);
    }
}
