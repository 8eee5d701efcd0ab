use std::io::Write;
use std::path::Path;

use color_eyre::Result;

use crate::cli::{ExportArgs, ExportFormat};
use crate::store::{LabelBook, ObjectKey, Store, Verdict};

/// Writes the current labels (after every undo) in the chosen format.
pub fn run(store_path: &Path, args: &ExportArgs) -> Result<i32> {
    let format = format!("{:?}", args.format).to_lowercase();
    let cmd = crate::serve::wire::Command::Export { format, image_ext: args.image_ext.clone() };
    let (out, code) =
        super::local_or_served(store_path, cmd, |store| Ok((text(store, args.format, &args.image_ext)?.0, 0)))?;
    if code != 0 {
        return super::finish(&out, code);
    }
    let written = out.lines().count().saturating_sub(1);
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
    let mut rows: Vec<(ObjectKey, &crate::store::ObjectLabels)> = book.iter().map(|(k, l)| (*k, l)).collect();
    rows.sort_by_key(|(k, _)| *k);
    let mut out = String::new();
    let mut written = 0usize;
    match format {
        ExportFormat::Csv => {
            out.push_str(
                "object_id,survey,ra,dec,relevance,verdict,tags,favourite,users,disagreement,last_labelled,score,target_relevance,interesting\n",
            );
            for (key, l) in &rows {
                let Some(obj) = store.object(*key)? else { continue };
                let users: Vec<String> = l
                    .by_user
                    .iter()
                    .map(|(u, r, v)| {
                        format!(
                            "{u}:{}:{}",
                            r.map(|r| r.to_string()).unwrap_or_default(),
                            v.map(verdict_name).unwrap_or("")
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "{},{},{:.7},{:.7},{},{},{},{},{},{},{},{},{},{}\n",
                    csv_field(&obj.id),
                    csv_field(&obj.survey),
                    obj.ra,
                    obj.dec,
                    l.relevance.map(|r| r.to_string()).unwrap_or_default(),
                    l.verdict.map(verdict_name).unwrap_or(""),
                    csv_field(&l.tags.iter().cloned().collect::<Vec<_>>().join(";")),
                    u8::from(l.favourite),
                    csv_field(&users.join(";")),
                    u8::from(l.disagreement()),
                    l.last_time,
                    store.score_of(*key)?.map(|s| format!("{s:.5}")).unwrap_or_default(),
                    l.target().map(|t| t.relevance.to_string()).unwrap_or_default(),
                    l.target().map(|t| u8::from(t.interesting).to_string()).unwrap_or_default(),
                ));
                written += 1;
            }
        }
        ExportFormat::Astronomaly => {
            // Astronomaly's labels file: id, human_label (relevance 0–5).
            out.push_str("id,human_label\n");
            for (key, l) in &rows {
                let label = l.target().map(|t| t.relevance);
                let (Some(label), Some(obj)) = (label, store.object(*key)?) else { continue };
                out.push_str(&format!("{},{label}\n", csv_field(&obj.id)));
                written += 1;
            }
        }
        ExportFormat::Anomalymatch => {
            // AnomalyMatch's labeled_data.csv: filename,label (anomaly/normal).
            out.push_str("filename,label\n");
            for (key, l) in &rows {
                let label = match l.target() {
                    Some(t) if t.interesting => "anomaly",
                    Some(_) => "normal",
                    None => continue,
                };
                let Some(obj) = store.object(*key)? else { continue };
                out.push_str(&format!("{},{label}\n", csv_field(&format!("{}.{}", obj.id, image_ext))));
                written += 1;
            }
        }
    }
    Ok((out, written))
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Anomaly => "anomaly",
        Verdict::Normal => "normal",
        Verdict::Unsure => "unsure",
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}
