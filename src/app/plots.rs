//! Plots (egui_plot): metrics @K per scorer, target rank distribution, metric against
//! block size (sweeps), prompt tokens against block size. Points are computed when the
//! data changes, not every frame; results files are read by a background task
//! (`app::background`), never on the UI thread. A plot with nothing to show yet is a
//! short placeholder, not empty axes.

use eframe::egui;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use egui_plot::{AxisHints, Bar, BarChart, GridInput, GridMark, Legend, Line, Plot};

use super::background::TaskOutput;
use super::notices::{notice_ui, Level};
use super::ranking::baseline_records;
use super::workbench::target_rank;
use super::{BlockControls, Command, Settings, Workbench};
use crate::metrics::{evaluate, metric_names, ScoreRecord, TiePolicy};

/// Cut-offs shown.
pub const KS: [usize; 3] = [3, 5, 10];

/// One point of a sweep: (series label, block size, metric, value).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    pub series: String,
    pub block_size: f64,
    pub metric: String,
    pub value: f64,
}

/// What a results file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Results {
    /// Score records (`scores.jsonl`).
    Scores(Vec<ScoreRecord>),
    /// A sweep's rows (`metrics.json`), with the interval bands of a study's file.
    Sweep(Vec<SweepPoint>, Vec<super::plot_stats::SweepBand>),
}

/// Reads a results file: `*.jsonl` as score records, anything else as a sweep.
pub fn read_results(path: &Path) -> anyhow::Result<Results> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        read_scores(path).map(Results::Scores)
    } else {
        let (points, bands) = read_sweep_with_bands(path)?;
        Ok(Results::Sweep(points, bands))
    }
}

/// The plots panel's own state and cached points.
#[derive(Default)]
pub struct PlotsPanel {
    /// Results files being read in the background.
    pub reading: Vec<PathBuf>,
    /// Records loaded from CLI `scores.jsonl` files.
    pub loaded: Vec<ScoreRecord>,
    pub sweep: Vec<SweepPoint>,
    pub sweep_metric: String,
    pub error: Option<String>,
    cache_key: Option<(u64, usize, usize)>,
    /// scorer -> metric name -> value.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// scorer -> histogram of target ranks (index = rank - 1).
    pub ranks: BTreeMap<String, Vec<u32>>,
    tokens_key: Option<(usize, String, u64)>,
    pub prompt_tokens: Vec<[f64; 2]>,
    pub largest_block: Vec<[f64; 2]>,
    /// Intervals, bands and the comparison table (plot_stats.rs).
    pub stats: super::plot_stats::PlotStats,
}

impl PlotsPanel {
    /// Starts reading `scores.jsonl` (score records) or a sweep's `metrics.json` in
    /// the background; [`PlotsPanel::results_read`] takes the outcome.
    pub fn load_results(&mut self, path: PathBuf, wb: &Workbench) {
        self.error = None;
        let p = path.clone();
        let spawned = wb.tasks.spawn("read-results", move || {
            let read = read_results(&p).map_err(|e| format!("{e:#}"));
            TaskOutput::Results { path: p, read }
        });
        match spawned {
            Ok(_) => self.reading.push(path),
            Err(e) => self.error = Some(format!("could not start reading {}: {e}", path.display())),
        }
    }

    /// A results file was read (or not): its records join the plots.
    pub fn results_read(&mut self, path: &Path, read: Result<Results, String>) {
        self.reading.retain(|p| p != path);
        match read {
            Ok(Results::Scores(recs)) => self.loaded.extend(recs),
            Ok(Results::Sweep(pts, bands)) => {
                self.sweep = pts;
                self.stats.bands = bands;
            }
            Err(e) => self.error = Some(e),
        }
        self.cache_key = None;
    }

    fn refresh(&mut self, wb: &Workbench) {
        let key = (wb.revision, wb.batch.records.len(), self.loaded.len());
        if self.cache_key == Some(key) {
            return;
        }
        self.cache_key = Some(key);
        let mut records: Vec<ScoreRecord> = wb.batch.records.clone();
        records.extend(self.loaded.iter().cloned());
        // The baselines over the same cases.
        if let Some(data) = &wb.data {
            let by_id: std::collections::HashMap<&str, &crate::data::Case> =
                data.cases.iter().map(|c| (c.case.as_str(), c)).collect();
            let have: std::collections::HashSet<String> =
                records.iter().map(|r| r.scorer.clone()).collect();
            let mut seen = std::collections::HashSet::new();
            let base: Vec<ScoreRecord> = records
                .iter()
                .filter(|r| seen.insert(r.case.clone()))
                .filter_map(|r| by_id.get(r.case.as_str()))
                .flat_map(|c| baseline_records(c, data))
                .filter(|r| !have.contains(&r.scorer))
                .collect();
            if !records.is_empty() {
                records.extend(base);
            }
        }
        self.stats.start(&wb.tasks, records.clone(), &KS);
        self.metrics = evaluate(&records, &KS, TiePolicy::Pessimistic)
            .into_iter()
            .map(|(k, s)| (k, s.metrics))
            .collect();
        self.ranks.clear();
        for r in &records {
            let h = self.ranks.entry(r.scorer.clone()).or_default();
            let rank = target_rank(r);
            if h.len() < rank {
                h.resize(rank, 0);
            }
            h[rank - 1] += 1;
        }
    }

    fn refresh_tokens(&mut self, wb: &Workbench, settings: &Settings) {
        let Some(sel) = wb.selected else { return };
        let key = (
            sel,
            format!("{:?}", settings.text_template),
            wb.token_counts.len() as u64,
        );
        if self.tokens_key.as_ref() == Some(&key) {
            return;
        }
        self.tokens_key = Some(key);
        self.prompt_tokens.clear();
        self.largest_block.clear();
        for size in 1..=15usize {
            let mut s = settings.clone();
            s.blocks = BlockControls {
                by_tokens: false,
                size,
                max_blocks: settings.blocks.max_blocks,
                budget_tokens: settings.blocks.budget_tokens,
            };
            if let Some(seg) = wb.segmentation(&s) {
                let total: usize = seg.blocks.iter().map(|b| b.token_count).sum();
                let largest = seg.blocks.iter().map(|b| b.token_count).max().unwrap_or(0);
                self.prompt_tokens.push([size as f64, total as f64]);
                self.largest_block.push([size as f64, largest as f64]);
            }
        }
    }
}

/// Writes an RGBA image as PNG.
pub fn write_png(image: &egui::ColorImage, path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let [w, h] = image.size;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .with_context(|| format!("writing {}", path.display()))?;
    let bytes: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|c| c.to_srgba_unmultiplied())
        .collect();
    writer
        .write_image_data(&bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// An "Export PNG" button for the plot drawn at `rect`.
fn export_button(ui: &mut egui::Ui, name: &str, rect: egui::Rect, cmds: &mut Vec<Command>) {
    if ui
        .small_button("Export PNG")
        .on_hover_text(format!("Save the {name} plot as a PNG"))
        .clicked()
    {
        cmds.push(Command::ExportPlot {
            name: name.to_string(),
            rect,
        });
    }
}

/// Reads score records from a `scores.jsonl` file.
pub fn read_scores(path: &Path) -> anyhow::Result<Vec<ScoreRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a score record", path.display(), i + 1))
        })
        .collect()
}

/// Reads a sweep's `metrics.json`: an array of rows (or `{"rows": [...]}`), each with a
/// numeric `block_size` (or `size`), optional `method` / `scorer` labels, and metrics
/// either flat (`"recall@5": 0.3`) or under `metrics`.
pub fn read_sweep(path: &Path) -> anyhow::Result<Vec<SweepPoint>> {
    read_sweep_with_bands(path).map(|(points, _)| points)
}

/// [`read_sweep`], plus the interval bands of a study's rows
/// (`intervals: {"<metric>": [lo, hi]}`), in one read of the file.
pub fn read_sweep_with_bands(
    path: &Path,
) -> anyhow::Result<(Vec<SweepPoint>, Vec<super::plot_stats::SweepBand>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    let rows = match &v {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::Object(o) => o
            .get("rows")
            .and_then(|r| r.as_array())
            .cloned()
            .with_context(|| {
                format!(
                    "{}: expected an array of rows or {{\"rows\": [...]}}",
                    path.display()
                )
            })?,
        _ => anyhow::bail!("{}: expected an array of rows", path.display()),
    };
    let mut out = Vec::new();
    let mut bands = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let o = row
            .as_object()
            .with_context(|| format!("{}: row {}: expected an object", path.display(), i + 1))?;
        // `null`: a scorer without blocks (baselines), drawn as a horizontal line.
        let size = match o.get("block_size").or_else(|| o.get("size")) {
            Some(serde_json::Value::Null) => f64::NAN,
            Some(v) => v.as_f64().with_context(|| {
                format!(
                    "{}: row {}: field `block_size` is not a number",
                    path.display(),
                    i + 1
                )
            })?,
            None => anyhow::bail!(
                "{}: row {}: field `block_size` missing",
                path.display(),
                i + 1
            ),
        };
        let label = ["method", "scorer"]
            .iter()
            .filter_map(|k| o.get(*k).and_then(|v| v.as_str()))
            .collect::<Vec<_>>()
            .join(" ");
        let metrics = o.get("metrics").and_then(|m| m.as_object()).unwrap_or(o);
        for (k, val) in metrics {
            if k.contains('@') || k == "auc" {
                if let Some(x) = val.as_f64() {
                    out.push(SweepPoint {
                        series: label.clone(),
                        block_size: size,
                        metric: k.clone(),
                        value: x,
                    });
                }
            }
        }
        let intervals = o.get("intervals").and_then(|m| m.as_object());
        for (k, val) in intervals.into_iter().flatten() {
            if let Some([lo, hi]) = val.as_array().map(Vec::as_slice) {
                if let (Some(lo), Some(hi)) = (lo.as_f64(), hi.as_f64()) {
                    bands.push(super::plot_stats::SweepBand {
                        series: label.clone(),
                        block_size: size,
                        metric: k.clone(),
                        ci: crate::stats::Interval { lo, hi },
                    });
                }
            }
        }
    }
    Ok((out, bands))
}

pub fn plots_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut PlotsPanel,
    cmds: &mut Vec<Command>,
) {
    panel.refresh(wb);
    panel.refresh_tokens(wb, settings);
    toolbar_ui(ui, wb, settings, panel, cmds);
    if let Some(e) = panel.error.as_ref().or(wb.batch.error.as_ref()) {
        notice_ui(ui, Level::Error, e.as_str());
    }
    if let Some(note) = &wb.batch.partial {
        notice_ui(ui, Level::Warning, note.as_str());
    }
    let h = (ui.available_height() / 2.0 - 30.0).max(140.0);
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.columns(2, |cols| {
                metrics_plot_ui(&mut cols[0], panel, h, cmds);
                rank_plot_ui(&mut cols[1], panel, h, cmds);
            });
            ui.columns(2, |cols| {
                sweep_plot_ui(&mut cols[0], panel, h, cmds);
                tokens_plot_ui(&mut cols[1], wb, panel, h, cmds);
            });
            panel.stats.comparison_ui(ui);
        });
}

/// Evaluate (batch), its progress, Load results.
fn toolbar_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &PlotsPanel,
    cmds: &mut Vec<Command>,
) {
    ui.horizontal_wrapped(|ui| {
        ui.add(
            egui::DragValue::new(&mut settings.batch_cases)
                .range(1..=100_000)
                .prefix("cases: "),
        )
        .on_hover_text("number of cases to evaluate");
        ui.checkbox(&mut settings.batch_summarize, "summarize first (slow)");
        let running = wb.batch.job.is_some();
        if ui
            .add_enabled(
                !running && wb.context_len().is_some() && wb.data.is_some(),
                egui::Button::new("Evaluate"),
            )
            .on_hover_text("Score the first N cases with the LLM recommender and compute metrics")
            .on_disabled_hover_text("open a dataset and load a model first")
            .clicked()
        {
            cmds.push(Command::RunBatch);
        }
        if running {
            ui.add(
                egui::ProgressBar::new(wb.batch.done as f32 / wb.batch.total.max(1) as f32)
                    .desired_width(200.0)
                    .text(format!(
                        "{}/{} {}",
                        wb.batch.done, wb.batch.total, wb.batch.message
                    )),
            );
            if ui.button("Cancel").clicked() {
                cmds.push(Command::Cancel);
            }
        }
        if ui
            .button("Load results...")
            .on_hover_text("scores.jsonl or a sweep's metrics.json")
            .clicked()
        {
            cmds.push(Command::LoadResultsDialog);
        }
        for p in &panel.reading {
            ui.spinner();
            ui.weak(format!("reading {}", p.display()));
        }
    });
}

/// A plot-sized box with a short note, where a plot has nothing to show yet.
fn placeholder_ui(ui: &mut egui::Ui, height: f32, text: &str) {
    let size = egui::vec2(ui.available_width(), height);
    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
    let visuals = ui.visuals();
    ui.painter().rect_stroke(
        rect,
        4.0,
        visuals.widgets.noninteractive.bg_stroke,
        egui::StrokeKind::Inside,
    );
    ui.put(
        rect.shrink(12.0),
        egui::Label::new(egui::RichText::new(text).weak()).wrap(),
    );
}

/// Distinct colours for the scorers (legend and bars share them).
fn scorer_color(i: usize) -> egui::Color32 {
    const COLORS: [(u8, u8, u8); 8] = [
        (66, 133, 244),
        (234, 67, 53),
        (52, 168, 83),
        (251, 188, 5),
        (171, 71, 188),
        (0, 172, 193),
        (255, 112, 67),
        (124, 179, 66),
    ];
    let (r, g, b) = COLORS[i % COLORS.len()];
    egui::Color32::from_rgb(r, g, b)
}

/// A legend row above a plot (so it never covers the bars).
fn legend_row_ui<'a>(ui: &mut egui::Ui, names: impl Iterator<Item = &'a String>) {
    ui.horizontal_wrapped(|ui| {
        for (i, name) in names.enumerate() {
            // Swatch and name as one widget, so they wrap together.
            let font = egui::TextStyle::Body.resolve(ui.style());
            let color = ui.visuals().text_color();
            let galley = ui.painter().layout_no_wrap(name.clone(), font, color);
            let size = egui::vec2(16.0 + galley.size().x, galley.size().y.max(10.0));
            let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
            let swatch = egui::Rect::from_center_size(
                egui::pos2(rect.left() + 5.0, rect.center().y),
                egui::vec2(10.0, 10.0),
            );
            ui.painter().rect_filled(swatch, 2.0, scorer_color(i));
            ui.painter()
                .galley(egui::pos2(rect.left() + 16.0, rect.top()), galley, color);
            ui.add_space(8.0);
        }
    });
}

/// A mark at each whole number in the shown range (one per bar group).
fn every_group(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    let (lo, hi) = (lo.ceil().max(-1.0), hi.floor().min(1000.0));
    let mut marks = Vec::new();
    let mut v = lo;
    while v <= hi {
        marks.push(GridMark {
            value: v,
            step_size: 1.0,
        });
        v += 1.0;
    }
    marks
}

/// Metrics @K per scorer: one row of bars per metric, every metric named on the axis.
fn metrics_plot_ui(ui: &mut egui::Ui, panel: &PlotsPanel, h: f32, cmds: &mut Vec<Command>) {
    ui.strong("Metrics @K per scorer");
    if panel.metrics.is_empty() {
        placeholder_ui(
            ui,
            h,
            "No results yet: press Evaluate, or Load results (scores.jsonl).",
        );
        return;
    }
    legend_row_ui(ui, panel.metrics.keys());
    let names = metric_names(&KS);
    let n_groups = names.len();
    // The first metric at the top.
    let row_of = move |mi: usize| (n_groups - 1 - mi) as f64;
    let n_scorers = panel.metrics.len().max(1) as f64;
    let width = 0.8 / n_scorers;
    let charts: Vec<BarChart> = panel
        .metrics
        .iter()
        .enumerate()
        .map(|(si, (scorer, m))| {
            let bars = names
                .iter()
                .enumerate()
                .filter_map(|(mi, name)| {
                    let v = *m.get(name)?;
                    // The first scorer on top within a group, as in the legend.
                    let y = row_of(mi) - (si as f64 - (n_scorers - 1.0) / 2.0) * width;
                    Some(Bar::new(y, v).width(width).name(format!("{scorer} {name}")))
                })
                .collect();
            BarChart::new(scorer.clone(), bars)
                .color(scorer_color(si))
                .horizontal()
        })
        .collect();
    let names_fmt = names.clone();
    let scorers: Vec<String> = panel.metrics.keys().cloned().collect();
    let y_axis = AxisHints::new_y()
        .label_spacing(10.0..=14.0)
        .formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n_groups {
                names_fmt[n_groups - 1 - i as usize].clone()
            } else {
                String::new()
            }
        });
    // Room for every metric's label.
    let height = h.max(n_groups as f32 * 22.0 + 40.0);
    let r = Plot::new("metrics_plot")
        .height(height)
        .custom_y_axes(vec![y_axis])
        .y_grid_spacer(every_group)
        .x_axis_label("value")
        .include_x(0.0)
        .include_x(1.0)
        .include_y(-0.5)
        .include_y(n_groups as f64 - 0.5)
        .show(ui, |p| {
            for c in charts {
                p.bar_chart(c);
            }
            panel.stats.error_bars(p, &scorers, &names, width);
        })
        .response
        .rect;
    export_button(ui, "metrics", r, cmds);
}

/// How often the target ranked 1st, 2nd, ... per scorer.
fn rank_plot_ui(ui: &mut egui::Ui, panel: &PlotsPanel, h: f32, cmds: &mut Vec<Command>) {
    ui.strong("Target rank distribution");
    if panel.ranks.is_empty() {
        placeholder_ui(ui, h, "No rankings yet: press Evaluate, or Load results.");
        return;
    }
    legend_row_ui(ui, panel.ranks.keys());
    // The scorers' bars side by side at each rank, not over each other.
    let n_scorers = panel.ranks.len().max(1) as f64;
    let width = 0.8 / n_scorers;
    let ranks: Vec<BarChart> = panel
        .ranks
        .iter()
        .enumerate()
        .map(|(si, (scorer, h))| {
            let offset = (si as f64 - (n_scorers - 1.0) / 2.0) * width;
            let bars = h
                .iter()
                .enumerate()
                .map(|(i, &n)| Bar::new(i as f64 + 1.0 + offset, f64::from(n)).width(width))
                .collect();
            BarChart::new(scorer.clone(), bars).color(scorer_color(si))
        })
        .collect();
    let r = Plot::new("rank_plot")
        .height(h)
        .x_axis_label("target rank")
        .y_axis_label("cases")
        .include_y(0.0)
        .show(ui, |p| {
            for c in ranks {
                p.bar_chart(c);
            }
        })
        .response
        .rect;
    export_button(ui, "target-rank", r, cmds);
}

/// A sweep's metric against block size, one line per series.
fn sweep_plot_ui(ui: &mut egui::Ui, panel: &mut PlotsPanel, h: f32, cmds: &mut Vec<Command>) {
    ui.strong("Metric against block size (sweep)");
    if panel.sweep.is_empty() {
        placeholder_ui(
            ui,
            h,
            "No sweep yet: Load results with a sweep's metrics.json (trsr sweep writes one).",
        );
        return;
    }
    let metrics: std::collections::BTreeSet<String> =
        panel.sweep.iter().map(|p| p.metric.clone()).collect();
    if !metrics.contains(&panel.sweep_metric) {
        panel.sweep_metric = metrics.iter().next().cloned().unwrap_or_default();
    }
    egui::ComboBox::from_label("metric")
        .selected_text(panel.sweep_metric.clone())
        .show_ui(ui, |ui| {
            for m in &metrics {
                ui.selectable_value(&mut panel.sweep_metric, m.clone(), m);
            }
        });
    let mut series: BTreeMap<String, Vec<[f64; 2]>> = BTreeMap::new();
    for p in panel
        .sweep
        .iter()
        .filter(|p| p.metric == panel.sweep_metric)
    {
        series
            .entry(p.series.clone())
            .or_default()
            .push([p.block_size, p.value]);
    }
    let r = Plot::new("sweep_plot")
        .height(h)
        .legend(Legend::default())
        .x_axis_label("block size")
        .show(ui, |p| {
            panel.stats.sweep_bands(p, &panel.sweep_metric);
            for (name, mut pts) in series {
                if pts.iter().all(|q| q[0].is_nan()) {
                    if let Some(q) = pts.first() {
                        p.hline(egui_plot::HLine::new(name, q[1]));
                    }
                    continue;
                }
                pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
                p.line(Line::new(name, pts));
            }
        })
        .response
        .rect;
    export_button(ui, "sweep", r, cmds);
}

/// The selected user's prompt tokens against block size.
fn tokens_plot_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    panel: &PlotsPanel,
    h: f32,
    cmds: &mut Vec<Command>,
) {
    ui.strong("Prompt tokens against block size (selected user)");
    if wb.selected.is_none() || panel.prompt_tokens.is_empty() {
        placeholder_ui(
            ui,
            h,
            "Select a user (dataset list) to see their prompt sizes.",
        );
        return;
    }
    let total = panel.prompt_tokens.clone();
    let largest = panel.largest_block.clone();
    let r = Plot::new("tokens_plot")
        .height(h)
        // Bottom right: the total is flat at the top, the largest block rises to the right.
        .legend(Legend::default().position(egui_plot::Corner::RightBottom))
        .custom_x_axes(vec![AxisHints::new_x()
            .label("block size (items)")
            .label_spacing(18.0..=24.0)])
        .x_grid_spacer(every_group)
        .y_axis_label("tokens")
        .include_y(0.0)
        .show(ui, |p| {
            p.line(Line::new("all blocks", total));
            p.line(Line::new("largest block", largest));
        })
        .response
        .rect;
    export_button(ui, "prompt-tokens", r, cmds);
}
