//! What shards and `oddity merge` need of a store: the forest scores a shard
//! computed with forests fitted on the whole catalogue, and copying one
//! store's records into another under new file ids.

use std::collections::HashMap;

use super::{ObjectKey, Result, Store, kv};

const META_SHARD_MODEL: &[u8] = b"shard_scores_model";

/// Which tree of a store, for [`Store::copy_keyed_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedTree {
    Objects,
    Images,
    Spectra,
    Features,
    Lines,
    ShardScores,
}

impl Store {
    /// Opens (creating if asked) a store, waiting up to `wait` while another
    /// process holds it: batch jobs meet a person's `oddity status` or TUI.
    pub fn open_waiting(path: &std::path::Path, create: bool, wait: std::time::Duration) -> Result<Store> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let opened = if create { Store::open_or_create(path) } else { Store::open(path) };
            match opened {
                Err(super::StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn keyed(&self, t: KeyedTree) -> &kv::Tree {
        match t {
            KeyedTree::Objects => &self.objects,
            KeyedTree::Images => &self.images,
            KeyedTree::Spectra => &self.spectra,
            KeyedTree::Features => &self.features,
            KeyedTree::Lines => &self.lines,
            KeyedTree::ShardScores => &self.shard_scores,
        }
    }

    /// A shard score: the forest score of one group of one object.
    pub fn shard_score(&self, key: ObjectKey, group: u8) -> Result<Option<f32>> {
        let mut k = key.to_bytes().to_vec();
        k.push(group);
        Ok(self
            .shard_scores
            .get(k)
            .map_err(|e| self.kv_err(e))?
            .and_then(|b| b.as_slice().try_into().ok().map(f32::from_be_bytes)))
    }

    pub fn put_shard_scores(&self, rows: &[(ObjectKey, u8, f32)]) -> Result<()> {
        let mut batch = kv::Batch::default();
        for &(key, g, s) in rows {
            let mut k = key.to_bytes().to_vec();
            k.push(g);
            batch.insert(k, s.to_be_bytes());
        }
        self.shard_scores.apply_batch(batch).map_err(|e| self.kv_err(e))
    }

    /// Forgets every shard score and which forests made them.
    pub fn clear_shard_scores(&self) -> Result<()> {
        self.meta.remove(META_SHARD_MODEL).map_err(|e| self.kv_err(e))?;
        self.shard_scores.clear().map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    /// Records which fitted forests (their hash) the shard scores come from.
    pub fn set_shard_scores_model(&self, hash: &str) -> Result<()> {
        self.meta.insert(META_SHARD_MODEL, hash.as_bytes()).map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    pub fn shard_scores_model(&self) -> Result<Option<String>> {
        let v = self.meta.get(META_SHARD_MODEL).map_err(|e| self.kv_err(e))?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn shard_score_count(&self) -> usize {
        self.shard_scores.len()
    }

    /// Copies every record of `tree` in `other` whose file is in `files`
    /// into the same tree here, under the mapped file id (same row). Returns
    /// how many records were copied. Re-copying overwrites the same keys.
    pub fn copy_keyed_from(&self, other: &Store, tree: KeyedTree, files: &HashMap<u32, u32>) -> Result<u64> {
        let mut batch = kv::Batch::default();
        let mut n = 0u64;
        for kv in other.keyed(tree).iter() {
            let (k, v) = kv.map_err(|e| other.kv_err(e))?;
            let Some(&to) =
                k.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).and_then(|f| files.get(&f))
            else {
                continue;
            };
            let mut key = k.to_vec();
            key[..4].copy_from_slice(&to.to_be_bytes());
            batch.insert(key, v);
            n += 1;
            if n.is_multiple_of(50_000) {
                self.keyed(tree).apply_batch(std::mem::take(&mut batch)).map_err(|e| self.kv_err(e))?;
            }
        }
        self.keyed(tree).apply_batch(batch).map_err(|e| self.kv_err(e))?;
        Ok(n)
    }

    /// Copies the id index (survey, original id → object) of the objects of
    /// `files` in `other`, mapped to this store's file ids.
    pub fn copy_ids_from(&self, other: &Store, files: &HashMap<u32, u32>) -> Result<u64> {
        let mut batch = kv::Batch::default();
        let mut n = 0u64;
        for kv in other.ids.iter() {
            let (k, v) = kv.map_err(|e| other.kv_err(e))?;
            let Some(key) = ObjectKey::from_bytes(&v) else { continue };
            let Some(&file) = files.get(&key.file) else { continue };
            batch.insert(k, ObjectKey { file, row: key.row }.to_bytes());
            n += 1;
        }
        self.ids.apply_batch(batch).map_err(|e| self.kv_err(e))?;
        Ok(n)
    }

    /// Names of the surveys with a feature schema, and the schema's encoding.
    pub fn feature_schemas_raw(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(b"feature_schema/") {
            let (k, v) = kv.map_err(|e| self.kv_err(e))?;
            out.push((String::from_utf8_lossy(&k["feature_schema/".len()..]).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    pub fn put_feature_schema_raw(&self, survey: &str, bytes: &[u8]) -> Result<()> {
        self.meta.insert(format!("feature_schema/{survey}"), bytes).map_err(|e| self.kv_err(e))?;
        Ok(())
    }

    /// The `features_done` markers of every file: (file id, version).
    pub fn features_done_all(&self) -> Result<Vec<(u32, u32)>> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(b"features_done/") {
            let (k, v) = kv.map_err(|e| self.kv_err(e))?;
            let id = String::from_utf8_lossy(&k["features_done/".len()..]).parse().ok();
            let version = v.as_slice().try_into().ok().map(u32::from_be_bytes);
            if let (Some(id), Some(version)) = (id, version) {
                out.push((id, version));
            }
        }
        Ok(out)
    }

    /// Shards already merged into this store: shard path → fingerprint.
    pub fn merged_shard(&self, path: &str) -> Result<Option<String>> {
        self.note(&format!("merged-shard{path}"))
    }

    pub fn set_merged_shard(&self, path: &str, fingerprint: &str) -> Result<()> {
        self.put_note(&format!("merged-shard{path}"), fingerprint)
    }

    /// Every merged shard (path, fingerprint), in path order.
    pub fn merged_shards(&self) -> Result<Vec<(String, String)>> {
        let prefix = b"note/merged-shard";
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(prefix) {
            let (k, v) = kv.map_err(|e| self.kv_err(e))?;
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            ));
        }
        Ok(out)
    }
}
