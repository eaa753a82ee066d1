//! Summaries, live: the steps of a hierarchical tree or recurrent chain, streaming.

use super::blocks::{block_color, card};
use super::{Command, Settings, StepView, Workbench};
use crate::app::notices::{notice_ui, Level};
use crate::worker::jobs::Method;
use crate::worker::StepKind;
use eframe::egui;

/// The summaries panel's own state.
#[derive(Default)]
pub struct SummariesPanel {
    /// The step whose exact prompt is shown.
    pub prompt_of: Option<usize>,
}

/// Colour of a token by its probability (red = unlikely, green = likely).
pub fn prob_color(logprob: f32, dark: bool) -> egui::Color32 {
    let p = logprob.exp().clamp(0.0, 1.0);
    let (r, g) = ((255.0 * (1.0 - p)) as u8, (200.0 * p) as u8 + 40);
    if dark {
        egui::Color32::from_rgb(r.max(90), g.max(90), 90)
    } else {
        egui::Color32::from_rgb(r, g.saturating_sub(40), 30)
    }
}

fn step_text_ui(ui: &mut egui::Ui, step: &StepView, color_by_prob: bool) {
    if color_by_prob && !step.tokens.is_empty() {
        let dark = ui.visuals().dark_mode;
        let mut job = egui::text::LayoutJob::default();
        let font = egui::TextStyle::Body.resolve(ui.style());
        for (t, lp) in &step.tokens {
            job.append(
                t,
                0.0,
                egui::TextFormat::simple(font.clone(), prob_color(*lp, dark)),
            );
        }
        job.wrap.max_width = ui.available_width();
        ui.label(job);
    } else if step.text.is_empty() && !step.done {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.weak("reading the prompt...");
        });
    } else {
        ui.label(&step.text);
    }
}

#[allow(clippy::too_many_arguments)]
fn step_card(
    ui: &mut egui::Ui,
    i: usize,
    step: &StepView,
    block_items: &[Vec<String>],
    running: bool,
    pending: bool,
    settings: &Settings,
    panel: &mut SummariesPanel,
    cmds: &mut Vec<Command>,
) {
    let dark = ui.visuals().dark_mode;
    let fill = match step.kind {
        StepKind::Merge => ui.visuals().faint_bg_color,
        _ => block_color(step.blocks.first().copied().unwrap_or(0), dark),
    };
    card(ui, fill, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            let title = match step.kind {
                StepKind::Block => format!("Step {} · block {}", i + 1, step.blocks[0] + 1),
                StepKind::Update => {
                    format!("Step {} · update with block {}", i + 1, step.blocks[0] + 1)
                }
                StepKind::Merge => {
                    format!("Step {} · merge of {} blocks", i + 1, step.blocks.len())
                }
            };
            ui.strong(title);
            if !step.done && !pending {
                ui.spinner();
            }
        });
        if step.kind != StepKind::Merge {
            if let Some(items) = block_items.get(step.blocks[0]) {
                egui::CollapsingHeader::new(format!("{} items", items.len()))
                    .id_salt(("step_items", i))
                    .show(ui, |ui| {
                        for t in items {
                            ui.add(
                                egui::Label::new(egui::RichText::new(t).small().weak()).truncate(),
                            );
                        }
                    });
            }
        }
        if pending {
            ui.weak("waiting");
            return;
        }
        step_text_ui(ui, step, settings.color_by_prob);
        // Wrapped, so a narrow column wraps the stats row instead of widening the card
        // over its neighbour.
        ui.horizontal_wrapped(|ui| {
            let prompt_tokens = if step.prompt_tokens > 0 {
                format!("prompt {} tokens · ", step.prompt_tokens)
            } else {
                String::new()
            };
            // The trace's count: a step from the cache streamed no tokens.
            ui.weak(format!(
                "{prompt_tokens}output {} tokens{} ·",
                step.output_tokens,
                if step.done {
                    format!(" · {:.0} ms", step.ms)
                } else {
                    String::new()
                }
            ));
            // Where the text came from, kept on one line.
            ui.add(
                egui::Label::new(egui::RichText::new(step.source.label()).weak())
                    .wrap_mode(egui::TextWrapMode::Extend),
            );
            let shown = panel.prompt_of == Some(i);
            if ui
                .selectable_label(shown, "prompt")
                .on_hover_text("Show the exact prompt of this step")
                .clicked()
            {
                panel.prompt_of = if shown { None } else { Some(i) };
            }
            if ui
                .add_enabled(step.done && !running, egui::Button::new("re-run"))
                .on_hover_text("Re-run this step (and the steps that depend on it)")
                .clicked()
            {
                cmds.push(Command::RerunStep(i));
            }
        });
        if panel.prompt_of == Some(i) {
            let mut p = step.prompt.as_str();
            ui.add(
                egui::TextEdit::multiline(&mut p)
                    .code_editor()
                    .desired_width(f32::INFINITY),
            )
            .on_hover_text("exact prompt");
        }
    });
}

pub fn summaries_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut SummariesPanel,
    cmds: &mut Vec<Command>,
) {
    let running = wb.summary.as_ref().is_some_and(|s| s.is_running());
    ui.horizontal_wrapped(|ui| {
        ui.label("Method");
        ui.selectable_value(&mut settings.method, Method::Hierarchical, "hierarchical");
        ui.selectable_value(&mut settings.method, Method::Recurrent, "recurrent");
        ui.separator();
        let ready = wb.selected_case().is_some() && wb.context_len().is_some();
        if ui
            .add_enabled(ready && !running, egui::Button::new("Run summary"))
            .on_hover_text(format!(
                "Summarize the selected user ({})",
                super::command::shortcut_text(ui.ctx(), Command::RunSummary)
            ))
            .on_disabled_hover_text("select a user and load a model first")
            .clicked()
        {
            cmds.push(Command::RunSummary);
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel"))
            .on_hover_text(format!(
                "Cancel ({})",
                super::command::shortcut_text(ui.ctx(), Command::Cancel)
            ))
            .clicked()
        {
            cmds.push(Command::Cancel);
        }
        ui.checkbox(&mut settings.color_by_prob, "colour tokens by probability");
        if let Some(tps) = wb.summary.as_ref().and_then(|s| s.tokens_per_sec()) {
            ui.label(format!("{tps:.1} tok/s"));
        }
    });
    super::blocks::block_controls_ui(ui, settings);
    ui.separator();
    let Some(s) = &wb.summary else {
        ui.label("No summary yet: select a user and press Run.");
        return;
    };
    ui.horizontal(|ui| {
        ui.strong(format!("Case {} · {}", s.case, s.method.name()));
        if s.from_cache {
            ui.weak("(reused from an earlier run)");
        }
        if s.cancelled {
            notice_ui(ui, Level::Warning, "cancelled");
        }
        if let Some(e) = &s.error {
            notice_ui(ui, Level::Error, e.as_str());
        }
    });
    // Each block's item texts (with the settings the run used).
    let block_items: Vec<Vec<String>> = wb
        .data
        .as_ref()
        .filter(|_| wb.selected_case().is_some_and(|c| c.case == s.case))
        .and_then(|d| {
            let case = wb.selected_case()?;
            let seg = crate::worker::jobs::segment_case(
                case,
                &d.catalogue,
                &settings.text_template,
                &s.block_params,
                &|t| wb.count_tokens(t).0,
            );
            Some(
                seg.blocks
                    .iter()
                    .map(|b| b.text.split('\n').map(String::from).collect())
                    .collect(),
            )
        })
        .unwrap_or_default();
    // Steps not started yet are drawn as waiting cards, so the whole tree or chain shows.
    let mut steps = s.steps.clone();
    if running {
        let n = block_items.len();
        let plan: Vec<(StepKind, Vec<usize>)> = match s.method {
            Method::Hierarchical => (0..n)
                .map(|b| (StepKind::Block, vec![b]))
                .chain((n > 1).then(|| (StepKind::Merge, (0..n).collect())))
                .collect(),
            Method::Recurrent => (0..n)
                .map(|b| {
                    (
                        if b == 0 {
                            StepKind::Block
                        } else {
                            StepKind::Update
                        },
                        vec![b],
                    )
                })
                .collect(),
        };
        for (kind, blocks) in plan.into_iter().skip(steps.len()) {
            steps.push(StepView {
                kind,
                blocks,
                prompt: String::new(),
                prompt_tokens: 0,
                tokens: Vec::new(),
                output_tokens: 0,
                source: super::StepSource::Live,
                text: String::new(),
                done: false,
                ms: 0.0,
                started: s.started,
            });
        }
    }
    let waiting = s.steps.len();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| match s.method {
            Method::Hierarchical => {
                // The block summaries side by side, the merge below them.
                let blocks: Vec<usize> = (0..steps.len())
                    .filter(|&i| steps[i].kind != StepKind::Merge)
                    .collect();
                let cols = blocks.len().clamp(1, 3);
                for row in blocks.chunks(cols) {
                    ui.columns(cols, |uis| {
                        for (c, &i) in row.iter().enumerate() {
                            step_card(
                                &mut uis[c],
                                i,
                                &steps[i],
                                &block_items,
                                running,
                                i >= waiting,
                                settings,
                                panel,
                                cmds,
                            );
                        }
                    });
                }
                for (i, st) in steps
                    .iter()
                    .enumerate()
                    .filter(|(_, st)| st.kind == StepKind::Merge)
                {
                    ui.vertical_centered(|ui| ui.label("merge"));
                    step_card(
                        ui,
                        i,
                        st,
                        &block_items,
                        running,
                        i >= waiting,
                        settings,
                        panel,
                        cmds,
                    );
                }
            }
            Method::Recurrent => {
                for (i, st) in steps.iter().enumerate() {
                    if i > 0 {
                        ui.vertical_centered(|ui| ui.label("then"));
                    }
                    step_card(
                        ui,
                        i,
                        st,
                        &block_items,
                        running,
                        i >= waiting,
                        settings,
                        panel,
                        cmds,
                    );
                }
            }
        });
    if let Some(r) = &s.result {
        ui.separator();
        ui.strong("Final summary");
        ui.label(&r.final_summary);
    }
}
