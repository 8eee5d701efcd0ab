//! `oddity upgrade-store` (a store from the sled engine into the redb one)
//! and `oddity compact`.

use std::path::Path;

use color_eyre::Result;

use crate::store::{compact_store, upgrade_sled_store};

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

pub fn compact(store: &Path) -> Result<i32> {
    let (before, after) = compact_store(store)?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("{}: {:.1} MiB -> {:.1} MiB", store.display(), mib(before), mib(after));
    Ok(0)
}
