//! EfficientNet-Lite family classifier (Tan & Le 2019, "Lite" variant: no
//! squeeze-excite, ReLU6 everywhere, stem and head not scaled), built with tch.
//!
//! Variables live under two sub-paths of the given `nn::Path`: `backbone`
//! (stem, MBConv blocks, 1x1 head conv) and `head` (the linear classifier), so
//! a pretrained backbone can be copied into a new store with another head
//! ([`copy_backbone`]).

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn, nn::ModuleT};

/// One stage of MBConv blocks, given at width/depth multiplier 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub expand: i64,
    pub kernel: i64,
    pub stride: i64,
    pub out_channels: i64,
    pub repeats: i64,
}

/// Architecture of a [`Net`]; serialisable so it can be stored next to a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    pub in_channels: i64,
    pub width_mult: f64,
    pub depth_mult: f64,
    pub num_classes: i64,
    /// Channels of the stem conv (Lite keeps this fixed instead of scaling it).
    pub stem_channels: i64,
    /// Channels of the final 1x1 conv = size of the pooled embedding.
    pub embed_dim: i64,
    pub dropout: f64,
    pub stages: Vec<Stage>,
}

const fn st(expand: i64, kernel: i64, stride: i64, out_channels: i64, repeats: i64) -> Stage {
    Stage { expand, kernel, stride, out_channels, repeats }
}

/// The B0/Lite0 stage table.
pub const LITE0_STAGES: [Stage; 7] = [
    st(1, 3, 1, 16, 1),
    st(6, 3, 2, 24, 2),
    st(6, 5, 2, 40, 2),
    st(6, 3, 2, 80, 3),
    st(6, 5, 1, 112, 3),
    st(6, 5, 2, 192, 4),
    st(6, 3, 1, 320, 1),
];

impl NetConfig {
    /// EfficientNet-Lite0: ~3.4 M parameters for 2 classes.
    pub fn lite0(in_channels: i64, num_classes: i64) -> Self {
        NetConfig {
            in_channels,
            width_mult: 1.0,
            depth_mult: 1.0,
            num_classes,
            stem_channels: 32,
            embed_dim: 1280,
            dropout: 0.2,
            stages: LITE0_STAGES.to_vec(),
        }
    }

    /// A few-block, quarter-width network for tests and CPU laptops.
    pub fn tiny(in_channels: i64, num_classes: i64) -> Self {
        NetConfig {
            in_channels,
            width_mult: 0.25,
            // ceil(0.25 * repeats) = 1: one block per stage, 7 blocks in all.
            depth_mult: 0.25,
            num_classes,
            stem_channels: 16,
            embed_dim: 128,
            dropout: 0.1,
            stages: LITE0_STAGES.to_vec(),
        }
    }

    /// Channels after width scaling, rounded to a multiple of 8 as in the reference code.
    fn round_filters(&self, ch: i64) -> i64 {
        let divisor = 8;
        let c = ch as f64 * self.width_mult;
        let mut new = ((c + divisor as f64 / 2.0) as i64 / divisor * divisor).max(divisor);
        if (new as f64) < 0.9 * c {
            new += divisor;
        }
        new
    }

    fn round_repeats(&self, r: i64) -> i64 {
        (self.depth_mult * r as f64).ceil().max(1.0) as i64
    }
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    // tch's default BN weight init is U(0,1); the reference uses ones.
    let cfg = nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        eps: 1e-3,
        // PyTorch's default rather than TF's 0.01: running statistics must
        // settle within short CPU fine-tuning runs.
        momentum: 0.1,
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, groups: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding: k / 2, groups, bias: false, ..Default::default() };
    nn::conv2d(p, i, o, k, cfg)
}

/// Inverted-residual block: expand 1x1 -> depthwise kxk -> project 1x1.
#[derive(Debug)]
struct MbConv {
    expand: Option<(nn::Conv2D, nn::BatchNorm)>,
    dw: nn::Conv2D,
    dw_bn: nn::BatchNorm,
    project: nn::Conv2D,
    project_bn: nn::BatchNorm,
    residual: bool,
}

impl MbConv {
    fn new(p: nn::Path, i: i64, o: i64, expand: i64, k: i64, stride: i64) -> Self {
        let mid = i * expand;
        let expand = (expand != 1).then(|| (conv(&p / "expand", i, mid, 1, 1, 1), bn(&p / "expand_bn", mid)));
        MbConv {
            expand,
            dw: conv(&p / "dw", mid, mid, k, stride, mid),
            dw_bn: bn(&p / "dw_bn", mid),
            project: conv(&p / "project", mid, o, 1, 1, 1),
            project_bn: bn(&p / "project_bn", o),
            residual: stride == 1 && i == o,
        }
    }
}

impl ModuleT for MbConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = match &self.expand {
            Some((c, b)) => x.apply(c).apply_t(b, train).relu6(),
            None => x.shallow_clone(),
        };
        let h = h.apply(&self.dw).apply_t(&self.dw_bn, train).relu6();
        let h = h.apply(&self.project).apply_t(&self.project_bn, train);
        if self.residual { h + x } else { h }
    }
}

/// Feature extractor: stem, MBConv stages, 1x1 head conv, global average pool.
#[derive(Debug)]
struct Backbone {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    blocks: Vec<MbConv>,
    head_conv: nn::Conv2D,
    head_bn: nn::BatchNorm,
}

impl Backbone {
    fn new(p: nn::Path, cfg: &NetConfig) -> Self {
        let stem_c = cfg.stem_channels;
        let mut blocks = Vec::new();
        let mut c = stem_c;
        for stage in &cfg.stages {
            let o = cfg.round_filters(stage.out_channels);
            for r in 0..cfg.round_repeats(stage.repeats) {
                let stride = if r == 0 { stage.stride } else { 1 };
                let bp = &p / format!("block{}", blocks.len());
                blocks.push(MbConv::new(bp, c, o, stage.expand, stage.kernel, stride));
                c = o;
            }
        }
        Backbone {
            stem: conv(&p / "stem", cfg.in_channels, stem_c, 3, 2, 1),
            stem_bn: bn(&p / "stem_bn", stem_c),
            blocks,
            head_conv: conv(&p / "head_conv", c, cfg.embed_dim, 1, 1, 1),
            head_bn: bn(&p / "head_bn", cfg.embed_dim),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.apply(&self.stem).apply_t(&self.stem_bn, train).relu6();
        for b in &self.blocks {
            h = b.forward_t(&h, train);
        }
        h.apply(&self.head_conv).apply_t(&self.head_bn, train).relu6().adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

/// The classifier: backbone + dropout + linear head.
#[derive(Debug)]
pub struct Net {
    cfg: NetConfig,
    backbone: Backbone,
    head: nn::Linear,
}

impl Net {
    pub fn new(vs: &nn::Path, cfg: &NetConfig) -> Net {
        Net {
            cfg: cfg.clone(),
            backbone: Backbone::new(vs / "backbone", cfg),
            head: nn::linear(vs / "head", cfg.embed_dim, cfg.num_classes, Default::default()),
        }
    }

    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Logits, N x num_classes.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.embed_t(x, train).dropout(self.cfg.dropout, train).apply(&self.head)
    }

    /// Pooled features, N x embed_dim (the input of the classifier head).
    pub fn embed_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.backbone.forward_t(x, train)
    }

    /// Swap in a freshly initialised head with `num_classes` outputs, created
    /// under `vs` (use a path other than the old head's, e.g. `root / "head2"`).
    /// The old head's variables stay in the store; for a clean checkpoint
    /// prefer building a new `Net` in a new store and [`copy_backbone`].
    pub fn replace_head(&mut self, vs: &nn::Path, num_classes: i64) {
        self.head = nn::linear(vs, self.cfg.embed_dim, num_classes, Default::default());
        self.cfg.num_classes = num_classes;
    }

    /// Number of scalar parameters in backbone and head.
    pub fn num_params(&self, vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }
}

impl ModuleT for Net {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        Net::forward_t(self, x, train)
    }
}

/// Copy every `backbone.*` variable (weights and BN statistics) of `src` into
/// the same-named variable of `dst`; returns how many were copied. Used to
/// start fine-tuning from a fractal-pretrained backbone with a new 2-class head.
pub fn copy_backbone(src: &nn::VarStore, dst: &nn::VarStore) -> Result<usize, tch::TchError> {
    let src_vars = src.variables();
    let mut n = 0;
    for (name, mut var) in dst.variables() {
        if !name.starts_with("backbone.") {
            continue;
        }
        let s = src_vars
            .get(&name)
            .ok_or_else(|| tch::TchError::TensorNameNotFound(name.clone(), "source VarStore".into()))?;
        tch::no_grad(|| var.f_copy_(s))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn forward_shapes_tiny_5band_64_and_3band_32() {
        // One intra-op thread: tests run side by side on small CI machines, and
        // OpenMP spin-waiting on a busy core costs far more than it gains.
        tch::set_num_threads(1);
        tch::manual_seed(0);
        for (c, s, k) in [(5, 64, 2), (3, 32, 7)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = NetConfig::tiny(c, k);
            let net = Net::new(&vs.root(), &cfg);
            let x = Tensor::randn([4, c, s, s], (Kind::Float, Device::Cpu));
            assert_eq!(net.forward_t(&x, true).size(), vec![4, k]);
            assert_eq!(net.forward_t(&x, false).size(), vec![4, k]);
            assert_eq!(net.embed_t(&x, false).size(), vec![4, cfg.embed_dim]);
        }
    }

    #[test]
    fn lite0_shape_and_size() {
        // One intra-op thread: tests run side by side on small CI machines, and
        // OpenMP spin-waiting on a busy core costs far more than it gains.
        tch::set_num_threads(1);
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &NetConfig::lite0(5, 2));
        let x = Tensor::randn([2, 5, 64, 64], (Kind::Float, Device::Cpu));
        let y = tch::no_grad(|| net.forward_t(&x, false));
        assert_eq!(y.size(), vec![2, 2]);
        // Lite0 is ~3.4 M parameters (B0 without SE and with a 2-class head).
        let n = net.num_params(&vs);
        assert!((3_000_000..3_800_000).contains(&n), "{n} params");
    }

    #[test]
    fn replace_head_and_copy_backbone() {
        // One intra-op thread: tests run side by side on small CI machines, and
        // OpenMP spin-waiting on a busy core costs far more than it gains.
        tch::set_num_threads(1);
        tch::manual_seed(1);
        let src = nn::VarStore::new(Device::Cpu);
        let mut net = Net::new(&src.root(), &NetConfig::tiny(3, 10));
        net.replace_head(&(src.root() / "head2"), 2);
        let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(net.forward_t(&x, false).size(), vec![3, 2]);

        let dst = nn::VarStore::new(Device::Cpu);
        let net2 = Net::new(&dst.root(), &NetConfig::tiny(3, 2));
        let n = copy_backbone(&src, &dst).unwrap();
        assert!(n > 10);
        let (e1, e2) = (net.embed_t(&x, false), net2.embed_t(&x, false));
        assert!(e1.allclose(&e2, 1e-6, 1e-6, false));
    }
}
