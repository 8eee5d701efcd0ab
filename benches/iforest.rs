//! The Rust side of `scripts/bench-iforest`: fits and scores oddity's
//! Isolation Forest on a raw little-endian f32 matrix and prints one JSON line
//! (wall and CPU seconds, AUROC against the planted labels, peak RSS) for the driver
//! `benches/iforest_vs_sklearn.py` to put beside scikit-learn's figures.
//!
//! ```text
//! cargo bench --bench iforest -- --data X.bin --labels Y.bin --features 64
//!     [--trees 100] [--max-samples 256] [--seed 0] [--scores-out S.bin]
//! ```
//! X.bin: rows x features f32; Y.bin: one byte per row (1 = planted anomaly);
//! S.bin (optional): the scores as f32, for comparing with scikit-learn's.
// Without its `[[bench]] harness = false` stanza cargo builds this under libtest,
// which brings its own `main`.
#![cfg_attr(test, allow(dead_code))]

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::time::Instant;

use oddity::detect::{ForestParams, IsolationForest, auroc};

struct Args {
    data: String,
    labels: String,
    features: usize,
    params: ForestParams,
    scores_out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: String::new(),
        labels: String::new(),
        features: 0,
        params: ForestParams::default(),
        scores_out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue; // cargo bench passes it to harness-less benches
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--data" => args.data = value,
            "--labels" => args.labels = value,
            "--features" => args.features = number(&value)?,
            "--trees" => args.params.n_estimators = number(&value)?,
            "--max-samples" => args.params.max_samples = number(&value)?,
            "--seed" => args.params.seed = number(&value)? as u64,
            "--scores-out" => args.scores_out = Some(value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if args.data.is_empty() || args.labels.is_empty() || args.features == 0 {
        return Err("usage: iforest --data X.bin --labels Y.bin --features N [--trees T] \
                    [--max-samples S] [--seed K] [--scores-out S.bin]"
            .into());
    }
    Ok(args)
}

/// Reads little-endian f32s straight into their final Vec, 1 MiB at a time, so
/// the peak RSS is the matrix itself (as numpy's `fromfile` on the Python side).
fn read_f32(path: &str) -> std::io::Result<Vec<f32>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len() as usize / 4;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut out = Vec::with_capacity(len);
    let mut buf = vec![0u8; 1 << 20];
    while out.len() < len {
        let want = ((len - out.len()) * 4).min(buf.len());
        reader.read_exact(&mut buf[..want])?;
        out.extend(buf[..want].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    }
    Ok(out)
}

/// CPU time (user + system, all threads) this process has used, in seconds:
/// unlike wall time, it hardly moves when other jobs share the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // USER_HZ is 100 on every Linux ABI.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("iforest bench: {e}");
            std::process::exit(2);
        }
    };
    let data = read_f32(&args.data).expect("reading the data matrix");
    let labels: Vec<bool> = std::fs::read(&args.labels).expect("reading the labels").iter().map(|&b| b != 0).collect();
    let rows = data.len() / args.features;
    assert_eq!(rows * args.features, data.len(), "file size is not a whole number of rows");
    assert_eq!(labels.len(), rows, "one label byte per row");

    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let forest = IsolationForest::fit(&data, args.features, &args.params);
    let fit_s = start.elapsed().as_secs_f64();
    let scores = forest.score(&data);
    let total_s = start.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu_start;

    let auc = auroc(&scores, &labels).unwrap_or(f64::NAN);
    if let Some(path) = &args.scores_out {
        let bytes: Vec<u8> = scores.iter().flat_map(|s| s.to_le_bytes()).collect();
        File::create(path).and_then(|mut f| f.write_all(&bytes)).expect("writing the scores");
    }
    println!(
        "{{\"rows\": {rows}, \"features\": {}, \"threads\": {}, \"fit_s\": {fit_s:.4}, \"score_s\": {:.4}, \
         \"total_s\": {total_s:.4}, \"cpu_s\": {cpu_s:.2}, \"auroc\": {auc:.6}, \"peak_rss_mib\": {:.1}}}",
        args.features,
        rayon::current_num_threads(),
        total_s - fit_s,
        peak_rss_mib()
    );
}
