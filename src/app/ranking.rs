//! Ranking: candidates by P(yes), the target and its rank, baselines beside, ablations.

use super::workbench::target_rank;
use super::{Command, Settings, Workbench};
use crate::app::notices::{notice_ui, Level};
use crate::data::Case;
use crate::metrics::{ScoreRecord, ScoredCandidate};
use crate::rank::{score_baseline, Baseline};
use eframe::egui;

/// The baselines' records of a case (random, popularity, BM25), as the CLI computes them.
pub fn baseline_records(
    case: &Case,
    data: &crate::worker::dataset::LoadedData,
) -> Vec<ScoreRecord> {
    [Baseline::Random, Baseline::Popularity, Baseline::Bm25]
        .into_iter()
        .map(|b| score_baseline(b, &data.baselines, case, &data.catalogue, 42))
        .collect()
}

pub fn ranking_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    cmds: &mut Vec<Command>,
) {
    let Some(case) = wb.selected_case() else {
        ui.label("Select a user on the left.");
        return;
    };
    let busy = wb.rank.as_ref().is_some_and(|r| r.job.is_some());
    let mut rescore = false;
    ui.horizontal_wrapped(|ui| {
        let ready = wb.context_len().is_some();
        if ui
            .add_enabled(ready && !busy, egui::Button::new("Rank candidates"))
            .on_hover_text(format!(
                "Score the target and negatives with the LLM recommender ({})",
                super::command::shortcut_text(ui.ctx(), Command::Score)
            ))
            .on_disabled_hover_text("load a model first")
            .clicked()
        {
            cmds.push(Command::Score);
        }
        if busy {
            ui.spinner();
            ui.label("scoring...");
        }
        ui.separator();
        ui.label("Prompt holds:");
        let r = &mut settings.recommend;
        rescore |= ui.checkbox(&mut r.use_summary, "summary").changed();
        rescore |= ui.checkbox(&mut r.use_recent, "recent items").changed();
        rescore |= ui
            .add(
                egui::DragValue::new(&mut r.recent)
                    .range(1..=50)
                    .prefix("recent: "),
            )
            .on_hover_text("number of recent items")
            .changed();
    });
    let has_summary = wb
        .summary
        .as_ref()
        .is_some_and(|s| s.case == case.case && s.result.is_some());
    if !has_summary {
        ui.weak("No finished summary for this user: the prompt holds recent items only.");
    }
    if rescore
        && wb
            .rank
            .as_ref()
            .is_some_and(|r| r.case == case.case && r.record.is_some())
        && !busy
    {
        cmds.push(Command::Score);
    }
    ui.separator();
    let Some(rank) = wb.rank.as_ref().filter(|r| r.case == case.case) else {
        ui.label("Not ranked yet.");
        return;
    };
    if let Some(e) = &rank.error {
        notice_ui(ui, Level::Error, e.as_str());
    }
    let Some(rec) = &rank.record else { return };
    let n = rec.candidates.len();
    let tr = target_rank(rec);
    ui.horizontal_wrapped(|ui| {
        ui.heading(format!("Target rank: {tr} of {n}"));
        if let Some((opts, prev)) = &rank.previous {
            let delta = *prev as i64 - tr as i64;
            ui.label(format!(
                "(was {prev} with summary {}, recent {}: {})",
                if opts.use_summary { "on" } else { "off" },
                if opts.use_recent { "on" } else { "off" },
                match delta.cmp(&0) {
                    std::cmp::Ordering::Greater => format!("up {delta}"),
                    std::cmp::Ordering::Less => format!("down {}", -delta),
                    std::cmp::Ordering::Equal => "same".into(),
                }
            ));
        }
    });
    if let Some(data) = &wb.data {
        let ranks: Vec<String> = baseline_records(case, data)
            .iter()
            .map(|r| format!("{} {}", r.scorer, target_rank(r)))
            .collect();
        ui.label(format!(
            "Target rank by baseline: {} · LLM {tr} (summary {}, recent {})",
            ranks.join(" · "),
            if rank.used_summary { "on" } else { "off" },
            if rank.options.use_recent { "on" } else { "off" },
        ));
    }
    let mut order: Vec<&ScoredCandidate> = rec.candidates.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let max = order.first().map_or(1.0, |c| c.score.max(1e-9));
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("ranking")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for (i, c) in order.iter().enumerate() {
                        let target = c.label > 0;
                        let text = wb
                            .data
                            .as_ref()
                            .and_then(|d| d.catalogue.get(&c.id))
                            .map(|it| settings.text_template.render(it))
                            .unwrap_or_default();
                        ui.label(format!("{}", i + 1));
                        let bar = egui::ProgressBar::new((c.score / max) as f32)
                            .desired_width(160.0)
                            .text(format!("P(yes) {:.3}", c.score));
                        let bar = if target {
                            bar.fill(egui::Color32::from_rgb(46, 160, 67))
                        } else {
                            bar
                        };
                        ui.add(bar);
                        if target {
                            ui.strong(format!("target {}", c.id));
                        } else {
                            ui.monospace(&c.id);
                        }
                        ui.add(egui::Label::new(text).truncate());
                        ui.end_row();
                    }
                });
            egui::CollapsingHeader::new("Exact prompt (shared prefix)").show(ui, |ui| {
                let mut p = rank.prompt.as_str();
                ui.add(
                    egui::TextEdit::multiline(&mut p)
                        .code_editor()
                        .desired_width(f32::INFINITY),
                );
            });
        });
}
