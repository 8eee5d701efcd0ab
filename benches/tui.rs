//! TUI latency: keypress → next candidate fully drawn, at 200x60, on a demo
//! store, for half-block and kitty encodings. p50/p99 over 1,000 presses.
//!
//! "prefetched": the worker has had the time between keypresses (an expert
//! looks at a candidate for ~1 s) to read and encode the next candidates, as
//! in the real screen; the timed part is the keypress, the state update and
//! the frame. "cold": nothing prefetched; the timed part also reads the
//! pixels and spectrum from HDF5 and renders and encodes the cutout.
//! Usage: cargo bench --bench tui [-- GALAXIES]

use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui_image::picker::{Picker, ProtocolType};

use oddity::store::Store;
use oddity::tui::app::App;
use oddity::tui::worker::Loader;
use oddity::tui::{Filter, Keymap, Ordering, ui};

fn run(cmd: &[&str]) {
    let bin = env!("CARGO_BIN_EXE_oddity");
    let st = std::process::Command::new(bin)
        .args(cmd)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    assert!(st.success(), "{cmd:?}");
}

fn serve(app: &mut App, loader: &mut Loader, only_urgent: bool) {
    oddity::tui::serve_requests(app, loader, only_urgent);
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Presses `key` `n` times; times each press until its frame is drawn.
/// Prefetched: the worker's background work runs between presses (untimed),
/// as while the expert looks; cold: it is thrown away.
fn timed_presses(
    app: &mut App,
    loader: &mut Loader,
    terminal: &mut Terminal<TestBackend>,
    key: KeyCode,
    n: usize,
    prefetched: bool,
    check_cutout: bool,
) -> Vec<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        app.on_key(KeyEvent::new(key, KeyModifiers::NONE)).unwrap();
        // What must happen before the frame shows the candidate.
        serve(app, loader, true);
        terminal.draw(|f| ui::draw(f, app)).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if check_cutout {
            assert!(app.current_image().is_some(), "the frame shows the cutout");
        }
        if prefetched {
            serve(app, loader, false);
        } else {
            app.requests.clear();
        }
    }
    times
}

fn report(encoding: &str, prefetched: bool, mut times: Vec<f64>) {
    let max = times.iter().cloned().fold(0.0, f64::max);
    let (p50, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.99));
    let mode = if prefetched { "prefetched" } else { "cold" };
    println!("{encoding:<12} {mode:<11} {p50:>8.2} {p99:>8.2} {max:>8.2}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let galaxies: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let survey = dir.path().join("survey");
    let store = dir.path().join("store");
    let (sv, st) = (survey.to_str().unwrap(), store.to_str().unwrap());
    run(&["synth", sv, "--galaxies", &galaxies.to_string()]);
    run(&["--store", st, "ingest", sv]);
    run(&["--store", st, "crossmatch"]);
    run(&["--store", st, "features"]);
    run(&["--store", st, "score"]);
    let store = Arc::new(Store::open(&store).unwrap());
    let presses = 1000.min(galaxies - 10);
    println!("TUI latency: keypress → next candidate drawn, 200x60, {presses} presses, {galaxies}-galaxy demo store");
    println!("{:<12} {:<11} {:>8} {:>8} {:>8}", "encoding", "mode", "p50 ms", "p99 ms", "max ms");
    for (name, proto) in [("halfblocks", ProtocolType::Halfblocks), ("kitty", ProtocolType::Kitty)] {
        for prefetched in [true, false] {
            let mut picker = Picker::halfblocks();
            picker.set_protocol_type(proto);
            let mut loader = Loader::new(store.clone(), picker);
            let mut app =
                App::new(store.clone(), Keymap::default_keys(), "bench".into(), Ordering::Score, Filter::All).unwrap();
            let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
            let areas = ui::layout(Rect::new(0, 0, 200, 60));
            app.resize(ui::image_size(&areas)).unwrap();
            serve(&mut app, &mut loader, false);
            terminal.draw(|f| ui::draw(f, &app)).unwrap();
            let times =
                timed_presses(&mut app, &mut loader, &mut terminal, KeyCode::Char('l'), presses, prefetched, true);
            report(name, prefetched, times);
        }
    }
    println!("goal: p99 < 30 ms");

    // Gallery paging: PageDown → the next 6x4 page fully drawn (half-blocks),
    // with the next page prefetched in the background (as the worker does
    // while the expert looks at a page) and cold.
    let pages = 200.min(galaxies / 24 - 2);
    println!();
    println!("gallery paging: pagedown → next 6x4 page drawn, 120x41, {pages} pages, halfblocks");
    println!("{:<12} {:<11} {:>8} {:>8} {:>8}", "encoding", "mode", "p50 ms", "p99 ms", "max ms");
    for prefetched in [true, false] {
        let mut loader = Loader::new(store.clone(), Picker::halfblocks());
        let mut app =
            App::new(store.clone(), Keymap::default_keys(), "bench".into(), Ordering::Score, Filter::All).unwrap();
        let screen = Rect::new(0, 0, 120, 41);
        let mut terminal = Terminal::new(TestBackend::new(120, 41)).unwrap();
        app.resize(ui::image_size(&ui::layout(screen))).unwrap();
        let (grid, _, thumb) = ui::gallery_layout(screen);
        app.resize_grid(grid, thumb).unwrap();
        assert_eq!(grid, (6, 4));
        app.on_key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE)).unwrap();
        serve(&mut app, &mut loader, false);
        terminal.draw(|f| ui::draw(f, &app)).unwrap();
        let times = timed_presses(&mut app, &mut loader, &mut terminal, KeyCode::PageDown, pages, prefetched, false);
        report("halfblocks", prefetched, times);
    }
    println!("goal: p99 < 100 ms");
}
