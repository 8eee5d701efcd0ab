//! One function per subcommand. Each opens what it needs, does the work
//! through the library modules, and prints for people on stdout/stderr.
//!
//! The learning commands (cmd/learn.rs, cmd/eval.rs) are compiled into the
//! `oddity-learn` binary, not here: [`run`] hands them to it (see lib.rs).

mod crossmatch;
mod export;
mod features;
mod ingest;
mod merge;
mod score;
mod slurm;
pub(crate) mod status;
mod synth;
mod triage;
mod upgrade;

pub(crate) use status::thousands;

use color_eyre::Result;

use crate::cli::{Cli, Command};

/// Runs a parsed command line in `oddity`; the exit code for `main`. The
/// learning commands run in `oddity-learn` with the same arguments.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Synth(args) => synth::run(&args),
        Command::Ingest(args) => ingest::run(&cli.store, &args),
        Command::Crossmatch(args) => crossmatch::run(&cli.store, &args),
        Command::Features => features::run(&cli.store),
        Command::Score(args) => score::run(&cli.store, &args),
        Command::Top(args) => score::top(&cli.store, &args),
        Command::Triage(args) => triage::run(&cli.store, &args),
        Command::Export(args) => export::run(&cli.store, &args),
        Command::Status(args) => status::run(&cli.store, &args),
        Command::Merge(args) => merge::run(&cli.store, &args),
        Command::Slurm(args) => slurm::run(&cli.store, &args),
        Command::UpgradeStore => upgrade::run(&cli.store),
        Command::Compact => upgrade::compact(&cli.store),
        Command::Embed(_) | Command::Pretrain(_) | Command::Retrain(_) | Command::Eval(_) => exec_learner(),
    }
}

/// Runs a reading command (status, top, export) on the store; when a triage
/// session serves the store, the serving process runs it and sends the text.
pub(crate) fn local_or_served(
    store_path: &std::path::Path,
    cmd: crate::serve::wire::Command,
    local: impl FnOnce(&crate::store::Store) -> Result<(String, i32)>,
) -> Result<(String, i32)> {
    use crate::serve::client::{ConnectError, Remote};
    use crate::store::{Store, StoreError};
    match Store::open(store_path) {
        Ok(store) => local(&store),
        Err(locked @ StoreError::Locked { .. }) => {
            let session = format!("{}{}", crate::serve::server::COMMAND_SESSION, std::process::id());
            match Remote::connect(store_path, &session, Vec::new()) {
                Ok(remote) => Ok(remote.run(cmd)?),
                Err(ConnectError::Refused(why)) => Err(color_eyre::eyre::eyre!(why)),
                Err(ConnectError::NoServer(_)) => Err(locked.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// What the serving process runs for a connected command.
pub(crate) fn serve_command(store: &crate::store::Store, cmd: &crate::serve::wire::Command) -> (String, i32) {
    use crate::serve::wire::Command;
    let result = match cmd {
        Command::Status { files } => status::text(store, *files).map(|t| (t, 0)),
        Command::Top { n, tsv } => score::top_text(store, *n, *tsv),
        Command::Export { format, image_ext } => {
            match <crate::cli::ExportFormat as clap::ValueEnum>::from_str(format, true) {
                Ok(f) => export::text(store, f, image_ext).map(|(t, _)| (t, 0)),
                Err(e) => Err(color_eyre::eyre::eyre!(e)),
            }
        }
    };
    result.unwrap_or_else(|e| (format!("error: {e}\n"), 2))
}

/// Prints a command's text: on stdout, or on stderr with its exit code when
/// it failed.
pub(crate) fn finish(text: &str, code: i32) -> Result<i32> {
    if code == 0 {
        print(text)
    } else {
        eprint!("{text}");
        Ok(code)
    }
}

/// Exits with a command's code; an error is one line (its chain) and exit 2.
pub fn exit(result: Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            std::process::exit(2);
        }
    }
}

/// An error and its causes on one line. A cause whose text its error's own
/// message already ends with (a store error quotes its io error) is said once.
fn one_line(err: &color_eyre::Report) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|p| p.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The learning binary's name; it is installed next to `oddity`.
pub const LEARNER: &str = "oddity-learn";

/// Replaces this process with `oddity-learn` and the same arguments (same
/// pid, so whoever waits on or signals `oddity` reaches the learner).
fn exec_learner() -> Result<i32> {
    use color_eyre::eyre::eyre;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let learner = exe.with_file_name(LEARNER);
    if !learner.is_file() {
        return Err(eyre!(
            "{} not found: the learning commands (pretrain, retrain, eval) run in {LEARNER}, \
             built and installed next to oddity (`cargo build --release`, `cargo install --path .`)",
            learner.display()
        ));
    }
    let err = std::process::Command::new(&learner).args(std::env::args_os().skip(1)).exec();
    Err(eyre!("cannot run {}: {err}", learner.display()))
}

/// Logs to `<store>/logs/oddity.log`, never to the terminal (the TUI owns it).
pub fn log_to(dir: &std::path::Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    std::fs::create_dir_all(dir).ok()?;
    let appender = tracing_appender::rolling::never(dir, "oddity.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("ODDITY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(writer).with_ansi(false).with_env_filter(filter).try_init().ok()?;
    Some(guard)
}

/// Stage progress shown on an indicatif bar.
pub(crate) struct Bar(pub indicatif::ProgressBar);

impl crate::progress::Progress for Bar {
    fn set_total(&self, rows: u64) {
        self.0.set_length(rows);
    }
    fn advance(&self, rows: u64) {
        self.0.inc(rows);
    }
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal.
pub fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Writes to stdout; a closed pipe (`oddity status | head`) ends quietly.
pub fn print(text: &str) -> Result<i32> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use crate::store::StoreError;

    #[test]
    fn an_error_is_one_line_that_says_each_cause_once() {
        let io = std::io::Error::other("served by another build");
        let err: color_eyre::Report = StoreError::Io { path: "/data/store".into(), source: io }.into();
        assert_eq!(one_line(&err), "store /data/store: served by another build");
        let wrapped = err.wrap_err("cannot open the store");
        assert_eq!(one_line(&wrapped), "cannot open the store: store /data/store: served by another build");
    }
}
