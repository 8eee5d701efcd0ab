//! Cross-match bench, the Rust side: reads positions written by
//! benches/crossmatch_vs_astropy.py, matches them (nearest within the radius,
//! like astropy's `match_to_catalog_sky` + a separation cut), checks the
//! matches are the same as astropy's, prints seconds and peak RSS.
//! Run through `scripts/bench-crossmatch`.

use std::time::Instant;

use oddity::sky::{MatchMode, Radec, crossmatch};

fn read_f64(path: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn read_i64(path: &str) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    // cargo bench passes `--bench`; our arguments follow it.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let dir = args.first().expect("usage: crossmatch DIR [RADIUS_ARCSEC]");
    let radius: f64 = args.get(1).map(|r| r.parse().expect("radius")).unwrap_or(1.0);
    let to_radec = |ra: Vec<f64>, dec: Vec<f64>| -> Vec<Radec> {
        ra.into_iter().zip(dec).map(|(ra, dec)| Radec { ra, dec }).collect()
    };
    let a = to_radec(read_f64(&format!("{dir}/a_ra.bin")), read_f64(&format!("{dir}/a_dec.bin")));
    let b = to_radec(read_f64(&format!("{dir}/b_ra.bin")), read_f64(&format!("{dir}/b_dec.bin")));
    let t = Instant::now();
    let pairs = crossmatch(&a, &b, radius, MatchMode::Nearest);
    let secs = t.elapsed().as_secs_f64();
    // astropy's answer: for each a, the index of its match in b, or -1.
    let reference = read_i64(&format!("{dir}/astropy_idx.bin"));
    let mut ours = vec![-1i64; a.len()];
    for p in &pairs {
        ours[p.a] = p.b as i64;
    }
    let same = ours.iter().zip(&reference).filter(|(x, y)| x == y).count();
    let differ = a.len() - same;
    println!(
        "oddity_seconds={secs:.3} oddity_rss_mib={:.0} matches={} differing={differ}",
        peak_rss_mib(),
        pairs.len()
    );
}
