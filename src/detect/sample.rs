//! The fit sample: rows drawn by a hash of where their data comes from (the
//! source file's path and the row), so every machine, store or shard draws
//! the same rows whatever its object keys, and drawn as the rows stream past
//! holding only the sample (a bottom-k sketch of the hash), so fitting on a
//! catalogue of any size needs memory for the sample alone.

use std::collections::{BinaryHeap, HashMap};

use crate::store::{ObjectKey, SourceFile};

/// Where a row's data comes from, for drawing the fit sample the same way on
/// every machine: the source file's rank in path order and its hash.
pub struct Identity {
    rank: HashMap<u32, u32>,
    hash: HashMap<u32, u64>,
}

impl Identity {
    pub fn new(sources: &[(u32, SourceFile)]) -> Identity {
        Identity::from_paths(sources.iter().map(|(id, s)| (*id, s.path.as_str())))
    }

    /// From (file id, canonical path) pairs.
    pub fn from_paths<'a>(files: impl IntoIterator<Item = (u32, &'a str)>) -> Identity {
        let files: Vec<(u32, &str)> = files.into_iter().collect();
        let mut by_path: Vec<(&std::path::Path, u32)> =
            files.iter().map(|&(id, p)| (std::path::Path::new(p), id)).collect();
        by_path.sort();
        let rank = by_path.iter().enumerate().map(|(i, (_, id))| (*id, i as u32)).collect();
        // FNV-1a: a stable hash of the path, the same in every process (std's is seeded).
        let fnv =
            |b: &[u8]| b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ c as u64).wrapping_mul(0x100_0000_01b3));
        let hash = files.iter().map(|&(id, p)| (id, fnv(p.as_bytes()))).collect();
        Identity { rank, hash }
    }

    /// (file rank in path order, row): the order rows are fitted in.
    pub fn order(&self, key: ObjectKey) -> (u32, u32) {
        (self.rank.get(&key.file).copied().unwrap_or(u32::MAX), key.row)
    }

    /// The row's draw: the sample is the rows with the smallest draws.
    pub fn draw(&self, key: ObjectKey, seed: u64) -> u64 {
        let mut z = self.hash.get(&key.file).copied().unwrap_or(0) ^ (u64::from(key.row) << 1) ^ seed.rotate_left(17);
        // splitmix64 finaliser
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The `cap` rows with the smallest (draw, arrival) seen so far, each with
/// its source key and `width` values: the rows a full sort by draw then a
/// truncation would keep, without holding the others. Hand-written because
/// it is a bounded binary heap over slots that are overwritten in place.
#[derive(Debug, Clone)]
pub struct FitSample {
    cap: usize,
    width: Option<usize>,
    /// (draw, arrival, slot); the root is the row that goes first.
    heap: BinaryHeap<(u64, u64, usize)>,
    keys: Vec<ObjectKey>,
    values: Vec<f32>,
    seen: u64,
}

impl FitSample {
    pub fn new(cap: usize) -> FitSample {
        let cap = cap.max(1);
        FitSample { cap, width: None, heap: BinaryHeap::new(), keys: Vec::new(), values: Vec::new(), seen: 0 }
    }

    /// Offers a row; it is kept only while it is among the `cap` smallest draws.
    pub fn offer(&mut self, draw: u64, key: ObjectKey, values: impl IntoIterator<Item = f32>) {
        let arrival = self.seen;
        self.seen += 1;
        let slot = if self.heap.len() < self.cap {
            let slot = self.keys.len();
            self.keys.push(key);
            let before = self.values.len();
            self.values.extend(values);
            let width = *self.width.get_or_insert(self.values.len() - before);
            debug_assert_eq!(self.values.len() - before, width, "rows of one group have one width");
            slot
        } else {
            let &(d, a, slot) = self.heap.peek().expect("cap >= 1");
            if (draw, arrival) >= (d, a) {
                return;
            }
            self.heap.pop();
            self.keys[slot] = key;
            let width = self.width.unwrap_or(0);
            let mut it = values.into_iter();
            for v in &mut self.values[slot * width..(slot + 1) * width] {
                *v = it.next().unwrap_or(f32::NAN);
            }
            slot
        };
        self.heap.push((draw, arrival, slot));
    }

    /// Rows held now (never more than the cap).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.keys.len()
    }

    /// Rows offered so far.
    #[cfg(test)]
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The sample's (keys, values) in `order` (ties by arrival): what a full
    /// sort by draw, a truncation to `cap` and a stable sort by `order` gave.
    pub fn sorted<K: Ord>(&self, order: impl Fn(ObjectKey) -> K) -> (Vec<ObjectKey>, Vec<f32>) {
        let mut slots: Vec<(K, u64, usize)> =
            self.heap.iter().map(|&(_, arrival, slot)| (order(self.keys[slot]), arrival, slot)).collect();
        slots.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let width = self.width.unwrap_or(0);
        let keys = slots.iter().map(|s| self.keys[s.2]).collect();
        let values = slots.iter().flat_map(|s| self.values[s.2 * width..(s.2 + 1) * width].iter().copied()).collect();
        (keys, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(file: u32, row: u32) -> ObjectKey {
        ObjectKey { file, row }
    }

    /// What `score` did before the sample streamed: every row in memory,
    /// sorted by draw, truncated, then sorted by order.
    fn sort_and_truncate(rows: &[(u64, ObjectKey, f32)], cap: usize) -> Vec<(ObjectKey, f32)> {
        let mut sample: Vec<usize> = (0..rows.len()).collect();
        if sample.len() > cap {
            sample.sort_by_key(|&i| rows[i].0);
            sample.truncate(cap);
        }
        sample.sort_by_key(|&i| (rows[i].1.file, rows[i].1.row));
        sample.iter().map(|&i| (rows[i].1, rows[i].2)).collect()
    }

    #[test]
    fn the_streamed_sample_is_the_sorted_one_and_never_holds_more_than_the_cap() {
        let paths: Vec<(u32, String)> = (1..=3).map(|id| (id, format!("/s/healpix={id}/x.hdf5"))).collect();
        let identity = Identity::from_paths(paths.iter().map(|(id, p)| (*id, p.as_str())));
        // Rows of three files; a few sources twice (a spectrum matched to two images), same values.
        let mut rows: Vec<(u64, ObjectKey, f32)> = Vec::new();
        for i in 0..5_000u32 {
            let k = key(1 + i % 3, i / 3);
            rows.push((identity.draw(k, 7), k, (i / 3) as f32 + (i % 3) as f32 * 1e4));
            if i % 97 == 0 {
                rows.push(*rows.last().unwrap());
            }
        }
        // Equal draws of different rows fall to the first come, as the stable sort did.
        rows.push((rows[10].0, key(9, 9), -1.0));
        for cap in [1, 50, 700, 5_000, 10_000] {
            let mut s = FitSample::new(cap);
            for &(d, k, v) in &rows {
                s.offer(d, k, [v, v * 2.0]);
                assert!(s.held() <= cap, "held {} of cap {cap}", s.held());
                assert!(s.values.len() <= cap * 2 && s.keys.len() <= cap);
            }
            assert_eq!(s.seen(), rows.len() as u64);
            let (keys, values) = s.sorted(|k| (k.file, k.row));
            let want = sort_and_truncate(&rows, cap);
            let got: Vec<(ObjectKey, f32)> = keys.iter().copied().zip(values.chunks(2).map(|c| c[0])).collect();
            assert_eq!(got, want, "cap {cap}");
            assert!(values.chunks(2).all(|c| c[1] == c[0] * 2.0));
        }
    }
}
