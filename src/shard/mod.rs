//! Beyond one machine: slices of the input, shards, and `oddity merge`.
//!
//! A shard is an ordinary store written by one task from one slice of the
//! input files (`oddity ingest --slice I/N`): ingest and features run there,
//! and later the forests fitted once on the whole catalogue are applied there
//! (`oddity score --apply`), as is the embedding's projection fitted once
//! (`oddity embed --apply`). `oddity merge` folds shards into the project
//! store, where the labels and the TUI stay; a shard whose deep features come
//! from another projection than the project's is refused.
//!
//! Object keys are (file id, row) and every store numbers its files from 1,
//! so shard keys collide: the merge gives each shard file the project's id
//! for the same canonical path (a new one the first time), so an object's
//! key in the project store never depends on which shard brought it, and
//! merging a shard again rewrites the same keys.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::features::FEATURES_VERSION;
use crate::sky::{MatchMode, Radec, crossmatch};
use crate::store::{CrossmatchInfo, KeyedTree, SourceKind, Store, StoreError};

pub mod slurm;

/// One slice of N: `I/N`, 0 ≤ I < N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Slice {
    type Err = String;
    fn from_str(s: &str) -> Result<Slice, String> {
        let bad = || format!("slice `{s}`: expected I/N with 0 <= I < N (e.g. 3/16)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Slice { index, count })
    }
}

impl std::fmt::Display for Slice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The files of one slice. Files of one HEALPix partition (`healpix=N/`,
/// images and spectra alike) stay together; partitions, then files outside
/// the layout, are dealt round-robin in order, so every slice gets a fair
/// share and the same files whatever machine asks.
pub fn slice_files(files: &[PathBuf], slice: Slice) -> Vec<PathBuf> {
    let mut groups: BTreeMap<(u8, u64, PathBuf), Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let key = match crate::ingest::layout(f).2 {
            Some(p) => (0, p, PathBuf::new()),
            None => (1, 0, f.clone()),
        };
        groups.entry(key).or_default().push(f.clone());
    }
    groups.into_values().enumerate().filter(|(i, _)| i % slice.count == slice.index).flat_map(|(_, g)| g).collect()
}

/// Matches every image object to its nearest spectrum within `radius_arcsec`
/// (one-to-one) and replaces the stored matches (`oddity crossmatch`).
pub fn crossmatch_store(store: &Store, radius_arcsec: f64) -> Result<CrossmatchInfo, StoreError> {
    let images = store.positions(SourceKind::Images)?;
    let spectra = store.positions(SourceKind::Spectra)?;
    let a: Vec<Radec> = images.iter().map(|&(_, ra, dec)| Radec { ra, dec }).collect();
    let b: Vec<Radec> = spectra.iter().map(|&(_, ra, dec)| Radec { ra, dec }).collect();
    let pairs = crossmatch(&a, &b, radius_arcsec, MatchMode::OneToOne);
    let partition: HashMap<u32, Option<u64>> = store.sources()?.into_iter().map(|(id, s)| (id, s.partition)).collect();
    let stored: Vec<_> = pairs.iter().map(|p| (images[p.a].0, spectra[p.b].0, p.sep_arcsec)).collect();
    let across = stored
        .iter()
        .filter(|(i, s, _)| {
            let (pi, ps) = (partition.get(&i.file).copied().flatten(), partition.get(&s.file).copied().flatten());
            pi.is_some() && ps.is_some() && pi != ps
        })
        .count() as u64;
    let seps: Vec<f64> = pairs.iter().map(|p| p.sep_arcsec).collect();
    let info = CrossmatchInfo {
        radius_arcsec,
        n_images: images.len() as u64,
        n_spectra: spectra.len() as u64,
        n_matches: pairs.len() as u64,
        n_across_partitions: across,
        median_sep_arcsec: median(seps).unwrap_or(f64::NAN),
        time: chrono::Utc::now().to_rfc3339(),
    };
    store.replace_matches(&stored, &info)?;
    Ok(info)
}

/// The median (mean of the middle two for an even count); None if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(0.5 * (v[n / 2 - 1] + v[n / 2])),
    }
}

/// What happened to one shard in a merge.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardOutcome {
    /// Folded in: objects, features (and shard scores, deep features) copied.
    Merged { objects: u64, features: u64, scores: u64, embeddings: u64 },
    /// Merged before and unchanged since: nothing done.
    AlreadyMerged,
    /// Not merged, and why (missing, locked, unfinished…).
    Failed(String),
}

#[derive(Debug, Default)]
pub struct MergeReport {
    pub shards: Vec<(PathBuf, ShardOutcome)>,
    /// The cross-match redone over the merged catalogue.
    pub crossmatch: Option<CrossmatchInfo>,
    /// The score version made from the shards' scores.
    pub scores: Option<crate::detect::ScoreReport>,
    /// Shard scores left aside: made by other forests than the project's fit.
    pub stale_scores: Vec<PathBuf>,
}

impl MergeReport {
    pub fn failed(&self) -> usize {
        self.shards.iter().filter(|(_, o)| matches!(o, ShardOutcome::Failed(_))).count()
    }
}

/// SHA-256 of `bytes`, in hex: the fingerprint that says which fit (forests,
/// projection) a shard's results came from.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where `oddity embed --fit-only` saves the projection (backbone + PCA) for
/// the shards, beside the database.
pub fn projection_path(project: &Path) -> PathBuf {
    project.join("projection.bin")
}

/// The store note naming the projection fitted there for the shards (its hash).
pub const EMBED_FIT_NOTE: &str = "embed-fit";
/// The store note naming the projection its deep features were made with.
pub const EMBED_APPLIED_NOTE: &str = "embed-projection";
/// Default cutouts per survey the embedding's PCA is fitted on.
pub const DEFAULT_EMBED_FIT_SAMPLE: usize = 20_000;

/// Where the forests fitted for the shards are saved, beside the database.
pub fn forests_path(project: &Path) -> PathBuf {
    project.join("forests.bin")
}

/// What the project store knows of its fit for the shards (hash of
/// [`crate::detect::FittedForests`]), if `oddity score --fit-only` ran.
pub fn project_fit(project: &Store) -> Result<Option<crate::detect::FittedForests>, StoreError> {
    let Some(hash) = project.note("shard-fit")? else { return Ok(None) };
    let Ok(bytes) = std::fs::read(forests_path(project.path())) else { return Ok(None) };
    Ok(crate::detect::FittedForests::from_bytes(&bytes).filter(|f| f.hash() == hash))
}

/// Saves fitted forests for the shards and records them as the project's fit
/// (shard scores of any earlier fit stop counting).
pub fn save_fit(project: &Store, forests: &crate::detect::FittedForests) -> Result<PathBuf, StoreError> {
    let path = forests_path(project.path());
    let tmp = path.with_extension("bin.partial");
    let io = |source| StoreError::Io { path: path.clone(), source };
    std::fs::write(&tmp, forests.to_bytes()).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    project.clear_shard_scores()?;
    project.put_note("shard-fit", &forests.hash())?;
    Ok(path)
}

/// Separates a fingerprint's data part from its shard-scores part.
const SCORES: &str = " | scores ";
/// Separates a fingerprint's deep-features part (the last).
const EMBEDDINGS: &str = " | embeddings ";

/// Checks a shard can be merged and returns its fingerprint (what changes
/// when its task wrote more) or why not.
fn check_shard(shard: &Store) -> Result<Result<String, String>, StoreError> {
    let sources = shard.sources()?;
    for (id, s) in &sources {
        if !s.complete {
            return Ok(Err(format!("{} was not completely ingested (its task did not finish)", s.path)));
        }
        if s.rows_done > 0 && shard.features_done(*id)? != Some(FEATURES_VERSION) {
            return Ok(Err(format!(
                "no features for {} (run `oddity --store {} features`)",
                s.path,
                shard.path().display()
            )));
        }
    }
    let rows: u64 = sources.iter().map(|(_, s)| s.rows_done).sum();
    Ok(Ok(format!(
        "created {} files {} rows {} features {} lines {}{SCORES}{} of {}{EMBEDDINGS}{} of {}",
        shard.created()?.unwrap_or_default(),
        sources.len(),
        rows,
        shard.feature_count(),
        shard.iter_lines().count(),
        shard.shard_score_count(),
        shard.shard_scores_model()?.unwrap_or_default(),
        shard.embedding_count(),
        shard.note(EMBED_APPLIED_NOTE)?.unwrap_or_default()
    )))
}

/// Folds shards into the project store. A shard merged before and unchanged
/// is left alone; a missing or unfinished shard is named and the rest are
/// merged. When new objects came in, the cross-match is redone over the
/// whole catalogue (matches cross shard borders) and the image features'
/// spectral columns follow it. When new shard scores of the project's fit
/// came in, they become a new score version.
pub fn merge(
    project: &Store,
    shards: &[PathBuf],
    radius_arcsec: Option<f64>,
    progress: &dyn crate::progress::Progress,
) -> Result<MergeReport, StoreError> {
    let mut report = MergeReport::default();
    let fit = project_fit(project)?;
    let fit_hash = fit.as_ref().map(|f| f.hash());
    let mut new_objects = false;
    let mut new_scores = false;
    progress.set_total(shards.len() as u64);
    register_new_files(project, shards)?;
    for path in shards {
        let outcome = merge_one(project, path, fit_hash.as_deref(), &mut report)?;
        if let ShardOutcome::Merged { objects, scores, .. } = &outcome {
            new_objects |= *objects > 0;
            new_scores |= *scores > 0;
        }
        report.shards.push((path.clone(), outcome));
        progress.advance(1);
    }
    if new_objects {
        let done = project.features_done_all()?;
        let radius = radius_arcsec.or(project.crossmatch_info()?.map(|c| c.radius_arcsec)).unwrap_or(1.0);
        report.crossmatch = Some(crossmatch_store(project, radius)?);
        crate::features::refresh_spectral_columns(project)?;
        for (file, version) in done {
            project.set_features_done(file, version)?;
        }
        let summary = crate::features::summarise_lines(project)?;
        project.put_line_summary(&summary)?;
    }
    if new_scores && let Some(fit) = fit {
        let opts = crate::detect::ScoreOptions {
            forest: fit.forest.clone(),
            features: fit.feature_set,
            fit_sample: fit.fit_sample,
            fitted: Some(std::sync::Arc::new(fit)),
            shard_scores: true,
            ..Default::default()
        };
        report.scores = Some(crate::detect::score_store(project, &opts, &crate::progress::NoProgress)?);
    }
    project.flush()?;
    Ok(report)
}

/// Opens a shard and checks it can be merged into `project`: (canonical
/// path, the open shard, its fingerprint), or why not.
fn prepare(project: &Store, path: &Path) -> Result<Result<(PathBuf, Store, String), String>, StoreError> {
    let canonical = match path.canonicalize() {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("missing: {e}"))),
    };
    if canonical == project.path().canonicalize().unwrap_or_default() {
        return Ok(Err("this is the project store itself".into()));
    }
    let shard = match Store::open(&canonical) {
        Ok(s) => s,
        Err(StoreError::Missing(_)) => return Ok(Err("missing: no oddity store there".into())),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let fingerprint = match check_shard(&shard)? {
        Ok(f) => f,
        Err(why) => return Ok(Err(why)),
    };
    if let Err(why) = check_projection(project, &shard)? {
        return Ok(Err(why));
    }
    // Feature schemas must agree survey by survey before anything is copied.
    let ours: HashMap<String, Vec<u8>> = project.feature_schemas_raw()?.into_iter().collect();
    for (survey, bytes) in &shard.feature_schemas_raw()? {
        if ours.get(survey).is_some_and(|o| o != bytes) {
            return Ok(Err(format!(
                "survey {survey}: its feature schema differs from the project's (another oddity version or bands?)"
            )));
        }
    }
    Ok(Ok((canonical, shard, fingerprint)))
}

/// Gives the files of every mergeable shard that the project does not know
/// yet their ids, in path order: shards merged together get the keys one
/// machine ingesting the same folders would give (ties in the ranking then
/// fall the same way too).
fn register_new_files(project: &Store, shards: &[PathBuf]) -> Result<(), StoreError> {
    let mut new = Vec::new();
    for path in shards {
        if let Ok((_, shard, _)) = prepare(project, path)? {
            for (_, source) in shard.sources()? {
                if project.source_id(&source.path)?.is_none() {
                    new.push(source);
                }
            }
        }
    }
    new.sort_by(|a, b| Path::new(&a.path).cmp(Path::new(&b.path)));
    new.dedup_by(|a, b| a.path == b.path);
    for source in new {
        // Nothing merged yet: the merge of its shard fills in the counts.
        project.add_source(&crate::store::SourceFile { rows_done: 0, n_objects: 0, complete: false, ..source })?;
    }
    Ok(())
}

fn merge_one(
    project: &Store,
    path: &Path,
    fit_hash: Option<&str>,
    report: &mut MergeReport,
) -> Result<ShardOutcome, StoreError> {
    let (canonical, shard, fingerprint) = match prepare(project, path)? {
        Ok(x) => x,
        Err(why) => return Ok(ShardOutcome::Failed(why)),
    };
    let theirs = shard.feature_schemas_raw()?;
    let key = canonical.to_string_lossy().into_owned();
    let before = project.merged_shard(&key)?;
    if before.as_deref() == Some(fingerprint.as_str()) {
        return Ok(ShardOutcome::AlreadyMerged);
    }
    let data_part = |f: &str| f.split(SCORES).next().unwrap_or_default().to_string();
    let data_merged = before.as_deref().map(data_part) == Some(data_part(&fingerprint));
    // The project's id for each shard file: by canonical path.
    let mut files: HashMap<u32, u32> = HashMap::new();
    for (id, source) in shard.sources()? {
        let to = match project.source_id(&source.path)? {
            Some(to) => {
                if !data_merged {
                    project.put_source(to, &source)?;
                }
                to
            }
            None => project.add_source(&source)?,
        };
        files.insert(id, to);
    }
    let (mut objects, mut features) = (0, 0);
    if !data_merged {
        for (survey, bytes) in &theirs {
            project.put_feature_schema_raw(survey, bytes)?;
        }
        objects = project.copy_keyed_from(&shard, KeyedTree::Objects, &files)?;
        project.copy_keyed_from(&shard, KeyedTree::Images, &files)?;
        project.copy_keyed_from(&shard, KeyedTree::Spectra, &files)?;
        project.copy_ids_from(&shard, &files)?;
        features = project.copy_keyed_from(&shard, KeyedTree::Features, &files)?;
        project.copy_keyed_from(&shard, KeyedTree::Lines, &files)?;
        for (id, version) in shard.features_done_all()? {
            if let Some(&to) = files.get(&id) {
                project.set_features_done(to, version)?;
            }
        }
    }
    let embeddings_part = |f: &str| f.split(EMBEDDINGS).nth(1).map(str::to_string);
    let mut embeddings = 0;
    if shard.embedding_count() > 0 && before.as_deref().and_then(embeddings_part) != embeddings_part(&fingerprint) {
        embeddings = copy_embeddings(project, &shard, &files)?;
    }
    let mut scores = 0;
    if shard.shard_score_count() > 0 {
        if fit_hash.is_some() && shard.shard_scores_model()?.as_deref() == fit_hash {
            scores = project.copy_keyed_from(&shard, KeyedTree::ShardScores, &files)?;
        } else {
            report.stale_scores.push(path.to_owned());
        }
    }
    project.flush()?;
    // Recorded last: a merge killed half-way merges this shard again.
    project.set_merged_shard(&key, &fingerprint)?;
    Ok(ShardOutcome::Merged { objects, features, scores, embeddings })
}

/// A shard's deep features must come from the projection the project
/// fitted (`oddity embed --fit-only`): Err(why) when they do not.
fn check_projection(project: &Store, shard: &Store) -> Result<Result<(), String>, StoreError> {
    if shard.embedding_count() == 0 {
        return Ok(Ok(()));
    }
    let theirs = shard.note(EMBED_APPLIED_NOTE)?;
    let ours = project.note(EMBED_FIT_NOTE)?;
    if theirs.is_some() && theirs == ours {
        return Ok(Ok(()));
    }
    let short = |h: &Option<String>| h.as_deref().map(|h| h[..12.min(h.len())].to_string());
    let apply = format!("`oddity --store {} embed --apply {}`", shard.path().display(), project.path().display());
    Ok(Err(match (short(&theirs), short(&ours)) {
        (_, None) => format!(
            "it holds deep features but the project fitted no projection: run `oddity --store {} embed --fit-only`, then {apply}",
            project.path().display()
        ),
        (None, Some(o)) => {
            format!("its deep features come from its own embed, not the project's projection {o}: run {apply}")
        }
        (Some(t), Some(o)) => {
            format!("its deep features come from projection {t}, not the project's {o}: run {apply}")
        }
    }))
}

/// Copies a shard's deep features (and their schemas) under the project's
/// file ids, in batches (through the store's public methods).
fn copy_embeddings(project: &Store, shard: &Store, files: &HashMap<u32, u32>) -> Result<u64, StoreError> {
    let mut batch: Vec<(crate::store::ObjectKey, Vec<f32>)> = Vec::new();
    let mut n = 0u64;
    for item in shard.iter_embeddings() {
        let (key, values) = item?;
        let Some(&file) = files.get(&key.file) else { continue };
        batch.push((crate::store::ObjectKey { file, ..key }, values));
        n += 1;
        if batch.len() >= 20_000 {
            project.put_embeddings(&batch)?;
            batch.clear();
        }
    }
    project.put_embeddings(&batch)?;
    let surveys: std::collections::BTreeSet<String> = shard.sources()?.into_iter().map(|(_, s)| s.survey).collect();
    for survey in surveys {
        if let Some(schema) = shard.embedding_schema(&survey)? {
            project.put_embedding_schema(&survey, &schema)?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_parse_and_keep_partitions_together() {
        assert_eq!("3/16".parse::<Slice>(), Ok(Slice { index: 3, count: 16 }));
        for bad in ["16/16", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Slice>().is_err(), "{bad}");
        }
        let files: Vec<PathBuf> = [
            "s/hsc/a/healpix=7/001.hdf5",
            "s/sdss/b/healpix=7/001.hdf5",
            "s/hsc/a/healpix=3/001.hdf5",
            "s/sdss/b/healpix=5/001.hdf5",
            "cutouts/x.fits",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let slices: Vec<Vec<PathBuf>> = (0..2).map(|i| slice_files(&files, Slice { index: i, count: 2 })).collect();
        // Partitions 3, 5, 7, then the loose file, dealt in turn.
        assert_eq!(slices[0], vec![files[2].clone(), files[0].clone(), files[1].clone()]);
        assert_eq!(slices[1], vec![files[3].clone(), files[4].clone()]);
        assert!(slice_files(&files, Slice { index: 5, count: 8 }).is_empty());
    }
}
