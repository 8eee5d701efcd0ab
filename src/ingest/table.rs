//! Reading MultimodalUniverse-style HDF5 tables: one dataset per column, first
//! axis = object. Knows which columns are required for which kind of table and
//! reads rows in bounded batches.

use std::ops::Range;
use std::path::Path;

use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use ndarray::{Array2, Array3, Axis, s};

use crate::store::{Prop, SourceKind};

/// A problem with a whole file: it cannot be ingested (or not further).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot open as HDF5: {0}")]
    Open(String),
    #[error("missing required field `{field}` (a {kind} table needs {needs})")]
    MissingField { field: &'static str, kind: &'static str, needs: &'static str },
    #[error(
        "neither `image_array` nor `spectrum_flux` found: not a MultimodalUniverse image or spectrum table (columns: {0})"
    )]
    UnknownTable(String),
    #[error("field `{field}` has shape {shape:?}; expected {expected}")]
    Shape { field: String, shape: Vec<usize>, expected: String },
    #[error("field `{field}` has type {dtype}, expected {expected}")]
    Type { field: String, dtype: String, expected: &'static str },
    #[error("reading `{field}` rows {start}..{end} failed: {why}")]
    Read { field: String, start: usize, end: usize, why: String },
    /// A FITS or image file that cannot be one object: the reason, phrased
    /// for a person (truncated, absurd dimensions, no WCS…).
    #[error("{0}")]
    Invalid(String),
}

/// An opened table with its layout checked.
pub struct Table {
    file: hdf5::File,
    pub kind: SourceKind,
    pub n_rows: usize,
    pub columns: Vec<String>,
    pub array_columns: Vec<String>,
    pub bands: Vec<String>,
    /// (height, width) of images, or (n_pixels, 0) of spectra.
    pub shape: (usize, usize),
    /// image_array has no band axis (N, H, W).
    single_band: bool,
    /// spectrum_lambda is one shared grid (L,) rather than (N, L).
    shared_lambda: bool,
    has: Has,
}

#[derive(Default)]
struct Has {
    psf: bool,
    scale: bool,
    ivar: bool,
    mask: bool,
    z: Option<String>,
    z_err: Option<String>,
}

/// Columns of a batch of rows, as read from the file.
pub struct Batch {
    pub start: usize,
    pub ids: Vec<String>,
    pub ra: Vec<f64>,
    pub dec: Vec<f64>,
    /// Catalogue columns, `props[c][i]` for column c, row i.
    pub props: Vec<Vec<Prop>>,
    pub pixels: Option<PixelBatch>,
    pub spectra: Option<SpectrumBatch>,
}

pub struct PixelBatch {
    /// (rows, bands, h*w)
    pub data: Array3<f32>,
    pub psf: Option<Array2<f32>>,
    pub scale: Option<Array2<f32>>,
}

pub struct SpectrumBatch {
    pub lambda: Array2<f32>,
    pub flux: Array2<f32>,
    pub ivar: Option<Array2<f32>>,
    pub mask: Option<Array2<i32>>,
    pub z: Option<Vec<f32>>,
    pub z_err: Option<Vec<f32>>,
}

const IMAGE_NEEDS: &str = "object_id, ra, dec, image_array";
const SPECTRUM_NEEDS: &str = "object_id, ra, dec, spectrum_flux, spectrum_lambda";
/// Columns handled explicitly, never copied as catalogue properties.
const KNOWN: &[&str] = &[
    "object_id",
    "ra",
    "dec",
    "image_array",
    "image_band",
    "image_psf_fwhm",
    "image_scale",
    "spectrum_lambda",
    "spectrum_flux",
    "spectrum_ivar",
    "spectrum_mask",
];

impl Table {
    pub fn open(path: &Path) -> Result<Table, TableError> {
        let file = open_file(path)?;
        let names = file.member_names().map_err(|e| TableError::Open(clean(&e.to_string())))?;
        let kind = table_kind(&names)?;
        let n_rows = check_positions(&file)?;
        let mut table = Table {
            kind,
            n_rows,
            columns: Vec::new(),
            array_columns: Vec::new(),
            bands: Vec::new(),
            shape: (0, 0),
            single_band: false,
            shared_lambda: false,
            has: Has::default(),
            file: file.clone(),
        };
        match kind {
            SourceKind::Images => table.check_images()?,
            SourceKind::Spectra => table.check_spectra(&names)?,
        }
        table.sort_columns(&names);
        Ok(table)
    }

    /// Checks `image_array` (N, bands, H, W) or (N, H, W) and the optional
    /// per-band columns; records bands and image shape.
    fn check_images(&mut self) -> Result<(), TableError> {
        let (file, n_rows) = (&self.file, self.n_rows);
        let img = dataset(file, "image_array")?;
        let shape = img.shape();
        let n_bands = match shape.len() {
            4 if shape[0] == n_rows && shape[1] > 0 && shape[2] > 0 && shape[3] > 0 => {
                self.shape = (shape[2], shape[3]);
                shape[1]
            }
            3 if shape[0] == n_rows && shape[1] > 0 && shape[2] > 0 => {
                // No band axis: one band, if `image_band` (when
                // present) names one band per object.
                if let Ok(b) = file.dataset("image_band")
                    && let [_, k] = b.shape().as_slice()
                    && *k > 1
                {
                    let expected = format!(
                        "({n_rows}, {k}, {}, {}): `image_band` names {k} bands per object but the images have no band axis",
                        shape[1], shape[2]
                    );
                    return Err(shape_err("image_array", shape, &expected));
                }
                self.single_band = true;
                self.shape = (shape[1], shape[2]);
                1
            }
            _ => {
                return Err(shape_err(
                    "image_array",
                    shape,
                    &format!("({n_rows}, bands, height, width) with {n_rows} rows like `ra`"),
                ));
            }
        };
        check_float("image_array", &img)?;
        self.bands = read_bands(file, n_bands, n_rows)?;
        self.has.psf = optional_2d(file, "image_psf_fwhm", n_rows, n_bands)?;
        self.has.scale = optional_2d(file, "image_scale", n_rows, n_bands)?;
        Ok(())
    }

    /// Checks `spectrum_flux` (N, L) against `spectrum_lambda` (N, L) or
    /// one shared grid (L,), and finds the optional ivar, mask and redshift
    /// columns.
    fn check_spectra(&mut self, names: &[String]) -> Result<(), TableError> {
        let (file, n_rows) = (&self.file, self.n_rows);
        let flux = dataset(file, "spectrum_flux")?;
        let shape = flux.shape();
        if shape.len() != 2 || shape[0] != n_rows || shape[1] == 0 {
            return Err(shape_err("spectrum_flux", shape, &format!("({n_rows}, n_pixels)")));
        }
        check_float("spectrum_flux", &flux)?;
        let n_pix = shape[1];
        self.shape = (n_pix, 0);
        match dataset(file, "spectrum_lambda")?.shape().as_slice() {
            [n, l] if *n == n_rows && *l == n_pix => {}
            [l] if *l == n_pix => self.shared_lambda = true,
            other => {
                return Err(shape_err(
                    "spectrum_lambda",
                    other.to_vec(),
                    &format!("({n_rows}, {n_pix}) or ({n_pix},) like spectrum_flux"),
                ));
            }
        }
        self.has.ivar = optional_2d(file, "spectrum_ivar", n_rows, n_pix)?;
        self.has.mask = optional_2d(file, "spectrum_mask", n_rows, n_pix)?;
        let first_of =
            |candidates: [&str; 3]| candidates.iter().find(|n| names.iter().any(|m| m == *n)).map(|s| s.to_string());
        self.has.z = first_of(["Z", "z", "redshift"]);
        self.has.z_err = first_of(["Z_ERR", "z_err", "redshift_err"]);
        Ok(())
    }

    /// Everything else: 1-D columns become catalogue properties, the rest
    /// stays in the file as array columns.
    fn sort_columns(&mut self, names: &[String]) {
        for name in names {
            if KNOWN.contains(&name.as_str()) {
                continue;
            }
            let Ok(d) = self.file.dataset(name) else { continue };
            let shape = d.shape();
            if shape.len() == 1 && shape[0] == self.n_rows && prop_type(&d).is_some() {
                self.columns.push(name.clone());
            } else if shape.first() == Some(&self.n_rows) {
                self.array_columns.push(name.clone());
            } else {
                tracing::debug!("{name}: shape {shape:?} is not per-object; ignored");
            }
        }
    }

    /// Opens a table for ingest: as [`Table::open`], and (N, H, W) images
    /// must declare their one band (an `image_band` column or `--bands`);
    /// `bands` renames the file's bands.
    pub fn open_for_ingest(path: &Path, bands: Option<&[String]>) -> Result<Table, TableError> {
        let mut table = Table::open(path)?;
        if table.kind != SourceKind::Images {
            return Ok(table);
        }
        if table.single_band && bands.is_none() && table.file.dataset("image_band").is_err() {
            let (h, w) = table.shape;
            return Err(shape_err(
                "image_array",
                vec![table.n_rows, h, w],
                &format!(
                    "({}, bands, {h}, {w}); for single-band images name the band with `--bands NAME` or an `image_band` column of shape ({},) or ({}, 1)",
                    table.n_rows, table.n_rows, table.n_rows
                ),
            ));
        }
        if let Some(b) = bands {
            if b.len() != table.bands.len() {
                return Err(TableError::Invalid(format!(
                    "`image_array` has {} band(s) but --bands names {} ({})",
                    table.bands.len(),
                    b.len(),
                    b.join(",")
                )));
            }
            table.bands = b.to_vec();
        }
        Ok(table)
    }

    /// Reads rows `range` of every column.
    pub fn read(&self, range: Range<usize>) -> Result<Batch, TableError> {
        let (start, end) = (range.start, range.end);
        let rows = Rows { file: &self.file, start, end };
        let read_err = |field: &str, e: hdf5::Error| rows.err(field, e);
        let ds = |n: &str| rows.dataset(n);
        let ids = read_ids(&ds("object_id")?, range.clone()).map_err(|e| read_err("object_id", e))?;
        let ra = ds("ra")?.read_slice_1d::<f64, _>(range.clone()).map_err(|e| read_err("ra", e))?.to_vec();
        let dec = ds("dec")?.read_slice_1d::<f64, _>(range.clone()).map_err(|e| read_err("dec", e))?.to_vec();
        let mut props = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let d = ds(c)?;
            props.push(read_props(&d, range.clone()).map_err(|e| read_err(c, e))?);
        }
        let mut batch = Batch { start, ids, ra, dec, props, pixels: None, spectra: None };
        match self.kind {
            SourceKind::Images => batch.pixels = Some(self.read_images(range)?),
            SourceKind::Spectra => batch.spectra = Some(self.read_spectra(range)?),
        }
        Ok(batch)
    }

    /// Pixels of rows `range`: (rows, bands, height*width), with PSF and
    /// pixel scale when the file has them.
    pub fn read_images(&self, range: Range<usize>) -> Result<PixelBatch, TableError> {
        let (start, end) = (range.start, range.end);
        let rows = Rows { file: &self.file, start, end };
        let read_err = |field: &str, e: hdf5::Error| rows.err(field, e);
        let ds = |n: &str| rows.dataset(n);
        let shape_err =
            |e: ndarray::ShapeError| TableError::Read { field: "image_array".into(), start, end, why: e.to_string() };
        let img = ds("image_array")?;
        let (h, w) = self.shape;
        let n = end - start;
        let data = if self.single_band {
            let a = img
                .read_slice::<f32, _, ndarray::Ix3>(s![start..end, .., ..])
                .map_err(|e| read_err("image_array", e))?;
            a.into_shape_with_order((n, 1, h * w)).map_err(shape_err)?
        } else {
            let a = img
                .read_slice::<f32, _, ndarray::Ix4>(s![start..end, .., .., ..])
                .map_err(|e| read_err("image_array", e))?;
            let b = a.shape()[1];
            a.into_shape_with_order((n, b, h * w)).map_err(shape_err)?
        };
        let psf = if self.has.psf {
            Some(read_2d(&ds("image_psf_fwhm")?, start, end).map_err(|e| read_err("image_psf_fwhm", e))?)
        } else {
            None
        };
        let scale = if self.has.scale {
            Some(read_2d(&ds("image_scale")?, start, end).map_err(|e| read_err("image_scale", e))?)
        } else {
            None
        };
        Ok(PixelBatch { data, psf, scale })
    }

    /// Spectra of rows `range`.
    pub fn read_spectra(&self, range: Range<usize>) -> Result<SpectrumBatch, TableError> {
        let (start, end) = (range.start, range.end);
        let rows = Rows { file: &self.file, start, end };
        let read_err = |field: &str, e: hdf5::Error| rows.err(field, e);
        let ds = |n: &str| rows.dataset(n);
        let n = end - start;
        let flux = read_2d(&ds("spectrum_flux")?, start, end).map_err(|e| read_err("spectrum_flux", e))?;
        let lambda = if self.shared_lambda {
            let grid = ds("spectrum_lambda")?.read_1d::<f32>().map_err(|e| read_err("spectrum_lambda", e))?;
            let grid = grid.insert_axis(Axis(0));
            grid.broadcast((n, self.shape.0)).map(|v| v.to_owned()).ok_or_else(|| TableError::Read {
                field: "spectrum_lambda".into(),
                start,
                end,
                why: "cannot broadcast the shared grid".into(),
            })?
        } else {
            read_2d(&ds("spectrum_lambda")?, start, end).map_err(|e| read_err("spectrum_lambda", e))?
        };
        let ivar = if self.has.ivar {
            Some(read_2d(&ds("spectrum_ivar")?, start, end).map_err(|e| read_err("spectrum_ivar", e))?)
        } else {
            None
        };
        let mask = if self.has.mask {
            let d = ds("spectrum_mask")?;
            let m = match d.dtype().and_then(|t| t.to_descriptor()) {
                Ok(TypeDescriptor::Boolean) => {
                    d.read_slice_2d::<bool, _>(s![start..end, ..]).map(|a| a.mapv(i32::from))
                }
                _ => d.read_slice_2d::<i32, _>(s![start..end, ..]),
            };
            Some(m.map_err(|e| read_err("spectrum_mask", e))?)
        } else {
            None
        };
        let z = match &self.has.z {
            Some(n) => Some(ds(n)?.read_slice_1d::<f32, _>(range.clone()).map_err(|e| read_err(n, e))?.to_vec()),
            None => None,
        };
        let z_err = match &self.has.z_err {
            Some(n) => Some(ds(n)?.read_slice_1d::<f32, _>(range.clone()).map_err(|e| read_err(n, e))?.to_vec()),
            None => None,
        };
        Ok(SpectrumBatch { lambda, flux, ivar, mask, z, z_err })
    }

    /// Bytes of pixel or spectrum data per row, to size batches.
    pub fn row_bytes(&self) -> usize {
        match self.kind {
            SourceKind::Images => 4 * self.bands.len().max(1) * self.shape.0 * self.shape.1,
            SourceKind::Spectra => 4 * 4 * self.shape.0,
        }
        .max(64)
    }
}

/// Rows `start..end` of a file being read: every error names the field and
/// the rows.
struct Rows<'a> {
    file: &'a hdf5::File,
    start: usize,
    end: usize,
}

impl Rows<'_> {
    fn err(&self, field: &str, e: hdf5::Error) -> TableError {
        TableError::Read { field: field.to_string(), start: self.start, end: self.end, why: clean(&e.to_string()) }
    }

    fn dataset(&self, name: &str) -> Result<hdf5::Dataset, TableError> {
        self.file.dataset(name).map_err(|e| self.err(name, e))
    }
}
/// Opens an HDF5 file, saying what to do when another program holds its lock.
fn open_file(path: &Path) -> Result<hdf5::File, TableError> {
    hdf5::File::open(path).map_err(|e| {
        let mut why = clean(&e.to_string());
        if why.contains("unable to lock file") {
            why.push_str(" (another program has it open for writing; wait for it to finish, or set HDF5_USE_FILE_LOCKING=FALSE if the file system cannot lock)");
        }
        TableError::Open(why)
    })
}

/// Which kind of table the member names make, checking that the fields that
/// kind requires are there.
fn table_kind(names: &[String]) -> Result<SourceKind, TableError> {
    let has_name = |n: &str| names.iter().any(|m| m == n);
    let kind = if has_name("image_array") {
        SourceKind::Images
    } else if has_name("spectrum_flux") {
        SourceKind::Spectra
    } else {
        return Err(TableError::UnknownTable(names.join(", ")));
    };
    let (kind_name, needs, required): (_, _, &[&'static str]) = match kind {
        SourceKind::Images => ("image", IMAGE_NEEDS, &["object_id", "ra", "dec"]),
        SourceKind::Spectra => ("spectrum", SPECTRUM_NEEDS, &["object_id", "ra", "dec", "spectrum_lambda"]),
    };
    for field in required {
        if !has_name(field) {
            return Err(TableError::MissingField { field, kind: kind_name, needs });
        }
    }
    Ok(kind)
}

/// Checks that `ra`, `dec` and `object_id` are 1-D columns of one length
/// (the row count, returned) and that ids are strings or integers.
fn check_positions(file: &hdf5::File) -> Result<usize, TableError> {
    let ra = dataset(file, "ra")?;
    let n_rows = ra.shape().first().copied().unwrap_or(0);
    if ra.ndim() != 1 {
        return Err(shape_err("ra", ra.shape(), "(N,)"));
    }
    for n in ["dec", "object_id"] {
        let d = dataset(file, n)?;
        if d.shape() != [n_rows] {
            return Err(shape_err(n, d.shape(), &format!("({n_rows},) like `ra`")));
        }
    }
    check_id_type(&dataset(file, "object_id")?)?;
    Ok(n_rows)
}

/// A dataset the layout checks need, or an error naming it.
fn dataset(file: &hdf5::File, n: &str) -> Result<hdf5::Dataset, TableError> {
    file.dataset(n).map_err(|e| TableError::Open(format!("`{n}`: {}", clean(&e.to_string()))))
}

/// HDF5's error strings carry a stack trace; keep the first meaningful line.
fn clean(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

fn shape_err(field: &str, shape: Vec<usize>, expected: &str) -> TableError {
    TableError::Shape { field: field.to_string(), shape, expected: expected.to_string() }
}

fn descriptor(d: &hdf5::Dataset) -> Option<TypeDescriptor> {
    d.dtype().ok()?.to_descriptor().ok()
}

fn check_float(field: &str, d: &hdf5::Dataset) -> Result<(), TableError> {
    match descriptor(d) {
        Some(TypeDescriptor::Float(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) => Ok(()),
        other => Err(TableError::Type {
            field: field.to_string(),
            dtype: other.map(|t| t.to_string()).unwrap_or_else(|| "unknown".into()),
            expected: "numbers",
        }),
    }
}

fn check_id_type(d: &hdf5::Dataset) -> Result<(), TableError> {
    match descriptor(d) {
        Some(
            TypeDescriptor::Integer(_)
            | TypeDescriptor::Unsigned(_)
            | TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::VarLenUnicode,
        ) => Ok(()),
        other => Err(TableError::Type {
            field: "object_id".into(),
            dtype: other.map(|t| t.to_string()).unwrap_or_else(|| "unknown".into()),
            expected: "integers or strings",
        }),
    }
}

/// Longest fixed-length string we read; HDF5 converts shorter ones on read.
const MAX_STR: usize = 256;

fn read_strings(d: &hdf5::Dataset, range: Range<usize>) -> hdf5::Result<Vec<String>> {
    let trim = |s: &str| s.trim_end_matches('\0').trim().to_string();
    Ok(match descriptor(d) {
        Some(TypeDescriptor::FixedAscii(_)) => {
            d.read_slice_1d::<FixedAscii<MAX_STR>, _>(range)?.iter().map(|s| trim(s.as_str())).collect()
        }
        Some(TypeDescriptor::FixedUnicode(_)) => {
            d.read_slice_1d::<FixedUnicode<MAX_STR>, _>(range)?.iter().map(|s| trim(s.as_str())).collect()
        }
        Some(TypeDescriptor::VarLenAscii) => {
            d.read_slice_1d::<VarLenAscii, _>(range)?.iter().map(|s| trim(s.as_str())).collect()
        }
        _ => d.read_slice_1d::<VarLenUnicode, _>(range)?.iter().map(|s| trim(s.as_str())).collect(),
    })
}

fn read_ids(d: &hdf5::Dataset, range: Range<usize>) -> hdf5::Result<Vec<String>> {
    match descriptor(d) {
        Some(TypeDescriptor::Integer(_)) => {
            Ok(d.read_slice_1d::<i64, _>(range)?.iter().map(|v| v.to_string()).collect())
        }
        Some(TypeDescriptor::Unsigned(_)) => {
            Ok(d.read_slice_1d::<u64, _>(range)?.iter().map(|v| v.to_string()).collect())
        }
        _ => read_strings(d, range),
    }
}

fn prop_type(d: &hdf5::Dataset) -> Option<TypeDescriptor> {
    match descriptor(d)? {
        t @ (TypeDescriptor::Integer(_)
        | TypeDescriptor::Unsigned(_)
        | TypeDescriptor::Float(_)
        | TypeDescriptor::Boolean
        | TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_)
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::VarLenUnicode) => Some(t),
        _ => None,
    }
}

fn read_props(d: &hdf5::Dataset, range: Range<usize>) -> hdf5::Result<Vec<Prop>> {
    Ok(match prop_type(d) {
        Some(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) => {
            d.read_slice_1d::<i64, _>(range)?.iter().map(|&v| Prop::Int(v)).collect()
        }
        Some(TypeDescriptor::Boolean) => {
            d.read_slice_1d::<bool, _>(range)?.iter().map(|&v| Prop::Int(v as i64)).collect()
        }
        Some(TypeDescriptor::Float(_)) => d
            .read_slice_1d::<f64, _>(range)?
            .iter()
            .map(|&v| if v.is_finite() { Prop::Float(v) } else { Prop::Missing })
            .collect(),
        _ => read_strings(d, range)?.into_iter().map(Prop::Text).collect(),
    })
}

fn read_2d<T: hdf5::H5Type>(d: &hdf5::Dataset, start: usize, end: usize) -> hdf5::Result<Array2<T>> {
    d.read_slice_2d::<T, _>(s![start..end, ..])
}

/// An optional (N, k) column: present with the right shape, absent, or an error.
fn optional_2d(file: &hdf5::File, name: &str, n_rows: usize, k: usize) -> Result<bool, TableError> {
    let Ok(d) = file.dataset(name) else { return Ok(false) };
    if d.shape() != [n_rows, k] {
        return Err(shape_err(name, d.shape(), &format!("({n_rows}, {k})")));
    }
    Ok(true)
}

/// Band names from the first row of `image_band`, or positional names.
fn read_bands(file: &hdf5::File, n_bands: usize, n_rows: usize) -> Result<Vec<String>, TableError> {
    let fallback: Vec<String> = (0..n_bands).map(|b| format!("band{b}")).collect();
    let Ok(d) = file.dataset("image_band") else { return Ok(fallback) };
    if n_rows == 0 {
        return Ok(fallback);
    }
    let names = match d.shape().as_slice() {
        // One band per object, as a plain column.
        [n] if *n == n_rows && n_bands == 1 => {
            let first = read_strings(&d, 0..1).map_err(|e| TableError::Read {
                field: "image_band".into(),
                start: 0,
                end: 1,
                why: clean(&e.to_string()),
            })?;
            return Ok(first);
        }
        [n, b] if *n == n_rows && *b == n_bands => {
            let row = match descriptor(&d) {
                Some(TypeDescriptor::FixedAscii(_)) => d
                    .read_slice_1d::<FixedAscii<MAX_STR>, _>(s![0, ..])
                    .map(|a| a.iter().map(|s| s.as_str().trim().to_string()).collect::<Vec<_>>()),
                Some(TypeDescriptor::FixedUnicode(_)) => d
                    .read_slice_1d::<FixedUnicode<MAX_STR>, _>(s![0, ..])
                    .map(|a| a.iter().map(|s| s.as_str().trim().to_string()).collect::<Vec<_>>()),
                Some(TypeDescriptor::VarLenAscii) => d
                    .read_slice_1d::<VarLenAscii, _>(s![0, ..])
                    .map(|a| a.iter().map(|s| s.as_str().trim().to_string()).collect::<Vec<_>>()),
                _ => d
                    .read_slice_1d::<VarLenUnicode, _>(s![0, ..])
                    .map(|a| a.iter().map(|s| s.as_str().trim().to_string()).collect::<Vec<_>>()),
            };
            row.map_err(|e| TableError::Read {
                field: "image_band".into(),
                start: 0,
                end: 1,
                why: clean(&e.to_string()),
            })?
        }
        other => return Err(shape_err("image_band", other.to_vec(), &format!("({n_rows}, {n_bands})"))),
    };
    Ok(names)
}
