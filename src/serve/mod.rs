//! Labelling sprints: one store, several experts at once.
//!
//! One process holds a store at a time (its lock file). The first `oddity triage` on a store
//! holds it and serves it to the others over a Unix socket inside the store
//! directory (`oddity.sock`): later triage sessions and `status`, `top`,
//! `export` connect instead of being refused. What a triage screen needs
//! from the store is the [`Catalog`] trait, implemented by the store itself
//! (one expert, tests), by a [`hub::HubSession`] (the serving process's
//! view, with the team's claims) and by a [`client::Remote`] (a connection);
//! [`shared::Shared`] is what `oddity triage` uses: served or connected, and
//! when the serving process dies, it takes the store over or connects to
//! whoever did.
//!
//! Durability is the store's: a label is appended and flushed by the serving
//! process before the reply that lets a client say "saved". Identity comes
//! from the socket's peer credentials (SO_PEERCRED), and only users who may
//! write the store directory get in.

pub mod client;
pub mod hub;
mod local;
pub mod server;
pub mod shared;
pub mod wire;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::features::spectral::BptClass;
use crate::store::{LabelEvent, LineRecord, LineSummary, ObjectKey, ObjectRecord, ScoreParts, SourceFile, StoreError};
use crate::tui::Ordering;

pub use local::rank_cap;

/// The socket's file name inside the store directory.
pub const SOCKET: &str = "oddity.sock";

/// What the triage screen reads from and writes to a store.
pub trait Catalog: Send + Sync {
    fn store_path(&self) -> PathBuf;
    /// Label events with ids above `after` (every event when `None`), in order.
    fn label_events_after(&self, after: Option<u64>) -> Result<Vec<(u64, LabelEvent)>, StoreError>;
    /// Appends label events; returns their ids once they are on disk.
    fn append_labels(&self, events: Vec<LabelEvent>) -> Result<Vec<u64>, StoreError>;
    /// Counts the screen shows without walking the catalogue.
    fn overview(&self) -> Result<Overview, StoreError>;
    /// The next `n` keys of an ordering after `cursor` (from the indexes).
    fn page(&self, ordering: Ordering, cursor: Cursor, n: usize) -> Result<Page, StoreError>;
    /// Everything the screen shows about an object except pixels and spectrum.
    fn meta(&self, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError>;
    fn object_id(&self, key: ObjectKey) -> Result<Option<String>, StoreError>;
    /// The object to show for an original id, in any survey: the image with
    /// that id; a spectrum's matched image, or the spectrum itself when it
    /// has none (a spectrum-only candidate).
    fn find_object(&self, id: &str) -> Result<Option<ObjectKey>, StoreError>;
    /// BPT class of an image object's matched spectrum, or of a
    /// spectrum-only candidate's own lines.
    fn bpt(&self, key: ObjectKey) -> Result<Option<BptClass>, StoreError>;
    /// The survey's emission-line summary (one stored record), for the BPT view.
    fn line_summary(&self) -> Result<Option<LineSummary>, StoreError>;
    /// The current score distribution in `bins` bins, and the scores of `marks`.
    fn histogram(&self, bins: usize, marks: Vec<(ObjectKey, bool)>) -> Result<Histogram, StoreError>;
    /// An object's rank in score order (1 = most anomalous), counted up to [`rank_cap`].
    fn rank(&self, key: ObjectKey) -> Result<Option<u64>, StoreError>;
    /// Asks to show these candidates; false for those another expert has.
    fn claim(&self, keys: Vec<ObjectKey>) -> Result<Vec<bool>, StoreError> {
        Ok(vec![true; keys.len()])
    }
    /// The team's progress, when several experts share the store.
    fn team(&self) -> Result<Option<Team>, StoreError> {
        Ok(None)
    }
    /// Fraction of candidates every expert sees (to measure agreement).
    fn overlap(&self) -> f64 {
        0.0
    }
}

/// Cheap counts for the position line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Objects in the current score version; None without scores.
    pub scored: Option<u64>,
    /// Image objects (from the per-file records).
    pub images: u64,
}

/// Where an ordering's stream stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cursor {
    Start,
    /// After this index key.
    After(Vec<u8>),
    /// The next position in the seeded permutation.
    Random(u64),
    /// The next position in a retrain trial's interleaved stream.
    Trial(u64),
    /// Two walks away from the decision boundary (0.5): down and up the scores.
    Uncertain {
        low: Option<Vec<u8>>,
        high: Option<Vec<u8>>,
        low_done: bool,
        high_done: bool,
    },
    End,
}

/// One page of keys and where the next starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub keys: Vec<ObjectKey>,
    pub next: Cursor,
    /// The keys come from a retrain trial's blind interleaving of two
    /// rankings: their positions are ranks in neither.
    pub interleaved: bool,
}

/// The store's part of a candidate: records, the file rows to read, drivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateMeta {
    pub key: ObjectKey,
    pub object: ObjectRecord,
    /// The survey file it was ingested from (any format: the screen opens it).
    pub source: SourceFile,
    pub bands: Vec<String>,
    pub shape: (usize, usize),
    pub bad_fraction: f32,
    pub score: Option<f32>,
    /// What made the score (per-group tail probabilities, relevance, artefact score).
    pub parts: Option<ScoreParts>,
    pub drivers: Vec<(String, f32)>,
    pub spectrum: Option<SpectrumMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrumMeta {
    pub key: ObjectKey,
    pub id: String,
    pub source: SourceFile,
    pub sep_arcsec: f64,
    pub lines: Option<LineRecord>,
    pub z: Option<f32>,
}

/// A score histogram, built off the UI thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u64>,
    pub n: u64,
    /// Scores of labelled objects: (score, interesting).
    pub marks: Vec<(f32, bool)>,
}

/// The team's progress in this sprint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Team {
    /// Experts connected now.
    pub experts: usize,
    /// Labels given in this sprint, by everyone.
    pub labels: u64,
    /// (user, labels in this sprint), most first.
    pub by_user: Vec<(String, u64)>,
}

/// Whether every expert is shown this candidate (the overlap sample):
/// a fixed hash of the key, so every process agrees.
pub fn shared_candidate(key: ObjectKey, overlap: f64) -> bool {
    if overlap <= 0.0 {
        return false;
    }
    // splitmix64 finaliser: a well-mixed hash of the key.
    let mut z = key.as_u64().wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z as f64 / u64::MAX as f64) < overlap
}

/// The login name of a user id (NSS-aware), else `uid N`.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

/// The user running this process.
pub fn current_user() -> String {
    user_name(rustix::process::getuid().as_raw())
}

/// This machine's host name.
pub fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_sample_has_the_asked_size() {
        let n = 100_000u32;
        let shared = (0..n).filter(|&r| shared_candidate(ObjectKey { file: 1, row: r }, 0.1)).count();
        assert!((9_000..11_000).contains(&shared), "{shared}");
        assert!(!(0..1000).any(|r| shared_candidate(ObjectKey { file: 1, row: r }, 0.0)));
    }
}
