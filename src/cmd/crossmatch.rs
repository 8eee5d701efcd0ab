use std::collections::HashMap;
use std::path::Path;

use color_eyre::Result;

use crate::cli::CrossmatchArgs;
use crate::sky::{MatchMode, Radec, crossmatch, parse_radius};
use crate::store::{CrossmatchInfo, SourceKind, Store};

/// Matches every image object to its nearest spectrum within the radius,
/// one-to-one, and replaces the stored matches.
pub fn run(store_path: &Path, args: &CrossmatchArgs) -> Result<i32> {
    let radius = parse_radius(&args.radius).map_err(|e| color_eyre::eyre::eyre!(e))?;
    let store = Store::open(store_path)?;
    let _log = super::log_to(&store.log_dir());
    let started = std::time::Instant::now();
    let images = store.positions(SourceKind::Images)?;
    let spectra = store.positions(SourceKind::Spectra)?;
    let a: Vec<Radec> = images.iter().map(|&(_, ra, dec)| Radec { ra, dec }).collect();
    let b: Vec<Radec> = spectra.iter().map(|&(_, ra, dec)| Radec { ra, dec }).collect();
    let pairs = crossmatch(&a, &b, radius, MatchMode::OneToOne);

    let partition: HashMap<u32, Option<u64>> = store.sources()?.into_iter().map(|(id, s)| (id, s.partition)).collect();
    let stored: Vec<_> = pairs.iter().map(|p| (images[p.a].0, spectra[p.b].0, p.sep_arcsec)).collect();
    let across = stored
        .iter()
        .filter(|(i, s, _)| {
            let (pi, ps) = (partition.get(&i.file).copied().flatten(), partition.get(&s.file).copied().flatten());
            pi.is_some() && ps.is_some() && pi != ps
        })
        .count() as u64;
    let mut seps: Vec<f64> = pairs.iter().map(|p| p.sep_arcsec).collect();
    seps.sort_by(f64::total_cmp);
    let info = CrossmatchInfo {
        radius_arcsec: radius,
        n_images: images.len() as u64,
        n_spectra: spectra.len() as u64,
        n_matches: pairs.len() as u64,
        n_across_partitions: across,
        median_sep_arcsec: seps.get(seps.len() / 2).copied().unwrap_or(f64::NAN),
        time: chrono::Utc::now().to_rfc3339(),
    };
    store.replace_matches(&stored, &info)?;
    tracing::info!(?info, "crossmatch done");
    super::print(&format!(
        "matched {} of {} spectra to {} images within {radius}\" (one-to-one; median separation {:.3}\", {} pairs across HEALPix partitions) in {:.1}s\n",
        info.n_matches,
        info.n_spectra,
        info.n_images,
        info.median_sep_arcsec,
        info.n_across_partitions,
        started.elapsed().as_secs_f64()
    ))
}
