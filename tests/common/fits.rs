//! Small FITS files written by hand for the tests (the standard's layout:
//! 80-character cards in 2880-byte blocks, big-endian data), and image files
//! written with the `image` crate.

use std::path::Path;

/// A header card's value.
pub enum V<'a> {
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
}

pub fn card(key: &str, v: V) -> String {
    let value = match v {
        V::Int(i) => format!("{i:>20}"),
        V::Float(f) => format!("{:>20}", format!("{f:.12E}")),
        V::Str(s) => format!("{:<20}", format!("'{s:<8}'")),
        V::Bool(b) => format!("{:>20}", if b { "T" } else { "F" }),
    };
    let c = format!("{key:<8}= {value}");
    format!("{c:<80}")
}

/// A header from cards, END appended, padded to a 2880-byte block.
pub fn header(cards: &[String]) -> Vec<u8> {
    let mut h: String = cards.concat();
    h.push_str(&format!("{:<80}", "END"));
    let mut b = h.into_bytes();
    b.resize(b.len().div_ceil(2880) * 2880, b' ');
    b
}

fn pad(mut data: Vec<u8>) -> Vec<u8> {
    data.resize(data.len().div_ceil(2880) * 2880, 0);
    data
}

/// TAN WCS cards centred on (ra, dec) at the image centre, `scale` arcsec/px,
/// north up, east left.
pub fn wcs(ra: f64, dec: f64, scale: f64, w: usize, h: usize) -> Vec<String> {
    let d = scale / 3600.0;
    vec![
        card("CTYPE1", V::Str("RA---TAN")),
        card("CTYPE2", V::Str("DEC--TAN")),
        card("CRVAL1", V::Float(ra)),
        card("CRVAL2", V::Float(dec)),
        card("CRPIX1", V::Float((w as f64 + 1.0) / 2.0)),
        card("CRPIX2", V::Float((h as f64 + 1.0) / 2.0)),
        card("CD1_1", V::Float(-d)),
        card("CD1_2", V::Float(0.0)),
        card("CD2_1", V::Float(0.0)),
        card("CD2_2", V::Float(d)),
    ]
}

/// An image HDU (primary when `primary`) of f32 pixels, axes NAXIS1 = w first.
pub fn image_hdu(primary: bool, naxis: &[usize], data: &[f32], extra: &[String]) -> Vec<u8> {
    let mut cards = vec![if primary { card("SIMPLE", V::Bool(true)) } else { card("XTENSION", V::Str("IMAGE")) }];
    cards.push(card("BITPIX", V::Int(-32)));
    cards.push(card("NAXIS", V::Int(naxis.len() as i64)));
    for (i, n) in naxis.iter().enumerate() {
        cards.push(card(&format!("NAXIS{}", i + 1), V::Int(*n as i64)));
    }
    if !primary {
        cards.push(card("PCOUNT", V::Int(0)));
        cards.push(card("GCOUNT", V::Int(1)));
    }
    cards.extend_from_slice(extra);
    let mut out = header(&cards);
    out.extend(pad(data.iter().flat_map(|v| v.to_be_bytes()).collect()));
    out
}

/// An empty primary HDU.
pub fn empty_primary(extra: &[String]) -> Vec<u8> {
    let mut cards = vec![card("SIMPLE", V::Bool(true)), card("BITPIX", V::Int(8)), card("NAXIS", V::Int(0))];
    cards.extend_from_slice(extra);
    header(&cards)
}

/// A binary-table column.
pub enum Col<'a> {
    E(&'a str, Vec<f32>),
    J(&'a str, Vec<i32>),
    K(&'a str, Vec<i64>),
    D(&'a str, Vec<f64>),
    A(&'a str, usize, Vec<String>),
}

/// A BINTABLE HDU of scalar columns.
pub fn table_hdu(cols: &[Col], extra: &[String]) -> Vec<u8> {
    let rows = match &cols[0] {
        Col::E(_, v) => v.len(),
        Col::J(_, v) => v.len(),
        Col::K(_, v) => v.len(),
        Col::D(_, v) => v.len(),
        Col::A(_, _, v) => v.len(),
    };
    let mut row_len = 0;
    let mut cards = vec![card("XTENSION", V::Str("BINTABLE")), card("BITPIX", V::Int(8)), card("NAXIS", V::Int(2))];
    let mut forms = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        let (name, form, size) = match c {
            Col::E(n, _) => (*n, "1E".to_string(), 4),
            Col::J(n, _) => (*n, "1J".to_string(), 4),
            Col::K(n, _) => (*n, "1K".to_string(), 8),
            Col::D(n, _) => (*n, "1D".to_string(), 8),
            Col::A(n, w, _) => (*n, format!("{w}A"), *w),
        };
        row_len += size;
        forms.push(card(&format!("TTYPE{}", i + 1), V::Str(name)));
        forms.push(card(&format!("TFORM{}", i + 1), V::Str(&form)));
    }
    cards.push(card("NAXIS1", V::Int(row_len as i64)));
    cards.push(card("NAXIS2", V::Int(rows as i64)));
    cards.push(card("PCOUNT", V::Int(0)));
    cards.push(card("GCOUNT", V::Int(1)));
    cards.push(card("TFIELDS", V::Int(cols.len() as i64)));
    cards.extend(forms);
    cards.extend_from_slice(extra);
    let mut data = Vec::with_capacity(row_len * rows);
    for r in 0..rows {
        for c in cols {
            match c {
                Col::E(_, v) => data.extend(v[r].to_be_bytes()),
                Col::J(_, v) => data.extend(v[r].to_be_bytes()),
                Col::K(_, v) => data.extend(v[r].to_be_bytes()),
                Col::D(_, v) => data.extend(v[r].to_be_bytes()),
                Col::A(_, w, v) => {
                    let mut s = v[r].clone().into_bytes();
                    s.resize(*w, b' ');
                    data.extend(s);
                }
            }
        }
    }
    let mut out = header(&cards);
    out.extend(pad(data));
    out
}

/// An SDSS-like `spec-PLATE-MJD-FIBER.fits`: primary header, HDU 1 `COADD`
/// (flux, loglam, ivar, and_mask), HDU 2 `SPALL` (one row: SPECOBJID, PLUG_RA,
/// PLUG_DEC, Z, Z_ERR, CLASS).
pub struct Spec {
    pub loglam: Vec<f32>,
    pub flux: Vec<f32>,
    pub ivar: Vec<f32>,
    pub and_mask: Vec<i32>,
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    pub z: f32,
}

impl Spec {
    pub fn synthetic(n: usize, id: &str, ra: f64, dec: f64, z: f32) -> Spec {
        let loglam: Vec<f32> = (0..n).map(|i| 3.5792 + 1e-4 * i as f32).collect();
        let flux: Vec<f32> = loglam
            .iter()
            .map(|l| {
                let lam = 10f32.powf(*l);
                let ha = 6564.6 * (1.0 + z);
                5.0 + 40.0 * (-(lam - ha).powi(2) / (2.0 * 3.0f32.powi(2))).exp()
            })
            .collect();
        Spec {
            ivar: vec![4.0; n],
            and_mask: (0..n as i32).map(|i| if i == 3 { 1 << 4 } else { 0 }).collect(),
            loglam,
            flux,
            id: id.into(),
            ra,
            dec,
            z,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = empty_primary(&[
            card("PLUG_RA", V::Float(self.ra)),
            card("PLUG_DEC", V::Float(self.dec)),
            card("PLATEID", V::Int(266)),
            card("MJD", V::Int(51630)),
            card("FIBERID", V::Int(12)),
        ]);
        out.extend(table_hdu(
            &[
                Col::E("flux", self.flux.clone()),
                Col::E("loglam", self.loglam.clone()),
                Col::E("ivar", self.ivar.clone()),
                Col::J("and_mask", self.and_mask.clone()),
            ],
            &[card("EXTNAME", V::Str("COADD"))],
        ));
        out.extend(table_hdu(
            &[
                Col::A("SPECOBJID", 19, vec![self.id.clone()]),
                Col::D("PLUG_RA", vec![self.ra]),
                Col::D("PLUG_DEC", vec![self.dec]),
                Col::E("Z", vec![self.z]),
                Col::E("Z_ERR", vec![1e-4]),
                Col::A("CLASS", 6, vec!["GALAXY".into()]),
            ],
            &[card("EXTNAME", V::Str("SPALL"))],
        ));
        out
    }
}

/// Pixels b × h × w with a known pattern.
pub fn pattern(bands: usize, h: usize, w: usize, seed: f32) -> Vec<f32> {
    (0..bands * h * w).map(|i| seed + (i % 97) as f32 * 0.5 + (i / (h * w)) as f32 * 100.0).collect()
}

/// A Legacy-Survey-like cube: primary HDU (w, h, bands) with BANDS = 'grz'.
pub fn cube(bands: &str, h: usize, w: usize, ra: f64, dec: f64, scale: f64, seed: f32) -> (Vec<u8>, Vec<f32>) {
    let nb = bands.len();
    let data = pattern(nb, h, w, seed);
    let mut extra = wcs(ra, dec, scale, w, h);
    extra.push(card("BANDS", V::Str(bands)));
    (image_hdu(true, &[w, h, nb], &data, &extra), data)
}

pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}
