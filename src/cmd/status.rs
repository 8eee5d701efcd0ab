use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use color_eyre::Result;

use crate::cli::StatusArgs;
use crate::store::{SourceKind, Store};

#[derive(Default)]
struct SurveyCount {
    kind: Option<SourceKind>,
    files: usize,
    partial: usize,
    objects: u64,
    rejected: u64,
    bands: Vec<String>,
    shape: (u32, u32),
}

/// Summarises the store from its per-file records: fast on millions of
/// objects because it never walks the object trees.
pub fn run(store_path: &Path, args: &StatusArgs) -> Result<i32> {
    let cmd = crate::serve::wire::Command::Status { files: args.files };
    match super::local_or_served(store_path, cmd, |store| Ok((text(store, args.files)?, 0))) {
        Ok((text, code)) => super::finish(&text, code),
        // A merge or fit job holds the store while it runs: the jobs still show.
        Err(e)
            if matches!(e.downcast_ref(), Some(crate::store::StoreError::Locked { .. }))
                && crate::shard::slurm::book_path(store_path).exists() =>
        {
            let mut out = format!("store     {e}: showing the jobs only\n");
            for line in crate::shard::slurm::status_lines(store_path) {
                writeln!(out, "jobs      {}", line.trim_start())?;
            }
            super::print(&out)
        }
        Err(e) => Err(e),
    }
}

/// The status report of a store.
pub(crate) fn text(store: &Store, files: bool) -> Result<String> {
    let sources = store.sources()?;
    let mut out = String::new();
    writeln!(out, "store     {} (schema {})", store.path().display(), crate::store::SCHEMA_VERSION)?;
    if let Some(created) = store.created()? {
        writeln!(out, "created   {created}")?;
    }
    let (images, spectra) = write_surveys(&mut out, &sources)?;
    match store.crossmatch_info()? {
        Some(m) => writeln!(
            out,
            "matches   {} image-spectrum pairs within {}\" ({}, {} across partitions)",
            thousands(m.n_matches),
            m.radius_arcsec,
            super::crossmatch::median_text(&m),
            m.n_across_partitions
        )?,
        None if spectra > 0 && images > 0 => writeln!(out, "matches   none yet: run `oddity crossmatch`")?,
        None => {}
    }
    let merged = store.merged_shards()?;
    if !merged.is_empty() {
        writeln!(out, "shards    {} merged (`oddity merge`)", merged.len())?;
    }
    for line in crate::shard::slurm::status_lines(store.path()) {
        writeln!(out, "jobs      {}", line.trim_start())?;
    }
    let n_features = store.feature_count();
    if n_features > 0 {
        writeln!(
            out,
            "features  {} objects (version {})",
            thousands(n_features as u64),
            crate::features::FEATURES_VERSION
        )?;
    } else if images > 0 {
        writeln!(out, "features  none yet: run `oddity features`")?;
    }
    write_lines(&mut out, store)?;
    write_scores(&mut out, store, n_features)?;
    writeln!(out, "labels    {} events", thousands(store.label_count() as u64))?;
    writeln!(out, "models    {}", store.model_count())?;
    write_retrain(&mut out, store)?;
    writeln!(out, "compute   {}", compute_summary())?;
    if files {
        write_files(&mut out, &sources)?;
    }
    Ok(out)
}

/// Files and objects per survey: (images, spectra).
fn write_surveys(out: &mut String, sources: &[(u32, crate::store::SourceFile)]) -> Result<(u64, u64)> {
    let mut by_survey: BTreeMap<String, SurveyCount> = BTreeMap::new();
    for (_, s) in sources {
        let c = by_survey.entry(s.survey.clone()).or_default();
        c.kind = Some(s.kind);
        c.files += 1;
        c.partial += usize::from(!s.complete);
        c.objects += s.n_objects;
        c.rejected += s.n_rejected;
        if c.bands.is_empty() {
            c.bands = s.bands.clone();
            c.shape = s.shape;
        }
    }
    let n_files = sources.len();
    let partial: usize = by_survey.values().map(|c| c.partial).sum();
    writeln!(out, "files     {n_files} ({} complete, {partial} partial)", n_files - partial)?;
    if by_survey.is_empty() {
        writeln!(out, "objects   none yet: run `oddity ingest PATHS…`")?;
    }
    for (survey, c) in &by_survey {
        let what = match c.kind {
            Some(SourceKind::Images) => {
                format!("images  {} bands ({}), {}x{} px", c.bands.len(), c.bands.join(","), c.shape.0, c.shape.1)
            }
            Some(SourceKind::Spectra) => format!("spectra {} pixels", c.shape.0),
            None => String::new(),
        };
        write!(out, "  {survey:<14} {:>10} {what}", thousands(c.objects))?;
        if c.rejected > 0 {
            write!(out, "  ({} rejected)", thousands(c.rejected))?;
        }
        writeln!(out)?;
    }
    let images: u64 = by_survey.values().filter(|c| c.kind == Some(SourceKind::Images)).map(|c| c.objects).sum();
    let spectra: u64 = by_survey.values().filter(|c| c.kind == Some(SourceKind::Spectra)).map(|c| c.objects).sum();
    writeln!(out, "totals    {} images, {} spectra", thousands(images), thousands(spectra))?;
    Ok((images, spectra))
}

/// The emission-line summary: classes, and why spectra were not measured or classified.
fn write_lines(out: &mut String, store: &Store) -> Result<()> {
    if let Some(ls) = store.line_summary()? {
        let classes: Vec<String> =
            ls.by_class.iter().map(|(c, n)| format!("{} {}", c.as_str(), thousands(*n))).collect();
        writeln!(out, "lines     {} spectra: {}", thousands(ls.n_spectra), classes.join(", "))?;
        let list =
            |v: &[(String, u64)]| v.iter().map(|(why, n)| format!("{why} {}", thousands(*n))).collect::<Vec<_>>();
        if !ls.problems.is_empty() {
            let n: u64 = ls.problems.iter().map(|(_, n)| n).sum();
            writeln!(out, "            not measured: {} ({})", thousands(n), list(&ls.problems).join(", "))?;
        }
        let unclassifiable: Vec<(String, u64)> =
            ls.unclassifiable.iter().filter(|(why, _)| !ls.problems.iter().any(|(p, _)| p == why)).cloned().collect();
        if !unclassifiable.is_empty() {
            writeln!(out, "            unclassifiable: {}", list(&unclassifiable).join(", "))?;
        }
    }
    Ok(())
}

/// The current ranking and the models that made it.
fn write_scores(out: &mut String, store: &Store, n_features: usize) -> Result<()> {
    match store.current_scores()? {
        Some(v) => {
            let mut models = Vec::new();
            for id in &v.models {
                if let Some(m) = store.model(*id)? {
                    models.push(format!(
                        "{} model {} for {} (sha256 {})",
                        m.kind,
                        m.id,
                        m.survey,
                        &m.hash[..m.hash.len().min(12)]
                    ));
                }
            }
            writeln!(
                out,
                "scores    {} objects, version {} by {} ({})",
                thousands(v.n_scored),
                v.version,
                v.method,
                v.time
            )?;
            for m in models {
                writeln!(out, "            {m}")?;
            }
        }
        None if n_features > 0 => writeln!(out, "scores    none yet: run `oddity score`")?,
        None => {}
    }
    Ok(())
}

/// The running retrain and the last one's verdict, with the held-back
/// figures of every candidate (why the ranking is what it is).
fn write_retrain(out: &mut String, store: &Store) -> Result<()> {
    if let Some((state, message, time)) = crate::store::read_retrain_status(store.path()) {
        writeln!(out, "retrain   {state}: {message} ({time})")?;
    }
    if let Some(holder) = crate::retrain::retrain_running(store.path()) {
        writeln!(out, "          a retrain is running ({holder})")?;
    }
    if let Some(r) = crate::retrain::last_report(store)? {
        // Why the ranking is what it is, with the held-back figures of every candidate.
        writeln!(
            out,
            "last retrain {}: trained on {} interesting + {} boring labels, judged on {} + {} held back",
            r.finished, r.trained_on.0, r.trained_on.1, r.held_back.0, r.held_back.1
        )?;
        for c in &r.candidates {
            let version = c.version.map(|v| format!("version {v}")).unwrap_or_default();
            let mark = if c.version.is_some() && c.version == r.promoted { "  <- promoted" } else { "" };
            let sure = c.sure.map(|s| format!(", not worse in {:.0}% of resamples", s * 100.0)).unwrap_or_default();
            writeln!(
                out,
                "            {:<9} {:<11} held-out AUROC {:.3} AUPRC {:.3}{sure}{mark}",
                c.name, version, c.auroc, c.auprc
            )?;
        }
        writeln!(out, "            {}", r.verdict)?;
        for s in &r.skipped {
            writeln!(out, "            skipped {s}")?;
        }
    }
    write_trial(out, store)
}

/// The open retrain trial's standing (picks, labelled, interesting per
/// ranking), or how the last one ended.
fn write_trial(out: &mut String, store: &Store) -> Result<()> {
    use crate::retrain::trial::{self, Outcome};
    let Some((t, tally, outcome)) = trial::standing(store)? else { return Ok(()) };
    let who = format!("version {} ({}) against version {}", t.challenger, t.name, t.current);
    if let Some(why) = &t.closed {
        writeln!(out, "last trial {who}, opened {}: {why}", t.opened)?;
        return Ok(());
    }
    let p = match outcome {
        Outcome::Won { p } | Outcome::Lost { p } | Outcome::Open { p } => p,
    };
    let running = if trial::running(store)?.is_some() { "" } else { " (not interleaved: the ranking changed)" };
    writeln!(out, "trial     {who} since {}{running}: triage interleaves the two rankings", t.opened)?;
    for (team, name) in [(1, format!("challenger {}", t.challenger)), (0, format!("current {}", t.current))] {
        writeln!(
            out,
            "            {name:<15} {} picked, {} labelled, {} interesting",
            tally.picked[team], tally.labelled[team], tally.interesting[team]
        )?;
    }
    writeln!(
        out,
        "            {} so far (sign test p {}): it wins with >= {} interesting picks and p <= {}, \
         and is rejected after {} labelled picks",
        tally.score(),
        trial::p_value(p),
        t.rules.min_decisive,
        t.rules.level,
        t.rules.cap
    )?;
    Ok(())
}

/// One line per file (`status --files`).
fn write_files(out: &mut String, sources: &[(u32, crate::store::SourceFile)]) -> Result<()> {
    writeln!(out, "\nfiles:")?;
    for (id, s) in sources {
        writeln!(
            out,
            "  {id:>5} {:<8} {:>8}/{:<8} rows {} {}",
            s.kind.to_string(),
            s.rows_done,
            s.n_rows,
            if s.complete { "complete" } else { "PARTIAL " },
            s.path
        )?;
    }
    Ok(())
}

/// CPU threads and NVIDIA GPUs, read without loading libtorch (only
/// `oddity-learn` loads it; it trains on CUDA where its libtorch has CUDA).
fn compute_summary() -> String {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::fs::read_dir("/proc/driver/nvidia/gpus").map_or(0, |d| d.count()) {
        0 => format!("cpu ({threads} threads; no CUDA device)"),
        gpus => format!("{gpus} NVIDIA GPU(s) visible, {threads} CPU threads"),
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
