//! The triage screen drawn into ratatui's TestBackend, for tests that read it.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;

use oddity::tui::app::App;
use oddity::tui::ui;
use oddity::tui::worker::Loader;

/// The screen at `w` x `h`: the app sized to it, its pending loads served on
/// this thread (as the worker would), then drawn; as text.
pub fn screen(app: &mut App, loader: &mut Loader, w: u16, h: u16) -> String {
    let areas = ui::layout(Rect::new(0, 0, w, h));
    app.resize(ui::image_size(&areas)).unwrap();
    oddity::tui::serve_requests(app, loader, false);
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    terminal.backend().to_string()
}
