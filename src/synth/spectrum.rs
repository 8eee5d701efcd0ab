//! SDSS-like fibre spectra: a stellar continuum with a 4000 Å break, metal
//! absorption lines and stellar Balmer absorption (broad, Stark-winged
//! pseudo-Voigt troughs: deep in young A-star light, shallow in old
//! populations), Gaussian emission lines with BPT-controlled ratios and
//! equivalent widths drawn from observed distributions, optional AGN broad
//! lines, and SDSS-like noise, masks and sky residuals.
//!
//! Fluxes are f_λ in 1e-17 erg/s/cm²/Å on a log-linear vacuum wavelength grid.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::bpt::{self, BptClass};
use crate::features::lines::{self, LineKind};

/// SDSS grid: log10 λ from log10(3800 Å) in steps of 1e-4 up to 9200 Å.
pub const LAMBDA_MIN: f64 = 3800.0;
pub const LAMBDA_MAX: f64 = 9200.0;
pub const DLOGLAM: f64 = 1e-4;
/// Speed of light, km/s.
const C_KMS: f64 = 299_792.458;
/// [NII]6549.9 and [OIII]4960.3: fixed at 1/3 of their stronger partners
/// by atomic physics, so they are not in the measured-line table.
const NII_WEAK: f64 = 6549.9;
const OIII_WEAK: f64 = 4960.3;

/// SDSS pixel-mask bits (SPPIXMASK) used here.
pub const FULLREJECT: i32 = 1 << 18;
pub const BRIGHTSKY: i32 = 1 << 23;
pub const NODATA: i32 = 1 << 24;

/// Number of pixels on the grid.
pub fn n_pixels() -> usize {
    ((LAMBDA_MAX.log10() - LAMBDA_MIN.log10()) / DLOGLAM + 1e-9) as usize + 1
}

/// Vacuum wavelength (Å) of pixel k.
pub fn wavelength(k: usize) -> f64 {
    10f64.powf(LAMBDA_MIN.log10() + k as f64 * DLOGLAM)
}

/// Rest wavelength of a line of the shared table.
fn rest(name: &str) -> f64 {
    lines::line(name).unwrap_or_else(|| panic!("{name} missing from LINES")).wavelength
}

/// One Gaussian emission line.
#[derive(Debug, Clone, Copy)]
pub struct EmissionLine {
    /// Vacuum rest wavelength, Å.
    pub rest: f64,
    /// Integrated flux, 1e-17 erg/s/cm².
    pub flux: f64,
    /// Intrinsic velocity dispersion, km/s (the LSF is added on top).
    pub sigma_kms: f64,
}

/// Everything decided about one spectrum before its noise is drawn.
#[derive(Debug, Clone)]
pub struct SpecPlan {
    /// Running number; the id written is [`SpecPlan::id`].
    pub number: usize,
    pub ra: f64,
    pub dec: f64,
    pub healpix: u64,
    pub z: f64,
    /// Catalogued redshift `Z` (the true one plus its error) and `Z_ERR`.
    pub z_measured: f64,
    pub z_err: f64,
    pub class: BptClass,
    /// Continuum f_λ at observed 6200 Å through the fibre.
    pub continuum: f64,
    /// Fraction of the 5500 Å (rest) stellar light from the old population.
    pub old: f64,
    /// Fraction of the 5500 Å (rest) light from an AGN power law.
    pub agn: f64,
    /// Scale of the stellar Balmer absorption equivalent widths (1 = the
    /// populations' nominal values).
    pub balmer: f64,
    pub lines: Vec<EmissionLine>,
    /// Noise-free narrow-line fluxes of Hα, [NII]6585, Hβ, [OIII]5008.
    pub bpt_flux: [f64; 4],
    /// Scale of the per-pixel noise σ (see [`noise_shape`]).
    pub sigma0: f64,
    pub lsf_scale: f64,
}

impl SpecPlan {
    /// SDSS-style string id, e.g. "sdss-000001234".
    pub fn id(&self) -> String {
        format!("sdss-{:09}", self.number)
    }

    /// (x, y) = (log [NII]/Hα, log [OIII]/Hβ) of the noise-free narrow lines.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn bpt_xy(&self) -> (f64, f64) {
        let [ha, nii, hb, oiii] = self.bpt_flux;
        ((nii / ha).log10(), (oiii / hb).log10())
    }

    /// Continuum f_λ at an observed wavelength (stellar absorption included).
    pub fn continuum_at(&self, lambda: f64) -> f64 {
        let zp1 = 1.0 + self.z;
        self.continuum * rest_continuum(lambda / zp1, self.old, self.agn, self.balmer)
            / rest_continuum(6200.0 / zp1, self.old, self.agn, self.balmer)
    }

    /// The continuum without the stellar Balmer troughs (what an emission
    /// line's equivalent width is measured against).
    pub fn pseudo_continuum_at(&self, lambda: f64) -> f64 {
        let zp1 = 1.0 + self.z;
        self.continuum * rest_continuum(lambda / zp1, self.old, self.agn, 0.0)
            / rest_continuum(6200.0 / zp1, self.old, self.agn, self.balmer)
    }

    /// True integrated fluxes of the narrow emission lines a spectrum is
    /// measured for, in [`crate::features::spectral::SpectralLines`] order:
    /// Hα, \[NII\]6585, Hβ, \[OIII\]5008, \[OII\]3728 (the doublet),
    /// \[SII\]6718, \[SII\]6733. Zero where there is no emission.
    pub fn true_fluxes(&self) -> [f64; 7] {
        let names = ["Hα", "[NII]", "Hβ", "[OIII]", "[OII]", "[SII]6718", "[SII]6733"];
        names.map(|n| {
            let w = rest(n);
            self.lines.iter().filter(|l| l.sigma_kms < 1000.0 && (l.rest - w).abs() < 0.5).map(|l| l.flux).sum()
        })
    }

    /// Matched-filter S/N of each line of [`SpecPlan::true_fluxes`] (0
    /// where there is no emission).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn true_snrs(&self) -> [f64; 7] {
        let names = ["Hα", "[NII]", "Hβ", "[OIII]", "[OII]", "[SII]6718", "[SII]6733"];
        names.map(|n| {
            let w = rest(n);
            self.lines
                .iter()
                .find(|l| l.sigma_kms < 1000.0 && (l.rest - w).abs() < 0.5)
                .map_or(0.0, |l| self.line_snr(l))
        })
    }

    /// Rest-frame equivalent width (Å, positive) of the stellar absorption
    /// trough at a Balmer line, in the light mix of this spectrum.
    pub fn balmer_absorption_ew(&self, name: &str) -> f64 {
        let w = rest(name);
        let (lo, hi) = (w - 150.0, w + 150.0);
        let n = 3000;
        let dl = (hi - lo) / n as f64;
        (0..n)
            .map(|k| {
                let l = lo + (k as f64 + 0.5) * dl;
                1.0 - rest_continuum(l, self.old, self.agn, self.balmer) / rest_continuum(l, self.old, self.agn, 0.0)
            })
            .sum::<f64>()
            * dl
    }

    /// Observed Gaussian σ (Å) of a line: intrinsic width plus the LSF.
    pub fn line_sigma(&self, line: &EmissionLine) -> f64 {
        let obs = line.rest * (1.0 + self.z);
        (obs * line.sigma_kms / C_KMS).hypot(lsf_sigma(obs, self.lsf_scale))
    }

    /// Per-pixel noise σ at an observed wavelength.
    pub fn sigma_at(&self, lambda: f64) -> f64 {
        self.sigma0 * noise_shape(lambda)
    }

    /// S/N of a line measured with its known profile (matched filter): the
    /// best any measurement can do.
    pub fn line_snr(&self, line: &EmissionLine) -> f64 {
        let obs = line.rest * (1.0 + self.z);
        let dlam = obs * std::f64::consts::LN_10 * DLOGLAM;
        let width = self.line_sigma(line);
        line.flux / (self.sigma_at(obs) * (dlam * 2.0 * std::f64::consts::PI.sqrt() * width).sqrt())
    }

    /// Observed wavelength windows that masks and sky residuals must leave
    /// alone, so that a classifiable object stays measurable.
    fn protected(&self) -> Vec<(f64, f64)> {
        if self.class == BptClass::Unclassifiable {
            return Vec::new();
        }
        self.lines
            .iter()
            .filter(|l| l.sigma_kms < 1000.0)
            .map(|l| {
                let obs = l.rest * (1.0 + self.z);
                let half = 6.0 * self.line_sigma(l) + 10.0;
                (obs - half, obs + half)
            })
            .collect()
    }
}

/// B_λ(T) up to a constant (λ in Å).
fn planck(lambda: f64, t: f64) -> f64 {
    lambda.powi(-5) / ((1.438_777e8 / (lambda * t)).exp() - 1.0)
}

/// Stellar absorption (rest frame): depth and Gaussian σ (Å, including a
/// ~150 km/s velocity dispersion) of each absorption line of the table.
fn absorption_profile(name: &str) -> (f64, f64) {
    match name {
        "Ca K" => (0.5, 6.0),
        "Ca H" => (0.45, 6.0),
        "Mg b" => (0.18, 9.0),
        "Na D" => (0.15, 5.0),
        _ => (0.1, 5.0),
    }
}

/// Stellar Balmer absorption of a population: (vacuum rest Å, EW Å) of Hα
/// to Hε, and the troughs' FWHM (Å) and Lorentzian fraction. A-star light
/// (young) has deep troughs with Stark wings; old K giants shallow narrow
/// ones (Worthey & Ottaviani 1997; González Delgado et al. 1999).
struct Balmer {
    lines: [(f64, f64); 5],
    fwhm: f64,
    eta: f64,
}

const BALMER_YOUNG: Balmer = Balmer {
    lines: [(6564.6, 5.5), (4862.7, 7.0), (4341.7, 7.5), (4102.9, 7.5), (3971.2, 6.0)],
    fwhm: 26.0,
    eta: 0.55,
};
const BALMER_OLD: Balmer =
    Balmer { lines: [(6564.6, 2.0), (4862.7, 1.8), (4341.7, 1.2), (4102.9, 1.2), (3971.2, 1.0)], fwhm: 12.0, eta: 0.3 };

/// Unit-area pseudo-Voigt profile (FWHM `w`, Lorentzian fraction `eta`).
fn pseudo_voigt(d: f64, w: f64, eta: f64) -> f64 {
    let sigma = w / 2.3548;
    let g = (-0.5 * (d / sigma).powi(2)).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt());
    let gamma = 0.5 * w;
    let l = gamma / (std::f64::consts::PI * (d * d + gamma * gamma));
    (1.0 - eta) * g + eta * l
}

/// A simple stellar population: black body × 4000 Å break × absorption
/// lines (metals, and Balmer troughs scaled by `balmer`), normalised to 1
/// at 5500 Å rest (apart from the lines).
fn population(
    lambda: f64,
    temperature: f64,
    break_depth: f64,
    line_strength: f64,
    troughs: &Balmer,
    balmer: f64,
) -> f64 {
    let bb = planck(lambda, temperature) / planck(5500.0, temperature);
    // Below 4000 Å metal-line blanketing removes a fraction of the light.
    let brk = 1.0 - break_depth / (1.0 + ((lambda - 4000.0) / 30.0).exp());
    let mut absorb = 1.0;
    for l in lines::LINES.iter().filter(|l| l.kind == LineKind::Absorption) {
        let d = lambda - l.wavelength;
        let (depth, w) = absorption_profile(l.name);
        if d.abs() < 6.0 * w {
            absorb *= 1.0 - line_strength * depth * (-0.5 * (d / w).powi(2)).exp();
        }
    }
    if balmer > 0.0 {
        for &(centre, ew) in &troughs.lines {
            let d = lambda - centre;
            if d.abs() < 400.0 {
                absorb *= 1.0 - balmer * ew * pseudo_voigt(d, troughs.fwhm, troughs.eta);
            }
        }
    }
    bb * brk * absorb
}

/// Rest-frame continuum shape: old and young stars plus an AGN power law.
fn rest_continuum(lambda: f64, old: f64, agn: f64, balmer: f64) -> f64 {
    let stars = old * population(lambda, 4800.0, 0.45, 1.0, &BALMER_OLD, balmer)
        + (1.0 - old) * population(lambda, 12_000.0, 0.12, 0.3, &BALMER_YOUNG, balmer);
    (1.0 - agn) * stars + agn * (lambda / 5500.0).powf(-1.5)
}

/// Instrumental line-spread σ in Å (resolution R ≈ 1850 at the blue end
/// rising to 2200 at the red end).
pub fn lsf_sigma(lambda: f64, scale: f64) -> f64 {
    let r = 1850.0 + 350.0 * (lambda - LAMBDA_MIN) / (LAMBDA_MAX - LAMBDA_MIN);
    scale * lambda / (2.3548 * r)
}

/// Bright night-sky lines (vacuum Å, approximate) and how much each adds to
/// the noise variance, in units of the continuum-limited variance.
const SKY_LINES: &[(f64, f64)] = &[
    (5578.9, 14.0),
    (5891.6, 5.0),
    (5897.6, 5.0),
    (6302.0, 7.0),
    (6365.5, 3.0),
    (7246.0, 3.0),
    (7278.0, 3.0),
    (7318.0, 4.0),
    (7342.0, 4.0),
    (7371.0, 4.0),
    (7402.0, 3.0),
    (7716.0, 4.0),
    (7752.0, 5.0),
    (7795.0, 4.0),
    (7823.0, 5.0),
    (7916.0, 5.0),
    (7967.0, 5.0),
    (7995.0, 6.0),
    (8027.0, 4.0),
    (8290.0, 6.0),
    (8346.0, 8.0),
    (8401.0, 6.0),
    (8432.0, 6.0),
    (8467.0, 6.0),
    (8507.0, 5.0),
    (8763.0, 6.0),
    (8829.0, 8.0),
    (8888.0, 8.0),
    (8922.0, 6.0),
    (8945.0, 7.0),
    (8991.0, 8.0),
    (9002.0, 7.0),
    (9041.0, 6.0),
    (9103.0, 6.0),
    (9155.0, 6.0),
];
const SKY_LINE_WIDTH: f64 = 1.8;

/// Shape of the per-pixel noise σ with wavelength: rising at both ends of
/// the spectrograph, a bump at the dichroic, and bright sky lines.
pub fn noise_shape(lambda: f64) -> f64 {
    let edges = 1.0
        + 1.2 * (-(lambda - LAMBDA_MIN) / 180.0).exp()
        + 0.6 * ((lambda - LAMBDA_MAX) / 250.0).exp()
        + 0.3 * (-0.5 * ((lambda - 5950.0) / 40.0).powi(2)).exp();
    let mut sky = 1.0;
    for &(l, a) in SKY_LINES {
        let d = (lambda - l) / SKY_LINE_WIDTH;
        if d.abs() < 6.0 {
            sky += a * (-0.5 * d * d).exp();
        }
    }
    edges * sky.sqrt()
}

fn normal(rng: &mut impl Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Log-normal deviate with the given median and scatter (dex).
fn lognormal(rng: &mut impl Rng, median: f64, dex: f64) -> f64 {
    median * 10f64.powf(dex * normal(rng))
}

/// Smallest matched-filter S/N of each BPT line in a classifiable spectrum,
/// and largest in an unclassifiable one: far enough from 3 that any sensible
/// measurement agrees with the truth.
pub const MIN_SNR_CLASSIFIABLE: f64 = 10.0;
pub const MAX_SNR_UNCLASSIFIABLE: f64 = 1.5;

/// Plans a spectrum of the given intended class. `rmag` is the object's
/// r-band magnitude and `old` its old-star light fraction.
///
/// Draws from `rng` in a fixed order (continuum, line recipe, line
/// strengths, broad lines): changing it changes every synthetic survey.
pub fn plan(rng: &mut ChaCha8Rng, number: usize, z: f64, rmag: f64, old: f64, class: BptClass, agn: bool) -> SpecPlan {
    let mut sp = continuum_plan(rng, number, z, rmag, old, class, agn);
    let Some(recipe) = LineRecipe::draw(rng, class, z) else {
        return sp; // passive: no emission at all
    };
    sp.lines = recipe.lines(&sp, recipe.draw_ew(rng));
    if class == BptClass::Unclassifiable {
        // Weak enough that no measurement could classify it.
        fade_below_classification(&mut sp, rng);
    } else {
        make_classifiable(&mut sp, &recipe, agn, rng);
    }
    sp.bpt_flux = BPT_LINES.map(|i| sp.lines[i].flux);
    if agn {
        // Broad-line region: FWHM 2000–6000 km/s, stronger than narrow Hα.
        let sigma = rng.random_range(2000.0..6000.0) / 2.3548;
        let broad_ha = sp.bpt_flux[0] * rng.random_range(1.5..4.0);
        sp.lines.push(EmissionLine { rest: rest("Hα"), flux: broad_ha, sigma_kms: sigma });
        sp.lines
            .push(EmissionLine { rest: rest("Hβ"), flux: broad_ha / rng.random_range(3.0..4.0), sigma_kms: sigma });
    }
    sp
}

/// Indices in [`SpecPlan::lines`] of Hα, [NII], Hβ and [OIII] (see [`LineRecipe::lines`]).
const BPT_LINES: [usize; 4] = [0, 1, 3, 4];

/// A spectrum's continuum, redshift, noise and line-spread: everything but
/// its emission lines.
fn continuum_plan(
    rng: &mut ChaCha8Rng,
    number: usize,
    z: f64,
    rmag: f64,
    old: f64,
    class: BptClass,
    agn: bool,
) -> SpecPlan {
    // f_λ at 6200 Å (1e-17 erg/s/cm²/Å) of an AB magnitude, times the
    // fraction of the galaxy's light that enters a 3" fibre.
    let fibre = rng.random_range(0.3..0.55);
    let continuum = 2.832e8 * 10f64.powf(-0.4 * rmag) * fibre;
    let z_err = 1e-5 * rng.random_range(1.0..4.0);
    let mut sp = SpecPlan {
        number,
        ra: 0.0,
        dec: 0.0,
        healpix: 0,
        z,
        z_measured: z + z_err * normal(rng),
        z_err,
        class,
        continuum,
        old,
        agn: if agn { rng.random_range(0.4..0.8) } else { 0.0 },
        balmer: rng.random_range(0.7..1.3),
        lines: Vec::new(),
        bpt_flux: [0.0; 4],
        sigma0: 0.0,
        lsf_scale: rng.random_range(0.95..1.05),
    };
    // SDSS-like depth whatever the synthetic photometry: continuum S/N per
    // pixel at 6200 Å mostly 6–25 (median 12), as for the main galaxy sample.
    sp.sigma0 = continuum / lognormal(rng, 12.0, 0.2).clamp(3.0, 40.0);
    sp
}

/// How a spectrum's narrow lines relate: Hα's equivalent width is drawn
/// (and may be redrawn), the rest follows from the BPT ratios, the Balmer
/// decrement, and the [OII]/Hβ and [SII]/Hα ratios.
struct LineRecipe {
    class: BptClass,
    zp1: f64,
    /// Velocity dispersion, km/s.
    v: f64,
    /// log([NII]/Hα), log([OIII]/Hβ).
    x: f64,
    y: f64,
    decrement: f64,
    oii_hb: f64,
    sii_ha: f64,
    /// [SII] 6718/6733, density sensitive.
    sii_ratio: f64,
}

impl LineRecipe {
    /// None for a passive galaxy (half the unclassifiable ones): no emission.
    fn draw(rng: &mut ChaCha8Rng, class: BptClass, z: f64) -> Option<LineRecipe> {
        let v = rng.random_range(80.0..160.0);
        let (x, y) = match class {
            BptClass::Unclassifiable => {
                if rng.random_bool(0.5) {
                    return None;
                }
                // Weak lines with arbitrary ratios: some ionised gas, too little to classify.
                (rng.random_range(-0.8..0.4), rng.random_range(-0.6..0.8))
            }
            c => bpt::draw_ratios(c, rng),
        };
        let decrement = 2.86 * rng.random_range(1.0..1.6);
        // [OII]/Hβ and [SII]/Hα rise from star formation to LINERs.
        let (oii_hb, sii_ha) = match class {
            BptClass::StarForming => (rng.random_range(1.0..3.0), rng.random_range(0.15..0.4)),
            BptClass::Composite => (rng.random_range(1.0..3.0), rng.random_range(0.25..0.5)),
            BptClass::Seyfert => (rng.random_range(2.0..4.0), rng.random_range(0.3..0.7)),
            _ => (rng.random_range(3.0..6.0), rng.random_range(0.4..1.0)),
        };
        let sii_ratio = rng.random_range(1.1..1.4);
        Some(LineRecipe { class, zp1: 1.0 + z, v, x, y, decrement, oii_hb, sii_ha, sii_ratio })
    }

    /// Hα's equivalent width (rest Å). EWs follow what SDSS measures:
    /// star-forming galaxies mostly 5–150 Å (median ~25), composites and
    /// Seyferts a few to tens of Å, LINERs (mostly "retired" galaxies)
    /// 1–6 Å, passive ones little or nothing.
    fn draw_ew(&self, rng: &mut ChaCha8Rng) -> f64 {
        match self.class {
            BptClass::StarForming => lognormal(rng, 18.0, 0.35).clamp(3.0, 250.0),
            BptClass::Composite => lognormal(rng, 10.0, 0.3).clamp(2.0, 80.0),
            BptClass::Seyfert => lognormal(rng, 15.0, 0.35).clamp(3.0, 150.0),
            BptClass::Liner => lognormal(rng, 2.5, 0.15).clamp(1.0, 6.0),
            BptClass::Unclassifiable => rng.random_range(0.2..2.0),
        }
    }

    /// The narrow lines for an Hα equivalent width `ew_ha`, in the order
    /// [`BPT_LINES`] indexes.
    fn lines(&self, sp: &SpecPlan, ew_ha: f64) -> Vec<EmissionLine> {
        let (ha_w, nii_w, hb_w, oiii_w) = (rest("Hα"), rest("[NII]"), rest("Hβ"), rest("[OIII]"));
        // The EW is against the continuum without the absorption trough.
        let ha = ew_ha * self.zp1 * sp.pseudo_continuum_at(ha_w * self.zp1);
        let hb = ha / self.decrement;
        let (nii, oiii) = (ha * 10f64.powf(self.x), hb * 10f64.powf(self.y));
        let sii = ha * self.sii_ha;
        let line = |rest: f64, flux: f64| EmissionLine { rest, flux, sigma_kms: self.v };
        vec![
            line(ha_w, ha),
            line(nii_w, nii),
            line(NII_WEAK, nii / 3.0),
            line(hb_w, hb),
            line(oiii_w, oiii),
            line(OIII_WEAK, oiii / 3.0),
            line(rest("[OII]"), hb * self.oii_hb),
            line(rest("[SII]6718"), sii * self.sii_ratio / (1.0 + self.sii_ratio)),
            line(rest("[SII]6733"), sii / (1.0 + self.sii_ratio)),
        ]
    }
}

/// Smallest matched-filter S/N of the four BPT lines.
fn min_bpt_snr(sp: &SpecPlan) -> f64 {
    BPT_LINES.map(|i| sp.line_snr(&sp.lines[i])).into_iter().fold(f64::INFINITY, f64::min)
}

/// Scales every line down so that the strongest BPT line has an S/N below
/// [`MAX_SNR_UNCLASSIFIABLE`] (lines already that weak stay).
fn fade_below_classification(sp: &mut SpecPlan, rng: &mut ChaCha8Rng) {
    let max = BPT_LINES.map(|i| sp.line_snr(&sp.lines[i])).into_iter().fold(0.0, f64::max);
    let target = rng.random_range(0.3..MAX_SNR_UNCLASSIFIABLE);
    if max > target {
        sp.lines.iter_mut().for_each(|l| l.flux *= target / max);
    }
}

/// The truth must be unambiguous: every BPT line clearly detected. Draws
/// too faint for that are drawn again (the distribution, conditioned on
/// detection, as a flux-limited survey sees it); what is still too faint
/// gets a deeper spectrum (up to 4x), never brighter lines, so equivalent
/// widths stay as observed. Beyond that the galaxy is what most weak-lined
/// galaxies are in SDSS: unclassifiable (planted AGN keep their class:
/// their lines are scaled up instead).
fn make_classifiable(sp: &mut SpecPlan, recipe: &LineRecipe, agn: bool, rng: &mut ChaCha8Rng) {
    for _ in 0..20 {
        if min_bpt_snr(sp) >= MIN_SNR_CLASSIFIABLE {
            break;
        }
        sp.lines = recipe.lines(sp, recipe.draw_ew(rng));
    }
    let min = min_bpt_snr(sp);
    let want = MIN_SNR_CLASSIFIABLE * rng.random_range(1.0..1.5);
    if min < MIN_SNR_CLASSIFIABLE {
        if want / min <= 4.0 {
            sp.sigma0 *= min / want;
        } else if agn {
            sp.lines.iter_mut().for_each(|l| l.flux *= want / min);
        } else {
            sp.class = BptClass::Unclassifiable;
            fade_below_classification(sp, rng);
        }
    }
}

/// Renders one spectrum into rows of length [`n_pixels`].
pub fn render(
    sp: &SpecPlan,
    rng: &mut ChaCha8Rng,
    flux: &mut [f32],
    ivar: &mut [f32],
    mask: &mut [i32],
    lsf: &mut [f32],
) {
    let n = flux.len();
    let lambda: Vec<f64> = (0..n).map(wavelength).collect();
    let mut model = noiseless(sp, &lambda);
    let protected = sp.protected();
    let clear = |a: f64, b: f64| protected.iter().all(|&(p, q)| b < p || a > q);
    let sigma: Vec<f64> = lambda.iter().map(|&l| sp.sigma_at(l)).collect();

    // Imperfect sky subtraction leaves residual bumps at bright sky lines.
    for &(l, a) in SKY_LINES.iter().filter(|s| s.1 >= 4.0) {
        if !clear(l - 4.0 * SKY_LINE_WIDTH, l + 4.0 * SKY_LINE_WIDTH) {
            continue;
        }
        let amp = 0.3 * a * sp.sigma0 * normal(rng);
        let k0 = pixel_of(l).round() as isize;
        for k in (k0 - 8).max(0)..(k0 + 9).min(n as isize) {
            let k = k as usize;
            model[k] += amp * (-0.5 * ((lambda[k] - l) / SKY_LINE_WIDTH).powi(2)).exp();
        }
    }

    for k in 0..n {
        flux[k] = (model[k] + sigma[k] * normal(rng)) as f32;
        ivar[k] = (1.0 / (sigma[k] * sigma[k])) as f32;
        mask[k] = 0;
        lsf[k] = lsf_sigma(lambda[k], sp.lsf_scale) as f32;
    }

    mark_bad_pixels(rng, &lambda, &model, &sigma, &clear, flux, ivar, mask);
}

/// Pixel index (fractional) of an observed wavelength on the log-linear grid.
fn pixel_of(l: f64) -> f64 {
    (l.ln() - LAMBDA_MIN.ln()) / (DLOGLAM * std::f64::consts::LN_10)
}

/// Continuum plus Gaussian emission lines at the pixels' wavelengths.
fn noiseless(sp: &SpecPlan, lambda: &[f64]) -> Vec<f64> {
    let n = lambda.len();
    let mut model: Vec<f64> = lambda.iter().map(|&l| sp.continuum_at(l)).collect();
    let zp1 = 1.0 + sp.z;
    for l in &sp.lines {
        let (obs, sigma) = (l.rest * zp1, sp.line_sigma(l));
        let norm = l.flux / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        let lo = pixel_of(obs - 6.0 * sigma).floor().max(0.0) as usize;
        let hi = (pixel_of(obs + 6.0 * sigma).ceil().max(0.0) as usize).min(n);
        for k in lo..hi {
            model[k] += norm * (-0.5 * ((lambda[k] - obs) / sigma).powi(2)).exp();
        }
    }
    model
}

/// Bad pixels: cosmic-ray / bad-column runs, the core of the brightest sky
/// line, and sometimes missing data at an end of the spectrum; only where
/// `clear` says no line the measurement needs is hit.
#[allow(clippy::too_many_arguments)]
fn mark_bad_pixels(
    rng: &mut ChaCha8Rng,
    lambda: &[f64],
    model: &[f64],
    sigma: &[f64],
    clear: &dyn Fn(f64, f64) -> bool,
    flux: &mut [f32],
    ivar: &mut [f32],
    mask: &mut [i32],
) {
    let n = lambda.len();
    let mut bad = |k0: usize, len: usize, bit: i32, flux: &mut [f32], rng: &mut ChaCha8Rng| {
        for k in k0..(k0 + len).min(n) {
            mask[k] |= bit;
            ivar[k] = 0.0;
            flux[k] = match bit {
                NODATA => 0.0,
                FULLREJECT => (model[k] + sigma[k] * 20.0 * normal(rng).abs()) as f32,
                _ => (model[k] + sigma[k] * 5.0 * normal(rng)) as f32,
            };
        }
    };
    for _ in 0..rng.random_range(0..=3) {
        let len = rng.random_range(2..25);
        for _attempt in 0..10 {
            let k0 = rng.random_range(0..n - len);
            if clear(lambda[k0], lambda[k0 + len]) {
                bad(k0, len, FULLREJECT, flux, rng);
                break;
            }
        }
    }
    let k5577 = pixel_of(5578.9).round() as usize;
    if rng.random_bool(0.3) && clear(lambda[k5577 - 3], lambda[k5577 + 3]) {
        bad(k5577 - 3, 7, BRIGHTSKY, flux, rng);
    }
    if rng.random_bool(0.15) {
        let len = rng.random_range(5..40);
        if rng.random_bool(0.5) {
            if clear(lambda[0], lambda[len]) {
                bad(0, len, NODATA, flux, rng);
            }
        } else if clear(lambda[n - 1 - len], lambda[n - 1]) {
            bad(n - len, len, NODATA, flux, rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grid_is_sdss_like() {
        let n = n_pixels();
        assert!((3830..3850).contains(&n), "{n}");
        assert!((wavelength(0) - 3800.0).abs() < 1e-9);
        assert!(wavelength(n - 1) <= LAMBDA_MAX && wavelength(n) > LAMBDA_MAX);
    }

    #[test]
    fn continuum_has_a_4000_break() {
        let red = rest_continuum(4100.0, 1.0, 0.0, 1.0) / rest_continuum(3900.0, 1.0, 0.0, 1.0);
        let blue = rest_continuum(4100.0, 0.0, 0.0, 1.0) / rest_continuum(3900.0, 0.0, 0.0, 1.0);
        assert!(red > 1.5 && blue < red, "{red} {blue}");
    }

    #[test]
    fn masked_pixels_have_zero_ivar() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = n_pixels();
        for i in 0..30 {
            let sp = plan(&mut rng, i, 0.1, 17.5, 0.5, BptClass::StarForming, i % 5 == 0);
            let (mut f, mut iv, mut m, mut l) = (vec![0.0; n], vec![0.0; n], vec![0; n], vec![0.0; n]);
            render(&sp, &mut rng, &mut f, &mut iv, &mut m, &mut l);
            for k in 0..n {
                assert_eq!(m[k] != 0, iv[k] == 0.0);
                assert!(f[k].is_finite() && l[k] > 0.5 && l[k] < 3.0);
            }
        }
    }
}
