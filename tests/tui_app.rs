//! The triage screen without a terminal: keys → actions → state and store,
//! and the drawn screen on ratatui's TestBackend (insta snapshots).

mod common;

use common::screen::screen;

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui_image::picker::Picker;

use oddity::store::{LabelValue, Store};
use oddity::tui::app::{App, Mode};
use oddity::tui::worker::Loader;
use oddity::tui::{Filter, Keymap, Ordering, ui};

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn app(store: &Arc<Store>) -> App {
    App::new(store.clone(), Keymap::default_keys(), "tester".into(), Ordering::Score, Filter::Unlabelled).unwrap()
}

fn serve(app: &mut App, loader: &mut Loader) {
    oddity::tui::serve_requests(app, loader, false);
}

#[test]
fn labels_undo_tags_and_navigation_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 120)).unwrap());
    let mut app = app(&store);
    let first = app.current().unwrap();
    assert_eq!(first, store.ranked().unwrap().next().unwrap().unwrap().0, "starts at the most anomalous");

    app.on_key(key('a')).unwrap();
    assert_eq!(app.pos, 1, "labelling moves on at once");
    // The label is written off the keypress path: "saved" only once on disk.
    let msg = app.message.clone().unwrap();
    assert!(msg.starts_with("saving ⋯ anomaly"), "{msg}");
    app.wait_saved().unwrap();
    assert!(app.message.as_deref().unwrap().starts_with("saved ✓ anomaly"));
    assert_eq!(store.label_events().unwrap().len(), 1, "on disk when it says saved");
    app.on_key(key('4')).unwrap();
    let second = app.queue.items[1];
    app.on_key(code(KeyCode::Left)).unwrap();
    app.on_key(code(KeyCode::Left)).unwrap();
    assert_eq!(app.pos, 0);
    app.on_key(key('l')).unwrap();
    assert_eq!(app.pos, 1);

    // Undo withdraws the latest label of the session and goes back to it.
    app.on_key(key('u')).unwrap();
    assert_eq!(app.current(), Some(second));
    assert!(!app.book.is_labelled(second));
    assert_eq!(app.session.labels, 1);

    // Tag through the menu, custom tag through the prompt.
    app.on_key(key('t')).unwrap();
    assert!(matches!(app.mode, Mode::Menu { .. }));
    app.on_key(key('2')).unwrap();
    app.on_key(key('t')).unwrap();
    app.on_key(key('6')).unwrap();
    for c in "jellyfish".chars() {
        app.on_key(key(c)).unwrap();
    }
    app.on_key(code(KeyCode::Enter)).unwrap();
    app.wait_saved().unwrap();
    let tags = &app.book.get(second).unwrap().tags;
    assert!(tags.contains("ring") && tags.contains("jellyfish"), "{tags:?}");

    // Favourite and unsure are labels like the others.
    app.on_key(key('*')).unwrap();
    app.on_key(key('x')).unwrap();
    app.wait_saved().unwrap();

    let events = store.label_events().unwrap();
    let values: Vec<&LabelValue> = events.iter().map(|(_, e)| &e.value).collect();
    assert!(
        matches!(
            values[..],
            [
                LabelValue::Anomaly,
                LabelValue::Relevance(4),
                LabelValue::Retract(_),
                LabelValue::Tag,
                LabelValue::Tag,
                LabelValue::Favourite(true),
                LabelValue::Unsure
            ]
        ),
        "{values:?}"
    );
    assert!(events.iter().all(|(_, e)| e.user == "tester" && e.session == app.session.id));
    assert_eq!(events[0].1.object, first);

    // A fresh app (next session) skips what is labelled.
    drop(app);
    let next =
        App::new(store.clone(), Keymap::default_keys(), "tester".into(), Ordering::Score, Filter::Unlabelled).unwrap();
    assert!(!next.queue.items.contains(&first));
}

#[test]
fn jump_filter_ordering_and_view_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 80)).unwrap());
    let mut app = app(&store);
    let target =
        store.iter_objects().map(|r| r.unwrap()).find(|(_, o)| o.kind == oddity::store::SourceKind::Images).unwrap();
    app.on_key(key('/')).unwrap();
    for c in target.1.id.chars() {
        app.on_key(key(c)).unwrap();
    }
    app.on_key(code(KeyCode::Enter)).unwrap();
    assert_eq!(app.current(), Some(target.0));
    app.on_key(key('/')).unwrap();
    for c in "no-such-id".chars() {
        app.on_key(key(c)).unwrap();
    }
    app.on_key(code(KeyCode::Enter)).unwrap();
    assert!(app.message.as_deref().unwrap().contains("no object with id no-such-id"));

    // Ordering menu: 2 = id order starts at the first image.
    app.on_key(key('o')).unwrap();
    app.on_key(key('2')).unwrap();
    assert_eq!(app.queue.ordering, Ordering::Id);
    assert_eq!(app.current(), Some(target.0));
    // Most uncertain: scores nearest the forest's boundary (0.5) first.
    app.on_key(key('o')).unwrap();
    app.on_key(key('5')).unwrap();
    assert_eq!(app.queue.ordering, Ordering::Uncertain);
    let distance = |k| (store.score_of(k).unwrap().unwrap() - 0.5).abs();
    let first = distance(app.current().unwrap());
    assert!(app.queue.items.iter().all(|k| distance(*k) >= first), "nearest to 0.5 first");
    app.on_key(key('o')).unwrap();
    app.on_key(key('2')).unwrap();

    // Filter: labelled → empty until something is labelled.
    app.on_key(key('f')).unwrap();
    app.on_key(key('3')).unwrap();
    assert!(app.queue.items.is_empty());
    assert!(app.message.as_deref().unwrap().contains("no candidates"));
    app.on_key(key('f')).unwrap();
    app.on_key(key('1')).unwrap();
    assert_eq!(app.queue.filter, Filter::All);

    app.on_key(key('s')).unwrap();
    assert_eq!(app.view.stretch.name(), "log");
    app.on_key(key('z')).unwrap();
    assert_eq!(app.view.zoom, 2);
    app.on_key(key('y')).unwrap();
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    serve(&mut app, &mut loader);
    app.on_key(key('y')).unwrap();
    let url = app.clipboard.clone().expect("link for the clipboard");
    assert!(url.starts_with("https://www.legacysurvey.org/viewer?ra="), "{url}");
    app.on_key(key('?')).unwrap();
    assert_eq!(app.mode, Mode::Help);
    app.on_key(key('w')).unwrap();
    assert_eq!(app.mode, Mode::Browse);
    app.on_key(key('q')).unwrap();
    assert!(app.quit);
}

#[test]
fn screens_at_three_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 60)).unwrap());
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    let mut app = app(&store);
    app.no_color = true;
    let big = screen(&mut app, &mut loader, 120, 40);
    assert!(big.contains("object") && big.contains("spectrum") && big.contains("1 of ~60"), "{big}");
    insta::assert_snapshot!("triage_120x40", big);
    let tiny = screen(&mut app, &mut loader, 40, 12);
    assert!(tiny.contains("enlarge to 60x16"), "{tiny}");
    insta::assert_snapshot!("triage_40x12", tiny);
    app.on_key(key('?')).unwrap();
    let help = screen(&mut app, &mut loader, 100, 36);
    assert!(help.contains("label anomaly") && help.contains("undo"), "{help}");
    insta::assert_snapshot!("triage_help_100x36", help);
}

#[test]
fn gallery_labels_the_cursor_and_whole_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 120)).unwrap());
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    let mut app = app(&store);
    app.no_color = true;
    app.on_key(key('g')).unwrap();
    assert!(app.gallery);
    // 120x41: 6 columns x 4 rows of 18x10 cells (the 6x4 grid of the bench).
    let big = screen_gallery(&mut app, &mut loader, 120, 41);
    assert_eq!(app.grid, (6, 4));
    insta::assert_snapshot!("gallery_120x41", big);
    let small = screen_gallery(&mut app, &mut loader, 80, 24);
    assert_eq!(app.grid, (4, 2));
    insta::assert_snapshot!("gallery_80x24", small);

    // Labels act on the cell under the cursor; arrows move it.
    let first = app.current().unwrap();
    app.on_key(key('a')).unwrap();
    assert_eq!(app.pos, 1);
    app.on_key(code(KeyCode::Down)).unwrap();
    assert_eq!(app.pos, 5, "down moves one row of 4");
    app.on_key(key('*')).unwrap();
    let starred = app.current().unwrap();
    app.on_key(code(KeyCode::Up)).unwrap();
    assert_eq!(app.pos, 1);
    // N: everything unlabelled on the page becomes normal, then the next page.
    app.on_key(KeyEvent::new(KeyCode::Char('N'), KeyModifiers::SHIFT)).unwrap();
    assert_eq!(app.pos, 8, "on to the next page");
    app.wait_saved().unwrap();
    assert!(app.message.as_deref().unwrap().contains("7 normal on this page"), "{:?}", app.message);
    let page: Vec<_> = app.queue.items[..8].to_vec();
    for k in &page {
        let l = app.book.get(*k).expect("every object on the page is labelled");
        if *k == first {
            assert_eq!(l.verdict, Some(oddity::store::Verdict::Anomaly), "labelled objects keep their label");
        } else {
            assert_eq!(l.verdict, Some(oddity::store::Verdict::Normal));
        }
    }
    assert!(app.book.get(starred).unwrap().favourite);
    assert_eq!(store.label_events().unwrap().len(), 1 + 1 + 7);
    app.on_key(code(KeyCode::PageUp)).unwrap();
    assert_eq!(app.pos, 0);
    app.on_key(code(KeyCode::PageDown)).unwrap();
    assert_eq!(app.pos, 8);
    app.on_key(key('H')).unwrap();
    assert!(app.histogram.is_none(), "built by the worker, not on the key");
    serve(&mut app, &mut loader);
    assert!(app.histogram.as_ref().is_some_and(|h| h.n == 120));
}

fn screen_gallery(app: &mut App, loader: &mut Loader, w: u16, h: u16) -> String {
    let (grid, _, thumb) = ui::gallery_layout(Rect::new(0, 0, w, h));
    app.resize_grid(grid, thumb).unwrap();
    screen(app, loader, w, h)
}

#[test]
fn histogram_panel_marks_labels() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 60)).unwrap());
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    let mut app = app(&store);
    app.no_color = true;
    app.on_key(key('a')).unwrap();
    app.on_key(key('n')).unwrap();
    app.wait_saved().unwrap();
    app.on_key(key('H')).unwrap();
    let s = screen(&mut app, &mut loader, 120, 40);
    assert!(
        s.contains("60 objects")
            && s.contains("labelled: 1 interesting (red), 1 normal (green)")
            && (s.contains("▼ here") || s.contains("here ▼")),
        "{s}"
    );
}

#[test]
fn rank_after_a_jump_and_the_saved_message_name_the_right_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 80)).unwrap());
    let ranked: Vec<_> = store.ranked().unwrap().map(|r| r.unwrap().0).collect();
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    let mut app = app(&store);
    // Labelling before anything is loaded still names the object.
    let first_id = store.object(ranked[0]).unwrap().unwrap().id;
    app.on_key(key('a')).unwrap();
    app.wait_saved().unwrap();
    let msg = app.message.clone().unwrap();
    assert!(msg.starts_with("saved ✓ anomaly") && msg.ends_with(&first_id), "{msg}");
    // Jump to the 40th most anomalous object: its rank, not its queue slot.
    let target = store.object(ranked[39]).unwrap().unwrap().id;
    app.on_key(key('/')).unwrap();
    for c in target.chars() {
        app.on_key(key(c)).unwrap();
    }
    app.on_key(code(KeyCode::Enter)).unwrap();
    let s = screen(&mut app, &mut loader, 120, 40);
    assert!(s.contains("rank 40 (score order)"), "{s}");
    // And the objects after it keep theirs: the jump came from rank 2, the
    // next one is rank 3 (the old screen said 4, one off from here on).
    app.on_key(key('l')).unwrap();
    let s = screen(&mut app, &mut loader, 120, 40);
    assert!(s.contains("rank 3 (score order)"), "{s}");
}

#[test]
fn undo_after_page_normal_brings_the_whole_page_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 60)).unwrap());
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    let mut app = app(&store);
    app.on_key(key('g')).unwrap();
    screen_gallery(&mut app, &mut loader, 80, 24);
    app.on_key(key('a')).unwrap();
    app.on_key(KeyEvent::new(KeyCode::Char('N'), KeyModifiers::SHIFT)).unwrap();
    app.wait_saved().unwrap();
    assert_eq!(app.book.iter().filter(|(_, l)| l.is_labelled()).count(), 8);
    app.on_key(key('u')).unwrap();
    assert!(app.message.as_deref().unwrap().contains("undone ✓ 7 labels"), "{:?}", app.message);
    let labelled: Vec<_> = app.book.iter().filter(|(_, l)| l.is_labelled()).collect();
    assert_eq!(labelled.len(), 1, "only the anomaly labelled before the page stays");
    app.on_key(key('u')).unwrap();
    assert_eq!(app.book.iter().filter(|(_, l)| l.is_labelled()).count(), 0);
}

#[test]
fn help_fits_wide_screens_and_scrolls_on_small_ones_and_labels_stay_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 40)).unwrap());
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    let mut app = app(&store);
    app.on_key(key('?')).unwrap();
    let wide = screen(&mut app, &mut loader, 160, 48);
    assert!(wide.contains("gallery: label every unlabelled object on the page normal"), "{wide}");
    let small = screen(&mut app, &mut loader, 40, 12);
    assert!(!small.contains("quit (labels"), "{small}");
    for _ in 0..80 {
        app.on_key(code(KeyCode::Down)).unwrap();
    }
    assert_eq!(app.mode, Mode::Help, "arrows scroll, they do not close");
    let end = screen(&mut app, &mut loader, 40, 12);
    assert!(end.contains("quit (once every label is s") && end.contains("aved)"), "the last line is reachable: {end}");
    app.on_key(key('w')).unwrap();
    assert_eq!(app.mode, Mode::Browse);
    // 40x12: the label line is not pushed off the screen.
    app.on_key(key('a')).unwrap();
    app.on_key(key('h')).unwrap();
    app.wait_saved().unwrap();
    let tiny = screen(&mut app, &mut loader, 40, 12);
    assert!(tiny.contains("labels anomaly"), "{tiny}");
}

#[test]
fn histogram_bars_fill_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 20)).unwrap());
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    let mut app = app(&store);
    app.no_color = true;
    // A smooth distribution over every fine bin.
    let counts: Vec<u64> = (0..1024).map(|i| 10 + (i as u64 * 7) % 50).collect();
    app.histogram_on = true;
    app.histogram = Some(oddity::serve::Histogram { lo: 0.3, hi: 0.7, n: counts.iter().sum(), counts, marks: vec![] });
    let s = screen(&mut app, &mut loader, 120, 40);
    let rows: Vec<&str> = s.lines().collect();
    // The histogram's lowest row sits above its bottom border and the status line.
    let bottom: Vec<char> = rows[rows.len() - 3].trim_matches('"').chars().collect();
    let inner = &bottom[1..bottom.len() - 1];
    let filled = inner.iter().filter(|c| **c != ' ').count();
    assert!(filled == inner.len(), "gaps between bars: {filled}/{} in {:?}", inner.len(), rows[rows.len() - 3]);
}

#[test]
fn no_color_halfblock_cutouts_are_shades_not_colour_noise() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 20)).unwrap());
    let mut loader = Loader::new(store.clone(), Picker::halfblocks());
    loader.no_color = true;
    let mut app = app(&store);
    app.no_color = true;
    let s = screen(&mut app, &mut loader, 120, 40);
    let shown = app.current_image().expect("cutout encoded");
    assert!(matches!(*shown.protocol, oddity::tui::worker::Picture::Shades(_)));
    assert!(!s.contains('▀') && !s.contains('▄'), "{s}");
    assert!(s.chars().any(|c| ".:-=+*#%@".contains(c)), "{s}");
}

#[test]
fn a_team_gets_disjoint_candidates_with_a_shared_overlap_sample() {
    use oddity::serve::Catalog;
    use oddity::serve::hub::Hub;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 80)).unwrap());
    let expert = |hub: &Arc<Hub>, who: &str| -> App {
        let s: Arc<dyn Catalog> = Arc::new(hub.join(&format!("s-{who}"), who, &[]));
        App::new(s, Keymap::default_keys(), who.into(), Ordering::Score, Filter::Unlabelled).unwrap()
    };
    let hub = Hub::new(store.clone(), 0.0, None);
    let (mut ann, mut bob) = (expert(&hub, "ann"), expert(&hub, "bob"));
    ann.queue.fill(20, &*ann.store, &ann.book).unwrap();
    bob.queue.fill(20, &*bob.store, &bob.book).unwrap();
    assert!(ann.queue.items.iter().all(|k| !bob.queue.items.contains(k)), "disjoint by default");
    ann.on_key(key('a')).unwrap();
    bob.on_key(key('n')).unwrap();
    ann.wait_saved().unwrap();
    bob.wait_saved().unwrap();
    bob.sync().unwrap();
    let team = bob.team.clone().unwrap();
    assert_eq!((team.experts, team.labels), (2, 2), "{team:?}");
    drop((ann, bob));

    // With an overlap, the shared sample goes to both, and stays in the
    // other's queue after one of them labels it.
    let hub = Hub::new(store.clone(), 0.5, None);
    let (mut ann, mut bob) = (expert(&hub, "ann"), expert(&hub, "bob"));
    ann.queue.fill(20, &*ann.store, &ann.book).unwrap();
    bob.queue.fill(20, &*bob.store, &bob.book).unwrap();
    let both: Vec<_> = ann.queue.items.iter().filter(|k| bob.queue.items.contains(k)).copied().collect();
    assert!(!both.is_empty() && both.iter().all(|k| oddity::serve::shared_candidate(*k, 0.5)), "{both:?}");
    let shared = both[0];
    let at = ann.queue.items.iter().position(|k| *k == shared).unwrap();
    ann.pos = at;
    ann.on_key(key('a')).unwrap();
    ann.wait_saved().unwrap();
    let fresh = expert(&hub, "bob");
    let mut fresh = fresh;
    fresh.queue.fill(40, &*fresh.store, &fresh.book).unwrap();
    assert!(fresh.queue.items.contains(&shared), "bob still sees what ann labelled in the overlap");
}

#[test]
fn kitty_cutouts_go_compressed_when_the_terminal_inflates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 20)).unwrap());
    let key = store.ranked().unwrap().next().unwrap().unwrap().0;
    let sent = |zlib: bool| -> String {
        let mut picker = Picker::halfblocks();
        picker.set_protocol_type(ratatui_image::picker::ProtocolType::Kitty);
        let mut loader = Loader::new(store.clone(), picker);
        loader.kitty_zlib = zlib;
        let area = ratatui::layout::Size::new(60, 30);
        let Some(oddity::tui::worker::Picture::Graphic(p)) = loader.encode(key, &Default::default(), area) else {
            panic!("a kitty graphic")
        };
        let rect = Rect::new(0, 0, 60, 30);
        let mut buf = ratatui::buffer::Buffer::empty(rect);
        ratatui::widgets::Widget::render(ratatui_image::Image::new(&p), rect, &mut buf);
        buf.content().iter().map(|c| c.symbol()).collect()
    };
    let (plain, deflated) = (sent(false), sent(true));
    assert!(deflated.contains("o=z") && !plain.contains("o=z"));
    assert!(deflated.len() * 10 < plain.len(), "{} vs {} bytes", deflated.len(), plain.len());
}

/// A store whose disk can stall (the test holds `stall`) or fail.
struct SlowDisk {
    inner: Arc<Store>,
    stall: std::sync::atomic::AtomicBool,
    fail: std::sync::atomic::AtomicBool,
}

mod slow_disk {
    use super::SlowDisk;
    use oddity::features::spectral::BptClass;
    use oddity::serve::{CandidateMeta, Catalog, Cursor, Histogram, Overview, Page};
    use oddity::store::{LabelEvent, LineSummary, ObjectKey, StoreError};
    use oddity::tui::Ordering;
    use std::path::PathBuf;

    impl Catalog for SlowDisk {
        fn store_path(&self) -> PathBuf {
            Catalog::store_path(&*self.inner)
        }
        fn label_events_after(&self, after: Option<u64>) -> Result<Vec<(u64, LabelEvent)>, StoreError> {
            Catalog::label_events_after(&*self.inner, after)
        }
        fn append_labels(&self, events: Vec<LabelEvent>) -> Result<Vec<u64>, StoreError> {
            while self.stall.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                let source = std::io::Error::other("No space left on device");
                return Err(StoreError::Io { path: Catalog::store_path(self), source });
            }
            Catalog::append_labels(&*self.inner, events)
        }
        fn overview(&self) -> Result<Overview, StoreError> {
            self.inner.overview()
        }
        fn page(&self, ordering: Ordering, cursor: Cursor, n: usize) -> Result<Page, StoreError> {
            self.inner.page(ordering, cursor, n)
        }
        fn meta(&self, key: ObjectKey) -> Result<Option<CandidateMeta>, StoreError> {
            self.inner.meta(key)
        }
        fn object_id(&self, key: ObjectKey) -> Result<Option<String>, StoreError> {
            Catalog::object_id(&*self.inner, key)
        }
        fn find_object(&self, id: &str) -> Result<Option<ObjectKey>, StoreError> {
            Catalog::find_object(&*self.inner, id)
        }
        fn bpt(&self, key: ObjectKey) -> Result<Option<BptClass>, StoreError> {
            Catalog::bpt(&*self.inner, key)
        }
        fn line_summary(&self) -> Result<Option<LineSummary>, StoreError> {
            Catalog::line_summary(&*self.inner)
        }
        fn histogram(&self, bins: usize, marks: Vec<(ObjectKey, bool)>) -> Result<Histogram, StoreError> {
            self.inner.histogram(bins, marks)
        }
        fn rank(&self, key: ObjectKey) -> Result<Option<u64>, StoreError> {
            Catalog::rank(&*self.inner, key)
        }
    }
}

#[test]
fn labelling_moves_on_while_the_disk_stalls_and_a_failed_write_says_not_saved() {
    use oddity::tui::app::UndoStep;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&common::pipeline::scored_store(dir.path(), 60)).unwrap());
    let disk = Arc::new(SlowDisk { inner: store.clone(), stall: Default::default(), fail: Default::default() });
    let mut app =
        App::new(disk.clone(), Keymap::default_keys(), "tester".into(), Ordering::Score, Filter::Unlabelled).unwrap();
    let shown: Vec<_> = app.queue.items[..4].to_vec();

    // The disk stalls: three labels, and the screen is on the fourth object.
    let stall = |on: bool| disk.stall.store(on, std::sync::atomic::Ordering::SeqCst);
    stall(true);
    for c in ['a', 'n', '3'] {
        app.on_key(key(c)).unwrap();
    }
    assert_eq!(app.current(), Some(shown[3]), "labelling does not wait for the disk");
    assert_eq!(app.unsaved(), 3);
    assert!(app.message.as_deref().unwrap().starts_with("saving ⋯ relevance 3"), "{:?}", app.message);
    assert!(store.label_events().unwrap().is_empty());
    app.collect_saved();
    assert_eq!(app.unsaved(), 3, "nothing is called saved before its commit");
    stall(false);
    app.wait_saved().unwrap();
    let events = store.label_events().unwrap();
    let objects: Vec<_> = events.iter().map(|(_, e)| e.object).collect();
    assert_eq!(objects, shown[..3], "written in the order given");
    assert!(app.message.as_deref().unwrap().starts_with("saved ✓ relevance 3"), "{:?}", app.message);
    assert!(app.undo_stack.iter().all(|s| matches!(s, UndoStep::Saved(_))));

    // Undo of a label still on its way waits for its id, then retracts it.
    stall(true);
    app.on_key(key('a')).unwrap();
    let later = disk.clone();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        later.stall.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    app.on_key(key('u')).unwrap();
    release.join().unwrap();
    assert_eq!(app.current(), Some(shown[3]));
    assert!(!app.book.is_labelled(shown[3]));
    assert_eq!(store.label_events().unwrap().len(), 5, "the label and its retraction");

    // A full disk: the screen says NOT saved and brings the object back.
    disk.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    app.on_key(key('n')).unwrap();
    assert_ne!(app.current(), Some(shown[3]), "on to the next object before the write fails");
    app.wait_saved().unwrap();
    let msg = app.message.clone().unwrap();
    assert!(msg.starts_with("NOT saved: normal") && msg.contains("No space left on device"), "{msg}");
    assert_eq!(app.current(), Some(shown[3]), "back to the object whose label was lost");
    assert!(!app.book.is_labelled(shown[3]));
    assert_eq!(store.label_events().unwrap().len(), 5, "nothing stored is lost");
    assert_eq!(app.undo_stack.len(), 3, "a lost label is not an undo step");
    assert!(matches!(&app.not_saved[..], [lost] if lost.contains("No space left")), "{:?}", app.not_saved);
    // The disk has room again: the same key saves it.
    disk.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    app.on_key(key('n')).unwrap();
    app.wait_saved().unwrap();
    assert!(app.book.is_labelled(shown[3]));
}
