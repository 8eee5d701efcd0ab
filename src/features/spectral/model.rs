//! The pieces of a complex's model: the pixels it is fitted to, its linear
//! solution, its non-linear parameters and their search grids, and the
//! line profiles.

use super::{ABSORPTION_FWHM, ABSORPTION_GRID, ABSORPTION_START, BROAD_GRID, BROAD_KMS, GOLDEN_ITERS, MAXP};
use super::{NARROW_GRID, NARROW_KMS, SHIFT_GRID, SHIFT_KMS};

/// The usable pixels of one complex's region.
#[derive(Default)]
pub(super) struct Pixels {
    pub(super) lambda: Vec<f64>,
    pub(super) flux: Vec<f64>,
    pub(super) ivar: Vec<f64>,
    /// Outside every line window: may be clipped as an outlier.
    pub(super) continuum: Vec<bool>,
}

impl Pixels {
    pub(super) fn push(&mut self, l: f64, f: f64, w: f64, continuum: bool) {
        self.lambda.push(l);
        self.flux.push(f);
        self.ivar.push(w);
        self.continuum.push(continuum);
    }

    pub(super) fn len(&self) -> usize {
        self.lambda.len()
    }
}

/// A linear least-squares solution for a given shape (`cov` is zero unless
/// asked for).
pub(super) struct Fit {
    pub(super) theta: [f64; MAXP],
    pub(super) cov: [[f64; MAXP]; MAXP],
    pub(super) chi2: f64,
}

/// The non-linear part of a model: narrow-line σ, shared velocity shift of
/// all components (km/s), optional broad-line σ (km/s) and the rest-frame
/// FWHM (Å) of the stellar Balmer absorption (in Balmer complexes).
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub(super) narrow: f64,
    pub(super) shift: f64,
    pub(super) broad: Option<f64>,
    pub(super) absorption: Option<f64>,
}

/// A non-linear parameter and its search grid.
#[derive(Clone, Copy)]
pub(super) enum Param {
    Narrow,
    Shift,
    Broad,
    Absorption,
}

impl Param {
    /// (lo, hi, grid points, searched in log space)
    pub(super) fn range(self) -> (f64, f64, usize, bool) {
        match self {
            Param::Narrow => (NARROW_KMS.0, NARROW_KMS.1, NARROW_GRID, true),
            Param::Shift => (-SHIFT_KMS, SHIFT_KMS, SHIFT_GRID, false),
            Param::Broad => (BROAD_KMS.0, BROAD_KMS.1, BROAD_GRID, true),
            Param::Absorption => (ABSORPTION_FWHM.0, ABSORPTION_FWHM.1, ABSORPTION_GRID, true),
        }
    }

    /// Search coordinate of a value and back.
    pub(super) fn coord(self, v: f64) -> f64 {
        if self.range().3 { v.ln() } else { v }
    }

    pub(super) fn value(self, x: f64) -> f64 {
        if self.range().3 { x.exp() } else { x }
    }

    pub(super) fn get(self, s: &Shape) -> f64 {
        match self {
            Param::Narrow => s.narrow,
            Param::Shift => s.shift,
            Param::Broad => s.broad.unwrap_or(BROAD_KMS.0),
            Param::Absorption => s.absorption.unwrap_or(ABSORPTION_START),
        }
    }

    pub(super) fn with(self, mut s: Shape, v: f64) -> Shape {
        match self {
            Param::Narrow => s.narrow = v,
            Param::Shift => s.shift = v,
            Param::Broad => s.broad = Some(v),
            Param::Absorption => s.absorption = Some(v),
        }
        s
    }

    /// Grid step in search coordinates.
    pub(super) fn step(self) -> f64 {
        let (lo, hi, n, _) = self.range();
        (self.coord(hi) - self.coord(lo)) / (n - 1) as f64
    }
}

/// What a column of the linear model is, for the Jacobian of its width.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Narrow,
    Broad,
    /// The Gaussian and Lorentzian halves of the stellar absorption.
    Absorption,
}

/// One line-profile column of the linear model: a unit-area Gaussian (σ) or
/// Lorentzian (half width γ), observed Å.
#[derive(Clone, Copy)]
pub(super) struct Column {
    pub(super) lorentz: bool,
    pub(super) centre: f64,
    pub(super) width: f64,
    pub(super) role: Role,
    /// Centre at zero shift, for ∂/∂shift.
    pub(super) centre0: f64,
}

impl Column {
    pub(super) fn eval(&self, l: f64) -> f64 {
        if self.lorentz { lorentzian(l, self.centre, self.width) } else { gaussian(l, self.centre, self.width) }
    }

    /// Half-width beyond which the column is taken as zero.
    pub(super) fn reach(&self) -> f64 {
        if self.lorentz { f64::INFINITY } else { GAUSS_CUT * self.width }
    }

    /// (value, width · ∂/∂width, ∂/∂centre) at l.
    pub(super) fn derivatives(&self, l: f64) -> (f64, f64, f64) {
        let d = l - self.centre;
        if self.lorentz {
            let g2 = self.width * self.width;
            let v = lorentzian(l, self.centre, self.width);
            (v, v * (1.0 - 2.0 * g2 / (d * d + g2)), v * 2.0 * d / (d * d + g2))
        } else {
            let u = d / self.width;
            let v = gaussian(l, self.centre, self.width);
            (v, v * (u * u - 1.0), v * u / self.width)
        }
    }
}

/// Unit-flux Gaussian.
pub(super) fn gaussian(l: f64, centre: f64, sigma: f64) -> f64 {
    let u = (l - centre) / sigma;
    (-0.5 * u * u).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
}

/// Unit-flux Lorentzian of half width at half maximum `gamma`.
pub(super) fn lorentzian(l: f64, centre: f64, gamma: f64) -> f64 {
    let d = l - centre;
    gamma / (std::f64::consts::PI * (d * d + gamma * gamma))
}

/// Gaussians are evaluated within ±6σ (beyond, < 1e-8 of the peak).
pub(super) const GAUSS_CUT: f64 = 6.0;

/// Golden-section minimisation of f over [a, b].
pub(super) fn golden(mut f: impl FnMut(f64) -> f64, mut a: f64, mut b: f64) -> (f64, f64) {
    const R: f64 = 0.618_033_988_749_895;
    let (mut c, mut d) = (b - R * (b - a), a + R * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..GOLDEN_ITERS {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - R * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + R * (b - a);
            fd = f(d);
        }
    }
    if fc < fd { (c, fc) } else { (d, fd) }
}
