//! Sky geometry: great-circle separations and cross-matching of two catalogues.
//!
//! Cross-matching buckets one catalogue by HEALPix cell (cdshealpix, NESTED)
//! at a depth whose cells are several times the match radius, then looks for
//! partners of each point of the other catalogue in its cell and the eight
//! neighbours. HEALPix neighbours are correct across every cell border, across
//! RA 0/360 and around the poles, so no pair is lost at a partition border
//! (MultimodalUniverse's own utility matches within one file's cell only).

use rayon::prelude::*;

/// A position on the sky, degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radec {
    pub ra: f64,
    pub dec: f64,
}

/// Angular separation in degrees (Vincenty's formula: accurate at every
/// separation, unlike haversine near 180° or the law of cosines near 0°).
pub fn separation_deg(a: Radec, b: Radec) -> f64 {
    let (ra1, dec1, ra2, dec2) = (a.ra.to_radians(), a.dec.to_radians(), b.ra.to_radians(), b.dec.to_radians());
    let dra = ra2 - ra1;
    let (sd1, cd1) = dec1.sin_cos();
    let (sd2, cd2) = dec2.sin_cos();
    let (sdra, cdra) = dra.sin_cos();
    let num1 = cd2 * sdra;
    let num2 = cd1 * sd2 - sd1 * cd2 * cdra;
    let denom = sd1 * sd2 + cd1 * cd2 * cdra;
    num1.hypot(num2).atan2(denom).to_degrees()
}

fn unit_vector(p: Radec) -> [f64; 3] {
    let (sr, cr) = p.ra.to_radians().sin_cos();
    let (sd, cd) = p.dec.to_radians().sin_cos();
    [cd * cr, cd * sr, sd]
}

/// One cross-match pair: index into the first and second catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub sep_arcsec: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMode {
    /// Each `a` gets its nearest `b` within the radius (astropy's
    /// `match_to_catalog_sky` + a separation cut); a `b` may be used twice.
    Nearest,
    /// Like `Nearest`, but each `b` goes to at most one `a`: pairs are taken
    /// in order of separation, so a conflict is won by the closer pair.
    OneToOne,
}

/// The deepest HEALPix depth whose cells are at least four times the radius,
/// so the 3x3 block around a point's cell holds every partner within it.
fn depth_for(radius_deg: f64) -> u8 {
    let mut depth = 0u8;
    while depth < 24 && cell_deg(depth + 1) >= 4.0 * radius_deg {
        depth += 1;
    }
    depth
}

/// Mean size of a HEALPix cell at `depth`, degrees.
fn cell_deg(depth: u8) -> f64 {
    (4.0 * std::f64::consts::PI / (12.0 * 4f64.powi(depth as i32))).sqrt().to_degrees()
}

fn hash(depth: u8, p: Radec) -> u64 {
    cdshealpix::nested::hash(depth, p.ra.to_radians(), p.dec.to_radians())
}

/// Matches catalogue `a` against `b` within `radius_arcsec`.
/// Output is sorted by `a` index. Parallel over `a`.
pub fn crossmatch(a: &[Radec], b: &[Radec], radius_arcsec: f64, mode: MatchMode) -> Vec<Pair> {
    let radius_deg = radius_arcsec / 3600.0;
    let positive = radius_deg > 0.0; // false for NaN too
    if a.is_empty() || b.is_empty() || !positive {
        return Vec::new();
    }
    let index = Neighbours::new(b, radius_deg);
    // Queries go in cell order, so consecutive searches touch the same cache lines.
    let mut queries: Vec<(u64, u32)> =
        a.par_iter().enumerate().map(|(i, &p)| (hash(index.depth, p), i as u32)).collect();
    queries.par_sort_unstable();
    let a_vec: Vec<[f64; 3]> = a.par_iter().map(|&p| unit_vector(p)).collect();

    let pairs: Vec<Pair> = queries
        .par_iter()
        .fold(
            || (Vec::with_capacity(9), Vec::new()),
            |(mut scratch, mut out), &(h, i)| {
                let i = i as usize;
                let before = out.len();
                index.find(i, a[i], a_vec[i], h, &mut scratch, &mut out);
                if mode == MatchMode::Nearest {
                    keep_nearest(&mut out, before);
                }
                (scratch, out)
            },
        )
        .map(|(_, out)| out)
        .reduce(Vec::new, |mut x, mut y| {
            x.append(&mut y);
            x
        });

    let mut pairs = match mode {
        MatchMode::Nearest => pairs,
        MatchMode::OneToOne => one_to_one(pairs, a.len(), b.len()),
    };
    pairs.par_sort_unstable_by_key(|p| p.a);
    pairs
}

/// Of the pairs `out[before..]` (one query's), keeps only the nearest (ties:
/// lowest b index).
fn keep_nearest(out: &mut Vec<Pair>, before: usize) {
    if out.len() > before + 1 {
        let best = *out[before..]
            .iter()
            .min_by(|x, y| x.sep_arcsec.total_cmp(&y.sep_arcsec).then(x.b.cmp(&y.b)))
            .expect("non-empty");
        out.truncate(before);
        out.push(best);
    }
}

/// Catalogue `b` indexed for radius queries: sorted by HEALPix cell, with
/// unit vectors for a cheap first test.
struct Neighbours<'a> {
    b: &'a [Radec],
    depth: u8,
    /// Compare all pairs: the radius exceeds a 3x3 neighbourhood.
    brute: bool,
    /// (cell, index) pairs sorted by cell, found by binary search.
    keys: Vec<u64>,
    members: Vec<u32>,
    b_vec: Vec<[f64; 3]>,
    radius_deg: f64,
    chord2_max: f64,
}

impl<'a> Neighbours<'a> {
    fn new(b: &'a [Radec], radius_deg: f64) -> Neighbours<'a> {
        // Radii beyond a quarter of a base cell exceed a 3x3 neighbourhood:
        // compare all pairs there (only sensible for small catalogues anyway).
        let depth = depth_for(radius_deg);
        let brute = 4.0 * radius_deg > cell_deg(0);
        let mut cells: Vec<(u64, u32)> = b.par_iter().enumerate().map(|(i, &p)| (hash(depth, p), i as u32)).collect();
        cells.par_sort_unstable();
        let (keys, members): (Vec<u64>, Vec<u32>) = cells.into_iter().unzip();
        // Unit vectors make the radius test a dot product; the exact Vincenty
        // separation is computed only for pairs that pass it.
        let b_vec: Vec<[f64; 3]> = b.par_iter().map(|&p| unit_vector(p)).collect();
        // Squared chord length for the radius, with slack so that rounding never
        // drops a pair the exact separation keeps (chords, unlike 1 - cos, keep
        // their precision at arcsecond scales).
        let chord2_max = (2.0 * (radius_deg.to_radians() / 2.0).sin()).powi(2) * (1.0 + 1e-6) + 1e-24;
        Neighbours { b, depth, brute, keys, members, b_vec, radius_deg, chord2_max }
    }

    /// Appends to `out` the pairs of query `i` (position `p`, unit vector
    /// `v`, cell `h`) within the radius.
    fn find(&self, i: usize, p: Radec, v: [f64; 3], h: u64, scratch: &mut Vec<u64>, out: &mut Vec<Pair>) {
        let mut consider = |j: usize| {
            let q = self.b_vec[j];
            let (dx, dy, dz) = (v[0] - q[0], v[1] - q[1], v[2] - q[2]);
            if dx * dx + dy * dy + dz * dz > self.chord2_max {
                return;
            }
            let sep = separation_deg(p, self.b[j]);
            if sep <= self.radius_deg {
                out.push(Pair { a: i, b: j, sep_arcsec: sep * 3600.0 });
            }
        };
        if self.brute {
            (0..self.b.len()).for_each(&mut consider);
            return;
        }
        scratch.clear();
        scratch.push(h);
        cdshealpix::nested::append_bulk_neighbours(self.depth, h, scratch);
        // Neighbouring cells mostly sit near the point's own cell in NESTED
        // order: search outwards from it rather than over the whole array.
        let (keys, members) = (&self.keys, &self.members);
        let home = keys.partition_point(|&c| c < h);
        for &cell in scratch.iter() {
            let mut k = lower_bound_near(keys, home, cell);
            while k < keys.len() && keys[k] == cell {
                consider(members[k] as usize);
                k += 1;
            }
        }
    }
}

/// First index whose key is >= `target`, by galloping out from `hint`.
fn lower_bound_near(keys: &[u64], hint: usize, target: u64) -> usize {
    let n = keys.len();
    let hint = hint.min(n);
    if hint < n && keys[hint] < target {
        // Answer in (lo, hi]: gallop right until keys[hi] >= target.
        let mut lo = hint;
        let mut hi = hint + 1;
        let mut step = 1;
        while hi < n && keys[hi] < target {
            lo = hi;
            hi += step;
            step *= 2;
        }
        let hi = hi.min(n);
        lo + 1 + keys[lo + 1..hi].partition_point(|&c| c < target)
    } else {
        // Answer in [lo, hi]: gallop left until keys[lo] < target or lo = 0.
        let mut hi = hint;
        let mut lo = hint.saturating_sub(1);
        let mut step = 1;
        while lo > 0 && keys[lo] >= target {
            hi = lo;
            lo = lo.saturating_sub(step);
            step *= 2;
        }
        lo + keys[lo..hi].partition_point(|&c| c < target)
    }
}

/// Greedy assignment by separation: the globally closest pair first, then the
/// closest among the rest whose members are both free. Ties go to lower
/// indices, so the result does not depend on thread scheduling.
fn one_to_one(mut pairs: Vec<Pair>, n_a: usize, n_b: usize) -> Vec<Pair> {
    pairs.par_sort_unstable_by(|x, y| x.sep_arcsec.total_cmp(&y.sep_arcsec).then(x.a.cmp(&y.a)).then(x.b.cmp(&y.b)));
    let mut a_used = vec![false; n_a];
    let mut b_used = vec![false; n_b];
    pairs
        .into_iter()
        .filter(|p| {
            if a_used[p.a] || b_used[p.b] {
                return false;
            }
            a_used[p.a] = true;
            b_used[p.b] = true;
            true
        })
        .collect()
}

/// Parses a radius like `1arcsec`, `1"`, `0.5arcsec`, `2arcmin`, `2'`,
/// `0.001deg`; a bare number is arcseconds. Returns arcseconds.
pub fn parse_radius(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{text}` is not a radius (try 1arcsec, 2arcmin, 0.01deg)"))?;
    let scale = match unit.trim() {
        "" | "arcsec" | "as" | "\"" | "asec" => 1.0,
        "arcmin" | "am" | "'" | "amin" => 60.0,
        "deg" | "d" | "°" => 3600.0,
        "mas" => 1e-3,
        other => return Err(format!("unknown unit `{other}` in `{text}` (arcsec, arcmin, deg, mas)")),
    };
    let arcsec = value * scale;
    if !(arcsec > 0.0 && arcsec.is_finite()) {
        return Err(format!("radius `{text}` must be positive"));
    }
    Ok(arcsec)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[test]
fn galloping_lower_bound_matches_binary_search() {
    let keys: Vec<u64> = vec![1, 3, 3, 3, 7, 9, 9, 20, 31, 31, 40];
    for hint in 0..=keys.len() {
        for target in 0..45 {
            assert_eq!(
                lower_bound_near(&keys, hint, target),
                keys.partition_point(|&c| c < target),
                "hint {hint} target {target}"
            );
        }
    }
}
