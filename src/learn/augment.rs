//! Augmentations for FixMatch on multi-band astronomical cutouts (N x C x H x W).
//!
//! Only operations that keep the physics: geometry (a galaxy has no preferred
//! orientation), per-image intensity changes applied identically to all bands
//! (band ratios = colours are kept), noise and blur (seeing). No colour jitter
//! across bands. Random choices come from the caller's RNG; Gaussian noise
//! from torch's generator (`tch::manual_seed`), since drawing millions of
//! normals through the RNG would dominate the step time.

use rand::Rng;
use tch::Tensor;

/// Weak augmentation: random flips, 90° rotations (square images) and integer
/// shifts of up to 2 px with reflect padding.
pub fn weak_augment(x: &Tensor, rng: &mut impl Rng) -> Tensor {
    weak_augment_with(x, 2, rng)
}

/// [`weak_augment`] with a chosen maximum shift (0 = flips and rotations only,
/// which permute pixels and so keep the pixel multiset).
pub fn weak_augment_with(x: &Tensor, max_shift: i64, rng: &mut impl Rng) -> Tensor {
    let (n, _c, h, w) = x.size4().expect("weak_augment wants N x C x H x W");
    if n == 0 {
        return x.shallow_clone();
    }
    // Reflect padding needs the pad smaller than the image.
    let max_shift = max_shift.min(h - 1).min(w - 1).max(0);
    let out: Vec<Tensor> = (0..n)
        .map(|i| {
            let mut xi = x.narrow(0, i, 1);
            if rng.random_bool(0.5) {
                xi = xi.flip([3]);
            }
            if rng.random_bool(0.5) {
                xi = xi.flip([2]);
            }
            if h == w {
                let k = rng.random_range(0..4);
                if k > 0 {
                    xi = xi.rot90(k, [2, 3]);
                }
            }
            if max_shift > 0 {
                let dy = rng.random_range(-max_shift..=max_shift);
                let dx = rng.random_range(-max_shift..=max_shift);
                if dx != 0 || dy != 0 {
                    let p = max_shift;
                    xi = xi.reflection_pad2d([p, p, p, p]).narrow(2, p + dy, h).narrow(3, p + dx, w);
                }
            }
            xi
        })
        .collect();
    Tensor::cat(&out, 0)
}

/// The RandAugment-style operations (FixMatch's RA with the colour ops
/// replaced by astronomy-safe ones). Two are drawn per image, each with a
/// random magnitude in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrongOp {
    Identity,
    Rotate,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    /// Multiply all bands by the same factor.
    Scale,
    /// sign(x)|x|^g, same g for all bands.
    Gamma,
    Noise,
    Blur,
}

pub const STRONG_OPS: [StrongOp; 10] = [
    StrongOp::Identity,
    StrongOp::Rotate,
    StrongOp::ShearX,
    StrongOp::ShearY,
    StrongOp::TranslateX,
    StrongOp::TranslateY,
    StrongOp::Scale,
    StrongOp::Gamma,
    StrongOp::Noise,
    StrongOp::Blur,
];

/// Strong augmentation: weak augmentation, two random [`StrongOp`]s per
/// image, then Cutout (a zeroed square of half the image side, i.e. ~25% of
/// the area, centred anywhere, as in FixMatch).
pub fn strong_augment(x: &Tensor, rng: &mut impl Rng) -> Tensor {
    let x = weak_augment(x, rng);
    let (n, c, h, w) = x.size4().expect("strong_augment wants N x C x H x W");
    if n == 0 {
        return x;
    }
    let dev = x.device();
    let mut theta = Vec::with_capacity(n as usize * 6);
    let mut scale = vec![1f32; n as usize];
    let mut gamma = vec![1f32; n as usize];
    let mut noise = vec![0f32; n as usize];
    let mut blur: Vec<Option<f64>> = vec![None; n as usize];
    let mut geometric = false;
    for i in 0..n as usize {
        // Affine in normalised coordinates ([-1, 1]), mapping output to input.
        let (mut a, mut b, mut cc, mut d, mut tx, mut ty) = (1.0f64, 0.0, 0.0, 1.0, 0.0, 0.0);
        for _ in 0..2 {
            let op = STRONG_OPS[rng.random_range(0..STRONG_OPS.len())];
            let m: f64 = rng.random();
            let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            match op {
                StrongOp::Identity => {}
                StrongOp::Rotate => {
                    let t = sign * m * std::f64::consts::PI;
                    let (s, co) = t.sin_cos();
                    (a, b, cc, d) = (co * a - s * cc, co * b - s * d, s * a + co * cc, s * b + co * d);
                    geometric = true;
                }
                StrongOp::ShearX => {
                    let k = sign * m * 0.3;
                    (a, b) = (a + k * cc, b + k * d);
                    geometric = true;
                }
                StrongOp::ShearY => {
                    let k = sign * m * 0.3;
                    (cc, d) = (cc + k * a, d + k * b);
                    geometric = true;
                }
                // Up to a quarter of the image side (0.5 in normalised [-1, 1] units).
                StrongOp::TranslateX => {
                    tx += sign * m * 0.5;
                    geometric = true;
                }
                StrongOp::TranslateY => {
                    ty += sign * m * 0.5;
                    geometric = true;
                }
                StrongOp::Scale => scale[i] *= (1.0 + sign * 0.5 * m) as f32,
                StrongOp::Gamma => gamma[i] *= (1.0 + sign * 0.4 * m) as f32,
                StrongOp::Noise => noise[i] = (0.1 * m) as f32,
                StrongOp::Blur => blur[i] = Some(0.5 + m),
            }
        }
        theta.extend([a, b, tx, cc, d, ty].map(|v| v as f32));
    }

    let mut x = x;
    if geometric {
        let theta = Tensor::from_slice(&theta).reshape([n, 2, 3]).to_device(dev).to_kind(x.kind());
        let grid = Tensor::affine_grid_generator(&theta, [n, c, h, w], false);
        // bilinear (0), zero padding (0): what rotates in from outside is empty sky.
        x = x.grid_sampler(&grid, 0, 0, false);
    }
    let kind = x.kind();
    let per_image = |v: &[f32]| Tensor::from_slice(v).reshape([n, 1, 1, 1]).to_device(dev).to_kind(kind);
    if gamma.iter().any(|&g| g != 1.0) {
        x = x.sign() * x.abs().pow(&per_image(&gamma));
    }
    if scale.iter().any(|&s| s != 1.0) {
        x = &x * per_image(&scale);
    }
    if noise.iter().any(|&s| s > 0.0) {
        // Noise relative to each image's own spread, so it means the same on any normalisation.
        let std = x.flatten(1, -1).std_dim(1, true, true).reshape([n, 1, 1, 1]);
        x = &x + x.randn_like() * per_image(&noise) * std;
    }
    if blur.iter().any(Option::is_some) {
        let rows: Vec<Tensor> = (0..n)
            .map(|i| {
                let xi = x.narrow(0, i, 1);
                match blur[i as usize] {
                    Some(sigma) => gaussian_blur(&xi, sigma),
                    None => xi,
                }
            })
            .collect();
        x = Tensor::cat(&rows, 0);
    }
    cutout(&x, h / 2, rng)
}

/// Depthwise Gaussian blur with a (2*ceil(2σ)+1)² kernel and reflect padding.
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    let (_, c, h, w) = x.size4().unwrap();
    let r = ((2.0 * sigma).ceil() as i64).min(h - 1).min(w - 1).max(1);
    let k1: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
    let s: f32 = k1.iter().sum();
    let k1 = Tensor::from_slice(&k1).to_device(x.device()).to_kind(x.kind()) / s as f64;
    let k = (k1.unsqueeze(1) * k1.unsqueeze(0)).expand([c, 1, 2 * r + 1, 2 * r + 1], false).contiguous();
    x.reflection_pad2d([r, r, r, r]).conv2d(&k, None::<Tensor>, [1, 1], [0, 0], [1, 1], c)
}

/// Zero a side x side square per image, centre uniform over the image (it may
/// hang over the border, so the zeroed area varies, as in the original Cutout).
pub fn cutout(x: &Tensor, side: i64, rng: &mut impl Rng) -> Tensor {
    let (n, _, h, w) = x.size4().unwrap();
    let mut mask = vec![1f32; (n * h * w) as usize];
    for i in 0..n {
        let cy = rng.random_range(0..h);
        let cx = rng.random_range(0..w);
        let (y0, y1) = ((cy - side / 2).max(0), (cy - side / 2 + side).min(h));
        let (x0, x1) = ((cx - side / 2).max(0), (cx - side / 2 + side).min(w));
        for y in y0..y1 {
            let row = ((i * h + y) * w) as usize;
            mask[row + x0 as usize..row + x1 as usize].fill(0.0);
        }
    }
    let mask = Tensor::from_slice(&mask).reshape([n, 1, h, w]).to_device(x.device()).to_kind(x.kind());
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tch::{Device, Kind};

    fn sorted(t: &Tensor) -> Vec<f32> {
        let mut v: Vec<f32> = t.flatten(0, -1).try_into().unwrap();
        v.sort_by(f32::total_cmp);
        v
    }

    #[test]
    fn weak_keeps_shape_and_pixel_multiset() {
        tch::manual_seed(0);
        let x = Tensor::randn([6, 5, 16, 16], (Kind::Float, Device::Cpu));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let y = weak_augment_with(&x, 0, &mut rng);
        assert_eq!(y.size(), x.size());
        for i in 0..6 {
            assert_eq!(sorted(&x.get(i)), sorted(&y.get(i)), "image {i}");
            // Bands move together: each band's multiset is preserved too.
            assert_eq!(sorted(&x.get(i).get(2)), sorted(&y.get(i).get(2)));
        }
        // Something actually changed for at least one image.
        assert!(!x.equal(&y));
        // With shifts, shape still kept.
        let z = weak_augment(&x, &mut rng);
        assert_eq!(z.size(), x.size());
        // Non-square images: flips only, still shape-preserving.
        let r = Tensor::randn([3, 2, 8, 12], (Kind::Float, Device::Cpu));
        assert_eq!(weak_augment(&r, &mut rng).size(), r.size());
    }

    #[test]
    fn strong_keeps_shape_finite_and_cuts_out() {
        tch::manual_seed(0);
        let x = Tensor::rand([16, 5, 32, 32], (Kind::Float, Device::Cpu)) + 0.5;
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let y = strong_augment(&x, &mut rng);
        assert_eq!(y.size(), x.size());
        assert!(bool::try_from(y.isfinite().all()).unwrap());
        // Every image has zeroed pixels (cutout), identical across bands.
        for i in 0..16 {
            let zeros = y.get(i).eq(0.0).to_kind(Kind::Float).sum(Kind::Float).double_value(&[]);
            assert!(zeros >= 5.0 * 8.0 * 8.0, "image {i}: {zeros} zeros");
        }
    }

    #[test]
    fn blur_preserves_flux_of_constant_image() {
        let x = Tensor::ones([1, 3, 10, 10], (Kind::Float, Device::Cpu));
        let y = gaussian_blur(&x, 1.0);
        assert!(y.allclose(&x, 1e-5, 1e-5, false));
    }
}
