//! Helpers shared by the integration tests: small MultimodalUniverse-style
//! HDF5 tables written on the spot, and the oddity binary.
#![allow(dead_code)]

pub mod fits;
pub mod pipeline;
pub mod screen;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hdf5::types::{FixedAscii, VarLenUnicode};
use ndarray::{Array1, Array2, Array4};

/// HDF5 opens files without O_CLOEXEC and holds a lock on them: a child
/// spawned by another test thread while a file is being written inherits the
/// descriptor and keeps the file locked for its whole life. Writing files and
/// spawning children take turns.
pub static FORK_GUARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn fork_guard() -> std::sync::MutexGuard<'static, ()> {
    FORK_GUARD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns with the fork guard held.
pub fn spawn(cmd: &mut Command) -> std::process::Child {
    let _g = fork_guard();
    cmd.spawn().expect("spawn oddity")
}

pub fn oddity() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oddity"));
    c.env_remove("ODDITY_STORE");
    c
}

pub fn run(args: &[&str]) -> Output {
    let child = spawn(oddity().args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()));
    child.wait_with_output().expect("run oddity")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// How the object ids of a test table are written.
#[derive(Clone, Copy)]
pub enum Ids {
    Int,
    FixedString,
    VarString,
    /// These ids, as variable-length strings (one per row).
    Given(&'static [&'static str]),
}

pub struct ImageTable {
    pub n: usize,
    pub bands: Vec<&'static str>,
    pub size: usize,
    pub ids: Ids,
    pub first_id: i64,
    pub with_ra: bool,
    /// Rows whose ra is NaN.
    pub nan_ra_rows: Vec<usize>,
    /// Overrides image_array's shape.
    pub bad_shape: Option<Vec<usize>>,
}

impl Default for ImageTable {
    fn default() -> Self {
        ImageTable {
            n: 10,
            bands: vec!["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"],
            size: 8,
            ids: Ids::Int,
            first_id: 1000,
            with_ra: true,
            nan_ra_rows: vec![],
            bad_shape: None,
        }
    }
}

pub fn mmu_path(root: &Path, survey: &str, healpix: u64) -> PathBuf {
    let dir = root.join(survey).join("test_sample").join(format!("healpix={healpix}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("001-of-001.hdf5")
}

pub fn write_image_table(path: &Path, t: &ImageTable) {
    let _g = fork_guard();
    let f = hdf5::File::create(path).unwrap();
    let n = t.n;
    let ids: Vec<i64> = (0..n as i64).map(|i| t.first_id + i).collect();
    match t.ids {
        Ids::Int => {
            f.new_dataset_builder().with_data(&Array1::from(ids.clone())).create("object_id").unwrap();
        }
        Ids::FixedString => {
            let s: Vec<FixedAscii<16>> =
                ids.iter().map(|i| FixedAscii::from_ascii(&format!("obj-{i}")).unwrap()).collect();
            f.new_dataset_builder().with_data(&Array1::from(s)).create("object_id").unwrap();
        }
        Ids::VarString => {
            let s: Vec<VarLenUnicode> = ids.iter().map(|i| format!("gal_{i}_é").parse().unwrap()).collect();
            f.new_dataset_builder().with_data(&Array1::from(s)).create("object_id").unwrap();
        }
        Ids::Given(given) => {
            let s: Vec<VarLenUnicode> = given.iter().map(|id| id.parse().unwrap()).collect();
            f.new_dataset_builder().with_data(&Array1::from(s)).create("object_id").unwrap();
        }
    }
    let mut ra: Vec<f64> = (0..n).map(|i| 150.0 + i as f64 * 1e-3).collect();
    for &r in &t.nan_ra_rows {
        ra[r] = f64::NAN;
    }
    if t.with_ra {
        f.new_dataset_builder().with_data(&Array1::from(ra)).create("ra").unwrap();
    }
    let dec: Vec<f64> = (0..n).map(|i| 2.0 + i as f64 * 1e-3).collect();
    f.new_dataset_builder().with_data(&Array1::from(dec)).create("dec").unwrap();
    let nb = t.bands.len();
    match &t.bad_shape {
        None => {
            let img = Array4::<f32>::from_shape_fn((n, nb, t.size, t.size), |(i, b, y, x)| (i + b + y * x) as f32);
            f.new_dataset_builder().with_data(&img).create("image_array").unwrap();
        }
        Some(shape) => {
            let len: usize = shape.iter().product();
            let img = ndarray::ArrayD::<f32>::from_shape_vec(shape.clone(), vec![1.0; len]).unwrap();
            f.new_dataset_builder().with_data(&img).create("image_array").unwrap();
        }
    }
    if nb > 0 {
        let bands: Vec<FixedAscii<8>> =
            (0..n).flat_map(|_| t.bands.iter().map(|b| FixedAscii::from_ascii(b).unwrap())).collect();
        let bands = Array2::from_shape_vec((n, nb), bands).unwrap();
        f.new_dataset_builder().with_data(&bands).create("image_band").unwrap();
    }
    let mag: Vec<f32> = (0..n).map(|i| 20.0 + i as f32 * 0.1).collect();
    f.new_dataset_builder().with_data(&Array1::from(mag)).create("i_cmodel_mag").unwrap();
    let flag: Vec<i32> = (0..n as i32).collect();
    f.new_dataset_builder().with_data(&Array1::from(flag)).create("i_flag").unwrap();
}

/// Object counts per kind straight from the store's object tree.
pub fn count_objects(store: &Path) -> (usize, usize) {
    let s = oddity::store::Store::open(store).unwrap();
    let mut images = 0;
    let mut spectra = 0;
    for kv in s.iter_objects() {
        let (k, _) = kv.unwrap();
        if s.image(k).unwrap().is_some() {
            images += 1;
        }
        if s.spectrum(k).unwrap().is_some() {
            spectra += 1;
        }
    }
    (images, spectra)
}
