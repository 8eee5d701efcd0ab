//! Ingest of survey files into the store.
//!
//! Files are recognised by their content (and their name, so that a corrupt
//! `.fits` is reported rather than skipped): MultimodalUniverse HDF5 tables
//! (`<survey>/<sample>/healpix=<N>/*.hdf5`, many objects a file), and
//! single-object files: SDSS `spec`/`spec-lite` FITS spectra, FITS cutouts
//! (2-D, band cube, or one band per extension) and PNG/JPEG/TIFF cutouts
//! placed on the sky by a catalogue CSV. Objects, their sky positions,
//! catalogue columns and references to their pixels/spectra (file + row; a
//! single-object file's row is 0) go into the store; the pixels stay in the
//! files. Ingest is idempotent and resumable: a file's record says how many
//! rows are in, object keys are (file, row), and a re-run skips complete
//! files and resumes partial ones.
//!
//! A bad file (corrupt, truncated, wrong shapes, missing fields, no position)
//! or a bad row (NaN coordinates, duplicate id) is reported on one line with
//! file, object and problem; everything else goes in.

mod catalog;
mod fits;
mod image;
mod reader;
mod table;

pub use catalog::{Catalog, CatalogError};
pub use reader::{Format, SourceReader, open_source};
pub use table::{PixelBatch, SpectrumBatch, Table, TableError};

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use ndarray::Axis;

use crate::progress::Progress;
use crate::store::{
    ImageRef, IngestedRow, ObjectKey, ObjectRecord, Payload, SourceFile, SourceKind, SpectrumRef, Store, StoreError,
};
use table::Batch;

/// Target bytes of pixel data per batch: bounds memory whatever the file size.
/// Kept under glibc's dynamic mmap threshold so batch buffers are reused
/// instead of being mapped and page-faulted afresh each time.
const BATCH_BYTES: usize = 8 << 20;
/// Single-object files read in parallel at a time (bounds memory: a few
/// cutouts each), and written between two flushes of the store.
const SINGLES_PARALLEL: usize = 32;
const SINGLES_PER_FLUSH: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Survey name for files outside the MMU layout (default: parent folder).
    pub survey: Option<String>,
    /// Stop after this many batches (for tests of interrupted ingest).
    pub max_batches: Option<usize>,
    /// Band names, overriding the files' own (FITS FILTER/BAND keywords, HDF5
    /// `image_band`, image channels); declares the band of (N, H, W) tables.
    pub bands: Option<Vec<String>>,
    /// Catalogue CSV (file, object_id, ra, dec) placing single-object files.
    pub catalog: Option<PathBuf>,
    /// Arcsec per pixel for cutouts whose file and catalogue give none.
    pub pixel_scale: Option<f32>,
}

/// What single-object readers need besides the file.
pub(crate) struct Context<'a> {
    pub catalog: Option<&'a Catalog>,
    pub bands: Option<&'a [String]>,
    pub pixel_scale: Option<f32>,
}

/// A single-object file read for ingest: its layout and its one row.
pub(crate) struct Single {
    pub kind: SourceKind,
    pub columns: Vec<String>,
    pub bands: Vec<String>,
    /// (height, width) of a cutout, (n_pixels, 0) of a spectrum.
    pub shape: (usize, usize),
    pub batch: Batch,
}

/// One problem met during ingest, already phrased for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    /// The object's id and row when the problem is a single object's.
    pub object: Option<(String, u64)>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One line whatever a decoder's message holds.
        let message = self.message.split_whitespace().collect::<Vec<_>>().join(" ");
        match &self.object {
            Some((id, row)) => write!(f, "{}: object {id} (row {row}): {message}", self.file.display()),
            None => write!(f, "{}: {message}", self.file.display()),
        }
    }
}

#[derive(Debug, Default)]
pub struct IngestReport {
    pub files_seen: usize,
    pub files_ingested: usize,
    pub files_skipped: usize,
    pub files_failed: usize,
    pub objects_added: u64,
    pub rows_rejected: u64,
    pub problems: Vec<Problem>,
}

impl IngestReport {
    pub fn ok(&self) -> bool {
        self.files_failed == 0 && self.rows_rejected == 0
    }
}

/// Finds survey files under `paths`, in a stable order. Files are taken as
/// given; folders are walked for files whose content or name is HDF5, FITS,
/// PNG, JPEG or TIFF (other files, such as a catalogue CSV, are left alone).
pub fn discover(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = files.len();
            for entry in walkdir::WalkDir::new(p).follow_links(true).sort_by_file_name() {
                match entry {
                    Ok(e) if e.file_type().is_file() && is_survey_file(e.path()) => files.push(e.into_path()),
                    Ok(_) => {}
                    Err(e) => problems.push(Problem {
                        file: e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone()),
                        object: None,
                        message: format!("cannot read directory entry: {e}"),
                    }),
                }
            }
            if files.len() == before {
                problems.push(Problem {
                    file: p.clone(),
                    object: None,
                    message: "no survey files here (HDF5, FITS, PNG, JPEG or TIFF)".into(),
                });
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            problems.push(Problem { file: p.clone(), object: None, message: "no such file or directory".into() });
        }
    }
    files.dedup();
    (files, problems)
}

fn is_survey_file(p: &Path) -> bool {
    Format::by_extension(p).is_some() || Format::sniff(p).is_some()
}

/// Survey, sample and HEALPix partition from an MMU path
/// (`…/<survey>/<sample>/healpix=<N>/file.hdf5`).
pub fn layout(path: &Path) -> (String, String, Option<u64>) {
    let comps: Vec<String> = path
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    if let Some(i) = comps.iter().rposition(|c| c.starts_with("healpix=")) {
        let partition = comps[i]["healpix=".len()..].parse().ok();
        let sample = if i >= 1 { comps[i - 1].clone() } else { String::new() };
        let survey = if i >= 2 { comps[i - 2].clone() } else { sample.clone() };
        return (survey, sample, partition);
    }
    let parent = comps.last().cloned().unwrap_or_else(|| "survey".into());
    (parent, String::new(), None)
}

/// The files to ingest: those under `paths`, or the catalogue's own files
/// when no path is given. Nothing here touches a store, so a command can
/// say "nothing to ingest" before creating one.
pub fn find_inputs(paths: &[PathBuf], catalog: Option<&Catalog>) -> (Vec<PathBuf>, Vec<Problem>) {
    match catalog {
        Some(cat) if paths.is_empty() => {
            let mut files = Vec::new();
            let mut problems = Vec::new();
            for f in cat.files() {
                if f.is_file() {
                    files.push(f);
                } else {
                    problems.push(Problem {
                        file: f,
                        object: None,
                        message: format!("listed in the catalogue {} but not found", cat.path.display()),
                    });
                }
            }
            (files, problems)
        }
        _ => discover(paths),
    }
}

/// Ingests every survey file under `paths` (or the catalogue's files) into
/// `store`.
pub fn ingest(
    store: &Store,
    paths: &[PathBuf],
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, StoreError> {
    let catalog = match &opts.catalog {
        Some(path) => match Catalog::read(path) {
            Ok(c) => Some(c),
            Err(e) => {
                let problem = Problem { file: e.path.clone(), object: None, message: e.why.clone() };
                return Ok(IngestReport { files_failed: 1, problems: vec![problem], ..Default::default() });
            }
        },
        None => None,
    };
    let (files, problems) = find_inputs(paths, catalog.as_ref());
    ingest_files(store, files, problems, catalog.as_ref(), opts, progress)
}

/// Ingests `files` (found by [`find_inputs`]) into `store`; `problems` are
/// those met finding them.
pub fn ingest_files(
    store: &Store,
    files: Vec<PathBuf>,
    mut problems: Vec<Problem>,
    catalog: Option<&Catalog>,
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, StoreError> {
    let mut report = IngestReport { files_seen: files.len(), ..Default::default() };
    report.files_failed += problems.len();

    let (tables, singles) = sort_by_format(files, &mut report, &mut problems);

    // Open and check every table first: bad layouts are reported before any
    // long read starts, and the progress bar knows the total.
    let mut plans = Vec::new();
    let mut total = singles.len() as u64;
    for path in tables {
        match plan_file(store, &path, opts) {
            Ok(Plan::Skip) => report.files_skipped += 1,
            Ok(Plan::Ingest(p)) => {
                total += (p.table.n_rows - p.resume_from) as u64;
                plans.push(p);
            }
            Err(PlanError::Table(message)) => {
                report.files_failed += 1;
                problems.push(Problem { file: path, object: None, message });
            }
            Err(PlanError::Store(e)) => return Err(e),
        }
    }
    progress.set_total(total);

    let mut batches_left = opts.max_batches;
    for plan in plans {
        let path = plan.path.clone();
        match ingest_file(store, *plan, progress, &mut batches_left, &mut problems) {
            Ok(FileOutcome { added, rejected, complete }) => {
                report.objects_added += added;
                report.rows_rejected += rejected;
                if complete {
                    report.files_ingested += 1;
                }
            }
            Err(FileError::Table(e)) => {
                report.files_failed += 1;
                problems.push(Problem { file: path, object: None, message: e.to_string() });
            }
            Err(FileError::Store(e)) => return Err(e),
        }
        if batches_left == Some(0) {
            break;
        }
    }
    if batches_left != Some(0) {
        let ctx = Context { catalog, bands: opts.bands.as_deref(), pixel_scale: opts.pixel_scale };
        ingest_singles(store, &singles, &ctx, opts, progress, &mut report, &mut problems)?;
    }
    store.flush()?;
    for p in &problems {
        progress.message(&format!("error: {p}"));
    }
    report.problems = problems;
    Ok(report)
}

/// Sorts by what the content says: tables go through the batched HDF5
/// path, single-object files through the parallel one.
fn sort_by_format(
    files: Vec<PathBuf>,
    report: &mut IngestReport,
    problems: &mut Vec<Problem>,
) -> (Vec<PathBuf>, Vec<(PathBuf, Format)>) {
    let mut tables = Vec::new();
    let mut singles = Vec::new();
    for path in files {
        // By content; a file whose content says nothing goes to the reader
        // its name promises, which says what is wrong with it.
        match Format::sniff(&path).or_else(|| Format::by_extension(&path)) {
            Some(Format::Hdf5) => tables.push(path),
            Some(f) => singles.push((path, f)),
            None => {
                let message = "not an HDF5, FITS, PNG, JPEG or TIFF file (by its content)".to_string();
                report.files_failed += 1;
                problems.push(Problem { file: path, object: None, message });
            }
        }
    }
    (tables, singles)
}

/// A file's identity in the store: canonical path, size, modification time.
struct Stat {
    key: String,
    size: u64,
    mtime: i64,
}

fn stat(path: &Path) -> Result<Stat, String> {
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("cannot resolve path: {e}"))?;
    let meta = std::fs::metadata(&canonical).map_err(|e| format!("cannot stat: {e}"))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok(Stat { key: canonical.to_string_lossy().into_owned(), size: meta.len(), mtime })
}

/// Single-object files: checked against the store in order, read and
/// summarised in parallel a few dozen at a time, written in order, the store
/// flushed every thousand files. Each file's record is written after its
/// object, so a crash leaves every recorded file complete.
fn ingest_singles(
    store: &Store,
    files: &[(PathBuf, Format)],
    ctx: &Context,
    opts: &IngestOptions,
    progress: &dyn Progress,
    report: &mut IngestReport,
    problems: &mut Vec<Problem>,
) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let mut since_flush = 0;
    for chunk in files.chunks(SINGLES_PARALLEL) {
        let todo = singles_to_read(store, chunk, report, problems)?;
        let read: Vec<Result<Single, TableError>> =
            todo.par_iter().map(|(_, format, st, _)| read_single(Path::new(&st.key), *format, ctx)).collect();
        for ((path, _, st, existing), single) in todo.into_iter().zip(read) {
            let single = match single {
                Ok(s) => s,
                Err(e) => {
                    report.files_failed += 1;
                    problems.push(Problem { file: path.clone(), object: None, message: e.to_string() });
                    continue;
                }
            };
            let (mut survey, sample, partition) = layout(Path::new(&st.key));
            if let Some(s) = &opts.survey {
                survey = s.clone();
            }
            let mut record = SourceFile {
                path: st.key,
                survey,
                sample,
                partition,
                kind: single.kind,
                size: st.size,
                mtime: st.mtime,
                n_rows: 1,
                rows_done: 0,
                n_objects: 0,
                n_rejected: 0,
                complete: false,
                columns: single.columns,
                array_columns: Vec::new(),
                bands: single.bands,
                shape: (single.shape.0 as u32, single.shape.1 as u32),
            };
            let id = match existing {
                Some((id, _)) => {
                    store.put_source(id, &record)?;
                    id
                }
                None => store.add_source(&record)?,
            };
            let (good, bad) = rows_of(store, id, &record, path, single.batch, problems)?;
            store.write_batch(&good)?;
            record.rows_done = 1;
            record.n_objects = good.len() as u64;
            record.n_rejected = bad;
            record.complete = true;
            store.put_source(id, &record)?;
            report.objects_added += good.len() as u64;
            report.rows_rejected += bad;
            report.files_ingested += 1;
        }
        progress.advance(chunk.len() as u64);
        since_flush += chunk.len();
        if since_flush >= SINGLES_PER_FLUSH {
            store.flush()?;
            since_flush = 0;
        }
    }
    Ok(())
}

/// A single-object file to read: its path as given, format, identity, and
/// its store record if an earlier run began it.
type SingleTodo<'a> = (&'a PathBuf, Format, Stat, Option<(u32, SourceFile)>);

/// Which files of `chunk` need reading (sequential: store look-ups); the
/// rest are counted as skipped or failed.
fn singles_to_read<'a>(
    store: &Store,
    chunk: &'a [(PathBuf, Format)],
    report: &mut IngestReport,
    problems: &mut Vec<Problem>,
) -> Result<Vec<SingleTodo<'a>>, StoreError> {
    let mut todo = Vec::with_capacity(chunk.len());
    for (path, format) in chunk {
        let st = match stat(path) {
            Ok(s) => s,
            Err(message) => {
                report.files_failed += 1;
                problems.push(Problem { file: path.clone(), object: None, message });
                continue;
            }
        };
        let existing = match store.source_id(&st.key)? {
            Some(id) => store.source(id)?.map(|s| (id, s)),
            None => None,
        };
        if let Some((_, s)) = &existing {
            // A rejected object is read again: its catalogue row may be fixed.
            if s.complete && s.size == st.size && s.mtime == st.mtime && s.n_rejected == 0 {
                report.files_skipped += 1;
                continue;
            }
        }
        todo.push((path, *format, st, existing));
    }
    Ok(todo)
}

/// Reads one single-object file; a decoder's panic on a hostile file is
/// that file's problem.
fn read_single(path: &Path, format: Format, ctx: &Context) -> Result<Single, TableError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match format {
        Format::Fits => fits::read_object(path, ctx),
        Format::Image => image::read_object(path, ctx),
        Format::Hdf5 => unreachable!("tables take the batched path: {}", path.display()),
    }))
    .unwrap_or_else(|_| Err(TableError::Invalid("the decoder failed on this file (corrupt?)".into())))
}

struct FilePlan {
    path: PathBuf,
    id: u32,
    record: SourceFile,
    table: Table,
    resume_from: usize,
}

enum Plan {
    Skip,
    Ingest(Box<FilePlan>),
}

enum PlanError {
    Table(String),
    Store(StoreError),
}

impl From<StoreError> for PlanError {
    fn from(e: StoreError) -> Self {
        PlanError::Store(e)
    }
}

fn plan_file(store: &Store, path: &Path, opts: &IngestOptions) -> Result<Plan, PlanError> {
    let Stat { key, size, mtime } = stat(path).map_err(PlanError::Table)?;
    let canonical = PathBuf::from(&key);
    let existing = match store.source_id(&key)? {
        Some(id) => store.source(id)?.map(|s| (id, s)),
        None => None,
    };
    let changed = |s: &SourceFile| s.size != size || s.mtime != mtime;
    if let Some((_, s)) = &existing
        && s.complete
        && !changed(s)
    {
        return Ok(Plan::Skip);
    }
    let table =
        Table::open_for_ingest(&canonical, opts.bands.as_deref()).map_err(|e| PlanError::Table(e.to_string()))?;
    let (mut survey, sample, partition) = layout(&canonical);
    if partition.is_none()
        && let Some(s) = &opts.survey
    {
        survey = s.clone();
    }
    let fresh = SourceFile {
        path: key,
        survey,
        sample,
        partition,
        kind: table.kind,
        size,
        mtime,
        n_rows: table.n_rows as u64,
        rows_done: 0,
        n_objects: 0,
        n_rejected: 0,
        complete: false,
        columns: table.columns.clone(),
        array_columns: table.array_columns.clone(),
        bands: table.bands.clone(),
        shape: (table.shape.0 as u32, table.shape.1 as u32),
    };
    let (id, record, resume_from) = match existing {
        // Same file, interrupted: carry on from the last batch that went in.
        Some((id, s)) if !changed(&s) && s.columns == fresh.columns && s.n_rows == fresh.n_rows => {
            let from = s.rows_done as usize;
            (id, s, from)
        }
        // Changed since: ingest again under the same file id (same keys).
        Some((id, _)) => {
            tracing::warn!("{}: changed since it was ingested; ingesting again", path.display());
            store.put_source(id, &fresh)?;
            (id, fresh, 0)
        }
        None => {
            let id = store.add_source(&fresh)?;
            (id, fresh, 0)
        }
    };
    Ok(Plan::Ingest(Box::new(FilePlan { path: path.to_owned(), id, record, table, resume_from })))
}

struct FileOutcome {
    added: u64,
    rejected: u64,
    complete: bool,
}

/// A stage's failure on one file: the file's own problem (reported, the
/// rest goes on) or the store's (which stops the stage).
pub(crate) enum FileError {
    Table(TableError),
    Store(StoreError),
}

impl From<StoreError> for FileError {
    fn from(e: StoreError) -> Self {
        FileError::Store(e)
    }
}

impl From<TableError> for FileError {
    fn from(e: TableError) -> Self {
        FileError::Table(e)
    }
}

fn ingest_file(
    store: &Store,
    plan: FilePlan,
    progress: &dyn Progress,
    batches_left: &mut Option<usize>,
    problems: &mut Vec<Problem>,
) -> Result<FileOutcome, FileError> {
    let FilePlan { path, id, mut record, table, resume_from } = plan;
    let n = table.n_rows;
    let rows_per_batch = (BATCH_BYTES / table.row_bytes()).clamp(16, 8192);
    let mut outcome = FileOutcome { added: 0, rejected: 0, complete: false };

    // A reader thread keeps HDF5 busy while this thread checks rows and
    // writes the store; the channel's bound keeps memory at two batches.
    let starts: Vec<usize> = (resume_from..n).step_by(rows_per_batch).collect();
    let budget = batches_left.map(|b| b.min(starts.len())).unwrap_or(starts.len());
    let starts = &starts[..budget];
    let result: Result<(), FileError> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Result<Batch, TableError>>(1);
        let table = &table;
        scope.spawn(move || {
            for &s in starts {
                let batch = table.read(s..(s + rows_per_batch).min(n));
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        for batch in rx {
            let batch = batch.map_err(FileError::Table)?;
            let rows = batch.ids.len() as u64;
            let (good, bad) = rows_of(store, id, &record, &path, batch, problems)?;
            store.write_batch(&good)?;
            record.rows_done += rows;
            record.n_objects += good.len() as u64;
            record.n_rejected += bad;
            outcome.added += good.len() as u64;
            outcome.rejected += bad;
            record.complete = record.rows_done >= n as u64;
            // Written after its batch: after a crash the store comes back as
            // it was at its last flush (a prefix of the writes), so a record
            // that says "rows done" never outruns the rows themselves. Flushed once per file, not per batch.
            store.put_source(id, &record)?;
            progress.advance(rows);
            if let Some(b) = batches_left.as_mut() {
                *b = b.saturating_sub(1);
            }
        }
        Ok(())
    });
    result?;
    store.flush()?;
    if n == 0 && !record.complete {
        record.complete = true;
        store.put_source(id, &record)?;
        store.flush()?;
    }
    outcome.complete = record.complete;
    Ok(outcome)
}

/// Turns a batch into store rows; rejects rows with bad coordinates or ids
/// that another file already holds.
fn rows_of(
    store: &Store,
    file_id: u32,
    record: &SourceFile,
    path: &Path,
    batch: Batch,
    problems: &mut Vec<Problem>,
) -> Result<(Vec<IngestedRow>, u64), StoreError> {
    let n = batch.ids.len();
    let mut rows = Vec::with_capacity(n);
    let mut rejected = 0;
    let payloads = payloads(&batch, record);
    for (i, payload) in payloads.into_iter().enumerate() {
        let row = (batch.start + i) as u64;
        let id = &batch.ids[i];
        let (ra, dec) = (batch.ra[i], batch.dec[i]);
        let mut reject = |message: String| {
            problems.push(Problem { file: path.to_owned(), object: Some((id.clone(), row)), message });
            rejected += 1;
        };
        if id.is_empty() {
            reject("empty object_id".into());
            continue;
        }
        if !ra.is_finite() || !dec.is_finite() {
            reject(format!("coordinates are not finite (ra={ra}, dec={dec}); object skipped"));
            continue;
        }
        if !(-90.0..=90.0).contains(&dec) {
            reject(format!("dec={dec} is outside [-90, 90]; object skipped"));
            continue;
        }
        let key = ObjectKey { file: file_id, row: row as u32 };
        if let Some(other) = store.find_id(&record.survey, id)?
            && other != key
        {
            let where_ = store.source(other.file)?.map(|s| s.path).unwrap_or_default();
            reject(format!("duplicate id: already ingested from {where_} row {}; object skipped", other.row));
            continue;
        }
        let object = ObjectRecord {
            survey: record.survey.clone(),
            id: id.clone(),
            ra: ra.rem_euclid(360.0),
            dec,
            kind: record.kind,
            props: batch.props.iter().map(|col| col[i].clone()).collect(),
        };
        rows.push(IngestedRow { key, object, payload });
    }
    Ok((rows, rejected))
}

/// Per-row pixel or spectrum summaries, computed in parallel.
fn payloads(batch: &Batch, record: &SourceFile) -> Vec<Payload> {
    use rayon::prelude::*;
    if let Some(px) = &batch.pixels {
        let nb = px.data.shape()[1];
        return (0..px.data.shape()[0])
            .into_par_iter()
            .map(|i| {
                let obj = px.data.index_axis(Axis(0), i);
                // One pass: bad pixels and each band's total flux.
                let mut bad = 0usize;
                let mut band_flux = Vec::with_capacity(nb);
                for band in obj.axis_iter(Axis(0)) {
                    let mut sum = 0.0f64;
                    for &v in band.iter() {
                        if v.is_finite() {
                            sum += v as f64;
                        } else {
                            bad += 1;
                        }
                    }
                    band_flux.push(sum as f32);
                }
                let row = |a: &Option<ndarray::Array2<f32>>| a.as_ref().map(|a| a.row(i).to_vec()).unwrap_or_default();
                Payload::Image(ImageRef {
                    psf_fwhm: row(&px.psf),
                    pixel_scale: row(&px.scale),
                    bad_fraction: bad as f32 / obj.len().max(1) as f32,
                    band_flux,
                })
            })
            .collect();
    }
    let sp = batch.spectra.as_ref().expect("a batch holds pixels or spectra");
    let _ = record;
    (0..batch.ids.len())
        .into_par_iter()
        .map(|i| {
            let flux = sp.flux.row(i);
            let lambda = sp.lambda.row(i);
            let mut lo = f32::INFINITY;
            let mut hi = f32::NEG_INFINITY;
            let mut snr = Vec::with_capacity(flux.len());
            for j in 0..flux.len() {
                let ivar = sp.ivar.as_ref().map(|a| a[[i, j]]).unwrap_or(1.0);
                let masked = sp.mask.as_ref().map(|m| m[[i, j]] != 0).unwrap_or(false);
                let (f, l) = (flux[j], lambda[j]);
                let usable = ivar > 0.0 && ivar.is_finite() && f.is_finite() && l.is_finite(); // NaN: false
                if masked || !usable {
                    continue;
                }
                lo = lo.min(l);
                hi = hi.max(l);
                snr.push(f.abs() * ivar.sqrt());
            }
            let n_good = snr.len() as u32;
            let z = sp.z.as_ref().map(|z| z[i]).filter(|z| z.is_finite());
            let z_err = sp.z_err.as_ref().map(|z| z[i]).filter(|z| z.is_finite());
            Payload::Spectrum(SpectrumRef {
                z,
                z_err,
                lambda_min: if n_good > 0 { lo } else { f32::NAN },
                lambda_max: if n_good > 0 { hi } else { f32::NAN },
                n_good,
                median_snr: median(&mut snr),
            })
        })
        .collect()
}

/// Median of finite values (reorders `v`); NaN when empty.
fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    *m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_reads_mmu_paths() {
        let p = Path::new("/data/hsc/pdr3_dud_22.5/healpix=1104/001-of-001.hdf5");
        assert_eq!(layout(p), ("hsc".into(), "pdr3_dud_22.5".into(), Some(1104)));
        let p = Path::new("/data/cutouts/x.hdf5");
        assert_eq!(layout(p), ("cutouts".into(), String::new(), None));
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&mut []).is_nan());
    }
}
