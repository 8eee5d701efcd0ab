//! CNN inference including I/O, the oddity side: every image of a store read
//! from its HDF5 files, normalised and scored by the tiny (or lite0)
//! network the retrain uses, through the inference feed (a pool of reader
//! threads, bounded queues) and, for comparison, synchronously (read, then
//! compute). benches/infer_vs_pytorch.py runs a PyTorch DataLoader + h5py
//! over the same files in the same run. Prints one `key=value` line per mode.
//! Usage: cargo bench --bench infer -- STORE THREADS [tiny|lite0]
use std::collections::HashMap;
use std::time::Instant;

// The learn module compiled in here as in the oddity-learn binary (the library has no
// libtorch), its crate:: paths resolved to the library through these re-exports; only
// the feed and the network are used here (eval only by learn's unit tests).
#[allow(unused_imports)]
use oddity::{cli, detect, features, ingest, progress, render, retrain, shard, sky, store, synth, tui};
#[allow(dead_code, unused_imports)]
#[path = "../src/eval/mod.rs"]
mod eval;
#[allow(dead_code, unused_imports)]
#[path = "../src/learn/mod.rs"]
mod learn;

use learn::feed::{self, CutoutSpec, FeedOptions, ReadError};
use learn::net::{Net, NetConfig};
use store::{ObjectKey, SourceFile, SourceKind, Store};
use tch::{Device, nn};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let store_path = std::path::PathBuf::from(args.first().expect("usage: infer STORE THREADS [tiny|lite0]"));
    let threads: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let name = args.get(2).map(String::as_str).unwrap_or("tiny");
    let store = Store::open(&store_path).expect("a store");
    let sources: HashMap<u32, SourceFile> =
        store.sources().expect("sources").into_iter().filter(|(_, s)| s.kind == SourceKind::Images).collect();
    let keys: Vec<ObjectKey> = store.image_keys_owned().map(|k| k.expect("a key")).collect();
    drop(store);
    let first = sources.values().next().expect("an image file");
    let (bands, shape) = (first.bands.len(), (first.shape.0 as usize, first.shape.1 as usize));
    let spec = CutoutSpec { sources: &sources, bands, shape };
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let cfg = if name == "lite0" { NetConfig::lite0(bands as i64, 2) } else { NetConfig::tiny(bands as i64, 2) };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &cfg);
    let _guard = tch::no_grad_guard();
    let modes = [("warmup", threads, true), ("read-only", 0, false), ("synchronous", 0, true), ("feed", threads, true)];
    for (mode, readers, score) in modes {
        let opts = FeedOptions { batch: 256, readers, depth: 2, device: Device::Cpu };
        let t = Instant::now();
        let mut n = 0usize;
        feed::feed(&spec, &keys, &opts, |_, x| {
            n += if score { net.forward_t(&x, false).size()[0] } else { x.size()[0] } as usize;
            Ok::<_, ReadError>(())
        })
        .expect("every cutout reads");
        let s = t.elapsed().as_secs_f64();
        println!(
            "mode={mode} net={name} readers={readers} threads={threads} images={n} seconds={s:.3} images_per_s={:.1} params={}",
            n as f64 / s,
            net.num_params(&vs)
        );
    }
}
