//! What an astronomer looks at: survey pixels and spectra turned into an
//! 8-bit RGB image and chart points. Pure functions, no terminal code.
//!
//! # Colour composites (Lupton et al. 2004)
//!
//! Three bands are chosen by [`composite_bands`] (g,r,i → blue, green, red
//! for HSC/DECaLS-like data). Each band is sky-subtracted (median of its
//! border pixels) and kept on the common flux scale of the file: bands are
//! never normalised separately, which would destroy the colours. With
//! I = (b + g + r)/3, every channel is `band · F(I)/I`, so a pixel's colour
//! is its flux ratio whatever the stretch does to its brightness. Where a
//! channel exceeds 1 all three are divided by the largest (Lupton's colour
//! saturation): a bright core keeps its hue instead of going white.
//!
//! # Normalisation (one brightness scale per object)
//!
//! Every stretch is a curve `f` with f(0) = 0 and f(1) = 1 applied to
//! x = `alpha_scale` · I / I_top. For [`Stretch::Asinh`],
//! f(x) = asinh(sinh(Q)·x)/Q, which is exactly Lupton's
//! F(I) = asinh(Q·I/stretch)/Q with stretch = I_top·Q/sinh(Q): Q keeps its
//! usual meaning (higher Q, more compression of bright parts) and I_top is
//! the intensity at which the image saturates. I_top is chosen per object:
//!
//! * the 99.5th percentile of I over the finite pixels of the central
//!   quarter (half the width and height) of the cutout, where the target is:
//!   the brightest part of the target just saturates, and a bright star off
//!   centre neither sets the scale nor dims the galaxy (it saturates, with
//!   its colour kept);
//! * but at least the intensity at which a 1σ sky fluctuation would show at
//!   [`NOISE_GREY`] (σ: 1.4826·MAD of the border pixels, RMS over the bands
//!   shown), so an empty or faint cutout shows dark noise rather than noise
//!   stretched to white. At Q = 8 this floor makes Lupton's stretch ≈ 5σ.
//!
//! Sqrt and Log are infinitely (or very) steep at zero, so their gain
//! F(I)/I is capped at its value at 1σ: otherwise sky pixels with I ≈ 0 would
//! turn into saturated colour speckles.
//!
//! # Single-band view
//!
//! The band's own sky (border median) and σ (MAD) set black at sky − 1σ and
//! white at sky + I_top (the same 99.5th percentile and noise floor as
//! above, for that band); the stretch runs between them, grey.
//!
//! # Masked pixels
//!
//! NaN/±inf pixels are drawn [`MASKED_GREY`] in every mode and every
//! statistic (medians, MADs, percentiles) is taken over finite pixels only,
//! so a masked pixel changes nothing but itself. A cutout with no finite
//! pixel is uniformly `MASKED_GREY`; an empty or inconsistent one is a small
//! `MASKED_GREY` square. Nothing here panics on bad data.
//!
//! # Zoom
//!
//! A central crop of (h/zoom) × (w/zoom) pixels, normalised with the whole
//! cutout's statistics so brightness does not jump when zooming.

mod bands;
mod cutout;
pub mod spectrum;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use bands::composite_bands;
pub use cutout::render_cutout;
pub use spectrum::{SpectrumView, flux_range, spectrum_segments};

/// Grey level of masked (non-finite) pixels, in every channel and mode.
pub const MASKED_GREY: u8 = 128;

/// Display level of a 1σ sky fluctuation on an empty cutout: the floor under
/// each object's brightness scale (see the module docs).
pub const NOISE_GREY: f32 = 0.15;

/// Side of the neutral square returned for empty or inconsistent input.
pub const EMPTY_SIDE: u32 = 8;

/// The intensity stretch, cycled with the `s` key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stretch {
    /// Lupton's asinh: linear for faint light, logarithmic for bright.
    #[default]
    Asinh,
    /// ds9-style log, log(1 + 1000x)/log(1001).
    Log,
    Linear,
    Sqrt,
}

impl Stretch {
    /// The next stretch in the cycle Asinh → Log → Linear → Sqrt → Asinh.
    pub fn next(self) -> Self {
        match self {
            Stretch::Asinh => Stretch::Log,
            Stretch::Log => Stretch::Linear,
            Stretch::Linear => Stretch::Sqrt,
            Stretch::Sqrt => Stretch::Asinh,
        }
    }

    /// Short lowercase name, for the status bar (and the serde form).
    pub fn name(self) -> &'static str {
        match self {
            Stretch::Asinh => "asinh",
            Stretch::Log => "log",
            Stretch::Linear => "linear",
            Stretch::Sqrt => "sqrt",
        }
    }
}

/// How to show a cutout: the part of the TUI's state the image depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewParams {
    pub stretch: Stretch,
    /// Lupton's softening Q (Asinh only); clamped to [0.001, 30].
    pub q: f32,
    /// Brightness multiplier on the intensity; non-positive means 1.
    pub alpha_scale: f32,
    /// `None`: colour composite; `Some(b)`: band `b` in grey (out of range
    /// falls back to the composite).
    pub band: Option<usize>,
    /// Central crop by this factor (1, 2, 4; 0 means 1).
    pub zoom: u8,
}

impl Default for ViewParams {
    fn default() -> Self {
        ViewParams { stretch: Stretch::Asinh, q: 8.0, alpha_scale: 1.0, band: None, zoom: 1 }
    }
}
