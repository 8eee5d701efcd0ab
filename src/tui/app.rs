//! The TUI's state and the only place it changes (`App::update`). Keys
//! become actions through the keymap; a label goes to the [`Saver`]'s thread
//! and the screen moves on at once: it says "saving ⋯" until the label is on
//! disk and "saved ✓" only then.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Size;

use super::keymap::{Action, Keymap};
use super::queue::{Filter, Ordering, Queue, Rank};
use super::saver::{Saved, Saver};
use super::worker::{Candidate, Picture, Reply, Request};
use crate::features::spectral::BptClass;
use crate::render::ViewParams;
use crate::serve::{Catalog, Histogram, Overview, Team};
use crate::store::{LabelBook, LabelEvent, LabelValue, ObjectKey, StoreError};

/// Tags offered by `t`, then "custom…".
pub const TAGS: &[&str] = &["merger", "ring", "lens", "artefact", "other"];
/// Candidates read ahead of the cursor.
const PREFETCH: usize = 3;
/// Fine bins of the score histogram (the panel sums them into its columns).
pub const HISTOGRAM_BINS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    Help,
    Prompt { kind: PromptKind, text: String },
    Menu { kind: MenuKind, selected: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Jump,
    CustomTag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuKind {
    Tag,
    Filter,
    Ordering,
}

/// Who is labelling, in which session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user: String,
    pub started: Instant,
    pub labels: usize,
    pub by_value: HashMap<String, usize>,
}

impl Session {
    pub fn new(user: String) -> Session {
        let now = chrono::Utc::now();
        Session {
            id: format!("{}-{}", now.format("%Y%m%dT%H%M%S"), std::process::id()),
            user,
            started: Instant::now(),
            labels: 0,
            by_value: HashMap::new(),
        }
    }

    pub fn per_minute(&self) -> f64 {
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        if minutes < 1e-3 { 0.0 } else { self.labels as f64 / minutes }
    }
}

/// An encoded cutout and what it was made for.
pub struct Shown {
    pub key: ObjectKey,
    pub view: ViewParams,
    pub area: Size,
    pub protocol: Box<Picture>,
}

/// One labelling action of this session, as undo sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoStep {
    /// On disk: its event ids.
    Saved(Vec<u64>),
    /// Handed to the saver, not yet answered.
    Saving(u64),
}

/// An action on its way to disk, and what the screen says of it.
struct Saving {
    seq: u64,
    events: Vec<LabelEvent>,
    /// e.g. "normal J123456.7+123456" or "12 normal on this page".
    what: String,
    /// The object to bring back if it cannot be saved (single labels).
    object: Option<ObjectKey>,
}

pub struct App {
    pub store: Arc<dyn Catalog>,
    pub keymap: Keymap,
    pub book: LabelBook,
    pub queue: Queue,
    pub pos: usize,
    pub view: ViewParams,
    pub rest_frame: bool,
    pub mode: Mode,
    pub session: Session,
    /// Data of the current and prefetched candidates.
    pub loaded: HashMap<ObjectKey, Candidate>,
    /// Encoded cutouts, current and prefetched (a few).
    pub images: Vec<Shown>,
    /// Cells the cutout occupies on screen now.
    pub image_area: Size,
    pub message: Option<String>,
    /// Text to put on the clipboard (OSC 52) at the next draw.
    pub clipboard: Option<String>,
    /// Work for the background worker: (urgent, request).
    pub requests: Vec<(bool, Request)>,
    pub quit: bool,
    /// Whether the screen needs drawing.
    pub dirty: bool,
    pub no_color: bool,
    pub graphics: &'static str,
    /// Gallery grid instead of the single-object view.
    pub gallery: bool,
    /// Grid shape (columns, rows) and thumbnail size for the current screen.
    pub grid: (usize, usize),
    pub thumb_area: Size,
    /// Score histogram panel: shown, and its data once the worker built it.
    pub histogram_on: bool,
    pub histogram: Option<Histogram>,
    /// Score-order ranks of objects reached by `/` (counted by the worker).
    pub jump_ranks: HashMap<ObjectKey, Option<u64>>,
    /// Each labelling action of this session, for undo (a page marked
    /// normal is one action).
    pub undo_stack: Vec<UndoStep>,
    /// Writes labels off the keypress path.
    saver: Saver,
    /// Actions handed to the saver and not yet answered, oldest first.
    saving: VecDeque<Saving>,
    next_seq: u64,
    /// Labels the store refused in this session: what, and why.
    pub not_saved: Vec<String>,
    /// Counts for the position line.
    pub overview: Overview,
    /// The team's progress (several experts on the store).
    pub team: Option<Team>,
    /// The newest label event read from the store, and ids appended by this
    /// screen since (for picking up other experts' labels).
    pub synced: Option<u64>,
    own_ids: std::collections::HashSet<u64>,
    /// First line of the help overlay shown.
    pub help_scroll: u16,
    /// The BPT view, with the survey's line summary (one stored record).
    pub bpt: Option<crate::store::LineSummary>,
}

impl App {
    pub fn new(
        store: Arc<dyn Catalog>,
        keymap: Keymap,
        user: String,
        ordering: Ordering,
        filter: Filter,
    ) -> Result<App, StoreError> {
        let events = store.label_events_after(None)?;
        let synced = events.last().map(|e| e.0);
        let book = LabelBook::from_events(events);
        let overview = store.overview()?;
        let ordering = if ordering == Ordering::Score && overview.scored.is_none() { Ordering::Id } else { ordering };
        let queue = Queue::new(&*store, &book, ordering, filter, &user)?;
        let saver = Saver::start(store.clone());
        let mut app = App {
            store,
            keymap,
            book,
            queue,
            pos: 0,
            view: ViewParams::default(),
            rest_frame: false,
            mode: Mode::Browse,
            session: Session::new(user),
            loaded: HashMap::new(),
            images: Vec::new(),
            image_area: Size::new(0, 0),
            message: None,
            clipboard: None,
            requests: Vec::new(),
            quit: false,
            dirty: true,
            no_color: false,
            graphics: "halfblocks",
            gallery: false,
            grid: (1, 1),
            thumb_area: Size::new(0, 0),
            histogram_on: false,
            histogram: None,
            jump_ranks: HashMap::new(),
            undo_stack: Vec::new(),
            saver,
            saving: VecDeque::new(),
            next_seq: 0,
            not_saved: Vec::new(),
            overview,
            team: None,
            synced,
            own_ids: std::collections::HashSet::new(),
            help_scroll: 0,
            bpt: None,
        };
        app.team = app.store.team()?;
        app.settle()?;
        Ok(app)
    }

    pub fn current(&self) -> Option<ObjectKey> {
        self.queue.items.get(self.pos).copied()
    }

    /// The current object's rank: in the ordering when it came from the
    /// stream (a place in the stream while a trial interleaves two
    /// rankings), in score order when it was reached by `/`.
    pub fn current_rank(&self) -> Option<(Rank, &'static str)> {
        match self.queue.ranks.get(self.pos).copied().flatten() {
            Some(r) => Some((r, self.queue.ordering.name())),
            None => self
                .current()
                .and_then(|k| self.jump_ranks.get(&k).copied().flatten())
                .map(|n| (Rank { n, interleaved: false }, "score")),
        }
    }

    pub fn current_candidate(&self) -> Option<&Candidate> {
        self.current().and_then(|k| self.loaded.get(&k))
    }

    /// The encoded cutout for the current object, if it matches the view.
    pub fn current_image(&self) -> Option<&Shown> {
        let key = self.current()?;
        self.images.iter().find(|s| s.key == key && s.view == self.view && s.area == self.image_area)
    }

    /// Keys: routed by mode; browsing keys go through the keymap.
    pub fn on_key(&mut self, key: KeyEvent) -> Result<(), StoreError> {
        self.dirty = true;
        match self.mode.clone() {
            Mode::Browse => {
                if let Some(action) = self.keymap.action(&key) {
                    self.update(action)?;
                }
            }
            // Arrows and page keys scroll the help; any other key closes it.
            Mode::Help => match key.code {
                KeyCode::Down | KeyCode::Char('j') => self.help_scroll = self.help_scroll.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => self.help_scroll = self.help_scroll.saturating_sub(1),
                KeyCode::PageDown | KeyCode::Char(' ') => self.help_scroll = self.help_scroll.saturating_add(8),
                KeyCode::PageUp => self.help_scroll = self.help_scroll.saturating_sub(8),
                _ => self.mode = Mode::Browse,
            },
            Mode::Prompt { kind, mut text } => match key.code {
                KeyCode::Esc => self.mode = Mode::Browse,
                KeyCode::Enter => {
                    self.mode = Mode::Browse;
                    self.submit_prompt(kind, text.trim())?;
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.mode = Mode::Prompt { kind, text };
                }
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => self.mode = Mode::Browse,
                KeyCode::Char(c) => {
                    text.push(c);
                    self.mode = Mode::Prompt { kind, text };
                }
                _ => {}
            },
            Mode::Menu { kind, selected } => {
                let n = self.menu_items(kind).len();
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => self.mode = Mode::Browse,
                    KeyCode::Up | KeyCode::Char('k') => {
                        self.mode = Mode::Menu { kind, selected: (selected + n - 1) % n }
                    }
                    KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                        self.mode = Mode::Menu { kind, selected: (selected + 1) % n }
                    }
                    KeyCode::Enter => {
                        self.mode = Mode::Browse;
                        self.choose(kind, selected)?;
                    }
                    KeyCode::Char(c) if c.is_ascii_digit() => {
                        let i = (c as usize - '0' as usize).wrapping_sub(1);
                        if i < n {
                            self.mode = Mode::Browse;
                            self.choose(kind, i)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The only place browsing state changes: labelling, moving through
    /// the queue, and how the candidate is shown.
    pub fn update(&mut self, action: Action) -> Result<(), StoreError> {
        self.dirty = true;
        match action {
            Action::Relevance(r) => self.label(LabelValue::Relevance(r), vec![], true),
            Action::Anomaly => self.label(LabelValue::Anomaly, vec![], true),
            Action::Normal => self.label(LabelValue::Normal, vec![], true),
            Action::Unsure => self.label(LabelValue::Unsure, vec![], true),
            Action::Favourite => self.toggle_favourite(),
            Action::Undo => self.undo(),
            Action::PageNormal if self.gallery => self.label_page_normal(),
            Action::PageNormal => {
                self.message = Some("page normal works in the gallery (g)".into());
                Ok(())
            }
            Action::Next
            | Action::Previous
            | Action::Up
            | Action::Down
            | Action::PageDown
            | Action::PageUp
            | Action::Gallery => self.navigate(action),
            Action::Tag => self.open(Mode::Menu { kind: MenuKind::Tag, selected: 0 }),
            Action::Filter => self.open(Mode::Menu { kind: MenuKind::Filter, selected: 0 }),
            Action::Ordering => self.open(Mode::Menu { kind: MenuKind::Ordering, selected: 0 }),
            Action::Jump => self.open(Mode::Prompt { kind: PromptKind::Jump, text: String::new() }),
            Action::Help => {
                self.help_scroll = 0;
                self.open(Mode::Help)
            }
            Action::Quit => {
                self.quit = true;
                Ok(())
            }
            Action::Band
            | Action::Stretch
            | Action::Zoom
            | Action::CopyLink
            | Action::RestFrame
            | Action::Histogram
            | Action::Bpt => self.show(action),
        }
    }

    fn open(&mut self, mode: Mode) -> Result<(), StoreError> {
        self.mode = mode;
        Ok(())
    }

    /// Stars or unstars the current object: a toggle, so it reads the star
    /// given a moment ago.
    fn toggle_favourite(&mut self) -> Result<(), StoreError> {
        self.wait_saved()?;
        match self.current() {
            Some(key) => {
                let on = !self.book.get(key).is_some_and(|l| l.favourite);
                self.label(LabelValue::Favourite(on), vec![], false)
            }
            None => Ok(()),
        }
    }

    /// Moves through the queue (and in and out of the gallery).
    fn navigate(&mut self, action: Action) -> Result<(), StoreError> {
        let (step, start) = match self.gallery {
            true => (self.page_size(), self.page_start()),
            false => (10, self.pos),
        };
        match action {
            Action::Next => self.go(self.pos + 1),
            Action::Previous => self.go(self.pos.saturating_sub(1)),
            Action::Gallery => {
                self.gallery = !self.gallery;
                self.settle()
            }
            Action::Up if self.gallery => self.go(self.pos.saturating_sub(self.grid.0)),
            Action::Down if self.gallery => {
                let target = self.pos + self.grid.0;
                self.queue.fill(target + 1, &*self.store, &self.book)?;
                if target < self.queue.items.len() { self.go(target) } else { Ok(()) }
            }
            Action::PageDown => {
                self.queue.fill(start + step + 1, &*self.store, &self.book)?;
                let target = (start + step).min(self.queue.items.len().saturating_sub(1));
                self.go(target)
            }
            Action::PageUp => self.go(start.saturating_sub(step)),
            _ => Ok(()),
        }
    }

    /// How the candidate is shown: bands, stretch, zoom, rest frame, the
    /// histogram and BPT panels, its link.
    fn show(&mut self, action: Action) -> Result<(), StoreError> {
        match action {
            Action::Band => {
                let n = self.current_candidate().map(|c| c.bands.len()).unwrap_or(0);
                self.view.band = match self.view.band {
                    None if n > 0 => Some(0),
                    Some(b) if b + 1 < n => Some(b + 1),
                    _ => None,
                };
                self.settle()?;
            }
            Action::Stretch => {
                self.view.stretch = self.view.stretch.next();
                self.settle()?;
            }
            Action::Zoom => {
                self.view.zoom = match self.view.zoom {
                    0 | 1 => 2,
                    2 => 4,
                    _ => 1,
                };
                self.settle()?;
            }
            Action::CopyLink => {
                if let Some(c) = self.current_candidate() {
                    let url = sky_viewer_url(c.object.ra, c.object.dec);
                    self.message = Some(format!("copied {url}"));
                    self.clipboard = Some(url);
                }
            }
            Action::RestFrame => self.rest_frame = !self.rest_frame,
            Action::Histogram => self.toggle_histogram(),
            Action::Bpt => {
                self.bpt = match self.bpt {
                    Some(_) => None,
                    None => self.store.line_summary()?,
                };
                if self.bpt.is_none() && self.message.is_none() {
                    self.message = Some("no line measurements yet: run `oddity features`".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn toggle_histogram(&mut self) {
        if self.histogram_on {
            self.histogram_on = false;
            self.histogram = None;
        } else if self.overview.scored.is_none() {
            self.message = Some("no scores yet: run `oddity score`".into());
        } else {
            // Built by the worker: a scan of every score.
            self.histogram_on = true;
            let marks = self.book.targets().map(|(k, t)| (k, t.interesting)).collect();
            self.requests.push((true, Request::Histogram { bins: HISTOGRAM_BINS, marks }));
        }
    }

    /// Appends a label event for the current object; returns after it is on
    /// disk, and only then says "saved".
    fn label(&mut self, value: LabelValue, tags: Vec<String>, advance: bool) -> Result<(), StoreError> {
        let Some(key) = self.current() else {
            self.message = Some("nothing to label".into());
            return Ok(());
        };
        self.label_key(key, value, tags)?;
        if advance {
            self.go(self.pos + 1)?;
        }
        Ok(())
    }

    /// First index of the gallery page holding the cursor.
    pub fn page_start(&self) -> usize {
        self.pos - self.pos % self.page_size()
    }

    pub fn page_size(&self) -> usize {
        (self.grid.0 * self.grid.1).max(1)
    }

    /// Keys on the gallery page holding the cursor (pulled from the store).
    pub fn page_keys(&mut self) -> Result<Vec<ObjectKey>, StoreError> {
        let start = self.page_start();
        self.queue.fill(start + self.page_size(), &*self.store, &self.book)?;
        Ok(self.queue.items.iter().skip(start).take(self.page_size()).copied().collect())
    }

    /// Labels every unlabelled object on the page normal: the expert has seen
    /// them all and flagged the interesting ones already.
    fn label_page_normal(&mut self) -> Result<(), StoreError> {
        // Labels given on this page a moment ago count as given.
        self.wait_saved()?;
        let keys: Vec<ObjectKey> = self.page_keys()?.into_iter().filter(|k| !self.book.is_labelled(*k)).collect();
        let n = keys.len();
        // One action, one commit, one undo.
        self.append(
            keys.into_iter().map(|k| (k, LabelValue::Normal, vec![])).collect(),
            format!("{n} normal on this page"),
            None,
        );
        let next = self.page_start() + self.page_size();
        self.queue.fill(next + 1, &*self.store, &self.book)?;
        if next < self.queue.items.len() {
            self.go(next)?;
        }
        Ok(())
    }

    fn label_key(&mut self, key: ObjectKey, value: LabelValue, tags: Vec<String>) -> Result<(), StoreError> {
        let what = describe_value(&value, &tags);
        let name = match self.loaded.get(&key) {
            Some(c) => c.object.id.clone(),
            None => self.store.object_id(key)?.unwrap_or_else(|| format!("{}:{}", key.file, key.row)),
        };
        self.append(vec![(key, value, tags)], format!("{what} {name}"), Some(key));
        Ok(())
    }

    fn event(&self, object: ObjectKey, value: LabelValue, tags: Vec<String>) -> LabelEvent {
        LabelEvent {
            object,
            value,
            tags,
            user: self.session.user.clone(),
            time: chrono::Utc::now().to_rfc3339(),
            session: self.session.id.clone(),
        }
    }

    /// Hands one action's label events to the saver as one undo step; the
    /// screen says "saving ⋯ {what}" until they are on disk.
    fn append(&mut self, labels: Vec<(ObjectKey, LabelValue, Vec<String>)>, what: String, object: Option<ObjectKey>) {
        if labels.is_empty() {
            return;
        }
        let events: Vec<LabelEvent> = labels.into_iter().map(|(k, v, t)| self.event(k, v, t)).collect();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.message = Some(format!("saving ⋯ {what}"));
        self.undo_stack.push(UndoStep::Saving(seq));
        self.saving.push_back(Saving { seq, events: events.clone(), what, object });
        if !self.saver.submit(seq, events) {
            self.on_saved(Saved { seq, result: Err("the label writer stopped".into()) });
        }
    }

    /// What to call when the saver commits (the event loop's wake-up).
    pub fn on_saved_wake(&self, wake: Box<dyn Fn() + Send>) {
        self.saver.on_saved(wake);
    }

    /// Labelling actions not yet on disk.
    pub fn unsaved(&self) -> usize {
        self.saving.len()
    }

    /// What the saver has answered so far (the event loop calls this when
    /// woken by a commit).
    pub fn collect_saved(&mut self) {
        for saved in self.saver.ready() {
            self.on_saved(saved);
        }
    }

    /// Waits until every labelling action given so far is on disk (or has
    /// failed, which the message says). Undo, quitting and whole-page
    /// labels wait; labelling does not.
    pub fn wait_saved(&mut self) -> Result<(), StoreError> {
        while !self.saving.is_empty() {
            match self.saver.next() {
                Some(saved) => self.on_saved(saved),
                None => {
                    let seqs: Vec<u64> = self.saving.iter().map(|s| s.seq).collect();
                    for seq in seqs {
                        self.on_saved(Saved { seq, result: Err("the label writer stopped".into()) });
                    }
                }
            }
        }
        Ok(())
    }

    /// An action's answer: its events join the book and the screen says
    /// "saved ✓"; or it says NOT saved, and the object comes back.
    fn on_saved(&mut self, saved: Saved) {
        let Some(at) = self.saving.iter().position(|s| s.seq == saved.seq) else { return };
        let Some(action) = self.saving.remove(at) else { return };
        let step = self.undo_stack.iter().rposition(|s| *s == UndoStep::Saving(saved.seq));
        self.dirty = true;
        match saved.result {
            Ok(ids) => {
                for (id, e) in ids.iter().zip(action.events) {
                    self.own_ids.insert(*id);
                    self.book.push(*id, e);
                }
                if let Some(i) = step {
                    self.undo_stack[i] = UndoStep::Saved(ids);
                }
                self.recount();
                self.message = Some(format!("saved ✓ {}", action.what));
            }
            Err(why) => {
                if let Some(i) = step {
                    self.undo_stack.remove(i);
                }
                tracing::error!(what = %action.what, %why, "label not saved");
                self.message = Some(format!("NOT saved: {} ({why})", action.what));
                self.not_saved.push(format!("{}: {why}", action.what));
                // Back to the object, to label it again.
                if let Some(key) = action.object {
                    match self.queue.items.iter().position(|k| *k == key) {
                        Some(i) => self.pos = i,
                        None => self.queue.insert(self.pos, key),
                    }
                    if let Err(e) = self.settle() {
                        tracing::error!(%e, "settle after a failed label");
                    }
                }
            }
        }
    }

    /// Undoes the last labelling action of this session: every event it
    /// made is retracted (a page marked normal comes back whole). It waits
    /// for the action's ids, and writes the retraction before saying so.
    fn undo(&mut self) -> Result<(), StoreError> {
        self.wait_saved()?;
        let Some(UndoStep::Saved(ids)) = self.undo_stack.pop() else {
            self.message = Some("nothing to undo in this session".into());
            return Ok(());
        };
        let targets: Vec<(u64, ObjectKey)> =
            ids.iter().filter_map(|id| self.book.event(*id).map(|e| (*id, e.object))).collect();
        let Some(&(_, first)) = targets.first() else { return Ok(()) };
        let events: Vec<LabelEvent> =
            targets.iter().map(|&(id, key)| self.event(key, LabelValue::Retract(id), vec![])).collect();
        let n = events.len();
        let new_ids = self.store.append_labels(events.clone())?;
        for (id, e) in new_ids.into_iter().zip(events) {
            self.own_ids.insert(id);
            self.book.push(id, e);
        }
        self.recount();
        // Back to the (first) object whose label was withdrawn.
        if let Some(i) = self.queue.items.iter().position(|k| *k == first) {
            self.pos = i;
        } else {
            self.queue.insert(self.pos, first);
        }
        self.message = Some(if n == 1 {
            "undone ✓ (retraction saved)".into()
        } else {
            format!("undone ✓ {n} labels (retractions saved)")
        });
        self.settle()
    }

    /// Picks up labels other experts gave since the last look, and the
    /// team's progress (a few events and one small record: cheap).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        // Own labels join the book when their commit is answered; reading the
        // log before that would take them for another expert's.
        if !self.saving.is_empty() {
            return Ok(());
        }
        let events = self.store.label_events_after(self.synced)?;
        let mut changed = false;
        for (id, e) in events {
            self.synced = Some(id);
            if !self.own_ids.remove(&id) {
                self.book.push(id, e);
                changed = true;
            }
        }
        let team = self.store.team()?;
        changed |= team != self.team;
        self.team = team;
        self.dirty |= changed;
        Ok(())
    }

    /// Session counts from what still stands in the log (undo subtracts).
    fn recount(&mut self) {
        let mut by_value: HashMap<String, usize> = HashMap::new();
        let mut n = 0;
        for e in self.book.effective_in_session(&self.session.id) {
            n += 1;
            *by_value.entry(describe(e)).or_default() += 1;
        }
        self.session.labels = n;
        self.session.by_value = by_value;
    }

    fn go(&mut self, pos: usize) -> Result<(), StoreError> {
        self.queue.fill(pos + 1 + PREFETCH, &*self.store, &self.book)?;
        if pos < self.queue.items.len() {
            self.pos = pos;
        } else if self.queue.exhausted {
            self.message = Some(format!(
                "end of the queue ({} candidates, filter {})",
                self.queue.items.len(),
                self.queue.filter.name()
            ));
        }
        self.settle()
    }

    /// Makes sure the current and next candidates are requested.
    pub fn settle(&mut self) -> Result<(), StoreError> {
        if self.gallery {
            return self.settle_gallery();
        }
        self.queue.fill(self.pos + 1 + PREFETCH, &*self.store, &self.book)?;
        let keys: Vec<ObjectKey> = self.queue.items.iter().skip(self.pos).take(1 + PREFETCH).copied().collect();
        for (i, key) in keys.iter().enumerate() {
            let urgent = i == 0;
            if !self.loaded.contains_key(key) {
                self.requests.push((urgent, Request::Load(*key)));
            }
            let have = self.images.iter().any(|s| s.key == *key && s.view == self.view && s.area == self.image_area);
            if !have && self.image_area.width > 0 {
                self.requests
                    .push((urgent, Request::Encode { key: *key, view: self.view.clone(), area: self.image_area }));
            }
        }
        // Forget what is far behind.
        let keep: Vec<ObjectKey> = self.queue.items.iter().skip(self.pos.saturating_sub(8)).take(16).copied().collect();
        self.loaded.retain(|k, _| keep.contains(k));
        self.images.retain(|s| keep.contains(&s.key));
        Ok(())
    }

    /// Gallery: this page's thumbnails first, then the next page's.
    fn settle_gallery(&mut self) -> Result<(), StoreError> {
        let size = self.page_size();
        let start = self.page_start();
        self.queue.fill(start + 2 * size, &*self.store, &self.book)?;
        let keys: Vec<ObjectKey> = self.queue.items.iter().skip(start).take(2 * size).copied().collect();
        for (i, key) in keys.iter().enumerate() {
            let urgent = i < size;
            if !self.loaded.contains_key(key) {
                self.requests.push((urgent, Request::Load(*key)));
            }
            let have = self.images.iter().any(|s| s.key == *key && s.view == self.view && s.area == self.thumb_area);
            if !have && self.thumb_area.width > 0 {
                self.requests
                    .push((urgent, Request::Encode { key: *key, view: self.view.clone(), area: self.thumb_area }));
            }
        }
        let keep: Vec<ObjectKey> =
            self.queue.items.iter().skip(start.saturating_sub(size)).take(3 * size).copied().collect();
        self.loaded.retain(|k, _| keep.contains(k));
        self.images.retain(|s| keep.contains(&s.key));
        Ok(())
    }

    /// The encoded thumbnail of `key` for the gallery, if ready.
    pub fn thumbnail(&self, key: ObjectKey) -> Option<&Shown> {
        self.images.iter().find(|s| s.key == key && s.view == self.view && s.area == self.thumb_area)
    }

    /// A result from the worker; stale ones are dropped.
    pub fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Loaded(c) => {
                let (from, n) = self.window();
                let shown = self.queue.items.iter().skip(from).take(n).any(|k| *k == c.key);
                if shown {
                    self.dirty |= Some(c.key) == self.current() || self.gallery;
                    self.loaded.insert(c.key, *c);
                }
            }
            Reply::Encoded { key, view, area, protocol } => {
                let wanted = if self.gallery { self.thumb_area } else { self.image_area };
                if view == self.view && area == wanted {
                    self.dirty |= Some(key) == self.current() || self.gallery;
                    self.images.retain(|s| !(s.key == key && s.area == area));
                    self.images.push(Shown { key, view, area, protocol });
                    let cap = if self.gallery { 3 * self.page_size() } else { 1 + PREFETCH * 2 };
                    while self.images.len() > cap {
                        self.images.remove(0);
                    }
                }
            }
            Reply::Histogram(h) => {
                if self.histogram_on {
                    self.histogram = Some(*h);
                    self.dirty = true;
                }
            }
            Reply::Rank(key, rank) => {
                self.jump_ranks.insert(key, rank);
                self.dirty |= Some(key) == self.current();
            }
            Reply::Failed(why) => {
                self.message = Some(why);
                self.dirty = true;
            }
        }
    }

    /// The part of the queue whose data is worth keeping: (start, count).
    fn window(&self) -> (usize, usize) {
        if self.gallery { (self.page_start(), 2 * self.page_size()) } else { (self.pos, 1 + PREFETCH) }
    }

    /// The terminal changed size: the cutout area and the grid follow.
    pub fn resize(&mut self, image_area: Size) -> Result<(), StoreError> {
        if image_area != self.image_area {
            self.image_area = image_area;
            self.images.clear();
            self.dirty = true;
            self.settle()?;
        }
        Ok(())
    }

    /// The gallery's grid for the current screen.
    pub fn resize_grid(&mut self, grid: (usize, usize), thumb: Size) -> Result<(), StoreError> {
        if grid != self.grid || thumb != self.thumb_area {
            self.grid = grid;
            self.thumb_area = thumb;
            self.images.retain(|s| s.area == self.image_area);
            self.dirty = true;
            if self.gallery {
                self.settle()?;
            }
        }
        Ok(())
    }

    pub fn menu_items(&self, kind: MenuKind) -> Vec<String> {
        match kind {
            MenuKind::Tag => TAGS.iter().map(|t| t.to_string()).chain(["custom…".to_string()]).collect(),
            MenuKind::Filter => filters(&self.book).iter().map(|f| f.name()).collect(),
            MenuKind::Ordering => Ordering::ALL.iter().map(|o| o.name().to_string()).collect(),
        }
    }

    fn choose(&mut self, kind: MenuKind, i: usize) -> Result<(), StoreError> {
        match kind {
            MenuKind::Tag => match TAGS.get(i) {
                Some(tag) => self.label(LabelValue::Tag, vec![tag.to_string()], false)?,
                None => self.mode = Mode::Prompt { kind: PromptKind::CustomTag, text: String::new() },
            },
            MenuKind::Filter => {
                if let Some(f) = filters(&self.book).into_iter().nth(i) {
                    self.requeue(self.queue.ordering, f)?;
                }
            }
            MenuKind::Ordering => {
                if let Some(&o) = Ordering::ALL.get(i) {
                    if matches!(o, Ordering::Score | Ordering::Uncertain) && self.store.overview()?.scored.is_none() {
                        self.message = Some("no scores yet: run `oddity score`".into());
                    } else {
                        self.requeue(o, self.queue.filter.clone())?;
                    }
                }
            }
        }
        Ok(())
    }

    fn requeue(&mut self, ordering: Ordering, filter: Filter) -> Result<(), StoreError> {
        // The new queue skips what was just labelled.
        self.wait_saved()?;
        self.overview = self.store.overview()?;
        self.queue = Queue::new(&*self.store, &self.book, ordering, filter, &self.session.user)?;
        self.pos = 0;
        self.settle()?;
        self.message = Some(format!("{} order, filter {}", self.queue.ordering.name(), self.queue.filter.name()));
        if self.queue.items.is_empty() {
            self.message = Some(format!("no candidates with filter {}", self.queue.filter.name()));
        }
        Ok(())
    }

    fn submit_prompt(&mut self, kind: PromptKind, text: &str) -> Result<(), StoreError> {
        if text.is_empty() {
            return Ok(());
        }
        match kind {
            PromptKind::CustomTag => self.label(LabelValue::Tag, vec![text.to_string()], false)?,
            PromptKind::Jump => {
                // An image by its id; a spectrum by its id goes to its
                // matched image, or is shown on its own when it has none.
                match self.store.find_object(text)? {
                    Some(key) => {
                        let at = match self.queue.items.iter().position(|k| *k == key) {
                            Some(i) => i,
                            None => {
                                let at = (self.pos + 1).min(self.queue.items.len());
                                self.queue.insert(at, key);
                                // Its rank is counted off the UI thread.
                                if !self.jump_ranks.contains_key(&key) {
                                    self.requests.push((true, Request::Rank(key)));
                                }
                                at
                            }
                        };
                        self.pos = at;
                        self.message = Some(format!("jumped to {text}"));
                        self.settle()?;
                    }
                    None => self.message = Some(format!("no object with id {text}")),
                }
            }
        }
        Ok(())
    }
}

fn filters(book: &LabelBook) -> Vec<Filter> {
    let mut out = vec![Filter::All, Filter::Unlabelled, Filter::Labelled, Filter::Favourites, Filter::Unsure];
    let mut tags: Vec<String> = TAGS.iter().map(|t| t.to_string()).collect();
    for (_, l) in book.iter() {
        for t in &l.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
    }
    out.extend(tags.into_iter().map(Filter::Tag));
    out.extend([BptClass::StarForming, BptClass::Composite, BptClass::Seyfert, BptClass::Liner].map(Filter::Bpt));
    out
}

fn value_name(v: &LabelValue) -> String {
    match v {
        LabelValue::Relevance(r) => format!("relevance {r}"),
        LabelValue::Anomaly => "anomaly".into(),
        LabelValue::Normal => "normal".into(),
        LabelValue::Unsure => "unsure".into(),
        LabelValue::Favourite(true) => "favourite".into(),
        LabelValue::Favourite(false) => "unfavourite".into(),
        LabelValue::Tag => "tag".into(),
        LabelValue::Retract(_) => "undo".into(),
    }
}

fn describe(e: &LabelEvent) -> String {
    describe_value(&e.value, &e.tags)
}

fn describe_value(value: &LabelValue, tags: &[String]) -> String {
    match value {
        LabelValue::Tag => format!("tag {}", tags.join(",")),
        v => value_name(v),
    }
}

/// A Legacy Survey sky-viewer link centred on the object.
pub fn sky_viewer_url(ra: f64, dec: f64) -> String {
    format!("https://www.legacysurvey.org/viewer?ra={ra:.6}&dec={dec:.6}&layer=ls-dr10&zoom=16&mark={ra:.6},{dec:.6}")
}
