//! `oddity upgrade-store`: a store from the sled engine into the redb one.

use std::path::Path;

use color_eyre::Result;

use crate::store::upgrade_sled_store;

pub fn run(store: &Path) -> Result<i32> {
    let report = upgrade_sled_store(store, &|table, n| eprintln!("upgrade-store: {table}: {n} records copied"))?;
    let total: u64 = report.iter().map(|(_, n)| n).sum();
    println!(
        "{}: {} records in {} tables copied into this version's format; the old database is kept in {}",
        store.display(),
        crate::cmd::thousands(total),
        report.len(),
        store.join("db.sled-old").display()
    );
    Ok(0)
}
