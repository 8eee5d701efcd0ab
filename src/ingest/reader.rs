//! One way to read an object's pixels or spectrum back from its stored
//! source, whatever the file's format. The store keeps (source file, row)
//! references; [`open_source`] looks at the file's content and returns the
//! reader for it, so the features stage, the TUI, the CNN and the renderer
//! read HDF5 tables, FITS files and image folders alike without knowing which.

use std::ops::Range;
use std::path::Path;

use super::fits::FitsSource;
use super::image::ImageSource;
use super::table::{PixelBatch, SpectrumBatch, Table, TableError};
use crate::store::SourceFile;

/// Reads rows of one stored source. Rows are [`crate::store::ObjectKey::row`]s;
/// single-object files (a FITS cutout, an SDSS spectrum, a PNG) have row 0.
pub trait SourceReader: Send + Sync {
    /// Pixels of rows `rows`: (rows, bands, height*width) in the source's band
    /// order, with PSF FWHM and pixel scale (arcsec) per band when known.
    fn read_images(&self, rows: Range<usize>) -> Result<PixelBatch, TableError>;
    /// Spectra of rows `rows`.
    fn read_spectra(&self, rows: Range<usize>) -> Result<SpectrumBatch, TableError>;
    /// Bytes of pixel or spectrum data per row, to size batches.
    fn row_bytes(&self) -> usize;
}

impl SourceReader for Table {
    fn read_images(&self, rows: Range<usize>) -> Result<PixelBatch, TableError> {
        Table::read_images(self, rows)
    }
    fn read_spectra(&self, rows: Range<usize>) -> Result<SpectrumBatch, TableError> {
        Table::read_spectra(self, rows)
    }
    fn row_bytes(&self) -> usize {
        Table::row_bytes(self)
    }
}

/// What a file holds, by its first bytes (not its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Hdf5,
    Fits,
    Image,
}

impl Format {
    /// The format a file's content shows, if any (an I/O error reads as none).
    pub fn sniff(path: &Path) -> Option<Format> {
        use std::io::Read;
        let mut head = [0u8; 16];
        let mut f = std::fs::File::open(path).ok()?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(_) => return None,
            }
        }
        Format::of_bytes(&head[..n])
    }

    pub fn of_bytes(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"\x89HDF\r\n\x1a\n") {
            Some(Format::Hdf5)
        } else if head.starts_with(b"SIMPLE  =") {
            Some(Format::Fits)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n")
            || head.starts_with(&[0xFF, 0xD8, 0xFF])
            || head.starts_with(b"II*\0")
            || head.starts_with(b"MM\0*")
        {
            Some(Format::Image)
        } else {
            None
        }
    }

    /// The format a file's name promises (used to report files whose content
    /// does not match, instead of skipping them silently).
    pub fn by_extension(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let ext = name.rsplit('.').next()?;
        match ext {
            "hdf5" | "h5" | "he5" => Some(Format::Hdf5),
            "fits" | "fit" | "fts" => Some(Format::Fits),
            "png" | "jpg" | "jpeg" | "tif" | "tiff" => Some(Format::Image),
            _ => None,
        }
    }
}

/// Opens the reader for a stored source.
pub fn open_source(source: &SourceFile) -> Result<Box<dyn SourceReader>, TableError> {
    let path = Path::new(&source.path);
    match Format::sniff(path).or_else(|| Format::by_extension(path)) {
        Some(Format::Hdf5) => Ok(Box::new(Table::open(path)?)),
        Some(Format::Fits) => Ok(Box::new(FitsSource::open(path)?)),
        Some(Format::Image) => Ok(Box::new(ImageSource::open(path, source.bands.len()))),
        None if !path.exists() => Err(TableError::Open("the file is gone (moved or deleted since ingest)".into())),
        None => Err(TableError::Open("no longer an HDF5, FITS or image file (changed since ingest?)".into())),
    }
}
