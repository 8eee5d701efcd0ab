//! BPT demarcation curves, used here to *draw* line ratios that sit well
//! inside the intended region so the ground truth is unambiguous.
//!
//! x = log10([NII]6585 / Hα), y = log10([OIII]5008 / Hβ).

use rand::Rng;

// One definition of the curves and classes for the whole crate: the
// generator draws with the same geometry the classifier measures with.
pub use crate::features::spectral::{BptClass, bpt_region as classify, kauffmann03};

/// Margin (dex) kept between drawn points and every demarcation curve.
pub const MARGIN: f64 = 0.1;

/// True if every point within `MARGIN` (in x and y) has the same class.
pub fn robustly_in(class: BptClass, x: f64, y: f64) -> bool {
    let d = [-MARGIN, 0.0, MARGIN];
    d.iter().all(|&dx| d.iter().all(|&dy| classify(x + dx, y + dy) == class))
}

/// Draws (x, y) inside `class`'s region, at least `MARGIN` dex from any curve,
/// from the part of the plane real galaxies populate.
///
/// Panics on `Unclassifiable`, which has no region.
pub fn draw_ratios<R: Rng + ?Sized>(class: BptClass, rng: &mut R) -> (f64, f64) {
    loop {
        let (x, y) = match class {
            // Along the star-forming sequence, below the Kauffmann curve.
            BptClass::StarForming => {
                let x = rng.random_range(-1.2..-0.3);
                (x, kauffmann03(x) - rng.random_range(0.15..0.7))
            }
            BptClass::Composite => (rng.random_range(-0.35..0.25), rng.random_range(-0.7..0.3)),
            BptClass::Seyfert => (rng.random_range(-0.3..0.45), rng.random_range(0.55..1.15)),
            BptClass::Liner => (rng.random_range(0.0..0.6), rng.random_range(-0.35..0.45)),
            BptClass::Unclassifiable => panic!("unclassifiable has no BPT region"),
        };
        if robustly_in(class, x, y) {
            return (x, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn textbook_points() {
        assert_eq!(classify(-0.6, -0.3), BptClass::StarForming);
        assert_eq!(classify(-0.1, -0.3), BptClass::Composite);
        assert_eq!(classify(0.0, 0.9), BptClass::Seyfert);
        assert_eq!(classify(0.3, 0.1), BptClass::Liner);
        assert_eq!(classify(0.6, 0.0), BptClass::Liner);
    }

    #[test]
    fn drawn_points_are_robust() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for class in &BptClass::ALL[..4] {
            for _ in 0..200 {
                let (x, y) = draw_ratios(*class, &mut rng);
                assert!(robustly_in(*class, x, y));
            }
        }
    }
}
