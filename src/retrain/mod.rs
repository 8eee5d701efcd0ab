//! What every command may know about retrains, without libtorch: the gate
//! that judges a retrained model on held-back labels, the one-retrain-at-a-time
//! lock, and the report of the last retrain that `oddity status` shows. The
//! training itself lives in `learn` (the `oddity-learn` binary).

pub mod gate;
pub mod lock;
pub mod trial;

use serde::{Deserialize, Serialize};

use crate::store::{ScoreVersion, Store, StoreError};
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

/// The note saying a retrain made the current ranking.
pub const NOTE_RANKING: &str = "retrain-ranking";

/// What a ranking made by a retrain was built from (kept in the store while
/// it is current): its version, the forest ranking it combines with, and
/// every label that existed when it was made (none of them can judge it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankingNote {
    pub version: u32,
    pub base: Option<u32>,
    pub labels_seen: Vec<u64>,
}

/// Makes a retrain's kept candidate `info` the ranking, noting what it was
/// built from (by the gate, or when it wins its trial).
pub fn promote(store: &Store, info: &ScoreVersion, base: Option<u32>, labels_seen: Vec<u64>) -> Result<(), StoreError> {
    // The forest ranking stays readable: a combination builds on it.
    if let (Some(b), Some(c)) = (base, store.current_scores()?)
        && b == c.version
    {
        store.keep_scores(&c, "the ranking a retrained one builds on")?;
    }
    store.commit_scores(info)?;
    let note = RankingNote { version: info.version, base, labels_seen };
    store.put_note(NOTE_RANKING, &serde_json::to_string(&note).unwrap_or_default())
}
