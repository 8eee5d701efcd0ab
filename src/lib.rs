//! oddity: find the rare, interesting objects among millions of galaxies.
//!
//! Pipeline stages are modules with small public surfaces; `cmd` holds one
//! function per subcommand and `main.rs` only dispatches.

pub mod cli;
pub mod cmd;
pub mod detect;
pub mod eval;
pub mod features;
pub mod ingest;
pub mod learn;
pub mod render;
pub mod serve;
pub mod sky;
pub mod store;
pub mod synth;
pub mod tui;
