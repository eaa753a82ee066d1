//! Uncertainty in the plots panel: error bars on the Metrics @K chart, interval
//! bands on the metric-against-block-size plot (from a study's `metrics.json`,
//! whose rows carry `intervals`), and a comparison table under the plots.
//!
//! The bootstrap and the permutation tests run as a background task (`background.rs`)
//! when the records change (they take longer than a frame on large evaluation sets);
//! the result comes back through the window's task channel, and a result for records
//! that have changed since is dropped.

use std::collections::BTreeMap;
use std::path::Path;

use eframe::egui;
use egui_plot::{FilledArea, Line, PlotUi};

use super::background::{Background, TaskOutput};
use crate::metrics::{ScoreRecord, TiePolicy};
use crate::stats::{
    apply_holm, case_tables, compare, scorer_intervals, BootstrapParams, Comparison, Interval,
    DEFAULT_PERMUTATIONS,
};

/// Resamples of the window's intervals (fewer than the CLI's 2000: a quick look).
const WINDOW_RESAMPLES: usize = 1000;
/// The metrics compared in the table.
const TABLE_METRICS: [&str; 2] = ["ndcg@10", "recall@5"];

/// An interval band point of a sweep: (series, block size, metric, interval).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepBand {
    pub series: String,
    pub block_size: f64,
    pub metric: String,
    pub ci: Interval,
}

/// Intervals per scorer and metric, and the comparisons against the best scorer.
pub type Computed = (
    BTreeMap<String, BTreeMap<String, Interval>>,
    Vec<Comparison>,
);

/// The panel's interval state.
#[derive(Default)]
pub struct PlotStats {
    /// scorer -> metric -> 95% interval.
    pub intervals: BTreeMap<String, BTreeMap<String, Interval>>,
    /// Every scorer against the best one on ndcg@10.
    pub comparisons: Vec<Comparison>,
    pub bands: Vec<SweepBand>,
    pub note: Option<String>,
    /// The request whose result is awaited (results of older ones are dropped).
    generation: u64,
    pub computing: bool,
}

fn compute(records: &[ScoreRecord], ks: &[usize]) -> Result<Computed, String> {
    let params = BootstrapParams {
        resamples: WINDOW_RESAMPLES,
        ..BootstrapParams::default()
    };
    let tables = case_tables(records, ks, TiePolicy::Pessimistic);
    let mut intervals = BTreeMap::new();
    for (scorer, t) in &tables {
        if t.cases.len() < 2 {
            continue;
        }
        let m = scorer_intervals(t, &params, scorer).map_err(|e| e.to_string())?;
        intervals.insert(
            scorer.clone(),
            m.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect(),
        );
    }
    let best = tables
        .iter()
        .filter_map(|(s, t)| t.mean(TABLE_METRICS[0]).map(|v| (s, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s.clone());
    let mut comparisons = Vec::new();
    if let Some(best) = best {
        let tb = &tables[&best];
        for (s, t) in tables.iter().filter(|(s, _)| **s != best) {
            if let Ok(mut c) = compare(s, t, &best, tb, &params, DEFAULT_PERMUTATIONS) {
                c.metrics
                    .retain(|m| TABLE_METRICS.contains(&m.metric.as_str()));
                comparisons.push(c);
            }
        }
    }
    apply_holm(&mut comparisons);
    Ok((intervals, comparisons))
}

impl PlotStats {
    /// Starts computing the intervals of `records` as a background task.
    pub fn start(
        &mut self,
        tasks: &Background<TaskOutput>,
        records: Vec<ScoreRecord>,
        ks: &[usize],
    ) {
        self.generation += 1;
        let (generation, ks) = (self.generation, ks.to_vec());
        match tasks.spawn("plot-intervals", move || TaskOutput::PlotIntervals {
            generation,
            result: compute(&records, &ks),
        }) {
            Ok(_) => self.computing = true,
            Err(e) => self.note = Some(format!("could not start the interval task: {e}")),
        }
    }

    /// A finished interval task; kept only if no newer one was started.
    pub fn finished(&mut self, generation: u64, result: Result<Computed, String>) {
        if generation != self.generation {
            return;
        }
        self.computing = false;
        match result {
            Ok((intervals, comparisons)) => {
                self.intervals = intervals;
                self.comparisons = comparisons;
                self.note = None;
            }
            Err(e) => self.note = Some(e),
        }
    }

    /// Error bars over the horizontal bars of the Metrics @K chart, placed as its bars
    /// are: metric `mi` of `g` on row `g - 1 - mi`, scorer `si` of `n` offset by
    /// `-(si - (n - 1) / 2) * width` within it.
    pub fn error_bars(&self, p: &mut PlotUi, scorers: &[String], names: &[String], width: f64) {
        let n = scorers.len().max(1) as f64;
        let g = names.len();
        // A mid grey reads on both themes.
        let color = egui::Color32::from_gray(150);
        for (si, scorer) in scorers.iter().enumerate() {
            let Some(m) = self.intervals.get(scorer) else {
                continue;
            };
            for (mi, name) in names.iter().enumerate() {
                let Some(ci) = m.get(name) else { continue };
                let y = (g - 1 - mi) as f64 - (si as f64 - (n - 1.0) / 2.0) * width;
                let cap = width * 0.25;
                for seg in [
                    vec![[ci.lo, y], [ci.hi, y]],
                    vec![[ci.lo, y - cap], [ci.lo, y + cap]],
                    vec![[ci.hi, y - cap], [ci.hi, y + cap]],
                ] {
                    p.line(
                        Line::new("", seg)
                            .color(color)
                            .width(1.0)
                            .allow_hover(false),
                    );
                }
            }
        }
    }

    /// Interval bands of the chosen metric, under the sweep lines (same names, so
    /// the legend toggles both).
    pub fn sweep_bands(&self, p: &mut PlotUi, metric: &str) {
        let mut series: BTreeMap<&str, Vec<(f64, Interval)>> = BTreeMap::new();
        for b in self.bands.iter().filter(|b| b.metric == metric) {
            series
                .entry(&b.series)
                .or_default()
                .push((b.block_size, b.ci));
        }
        for (name, mut pts) in series {
            pts.retain(|q| q.0.is_finite());
            if pts.len() < 2 {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let xs: Vec<f64> = pts.iter().map(|q| q.0).collect();
            let lo: Vec<f64> = pts.iter().map(|q| q.1.lo).collect();
            let hi: Vec<f64> = pts.iter().map(|q| q.1.hi).collect();
            p.add(
                FilledArea::new(name, &xs, &lo, &hi)
                    .fill_color(egui::Color32::from_rgba_unmultiplied(120, 120, 200, 40))
                    .allow_hover(false),
            );
        }
    }

    /// The comparison table: each scorer against the best on ndcg@10.
    pub fn comparison_ui(&self, ui: &mut egui::Ui) {
        ui.strong("Comparison against the best scorer (95% intervals)");
        if let Some(n) = &self.note {
            ui.colored_label(ui.visuals().warn_fg_color, n);
        }
        if self.computing {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("computing intervals...");
            });
        }
        if self.comparisons.is_empty() {
            ui.weak("Two or more scorers on the same cases give a comparison here.");
            return;
        }
        egui::Grid::new("plot_stats_comparisons")
            .striped(true)
            .show(ui, |ui| {
                for h in [
                    "scorer",
                    "vs",
                    "metric",
                    "cases",
                    "difference",
                    "interval",
                    "p",
                    "p (Holm)",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for c in &self.comparisons {
                    for m in &c.metrics {
                        ui.label(&c.a);
                        ui.label(&c.b);
                        ui.label(&m.metric);
                        ui.label(m.cases.to_string());
                        ui.label(format!("{:+.4}", m.diff));
                        ui.label(
                            m.ci.map_or(String::new(), |c| format!("[{:.4}, {:.4}]", c.lo, c.hi)),
                        );
                        ui.label(format!("{:.4}", m.p));
                        ui.label(format!("{:.4}", m.p_holm));
                        ui.end_row();
                    }
                }
            });
        ui.weak(format!(
            "{} over cases ({WINDOW_RESAMPLES} resamples); p: {}, Holm-adjusted over the rows shown.",
            crate::stats::INTERVAL_METHOD,
            crate::stats::PAIRED_TEST
        ));
    }
}

/// Reads the interval bands of a study's `metrics.json` (see
/// [`super::plots::read_sweep_with_bands`], which reads the file once for both).
pub fn read_bands(path: &Path) -> anyhow::Result<Vec<SweepBand>> {
    super::plots::read_sweep_with_bands(path).map(|(_, bands)| bands)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ScoredCandidate;

    fn rec(case: &str, scorer: &str, target_score: f64) -> ScoreRecord {
        ScoreRecord {
            preset: None,
            case: case.into(),
            scorer: scorer.into(),
            candidates: vec![
                ScoredCandidate {
                    id: "T".into(),
                    label: 1,
                    score: target_score,
                },
                ScoredCandidate {
                    id: "N".into(),
                    label: 0,
                    score: 0.5,
                },
            ],
        }
    }

    #[test]
    fn compute_gives_intervals_and_compares_against_the_best() {
        let mut records = Vec::new();
        for i in 0..6 {
            let c = format!("c{i}");
            records.push(rec(&c, "good", 0.9));
            records.push(rec(&c, "bad", if i < 2 { 0.9 } else { 0.1 }));
        }
        let (intervals, comparisons) = compute(&records, &[1, 5, 10]).unwrap();
        // `good` ranks the target first everywhere: a zero-width interval at 1.
        let g = &intervals["good"]["recall@1"];
        assert_eq!((g.lo, g.hi), (1.0, 1.0));
        assert_eq!(comparisons.len(), 1);
        assert_eq!(comparisons[0].a, "bad");
        assert_eq!(comparisons[0].b, "good");
        let all = &comparisons[0].metrics;
        assert_eq!(all.len(), 2, "ndcg@10 and recall@5");
        let m: Vec<_> = all.iter().filter(|m| m.metric == "ndcg@10").collect();
        // ndcg@10: bad has 1 on 2 cases and 1/log2(3) on 4, good 1 on all.
        let want = 4.0 * (1.0 / 3f64.log2() - 1.0) / 6.0;
        assert!((m[0].diff - want).abs() < 1e-12, "{m:?}");
        // 4 equal non-zero differences: exact p = 2 / 16.
        assert!((m[0].p - 0.125).abs() < 1e-12);
    }

    #[test]
    fn bands_come_from_rows_with_intervals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.json");
        std::fs::write(
            &p,
            r#"[{"scorer": "llm hierarchical", "block_size": 3, "metrics": {"ndcg@10": 0.4},
                 "intervals": {"ndcg@10": [0.3, 0.5]}},
                {"scorer": "bm25", "block_size": null, "metrics": {"ndcg@10": 0.2}},
                {"method": "recurrent", "scorer": "llm", "block_size": 5, "recall@5": 0.3}]"#,
        )
        .unwrap();
        let bands = read_bands(&p).unwrap();
        assert_eq!(
            bands,
            vec![SweepBand {
                series: "llm hierarchical".into(),
                block_size: 3.0,
                metric: "ndcg@10".into(),
                ci: Interval { lo: 0.3, hi: 0.5 },
            }]
        );
    }
}
