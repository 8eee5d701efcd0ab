//! Property test of every reader against damaged input: truncations at many
//! offsets, bit flips in headers and data, absurd dimensions. One ingest run
//! over a folder of good and damaged files must not panic, crash or hang;
//! each damaged file either goes in or gets exactly one one-line error naming
//! it; every good file goes in. A fixed seed and a bounded number of cases
//! keep it in the normal test run (`ODDITY_FUZZ_CASES` for more).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fits::*;
use common::*;
use oddity::store::{ObjectKey, Store};

/// splitmix64: a deterministic stream of mutation choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One damaged copy of `good`: a truncation, bit flips in the first
/// `header` bytes, or bit flips anywhere.
fn mutate(good: &[u8], header: usize, rng: &mut Rng, case: usize) -> (Vec<u8>, String) {
    let mut b = good.to_vec();
    match case % 3 {
        0 => {
            let at = rng.below(b.len());
            b.truncate(at);
            (b, format!("truncated at {at}"))
        }
        1 => {
            let mut what = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(header.min(b.len()));
                b[at] ^= 1 << rng.below(8);
                what.push(at);
            }
            (b, format!("header bits flipped at {what:?}"))
        }
        _ => {
            let mut what = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
                what.push(at);
            }
            (b, format!("bits flipped at {what:?}"))
        }
    }
}

/// Replaces a header card's value (absurd dimensions).
fn set_card(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let pat = format!("{key:<8}=");
    let at = b.windows(pat.len()).position(|w| w == pat.as_bytes()).expect("card present");
    let new = format!("{pat} {value:>20}");
    b[at..at + 80].copy_from_slice(format!("{new:<80}").as_bytes());
    b
}

struct Keep(std::path::PathBuf);
impl Keep {
    fn path(&self) -> &Path {
        &self.0
    }
}

#[test]
fn damaged_files_of_every_format_never_take_the_batch_down() {
    let cases: usize = std::env::var("ODDITY_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    let dir = tempfile::tempdir().unwrap();
    // ODDITY_FUZZ_DIR keeps the files for a look at a failure.
    let dir = match std::env::var("ODDITY_FUZZ_DIR") {
        Ok(d) => tempfile::Builder::new().tempdir_in(d).unwrap().keep(),
        Err(_) => dir.path().to_path_buf(),
    };
    let dir = Keep(dir);
    let good_dir = dir.path().join("good");
    let root = dir.path().join("bad");
    std::fs::create_dir_all(&good_dir).unwrap();
    std::fs::create_dir_all(&root).unwrap();

    // One good file per reader.
    let hdf5 = good_dir.join("good-table.hdf5");
    write_image_table(&hdf5, &ImageTable { n: 6, size: 8, ..Default::default() });
    let (cube_bytes, _) = cube("grz", 16, 16, 150.0, 2.0, 0.262, 1.0);
    let spec_bytes = Spec::synthetic(300, "123", 150.0, 2.0, 0.1).bytes();
    let mut mef = empty_primary(&[]);
    let mut c = wcs(30.0, -1.0, 0.168, 12, 12);
    c.push(card("FILTER", V::Str("HSC-I")));
    mef.extend(image_hdu(false, &[12, 12], &pattern(1, 12, 12, 0.0), &c));
    let goods: Vec<(&str, Vec<u8>, usize)> = vec![
        ("table.hdf5", std::fs::read(&hdf5).unwrap(), 2048),
        ("cube.fits", cube_bytes, 2880),
        ("spec.fits", spec_bytes, 3 * 2880),
        ("mef.fits", mef, 2 * 2880),
    ];
    let mut images = Vec::new();
    for ext in ["png", "jpg", "tif"] {
        let p = good_dir.join(format!("good-img.{ext}"));
        let v: Vec<u8> = (0..24 * 24 * 3).map(|i| (i % 251) as u8).collect();
        image::RgbImage::from_raw(24, 24, v).unwrap().save(&p).unwrap();
        images.push((ext, std::fs::read(&p).unwrap()));
    }
    for (name, bytes, _) in &goods[1..] {
        write(&good_dir.join(format!("good-{name}")), bytes);
    }

    // Damaged copies: `cases` per reader, plus absurd dimensions.
    let mut rng = Rng(0x0DD17);
    let mut damaged = Vec::new();
    for (name, bytes, header) in &goods {
        for case in 0..cases {
            let (b, what) = mutate(bytes, *header, &mut rng, case);
            let file = format!("bad-{case}-{name}");
            write(&root.join(&file), &b);
            damaged.push((file, what));
        }
    }
    for (ext, bytes) in &images {
        for case in 0..cases {
            let (b, what) = mutate(bytes, 64, &mut rng, case);
            let file = format!("bad-{case}-img.{ext}");
            write(&root.join(&file), &b);
            damaged.push((file, what));
        }
    }
    let (cube_bytes, _) = cube("grz", 16, 16, 150.0, 2.0, 0.262, 1.0);
    for (i, (key, value)) in
        [("NAXIS1", "2147483647"), ("NAXIS3", "-5"), ("NAXIS2", "99999999999999999"), ("BITPIX", "7")]
            .iter()
            .enumerate()
    {
        let file = format!("absurd-{i}.fits");
        write(&root.join(&file), &set_card(&cube_bytes, key, value));
        damaged.push((file, format!("{key} = {value}")));
    }
    let mut png = images[0].1.clone();
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes()); // IHDR width
    write(&root.join("absurd-width.png"), &png);
    damaged.push(("absurd-width.png".into(), "PNG width 100000".into()));

    // Every image file is in the catalogue (it has no WCS).
    let mut cat = String::from("file,object_id,ra,dec\n");
    for d in ["good", "bad"] {
        for e in std::fs::read_dir(dir.path().join(d)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if [".png", ".jpg", ".tif"].iter().any(|x| name.ends_with(x)) {
                cat.push_str(&format!("{d}/{name},{d}-{name},10.0,1.0\n"));
            }
        }
    }
    let cat_path = dir.path().join("catalog.csv");
    std::fs::write(&cat_path, cat).unwrap();

    // The good files first (damaged copies of a file share its ids, and a
    // duplicate id is reported, not stored), then the damaged ones.
    let store = dir.path().join("store");
    let ingest = |folder: &Path| -> (std::process::Output, Duration) {
        let started = Instant::now();
        // Output to files: a full pipe nobody reads would block the child.
        let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut child = spawn(
            oddity()
                .args(["--store", store.to_str().unwrap(), "ingest", folder.to_str().unwrap(), "--catalog"])
                .arg(&cat_path)
                .stdout(std::fs::File::create(&out_path).unwrap())
                .stderr(std::fs::File::create(&err_path).unwrap()),
        );
        let limit = Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > limit {
                child.kill().ok();
                panic!("ingest of {} hung past {limit:?}", folder.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = child.wait().unwrap();
        let output = std::process::Output {
            status,
            stdout: std::fs::read(&out_path).unwrap(),
            stderr: std::fs::read(&err_path).unwrap(),
        };
        (output, started.elapsed())
    };
    let (out, _) = ingest(&good_dir);
    assert!(out.status.success(), "{}", text(&out));
    let (out, took) = ingest(&root);
    let t = text(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "crashed ({:?}):\n{t}", out.status);
    assert!(!t.contains("panicked"), "{t}");
    let per_file = took / damaged.len() as u32;
    assert!(per_file < Duration::from_secs(2), "{per_file:?} a file");

    let s = Store::open(&store).unwrap();
    let stored = |name: &str| -> bool {
        let path =
            std::fs::canonicalize(root.join(name)).or_else(|_| std::fs::canonicalize(good_dir.join(name))).unwrap();
        s.source_id(&path.to_string_lossy())
            .unwrap()
            .is_some_and(|id| s.object(ObjectKey { file: id, row: 0 }).unwrap().is_some())
    };
    for name in [
        "good-table.hdf5",
        "good-cube.fits",
        "good-spec.fits",
        "good-mef.fits",
        "good-img.png",
        "good-img.jpg",
        "good-img.tif",
    ] {
        assert!(stored(name), "{name} did not go in:\n{t}");
    }
    let error_lines: Vec<&str> = t.lines().filter(|l| l.starts_with("error: ")).collect();
    for (file, what) in &damaged {
        let lines = error_lines.iter().filter(|l| l.contains(&format!("/{file}:"))).count();
        // A damaged file either goes in (the damage hit pixel values) or is
        // reported once; a multi-row table may also lose single rows.
        if file.ends_with("hdf5") {
            assert!(lines >= 1 || stored(file), "{file} ({what}): neither in nor reported:\n{t}");
        } else {
            assert!(
                (lines == 1) != stored(file),
                "{file} ({what}): {lines} error line(s), stored: {}\n{t}",
                stored(file)
            );
        }
    }
}
