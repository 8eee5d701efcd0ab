use std::collections::HashSet;
use std::path::Path;

use hdf5::types::FixedAscii;
use ndarray::{Array2, ArrayD};

use super::bpt::{self, BptClass};
use super::galaxy::{Kind, flux_to_mag};
use super::spectrum::{MAX_SNR_UNCLASSIFIABLE, MIN_SNR_CLASSIFIABLE};
use super::*;

fn small(n: usize) -> SynthConfig {
    SynthConfig { n_galaxies: n, size: 32, ..SynthConfig::default() }
}

fn hdf5_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hdf5") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_config_gives_identical_data() {
    let cfg = small(200);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sa = write_survey(a.path(), &cfg, &|_| {}).unwrap();
    let sb = write_survey(b.path(), &cfg, &|_| {}).unwrap();
    assert_eq!(sa.files.len(), sb.files.len());
    assert!(sa.n_spectra > 0);
    for (fa, fb) in sa.files.iter().zip(&sb.files) {
        assert_eq!(fa.strip_prefix(a.path()).unwrap(), fb.strip_prefix(b.path()).unwrap());
        let (ha, hb) = (hdf5::File::open(fa).unwrap(), hdf5::File::open(fb).unwrap());
        let name = if ha.link_exists("image_array") { "image_array" } else { "spectrum_flux" };
        let (da, db) = (
            ha.dataset(name).unwrap().read_raw::<f32>().unwrap(),
            hb.dataset(name).unwrap().read_raw::<f32>().unwrap(),
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&da), bits(&db), "{name} differs in {}", fa.display());
        // HDF5 object timestamps are off, so the files are byte-identical too.
        let (ba, bb) = (std::fs::read(fa).unwrap(), std::fs::read(fb).unwrap());
        let first = ba.iter().zip(&bb).position(|(x, y)| x != y);
        assert!(
            ba.len() == bb.len() && first.is_none(),
            "{}: lengths {} {}, first difference at {first:?}",
            fa.display(),
            ba.len(),
            bb.len()
        );
    }
    assert_eq!(std::fs::read(&sa.truth).unwrap(), std::fs::read(&sb.truth).unwrap());
}

#[test]
fn files_have_mmu_columns_and_shapes() {
    let cfg = small(150);
    let dir = tempfile::tempdir().unwrap();
    let calls = std::sync::atomic::AtomicU64::new(0);
    let summary = write_survey(dir.path(), &cfg, &|k| {
        calls.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(calls.into_inner(), 150);
    assert_eq!(summary.files, hdf5_files(dir.path()), "no stray files");
    let (mut n_img, mut n_spec) = (0, 0);
    let depth = sky::depth_of(cfg.nside).unwrap();
    for path in &summary.files {
        let f = hdf5::File::open(path).unwrap();
        let cell: u64 =
            path.parent().unwrap().file_name().unwrap().to_str().unwrap()["healpix=".len()..].parse().unwrap();
        let ra = f.dataset("ra").unwrap().read_1d::<f64>().unwrap();
        let dec = f.dataset("dec").unwrap().read_1d::<f64>().unwrap();
        let hp = f.dataset("healpix").unwrap().read_1d::<i64>().unwrap();
        let n = ra.len();
        for k in 0..n {
            assert!((0.0..360.0).contains(&ra[k]));
            assert_eq!(hp[k] as u64, cell);
            assert_eq!(sky::healpix(depth, ra[k], dec[k]), cell, "partitioned by position");
        }
        if path.starts_with(dir.path().join("hsc/pdr3_synth")) {
            n_img += n;
            f.dataset("object_id").unwrap().read_1d::<i64>().unwrap();
            let img = f.dataset("image_array").unwrap();
            assert_eq!(img.shape(), vec![n, 5, 32, 32]);
            let pixels: ArrayD<f32> = img.read_dyn().unwrap();
            assert!(pixels.iter().any(|v| v.is_finite() && *v != 0.0));
            let bands: Array2<FixedAscii<8>> = f.dataset("image_band").unwrap().read_2d().unwrap();
            assert_eq!(bands.dim(), (n, 5));
            assert_eq!(bands[[0, 0]].as_str(), "HSC-G");
            assert_eq!(bands[[n - 1, 4]].as_str(), "HSC-Y");
            let psf = f.dataset("image_psf_fwhm").unwrap().read_2d::<f32>().unwrap();
            assert!(psf.iter().all(|p| (0.5..=0.9).contains(p)));
            let scale = f.dataset("image_scale").unwrap().read_2d::<f32>().unwrap();
            assert!(scale.iter().all(|s| *s == 0.168f32));
            for c in ["g", "r", "i", "z", "y"] {
                let m = f.dataset(&format!("{c}_cmodel_mag")).unwrap().read_1d::<f32>().unwrap();
                assert!(m.iter().all(|m| (10.0..30.0).contains(m)), "{c}: {m:?}");
            }
            for c in ["i_extendedness_value", "i_sdssshape_shape11"] {
                assert_eq!(f.dataset(c).unwrap().shape(), vec![n]);
            }
        } else {
            n_spec += n;
            let ids = f.dataset("object_id").unwrap().read_1d::<FixedAscii<16>>().unwrap();
            assert!(ids.iter().all(|id| id.as_str().starts_with("sdss-")));
            let l = spectrum::n_pixels();
            for c in ["spectrum_lambda", "spectrum_flux", "spectrum_ivar", "spectrum_lsf_sigma", "spectrum_mask"] {
                assert_eq!(f.dataset(c).unwrap().shape(), vec![n, l], "{c}");
            }
            let lam = f.dataset("spectrum_lambda").unwrap().read_2d::<f32>().unwrap();
            assert!((lam[[0, 0]] - 3800.0).abs() < 0.01 && lam[[n - 1, l - 1]] <= 9200.0);
            let ivar = f.dataset("spectrum_ivar").unwrap().read_2d::<f32>().unwrap();
            let mask = f.dataset("spectrum_mask").unwrap().read_2d::<i32>().unwrap();
            assert!(ivar.iter().zip(mask.iter()).all(|(iv, m)| (*m != 0) == (*iv == 0.0)));
            let z = f.dataset("Z").unwrap().read_1d::<f32>().unwrap();
            assert!(z.iter().all(|z| (0.019..0.251).contains(z)));
            assert_eq!(f.dataset("Z_ERR").unwrap().shape(), vec![n]);
        }
    }
    assert_eq!(n_img, 150);
    assert_eq!(n_spec, summary.n_spectra);
}

#[test]
fn truth_lists_every_object_and_kind() {
    let cfg = SynthConfig { anomaly_fraction: 0.6, ..small(120) };
    let dir = tempfile::tempdir().unwrap();
    let summary = write_survey(dir.path(), &cfg, &|_| {}).unwrap();
    let text = std::fs::read_to_string(&summary.truth).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("object_id,spec_id,kind,interesting,bpt_class,z"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 120);
    assert_eq!(rows.iter().map(|r| r[0]).collect::<HashSet<_>>().len(), 120, "unique ids");
    let kinds: HashSet<&str> = rows.iter().map(|r| r[2]).collect();
    for k in ["normal", "ring", "merger", "lens", "colour", "agn", "trail"] {
        assert!(kinds.contains(k), "no {k}");
    }
    for r in &rows {
        let interesting = !matches!(r[2], "normal" | "trail");
        assert_eq!(r[3], if interesting { "1" } else { "0" });
        assert_eq!(r[1].is_empty(), r[4] == "none");
        if r[2] == "agn" {
            assert!(r[1].starts_with("sdss-") && r[4] == "seyfert");
        }
    }
    assert_eq!(summary.n_anomalies, 72);
    // Spectra: ~15%, plus all the AGN.
    assert_eq!(rows.iter().filter(|r| !r[1].is_empty()).count(), summary.n_spectra);
}

#[test]
fn spectra_land_in_their_bpt_regions() {
    let cfg =
        SynthConfig { n_galaxies: 3000, spectrum_fraction: 0.5, anomaly_fraction: 0.05, ..SynthConfig::default() };
    let gals = plan_survey(&cfg).unwrap();
    let mut seen = HashSet::new();
    for sp in gals.iter().filter_map(|g| g.spectrum.as_ref()) {
        seen.insert(sp.class);
        let bpt_lines = [0, 1, 3, 4].map(|i| sp.lines.get(i));
        if sp.class == BptClass::Unclassifiable {
            for l in bpt_lines.into_iter().flatten() {
                assert!(sp.line_snr(l) <= MAX_SNR_UNCLASSIFIABLE + 1e-9);
            }
            continue;
        }
        let (x, y) = sp.bpt_xy();
        assert_eq!(bpt::classify(x, y), sp.class, "({x}, {y})");
        assert!(bpt::robustly_in(sp.class, x, y));
        for l in bpt_lines {
            assert!(sp.line_snr(l.unwrap()) >= MIN_SNR_CLASSIFIABLE * 0.999);
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
}

#[test]
fn spectra_sit_within_half_an_arcsec_of_their_images() {
    let cfg = SynthConfig { n_galaxies: 2000, ..SynthConfig::default() };
    let gals = plan_survey(&cfg).unwrap();
    let (mut n, mut across) = (0, 0);
    let (mut west, mut east) = (false, false);
    for g in &gals {
        assert!((0.0..360.0).contains(&g.ra));
        west |= g.ra > 358.6;
        east |= g.ra < 1.4;
        if let Some(sp) = &g.spectrum {
            n += 1;
            let sep = sky::separation_arcsec(g.ra, g.dec, sp.ra, sp.dec);
            assert!(sep < 0.5, "{sep}\"");
            across += usize::from(sp.healpix != g.healpix);
        }
    }
    assert_eq!(n, 300);
    assert!(across >= 3, "{across} pairs across cell borders");
    assert!(west && east, "the field straddles RA = 0");
}

#[test]
fn pixels_sum_to_catalogue_flux() {
    let cfg = SynthConfig { n_galaxies: 300, ..SynthConfig::default() };
    let gals = plan_survey(&cfg).unwrap();
    let mut checked = 0;
    for g in gals.iter().filter(|g| g.kind == Kind::Normal && g.components.iter().all(|c| c.own)) {
        // Compact galaxies only: big ones lose light off the cutout edge.
        let compact = g.components.iter().all(|c| match c.shape {
            galaxy::Shape::Sersic { re, n, .. } => re < if n > 2.0 { 3.0 } else { 6.0 },
            _ => true,
        });
        if !compact {
            continue;
        }
        let model = image::render_model(g, cfg.size);
        let npix = cfg.size * cfg.size;
        let own = g.own_flux();
        for b in 0..5 {
            let sum: f64 = model[b * npix..(b + 1) * npix].iter().map(|&v| f64::from(v)).sum();
            assert!((sum / own[b] - 1.0).abs() < 0.03, "band {b}: {sum} vs {}", own[b]);
            // Catalogue magnitudes carry a measurement error that grows
            // for faint objects; allow 4σ of it.
            let (mag, cat) = (flux_to_mag(sum), f64::from(g.mags[b]));
            let sigma = 0.005 + 0.03 * 10f64.powf(0.4 * (cat - 23.0));
            assert!((mag - cat).abs() < 0.04 + 4.0 * sigma, "band {b}: {mag} vs {cat}");
        }
        checked += 1;
    }
    assert!(checked > 20, "{checked}");
}

#[test]
fn rewriting_leaves_no_stale_cells() {
    let dir = tempfile::tempdir().unwrap();
    write_survey(dir.path(), &small(100), &|_| {}).unwrap();
    let coarser = SynthConfig { nside: 16, seed: 7, ..small(60) };
    let summary = write_survey(dir.path(), &coarser, &|_| {}).unwrap();
    assert_eq!(summary.files, hdf5_files(dir.path()));
    assert_eq!(std::fs::read_to_string(&summary.truth).unwrap().lines().count(), 61);
}

#[test]
fn rejects_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        SynthConfig { nside: 48, ..small(10) },
        SynthConfig { size: 8, ..small(10) },
        SynthConfig { spectrum_fraction: 1.5, ..small(10) },
    ] {
        assert!(write_survey(dir.path(), &cfg, &|_| {}).is_err());
    }
}

/// Times the default survey: `cargo test --release --lib synth -- --ignored --nocapture`.
#[test]
#[ignore]
fn default_survey_timing() {
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let s = write_survey(dir.path(), &SynthConfig::default(), &|_| {}).unwrap();
    let bytes: u64 = s.files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    eprintln!(
        "{} images, {} spectra, {} anomalies, {} files, {:.2} GB in {:.2?}",
        s.n_images,
        s.n_spectra,
        s.n_anomalies,
        s.files.len(),
        bytes as f64 / 1e9,
        t.elapsed()
    );
}
