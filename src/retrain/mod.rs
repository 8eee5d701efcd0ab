//! What every command may know about retrains, without libtorch: the gate
//! that judges a retrained model on held-back labels, the one-retrain-at-a-time
//! lock, and the report of the last retrain that `oddity status` shows. The
//! training itself lives in `learn` (the `oddity-learn` binary).

pub mod gate;
pub mod lock;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
pub use gate::Candidate;
pub use lock::retrain_running;

/// What a retrain did; the last one is kept in the store (`oddity status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainReport {
    pub model: u32,
    pub hash: String,
    /// Labels the CNN learnt from: (interesting, boring).
    pub trained_on: (usize, usize),
    /// Labels held back to judge the candidates: (interesting, boring).
    pub held_back: (usize, usize),
    pub n_scored: usize,
    pub device: String,
    /// The current ranking first, then the CNN and the CNN + current rank
    /// average, each with its held-back AUROC/AUPRC and score version.
    pub candidates: Vec<Candidate>,
    /// The version that became the ranking, if one did.
    pub promoted: Option<u32>,
    /// Why the ranking changed or stayed, for people.
    pub verdict: String,
    /// Image groups (band set) not trained on, and why.
    pub skipped: Vec<String>,
    pub finished: String,
}

impl RetrainReport {
    pub fn candidate(&self, name: &str) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.name == name)
    }
}

/// The last retrain's report, as kept in the store.
pub fn last_report(store: &Store) -> Result<Option<RetrainReport>, StoreError> {
    Ok(store.note(NOTE_LAST)?.and_then(|t| serde_json::from_str(&t).ok()))
}

pub const NOTE_LAST: &str = "retrain-last";
