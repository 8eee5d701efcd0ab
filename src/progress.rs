//! Progress of a pipeline stage (ingest, features, score), reported as it
//! goes: the commands draw it as a bar, tests and benches drop it.

/// Receives progress: total rows once known, then rows done as they go in.
pub trait Progress: Sync {
    fn set_total(&self, _rows: u64) {}
    fn advance(&self, _rows: u64) {}
    fn message(&self, _line: &str) {}
}

/// Progress that goes nowhere (tests, benches).
pub struct NoProgress;
impl Progress for NoProgress {}
