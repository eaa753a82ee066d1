//! Headless PNG charts for `trsr study`'s report: a metric against block size with
//! interval bands, and metrics@K bars with error bars. Drawn with `plotters` into
//! an RGB buffer and encoded with `png`, so no window, display or system font is
//! needed: the text uses a font compiled into the binary (egui's default font).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use plotters::prelude::*;

use crate::stats::Interval;

/// Chart size in pixels (width, height).
pub const CHART_SIZE_PX: (u32, u32) = (1000, 600);

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Registers the built-in font as plotters' `sans-serif` once.
fn fonts() -> anyhow::Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the built-in chart font could not be loaded"))
    }
}

/// One line of a line chart: (x, y, interval of y).
#[derive(Clone, Debug, Default)]
pub struct LineSeries {
    pub label: String,
    pub points: Vec<(f64, f64, Option<Interval>)>,
}

/// One bar: its value and interval (`None`: no bar).
pub type Bar = Option<(f64, Option<Interval>)>;

/// One group of bars: its label and one (value, interval) per bar series.
#[derive(Clone, Debug, Default)]
pub struct BarChart {
    /// Group labels along x (e.g. `ndcg@3`, `ndcg@5`, `ndcg@10`).
    pub groups: Vec<String>,
    /// (series label, one value and interval per group).
    pub series: Vec<(String, Vec<Bar>)>,
}

fn encode_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .with_context(|| format!("could not write {}", path.display()))?;
    writer
        .write_image_data(rgb)
        .with_context(|| format!("could not write {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("could not write {}", path.display()))
}

fn y_range(values: impl Iterator<Item = (f64, Option<Interval>)>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (v, ci) in values {
        for x in [Some(v), ci.map(|c| c.lo), ci.map(|c| c.hi)]
            .into_iter()
            .flatten()
        {
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.02);
    ((lo - pad).max(0.0), (hi + pad).min(1.0).max(lo + 0.01))
}

/// A metric against block size: one line per series with its interval band, and
/// horizontal lines for references without a block size (baselines).
pub fn line_chart_png(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[LineSeries],
    references: &[(String, f64, Option<Interval>)],
) -> anyhow::Result<()> {
    fonts()?;
    let (w, h) = CHART_SIZE_PX;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let xs: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        let (mut x0, mut x1) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if !x0.is_finite() {
            (x0, x1) = (1.0, 10.0);
        }
        let (x0, x1) = (x0 - 0.5, x1 + 0.5);
        let (y0, y1) = y_range(
            series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| (p.1, p.2)))
                .chain(references.iter().map(|r| (r.1, r.2))),
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("block size (items)")
            .y_desc(y_label)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .max_light_lines(0)
            .label_style(("sans-serif", 16))
            .draw()
            .map_err(|x| e(&x))?;
        let n = series.len();
        // The best reference's band only: more would hide the lines.
        let best = references
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .map(|(i, _)| i);
        for (i, (label, v, ci)) in references.iter().enumerate() {
            let c = color(n + i);
            if let (Some(ci), true) = (ci, best == Some(i)) {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, ci.lo), (x1, ci.hi)],
                        c.mix(0.08).filled(),
                    )))
                    .map_err(|x| e(&x))?;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x0, *v), (x1, *v)],
                    c.stroke_width(1),
                )))
                .map_err(|x| e(&x))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        }
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let mut pts = s.points.clone();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let band: Vec<(f64, f64)> = pts
                .iter()
                .filter_map(|p| p.2.map(|ci| (p.0, ci.hi)))
                .chain(pts.iter().rev().filter_map(|p| p.2.map(|ci| (p.0, ci.lo))))
                .collect();
            if band.len() >= 4 {
                chart
                    .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))
                    .map_err(|x| e(&x))?;
            } else {
                // One block size: the band is an error bar.
                for p in &pts {
                    if let Some(ci) = p.2 {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(p.0, ci.lo), (p.0, ci.hi)],
                                c.stroke_width(2),
                            )))
                            .map_err(|x| e(&x))?;
                    }
                }
            }
            let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    line.clone(),
                    c.stroke_width(2),
                )))
                .map_err(|x| e(&x))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(line.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(|x| e(&x))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    encode_png(path, &buf, (w, h))
}

/// Grouped bars (one group per metric@K, one bar per series) with error bars.
pub fn bar_chart_png(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &BarChart,
) -> anyhow::Result<()> {
    fonts()?;
    let (w, h) = CHART_SIZE_PX;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let groups = bars.groups.len().max(1);
        let (_, y1) = y_range(
            bars.series
                .iter()
                .flat_map(|s| s.1.iter().flatten().copied()),
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..groups as f64, 0.0..(y1 * 1.2).min(1.05))
            .map_err(|x| e(&x))?;
        let names = bars.groups.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .x_labels(groups * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 1e-6 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .label_style(("sans-serif", 16))
            .draw()
            .map_err(|x| e(&x))?;
        let k = bars.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (si, (label, vals)) in bars.series.iter().enumerate() {
            let c = color(si);
            let mut first = true;
            for (gi, v) in vals.iter().enumerate() {
                let Some((v, ci)) = v else { continue };
                let left = gi as f64 + 0.1 + si as f64 * width;
                let rect = Rectangle::new([(left, 0.0), (left + width * 0.9, *v)], c.filled());
                let anno = chart
                    .draw_series(std::iter::once(rect))
                    .map_err(|x| e(&x))?;
                if first {
                    anno.label(label.as_str()).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                    });
                    first = false;
                }
                if let Some(ci) = ci {
                    let mid = left + width * 0.45;
                    let cap = width * 0.2;
                    for seg in [
                        vec![(mid, ci.lo), (mid, ci.hi)],
                        vec![(mid - cap, ci.lo), (mid + cap, ci.lo)],
                        vec![(mid - cap, ci.hi), (mid + cap, ci.hi)],
                    ] {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                seg,
                                BLACK.stroke_width(1),
                            )))
                            .map_err(|x| e(&x))?;
                    }
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    encode_png(path, &buf, (w, h))
}
