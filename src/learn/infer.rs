//! Batched inference: anomaly probabilities and embeddings, eval mode, no grad.

use tch::{Device, Kind, Tensor};

use super::net::Net;

/// Run `f` over `images` (N x C x H x W, any device) in chunks of `batch`
/// moved to `device`, concatenating the CPU results.
fn batched(images: &Tensor, batch: i64, device: Device, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let n = images.size()[0];
    let batch = batch.max(1);
    let parts: Vec<Tensor> = (0..n)
        .step_by(batch as usize)
        .map(|s| {
            let x = images.narrow(0, s, batch.min(n - s)).to_device(device).to_kind(Kind::Float);
            tch::no_grad(|| f(&x)).to_device(Device::Cpu)
        })
        .collect();
    if parts.is_empty() { Tensor::zeros([0], (Kind::Float, Device::Cpu)) } else { Tensor::cat(&parts, 0) }
}

/// Anomaly probability per image: softmax(logits)[:, 1].
pub fn predict(net: &Net, images: &Tensor, batch: i64, device: Device) -> Vec<f32> {
    let p = batched(images, batch, device, |x| net.forward_t(x, false).softmax(-1, Kind::Float).select(1, 1));
    Vec::<f32>::try_from(&p.to_kind(Kind::Float)).expect("f32 probabilities")
}

/// Log-odds of "anomaly" per image (logit 1 − logit 0): the same order as
/// [`predict`] without its saturation at probability 1 in f32.
pub fn predict_logit(net: &Net, images: &Tensor, batch: i64, device: Device) -> Vec<f32> {
    let l = batched(images, batch, device, |x| {
        let l = net.forward_t(x, false);
        l.select(1, 1) - l.select(1, 0)
    });
    Vec::<f32>::try_from(&l.to_kind(Kind::Float)).expect("f32 log-odds")
}

/// Pooled backbone features, N x embed_dim on the CPU (for similarity search / UMAP).
pub fn embed(net: &Net, images: &Tensor, batch: i64, device: Device) -> Tensor {
    let e = batched(images, batch, device, |x| net.embed_t(x, false));
    if e.dim() == 1 { e.reshape([0, net.config().embed_dim]) } else { e }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::net::NetConfig;
    use tch::nn;

    #[test]
    fn predict_is_batch_independent_probability() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &NetConfig::tiny(5, 2));
        let x = Tensor::randn([10, 5, 32, 32], (Kind::Float, Device::Cpu));
        let a = predict(&net, &x, 3, Device::Cpu);
        let b = predict(&net, &x, 64, Device::Cpu);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|p| (0.0..=1.0).contains(p)));
        // Eval mode: BN uses running stats, so batching cannot change results.
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5));
        // Log-odds order objects as the probabilities do.
        let l = predict_logit(&net, &x, 4, Device::Cpu);
        assert!(a.iter().zip(&l).all(|(p, l)| (1.0 / (1.0 + (-l).exp()) - p).abs() < 1e-4));
        assert_eq!(embed(&net, &x, 4, Device::Cpu).size(), vec![10, 128]);
        let empty = Tensor::zeros([0, 5, 32, 32], (Kind::Float, Device::Cpu));
        assert!(predict(&net, &empty, 8, Device::Cpu).is_empty());
        assert_eq!(embed(&net, &empty, 8, Device::Cpu).size(), vec![0, 128]);
    }

    /// CPU throughput, for the report: `cargo test --release --lib learn::infer -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn predict_throughput() {
        tch::manual_seed(0);
        for (name, cfg, threads) in [
            ("tiny", NetConfig::tiny(5, 2), 1),
            ("tiny", NetConfig::tiny(5, 2), 2),
            ("lite0", NetConfig::lite0(5, 2), 1),
            ("lite0", NetConfig::lite0(5, 2), 2),
        ] {
            tch::set_num_threads(threads);
            let vs = nn::VarStore::new(Device::Cpu);
            let net = Net::new(&vs.root(), &cfg);
            let x = Tensor::randn([256, 5, 64, 64], (Kind::Float, Device::Cpu));
            predict(&net, &x.narrow(0, 0, 64), 64, Device::Cpu);
            let t = std::time::Instant::now();
            predict(&net, &x, 64, Device::Cpu);
            let s = t.elapsed().as_secs_f64();
            eprintln!("{name}: {:.0} images/s (64x64x5, batch 64, {} threads)", 256.0 / s, tch::get_num_threads());
        }
    }
}
