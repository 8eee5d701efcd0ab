//! What `oddity triage` uses: the store served by this process, or a
//! connection to the process that serves it; when that process dies, this
//! one takes the store over (or connects to whoever did) and goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::client::{ConnectError, Remote};
use super::hub::{Hub, HubSession, Runner};
use super::server::Server;
use super::{CandidateMeta, Catalog, Cursor, Histogram, Overview, Page, Team, current_user};
use crate::features::spectral::BptClass;
use crate::store::{LabelEvent, LineSummary, ObjectKey, Store, StoreError};
use crate::tui::Ordering;

/// How long a screen keeps trying to reach a store whose server died.
const TAKE_OVER_FOR: Duration = Duration::from_secs(15);

enum Backend {
    Served { session: HubSession, _server: Server },
    Connected(Remote),
}

impl Backend {
    fn catalog(&self) -> &dyn Catalog {
        match self {
            Backend::Served { session, .. } => session,
            Backend::Connected(r) => r,
        }
    }
}

struct Inner {
    generation: u64,
    backend: Backend,
}

pub struct Shared {
    path: PathBuf,
    session: String,
    overlap: f64,
    runner: Option<Runner>,
    inner: RwLock<Inner>,
    /// The newest label event id seen (0: none), to find out after a
    /// take-over whether a label in flight was written.
    last_id: AtomicU64,
}

/// Whether an error means the serving process went away.
fn disconnected(e: &StoreError) -> bool {
    use std::io::ErrorKind::*;
    matches!(e, StoreError::Io { source, .. } if matches!(
        source.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | ConnectionRefused | UnexpectedEof | NotFound
    ))
}

impl Shared {
    /// Takes the store and serves it, or connects to the process serving it.
    pub fn open(path: &Path, session: &str, overlap: f64, runner: Option<Runner>) -> Result<Shared, StoreError> {
        let backend = connect_or_serve(path, session, overlap, runner, Instant::now() + Duration::from_secs(2))?;
        Ok(Shared {
            path: path.to_owned(),
            session: session.to_string(),
            overlap,
            runner,
            inner: RwLock::new(Inner { generation: 0, backend }),
            last_id: AtomicU64::new(0),
        })
    }

    /// The store, when this process serves it.
    pub fn local_store(&self) -> Option<Arc<Store>> {
        match &self.inner.read().unwrap_or_else(|e| e.into_inner()).backend {
            Backend::Served { session, .. } => Some(session.hub().store.clone()),
            Backend::Connected(_) => None,
        }
    }

    /// The name labels are recorded under (the server decides for clients).
    pub fn user(&self) -> String {
        match &self.inner.read().unwrap_or_else(|e| e.into_inner()).backend {
            Backend::Served { .. } => current_user(),
            Backend::Connected(r) => r.user.clone(),
        }
    }

    /// "serving" or who serves, for the log.
    pub fn role(&self) -> String {
        match &self.inner.read().unwrap_or_else(|e| e.into_inner()).backend {
            Backend::Served { .. } => "serving the store".into(),
            Backend::Connected(r) => format!("connected to the server ({})", r.server),
        }
    }

    fn with<T>(&self, f: impl Fn(&dyn Catalog) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let (generation, result) = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            (inner.generation, f(inner.backend.catalog()))
        };
        match result {
            Err(e) if disconnected(&e) => {
                self.take_over(generation)?;
                let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
                f(inner.backend.catalog())
            }
            r => r,
        }
    }

    fn take_over(&self, seen: u64) -> Result<(), StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.generation != seen {
            return Ok(()); // another thread did it
        }
        tracing::warn!("the serving process is gone: taking the store over or connecting to whoever did");
        inner.backend =
            connect_or_serve(&self.path, &self.session, self.overlap, self.runner, Instant::now() + TAKE_OVER_FOR)?;
        inner.generation += 1;
        tracing::info!(
            "{}",
            match &inner.backend {
                Backend::Served { .. } => "now serving the store".to_string(),
                Backend::Connected(r) => format!("connected to the new server ({})", r.server),
            }
        );
        Ok(())
    }

    fn seen(&self, id: u64) {
        self.last_id.fetch_max(id, AtomicOrdering::SeqCst);
    }
}

fn connect_or_serve(
    path: &Path,
    session: &str,
    overlap: f64,
    runner: Option<Runner>,
    deadline: Instant,
) -> Result<Backend, StoreError> {
    loop {
        match Store::open(path) {
            Ok(store) => {
                let hub = Hub::new(Arc::new(store), overlap, runner);
                let server =
                    Server::start(hub.clone()).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
                let session = hub.join(session, &current_user(), &[]);
                return Ok(Backend::Served { session, _server: server });
            }
            Err(locked @ StoreError::Locked { .. }) => match Remote::connect(path, session, Vec::new()) {
                Ok(remote) => return Ok(Backend::Connected(remote)),
                Err(ConnectError::Refused(why)) => {
                    return Err(StoreError::Io { path: path.to_owned(), source: std::io::Error::other(why) });
                }
                // The holder does not serve (e.g. `oddity score`), or a new
                // server is starting: try again for a moment.
                Err(ConnectError::NoServer(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(ConnectError::NoServer(_)) => return Err(locked),
            },
            Err(e) => return Err(e),
        }
    }
}

impl Catalog for Shared {
    fn store_path(&self) -> PathBuf {
        self.path.clone()
    }

    fn label_events_after(&self, after: Option<u64>) -> Result<Vec<(u64, LabelEvent)>, StoreError> {
        let events = self.with(|c| c.label_events_after(after))?;
        if let Some((id, _)) = events.last() {
            self.seen(*id);
        }
        Ok(events)
    }

    /// After a take-over, a label that was in flight may or may not have
    /// reached the disk: look before writing it again.
    fn append_labels(&self, events: Vec<LabelEvent>) -> Result<Vec<u64>, StoreError> {
        let generation = self.inner.read().unwrap_or_else(|e| e.into_inner()).generation;
        let first = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            inner.backend.catalog().append_labels(events.clone())
        };
        let ids = match first {
            Err(e) if disconnected(&e) => {
                self.take_over(generation)?;
                let after = Some(self.last_id.load(AtomicOrdering::SeqCst)).filter(|&i| i > 0);
                let written = self.with(|c| c.label_events_after(after))?;
                let mut ids = Vec::with_capacity(events.len());
                let mut missing = Vec::new();
                for (i, e) in events.iter().enumerate() {
                    let same = |w: &LabelEvent| {
                        w.session == e.session && w.time == e.time && w.object == e.object && w.value == e.value
                    };
                    match written.iter().find(|(_, w)| same(w)) {
                        Some((id, _)) => ids.push(Some(*id)),
                        None => {
                            ids.push(None);
                            missing.push((i, e.clone()));
                        }
                    }
                }
                if !missing.is_empty() {
                    let new = self.with(|c| c.append_labels(missing.iter().map(|m| m.1.clone()).collect()))?;
                    for ((i, _), id) in missing.iter().zip(new) {
                        ids[*i] = Some(id);
                    }
                }
                ids.into_iter().map(|i| i.unwrap_or_default()).collect()
            }
            r => r?,
        };
        if let Some(&max) = ids.iter().max() {
            self.seen(max);
        }
        Ok(ids)
    }

    fn overview(&self) -> Result<Overview, StoreError> {
        self.with(|c| c.overview())
    }
    fn page(&self, ordering: Ordering, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        self.with(|c| c.page(ordering, cursor.clone(), n))
    }
    fn meta(&self, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError> {
        self.with(|c| c.meta(key))
    }
    fn object_id(&self, key: ObjectKey) -> Result<Option<String>, StoreError> {
        self.with(|c| c.object_id(key))
    }
    fn find_object(&self, id: &str) -> Result<Option<ObjectKey>, StoreError> {
        self.with(|c| c.find_object(id))
    }
    fn bpt(&self, key: ObjectKey) -> Result<Option<BptClass>, StoreError> {
        self.with(|c| c.bpt(key))
    }
    fn line_summary(&self) -> Result<Option<LineSummary>, StoreError> {
        self.with(|c| c.line_summary())
    }
    fn histogram(&self, bins: usize, marks: Vec<(ObjectKey, bool)>) -> Result<Histogram, StoreError> {
        self.with(|c| c.histogram(bins, marks.clone()))
    }
    fn rank(&self, key: ObjectKey) -> Result<Option<u64>, StoreError> {
        self.with(|c| c.rank(key))
    }
    fn claim(&self, keys: Vec<ObjectKey>) -> Result<Vec<bool>, StoreError> {
        self.with(|c| c.claim(keys.clone()))
    }
    fn team(&self) -> Result<Option<Team>, StoreError> {
        self.with(|c| c.team())
    }
    fn overlap(&self) -> f64 {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).backend.catalog().overlap()
    }
}
