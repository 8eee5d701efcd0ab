//! A connection to the process serving a store.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::wire::{self, Command, Request, Response};
use super::{CandidateMeta, Catalog, Cursor, Histogram, Overview, Page, SOCKET, Team};
use crate::features::spectral::BptClass;
use crate::store::{LabelEvent, LineSummary, ObjectKey, StoreError};
use crate::tui::Ordering;

/// A client of the serving process. Connections are pooled: the screen and
/// its worker each get one, so a slow histogram never holds up a label.
pub struct Remote {
    store_path: PathBuf,
    socket: PathBuf,
    session: String,
    pool: Mutex<Vec<UnixStream>>,
    /// Who the server says we are.
    pub user: String,
    pub overlap: f64,
    /// The serving process: pid, user, host.
    pub server: String,
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nobody serves the store (a command that does not serve holds it, or
    /// the server just died).
    #[error("{0}")]
    NoServer(std::io::Error),
    /// The server said no (e.g. the user may not write the store).
    #[error("{0}")]
    Refused(String),
}

impl Remote {
    pub fn connect(store_path: &Path, session: &str, claimed: Vec<ObjectKey>) -> Result<Remote, ConnectError> {
        let socket = store_path.join(SOCKET);
        let (stream, welcome) = hello(&socket, session, claimed)?;
        let Response::Welcome { user, overlap, server, .. } = welcome else { unreachable!("hello checks") };
        Ok(Remote {
            store_path: store_path.to_owned(),
            socket,
            session: session.to_string(),
            pool: Mutex::new(vec![stream]),
            user,
            overlap,
            server,
        })
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.socket.clone(), source }
    }

    /// One request, one response, on a free connection.
    pub fn call(&self, request: &Request) -> Result<Response, StoreError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut stream = match pooled {
            Some(s) => s,
            None => match hello(&self.socket, &self.session, Vec::new()) {
                Ok((s, _)) => s,
                Err(ConnectError::NoServer(e)) => return Err(self.io(e)),
                Err(ConnectError::Refused(why)) => return Err(self.io(std::io::Error::other(why))),
            },
        };
        wire::send(&mut stream, request).map_err(|e| self.io(e))?;
        let response: Response = wire::recv(&mut stream).map_err(|e| self.io(e))?;
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
        match response {
            Response::Error(why) => Err(self.io(std::io::Error::other(why))),
            r => Ok(r),
        }
    }

    /// Runs a command in the serving process: (output, exit code).
    pub fn run(&self, cmd: Command) -> Result<(String, i32), StoreError> {
        match self.call(&Request::Run(cmd))? {
            Response::Output { text, code } => Ok((text, code)),
            r => Err(self.unexpected(r)),
        }
    }

    fn unexpected(&self, r: Response) -> StoreError {
        self.io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected reply {r:?}")))
    }
}

fn hello(socket: &Path, session: &str, claimed: Vec<ObjectKey>) -> Result<(UnixStream, Response), ConnectError> {
    let mut stream = UnixStream::connect(socket).map_err(ConnectError::NoServer)?;
    wire::send(&mut stream, &Request::Hello { session: session.to_string(), claimed, protocol: wire::PROTOCOL })
        .map_err(ConnectError::NoServer)?;
    let other_build = |theirs: &str| {
        ConnectError::Refused(wire::other_build(&format!("wire protocol {theirs}, this one speaks {}", wire::PROTOCOL)))
    };
    match wire::recv::<Response>(&mut stream) {
        Ok(w @ Response::Welcome { protocol: wire::PROTOCOL, .. }) => Ok((stream, w)),
        Ok(Response::Welcome { protocol, .. }) => Err(other_build(&protocol.to_string())),
        Ok(Response::Refused(why)) => Err(ConnectError::Refused(why)),
        Ok(r) => Err(ConnectError::Refused(format!("unexpected reply {r:?}"))),
        // A build from before the protocol number: its welcome is one field short.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(other_build("older")),
        Err(e) => Err(ConnectError::NoServer(e)),
    }
}

macro_rules! ask {
    ($self:ident, $req:expr, $pat:pat => $val:expr) => {
        match $self.call(&$req)? {
            $pat => Ok($val),
            r => Err($self.unexpected(r)),
        }
    };
}

impl Catalog for Remote {
    fn store_path(&self) -> PathBuf {
        self.store_path.clone()
    }
    fn label_events_after(&self, after: Option<u64>) -> Result<Vec<(u64, LabelEvent)>, StoreError> {
        ask!(self, Request::Events(after), Response::Events(e) => e)
    }
    fn append_labels(&self, events: Vec<LabelEvent>) -> Result<Vec<u64>, StoreError> {
        ask!(self, Request::Append(events), Response::Ids(ids) => ids)
    }
    fn overview(&self) -> Result<Overview, StoreError> {
        ask!(self, Request::Overview, Response::Overview(o) => o)
    }
    fn page(&self, ordering: Ordering, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
        ask!(self, Request::Page(ordering, cursor, n), Response::Page(p) => p)
    }
    fn meta(&self, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError> {
        ask!(self, Request::Meta(key), Response::Meta(m) => m.map(|m| *m))
    }
    fn object_id(&self, key: ObjectKey) -> Result<Option<String>, StoreError> {
        ask!(self, Request::ObjectId(key), Response::Text(t) => t)
    }
    fn find_object(&self, id: &str) -> Result<Option<ObjectKey>, StoreError> {
        ask!(self, Request::FindObject(id.to_string()), Response::Key(k) => k)
    }
    fn bpt(&self, key: ObjectKey) -> Result<Option<BptClass>, StoreError> {
        ask!(self, Request::Bpt(key), Response::Bpt(b) => b)
    }
    fn line_summary(&self) -> Result<Option<LineSummary>, StoreError> {
        ask!(self, Request::LineSummary, Response::LineSummary(s) => s.map(|s| *s))
    }
    fn histogram(&self, bins: usize, marks: Vec<(ObjectKey, bool)>) -> Result<Histogram, StoreError> {
        ask!(self, Request::Histogram(bins, marks), Response::Histogram(h) => *h)
    }
    fn rank(&self, key: ObjectKey) -> Result<Option<u64>, StoreError> {
        ask!(self, Request::Rank(key), Response::Rank(r) => r)
    }
    fn claim(&self, keys: Vec<ObjectKey>) -> Result<Vec<bool>, StoreError> {
        ask!(self, Request::Claim(keys), Response::Claims(c) => c)
    }
    fn team(&self) -> Result<Option<Team>, StoreError> {
        ask!(self, Request::Team, Response::Team(t) => t)
    }
    fn overlap(&self) -> f64 {
        self.overlap
    }
}
