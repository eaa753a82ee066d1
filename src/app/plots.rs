//! Plots (egui_plot): metrics @K per scorer, target rank distribution, metric against
//! block size (sweeps), prompt tokens against block size. Points are computed when the
//! data changes, not every frame.

use eframe::egui;
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use egui_plot::{Bar, BarChart, Legend, Line, Plot};

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

/// The plots panel's own state and cached points.
#[derive(Default)]
pub struct PlotsPanel {
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
    /// Reads `scores.jsonl` (score records) or a sweep's `metrics.json`.
    pub fn load_results(&mut self, path: &Path, wb: &Workbench) {
        let _ = wb;
        self.error = None;
        let r = if path.extension().is_some_and(|e| e == "jsonl") {
            read_scores(path).map(|recs| {
                self.loaded.extend(recs);
            })
        } else {
            read_sweep(path).map(|pts| {
                self.sweep = pts;
                self.stats.load_bands(path);
            })
        };
        if let Err(e) = r {
            self.error = Some(format!("{e:#}"));
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
        self.stats.request(records.clone());
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
    }
    Ok(out)
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
    panel.stats.poll(ui.ctx(), &KS);
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
    });
    if let Some(e) = panel.error.as_ref().or(wb.batch.error.as_ref()) {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    let h = (ui.available_height() / 2.0 - 30.0).max(140.0);
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.columns(2, |cols| {
                let names = metric_names(&KS);
                cols[0].strong("Metrics @K per scorer");
                if panel.metrics.is_empty() {
                    cols[0].weak("Run an evaluation or load scores.jsonl.");
                }
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
                                Some(
                                    Bar::new(
                                        mi as f64 + (si as f64 - (n_scorers - 1.0) / 2.0) * width,
                                        v,
                                    )
                                    .width(width)
                                    .name(format!("{scorer} {name}")),
                                )
                            })
                            .collect();
                        BarChart::new(scorer.clone(), bars)
                    })
                    .collect();
                let names_fmt = names.clone();
                let scorers: Vec<String> = panel.metrics.keys().cloned().collect();
                let stats = &panel.stats;
                let r = Plot::new("metrics_plot")
                    .height(h)
                    .legend(Legend::default())
                    .x_axis_formatter(move |mark, _| {
                        let i = mark.value.round();
                        if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                            names_fmt.get(i as usize).cloned().unwrap_or_default()
                        } else {
                            String::new()
                        }
                    })
                    .show(&mut cols[0], |p| {
                        for c in charts {
                            p.bar_chart(c);
                        }
                        stats.error_bars(p, &scorers, &names, width);
                    })
                    .response
                    .rect;
                export_button(&mut cols[0], "metrics", r, cmds);
                cols[1].strong("Target rank distribution");
                let ranks: Vec<BarChart> = panel
                    .ranks
                    .iter()
                    .map(|(scorer, h)| {
                        let bars = h
                            .iter()
                            .enumerate()
                            .map(|(i, &n)| Bar::new(i as f64 + 1.0, f64::from(n)).width(0.8))
                            .collect();
                        BarChart::new(scorer.clone(), bars)
                    })
                    .collect();
                let r = Plot::new("rank_plot")
                    .height(h)
                    .legend(Legend::default())
                    .x_axis_label("target rank")
                    .y_axis_label("cases")
                    .show(&mut cols[1], |p| {
                        for c in ranks {
                            p.bar_chart(c);
                        }
                    })
                    .response
                    .rect;
                export_button(&mut cols[1], "target-rank", r, cmds);
            });
            ui.columns(2, |cols| {
                cols[0].strong("Metric against block size (sweep)");
                let metrics: std::collections::BTreeSet<String> =
                    panel.sweep.iter().map(|p| p.metric.clone()).collect();
                if panel.sweep.is_empty() {
                    cols[0].weak("Load a sweep's metrics.json.");
                } else {
                    if !metrics.contains(&panel.sweep_metric) {
                        panel.sweep_metric = metrics.iter().next().cloned().unwrap_or_default();
                    }
                    egui::ComboBox::from_label("metric")
                        .selected_text(panel.sweep_metric.clone())
                        .show_ui(&mut cols[0], |ui| {
                            for m in &metrics {
                                ui.selectable_value(&mut panel.sweep_metric, m.clone(), m);
                            }
                        });
                }
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
                    .show(&mut cols[0], |p| {
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
                export_button(&mut cols[0], "sweep", r, cmds);
                cols[1].strong("Prompt tokens against block size (selected user)");
                let total = panel.prompt_tokens.clone();
                let largest = panel.largest_block.clone();
                let r = Plot::new("tokens_plot")
                    .height(h)
                    .legend(Legend::default())
                    .x_axis_label("block size (items)")
                    .y_axis_label("tokens")
                    .show(&mut cols[1], |p| {
                        p.line(Line::new("all blocks", total));
                        p.line(Line::new("largest block", largest));
                    })
                    .response
                    .rect;
                export_button(&mut cols[1], "prompt-tokens", r, cmds);
            });
            panel.stats.comparison_ui(ui);
        });
}
