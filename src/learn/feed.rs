//! The inference feed: cutouts read, normalised and batched by a pool of
//! reader threads while the consumer runs the network, so I/O and compute
//! overlap (the job of PyTorch's DataLoader with `num_workers`).
//!
//! Batch `i` of the keys goes to reader `i % readers`, and each reader has
//! its own bounded channel, so the consumer takes batches in key order from
//! the channels in turn: no reordering buffer, and at most
//! `readers × (depth + 1)` batches are in memory whatever the catalogue
//! size. Each reader opens its own [`SourceReader`]s. HDF5 reads are
//! serialised by hdf5-metno's library-wide lock (the HDF5 C library is not
//! thread-safe), so several readers are correct; what runs in parallel is the
//! rest (FITS and image decoding, the normalisation, resampling) and, above
//! all, the network. On CUDA each batch is put in pinned (page-locked) host
//! memory by its reader, and the consumer copies it to the device without
//! blocking.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, sync_channel};

use tch::{Device, Kind, Tensor};

use crate::ingest::{SourceReader, open_source};
use crate::store::{ObjectKey, SourceFile};

/// A read that failed: names the file and the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

/// Which files the cutouts come from and the N×C×H×W shape they are made into.
#[derive(Clone, Copy)]
pub struct CutoutSpec<'a> {
    pub sources: &'a HashMap<u32, SourceFile>,
    pub bands: usize,
    /// (height, width) every cutout is resampled to.
    pub shape: (usize, usize),
}

/// Open source readers by file id, kept between reads (one set per thread).
pub type Tables = HashMap<u32, Box<dyn SourceReader>>;

/// How the feed batches and how many threads read.
#[derive(Debug, Clone, Copy)]
pub struct FeedOptions {
    /// Cutouts per batch handed to the consumer.
    pub batch: usize,
    /// Reader threads; 0 reads on the consumer's thread (no overlap).
    pub readers: usize,
    /// Batches each reader may have waiting (the bounded queue).
    pub depth: usize,
    /// Where the consumer runs the network: CUDA batches go through pinned memory.
    pub device: Device,
}

impl FeedOptions {
    /// `batch` per batch, two batches queued per reader, readers = the cores
    /// (at most 4; more only add waiting on the HDF5 lock).
    pub fn new(batch: usize, device: Device) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        FeedOptions { batch: batch.max(1), readers: cores.clamp(1, 4), depth: 2, device }
    }
}

/// Runs `consume(start, x)` on every batch of `keys` in order: `x` holds the
/// normalised cutouts of `keys[start..start + n]` (n×C×H×W f32, on
/// `opts.device`). Stops at the first error, a read's or the consumer's.
pub fn feed<E: From<ReadError>>(
    spec: &CutoutSpec,
    keys: &[ObjectKey],
    opts: &FeedOptions,
    mut consume: impl FnMut(usize, Tensor) -> Result<(), E>,
) -> Result<(), E> {
    let batch = opts.batch.max(1);
    let (c, (h, w)) = (spec.bands as i64, spec.shape);
    let device = opts.device;
    let to_tensor = move |px: &[f32], n: usize| {
        let x = Tensor::from_slice(px).reshape([n as i64, c, h as i64, w as i64]);
        // Pinned memory lets the host-to-device copy run asynchronously; without
        // it (or if pinning fails) the plain tensor is copied synchronously.
        if device.is_cuda() { x.f_pin_memory(device).unwrap_or(x) } else { x }
    };
    let on_device = |x: Tensor| if device.is_cuda() { x.to_device_(device, Kind::Float, true, false) } else { x };
    let chunks: Vec<&[ObjectKey]> = keys.chunks(batch).collect();
    if opts.readers == 0 {
        let mut tables = Tables::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let px = read_cutouts(spec, &mut tables, chunk)?;
            consume(i * batch, on_device(to_tensor(&px, chunk.len())))?;
        }
        return Ok(());
    }
    let readers = opts.readers.min(chunks.len()).max(1);
    std::thread::scope(|s| {
        let mut rxs: Vec<Receiver<Result<Tensor, ReadError>>> = Vec::with_capacity(readers);
        for r in 0..readers {
            let (tx, rx) = sync_channel(opts.depth.max(1));
            rxs.push(rx);
            let chunks = &chunks;
            s.spawn(move || {
                let mut tables = Tables::new();
                for chunk in chunks.iter().skip(r).step_by(readers) {
                    let x = read_cutouts(spec, &mut tables, chunk).map(|px| to_tensor(&px, chunk.len()));
                    let failed = x.is_err();
                    // A closed channel: the consumer stopped; so do we.
                    if tx.send(x).is_err() || failed {
                        return;
                    }
                }
            });
        }
        let result = (|| {
            for (i, _) in chunks.iter().enumerate() {
                let x = rxs[i % readers].recv().expect("a reader sends every batch of its share or an error")?;
                consume(i * batch, on_device(x))?;
            }
            Ok(())
        })();
        // Readers blocked on a full queue see it closed and stop before the scope joins them.
        drop(rxs);
        result
    })
}

/// Reads and normalises the cutouts of `keys` (any order) into one
/// N×C×H×W buffer in that order: rows of one file that follow each other
/// are read in one go, at most 256 at a time.
pub fn read_cutouts(spec: &CutoutSpec, tables: &mut Tables, keys: &[ObjectKey]) -> Result<Vec<f32>, ReadError> {
    let (c, (h, w)) = (spec.bands, spec.shape);
    let per = c * h * w;
    let mut out = vec![0f32; keys.len() * per];
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let mut start = 0;
    while start < order.len() {
        let first = keys[order[start]];
        let mut end = start + 1;
        while end < order.len() && end - start < 256 && {
            let k = keys[order[end]];
            k.file == first.file && k.row == first.row + (end - start) as u32
        } {
            end += 1;
        }
        let source = spec
            .sources
            .get(&first.file)
            .ok_or_else(|| ReadError(format!("object {first:?}: no image file in the store")))?;
        if let std::collections::hash_map::Entry::Vacant(slot) = tables.entry(first.file) {
            slot.insert(open_source(source).map_err(|e| ReadError(format!("{}: {e}", source.path)))?);
        }
        let rows = first.row as usize..first.row as usize + (end - start);
        let px = tables[&first.file]
            .read_images(rows.clone())
            .map_err(|e| ReadError(format!("{}: rows {}..{}: {e}", source.path, rows.start, rows.end)))?;
        let data = px.data.as_standard_layout();
        let src = data.as_slice().unwrap_or_default();
        let from = (source.shape.0 as usize, source.shape.1 as usize);
        let sper = c * from.0 * from.1;
        if src.len() != (end - start) * sper {
            return Err(ReadError(format!(
                "{}: rows {}..{}: cutouts of {} values, expected {c} bands x {} x {}",
                source.path,
                rows.start,
                rows.end,
                src.len() / (end - start).max(1),
                from.0,
                from.1
            )));
        }
        for (j, &i) in order[start..end].iter().enumerate() {
            normalised_cutout(&src[j * sper..(j + 1) * sper], c, from, (h, w), &mut out[i * per..(i + 1) * per]);
        }
        start = end;
    }
    Ok(out)
}

/// Per-band robust normalisation for the network: sky (border median)
/// subtracted, divided by the sky noise, asinh-compressed; NaN become 0.
pub fn normalise(pixels: &mut [f32], bands: usize, h: usize, w: usize) {
    for b in 0..bands {
        let band = &mut pixels[b * h * w..(b + 1) * h * w];
        let mut border: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .filter(|&(y, x)| y < 2 || x < 2 || y + 2 >= h || x + 2 >= w)
            .map(|(y, x)| band[y * w + x])
            .filter(|v| v.is_finite())
            .collect();
        let median = |v: &mut Vec<f32>| -> f32 {
            if v.is_empty() {
                return 0.0;
            }
            let m = v.len() / 2;
            *v.select_nth_unstable_by(m, f32::total_cmp).1
        };
        let sky = median(&mut border);
        let mut dev: Vec<f32> = border.iter().map(|v| (v - sky).abs()).collect();
        let noise = (1.4826 * median(&mut dev)).max(1e-6);
        for v in band.iter_mut() {
            *v = if v.is_finite() { ((*v - sky) / (3.0 * noise)).asinh() } else { 0.0 };
        }
    }
}

/// Copies a C×H×W cutout of size `from` into `dst` (C×`to`), normalised for
/// the network and resampled when the sizes differ.
pub fn normalised_cutout(src: &[f32], c: usize, from: (usize, usize), to: (usize, usize), dst: &mut [f32]) {
    if from == to {
        dst.copy_from_slice(src);
        normalise(dst, c, to.0, to.1);
    } else {
        let mut own = src.to_vec();
        normalise(&mut own, c, from.0, from.1);
        dst.copy_from_slice(&resample(&own, c, from, to));
    }
}

/// Resamples a normalised C×H×W cutout to `to` (antialiased bilinear, so
/// larger cutouts are averaged down rather than aliased), for a network that
/// takes one input size whatever the cutouts' sizes.
pub fn resample(pixels: &[f32], c: usize, from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    let x = Tensor::from_slice(pixels).reshape([1, c as i64, from.0 as i64, from.1 as i64]);
    let y = x.internal_upsample_bilinear2d_aa([to.0 as i64, to.1 as i64], false, None, None);
    Vec::<f32>::try_from(&y.reshape([-1])).expect("f32 pixels")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{IngestOptions, ingest};
    use crate::learn::infer::predict_logit;
    use crate::learn::net::{Net, NetConfig};
    use crate::progress::NoProgress;
    use crate::store::{SourceKind, Store};
    use crate::synth::{SynthConfig, write_survey};

    /// A small synthetic survey ingested into a store: its image sources and keys.
    fn survey(dir: &std::path::Path) -> (HashMap<u32, SourceFile>, Vec<ObjectKey>) {
        let cfg = SynthConfig { n_galaxies: 90, size: 32, nside: 2, ..Default::default() };
        write_survey(&dir.join("survey"), &cfg, &|_| {}).unwrap();
        let store = Store::open_or_create(&dir.join("store")).unwrap();
        ingest(&store, &[dir.join("survey")], &IngestOptions::default(), &NoProgress).unwrap();
        let sources: HashMap<u32, SourceFile> =
            store.sources().unwrap().into_iter().filter(|(_, s)| s.kind == SourceKind::Images).collect();
        let keys: Vec<ObjectKey> = store.image_keys_owned().map(|k| k.unwrap()).collect();
        (sources, keys)
    }

    #[test]
    fn the_reader_pool_gives_the_synchronous_logits_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let (sources, mut keys) = survey(dir.path());
        assert!(sources.len() > 1 && keys.len() > 50, "{} files, {} keys", sources.len(), keys.len());
        // Not in file order: the batches and the rows within them must come back as asked.
        keys.reverse();
        keys.swap(3, 40);
        let spec = CutoutSpec { sources: &sources, bands: 5, shape: (32, 32) };
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &NetConfig::tiny(5, 2));
        let whole = Tensor::from_slice(&read_cutouts(&spec, &mut Tables::new(), &keys).unwrap()).reshape([
            keys.len() as i64,
            5,
            32,
            32,
        ]);
        // The same batches as the feed's: libtorch may pick another kernel for another batch size,
        // and the rows must then agree to the last bit only batch for batch.
        let want = predict_logit(&net, &whole, 7, Device::Cpu);
        for readers in [0, 1, 3] {
            let opts = FeedOptions { batch: 7, readers, depth: 1, device: Device::Cpu };
            let (mut got, mut starts) = (Vec::new(), Vec::new());
            feed(&spec, &keys, &opts, |start, x| {
                starts.push(start);
                got.extend(predict_logit(&net, &x, 64, Device::Cpu));
                Ok::<_, ReadError>(())
            })
            .unwrap();
            assert_eq!(starts, (0..keys.len()).step_by(7).collect::<Vec<_>>(), "{readers} readers");
            assert_eq!(got, want, "{readers} readers: the same logits in the same order");
        }
    }

    #[test]
    fn a_bad_file_names_itself_and_its_rows_and_stops_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sources, keys) = survey(dir.path());
        let broken = keys[keys.len() / 2].file;
        let path = sources[&broken].path.clone();
        std::fs::write(&path, b"\x89HDF\r\n\x1a\ntruncated").unwrap();
        sources.get_mut(&broken).unwrap().path = path.clone();
        let spec = CutoutSpec { sources: &sources, bands: 5, shape: (32, 32) };
        for readers in [0, 2] {
            let opts = FeedOptions { batch: 8, readers, depth: 1, device: Device::Cpu };
            let mut seen = 0;
            let err = feed(&spec, &keys, &opts, |_, x| {
                seen += x.size()[0] as usize;
                Ok::<_, ReadError>(())
            })
            .unwrap_err();
            assert!(err.0.starts_with(&path), "{readers} readers: {err}");
            assert!(seen < keys.len());
        }
        // The consumer's own error stops the readers too.
        let opts = FeedOptions { batch: 8, readers: 2, depth: 1, device: Device::Cpu };
        let fine: Vec<ObjectKey> = keys.iter().copied().filter(|k| k.file != broken).take(16).collect();
        let err = feed(&spec, &fine, &opts, |_, _| Err(ReadError("stop".into()))).unwrap_err();
        assert_eq!(err.0, "stop");
    }
}
