//! What each synthetic object *is*: position, kind, redshift, the components
//! its cutout is made of, catalogue values, and (optionally) its spectrum.
//!
//! Planning draws every random number an object needs except the pixel and
//! spectrum noise, from the object's own RNG stream, so the plan of object i
//! depends only on (seed, i) and the survey-level assignments.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::SynthConfig;
use super::bpt::BptClass;
use super::sky;
use super::spectrum::{self, SpecPlan};

/// HSC band names, in the order of the second axis of `image_array`.
pub const BANDS: [&str; 5] = ["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"];
/// HSC coadd pixel scale, arcsec per pixel.
pub const PIXEL_SCALE: f64 = 0.168;
/// AB zero point of nanomaggies: mag = 22.5 − 2.5 log10(flux).
pub const ZP_NMGY: f64 = 22.5;
const I: usize = 2;

/// Flux per band (g, r, i, z, y), nanomaggies.
pub type Fluxes = [f64; 5];

pub fn mag_to_flux(mag: f64) -> f64 {
    10f64.powf(0.4 * (ZP_NMGY - mag))
}

pub fn flux_to_mag(flux: f64) -> f64 {
    ZP_NMGY - 2.5 * flux.log10()
}

/// What an object is, as recorded in `truth.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Ring,
    Merger,
    Lens,
    Colour,
    Agn,
    /// A satellite trail across an ordinary galaxy: an artefact, not science.
    Trail,
}

impl Kind {
    /// Anomalous kinds, in the order they are dealt out.
    pub const ANOMALIES: [Kind; 6] = [Kind::Ring, Kind::Merger, Kind::Lens, Kind::Colour, Kind::Agn, Kind::Trail];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::Ring => "ring",
            Kind::Merger => "merger",
            Kind::Lens => "lens",
            Kind::Colour => "colour",
            Kind::Agn => "agn",
            Kind::Trail => "trail",
        }
    }

    /// Whether an expert would want to see it (trails are "boring anomalies").
    pub fn interesting(self) -> bool {
        !matches!(self, Kind::Normal | Kind::Trail)
    }
}

/// Spiral-arm modulation of a disc (m = 2 logarithmic spiral).
#[derive(Debug, Clone, Copy)]
pub struct Arms {
    pub amplitude: f64,
    /// tan of the pitch angle.
    pub tan_pitch: f64,
    pub phase: f64,
}

/// Geometry of one image component. Positions are in pixels with pixel j
/// spanning [j, j+1) (so pixel centres at j + 0.5); lengths in pixels;
/// angles in radians counter-clockwise from the +x axis.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Sérsic profile; total flux normalised analytically (so flux falling
    /// outside the cutout is lost, as in a real cutout).
    Sersic { x: f64, y: f64, re: f64, n: f64, q: f64, pa: f64, arms: Option<Arms> },
    /// Unresolved source (star, AGN nucleus): becomes the PSF after blurring.
    Point { x: f64, y: f64 },
    /// Small Gaussian knot (star-forming clump).
    Blob { x: f64, y: f64, sigma: f64 },
    /// Clumpy ring (ring galaxy, Einstein ring).
    Ring { x: f64, y: f64, radius: f64, width: f64, q: f64, pa: f64, knots: u32, knot_amp: f64, phase: f64 },
    /// Gravitational arc: part of a circle of `radius` around (x, y), centred
    /// on angle `phi`, with angular Gaussian extent `spread`.
    Arc { x: f64, y: f64, radius: f64, width: f64, phi: f64, spread: f64 },
    /// Tidal tail: a widening, fading spiral segment from (x, y).
    Tail { x: f64, y: f64, r0: f64, r1: f64, theta0: f64, sweep: f64, width: f64 },
    /// Straight satellite trail through (x, y) across the whole cutout.
    Trail { x: f64, y: f64, angle: f64, width: f64 },
}

/// A shape with its flux per band (the shape itself has unit flux).
#[derive(Debug, Clone)]
pub struct Component {
    pub shape: Shape,
    pub flux: Fluxes,
    /// Part of the catalogued object itself (not a neighbour or artefact).
    pub own: bool,
}

/// Missing data written as NaN.
#[derive(Debug, Clone, Copy)]
pub enum Defect {
    /// A bad column from row `from` down, in the bands of `bands` (bit mask).
    Column { x: usize, from: usize, bands: u8 },
    /// A masked rectangle in one band.
    Block { band: usize, x0: usize, y0: usize, w: usize, h: usize },
    /// The survey edge: a triangular corner with no data in any band.
    Corner { corner: u8, extent: usize },
}

/// Broad morphological class of an ordinary galaxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Morph {
    Early,
    Spiral,
    Irregular,
}

/// A galaxy cluster: shared position and redshift for some members.
#[derive(Debug, Clone, Copy)]
pub struct Cluster {
    pub ra: f64,
    pub dec: f64,
    pub z: f64,
}

/// Everything decided about one object before rendering.
#[derive(Debug, Clone)]
pub struct Galaxy {
    pub index: usize,
    pub object_id: i64,
    pub ra: f64,
    pub dec: f64,
    pub healpix: u64,
    pub kind: Kind,
    pub morph: Morph,
    /// True redshift.
    pub z: f64,
    pub components: Vec<Component>,
    pub psf_fwhm: [f32; 5],
    /// Per-pixel sky noise (nanomaggies) and residual background level.
    pub sky_sigma: [f32; 5],
    pub sky_level: [f32; 5],
    pub defect: Option<Defect>,
    /// Catalogue magnitudes (true total flux of own components + small error).
    pub mags: [f32; 5],
    pub extendedness: f32,
    pub shape11: f32,
    pub spectrum: Option<SpecPlan>,
}

impl Galaxy {
    /// True total flux per band of the object's own components.
    pub fn own_flux(&self) -> Fluxes {
        let mut f = [0.0; 5];
        for c in self.components.iter().filter(|c| c.own) {
            for (a, b) in f.iter_mut().zip(c.flux) {
                *a += b;
            }
        }
        f
    }

    pub fn bpt_class(&self) -> Option<BptClass> {
        self.spectrum.as_ref().map(|s| s.class)
    }
}

/// Survey-level decisions about one object, made before its plan.
#[derive(Debug, Clone, Copy)]
pub struct Assignment {
    pub index: usize,
    pub kind: Kind,
    /// i-band magnitude of the object's own light.
    pub imag: f64,
    /// Running number of its spectrum, if it has one.
    pub spectrum: Option<usize>,
    /// Place it on a HEALPix border with its spectrum across it.
    pub border: bool,
}

/// Survey-wide context for planning.
pub struct Context<'a> {
    pub cfg: &'a SynthConfig,
    pub depth: u8,
    pub clusters: &'a [Cluster],
}

/// Field centre (deg) and half-width (deg) of the synthetic survey.
pub const FIELD_RA: f64 = 0.0;
pub const FIELD_DEC: f64 = 2.0;
pub const FIELD_HALF: f64 = 1.5;
/// First HSC-like object id (HSC PDR3 ids are 17-digit integers).
pub const OBJECT_ID_BASE: i64 = 70_000_000_000_000_000;
/// Fraction of galaxies that live in clusters.
const CLUSTER_FRACTION: f64 = 0.15;

/// Draws an i-band magnitude from galaxy number counts, N(<m) ∝ 10^(0.35 m),
/// over the range of an HSC-like cutout sample.
pub fn draw_imag(rng: &mut impl Rng) -> f64 {
    const A: f64 = 0.35;
    let (m0, m1): (f64, f64) = (16.5, 22.5);
    let (c0, c1) = (10f64.powf(A * m0), 10f64.powf(A * m1));
    (c0 + rng.random::<f64>() * (c1 - c0)).log10() / A
}

fn normal(rng: &mut impl Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Uniform position in the field, uniform on the sphere.
fn field_position(rng: &mut impl Rng) -> (f64, f64) {
    let s0 = (FIELD_DEC - FIELD_HALF).to_radians().sin();
    let s1 = (FIELD_DEC + FIELD_HALF).to_radians().sin();
    let dec = rng.random_range(s0..s1).asin().to_degrees();
    let ra = FIELD_RA + rng.random_range(-FIELD_HALF..FIELD_HALF) / dec.to_radians().cos();
    (sky::wrap_ra(ra), dec)
}

/// Cluster centres and redshifts (drawn from the survey RNG).
pub fn draw_clusters(rng: &mut impl Rng, n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|_| {
            let (ra, dec) = field_position(rng);
            Cluster { ra, dec, z: rng.random_range(0.06..0.22) }
        })
        .collect()
}

/// Flux per band relative to the i band of a stellar population with a
/// fraction `old` (of i-band light) from an old red population at redshift z.
/// Colours roughly follow the red sequence and blue cloud of HSC galaxies.
pub fn sed(old: f64, z: f64) -> Fluxes {
    // (g−r, r−i, i−z, z−y)
    let red = [(0.75 + 2.0 * z).min(1.9), (0.38 + 0.8 * z).min(1.1), (0.22 + 0.3 * z).min(0.6), 0.08 + 0.2 * z];
    let blue = [(0.25 + 0.8 * z).min(1.0), 0.12 + 0.35 * z, 0.05 + 0.2 * z, 0.03 + 0.1 * z];
    let ratios = |c: [f64; 4]| colours_to_ratios(c[0], c[1], c[2], c[3]);
    let (r, b) = (ratios(red), ratios(blue));
    std::array::from_fn(|k| old * r[k] + (1.0 - old) * b[k])
}

/// Flux ratios relative to i from colours g−r, r−i, i−z, z−y.
pub fn colours_to_ratios(gr: f64, ri: f64, iz: f64, zy: f64) -> Fluxes {
    let rel = [gr + ri, ri, 0.0, -iz, -iz - zy];
    rel.map(|m| 10f64.powf(-0.4 * m))
}

/// Scales a relative SED to an i-band flux, with a little colour scatter.
fn fluxes(sed: Fluxes, flux_i: f64, rng: &mut impl Rng) -> Fluxes {
    std::array::from_fn(|k| {
        let jitter = if k == I { 1.0 } else { 10f64.powf(-0.4 * 0.04 * normal(rng)) };
        sed[k] * flux_i * jitter
    })
}

/// Bulge/disc model of an ordinary galaxy centred at (x, y) with i flux `fi`.
fn host(rng: &mut impl Rng, morph: Morph, fi: f64, z: f64, x: f64, y: f64, re_px: f64) -> Vec<Component> {
    let pa = rng.random_range(0.0..std::f64::consts::PI);
    // Intrinsic disc thickness 0.15; cos(inclination) uniform.
    let cos_i: f64 = rng.random();
    let q_disc = (cos_i * cos_i * (1.0 - 0.15f64 * 0.15) + 0.15 * 0.15).sqrt();
    let mut out = Vec::with_capacity(4);
    let sersic = |n: f64, re: f64, q: f64, pa: f64, arms: Option<Arms>, flux: Fluxes| Component {
        shape: Shape::Sersic { x, y, re, n, q, pa, arms },
        flux,
        own: true,
    };
    match morph {
        Morph::Early => {
            let bt = rng.random_range(0.65..1.0);
            let q = rng.random_range(0.55..1.0);
            let n = rng.random_range(3.0..5.0);
            out.push(sersic(n, re_px, q, pa, None, fluxes(sed(1.0, z), bt * fi, rng)));
            if bt < 0.97 {
                let disc_sed = sed(0.8, z);
                out.push(sersic(
                    1.0,
                    re_px * 1.6,
                    q_disc.max(q * 0.8),
                    pa,
                    None,
                    fluxes(disc_sed, (1.0 - bt) * fi, rng),
                ));
            }
        }
        Morph::Spiral => {
            let bt = rng.random_range(0.05..0.5);
            let arms = (q_disc > 0.4).then(|| Arms {
                amplitude: rng.random_range(0.25..0.6),
                tan_pitch: rng.random_range(12f64..25.0).to_radians().tan(),
                phase: rng.random_range(0.0..std::f64::consts::TAU),
            });
            let old = rng.random_range(0.2..0.6);
            out.push(sersic(1.0, re_px, q_disc, pa, arms, fluxes(sed(old, z), (1.0 - bt) * fi, rng)));
            let re_b = re_px * rng.random_range(0.2..0.45);
            let n_b = rng.random_range(1.5..4.0);
            out.push(sersic(n_b, re_b, rng.random_range(0.6..1.0), pa, None, fluxes(sed(1.0, z), bt * fi, rng)));
        }
        Morph::Irregular => {
            // Clumpy blue disc: some of the light in star-forming knots.
            let clump_frac = rng.random_range(0.05..0.25);
            let old = rng.random_range(0.0..0.15);
            out.push(sersic(
                rng.random_range(0.7..1.3),
                re_px,
                q_disc.max(0.3),
                pa,
                None,
                fluxes(sed(old, z), (1.0 - clump_frac) * fi, rng),
            ));
            let n_clumps = rng.random_range(1..=4);
            for _ in 0..n_clumps {
                let (r, t) = (re_px * rng.random_range(0.2..1.3), rng.random_range(0.0..std::f64::consts::TAU));
                out.push(Component {
                    shape: Shape::Blob { x: x + r * t.cos(), y: y + r * t.sin(), sigma: rng.random_range(0.4..1.0) },
                    flux: fluxes(sed(0.0, z), clump_frac * fi / n_clumps as f64, rng),
                    own: true,
                });
            }
        }
    }
    out
}

/// Half-light radius in arcsec for an i magnitude (bright galaxies are bigger).
fn draw_re_arcsec(rng: &mut impl Rng, imag: f64, morph: Morph, max: f64) -> f64 {
    let median = 1.3 * 10f64.powf(-0.1 * (imag - 20.0)) * if morph == Morph::Early { 0.7 } else { 1.0 };
    (median * 10f64.powf(0.18 * normal(rng))).clamp(0.25, max)
}

fn draw_morph(rng: &mut impl Rng, in_cluster: bool) -> Morph {
    let (pe, ps) = if in_cluster { (0.7, 0.25) } else { (0.3, 0.5) };
    let u: f64 = rng.random();
    if u < pe {
        Morph::Early
    } else if u < pe + ps {
        Morph::Spiral
    } else {
        Morph::Irregular
    }
}

/// Redshift for an i magnitude: fainter galaxies are further away.
fn draw_z(rng: &mut impl Rng, imag: f64) -> f64 {
    let median = 0.1 * 10f64.powf(0.16 * (imag - 17.3));
    (median * (0.35 * normal(rng)).exp()).clamp(0.01, 1.5)
}

/// Plans one object. `rng` must be the object's own planning stream.
///
/// The steps below draw from `rng` in a fixed order (position, morphology,
/// cutout centre, components, observing conditions, photometry, spectrum):
/// changing that order changes every synthetic survey.
pub fn plan(ctx: &Context, a: &Assignment, rng: &mut ChaCha8Rng) -> Galaxy {
    let (in_cluster, ra, dec, z) = place(ctx, a, rng);
    let morph = draw_morph(rng, in_cluster);
    let frame = Frame::new(ctx.cfg.size, a.imag, z, rng);
    let body = body(&frame, a.kind, morph, rng);
    let seen = Seen::draw(rng, a.kind, ctx.cfg.size);
    let mut g = Galaxy {
        index: a.index,
        object_id: OBJECT_ID_BASE + a.index as i64,
        ra,
        dec,
        healpix: 0,
        kind: a.kind,
        morph: body.morph,
        z,
        components: body.components,
        psf_fwhm: seen.psf_fwhm,
        sky_sigma: seen.sky_sigma,
        sky_level: seen.sky_level,
        defect: seen.defect,
        mags: [0.0; 5],
        extendedness: if body.nucleus_ratio > 1.2 { 0.0 } else { 1.0 },
        shape11: 0.0,
        spectrum: None,
    };
    let own = g.own_flux();
    g.mags = catalogue_mags(own, rng);
    g.shape11 = shape11(&g);
    if let Some(number) = a.spectrum {
        add_spectrum(ctx, a.border, number, own, &mut g, rng);
    }
    g.healpix = sky::healpix(ctx.depth, g.ra, g.dec);
    g
}

const TAU: f64 = std::f64::consts::TAU;

/// Arcsec to pixels.
fn px(arcsec: f64) -> f64 {
    arcsec / PIXEL_SCALE
}

/// Position and redshift: some galaxies are cluster members (first return
/// value), the rest field galaxies; SDSS-like spectra are of nearby ones.
fn place(ctx: &Context, a: &Assignment, rng: &mut ChaCha8Rng) -> (bool, f64, f64, f64) {
    let cluster = (!ctx.clusters.is_empty() && rng.random_bool(CLUSTER_FRACTION))
        .then(|| ctx.clusters[rng.random_range(0..ctx.clusters.len())]);
    let (ra, dec, mut z) = match cluster {
        Some(c) => {
            let (e, n) = (72.0 * normal(rng), 72.0 * normal(rng)); // σ = 1.2'
            let (ra, dec) = sky::offset(c.ra, c.dec, e, n);
            (ra, dec, (c.z + 0.003 * normal(rng)).max(0.01))
        }
        None => {
            let (ra, dec) = field_position(rng);
            (ra, dec, draw_z(rng, a.imag))
        }
    };
    if a.spectrum.is_some() && !(0.02..=0.25).contains(&z) {
        z = rng.random_range(0.03..0.25);
    }
    (cluster.is_some(), ra, dec, z)
}

/// The cutout an object is planned in: its size, centre, i-band flux and
/// redshift, shared by every kind's component builder.
struct Frame {
    size: f64,
    half_arcsec: f64,
    /// Largest half-light radius (arcsec) that keeps a galaxy inside the cutout.
    max_re: f64,
    cx: f64,
    cy: f64,
    imag: f64,
    fi: f64,
    z: f64,
}

impl Frame {
    fn new(size: usize, imag: f64, z: f64, rng: &mut ChaCha8Rng) -> Frame {
        let size = size as f64;
        let half_arcsec = 0.5 * size * PIXEL_SCALE;
        // The centre sits within half a pixel of the cutout centre.
        let cx = 0.5 * size + rng.random_range(-0.5..0.5);
        let cy = 0.5 * size + rng.random_range(-0.5..0.5);
        Frame { size, half_arcsec, max_re: half_arcsec / 3.0, cx, cy, imag, fi: mag_to_flux(imag), z }
    }

    /// An ordinary galaxy of this frame's magnitude, centred in it.
    fn host(&self, morph: Morph, rng: &mut ChaCha8Rng) -> Vec<Component> {
        let re = draw_re_arcsec(rng, self.imag, morph, self.max_re);
        host(rng, morph, self.fi, self.z, self.cx, self.cy, px(re))
    }
}

/// What an object's kind decides: its components, its morphology (some
/// kinds force one) and the nucleus-to-host flux ratio (AGN only).
struct Body {
    components: Vec<Component>,
    morph: Morph,
    nucleus_ratio: f64,
}

fn body(f: &Frame, kind: Kind, morph: Morph, rng: &mut ChaCha8Rng) -> Body {
    let plain = |components| Body { components, morph, nucleus_ratio: 0.0 };
    match kind {
        Kind::Normal | Kind::Trail => {
            let mut components = f.host(morph, rng);
            if kind == Kind::Trail {
                components.push(trail(f, rng));
            } else if rng.random_bool(0.15) {
                components.push(neighbour(rng, f.imag, f.z, f.cx, f.cy, f.half_arcsec));
            }
            plain(components)
        }
        Kind::Ring => Body { components: ring(f, rng), morph: Morph::Spiral, nucleus_ratio: 0.0 },
        Kind::Merger => plain(merger(f, rng)),
        Kind::Lens => Body { components: lens(f, rng), morph: Morph::Early, nucleus_ratio: 0.0 },
        Kind::Colour => plain(odd_colour(f, morph, rng)),
        Kind::Agn => agn(f, rng),
    }
}

/// A straight streak in one or two adjacent bands, as left by a satellite in
/// a single exposure.
fn trail(f: &Frame, rng: &mut ChaCha8Rng) -> Component {
    let mut flux = [0.0; 5];
    let band = rng.random_range(0..5);
    let level = f.fi * rng.random_range(0.8..4.0);
    flux[band] = level;
    if rng.random_bool(0.3) {
        flux[if band == 4 { 3 } else { band + 1 }] = level * rng.random_range(0.3..1.0);
    }
    let (r, t) = (rng.random_range(0.0..f.size / 3.0), rng.random_range(0.0..TAU));
    Component {
        shape: Shape::Trail {
            x: f.cx + r * t.cos(),
            y: f.cy + r * t.sin(),
            angle: rng.random_range(0.0..TAU / 2.0),
            width: rng.random_range(0.4..1.2),
        },
        flux,
        own: false,
    }
}

/// A ring galaxy: a small red core inside a clumpy blue ring.
fn ring(f: &Frame, rng: &mut ChaCha8Rng) -> Vec<Component> {
    let core = rng.random_range(0.1..0.3);
    let nucleus = Component {
        shape: Shape::Sersic {
            x: f.cx,
            y: f.cy,
            re: px(rng.random_range(0.2..0.4)),
            n: rng.random_range(1.5..3.0),
            q: rng.random_range(0.7..1.0),
            pa: 0.0,
            arms: None,
        },
        flux: fluxes(sed(0.9, f.z), core * f.fi, rng),
        own: true,
    };
    let radius = px(rng.random_range(1.2..(0.55 * f.half_arcsec).max(1.3)));
    let ring = Component {
        shape: Shape::Ring {
            x: f.cx,
            y: f.cy,
            radius,
            width: radius * rng.random_range(0.1..0.22),
            q: rng.random_range(0.5..1.0),
            pa: rng.random_range(0.0..TAU / 2.0),
            knots: rng.random_range(4..=9),
            knot_amp: rng.random_range(0.2..0.6),
            phase: rng.random_range(0.0..TAU),
        },
        flux: fluxes(sed(0.1, f.z), (1.0 - core) * f.fi, rng),
        own: true,
    };
    vec![nucleus, ring]
}

/// Two galaxies close together with one or two tidal tails.
fn merger(f: &Frame, rng: &mut ChaCha8Rng) -> Vec<Component> {
    let primary = rng.random_range(0.45..0.7);
    let tail = rng.random_range(0.1..0.25);
    let secondary = 1.0 - primary - tail;
    let m1 = if rng.random_bool(0.5) { Morph::Spiral } else { Morph::Early };
    let re1 = draw_re_arcsec(rng, f.imag + 0.5, m1, f.max_re * 0.8);
    let sep = px(rng.random_range(1.0..2.5f64).min(0.6 * f.half_arcsec));
    let t = rng.random_range(0.0..TAU);
    // Put the pair's light centre near the cutout centre.
    let (x1, y1) = (f.cx - 0.4 * sep * t.cos(), f.cy - 0.4 * sep * t.sin());
    let (x2, y2) = (f.cx + 0.6 * sep * t.cos(), f.cy + 0.6 * sep * t.sin());
    let mut components = host(rng, m1, primary * f.fi, f.z, x1, y1, px(re1));
    let re2 = draw_re_arcsec(rng, f.imag + 1.0, Morph::Spiral, f.max_re * 0.6);
    components.extend(host(rng, Morph::Spiral, secondary * f.fi, f.z, x2, y2, px(re2)));
    let two_tails = rng.random_bool(0.5);
    let per_tail = if two_tails { 0.5 } else { 1.0 } * tail * f.fi;
    let dir = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    for (k, &(x, y)) in [(x1, y1), (x2, y2)].iter().enumerate().take(if two_tails { 2 } else { 1 }) {
        let r1 = px(rng.random_range(2.5..(0.9 * f.half_arcsec).max(2.6)));
        components.push(Component {
            shape: Shape::Tail {
                x,
                y,
                r0: px(0.4),
                r1,
                theta0: t + if k == 0 { std::f64::consts::PI } else { 0.0 } + rng.random_range(-0.6..0.6),
                sweep: dir * rng.random_range(0.8..2.0),
                width: px(rng.random_range(0.2..0.45)),
            },
            flux: fluxes(sed(0.3, f.z), per_tail, rng),
            own: true,
        });
    }
    components
}

/// A red elliptical lensing a blue background galaxy into arcs or a ring.
fn lens(f: &Frame, rng: &mut ChaCha8Rng) -> Vec<Component> {
    let lens_frac = rng.random_range(0.65..0.88);
    let re = rng.random_range(0.6..1.4f64).min(f.max_re);
    let deflector = Component {
        shape: Shape::Sersic {
            x: f.cx,
            y: f.cy,
            re: px(re),
            n: rng.random_range(3.5..5.0),
            q: rng.random_range(0.7..1.0),
            pa: rng.random_range(0.0..TAU / 2.0),
            arms: None,
        },
        flux: fluxes(sed(1.0, f.z), lens_frac * f.fi, rng),
        own: true,
    };
    let mut components = vec![deflector];
    components.extend(lensed_source(f, (1.0 - lens_frac) * f.fi, rng));
    components
}

/// The lensed images of a lens's source, carrying `arc_flux` in i.
fn lensed_source(f: &Frame, arc_flux: f64, rng: &mut ChaCha8Rng) -> Vec<Component> {
    // The source is a blue star-forming galaxy at z ~ 1–2: flat in f_ν,
    // so much bluer than the red lens in g−i.
    let src_sed = colours_to_ratios(
        rng.random_range(0.0..0.3),
        rng.random_range(0.0..0.25),
        rng.random_range(-0.1..0.15),
        rng.random_range(-0.1..0.1),
    );
    let theta_e = px(rng.random_range(1.0..2.2f64).min(0.7 * f.half_arcsec));
    let width = px(rng.random_range(0.08..0.16));
    let (x, y) = (f.cx, f.cy);
    if rng.random_bool(0.25) {
        // Nearly aligned source: an Einstein ring.
        let shape = Shape::Ring {
            x,
            y,
            radius: theta_e,
            width,
            q: 1.0,
            pa: 0.0,
            knots: 2,
            knot_amp: rng.random_range(0.2..0.7),
            phase: rng.random_range(0.0..TAU),
        };
        return vec![Component { shape, flux: fluxes(src_sed, arc_flux, rng), own: true }];
    }
    let phi = rng.random_range(0.0..TAU);
    let spread = rng.random_range(0.3..0.8);
    let counter = rng.random_range(0.25..0.6);
    let arc = Component {
        shape: Shape::Arc { x, y, radius: theta_e, width, phi, spread },
        flux: fluxes(src_sed, arc_flux / (1.0 + counter), rng),
        own: true,
    };
    let counter_image = Component {
        shape: Shape::Arc {
            x,
            y,
            radius: theta_e * rng.random_range(0.55..0.85),
            width,
            phi: phi + TAU / 2.0,
            spread: spread * 0.5,
        },
        flux: fluxes(src_sed, arc_flux * counter / (1.0 + counter), rng),
        own: true,
    };
    vec![arc, counter_image]
}

/// Ordinary shape, extraordinary colour: all components share it.
fn odd_colour(f: &Frame, morph: Morph, rng: &mut ChaCha8Rng) -> Vec<Component> {
    let mut components = f.host(morph, rng);
    let ratios = match rng.random_range(0..3) {
        0 => colours_to_ratios(-0.25, -0.25, -0.1, -0.1), // extremely blue
        1 => colours_to_ratios(0.3, -0.9, 0.8, 0.1),      // i-band line excess
        _ => colours_to_ratios(2.0, 1.5, -1.2, -0.1),     // z/y excess (dropout-like)
    };
    for c in components.iter_mut() {
        let fi_c = c.flux[I];
        c.flux = fluxes(ratios, fi_c, rng);
    }
    components
}

/// A host galaxy with a bright point-like nucleus.
fn agn(f: &Frame, rng: &mut ChaCha8Rng) -> Body {
    let morph = if rng.random_bool(0.6) { Morph::Spiral } else { Morph::Early };
    let nucleus_ratio = rng.random_range(0.5..2.0);
    let host_fi = f.fi / (1.0 + nucleus_ratio);
    let re = draw_re_arcsec(rng, flux_to_mag(host_fi), morph, f.max_re);
    let mut components = host(rng, morph, host_fi, f.z, f.cx, f.cy, px(re));
    components.push(Component {
        shape: Shape::Point { x: f.cx, y: f.cy },
        flux: fluxes(colours_to_ratios(0.15, 0.1, 0.05, 0.05), f.fi - host_fi, rng),
        own: true,
    });
    Body { components, morph, nucleus_ratio }
}

/// Observing conditions of one cutout.
struct Seen {
    psf_fwhm: [f32; 5],
    sky_sigma: [f32; 5],
    sky_level: [f32; 5],
    defect: Option<Defect>,
}

impl Seen {
    fn draw(rng: &mut ChaCha8Rng, kind: Kind, size: usize) -> Seen {
        // Seeing varies per object and band; i and r get the best of it (HSC).
        let seeing = rng.random_range(0.85..1.2);
        let psf_fwhm = [0.77, 0.72, 0.60, 0.66, 0.70]
            .map(|b: f64| (b * seeing * rng.random_range(0.95..1.05)).clamp(0.5, 0.9) as f32);
        let sky_sigma = [0.0012, 0.0013, 0.0016, 0.0025, 0.0045].map(|s: f64| (s * rng.random_range(0.8..1.25)) as f32);
        let sky_level = sky_sigma.map(|s| (0.2 * f64::from(s) * normal(rng)) as f32);
        let defect = (kind == Kind::Normal && rng.random_bool(0.02)).then(|| draw_defect(rng, size));
        Seen { psf_fwhm, sky_sigma, sky_level, defect }
    }
}

/// cmodel magnitudes: the true total flux with a small measurement error.
fn catalogue_mags(own: Fluxes, rng: &mut ChaCha8Rng) -> [f32; 5] {
    own.map(|f| {
        let m = flux_to_mag(f);
        (m + (0.005 + 0.03 * 10f64.powf(0.4 * (m - 23.0))) * normal(rng)) as f32
    })
}

/// Plans the spectrum of `g` (running number `number`) and places its fibre.
/// `own` is the object's own flux per band.
fn add_spectrum(ctx: &Context, border: bool, number: usize, own: Fluxes, g: &mut Galaxy, rng: &mut ChaCha8Rng) {
    let (sra, sdec) = if border {
        // Border objects straddle a HEALPix border with image and fibre: the
        // image moves to the near side.
        let (img, fib) = straddle(ctx.depth, g.ra, g.dec, rng);
        (g.ra, g.dec) = img;
        fib
    } else {
        // The fibre position scatters by up to ~0.4" around the image position.
        let (r, t) = (0.4 * rng.random::<f64>().sqrt(), rng.random_range(0.0..TAU));
        sky::offset(g.ra, g.dec, r * t.sin(), r * t.cos())
    };
    let class = intended_class(rng, g.kind, g.morph);
    let rmag = flux_to_mag(own[1]);
    let old = match g.morph {
        Morph::Early => rng.random_range(0.85..1.0),
        Morph::Spiral => rng.random_range(0.4..0.8),
        Morph::Irregular => rng.random_range(0.05..0.35),
    };
    let mut sp = spectrum::plan(rng, number, g.z, rmag, old, class, g.kind == Kind::Agn);
    sp.ra = sra;
    sp.dec = sdec;
    sp.healpix = sky::healpix(ctx.depth, sra, sdec);
    g.spectrum = Some(sp);
}

/// Image and fibre positions on either side of the HEALPix border nearest
/// (ra, dec), in a random direction.
fn straddle(depth: u8, ra: f64, dec: f64, rng: &mut ChaCha8Rng) -> ((f64, f64), (f64, f64)) {
    let pa = rng.random_range(0.0..TAU);
    let (inside, outside) = sky::border_crossing(depth, ra, dec, pa, 0.01);
    // 0.15" either side of the border, along the walk direction.
    let img = sky::offset(inside.0, inside.1, -0.15 * pa.sin(), -0.15 * pa.cos());
    let fib = sky::offset(outside.0, outside.1, 0.15 * pa.sin(), 0.15 * pa.cos());
    let differ = |a: (f64, f64), b: (f64, f64)| sky::healpix(depth, a.0, a.1) != sky::healpix(depth, b.0, b.1);
    if differ(img, fib) { (img, fib) } else { (inside, outside) }
}

/// A second, unrelated source in the cutout: a smaller galaxy or a star.
fn neighbour(rng: &mut impl Rng, imag: f64, z: f64, cx: f64, cy: f64, half_arcsec: f64) -> Component {
    let r = rng.random_range(2.5..(half_arcsec - 1.0).max(2.6)) / PIXEL_SCALE;
    let t = rng.random_range(0.0..std::f64::consts::TAU);
    let (x, y) = (cx + r * t.cos(), cy + r * t.sin());
    if rng.random_bool(0.6) {
        let f = mag_to_flux(imag + rng.random_range(0.3..3.0));
        let z2 = (z + rng.random_range(-0.05..0.3)).max(0.01);
        let re = rng.random_range(0.3..0.9) / PIXEL_SCALE;
        let old = rng.random();
        let q = rng.random_range(0.3..1.0);
        let pa = rng.random_range(0.0..std::f64::consts::PI);
        Component {
            shape: Shape::Sersic { x, y, re, n: 1.5, q, pa, arms: None },
            flux: fluxes(sed(old, z2), f, rng),
            own: false,
        }
    } else {
        // Main-sequence star colours: g−r 0.3–1.4, the rest following.
        let gr = rng.random_range(0.3..1.4);
        let ratios = colours_to_ratios(gr, 0.45 * gr - 0.05, 0.2 * gr, 0.08 * gr);
        Component {
            shape: Shape::Point { x, y },
            flux: fluxes(ratios, mag_to_flux(rng.random_range(17.0..23.0)), rng),
            own: false,
        }
    }
}

fn draw_defect(rng: &mut impl Rng, size: usize) -> Defect {
    let u: f64 = rng.random();
    if u < 0.4 {
        let bands = if rng.random_bool(0.5) { 0b11111 } else { 1 << rng.random_range(0..5) };
        Defect::Column { x: rng.random_range(0..size), from: rng.random_range(0..size / 2), bands }
    } else if u < 0.8 {
        let (w, h) = (rng.random_range(4..size / 3), rng.random_range(4..size / 3));
        Defect::Block {
            band: rng.random_range(0..5),
            x0: rng.random_range(0..size - w),
            y0: rng.random_range(0..size - h),
            w,
            h,
        }
    } else {
        Defect::Corner { corner: rng.random_range(0..4), extent: rng.random_range(size / 4..size / 2) }
    }
}

/// The BPT class an object's spectrum is built to have.
fn intended_class(rng: &mut impl Rng, kind: Kind, morph: Morph) -> BptClass {
    use BptClass::*;
    let table: &[(BptClass, f64)] = match (kind, morph) {
        (Kind::Agn, _) => return Seyfert,
        (Kind::Lens, _) => return Unclassifiable,
        (Kind::Ring | Kind::Colour, _) => &[(StarForming, 0.85), (Composite, 0.15)],
        (Kind::Merger, _) => &[(StarForming, 0.5), (Composite, 0.3), (Seyfert, 0.1), (Liner, 0.1)],
        (_, Morph::Early) => &[(Unclassifiable, 0.7), (Liner, 0.2), (Composite, 0.05), (Seyfert, 0.05)],
        (_, Morph::Spiral) => {
            &[(StarForming, 0.55), (Composite, 0.2), (Seyfert, 0.07), (Liner, 0.08), (Unclassifiable, 0.1)]
        }
        (_, Morph::Irregular) => &[(StarForming, 0.9), (Composite, 0.05), (Unclassifiable, 0.05)],
    };
    let mut u: f64 = rng.random();
    for &(c, p) in table {
        if u < p {
            return c;
        }
        u -= p;
    }
    table[table.len() - 1].0
}

/// HSC-like `i_sdssshape_shape11` (arcsec²): flux-weighted second moment
/// along x of the Sérsic components, plus the PSF's.
fn shape11(g: &Galaxy) -> f32 {
    let (mut sum, mut wsum) = (0.0, 0.0);
    for c in g.components.iter().filter(|c| c.own) {
        if let Shape::Sersic { re, q, pa, .. } = c.shape {
            // A Gaussian's half-light radius is 1.177σ.
            let s2 = (re * PIXEL_SCALE / 1.177).powi(2);
            sum += c.flux[I] * s2 * (pa.cos().powi(2) + q * q * pa.sin().powi(2));
            wsum += c.flux[I];
        }
    }
    let psf = (f64::from(g.psf_fwhm[I]) / 2.3548).powi(2);
    (if wsum > 0.0 { sum / wsum } else { 0.0 } + psf) as f32
}
