//! The `features` stage: streams the store's source files, reads pixels and
//! spectra from them in bounded batches, computes features in parallel and
//! writes them back. Resumable per file: a file whose features are done for
//! the current version is skipped.

use rayon::prelude::*;

use super::morphology::{
    MORPHOLOGY_VERSION, colour_pairs, feature_names_with_unit, morphology_with_colours, sizes_to_arcsec,
};
use super::spectral::{BptClass, SpectralLines, bpt_class, measure_lines};
use crate::ingest::{FileError, SourceReader, open_source};
use crate::progress::Progress;
use crate::store::{
    BptDensity, FeatureRecord, FeatureSchema, LineRecord, LineSummary, ObjectKey, SourceFile, SourceKind, Store,
    StoreError,
};

/// Version of the whole feature vector (morphology + spectral part).
pub const FEATURES_VERSION: u32 = MORPHOLOGY_VERSION * 100 + SPECTRAL_FEATURES_VERSION;
/// 2: padding trimmed, stellar Balmer absorption fitted, problems stored.
const SPECTRAL_FEATURES_VERSION: u32 = 2;
const BATCH_BYTES: usize = 32 << 20;

/// Features an image object gets from its matched spectrum (NaN without
/// one), and a spectrum-only object's whole feature vector. In order:
///
/// | name | meaning |
/// |---|---|
/// | `spec_z` | catalogue redshift |
/// | `ew_ha`, `ew_nii_6585`, `ew_hb`, `ew_oiii_5008`, `ew_oii_3728` | rest-frame emission EW, Å (positive = emission) |
/// | `ew_sii` | \[SII\]6718 + 6733 EW, Å |
/// | `bpt_x`, `bpt_y` | log \[NII\]/Hα, log \[OIII\]/Hβ (classifiable spectra only) |
/// | `bpt_agn` | 1 Seyfert/LINER, 0 star-forming/composite, NaN unclassifiable |
///
/// NaN where a line was not measured (masked, out of range, or the whole
/// spectrum has a [`super::spectral::LineProblem`]).
pub const SPECTRAL_FEATURE_NAMES: &[&str] =
    &["spec_z", "ew_ha", "ew_nii_6585", "ew_hb", "ew_oiii_5008", "ew_oii_3728", "ew_sii", "bpt_x", "bpt_y", "bpt_agn"];

/// THE feature vector of a spectrum, from its stored [`LineRecord`]
/// (all NaN for `None`), named by [`SPECTRAL_FEATURE_NAMES`]. Image objects
/// append it to their morphology (their matched spectrum's); spectrum-only
/// objects are scored on it alone.
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
    /// Spectra whose lines could not be measured, by reason.
    pub line_problems: Vec<(String, u64)>,
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
    let summary = summarise_lines(store)?;
    report.bpt_counts = summary.by_class.clone();
    report.line_problems = summary.problems.clone();
    store.put_line_summary(&summary)?;
    store.flush()?;
    Ok(report)
}

/// Bounds and bins of the stored BPT density (x = log [NII]/Hα, y = log
/// [OIII]/Hβ): the region real galaxies populate, 0.05 dex bins.
pub const BPT_X: (f64, f64) = (-2.0, 1.0);
pub const BPT_Y: (f64, f64) = (-1.5, 1.5);
const BPT_BINS: (u32, u32) = (60, 60);

/// Walks the stored line records once: class counts, problems and
/// unclassifiable reasons, and the BPT density.
pub fn summarise_lines(store: &Store) -> Result<LineSummary, StoreError> {
    use std::collections::{BTreeMap, HashMap};
    let mut by_class: BTreeMap<&'static str, (BptClass, u64)> = Default::default();
    let mut problems: HashMap<String, u64> = HashMap::new();
    let mut unclassifiable: HashMap<String, u64> = HashMap::new();
    let mut density = BptDensity::new(BPT_X, BPT_Y, BPT_BINS.0, BPT_BINS.1);
    let mut n = 0;
    for item in store.iter_lines() {
        let (_, rec) = item?;
        n += 1;
        by_class.entry(rec.bpt.as_str()).or_insert((rec.bpt, 0)).1 += 1;
        if let Some(p) = &rec.problem {
            *problems.entry(p.kind().to_string()).or_default() += 1;
        }
        if let Some((kind, _)) = crate::features::spectral::why_unclassifiable(&rec) {
            *unclassifiable.entry(kind).or_default() += 1;
        }
        if let Some((x, y)) = rec.bpt_xy {
            density.add(x, y);
        }
    }
    let sorted = |m: HashMap<String, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    Ok(LineSummary {
        n_spectra: n,
        by_class: by_class.into_values().collect(),
        problems: sorted(problems),
        unclassifiable: sorted(unclassifiable),
        density,
    })
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
                let (lines, problem) = match measure_lines(&lambda, &flux, &ivar, mask.as_deref(), z.map(f64::from)) {
                    Ok(lines) => (lines, None),
                    Err(p) => (SpectralLines::default(), Some(p)),
                };
                let (bpt, bpt_xy) = bpt_class(&lines);
                (ObjectKey { file: id, row: row as u32 }, LineRecord { lines, bpt, bpt_xy, z, problem })
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
    let colours: Vec<(usize, usize)> = colour_pairs(&source.bands).into_iter().map(|(b, r, _)| (b, r)).collect();
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
                let mut values = morphology_with_colours(&image, nb, h, w, reference, &colours);
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
