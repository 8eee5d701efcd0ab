//! `oddity-learn`: the commands that need libtorch (pretrain, retrain, eval).
//! `oddity` runs it for them with the same arguments, so that `oddity` itself
//! never links or loads libtorch; given any other command it does what
//! `oddity` does.
//!
//! The libtorch code (src/learn, src/eval and their commands) is compiled
//! into this binary rather than the library: in one crate, the linker would
//! put libtorch into `oddity` too (tests/binaries.rs checks it does not).
//! The modules keep their place in src/ and their `crate::` paths, which the
//! re-exports below resolve to the library.

use clap::Parser;
use oddity::cli::{Cli, Command};
#[allow(unused_imports)] // the crate:: paths of learn/ and eval/ resolve through these
use oddity::{cli, detect, features, ingest, progress, render, retrain, shard, sky, store, synth, tui};

#[path = "../eval/mod.rs"]
pub mod eval;
#[path = "../learn/mod.rs"]
pub mod learn;

// The commands (their `super::` is this crate's root, as `cmd` is theirs in the library).
#[path = "../cmd/eval.rs"]
mod eval_cmd;
#[path = "../cmd/learn.rs"]
mod learn_cmd;
use oddity::cmd::{log_to, print, progress_bar};

fn main() {
    let _ = color_eyre::install();
    let cli = Cli::parse();
    oddity::cmd::exit(match cli.command {
        Command::Embed(args) => learn_cmd::embed(&cli.store, &args),
        Command::Pretrain(args) => learn_cmd::pretrain(&cli.store, &args),
        Command::Retrain(args) => learn_cmd::retrain_cmd(&cli.store, &args),
        Command::Eval(args) => eval_cmd::run_cmd(&cli.store, &args),
        _ => oddity::cmd::run(cli),
    });
}
