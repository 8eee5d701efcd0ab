//! CNN inference bench, the oddity (tch) side: the same EfficientNet-Lite
//! networks the retrain uses, 5-band 64x64 inputs, batch 64, eval mode, no
//! gradients, a fixed thread count. Prints one `key=value` line per network;
//! benches/cnn_vs_pytorch.py builds the identical network in PyTorch and runs
//! it in the same run. Usage: cargo bench --bench cnn -- THREADS
use std::time::Instant;

// The network code, compiled in here as in the oddity-learn binary (the library has no
// libtorch); only part of it is used here, and its unit tests are not run from here.
#[allow(dead_code, unused_imports)]
#[path = "../src/learn/net.rs"]
mod net;

use net::{Net, NetConfig};
use tch::{Device, Kind, Tensor, nn};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let threads: i32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2);
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    for (name, cfg) in [("tiny", NetConfig::tiny(5, 2)), ("lite0", NetConfig::lite0(5, 2))] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &cfg);
        let x = Tensor::randn([64, 5, 64, 64], (Kind::Float, Device::Cpu));
        let _guard = tch::no_grad_guard();
        for _ in 0..3 {
            let _ = net.forward_t(&x, false);
        }
        let t = Instant::now();
        let mut images = 0;
        while t.elapsed().as_secs_f64() < 3.0 {
            let y = net.forward_t(&x, false);
            assert_eq!(y.size(), [64, 2]);
            images += 64;
        }
        let rate = images as f64 / t.elapsed().as_secs_f64();
        println!("net={name} threads={threads} images_per_s={rate:.1} params={}", net.num_params(&vs));
    }
}
