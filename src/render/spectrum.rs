//! Spectra for display: gaps where the data are masked, smoothed, in the
//! rest frame on request, and no more points than a terminal can show.

/// One contiguous run of good data, as points for a ratatui `Chart`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpectrumView {
    /// Wavelength, Angstrom (observed, or rest frame if asked for).
    pub lambda: Vec<f64>,
    pub flux: Vec<f64>,
}

impl SpectrumView {
    /// `(lambda, flux)` pairs, the form `ratatui::widgets::Dataset::data` takes.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.lambda.iter().copied().zip(self.flux.iter().copied()).collect()
    }

    pub fn len(&self) -> usize {
        self.lambda.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lambda.is_empty()
    }
}

/// Splits a spectrum into contiguous segments of good pixels for plotting.
///
/// * A pixel is bad where lambda or flux is non-finite, `ivar <= 0` (or
///   non-finite), or `mask != 0`. Bad pixels are gaps: each run of good ones
///   is its own segment, so the chart draws no line across a gap.
/// * Smoothing: inverse-variance weighted boxcar of `smooth` pixels (even
///   widths round up to odd, 0 means 1) centred on each good pixel, over the
///   good pixels of its own segment only (uniform weights without `ivar`).
/// * `rest_frame_z`: lambda is divided by 1 + z (ignored unless z > −1).
/// * Cosmic-ray-like single pixels (a spike more than 6σ above the local
///   median whose neighbours stay below 30% of its height — a resolved
///   emission line's neighbours are at 60% or more) are treated as bad.
/// * Downsampling, when there are more pixels than `max_points`: the
///   spectrum is cut into `max_points / 2` bins of consecutive pixels, and a
///   bin gives the lowest and the highest smoothed point of its good pixels,
///   in wavelength order (min–max decimation: a line peak one pixel wide
///   stays on the plot at its height); a bin with no good pixel is a gap.
///   So the whole spectrum never has more than `max_points` points, and
///   gaps narrower than a bin (invisible at that resolution) are bridged.
///
/// Arrays of different lengths are read up to the shortest; nothing panics.
pub fn spectrum_segments(
    lambda: &[f32],
    flux: &[f32],
    ivar: Option<&[f32]>,
    mask: Option<&[i32]>,
    smooth: usize,
    rest_frame_z: Option<f64>,
    max_points: usize,
) -> Vec<SpectrumView> {
    let n = [lambda.len(), flux.len(), ivar.map_or(usize::MAX, <[f32]>::len), mask.map_or(usize::MAX, <[i32]>::len)]
        .into_iter()
        .min()
        .unwrap_or(0);
    if n == 0 || max_points == 0 {
        return Vec::new();
    }
    let weight = |i: usize| ivar.map_or(1.0, |v| f64::from(v[i]));
    let valid = |i: usize| {
        lambda[i].is_finite()
            && lambda[i] > 0.0
            && flux[i].is_finite()
            && weight(i).is_finite()
            && weight(i) > 0.0
            && mask.is_none_or(|m| m[i] == 0)
    };
    let spikes = cosmic_rays(n, flux, &valid, &weight);
    let good = |i: usize| valid(i) && !spikes.contains(&i);
    let smoothed = smooth_runs(n, flux, good, weight, smooth.max(1) / 2);

    let to_rest = match rest_frame_z {
        Some(z) if z.is_finite() && z > -1.0 => 1.0 / (1.0 + z),
        _ => 1.0,
    };
    decimate(&lambda[..n], &smoothed, max_points, to_rest)
}

/// The smoothed spectrum (NaN where a pixel is not good) as connected
/// segments of at most `max_points` points in all, wavelengths scaled by
/// `to_rest` (see [`spectrum_segments`]).
fn decimate(lambda: &[f32], smoothed: &[f64], max_points: usize, to_rest: f64) -> Vec<SpectrumView> {
    let n = lambda.len();
    // One pixel a point when they fit; else min–max pairs (or, with room
    // for fewer than two points, the bin's mean).
    let (bin, extremes) = if n <= max_points {
        (1, false)
    } else if max_points >= 2 {
        (n.div_ceil(max_points / 2), true)
    } else {
        (n, false)
    };
    let mut segments = Vec::new();
    let mut current = SpectrumView::default();
    for start in (0..n).step_by(bin) {
        let (mut sum_l, mut sum_f, mut count) = (0.0, 0.0, 0u32);
        let (mut lo, mut hi): (Option<usize>, Option<usize>) = (None, None);
        for i in start..(start + bin).min(n) {
            if smoothed[i].is_finite() {
                sum_l += f64::from(lambda[i]);
                sum_f += smoothed[i];
                count += 1;
                if lo.is_none_or(|j| smoothed[i] < smoothed[j]) {
                    lo = Some(i);
                }
                if hi.is_none_or(|j| smoothed[i] > smoothed[j]) {
                    hi = Some(i);
                }
            }
        }
        if count == 0 {
            if !current.is_empty() {
                segments.push(std::mem::take(&mut current));
            }
            continue;
        }
        match (extremes, lo, hi) {
            (true, Some(a), Some(b)) if a != b => {
                for i in [a.min(b), a.max(b)] {
                    current.lambda.push(f64::from(lambda[i]) * to_rest);
                    current.flux.push(smoothed[i]);
                }
            }
            _ => {
                current.lambda.push(sum_l / f64::from(count) * to_rest);
                current.flux.push(sum_f / f64::from(count));
            }
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// Indices of cosmic-ray-like single-pixel spikes (see [`spectrum_segments`]).
fn cosmic_rays(
    n: usize,
    flux: &[f32],
    valid: &impl Fn(usize) -> bool,
    weight: &impl Fn(usize) -> f64,
) -> std::collections::HashSet<usize> {
    let mut out = std::collections::HashSet::new();
    let mut near = Vec::with_capacity(6);
    for i in 1..n.saturating_sub(1) {
        if !(valid(i) && valid(i - 1) && valid(i + 1)) {
            continue;
        }
        near.clear();
        near.extend((i.saturating_sub(3)..(i + 4).min(n)).filter(|&j| j != i && valid(j)).map(|j| f64::from(flux[j])));
        near.sort_by(f64::total_cmp);
        let base = near[near.len() / 2];
        let height = f64::from(flux[i]) - base;
        let sigma = 1.0 / weight(i).sqrt();
        let neighbours = f64::from(flux[i - 1].max(flux[i + 1])) - base;
        if height > 6.0 * sigma && neighbours < 0.3 * height {
            out.insert(i);
        }
    }
    out
}

/// Weighted boxcar (half-width `half`) within each run of good pixels;
/// NaN at bad pixels. Prefix sums keep it O(n) whatever the width.
fn smooth_runs(
    n: usize,
    flux: &[f32],
    good: impl Fn(usize) -> bool,
    weight: impl Fn(usize) -> f64,
    half: usize,
) -> Vec<f64> {
    let mut out = vec![f64::NAN; n];
    // Prefix sums of w and w·f over the current run, reused between runs.
    let (mut sw, mut swf) = (vec![0.0f64], vec![0.0f64]);
    let mut i = 0;
    while i < n {
        if !good(i) {
            i += 1;
            continue;
        }
        let start = i;
        sw.truncate(1);
        swf.truncate(1);
        while i < n && good(i) {
            let w = weight(i);
            sw.push(sw[i - start] + w);
            swf.push(swf[i - start] + w * f64::from(flux[i]));
            i += 1;
        }
        let len = i - start;
        for j in 0..len {
            let (lo, hi) = (j.saturating_sub(half), (j + half + 1).min(len));
            out[start + j] = (swf[hi] - swf[lo]) / (sw[hi] - sw[lo]);
        }
    }
    out
}

/// The y-range for plotting: the 0.5th percentile of the flux (troughs and
/// noise below the continuum; interpolated) up to the highest point — the
/// strongest line peak, never clipped: cosmic-ray-like single pixels are
/// already out ([`spectrum_segments`]) — plus a 5 % margin each side.
/// `(0, 1)` when there is no finite point; a flat spectrum gets a margin of
/// 10 % of its level (1 at zero).
pub fn flux_range(segments: &[SpectrumView]) -> (f64, f64) {
    let mut values: Vec<f64> = segments.iter().flat_map(|s| s.flux.iter().copied()).filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return (0.0, 1.0);
    }
    values.sort_unstable_by(f64::total_cmp);
    let (lo, hi) = (interpolated(&values, 0.005), values[values.len() - 1]);
    let margin = if hi > lo {
        0.05 * (hi - lo)
    } else if lo != 0.0 {
        0.1 * lo.abs()
    } else {
        1.0
    };
    (lo - margin, hi + margin)
}

/// Percentile of sorted values, interpolated between ranks (numpy's default).
fn interpolated(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(&next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic standard normal deviates (xorshift + Box–Muller).
    fn normals(n: usize, mut seed: u64) -> Vec<f32> {
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n).map(|_| ((-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()) as f32).collect()
    }

    fn grid(n: usize) -> Vec<f32> {
        (0..n).map(|i| 3800.0 + i as f32).collect()
    }

    fn rms(v: &[f64]) -> f64 {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn all_good_is_one_segment_of_the_input() {
        let (lambda, flux) = (grid(10), vec![2.0f32; 10]);
        let segs = spectrum_segments(&lambda, &flux, None, None, 1, None, 100);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].lambda, lambda.iter().map(|&l| f64::from(l)).collect::<Vec<_>>());
        assert_eq!(segs[0].flux, vec![2.0; 10]);
        assert_eq!(segs[0].points()[3], (3803.0, 2.0));
    }

    #[test]
    fn masked_run_splits_into_two_segments() {
        let n = 1000;
        let (lambda, flux) = (grid(n), vec![1.0f32; n]);
        let mut ivar = vec![1.0f32; n];
        ivar[400..450].fill(0.0);
        let segs = spectrum_segments(&lambda, &flux, Some(&ivar), None, 5, None, 2000);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].len(), segs[1].len()), (400, 550));
        assert_eq!(*segs[0].lambda.last().unwrap(), 4199.0);
        assert_eq!(segs[1].lambda[0], 4250.0);

        // The same with the mask array, a NaN flux, and after downsampling.
        let mut mask = vec![0i32; n];
        mask[400..450].fill(1 << 3);
        assert_eq!(spectrum_segments(&lambda, &flux, None, Some(&mask), 5, None, 100).len(), 2);
        let mut nan_flux = flux.clone();
        nan_flux[400..450].fill(f32::NAN);
        assert_eq!(spectrum_segments(&lambda, &nan_flux, None, None, 5, None, 100).len(), 2);
    }

    #[test]
    fn smoothing_never_reaches_across_a_gap() {
        // A step at the gap: each side keeps its own level exactly.
        let n = 40;
        let lambda = grid(n);
        let flux: Vec<f32> = (0..n).map(|i| if i < 20 { 1.0 } else { 5.0 }).collect();
        let mut mask = vec![0; n];
        mask[20] = 1;
        let segs = spectrum_segments(&lambda, &flux, None, Some(&mask), 9, None, 100);
        assert!(segs[0].flux.iter().all(|&f| f == 1.0));
        assert!(segs[1].flux.iter().all(|&f| f == 5.0));
    }

    #[test]
    fn boxcar_reduces_white_noise_by_sqrt_width() {
        let n = 20_000;
        let (lambda, flux) = (grid(n), normals(n, 0x9e37_79b9_7f4a_7c15));
        let ivar = vec![1.0f32; n];
        let raw = spectrum_segments(&lambda, &flux, Some(&ivar), None, 1, None, n);
        let smooth = spectrum_segments(&lambda, &flux, Some(&ivar), None, 9, None, n);
        let ratio = rms(&raw[0].flux) / rms(&smooth[0].flux);
        assert!((ratio - 3.0).abs() < 0.15, "rms ratio {ratio}, expected ~3");
    }

    #[test]
    fn smoothing_is_inverse_variance_weighted() {
        // A noisy pixel (low ivar) barely moves its neighbours' mean.
        let lambda = grid(3);
        let flux = [1.0f32, 100.0, 1.0];
        let ivar = [1.0f32, 1e-6, 1.0];
        let segs = spectrum_segments(&lambda, &flux, Some(&ivar), None, 3, None, 10);
        assert!((segs[0].flux[0] - 1.0).abs() < 1e-3);
        assert!((segs[0].flux[1] - 1.0).abs() < 1e-3);
    }

    #[test]
    fn rest_frame_divides_lambda_by_one_plus_z() {
        let (lambda, flux) = (grid(5), vec![1.0f32; 5]);
        let segs = spectrum_segments(&lambda, &flux, None, None, 1, Some(0.25), 10);
        for (rest, obs) in segs[0].lambda.iter().zip(&lambda) {
            assert!((rest - f64::from(*obs) / 1.25).abs() < 1e-9);
        }
        // Unphysical redshifts are ignored, not divided by zero.
        let segs = spectrum_segments(&lambda, &flux, None, None, 1, Some(-1.0), 10);
        assert_eq!(segs[0].lambda[0], 3800.0);
    }

    #[test]
    fn max_points_is_respected() {
        let n = 3861;
        let (lambda, flux) = (grid(n), normals(n, 7));
        let mut mask = vec![0; n];
        // Many short gaps must not multiply the point count.
        for i in (0..n).step_by(97) {
            mask[i] = 1;
        }
        mask[2000..2300].fill(1);
        for max in [1, 7, 200, 1000, n] {
            let segs = spectrum_segments(&lambda, &flux, None, Some(&mask), 5, None, max);
            let total: usize = segs.iter().map(SpectrumView::len).sum();
            assert!(total <= max, "{total} points for max {max}");
            assert!(total > 0);
        }
        // Downsampling averages: a constant stays constant, lambda stays in order.
        let segs = spectrum_segments(&lambda, &vec![3.0; n], None, None, 1, None, 200);
        assert_eq!(segs.len(), 1);
        assert!(segs[0].flux.iter().all(|&f| (f - 3.0).abs() < 1e-12));
        assert!(segs[0].lambda.windows(2).all(|w| w[0] < w[1]));
        assert!(spectrum_segments(&lambda, &flux, None, None, 1, None, 0).is_empty());
    }

    #[test]
    fn bad_inputs_do_not_panic() {
        assert!(spectrum_segments(&[], &[], None, None, 3, None, 10).is_empty());
        // Mismatched lengths: read up to the shortest.
        let segs = spectrum_segments(&grid(10), &[1.0; 4], Some(&[1.0; 6]), None, 0, None, 10);
        assert_eq!(segs[0].len(), 4);
        let all_masked = spectrum_segments(&grid(10), &[1.0; 10], Some(&[0.0; 10]), None, 3, None, 10);
        assert!(all_masked.is_empty());
        assert_eq!(flux_range(&all_masked), (0.0, 1.0));
    }

    #[test]
    fn flux_range_ignores_a_single_spike() {
        let n = 1000;
        let mut flux = normals(n, 3);
        flux[500] = 1e6;
        let segs = spectrum_segments(&grid(n), &flux, None, None, 1, None, n);
        let (lo, hi) = flux_range(&segs);
        assert!(lo < -2.0 && lo > -4.0, "lo {lo}");
        assert!(hi > 2.0 && hi < 4.0, "hi {hi}");
    }

    #[test]
    fn strongest_line_peak_sets_the_range_but_a_cosmic_ray_does_not() {
        // Hα of the issue: a line peaking at 282 over a continuum of 20
        // was clipped at 188 by the 99th percentile; and a one-pixel spike.
        let n = 3800;
        let lambda = grid(n);
        let mut flux: Vec<f32> = normals(n, 5).iter().map(|v| 20.0 + v).collect();
        for (i, f) in flux.iter_mut().enumerate() {
            let u = (i as f32 - 2700.0) / 1.6;
            *f += 262.0 * (-0.5 * u * u).exp();
        }
        flux[1000] = 5000.0;
        let ivar = vec![1.0f32; n];
        for max_points in [n, 300] {
            let segs = spectrum_segments(&lambda, &flux, Some(&ivar), None, 1, None, max_points);
            let (_, hi) = flux_range(&segs);
            assert!((275.0..320.0).contains(&hi), "max_points {max_points}: top {hi}");
            let total: usize = segs.iter().map(SpectrumView::len).sum();
            assert!(total <= max_points);
        }
    }

    #[test]
    fn flux_range_of_a_flat_spectrum_is_not_empty() {
        let flat = [SpectrumView { lambda: vec![1.0, 2.0], flux: vec![4.0, 4.0] }];
        let (lo, hi) = flux_range(&flat);
        assert!(lo < 4.0 && hi > 4.0);
        let zero = [SpectrumView { lambda: vec![1.0], flux: vec![0.0] }];
        assert_eq!(flux_range(&zero), (-1.0, 1.0));
    }
}
