//! The spectral lines oddity knows about: rest wavelengths in vacuum Ångström
//! (SDSS spectra are in vacuum wavelengths, so air values would be off by ~2 Å).
//!
//! One table shared by the synthetic spectrum generator, the line measurement
//! code and the spectrum display, so that they can never disagree.

/// Whether a line is seen in emission (gas) or absorption (stellar atmospheres).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Emission,
    Absorption,
}

/// A spectral line at its vacuum rest wavelength.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub name: &'static str,
    /// Vacuum rest wavelength in Ångström.
    pub wavelength: f64,
    pub kind: LineKind,
}

const fn emission(name: &'static str, wavelength: f64) -> Line {
    Line { name, wavelength, kind: LineKind::Emission }
}

const fn absorption(name: &'static str, wavelength: f64) -> Line {
    Line { name, wavelength, kind: LineKind::Absorption }
}

/// The lines of DESIGN.md ("Science the tool must get right"), in that order.
pub const LINES: &[Line] = &[
    emission("Hα", 6564.6),
    emission("[NII]", 6585.3),
    emission("Hβ", 4862.7),
    emission("[OIII]", 5008.2),
    emission("[OII]", 3728.5),
    emission("[SII]6718", 6718.3),
    emission("[SII]6733", 6732.7),
    absorption("Ca K", 3934.8),
    absorption("Ca H", 3969.6),
    absorption("Mg b", 5176.7),
    absorption("Na D", 5894.0),
];

/// Looks a line up by its name in [`LINES`] (e.g. `"Hα"`, `"[OIII]"`, `"Ca K"`).
pub fn line(name: &str) -> Option<&'static Line> {
    LINES.iter().find(|l| l.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_name() {
        assert_eq!(line("Hα").map(|l| l.wavelength), Some(6564.6));
        assert_eq!(line("Na D").map(|l| l.kind), Some(LineKind::Absorption));
        assert!(line("Lyα").is_none());
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in LINES.iter().enumerate() {
            assert!(LINES[i + 1..].iter().all(|b| b.name != a.name), "{}", a.name);
        }
    }
}
