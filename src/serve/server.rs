//! The socket: accepts connections, checks who is calling (peer
//! credentials) and answers each connection's requests on a thread of its own.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use super::hub::{Hub, HubSession};
use super::wire::{self, Request, Response};
use super::{Catalog, SOCKET, current_user, host_name, user_name};

/// Commands (status, top, export) say hello with a session starting so.
pub const COMMAND_SESSION: &str = "cmd:";

/// The listening socket; removed when dropped.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Serves `hub` on `<store>/oddity.sock`. The caller holds the store's
    /// lock, so a socket file already there is a dead server's.
    pub fn start(hub: Arc<Hub>) -> std::io::Result<Server> {
        let path = hub.store.path().join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot serve the store on {}: {e}", path.display())))?;
        // Anyone who can reach the directory may connect; who gets in is
        // decided per connection from its peer credentials.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = format!("pid {}, user {}, host {}", std::process::id(), current_user(), host_name());
        let stop2 = stop.clone();
        std::thread::Builder::new().name("oddity-serve".into()).spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(AtomicOrdering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let hub = hub.clone();
                let server = server.clone();
                let _ = std::thread::Builder::new().name("oddity-conn".into()).spawn(move || {
                    if let Err(e) = handle(&hub, stream, &server) {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
        })?;
        tracing::info!(socket = %path.display(), "serving the store to other experts");
        Ok(Server { path, stop })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, AtomicOrdering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a user (uid, groups) may write the directory `dir`, by its mode
/// bits: only they may label in a store.
pub fn may_write(dir: &Path, uid: u32, groups: &[u32]) -> bool {
    let Ok(st) = rustix::fs::stat(dir) else { return false };
    let mode = st.st_mode;
    if uid == 0 {
        return true;
    }
    if uid == st.st_uid {
        return mode & 0o200 != 0;
    }
    if groups.contains(&st.st_gid) {
        return mode & 0o020 != 0;
    }
    mode & 0o002 != 0
}

/// The primary and supplementary groups of a process.
fn groups_of(pid: Option<u32>, gid: u32) -> Vec<u32> {
    let mut groups = vec![gid];
    if let Some(status) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        && let Some(line) = status.lines().find(|l| l.starts_with("Groups:"))
    {
        groups.extend(line["Groups:".len()..].split_whitespace().filter_map(|g| g.parse::<u32>().ok()));
    }
    groups
}

fn handle(hub: &Arc<Hub>, mut stream: UnixStream, server: &str) -> std::io::Result<()> {
    let cred = rustix::net::sockopt::socket_peercred(&stream)?;
    let uid = cred.uid.as_raw();
    let user = user_name(uid);
    let pid = u32::try_from(cred.pid.as_raw_nonzero().get()).ok();
    let dir = hub.store.path();
    if !may_write(dir, uid, &groups_of(pid, cred.gid.as_raw())) {
        let why = format!("user {user} may not write the store directory {}, so may not label in it", dir.display());
        tracing::warn!("refused: {why}");
        return wire::send(&mut stream, &Response::Refused(why));
    }
    let (session, claimed) = match wire::recv(&mut stream) {
        Ok(Request::Hello { session, claimed, protocol }) if protocol == wire::PROTOCOL => (session, claimed),
        Ok(Request::Hello { protocol, .. }) => {
            return wire::send(&mut stream, &Response::Refused(other_build(server, &format!("protocol {protocol}"))));
        }
        Ok(_) => return wire::send(&mut stream, &Response::Refused("expected hello".into())),
        // A build from before the protocol number: its hello is one field short.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return wire::send(&mut stream, &Response::Refused(other_build(server, "an older protocol")));
        }
        Err(e) => return Err(e),
    };
    let member = if session.starts_with(COMMAND_SESSION) { None } else { Some(hub.join(&session, &user, &claimed)) };
    let welcome =
        Response::Welcome { user: user.clone(), overlap: hub.overlap, server: server.into(), protocol: wire::PROTOCOL };
    wire::send(&mut stream, &welcome)?;
    if member.is_some() {
        tracing::info!(%user, %session, "an expert joined");
    }
    loop {
        let request: Request = match wire::recv(&mut stream) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let response = match (&member, request) {
            (_, Request::Run(cmd)) => {
                let (text, code) = hub.run(&cmd);
                Response::Output { text, code }
            }
            (Some(m), request) => dispatch(m, request),
            (None, _) => Response::Error("commands may only run commands".into()),
        };
        wire::send(&mut stream, &response)?;
    }
}

/// Why a client of another build is refused: who serves, what this build
/// speaks, and what the client does.
fn other_build(server: &str, theirs: &str) -> String {
    wire::other_build(&format!("{server}; wire protocol {}, yours speaks {theirs}", wire::PROTOCOL))
}

fn dispatch(s: &HubSession, request: Request) -> Response {
    fn or_error<T>(r: Result<T, crate::store::StoreError>, ok: impl FnOnce(T) -> Response) -> Response {
        match r {
            Ok(v) => ok(v),
            Err(e) => Response::Error(e.to_string()),
        }
    }
    match request {
        Request::Hello { .. } => Response::Error("hello twice".into()),
        Request::Events(after) => or_error(s.label_events_after(after), Response::Events),
        Request::Append(events) => or_error(s.append_labels(events), Response::Ids),
        Request::Overview => or_error(s.overview(), Response::Overview),
        Request::Page(o, c, n) => or_error(s.page(o, c, n.min(4096)), Response::Page),
        Request::Meta(k) => or_error(s.meta(k), |m| Response::Meta(m.map(Box::new))),
        Request::ObjectId(k) => or_error(s.object_id(k), Response::Text),
        Request::FindObject(id) => or_error(s.find_object(&id), Response::Key),
        Request::Bpt(k) => or_error(s.bpt(k), Response::Bpt),
        Request::LineSummary => or_error(s.line_summary(), |l| Response::LineSummary(l.map(Box::new))),
        Request::Histogram(bins, marks) => {
            or_error(s.histogram(bins.min(1 << 16), marks), |h| Response::Histogram(Box::new(h)))
        }
        Request::Rank(k) => or_error(s.rank(k), Response::Rank),
        Request::Claim(keys) => or_error(s.claim(keys), Response::Claims),
        Request::Team => or_error(s.team(), Response::Team),
        Request::Run(_) => Response::Error("unreachable".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};

    use super::may_write;
    use crate::serve::client::{ConnectError, Remote};
    use crate::serve::hub::Hub;
    use crate::serve::server::Server;
    use crate::serve::wire::{self, Request, Response};
    use crate::store::{ObjectKey, Store};

    /// The hello and welcome of a build from before the protocol number.
    #[derive(Serialize, Deserialize)]
    enum OldRequest {
        Hello { session: String, claimed: Vec<ObjectKey> },
    }
    #[derive(Serialize, Deserialize)]
    enum OldResponse {
        Welcome { user: String, overlap: f64, server: String },
    }

    fn refusal(stream: &mut UnixStream) -> String {
        match wire::recv::<Response>(stream).unwrap() {
            Response::Refused(why) => why,
            r => panic!("not refused: {r:?}"),
        }
    }

    #[test]
    fn another_build_is_refused_in_words_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_or_create(&dir.path().join("store")).unwrap());
        let socket = store.path().join(crate::serve::SOCKET);
        let server = Server::start(Hub::new(store.clone(), 0.0, None)).unwrap();
        // A client of an older build (its hello has no protocol), and one of a newer.
        let mut old = UnixStream::connect(&socket).unwrap();
        wire::send(&mut old, &OldRequest::Hello { session: "old".into(), claimed: vec![] }).unwrap();
        let why = refusal(&mut old);
        assert!(
            why.contains("served by another oddity build") && why.contains("yours speaks an older protocol"),
            "{why}"
        );
        assert!(why.contains(&format!("wire protocol {}", wire::PROTOCOL)) && why.contains("pid "), "{why}");
        let mut newer = UnixStream::connect(&socket).unwrap();
        let hello = Request::Hello { session: "new".into(), claimed: vec![], protocol: wire::PROTOCOL + 1 };
        wire::send(&mut newer, &hello).unwrap();
        let why = refusal(&mut newer);
        assert!(why.contains(&format!("yours speaks protocol {}", wire::PROTOCOL + 1)), "{why}");
        // This build's client gets in.
        let remote = Remote::connect(store.path(), "same", Vec::new()).unwrap();
        assert!(remote.server.contains("pid "));
        drop((remote, server));

        // An older build serving the store: this client says so instead of
        // "Hit the end of buffer".
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        let old_server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _: Vec<u8> = {
                let mut len = [0u8; 4];
                std::io::Read::read_exact(&mut s, &mut len).unwrap();
                let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
                std::io::Read::read_exact(&mut s, &mut buf).unwrap();
                buf
            };
            let welcome = OldResponse::Welcome { user: "ann".into(), overlap: 0.0, server: "pid 1".into() };
            wire::send(&mut s, &welcome).unwrap();
        });
        match Remote::connect(store.path(), "new", Vec::new()) {
            Err(ConnectError::Refused(why)) => {
                assert!(why.contains("served by another oddity build (wire protocol older"), "{why}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("connected to an older build"),
        }
        old_server.join().unwrap();
    }

    #[test]
    fn only_users_who_may_write_the_store_get_in() {
        let dir = tempfile::tempdir().unwrap();
        let st = rustix::fs::stat(dir.path()).unwrap();
        let (owner, group) = (st.st_uid, st.st_gid);
        let stranger = owner + 4242;
        let set = |mode: u32| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        set(0o755);
        if owner != 0 {
            assert!(may_write(dir.path(), owner, &[group]));
        }
        assert!(!may_write(dir.path(), stranger, &[stranger]), "others may not write 0755");
        assert!(!may_write(dir.path(), stranger, &[group]), "nor may the group");
        set(0o775);
        assert!(may_write(dir.path(), stranger, &[stranger, group]), "a member of a writing group may");
        assert!(!may_write(dir.path(), stranger, &[stranger]));
        set(0o777);
        assert!(may_write(dir.path(), stranger, &[stranger]));
        assert!(may_write(dir.path(), 0, &[0]), "root may");
    }
}
