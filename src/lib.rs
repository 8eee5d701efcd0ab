//! oddity: find the rare, interesting objects among millions of galaxies.
//!
//! Pipeline stages are modules with small public surfaces; `cmd` holds one
//! function per subcommand and `main.rs` only dispatches.
//!
//! The library does not link libtorch, so neither does the `oddity` binary
//! (it starts in milliseconds). What needs libtorch — `learn` (the CNN),
//! `eval` (which retrains it) and their commands — is compiled into the
//! second binary, `oddity-learn` (src/bin/oddity-learn.rs), from src/learn
//! and src/eval; `oddity` runs it for those commands.

pub mod catalog;
pub mod cli;
pub mod cmd;
pub mod detect;
pub mod features;
pub mod ingest;
pub mod progress;
pub mod render;
pub mod retrain;
pub mod serve;
pub mod shard;
pub mod sky;
pub mod store;
pub mod synth;
pub mod tui;
