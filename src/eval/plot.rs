//! The evaluation curves as a PNG: one panel per metric, one line per method,
//! x = active-learning cycle.

use std::path::Path;

use plotters::prelude::*;

use super::Row;

/// Where fonts usually are; plotters draws text with a TrueType font that we
/// load at run time (DejaVu ships with Debian; `scripts/setup` installs it).
const FONT_DIRS: &[&str] = &["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts"];

fn find_font() -> Option<Vec<u8>> {
    let preferred = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf"];
    for dir in FONT_DIRS {
        for name in preferred {
            if let Ok(bytes) = std::fs::read(Path::new(dir).join(name)) {
                return Some(bytes);
            }
        }
    }
    // Any TrueType font will do.
    for dir in FONT_DIRS {
        for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
            if entry.path().extension().is_some_and(|e| e == "ttf")
                && let Ok(bytes) = std::fs::read(entry.path())
            {
                return Some(bytes);
            }
        }
    }
    None
}

fn register_font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = find_font().ok_or("no TrueType font found (install fonts-dejavu-core)")?;
            // Registered once for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "unreadable font".to_string())
        })
        .clone()
}

/// Writes the curves of `rows` to `path` (PNG).
pub fn plot(rows: &[Row], path: &Path) -> Result<(), String> {
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled("oddity eval: ranking quality per active-learning cycle", ("sans-serif", 24))
        .map_err(|e| e.to_string())?;
    let panels = root.split_evenly((2, 2));
    let cycles = rows.iter().map(|r| r.cycle).max().unwrap_or(0).max(1);
    let mut methods: Vec<&str> = Vec::new();
    for r in rows {
        if !methods.contains(&r.method.as_str()) {
            methods.push(r.method.as_str());
        }
    }
    let colours = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
    type Metric = (&'static str, fn(&Row) -> f64);
    let metrics: [Metric; 4] = [
        ("AUROC", |r| r.metrics.auroc),
        ("AUPRC", |r| r.metrics.auprc),
        ("precision in the top 1%", |r| r.metrics.precision_top1),
        ("recall in the top K", |r| r.metrics.recall_top),
    ];
    for (panel, (name, value)) in panels.iter().zip(metrics) {
        let mut chart = ChartBuilder::on(panel)
            .caption(name, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..cycles as f64, 0f64..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("cycle")
            .x_labels(cycles + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (m, method) in methods.iter().enumerate() {
            let colour = colours[m % colours.len()];
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.method == *method)
                .map(|r| (r.cycle as f64, value(r)))
                .filter(|p| p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(*method)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled()))).map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
