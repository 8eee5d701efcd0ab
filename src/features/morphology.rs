//! Astronomaly-style morphology and colour features of a multi-band cutout.
//!
//! # Method (all in the reference band unless noted)
//!
//! * **Sky**: level and noise from the border pixels (a frame
//!   `max(2, min(h, w)/16)` pixels wide): median and 1.4826·MAD, per band.
//!   Every band is sky-subtracted.
//! * **Masked pixels**: NaN/inf pixels are counted (`nonfinite_frac`, over
//!   all bands) and then replaced by the mean of their finite 8-neighbours
//!   (the sky level if none), so a masked column through a galaxy neither
//!   poisons sums nor cuts its isophotes in two.
//! * **Centre and peak**: the brightest 3×3-box mean within the central
//!   `min(h, w)/8` pixels of the image centre (robust to one hot pixel).
//! * **Segment**: the 8-connected region of pixels above
//!   `max(2σ, 0.001·peak)` containing the centre, found by a priority flood
//!   that also gives every isophote below. Other detected sources (detached
//!   regions of ≥ 5 pixels above that level) are set to the sky level for
//!   the growth curve, asymmetry and colours: they are unrelated neighbours.
//!   Connected companions stay (mergers are the point).
//! * **Isophote ellipses** at levels `max(f·peak, 3σ)`, f = 0.5, 0.2, 0.1,
//!   0.05, 0.02 (named iso50 … iso2): the region of pixels above the level
//!   connected to the centre, fitted by the second moments of its pixel mask
//!   (the isophote's shape, not flux-weighted; +1/12 px² for pixel size).
//!   Per level: centroid offset from the image centre in units of the
//!   ellipse's semi-major axis, axis ratio b/a, position angle in degrees in
//!   [0, 180) from the +x (column) axis towards +y (row index). Between
//!   successive levels: centroid shift (in units of the outer semi-major
//!   axis), |ΔPA| folded into [0, 90], and Δq = q_outer − q_inner. Twisted,
//!   off-centre or changing isophotes flag mergers, rings and tidal features.
//! * **Growth curve** about the segment's flux centroid, out to the largest
//!   circle inside the image, each pixel's flux spread evenly over radii
//!   r ± 0.5 px (sub-pixel radii without sub-sampling): r20, r50, r80;
//!   concentration C = 5 log10(r80/r20) (Conselice 2003); half-light radius
//!   r50 in pixels; total flux as an asinh magnitude with softening 1 image
//!   unit, m = −2.5/ln10 · asinh(F/2) (the caller adds the zero point).
//! * **Asymmetry** (Conselice 2000): A = (Σ|I − I₁₈₀| − B) / Σ|I| over the
//!   pixels within 1.5·r80 of the rotation centre, I₁₈₀ bilinearly
//!   interpolated, minimised over the centre by a pattern search from the
//!   flux centroid (0.25 → 0.06 px steps). B, the noise's expected
//!   contribution, is computed from the sky σ (Gaussian noise, interpolation
//!   weights included) instead of measured on a sky patch.
//! * **Gini and M20** (Lotz et al. 2004) over the segment's pixels; M20 sums
//!   the brightest pixels until they hold 20 % of the flux (the one crossing
//!   included, so a point source gives a finite value).
//! * **Colours**, blue minus red for each pair of bands adjacent in
//!   wavelength ([`colour_pairs`]: named `g-r`, `r-i`… by filter for the
//!   ugrizy filters of HSC, SDSS, the Legacy Survey and DES; adjacent in file
//!   order otherwise): −2.5 log10(F_blue / F_red) of the sky-subtracted
//!   fluxes within max(r80, 2 px) of the reference band's flux centroid (NaN
//!   if either flux is ≤ 0).
//!
//! Everything is O(pixels) (plus one sort of the segment for Gini/M20) with
//! a few allocations per call. Undefined features (no detection, too small
//! an image, a bad reference band) are NaN, for the caller to impute.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Bumped whenever a feature's definition or the order changes.
/// 2: colours blue minus red by filter wavelength, named `g-r`; the size r50 in arcsec
/// (`r50_arcsec`) where the pixel scale is known.
pub const MORPHOLOGY_VERSION: u32 = 3;

/// Isophote levels as fractions of the peak, and their feature-name stems.
const ISO_FRACTIONS: [f32; 5] = [0.5, 0.2, 0.1, 0.05, 0.02];
const ISO_NAMES: [&str; 5] = ["iso50", "iso20", "iso10", "iso5", "iso2"];
const N_ISO: usize = ISO_FRACTIONS.len();
/// Isophotes never go below this many σ of sky noise.
const ISO_FLOOR_SIGMA: f32 = 3.0;
/// Segment (and other-source) threshold in σ, and as a fraction of the peak.
const SEGMENT_SIGMA: f32 = 2.0;
const SEGMENT_PEAK_FRACTION: f32 = 1e-3;
/// Detached regions at least this large are treated as other sources.
const MIN_OTHER_AREA: usize = 5;
/// Smallest image side handled.
const MIN_SIDE: usize = 8;
/// Isophotes with fewer pixels have no meaningful ellipse.
const MIN_ISO_PIXELS: f64 = 5.0;

/// The scalar features, in output order, with what each means.
const SCALARS: [(&str, &str); 9] = [
    ("nonfinite_frac", "fraction of NaN/inf pixels, all bands"),
    ("sky_level", "reference-band border median (image units)"),
    ("sky_noise", "reference-band border 1.4826·MAD (image units)"),
    ("mag_asinh", "asinh magnitude of the total flux, no zero point"),
    ("r50", "half-light radius, pixels"),
    ("concentration", "5 log10(r80/r20)"),
    ("asymmetry", "180° rotational asymmetry, noise-corrected"),
    ("gini", "Gini coefficient of the segment's pixels"),
    ("m20", "log10 of the brightest 20 %'s second moment over the total"),
];

/// Effective wavelength (Å) of a broad-band filter from its name: the
/// letter after the last `-`/`_`/space (`HSC-G`, `DES_r`, `g`), ugrizy as
/// HSC, SDSS, the Legacy Survey and DES use them (their g, r… differ by less
/// than the gaps between bands).
pub fn filter_wavelength(band: &str) -> Option<f64> {
    let letter = band.rsplit(['-', '_', ' ']).next().unwrap_or(band).trim().to_ascii_lowercase();
    Some(match letter.as_str() {
        "u" => 3550.0,
        "g" => 4750.0,
        "r" => 6250.0,
        "i" => 7700.0,
        "z" => 9000.0,
        "y" => 9900.0,
        _ => return None,
    })
}

/// The colours measured: (blue band, red band, name) for each pair of bands
/// adjacent in wavelength, named `g-r` by filter letter — when every band
/// is a known, distinct filter; otherwise adjacent pairs in file order,
/// named `{a}-{b}` with the file's names.
pub fn colour_pairs(band_names: &[String]) -> Vec<(usize, usize, String)> {
    let short = |b: &str| b.rsplit(['-', '_', ' ']).next().unwrap_or(b).trim().to_ascii_lowercase();
    let waves: Option<Vec<f64>> = band_names.iter().map(|b| filter_wavelength(b)).collect();
    let mut order: Vec<usize> = (0..band_names.len()).collect();
    let known = waves.filter(|w| {
        let mut s = w.clone();
        s.sort_by(f64::total_cmp);
        s.windows(2).all(|p| p[0] < p[1])
    });
    if let Some(w) = &known {
        order.sort_by(|&a, &b| w[a].total_cmp(&w[b]));
    }
    order
        .windows(2)
        .map(|p| {
            let (a, b) = (p[0], p[1]);
            let name = if known.is_some() {
                format!("{}-{}", short(&band_names[a]), short(&band_names[b]))
            } else {
                format!("{}-{}", band_names[a], band_names[b])
            };
            (a, b, name)
        })
        .collect()
}

/// Whether a feature name is a colour of [`colour_pairs`]: colours are
/// `{blue}-{red}` and no other feature name holds a `-` (the older
/// `colour_{a}_{b}` names count too).
pub fn is_colour_name(name: &str) -> bool {
    name.contains('-') || name.starts_with("colour_")
}

/// Feature names in output order: the scalars, then per isophote
/// `{iso}_offset`, `{iso}_q`, `{iso}_pa`, then per successive pair
/// `{inner}_{outer}_dcentroid`, `_dpa`, `_dq`, then the colours of
/// [`colour_pairs`] (`g-r`, `r-i`…). The length matches [`morphology`]'s
/// output for `n_bands == band_names.len()`.
pub fn feature_names(band_names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = SCALARS.iter().map(|(n, _)| n.to_string()).collect();
    for iso in ISO_NAMES {
        for f in ["offset", "q", "pa"] {
            names.push(format!("{iso}_{f}"));
        }
    }
    for pair in ISO_NAMES.windows(2) {
        for f in ["dcentroid", "dpa", "dq"] {
            names.push(format!("{}_{}_{f}", pair[0], pair[1]));
        }
    }
    names.extend(colour_pairs(band_names).into_iter().map(|(_, _, n)| n));
    names
}

/// Feature names with the unit of the sizes stated: `r50_arcsec` when the
/// survey's cutouts have a pixel scale (sizes then compare across cutouts of
/// different scales), `r50_px` when they do not.
pub fn feature_names_with_unit(band_names: &[String], arcsec: bool) -> Vec<String> {
    let mut names = feature_names(band_names);
    names[R50] = if arcsec { "r50_arcsec" } else { "r50_px" }.to_string();
    names
}

/// Converts the size features of [`morphology`]'s output from pixels to
/// arcsec with the cutout's pixel scale; without one they become NaN (the
/// scorer imputes and flags them) rather than mixing units in one column.
pub fn sizes_to_arcsec(values: &mut [f32], pixel_scale: Option<f32>) {
    if let Some(v) = values.get_mut(R50) {
        *v = match pixel_scale {
            Some(s) if s.is_finite() && s > 0.0 => *v * s,
            _ => f32::NAN,
        };
    }
}

fn n_features(n_bands: usize) -> usize {
    SCALARS.len() + 3 * N_ISO + 3 * (N_ISO - 1) + n_bands.saturating_sub(1)
}

// Offsets into the output vector.
const NONFINITE: usize = 0;
const SKY_LEVEL: usize = 1;
const SKY_NOISE: usize = 2;
const MAG: usize = 3;
const R50: usize = 4;
const CONC: usize = 5;
const ASYM: usize = 6;
const GINI: usize = 7;
const M20: usize = 8;
const ISO: usize = SCALARS.len();
const DIFF: usize = ISO + 3 * N_ISO;
const COLOUR: usize = DIFF + 3 * (N_ISO - 1);

/// Morphology and colour features of one cutout (see the module docs), the
/// colours of adjacent bands in file order (blue first if the file is).
pub fn morphology(image: &[f32], n_bands: usize, h: usize, w: usize, reference_band: usize) -> Vec<f32> {
    let pairs: Vec<(usize, usize)> = (1..n_bands).map(|b| (b - 1, b)).collect();
    morphology_with_colours(image, n_bands, h, w, reference_band, &pairs)
}

/// Morphology and colour features of one cutout (see the module docs).
///
/// `image` is `n_bands × h × w`, row-major, band-major; it may hold NaN/inf.
/// `reference_band` is the band used for shapes (i for HSC, r otherwise).
/// `colours` are the (blue, red) band pairs of [`colour_pairs`]. The result
/// has the length and order of [`feature_names`]; NaN where a feature is
/// undefined.
pub fn morphology_with_colours(
    image: &[f32],
    n_bands: usize,
    h: usize,
    w: usize,
    reference_band: usize,
    colours: &[(usize, usize)],
) -> Vec<f32> {
    let mut out = vec![f32::NAN; n_features(n_bands)];
    let npix = h * w;
    if n_bands == 0 || image.len() != n_bands * npix {
        return out;
    }
    out[NONFINITE] = image.iter().filter(|v| !v.is_finite()).count() as f32 / image.len() as f32;
    if h < MIN_SIDE || w < MIN_SIDE || reference_band >= n_bands {
        return out;
    }

    let (mut clean, sky_ok) = sky_subtract(image, n_bands, h, w, reference_band, &mut out);
    if !sky_ok[reference_band] {
        return out;
    }
    let ref_noise = out[SKY_NOISE];
    let grid = Grid { h, w };
    let ref_img = &clean[reference_band * npix..(reference_band + 1) * npix];

    let (seed, peak) = grid.central_peak(ref_img);
    let centre = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    if !(peak > 0.0 && peak >= ISO_FLOOR_SIGMA * ref_noise) {
        // Nothing detected: only the flux at the image centre means anything.
        let r = (h.min(w) as f64) / 2.0;
        let f = aperture_flux(ref_img, &grid, centre, r);
        out[MAG] = asinh_mag(f);
        return out;
    }

    let seg_level = (SEGMENT_SIGMA * ref_noise).max(SEGMENT_PEAK_FRACTION * peak);
    let levels = ISO_FRACTIONS.map(|f| (f * peak).max(ISO_FLOOR_SIGMA * ref_noise));
    let flood = grid.flood(ref_img, seed, seg_level, &levels);

    isophote_features(&flood.iso_moments, centre, &mut out);

    // Unrelated neighbours become sky in every band.
    let mut state = flood.state;
    let others = grid.other_sources(ref_img, seg_level, &mut state);
    for b in (0..n_bands).filter(|&b| sky_ok[b]) {
        for &i in &others {
            clean[b * npix + i as usize] = 0.0;
        }
    }
    let ref_img = &clean[reference_band * npix..(reference_band + 1) * npix];

    // Gini and M20 of the segment.
    let (gini, m20) = gini_m20(ref_img, &grid, &flood.segment, flood.centroid);
    out[GINI] = gini;
    out[M20] = m20;

    // Growth curve about the flux centroid.
    let c = flood.centroid;
    let r_edge = (c.0 + 0.5).min(w as f64 - 0.5 - c.0).min(c.1 + 0.5).min(h as f64 - 0.5 - c.1);
    let Some(gc) = GrowthCurve::new(ref_img, &grid, c, r_edge) else { return out };
    out[MAG] = asinh_mag(gc.total);
    let [r20, r50, r80] = [0.2, 0.5, 0.8].map(|f| gc.radius(f));
    out[R50] = r50 as f32;
    out[CONC] = (5.0 * (r80 / r20).log10()) as f32;

    if r80.is_finite() {
        out[ASYM] = asymmetry(ref_img, &grid, c, 1.5 * r80, ref_noise as f64);
        let r_col = r80.max(2.0).min(r_edge);
        let fluxes: Vec<f64> = (0..n_bands)
            .map(
                |b| if sky_ok[b] { aperture_flux(&clean[b * npix..(b + 1) * npix], &grid, c, r_col) } else { f64::NAN },
            )
            .collect();
        colour_features(&fluxes, colours, &mut out);
    }
    out
}

/// Sky-subtracts and imputes every band (returned, band-major, with which
/// bands had a measurable sky); the reference band's sky level and noise go
/// to `out`.
fn sky_subtract(
    image: &[f32],
    n_bands: usize,
    h: usize,
    w: usize,
    reference_band: usize,
    out: &mut [f32],
) -> (Vec<f32>, Vec<bool>) {
    let npix = h * w;
    let mut clean = vec![0.0f32; n_bands * npix];
    let mut scratch = Vec::new();
    let mut sky_ok = vec![false; n_bands];
    for b in 0..n_bands {
        let band = &image[b * npix..(b + 1) * npix];
        let Some((level, noise)) = border_stats(band, h, w, &mut scratch) else { continue };
        impute(band, level, h, w, &mut clean[b * npix..(b + 1) * npix]);
        sky_ok[b] = true;
        if b == reference_band {
            out[SKY_LEVEL] = level;
            out[SKY_NOISE] = noise;
        }
    }
    (clean, sky_ok)
}

/// Isophote ellipses (offset from `centre`, axis ratio, angle) and the
/// differences between adjacent ones.
fn isophote_features(iso_moments: &[Moments], centre: (f64, f64), out: &mut [f32]) {
    let ellipses: Vec<Option<Ellipse>> = iso_moments.iter().map(Moments::ellipse).collect();
    for (k, e) in ellipses.iter().enumerate() {
        if let Some(e) = e {
            out[ISO + 3 * k] = ((e.cx - centre.0).hypot(e.cy - centre.1) / e.a) as f32;
            out[ISO + 3 * k + 1] = e.q as f32;
            out[ISO + 3 * k + 2] = e.pa as f32;
        }
    }
    for k in 1..N_ISO {
        if let (Some(inner), Some(outer)) = (&ellipses[k - 1], &ellipses[k]) {
            let d = DIFF + 3 * (k - 1);
            out[d] = ((outer.cx - inner.cx).hypot(outer.cy - inner.cy) / outer.a) as f32;
            let dpa = (outer.pa - inner.pa).abs() % 180.0;
            out[d + 1] = dpa.min(180.0 - dpa) as f32;
            out[d + 2] = (outer.q - inner.q) as f32;
        }
    }
}

/// Colours (magnitudes) of the (blue, red) band pairs from aperture fluxes;
/// NaN where either flux is not positive.
fn colour_features(fluxes: &[f64], colours: &[(usize, usize)], out: &mut [f32]) {
    for (k, &(blue, red)) in colours.iter().enumerate().take(fluxes.len().saturating_sub(1)) {
        let (fb, fr) = (fluxes[blue], fluxes[red]);
        if fb > 0.0 && fr > 0.0 {
            out[COLOUR + k] = (-2.5 * (fb / fr).log10()) as f32;
        }
    }
}

/// Median and 1.4826·MAD of the finite border pixels; None if too few.
fn border_stats(band: &[f32], h: usize, w: usize, scratch: &mut Vec<f32>) -> Option<(f32, f32)> {
    let bw = (h.min(w) / 16).max(2);
    scratch.clear();
    for y in 0..h {
        let row = &band[y * w..(y + 1) * w];
        if y < bw || y >= h - bw {
            scratch.extend(row.iter().copied().filter(|v| v.is_finite()));
        } else {
            scratch.extend(row[..bw].iter().chain(&row[w - bw..]).copied().filter(|v| v.is_finite()));
        }
    }
    if scratch.len() < 8 {
        return None;
    }
    let median = select_median(scratch);
    for v in scratch.iter_mut() {
        *v = (*v - median).abs();
    }
    let mad = select_median(scratch);
    Some((median, 1.4826 * mad))
}

fn select_median(v: &mut [f32]) -> f32 {
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// Sky-subtracted copy of a band; non-finite pixels get the mean of their
/// finite 8-neighbours (or the sky).
fn impute(band: &[f32], level: f32, h: usize, w: usize, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(band) {
        *o = v - level;
    }
    for y in 0..h {
        for x in 0..w {
            if band[y * w + x].is_finite() {
                continue;
            }
            let (mut sum, mut n) = (0.0f32, 0u32);
            for ny in y.saturating_sub(1)..(y + 2).min(h) {
                for nx in x.saturating_sub(1)..(x + 2).min(w) {
                    let v = band[ny * w + nx];
                    if v.is_finite() {
                        sum += v;
                        n += 1;
                    }
                }
            }
            out[y * w + x] = if n > 0 { sum / n as f32 - level } else { 0.0 };
        }
    }
}

fn asinh_mag(flux: f64) -> f32 {
    (-2.5 / std::f64::consts::LN_10 * (flux / 2.0).asinh()) as f32
}

#[derive(Clone, Copy)]
struct Grid {
    h: usize,
    w: usize,
}

/// Binary (isophote) moments of a pixel set.
#[derive(Clone, Copy, Default)]
struct Moments {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    yy: f64,
    xy: f64,
}

struct Ellipse {
    cx: f64,
    cy: f64,
    /// Semi-major axis of the uniform ellipse with these moments, pixels.
    a: f64,
    q: f64,
    /// Degrees in [0, 180).
    pa: f64,
}

impl Moments {
    fn add(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.yy += y * y;
        self.xy += x * y;
    }

    fn ellipse(&self) -> Option<Ellipse> {
        if self.n < MIN_ISO_PIXELS {
            return None;
        }
        let (cx, cy) = (self.x / self.n, self.y / self.n);
        // A pixel is a unit square, not a point: +1/12 on the diagonal.
        let mxx = self.xx / self.n - cx * cx + 1.0 / 12.0;
        let myy = self.yy / self.n - cy * cy + 1.0 / 12.0;
        let mxy = self.xy / self.n - cx * cy;
        let mean = 0.5 * (mxx + myy);
        let diff = (0.25 * (mxx - myy).powi(2) + mxy * mxy).sqrt();
        let (major, minor) = (mean + diff, (mean - diff).max(0.0));
        let pa = (0.5 * (2.0 * mxy).atan2(mxx - myy)).to_degrees().rem_euclid(180.0);
        // A uniform ellipse of semi-axes a, b has second moments a²/4, b²/4.
        Some(Ellipse { cx, cy, a: 2.0 * major.sqrt(), q: (minor / major).sqrt(), pa: pa % 180.0 })
    }
}

/// Heap entry of the priority flood: pixel and the highest level at which it
/// is connected to the seed.
struct Node {
    key: f32,
    idx: u32,
}

impl PartialEq for Node {
    fn eq(&self, o: &Self) -> bool {
        self.key.total_cmp(&o.key) == Ordering::Equal
    }
}
impl Eq for Node {}
impl PartialOrd for Node {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Node {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.total_cmp(&o.key)
    }
}

/// Pixel states during segmentation.
const UNSEEN: u8 = 0;
const SEGMENT: u8 = 1;
const OTHER: u8 = 2;

struct Flood {
    /// Moments of the connected region above each isophote level.
    iso_moments: [Moments; N_ISO],
    /// Segment pixels (above the segment level, connected to the seed).
    segment: Vec<u32>,
    /// Flux-weighted centroid of the segment (x, y).
    centroid: (f64, f64),
    state: Vec<u8>,
}

impl Grid {
    fn xy(&self, i: usize) -> (usize, usize) {
        (i % self.w, i / self.w)
    }

    fn neighbours(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let (x, y) = self.xy(i);
        let ys = y.saturating_sub(1)..(y + 2).min(self.h);
        ys.flat_map(move |ny| (x.saturating_sub(1)..(x + 2).min(self.w)).map(move |nx| ny * self.w + nx))
            .filter(move |&j| j != i)
    }

    /// Brightest 3×3-box mean near the image centre: (pixel, value).
    fn central_peak(&self, img: &[f32]) -> (usize, f32) {
        let half = (self.h.min(self.w) / 8).max(2);
        let (cy, cx) = (self.h / 2, self.w / 2);
        let mut best = (cy * self.w + cx, f32::NEG_INFINITY);
        for y in cy.saturating_sub(half)..(cy + half).min(self.h - 1) + 1 {
            for x in cx.saturating_sub(half)..(cx + half).min(self.w - 1) + 1 {
                let i = y * self.w + x;
                let (sum, n) = self.neighbours(i).chain([i]).fold((0.0, 0), |(s, n), j| (s + img[j], n + 1));
                let mean = sum / n as f32;
                if mean > best.1 {
                    best = (i, mean);
                }
            }
        }
        best
    }

    /// Priority flood from the seed over pixels ≥ `floor`. Pixels come off
    /// the heap in decreasing order of the level at which they join the
    /// seed's region, so the region above each isophote level is a prefix of
    /// the pop order: one pass gives every isophote.
    fn flood(&self, img: &[f32], seed: usize, floor: f32, levels: &[f32; N_ISO]) -> Flood {
        let mut state = vec![UNSEEN; img.len()];
        let mut heap = BinaryHeap::new();
        let mut segment = Vec::new();
        let mut iso_moments = [Moments::default(); N_ISO];
        let mut running = Moments::default();
        let (mut next_level, mut f, mut fx, mut fy) = (0, 0.0f64, 0.0f64, 0.0f64);
        if img[seed] >= floor {
            state[seed] = SEGMENT;
            heap.push(Node { key: img[seed], idx: seed as u32 });
        }
        while let Some(Node { key, idx }) = heap.pop() {
            while next_level < N_ISO && key < levels[next_level] {
                iso_moments[next_level] = running;
                next_level += 1;
            }
            let i = idx as usize;
            let (x, y) = self.xy(i);
            let (x, y) = (x as f64, y as f64);
            running.add(x, y);
            segment.push(idx);
            let v = img[i] as f64;
            (f, fx, fy) = (f + v, fx + v * x, fy + v * y);
            for j in self.neighbours(i) {
                if state[j] == UNSEEN && img[j] >= floor {
                    state[j] = SEGMENT;
                    heap.push(Node { key: key.min(img[j]), idx: j as u32 });
                }
            }
        }
        for m in iso_moments.iter_mut().skip(next_level) {
            *m = running;
        }
        let centroid = if f > 0.0 {
            (fx / f, fy / f)
        } else {
            let (x, y) = self.xy(seed);
            (x as f64, y as f64)
        };
        Flood { iso_moments, segment, centroid, state }
    }

    /// Pixels of detached regions above `floor` with at least
    /// [`MIN_OTHER_AREA`] pixels (marks every detached pixel visited).
    fn other_sources(&self, img: &[f32], floor: f32, state: &mut [u8]) -> Vec<u32> {
        let mut others = Vec::new();
        let mut stack = Vec::new();
        for start in 0..img.len() {
            if state[start] != UNSEEN || img[start] < floor {
                continue;
            }
            let first = others.len();
            state[start] = OTHER;
            stack.push(start);
            while let Some(i) = stack.pop() {
                others.push(i as u32);
                for j in self.neighbours(i) {
                    if state[j] == UNSEEN && img[j] >= floor {
                        state[j] = OTHER;
                        stack.push(j);
                    }
                }
            }
            if others.len() - first < MIN_OTHER_AREA {
                others.truncate(first); // a noise peak, not a source
            }
        }
        others
    }
}

/// Sum of the pixels whose centres lie within r of c.
fn aperture_flux(img: &[f32], g: &Grid, c: (f64, f64), r: f64) -> f64 {
    let (y0, y1) = ((c.1 - r).floor().max(0.0) as usize, ((c.1 + r).ceil() as usize).min(g.h - 1));
    let (x0, x1) = ((c.0 - r).floor().max(0.0) as usize, ((c.0 + r).ceil() as usize).min(g.w - 1));
    let mut sum = 0.0;
    for y in y0..=y1 {
        let dy = y as f64 - c.1;
        for x in x0..=x1 {
            let dx = x as f64 - c.0;
            if dx * dx + dy * dy <= r * r {
                sum += img[y * g.w + x] as f64;
            }
        }
    }
    sum
}

/// Cumulative flux on radii k·STEP, each pixel's flux spread evenly over
/// [r − 0.5, r + 0.5] (clamped at 0).
struct GrowthCurve {
    cum: Vec<f64>,
    total: f64,
}

impl GrowthCurve {
    const STEP: f64 = 0.25;

    fn new(img: &[f32], g: &Grid, c: (f64, f64), r_max: f64) -> Option<Self> {
        if r_max.is_nan() || r_max < 2.0 {
            return None;
        }
        let n = ((r_max + 1.0) / Self::STEP).ceil() as usize + 2;
        let mut inc = vec![0.0f64; n];
        let reach = r_max + 0.5;
        let (y0, y1) = ((c.1 - reach).floor().max(0.0) as usize, ((c.1 + reach).ceil() as usize).min(g.h - 1));
        let (x0, x1) = ((c.0 - reach).floor().max(0.0) as usize, ((c.0 + reach).ceil() as usize).min(g.w - 1));
        for y in y0..=y1 {
            let dy = y as f64 - c.1;
            for x in x0..=x1 {
                let dx = x as f64 - c.0;
                let r = (dx * dx + dy * dy).sqrt();
                if r - 0.5 >= r_max {
                    continue;
                }
                let f = img[y * g.w + x] as f64;
                let (r0, r1) = ((r - 0.5).max(0.0), r + 0.5);
                // Deposit the ramp from r0 to r1 as increments between grid radii.
                let j0 = (r0 / Self::STEP).floor() as usize + 1;
                let j1 = ((r1 / Self::STEP).ceil() as usize).min(n - 1);
                let mut prev = 0.0;
                for (j, slot) in inc.iter_mut().enumerate().take(j1 + 1).skip(j0) {
                    let v = ((j as f64 * Self::STEP - r0) / (r1 - r0)).clamp(0.0, 1.0);
                    *slot += f * (v - prev);
                    prev = v;
                }
            }
        }
        let mut cum = inc;
        for j in 1..cum.len() {
            cum[j] += cum[j - 1];
        }
        let mut gc = GrowthCurve { cum, total: 0.0 };
        gc.total = gc.at(r_max);
        (gc.total > 0.0).then_some(gc)
    }

    fn at(&self, r: f64) -> f64 {
        let x = r / Self::STEP;
        let j = (x.floor() as usize).min(self.cum.len() - 2);
        let t = x - j as f64;
        self.cum[j] * (1.0 - t) + self.cum[j + 1] * t
    }

    /// Smallest radius enclosing `frac` of the total (first crossing).
    fn radius(&self, frac: f64) -> f64 {
        let target = frac * self.total;
        for j in 1..self.cum.len() {
            if self.cum[j] >= target {
                let (a, b) = (self.cum[j - 1], self.cum[j]);
                let t = if b > a { (target - a) / (b - a) } else { 0.0 };
                return (j as f64 - 1.0 + t.clamp(0.0, 1.0)) * Self::STEP;
            }
        }
        f64::NAN
    }
}

/// Rotational asymmetry within radius r, minimised over the rotation centre
/// (Conselice 2000) by a pattern search from the flux centroid.
fn asymmetry(img: &[f32], g: &Grid, c: (f64, f64), r: f64, noise: f64) -> f32 {
    let mut best = (c, asymmetry_at(img, g, c, r, noise));
    if !best.1.is_finite() {
        return f32::NAN;
    }
    let mut step = 0.25;
    while step > 0.04 {
        let (x, y) = best.0;
        let moved = [(x + step, y), (x - step, y), (x, y + step), (x, y - step)]
            .into_iter()
            .map(|p| (p, asymmetry_at(img, g, p, r, noise)))
            .filter(|(_, a)| a.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match moved {
            Some(m) if m.1 < best.1 => best = m,
            _ => step /= 2.0,
        }
    }
    best.1 as f32
}

/// Asymmetry for rotation by 180° about c: Σ|I − I₁₈₀| / Σ|I| over pixels
/// within r of c (r shrunk to stay inside the image), with I₁₈₀ bilinearly
/// interpolated, minus the expected noise term.
fn asymmetry_at(img: &[f32], g: &Grid, c: (f64, f64), r: f64, noise: f64) -> f64 {
    let edge = (c.0 - 0.5).min(g.w as f64 - 1.5 - c.0).min(c.1 - 0.5).min(g.h as f64 - 1.5 - c.1);
    let r = r.min(edge);
    if r.is_nan() || r < 1.0 {
        return f64::NAN;
    }
    // The rotated position of pixel x is 2c − x; its bilinear weights are the
    // same for every pixel, and so is the noise of the interpolated value.
    let (sx, sy) = (2.0 * c.0, 2.0 * c.1);
    let (fx, fy) = (sx - sx.floor(), sy - sy.floor());
    let w = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
    let (sxf, syf) = (sx.floor() as usize, sy.floor() as usize);
    let (mut num, mut den, mut n) = (0.0f64, 0.0f64, 0usize);
    for y in (c.1 - r).ceil() as usize..=(c.1 + r).floor() as usize {
        let dy = y as f64 - c.1;
        let half = (r * r - dy * dy).max(0.0).sqrt();
        let (x0, x1) = ((c.0 - half).ceil() as usize, (c.0 + half).floor() as usize);
        if x1 < x0 {
            continue;
        }
        // Pixel x rotates to 2c − x, between columns sxf − x and sxf − x + 1
        // of rows syf − y and syf − y + 1 (inside, by the edge margin).
        let ry = syf - y;
        let row = &img[y * g.w..(y + 1) * g.w];
        let (r0, r1) = (&img[ry * g.w..(ry + 1) * g.w], &img[(ry + 1) * g.w..(ry + 2) * g.w]);
        for (x, &v) in row.iter().enumerate().take(x1 + 1).skip(x0) {
            let rx = sxf - x;
            let rot = w[0] * r0[rx] as f64 + w[1] * r0[rx + 1] as f64 + w[2] * r1[rx] as f64 + w[3] * r1[rx + 1] as f64;
            let v = v as f64;
            num += (v - rot).abs();
            den += v.abs();
        }
        n += x1 - x0 + 1;
    }
    if den <= 0.0 {
        return f64::NAN;
    }
    // E|n₁ − n₂| for n₁ ~ N(0, σ²) and the interpolated n₂ ~ N(0, σ² Σw²).
    let sum_w2: f64 = w.iter().map(|w| w * w).sum();
    let per_pixel = (2.0 / std::f64::consts::PI).sqrt() * noise * (1.0 + sum_w2).sqrt();
    let noise_term = if noise.is_finite() { n as f64 * per_pixel } else { 0.0 };
    (num - noise_term) / den
}

/// Gini coefficient and M20 of the segment's pixels.
fn gini_m20(img: &[f32], g: &Grid, segment: &[u32], c: (f64, f64)) -> (f32, f32) {
    if segment.len() < 2 {
        return (f32::NAN, f32::NAN);
    }
    // (flux, r²) sorted by flux.
    let mut px: Vec<(f32, f32)> = segment
        .iter()
        .map(|&i| {
            let (x, y) = g.xy(i as usize);
            let (dx, dy) = (x as f64 - c.0, y as f64 - c.1);
            (img[i as usize].max(0.0), (dx * dx + dy * dy) as f32)
        })
        .collect();
    px.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let n = px.len() as f64;
    let total: f64 = px.iter().map(|p| p.0 as f64).sum();
    if total <= 0.0 {
        return (f32::NAN, f32::NAN);
    }
    let gini = px.iter().enumerate().map(|(i, p)| (2.0 * (i as f64 + 1.0) - n - 1.0) * p.0 as f64).sum::<f64>()
        / (total / n * n * (n - 1.0));
    let m_tot: f64 = px.iter().map(|p| p.0 as f64 * p.1 as f64).sum();
    let (mut cum, mut m) = (0.0, 0.0);
    for p in px.iter().rev() {
        cum += p.0 as f64;
        m += p.0 as f64 * p.1 as f64;
        if cum >= 0.2 * total {
            break;
        }
    }
    let m20 = if m_tot > 0.0 && m > 0.0 { (m / m_tot).log10() as f32 } else { f32::NAN };
    (gini as f32, m20)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_in_arcsec_agree_across_pixel_scales() {
        use super::*;
        // The same galaxy (sigma 1.2") on a 0.2"/px and a 0.4"/px grid.
        let draw = |n: usize, scale: f32| -> Vec<f32> {
            let c = (n as f32 - 1.0) / 2.0;
            let sigma = 1.2 / scale;
            (0..n * n)
                .map(|i| {
                    let (y, x) = ((i / n) as f32 - c, (i % n) as f32 - c);
                    100.0 * (-(x * x + y * y) / (2.0 * sigma * sigma)).exp()
                })
                .collect()
        };
        let mut fine = morphology(&draw(64, 0.2), 1, 64, 64, 0);
        let mut coarse = morphology(&draw(32, 0.4), 1, 32, 32, 0);
        assert!((fine[R50] / coarse[R50] - 2.0).abs() < 0.15, "{} vs {} px", fine[R50], coarse[R50]);
        sizes_to_arcsec(&mut fine, Some(0.2));
        sizes_to_arcsec(&mut coarse, Some(0.4));
        // Half-light radius of a Gaussian: 1.1774 sigma = 1.41".
        assert!((fine[R50] - 1.41).abs() < 0.1 && (coarse[R50] - 1.41).abs() < 0.15, "{} {}", fine[R50], coarse[R50]);
        let mut unknown = fine.clone();
        sizes_to_arcsec(&mut unknown, None);
        assert!(unknown[R50].is_nan());
        let names = feature_names_with_unit(&["r".to_string()], true);
        assert_eq!(names[R50], "r50_arcsec");
        assert_eq!(feature_names_with_unit(&["r".to_string()], false)[R50], "r50_px");
    }

    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    const N: usize = 64;

    /// Elliptical profile sampled at pixel centres: `f(r_ell)` with r_ell the
    /// elliptical radius in units of the major-axis scale.
    fn profile(amp: f32, c: (f64, f64), scale: f64, q: f64, pa_deg: f64, f: impl Fn(f64) -> f64) -> Vec<f32> {
        let (s, co) = pa_deg.to_radians().sin_cos();
        let mut img = vec![0.0f32; N * N];
        for y in 0..N {
            for x in 0..N {
                let (dx, dy) = (x as f64 - c.0, y as f64 - c.1);
                let (u, v) = (dx * co + dy * s, -dx * s + dy * co);
                let r = ((u / scale).powi(2) + (v / (scale * q)).powi(2)).sqrt();
                img[y * N + x] = amp * f(r) as f32;
            }
        }
        img
    }

    fn gaussian(amp: f32, c: (f64, f64), sigma: f64, q: f64, pa: f64) -> Vec<f32> {
        profile(amp, c, sigma, q, pa, |r| (-0.5 * r * r).exp())
    }

    const CENTRE: (f64, f64) = (31.5, 31.5);

    fn names(n: usize) -> Vec<String> {
        ["g", "r", "i", "z", "y"][..n].iter().map(|s| s.to_string()).collect()
    }

    fn get(v: &[f32], n_bands: usize, name: &str) -> f32 {
        let i = feature_names(&names(n_bands)).iter().position(|n| n == name).unwrap();
        v[i]
    }

    fn add_noise(img: &mut [f32], sigma: f32, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = Normal::new(0.0, sigma).unwrap();
        for v in img.iter_mut() {
            *v += d.sample(&mut rng);
        }
    }

    #[test]
    fn names_match_vector_and_are_unique() {
        for nb in 1..=5 {
            let img = gaussian(100.0, CENTRE, 5.0, 1.0, 0.0).repeat(nb);
            let names = feature_names(&names(nb));
            assert_eq!(names.len(), morphology(&img, nb, N, N, 0).len());
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len());
        }
        // Bad input still has the right length.
        assert_eq!(morphology(&[1.0; 10], 5, N, N, 0).len(), feature_names(&names(5)).len());
    }

    #[test]
    fn elliptical_gaussian_axis_ratio_and_angle() {
        for (q, pa) in [(0.5, 30.0), (0.5, 120.0), (0.7, 75.0)] {
            let img = gaussian(100.0, CENTRE, 8.0, q, pa);
            let v = morphology(&img, 1, N, N, 0);
            for iso in &ISO_NAMES[..4] {
                let mq = get(&v, 1, &format!("{iso}_q")) as f64;
                let mpa = get(&v, 1, &format!("{iso}_pa")) as f64;
                assert!((mq - q).abs() < 0.05, "q {q} pa {pa} {iso}: q {mq}");
                let d = (mpa - pa).abs() % 180.0;
                assert!(d.min(180.0 - d) < 3.0, "q {q} pa {pa} {iso}: pa {mpa}");
                assert!(get(&v, 1, &format!("{iso}_offset")) < 0.05);
            }
            for pair in ISO_NAMES.windows(2) {
                assert!(get(&v, 1, &format!("{}_{}_dpa", pair[0], pair[1])) < 3.0);
                assert!(get(&v, 1, &format!("{}_{}_dq", pair[0], pair[1])).abs() < 0.05);
            }
        }
    }

    #[test]
    fn exponential_disc_axis_ratio() {
        let img = profile(100.0, CENTRE, 6.0, 0.5, 30.0, |r| (-r).exp());
        let v = morphology(&img, 1, N, N, 0);
        for iso in &ISO_NAMES[1..4] {
            assert!((get(&v, 1, &format!("{iso}_q")) - 0.5).abs() < 0.05, "{iso}");
            let pa = get(&v, 1, &format!("{iso}_pa"));
            assert!((pa - 30.0).abs() < 3.0, "{iso} {pa}");
        }
    }

    #[test]
    fn round_profile_is_round() {
        let v = morphology(&gaussian(100.0, CENTRE, 6.0, 1.0, 0.0), 1, N, N, 0);
        for iso in ISO_NAMES {
            let q = get(&v, 1, &format!("{iso}_q"));
            assert!(q > 0.95, "{iso}: {q}");
        }
    }

    #[test]
    fn gaussian_concentration_and_half_light_radius() {
        let sigma = 5.0;
        let v = morphology(&gaussian(100.0, CENTRE, sigma, 1.0, 0.0), 1, N, N, 0);
        // Enclosed fraction of a 2-D Gaussian: 1 − exp(−r²/2σ²).
        let r = |f: f64| sigma * (-2.0 * (1.0 - f).ln()).sqrt();
        let c = 5.0 * (r(0.8) / r(0.2)).log10();
        let got = get(&v, 1, "concentration") as f64;
        assert!((got - c).abs() < 0.1, "C {got} vs {c}");
        let r50 = get(&v, 1, "r50") as f64;
        assert!((r50 / r(0.5) - 1.0).abs() < 0.03, "r50 {r50} vs {}", r(0.5));
        // Total flux 2πσ²·amp → asinh magnitude ≈ −2.5 log10 F.
        let total = 2.0 * std::f64::consts::PI * sigma * sigma * 100.0;
        assert!((get(&v, 1, "mag_asinh") as f64 + 2.5 * total.log10()).abs() < 0.02);
        // An exponential disc is more concentrated than a Gaussian.
        let exp = morphology(&profile(100.0, CENTRE, 3.0, 1.0, 0.0, |r| (-r).exp()), 1, N, N, 0);
        assert!(get(&exp, 1, "concentration") > got as f32 + 0.3);
    }

    #[test]
    fn asymmetry_zero_when_symmetric_and_raised_by_a_blob() {
        let img = gaussian(100.0, CENTRE, 6.0, 0.6, 40.0);
        let a0 = get(&morphology(&img, 1, N, N, 0), 1, "asymmetry");
        assert!(a0.abs() < 0.01, "{a0}");
        let blob = gaussian(40.0, (CENTRE.0 + 8.0, CENTRE.1 + 3.0), 2.0, 1.0, 0.0);
        let merged: Vec<f32> = img.iter().zip(&blob).map(|(a, b)| a + b).collect();
        let v = morphology(&merged, 1, N, N, 0);
        let a1 = get(&v, 1, "asymmetry");
        assert!(a1 > 0.1, "{a1}");
        // The blob also pulls the outer isophotes' centroids away.
        assert!(get(&v, 1, "iso50_iso20_dcentroid") > 0.0);
    }

    #[test]
    fn detached_neighbour_is_ignored() {
        let img = gaussian(100.0, CENTRE, 3.0, 1.0, 0.0);
        let star = gaussian(300.0, (14.0, 48.0), 1.2, 1.0, 0.0);
        let both: Vec<f32> = img.iter().zip(&star).map(|(a, b)| a + b).collect();
        let (mut a, mut b) = (img.clone(), both);
        add_noise(&mut a, 0.5, 1);
        add_noise(&mut b, 0.5, 1);
        let (va, vb) = (morphology(&a, 1, N, N, 0), morphology(&b, 1, N, N, 0));
        for name in ["asymmetry", "concentration", "mag_asinh", "iso2_q"] {
            let (x, y) = (get(&va, 1, name), get(&vb, 1, name));
            assert!((x - y).abs() < 0.05, "{name}: {x} vs {y}");
        }
    }

    #[test]
    fn noisy_galaxy_noise_is_corrected() {
        let mut img = gaussian(50.0, CENTRE, 5.0, 0.6, 30.0);
        add_noise(&mut img, 1.0, 7);
        let v = morphology(&img, 1, N, N, 0);
        assert!((get(&v, 1, "sky_noise") - 1.0).abs() < 0.1);
        assert!(get(&v, 1, "sky_level").abs() < 0.1);
        assert!(get(&v, 1, "asymmetry").abs() < 0.05, "{}", get(&v, 1, "asymmetry"));
        assert!((get(&v, 1, "iso20_q") - 0.6).abs() < 0.1);
        let g = get(&v, 1, "gini");
        assert!(g > 0.2 && g < 0.8, "{g}");
        let m20 = get(&v, 1, "m20");
        assert!(m20 < -0.5 && m20 > -3.0, "{m20}");
    }

    #[test]
    fn masked_column_does_not_poison_features() {
        let mut img = gaussian(100.0, CENTRE, 6.0, 0.6, 30.0).repeat(2);
        add_noise(&mut img, 0.5, 3);
        let clean = morphology(&img, 2, N, N, 1);
        for band in 0..2 {
            for y in 0..N {
                img[band * N * N + y * N + 33] = f32::NAN;
            }
            img[band * N * N + 5 * N + 40] = f32::INFINITY;
        }
        let v = morphology(&img, 2, N, N, 1);
        assert!(v.iter().all(|x| x.is_finite()), "{:?}", feature_names(&names(2)).iter().zip(&v).collect::<Vec<_>>());
        assert!((get(&v, 2, "nonfinite_frac") - 65.0 / (N * N) as f32).abs() < 1e-6);
        for name in ["iso20_q", "iso50_q", "concentration", "r50"] {
            let (a, b) = (get(&clean, 2, name), get(&v, 2, name));
            assert!((a - b).abs() < 0.05 * a.abs().max(1.0), "{name}: {a} vs {b}");
        }
    }

    #[test]
    fn colour_of_a_flux_ratio() {
        let b = gaussian(100.0, CENTRE, 4.0, 0.7, 10.0);
        let a: Vec<f32> = b.iter().map(|v| 2.0 * v).collect();
        let mut img = a.clone();
        img.extend(&b);
        img.extend(&b);
        let mut noisy = img.clone();
        add_noise(&mut noisy, 0.05, 5);
        for (im, tol) in [(&img, 1e-4), (&noisy, 0.01)] {
            let v = morphology(im, 3, N, N, 1);
            let want = -2.5 * 2f32.log10();
            assert!((get(&v, 3, "g-r") - want).abs() < tol, "{}", get(&v, 3, "g-r"));
            assert!(get(&v, 3, "r-i").abs() < tol);
        }
    }

    #[test]
    fn colours_are_blue_minus_red_by_filter() {
        let s = |v: &[&str]| v.iter().map(|b| b.to_string()).collect::<Vec<_>>();
        // HSC in file order, and a file storing r, g, z (Legacy Survey style
        // names) out of wavelength order.
        let hsc = colour_pairs(&s(&["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"]));
        let names: Vec<&str> = hsc.iter().map(|p| p.2.as_str()).collect();
        assert_eq!(names, ["g-r", "r-i", "i-z", "z-y"]);
        let rgz = colour_pairs(&s(&["DES-R", "DES-G", "DES-Z"]));
        assert_eq!(rgz, vec![(1, 0, "g-r".to_string()), (0, 2, "r-z".to_string())]);
        assert_eq!(colour_pairs(&s(&["sdss_u", "sdss_g"]))[0].2, "u-g");
        // Unknown filters: file order, the file's names.
        assert_eq!(colour_pairs(&s(&["F606W", "F814W"])), vec![(0, 1, "F606W-F814W".to_string())]);
        assert_eq!(feature_names(&s(&["DES-R", "DES-G", "DES-Z"])).last().unwrap(), "r-z");
        // Detection groups colours by name: exactly the colour names are colours.
        let names = feature_names(&s(&["HSC-G", "HSC-R", "HSC-I"]));
        let colours: Vec<&String> = names.iter().filter(|n| is_colour_name(n)).collect();
        assert_eq!(colours, ["g-r", "r-i"]);

        // The value is blue minus red: a galaxy twice as bright in r as in
        // g has g-r = +0.75 whatever the file order.
        let g = gaussian(100.0, CENTRE, 4.0, 0.7, 10.0);
        let r: Vec<f32> = g.iter().map(|v| 2.0 * v).collect();
        let mut img = r.clone();
        img.extend(&g);
        let pairs: Vec<(usize, usize)> = rgz[..1].iter().map(|p| (p.0, p.1)).collect();
        let v = morphology_with_colours(&img, 2, N, N, 0, &pairs);
        assert!((v[COLOUR] - 2.5 * 2f32.log10()).abs() < 1e-3, "{}", v[COLOUR]);
    }

    #[test]
    fn empty_sky_is_undetected_not_a_crash() {
        let mut img = vec![0.0f32; N * N];
        add_noise(&mut img, 1.0, 11);
        let v = morphology(&img, 1, N, N, 0);
        assert_eq!(v.len(), feature_names(&names(1)).len());
        assert!(get(&v, 1, "mag_asinh").is_finite());
        assert!(get(&v, 1, "iso50_q").is_nan() && get(&v, 1, "concentration").is_nan());
        // An all-NaN image, and a reference band out of range.
        let v = morphology(&vec![f32::NAN; N * N], 1, N, N, 0);
        assert_eq!(v[NONFINITE], 1.0);
        assert!(morphology(&img, 1, N, N, 3)[1..].iter().all(|x| x.is_nan()));
    }

    #[test]
    #[ignore = "timing; run with --release -- --ignored --nocapture"]
    fn time_morphology() {
        let one = profile(50.0, CENTRE, 4.0, 0.6, 30.0, |r| (-r).exp());
        let mut img = one.repeat(5);
        add_noise(&mut img, 1.0, 2);
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(morphology(std::hint::black_box(&img), 5, N, N, 2));
        }
        eprintln!("morphology 64×64×5: {:.1} µs per image", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
