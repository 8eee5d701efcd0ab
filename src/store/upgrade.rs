//! Maintenance of the engine file. `oddity upgrade-store` copies a store written by oddity's sled engine
//! into the redb engine file, record for record, so that no label, score or
//! object of an existing project is lost. The sled database is kept (renamed
//! `db.sled-old`) until the user removes it.

use std::fs;
use std::path::Path;

use super::{DB_FILE, Result, SLED_DIR, StoreError, TABLES, kv, take_lock, written_by_sled};

/// Records per transaction while copying: bounded memory at any size.
const COPY_BATCH: usize = 10_000;

/// Records copied, per table (tables that were empty are left out).
pub type UpgradeReport = Vec<(&'static str, u64)>;

/// Copies the sled store at `path` into a new engine file; `progress` hears
/// each table as it is done. Refuses a store that is already upgraded or
/// held by another process.
pub fn upgrade_sled_store(path: &Path, progress: &dyn Fn(&str, u64)) -> Result<UpgradeReport> {
    let io = |source| StoreError::Io { path: path.to_owned(), source };
    let sled_dir = path.join(SLED_DIR);
    if path.join(DB_FILE).exists() {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            why: format!("it already has {DB_FILE}: nothing to upgrade"),
        });
    }
    if !written_by_sled(path) {
        return Err(StoreError::Missing(path.to_owned()));
    }
    let _lock = take_lock(path)?;
    let old = |why: String| StoreError::NotAStore { path: path.to_owned(), why: format!("its sled database: {why}") };
    let sled = sled::Config::new().path(&sled_dir).cache_capacity(64 << 20).open().map_err(|e| old(e.to_string()))?;
    // Written beside the final name and renamed once complete and flushed:
    // an upgrade killed half-way leaves the sled store as it was.
    let partial = path.join(format!("{DB_FILE}.partial"));
    if partial.exists() {
        fs::remove_file(&partial).map_err(io)?;
    }
    let engine_err = |source| StoreError::engine(path, source);
    let engine = kv::Engine::open(&partial, &TABLES).map_err(engine_err)?;
    let mut report = Vec::new();
    let present = sled.tree_names();
    for name in TABLES {
        // Tables newer than the sled engine are not in it (and opening them would create them there).
        if !present.iter().any(|t| t.as_ref() == name.as_bytes()) {
            continue;
        }
        let from = sled.open_tree(name).map_err(|e| old(e.to_string()))?;
        let to = engine.tree(name);
        let mut batch = kv::Batch::default();
        let (mut n, mut pending) = (0u64, 0usize);
        for kv in from.iter() {
            let (k, v) = kv.map_err(|e| old(format!("tree {name}: {e}")))?;
            batch.insert(&k, &v);
            n += 1;
            pending += 1;
            if pending == COPY_BATCH {
                to.apply_batch(std::mem::take(&mut batch)).map_err(engine_err)?;
                pending = 0;
            }
        }
        to.apply_batch(batch).map_err(engine_err)?;
        if to.len() as u64 != n {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                tree: name,
                why: format!("{n} records in the sled tree, {} after copying", to.len()),
            });
        }
        if n > 0 {
            progress(name, n);
            report.push((name, n));
        }
    }
    engine.flush().map_err(engine_err)?;
    drop(engine);
    drop(sled);
    fs::rename(&partial, path.join(DB_FILE)).map_err(io)?;
    fs::rename(&sled_dir, path.join(format!("{SLED_DIR}.sled-old"))).map_err(io)?;
    fs::File::open(path).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(report)
}

/// `oddity compact`: shrinks the store's engine file (pages freed by
/// re-scores, merges and dropped versions go back to the disk). Returns the
/// file's size before and after.
pub fn compact_store(path: &Path) -> Result<(u64, u64)> {
    let file = path.join(DB_FILE);
    if !file.exists() {
        return Err(if written_by_sled(path) {
            StoreError::OldEngine { path: path.to_owned() }
        } else {
            StoreError::Missing(path.to_owned())
        });
    }
    let _lock = take_lock(path)?;
    let io = |source| StoreError::Io { path: path.to_owned(), source };
    let before = fs::metadata(&file).map_err(io)?.len();
    kv::compact(&file).map_err(|source| StoreError::engine(path, source))?;
    Ok((before, fs::metadata(&file).map_err(io)?.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LabelEvent, SCHEMA_VERSION, Store};

    /// A store as oddity's sled engine wrote it: schema version, one label.
    fn sled_store(dir: &Path, event: &LabelEvent) {
        let db = sled::open(dir.join(SLED_DIR)).unwrap();
        db.open_tree("meta").unwrap().insert(super::super::META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()).unwrap();
        db.open_tree("labels").unwrap().insert(9_000_001u64.to_be_bytes(), super::super::encode(event)).unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn compacting_keeps_the_labels_and_refuses_a_held_store() {
        let dir = tempfile::tempdir().unwrap();
        let event = crate::store::tests::label_event_for_tests();
        let store = Store::open_or_create(dir.path()).unwrap();
        store.append_label(&event).unwrap();
        let held = compact_store(dir.path()).unwrap_err();
        assert!(matches!(held, StoreError::Locked { .. }), "{held}");
        drop(store);
        let (before, after) = compact_store(dir.path()).unwrap();
        assert!(after <= before, "{before} -> {after}");
        assert_eq!(Store::open(dir.path()).unwrap().label_events_after(0).unwrap().len(), 1);
        let missing = compact_store(&dir.path().join("nowhere")).unwrap_err();
        assert!(matches!(missing, StoreError::Missing(_)), "{missing}");
    }

    #[test]
    fn an_old_store_is_refused_then_upgraded_without_losing_a_label() {
        let dir = tempfile::tempdir().unwrap();
        let event = crate::store::tests::label_event_for_tests();
        sled_store(dir.path(), &event);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::OldEngine { .. }), "{err}");
        assert!(err.to_string().contains("upgrade-store"), "{err}");

        let seen = std::cell::RefCell::new(Vec::new());
        let report = upgrade_sled_store(dir.path(), &|t, n| seen.borrow_mut().push((t.to_string(), n))).unwrap();
        assert_eq!(report, vec![("meta", 1), ("labels", 1)]);
        assert_eq!(seen.borrow().len(), 2);
        assert!(dir.path().join("db.sled-old").exists());

        let store = Store::open(dir.path()).unwrap();
        let events = store.label_events_after(0).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, 9_000_001);
        // New labels go after the old ones.
        let next = store.append_label(&event).unwrap();
        assert_eq!(next, 9_000_002);
        drop(store);
        let again = upgrade_sled_store(dir.path(), &|_, _| {}).unwrap_err();
        assert!(again.to_string().contains("nothing to upgrade"), "{again}");
    }
}
