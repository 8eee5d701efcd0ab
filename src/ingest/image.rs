//! Image files (PNG, JPEG, TIFF; 8- or 16-bit, grey or RGB, alpha dropped),
//! one object each, decoded by the `image` crate with limits on size and
//! memory so a corrupt header cannot ask for gigabytes. Positions and ids
//! come from the catalogue (`--catalog`): a picture has no WCS.

use std::io::{BufReader, Cursor};
use std::ops::Range;
use std::path::Path;

use image::{DynamicImage, ImageReader, Limits};
use ndarray::{Array2, Array3};

use super::fits::{MAX_BANDS, MAX_SIDE};
use super::reader::SourceReader;
use super::table::{Batch, PixelBatch, SpectrumBatch, TableError};
use super::{Context, Single};
use crate::store::SourceKind;

/// Smallest cutout side that morphology can use.
const MIN_SIDE: u32 = 8;

/// Pixels (bands × h × w, values as in the file: 0–255 or 0–65535), the
/// default band names and (h, w).
type Decoded = (Vec<f32>, Vec<String>, (usize, usize));

fn decode(path: &Path) -> Result<Decoded, TableError> {
    let bytes = std::fs::read(path).map_err(|e| TableError::Invalid(format!("cannot read: {e}")))?;
    let mut reader = ImageReader::new(BufReader::new(Cursor::new(bytes)))
        .with_guessed_format()
        .map_err(|e| TableError::Invalid(format!("cannot read: {e}")))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE as u32);
    limits.max_image_height = Some(MAX_SIDE as u32);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| TableError::Invalid(format!("cannot decode the image: {e}")))?;
    let (w, h) = (img.width(), img.height());
    if w < MIN_SIDE || h < MIN_SIDE {
        return Err(TableError::Invalid(format!(
            "{w}x{h} pixels is too small for a cutout (at least {MIN_SIDE}x{MIN_SIDE})"
        )));
    }
    let grey = matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let n = (w * h) as usize;
    let planar = |interleaved: Vec<f32>, c: usize| -> Vec<f32> {
        let mut out = vec![0f32; c * n];
        for (i, px) in interleaved.chunks_exact(c).enumerate() {
            for (b, v) in px.iter().enumerate() {
                out[b * n + i] = *v;
            }
        }
        out
    };
    let (data, bands) = if grey {
        let v: Vec<f32> = match &img {
            DynamicImage::ImageLuma8(_) | DynamicImage::ImageLumaA8(_) => {
                img.to_luma8().into_raw().into_iter().map(f32::from).collect()
            }
            _ => img.to_luma16().into_raw().into_iter().map(f32::from).collect(),
        };
        (v, vec!["grey".to_string()])
    } else {
        let v: Vec<f32> = match &img {
            DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => {
                img.to_rgb8().into_raw().into_iter().map(f32::from).collect()
            }
            DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => img.to_rgb32f().into_raw(),
            _ => img.to_rgb16().into_raw().into_iter().map(f32::from).collect(),
        };
        (planar(v, 3), vec!["red".to_string(), "green".to_string(), "blue".to_string()])
    };
    debug_assert!(bands.len() as u64 <= MAX_BANDS);
    Ok((data, bands, (h as usize, w as usize)))
}

fn pixel_batch(
    data: Vec<f32>,
    nb: usize,
    (h, w): (usize, usize),
    scale: Option<f32>,
) -> Result<PixelBatch, TableError> {
    let data = Array3::from_shape_vec((1, nb, h * w), data).map_err(|e| TableError::Invalid(e.to_string()))?;
    Ok(PixelBatch { data, psf: None, scale: scale.map(|s| Array2::from_elem((1, nb), s)) })
}

fn with_override(bands: Vec<String>, over: Option<&[String]>) -> Result<Vec<String>, TableError> {
    match over {
        Some(o) if o.len() != bands.len() => Err(TableError::Invalid(format!(
            "has {} channel(s) ({}) but --bands names {} ({})",
            bands.len(),
            bands.join(","),
            o.len(),
            o.join(",")
        ))),
        Some(o) => Ok(o.to_vec()),
        None => Ok(bands),
    }
}

/// Reads an image file as one object for ingest.
pub(crate) fn read_object(path: &Path, ctx: &Context) -> Result<Single, TableError> {
    let Some(entry) = ctx.catalog.and_then(|c| c.lookup(path)) else {
        return Err(TableError::Invalid(match ctx.catalog {
            Some(c) => {
                format!("not in the catalogue {}: an image has no WCS, so it needs a row there", c.path.display())
            }
            None => "an image has no position: pass --catalog FILE.csv with columns file, object_id, ra, dec".into(),
        }));
    };
    let (data, bands, shape) = decode(path)?;
    let bands = with_override(bands, ctx.bands)?;
    let scale = entry.pixel_scale.or(ctx.pixel_scale);
    let pixels = pixel_batch(data, bands.len(), shape, scale)?;
    let cat = ctx.catalog.expect("entry came from it");
    let batch = Batch {
        start: 0,
        ids: vec![entry.id.clone()],
        ra: vec![entry.ra],
        dec: vec![entry.dec],
        props: entry.props.iter().map(|p| vec![p.clone()]).collect(),
        pixels: Some(pixels),
        spectra: None,
    };
    Ok(Single { kind: SourceKind::Images, columns: cat.columns.clone(), bands, shape, batch })
}

/// Reads the pixels of a stored image source (row 0).
pub(crate) struct ImageSource {
    path: std::path::PathBuf,
    bands: usize,
}

impl ImageSource {
    pub(crate) fn open(path: &Path, bands: usize) -> ImageSource {
        ImageSource { path: path.to_owned(), bands }
    }
}

impl SourceReader for ImageSource {
    fn read_images(&self, rows: Range<usize>) -> Result<PixelBatch, TableError> {
        if rows != (0..1) {
            return Err(TableError::Read {
                field: "object".into(),
                start: rows.start,
                end: rows.end,
                why: "a single-object file has row 0 only".into(),
            });
        }
        let (data, bands, shape) = decode(&self.path)?;
        if self.bands != 0 && bands.len() != self.bands {
            return Err(TableError::Invalid(format!("has {} channel(s), {} when ingested", bands.len(), self.bands)));
        }
        pixel_batch(data, bands.len(), shape, None)
    }

    fn read_spectra(&self, _rows: Range<usize>) -> Result<SpectrumBatch, TableError> {
        Err(TableError::Invalid("an image file holds no spectrum".into()))
    }

    fn row_bytes(&self) -> usize {
        std::fs::metadata(&self.path).map(|m| m.len() as usize * 4).unwrap_or(1 << 16).max(64)
    }
}
