//! Ingest of FITS spectra, FITS cutouts and image folders: values read back
//! through the one reader abstraction against the arrays written, positions
//! from WCS or the catalogue, and bad files reported one line each while the
//! rest goes in.

mod common;

use std::path::{Path, PathBuf};

use common::fits::*;
use common::*;
use oddity::ingest::{IngestOptions, ingest, open_source};
use oddity::progress::NoProgress;
use oddity::store::{ObjectKey, SourceKind, Store};

fn opts(catalog: Option<PathBuf>) -> IngestOptions {
    IngestOptions { catalog, ..Default::default() }
}

/// The stored source whose path ends with `name`, its id, and its object.
fn source_of(s: &Store, name: &str) -> (u32, oddity::store::SourceFile, oddity::store::ObjectRecord) {
    let (id, src) = s
        .sources()
        .unwrap()
        .into_iter()
        .find(|(_, f)| f.path.ends_with(name))
        .unwrap_or_else(|| panic!("{name} stored"));
    let obj = s.object(ObjectKey { file: id, row: 0 }).unwrap().expect("object stored");
    (id, src, obj)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn fits_cutouts_and_spectra_go_in_with_known_values() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("legacy");
    // A grz cube, 16x16 at 0.262"/px, WCS centred on (150.1, 2.2).
    let (bytes, cube_px) = cube("grz", 16, 16, 150.1, 2.2, 0.262, 1.0);
    write(&root.join("cube.fits"), &bytes);
    // HSC-like: empty primary, two band HDUs 24 wide x 20 high at 0.168"/px,
    // a MASK plane that is not a band.
    let (w, h) = (24, 20);
    let g = pattern(1, h, w, 3.0);
    let i = pattern(1, h, w, 7.0);
    let mut mef = empty_primary(&[]);
    let mut g_cards = wcs(34.5, -4.9, 0.168, w, h);
    g_cards.push(card("FILTER", V::Str("HSC-G")));
    mef.extend(image_hdu(false, &[w, h], &g, &g_cards));
    let mut i_cards = wcs(34.5, -4.9, 0.168, w, h);
    i_cards.push(card("FILTER", V::Str("HSC-I")));
    mef.extend(image_hdu(false, &[w, h], &i, &i_cards));
    mef.extend(image_hdu(false, &[w, h], &vec![0.0; w * h], &[card("EXTNAME", V::Str("MASK"))]));
    write(&root.join("mef.fits"), &mef);
    // One band without WCS, placed by the catalogue.
    let plain = pattern(1, 12, 12, 5.0);
    write(&root.join("plain.fit"), &image_hdu(true, &[12, 12], &plain, &[card("FILTER", V::Str("r"))]));
    // An SDSS spectrum.
    let spec = Spec::synthetic(400, "299489677444933632", 150.10001, 2.20001, 0.05);
    write(&root.join("spec-0266-51630-0012.fits"), &spec.bytes());
    // Bad: truncated in the data; no WCS and no catalogue entry; a text file
    // named .fits; absurd dimensions.
    let (full, _) = cube("grz", 16, 16, 150.2, 2.2, 0.262, 1.0);
    write(&root.join("truncated.fits"), &full[..full.len() - 3000]);
    write(&root.join("nowcs.fits"), &image_hdu(true, &[12, 12], &plain, &[]));
    write(&root.join("text.fits"), b"this is not a FITS file");
    let mut huge = empty_primary(&[]);
    huge.truncate(0);
    huge.extend(header(&[
        card("SIMPLE", V::Bool(true)),
        card("BITPIX", V::Int(-32)),
        card("NAXIS", V::Int(3)),
        card("NAXIS1", V::Int(4_000_000_000)),
        card("NAXIS2", V::Int(4_000_000_000)),
        card("NAXIS3", V::Int(5)),
    ]));
    write(&root.join("huge.fits"), &huge);
    let cat = root.join("catalog.csv");
    std::fs::write(&cat, "file,object_id,ra,dec,pixel_scale\nplain.fit,plain-1,10.5,-3.25,0.5\n").unwrap();

    let store_dir = dir.path().join("store");
    let store = Store::open_or_create(&store_dir).unwrap();
    let report = ingest(&store, std::slice::from_ref(&root), &opts(Some(cat.clone())), &NoProgress).unwrap();
    let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(report.objects_added, 4, "{lines:#?}");
    assert_eq!(report.files_failed, 4, "{lines:#?}");
    let line =
        |name: &str| lines.iter().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name}: {lines:#?}")).clone();
    assert!(line("truncated.fits").contains("truncated"), "{lines:#?}");
    assert!(line("nowcs.fits").contains("no WCS"), "{lines:#?}");
    assert!(line("text.fits").contains("not a FITS file"), "{lines:#?}");
    assert!(line("huge.fits").contains("absurd") || line("huge.fits").contains("larger than a cutout"), "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains('\n')));

    // The cube: position from the WCS at the centre, scale, bands, pixels.
    let (_, src, obj) = source_of(&store, "cube.fits");
    assert_eq!(
        (src.kind, src.bands.clone(), src.shape),
        (SourceKind::Images, vec!["g".into(), "r".into(), "z".into()], (16, 16))
    );
    assert!(close(obj.ra, 150.1, 1e-7) && close(obj.dec, 2.2, 1e-7), "{obj:?}");
    assert_eq!(obj.id, "cube");
    let (id, _, _) = source_of(&store, "cube.fits");
    let image = store.image(ObjectKey { file: id, row: 0 }).unwrap().unwrap();
    assert!(image.pixel_scale.iter().all(|s| close(*s as f64, 0.262, 1e-4)), "{:?}", image.pixel_scale);
    let px = open_source(&src).unwrap().read_images(0..1).unwrap();
    assert_eq!(px.data.as_slice().unwrap(), cube_px.as_slice());

    // The MEF: two bands (the mask is not one), non-square.
    let (id, src, obj) = source_of(&store, "mef.fits");
    assert_eq!((src.bands.clone(), src.shape), (vec!["HSC-G".into(), "HSC-I".into()], (20, 24)));
    assert!(close(obj.ra, 34.5, 1e-7) && close(obj.dec, -4.9, 1e-7));
    let px = open_source(&src).unwrap().read_images(0..1).unwrap();
    assert_eq!(px.data.shape(), &[1, 2, 20 * 24]);
    assert_eq!(px.data.as_slice().unwrap(), [g.clone(), i.clone()].concat().as_slice());
    let scale = store.image(ObjectKey { file: id, row: 0 }).unwrap().unwrap().pixel_scale;
    assert!(close(scale[0] as f64, 0.168, 1e-4));

    // No WCS: the catalogue's id, position and pixel scale.
    let (id, src, obj) = source_of(&store, "plain.fit");
    assert_eq!((obj.id.as_str(), obj.ra, obj.dec), ("plain-1", 10.5, -3.25));
    assert_eq!(src.bands, vec!["r".to_string()]);
    assert_eq!(store.image(ObjectKey { file: id, row: 0 }).unwrap().unwrap().pixel_scale, vec![0.5]);

    // The spectrum: id, position and redshift from the object table,
    // wavelengths from loglam, flux/ivar/mask as written.
    let (id, src, obj) = source_of(&store, "spec-0266-51630-0012.fits");
    assert_eq!(src.kind, SourceKind::Spectra);
    assert_eq!(obj.id, "299489677444933632");
    assert!(close(obj.ra, 150.10001, 1e-9) && close(obj.dec, 2.20001, 1e-9));
    let sref = store.spectrum(ObjectKey { file: id, row: 0 }).unwrap().unwrap();
    assert_eq!(sref.z, Some(0.05));
    assert_eq!(sref.n_good, 399, "the masked pixel is not usable");
    let sp = open_source(&src).unwrap().read_spectra(0..1).unwrap();
    let lam: Vec<f32> = spec.loglam.iter().map(|l| 10f32.powf(*l)).collect();
    assert_eq!(sp.lambda.row(0).to_vec(), lam);
    assert_eq!(sp.flux.row(0).to_vec(), spec.flux);
    assert_eq!(sp.ivar.as_ref().unwrap().row(0).to_vec(), spec.ivar);
    assert_eq!(sp.mask.as_ref().unwrap().row(0).to_vec(), spec.and_mask);
    let class = src.columns.iter().position(|c| c == "CLASS").unwrap();
    assert_eq!(obj.props[class], oddity::store::Prop::Text("GALAXY".into()));

    // Idempotent: a second run adds nothing and skips every good file.
    let again = ingest(&store, std::slice::from_ref(&root), &opts(Some(cat)), &NoProgress).unwrap();
    assert_eq!((again.objects_added, again.files_skipped), (0, 4));
    drop(store);

    // The cube and the spectrum cross-match (0.05" apart).
    let out = run(&["--store", store_dir.to_str().unwrap(), "crossmatch"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = Store::open(&store_dir).unwrap();
    let (cube_id, _, _) = source_of(&s, "cube.fits");
    let m = s.spectrum_match(ObjectKey { file: cube_id, row: 0 }).unwrap().expect("matched");
    assert!(m.sep_arcsec < 0.1);
}

fn write_png_grey16(path: &Path, w: u32, h: u32) -> Vec<u16> {
    let v: Vec<u16> = (0..w * h).map(|i| (i * 257 % 65536) as u16).collect();
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w, h, v.clone()).unwrap();
    img.save(path).unwrap();
    v
}

fn write_rgb8(path: &Path, w: u32, h: u32) -> Vec<u8> {
    let v: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    let img = image::RgbImage::from_raw(w, h, v.clone()).unwrap();
    img.save(path).unwrap();
    v
}

#[test]
fn image_folder_with_an_anomalymatch_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cutouts");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let grey = write_png_grey16(&root.join("a.png"), 16, 12);
    let rgb = write_rgb8(&root.join("sub/b.png"), 20, 20);
    write_rgb8(&root.join("c.jpg"), 32, 32);
    let tif = write_rgb8(&root.join("d.tif"), 10, 10);
    write_rgb8(&root.join("nan.png"), 10, 10);
    write_rgb8(&root.join("unlisted.png"), 10, 10);
    let bytes = std::fs::read(root.join("sub/b.png")).unwrap();
    std::fs::write(root.join("broken.png"), &bytes[..bytes.len() / 2]).unwrap();
    write_rgb8(&root.join("tiny.png"), 4, 4);
    let cat = root.join("labels.csv");
    std::fs::write(
        &cat,
        "filename,object_id,ra,dec,mag\n\
         a.png,A,10.0,1.0,18.5\n\
         sub/b.png,B,10.1,1.0,19\n\
         c.jpg,C,10.2,1.0,\n\
         d.tif,D,10.3,1.0,20\n\
         nan.png,N,nan,1.0,20\n\
         broken.png,X,10.4,1.0,20\n\
         tiny.png,T,10.5,1.0,20\n",
    )
    .unwrap();
    let store = Store::open_or_create(&dir.path().join("store")).unwrap();
    let o = IngestOptions { catalog: Some(cat.clone()), pixel_scale: Some(0.2), ..Default::default() };
    let report = ingest(&store, std::slice::from_ref(&root), &o, &NoProgress).unwrap();
    let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(report.objects_added, 4, "{lines:#?}");
    let line =
        |name: &str| lines.iter().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name}: {lines:#?}")).clone();
    assert!(line("nan.png").contains("not finite"), "{lines:#?}");
    assert!(line("unlisted.png").contains("not in the catalogue"), "{lines:#?}");
    assert!(line("broken.png").contains("decode"), "{lines:#?}");
    assert!(line("tiny.png").contains("too small"), "{lines:#?}");
    assert_eq!(lines.len(), 4, "{lines:#?}");

    let (id, src, obj) = source_of(&store, "a.png");
    assert_eq!(
        (obj.id.as_str(), obj.ra, src.bands.clone(), src.shape),
        ("A", 10.0, vec!["grey".to_string()], (12, 16))
    );
    let px = open_source(&src).unwrap().read_images(0..1).unwrap();
    assert_eq!(px.data.as_slice().unwrap(), grey.iter().map(|v| *v as f32).collect::<Vec<_>>().as_slice());
    assert_eq!(store.image(ObjectKey { file: id, row: 0 }).unwrap().unwrap().pixel_scale, vec![0.2]);
    let mag = src.columns.iter().position(|c| c == "mag").unwrap();
    assert_eq!(obj.props[mag], oddity::store::Prop::Float(18.5));

    // RGB becomes three bands, planar: red plane first.
    let (_, src, _) = source_of(&store, "sub/b.png");
    assert_eq!(src.bands, vec!["red", "green", "blue"]);
    let px = open_source(&src).unwrap().read_images(0..1).unwrap();
    let red: Vec<f32> = rgb.chunks(3).map(|p| p[0] as f32).collect();
    assert_eq!(px.data.as_slice().unwrap()[..400], red[..]);
    let (_, src, _) = source_of(&store, "d.tif");
    let px = open_source(&src).unwrap().read_images(0..1).unwrap();
    let blue: Vec<f32> = tif.chunks(3).map(|p| p[2] as f32).collect();
    assert_eq!(px.data.as_slice().unwrap()[200..], blue[..]);
    let (_, src, _) = source_of(&store, "c.jpg");
    assert_eq!(src.shape, (32, 32));

    // With only the catalogue, its own files are ingested (already in).
    let only = ingest(&store, &[], &o, &NoProgress).unwrap();
    assert_eq!((only.objects_added, only.files_skipped), (0, 4));
}

#[test]
fn hdf5_defects_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // (N, H, W) without a band: the message says what was expected and how
    // to declare one band.
    let flat = dir.path().join("flat/x.hdf5");
    std::fs::create_dir_all(flat.parent().unwrap()).unwrap();
    write_image_table(&flat, &ImageTable { n: 4, bad_shape: Some(vec![4, 8, 8]), bands: vec![], ..Default::default() });
    let store = dir.path().join("s1");
    let out = run(&["--store", store.to_str().unwrap(), "ingest", flat.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("`image_array` has shape [4, 8, 8]") && t.contains("--bands NAME"), "{t}");
    assert!(t.contains("nothing went in"), "{t}");
    assert!(!t.contains("the rest went in"), "{t}");
    let out = run(&["--store", store.to_str().unwrap(), "ingest", flat.to_str().unwrap(), "--bands", "r"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = Store::open(&store).unwrap();
    let (_, src) = s.sources().unwrap().into_iter().next().unwrap();
    assert_eq!((src.bands, src.shape), (vec!["r".to_string()], (8, 8)));
    drop(s);

    // (N, H, W) next to a 5-band image_band: image_array is blamed.
    let mixed = dir.path().join("mixed/x.hdf5");
    std::fs::create_dir_all(mixed.parent().unwrap()).unwrap();
    write_image_table(&mixed, &ImageTable { n: 4, bad_shape: Some(vec![4, 8, 8]), ..Default::default() });
    let out = run(&["--store", dir.path().join("s2").to_str().unwrap(), "ingest", mixed.to_str().unwrap()]);
    let t = text(&out);
    assert!(t.contains("field `image_array` has shape [4, 8, 8]") && t.contains("(4, 5, 8, 8)"), "{t}");

    // A path that does not exist, an empty folder: exit 1, a message, no store.
    let s3 = dir.path().join("s3");
    let out = run(&["--store", s3.to_str().unwrap(), "ingest", "/nonexistent/oddity"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no such file or directory") && text(&out).contains("nothing to ingest"),
        "{}",
        text(&out)
    );
    assert!(!s3.exists(), "no store is created for nothing");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&["--store", s3.to_str().unwrap(), "ingest", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no survey files here"), "{}", text(&out));
    assert!(!s3.exists());
}

/// A grz cube of a round Gaussian galaxy (sigma in arcsec) on a grid of
/// `scale` arcsec/px, with a little deterministic noise.
fn galaxy_cube(n: usize, scale: f64, sigma_arcsec: f64, ra: f64, dec: f64, seed: usize) -> Vec<u8> {
    let c = (n as f64 - 1.0) / 2.0;
    let s = sigma_arcsec / scale;
    let data: Vec<f32> = (0..3 * n * n)
        .map(|i| {
            let (b, y, x) = (i / (n * n), (i / n) % n, i % n);
            let r2 = (x as f64 - c).powi(2) + (y as f64 - c).powi(2);
            let noise = (((i * 7919 + seed * 104729) % 1000) as f64 / 1000.0 - 0.5) * 0.2;
            ((1.0 + b as f64) * 50.0 * (-r2 / (2.0 * s * s)).exp() + noise) as f32
        })
        .collect();
    let mut extra = wcs(ra, dec, scale, n, n);
    extra.push(card("BANDS", V::Str("grz")));
    image_hdu(true, &[n, n, 3], &data, &extra)
}

#[test]
fn cutouts_of_different_sizes_and_scales_share_a_store() {
    use oddity::tui::worker::Loader;
    use ratatui_image::picker::Picker;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mixed");
    for i in 0..10 {
        let dec = 1.0 + i as f64 * 0.01;
        write(&root.join(format!("ls-{i}.fits")), &galaxy_cube(32, 0.262, 1.5, 20.0, dec, i));
        write(&root.join(format!("hsc-{i}.fits")), &galaxy_cube(48, 0.168, 1.5, 21.0, dec, i + 100));
    }
    let store_dir = dir.path().join("store");
    let s = store_dir.to_str().unwrap();
    for args in [vec!["ingest", root.to_str().unwrap()], vec!["features"], vec!["score", "--trees", "20"]] {
        let out = run(&[&["--store", s][..], &args[..]].concat());
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let store = std::sync::Arc::new(Store::open(&store_dir).unwrap());
    let schema = store.feature_schema("mixed").unwrap().unwrap();
    let r50 = schema.names.iter().position(|n| n == "r50_arcsec").expect("sizes in arcsec");
    // The same galaxy measures the same in arcsec on both grids (in pixels
    // it would differ by 0.262/0.168 = 1.56).
    let mut by_size: std::collections::BTreeMap<u32, Vec<f32>> = Default::default();
    for (id, src) in store.sources().unwrap() {
        let f = store.features_of(ObjectKey { file: id, row: 0 }).unwrap().expect("features for every cutout");
        by_size.entry(src.shape.0).or_default().push(f.values[r50]);
    }
    let mean = |v: &Vec<f32>| v.iter().sum::<f32>() / v.len() as f32;
    let (small, large) = (mean(&by_size[&32]), mean(&by_size[&48]));
    assert!((small / large - 1.0).abs() < 0.1, "r50 {small}\" vs {large}\"");
    assert!((small - 1.77).abs() < 0.3, "half-light radius of sigma 1.5\": {small}");
    // Both sizes render in the TUI's worker.
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    for (id, src) in store.sources().unwrap().into_iter().take(3).chain(store.sources().unwrap().into_iter().skip(15)) {
        let key = ObjectKey { file: id, row: 0 };
        let c = loader.candidate(key).expect("candidate");
        assert!(c.problem.is_none(), "{:?}", c.problem);
        assert_eq!(c.pixels.len(), 3 * (src.shape.0 * src.shape.1) as usize);
        let area = ratatui::layout::Size { width: 30, height: 15 };
        assert!(loader.encode(key, &Default::default(), area).is_some());
    }
}
