use std::io::Write;
use std::path::Path;

use color_eyre::Result;

use crate::cli::{ExportArgs, ExportFormat};
use crate::store::{LabelBook, ObjectKey, ObjectLabels, Store, Verdict};

/// Writes the science catalogue (every object) as Parquet, FITS or CSV,
/// into a temporary file renamed when complete.
fn catalog(store: &Store, args: &ExportArgs) -> Result<i32> {
    use crate::catalog::{Format, columns, sink, write};
    let format = match &args.out {
        Some(p) => Format::from_path(p).map_err(|e| color_eyre::eyre::eyre!(e))?,
        None => Format::Csv,
    };
    let cols = columns(store)?;
    let tmp = args.out.as_ref().map(|p| {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        p.with_file_name(name)
    });
    let out = sink(format, tmp.as_deref(), &cols).map_err(|e| color_eyre::eyre::eyre!("{}: {e}", show(&tmp)))?;
    let written = write(store, &cols, out).map_err(|e| color_eyre::eyre::eyre!("{}: {e}", show(&tmp)))?;
    if let (Some(tmp), Some(path)) = (&tmp, &args.out) {
        std::fs::rename(tmp, path)?;
        eprintln!(
            "wrote {} objects ({} ranked) x {} columns to {} ({format:?})",
            written.rows,
            written.scored,
            cols.len(),
            path.display()
        );
    }
    Ok(0)
}

fn show(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "stdout".into())
}

const CSV_HEADER: [&str; 14] = [
    "object_id",
    "survey",
    "ra",
    "dec",
    "relevance",
    "verdict",
    "tags",
    "favourite",
    "users",
    "disagreement",
    "last_labelled",
    "score",
    "target_relevance",
    "interesting",
];

/// Writes the current labels (after every undo) in the chosen format; the
/// csv crate quotes ids, tags and users that hold commas, quotes or newlines.
pub fn run(store_path: &Path, args: &ExportArgs) -> Result<i32> {
    if args.format == ExportFormat::Catalog {
        // The catalogue reads every object and may be binary (Parquet, FITS):
        // it is written by a process holding the store, never over the socket.
        return match Store::open(store_path) {
            Ok(store) => catalog(&store, args),
            Err(e @ crate::store::StoreError::Locked { .. }) => Err(color_eyre::eyre::eyre!(
                "{e}; the catalogue export needs the store itself: run it when no triage session serves it"
            )),
            Err(e) => Err(e.into()),
        };
    }
    let format = format!("{:?}", args.format).to_lowercase();
    let cmd = crate::serve::wire::Command::Export { format, image_ext: args.image_ext.clone() };
    let (out, code) =
        super::local_or_served(store_path, cmd, |store| Ok((text(store, args.format, &args.image_ext)?.0, 0)))?;
    if code != 0 {
        return super::finish(&out, code);
    }
    // Counted from the text, which may have come from the serving process.
    let written = csv::Reader::from_reader(out.as_bytes()).records().count();
    match &args.out {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            eprintln!("wrote {written} labelled objects to {}", path.display());
            Ok(0)
        }
        None => super::print(&out),
    }
}

/// The labels in `format`: (text, labelled objects written).
pub(crate) fn text(store: &Store, format: ExportFormat, image_ext: &str) -> Result<(String, usize)> {
    let book = LabelBook::from_events(store.label_events()?);
    let mut rows: Vec<(ObjectKey, &ObjectLabels)> = book.iter().map(|(k, l)| (*k, l)).collect();
    rows.sort_by_key(|(k, _)| *k);
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut written = 0usize;
    match format {
        ExportFormat::Csv => {
            out.write_record(CSV_HEADER)?;
            for (key, l) in &rows {
                let Some(obj) = store.object(*key)? else { continue };
                let score = store.score_of(*key)?.map(|s| format!("{s:.5}")).unwrap_or_default();
                out.write_record(csv_row(&obj, l, score))?;
                written += 1;
            }
        }
        ExportFormat::Astronomaly => {
            // Astronomaly's labels file: id, human_label (relevance 0–5).
            out.write_record(["id", "human_label"])?;
            for (key, l) in &rows {
                let label = l.target().map(|t| t.relevance);
                let (Some(label), Some(obj)) = (label, store.object(*key)?) else { continue };
                out.write_record([obj.id, label.to_string()])?;
                written += 1;
            }
        }
        ExportFormat::Catalog => unreachable!("handled above"),
        ExportFormat::Anomalymatch => {
            // AnomalyMatch's labeled_data.csv: filename,label (anomaly/normal).
            out.write_record(["filename", "label"])?;
            for (key, l) in &rows {
                let label = match l.target() {
                    Some(t) if t.interesting => "anomaly",
                    Some(_) => "normal",
                    None => continue,
                };
                let Some(obj) = store.object(*key)? else { continue };
                out.write_record([format!("{}.{}", obj.id, image_ext).as_str(), label])?;
                written += 1;
            }
        }
    }
    let out = String::from_utf8(out.into_inner().map_err(|e| e.into_error())?)?;
    Ok((out, written))
}

/// One object's row of the full CSV export, in [`CSV_HEADER`] order.
fn csv_row(obj: &crate::store::ObjectRecord, l: &ObjectLabels, score: String) -> [String; 14] {
    let users: Vec<String> = l
        .by_user
        .iter()
        .map(|(u, r, v)| {
            format!("{u}:{}:{}", r.map(|r| r.to_string()).unwrap_or_default(), v.map(verdict_name).unwrap_or(""))
        })
        .collect();
    let target = l.target();
    [
        obj.id.clone(),
        obj.survey.clone(),
        format!("{:.7}", obj.ra),
        format!("{:.7}", obj.dec),
        l.relevance.map(|r| r.to_string()).unwrap_or_default(),
        l.verdict.map(verdict_name).unwrap_or("").to_string(),
        l.tags.iter().cloned().collect::<Vec<_>>().join(";"),
        u8::from(l.favourite).to_string(),
        users.join(";"),
        u8::from(l.disagreement()).to_string(),
        l.last_time.clone(),
        score,
        target.map(|t| t.relevance.to_string()).unwrap_or_default(),
        target.map(|t| u8::from(t.interesting).to_string()).unwrap_or_default(),
    ]
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Anomaly => "anomaly",
        Verdict::Normal => "normal",
        Verdict::Unsure => "unsure",
    }
}
