//! `oddity triage`: the keyboard-driven labelling screen.
//!
//! State lives in [`app::App`] and changes only in `App::update`; keys map to
//! actions through [`keymap`]; [`ui::draw`] is a pure function of the state;
//! reading pixels and encoding images happens on a [`worker`] thread. One
//! event loop waits on one channel fed by the input thread, the worker and a
//! timer, and redraws only when something changed (every frame costs
//! bandwidth over SSH).

pub mod app;
pub mod keymap;
pub mod probe;
pub mod queue;
pub mod saver;
pub mod ui;
pub mod worker;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyEventKind};
use ratatui_image::picker::ProtocolType;

pub use app::App;
pub use keymap::{Action, Keymap};
pub use queue::{Filter, Ordering};

use crate::serve::Catalog;
use crate::store::{Store, StoreError};

/// How cutouts reach the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graphics {
    /// Ask the terminal (kitty, sixel, iTerm2), else half-blocks.
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    /// Unicode half-blocks: works in every colour terminal.
    Halfblocks,
}

#[derive(Debug, Clone)]
pub struct TriageOptions {
    pub graphics: Graphics,
    pub keymap: Option<PathBuf>,
    pub ordering: Ordering,
    pub filter: Filter,
    pub user: String,
    pub no_color: bool,
}

/// What a session did, printed when it ends.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub labels: usize,
    pub by_value: Vec<(String, usize)>,
    pub minutes: f64,
    pub per_minute: f64,
    pub labelled_total: usize,
    /// What a retrain would learn from: (interesting, normal) objects.
    pub training: (usize, usize),
    /// Labels the store refused (what, and why), each said on the screen.
    pub not_saved: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keymap(#[from] keymap::KeymapError),
    #[error("keymap {0}: {1}")]
    KeymapFile(String, std::io::Error),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error("oddity triage needs a terminal, but its {0} is not one (in scripts use `oddity top` or `oddity export`)")]
    NoTerminal(&'static str),
}

/// How often a screen picks up the team's labels and progress.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How long the capability probe waits for the terminal's answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

enum Event {
    Key(crossterm::event::KeyEvent),
    Redraw,
    Reply(worker::Reply),
    /// The label writer committed something.
    Saved,
}

/// Loads the keymap: built-in defaults, overridden by the user's file.
pub fn load_keymap(path: Option<&std::path::Path>) -> Result<Keymap, TuiError> {
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None => std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|c| c.join("oddity").join("keymap.toml"))
            .filter(|p| p.exists()),
    };
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| TuiError::KeymapFile(p.display().to_string(), e))?;
            Ok(Keymap::with_overrides(&text, &p.display().to_string())?)
        }
        None => Ok(Keymap::default_keys()),
    }
}

fn protocol_name(p: ProtocolType) -> &'static str {
    match p {
        ProtocolType::Halfblocks => "halfblocks",
        ProtocolType::Sixel => "sixel",
        ProtocolType::Kitty => "kitty",
        ProtocolType::Iterm2 => "iterm2",
    }
}

/// The screen needs a terminal on both ends; say so in one line instead of
/// failing half-way through set-up.
pub fn check_terminal() -> Result<(), TuiError> {
    if !rustix::termios::isatty(rustix::stdio::stdin()) {
        return Err(TuiError::NoTerminal("standard input"));
    }
    if !rustix::termios::isatty(rustix::stdio::stdout()) {
        return Err(TuiError::NoTerminal("standard output"));
    }
    Ok(())
}

/// Runs the triage screen until the user quits. `local` is the store when
/// this process holds it (the worker then reads records directly).
pub fn run(
    store: Arc<dyn Catalog>,
    local: Option<Arc<Store>>,
    opts: &TriageOptions,
) -> Result<SessionSummary, TuiError> {
    let keymap = load_keymap(opts.keymap.as_deref())?;
    check_terminal()?;
    let mut terminal = ratatui::try_init()?;
    let result = (|| {
        // Probe the terminal once, before the input thread exists; keys typed
        // meanwhile are replayed first (nothing typed is lost).
        let probe::Probe { picker, typed, answered, kitty_zlib } = probe::probe(opts.graphics, PROBE_TIMEOUT);
        tracing::info!(answered, replayed = typed.len(), kitty_zlib, "terminal probe");
        tracing::info!(protocol = protocol_name(picker.protocol_type()), font = ?picker.font_size(), "graphics");
        if picker.tmux_detected()
            && picker.protocol_type() == ProtocolType::Halfblocks
            && opts.graphics == Graphics::Auto
        {
            tracing::info!("inside tmux: for kitty/sixel images enable `set -g allow-passthrough on` in tmux.conf");
        }
        let mut app = App::new(store.clone(), keymap, opts.user.clone(), opts.ordering, opts.filter.clone())?;
        app.no_color = opts.no_color;
        app.graphics = protocol_name(picker.protocol_type());
        let mut loader = worker::Loader::with_catalog(local, store.clone(), picker);
        loader.no_color = opts.no_color;
        loader.kitty_zlib = kitty_zlib;
        event_loop(&mut terminal, &mut app, loader, typed)?;
        let mut by_value: Vec<(String, usize)> = app.session.by_value.iter().map(|(k, v)| (k.clone(), *v)).collect();
        by_value.sort();
        Ok(SessionSummary {
            labels: app.session.labels,
            by_value,
            minutes: app.session.started.elapsed().as_secs_f64() / 60.0,
            per_minute: app.session.per_minute(),
            labelled_total: app.book.iter().filter(|(_, l)| l.is_labelled()).count(),
            training: app.book.training_counts(),
            not_saved: app.not_saved.clone(),
        })
    })();
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    loader: worker::Loader,
    typed: Vec<crossterm::event::KeyEvent>,
) -> Result<(), TuiError> {
    let (tx, rx) = mpsc::channel::<Event>();
    let saved_tx = tx.clone();
    app.on_saved_wake(Box::new(move || {
        let _ = saved_tx.send(Event::Saved);
    }));
    let req_tx = spawn_worker(loader, tx.clone())?;
    // Keys typed during the probe come first, in order.
    for k in typed {
        let _ = tx.send(Event::Key(k));
    }
    spawn_input(tx)?;
    let mut last_tick = Instant::now();
    let mut last_sync = Instant::now();
    loop {
        let size = terminal.size()?;
        let screen = ratatui::layout::Rect::new(0, 0, size.width, size.height);
        let areas = ui::layout(screen);
        app.resize(ui::image_size(&areas))?;
        let (grid, _, thumb) = ui::gallery_layout(screen);
        app.resize_grid(grid, thumb)?;
        for r in app.requests.drain(..) {
            let _ = req_tx.send(r);
        }
        if app.dirty {
            terminal.draw(|f| ui::draw(f, app))?;
            app.dirty = false;
            if let Some(text) = app.clipboard.take() {
                osc52(&text)?;
            }
        }
        if app.quit {
            return quit(terminal, app);
        }
        // Wait for something, then take everything queued before drawing.
        let first = rx.recv_timeout(SYNC_EVERY);
        let mut events: Vec<Event> = Vec::new();
        match first {
            Ok(e) => events.push(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        events.extend(rx.try_iter());
        for e in events {
            match e {
                Event::Key(k) => app.on_key(k)?,
                Event::Redraw => app.dirty = true,
                Event::Reply(r) => app.on_reply(r),
                Event::Saved => app.collect_saved(),
            }
            if app.quit {
                break;
            }
        }
        // Other experts' labels and the team's progress.
        if last_sync.elapsed() > SYNC_EVERY {
            last_sync = Instant::now();
            app.sync()?;
        }
        // The labels/minute figure ages: refresh it now and then.
        if last_tick.elapsed() > Duration::from_secs(5) {
            last_tick = Instant::now();
            app.dirty = true;
        }
    }
}

/// The background worker (pixels, encoding, histograms, ranks): returns
/// where to send it requests; its replies come as events.
fn spawn_worker(
    loader: worker::Loader,
    events: mpsc::Sender<Event>,
) -> std::io::Result<mpsc::Sender<(bool, worker::Request)>> {
    let (req_tx, req_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("oddity-worker".into())
        .spawn(move || worker::run(loader, req_rx, move |r| events.send(Event::Reply(r)).is_ok()))?;
    Ok(req_tx)
}

/// The thread that reads the terminal: keys and resizes become events.
fn spawn_input(events: mpsc::Sender<Event>) -> std::io::Result<()> {
    std::thread::Builder::new().name("oddity-input".into()).spawn(move || {
        loop {
            let event = match crossterm::event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Event::Key(k),
                Ok(TermEvent::Resize(..)) => Event::Redraw,
                Ok(_) => continue,
                Err(_) => return,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// Quitting waits until every label is on disk, and says so while it waits.
fn quit(terminal: &mut ratatui::DefaultTerminal, app: &mut App) -> Result<(), TuiError> {
    app.collect_saved();
    if app.unsaved() > 0 {
        app.message = Some(format!("saving {} labels before quitting ⋯", app.unsaved()));
        terminal.draw(|f| ui::draw(f, app))?;
        app.wait_saved()?;
    }
    Ok(())
}

/// Serves the app's pending requests on this thread, as the worker thread
/// would; prefetches stay queued when `only_urgent`. For tests and benches
/// that drive the screen without threads.
pub fn serve_requests(app: &mut App, loader: &mut worker::Loader, only_urgent: bool) {
    for _ in 0..4 {
        let (now, later): (Vec<_>, Vec<_>) = app.requests.drain(..).partition(|(urgent, _)| *urgent || !only_urgent);
        app.requests.extend(later);
        if now.is_empty() {
            break;
        }
        for (_, r) in now {
            if let Some(reply) = loader.serve(r) {
                app.on_reply(reply);
            }
        }
    }
}

/// Puts text on the clipboard of the terminal the user sits at (OSC 52 works
/// through SSH).
fn osc52(text: &str) -> std::io::Result<()> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = std::io::stdout();
    write!(out, "\x1b]52;c;{encoded}\x07")?;
    out.flush()
}
