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
    let seps: Vec<f64> = pairs.iter().map(|p| p.sep_arcsec).collect();
    let info = CrossmatchInfo {
        radius_arcsec: radius,
        n_images: images.len() as u64,
        n_spectra: spectra.len() as u64,
        n_matches: pairs.len() as u64,
        n_across_partitions: across,
        median_sep_arcsec: median(seps).unwrap_or(f64::NAN),
        time: chrono::Utc::now().to_rfc3339(),
    };
    store.replace_matches(&stored, &info)?;
    tracing::info!(?info, "crossmatch done");
    super::print(&format!("{} in {:.1}s\n", summary(&info), started.elapsed().as_secs_f64()))
}

/// The median (mean of the middle two for an even count); None if empty.
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(0.5 * (v[n / 2 - 1] + v[n / 2])),
    }
}

/// "median separation 0.25\"", or "no pairs" — never NaN.
pub(crate) fn median_text(info: &CrossmatchInfo) -> String {
    if info.n_matches > 0 && info.median_sep_arcsec.is_finite() {
        format!("median separation {:.3}\"", info.median_sep_arcsec)
    } else {
        "no pairs".into()
    }
}

fn summary(info: &CrossmatchInfo) -> String {
    format!(
        "matched {} of {} spectra to {} images within {}\" (one-to-one; {}, {} pairs across HEALPix partitions)",
        info.n_matches,
        info.n_spectra,
        info.n_images,
        info.radius_arcsec,
        median_text(info),
        info.n_across_partitions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_two_pairs_is_their_mean_and_none_is_not_nan() {
        // The issue's case: two pairs at 0.169" and 2.500" printed 2.500".
        assert_eq!(median(vec![2.5, 0.169]), Some(1.3345));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
        let mut info = CrossmatchInfo {
            radius_arcsec: 3.0,
            n_images: 2,
            n_spectra: 2,
            n_matches: 2,
            n_across_partitions: 0,
            median_sep_arcsec: 1.3345,
            time: String::new(),
        };
        assert!(summary(&info).contains("median separation 1.335\""), "{}", summary(&info));
        (info.n_matches, info.median_sep_arcsec) = (0, f64::NAN);
        let s = summary(&info);
        assert!(!s.contains("NaN") && s.contains("no pairs"), "{s}");
    }
}
