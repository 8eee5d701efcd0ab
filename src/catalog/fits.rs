//! A FITS binary table (BINTABLE) writer, streaming rows to disk.
//!
//! Hand-written on purpose: the maintained FITS writer for Rust (`fitsio`)
//! wraps the cfitsio C library (a second C build beside HDF5, or a system
//! package), `fitsrs` only reads, and the pure-Rust writers are young
//! single-author crates. A table of fixed-width scalar columns is a header
//! of 80-character cards and big-endian rows, padded to 2880-byte blocks
//! (FITS Standard 4.0, §7.3); the row count is patched into the header
//! when the stream ends, so nothing is held in memory.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::{Column, Kind, Sink, Value};

const BLOCK: u64 = 2880;
/// TNULL of 64-bit integer columns.
pub const INT_NULL: i64 = i64::MIN;

pub struct FitsSink {
    out: BufWriter<File>,
    cols: Vec<Column>,
    /// Byte offset of the NAXIS2 card's value.
    naxis2_at: u64,
    data_start: u64,
    rows: u64,
    /// Text values cut to their column's width.
    truncated: u64,
}

fn card(key: &str, value: &str, comment: &str) -> String {
    let mut c = format!("{key:<8}= {value:>20}");
    if !comment.is_empty() {
        c.push_str(" / ");
        c.push_str(comment);
    }
    let mut c: String = c.chars().filter(|ch| ch.is_ascii() && !ch.is_ascii_control()).take(80).collect();
    while c.len() < 80 {
        c.push(' ');
    }
    c
}

fn string_value(s: &str) -> String {
    let q = s.replace('\'', "''");
    format!("'{q:<8}'")
}

fn string_card(key: &str, value: &str) -> String {
    let mut c = format!("{key:<8}= {:<20}", string_value(value));
    c = c.chars().filter(|ch| ch.is_ascii() && !ch.is_ascii_control()).take(80).collect();
    while c.len() < 80 {
        c.push(' ');
    }
    c
}

fn pad(out: &mut impl Write, written: u64, byte: u8) -> std::io::Result<()> {
    let rest = (BLOCK - written % BLOCK) % BLOCK;
    out.write_all(&vec![byte; rest as usize])
}

fn width(c: &Column) -> usize {
    match c.kind {
        Kind::Text => c.width.max(1),
        Kind::Int | Kind::F64 => 8,
        Kind::F32 => 4,
        Kind::Bool => 1,
    }
}

impl FitsSink {
    pub fn create(path: &Path, cols: &[Column]) -> std::io::Result<FitsSink> {
        let mut out = BufWriter::new(File::create(path)?);
        // Primary HDU: no data.
        let mut header = String::new();
        header.push_str(&card("SIMPLE", "T", "conforms to FITS standard"));
        header.push_str(&card("BITPIX", "8", ""));
        header.push_str(&card("NAXIS", "0", ""));
        header.push_str(&card("EXTEND", "T", ""));
        header.push_str(&string_card("ORIGIN", "oddity"));
        header.push_str(&format!("{:<80}", "END"));
        out.write_all(header.as_bytes())?;
        pad(&mut out, header.len() as u64, b' ')?;
        let primary = header.len() as u64 + (BLOCK - header.len() as u64 % BLOCK) % BLOCK;

        let row_bytes: usize = cols.iter().map(width).sum();
        let mut h = String::new();
        h.push_str(&string_card("XTENSION", "BINTABLE"));
        h.push_str(&card("BITPIX", "8", ""));
        h.push_str(&card("NAXIS", "2", ""));
        h.push_str(&card("NAXIS1", &row_bytes.to_string(), "bytes per row"));
        let naxis2_at = primary + h.len() as u64 + 10;
        h.push_str(&card("NAXIS2", "0", "rows"));
        h.push_str(&card("PCOUNT", "0", ""));
        h.push_str(&card("GCOUNT", "1", ""));
        h.push_str(&card("TFIELDS", &cols.len().to_string(), ""));
        for (i, c) in cols.iter().enumerate() {
            let n = i + 1;
            h.push_str(&string_card(&format!("TTYPE{n}"), &c.name));
            let form = match c.kind {
                Kind::Text => format!("{}A", width(c)),
                Kind::Int => "K".into(),
                Kind::F64 => "D".into(),
                Kind::F32 => "E".into(),
                Kind::Bool => "L".into(),
            };
            h.push_str(&string_card(&format!("TFORM{n}"), &form));
            if !c.unit.is_empty() {
                h.push_str(&string_card(&format!("TUNIT{n}"), c.unit));
            }
            if c.kind == Kind::Int {
                h.push_str(&card(&format!("TNULL{n}"), &INT_NULL.to_string(), ""));
            }
        }
        h.push_str(&string_card("EXTNAME", "CATALOG"));
        h.push_str(&format!("{:<80}", "END"));
        out.write_all(h.as_bytes())?;
        pad(&mut out, h.len() as u64, b' ')?;
        let data_start = primary + h.len() as u64 + (BLOCK - h.len() as u64 % BLOCK) % BLOCK;
        Ok(FitsSink { out, cols: cols.to_vec(), naxis2_at, data_start, rows: 0, truncated: 0 })
    }
}

impl Sink for FitsSink {
    fn write_rows(&mut self, rows: &[Vec<Value>]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(rows.len() * self.cols.iter().map(width).sum::<usize>());
        for row in rows {
            for (c, v) in self.cols.iter().zip(row) {
                match v {
                    Value::Text(s) => {
                        let w = width(c);
                        // ASCII only (FITS 'A' columns); longer values are cut.
                        let ascii: Vec<u8> = s.chars().map(|ch| if ch.is_ascii() { ch as u8 } else { b'?' }).collect();
                        if ascii.len() > w {
                            self.truncated += 1;
                        }
                        let take = ascii.len().min(w);
                        buf.extend_from_slice(&ascii[..take]);
                        buf.extend(std::iter::repeat_n(b' ', w - take));
                    }
                    Value::Int(n) => buf.extend_from_slice(&n.unwrap_or(INT_NULL).to_be_bytes()),
                    Value::F64(x) => buf.extend_from_slice(&x.to_be_bytes()),
                    Value::F32(x) => buf.extend_from_slice(&x.to_be_bytes()),
                    Value::Bool(b) => buf.push(match b {
                        Some(true) => b'T',
                        Some(false) => b'F',
                        None => 0,
                    }),
                }
            }
        }
        self.rows += rows.len() as u64;
        self.out.write_all(&buf)
    }

    fn finish(mut self: Box<Self>) -> std::io::Result<u64> {
        let row_bytes: u64 = self.cols.iter().map(width).sum::<usize>() as u64;
        pad(&mut self.out, row_bytes * self.rows, 0)?;
        let value = format!("{:>20}", self.rows);
        self.out.seek(SeekFrom::Start(self.naxis2_at))?;
        self.out.write_all(value.as_bytes())?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        debug_assert!(self.data_start.is_multiple_of(BLOCK));
        if self.truncated > 0 {
            eprintln!("warning: {} text values were longer than their FITS column and were cut", self.truncated);
        }
        Ok(self.rows)
    }
}
