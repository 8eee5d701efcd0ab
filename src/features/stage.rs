//! The `features` stage: streams the store's source files, reads pixels and
//! spectra from them in bounded batches, computes features in parallel and
//! writes them back. Resumable per file: a file whose features are done for
//! the current version is skipped.

use rayon::prelude::*;

use super::morphology::{MORPHOLOGY_VERSION, feature_names_with_unit, morphology, sizes_to_arcsec};
use super::spectral::{BptClass, SpectralLines, bpt_class, measure_lines};
use crate::ingest::{FileError, SourceReader, open_source};
use crate::progress::Progress;
use crate::store::{FeatureRecord, FeatureSchema, LineRecord, ObjectKey, SourceFile, SourceKind, Store, StoreError};

/// Version of the whole feature vector (morphology + spectral part).
pub const FEATURES_VERSION: u32 = MORPHOLOGY_VERSION * 100 + SPECTRAL_FEATURES_VERSION;
const SPECTRAL_FEATURES_VERSION: u32 = 1;
const BATCH_BYTES: usize = 32 << 20;

/// Features an image object gets from its matched spectrum (NaN without one).
pub const SPECTRAL_FEATURE_NAMES: &[&str] =
    &["spec_z", "ew_ha", "ew_nii_6585", "ew_hb", "ew_oiii_5008", "ew_oii_3728", "ew_sii", "bpt_x", "bpt_y", "bpt_agn"];

/// A spectrum's feature vector (named by [`SPECTRAL_FEATURE_NAMES`]) from its
/// line measurements; NaN where a value is undefined, all NaN without lines.
pub fn spectral_values(rec: Option<&LineRecord>) -> [f32; 10] {
    let Some(rec) = rec else { return [f32::NAN; 10] };
    let ew = |m: &Option<super::spectral::LineMeasurement>| m.map(|m| m.ew).unwrap_or(f32::NAN);
    let l: &SpectralLines = &rec.lines;
    let sii = match (l.sii_6718, l.sii_6733) {
        (Some(a), Some(b)) => a.ew + b.ew,
        _ => f32::NAN,
    };
    let (x, y) = rec.bpt_xy.map(|(x, y)| (x as f32, y as f32)).unwrap_or((f32::NAN, f32::NAN));
    let agn = match rec.bpt {
        BptClass::Seyfert | BptClass::Liner => 1.0,
        BptClass::Unclassifiable => f32::NAN,
        _ => 0.0,
    };
    [
        rec.z.unwrap_or(f32::NAN),
        ew(&l.ha),
        ew(&l.nii_6585),
        ew(&l.hb),
        ew(&l.oiii_5008),
        ew(&l.oii_3728),
        sii,
        x,
        y,
        agn,
    ]
}

/// The band used for shapes: i for HSC-like band sets, else r, else the middle.
pub fn reference_band(bands: &[String]) -> usize {
    let find = |want: &str| {
        bands.iter().position(|b| {
            let b = b.to_ascii_lowercase();
            b == want || b.ends_with(&format!("-{want}")) || b.ends_with(&format!("_{want}"))
        })
    };
    find("i").or_else(|| find("r")).unwrap_or(bands.len() / 2)
}

/// Feature names for a survey's image objects; sizes in arcsec when its
/// cutouts have a pixel scale, else in pixels (the name says which).
pub fn schema_for(bands: &[String], arcsec: bool) -> FeatureSchema {
    let mut names = feature_names_with_unit(bands, arcsec);
    names.extend(SPECTRAL_FEATURE_NAMES.iter().map(|s| s.to_string()));
    FeatureSchema { version: FEATURES_VERSION, names }
}

#[derive(Debug, Default)]
pub struct FeatureReport {
    pub files_done: usize,
    pub files_skipped: usize,
    pub images: u64,
    pub spectra: u64,
    pub bpt_counts: Vec<(BptClass, u64)>,
    /// Files that could not be read: (path, problem).
    pub problems: Vec<(String, String)>,
}

/// Computes line measurements for every spectrum, then features for every
/// image object (with its matched spectrum's lines).
pub fn compute(store: &Store, progress: &dyn Progress) -> Result<FeatureReport, StoreError> {
    let sources = store.sources()?;
    let mut report = FeatureReport::default();
    let todo: Vec<&(u32, SourceFile)> = sources
        .iter()
        .filter(|(id, s)| s.rows_done > 0 && store.features_done(*id).ok().flatten() != Some(FEATURES_VERSION))
        .collect();
    report.files_skipped = sources.len() - todo.len();
    progress.set_total(todo.iter().map(|(_, s)| s.rows_done).sum());

    // Spectra first: image features include their matched spectrum's lines.
    for kind in [SourceKind::Spectra, SourceKind::Images] {
        for (id, source) in todo.iter().filter(|(_, s)| s.kind == kind) {
            let outcome = match kind {
                SourceKind::Spectra => spectra_file(store, *id, source, progress).map(|n| report.spectra += n),
                SourceKind::Images => images_file(store, *id, source, progress).map(|n| report.images += n),
            };
            match outcome {
                Ok(()) => {
                    store.set_features_done(*id, FEATURES_VERSION)?;
                    report.files_done += 1;
                }
                Err(FileError::Table(e)) => report.problems.push((source.path.clone(), e.to_string())),
                Err(FileError::Store(e)) => return Err(e),
            }
        }
    }
    let mut counts: std::collections::BTreeMap<&'static str, (BptClass, u64)> = Default::default();
    for item in store.iter_lines() {
        let (_, rec) = item?;
        counts.entry(rec.bpt.as_str()).or_insert((rec.bpt, 0)).1 += 1;
    }
    report.bpt_counts = counts.into_values().collect();
    store.flush()?;
    Ok(report)
}

fn open(source: &SourceFile) -> Result<Box<dyn SourceReader>, FileError> {
    Ok(open_source(source)?)
}

fn batch_rows(table: &dyn SourceReader) -> usize {
    (BATCH_BYTES / table.row_bytes()).clamp(16, 8192)
}

fn spectra_file(store: &Store, id: u32, source: &SourceFile, progress: &dyn Progress) -> Result<u64, FileError> {
    let table = open(source)?;
    let n = source.rows_done as usize;
    let step = batch_rows(table.as_ref());
    let mut done = 0;
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        let sp = table.read_spectra(start..end)?;
        let records: Vec<(ObjectKey, LineRecord)> = (start..end)
            .into_par_iter()
            .map(|row| {
                let i = row - start;
                let lambda = sp.lambda.row(i).to_vec();
                let flux = sp.flux.row(i).to_vec();
                let ivar = sp.ivar.as_ref().map(|a| a.row(i).to_vec()).unwrap_or_else(|| vec![1.0; flux.len()]);
                let mask = sp.mask.as_ref().map(|m| m.row(i).to_vec());
                let z = sp.z.as_ref().map(|z| z[i]).filter(|z| z.is_finite());
                let lines = measure_lines(&lambda, &flux, &ivar, mask.as_deref(), z.unwrap_or(f32::NAN) as f64);
                let (bpt, bpt_xy) = if z.is_some() { bpt_class(&lines) } else { (BptClass::Unclassifiable, None) };
                (ObjectKey { file: id, row: row as u32 }, LineRecord { lines, bpt, bpt_xy, z })
            })
            .collect();
        // Rows rejected at ingest have no object: keep only stored ones.
        let records: Vec<_> = records.into_iter().filter(|(k, _)| store.object(*k).ok().flatten().is_some()).collect();
        done += records.len() as u64;
        store.put_lines(&records)?;
        progress.advance((end - start) as u64);
    }
    Ok(done)
}

fn images_file(store: &Store, id: u32, source: &SourceFile, progress: &dyn Progress) -> Result<u64, FileError> {
    let table = open(source)?;
    let reference = reference_band(&source.bands);
    let n = source.rows_done as usize;
    // Sizes in arcsec when the survey's cutouts know their pixel scale: the
    // survey's schema decides once; a file without scales in an arcsec
    // survey gets NaN sizes (imputed and flagged) rather than pixels.
    let scale_of = |row: usize| -> Result<Option<f32>, StoreError> {
        let image = store.image(ObjectKey { file: id, row: row as u32 })?;
        Ok(image
            .and_then(|i| i.pixel_scale.get(reference).or(i.pixel_scale.first()).copied())
            .filter(|s| s.is_finite() && *s > 0.0))
    };
    let stored = store.feature_schema(&source.survey)?;
    let arcsec = match &stored {
        Some(s) if s.version == FEATURES_VERSION => s.names.iter().any(|n| n == "r50_arcsec"),
        _ => scale_of(0)?.is_some(),
    };
    let schema = schema_for(&source.bands, arcsec);
    match stored {
        Some(s) if s == schema => {}
        _ => store.put_feature_schema(&source.survey, &schema)?,
    }
    let (h, w) = (source.shape.0 as usize, source.shape.1 as usize);
    let step = batch_rows(table.as_ref());
    let mut done = 0;
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        let px = table.read_images(start..end)?;
        let nb = px.data.shape()[1];
        // Matched spectra's lines, looked up before the parallel part.
        let mut spectral = Vec::with_capacity(end - start);
        let mut keep = Vec::with_capacity(end - start);
        let mut scales = Vec::with_capacity(end - start);
        for row in start..end {
            let key = ObjectKey { file: id, row: row as u32 };
            keep.push(store.object(key)?.is_some());
            scales.push(if arcsec { scale_of(row)? } else { None });
            let rec = match store.spectrum_match(key)? {
                Some(m) => store.lines_of(m.other)?,
                None => None,
            };
            spectral.push(spectral_values(rec.as_ref()));
        }
        let records: Vec<(ObjectKey, FeatureRecord)> = (start..end)
            .into_par_iter()
            .filter(|row| keep[row - start])
            .map(|row| {
                let i = row - start;
                let image = px.data.index_axis(ndarray::Axis(0), i);
                let image = image.as_slice().map(|s| s.to_vec()).unwrap_or_else(|| image.iter().copied().collect());
                let mut values = morphology(&image, nb, h, w, reference);
                if arcsec {
                    sizes_to_arcsec(&mut values, scales[i]);
                }
                values.extend_from_slice(&spectral[i]);
                (ObjectKey { file: id, row: row as u32 }, FeatureRecord { values })
            })
            .collect();
        done += records.len() as u64;
        store.put_features(&records)?;
        progress.advance((end - start) as u64);
    }
    Ok(done)
}
