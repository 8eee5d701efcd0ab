//! Features: morphology, colour and spectral lines.
pub mod lines;
pub mod morphology;
pub mod spectral;
mod stage;

pub use stage::{
    BPT_X, BPT_Y, FEATURES_VERSION, FeatureReport, SPECTRAL_FEATURE_NAMES, compute, reference_band, schema_for,
    spectral_values, summarise_lines,
};
