//! The project store: one engine file (redb, see [`kv`]) per project directory.
//!
//! Trees per kind of record, values serialised with serde (postcard), keys
//! big-endian so that the engine's ordered iteration follows numeric order:
//!
//! | tree      | key                          | value                       |
//! |-----------|------------------------------|-----------------------------|
//! | `meta`    | name                         | schema version, counters…   |
//! | `sources` | file id (u32)                | [`SourceFile`]              |
//! | `paths`   | canonical path               | file id                     |
//! | `objects` | [`ObjectKey`] (file id, row) | [`ObjectRecord`]            |
//! | `ids`     | survey \0 original id        | [`ObjectKey`]               |
//! | `images`  | [`ObjectKey`]                | [`ImageRef`]                |
//! | `spectra` | [`ObjectKey`]                | [`SpectrumRef`]             |
//! | `matches`, `features`, `scores`, `score_index`, `models` | later stages |
//! | `labels`  | event id (u64, monotonic)    | [`LabelEvent`], append-only |
//! | `shard_scores` | [`ObjectKey`], group byte | forest score (f32) of fitted forests applied in a shard |
//! | `trials`  | [`ObjectKey`]                | [`Pick`]: which ranking a retrain's trial picked it for |
//!
//! An object's key is derived from where it lives (source file id, row), so
//! re-ingesting a file — after a crash half-way, or on purpose — rewrites the
//! same keys and can never duplicate an object.
//!
//! One process holds a store at a time: a second oddity process gets
//! [`StoreError::Locked`] from our own lock file before the engine is
//! touched (team sprints reach the holder over its socket, see `serve`).

mod kv;
mod labels;
mod records;
mod shard;
mod trials;
mod upgrade;
pub use shard::KeyedTree;
pub use trials::Pick;
pub use upgrade::{UpgradeReport, compact_store, upgrade_sled_store};

pub use labels::{ARTEFACT_TAG, INTERESTING_FROM, Judgement, LabelBook, ObjectLabels, Target, Verdict};
pub use records::*;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};

/// Bumped whenever a record layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 2;

const LOCK_FILE: &str = "oddity.lock";
/// The engine file.
const DB_FILE: &str = "store.redb";
/// Where oddity before the redb engine kept its sled database.
const SLED_DIR: &str = "db";
/// Every table of the engine file.
const TABLES: [&str; 19] = [
    "meta",
    "sources",
    "paths",
    "objects",
    "ids",
    "images",
    "spectra",
    "labels",
    "matches",
    "matches_by_spectrum",
    "features",
    "lines",
    "embeddings",
    "scores",
    "score_index",
    "score_parts",
    "models",
    "shard_scores",
    "trials",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path} is in use by {holder} (lock {lock}); wait for it to finish")]
    Locked { path: PathBuf, lock: PathBuf, holder: String },
    #[error(
        "store {path} has schema version {found}, this oddity ({ours}) reads schema version {expected}; \
         use a matching oddity or start a new store with --store"
    )]
    SchemaMismatch { path: PathBuf, found: u32, expected: u32, ours: &'static str },
    #[error("no oddity store at {0} (run `oddity ingest` first, or pass --store)")]
    Missing(PathBuf),
    #[error("{path} is not an oddity store: {why}")]
    NotAStore { path: PathBuf, why: String },
    #[error("store {path}: {source}")]
    Engine { path: PathBuf, source: Box<kv::Error> },
    #[error(
        "store {path} was written by an older oddity (its sled database in {path}/db); \
         copy it into this version's format with `oddity --store {path} upgrade-store` (the old database is kept)"
    )]
    OldEngine { path: PathBuf },
    #[error("store {path}: corrupt record in tree `{tree}`: {why}")]
    Corrupt { path: PathBuf, tree: &'static str, why: String },
    #[error("store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl StoreError {
    /// An error of the engine file, naming the store.
    fn engine(path: &Path, source: kv::Error) -> StoreError {
        StoreError::Engine { path: path.to_owned(), source: Box::new(source) }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Objects with their scores, most anomalous first, owning the cursor.
pub type RankedIter = Box<dyn Iterator<Item = Result<(ObjectKey, f32)>> + Send>;

/// An open store. Holding it holds the store's exclusive lock.
pub struct Store {
    path: PathBuf,
    db: kv::Engine,
    pub(crate) meta: kv::Tree,
    pub(crate) sources: kv::Tree,
    pub(crate) paths: kv::Tree,
    pub(crate) objects: kv::Tree,
    pub(crate) ids: kv::Tree,
    pub(crate) images: kv::Tree,
    pub(crate) spectra: kv::Tree,
    pub(crate) labels: kv::Tree,
    pub(crate) matches: kv::Tree,
    pub(crate) matches_by_spectrum: kv::Tree,
    pub(crate) features: kv::Tree,
    pub(crate) lines: kv::Tree,
    pub(crate) embeddings: kv::Tree,
    pub(crate) scores: kv::Tree,
    pub(crate) score_index: kv::Tree,
    pub(crate) score_parts: kv::Tree,
    pub(crate) models: kv::Tree,
    pub(crate) shard_scores: kv::Tree,
    pub(crate) trials: kv::Tree,
    // Kept open so that the lock lasts as long as the Store.
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the store at `path`, creating it if it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Store> {
        Self::open_inner(path, true)
    }

    /// Opens an existing store; a missing one is an error.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_inner(path, false)
    }

    fn open_inner(path: &Path, create: bool) -> Result<Store> {
        let io = |source| StoreError::Io { path: path.to_owned(), source };
        if !path.join(DB_FILE).exists() && !path.join(SLED_DIR).exists() {
            if !create {
                return Err(StoreError::Missing(path.to_owned()));
            }
            if path.exists() && fs::read_dir(path).map_err(io)?.next().is_some() && !path.join(LOCK_FILE).exists() {
                return Err(StoreError::NotAStore {
                    path: path.to_owned(),
                    why: "the directory exists, is not empty and holds no oddity database".into(),
                });
            }
            fs::create_dir_all(path).map_err(io)?;
        }
        let lock = take_lock(path)?;
        if written_by_sled(path) {
            return Err(StoreError::OldEngine { path: path.to_owned() });
        }
        let db = kv::Engine::open(&path.join(DB_FILE), &TABLES).map_err(|source| StoreError::engine(path, source))?;
        let store = Store {
            path: path.to_owned(),
            meta: db.tree("meta"),
            sources: db.tree("sources"),
            paths: db.tree("paths"),
            objects: db.tree("objects"),
            ids: db.tree("ids"),
            images: db.tree("images"),
            spectra: db.tree("spectra"),
            labels: db.tree("labels"),
            matches: db.tree("matches"),
            matches_by_spectrum: db.tree("matches_by_spectrum"),
            features: db.tree("features"),
            lines: db.tree("lines"),
            embeddings: db.tree("embeddings"),
            scores: db.tree("scores"),
            score_index: db.tree("score_index"),
            score_parts: db.tree("score_parts"),
            models: db.tree("models"),
            shard_scores: db.tree("shard_scores"),
            trials: db.tree("trials"),
            db,
            _lock: lock,
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<()> {
        match self.meta.get(META_SCHEMA).map_err(|e| self.kv_err(e))? {
            Some(v) => {
                let found = u32::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                    path: self.path.clone(),
                    tree: "meta",
                    why: "schema version is not a u32".into(),
                })?);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaMismatch {
                        path: self.path.clone(),
                        found,
                        expected: SCHEMA_VERSION,
                        ours: env!("CARGO_PKG_VERSION"),
                    });
                }
            }
            None => {
                self.meta.insert(META_SCHEMA, SCHEMA_VERSION.to_be_bytes()).map_err(|e| self.kv_err(e))?;
                self.meta
                    .insert(META_CREATED, chrono::Utc::now().to_rfc3339().as_bytes())
                    .map_err(|e| self.kv_err(e))?;
                self.flush()?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where commands write their log files.
    pub fn log_dir(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// Blocks until everything written so far is on disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.kv_err(e))?;
        Ok(())
    }

    pub(crate) fn kv_err(&self, source: kv::Error) -> StoreError {
        StoreError::engine(&self.path, source)
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, tree: &'static str, bytes: &[u8]) -> Result<T> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            tree,
            why: e.to_string(),
        })
    }

    // One helper per access pattern of the record trees (keys: object keys,
    // file or model ids; values: postcard), so every tree reports a bad key
    // or value the same way, naming itself.

    /// One record of `tree` (called `name` in errors), decoded.
    fn get<T: DeserializeOwned>(
        &self,
        tree: &kv::Tree,
        name: &'static str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>> {
        tree.get(key).map_err(|e| self.kv_err(e))?.map(|v| self.decode(name, &v)).transpose()
    }

    /// Writes records keyed by object in one batch (all or nothing).
    fn put_keyed<T: Serialize>(&self, tree: &kv::Tree, rows: &[(ObjectKey, T)]) -> Result<()> {
        let mut batch = kv::Batch::default();
        for (key, rec) in rows {
            batch.insert(key.to_bytes(), encode(rec));
        }
        tree.apply_batch(batch).map_err(|e| self.kv_err(e))
    }

    /// Streams the records of a tree keyed by object, decoded, in key order.
    fn iter_keyed<'a, T: DeserializeOwned>(
        &'a self,
        tree: &'a kv::Tree,
        name: &'static str,
    ) -> impl Iterator<Item = Result<(ObjectKey, T)>> + 'a {
        tree.iter().map(move |kv| {
            let (k, v) = kv.map_err(|e| self.kv_err(e))?;
            let key = ObjectKey::from_bytes(&k).ok_or_else(|| bad_key(&self.path, name))?;
            Ok((key, self.decode(name, &v)?))
        })
    }

    /// Writes the schema version of another build; for tests of the version check.
    #[doc(hidden)]
    pub fn force_schema_version(&self, version: u32) -> Result<()> {
        self.meta.insert(META_SCHEMA, version.to_be_bytes()).map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    pub fn created(&self) -> Result<Option<String>> {
        Ok(self.meta.get(META_CREATED).map_err(|e| self.kv_err(e))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    // ---------------------------------------------------------------- sources

    /// The id of the source file at `canonical_path`, if it was seen before.
    pub fn source_id(&self, canonical_path: &str) -> Result<Option<u32>> {
        Ok(self
            .paths
            .get(canonical_path.as_bytes())
            .map_err(|e| self.kv_err(e))?
            .map(|v| u32::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 4]))))
    }

    /// Registers a new source file and returns its id (durable before return).
    pub fn add_source(&self, source: &SourceFile) -> Result<u32> {
        // Consecutive ids, so that a u32 lasts.
        let last = self.sources.last().map_err(|e| self.kv_err(e))?;
        let next = match last {
            Some((k, _)) => u32::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 4])).checked_add(1),
            None => Some(1),
        };
        let id = next.ok_or_else(|| StoreError::Corrupt {
            path: self.path.clone(),
            tree: "sources",
            why: "more than 2^32 source files".into(),
        })?;
        self.put_source(id, source)?;
        self.paths.insert(source.path.as_bytes(), id.to_be_bytes()).map_err(|e| self.kv_err(e))?;
        self.flush()?;
        Ok(id)
    }

    pub fn put_source(&self, id: u32, source: &SourceFile) -> Result<()> {
        self.sources.insert(id.to_be_bytes(), encode(source)).map_err(|e| self.kv_err(e))?;
        Ok(())
    }

    pub fn source(&self, id: u32) -> Result<Option<SourceFile>> {
        self.get(&self.sources, "sources", id.to_be_bytes())
    }

    /// All source files, in id order (a few thousand at most: cheap).
    pub fn sources(&self) -> Result<Vec<(u32, SourceFile)>> {
        self.sources
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.kv_err(e))?;
                let id = u32::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 4]));
                Ok((id, self.decode("sources", &v)?))
            })
            .collect()
    }

    // ---------------------------------------------------------------- objects

    /// Writes one batch of ingested rows: objects, their id index and their
    /// image or spectrum references. Keys are (file, row), so a batch
    /// re-written after a crash overwrites itself.
    pub fn write_batch(&self, batch: &[IngestedRow]) -> Result<()> {
        let mut objects = kv::Batch::default();
        let mut ids = kv::Batch::default();
        let mut images = kv::Batch::default();
        let mut spectra = kv::Batch::default();
        for row in batch {
            let key = row.key.to_bytes();
            objects.insert(key, encode(&row.object));
            match &row.payload {
                Payload::Image(img) => images.insert(key, encode(img)),
                Payload::Spectrum(spec) => spectra.insert(key, encode(spec)),
            }
            ids.insert(id_key(&row.object.survey, &row.object.id), key);
        }
        // Object records first, the id index last: an id that resolves always
        // points at a complete object.
        self.objects.apply_batch(objects).map_err(|e| self.kv_err(e))?;
        self.images.apply_batch(images).map_err(|e| self.kv_err(e))?;
        self.spectra.apply_batch(spectra).map_err(|e| self.kv_err(e))?;
        self.ids.apply_batch(ids).map_err(|e| self.kv_err(e))?;
        Ok(())
    }

    /// Looks up an object by survey and original id.
    pub fn find_id(&self, survey: &str, id: &str) -> Result<Option<ObjectKey>> {
        Ok(self.ids.get(id_key(survey, id)).map_err(|e| self.kv_err(e))?.and_then(|v| ObjectKey::from_bytes(&v)))
    }

    /// Finds objects by original id in any survey.
    pub fn find_any(&self, id: &str) -> Result<Vec<ObjectKey>> {
        let mut found = Vec::new();
        for (_, source) in self.sources()? {
            if let Some(k) = self.find_id(&source.survey, id)?
                && !found.contains(&k)
            {
                found.push(k);
            }
        }
        Ok(found)
    }

    pub fn object(&self, key: ObjectKey) -> Result<Option<ObjectRecord>> {
        self.get(&self.objects, "objects", key.to_bytes())
    }

    pub fn image(&self, key: ObjectKey) -> Result<Option<ImageRef>> {
        self.get(&self.images, "images", key.to_bytes())
    }

    pub fn spectrum(&self, key: ObjectKey) -> Result<Option<SpectrumRef>> {
        self.get(&self.spectra, "spectra", key.to_bytes())
    }

    /// Streams all objects in key order without loading them all.
    pub fn iter_objects(&self) -> impl Iterator<Item = Result<(ObjectKey, ObjectRecord)>> + '_ {
        self.iter_keyed(&self.objects, "objects")
    }

    /// Sky positions of every object of one kind, in key order.
    pub fn positions(&self, kind: SourceKind) -> Result<Vec<(ObjectKey, f64, f64)>> {
        let mut out = Vec::new();
        for item in self.iter_objects() {
            let (key, obj) = item?;
            if obj.kind == kind {
                out.push((key, obj.ra, obj.dec));
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- matches

    /// Replaces all image⇄spectrum matches with `pairs` (image, spectrum,
    /// separation in arcsec). Re-running a cross-match never duplicates.
    pub fn replace_matches(&self, pairs: &[(ObjectKey, ObjectKey, f64)], info: &CrossmatchInfo) -> Result<()> {
        self.meta.remove(META_CROSSMATCH).map_err(|e| self.kv_err(e))?;
        self.matches.clear().map_err(|e| self.kv_err(e))?;
        self.matches_by_spectrum.clear().map_err(|e| self.kv_err(e))?;
        for chunk in pairs.chunks(50_000) {
            let mut fwd = kv::Batch::default();
            let mut rev = kv::Batch::default();
            for &(image, spectrum, sep_arcsec) in chunk {
                fwd.insert(image.to_bytes(), encode(&MatchRecord { other: spectrum, sep_arcsec }));
                rev.insert(spectrum.to_bytes(), encode(&MatchRecord { other: image, sep_arcsec }));
            }
            self.matches.apply_batch(fwd).map_err(|e| self.kv_err(e))?;
            self.matches_by_spectrum.apply_batch(rev).map_err(|e| self.kv_err(e))?;
        }
        // Image features include the matched spectrum's lines: recompute them.
        for key in self.meta.scan_prefix(b"features_done/").keys() {
            self.meta.remove(key.map_err(|e| self.kv_err(e))?).map_err(|e| self.kv_err(e))?;
        }
        // Written last: present only when the match set is complete.
        self.meta.insert(META_CROSSMATCH, encode(info)).map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    /// The spectrum matched to an image object.
    pub fn spectrum_match(&self, image: ObjectKey) -> Result<Option<MatchRecord>> {
        match self.matches.get(image.to_bytes()).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode("matches", &v)?)),
            None => Ok(None),
        }
    }

    /// The image object matched to a spectrum.
    pub fn image_match(&self, spectrum: ObjectKey) -> Result<Option<MatchRecord>> {
        match self.matches_by_spectrum.get(spectrum.to_bytes()).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode("matches_by_spectrum", &v)?)),
            None => Ok(None),
        }
    }

    /// How the current matches were made; None if no complete cross-match.
    pub fn crossmatch_info(&self) -> Result<Option<CrossmatchInfo>> {
        match self.meta.get(META_CROSSMATCH).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode("meta", &v)?)),
            None => Ok(None),
        }
    }

    // ---------------------------------------------------------------- features

    /// The feature schema of a survey's image objects.
    pub fn feature_schema(&self, survey: &str) -> Result<Option<FeatureSchema>> {
        match self.meta.get(format!("feature_schema/{survey}")).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode("meta", &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_feature_schema(&self, survey: &str, schema: &FeatureSchema) -> Result<()> {
        self.meta.insert(format!("feature_schema/{survey}"), encode(schema)).map_err(|e| self.kv_err(e))?;
        Ok(())
    }

    /// The feature version a source file's objects were computed with.
    pub fn features_done(&self, file: u32) -> Result<Option<u32>> {
        Ok(self
            .meta
            .get(format!("features_done/{file}"))
            .map_err(|e| self.kv_err(e))?
            .and_then(|v| v.as_slice().try_into().ok().map(u32::from_be_bytes)))
    }

    /// Records that a file's features are complete (after they are written).
    pub fn set_features_done(&self, file: u32, version: u32) -> Result<()> {
        self.meta.insert(format!("features_done/{file}"), version.to_be_bytes()).map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    pub fn put_features(&self, rows: &[(ObjectKey, FeatureRecord)]) -> Result<()> {
        self.put_keyed(&self.features, rows)
    }

    pub fn features_of(&self, key: ObjectKey) -> Result<Option<FeatureRecord>> {
        self.get(&self.features, "features", key.to_bytes())
    }

    /// Streams every feature record in key order.
    pub fn iter_features(&self) -> impl Iterator<Item = Result<(ObjectKey, FeatureRecord)>> + '_ {
        self.iter_keyed(&self.features, "features")
    }

    pub fn feature_count(&self) -> usize {
        self.features.len()
    }

    pub fn put_lines(&self, rows: &[(ObjectKey, LineRecord)]) -> Result<()> {
        self.put_keyed(&self.lines, rows)
    }

    /// Emission-line measurements and BPT class of a spectrum.
    pub fn lines_of(&self, spectrum: ObjectKey) -> Result<Option<LineRecord>> {
        self.get(&self.lines, "lines", spectrum.to_bytes())
    }

    pub fn iter_lines(&self) -> impl Iterator<Item = Result<(ObjectKey, LineRecord)>> + '_ {
        self.iter_keyed(&self.lines, "lines")
    }

    /// Survey-wide line summary (written by `features`): what `status` and the
    /// TUI's BPT view show without walking the catalogue.
    pub fn line_summary(&self) -> Result<Option<LineSummary>> {
        self.get(&self.meta, "meta", META_LINES)
    }

    pub fn put_line_summary(&self, summary: &LineSummary) -> Result<()> {
        self.meta.insert(META_LINES, encode(summary)).map_err(|e| self.kv_err(e))?;
        Ok(())
    }

    // ---------------------------------------------------------------- deep features

    /// How a survey's deep features were made (`oddity embed`), if they were.
    pub fn embedding_schema(&self, survey: &str) -> Result<Option<EmbeddingSchema>> {
        match self.meta.get(format!("embedding_schema/{survey}")).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode("meta", &v)?)),
            None => Ok(None),
        }
    }

    /// Replaces a survey's deep features: the schema and every object's
    /// components, written in one flush after the records.
    pub fn put_embedding_schema(&self, survey: &str, schema: &EmbeddingSchema) -> Result<()> {
        self.meta.insert(format!("embedding_schema/{survey}"), encode(schema)).map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    pub fn put_embeddings(&self, rows: &[(ObjectKey, Vec<f32>)]) -> Result<()> {
        let mut batch = kv::Batch::default();
        for (key, values) in rows {
            batch.insert(key.to_bytes(), encode(values));
        }
        self.embeddings.apply_batch(batch).map_err(|e| self.kv_err(e))
    }

    /// An image object's deep features (aligned with its survey's [`EmbeddingSchema`]).
    pub fn embedding_of(&self, key: ObjectKey) -> Result<Option<Vec<f32>>> {
        match self.embeddings.get(key.to_bytes()).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode("embeddings", &v)?)),
            None => Ok(None),
        }
    }

    /// Streams every object's deep features in key order.
    pub fn iter_embeddings(&self) -> impl Iterator<Item = Result<(ObjectKey, Vec<f32>)>> + '_ {
        self.embeddings.iter().map(move |kv| {
            let (k, v) = kv.map_err(|e| self.kv_err(e))?;
            let key = ObjectKey::from_bytes(&k).ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                tree: "embeddings",
                why: "bad key".into(),
            })?;
            Ok((key, self.decode("embeddings", &v)?))
        })
    }

    pub fn embedding_count(&self) -> usize {
        self.embeddings.len()
    }

    // ---------------------------------------------------------------- scores

    /// Starts a new score version: removes what an interrupted run left
    /// (versions that are neither current nor kept) and returns a number
    /// above every version in the store.
    pub fn begin_scores(&self) -> Result<u32> {
        let current = self.current_scores()?.map(|v| v.version);
        let kept: std::collections::BTreeSet<u32> = self.kept_scores()?.into_iter().map(|k| k.info.version).collect();
        let present = self.versions_present()?;
        for &v in &present {
            if Some(v) != current && !kept.contains(&v) {
                self.remove_score_version(v)?;
            }
        }
        let highest = present.iter().chain(&kept).chain(&current).copied().max().unwrap_or(0);
        Ok(highest + 1)
    }

    /// Version numbers with scores in the store (one range scan per version).
    fn versions_present(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut from = 0u32;
        loop {
            let Some(key) = self.scores.range(from.to_be_bytes()..).keys().next() else { break };
            let key = key.map_err(|e| self.kv_err(e))?;
            let v = u32::from_be_bytes(key[..4].try_into().unwrap_or([0; 4]));
            out.push(v);
            match v.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(out)
    }

    /// Writes scores of a version that is not current yet.
    pub fn put_scores(&self, version: u32, scores: &[(ObjectKey, f32)]) -> Result<()> {
        let mut by_key = kv::Batch::default();
        let mut index = kv::Batch::default();
        for &(key, score) in scores {
            let mut k = Vec::with_capacity(12);
            k.extend_from_slice(&version.to_be_bytes());
            k.extend_from_slice(&key.to_bytes());
            by_key.insert(k, score.to_be_bytes());
            index.insert(rank_key(version, score, key), []);
        }
        self.scores.apply_batch(by_key).map_err(|e| self.kv_err(e))?;
        self.score_index.apply_batch(index).map_err(|e| self.kv_err(e))?;
        Ok(())
    }

    /// Writes what made the scores of a version that is not current yet.
    pub fn put_score_parts(&self, version: u32, parts: &[(ObjectKey, ScoreParts)]) -> Result<()> {
        let mut batch = kv::Batch::default();
        for (key, p) in parts {
            let mut k = Vec::with_capacity(12);
            k.extend_from_slice(&version.to_be_bytes());
            k.extend_from_slice(&key.to_bytes());
            batch.insert(k, encode(p));
        }
        self.score_parts.apply_batch(batch).map_err(|e| self.kv_err(e))
    }

    /// What made an object's score in the current version.
    pub fn score_parts_of(&self, key: ObjectKey) -> Result<Option<ScoreParts>> {
        let Some(v) = self.current_scores()? else { return Ok(None) };
        let mut k = Vec::with_capacity(12);
        k.extend_from_slice(&v.version.to_be_bytes());
        k.extend_from_slice(&key.to_bytes());
        match self.score_parts.get(k).map_err(|e| self.kv_err(e))? {
            Some(b) => Ok(Some(self.decode("score_parts", &b)?)),
            None => Ok(None),
        }
    }

    /// Makes a complete version current — one durable write, so a crash
    /// leaves either the old ranking or the new one — then drops the old one
    /// unless it is kept ([`Store::keep_scores`]). A kept version made
    /// current stops being "kept".
    pub fn commit_scores(&self, info: &ScoreVersion) -> Result<()> {
        let previous = self.current_scores()?;
        self.flush()?;
        self.meta.insert(META_SCORES, encode(info)).map_err(|e| self.kv_err(e))?;
        self.meta.remove(kept_key(info.version)).map_err(|e| self.kv_err(e))?;
        self.flush()?;
        if let Some(p) = previous {
            let kept = self.meta.contains_key(kept_key(p.version)).map_err(|e| self.kv_err(e))?;
            if p.version != info.version && !kept {
                self.remove_score_version(p.version)?;
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Records a complete version as kept but not current (a retrain's
    /// candidate that did not win, or the ranking a current one builds on),
    /// with why it is kept. Its scores stay readable
    /// ([`Store::scores_of_version`]) until [`Store::drop_kept_scores`].
    pub fn keep_scores(&self, info: &ScoreVersion, why: &str) -> Result<()> {
        self.flush()?;
        let record = KeptScores { info: info.clone(), why: why.to_string() };
        self.meta.insert(kept_key(info.version), encode(&record)).map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    /// Every kept (non-current) version, oldest first.
    pub fn kept_scores(&self) -> Result<Vec<KeptScores>> {
        self.meta
            .scan_prefix(META_KEPT)
            .values()
            .map(|v| {
                let v = v.map_err(|e| self.kv_err(e))?;
                self.decode("meta", &v)
            })
            .collect()
    }

    /// A version's record, current or kept.
    pub fn score_version(&self, version: u32) -> Result<Option<ScoreVersion>> {
        if let Some(c) = self.current_scores()?.filter(|c| c.version == version) {
            return Ok(Some(c));
        }
        match self.meta.get(kept_key(version)).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode::<KeptScores>("meta", &v)?.info)),
            None => Ok(None),
        }
    }

    /// Forgets a kept version and deletes its scores (never the current one).
    pub fn drop_kept_scores(&self, version: u32) -> Result<()> {
        if self.current_scores()?.is_some_and(|c| c.version == version) {
            return Ok(());
        }
        self.meta.remove(kept_key(version)).map_err(|e| self.kv_err(e))?;
        self.flush()?;
        self.remove_score_version(version)?;
        self.flush()
    }

    /// A small named text (JSON) kept in the store, e.g. the last retrain's verdict.
    pub fn note(&self, name: &str) -> Result<Option<String>> {
        let v = self.meta.get(format!("note/{name}")).map_err(|e| self.kv_err(e))?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn put_note(&self, name: &str, text: &str) -> Result<()> {
        self.meta.insert(format!("note/{name}"), text.as_bytes()).map_err(|e| self.kv_err(e))?;
        self.flush()
    }

    fn remove_score_version(&self, version: u32) -> Result<()> {
        let prefix = version.to_be_bytes();
        for tree in [&self.scores, &self.score_index, &self.score_parts] {
            let mut batch = kv::Batch::default();
            let mut n = 0;
            for key in tree.scan_prefix(prefix).keys() {
                batch.remove(key.map_err(|e| self.kv_err(e))?);
                n += 1;
                if n % 100_000 == 0 {
                    tree.apply_batch(std::mem::take(&mut batch)).map_err(|e| self.kv_err(e))?;
                }
            }
            tree.apply_batch(batch).map_err(|e| self.kv_err(e))?;
        }
        Ok(())
    }

    /// The ranking in use, if any.
    pub fn current_scores(&self) -> Result<Option<ScoreVersion>> {
        match self.meta.get(META_SCORES).map_err(|e| self.kv_err(e))? {
            Some(v) => Ok(Some(self.decode("meta", &v)?)),
            None => Ok(None),
        }
    }

    /// An object's score in the current version.
    pub fn score_of(&self, key: ObjectKey) -> Result<Option<f32>> {
        let Some(v) = self.current_scores()? else { return Ok(None) };
        let mut k = Vec::with_capacity(12);
        k.extend_from_slice(&v.version.to_be_bytes());
        k.extend_from_slice(&key.to_bytes());
        Ok(self
            .scores
            .get(k)
            .map_err(|e| self.kv_err(e))?
            .and_then(|b| b.as_slice().try_into().ok().map(f32::from_be_bytes)))
    }

    /// Objects of the current version, most anomalous first, streamed from
    /// the index (nothing is loaded up front).
    pub fn ranked(&self) -> Result<impl Iterator<Item = Result<(ObjectKey, f32)>> + '_> {
        let version = self.current_scores()?.map(|v| v.version);
        let iter = version.map(|v| self.score_index.scan_prefix(v.to_be_bytes()));
        Ok(iter.into_iter().flatten().map(move |kv| {
            let (k, _) = kv.map_err(|e| self.kv_err(e))?;
            parse_rank_key(&k).ok_or_else(|| bad_key(&self.path, "score_index"))
        }))
    }

    /// Like [`Store::ranked`], but owning its cursor (for long-lived queues).
    pub fn ranked_owned(&self) -> Result<RankedIter> {
        let Some(v) = self.current_scores()? else { return Ok(Box::new(std::iter::empty())) };
        let path = self.path.clone();
        Ok(Box::new(self.score_index.scan_prefix(v.version.to_be_bytes()).map(move |kv| {
            let (k, _) = kv.map_err(|source| StoreError::engine(&path, source))?;
            parse_rank_key(&k).ok_or_else(|| bad_key(&path, "score_index"))
        })))
    }

    /// Every score of version `version` (current or not), streamed in object
    /// key order; empty when the version does not exist.
    pub fn scores_of_version(&self, version: u32) -> Result<impl Iterator<Item = Result<(ObjectKey, f32)>> + '_> {
        Ok(self.scores.scan_prefix(version.to_be_bytes()).map(move |kv| {
            let (k, v) = kv.map_err(|e| self.kv_err(e))?;
            let key = ObjectKey::from_bytes(&k[4..]);
            let score = v.as_slice().try_into().ok().map(f32::from_be_bytes);
            key.zip(score).ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                tree: "scores",
                why: "bad key or value".into(),
            })
        }))
    }

    /// Image objects in key order, owning its cursor.
    pub fn image_keys_owned(&self) -> Box<dyn Iterator<Item = Result<ObjectKey>> + Send> {
        let path = self.path.clone();
        Box::new(self.images.iter().keys().map(move |k| {
            let k = k.map_err(|source| StoreError::engine(&path, source))?;
            ObjectKey::from_bytes(&k).ok_or_else(|| bad_key(&path, "images"))
        }))
    }

    /// Number of image objects (walks the tree: O(n)).
    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    /// Every score of the current version in key order (for histograms).
    pub fn all_scores(&self) -> Result<Vec<f32>> {
        let Some(v) = self.current_scores()? else { return Ok(Vec::new()) };
        self.scores
            .scan_prefix(v.version.to_be_bytes())
            .values()
            .map(|b| {
                let b = b.map_err(|e| self.kv_err(e))?;
                Ok(b.as_slice().try_into().map(f32::from_be_bytes).unwrap_or(f32::NAN))
            })
            .collect()
    }

    // ---------------------------------------------------------------- models

    /// Stores a model and returns its id.
    pub fn put_model(&self, mut model: ModelRecord) -> Result<u32> {
        // Small consecutive ids (1, 2, 3…) that people can say out loud; one
        // process per store, so no race.
        let last = self.models.last().map_err(|e| self.kv_err(e))?;
        let id =
            last.and_then(|(k, _)| k.as_slice().try_into().ok().map(u32::from_be_bytes)).map(|v| v + 1).unwrap_or(1);
        model.id = id;
        self.models.insert(id.to_be_bytes(), encode(&model)).map_err(|e| self.kv_err(e))?;
        self.flush()?;
        Ok(id)
    }

    pub fn model(&self, id: u32) -> Result<Option<ModelRecord>> {
        self.get(&self.models, "models", id.to_be_bytes())
    }

    /// Models of one kind, oldest first.
    pub fn models_of_kind(&self, kind: &str) -> Result<Vec<ModelRecord>> {
        let mut out = Vec::new();
        for kv in self.models.iter() {
            let (_, v) = kv.map_err(|e| self.kv_err(e))?;
            let m: ModelRecord = self.decode("models", &v)?;
            if m.kind == kind {
                out.push(m);
            }
        }
        Ok(out)
    }

    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    // ---------------------------------------------------------------- labels

    /// Appends a label event and returns once it is on disk.
    pub fn append_label(&self, event: &LabelEvent) -> Result<u64> {
        Ok(self.append_labels(std::slice::from_ref(event))?[0])
    }

    /// Appends several label events in one durable commit; returns their
    /// ids (consecutive, after every earlier event) once they are on disk.
    pub fn append_labels(&self, events: &[LabelEvent]) -> Result<Vec<u64>> {
        let values: Vec<Vec<u8>> = events.iter().map(encode).collect();
        self.labels.append(&values, true).map_err(|e| self.kv_err(e))
    }

    /// Label events with ids above `after`, in the order they were made.
    pub fn label_events_after(&self, after: u64) -> Result<Vec<(u64, LabelEvent)>> {
        let from = after.checked_add(1).map(|a| a.to_be_bytes().to_vec());
        let Some(from) = from else { return Ok(Vec::new()) };
        self.labels
            .range(from..)
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.kv_err(e))?;
                let id = u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8]));
                Ok((id, self.decode("labels", &v)?))
            })
            .collect()
    }

    /// All label events in the order they were made.
    pub fn label_events(&self) -> Result<Vec<(u64, LabelEvent)>> {
        self.labels
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.kv_err(e))?;
                let id = u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8]));
                Ok((id, self.decode("labels", &v)?))
            })
            .collect()
    }

    pub fn label_count(&self) -> usize {
        self.labels.len()
    }
}

/// Writes who holds the lock (command, pid, user, host) into the lock file,
/// for the message another process gets.
/// A store from before the engine change: a sled database and no engine file.
fn written_by_sled(path: &Path) -> bool {
    path.join(SLED_DIR).join("conf").exists() && !path.join(DB_FILE).exists()
}

/// Takes the store's exclusive lock (released when the file closes, even if
/// the process is killed) and writes who holds it into the lock file.
fn take_lock(path: &Path) -> Result<File> {
    let io = |source| StoreError::Io { path: path.to_owned(), source };
    let lock_path = path.join(LOCK_FILE);
    let lock = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path).map_err(io)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            // The holder wrote who it is into the lock file.
            let holder = fs::read_to_string(&lock_path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "another oddity process".into());
            return Err(StoreError::Locked { path: path.to_owned(), lock: lock_path, holder });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    write_holder(&lock);
    Ok(lock)
}

fn write_holder(mut lock: &File) {
    use std::io::{Seek, Write};
    const COMMANDS: &[&str] = &[
        "synth",
        "ingest",
        "crossmatch",
        "features",
        "score",
        "top",
        "triage",
        "pretrain",
        "retrain",
        "eval",
        "export",
        "status",
        "upgrade-store",
        "compact",
    ];
    let command = match std::env::args().skip(1).find(|a| COMMANDS.contains(&a.as_str())) {
        Some(c) => format!("oddity {c}"),
        // A program using the library (a test, a bench): its own name.
        None => std::env::args()
            .next()
            .map(|a| std::path::Path::new(&a).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(a))
            .unwrap_or_else(|| "a program".into()),
    };
    let holder = format!(
        "`{command}` (pid {}, user {}, host {})",
        std::process::id(),
        crate::serve::current_user(),
        crate::serve::host_name()
    );
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = lock.write_all(holder.as_bytes());
}

const META_SCHEMA: &[u8] = b"schema_version";
const META_CREATED: &[u8] = b"created";
const META_CROSSMATCH: &[u8] = b"crossmatch";
const META_SCORES: &[u8] = b"scores_current";
const META_LINES: &[u8] = b"line_summary";
const META_KEPT: &[u8] = b"scores_kept/";

fn kept_key(version: u32) -> Vec<u8> {
    let mut k = META_KEPT.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Index key: version, then the score inverted so that the engine's ascending
/// order is most-anomalous first, then the object (ties in key order).
fn rank_key(version: u32, score: f32, key: ObjectKey) -> [u8; 16] {
    // For non-negative floats the IEEE bit pattern orders like the value;
    // NaN scores sort last.
    let bits = if score.is_nan() { 0 } else { score.max(0.0).to_bits() };
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&version.to_be_bytes());
    k[4..8].copy_from_slice(&(u32::MAX - bits).to_be_bytes());
    k[8..].copy_from_slice(&key.to_bytes());
    k
}

fn parse_rank_key(k: &[u8]) -> Option<(ObjectKey, f32)> {
    if k.len() != 16 {
        return None;
    }
    let bits = u32::MAX - u32::from_be_bytes(k[4..8].try_into().ok()?);
    Some((ObjectKey::from_bytes(&k[8..])?, f32::from_bits(bits)))
}

fn bad_key(path: &Path, tree: &'static str) -> StoreError {
    StoreError::Corrupt { path: path.to_owned(), tree, why: "bad key".into() }
}

fn id_key(survey: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(survey.len() + 1 + id.len());
    k.extend_from_slice(survey.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Writes the retrain progress file read by `oddity status` (a file beside
/// the database: a retrain writes it while it does not hold the store).
pub fn write_retrain_status(store: &std::path::Path, state: &str, message: &str) {
    let body = serde_json::json!({
        "state": state,
        "message": message,
        "pid": std::process::id(),
        "time": chrono::Utc::now().to_rfc3339(),
    });
    let path = store.join("retrain.json");
    let tmp = store.join("retrain.json.partial");
    if std::fs::write(&tmp, body.to_string()).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

/// The last retrain's state, if any: (state, message, time).
pub fn read_retrain_status(store: &std::path::Path) -> Option<(String, String, String)> {
    let text = std::fs::read_to_string(store.join("retrain.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Some((s("state"), s("message"), s("time")))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain records into a Vec cannot fail.
    postcard::to_allocvec(value).expect("postcard encoding of a store record")
}

#[cfg(test)]
mod tests;
