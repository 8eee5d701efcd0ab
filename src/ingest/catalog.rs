//! The catalogue CSV that places single-object files (image folders, FITS
//! cutouts without WCS) on the sky: one row per file with its object id, ra
//! and dec. AnomalyMatch's `filename` column is accepted for `file`; every
//! other column is kept as a catalogue property.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::store::Prop;

/// Accepted names (lower case) of the required columns.
const FILE_NAMES: &[&str] = &["file", "filename", "file_name", "path"];
const ID_NAMES: &[&str] = &["object_id", "id", "objid", "object"];
const RA_NAMES: &[&str] = &["ra", "ra_deg"];
const DEC_NAMES: &[&str] = &["dec", "dec_deg"];
const SCALE_NAMES: &[&str] = &["pixel_scale", "image_scale", "scale"];

/// One catalogue row.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    /// Arcsec per pixel, when the catalogue has a `pixel_scale` column.
    pub pixel_scale: Option<f32>,
    /// Values of [`Catalog::columns`].
    pub props: Vec<Prop>,
}

/// A catalogue, looked up by file.
#[derive(Debug, Default)]
pub struct Catalog {
    pub path: PathBuf,
    /// Folder the file names are relative to (the CSV's own).
    pub dir: PathBuf,
    /// Extra columns kept as properties.
    pub columns: Vec<String>,
    /// File name as written in the CSV -> entry.
    by_name: HashMap<String, Entry>,
    /// Base name -> file name as written (when unique).
    by_base: HashMap<String, Option<String>>,
    /// File names in the CSV's order, for ingesting the catalogue's files.
    order: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct CatalogError {
    pub path: PathBuf,
    pub why: String,
}

impl Catalog {
    /// Reads a catalogue CSV. A row with an unparsable ra/dec is kept with
    /// NaN: its file is then reported (non-finite coordinate) when ingested.
    pub fn read(path: &Path) -> Result<Catalog, CatalogError> {
        let err = |why: String| CatalogError { path: path.to_owned(), why };
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .from_path(path)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        let headers: Vec<String> =
            rdr.headers().map_err(|e| err(format!("bad header line: {e}")))?.iter().map(str::to_string).collect();
        let find = |names: &[&str]| headers.iter().position(|h| names.contains(&h.to_ascii_lowercase().as_str()));
        let need = |names: &[&str], what: &str| {
            find(names).ok_or_else(|| {
                err(format!("no {what} column (one of {}); columns are: {}", names.join(", "), headers.join(", ")))
            })
        };
        let (fc, ic, rc, dc) =
            (need(FILE_NAMES, "file")?, need(ID_NAMES, "object id")?, need(RA_NAMES, "ra")?, need(DEC_NAMES, "dec")?);
        let sc = find(SCALE_NAMES);
        let extra: Vec<usize> =
            (0..headers.len()).filter(|i| ![fc, ic, rc, dc].contains(i) && Some(*i) != sc).collect();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cat = Catalog {
            path: path.to_owned(),
            dir,
            columns: extra.iter().map(|&i| headers[i].clone()).collect(),
            ..Default::default()
        };
        for (n, record) in rdr.records().enumerate() {
            let line = n + 2;
            let record = record.map_err(|e| err(format!("line {line}: {e}")))?;
            let field = |i: usize| record.get(i).unwrap_or("");
            let file = field(fc).to_string();
            if file.is_empty() {
                return Err(err(format!("line {line}: empty file name")));
            }
            let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
            let entry = Entry {
                id: field(ic).to_string(),
                ra: num(field(rc)),
                dec: num(field(dc)),
                pixel_scale: sc.and_then(|i| field(i).parse::<f32>().ok()).filter(|s| s.is_finite() && *s > 0.0),
                props: extra.iter().map(|&i| prop(field(i))).collect(),
            };
            if cat.by_name.insert(file.clone(), entry).is_some() {
                return Err(err(format!("line {line}: file {file} is listed twice")));
            }
            let base = base_name(&file);
            cat.by_base.entry(base).and_modify(|v| *v = None).or_insert_with(|| Some(file.clone()));
            cat.order.push(file);
        }
        Ok(cat)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The catalogue's files, resolved against its folder, in its order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.order.iter().map(|f| self.dir.join(f)).collect()
    }

    /// The entry of a file: by its path relative to the catalogue's folder,
    /// or by its base name when that is unique in the catalogue.
    pub fn lookup(&self, file: &Path) -> Option<&Entry> {
        let canonical_dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        if let Ok(rel) = file.strip_prefix(&canonical_dir).or_else(|_| file.strip_prefix(&self.dir))
            && let Some(e) = self.by_name.get(rel.to_string_lossy().as_ref())
        {
            return Some(e);
        }
        let base = file.file_name()?.to_string_lossy().into_owned();
        let name = self.by_base.get(&base)?.as_ref()?;
        self.by_name.get(name)
    }
}

fn base_name(file: &str) -> String {
    Path::new(file).file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_else(|| file.to_string())
}

/// A CSV cell as a property: integer, float, text, or missing when empty.
fn prop(s: &str) -> Prop {
    if s.is_empty() {
        Prop::Missing
    } else if let Ok(v) = s.parse::<i64>() {
        Prop::Int(v)
    } else if let Ok(v) = s.parse::<f64>() {
        if v.is_finite() { Prop::Float(v) } else { Prop::Missing }
    } else {
        Prop::Text(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_anomalymatch_style_catalogue_and_looks_up_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cat.csv");
        std::fs::write(
            &path,
            "filename,object_id,ra,dec,pixel_scale,mag\n\
             a/x.png,obj1,150.1,2.2,0.262,19.5\n\
             y.jpg,obj2,nan,2.3,,\n",
        )
        .unwrap();
        let cat = Catalog::read(&path).unwrap();
        assert_eq!(cat.len(), 2);
        assert_eq!(cat.columns, vec!["mag"]);
        let e = cat.lookup(&dir.path().join("a/x.png")).unwrap();
        assert_eq!((e.id.as_str(), e.ra, e.dec, e.pixel_scale), ("obj1", 150.1, 2.2, Some(0.262)));
        assert_eq!(e.props, vec![Prop::Float(19.5)]);
        // By base name from anywhere; a missing value stays missing.
        let e = cat.lookup(Path::new("/elsewhere/y.jpg")).unwrap();
        assert!(e.ra.is_nan());
        assert_eq!(e.props, vec![Prop::Missing]);
        assert!(cat.lookup(Path::new("/elsewhere/z.png")).is_none());
        assert_eq!(cat.files()[0], dir.path().join("a/x.png"));
    }

    #[test]
    fn missing_columns_and_duplicates_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cat.csv");
        std::fs::write(&path, "file,ra,dec\nx.png,1,2\n").unwrap();
        let e = Catalog::read(&path).unwrap_err().to_string();
        assert!(e.contains("no object id column") && e.contains("file, ra, dec"), "{e}");
        std::fs::write(&path, "file,id,ra,dec\nx.png,1,1,2\nx.png,2,1,2\n").unwrap();
        let e = Catalog::read(&path).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("listed twice"), "{e}");
    }
}
