use super::*;
use rand::{Rng, SeedableRng};

fn rd(ra: f64, dec: f64) -> Radec {
    Radec { ra, dec }
}

#[test]
fn separations_are_great_circle() {
    assert!((separation_deg(rd(0.0, 0.0), rd(90.0, 0.0)) - 90.0).abs() < 1e-12);
    assert!((separation_deg(rd(10.0, 89.0), rd(190.0, 89.0)) - 2.0).abs() < 1e-9, "across the pole");
    assert!((separation_deg(rd(359.9999, 0.0), rd(0.0001, 0.0)) * 3600.0 - 0.72).abs() < 1e-6, "across RA 0");
    // 1 degree of RA at dec 60 is half a degree on the sky (to first order).
    let s = separation_deg(rd(100.0, 60.0), rd(101.0, 60.0));
    assert!((s - 0.49996).abs() < 1e-4, "{s}");
    assert!((separation_deg(rd(0.0, 0.0), rd(180.0, 0.0)) - 180.0).abs() < 1e-12, "antipodes");
}

/// Every pair within the radius, by brute force.
fn brute_nearest(a: &[Radec], b: &[Radec], r_arcsec: f64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, &p) in a.iter().enumerate() {
        let best = b
            .iter()
            .enumerate()
            .map(|(j, &q)| (separation_deg(p, q) * 3600.0, j))
            .filter(|(s, _)| *s <= r_arcsec)
            .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        if let Some((_, j)) = best {
            out.push((i, j));
        }
    }
    out
}

fn random_field(rng: &mut impl Rng, n: usize, ra0: f64, dec0: f64, size: f64) -> Vec<Radec> {
    (0..n)
        .map(|_| {
            let dec: f64 = (dec0 + rng.random_range(-size..size)).clamp(-90.0, 90.0);
            rd((ra0 + rng.random_range(-size..size)).rem_euclid(360.0), dec)
        })
        .collect()
}

#[test]
fn agrees_with_brute_force_everywhere_including_wrap_and_poles() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for &(ra0, dec0) in &[(0.0, 0.0), (150.0, 2.0), (45.0, 89.995), (300.0, -89.995), (0.0, 41.8), (180.0, -30.0)] {
        let a = random_field(&mut rng, 600, ra0, dec0, 0.01);
        // b: half are a's points moved by < 2", half random.
        let mut b: Vec<Radec> = a
            .iter()
            .take(300)
            .map(|p| {
                let (dx, dy): (f64, f64) = (rng.random_range(-1.5..1.5), rng.random_range(-1.5..1.5));
                let cosd = p.dec.to_radians().cos().max(1e-6);
                rd((p.ra + dx / 3600.0 / cosd).rem_euclid(360.0), (p.dec + dy / 3600.0).clamp(-90.0, 90.0))
            })
            .collect();
        b.extend(random_field(&mut rng, 300, ra0, dec0, 0.01));
        for r in [1.0, 3.0, 30.0] {
            let got: Vec<(usize, usize)> =
                crossmatch(&a, &b, r, MatchMode::Nearest).iter().map(|p| (p.a, p.b)).collect();
            assert_eq!(got, brute_nearest(&a, &b, r), "field ({ra0}, {dec0}) radius {r}\"");
        }
    }
}

#[test]
fn a_pair_straddling_a_healpix_border_is_matched() {
    // Two points 0.4" apart on either side of an nside-64 cell border.
    let depth = 6;
    let p = rd(0.5, 2.0);
    let h = cdshealpix::nested::hash(depth, p.ra.to_radians(), p.dec.to_radians());
    // Walk east until the cell changes.
    let mut q = p;
    while cdshealpix::nested::hash(depth, q.ra.to_radians(), q.dec.to_radians()) == h {
        q.ra += 0.1 / 3600.0;
    }
    let before = rd(q.ra - 0.2 / 3600.0, q.dec);
    let after = rd(q.ra + 0.2 / 3600.0, q.dec);
    let hash6 = |x: Radec| cdshealpix::nested::hash(depth, x.ra.to_radians(), x.dec.to_radians());
    assert_ne!(hash6(before), hash6(after), "the test points straddle a partition border");
    let m = crossmatch(&[before], &[after], 1.0, MatchMode::OneToOne);
    assert_eq!(m.len(), 1);
    assert!((m[0].sep_arcsec - 0.4).abs() < 0.01, "{:?}", m[0]);
}

#[test]
fn matches_across_ra_zero_and_at_the_pole() {
    let a = [rd(359.99995, 1.0), rd(17.0, 90.0), rd(200.0, -89.99999)];
    let b = [rd(0.00005, 1.0), rd(197.0, 89.99990), rd(20.0, -89.99995)];
    let m = crossmatch(&a, &b, 1.0, MatchMode::OneToOne);
    assert_eq!(m.iter().map(|p| (p.a, p.b)).collect::<Vec<_>>(), vec![(0, 0), (1, 1), (2, 2)]);
    assert!((m[0].sep_arcsec - 0.36).abs() < 1e-3, "{:?}", m[0]);
    assert!((m[1].sep_arcsec - 0.36).abs() < 1e-3, "{:?}", m[1]);
}

#[test]
fn two_images_competing_for_one_spectrum_the_closer_wins() {
    let spec = [rd(150.0, 2.0)];
    let images = [rd(150.0 + 0.8 / 3600.0, 2.0), rd(150.0, 2.0 + 0.3 / 3600.0)];
    let m = crossmatch(&images, &spec, 1.0, MatchMode::OneToOne);
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].a, m[0].b), (1, 0));
    // Nearest mode keeps both (as astropy would).
    assert_eq!(crossmatch(&images, &spec, 1.0, MatchMode::Nearest).len(), 2);
}

#[test]
fn one_to_one_gives_the_loser_its_next_partner() {
    let images = [rd(10.0, 0.0), rd(10.0 + 0.5 / 3600.0, 0.0)];
    let specs = [rd(10.0 + 0.4 / 3600.0, 0.0), rd(10.0 + 1.2 / 3600.0, 0.0)];
    let m = crossmatch(&images, &specs, 1.0, MatchMode::OneToOne);
    // image 1 takes spec 0 (0.1"), image 0's spec 0 is taken and spec 1 is 1.2" away: unmatched.
    assert_eq!(m.iter().map(|p| (p.a, p.b)).collect::<Vec<_>>(), vec![(1, 0)]);
    let m = crossmatch(&images, &specs, 1.5, MatchMode::OneToOne);
    assert_eq!(m.iter().map(|p| (p.a, p.b)).collect::<Vec<_>>(), vec![(0, 1), (1, 0)]);
}

#[test]
fn radius_parsing() {
    assert_eq!(parse_radius("1arcsec"), Ok(1.0));
    assert_eq!(parse_radius("1.5"), Ok(1.5));
    assert_eq!(parse_radius("2arcmin"), Ok(120.0));
    assert_eq!(parse_radius("0.001deg"), Ok(3.6));
    assert_eq!(parse_radius("500mas"), Ok(0.5));
    assert!(parse_radius("-1").is_err());
    assert!(parse_radius("1parsec").unwrap_err().contains("unknown unit"));
}

#[test]
fn huge_radius_falls_back_to_all_pairs() {
    let a = [rd(0.0, 0.0)];
    let b = [rd(40.0, 0.0), rd(90.0, 0.0)];
    let m = crossmatch(&a, &b, 45.0 * 3600.0, MatchMode::Nearest);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].b, 0);
}
