use std::path::Path;
use std::sync::Arc;

use color_eyre::Result;

use crate::cli::TriageArgs;
use crate::serve::shared::Shared;
use crate::tui::{Filter, Ordering, TriageOptions};

/// Opens the labelling screen: the first on a store serves it to the
/// others, later ones connect. Prints the session summary afterwards.
pub fn run(store_path: &Path, args: &TriageArgs) -> Result<i32> {
    crate::tui::check_terminal()?;
    let session = format!("{}-{}", crate::serve::host_name(), std::process::id());
    let shared = Arc::new(Shared::open(store_path, &session, args.overlap, Some(super::serve_command))?);
    let _log = super::log_to(&store_path.join("logs"));
    tracing::info!("triage: {}", shared.role());
    // Who labels: this process's user when serving, the peer credentials the
    // server saw when connected; never a flag.
    let user = shared.user();
    let opts = TriageOptions {
        graphics: args.graphics.into(),
        keymap: args.keymap.clone(),
        ordering: match args.order.as_str() {
            "id" => Ordering::Id,
            "random" => Ordering::Random,
            "recent" => Ordering::Recent,
            "uncertain" => Ordering::Uncertain,
            _ => Ordering::Score,
        },
        filter: if args.all { Filter::All } else { Filter::Unlabelled },
        user,
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    };
    let local = shared.local_store();
    let summary = crate::tui::run(shared.clone(), local.clone(), &opts)?;
    // The session's labels may decide a retrain's trial (the process that
    // holds the store decides; otherwise the next retrain does).
    let trial_note = match &local {
        Some(store) => crate::retrain::trial::decide(store)?.map(|t| format!("{t}\n")).unwrap_or_default(),
        None => String::new(),
    };
    let retrain_note = trial_note + &after_session(store_path, &args.on_quit, &args.retrain_args, &summary)?;
    let values: Vec<String> = summary.by_value.iter().map(|(k, v)| format!("{v} {k}")).collect();
    super::print(
        &(format!(
            "session: {} labels in {:.1} min ({:.1}/min){}\n{} objects labelled in this store; {}\nthe next retrain will learn from {} interesting and {} boring objects (holding some of each back to check itself).\n",
            summary.labels,
            summary.minutes,
            summary.per_minute,
            if values.is_empty() { String::new() } else { format!(": {}", values.join(", ")) },
            summary.labelled_total,
            saved_note(&summary.not_saved),
            summary.training.0,
            summary.training.1
        ) + &retrain_note),
    )
}

/// Whether every label of the session reached the disk; if not, which did
/// not (the screen said so at the time, and went back to the object).
fn saved_note(not_saved: &[String]) -> String {
    match not_saved {
        [] => "every label is saved.".into(),
        _ => {
            let shown: Vec<&str> = not_saved.iter().take(5).map(String::as_str).collect();
            let more = not_saved.len().saturating_sub(shown.len());
            format!(
                "{} labels were NOT saved ({}{}): label those objects again.",
                not_saved.len(),
                shown.join("; "),
                if more > 0 { format!("; {more} more") } else { String::new() }
            )
        }
    }
}

/// What quitting the labelling screen does about a retrain.
#[derive(Debug, PartialEq)]
enum OnQuit {
    Nothing,
    /// Why no retrain starts, for the summary.
    Explain(String),
    Start,
}

/// A retrain holds back some labels of each class to check the new model
/// against the current ranking, so it starts only with enough of both, and
/// never while another retrain runs (`running`: who holds the lock).
fn on_quit_plan(on_quit: &str, session_labels: usize, training: (usize, usize), running: Option<String>) -> OnQuit {
    let (interesting, boring) = training;
    let min = crate::retrain::gate::MIN_PER_CLASS;
    if session_labels == 0 || on_quit == "never" {
        OnQuit::Nothing
    } else if interesting < min || boring < min {
        OnQuit::Explain(format!(
            "(no retrain yet: it holds back labels of both classes to check the new model, so it needs at least \
             {min} interesting and {min} boring labels; there are {interesting} and {boring})\n"
        ))
    } else if let Some(holder) = running {
        OnQuit::Explain(format!(
            "(a retrain is already running ({holder}); the next one will learn from these labels)\n"
        ))
    } else {
        OnQuit::Start
    }
}

/// Between sessions: a retrain from the new labels, detached from this
/// terminal, that takes the store only for its short final write (so the next
/// labelling session can open at once).
fn after_session(
    store_path: &Path,
    on_quit: &str,
    extra: &str,
    summary: &crate::tui::SessionSummary,
) -> Result<String> {
    match on_quit_plan(on_quit, summary.labels, summary.training, crate::retrain::retrain_running(store_path)) {
        OnQuit::Nothing => return Ok(String::new()),
        OnQuit::Explain(why) => return Ok(why),
        OnQuit::Start => {}
    }
    if on_quit == "ask" {
        use std::io::{BufRead, Write};
        eprint!("retrain the classifier in the background now? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            return Ok(String::new());
        }
    }
    let log_dir = store_path.join("logs");
    std::fs::create_dir_all(&log_dir)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join("retrain.log"))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--store").arg(store_path).args(["retrain", "--batch"]).args(extra.split_whitespace());
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // Its own process group: a Ctrl-C in this shell does not stop it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn()?;
    crate::store::write_retrain_status(
        store_path,
        "starting",
        &format!("started after a labelling session (pid {})", child.id()),
    );
    Ok(format!(
        "retrain started in the background (pid {}); it becomes the ranking only if it ranks held-back labels better; \
         log {}; `oddity status` shows it\n",
        child.id(),
        log_dir.join("retrain.log").display()
    ))
}

#[cfg(test)]
mod tests {
    use super::{OnQuit, on_quit_plan, saved_note};

    #[test]
    fn the_summary_names_labels_that_were_not_saved() {
        assert_eq!(saved_note(&[]), "every label is saved.");
        let lost: Vec<String> = (0..7).map(|i| format!("normal G{i}: No space left on device")).collect();
        let note = saved_note(&lost);
        assert!(note.starts_with("7 labels were NOT saved (normal G0: No space left on device; "), "{note}");
        assert!(note.contains("G4") && !note.contains("G5") && note.contains("; 2 more)"), "{note}");
    }

    #[test]
    fn on_quit_retrains_only_with_labels_to_hold_back_and_no_retrain_running() {
        assert_eq!(on_quit_plan("retrain", 0, (5, 5), None), OnQuit::Nothing);
        assert_eq!(on_quit_plan("never", 4, (5, 5), None), OnQuit::Nothing);
        assert_eq!(on_quit_plan("retrain", 4, (2, 2), None), OnQuit::Start);
        assert_eq!(on_quit_plan("ask", 4, (2, 9), None), OnQuit::Start);
        let OnQuit::Explain(why) = on_quit_plan("retrain", 2, (1, 1), None) else { panic!() };
        assert!(why.contains("at least 2 interesting and 2 boring labels; there are 1 and 1"), "{why}");
        let OnQuit::Explain(why) = on_quit_plan("retrain", 2, (3, 0), None) else { panic!() };
        assert!(why.contains("there are 3 and 0"), "{why}");
        let OnQuit::Explain(why) = on_quit_plan("retrain", 2, (3, 3), Some("pid 7 since noon".into())) else {
            panic!()
        };
        assert!(why.contains("already running (pid 7 since noon)"), "{why}");
    }
}
