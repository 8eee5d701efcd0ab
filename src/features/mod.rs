//! Features: morphology, colour and spectral lines.
pub mod lines;
pub mod morphology;
pub mod spectral;
mod stage;

pub use stage::{
    FEATURES_VERSION, FeatureReport, SPECTRAL_FEATURE_NAMES, compute, reference_band, schema_for, spectral_values,
};
