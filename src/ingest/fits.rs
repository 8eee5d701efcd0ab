//! FITS files, one object each: SDSS `spec`/`spec-lite` spectra and image
//! cutouts (a 2-D single band, a 3-D band cube, or one band per extension).
//!
//! Headers are parsed by `fitsrs` (CDS) and positions come from its WCS
//! (the `wcs` crate: TAN and every other common projection, SIP included).
//! Data units are read here with one `read_exact_at` each and converted from
//! big-endian in bulk: fitsrs's data iterators yield one value at a time and
//! keep binary-table column layouts crate-private, and a cutout or a
//! spectrum is a few hundred kilobytes that one read brings in.
//!
//! Every size comes from the header, so each is checked against the file's
//! length before anything is read or allocated: a truncated file or an absurd
//! `NAXISn` is an error naming the HDU, never a huge allocation or a panic.

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use fitsrs::card::Value;
use fitsrs::hdu::header::ValueMap;
use fitsrs::{Fits, HDU};
use ndarray::{Array2, Array3};

use super::reader::SourceReader;
use super::table::{Batch, PixelBatch, SpectrumBatch, TableError};
use super::{Context, Single};
use crate::sky::{Radec, separation_deg};
use crate::store::{Prop, SourceKind};

/// A cutout larger than this a side is not a cutout (a mosaic, or a corrupt
/// header): refused before anything is allocated.
pub const MAX_SIDE: u64 = 8192;
pub const MAX_BANDS: u64 = 64;
/// HDUs looked at in one file.
const MAX_HDUS: usize = 64;
/// Largest spectrum table read (rows).
const MAX_SPECTRUM_ROWS: u64 = 1 << 20;
/// Extensions that hold something other than a band's pixels.
const NOT_BANDS: &[&str] = &[
    "MASK", "VARIANCE", "VAR", "IVAR", "INVVAR", "WEIGHT", "WHT", "ERR", "ERROR", "SIGMA", "PSF", "DQ", "FLAGS",
    "BADPIX",
];

fn invalid(why: impl Into<String>) -> TableError {
    TableError::Invalid(why.into())
}

/// One HDU: its parsed header and where its data lie.
struct Hdu {
    index: usize,
    header: ValueMap,
    kind: HduKind,
    /// The fitsrs image header, kept for the WCS.
    image: Option<fitsrs::fits::HDU<fitsrs::hdu::header::extension::image::Image>>,
    offset: u64,
    len: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum HduKind {
    /// BITPIX and NAXISn (NAXIS1 first).
    Image {
        bitpix: i64,
        naxis: Vec<u64>,
    },
    BinTable {
        row_len: u64,
        rows: u64,
    },
    Other,
}

/// A FITS file's HDUs, headers parsed and sizes checked.
pub(crate) struct FitsFile {
    file: File,
    hdus: Vec<Hdu>,
}

impl FitsFile {
    pub(crate) fn open(path: &Path) -> Result<FitsFile, TableError> {
        let io = |e: std::io::Error| invalid(format!("cannot read: {e}"));
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let reader = BufReader::with_capacity(2880 * 4, file.try_clone().map_err(io)?);
        // fitsrs is not written against hostile input (it multiplies NAXISn
        // unchecked and has a few `unreachable!`s): a panic in it is the
        // file's problem, reported like any other.
        let hdus = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_hdus(reader, file_len)))
            .unwrap_or_else(|_| Err(invalid("malformed FITS header (the parser gave up)")))?;
        Ok(FitsFile { file, hdus })
    }

    fn read(&self, hdu: &Hdu, range: Range<u64>) -> Result<Vec<u8>, TableError> {
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        self.file.read_exact_at(&mut buf, hdu.offset + range.start).map_err(|e| TableError::Read {
            field: format!("HDU {}", hdu.index),
            start: 0,
            end: 1,
            why: e.to_string(),
        })?;
        Ok(buf)
    }

    /// What the file holds: a spectrum table or image planes.
    pub(crate) fn kind(&self) -> Result<SourceKind, TableError> {
        if self.spectrum_hdu().is_some() {
            Ok(SourceKind::Spectra)
        } else if !self.band_hdus().is_empty() {
            Ok(SourceKind::Images)
        } else {
            Err(invalid(
                "neither an image HDU (NAXIS >= 2) nor a spectrum table (columns loglam or wavelength, and flux)",
            ))
        }
    }

    fn spectrum_hdu(&self) -> Option<(&Hdu, Table)> {
        self.hdus.iter().filter(|h| matches!(h.kind, HduKind::BinTable { .. })).find_map(|h| {
            let t = Table::of(h).ok()?;
            (t.col("flux").is_some()
                && (t.col("loglam").is_some() || t.col("wavelength").is_some() || t.col("lambda").is_some()))
            .then_some((h, t))
        })
    }

    /// The HDUs holding band pixels: the first cube alone, or every 2-D image
    /// extension that is not a mask/variance plane.
    fn band_hdus(&self) -> Vec<&Hdu> {
        let science = |h: &&Hdu| {
            let name = kw_str(&h.header, "EXTNAME").unwrap_or_default().to_ascii_uppercase();
            !NOT_BANDS.contains(&name.as_str())
        };
        let images: Vec<&Hdu> = self
            .hdus
            .iter()
            .filter(|h| matches!(&h.kind, HduKind::Image { naxis, .. } if naxis.len() >= 2 && h.len > 0))
            .filter(science)
            .collect();
        match images.first() {
            Some(h) if matches!(&h.kind, HduKind::Image { naxis, .. } if planes(naxis) > 1) => vec![*h],
            _ => images
                .into_iter()
                .filter(|h| matches!(&h.kind, HduKind::Image { naxis, .. } if planes(naxis) == 1))
                .collect(),
        }
    }

    /// Pixels, band names, shape, and WCS-derived position/scale of a cutout.
    fn cutout(&self, bands_override: Option<&[String]>) -> Result<Cutout, TableError> {
        let hdus = self.band_hdus();
        let first = *hdus.first().ok_or_else(|| invalid("no image HDU with pixels"))?;
        let HduKind::Image { naxis, .. } = &first.kind else { unreachable!("band HDUs are images") };
        let (w, h) = (naxis[0] as usize, naxis[1] as usize);
        let mut data = Vec::new();
        let mut names = Vec::new();
        for hdu in &hdus {
            let HduKind::Image { naxis, bitpix } = &hdu.kind else { continue };
            if (naxis[0] as usize, naxis[1] as usize) != (w, h) {
                return Err(invalid(format!(
                    "HDU {} is {}x{} pixels but HDU {} is {w}x{h}: bands of one cutout must have one size",
                    hdu.index, naxis[0], naxis[1], first.index
                )));
            }
            let raw = self.read(hdu, 0..hdu.len)?;
            data.extend(to_f32(&raw, *bitpix, &hdu.header));
            let n = planes(naxis) as usize;
            if n > 1 {
                names.extend(cube_band_names(&hdu.header, n));
            } else {
                names.push(band_name(&hdu.header).unwrap_or_else(|| format!("band{}", names.len())));
            }
        }
        if let Some(over) = bands_override {
            if over.len() != names.len() {
                return Err(invalid(format!(
                    "has {} band(s) but --bands names {} ({})",
                    names.len(),
                    over.len(),
                    over.join(",")
                )));
            }
            names = over.to_vec();
        }
        let (position, scale) = match &first.image {
            Some(img) => wcs_centre(img, w, h),
            None => (None, None),
        };
        let psf = hdus
            .iter()
            .map(|h| kw_f64(&h.header, "PSF_FWHM").or_else(|| kw_f64(&h.header, "SEEING")))
            .collect::<Vec<_>>();
        let psf = if psf.iter().all(Option::is_some) && names.len() == hdus.len() {
            Some(psf.into_iter().map(|p| p.unwrap_or(f64::NAN) as f32).collect())
        } else {
            None
        };
        Ok(Cutout { data, bands: names, shape: (h, w), position, scale, psf })
    }

    /// Wavelengths (Å), flux, ivar, mask and catalogue values of a spectrum.
    fn spectrum(&self) -> Result<Spectrum, TableError> {
        let (hdu, table) = self.spectrum_hdu().ok_or_else(|| invalid("no spectrum table"))?;
        if table.rows > MAX_SPECTRUM_ROWS {
            return Err(invalid(format!("HDU {}: {} rows is not a spectrum", hdu.index, table.rows)));
        }
        let raw = self.read(hdu, 0..table.row_len * table.rows)?;
        let col = |names: &[&str]| names.iter().find_map(|n| table.col(n));
        let flux = table.floats(&raw, col(&["flux"]).expect("checked in spectrum_hdu"));
        let lambda = match col(&["loglam"]) {
            Some(c) => table.floats(&raw, c).iter().map(|l| 10f32.powf(*l)).collect(),
            None => table.floats(&raw, col(&["wavelength", "lambda"]).expect("checked in spectrum_hdu")),
        };
        let ivar = col(&["ivar"]).map(|c| table.floats(&raw, c));
        let mask = col(&["and_mask", "mask"]).map(|c| table.floats(&raw, c).iter().map(|&v| v as i32).collect());
        // The object's catalogue row: SDSS's second table (specobj / spAll).
        let primary = &self.hdus[0].header;
        let mut meta = Vec::new();
        if let Some(h) = self
            .hdus
            .iter()
            .filter(|h| h.index != hdu.index && matches!(h.kind, HduKind::BinTable { rows: 1.., .. }))
            .find(|h| Table::of(h).is_ok_and(|t| t.col("z").is_some() || t.col("plug_ra").is_some()))
        {
            let t = Table::of(h)?;
            let raw = self.read(h, 0..t.row_len)?;
            meta = t.scalars(&raw);
        }
        let get = |name: &str| meta.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, p)| p.clone());
        let num = |name: &str| match get(name) {
            Some(Prop::Float(v)) => Some(v),
            Some(Prop::Int(v)) => Some(v as f64),
            _ => kw_f64(primary, &name.to_ascii_uppercase()),
        };
        let ra = num("plug_ra").or_else(|| num("ra"));
        let dec = num("plug_dec").or_else(|| num("dec"));
        let id = match get("specobjid") {
            Some(Prop::Text(s)) if !s.is_empty() => Some(s),
            Some(Prop::Int(v)) => Some(v.to_string()),
            _ => match (kw_f64(primary, "PLATEID"), kw_f64(primary, "MJD"), kw_f64(primary, "FIBERID")) {
                (Some(p), Some(m), Some(f)) => Some(format!("{p:04}-{m:05}-{f:04}")),
                _ => None,
            },
        };
        Ok(Spectrum {
            lambda,
            flux,
            ivar,
            mask,
            z: num("z").map(|v| v as f32),
            z_err: num("z_err").map(|v| v as f32),
            ra,
            dec,
            id,
            props: meta,
        })
    }
}

fn parse_hdus(reader: BufReader<File>, file_len: u64) -> Result<Vec<Hdu>, TableError> {
    let mut hdus = Vec::new();
    let mut fits = Fits::from_reader(reader);
    for index in 0.. {
        if index == MAX_HDUS {
            break;
        }
        let Some(next) = fits.next() else { break };
        let hdu = next.map_err(|e| {
            if index == 0 {
                invalid(format!("not a FITS file: {e}"))
            } else {
                invalid(format!("HDU {index}: {e} (truncated or corrupt header)"))
            }
        })?;
        let (header, kind, image, offset) = match hdu {
            HDU::Primary(h) | HDU::XImage(h) => {
                let header = (**h.get_header()).clone();
                let naxis = h.get_header().get_xtension().get_naxis().to_vec();
                let bitpix = kw_f64(&header, "BITPIX").unwrap_or(0.0) as i64;
                let offset = h.get_data_unit_byte_offset();
                (header, HduKind::Image { bitpix, naxis }, Some(h), offset)
            }
            HDU::XBinaryTable(h) => {
                let x = h.get_header().get_xtension();
                let header = (**h.get_header()).clone();
                let row_len = kw_f64(&header, "NAXIS1").unwrap_or(0.0) as u64;
                (
                    header,
                    HduKind::BinTable { row_len, rows: x.get_num_rows() as u64 },
                    None,
                    h.get_data_unit_byte_offset(),
                )
            }
            HDU::XASCIITable(h) => ((**h.get_header()).clone(), HduKind::Other, None, h.get_data_unit_byte_offset()),
        };
        let len = data_len(&header, &kind).ok_or_else(|| {
            invalid(format!("HDU {index}: absurd dimensions {} (the data would not fit any file)", dims(&header)))
        })?;
        if let HduKind::Image { naxis, .. } = &kind
            && naxis.len() >= 2
            && (naxis[0] > MAX_SIDE || naxis[1] > MAX_SIDE || planes(naxis) > MAX_BANDS)
        {
            return Err(invalid(format!(
                "HDU {index} is {}: larger than a cutout (at most {MAX_SIDE} pixels a side and {MAX_BANDS} bands)",
                dims(&header)
            )));
        }
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(invalid(format!(
                "truncated: HDU {index} needs {len} bytes of data from byte {offset}, the file has {file_len}"
            )));
        }
        hdus.push(Hdu { index, header, kind, image, offset, len });
    }
    if hdus.is_empty() {
        return Err(invalid("not a FITS file: no HDU"));
    }
    Ok(hdus)
}

/// Data bytes of an HDU from its header, checked for overflow.
fn data_len(h: &ValueMap, kind: &HduKind) -> Option<u64> {
    match kind {
        HduKind::Image { bitpix, naxis } => {
            if naxis.is_empty() {
                return Some(0);
            }
            let bytes = (bitpix.unsigned_abs() / 8).max(1);
            naxis.iter().try_fold(bytes, |acc, &n| acc.checked_mul(n))
        }
        HduKind::BinTable { row_len, rows } => {
            let pcount = kw_f64(h, "PCOUNT").unwrap_or(0.0).max(0.0) as u64;
            row_len.checked_mul(*rows)?.checked_add(pcount)
        }
        HduKind::Other => {
            let n1 = kw_f64(h, "NAXIS1").unwrap_or(0.0).max(0.0) as u64;
            let n2 = kw_f64(h, "NAXIS2").unwrap_or(0.0).max(0.0) as u64;
            n1.checked_mul(n2)
        }
    }
}

fn dims(h: &ValueMap) -> String {
    let n = kw_f64(h, "NAXIS").unwrap_or(0.0).clamp(0.0, 999.0) as usize;
    (1..=n)
        .map(|i| kw_f64(h, &format!("NAXIS{i}")).map(|v| format!("{v}")).unwrap_or("?".into()))
        .collect::<Vec<_>>()
        .join("x")
}

/// Planes of an image: the product of the axes beyond the second.
fn planes(naxis: &[u64]) -> u64 {
    naxis.iter().skip(2).product::<u64>()
}

fn kw_f64(h: &ValueMap, key: &str) -> Option<f64> {
    match h.get(key)? {
        Value::Integer { value, .. } => Some(*value as f64),
        Value::Float { value, .. } => Some(*value),
        Value::String { value, .. } => value.trim().parse().ok(),
        _ => None,
    }
}

fn kw_str(h: &ValueMap, key: &str) -> Option<String> {
    match h.get(key)? {
        Value::String { value, .. } => Some(value.trim().to_string()),
        Value::Integer { value, .. } => Some(value.to_string()),
        _ => None,
    }
}

/// A single-band HDU's band name: FILTER, BAND, or a short EXTNAME.
fn band_name(h: &ValueMap) -> Option<String> {
    ["FILTER", "BAND", "FILTNAM", "FILTER1"]
        .iter()
        .find_map(|k| kw_str(h, k).filter(|s| !s.is_empty()))
        .or_else(|| kw_str(h, "EXTNAME").filter(|s| !s.is_empty() && s.len() <= 8 && s != "PRIMARY" && s != "IMAGE"))
}

/// A cube's band names: `BANDS = 'grz'` or 'g,r,z' (Legacy Survey), BANDn /
/// FILTERn keywords, else positional names.
fn cube_band_names(h: &ValueMap, n: usize) -> Vec<String> {
    if let Some(s) = kw_str(h, "BANDS") {
        let parts: Vec<String> = if s.contains(',') || s.contains(' ') {
            s.split([',', ' ']).filter(|p| !p.is_empty()).map(str::to_string).collect()
        } else {
            s.chars().map(String::from).collect()
        };
        if parts.len() == n {
            return parts;
        }
    }
    for (key, base) in [("BAND", 0), ("BAND", 1), ("FILTER", 1)] {
        let names: Option<Vec<String>> = (0..n).map(|i| kw_str(h, &format!("{key}{}", i + base))).collect();
        if let Some(names) = names {
            return names;
        }
    }
    (0..n).map(|i| format!("band{i}")).collect()
}

/// Big-endian FITS pixels to f32, with BSCALE/BZERO and BLANK (-> NaN).
fn to_f32(raw: &[u8], bitpix: i64, h: &ValueMap) -> Vec<f32> {
    let scale = kw_f64(h, "BSCALE").unwrap_or(1.0);
    let zero = kw_f64(h, "BZERO").unwrap_or(0.0);
    let blank = kw_f64(h, "BLANK");
    let plain = scale == 1.0 && zero == 0.0;
    let int = |v: i64| -> f32 { if blank == Some(v as f64) { f32::NAN } else { (v as f64 * scale + zero) as f32 } };
    match bitpix {
        8 => raw.iter().map(|&b| int(b as i64)).collect(),
        16 => raw.chunks_exact(2).map(|c| int(i16::from_be_bytes([c[0], c[1]]) as i64)).collect(),
        32 => raw.chunks_exact(4).map(|c| int(i32::from_be_bytes(c.try_into().expect("4 bytes")) as i64)).collect(),
        64 => raw.chunks_exact(8).map(|c| int(i64::from_be_bytes(c.try_into().expect("8 bytes")))).collect(),
        -32 if plain => raw.chunks_exact(4).map(|c| f32::from_be_bytes(c.try_into().expect("4 bytes"))).collect(),
        -32 => raw
            .chunks_exact(4)
            .map(|c| (f32::from_be_bytes(c.try_into().expect("4 bytes")) as f64 * scale + zero) as f32)
            .collect(),
        -64 => raw
            .chunks_exact(8)
            .map(|c| (f64::from_be_bytes(c.try_into().expect("8 bytes")) * scale + zero) as f32)
            .collect(),
        _ => vec![f32::NAN; raw.len() / 4],
    }
}

/// Sky position at the cutout centre and pixel scale (arcsec, the geometric
/// mean of the two axes), from the header's WCS.
fn wcs_centre(
    img: &fitsrs::fits::HDU<fitsrs::hdu::header::extension::image::Image>,
    w: usize,
    h: usize,
) -> (Option<(f64, f64)>, Option<f32>) {
    // The wcs crate slices CTYPEn by byte: a corrupt, non-ASCII one is no WCS.
    let header = img.get_header();
    if ["CTYPE1", "CTYPE2"].iter().any(|k| kw_str(header, k).is_some_and(|c| !c.is_ascii())) {
        return (None, None);
    }
    let wcs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| img.wcs()));
    let Ok(Ok(wcs)) = wcs else { return (None, None) };
    // FITS pixel coordinates are 1-based: the centre of pixel 1 is 1.0.
    let (cx, cy) = ((w as f64 + 1.0) / 2.0, (h as f64 + 1.0) / 2.0);
    let at = |x: f64, y: f64| wcs.unproj(&fitsrs::ImgXY::new(x, y)).map(|l| (l.lon(), l.lat()));
    let Some((lon, lat)) = at(cx, cy) else { return (None, None) };
    let (ra, dec) = (lon.to_degrees().rem_euclid(360.0), lat.to_degrees());
    if !ra.is_finite() || !dec.is_finite() {
        return (None, None);
    }
    let radec = |(lon, lat): (f64, f64)| Radec { ra: lon.to_degrees(), dec: lat.to_degrees() };
    let centre = radec((lon, lat));
    let scale = match (at(cx + 1.0, cy), at(cx, cy + 1.0)) {
        (Some(a), Some(b)) => {
            let s = (separation_deg(centre, radec(a)) * separation_deg(centre, radec(b))).sqrt() * 3600.0;
            Some(s as f32).filter(|s| s.is_finite() && *s > 0.0)
        }
        _ => None,
    };
    (Some((ra, dec)), scale)
}

/// A binary table's column layout, from TFORMn / TTYPEn.
struct Table {
    row_len: u64,
    rows: u64,
    /// (name, byte offset in the row, repeat, type letter)
    cols: Vec<(String, u64, u64, u8)>,
}

impl Table {
    fn of(hdu: &Hdu) -> Result<Table, TableError> {
        let HduKind::BinTable { row_len, rows } = hdu.kind else { return Err(invalid("not a binary table")) };
        let n = kw_f64(&hdu.header, "TFIELDS").unwrap_or(0.0).clamp(0.0, 999.0) as usize;
        let mut cols = Vec::with_capacity(n);
        let mut offset = 0u64;
        for i in 1..=n {
            let form = kw_str(&hdu.header, &format!("TFORM{i}"))
                .ok_or_else(|| invalid(format!("HDU {}: TFORM{i} missing", hdu.index)))?;
            let digits: String = form.chars().take_while(|c| c.is_ascii_digit()).collect();
            let repeat: u64 = if digits.is_empty() {
                1
            } else {
                digits.parse().map_err(|_| invalid(format!("TFORM{i} = {form}")))?
            };
            let ty = form[digits.len()..].bytes().next().ok_or_else(|| invalid(format!("TFORM{i} = {form}")))?;
            let size = match ty {
                b'L' | b'B' | b'A' => repeat,
                b'X' => repeat.div_ceil(8),
                b'I' => 2 * repeat,
                b'J' | b'E' => 4 * repeat,
                b'K' | b'D' | b'C' => 8 * repeat,
                b'M' => 16 * repeat,
                b'P' => 8,
                b'Q' => 16,
                _ => return Err(invalid(format!("HDU {}: TFORM{i} = {form} is not a FITS type", hdu.index))),
            };
            let name = kw_str(&hdu.header, &format!("TTYPE{i}")).unwrap_or_else(|| format!("col{i}"));
            cols.push((name, offset, repeat, ty));
            offset += size;
        }
        if offset != row_len {
            return Err(invalid(format!(
                "HDU {}: columns take {offset} bytes a row but NAXIS1 = {row_len}",
                hdu.index
            )));
        }
        Ok(Table { row_len, rows, cols })
    }

    fn col(&self, name: &str) -> Option<usize> {
        self.cols.iter().position(|(n, _, repeat, ty)| n.eq_ignore_ascii_case(name) && *repeat == 1 && ty != &b'A')
    }

    /// A scalar numeric column over all rows, as f32.
    fn floats(&self, raw: &[u8], c: usize) -> Vec<f32> {
        let (_, off, _, ty) = self.cols[c];
        (0..self.rows)
            .map(|r| {
                let at = (r * self.row_len + off) as usize;
                value(&raw[at..], ty).unwrap_or(f64::NAN) as f32
            })
            .collect()
    }

    /// Row 0's scalar columns (numbers and strings) as properties.
    fn scalars(&self, raw: &[u8]) -> Vec<(String, Prop)> {
        self.cols
            .iter()
            .filter_map(|(name, off, repeat, ty)| {
                let at = *off as usize;
                let p = match ty {
                    b'A' => {
                        let s = &raw[at..at + *repeat as usize];
                        Prop::Text(String::from_utf8_lossy(s).trim_end_matches(['\0', ' ']).trim().to_string())
                    }
                    b'B' | b'I' | b'J' | b'K' if *repeat == 1 => Prop::Int(value(&raw[at..], *ty)? as i64),
                    b'K' if *repeat == 1 => Prop::Int(i64::from_be_bytes(raw[at..at + 8].try_into().ok()?)),
                    b'L' if *repeat == 1 => Prop::Int((raw[at] == b'T') as i64),
                    b'E' | b'D' if *repeat == 1 => match value(&raw[at..], *ty)? {
                        v if v.is_finite() => Prop::Float(v),
                        _ => Prop::Missing,
                    },
                    _ => return None,
                };
                Some((name.clone(), p))
            })
            .collect()
    }
}

fn value(b: &[u8], ty: u8) -> Option<f64> {
    Some(match ty {
        b'B' => *b.first()? as f64,
        b'I' => i16::from_be_bytes(b.get(..2)?.try_into().ok()?) as f64,
        b'J' => i32::from_be_bytes(b.get(..4)?.try_into().ok()?) as f64,
        b'K' => i64::from_be_bytes(b.get(..8)?.try_into().ok()?) as f64,
        b'E' => f32::from_be_bytes(b.get(..4)?.try_into().ok()?) as f64,
        b'D' => f64::from_be_bytes(b.get(..8)?.try_into().ok()?),
        _ => return None,
    })
}

struct Cutout {
    /// bands × h × w
    data: Vec<f32>,
    bands: Vec<String>,
    shape: (usize, usize),
    position: Option<(f64, f64)>,
    scale: Option<f32>,
    psf: Option<Vec<f32>>,
}

struct Spectrum {
    lambda: Vec<f32>,
    flux: Vec<f32>,
    ivar: Option<Vec<f32>>,
    mask: Option<Vec<i32>>,
    z: Option<f32>,
    z_err: Option<f32>,
    ra: Option<f64>,
    dec: Option<f64>,
    id: Option<String>,
    props: Vec<(String, Prop)>,
}

fn pixel_batch(c: &Cutout, scale: Option<f32>) -> Result<PixelBatch, TableError> {
    let (h, w) = c.shape;
    let nb = c.bands.len();
    let data = Array3::from_shape_vec((1, nb, h * w), c.data.clone())
        .map_err(|e| invalid(format!("pixels do not fill {nb} bands of {w}x{h}: {e}")))?;
    let row = |v: Vec<f32>| Array2::from_shape_vec((1, nb), v).ok();
    Ok(PixelBatch { data, psf: c.psf.clone().and_then(row), scale: scale.and_then(|s| row(vec![s; nb])) })
}

fn spectrum_batch(s: Spectrum) -> Result<SpectrumBatch, TableError> {
    let n = s.flux.len();
    let row = |v: Vec<f32>| Array2::from_shape_vec((1, n), v).map_err(|e| invalid(e.to_string()));
    Ok(SpectrumBatch {
        lambda: row(s.lambda)?,
        flux: row(s.flux)?,
        ivar: s.ivar.map(row).transpose()?,
        mask: s.mask.map(|m| Array2::from_shape_vec((1, n), m).map_err(|e| invalid(e.to_string()))).transpose()?,
        z: s.z.map(|z| vec![z]),
        z_err: s.z_err.map(|z| vec![z]),
    })
}

/// Reads a FITS file as one object for ingest.
pub(crate) fn read_object(path: &Path, ctx: &Context) -> Result<Single, TableError> {
    let fits = FitsFile::open(path)?;
    let entry = ctx.catalog.and_then(|c| c.lookup(path));
    let stem = path.file_stem().map(|s| s.to_string_lossy().trim_end_matches(".fits").to_string()).unwrap_or_default();
    match fits.kind()? {
        SourceKind::Spectra => {
            let s = fits.spectrum()?;
            let (id, ra, dec) = match entry {
                Some(e) => (e.id.clone(), e.ra, e.dec),
                None => {
                    let (Some(ra), Some(dec)) = (s.ra, s.dec) else {
                        return Err(invalid(
                            "no position: neither PLUG_RA/PLUG_DEC nor RA/DEC in the header or the object table, and no --catalog entry",
                        ));
                    };
                    (s.id.clone().unwrap_or(stem), ra, dec)
                }
            };
            let mut columns: Vec<String> = s.props.iter().map(|(n, _)| n.clone()).collect();
            let mut props: Vec<Prop> = s.props.iter().map(|(_, p)| p.clone()).collect();
            if let (Some(e), Some(c)) = (entry, ctx.catalog) {
                columns.extend(c.columns.iter().cloned());
                props.extend(e.props.iter().cloned());
            }
            let n_pix = s.flux.len();
            let batch = Batch {
                start: 0,
                ids: vec![id],
                ra: vec![ra],
                dec: vec![dec],
                props: props.into_iter().map(|p| vec![p]).collect(),
                pixels: None,
                spectra: Some(spectrum_batch(s)?),
            };
            Ok(Single { kind: SourceKind::Spectra, columns, bands: Vec::new(), shape: (n_pix, 0), batch })
        }
        SourceKind::Images => {
            let c = fits.cutout(ctx.bands)?;
            let (id, ra, dec) = match (entry, c.position) {
                (Some(e), _) => (e.id.clone(), e.ra, e.dec),
                (None, Some((ra, dec))) => (stem, ra, dec),
                (None, None) => {
                    return Err(invalid(
                        "no WCS in the header (CTYPE1/CRVAL1/CRPIX1/CD or CDELT) and no --catalog entry: cannot place it on the sky",
                    ));
                }
            };
            let scale = c.scale.or(entry.and_then(|e| e.pixel_scale)).or(ctx.pixel_scale);
            let (columns, props) = match (entry, ctx.catalog) {
                (Some(e), Some(cat)) => (cat.columns.clone(), e.props.iter().map(|p| vec![p.clone()]).collect()),
                _ => (Vec::new(), Vec::new()),
            };
            let pixels = pixel_batch(&c, scale)?;
            let batch = Batch {
                start: 0,
                ids: vec![id],
                ra: vec![ra],
                dec: vec![dec],
                props,
                pixels: Some(pixels),
                spectra: None,
            };
            Ok(Single { kind: SourceKind::Images, columns, bands: c.bands, shape: c.shape, batch })
        }
    }
}

/// Reads pixels or the spectrum of a stored FITS source (row 0).
pub(crate) struct FitsSource {
    fits: FitsFile,
}

impl FitsSource {
    pub(crate) fn open(path: &Path) -> Result<FitsSource, TableError> {
        Ok(FitsSource { fits: FitsFile::open(path)? })
    }
}

fn only_row_zero(rows: &Range<usize>) -> Result<(), TableError> {
    if *rows != (0..1) {
        return Err(TableError::Read {
            field: "object".into(),
            start: rows.start,
            end: rows.end,
            why: "a single-object file has row 0 only".into(),
        });
    }
    Ok(())
}

impl SourceReader for FitsSource {
    fn read_images(&self, rows: Range<usize>) -> Result<PixelBatch, TableError> {
        only_row_zero(&rows)?;
        let c = self.fits.cutout(None)?;
        pixel_batch(&c, c.scale)
    }

    fn read_spectra(&self, rows: Range<usize>) -> Result<SpectrumBatch, TableError> {
        only_row_zero(&rows)?;
        spectrum_batch(self.fits.spectrum()?)
    }

    fn row_bytes(&self) -> usize {
        self.fits.hdus.iter().map(|h| h.len as usize).sum::<usize>().max(64)
    }
}
