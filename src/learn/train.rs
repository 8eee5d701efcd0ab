//! Training loops: supervised pretraining on rendered fractals, then FixMatch
//! (Sohn et al. 2020) fine-tuning on the expert's few labels plus the
//! unlabelled survey, AnomalyMatch-style.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Reduction, Tensor, nn, nn::OptimizerConfig};

pub use super::augment::{strong_augment, weak_augment, weak_augment_with};
use super::fractal::{self, FractalClass};
use super::net::{Net, NetConfig};

/// SplitMix64 finaliser: independent-looking seeds from (seed, index) pairs,
/// so each batch / image can be regenerated on its own.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(parts.iter().fold(seed, |s, &p| mix(s, p)))
}

/// Settings for [`pretrain`].
#[derive(Debug, Clone)]
pub struct PretrainParams {
    pub n_classes: usize,
    pub images_per_class: usize,
    pub image_size: i64,
    pub epochs: usize,
    pub batch: usize,
    /// AdamW peak learning rate (cosine-decayed to 0 over all steps).
    pub lr: f64,
    pub weight_decay: f64,
    /// Random flips / 90° rotations / shifts of every batch.
    pub augment: bool,
    pub seed: u64,
}

impl Default for PretrainParams {
    fn default() -> Self {
        PretrainParams {
            n_classes: 1000,
            images_per_class: 100,
            image_size: 64,
            epochs: 10,
            batch: 128,
            lr: 2e-3,
            weight_decay: 0.01,
            augment: true,
            seed: 0,
        }
    }
}

/// Render the images (class, instance) as a C x S x S batch; each image is a
/// pure function of (seed, class, instance), so the dataset is fixed without
/// being stored.
pub fn render_fractal_batch(
    classes: &[FractalClass],
    items: &[(usize, usize)],
    size: i64,
    channels: i64,
    seed: u64,
) -> Tensor {
    let imgs: Vec<Vec<f32>> = items
        .par_iter()
        .map(|&(c, i)| {
            let mut rng = rng_for(seed, &[1, c as u64, i as u64]);
            fractal::render(&classes[c], size as usize, channels as usize, &mut rng)
        })
        .collect();
    let flat: Vec<f32> = imgs.concat();
    Tensor::from_slice(&flat).reshape([items.len() as i64, channels, size, size])
}

/// Supervised cross-entropy pretraining on `n_classes` fractal classes.
/// Builds a [`Net`] from `cfg` with `num_classes = n_classes`; returns its
/// store, the net and the mean loss of the last epoch. `progress(step, loss)`
/// is called after every step.
pub fn pretrain(
    cfg: &NetConfig,
    p: &PretrainParams,
    device: Device,
    progress: &dyn Fn(usize, f64),
) -> (nn::VarStore, Net, f64) {
    let vs = nn::VarStore::new(device);
    let cfg = NetConfig { num_classes: p.n_classes as i64, ..cfg.clone() };
    let net = Net::new(&vs.root(), &cfg);
    let classes = fractal::sample_classes(p.n_classes, p.seed);
    let mut opt = nn::adamw(0.9, 0.999, p.weight_decay).build(&vs, p.lr).expect("optimizer");

    let mut items: Vec<(usize, usize)> =
        (0..p.n_classes).flat_map(|c| (0..p.images_per_class).map(move |i| (c, i))).collect();
    let batch = p.batch.max(1);
    let steps_per_epoch = items.len().div_ceil(batch);
    let total = (steps_per_epoch * p.epochs).max(1);
    let mut step = 0;
    let mut last_epoch_loss = f64::NAN;
    for epoch in 0..p.epochs {
        items.shuffle(&mut rng_for(p.seed, &[2, epoch as u64]));
        let mut sum = 0.0;
        for (b, chunk) in items.chunks(batch).enumerate() {
            let mut rng = rng_for(p.seed, &[3, epoch as u64, b as u64]);
            let x = render_fractal_batch(&classes, chunk, p.image_size, cfg.in_channels, p.seed);
            // Orientation carries no class information, as for galaxies.
            let x = if p.augment { weak_augment(&x, &mut rng) } else { x }.to_device(device);
            let y: Vec<i64> = chunk.iter().map(|&(c, _)| c as i64).collect();
            let y = Tensor::from_slice(&y).to_device(device);

            opt.set_lr(cosine_lr(p.lr, step, total));
            let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            let l = loss.double_value(&[]);
            sum += l;
            step += 1;
            progress(step, l);
        }
        last_epoch_loss = sum / steps_per_epoch as f64;
    }
    (vs, net, last_epoch_loss)
}

/// Cosine decay from `lr` to 0 with a short linear warm-up (5% of the steps).
fn cosine_lr(lr: f64, step: usize, total: usize) -> f64 {
    let warm = (total / 20).max(1);
    if step < warm {
        return lr * (step + 1) as f64 / warm as f64;
    }
    let t = (step - warm) as f64 / (total - warm).max(1) as f64;
    lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Pseudo-labels and confidence mask from the weak-view logits: labels =
/// argmax, mask = 1.0 where max softmax >= `tau` else 0.0 (f32).
pub fn pseudo_label_mask(logits_weak: &Tensor, tau: f64) -> (Tensor, Tensor) {
    let probs = logits_weak.detach().softmax(-1, Kind::Float);
    let (max, labels) = probs.max_dim(-1, false);
    (labels, max.ge(tau).to_kind(Kind::Float))
}

/// Exponential moving average of all variables of a store (trainable ones
/// averaged; BN running statistics copied, as in the FixMatch reference).
/// The decay ramps up as min(decay, (1+n)/(10+n)) so short runs are not
/// dominated by the random initialisation.
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    updates: u64,
    shadow: Vec<(String, Tensor)>,
}

impl Ema {
    pub fn new(vs: &nn::VarStore, decay: f64) -> Self {
        let mut shadow: Vec<(String, Tensor)> =
            vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
        shadow.sort_by(|a, b| a.0.cmp(&b.0));
        Ema { decay, updates: 0, shadow }
    }

    /// Fold the current weights of `vs` into the average.
    pub fn update(&mut self, vs: &nn::VarStore) {
        self.updates += 1;
        let n = self.updates as f64;
        let d = self.decay.min((1.0 + n) / (10.0 + n));
        let vars = vs.variables();
        tch::no_grad(|| {
            for (name, s) in self.shadow.iter_mut() {
                let v = &vars[name];
                if v.requires_grad() {
                    let _ = s.lerp_(v, 1.0 - d);
                } else {
                    s.copy_(v);
                }
            }
        });
    }

    /// Overwrite the weights of `vs` with the averaged ones.
    pub fn apply_to(&self, vs: &nn::VarStore) {
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (name, s) in &self.shadow {
                if let Some(v) = vars.get_mut(name) {
                    v.copy_(s);
                }
            }
        });
    }

    /// The averaged weights, sorted by name.
    pub fn weights(&self) -> &[(String, Tensor)] {
        &self.shadow
    }
}

/// A copy of all variables of `vs`, e.g. to evaluate with EMA weights and
/// then [`restore`] the raw ones.
pub fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

pub fn restore(vs: &nn::VarStore, snap: &HashMap<String, Tensor>) {
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (k, v) in vars.iter_mut() {
            if let Some(s) = snap.get(k) {
                v.copy_(s);
            }
        }
    });
}

/// The expert's labelled examples: images N x C x H x W and labels in {0
/// normal, 1 anomaly}. Images may live on the CPU; batches move to `device`.
#[derive(Debug)]
pub struct Labelled {
    pub images: Tensor,
    pub labels: Vec<i64>,
}

/// How FixMatch updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// SGD with Nesterov momentum, the FixMatch paper's choice for long GPU runs.
    Sgd,
    /// AdamW: converges in the few hundred steps a CPU affords.
    AdamW,
}

#[derive(Debug, Clone)]
pub struct FixMatchParams {
    pub steps: usize,
    /// Labelled batch size B.
    pub batch: usize,
    /// Unlabelled batch is mu * B.
    pub mu: usize,
    /// Confidence threshold for pseudo-labels.
    pub tau: f64,
    /// Weight of the unlabelled loss.
    pub lambda_u: f64,
    pub optimizer: Optimizer,
    /// Peak learning rate, decayed as cos(7πk / 16K).
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub ema_decay: f64,
    /// Copy the EMA weights into the store at the end (what inference should use).
    pub apply_ema: bool,
    /// Expected fraction of anomalies (class 1) among the unlabelled images.
    /// When set, the unlabelled images are learnt as normal with the
    /// non-negative PU risk for that prior instead of FixMatch pseudo-labels
    /// (which collapse when anomalies are rare); `None` is plain FixMatch.
    pub prior: Option<f64>,
    pub seed: u64,
}

impl Default for FixMatchParams {
    fn default() -> Self {
        FixMatchParams {
            steps: 2000,
            batch: 32,
            mu: 7,
            tau: 0.95,
            lambda_u: 1.0,
            optimizer: Optimizer::Sgd,
            lr: 0.03,
            momentum: 0.9,
            weight_decay: 5e-4,
            ema_decay: 0.999,
            apply_ema: true,
            prior: None,
            seed: 0,
        }
    }
}

/// Per-step numbers passed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub step: usize,
    pub loss: f64,
    pub sup_loss: f64,
    pub unsup_loss: f64,
    /// Fraction of unlabelled images whose pseudo-label passed the threshold
    /// (1 with a prior: every one counts).
    pub mask_rate: f64,
    /// Fraction of those pseudo-labels that say "anomaly" (class 1); with a
    /// prior, the share of the pool the model calls anomalous.
    pub pseudo_anomaly: f64,
}

#[derive(Debug, Clone)]
pub struct FixMatchReport {
    pub steps: usize,
    pub history: Vec<StepStats>,
    /// Whether the store now holds the EMA weights.
    pub ema_applied: bool,
}

impl FixMatchReport {
    pub fn last(&self) -> Option<&StepStats> {
        self.history.last()
    }
}

/// Indices for a labelled batch with the classes equally represented
/// (oversampling the rare anomalies); plain uniform sampling if only one
/// class is present.
fn balanced_indices(labels: &[i64], batch: usize, rng: &mut impl Rng) -> Vec<i64> {
    let mut by_class: Vec<Vec<i64>> = Vec::new();
    let mut seen: Vec<i64> = Vec::new();
    for (i, &y) in labels.iter().enumerate() {
        match seen.iter().position(|&s| s == y) {
            Some(k) => by_class[k].push(i as i64),
            None => {
                seen.push(y);
                by_class.push(vec![i as i64]);
            }
        }
    }
    (0..batch)
        .map(|j| {
            // Round-robin over classes, random member within a class.
            let class = &by_class[(j + rng.random_range(0..by_class.len())) % by_class.len()];
            class[rng.random_range(0..class.len())]
        })
        .collect()
}

fn gather(images: &Tensor, idx: &[i64], device: Device) -> Tensor {
    let idx = Tensor::from_slice(idx).to_device(images.device());
    images.index_select(0, &idx).to_device(device).to_kind(Kind::Float)
}

/// FixMatch: per step a class-balanced labelled batch B (weakly augmented)
/// and mu·B unlabelled images seen weakly (for pseudo-labels) and strongly
/// (for the loss): loss = CE(labelled) + λ_u · mean(mask · CE(strong, pseudo)).
/// Keeps an EMA of the weights; with `params.apply_ema` they end up in `vs`.
pub fn fixmatch_train(
    net: &Net,
    vs: &nn::VarStore,
    labelled: &Labelled,
    unlabelled: &Tensor,
    params: &FixMatchParams,
    device: Device,
    progress: &dyn Fn(&StepStats),
) -> FixMatchReport {
    assert_eq!(labelled.images.size()[0] as usize, labelled.labels.len(), "one label per image");
    assert!(!labelled.labels.is_empty(), "FixMatch needs at least one labelled image");
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut opt = match params.optimizer {
        Optimizer::Sgd => {
            nn::Sgd { momentum: params.momentum, dampening: 0.0, wd: params.weight_decay, nesterov: true }
                .build(vs, params.lr)
        }
        Optimizer::AdamW => nn::adamw(0.9, 0.999, params.weight_decay).build(vs, params.lr),
    }
    .expect("optimizer");
    let mut ema = Ema::new(vs, params.ema_decay);
    let n_unl = unlabelled.size().first().copied().unwrap_or(0);
    let b = params.batch.max(1);
    let ub = if n_unl > 0 { params.mu * b } else { 0 };
    let mut history = Vec::with_capacity(params.steps);

    for step in 0..params.steps {
        let k = step as f64 / params.steps.max(1) as f64;
        opt.set_lr(params.lr * (7.0 * std::f64::consts::PI * k / 16.0).cos());

        let li = balanced_indices(&labelled.labels, b, &mut rng);
        let xl = weak_augment(&gather(&labelled.images, &li, device), &mut rng);
        let yl: Vec<i64> = li.iter().map(|&i| labelled.labels[i as usize]).collect();
        let yl = Tensor::from_slice(&yl).to_device(device);

        let (loss, sup, unsup, mask_rate, pseudo_anomaly) = if ub > 0 {
            let ui: Vec<i64> = (0..ub).map(|_| rng.random_range(0..n_unl)).collect();
            let xu = gather(unlabelled, &ui, device);
            let uw = weak_augment(&xu, &mut rng);
            match params.prior {
                // Anomalies are rare in the pool: it is learnt as "normal"
                // with the non-negative PU risk (Kiryo et al. 2017),
                // relu(E_u[CE(normal)] − π E_anomalies[CE(normal)]), instead
                // of the model's own pseudo-labels, which drift onto the
                // anomaly class when the expert's "normal" labels are odd
                // objects from the top of a ranking; ordinary objects then
                // shape the normal class. The pool is seen with the same
                // weak augmentation as the labelled batch, so the network
                // cannot tell the two apart by augmentation artefacts.
                Some(prior) => {
                    let logits = net.forward_t(&Tensor::cat(&[xl, uw], 0), true);
                    let ll = logits.narrow(0, 0, b as i64);
                    let lu = logits.narrow(0, b as i64, ub as i64);
                    let sup = ll.cross_entropy_for_logits(&yl);
                    let normal = Tensor::zeros([ub as i64], (Kind::Int64, device));
                    let unl = lu.cross_entropy_loss(&normal, None::<Tensor>, Reduction::Mean, -100, 0.0);
                    let pos = yl.eq(1).to_kind(Kind::Float);
                    let ce_pos = ll.cross_entropy_loss(&yl.zeros_like(), None::<Tensor>, Reduction::None, -100, 0.0);
                    let pos_as_normal = (ce_pos * &pos).sum(Kind::Float) / pos.sum(Kind::Float).clamp_min(1.0);
                    let unsup = (unl - pos_as_normal * prior).clamp_min(0.0);
                    let loss = &sup + &unsup * params.lambda_u;
                    // Statistics: the share of the pool the model calls anomalous.
                    let said = lu.detach().softmax(-1, Kind::Float).select(1, 1).ge(0.5).to_kind(Kind::Float);
                    let pa = said.mean(Kind::Float).double_value(&[]);
                    (loss, sup.double_value(&[]), unsup.double_value(&[]), 1.0, pa)
                }
                None => {
                    let us = strong_augment(&xu, &mut rng);
                    // One forward over everything so BN sees all three views together.
                    let logits = net.forward_t(&Tensor::cat(&[xl, uw, us], 0), true);
                    let ll = logits.narrow(0, 0, b as i64);
                    let lw = logits.narrow(0, b as i64, ub as i64);
                    let ls = logits.narrow(0, (b + ub) as i64, ub as i64);
                    let sup = ll.cross_entropy_for_logits(&yl);
                    let (pl, mask) = pseudo_label_mask(&lw, params.tau);
                    let ce = ls.cross_entropy_loss(&pl, None::<Tensor>, Reduction::None, -100, 0.0);
                    let unsup = (ce * &mask).mean(Kind::Float);
                    let loss = &sup + &unsup * params.lambda_u;
                    let n_mask = mask.sum(Kind::Float).double_value(&[]);
                    let n_pos = (pl.to_kind(Kind::Float) * &mask).sum(Kind::Float).double_value(&[]);
                    let pa = if n_mask > 0.0 { n_pos / n_mask } else { 0.0 };
                    (loss, sup.double_value(&[]), unsup.double_value(&[]), n_mask / ub as f64, pa)
                }
            }
        } else {
            let sup = net.forward_t(&xl, true).cross_entropy_for_logits(&yl);
            (sup.shallow_clone(), sup.double_value(&[]), 0.0, 0.0, 0.0)
        };
        opt.backward_step(&loss);
        ema.update(vs);
        let stats = StepStats {
            step: step + 1,
            loss: loss.double_value(&[]),
            sup_loss: sup,
            unsup_loss: unsup,
            mask_rate,
            pseudo_anomaly,
        };
        progress(&stats);
        history.push(stats);
    }
    if params.apply_ema {
        ema.apply_to(vs);
    }
    FixMatchReport { steps: params.steps, history, ema_applied: params.apply_ema }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_label_mask_respects_threshold_exactly() {
        // Two-class logits with softmax p = sigmoid(d): choose d for p just
        // below / above 0.95.
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let rows = [[0.0, logit(0.9499)], [0.0, logit(0.9501)], [logit(0.9501), 0.0], [logit(0.9499), 0.0], [0.0, 0.0]];
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let logits = Tensor::from_slice(&flat).reshape([5, 2]);
        let (labels, mask) = pseudo_label_mask(&logits, 0.95);
        assert_eq!(Vec::<i64>::try_from(&labels).unwrap()[..4], [1, 1, 0, 0]);
        assert_eq!(Vec::<f32>::try_from(&mask).unwrap(), vec![0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(mask.kind(), Kind::Float);
    }

    #[test]
    fn lr_schedule_warms_up_and_decays() {
        assert!(cosine_lr(1.0, 0, 100) < 0.5);
        assert!((cosine_lr(1.0, 5, 100) - 1.0).abs() < 1e-9);
        assert!(cosine_lr(1.0, 99, 100) < 0.01);
    }

    #[test]
    fn balanced_batches_oversample_rare_class() {
        let mut labels = vec![0i64; 98];
        labels.extend([1, 1]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let idx = balanced_indices(&labels, 1000, &mut rng);
        let ones = idx.iter().filter(|&&i| labels[i as usize] == 1).count();
        assert!((400..600).contains(&ones), "{ones} anomalies of 1000");
    }

    #[test]
    fn pretrain_reduces_loss_on_two_fractal_classes() {
        // One intra-op thread: tests run side by side on small CI machines, and
        // OpenMP spin-waiting on a busy core costs far more than it gains.
        tch::set_num_threads(1);
        let _seeded = crate::learn::seeded_torch();
        tch::manual_seed(0);
        let losses = std::cell::RefCell::new(Vec::new());
        let p = PretrainParams {
            n_classes: 2,
            images_per_class: 4,
            image_size: 32,
            epochs: 12,
            batch: 4,
            lr: 3e-3,
            weight_decay: 0.0,
            // Memorising 8 fixed images is what a dozen steps can show.
            augment: false,
            seed: 3,
        };
        let (_vs, net, final_loss) =
            pretrain(&NetConfig::tiny(3, 2), &p, Device::Cpu, &|_, l| losses.borrow_mut().push(l));
        let losses = losses.into_inner();
        assert_eq!(losses.len(), 24);
        let first = losses[..2].iter().sum::<f64>() / 2.0;
        assert!(final_loss < first, "first epoch {first}, last epoch {final_loss}");
        assert_eq!(net.config().num_classes, 2);
    }

    /// Toy separable problem: class 1 has a bright blob in the centre, class 0 is noise.
    fn toy(n: i64, anomaly: bool) -> Tensor {
        let noise = Tensor::randn([n, 3, 16, 16], (Kind::Float, Device::Cpu)) * 0.3;
        if !anomaly {
            return noise;
        }
        let r = Tensor::arange(16, (Kind::Float, Device::Cpu)) - 7.5;
        let blob = (-(r.unsqueeze(0).square() + r.unsqueeze(1).square()) / 8.0).exp() * 3.0;
        noise + blob.reshape([1, 1, 16, 16])
    }

    #[test]
    fn with_a_prior_ordinary_pool_images_shape_the_normal_class() {
        // The expert's "normal" labels are odd objects (a bright bar, as the
        // top of a ranking gives); the pool is ordinary noise with a few
        // blobs. Learnt as positive-unlabelled, plain noise is normal and
        // blobs the model never saw rank above it.
        tch::set_num_threads(1);
        let _seeded = crate::learn::seeded_torch();
        tch::manual_seed(0);
        let bar = |n: i64| {
            let b = Tensor::zeros([n, 3, 16, 16], (Kind::Float, Device::Cpu));
            let _ = b.narrow(2, 7, 2).fill_(3.0);
            toy(n, false) + b
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &NetConfig::tiny(3, 2));
        let mut labels = vec![0i64; 12];
        labels.extend([1; 6]);
        let labelled = Labelled { images: Tensor::cat(&[bar(12), toy(6, true)], 0), labels };
        let unlabelled = Tensor::cat(&[toy(60, false), toy(3, true)], 0);
        let params = FixMatchParams { steps: 60, batch: 8, mu: 2, prior: Some(0.05), ..Default::default() };
        let report = fixmatch_train(&net, &vs, &labelled, &unlabelled, &params, Device::Cpu, &|_| {});
        assert!(report.history.iter().all(|s| s.mask_rate == 1.0 && s.loss.is_finite()));
        let tail = &report.history[50..];
        let called = tail.iter().map(|s| s.pseudo_anomaly).sum::<f64>() / tail.len() as f64;
        assert!(called < 0.2, "the model calls {called} of the ordinary pool anomalous");
        let fresh = Tensor::cat(&[toy(40, false), toy(10, true)], 0);
        let p = crate::learn::infer::predict_logit(&net, &fresh, 64, Device::Cpu);
        let y: Vec<bool> = (0..50).map(|i| i >= 40).collect();
        let auroc = crate::detect::auroc(&p, &y).unwrap();
        assert!(auroc > 0.95, "unseen blobs above unseen ordinary images: {auroc}");
    }

    #[test]
    fn fixmatch_reduces_supervised_loss_and_ema_tracks() {
        // One intra-op thread: tests run side by side on small CI machines, and
        // OpenMP spin-waiting on a busy core costs far more than it gains.
        tch::set_num_threads(1);
        let _seeded = crate::learn::seeded_torch();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &NetConfig::tiny(3, 2));
        let images = Tensor::cat(&[toy(12, false), toy(4, true)], 0);
        let mut labels = vec![0i64; 12];
        labels.extend([1; 4]);
        let labelled = Labelled { images, labels };
        let unlabelled = Tensor::cat(&[toy(28, false), toy(4, true)], 0);
        let params = FixMatchParams { steps: 30, batch: 8, mu: 2, lr: 0.05, apply_ema: false, ..Default::default() };

        let before = snapshot(&vs);
        let report = fixmatch_train(&net, &vs, &labelled, &unlabelled, &params, Device::Cpu, &|_| {});
        assert_eq!(report.history.len(), 30);
        let mean = |s: &[StepStats]| s.iter().map(|x| x.sup_loss).sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&report.history[..5]), mean(&report.history[25..]));
        assert!(last < first, "sup loss {first} -> {last}");
        assert!(report.history.iter().all(|s| s.loss.is_finite() && (0.0..=1.0).contains(&s.mask_rate)));

        // EMA: differs from the raw weights but lies much closer to them than the start did.
        let raw = snapshot(&vs);
        let mut ema = Ema::new(&vs, 0.9);
        ema.shadow = before.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
        ema.shadow.sort_by(|a, b| a.0.cmp(&b.0));
        ema.updates = 1000; // past the warm-up: decay is exactly 0.9, 0.9^20 ≈ 0.12 of the gap remains
        for _ in 0..20 {
            ema.update(&vs);
        }
        let dist = |a: &HashMap<String, Tensor>, b: &[(String, Tensor)]| -> f64 {
            b.iter()
                .filter(|(k, _)| k.ends_with("weight"))
                .map(|(k, t)| (&a[k] - t).square().sum(Kind::Float).double_value(&[]))
                .sum::<f64>()
                .sqrt()
        };
        let start: Vec<(String, Tensor)> = before.into_iter().collect();
        let (d_ema, d_start) = (dist(&raw, ema.weights()), dist(&raw, &start));
        assert!(d_ema > 0.0 && d_ema < 0.5 * d_start, "ema {d_ema}, start {d_start}");
        ema.apply_to(&vs);
        let applied = snapshot(&vs);
        assert!(dist(&applied, ema.weights()) == 0.0);
        restore(&vs, &raw);
        assert!(dist(&snapshot(&vs), &raw.into_iter().collect::<Vec<_>>()) == 0.0);
    }
}
