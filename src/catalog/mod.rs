//! The science catalogue `oddity export --format catalog` writes: one row per
//! object (image objects with their matched spectrum; spectra matched to no
//! image on rows of their own), streamed from the store in ranking order and
//! written as Parquet, a FITS binary table or CSV.
//!
//! Columns (units in brackets; missing values are null in Parquet, NaN or
//! the TNULL value in FITS, empty in CSV):
//!
//! * `object_id`, `survey`, `kind` (image / spectrum), `ra`, `dec` [deg];
//! * `spec_id`, `spec_survey`, `sep_arcsec` [arcsec], `z`, `z_err`: the
//!   matched spectrum (a spectrum row names itself, separation 0);
//! * every feature of the store's feature schemas, by name (`g-r` colours
//!   [mag], morphology, `ew_*`, `bpt_*`: see the README);
//! * per line `ha`, `nii_6585`, `hb`, `oiii_5008`, `oii_3728`, `sii_6718`,
//!   `sii_6733`: `_flux`, `_flux_err` [1e-17 erg/s/cm² for SDSS: the
//!   spectrum's flux unit × Å], `_ew` [Å, rest frame, positive = emission],
//!   `_snr`;
//! * `bpt_x` = log \[NII\]/Hα, `bpt_y` = log \[OIII\]/Hβ, `bpt_class`, and
//!   `line_problem` (why lines or a class are missing);
//! * `score`, `rank` (1 = most anomalous), `score_method` (current version);
//! * labels: `relevance` (0–5), `verdict`, `tags` (`;`-separated),
//!   `favourite`, `n_users`, `disagreement`, `target_relevance`,
//!   `interesting` (what the ranking learns).

mod fits;
mod parquet;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use crate::features::spectral::LineMeasurement;
use crate::features::spectral_values;
use crate::store::{LabelBook, LineRecord, ObjectKey, ObjectLabels, SourceKind, Store, StoreError, Verdict};

/// Column value types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    F64,
    F32,
    Bool,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub unit: &'static str,
    /// Text columns: the width a FITS table gives them.
    pub width: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(Option<i64>),
    F64(f64),
    F32(f32),
    Bool(Option<bool>),
}

/// The flux unit of SDSS-like spectra times Å.
pub const FLUX_UNIT: &str = "1e-17 erg/s/cm2";
/// Lines in the catalogue, (column stem, index in `SpectralLines` order).
pub const LINES: [&str; 7] = ["ha", "nii_6585", "hb", "oiii_5008", "oii_3728", "sii_6718", "sii_6733"];

/// Where rows go.
pub trait Sink {
    fn write_rows(&mut self, rows: &[Vec<Value>]) -> std::io::Result<()>;
    /// Completes the file; returns rows written.
    fn finish(self: Box<Self>) -> std::io::Result<u64>;
}

/// Output format, from the file name (`.parquet`, `.fits`/`.fit`, else CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Fits,
    Csv,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Format, String> {
        match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
            Some("parquet" | "pq") => Ok(Format::Parquet),
            Some("fits" | "fit") => Ok(Format::Fits),
            Some("csv") => Ok(Format::Csv),
            _ => Err(format!("{}: catalogue files end in .parquet, .fits or .csv", path.display())),
        }
    }
}

/// The catalogue's columns for this store.
pub fn columns(store: &Store) -> Result<Vec<Column>, StoreError> {
    let text = |name: &str, width| Column { name: name.into(), kind: Kind::Text, unit: "", width };
    let col = |name: &str, kind, unit| Column { name: name.into(), kind, unit, width: 0 };
    // Text widths for FITS: ids and surveys as long as the store's longest.
    let (mut id_w, mut survey_w) = (8, 8);
    let mut features: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for (_, source) in store.sources()? {
        survey_w = survey_w.max(source.survey.len());
        if let Some(schema) = store.feature_schema(&source.survey)? {
            for n in schema.names {
                if seen.insert(n.clone()) {
                    features.push(n);
                }
            }
        }
    }
    for name in crate::features::SPECTRAL_FEATURE_NAMES {
        if seen.insert(name.to_string()) {
            features.push(name.to_string());
        }
    }
    for item in store.iter_objects() {
        id_w = id_w.max(item?.1.id.len());
    }
    let mut cols = vec![
        text("object_id", id_w),
        text("survey", survey_w),
        text("kind", 8),
        col("ra", Kind::F64, "deg"),
        col("dec", Kind::F64, "deg"),
        text("spec_id", id_w),
        text("spec_survey", survey_w),
        col("sep_arcsec", Kind::F64, "arcsec"),
        col("z", Kind::F32, ""),
        col("z_err", Kind::F32, ""),
    ];
    for f in &features {
        let unit = if f.contains('-') || f == "mag_asinh" {
            "mag"
        } else if f.starts_with("ew_") {
            "Angstrom"
        } else {
            ""
        };
        cols.push(Column { name: f.clone(), kind: Kind::F32, unit, width: 0 });
    }
    for l in LINES {
        cols.push(col(&format!("{l}_flux"), Kind::F32, FLUX_UNIT));
        cols.push(col(&format!("{l}_flux_err"), Kind::F32, FLUX_UNIT));
        cols.push(col(&format!("{l}_ew"), Kind::F32, "Angstrom"));
        cols.push(col(&format!("{l}_snr"), Kind::F32, ""));
    }
    cols.extend([
        text("bpt_class", 14),
        text("line_problem", 96),
        col("score", Kind::F32, ""),
        col("rank", Kind::Int, ""),
        text("score_method", 32),
        col("relevance", Kind::Int, ""),
        text("verdict", 8),
        text("tags", 96),
        col("favourite", Kind::Bool, ""),
        col("n_users", Kind::Int, ""),
        col("disagreement", Kind::Bool, ""),
        col("target_relevance", Kind::Int, ""),
        col("interesting", Kind::Bool, ""),
    ]);
    Ok(cols)
}

/// Opens a sink for `format` at `path` (CSV may go to stdout with `None`).
pub fn sink(format: Format, path: Option<&Path>, cols: &[Column]) -> std::io::Result<Box<dyn Sink>> {
    match (format, path) {
        (Format::Parquet, Some(p)) => Ok(Box::new(parquet::ParquetSink::create(p, cols)?)),
        (Format::Fits, Some(p)) => Ok(Box::new(fits::FitsSink::create(p, cols)?)),
        (Format::Csv, Some(p)) => {
            Ok(Box::new(CsvSink::new(Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)), cols)?))
        }
        (Format::Csv, None) => Ok(Box::new(CsvSink::new(Box::new(std::io::stdout().lock()), cols)?)),
        (_, None) => Err(std::io::Error::other("Parquet and FITS catalogues need --out FILE")),
    }
}

/// What an export wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub rows: u64,
    pub scored: u64,
}

const BATCH: usize = 8192;

/// Streams every object into `sink`: the current ranking first (so `rank`
/// is the row number), then unscored objects in store order. Spectra
/// matched to an image are on the image's row.
pub fn write(store: &Store, cols: &[Column], mut sink: Box<dyn Sink>) -> Result<Written, CatalogError> {
    let book = LabelBook::from_events(store.label_events()?);
    let method = store.current_scores()?.map(|v| v.method).unwrap_or_default();
    let mut features: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (_, s) in store.sources()? {
        if let Some(schema) = store.feature_schema(&s.survey)? {
            features.insert(s.survey.clone(), schema.names);
        }
    }
    let survey_of: std::collections::HashMap<u32, String> =
        store.sources()?.into_iter().map(|(id, s)| (id, s.survey)).collect();
    let ctx = RowContext { store, cols, book: &book, method: &method, features: &features, survey_of: &survey_of };
    let mut batch = Vec::with_capacity(BATCH);
    let mut written = Written::default();
    let flush = |batch: &mut Vec<Vec<Value>>, sink: &mut Box<dyn Sink>| -> Result<(), CatalogError> {
        sink.write_rows(batch)?;
        batch.clear();
        Ok(())
    };
    for (rank, item) in store.ranked()?.enumerate() {
        let (key, score) = item?;
        if let Some(row) = ctx.row(key, Some((score, rank as i64 + 1)))? {
            batch.push(row);
            written.scored += 1;
        }
        if batch.len() == BATCH {
            flush(&mut batch, &mut sink)?;
        }
    }
    for item in store.iter_objects() {
        let (key, obj) = item?;
        if store.score_of(key)?.is_some() || (obj.kind == SourceKind::Spectra && store.image_match(key)?.is_some()) {
            continue;
        }
        if let Some(row) = ctx.row(key, None)? {
            batch.push(row);
        }
        if batch.len() == BATCH {
            flush(&mut batch, &mut sink)?;
        }
    }
    flush(&mut batch, &mut sink)?;
    written.rows = sink.finish()?;
    Ok(written)
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

struct RowContext<'a> {
    store: &'a Store,
    cols: &'a [Column],
    book: &'a LabelBook,
    method: &'a str,
    features: &'a std::collections::HashMap<String, Vec<String>>,
    survey_of: &'a std::collections::HashMap<u32, String>,
}

/// An export row's values by column name, before they are put in column order.
type Named<'n> = std::collections::HashMap<&'n str, Value>;

impl<'a> RowContext<'a> {
    fn row(&self, key: ObjectKey, score: Option<(f32, i64)>) -> Result<Option<Vec<Value>>, StoreError> {
        let Some(obj) = self.store.object(key)? else { return Ok(None) };
        let mut named: Named<'a> = Default::default();
        named.insert("object_id", Value::Text(obj.id.clone()));
        named.insert("survey", Value::Text(obj.survey.clone()));
        named.insert("ra", Value::F64(obj.ra));
        named.insert("dec", Value::F64(obj.dec));
        named.insert("kind", Value::Text(if obj.kind == SourceKind::Images { "image" } else { "spectrum" }.into()));
        let lines = self.spectrum_values(key, obj.kind, &mut named)?;
        self.feature_values(key, obj.kind, lines.as_ref(), &mut named)?;
        let line_values = lines.as_ref().map(|rec| line_values(rec, &mut named)).unwrap_or_default();
        if let Some((s, rank)) = score {
            named.insert("score", Value::F32(s));
            named.insert("rank", Value::Int(Some(rank)));
            named.insert("score_method", Value::Text(self.method.to_string()));
        }
        if let Some(l) = self.book.get(key) {
            label_values(l, &mut named);
        }
        Ok(Some(self.arrange(named, &line_values)))
    }

    /// The spectrum's columns: this object's own, or the matched one's.
    /// Returns the spectrum's line record, if it has one.
    fn spectrum_values(
        &self,
        key: ObjectKey,
        kind: SourceKind,
        named: &mut Named<'a>,
    ) -> Result<Option<LineRecord>, StoreError> {
        let store = self.store;
        let (spec_key, sep) = match kind {
            SourceKind::Spectra => (key, 0.0),
            SourceKind::Images => match store.spectrum_match(key)? {
                Some(m) => (m.other, m.sep_arcsec),
                None => return Ok(None),
            },
        };
        if let Some(spec) = store.object(spec_key)? {
            named.insert("spec_id", Value::Text(spec.id));
            named.insert("spec_survey", Value::Text(spec.survey));
        }
        named.insert("sep_arcsec", Value::F64(sep));
        let r = store.spectrum(spec_key)?;
        named.insert("z", Value::F32(r.as_ref().and_then(|r| r.z).unwrap_or(f32::NAN)));
        named.insert("z_err", Value::F32(r.as_ref().and_then(|r| r.z_err).unwrap_or(f32::NAN)));
        store.lines_of(spec_key)
    }

    /// Features: the stored vector (images), the spectral part (spectra).
    fn feature_values(
        &self,
        key: ObjectKey,
        kind: SourceKind,
        lines: Option<&LineRecord>,
        named: &mut Named<'a>,
    ) -> Result<(), StoreError> {
        let features: &'a std::collections::HashMap<String, Vec<String>> = self.features;
        match kind {
            SourceKind::Images => {
                if let (Some(names), Some(f)) =
                    (self.survey_of.get(&key.file).and_then(|s| features.get(s)), self.store.features_of(key)?)
                {
                    for (n, v) in names.iter().zip(f.values) {
                        named.insert(n.as_str(), Value::F32(v));
                    }
                }
            }
            SourceKind::Spectra => {
                let values = spectral_values(lines);
                for (n, v) in crate::features::SPECTRAL_FEATURE_NAMES.iter().zip(values) {
                    named.insert(*n, Value::F32(v));
                }
            }
        }
        Ok(())
    }

    /// The values in column order; a line measurement's column takes its
    /// value from `line_values`, a column nobody filled is empty.
    fn arrange(&self, mut named: Named<'a>, line_values: &[(String, Value)]) -> Vec<Value> {
        self.cols
            .iter()
            .map(|c| {
                if let Some((_, v)) = line_values.iter().find(|(n, _)| *n == c.name) {
                    return v.clone();
                }
                named.remove(c.name.as_str()).unwrap_or(match c.kind {
                    Kind::Text => Value::Text(String::new()),
                    Kind::Int => Value::Int(None),
                    Kind::F64 => Value::F64(f64::NAN),
                    Kind::F32 => Value::F32(f32::NAN),
                    Kind::Bool => Value::Bool(None),
                })
            })
            .collect()
    }
}

/// Flux, error, EW and S/N of each measured line (returned: their column
/// names are made here), and the BPT point, class and problem (into `named`).
fn line_values(rec: &LineRecord, named: &mut Named<'_>) -> Vec<(String, Value)> {
    let mut values = Vec::new();
    let l = &rec.lines;
    let all: [Option<LineMeasurement>; 7] = [l.ha, l.nii_6585, l.hb, l.oiii_5008, l.oii_3728, l.sii_6718, l.sii_6733];
    for (stem, m) in LINES.iter().zip(all) {
        if let Some(m) = m {
            values.push((format!("{stem}_flux"), Value::F32(m.flux)));
            values.push((format!("{stem}_flux_err"), Value::F32(m.flux_err)));
            values.push((format!("{stem}_ew"), Value::F32(m.ew)));
            values.push((format!("{stem}_snr"), Value::F32(m.snr)));
        }
    }
    if let Some((x, y)) = rec.bpt_xy {
        named.insert("bpt_x", Value::F32(x as f32));
        named.insert("bpt_y", Value::F32(y as f32));
    }
    named.insert("bpt_class", Value::Text(rec.bpt.as_str().to_string()));
    if let Some((_, detail)) = crate::features::spectral::why_unclassifiable(rec) {
        named.insert("line_problem", Value::Text(detail));
    }
    values
}

fn label_values(l: &ObjectLabels, named: &mut Named<'_>) {
    named.insert("relevance", Value::Int(l.relevance.map(i64::from)));
    let verdict = match l.verdict {
        Some(Verdict::Anomaly) => "anomaly",
        Some(Verdict::Normal) => "normal",
        Some(Verdict::Unsure) => "unsure",
        None => "",
    };
    named.insert("verdict", Value::Text(verdict.into()));
    named.insert("tags", Value::Text(l.tags.iter().cloned().collect::<Vec<_>>().join(";")));
    named.insert("favourite", Value::Bool(Some(l.favourite)));
    named.insert("n_users", Value::Int(Some(l.by_user.len() as i64)));
    named.insert("disagreement", Value::Bool(Some(l.disagreement())));
    named.insert("target_relevance", Value::Int(l.target().map(|t| i64::from(t.relevance))));
    named.insert("interesting", Value::Bool(l.target().map(|t| t.interesting)));
}

/// CSV (RFC 4180, quoting by the csv crate): a header of column names, NaN
/// and nulls empty.
struct CsvSink {
    out: csv::Writer<Box<dyn Write>>,
    rows: u64,
}

impl CsvSink {
    fn new(out: Box<dyn Write>, cols: &[Column]) -> std::io::Result<CsvSink> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(cols.iter().map(|c| c.name.as_str()))?;
        Ok(CsvSink { out, rows: 0 })
    }
}

impl Sink for CsvSink {
    fn write_rows(&mut self, rows: &[Vec<Value>]) -> std::io::Result<()> {
        let mut fields: Vec<String> = Vec::new();
        for row in rows {
            fields.clear();
            fields.extend(row.iter().map(|v| match v {
                Value::Text(s) => s.clone(),
                Value::Int(Some(n)) => n.to_string(),
                Value::F64(x) if x.is_finite() => format!("{x}"),
                Value::F32(x) if x.is_finite() => format!("{x}"),
                Value::Bool(Some(b)) => if *b { "true" } else { "false" }.to_string(),
                _ => String::new(),
            }));
            self.out.write_record(&fields)?;
            self.rows += 1;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> std::io::Result<u64> {
        match self.out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r?,
        }
        Ok(self.rows)
    }
}
