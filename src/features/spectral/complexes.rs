//! The lines the fit reports and the three complexes they are fitted in.

use std::sync::LazyLock;

use crate::features::lines::line;

/// Reported lines, in [`SpectralLines`] field order, by their name in
/// [`super::lines::LINES`].
pub(super) const SLOTS: [&str; 7] = ["Hα", "[NII]", "Hβ", "[OIII]", "[OII]", "[SII]6718", "[SII]6733"];
pub(super) const HA: usize = 0;
pub(super) const NII: usize = 1;
pub(super) const HB: usize = 2;
pub(super) const OIII: usize = 3;
pub(super) const OII: usize = 4;
pub(super) const SII1: usize = 5;
pub(super) const SII2: usize = 6;

/// Vacuum rest wavelengths of lines fitted but not reported (not in the
/// shared table): the weak members of the \[NII\] and \[OIII\] doublets, and the
/// two \[OII\] components (the table holds their blend, 3728.5).
pub(super) const NII_6550: f64 = 6549.86;
pub(super) const OIII_4960: f64 = 4960.30;
pub(super) const OII_3727: f64 = 3727.09;
pub(super) const OII_3730: f64 = 3729.88;

pub(super) fn rest(name: &str) -> f64 {
    line(name).unwrap_or_else(|| panic!("{name} missing from features::lines::LINES")).wavelength
}

/// A narrow line fitted in a complex, and which reported line (if any) its
/// flux goes to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Component {
    pub(super) rest: f64,
    pub(super) slot: Option<usize>,
}

#[derive(Debug)]
pub(super) struct Complex {
    pub(super) narrow: Vec<Component>,
    /// Reported Balmer line that may get a broad component and that gets a
    /// stellar absorption trough.
    pub(super) balmer: Option<usize>,
    /// Rest-frame region fitted, Å.
    pub(super) region: (f64, f64),
    /// Degree of the continuum polynomial.
    pub(super) degree: usize,
}

pub(super) static COMPLEXES: LazyLock<[Complex; 3]> = LazyLock::new(|| {
    let c = |rest, slot| Component { rest, slot };
    [
        Complex {
            narrow: vec![c(OII_3727, Some(OII)), c(OII_3730, Some(OII))],
            balmer: None,
            region: (3670.0, 3785.0),
            degree: 1,
        },
        Complex {
            narrow: vec![c(rest(SLOTS[HB]), Some(HB)), c(OIII_4960, None), c(rest(SLOTS[OIII]), Some(OIII))],
            balmer: Some(HB),
            region: (4760.0, 5080.0),
            degree: 2,
        },
        Complex {
            narrow: vec![
                c(NII_6550, None),
                c(rest(SLOTS[HA]), Some(HA)),
                c(rest(SLOTS[NII]), Some(NII)),
                c(rest(SLOTS[SII1]), Some(SII1)),
                c(rest(SLOTS[SII2]), Some(SII2)),
            ],
            balmer: Some(HA),
            region: (6330.0, 6860.0),
            degree: 2,
        },
    ]
});
