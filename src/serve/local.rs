//! The store itself as a [`Catalog`]: every ordering is read from an index
//! a page at a time, so nothing here grows with the catalogue except the
//! histogram (one scan, on a worker thread) and a rank count (capped).

use std::ops::Bound;
use std::path::PathBuf;

use super::{CandidateMeta, Catalog, Cursor, Histogram, Overview, Page};
use crate::features::spectral::BptClass;
use crate::store::{LabelEvent, LineSummary, ObjectKey, SourceKind, Store, StoreError};
use crate::tui::Ordering;

/// Ranks are counted through the score index up to this many objects.
pub fn rank_cap() -> u64 {
    2_000_000
}

/// The score index key of (score, key) in a version (as the store writes it).
fn rank_key(version: u32, score: f32, key: ObjectKey) -> Vec<u8> {
    let bits = if score.is_nan() { 0 } else { score.max(0.0).to_bits() };
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(&(u32::MAX - bits).to_be_bytes());
    k.extend_from_slice(&key.to_bytes());
    k
}

fn parse_rank_key(k: &[u8]) -> Option<(ObjectKey, f32)> {
    if k.len() != 16 {
        return None;
    }
    let bits = u32::MAX - u32::from_be_bytes(k[4..8].try_into().ok()?);
    Some((ObjectKey::from_bytes(&k[8..])?, f32::from_bits(bits)))
}

/// The seed of the "random" ordering.
const RANDOM_SEED: u64 = 0x0dd1;

/// A seeded permutation of `0..n` without materialising it: a 4-round
/// Feistel network on the next power of two, cycle-walking values >= n back
/// in (the standard format-preserving construction; hand-written because it
/// is ten lines).
fn permute(i: u64, n: u64, seed: u64) -> u64 {
    let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let mut x = i;
    loop {
        let (mut l, mut r) = (x >> half, x & mask);
        for round in 0..4u64 {
            let mut h = r ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(round);
            h = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 29;
            (l, r) = (r, (l ^ h) & mask);
        }
        x = (l << half) | r;
        if x < n {
            return x;
        }
    }
}

impl Store {
    fn corrupt(&self, tree: &'static str) -> StoreError {
        StoreError::Corrupt { path: self.path().to_owned(), tree, why: "bad key".into() }
    }

    fn score_page(&self, version: u32, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        let after = match cursor {
            Cursor::After(k) => Some(k),
            _ => None,
        };
        let entries = self.score_entries(version, after, n)?;
        let next = match entries.last() {
            Some((_, k)) if entries.len() == n => Cursor::After(k.clone()),
            _ => Cursor::End,
        };
        Ok(Page { keys: entries.into_iter().map(|e| e.0).collect(), next, interleaved: false })
    }

    /// The next `n` objects of a version's ranking after the index entry
    /// `after` (from the top when None), each with its index entry.
    pub(crate) fn score_entries(
        &self,
        version: u32,
        after: Option<Vec<u8>>,
        n: usize,
    ) -> Result<Vec<(ObjectKey, Vec<u8>)>, StoreError> {
        let prefix = version.to_be_bytes();
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(prefix.to_vec()),
        };
        let mut entries = Vec::with_capacity(n);
        for kv in self.score_index.range((start, Bound::Unbounded)) {
            let (k, _) = kv.map_err(|e| self.kv_err(e))?;
            if !k.starts_with(&prefix) || entries.len() == n {
                break;
            }
            entries.push((parse_rank_key(&k).ok_or_else(|| self.corrupt("score_index"))?.0, k.to_vec()));
        }
        Ok(entries)
    }

    fn id_page(&self, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        let start = match &cursor {
            Cursor::After(k) => Bound::Excluded(k.clone()),
            _ => Bound::Unbounded,
        };
        let mut keys = Vec::with_capacity(n);
        let mut last = None;
        for k in self.images.range((start, Bound::Unbounded)).keys().take(n) {
            let k = k.map_err(|e| self.kv_err(e))?;
            keys.push(ObjectKey::from_bytes(&k).ok_or_else(|| self.corrupt("images"))?);
            last = Some(k.to_vec());
        }
        let next = match last {
            Some(k) if keys.len() == n => Cursor::After(k),
            _ => Cursor::End,
        };
        Ok(Page { keys, next, interleaved: false })
    }

    fn random_page(&self, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        // Image files and their row counts: a few thousand at most.
        let files: Vec<(u32, u64)> = self
            .sources()?
            .into_iter()
            .filter(|(_, s)| s.kind == SourceKind::Images)
            .map(|(id, s)| (id, s.n_rows))
            .collect();
        let total: u64 = files.iter().map(|f| f.1).sum();
        let mut at = match cursor {
            Cursor::Random(i) => i,
            _ => 0,
        };
        let mut keys = Vec::with_capacity(n);
        while keys.len() < n && at < total {
            let mut j = permute(at, total, RANDOM_SEED);
            at += 1;
            let mut file = None;
            for &(id, rows) in &files {
                if j < rows {
                    file = Some(id);
                    break;
                }
                j -= rows;
            }
            let Some(file) = file else { continue };
            let key = ObjectKey { file, row: j as u32 };
            // Rows rejected at ingest have no image record.
            if self.images.contains_key(key.to_bytes()).map_err(|e| self.kv_err(e))? {
                keys.push(key);
            }
        }
        let next = if at < total { Cursor::Random(at) } else { Cursor::End };
        Ok(Page { keys, next, interleaved: false })
    }

    /// Nearest the forest's boundary (0.5) first: two walks of the score
    /// index from the boundary, down (scores <= 0.5) and up (> 0.5), merged.
    fn uncertain_page(&self, version: u32, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        let prefix = version.to_be_bytes().to_vec();
        let mut boundary = rank_key(version, 0.5, ObjectKey { file: 0, row: 0 });
        boundary.truncate(8);
        let (mut low, mut high, mut low_done, mut high_done) = match cursor {
            Cursor::Uncertain { low, high, low_done, high_done } => (low, high, low_done, high_done),
            _ => (None, None, false, false),
        };
        let next_low = |low: &Option<Vec<u8>>| -> Result<Option<(Vec<u8>, ObjectKey, f32)>, StoreError> {
            let start = match low {
                Some(k) => Bound::Excluded(k.clone()),
                None => Bound::Included(boundary.clone()),
            };
            match self.score_index.range((start, Bound::Unbounded)).keys().next() {
                Some(k) => {
                    let k = k.map_err(|e| self.kv_err(e))?;
                    if !k.starts_with(&prefix) {
                        return Ok(None);
                    }
                    let (key, s) = parse_rank_key(&k).ok_or_else(|| self.corrupt("score_index"))?;
                    Ok(Some((k.to_vec(), key, s)))
                }
                None => Ok(None),
            }
        };
        let next_high = |high: &Option<Vec<u8>>| -> Result<Option<(Vec<u8>, ObjectKey, f32)>, StoreError> {
            let end = match high {
                Some(k) => Bound::Excluded(k.clone()),
                None => Bound::Excluded(boundary.clone()),
            };
            match self.score_index.range((Bound::Included(prefix.clone()), end)).keys().next_back() {
                Some(k) => {
                    let k = k.map_err(|e| self.kv_err(e))?;
                    let (key, s) = parse_rank_key(&k).ok_or_else(|| self.corrupt("score_index"))?;
                    Ok(Some((k.to_vec(), key, s)))
                }
                None => Ok(None),
            }
        };
        let mut keys = Vec::with_capacity(n);
        while keys.len() < n {
            let lo = if low_done { None } else { next_low(&low)? };
            let hi = if high_done { None } else { next_high(&high)? };
            low_done |= lo.is_none();
            high_done |= hi.is_none();
            let take_low = match (&lo, &hi) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(l), Some(h)) => (l.2 - 0.5).abs() <= (h.2 - 0.5).abs(),
            };
            if take_low {
                let (k, key, _) = lo.expect("low side present");
                low = Some(k);
                keys.push(key);
            } else {
                let (k, key, _) = hi.expect("high side present");
                high = Some(k);
                keys.push(key);
            }
        }
        let next = if low_done && high_done && keys.len() < n {
            Cursor::End
        } else {
            Cursor::Uncertain { low, high, low_done, high_done }
        };
        Ok(Page { keys, next, interleaved: false })
    }
}

impl Catalog for Store {
    fn store_path(&self) -> PathBuf {
        self.path().to_owned()
    }

    fn label_events_after(&self, after: Option<u64>) -> Result<Vec<(u64, LabelEvent)>, StoreError> {
        match after {
            Some(a) => Store::label_events_after(self, a),
            None => self.label_events(),
        }
    }

    fn append_labels(&self, events: Vec<LabelEvent>) -> Result<Vec<u64>, StoreError> {
        Store::append_labels(self, &events)
    }

    fn overview(&self) -> Result<Overview, StoreError> {
        let images =
            self.sources()?.iter().filter(|(_, s)| s.kind == SourceKind::Images).map(|(_, s)| s.n_objects).sum();
        Ok(Overview { scored: self.current_scores()?.map(|v| v.n_scored), images })
    }

    fn page(&self, ordering: Ordering, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        if cursor == Cursor::End {
            return Ok(Page { keys: Vec::new(), next: Cursor::End, interleaved: false });
        }
        match ordering {
            Ordering::Score | Ordering::Uncertain => {
                let Some(v) = self.current_scores()? else {
                    return Ok(Page { keys: Vec::new(), next: Cursor::End, interleaved: false });
                };
                if ordering == Ordering::Score {
                    // While a retrain's challenger is on trial, the default
                    // ordering interleaves it with the current ranking.
                    match crate::retrain::trial::page(self, &cursor, n)? {
                        Some(page) => Ok(page),
                        None => self.score_page(v.version, cursor, n),
                    }
                } else {
                    self.uncertain_page(v.version, cursor, n)
                }
            }
            Ordering::Id => self.id_page(cursor, n),
            Ordering::Random => self.random_page(cursor, n),
            // Built from the label book by the screen itself.
            Ordering::Recent => Ok(Page { keys: Vec::new(), next: Cursor::End, interleaved: false }),
        }
    }

    fn meta(&self, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError> {
        crate::tui::worker::store_meta(self, key)
    }

    fn object_id(&self, key: ObjectKey) -> Result<Option<String>, StoreError> {
        Ok(self.object(key)?.map(|o| o.id))
    }

    fn find_object(&self, id: &str) -> Result<Option<ObjectKey>, StoreError> {
        let found = self.find_any(id)?;
        for &key in &found {
            if self.image(key)?.is_some() {
                return Ok(Some(key));
            }
        }
        for &key in &found {
            if self.spectrum(key)?.is_some() {
                return Ok(Some(self.image_match(key)?.map_or(key, |m| m.other)));
            }
        }
        Ok(None)
    }

    fn bpt(&self, key: ObjectKey) -> Result<Option<BptClass>, StoreError> {
        match self.spectrum_match(key)? {
            Some(m) => Ok(self.lines_of(m.other)?.map(|l| l.bpt)),
            // A spectrum-only candidate has lines of its own.
            None => Ok(self.lines_of(key)?.map(|l| l.bpt)),
        }
    }

    fn line_summary(&self) -> Result<Option<LineSummary>, StoreError> {
        Store::line_summary(self)
    }

    fn histogram(&self, bins: usize, marks: Vec<(ObjectKey, bool)>) -> Result<Histogram, StoreError> {
        let scores = self.all_scores()?;
        let (lo, hi) = scores
            .iter()
            .filter(|s| s.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &s| (a.min(s), b.max(s)));
        let bins = bins.max(1);
        let mut counts = vec![0u64; bins];
        if lo < hi {
            for &s in scores.iter().filter(|s| s.is_finite()) {
                let b = (((s - lo) / (hi - lo)) * bins as f32).clamp(0.0, bins as f32 - 1.0) as usize;
                counts[b] += 1;
            }
        }
        let mut marked = Vec::with_capacity(marks.len());
        for (key, interesting) in marks {
            if let Some(s) = self.score_of(key)? {
                marked.push((s, interesting));
            }
        }
        Ok(Histogram { lo, hi, counts, n: scores.len() as u64, marks: marked })
    }

    fn rank(&self, key: ObjectKey) -> Result<Option<u64>, StoreError> {
        let (Some(v), Some(score)) = (self.current_scores()?, self.score_of(key)?) else { return Ok(None) };
        let prefix = v.version.to_be_bytes().to_vec();
        let end = rank_key(v.version, score, key);
        let mut n = 0u64;
        for k in self.score_index.range(prefix..end).keys() {
            k.map_err(|e| self.kv_err(e))?;
            n += 1;
            if n >= rank_cap() {
                return Ok(Some(rank_cap() + 1));
            }
        }
        Ok(Some(n + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1u64, 2, 3, 10, 1000, 4097] {
            let mut seen: Vec<u64> = (0..n).map(|i| permute(i, n, 7)).collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        // Shuffled, not the identity.
        assert!((0..100).filter(|&i| permute(i, 1000, 7) == i).count() < 10);
    }
}
