//! Background work for the TUI: reading a candidate's pixels and spectrum
//! from its survey file, rendering the cutout and encoding it for the
//! terminal. Requests come over a channel; results go back as events and
//! the UI drops any that no longer match what it shows (gitui's asyncgit,
//! yazi's image worker).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use ratatui::layout::Size;
use ratatui_image::Resize;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::Protocol;

use crate::detect::{ForestModel, Group, load_forest};
use crate::ingest::{SourceReader, open_source};
use crate::render::{ViewParams, render_cutout};
use crate::serve::{CandidateMeta, Catalog, Histogram, SpectrumMeta};
use crate::store::{LineRecord, ObjectKey, ObjectRecord, ScoreParts, SourceFile, SourceKind, Store, StoreError};

/// Everything the screen shows about one object except the encoded image.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: ObjectKey,
    pub object: ObjectRecord,
    pub bands: Vec<String>,
    pub shape: (usize, usize),
    /// n_bands × h × w, as in the file.
    pub pixels: Vec<f32>,
    pub bad_fraction: f32,
    pub score: Option<f32>,
    /// What made the score: per-group tail probabilities, relevance, artefact score.
    pub parts: Option<ScoreParts>,
    /// The features that made the oddest group odd, as (name, robust z).
    pub drivers: Vec<(String, f32)>,
    pub spectrum: Option<SpectrumData>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SpectrumData {
    pub id: String,
    pub sep_arcsec: f64,
    pub lambda: Vec<f32>,
    pub flux: Vec<f32>,
    pub ivar: Option<Vec<f32>>,
    pub mask: Option<Vec<i32>>,
    pub lines: Option<LineRecord>,
    pub z: Option<f32>,
}

/// What the UI asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// Read the object's data (prefetch or current).
    Load(ObjectKey),
    /// Render and encode the cutout for `area` cells with `view`.
    Encode { key: ObjectKey, view: ViewParams, area: Size },
    /// The score histogram in `bins` bins, with these labelled objects marked.
    Histogram { bins: usize, marks: Vec<(ObjectKey, bool)> },
    /// An object's rank in score order (for objects reached by `/`).
    Rank(ObjectKey),
}

/// An encoded cutout: a terminal graphic, or (half-blocks under NO_COLOR,
/// where colour cannot carry the picture) lines of shade characters.
pub enum Picture {
    Graphic(Box<Protocol>),
    Shades(Vec<String>),
}

/// What the worker sends back.
pub enum Reply {
    Loaded(Box<Candidate>),
    Encoded {
        key: ObjectKey,
        view: ViewParams,
        area: Size,
        protocol: Box<Picture>,
    },
    Histogram(Box<Histogram>),
    Rank(ObjectKey, Option<u64>),
    /// A request that failed; said in the status line.
    Failed(String),
}

const CACHE: usize = 64;
const OPEN_FILES: usize = 16;

/// Runs until the request channel closes. `urgent` requests (the current
/// candidate) are served before queued prefetches.
pub fn run(mut state: Loader, requests: Receiver<(bool, Request)>, send: impl Fn(Reply) -> bool) {
    let mut pending: VecDeque<Request> = VecDeque::new();
    loop {
        // Block for one request, then take whatever else is queued.
        if pending.is_empty() {
            match requests.recv() {
                Ok((urgent, r)) => push(&mut pending, urgent, r),
                Err(_) => return,
            }
        }
        while let Ok((urgent, r)) = requests.try_recv() {
            push(&mut pending, urgent, r);
        }
        let Some(request) = pending.pop_front() else { continue };
        let reply = state.serve(request);
        if let Some(reply) = reply
            && !send(reply)
        {
            return;
        }
    }
}

fn push(pending: &mut VecDeque<Request>, urgent: bool, r: Request) {
    // Drop duplicates of the same work.
    let same = |a: &Request, b: &Request| match (a, b) {
        (Request::Load(x), Request::Load(y)) => x == y,
        (Request::Encode { key: k1, view: v1, area: a1 }, Request::Encode { key: k2, view: v2, area: a2 }) => {
            k1 == k2 && v1 == v2 && a1 == a2
        }
        (Request::Histogram { .. }, Request::Histogram { .. }) => true,
        (Request::Rank(a), Request::Rank(b)) => a == b,
        _ => false,
    };
    pending.retain(|p| !same(p, &r));
    if urgent { pending.push_front(r) } else { pending.push_back(r) }
}

/// Reads candidates and encodes cutouts; what the worker thread runs, usable
/// directly by tests and benches.
pub struct Loader {
    store: Option<Arc<Store>>,
    /// Where records come from when the store is another process's.
    remote: Option<Arc<dyn Catalog>>,
    picker: Picker,
    /// Half-blocks without colour: shade characters instead.
    pub no_color: bool,
    /// The terminal inflates zlib-compressed kitty images: send them so.
    pub kitty_zlib: bool,
    tables: VecDeque<(u32, Box<dyn SourceReader>)>,
    cache: VecDeque<Candidate>,
    /// The current score version's models (by population), loaded on first use.
    models: Option<(u32, Vec<(String, ForestModel)>)>,
}

impl Loader {
    pub fn new(store: Arc<Store>, picker: Picker) -> Loader {
        Loader::reading(Some(store), None, picker)
    }

    /// A loader that asks `catalog` for records and reads pixels and spectra
    /// from the survey files itself.
    pub fn with_catalog(store: Option<Arc<Store>>, catalog: Arc<dyn Catalog>, picker: Picker) -> Loader {
        match store {
            Some(store) => Loader::new(store, picker),
            None => Loader::reading(None, Some(catalog), picker),
        }
    }

    /// A loader over the store itself or a catalog served by another process.
    fn reading(store: Option<Arc<Store>>, remote: Option<Arc<dyn Catalog>>, picker: Picker) -> Loader {
        Loader {
            store,
            remote,
            picker,
            no_color: false,
            kitty_zlib: false,
            tables: VecDeque::new(),
            cache: VecDeque::new(),
            models: None,
        }
    }

    /// Answers one request (what the worker thread runs).
    pub fn serve(&mut self, request: Request) -> Option<Reply> {
        match request {
            Request::Load(key) => self.candidate(key).map(|c| Reply::Loaded(Box::new(c))),
            Request::Encode { key, view, area } => self.encode(key, &view, area).map(|protocol| Reply::Encoded {
                key,
                view,
                area,
                protocol: Box::new(protocol),
            }),
            Request::Histogram { bins, marks } => {
                let h = match (&self.remote, &self.store) {
                    (Some(c), _) => c.histogram(bins, marks),
                    (None, Some(s)) => s.histogram(bins, marks),
                    (None, None) => Ok(Histogram::default()),
                };
                Some(match h {
                    Ok(h) => Reply::Histogram(Box::new(h)),
                    Err(e) => Reply::Failed(format!("histogram: {e}")),
                })
            }
            Request::Rank(key) => {
                let r = match (&self.remote, &self.store) {
                    (Some(c), _) => c.rank(key),
                    (None, Some(s)) => Catalog::rank(&**s, key),
                    (None, None) => Ok(None),
                };
                Some(Reply::Rank(key, r.ok().flatten()))
            }
        }
    }

    fn table(&mut self, file: u32, source: &SourceFile) -> Result<&dyn SourceReader, String> {
        if let Some(i) = self.tables.iter().position(|(f, _)| *f == file) {
            let t = self.tables.remove(i).expect("present");
            self.tables.push_front(t);
        } else {
            let table = open_source(source).map_err(|e| format!("{}: {e}", source.path))?;
            self.tables.push_front((file, table));
            self.tables.truncate(OPEN_FILES);
        }
        Ok(self.tables[0].1.as_ref())
    }

    pub fn candidate(&mut self, key: ObjectKey) -> Option<Candidate> {
        if let Some(c) = self.cache.iter().find(|c| c.key == key) {
            return Some(c.clone());
        }
        let c = self.load(key)?;
        self.cache.push_front(c.clone());
        self.cache.truncate(CACHE);
        Some(c)
    }

    /// The store's part of a candidate, with its drivers (the serving
    /// process answers other experts' screens with this).
    pub fn meta(&mut self, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError> {
        let store = match (&self.remote, &self.store) {
            (Some(remote), _) => return remote.meta(key),
            (None, Some(store)) => store.clone(),
            (None, None) => return Ok(None),
        };
        let Some(mut meta) = store_meta(&store, key)? else { return Ok(None) };
        meta.drivers = self.drivers(&meta.object.survey, key, meta.parts.as_ref());
        Ok(Some(meta))
    }

    fn load(&mut self, key: ObjectKey) -> Option<Candidate> {
        let meta = self.meta(key).ok()??;
        let mut c = Candidate {
            key,
            object: meta.object,
            bands: meta.bands,
            shape: meta.shape,
            pixels: Vec::new(),
            bad_fraction: meta.bad_fraction,
            score: meta.score,
            parts: meta.parts,
            drivers: meta.drivers,
            spectrum: None,
            problem: None,
        };
        if c.object.kind == SourceKind::Spectra {
            // A spectrum-only candidate: no pixels, its own spectrum.
            c.spectrum = meta.spectrum.and_then(|sp| self.spectrum(sp));
            if c.spectrum.is_none() {
                c.problem = Some("spectrum unavailable".into());
            }
            return Some(c);
        }
        match self
            .table(key.file, &meta.source)
            .and_then(|t| t.read_images(key.row as usize..key.row as usize + 1).map_err(|e| e.to_string()))
        {
            Ok(px) => c.pixels = px.data.into_raw_vec_and_offset().0,
            Err(e) => c.problem = Some(format!("pixels unavailable: {e}")),
        }
        if let Some(sp) = meta.spectrum {
            c.spectrum = self.spectrum(sp);
        }
        Some(c)
    }

    fn spectrum(&mut self, m: SpectrumMeta) -> Option<SpectrumData> {
        let row = m.key.row as usize;
        let sp = self.table(m.key.file, &m.source).ok()?.read_spectra(row..row + 1).ok()?;
        Some(SpectrumData {
            id: m.id,
            sep_arcsec: m.sep_arcsec,
            lambda: sp.lambda.row(0).to_vec(),
            flux: sp.flux.row(0).to_vec(),
            ivar: sp.ivar.map(|a| a.row(0).to_vec()),
            mask: sp.mask.map(|a| a.row(0).to_vec()),
            lines: m.lines,
            z: m.z,
        })
    }

    /// The three features that made the object's oddest feature group odd
    /// (by the group forest's path attribution), with their robust z-scores.
    fn drivers(&mut self, survey: &str, key: ObjectKey, parts: Option<&ScoreParts>) -> Vec<(String, f32)> {
        let Some(parts) = parts else { return Vec::new() };
        let Some((group, _)) = parts.groups.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else { return Vec::new() };
        let group = [Group::Shape, Group::Colour, Group::Deep, Group::Spectrum]
            .into_iter()
            .find(|g| g.as_str() == group.as_str());
        let Some(group) = group else { return Vec::new() };
        // Drivers are computed where the store is (a connected screen gets them in the meta).
        let Some(store) = self.store.clone() else { return Vec::new() };
        let Some(version) = store.current_scores().ok().flatten() else { return Vec::new() };
        if self.models.as_ref().is_none_or(|(v, _)| *v != version.version) {
            let loaded = version
                .models
                .iter()
                .filter_map(|id| store.model(*id).ok().flatten())
                .filter_map(|m| load_forest(&m).map(|f| (m.survey.clone(), f)))
                .collect();
            self.models = Some((version.version, loaded));
        }
        let models = &self.models.as_ref().expect("loaded above").1;
        // The spectrum group lives with the spectra's population, the others with the survey's.
        let model = models
            .iter()
            .filter(|(name, _)| group == Group::Spectrum || name == survey)
            .find_map(|(_, f)| f.group(group));
        let Some(model) = model else { return Vec::new() };
        let row: Option<Vec<f32>> = match group {
            Group::Deep => store.embedding_of(key).ok().flatten(),
            Group::Spectrum => {
                let lines = match store.spectrum_match(key).ok().flatten() {
                    Some(m) => store.lines_of(m.other).ok().flatten(),
                    None => store.lines_of(key).ok().flatten(),
                };
                lines.map(|l| crate::features::spectral_values(Some(&l)).to_vec())
            }
            _ => {
                let schema = store.feature_schema(survey).ok().flatten();
                let values = store.features_of(key).ok().flatten();
                schema.zip(values).map(|(s, v)| {
                    model
                        .features
                        .iter()
                        .map(|n| s.names.iter().position(|m| m == n).and_then(|i| v.values.get(i).copied()))
                        .map(|x| x.unwrap_or(f32::NAN))
                        .collect()
                })
            }
        };
        match row {
            Some(row) if row.len() == model.features.len() => {
                model.drivers(&row).into_iter().take(3).map(|(n, _, z)| (n, z)).collect()
            }
            _ => Vec::new(),
        }
    }

    pub fn encode(&mut self, key: ObjectKey, view: &ViewParams, area: Size) -> Option<Picture> {
        let c = self.candidate(key)?;
        if c.pixels.is_empty() || area.width == 0 || area.height == 0 {
            return None;
        }
        let (h, w) = c.shape;
        let nb = c.pixels.len() / (h * w).max(1);
        let rgb = render_cutout(&c.pixels, nb, h, w, &c.bands, view);
        let halfblocks = self.picker.protocol_type() == ratatui_image::picker::ProtocolType::Halfblocks;
        if halfblocks && self.no_color {
            return Some(Picture::Shades(shades(&rgb, area)));
        }
        self.encode_graphic(rgb, area).map(|p| Picture::Graphic(Box::new(p)))
    }

    fn encode_graphic(&mut self, rgb: image::RgbImage, area: Size) -> Option<Protocol> {
        if self.picker.protocol_type() == ratatui_image::picker::ProtocolType::Halfblocks {
            // Half-blocks are two pixels a cell: scale straight to that grid
            // instead of to font pixels and back.
            let side = (area.width as u32).min(area.height as u32 * 2).max(1);
            let small = image::imageops::resize(&rgb, side, side, image::imageops::FilterType::Triangle);
            return self
                .picker
                .new_protocol(
                    image::DynamicImage::ImageRgb8(small),
                    area,
                    Resize::Scale(Some(image::imageops::FilterType::Nearest)),
                )
                .ok();
        }
        // Scale to the cells' pixel size with nearest-neighbour (astronomers
        // want to see pixels, not blur) before handing to the protocol.
        let font = self.picker.font_size();
        let (cell_w, cell_h) = (font.width.max(1) as u32, font.height.max(1) as u32);
        let side = (area.width as u32 * cell_w).min(area.height as u32 * cell_h).max(1);
        let scaled = image::imageops::resize(&rgb, side, side, image::imageops::FilterType::Nearest);
        let image = image::DynamicImage::ImageRgb8(scaled);
        if self.kitty_zlib && self.picker.protocol_type() == ratatui_image::picker::ProtocolType::Kitty {
            // The upscaled cutout is megabytes of RGBA but compresses ~100x:
            // sent deflated (`o=z`) when the terminal said it inflates.
            // ratatui-image compresses only after its own probe, so the
            // protocol is made here.
            let natural = Resize::natural_size(&image, font);
            let size = Size::new(natural.width.min(area.width), natural.height.min(area.height));
            let id = rand::random::<u32>() | 1;
            return ratatui_image::protocol::kitty::Kitty::new(image, size, id, self.picker.tmux_detected(), true)
                .ok()
                .map(Protocol::Kitty);
        }
        self.picker.new_protocol(image, area, Resize::Fit(None)).ok()
    }
}

/// A cutout as lines of shade characters (one per cell, by luminance), for
/// terminals asked not to use colour: half-blocks carry the picture only in
/// their colours.
pub fn shades(rgb: &image::RgbImage, area: Size) -> Vec<String> {
    const RAMP: &[char] = &[' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
    // Cells are about twice as tall as wide: a square picture is twice as
    // many columns as rows.
    let rows = (area.height as u32).min(area.width as u32 / 2).max(1);
    let cols = (rows * 2).min(area.width as u32).max(1);
    let small = image::imageops::resize(rgb, cols, rows, image::imageops::FilterType::Triangle);
    (0..rows)
        .map(|y| {
            (0..cols)
                .map(|x| {
                    let p = small.get_pixel(x, y).0;
                    let l = 0.2126 * p[0] as f32 + 0.7152 * p[1] as f32 + 0.0722 * p[2] as f32;
                    RAMP[(((l / 256.0) * RAMP.len() as f32) as usize).min(RAMP.len() - 1)]
                })
                .collect()
        })
        .collect()
}

/// The store's records for a candidate (drivers left empty).
pub fn store_meta(store: &Store, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError> {
    let Some(object) = store.object(key)? else { return Ok(None) };
    let Some(source) = store.source(key.file)? else { return Ok(None) };
    let image = store.image(key)?;
    // An image's matched spectrum; a spectrum-only candidate's own.
    let spectrum_of = match object.kind {
        SourceKind::Spectra => Some((key, 0.0)),
        SourceKind::Images => store.spectrum_match(key)?.map(|m| (m.other, m.sep_arcsec)),
    };
    let mut spectrum = None;
    if let Some((skey, sep_arcsec)) = spectrum_of
        && let (Some(obj), Some(src)) = (store.object(skey)?, store.source(skey.file)?)
    {
        spectrum = Some(SpectrumMeta {
            key: skey,
            id: obj.id,
            source: src,
            sep_arcsec,
            lines: store.lines_of(skey)?,
            z: store.spectrum(skey)?.and_then(|r| r.z),
        });
    }
    Ok(Some(CandidateMeta {
        key,
        object,
        bands: source.bands.clone(),
        shape: (source.shape.0 as usize, source.shape.1 as usize),
        source,
        bad_fraction: image.map(|i| i.bad_fraction).unwrap_or(0.0),
        score: store.score_of(key)?,
        parts: store.score_parts_of(key)?,
        drivers: Vec::new(),
        spectrum,
    }))
}
