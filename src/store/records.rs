//! Record types kept in the store. Changing any of them incompatibly means
//! bumping [`super::SCHEMA_VERSION`].

use serde::{Deserialize, Serialize};

/// Where an object lives: (source file id, row in that file). Ordered and
/// stable across re-ingests of the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub file: u32,
    pub row: u32,
}

impl ObjectKey {
    pub fn to_bytes(self) -> [u8; 8] {
        (((self.file as u64) << 32) | self.row as u64).to_be_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<ObjectKey> {
        let v = u64::from_be_bytes(bytes.try_into().ok()?);
        Some(ObjectKey { file: (v >> 32) as u32, row: v as u32 })
    }

    pub fn as_u64(self) -> u64 {
        u64::from_be_bytes(self.to_bytes())
    }
}

/// What a source file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    Images,
    Spectra,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Images => "images",
            SourceKind::Spectra => "spectra",
        })
    }
}

/// One ingested survey file. Pixels and spectra stay in it; the store keeps
/// (file, row) references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Canonical absolute path.
    pub path: String,
    /// Survey name (`hsc`, `legacysurvey`, `sdss`…), from the MMU layout.
    pub survey: String,
    /// Sample name (MMU's second directory level), may be empty.
    pub sample: String,
    /// HEALPix partition index from `healpix=N/`, if the path has one.
    pub partition: Option<u64>,
    pub kind: SourceKind,
    /// File size and modification time when ingested, to notice changes.
    pub size: u64,
    pub mtime: i64,
    pub n_rows: u64,
    /// Rows written so far; ingest resumes from here.
    pub rows_done: u64,
    /// Objects stored (rows minus skipped bad rows and duplicates).
    pub n_objects: u64,
    pub n_rejected: u64,
    pub complete: bool,
    /// Names of the 1-D catalogue columns kept as properties, in the order of
    /// [`ObjectRecord::props`].
    pub columns: Vec<String>,
    /// Multi-dimensional columns left in the file (e.g. `image_ivar`).
    pub array_columns: Vec<String>,
    /// Band names (images) in the file's band order.
    pub bands: Vec<String>,
    /// Per-object pixel / spectrum shape: (height, width) or (n_pixels, 0).
    pub shape: (u32, u32),
}

/// A catalogue value of any column type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Prop {
    Float(f64),
    Int(i64),
    Text(String),
    Missing,
}

impl std::fmt::Display for Prop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prop::Float(v) => write!(f, "{v}"),
            Prop::Int(v) => write!(f, "{v}"),
            Prop::Text(s) => f.write_str(s),
            Prop::Missing => f.write_str(""),
        }
    }
}

/// Common fields of every object, image or spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub survey: String,
    /// The survey's own id, as text (integer ids are written in decimal).
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    pub kind: SourceKind,
    /// Catalogue columns, aligned with [`SourceFile::columns`].
    pub props: Vec<Prop>,
}

/// Reference to an object's cutout in its source file plus cheap per-object
/// metadata computed at ingest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRef {
    pub psf_fwhm: Vec<f32>,
    pub pixel_scale: Vec<f32>,
    /// Fraction of non-finite pixels over all bands.
    pub bad_fraction: f32,
    /// Per-band sum of the finite pixels (flux in the cutout, file units).
    pub band_flux: Vec<f32>,
}

/// Reference to an object's spectrum in its source file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrumRef {
    pub z: Option<f32>,
    pub z_err: Option<f32>,
    /// Observed wavelength range (Å) of the pixels with ivar > 0.
    pub lambda_min: f32,
    pub lambda_max: f32,
    /// Pixels usable (ivar > 0, unmasked, finite flux).
    pub n_good: u32,
    /// Median S/N per pixel over the good pixels.
    pub median_snr: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    Image(ImageRef),
    Spectrum(SpectrumRef),
}

/// One row as ingest hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedRow {
    pub key: ObjectKey,
    pub object: ObjectRecord,
    pub payload: Payload,
}

/// What an expert said about an object. Events are appended, never changed:
/// an undo is a [`LabelValue::Retract`] of an earlier event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelEvent {
    pub object: ObjectKey,
    pub value: LabelValue,
    pub tags: Vec<String>,
    pub user: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub session: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LabelValue {
    /// Astronomaly-style relevance 0–5.
    Relevance(u8),
    Anomaly,
    Normal,
    Unsure,
    Favourite(bool),
    Tag,
    /// Withdraws the event with this id.
    Retract(u64),
}

/// One side of an image⇄spectrum match.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatchRecord {
    pub other: ObjectKey,
    pub sep_arcsec: f64,
}

/// How the current cross-match was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossmatchInfo {
    pub radius_arcsec: f64,
    pub n_images: u64,
    pub n_spectra: u64,
    pub n_matches: u64,
    /// Matches whose image and spectrum come from different HEALPix partitions.
    pub n_across_partitions: u64,
    pub median_sep_arcsec: f64,
    pub time: String,
}

/// Names (and version) of the feature vector of one survey's image objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    pub version: u32,
    pub names: Vec<String>,
}

/// An image object's features, aligned with its survey's [`FeatureSchema`];
/// NaN where a feature is undefined (e.g. no matched spectrum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRecord {
    pub values: Vec<f32>,
}

/// How one survey's deep features were made: the backbone, and the PCA that
/// reduces its pooled embedding to a few components (`oddity embed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingSchema {
    pub version: u32,
    /// Component names, `deep_00`…
    pub names: Vec<String>,
    /// The `cnn-pretrain` model record whose backbone embedded the cutouts, and its hash.
    pub model: u32,
    pub hash: String,
    /// Embedding width before the reduction.
    pub dims: usize,
    /// PCA: the mean embedding (dims) and the components (names.len() x dims, row-major).
    pub mean: Vec<f32>,
    pub components: Vec<f32>,
    /// Fraction of the embedding's variance each component holds.
    pub explained: Vec<f32>,
}

/// One measured emission line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LineMeasurement {
    /// Integrated (continuum-subtracted) flux: spectrum flux units × Å
    /// (1e-17 erg/s/cm² for SDSS).
    pub flux: f32,
    pub flux_err: f32,
    /// Rest-frame equivalent width, Å, positive for emission (NaN if the
    /// continuum is not positive).
    pub ew: f32,
    pub snr: f32,
    /// Continuum flux density at the observed line centre.
    pub continuum: f32,
}

/// The lines measured in a spectrum; `None` = outside the wavelength range,
/// too many unusable pixels, or the fit failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpectralLines {
    pub ha: Option<LineMeasurement>,
    pub nii_6585: Option<LineMeasurement>,
    pub hb: Option<LineMeasurement>,
    pub oiii_5008: Option<LineMeasurement>,
    /// The \[OII\]3727+3729 doublet, summed.
    pub oii_3728: Option<LineMeasurement>,
    pub sii_6718: Option<LineMeasurement>,
    pub sii_6733: Option<LineMeasurement>,
}

/// BPT class of a galaxy (Baldwin, Phillips & Terlevich 1981, \[NII\] diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BptClass {
    StarForming,
    Composite,
    Seyfert,
    Liner,
    /// A BPT line is missing or has S/N < 3: no class is guessed.
    Unclassifiable,
}

impl BptClass {
    pub const ALL: [BptClass; 5] =
        [BptClass::StarForming, BptClass::Composite, BptClass::Seyfert, BptClass::Liner, BptClass::Unclassifiable];

    pub fn as_str(&self) -> &'static str {
        match self {
            BptClass::StarForming => "star-forming",
            BptClass::Composite => "composite",
            BptClass::Seyfert => "seyfert",
            BptClass::Liner => "liner",
            BptClass::Unclassifiable => "unclassifiable",
        }
    }
}

/// Why a spectrum's lines could not be measured at all. Stored with the
/// spectrum's [`LineRecord`], counted by [`LineProblem::kind`]
/// in `oddity status` and shown in the TUI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LineProblem {
    /// No catalogue redshift (`Z` missing or NaN).
    NoRedshift,
    /// A redshift no optical line can be measured at.
    BadRedshift(f32),
    /// lambda, flux, ivar, mask lengths.
    LengthMismatch(u32, u32, u32, u32),
    /// Every wavelength is padding (zero, negative or NaN).
    NoWavelengths,
    /// A zero/NaN wavelength between valid ones (padding belongs at the ends).
    WavelengthGap { pixel: u32 },
    /// Two pixels with the same wavelength.
    RepeatedWavelength { pixel: u32, lambda: f32 },
    /// A wavelength below its predecessor (descending or unsorted grids).
    DescendingWavelength { pixel: u32, lambda: f32, previous: f32 },
    /// No pixel with finite flux, ivar > 0 and mask 0.
    NoUsablePixels,
    /// No line's window lies inside the observed range at this redshift.
    OutOfRange { lambda_min: f32, lambda_max: f32, z: f32 },
    /// Line windows are in range but more than half masked, or no fit converged.
    LinesMasked,
}

impl LineProblem {
    /// Short reason, the same for every spectrum with this problem (for counts).
    pub fn kind(&self) -> &'static str {
        match self {
            LineProblem::NoRedshift => "no redshift",
            LineProblem::BadRedshift(_) => "redshift out of range",
            LineProblem::LengthMismatch(..) => "array lengths differ",
            LineProblem::NoWavelengths => "no wavelengths (all padding)",
            LineProblem::WavelengthGap { .. } => "zero/NaN wavelength inside the spectrum",
            LineProblem::RepeatedWavelength { .. } => "repeated wavelengths",
            LineProblem::DescendingWavelength { .. } => "wavelengths not ascending",
            LineProblem::NoUsablePixels => "no usable pixels",
            LineProblem::OutOfRange { .. } => "lines outside the wavelength range",
            LineProblem::LinesMasked => "line windows masked",
        }
    }
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineProblem::BadRedshift(z) => write!(f, "redshift {z} out of range (-0.5 < z < 10)"),
            LineProblem::LengthMismatch(l, fl, iv, m) => {
                write!(f, "array lengths differ: lambda {l}, flux {fl}, ivar {iv}, mask {m}")
            }
            LineProblem::WavelengthGap { pixel } => {
                write!(f, "zero/NaN wavelength at pixel {pixel} between valid ones (padding must be at the ends)")
            }
            LineProblem::RepeatedWavelength { pixel, lambda } => {
                write!(f, "repeated wavelength {lambda} Å at pixel {pixel}")
            }
            LineProblem::DescendingWavelength { pixel, lambda, previous } => {
                write!(f, "wavelengths not ascending: {lambda} Å at pixel {pixel} after {previous} Å")
            }
            LineProblem::OutOfRange { lambda_min, lambda_max, z } => {
                write!(f, "no line inside the observed range {lambda_min:.0}–{lambda_max:.0} Å at z = {z:.4}")
            }
            other => f.write_str(other.kind()),
        }
    }
}

/// A spectrum's emission-line measurements and BPT class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineRecord {
    pub lines: SpectralLines,
    pub bpt: BptClass,
    /// (log [NII]/Hα, log [OIII]/Hβ) when classifiable.
    pub bpt_xy: Option<(f64, f64)>,
    pub z: Option<f32>,
    /// Why no line could be measured (then every line is `None`).
    pub problem: Option<LineProblem>,
}

/// Counts of the survey's spectra on a grid over the BPT diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BptDensity {
    /// Bounds of x = log [NII]/Hα and y = log [OIII]/Hβ covered.
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub nx: u32,
    pub ny: u32,
    /// Row-major from the lowest y; points outside the bounds land in the
    /// edge bins.
    pub counts: Vec<u32>,
}

impl BptDensity {
    pub fn new(x: (f64, f64), y: (f64, f64), nx: u32, ny: u32) -> BptDensity {
        BptDensity { x, y, nx, ny, counts: vec![0; (nx * ny) as usize] }
    }

    /// Bin (column, row) of a point.
    pub fn bin(&self, x: f64, y: f64) -> (u32, u32) {
        let f = |v: f64, (lo, hi): (f64, f64), n: u32| {
            (((v - lo) / (hi - lo) * n as f64).floor().max(0.0) as u32).min(n - 1)
        };
        (f(x, self.x, self.nx), f(y, self.y, self.ny))
    }

    pub fn add(&mut self, x: f64, y: f64) {
        if x.is_finite() && y.is_finite() {
            let (i, j) = self.bin(x, y);
            self.counts[(j * self.nx + i) as usize] += 1;
        }
    }

    pub fn count(&self, i: u32, j: u32) -> u32 {
        self.counts[(j * self.nx + i) as usize]
    }
}

/// Survey-wide summary of the line measurements, written by `features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineSummary {
    pub n_spectra: u64,
    pub by_class: Vec<(BptClass, u64)>,
    /// Spectra whose lines could not be measured at all, by reason.
    pub problems: Vec<(String, u64)>,
    /// Unclassifiable spectra by reason (those problems included), most
    /// common first.
    pub unclassifiable: Vec<(String, u64)>,
    pub density: BptDensity,
}

/// One complete ranking of the objects: which model made it, when, how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreVersion {
    pub version: u32,
    /// Model ids (one per survey) that made these scores.
    pub models: Vec<u32>,
    /// What made them, for people: "isolation-forest", "fixmatch-cnn"…
    pub method: String,
    pub time: String,
    pub n_scored: u64,
}

/// What made one object's score: the science anomaly score and the tail
/// probability of each feature group, the relevance the expert's labels
/// predict, and the separate data-quality (artefact) score.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScoreParts {
    /// Anomaly score before the re-rank, in [0, 1].
    pub anomaly: f32,
    /// (feature group, tail probability): the fraction of objects of that group
    /// at least as unusual; small = odd. Only groups the object has data for.
    pub groups: Vec<(String, f32)>,
    /// Relevance 0–5 the labels predict (when the ranking was re-ranked).
    pub relevance: Option<f32>,
    /// Data-quality oddness in [0, 1] (sky, noise, masked pixels): not part of the ranking.
    pub artefact: Option<f32>,
}

/// A complete score version kept without being current, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptScores {
    pub info: ScoreVersion,
    pub why: String,
}

/// A fitted model with what it needs to be used again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub id: u32,
    pub kind: String,
    pub survey: String,
    pub created: String,
    /// Parameters as JSON, for people and for `status`.
    pub params: String,
    /// Feature names the model was trained on.
    pub features: Vec<String>,
    /// The model itself (postcard), and its SHA-like content hash (hex).
    pub blob: Vec<u8>,
    pub hash: String,
}

impl ModelRecord {
    /// For models kept as checkpoint files (CNNs): the file the blob names.
    pub fn blob_path(&self) -> Option<std::path::PathBuf> {
        let text = std::str::from_utf8(&self.blob).ok()?;
        text.ends_with(".safetensors").then(|| std::path::PathBuf::from(text))
    }
}
