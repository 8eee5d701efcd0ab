//! Drawing: a pure function of the App. Layout is shared with the event
//! loop so the worker encodes cutouts for exactly the area they get.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect, Size};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as CLine};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Widget, Wrap};
use ratatui_image::Image;

use super::app::{App, MenuKind, Mode, PromptKind};
use super::worker::{Candidate, Picture, SpectrumData};
use crate::features::lines::{LINES, LineKind};
use crate::features::spectral::{kauffmann03, kewley01, schawinski07};
use crate::render::{flux_range, spectrum_segments};
use crate::store::{SourceKind, Verdict};

/// Where things go on a screen of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub cutout: Option<Rect>,
    pub info: Rect,
    pub spectrum: Option<Rect>,
    pub status: Rect,
}

/// Below this the screen shows text only.
pub const MIN_GRAPHIC: (u16, u16) = (60, 16);

pub fn layout(area: Rect) -> Areas {
    let [body, status] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    if area.width < MIN_GRAPHIC.0 || area.height < MIN_GRAPHIC.1 {
        return Areas { cutout: None, info: body, spectrum: None, status };
    }
    let spectrum_h = (body.height * 2 / 5).clamp(6, 20);
    let [top, spectrum] = Layout::vertical([Constraint::Min(8), Constraint::Length(spectrum_h)]).areas(body);
    // Terminal cells are about twice as tall as wide: a square cutout is
    // twice as many columns as rows.
    let cut_w = (top.height.saturating_mul(2)).min(top.width * 11 / 20).max(10);
    let [cutout, info] = Layout::horizontal([Constraint::Length(cut_w), Constraint::Min(20)]).areas(top);
    Areas { cutout: Some(cutout), info, spectrum: Some(spectrum), status }
}

/// Gallery cell size (border included): a 16x8-cell thumbnail is square on
/// terminals whose cells are twice as tall as wide.
pub const GALLERY_CELL: (u16, u16) = (18, 10);

/// The gallery grid on a screen: (columns, rows), each cell's rectangle, and
/// the thumbnail size inside a cell.
pub fn gallery_layout(area: Rect) -> ((usize, usize), Vec<Rect>, Size) {
    let body = Rect { height: area.height.saturating_sub(1), ..area };
    let cols = (body.width / GALLERY_CELL.0).max(1);
    let rows = (body.height / GALLERY_CELL.1).max(1);
    let (w, h) = (GALLERY_CELL.0.min(body.width), GALLERY_CELL.1.min(body.height));
    let mut cells = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            cells.push(Rect { x: body.x + c * w, y: body.y + r * h, width: w, height: h });
        }
    }
    ((cols as usize, rows as usize), cells, Size::new(w.saturating_sub(2), h.saturating_sub(2)))
}

/// The cells inside the cutout's border.
pub fn image_size(areas: &Areas) -> Size {
    areas.cutout.map(|r| Block::bordered().inner(r)).map(|r| Size::new(r.width, r.height)).unwrap_or(Size::new(0, 0))
}

struct Palette {
    title: Style,
    dim: Style,
    good: Style,
    warn: Style,
    accent: Style,
    spectrum: Color,
    emission: Color,
    absorption: Color,
    /// The BPT diagram's curves and this object's marker on it.
    kauffmann: Color,
    kewley: Color,
    schawinski: Color,
    bpt_marker: Color,
}

impl Palette {
    fn new(no_color: bool) -> Palette {
        if no_color {
            let s = Style::default();
            return Palette {
                title: s.add_modifier(Modifier::BOLD),
                dim: s,
                good: s.add_modifier(Modifier::BOLD),
                warn: s.add_modifier(Modifier::BOLD),
                accent: s.add_modifier(Modifier::BOLD),
                spectrum: Color::Reset,
                emission: Color::Reset,
                absorption: Color::Reset,
                kauffmann: Color::Reset,
                kewley: Color::Reset,
                schawinski: Color::Reset,
                bpt_marker: Color::Reset,
            };
        }
        Palette {
            title: Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            dim: Style::default().fg(Color::DarkGray),
            good: Style::default().fg(Color::Green).add_modifier(Modifier::BOLD),
            warn: Style::default().fg(Color::Yellow),
            accent: Style::default().fg(Color::Magenta).add_modifier(Modifier::BOLD),
            spectrum: Color::White,
            emission: Color::LightBlue,
            absorption: Color::LightRed,
            kauffmann: Color::LightBlue,
            kewley: Color::LightRed,
            schawinski: Color::Yellow,
            bpt_marker: Color::Magenta,
        }
    }
}

pub fn draw(frame: &mut Frame, app: &App) {
    let areas = layout(frame.area());
    let pal = Palette::new(app.no_color);
    if app.gallery {
        draw_gallery(frame, app, &pal);
        draw_status(frame, app, areas.status, &pal);
        if app.histogram_on {
            let area = popup(frame.area(), 80, 16);
            frame.render_widget(Clear, area);
            draw_histogram(frame, app, area, &pal);
        }
        draw_overlays(frame, app, &pal);
        return;
    }
    let candidate = app.current_candidate();
    let body = Rect { height: frame.area().height.saturating_sub(1), ..frame.area() };
    if app.bpt.is_some() && areas.cutout.is_some() {
        draw_bpt(frame, app, candidate, body, &pal);
        draw_status(frame, app, areas.status, &pal);
        draw_overlays(frame, app, &pal);
        return;
    }
    // A spectrum with no image: its spectrum gets the whole height.
    if candidate.is_some_and(|c| c.object.kind == SourceKind::Spectra) && areas.cutout.is_some() {
        let [spectrum, info] =
            Layout::horizontal([Constraint::Min(30), Constraint::Length(areas.info.width)]).areas(body);
        draw_spectrum(frame, app, candidate, spectrum, &pal);
        draw_info(frame, app, candidate, info, &pal, false);
        draw_status(frame, app, areas.status, &pal);
        draw_overlays(frame, app, &pal);
        return;
    }
    if let Some(area) = areas.cutout {
        draw_cutout(frame, app, candidate, area, &pal);
    }
    draw_info(frame, app, candidate, areas.info, &pal, areas.cutout.is_none());
    if let Some(area) = areas.spectrum {
        if app.histogram_on {
            draw_histogram(frame, app, area, &pal);
        } else {
            draw_spectrum(frame, app, candidate, area, &pal);
        }
    }
    draw_status(frame, app, areas.status, &pal);
    draw_overlays(frame, app, &pal);
}

fn draw_overlays(frame: &mut Frame, app: &App, pal: &Palette) {
    match &app.mode {
        Mode::Help => draw_help(frame, app, pal),
        Mode::Menu { kind, selected } => draw_menu(frame, app, *kind, *selected, pal),
        Mode::Browse | Mode::Prompt { .. } => {}
    }
}

fn draw_cutout(frame: &mut Frame, app: &App, c: Option<&Candidate>, area: Rect, pal: &Palette) {
    let bands = c.map(|c| c.bands.clone()).unwrap_or_default();
    let which = match app.view.band {
        Some(b) => bands.get(b).cloned().unwrap_or_else(|| format!("band {b}")),
        None => {
            let [b, g, r] = crate::render::composite_bands(&bands);
            let name = |i: usize| bands.get(i).map(|s| short_band(s)).unwrap_or_default();
            format!("{},{},{}", name(b), name(g), name(r))
        }
    };
    let title = format!(" {which} · {} · {}x ", app.view.stretch.name(), app.view.zoom.max(1));
    let block = Block::bordered().title(Span::styled(title, pal.title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match (c, app.current_image()) {
        (_, Some(shown)) => draw_picture(frame, &shown.protocol, inner),
        (Some(c), None) if c.problem.is_some() => frame.render_widget(
            Paragraph::new(c.problem.clone().unwrap_or_default()).style(pal.warn).wrap(Wrap { trim: true }),
            inner,
        ),
        (None, None) if app.current().is_none() => {
            frame.render_widget(Paragraph::new("no candidates").style(pal.dim), inner)
        }
        _ => frame.render_widget(Paragraph::new("loading…").style(pal.dim), inner),
    }
}

fn draw_gallery(frame: &mut Frame, app: &App, pal: &Palette) {
    let (_, cells, _) = gallery_layout(frame.area());
    let start = app.page_start();
    if app.queue.items.is_empty() {
        frame.render_widget(Paragraph::new("no candidates: f to change the filter").style(pal.dim), frame.area());
        return;
    }
    for (i, cell) in cells.iter().enumerate() {
        let Some(&key) = app.queue.items.get(start + i) else { break };
        let cursor = start + i == app.pos;
        let c = app.loaded.get(&key);
        let id = c.map(|c| c.object.id.clone()).unwrap_or_default();
        let tail: String = id
            .chars()
            .rev()
            .take(cell.width.saturating_sub(4) as usize)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let mut marks = String::new();
        if let Some(l) = app.book.get(key) {
            if l.favourite {
                marks.push('★');
            }
            match l.verdict {
                Some(Verdict::Anomaly) => marks.push('A'),
                Some(Verdict::Normal) => marks.push('N'),
                Some(Verdict::Unsure) => marks.push('?'),
                None => {}
            }
            if let Some(r) = l.relevance {
                marks.push_str(&r.to_string());
            }
            if !l.tags.is_empty() {
                marks.push('#');
            }
        }
        let score = c.and_then(|c| c.score).map(|s| format!("{s:.2}")).unwrap_or_default();
        let border = if cursor { pal.accent } else { pal.dim };
        let block = Block::bordered()
            .border_style(border)
            .border_type(if cursor {
                ratatui::widgets::BorderType::Double
            } else {
                ratatui::widgets::BorderType::Plain
            })
            .title(Span::styled(tail, if cursor { pal.title } else { Style::default() }))
            .title_bottom(Line::from(vec![
                Span::styled(marks, pal.good),
                Span::raw(" "),
                Span::styled(score, pal.dim),
            ]));
        let inner = block.inner(*cell);
        frame.render_widget(block, *cell);
        match app.thumbnail(key) {
            Some(shown) => draw_picture(frame, &shown.protocol, inner),
            None => frame.render_widget(Paragraph::new("…").style(pal.dim), inner),
        }
    }
}

fn draw_picture(frame: &mut Frame, picture: &Picture, area: Rect) {
    match picture {
        Picture::Graphic(p) => frame.render_widget(Image::new(p), area),
        Picture::Shades(lines) => {
            let text: Vec<Line> = lines.iter().map(|l| Line::raw(l.clone())).collect();
            frame.render_widget(Paragraph::new(text), area)
        }
    }
}

/// The score distribution of the current version, with the labelled objects
/// and the cursor's object marked: one bar per column (the worker's fine
/// bins summed), so bars touch instead of forming a comb.
fn draw_histogram(frame: &mut Frame, app: &App, area: Rect, pal: &Palette) {
    let Some(h) = &app.histogram else {
        frame.render_widget(
            Paragraph::new("counting scores…").style(pal.dim).block(Block::bordered().title(" scores ")),
            area,
        );
        return;
    };
    let (lo, hi) = (h.lo, h.hi);
    if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) || h.counts.is_empty() {
        frame.render_widget(Paragraph::new("no score spread to show").block(Block::bordered().title(" scores ")), area);
        return;
    }
    let cols = Block::bordered().inner(area).width.max(1) as usize;
    let fine = h.counts.len();
    let counts: Vec<u64> = (0..cols)
        .map(|c| h.counts[c * fine / cols..((c + 1) * fine / cols).max(c * fine / cols + 1).min(fine)].iter().sum())
        .collect();
    // Log counts: the anomalous tail is a handful of objects next to thousands.
    let height = |c: u64| if c == 0 { 0.0 } else { (c as f64).ln_1p() };
    let ymax = counts.iter().map(|&c| height(c)).fold(0.0, f64::max).max(1.0);
    let interesting: Vec<f32> = h.marks.iter().filter(|m| m.1).map(|m| m.0).collect();
    let normals: Vec<f32> = h.marks.iter().filter(|m| !m.1).map(|m| m.0).collect();
    let cursor = app.current_candidate().and_then(|c| c.score);
    let title = format!(
        " scores {lo:.3}–{hi:.3} · {} objects · log counts · labelled: {} interesting (red), {} normal (green){} ",
        h.n,
        interesting.len(),
        normals.len(),
        cursor.map(|s| format!(" · cursor {s:.3} (yellow)")).unwrap_or_default()
    );
    let (bar, red, green, yellow) = if app.no_color {
        (Color::Reset, Color::Reset, Color::Reset, Color::Reset)
    } else {
        (Color::Gray, Color::Red, Color::Green, Color::Yellow)
    };
    let xmax = (cols.max(2) - 1) as f64;
    // The cursor's label in canvas units; it turns left where it would be cut.
    let label_w = 6.0 * xmax / cols as f64;
    let canvas = Canvas::default()
        .block(Block::bordered().title(Span::styled(title, pal.title)))
        .marker(Marker::HalfBlock)
        .x_bounds([0.0, xmax])
        .y_bounds([0.0, ymax])
        .paint(move |ctx| {
            for (i, &c) in counts.iter().enumerate() {
                if c > 0 {
                    let x = i as f64;
                    ctx.draw(&CLine { x1: x, y1: 0.0, x2: x, y2: height(c), color: bar });
                }
            }
            ctx.layer();
            let x_of = |s: f32| ((s - lo) / (hi - lo)) as f64 * xmax;
            for &s in &normals {
                ctx.draw(&CLine { x1: x_of(s), y1: 0.0, x2: x_of(s), y2: ymax * 0.25, color: green });
            }
            for &s in &interesting {
                ctx.draw(&CLine { x1: x_of(s), y1: 0.0, x2: x_of(s), y2: ymax * 0.5, color: red });
            }
            if let Some(s) = cursor {
                ctx.draw(&CLine { x1: x_of(s), y1: 0.0, x2: x_of(s), y2: ymax, color: yellow });
                let x = x_of(s);
                if x + label_w <= xmax {
                    ctx.print(x, ymax, Span::styled("▼ here", Style::default().fg(yellow)));
                } else {
                    ctx.print(x - label_w + label_w / 6.0, ymax, Span::styled("here ▼", Style::default().fg(yellow)));
                }
            }
        });
    frame.render_widget(canvas, area);
}

fn short_band(name: &str) -> String {
    name.rsplit(['-', '_']).next().unwrap_or(name).to_lowercase()
}

fn draw_info(frame: &mut Frame, app: &App, c: Option<&Candidate>, area: Rect, pal: &Palette, compact: bool) {
    let Some(key) = app.current() else {
        let msg = format!(
            "No candidates (ordering {}, filter {}). Press f to change the filter, q to quit.",
            app.queue.ordering.name(),
            app.queue.filter.name()
        );
        frame.render_widget(
            Paragraph::new(msg).wrap(Wrap { trim: true }).block(Block::bordered().title(" object ")),
            area,
        );
        return;
    };
    let object_lines = object_lines(app, c, pal);
    // Labels so far, from every user. On a small screen they come right
    // after the id, where they stay visible.
    let label_lines = label_lines(app.book.get(key), pal);
    let mut lines: Vec<Line> = Vec::new();
    if compact {
        let mut rest = object_lines.into_iter();
        lines.extend(rest.next());
        lines.extend(label_lines);
        lines.extend(rest);
    } else {
        lines.extend(object_lines);
        lines.extend(label_lines);
    }
    // Small terminals: say how to get images back, where it stays visible.
    let title = if compact {
        format!(" object · enlarge to {}x{} for images ", MIN_GRAPHIC.0, MIN_GRAPHIC.1)
    } else {
        " object ".into()
    };
    let block = if area.height >= 3 { Block::bordered().title(Span::styled(title, pal.title)) } else { Block::new() };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }).block(block), area);
}

/// The candidate: id, position, score and rank, why it ranks there, and its spectrum.
fn object_lines<'a>(app: &App, c: Option<&Candidate>, pal: &Palette) -> Vec<Line<'a>> {
    let mut lines: Vec<Line> = Vec::new();
    match c {
        None => lines.push(Line::styled("loading…", pal.dim)),
        Some(c) => {
            lines.push(Line::from(vec![
                Span::styled(c.object.id.clone(), pal.title),
                Span::raw(format!("  {}", c.object.survey)),
            ]));
            lines.push(Line::raw(format!("ra {:.6}  dec {:+.6}", c.object.ra, c.object.dec)));
            let rank = match app.current_rank() {
                // Which ranking picked it stays hidden: the trial is blind.
                Some((r, _)) if r.interleaved => {
                    format!("{} in a trial's interleaving of two rankings", ordinal(r.n))
                }
                Some((r, order)) if r.n > crate::serve::rank_cap() => {
                    format!("rank > {} ({order} order)", crate::cmd::thousands(crate::serve::rank_cap()))
                }
                Some((r, order)) => format!("rank {} ({order} order)", crate::cmd::thousands(r.n)),
                None => "rank …".into(),
            };
            match c.score {
                Some(s) => lines.push(Line::raw(format!("score {s:.3}  {rank}"))),
                None => lines.push(Line::styled("no score yet", pal.dim)),
            }
            why_lines(&mut lines, c, pal);
            if c.bad_fraction > 0.0 {
                lines.push(Line::styled(format!("masked pixels {:.1}%", c.bad_fraction * 100.0), pal.warn));
            }
            match &c.spectrum {
                Some(s) if c.object.kind == SourceKind::Spectra => {
                    lines.push(Line::styled("spectrum only: no image within the cross-match radius", pal.warn));
                    spectrum_info(&mut lines, s, pal, false);
                }
                Some(s) => spectrum_info(&mut lines, s, pal, true),
                None => lines.push(Line::styled("no spectrum matched", pal.dim)),
            }
        }
    }
    lines
}

/// 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, …, 21st, 1,002nd.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{}{suffix}", crate::cmd::thousands(n))
}

/// Why it ranks here: each feature group's tail probability (the oddest
/// first, with the features that made it odd), the relevance the labels
/// predict; the artefact score stands apart.
fn why_lines(lines: &mut Vec<Line>, c: &Candidate, pal: &Palette) {
    if let Some(p) = &c.parts {
        let mut groups = p.groups.clone();
        groups.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut why: Vec<String> = Vec::new();
        for (i, (g, pv)) in groups.iter().enumerate() {
            let mut s = format!("{g} p={}", fmt_p(*pv));
            if i == 0 && !c.drivers.is_empty() {
                let d: Vec<String> = c.drivers.iter().map(|(n, z)| format!("{n} {z:+.1}")).collect();
                s.push_str(&format!(" ({})", d.join(", ")));
            }
            why.push(s);
        }
        if let Some(r) = p.relevance {
            why.push(format!("relevance {r:.1}/5"));
        }
        lines.push(Line::raw(format!("why {}", why.join(" · "))));
        if let Some(a) = p.artefact {
            let style = if a > 0.99 { pal.warn } else { pal.dim };
            lines.push(Line::styled(format!("artefact score {a:.2} (sky, noise, masked pixels)"), style));
        }
    }
}

/// The labels of every user, what they teach the ranking, and agreement.
fn label_lines<'a>(labels: Option<&crate::store::ObjectLabels>, pal: &Palette) -> Vec<Line<'a>> {
    let mut lines: Vec<Line> = Vec::new();
    match labels {
        Some(l) => {
            let mut parts = Vec::new();
            if l.favourite {
                parts.push("★".to_string());
            }
            if let Some(r) = l.relevance {
                parts.push(format!("relevance {r}"));
            }
            if let Some(v) = l.verdict {
                parts.push(
                    match v {
                        Verdict::Anomaly => "anomaly",
                        Verdict::Normal => "normal",
                        Verdict::Unsure => "unsure",
                    }
                    .to_string(),
                );
            }
            parts.extend(l.tags.iter().map(|t| format!("#{t}")));
            // What the labels teach the ranking (the one rule of `ObjectLabels::target`).
            let learns = match l.target() {
                Some(t) if t.interesting => format!(" → learns interesting ({})", t.relevance),
                Some(t) => format!(" → learns boring ({})", t.relevance),
                None => String::new(),
            };
            lines.push(Line::from(vec![
                Span::raw("labels "),
                Span::styled(parts.join(" "), pal.accent),
                Span::styled(learns, pal.dim),
            ]));
            if l.by_user.len() > 1 {
                let who: Vec<String> = l
                    .by_user
                    .iter()
                    .map(|(u, r, v)| {
                        format!(
                            "{u}:{}{}",
                            r.map(|r| r.to_string()).unwrap_or_default(),
                            v.map(|v| format!("{v:?}").to_lowercase()).unwrap_or_default()
                        )
                    })
                    .collect();
                let style = if l.disagreement() { pal.warn } else { pal.dim };
                lines.push(Line::styled(
                    format!("{} {}", if l.disagreement() { "disagree" } else { "agree" }, who.join(" ")),
                    style,
                ));
            }
        }
        None => lines.push(Line::styled("unlabelled", pal.dim)),
    }
    lines
}

fn spectrum_info(lines: &mut Vec<Line>, s: &SpectrumData, pal: &Palette, matched: bool) {
    if matched {
        lines.push(Line::raw(format!("spectrum {} at {:.2}\"", s.id, s.sep_arcsec)));
    }
    let z = s.z.map(|z| format!("z {z:.4}")).unwrap_or_else(|| "z unknown".into());
    match &s.lines {
        Some(l) => {
            lines.push(Line::from(vec![Span::raw(format!("{z}  BPT ")), Span::styled(l.bpt.as_str(), pal.accent)]));
            let snr = |m: &Option<crate::features::spectral::LineMeasurement>| {
                m.map(|m| format!("{:.0}", m.snr)).unwrap_or_else(|| "–".into())
            };
            lines.push(Line::raw(format!(
                "S/N Hα {} [NII] {} Hβ {} [OIII] {}",
                snr(&l.lines.ha),
                snr(&l.lines.nii_6585),
                snr(&l.lines.hb),
                snr(&l.lines.oiii_5008)
            )));
            if let Some(ha) = l.lines.ha {
                lines.push(Line::raw(format!("EW Hα {:.1} Å", ha.ew)));
            }
            // Why there is no class (or no lines at all), never silently.
            if let Some((_, why)) = crate::features::spectral::why_unclassifiable(l) {
                lines.push(Line::styled(format!("no BPT class: {why}"), pal.warn));
            }
        }
        None => lines.push(Line::raw(format!("{z}  (run `oddity features` for lines)"))),
    }
}

fn draw_spectrum(frame: &mut Frame, app: &App, c: Option<&Candidate>, area: Rect, pal: &Palette) {
    let Some(s) = c.and_then(|c| c.spectrum.as_ref()) else {
        let text = if c.is_some() { "no spectrum for this object" } else { "" };
        frame.render_widget(Paragraph::new(text).style(pal.dim).block(Block::bordered().title(" spectrum ")), area);
        return;
    };
    let z = s.z.map(|z| z as f64);
    let rest = if app.rest_frame { z } else { None };
    let max_points = (area.width as usize).saturating_sub(2) * 2;
    let segments =
        spectrum_segments(&s.lambda, &s.flux, s.ivar.as_deref(), s.mask.as_deref(), 3, rest, max_points.max(16));
    let (ylo, yhi) = flux_range(&segments);
    let xlo = segments.iter().filter_map(|g| g.lambda.first()).copied().fold(f64::INFINITY, f64::min);
    let xhi = segments.iter().filter_map(|g| g.lambda.last()).copied().fold(f64::NEG_INFINITY, f64::max);
    let frame_name = if app.rest_frame { "rest" } else { "observed" };
    let title = format!(" spectrum · {frame_name} Å {xlo:.0}–{xhi:.0} · flux {ylo:.1}–{yhi:.1} ");
    let block = Block::bordered().title(Span::styled(title.clone(), pal.title));
    let spread = xlo < xhi && ylo < yhi; // false for NaN too
    if !spread {
        frame.render_widget(Paragraph::new("spectrum has no usable pixels").style(pal.warn).block(block), area);
        return;
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Bottom row: wavelength ticks; the rest: the plot.
    let ticks_row = inner.height >= 4;
    let plot = Rect { height: inner.height - u16::from(ticks_row), ..inner };
    let markers = line_markers(app.rest_frame, z, xlo, xhi);
    let bounds = ([xlo, xhi], [ylo, yhi]);
    frame.render_widget(spectrum_canvas(segments, markers.clone(), bounds, pal), plot);
    let column = |x: f64| plot.x + (((x - xlo) / (xhi - xlo)) * (plot.width.saturating_sub(1)) as f64).round() as u16;
    let label_rows = if plot.height >= 6 { 2 } else { 1 };
    for (col, text, kind) in place_labels(&markers, column, plot, label_rows) {
        let color = if kind == LineKind::Emission { pal.emission } else { pal.absorption };
        frame.buffer_mut().set_string(col.0, col.1, text, Style::default().fg(color));
    }
    if ticks_row {
        let y = inner.y + inner.height - 1;
        for (x, label) in wavelength_ticks(xlo, xhi, plot.width) {
            let col = column(x);
            let start = col.saturating_sub(label.len() as u16 / 2).max(inner.x);
            if start + label.len() as u16 <= inner.x + inner.width {
                frame.buffer_mut().set_string(start, y, &label, pal.dim);
            }
        }
        let unit = format!("Å {frame_name}");
        let x = (inner.x + inner.width).saturating_sub(unit.chars().count() as u16);
        frame.buffer_mut().set_string(x, y, unit, pal.dim);
    }
}

/// The emission and absorption lines inside the plotted range, at their
/// observed wavelengths (or rest-frame ones when `rest_frame`), sorted; none
/// without a redshift in the observed frame.
fn line_markers(rest_frame: bool, z: Option<f64>, xlo: f64, xhi: f64) -> Vec<(f64, &'static str, LineKind)> {
    let scale = match (rest_frame, z) {
        (true, _) | (false, None) => 1.0,
        (false, Some(z)) => 1.0 + z,
    };
    let mut markers: Vec<(f64, &'static str, LineKind)> = if z.is_some() || rest_frame {
        LINES.iter().map(|l| (l.wavelength * scale, l.name, l.kind)).filter(|(x, _, _)| *x > xlo && *x < xhi).collect()
    } else {
        Vec::new()
    };
    markers.sort_by(|a, b| a.0.total_cmp(&b.0));
    markers
}

/// The spectrum's segments over the line markers: emission lines solid,
/// absorption lines dashed, so they are told apart without colour too.
fn spectrum_canvas(
    segments: Vec<crate::render::SpectrumView>,
    markers: Vec<(f64, &'static str, LineKind)>,
    ([xlo, xhi], [ylo, yhi]): ([f64; 2], [f64; 2]),
    pal: &Palette,
) -> impl Widget {
    let (spec_col, em_col, abs_col) = (pal.spectrum, pal.emission, pal.absorption);
    let dashes = 16;
    Canvas::default().marker(Marker::Braille).x_bounds([xlo, xhi]).y_bounds([ylo, yhi]).paint(move |ctx| {
        for (x, _, kind) in &markers {
            if *kind == LineKind::Emission {
                ctx.draw(&CLine { x1: *x, y1: ylo, x2: *x, y2: yhi, color: em_col });
            } else {
                let step = (yhi - ylo) / dashes as f64;
                for k in (0..dashes).step_by(2) {
                    let y = ylo + k as f64 * step;
                    ctx.draw(&CLine { x1: *x, y1: y, x2: *x, y2: y + step, color: abs_col });
                }
            }
        }
        ctx.layer();
        for seg in &segments {
            for w in seg.lambda.iter().zip(&seg.flux).collect::<Vec<_>>().windows(2) {
                ctx.draw(&CLine { x1: *w[0].0, y1: *w[0].1, x2: *w[1].0, y2: *w[1].1, color: spec_col });
            }
        }
    })
}

/// Line labels over the plot: markers closer than a label's width are
/// merged ("Hα/[NII]"), each label goes on the first of `rows` top rows
/// where it fits, and a marker with no room for a name keeps a small ▾ (▿
/// for absorption) at its column so it is still told apart from the noise.
/// Returns ((column, row), text, kind).
fn place_labels(
    markers: &[(f64, &'static str, LineKind)],
    column: impl Fn(f64) -> u16,
    plot: Rect,
    rows: u16,
) -> Vec<((u16, u16), String, LineKind)> {
    // Clusters of markers whose columns (nearly) coincide; the members of
    // a doublet ([SII]6718/6733) share one name.
    let mut clusters: Vec<(u16, Vec<String>, LineKind)> = Vec::new();
    for &(x, name, kind) in markers {
        let col = column(x);
        let stem = name.trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
        match clusters.last_mut() {
            Some((c, names, k)) if col <= *c + 1 && *k == kind => {
                match names.iter_mut().find(|n| n.trim_end_matches(|c: char| c.is_ascii_digit()) == stem) {
                    Some(n) => *n = stem,
                    None => names.push(name.to_string()),
                }
            }
            _ => clusters.push((col, vec![name.to_string()], kind)),
        }
    }
    let mut taken: Vec<Vec<(u16, u16)>> = vec![Vec::new(); rows as usize];
    let right = plot.x + plot.width;
    let mut out = Vec::new();
    for (col, names, kind) in clusters {
        let text = names.join("/");
        let w = text.chars().count() as u16;
        let start = col.min(right.saturating_sub(w)).max(plot.x);
        let free = |spans: &Vec<(u16, u16)>| spans.iter().all(|&(a, b)| start + w < a || start > b + 1);
        match (0..rows as usize).find(|&r| free(&taken[r])) {
            Some(r) if w <= plot.width => {
                taken[r].push((start, start + w));
                out.push(((start, plot.y + r as u16), text, kind));
            }
            _ => {
                let glyph = if kind == LineKind::Emission { "▾" } else { "▿" };
                out.push(((col, plot.y), glyph.to_string(), kind));
            }
        }
    }
    out
}

/// Round wavelengths (Å) for axis ticks, at most one per 8 columns.
pub fn wavelength_ticks(lo: f64, hi: f64, width: u16) -> Vec<(f64, String)> {
    let most = (width as f64 / 8.0).max(1.0);
    let step = [50.0, 100.0, 200.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0]
        .into_iter()
        .find(|s| (hi - lo) / s <= most)
        .unwrap_or(10_000.0);
    let mut x = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while x <= hi {
        out.push((x, format!("{x:.0}")));
        x += step;
    }
    out
}

/// The survey on the \[NII\] BPT diagram as a density, the Kauffmann 2003,
/// Kewley 2001 and Schawinski 2007 curves, this object marked, and the
/// unclassifiable spectra counted by reason. Drawn from the line summary
/// `features` stored: nothing here grows with the catalogue.
fn draw_bpt(frame: &mut Frame, app: &App, c: Option<&Candidate>, area: Rect, pal: &Palette) {
    let Some(sum) = &app.bpt else { return };
    let side_w = 44.min(area.width / 2);
    let [plot_area, side] = Layout::horizontal([Constraint::Min(20), Constraint::Length(side_w)]).areas(area);
    let block = Block::bordered()
        .title(Span::styled(" BPT · y = log [OIII]/Hβ, x = log [NII]/Hα ", pal.title))
        .title_bottom(Line::styled(format!(" x {:.1} … {:.1} ", sum.density.x.0, sum.density.x.1), pal.dim));
    let inner = block.inner(plot_area);
    frame.render_widget(block, plot_area);
    if inner.width < 4 || inner.height < 3 {
        return;
    }
    let here = c.and_then(|c| c.spectrum.as_ref()).and_then(|s| s.lines.as_ref());
    draw_bpt_density(frame, &sum.density, inner, pal);
    frame.render_widget(bpt_curves(&sum.density, here.and_then(|l| l.bpt_xy), pal), inner);
    frame.render_widget(
        Paragraph::new(bpt_side_lines(sum, c, here, pal))
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(" survey ", pal.title))),
        side,
    );
}

/// The survey's density: bins summed into cells, shaded by log count.
fn draw_bpt_density(frame: &mut Frame, d: &crate::store::BptDensity, inner: Rect, pal: &Palette) {
    let (x0, x1, y0, y1) = (d.x.0, d.x.1, d.y.0, d.y.1);
    let mut cells: std::collections::HashMap<(u16, u16), u32> = Default::default();
    let (bw, bh) = ((x1 - x0) / d.nx as f64, (y1 - y0) / d.ny as f64);
    for j in 0..d.ny {
        for i in 0..d.nx {
            let n = d.count(i, j);
            if n == 0 {
                continue;
            }
            let (x, y) = (x0 + (i as f64 + 0.5) * bw, y0 + (j as f64 + 0.5) * bh);
            let col = (((x - x0) / (x1 - x0)) * inner.width as f64).floor().min(inner.width as f64 - 1.0) as u16;
            let row = (((y - y0) / (y1 - y0)) * inner.height as f64).floor().min(inner.height as f64 - 1.0) as u16;
            *cells.entry((inner.x + col, inner.y + inner.height - 1 - row)).or_default() += n;
        }
    }
    let max = cells.values().copied().max().unwrap_or(1).max(1);
    for ((x, y), n) in &cells {
        let level = ((*n as f64).ln_1p() / (max as f64).ln_1p() * 4.0).round() as usize;
        let glyph = ["·", "░", "▒", "▓", "█"][level.min(4)];
        frame.buffer_mut().set_string(*x, *y, glyph, pal.dim);
    }
}

/// The Kauffmann 2003, Kewley 2001 and (dashed) Schawinski 2007 curves over
/// the density's bounds, and this object's point.
fn bpt_curves(d: &crate::store::BptDensity, point: Option<(f64, f64)>, pal: &Palette) -> impl Widget {
    let (x0, x1, y0, y1) = (d.x.0, d.x.1, d.y.0, d.y.1);
    let (kauffmann, kewley, schawinski, marker) = (pal.kauffmann, pal.kewley, pal.schawinski, pal.bpt_marker);
    Canvas::default().marker(Marker::Braille).x_bounds([x0, x1]).y_bounds([y0, y1]).paint(move |ctx| {
        let curve = |f: &dyn Fn(f64) -> f64,
                     from: f64,
                     to: f64,
                     dashed: bool,
                     color: Color,
                     ctx: &mut ratatui::widgets::canvas::Context| {
            let steps = 120;
            for k in 0..steps {
                if dashed && k % 2 == 1 {
                    continue;
                }
                let (a, b) =
                    (from + (to - from) * k as f64 / steps as f64, from + (to - from) * (k + 1) as f64 / steps as f64);
                let (ya, yb) = (f(a), f(b));
                if ya.is_finite() && yb.is_finite() && ya >= y0 && ya <= y1 && yb >= y0 && yb <= y1 {
                    ctx.draw(&CLine { x1: a, y1: ya, x2: b, y2: yb, color });
                }
            }
        };
        curve(&kauffmann03, x0, 0.0, false, kauffmann, ctx);
        curve(&kewley01, x0, 0.42, false, kewley, ctx);
        curve(&schawinski07, -0.18, x1, true, schawinski, ctx);
        if let Some((x, y)) = point {
            ctx.layer();
            ctx.print(
                x.clamp(x0, x1),
                y.clamp(y0, y1),
                Span::styled("✚", Style::default().fg(marker).add_modifier(Modifier::BOLD)),
            );
        }
    })
}

/// The side panel: this object, the legend, the survey's counts by class
/// and the unclassifiable spectra by reason.
fn bpt_side_lines<'a>(
    sum: &'a crate::store::LineSummary,
    c: Option<&Candidate>,
    here: Option<&crate::store::LineRecord>,
    pal: &Palette,
) -> Vec<Line<'a>> {
    let mut lines: Vec<Line> = Vec::new();
    match here {
        Some(l) => {
            let id = c.and_then(|c| c.spectrum.as_ref()).map(|s| s.id.clone()).unwrap_or_default();
            lines.push(Line::from(vec![Span::raw("✚ "), Span::styled(id, pal.title)]));
            match (l.bpt_xy, crate::features::spectral::why_unclassifiable(l)) {
                (Some((x, y)), _) => lines.push(Line::raw(format!("{} at x {x:+.2}, y {y:+.2}", l.bpt.as_str()))),
                (None, Some((_, why))) => lines.push(Line::styled(format!("unclassifiable: {why}"), pal.warn)),
                _ => {}
            }
        }
        None if c.is_some() => lines.push(Line::styled("this object has no spectrum", pal.dim)),
        None => {}
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("── Kauffmann 2003 (star-forming below)", Style::default().fg(pal.kauffmann)));
    lines.push(Line::styled("── Kewley 2001 (AGN above)", Style::default().fg(pal.kewley)));
    lines.push(Line::styled("┄┄ Schawinski 2007 (Seyfert / LINER)", Style::default().fg(pal.schawinski)));
    lines.push(Line::styled("·░▒▓█ the survey's spectra (log density)", pal.dim));
    lines.push(Line::raw(""));
    lines.push(Line::styled(format!("{} spectra", sum.n_spectra), pal.title));
    for (class, n) in &sum.by_class {
        lines.push(Line::raw(format!("  {:<15} {n:>8}", class.as_str())));
    }
    if !sum.unclassifiable.is_empty() {
        lines.push(Line::styled("unclassifiable, by reason:", pal.title));
        for (why, n) in &sum.unclassifiable {
            lines.push(Line::raw(format!("  {n:>7}  {why}")));
        }
    }
    lines
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect, pal: &Palette) {
    if let Mode::Prompt { kind, text } = &app.mode {
        let label = match kind {
            PromptKind::Jump => "jump to id: ",
            PromptKind::CustomTag => "tag: ",
        };
        let line = Line::from(vec![
            Span::styled(label, pal.title),
            Span::raw(text.clone()),
            Span::raw("▏  (enter ok, esc cancel)"),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let position = position(app);
    // The save confirmation comes right after the position: on a narrow
    // terminal it must not be the part that is cut off.
    let mut spans = vec![Span::styled(position, pal.title)];
    if let Some(m) = &app.message {
        let style = if m.starts_with("saved") || m.starts_with("undone") {
            pal.good
        } else if m.starts_with("saving") {
            Style::default()
        } else {
            pal.warn
        };
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(m.clone(), style));
    }
    spans.push(Span::raw(format!(
        " · {} · {} · {} labels · {:.1}/min",
        app.queue.ordering.name(),
        app.queue.filter.name(),
        app.session.labels,
        app.session.per_minute()
    )));
    if let Some(team) = &app.team {
        spans.push(Span::styled(
            format!(
                " · team {} expert{} {} labels",
                team.experts,
                if team.experts == 1 { "" } else { "s" },
                crate::cmd::thousands(team.labels)
            ),
            pal.accent,
        ));
    }
    let help = app.keymap.key_for(super::keymap::Action::Help).unwrap_or_else(|| "?".into());
    spans.push(Span::styled(format!(" · {help} help"), pal.dim));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// "12/57" when the queue's end is known; "12 of ~19,950" when the
/// ordering's size says about how many there are; else how many were found
/// so far (a count of candidates pulled is not a total).
fn position(app: &App) -> String {
    use super::queue::{Filter, Ordering};
    let q = &app.queue;
    if q.items.is_empty() {
        return "0/0".into();
    }
    let at = app.pos + 1;
    if q.exhausted {
        return format!("{at}/{}", q.items.len());
    }
    let source = match q.ordering {
        Ordering::Score | Ordering::Uncertain => app.overview.scored,
        Ordering::Id | Ordering::Random => Some(app.overview.images),
        Ordering::Recent => None,
    };
    let labelled = app.book.labelled_count() as u64;
    match (source, &q.filter) {
        (Some(n), Filter::All) => format!("{at}/{}", crate::cmd::thousands(n)),
        (Some(n), Filter::Unlabelled) => format!("{at} of ~{}", crate::cmd::thousands(n.saturating_sub(labelled))),
        _ => format!("{at} ({} found, more ahead)", q.items.len()),
    }
}

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// Every binding with its description; as wide as the longest line (or the
/// screen, wrapping), scrolled with the arrows when it is taller.
fn draw_help(frame: &mut Frame, app: &App, pal: &Palette) {
    let help = app.keymap.help();
    let key_w = help.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).min(20);
    let texts: Vec<(String, String)> = help.iter().map(|(k, d)| (format!("{k:>key_w$}  "), d.to_string())).collect();
    let widest = texts.iter().map(|(k, d)| (k.chars().count() + d.chars().count()) as u16).max().unwrap_or(0);
    let screen = frame.area();
    let width = (widest + 2).min(screen.width);
    let inner_w = width.saturating_sub(2).max(1) as usize;
    // Wrapped here, by characters, so that the scroll range is exact.
    let mut lines: Vec<Line> = Vec::new();
    for (keys, desc) in &texts {
        let whole: Vec<char> = keys.chars().chain(desc.chars()).collect();
        let key_len = keys.chars().count();
        for (i, chunk) in whole.chunks(inner_w).enumerate() {
            let start = i * inner_w;
            let split = key_len.saturating_sub(start).min(chunk.len());
            let (k, d): (String, String) = (chunk[..split].iter().collect(), chunk[split..].iter().collect());
            lines.push(Line::from(vec![Span::styled(k, pal.accent), Span::raw(d)]));
        }
    }
    let rows = lines.len() as u16;
    let area = popup(screen, width, rows + 2);
    let inner_h = area.height.saturating_sub(2);
    let max_scroll = rows.saturating_sub(inner_h);
    let scroll = app.help_scroll.min(max_scroll);
    let title = if max_scroll > 0 {
        format!(" keys · ↑↓ scroll ({}/{}) · other keys close ", scroll + inner_h, rows)
    } else {
        " keys (any key closes) ".to_string()
    };
    // Clear first: images beneath must not show through.
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .block(Block::bordered().borders(Borders::ALL).title(Span::styled(title, pal.title))),
        area,
    );
}

fn draw_menu(frame: &mut Frame, app: &App, kind: MenuKind, selected: usize, pal: &Palette) {
    let items = app.menu_items(kind);
    let title = match kind {
        MenuKind::Tag => " tag ",
        MenuKind::Filter => " filter ",
        MenuKind::Ordering => " ordering ",
    };
    let list_items: Vec<ListItem> = items
        .iter()
        .enumerate()
        .map(|(i, t)| ListItem::new(if i < 9 { format!("{} {t}", i + 1) } else { format!("  {t}") }))
        .collect();
    let area = popup(frame.area(), 34, items.len() as u16 + 2);
    frame.render_widget(Clear, area);
    let list = List::new(list_items)
        .block(Block::bordered().title(Span::styled(title, pal.title)))
        .highlight_style(pal.accent.add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(selected));
    frame.render_stateful_widget(list, area, &mut state);
}

/// A tail probability for people: 0.31, 0.004, 2e-5.
fn fmt_p(p: f32) -> String {
    if p >= 0.01 {
        format!("{p:.2}")
    } else if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.0e}")
    }
}
