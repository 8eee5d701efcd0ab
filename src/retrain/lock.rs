//! One retrain at a time per store: an exclusive lock on `<store>/retrain.lock`
//! (std's `File::try_lock`, released by the kernel when the process ends, even
//! on SIGKILL), holding who took it and when, so a second retrain can say who
//! is in the way.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "retrain.lock";

/// Held while a retrain runs; dropping it lets the next one start.
#[derive(Debug)]
pub struct RetrainLock {
    _file: File,
    path: PathBuf,
}

impl RetrainLock {
    /// Takes the lock, or returns who holds it ("pid 123 since 2026-…") or
    /// why it could not be taken.
    pub fn acquire(store: &Path) -> Result<RetrainLock, String> {
        let path = store.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(holder_text(&mut file)),
            Err(TryLockError::Error(e)) => return Err(format!("{}: {e}", path.display())),
        }
        let who = format!("pid {} since {}", std::process::id(), chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"));
        // Best effort: the lock itself is what excludes, the text only explains.
        let _ =
            file.set_len(0).and_then(|_| file.seek(SeekFrom::Start(0))).and_then(|_| file.write_all(who.as_bytes()));
        Ok(RetrainLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn holder_text(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() { "another process".into() } else { text.to_string() }
}

/// Who runs a retrain on this store right now, if anyone (for the on-quit
/// trigger and `oddity status`): tries the lock without keeping or writing it.
pub fn retrain_running(store: &Path) -> Option<String> {
    let mut file = OpenOptions::new().read(true).write(true).open(store.join(LOCK_FILE)).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(holder_text(&mut file)),
        Err(TryLockError::Error(e)) => Some(format!("unknown: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_learns_who_holds_it_and_gets_it_after_release() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(retrain_running(dir.path()), None);
        let first = RetrainLock::acquire(dir.path()).unwrap();
        // A second open file description conflicts as a second process would.
        let who = RetrainLock::acquire(dir.path()).unwrap_err();
        assert!(who.starts_with(&format!("pid {} since ", std::process::id())), "{who}");
        assert_eq!(retrain_running(dir.path()), Some(who));
        drop(first);
        assert_eq!(retrain_running(dir.path()), None);
        assert!(RetrainLock::acquire(dir.path()).is_ok());
    }
}
