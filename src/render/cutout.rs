//! Cutout → 8-bit RGB image. The science is described in the docs of
//! [`crate::render`]; this file is the arithmetic.

use image::{Rgb, RgbImage};

use super::{EMPTY_SIDE, MASKED_GREY, NOISE_GREY, Stretch, ViewParams, composite_bands};

/// The brightest part of the target saturates at this percentile.
const TOP_PERCENTILE: f32 = 0.995;
/// MAD → σ for Gaussian noise.
const MAD_TO_SIGMA: f32 = 1.4826;
/// ds9's log exponent: f(x) = log(1 + a·x)/log(1 + a).
const LOG_A: f32 = 1000.0;
/// Q limits: below, asinh is linear anyway; above, sinh(Q) nears f32 overflow.
const Q_RANGE: (f32, f32) = (1e-3, 30.0);

/// Renders a cutout (`n_bands × h × w`, band-major, row-major) to an 8-bit
/// RGB image of `(h/zoom) × (w/zoom)` pixels. See [`crate::render`] for the
/// colour composite, normalisation and masking rules. Band names whose count
/// differs from `n_bands` are ignored (bands taken in file order).
pub fn render_cutout(
    pixels: &[f32],
    n_bands: usize,
    h: usize,
    w: usize,
    band_names: &[String],
    view: &ViewParams,
) -> RgbImage {
    let expected = n_bands.checked_mul(h).and_then(|v| v.checked_mul(w));
    if n_bands == 0 || h == 0 || w == 0 || expected != Some(pixels.len()) {
        return neutral(EMPTY_SIDE, EMPTY_SIDE);
    }
    let plane = h * w;
    let band = |b: usize| &pixels[b * plane..(b + 1) * plane];
    let geom = Geometry { h, w, crop: Crop::central(h, w, view.zoom) };
    let style = Style::new(view);
    // One buffer for every median and percentile of this call.
    let mut scratch = Vec::with_capacity(plane);

    if let Some(b) = view.band.filter(|&b| b < n_bands) {
        return render_grey(band(b), &geom, &style, &mut scratch);
    }
    let [ib, ig, ir] = if band_names.len() == n_bands {
        composite_bands(band_names)
    } else {
        composite_bands(&vec![String::new(); n_bands])
    };
    // Two bands: green is the mean of the other two, not a band.
    let green = (n_bands != 2).then(|| band(ig));
    render_colour([band(ib), band(ir)], green, &geom, &style, &mut scratch)
}

/// The uniform image drawn where there is nothing to show.
fn neutral(w: u32, h: u32) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb([MASKED_GREY; 3]))
}

struct Geometry {
    h: usize,
    w: usize,
    crop: Crop,
}

/// The displayed part of the cutout.
#[derive(Clone, Copy)]
struct Crop {
    r0: usize,
    c0: usize,
    ch: usize,
    cw: usize,
}

impl Crop {
    fn central(h: usize, w: usize, zoom: u8) -> Self {
        let z = usize::from(zoom.max(1));
        let (ch, cw) = ((h / z).max(1), (w / z).max(1));
        Crop { r0: (h - ch) / 2, c0: (w - cw) / 2, ch, cw }
    }

    /// Flat indices of the crop, row by row.
    fn indices(self, w: usize) -> impl Iterator<Item = usize> {
        (self.r0..self.r0 + self.ch).flat_map(move |r| (r * w + self.c0)..(r * w + self.c0 + self.cw))
    }

    fn image(self, bytes: Vec<u8>) -> RgbImage {
        RgbImage::from_raw(self.cw as u32, self.ch as u32, bytes).expect("3 bytes per cropped pixel")
    }
}

/// The sanitised view parameters.
struct Style {
    curve: Curve,
    alpha: f32,
}

impl Style {
    fn new(view: &ViewParams) -> Self {
        let alpha = if view.alpha_scale.is_finite() && view.alpha_scale > 0.0 { view.alpha_scale } else { 1.0 };
        Style { curve: Curve::new(view.stretch, view.q), alpha }
    }
}

/// A stretch as a curve f on x ≥ 0 with f(0) = 0 and f(1) = 1.
#[derive(Clone, Copy)]
struct Curve {
    stretch: Stretch,
    q: f32,
    sinh_q: f32,
}

impl Curve {
    fn new(stretch: Stretch, q: f32) -> Self {
        let q = if q.is_nan() { 8.0 } else { q.clamp(Q_RANGE.0, Q_RANGE.1) };
        Curve { stretch, q, sinh_q: q.sinh() }
    }

    fn apply(self, x: f32) -> f32 {
        match self.stretch {
            // Lupton's asinh(Q·I/stretch)/Q with stretch = I_top·Q/sinh(Q).
            Stretch::Asinh => asinh_pos(self.sinh_q * x) / self.q,
            Stretch::Log => (LOG_A * x).ln_1p() / LOG_A.ln_1p(),
            Stretch::Linear => x,
            Stretch::Sqrt => x.sqrt(),
        }
    }

    fn inverse(self, y: f32) -> f32 {
        match self.stretch {
            Stretch::Asinh => (self.q * y).sinh() / self.sinh_q,
            Stretch::Log => (y * LOG_A.ln_1p()).exp_m1() / LOG_A,
            Stretch::Linear => y,
            Stretch::Sqrt => y * y,
        }
    }

    /// The colour-preserving gain f(t)/t, with t floored at `knee`.
    fn gain(self, t: f32, knee: f32) -> f32 {
        let t = t.max(knee);
        match self.stretch {
            Stretch::Asinh => {
                let u = self.sinh_q * t;
                // asinh(u)/u → 1 as u → 0 (error < 2e-7 below 1e-3).
                if u < 1e-3 { self.sinh_q / self.q } else { asinh_pos(u) / (self.q * t) }
            }
            Stretch::Linear => 1.0,
            Stretch::Log | Stretch::Sqrt => self.apply(t) / t,
        }
    }

    /// Where the gain stops growing towards I = 0, as a fraction of I_top:
    /// at the noise for the curves that are (nearly) vertical at zero.
    fn knee(self, sigma_x: f32) -> f32 {
        match self.stretch {
            Stretch::Asinh | Stretch::Linear => 0.0,
            Stretch::Log | Stretch::Sqrt => sigma_x.max(1e-6),
        }
    }
}

/// asinh for u ≥ 0 by its logarithmic form: std's version goes through
/// `hypot`, several times slower, for accuracy a display does not need.
fn asinh_pos(u: f32) -> f32 {
    if u < 1e18 { (u + (u * u + 1.0).sqrt()).ln() } else { (2.0 * u).ln() }
}

/// The intensity that maps to x = 1: the target's 99.5th percentile, but
/// not so low that a 1σ fluctuation shows brighter than `NOISE_GREY`.
fn top_scale(high: Option<f32>, sigma: f32, curve: Curve) -> f32 {
    let floor = sigma / curve.inverse(NOISE_GREY);
    let top = high.unwrap_or(0.0).max(floor);
    // A flat, noiseless cutout: any scale draws it the same.
    if top.is_finite() && top > 0.0 { top } else { 1.0 }
}

/// Sky level and noise of one band.
#[derive(Clone, Copy)]
struct Sky {
    level: f32,
    sigma: f32,
}

/// Median and 1.4826·MAD of the finite border pixels (a frame
/// `max(2, min(h, w)/16)` wide), or of all finite pixels when the image is
/// too small or the border is masked; zeros when nothing is finite.
fn sky(band: &[f32], g: &Geometry, scratch: &mut Vec<f32>) -> Sky {
    let (h, w) = (g.h, g.w);
    let bw = (h.min(w) / 16).max(2);
    scratch.clear();
    if 2 * bw < h.min(w) {
        for (r, row) in band.chunks_exact(w).enumerate() {
            if r < bw || r >= h - bw {
                scratch.extend(row.iter().copied().filter(|v| v.is_finite()));
            } else {
                scratch.extend(row[..bw].iter().chain(&row[w - bw..]).copied().filter(|v| v.is_finite()));
            }
        }
    }
    if scratch.is_empty() {
        scratch.extend(band.iter().copied().filter(|v| v.is_finite()));
    }
    if scratch.is_empty() {
        return Sky { level: 0.0, sigma: 0.0 };
    }
    let level = percentile(scratch, 0.5);
    for v in scratch.iter_mut() {
        *v = (*v - level).abs();
    }
    Sky { level, sigma: MAD_TO_SIGMA * percentile(scratch, 0.5) }
}

/// The 99.5th percentile of `value` over the finite pixels of the central
/// quarter (half the height and width), else of the whole image.
fn central_top(g: &Geometry, value: impl Fn(usize) -> f32, scratch: &mut Vec<f32>) -> Option<f32> {
    let (h, w) = (g.h, g.w);
    scratch.clear();
    for r in h / 4..h - h / 4 {
        scratch.extend((r * w + w / 4..r * w + w - w / 4).map(&value).filter(|v| v.is_finite()));
    }
    if scratch.is_empty() {
        scratch.extend((0..h * w).map(&value).filter(|v| v.is_finite()));
    }
    (!scratch.is_empty()).then(|| percentile(scratch, TOP_PERCENTILE))
}

/// Nearest-rank percentile (`p` in [0, 1]) of a non-empty buffer, which it reorders.
fn percentile(v: &mut [f32], p: f32) -> f32 {
    let k = ((v.len() - 1) as f32 * p).round() as usize;
    *v.select_nth_unstable_by(k, f32::total_cmp).1
}

fn to_byte(v: f32) -> u8 {
    (v * 255.0 + 0.5) as u8
}

/// Lupton composite. `blue_red` are the outer bands; `green` is `None` when
/// it is their mean (two-band data).
fn render_colour(
    blue_red: [&[f32]; 2],
    green: Option<&[f32]>,
    g: &Geometry,
    style: &Style,
    scratch: &mut Vec<f32>,
) -> RgbImage {
    let [blue, red] = blue_red;
    let (sb, sr) = (sky(blue, g, scratch), sky(red, g, scratch));
    let sg = match green {
        Some(band) => sky(band, g, scratch),
        None => Sky { level: 0.0, sigma: 0.5 * sb.sigma.hypot(sr.sigma) },
    };
    // Sky-subtracted (blue, green, red) at pixel i.
    let bgr = |i: usize| {
        let (b, r) = (blue[i] - sb.level, red[i] - sr.level);
        let gr = green.map_or(0.5 * (b + r), |band| band[i] - sg.level);
        (b, gr, r)
    };
    let intensity = |i: usize| {
        let (b, gr, r) = bgr(i);
        (b + gr + r) / 3.0
    };
    // The noise of a channel, RMS over the three.
    let sigma = ((sb.sigma.powi(2) + sg.sigma.powi(2) + sr.sigma.powi(2)) / 3.0).sqrt();
    let curve = style.curve;
    let top = top_scale(central_top(g, intensity, scratch), sigma, curve);
    let k = style.alpha / top;
    let knee = curve.knee(k * sigma);

    let mut bytes = Vec::with_capacity(g.crop.ch * g.crop.cw * 3);
    for i in g.crop.indices(g.w) {
        let (b, gr, r) = bgr(i);
        let int = (b + gr + r) / 3.0;
        // NaN and inf in any band propagate here.
        if !int.is_finite() {
            bytes.extend_from_slice(&[MASKED_GREY; 3]);
            continue;
        }
        // Every channel gets F(I)/I: the hue is the flux ratio.
        let gain = k * curve.gain(k * int.abs(), knee);
        let mut rgb = [r * gain, gr * gain, b * gain].map(|v| v.max(0.0));
        // Saturate as Lupton does: scale all three, never clip one.
        let max = rgb[0].max(rgb[1]).max(rgb[2]);
        if max > 1.0 {
            rgb = rgb.map(|v| v / max);
        }
        bytes.extend(rgb.map(to_byte));
    }
    g.crop.image(bytes)
}

/// One band in grey: black at sky − 1σ, white at sky + I_top.
fn render_grey(band: &[f32], g: &Geometry, style: &Style, scratch: &mut Vec<f32>) -> RgbImage {
    let s = sky(band, g, scratch);
    let curve = style.curve;
    let top = top_scale(central_top(g, |i| band[i] - s.level, scratch), s.sigma, curve);
    let black = s.level - s.sigma;
    let k = style.alpha / (top + s.sigma);

    let mut bytes = Vec::with_capacity(g.crop.ch * g.crop.cw * 3);
    for i in g.crop.indices(g.w) {
        let v = band[i];
        let grey = if v.is_finite() { to_byte(curve.apply(((v - black) * k).max(0.0)).min(1.0)) } else { MASKED_GREY };
        bytes.extend_from_slice(&[grey; 3]);
    }
    g.crop.image(bytes)
}
