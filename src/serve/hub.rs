//! The serving process's side: the store, the team's claims on candidates
//! and its progress, shared by every connected screen (and its own).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ratatui_image::picker::Picker;

use super::wire::Command;
use super::{CandidateMeta, Catalog, Cursor, Histogram, Overview, Page, Team, shared_candidate};
use crate::features::spectral::BptClass;
use crate::store::{LabelEvent, LabelValue, LineSummary, ObjectKey, Store, StoreError};
use crate::tui::Ordering;
use crate::tui::worker::Loader;

/// Runs `status`, `top` or `export` for a connected command: (text, exit code).
pub type Runner = fn(&Store, &Command) -> (String, i32);

#[derive(Default)]
struct State {
    /// Which session was given each candidate (disjoint candidates).
    claims: HashMap<ObjectKey, String>,
    members: HashMap<String, Member>,
    labels: u64,
}

struct Member {
    user: String,
    connections: usize,
    labels: u64,
}

pub struct Hub {
    pub store: Arc<Store>,
    /// Records and drivers for other experts' screens (its cache of forest
    /// models is shared by all of them).
    loader: Mutex<Loader>,
    state: Mutex<State>,
    pub overlap: f64,
    runner: Option<Runner>,
}

impl Hub {
    pub fn new(store: Arc<Store>, overlap: f64, runner: Option<Runner>) -> Arc<Hub> {
        let loader = Mutex::new(Loader::new(store.clone(), Picker::halfblocks()));
        Arc::new(Hub { store, loader, state: Mutex::new(State::default()), overlap: overlap.clamp(0.0, 1.0), runner })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A screen (or command) joins: one session may hold several connections.
    pub fn join(self: &Arc<Self>, session: &str, user: &str, claimed: &[ObjectKey]) -> HubSession {
        let mut st = self.state();
        let m = st.members.entry(session.to_string()).or_insert(Member {
            user: user.to_string(),
            connections: 0,
            labels: 0,
        });
        m.connections += 1;
        for k in claimed {
            st.claims.entry(*k).or_insert_with(|| session.to_string());
        }
        HubSession { hub: self.clone(), session: session.to_string(), user: user.to_string() }
    }

    pub fn run(&self, cmd: &Command) -> (String, i32) {
        match self.runner {
            Some(run) => run(&self.store, cmd),
            None => ("error: this server does not run commands\n".into(), 2),
        }
    }
}

/// One session's view of the hub; what its screen (or connection) uses.
pub struct HubSession {
    hub: Arc<Hub>,
    pub session: String,
    pub user: String,
}

impl HubSession {
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for HubSession {
    fn drop(&mut self) {
        let mut st = self.hub.state();
        let gone = match st.members.get_mut(&self.session) {
            Some(m) => {
                m.connections = m.connections.saturating_sub(1);
                m.connections == 0
            }
            None => false,
        };
        if gone {
            // Its candidates go back to the pool (labelled ones are skipped
            // by every queue anyway).
            let session = self.session.clone();
            st.claims.retain(|_, s| *s != session);
        }
    }
}

impl Catalog for HubSession {
    fn store_path(&self) -> PathBuf {
        self.hub.store.path().to_owned()
    }

    fn label_events_after(&self, after: Option<u64>) -> Result<Vec<(u64, LabelEvent)>, StoreError> {
        Catalog::label_events_after(&*self.hub.store, after)
    }

    /// Durable before it returns; recorded under the peer's own user name.
    fn append_labels(&self, mut events: Vec<LabelEvent>) -> Result<Vec<u64>, StoreError> {
        for e in &mut events {
            e.user = self.user.clone();
        }
        let ids = self.hub.store.append_labels(&events)?;
        let mut st = self.hub.state();
        let mut delta: i64 = 0;
        for e in &events {
            delta += if matches!(e.value, LabelValue::Retract(_)) { -1 } else { 1 };
        }
        st.labels = st.labels.saturating_add_signed(delta);
        if let Some(m) = st.members.get_mut(&self.session) {
            m.labels = m.labels.saturating_add_signed(delta);
        }
        Ok(ids)
    }

    fn overview(&self) -> Result<Overview, StoreError> {
        self.hub.store.overview()
    }

    fn page(&self, ordering: Ordering, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        self.hub.store.page(ordering, cursor, n)
    }

    fn meta(&self, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError> {
        self.hub.loader.lock().unwrap_or_else(|e| e.into_inner()).meta(key)
    }

    fn object_id(&self, key: ObjectKey) -> Result<Option<String>, StoreError> {
        self.hub.store.object_id(key)
    }

    fn find_object(&self, id: &str) -> Result<Option<ObjectKey>, StoreError> {
        self.hub.store.find_object(id)
    }

    fn bpt(&self, key: ObjectKey) -> Result<Option<BptClass>, StoreError> {
        self.hub.store.bpt(key)
    }

    fn line_summary(&self) -> Result<Option<LineSummary>, StoreError> {
        Catalog::line_summary(&*self.hub.store)
    }

    fn histogram(&self, bins: usize, marks: Vec<(ObjectKey, bool)>) -> Result<Histogram, StoreError> {
        self.hub.store.histogram(bins, marks)
    }

    fn rank(&self, key: ObjectKey) -> Result<Option<u64>, StoreError> {
        Catalog::rank(&*self.hub.store, key)
    }

    /// Disjoint by default: a candidate goes to the first screen that asks,
    /// except the overlap sample, which every expert sees.
    fn claim(&self, keys: Vec<ObjectKey>) -> Result<Vec<bool>, StoreError> {
        let overlap = self.hub.overlap;
        let mut st = self.hub.state();
        Ok(keys
            .into_iter()
            .map(|k| {
                if shared_candidate(k, overlap) {
                    return true;
                }
                let owner = st.claims.entry(k).or_insert_with(|| self.session.clone());
                *owner == self.session
            })
            .collect())
    }

    fn team(&self) -> Result<Option<Team>, StoreError> {
        let st = self.hub.state();
        if st.members.len() <= 1 {
            return Ok(None);
        }
        let mut by_user: HashMap<&str, u64> = HashMap::new();
        for m in st.members.values() {
            *by_user.entry(&m.user).or_default() += m.labels;
        }
        let mut by_user: Vec<(String, u64)> = by_user.into_iter().map(|(u, n)| (u.to_string(), n)).collect();
        by_user.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(Some(Team {
            experts: st.members.values().filter(|m| m.connections > 0).count(),
            labels: st.labels,
            by_user,
        }))
    }

    fn overlap(&self) -> f64 {
        self.hub.overlap
    }
}
