//! Features: morphology, colour and spectral lines.
pub mod lines;
