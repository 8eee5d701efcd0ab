//! Procedural pretraining data: iterated-function-system fractals rendered by
//! the chaos game, FractalDB-style (Kataoka et al. 2020; used for anomaly
//! detection pretraining in "Fractals as pre-training datasets for anomaly
//! detection"). No ImageNet weights can be downloaded, so the backbone learns
//! shapes and textures from these instead. Everything is a pure function of
//! the seed / RNG passed in.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// One affine map x' = A x + t of an IFS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Row-major 2x2 matrix [a, b, c, d].
    pub m: [f64; 4],
    pub t: [f64; 2],
}

impl Affine {
    #[inline]
    fn apply(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.m[0] * x + self.m[1] * y + self.t[0], self.m[2] * x + self.m[3] * y + self.t[1])
    }

    /// Singular values (largest first) of the linear part, in closed form for 2x2.
    pub fn singular_values(&self) -> (f64, f64) {
        let [a, b, c, d] = self.m;
        let s = a * a + b * b + c * c + d * d;
        let det = a * d - b * c;
        let disc = (s * s - 4.0 * det * det).max(0.0).sqrt();
        (((s + disc) / 2.0).sqrt(), ((s - disc) / 2.0).max(0.0).sqrt())
    }

    fn det(&self) -> f64 {
        self.m[0] * self.m[3] - self.m[1] * self.m[2]
    }
}

/// An IFS "class": 2–4 contractive maps and the probability of picking each.
#[derive(Debug, Clone, PartialEq)]
pub struct FractalClass {
    pub maps: Vec<Affine>,
    pub probs: Vec<f64>,
}

/// Largest singular value allowed for a map: keeps the attractor bounded and
/// the chaos game converging fast.
const MAX_SIGMA: f64 = 0.95;
/// Acceptable fraction of occupied pixels (FractalDB's filling-rate check):
/// below, the attractor is a few dots or a line; above, a featureless blob.
const FILL_RANGE: (f64, f64) = (0.08, 0.6);

impl FractalClass {
    fn random(rng: &mut impl Rng) -> Self {
        let n = rng.random_range(2..=4);
        let maps: Vec<Affine> = (0..n)
            .map(|_| Affine {
                m: std::array::from_fn(|_| rng.random_range(-1.0..1.0)),
                t: std::array::from_fn(|_| rng.random_range(-1.0..1.0)),
            })
            .collect();
        // Probability proportional to the area a map covers (|det|), as in FractalDB,
        // with a floor so no map is starved.
        let w: Vec<f64> = maps.iter().map(|m| m.det().abs().max(0.02)).collect();
        let sum: f64 = w.iter().sum();
        FractalClass { maps, probs: w.iter().map(|x| x / sum).collect() }
    }

    fn contractive(&self) -> bool {
        self.maps.iter().all(|m| {
            let (s1, s2) = m.singular_values();
            // s2 floor: a map that squashes to a line adds nothing visible.
            s1 <= MAX_SIGMA && s2 >= 0.05
        })
    }

    /// Run the chaos game: `n` points on the attractor, each with the index of
    /// the map that produced it (used for colouring).
    fn chaos_game(&self, n: usize, rng: &mut impl Rng) -> Vec<(f64, f64, usize)> {
        let mut p = (0.0, 0.0);
        let mut out = Vec::with_capacity(n);
        for i in 0..n + 20 {
            let u: f64 = rng.random();
            let mut k = 0;
            let mut acc = self.probs[0];
            while u > acc && k + 1 < self.maps.len() {
                k += 1;
                acc += self.probs[k];
            }
            p = self.maps[k].apply(p);
            // Skip the first iterations, before the point reaches the attractor.
            if i >= 20 {
                out.push((p.0, p.1, k));
            }
        }
        out
    }

    /// Fraction of a size x size grid hit by the attractor.
    pub fn filling_rate(&self, size: usize, rng: &mut impl Rng) -> f64 {
        let pts = self.chaos_game(size * size * 2, rng);
        let mut grid = vec![false; size * size];
        for (ix, iy, _) in rasterise(&pts, size) {
            grid[iy * size + ix] = true;
        }
        grid.iter().filter(|&&b| b).count() as f64 / (size * size) as f64
    }

    /// A copy with every parameter jittered by N(0, sigma): the instances of a
    /// class, as FractalDB's per-instance parameter perturbation.
    fn perturbed(&self, sigma: f64, rng: &mut impl Rng) -> Self {
        let noise = Normal::new(0.0, sigma).unwrap();
        let maps = self
            .maps
            .iter()
            .map(|m| {
                let mut a = Affine { m: m.m.map(|v| v + noise.sample(rng)), t: m.t.map(|v| v + noise.sample(rng)) };
                // Stay contractive whatever the jitter did.
                let (s1, _) = a.singular_values();
                if s1 > 0.98 {
                    a.m = a.m.map(|v| v * 0.98 / s1);
                }
                a
            })
            .collect();
        FractalClass { maps, probs: self.probs.clone() }
    }
}

/// Map points to pixel indices, fitting their bounding box (aspect kept) into
/// the image with a small margin.
fn rasterise(pts: &[(f64, f64, usize)], size: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y, _) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let margin = (size as f64 / 16.0).max(1.0);
    let span = (x1 - x0).max(y1 - y0).max(1e-9);
    let scale = (size as f64 - 2.0 * margin - 1.0) / span;
    // Centre the attractor.
    let ox = (size as f64 - (x1 - x0) * scale) / 2.0;
    let oy = (size as f64 - (y1 - y0) * scale) / 2.0;
    pts.iter().map(move |&(x, y, k)| {
        let ix = (((x - x0) * scale + ox) as usize).min(size - 1);
        let iy = (((y - y0) * scale + oy) as usize).min(size - 1);
        (ix, iy, k)
    })
}

/// `n_classes` distinct IFS classes, deterministic in `seed`. Candidates are
/// rejected unless every map is contractive and the filling rate is moderate.
pub fn sample_classes(n_classes: usize, seed: u64) -> Vec<FractalClass> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n_classes);
    while out.len() < n_classes {
        let c = FractalClass::random(&mut rng);
        if !c.contractive() {
            continue;
        }
        let fill = c.filling_rate(32, &mut rng);
        if (FILL_RANGE.0..=FILL_RANGE.1).contains(&fill) {
            out.push(c);
        }
    }
    out
}

/// Render one instance of `class` as `channels` x `size` x `size` (row-major,
/// band-major) f32 values in [0, 1]-ish (max 1 before noise).
///
/// Per instance: small parameter jitter; per map a random weight for each
/// band, so band ratios differ across the object (as colour gradients do in
/// galaxies); asinh density stretch (as for astronomical images); faint
/// Gaussian noise so the network never sees perfectly empty sky.
pub fn render(class: &FractalClass, size: usize, channels: usize, rng: &mut impl Rng) -> Vec<f32> {
    let inst = class.perturbed(0.02, rng);
    let weights: Vec<Vec<f64>> =
        (0..inst.maps.len()).map(|_| (0..channels).map(|_| rng.random_range(0.2..1.0)).collect()).collect();
    let pts = inst.chaos_game(size * size * 3, rng);

    let plane = size * size;
    let mut hist = vec![0f64; channels * plane];
    for (ix, iy, k) in rasterise(&pts, size) {
        for (b, w) in weights[k].iter().enumerate() {
            hist[b * plane + iy * size + ix] += w;
        }
    }
    // Soften by the typical occupied-pixel count so the stretch adapts to density.
    let (sum, n) = hist.iter().filter(|&&v| v > 0.0).fold((0.0, 0usize), |(s, n), &v| (s + v, n + 1));
    let soft = if n > 0 { sum / n as f64 } else { 1.0 } * 0.5;
    let mut img: Vec<f64> = hist.iter().map(|&v| (v / soft).asinh()).collect();
    let max = img.iter().cloned().fold(0.0, f64::max).max(1e-12);
    let sigma = rng.random_range(0.0..0.03);
    let noise = Normal::new(0.0, 1.0).unwrap();
    for v in img.iter_mut() {
        *v = *v / max + sigma * noise.sample(rng);
    }
    img.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l2(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn classes_are_contractive_and_deterministic() {
        let a = sample_classes(6, 42);
        let b = sample_classes(6, 42);
        assert_eq!(a, b);
        assert_ne!(a, sample_classes(6, 43));
        for c in &a {
            assert!((2..=4).contains(&c.maps.len()));
            assert!((c.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(c.maps.iter().all(|m| m.singular_values().0 <= MAX_SIGMA));
        }
        let r1 = render(&a[0], 32, 5, &mut ChaCha8Rng::seed_from_u64(7));
        let r2 = render(&a[0], 32, 5, &mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(r1, r2);
    }

    #[test]
    fn images_finite_nonempty_and_multiband() {
        let classes = sample_classes(4, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for c in &classes {
            let img = render(c, 32, 3, &mut rng);
            assert_eq!(img.len(), 3 * 32 * 32);
            assert!(img.iter().all(|v| v.is_finite()));
            let bright = img.iter().filter(|&&v| v > 0.2).count();
            assert!(bright > 20, "only {bright} bright pixels");
            // Bands are not copies of each other.
            assert!(l2(&img[..1024], &img[1024..2048]) > 0.1);
        }
    }

    #[test]
    fn classes_differ_more_than_instances() {
        let (k, m, s) = (8, 5, 32);
        let classes = sample_classes(k, 11);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let imgs: Vec<Vec<Vec<f32>>> =
            classes.iter().map(|c| (0..m).map(|_| render(c, s, 3, &mut rng)).collect()).collect();
        let means: Vec<Vec<f32>> = imgs
            .iter()
            .map(|inst| (0..inst[0].len()).map(|i| inst.iter().map(|v| v[i]).sum::<f32>() / m as f32).collect())
            .collect();
        let (mut between, mut nb) = (0.0, 0);
        for i in 0..k {
            for j in i + 1..k {
                between += l2(&means[i], &means[j]);
                nb += 1;
            }
        }
        let between = between / nb as f64;
        assert!(between > 5.0, "class means too alike: {between}");

        let (mut within, mut nw, mut across, mut na) = (0.0, 0, 0.0, 0);
        for ci in 0..k {
            for a in 0..m {
                for cj in 0..k {
                    for b in 0..m {
                        if (ci, a) >= (cj, b) {
                            continue;
                        }
                        let d = l2(&imgs[ci][a], &imgs[cj][b]);
                        if ci == cj {
                            within += d;
                            nw += 1;
                        } else {
                            across += d;
                            na += 1;
                        }
                    }
                }
            }
        }
        let (within, across) = (within / nw as f64, across / na as f64);
        eprintln!("between {between} within {within} across {across}");
        assert!(within < 0.8 * across, "within {within} vs across {across}");
    }
}
