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
use crate::store::{LineRecord, ObjectKey, ObjectRecord, ScoreParts, Store};

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
}

/// What the worker sends back.
pub enum Reply {
    Loaded(Box<Candidate>),
    Encoded { key: ObjectKey, view: ViewParams, area: Size, protocol: Box<Protocol> },
}

const CACHE: usize = 64;
const OPEN_FILES: usize = 16;

/// Runs until the request channel closes. `urgent` requests (the current
/// candidate) are served before queued prefetches.
pub fn run(store: Arc<Store>, picker: Picker, requests: Receiver<(bool, Request)>, send: impl Fn(Reply) -> bool) {
    let mut state = Loader::new(store, picker);
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
        let reply = match request {
            Request::Load(key) => state.candidate(key).map(|c| Reply::Loaded(Box::new(c))),
            Request::Encode { key, view, area } => state.encode(key, &view, area).map(|protocol| Reply::Encoded {
                key,
                view,
                area,
                protocol: Box::new(protocol),
            }),
        };
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
        _ => false,
    };
    pending.retain(|p| !same(p, &r));
    if urgent { pending.push_front(r) } else { pending.push_back(r) }
}

/// Reads candidates and encodes cutouts; what the worker thread runs, usable
/// directly by tests and benches.
pub struct Loader {
    store: Arc<Store>,
    picker: Picker,
    tables: VecDeque<(u32, Box<dyn SourceReader>)>,
    cache: VecDeque<Candidate>,
    /// The current score version's models (by population), loaded on first use.
    models: Option<(u32, Vec<(String, ForestModel)>)>,
}

impl Loader {
    pub fn new(store: Arc<Store>, picker: Picker) -> Loader {
        Loader { store, picker, tables: VecDeque::new(), cache: VecDeque::new(), models: None }
    }

    fn table(&mut self, file: u32) -> Result<&dyn SourceReader, String> {
        if let Some(i) = self.tables.iter().position(|(f, _)| *f == file) {
            let t = self.tables.remove(i).expect("present");
            self.tables.push_front(t);
        } else {
            let source = self.store.source(file).map_err(|e| e.to_string())?.ok_or("unknown source file")?;
            let table = open_source(&source).map_err(|e| format!("{}: {e}", source.path))?;
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

    fn load(&mut self, key: ObjectKey) -> Option<Candidate> {
        let store = self.store.clone();
        let object = store.object(key).ok()??;
        let source = store.source(key.file).ok()??;
        let image = store.image(key).ok().flatten();
        let mut c = Candidate {
            key,
            object,
            bands: source.bands.clone(),
            shape: (source.shape.0 as usize, source.shape.1 as usize),
            pixels: Vec::new(),
            bad_fraction: image.map(|i| i.bad_fraction).unwrap_or(0.0),
            score: store.score_of(key).ok().flatten(),
            parts: store.score_parts_of(key).ok().flatten(),
            drivers: Vec::new(),
            spectrum: None,
            problem: None,
        };
        if c.object.kind == crate::store::SourceKind::Spectra {
            // A spectrum-only candidate: no pixels, its own spectrum.
            c.spectrum = self.spectrum(key, 0.0);
            if c.spectrum.is_none() {
                c.problem = Some("spectrum unavailable".into());
            }
            return Some(c);
        }
        match self
            .table(key.file)
            .and_then(|t| t.read_images(key.row as usize..key.row as usize + 1).map_err(|e| e.to_string()))
        {
            Ok(px) => c.pixels = px.data.into_raw_vec_and_offset().0,
            Err(e) => c.problem = Some(format!("pixels unavailable: {e}")),
        }
        c.drivers = self.drivers(&source.survey, key, c.parts.as_ref());
        if let Ok(Some(m)) = store.spectrum_match(key) {
            c.spectrum = self.spectrum(m.other, m.sep_arcsec);
        }
        Some(c)
    }

    fn spectrum(&mut self, key: ObjectKey, sep_arcsec: f64) -> Option<SpectrumData> {
        let store = self.store.clone();
        let object = store.object(key).ok()??;
        let lines = store.lines_of(key).ok().flatten();
        let reference = store.spectrum(key).ok().flatten();
        let row = key.row as usize;
        let sp = self.table(key.file).ok()?.read_spectra(row..row + 1).ok()?;
        Some(SpectrumData {
            id: object.id,
            sep_arcsec,
            lambda: sp.lambda.row(0).to_vec(),
            flux: sp.flux.row(0).to_vec(),
            ivar: sp.ivar.map(|a| a.row(0).to_vec()),
            mask: sp.mask.map(|a| a.row(0).to_vec()),
            lines,
            z: reference.and_then(|r| r.z),
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
        let store = self.store.clone();
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

    pub fn encode(&mut self, key: ObjectKey, view: &ViewParams, area: Size) -> Option<Protocol> {
        let c = self.candidate(key)?;
        if c.pixels.is_empty() || area.width == 0 || area.height == 0 {
            return None;
        }
        let (h, w) = c.shape;
        let nb = c.pixels.len() / (h * w).max(1);
        let rgb = render_cutout(&c.pixels, nb, h, w, &c.bands, view);
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
        self.picker.new_protocol(image::DynamicImage::ImageRgb8(scaled), area, Resize::Fit(None)).ok()
    }
}
