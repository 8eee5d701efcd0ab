//! Which ranking picked each object a retrain's trial showed (team-draft
//! interleaving, see `crate::retrain::trial`): one record per object in the
//! `trials` tree, written when the interleaved stream first reaches it.
//! Only what is needed to credit a label to a ranking is kept here; the
//! trial itself (its two versions, where the interleaving stands) is a note.

use serde::{Deserialize, Serialize};

use super::{ObjectKey, Result, Store};

/// One pick of a trial's interleaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pick {
    /// The trial's id (the challenger's score version).
    pub trial: u32,
    /// Position in the trial's interleaved stream (0 = first shown).
    pub seq: u32,
    /// Picked by the challenger (else by the current ranking).
    pub challenger: bool,
}

impl Store {
    /// Records picks (an object picked again by a later trial is overwritten).
    pub fn put_picks(&self, picks: &[(ObjectKey, Pick)]) -> Result<()> {
        self.put_keyed(&self.trials, picks)?;
        self.flush()
    }

    /// The last pick of an object, in whichever trial.
    pub fn pick_of(&self, key: ObjectKey) -> Result<Option<Pick>> {
        self.get(&self.trials, "trials", key.to_bytes())
    }

    /// A trial's picks in stream order. Reads every pick record: one per
    /// object ever picked by a trial (the objects shown, not the catalogue).
    pub fn picks_of_trial(&self, trial: u32) -> Result<Vec<(ObjectKey, Pick)>> {
        let mut picks = Vec::new();
        for item in self.iter_keyed::<Pick>(&self.trials, "trials") {
            let (key, pick) = item?;
            if pick.trial == trial {
                picks.push((key, pick));
            }
        }
        picks.sort_by_key(|p| p.1.seq);
        Ok(picks)
    }
}
