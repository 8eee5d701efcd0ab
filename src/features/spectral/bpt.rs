//! The BPT diagram: the demarcation curves, the class of a point and of a
//! spectrum's lines, and why a spectrum is unclassifiable.

use super::{BPT_MIN_SNR, BptClass, LineMeasurement, LineProblem, SpectralLines};

/// Kauffmann et al. (2003) upper envelope of star-forming galaxies; only
/// its left branch (x < 0.05) is meaningful.
pub fn kauffmann03(x: f64) -> f64 {
    0.61 / (x - 0.05) + 1.3
}

/// Kewley et al. (2001) maximum-starburst line; only its left branch
/// (x < 0.47) is meaningful.
pub fn kewley01(x: f64) -> f64 {
    0.61 / (x - 0.47) + 1.19
}

/// Schawinski et al. (2007) Seyfert / LINER division.
pub fn schawinski07(x: f64) -> f64 {
    1.05 * x + 0.45
}

/// Region of the \[NII\] BPT diagram containing x = log10(\[NII\]6585/Hα),
/// y = log10(\[OIII\]5008/Hβ). Pure geometry; `Unclassifiable` only for
/// non-finite input.
///
/// The star-forming test comes first, as in Kauffmann et al.: far left
/// (x < −1.28) the two hyperbolae cross and a point just under Kauffmann but
/// above Kewley is a metal-poor HII region, not an AGN.
pub fn bpt_region(x: f64, y: f64) -> BptClass {
    if !x.is_finite() || !y.is_finite() {
        BptClass::Unclassifiable
    } else if x < 0.05 && y < kauffmann03(x) {
        BptClass::StarForming
    } else if x >= 0.47 || y > kewley01(x) {
        if y > schawinski07(x) { BptClass::Seyfert } else { BptClass::Liner }
    } else {
        BptClass::Composite
    }
}

/// BPT class from measured lines, with the diagram coordinates when the
/// class is not `Unclassifiable`. Any of Hα, \[NII\]6585, Hβ, \[OIII\]5008
/// missing, with S/N < 3 or with a non-positive flux gives `Unclassifiable`.
pub fn bpt_class(lines: &SpectralLines) -> (BptClass, Option<(f64, f64)>) {
    let good = |m: Option<LineMeasurement>| {
        m.filter(|m| m.snr >= BPT_MIN_SNR && m.flux > 0.0 && m.flux.is_finite()).map(|m| m.flux as f64)
    };
    let (Some(ha), Some(nii), Some(hb), Some(oiii)) =
        (good(lines.ha), good(lines.nii_6585), good(lines.hb), good(lines.oiii_5008))
    else {
        return (BptClass::Unclassifiable, None);
    };
    let (x, y) = ((nii / ha).log10(), (oiii / hb).log10());
    match bpt_region(x, y) {
        BptClass::Unclassifiable => (BptClass::Unclassifiable, None),
        c => (c, Some((x, y))),
    }
}

/// Why a spectrum has no BPT class: its [`LineProblem`], else the first of
/// the four BPT lines that is missing, below S/N 3 or not in emission. As
/// (reason shared by every spectrum like it, for counts; detail for people).
/// `None` when the lines are classifiable.
pub fn unclassifiable_reason(lines: &SpectralLines, problem: Option<&LineProblem>) -> Option<(String, String)> {
    if let Some(p) = problem {
        return Some((p.kind().to_string(), p.to_string()));
    }
    for (name, m) in [("Hα", lines.ha), ("[NII]", lines.nii_6585), ("Hβ", lines.hb), ("[OIII]", lines.oiii_5008)] {
        match m {
            None => {
                return Some((
                    format!("{name} not measured"),
                    format!("{name} not measured (masked or outside the range)"),
                ));
            }
            Some(m) if !m.flux.is_finite() || m.flux <= 0.0 => {
                return Some((format!("{name} not in emission"), format!("{name} flux {:.3} ≤ 0", m.flux)));
            }
            Some(m) if m.snr < BPT_MIN_SNR => {
                return Some((format!("{name} S/N < 3"), format!("{name} S/N {:.1} < {BPT_MIN_SNR}", m.snr)));
            }
            Some(_) => {}
        }
    }
    None
}

/// Why a stored spectrum has no BPT class: (reason for counts, detail), or
/// None when it has one.
pub fn why_unclassifiable(rec: &crate::store::LineRecord) -> Option<(String, String)> {
    if rec.bpt != BptClass::Unclassifiable {
        return None;
    }
    unclassifiable_reason(&rec.lines, rec.problem.as_ref())
        .or_else(|| Some(("BPT point not finite".into(), "BPT ratios not finite".into())))
}
