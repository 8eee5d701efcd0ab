//! Sky geometry for the synthetic field: small offsets on the sphere,
//! great-circle separations and HEALPix cells.

/// Arcseconds per degree.
pub const ARCSEC: f64 = 3600.0;

/// Wraps a right ascension into [0, 360).
pub fn wrap_ra(ra: f64) -> f64 {
    let r = ra.rem_euclid(360.0);
    // rem_euclid of a tiny negative number rounds to exactly 360.
    if r >= 360.0 { r - 360.0 } else { r }
}

/// Moves (ra, dec) by `east`, `north` arcsec on the tangent plane: an offset
/// in RA is scaled by 1/cos(dec) so the offset on the sky is the one asked for.
pub fn offset(ra: f64, dec: f64, east: f64, north: f64) -> (f64, f64) {
    let dec2 = dec + north / ARCSEC;
    // Use the mean declination so that the great-circle length is right to
    // second order for the sub-arcminute offsets used here.
    let cosd = ((dec + dec2) * 0.5).to_radians().cos();
    (wrap_ra(ra + east / ARCSEC / cosd), dec2)
}

/// Great-circle separation in arcsec (haversine: accurate at small angles).
#[cfg_attr(not(test), allow(dead_code))]
pub fn separation_arcsec(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (p1, p2) = (dec1.to_radians(), dec2.to_radians());
    let dp = p2 - p1;
    let dl = (ra2 - ra1).to_radians();
    let h = (dp * 0.5).sin().powi(2) + p1.cos() * p2.cos() * (dl * 0.5).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin().to_degrees() * ARCSEC
}

/// HEALPix depth for an nside, which must be a power of two ≤ 2^29.
pub fn depth_of(nside: u32) -> Option<u8> {
    (nside.is_power_of_two() && nside <= 1 << 29).then(|| nside.trailing_zeros() as u8)
}

/// NESTED HEALPix cell of a position in degrees.
pub fn healpix(depth: u8, ra: f64, dec: f64) -> u64 {
    cdshealpix::nested::hash(depth, ra.to_radians(), dec.to_radians())
}

/// Finds two points either side of a HEALPix cell border near (ra, dec):
/// walks from it along the position angle `pa` (radians, east of north) until
/// the cell changes, then bisects the crossing down to `tol` arcsec.
///
/// Returns (inside, outside) positions, in different cells, `tol` apart.
pub fn border_crossing(depth: u8, ra: f64, dec: f64, pa: f64, tol: f64) -> ((f64, f64), (f64, f64)) {
    let (east, north) = (pa.sin(), pa.cos());
    let at = |d: f64| offset(ra, dec, east * d, north * d);
    let home = healpix(depth, ra, dec);
    // A cell is ~55' across at nside 64 and ~3.4° at nside 1; step at most
    // a fifth of that so no cell is jumped over.
    let cell_arcsec = 58.6 * ARCSEC / f64::from(1u32 << depth);
    let step = cell_arcsec / 5.0;
    let (mut lo, mut hi) = (0.0, step);
    while healpix(depth, at(hi).0, at(hi).1) == home {
        lo = hi;
        hi += step;
    }
    while hi - lo > tol {
        let mid = 0.5 * (lo + hi);
        if healpix(depth, at(mid).0, at(mid).1) == home { lo = mid } else { hi = mid }
    }
    (at(lo), at(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_great_circle_correct() {
        let (ra, dec) = offset(359.9999, 2.0, 0.4, -0.3);
        assert!(ra < 0.01, "wrapped: {ra}");
        let sep = separation_arcsec(359.9999, 2.0, ra, dec);
        assert!((sep - 0.5).abs() < 1e-6, "{sep}");
        // High declination: the RA offset in degrees is much larger.
        let (ra2, dec2) = offset(10.0, 80.0, 0.5, 0.0);
        assert!((separation_arcsec(10.0, 80.0, ra2, dec2) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn crossing_straddles_a_border() {
        let depth = depth_of(64).unwrap();
        let ((r1, d1), (r2, d2)) = border_crossing(depth, 0.3, 2.1, 1.0, 0.01);
        assert_ne!(healpix(depth, r1, d1), healpix(depth, r2, d2));
        assert!(separation_arcsec(r1, d1, r2, d2) <= 0.011);
        assert_eq!(depth_of(48), None);
    }
}
