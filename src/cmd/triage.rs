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
        graphics: args.graphics,
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
    let summary = crate::tui::run(shared.clone(), local, &opts)?;
    let retrain_note = after_session(store_path, &args.on_quit, &args.retrain_args, &summary)?;
    let values: Vec<String> = summary.by_value.iter().map(|(k, v)| format!("{v} {k}")).collect();
    super::print(
        &(format!(
            "session: {} labels in {:.1} min ({:.1}/min){}\n{} objects labelled in this store; every label is saved.\nthe next retrain will learn from {} interesting and {} normal objects.\n",
            summary.labels,
            summary.minutes,
            summary.per_minute,
            if values.is_empty() { String::new() } else { format!(": {}", values.join(", ")) },
            summary.labelled_total,
            summary.training.0,
            summary.training.1
        ) + &retrain_note),
    )
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
    let (interesting, normal) = summary.training;
    if summary.labels == 0 || on_quit == "never" {
        return Ok(String::new());
    }
    if interesting == 0 || normal == 0 {
        return Ok("(no retrain yet: it needs both interesting and normal labels)\n".into());
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
    crate::learn::write_status(
        store_path,
        "running",
        &format!("started after a labelling session (pid {})", child.id()),
    );
    Ok(format!(
        "retrain started in the background (pid {}); log {}; `oddity status` shows it\n",
        child.id(),
        log_dir.join("retrain.log").display()
    ))
}
