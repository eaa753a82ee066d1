//! The Train tab's drawing. Left: where the cases and summaries come from, the model,
//! the settings, the output folder, Start / Cancel. Right: the run's progress with an
//! ETA, the loss curve, the validation metrics per epoch (best marked) and "Use this
//! adapter". Draws from a read-only workbench; asks for everything with a [`Command`].

use eframe::egui;
use egui_plot::{Legend, Line, Plot, Points, VLine};

use super::actions::{blocker, project_summaries, TrainCmd};
use super::state::{
    fmt_count, fmt_secs, out_parent, out_prefix, plural, split_cases, Phase, TrainPanel, TrainRun,
    TRAIN_SPLIT, VAL_SPLIT,
};
use crate::app::notices::{notice_ui, Level};
use crate::app::{Command, ModelStatus, Settings, Workbench};
use crate::data::Case;
use crate::metrics::metric_names;
use crate::preset::Preset;
use crate::train::{BestEpoch, LossOn, NegativePick, TrainSettings};

/// What full fine-tuning does and costs (the Train tab's hover).
const FULL_HOVER: &str = "train every weight (projections, norms, embedding, output matrix) in f32; the best epoch is saved as a whole model (model.gguf, or model.safetensors with the base's config and tokenizer) that Model & settings loads as the model. Memory: about 16 bytes per parameter (2.2 GB for the default 135M model) plus activations; disk: 4 bytes per parameter";

/// The projections LoRA can target: (Hugging Face name, label).
pub const TARGETS: [(&str, &str); 7] = [
    ("q_proj", "q"),
    ("k_proj", "k"),
    ("v_proj", "v"),
    ("o_proj", "o"),
    ("gate_proj", "gate"),
    ("up_proj", "up"),
    ("down_proj", "down"),
];

/// The Train tab.
pub fn train_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    egui::Panel::left("train_form_panel")
        .resizable(true)
        .default_size(450.0)
        .min_size(320.0)
        .frame(egui::Frame::NONE.inner_margin(egui::Margin {
            right: 8,
            ..Default::default()
        }))
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("train_form")
                .auto_shrink([false, false])
                .show(ui, |ui| form_ui(ui, wb, settings, panel, cmds));
        });
    egui::CentralPanel::default()
        .frame(egui::Frame::NONE.inner_margin(egui::Margin {
            left: 8,
            ..Default::default()
        }))
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("train_run")
                .auto_shrink([false, false])
                .show(ui, |ui| run_ui(ui, wb, settings, panel, cmds));
        });
}

fn warn(ui: &mut egui::Ui, text: impl Into<String>) {
    notice_ui(ui, Level::Warning, text);
}

fn error(ui: &mut egui::Ui, text: impl Into<String>) {
    notice_ui(ui, Level::Error, text);
}

/// Where the cases come from (and the split offer when there is none).
fn data_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    ui.heading("Cases");
    let Some(data) = &wb.data else {
        ui.label("No dataset is open. Open one (File > Open dataset folder); training uses its prepared `train` and `val` splits.");
        return;
    };
    let split = split_cases(&data.cases);
    let t = &settings.train;
    let take = |n: usize, max: Option<usize>| max.map_or(n, |m| m.min(n));
    ui.label(format!(
        "From {}: the `{TRAIN_SPLIT}` split trains, the `{VAL_SPLIT}` split validates each epoch.",
        data.dir.display()
    ));
    if !split.labels.is_empty() {
        let labels: Vec<String> = split
            .labels
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let mut s = format!("Splits: {}", labels.join(", "));
        if split.unlabelled > 0 {
            s.push_str(&format!(", no split {}", split.unlabelled));
        }
        ui.label(s);
    }
    if split.train.is_empty() {
        if split.labels.is_empty() {
            warn(
                ui,
                format!(
                    "These {} cases have no split (a raw folder is prepared on opening without one).",
                    data.cases.len()
                ),
            );
        } else {
            warn(ui, format!("No case has the split `{TRAIN_SPLIT}`."));
        }
        ui.label("Split them here (kept in this window until the folder is opened again):");
        ui.horizontal(|ui| {
            let l = ui.label("Split");
            ui.add(egui::TextEdit::singleline(&mut panel.split_spec).desired_width(200.0))
                .labelled_by(l.id);
            let l = ui.label("seed");
            ui.add(egui::DragValue::new(&mut panel.split_seed))
                .labelled_by(l.id);
            if ui.button("Split the cases").clicked() {
                cmds.push(Command::Train(TrainCmd::AssignSplit));
            }
        });
        ui.weak("Or prepare a folder with a split and open it: trsr prepare --input DIR --out PREP --split train=0.8,val=0.1,test=0.1");
        return;
    }
    ui.label(format!(
        "Training on {} of {} `{TRAIN_SPLIT}` cases, validating on {} of {} `{VAL_SPLIT}` cases.",
        take(split.train.len(), t.max_train_cases),
        split.train.len(),
        take(split.val.len(), t.max_val_cases),
        split.val.len(),
    ));
    if split.val.is_empty() {
        warn(
            ui,
            format!("No `{VAL_SPLIT}` cases: no validation; the last epoch is kept."),
        );
    }
}

/// Which summaries the prompts hold.
fn summaries_ui(ui: &mut egui::Ui, wb: &Workbench, settings: &Settings) {
    ui.heading("Summaries");
    let r = &settings.recommend;
    if r.full_history {
        ui.label("The prompts hold the full history in place of a summary (Ranking options).");
        return;
    }
    if !r.use_summary {
        ui.label("The summary section is off (Ranking tab, \"summary\"): prompts hold recent items only.");
        return;
    }
    let Some(s) = project_summaries(wb, settings.method.name()) else {
        ui.label("No project is open: no summaries; the prompts hold recent items only (no summary section).");
        ui.weak("Open a project with curated summaries (File > Open or new project) to train with them.");
        return;
    };
    let Some(data) = &wb.data else { return };
    let split = split_cases(&data.cases);
    let t = &settings.train;
    let count = |cases: &[&Case], max: Option<usize>| {
        let cases = &cases[..max.map_or(cases.len(), |m| m.min(cases.len()))];
        (
            cases.iter().filter(|c| s.map.contains_key(&c.case)).count(),
            cases.len(),
        )
    };
    let (tw, tn) = count(&split.train, t.max_train_cases);
    let (vw, vn) = count(&split.val, t.max_val_cases);
    ui.label(format!(
        "The project's final summaries (curated text where edited; {} preferred): {tw} of {tn} training and {vw} of {vn} validation cases have one.",
        settings.method.name()
    ));
    if s.rejected > 0 {
        ui.label(if s.rejected == 1 {
            "1 rejected summary is left out.".to_string()
        } else {
            format!("{} rejected summaries are left out.", s.rejected)
        });
    }
    if tw < tn || vw < vn {
        ui.weak("Cases without one are trained and validated without the summary section.");
    }
}

/// The model training starts from.
fn model_ui(ui: &mut egui::Ui, wb: &Workbench, full: bool, cmds: &mut Vec<Command>) {
    ui.heading("Model");
    match &wb.model {
        ModelStatus::Loaded(m) => match wb.loaded_spec.as_ref().and_then(|s| s.adapter.as_ref()) {
            None => {
                ui.label(format!(
                    "Base: {} on {} ({}; the base stays as it is).",
                    m.identity.name,
                    m.device,
                    if full {
                        "a copy of every weight is trained"
                    } else {
                        "LoRA weights are trained on it"
                    }
                ));
            }
            Some(a) => {
                warn(
                        ui,
                        format!(
                            "The loaded model ({}) carries the adapter {}: training starts from the base model.",
                            m.identity.name,
                            a.display()
                        ),
                    );
                if ui.button("Reload the base model").clicked() {
                    cmds.push(Command::Train(TrainCmd::ReloadBase));
                }
            }
        },
        ModelStatus::Loading(s) => {
            ui.label(format!("Loading {}...", s.model));
        }
        ModelStatus::None | ModelStatus::Failed(_) => {
            ui.label("No model is loaded: load one under Model & settings.");
        }
    }
}

/// An optional case limit: a checkbox "all" and a number.
fn limit_ui(ui: &mut egui::Ui, label: &str, v: &mut Option<usize>) {
    ui.horizontal(|ui| {
        let mut all = v.is_none();
        if ui.checkbox(&mut all, "all").changed() {
            *v = if all { None } else { Some(100) };
        }
        if let Some(n) = v {
            let l = ui.label("at most");
            ui.add(egui::DragValue::new(n).range(1..=1_000_000))
                .labelled_by(l.id)
                .on_hover_text(label.to_string());
        }
    });
}

/// The training settings.
fn settings_ui(ui: &mut egui::Ui, settings: &mut Settings, panel: &mut TrainPanel) {
    ui.heading("Settings");
    let t = &mut settings.train;
    egui::Grid::new("train_grid")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            ui.label("Fine-tuning");
            ui.horizontal(|ui| {
                ui.radio_value(&mut t.full, false, "LoRA adapter")
                    .on_hover_text("train low-rank updates of the chosen projections; the result is a PEFT adapter folder");
                ui.radio_value(&mut t.full, true, "full (every weight)")
                    .on_hover_text(FULL_HOVER);
            });
            ui.end_row();
            let l = ui.label("Epochs");
            ui.add(egui::DragValue::new(&mut t.epochs).range(1..=1000))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Batch size");
            ui.add(egui::DragValue::new(&mut t.batch_size).range(1..=1024))
                .labelled_by(l.id)
                .on_hover_text("examples per micro-batch");
            ui.end_row();
            let l = ui.label("Gradient accumulation");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut t.grad_accum).range(1..=1024))
                    .labelled_by(l.id)
                    .on_hover_text("micro-batches per optimiser step");
                ui.weak(format!(
                    "= {} per step",
                    plural(t.batch_size * t.grad_accum, "example")
                ));
            });
            ui.end_row();
            let l = ui.label("Learning rate");
            ui.add(
                egui::Slider::new(&mut t.lr, 1e-6..=1e-2)
                    .logarithmic(true)
                    .custom_formatter(|v, _| format!("{v:.1e}"))
                    .custom_parser(|s| s.trim().parse().ok()),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Warmup (fraction of steps)");
            ui.add(egui::Slider::new(&mut t.warmup, 0.0..=0.9).fixed_decimals(2))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Weight decay");
            ui.add(
                egui::DragValue::new(&mut t.weight_decay)
                    .range(0.0..=1.0)
                    .speed(1e-4)
                    .custom_formatter(|v, _| format!("{v:.1e}"))
                    .custom_parser(|s| s.trim().parse().ok()),
            )
            .labelled_by(l.id);
            ui.end_row();
            let lora = !t.full;
            let l = ui.label("LoRA r");
            ui.add_enabled(lora, egui::DragValue::new(&mut t.lora_r).range(1..=512))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("LoRA alpha");
            ui.add_enabled(
                lora,
                egui::DragValue::new(&mut t.lora_alpha)
                    .range(0.5..=1024.0)
                    .speed(0.5),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("LoRA dropout");
            ui.add_enabled(
                lora,
                egui::Slider::new(&mut t.lora_dropout, 0.0..=0.5).fixed_decimals(2),
            )
            .labelled_by(l.id);
            ui.end_row();
            ui.label("Base weights");
            ui.add_enabled_ui(lora, |ui| {
                use crate::train::TrainDtype;
                ui.horizontal(|ui| {
                    ui.radio_value(&mut t.dtype, TrainDtype::F32, "f32");
                    ui.radio_value(&mut t.dtype, TrainDtype::Bf16, "bf16").on_hover_text(
                        "the frozen base weights in bf16: half their memory, for GPUs with \
                         bf16 (compute capability 8.0+); slow on the CPU. LoRA weights, \
                         optimiser and loss stay f32",
                    );
                });
            });
            if t.full {
                // A full fine-tuning trains in f32.
                t.dtype = crate::train::TrainDtype::F32;
            }
            ui.end_row();
            ui.label("Target projections");
            ui.add_enabled_ui(lora, |ui| {
                ui.horizontal(|ui| {
                    for (name, label) in TARGETS {
                        let mut on = t.targets.iter().any(|x| x == name);
                        if ui.checkbox(&mut on, label).on_hover_text(name).changed() {
                            t.targets.retain(|x| x != name);
                            if on {
                                t.targets.push(name.to_string());
                                let order =
                                    |n: &String| TARGETS.iter().position(|(t, _)| t == n);
                                t.targets.sort_by_key(order);
                            }
                        }
                    }
                });
            });
            ui.end_row();
            ui.label("Loss on");
            ui.horizontal(|ui| {
                ui.radio_value(&mut t.loss_on, LossOn::Answer, "answer token")
                    .on_hover_text("the loss covers the yes/no answer only");
                ui.radio_value(&mut t.loss_on, LossOn::Text, "whole text")
                    .on_hover_text("the loss covers prompt and answer (the reference code)");
            });
            ui.end_row();
            ui.label("Best epoch by");
            ui.horizontal(|ui| {
                ui.radio_value(&mut t.best_by, BestEpoch::FirstRecall, "recall at the first K")
                    .on_hover_text("the highest validation recall at the first cut-off (ties: MRR there)");
                ui.radio_value(&mut t.best_by, BestEpoch::RecallSum, "Recall@3+@5+@10")
                    .on_hover_text("the highest sum of Recall@3, @5 and @10, the earlier epoch on a tie (the reference's test.py)");
            });
            ui.end_row();
            ui.label("Negative");
            ui.horizontal(|ui| {
                ui.radio_value(&mut t.negative, NegativePick::Random, "random")
                    .on_hover_text("pair each target with one of its negatives drawn with the seed");
                ui.radio_value(&mut t.negative, NegativePick::First, "first")
                    .on_hover_text("pair each target with its first negative (the reference's dataset_gen.py)");
            });
            ui.end_row();
            ui.label("Long texts");
            ui.horizontal(|ui| {
                let mut cut = t.truncate_tokens.is_some();
                if ui
                    .checkbox(&mut cut, "cut at")
                    .on_hover_text("cut training texts longer than this many tokens (counted and reported) instead of refusing them; the reference cuts at 2,048")
                    .changed()
                {
                    t.truncate_tokens = cut.then_some(2048);
                }
                if let Some(n) = &mut t.truncate_tokens {
                    let l = ui.label("tokens");
                    ui.add(egui::DragValue::new(n).range(1..=1_000_000))
                        .labelled_by(l.id);
                } else {
                    ui.weak("no: a text over the context is an error");
                }
            });
            ui.end_row();
            ui.label("Training cases");
            limit_ui(ui, "training cases", &mut t.max_train_cases);
            ui.end_row();
            ui.label("Validation cases");
            limit_ui(ui, "validation cases", &mut t.max_val_cases);
            ui.end_row();
            let l = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut t.seed)).labelled_by(l.id);
            ui.end_row();
            ui.label("Validation");
            ui.checkbox(&mut t.validate_before, "also before training");
            ui.end_row();
            let l = ui.label("Metrics at K");
            let text = panel.ks_text.get_or_insert_with(|| {
                t.ks.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let r = ui
                .add(egui::TextEdit::singleline(text).desired_width(100.0))
                .labelled_by(l.id)
                .on_hover_text("cut-offs; the best epoch has the highest recall at the first");
            if r.changed() {
                let parsed: Result<Vec<usize>, _> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect();
                if let Ok(ks) = parsed {
                    t.ks = ks;
                } else {
                    // Shown below as a settings problem.
                    t.ks = Vec::new();
                }
            }
            ui.end_row();
        });
    ui.horizontal(|ui| {
        if ui
            .button("Paper's settings")
            .on_hover_text("5 epochs, batch 4 x 4, lr 1e-4, warmup 0.1, LoRA r 8 / alpha 16 / dropout 0.05 on q, k, v, o")
            .clicked()
        {
            settings.train = TrainSettings::default();
            panel.ks_text = None;
        }
        if ui
            .button("Reference settings")
            .on_hover_text("LLM-TRSR's train.py: batch 8 x 8, no warmup (linear decay), loss on the whole text, the first negative, the best epoch by Recall@3+@5+@10, texts cut at 2,048 tokens (the rest as the paper's)")
            .clicked()
        {
            settings.train = TrainSettings::for_preset(Preset::Reference);
            panel.ks_text = None;
        }
    });
    ui.weak(format!(
        "Preset {} (Model & settings): switching it there also switches batch, warmup, loss, best epoch, negative and long texts here.",
        settings.preset.name()
    ));
    if let Err(e) = settings.train.validate() {
        error(ui, format!("{e:#}"));
    }
}

fn form_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    let running = wb.train.as_ref().is_some_and(|t| t.is_running());
    ui.add_enabled_ui(!running, |ui| {
        data_ui(ui, wb, settings, panel, cmds);
        ui.separator();
        summaries_ui(ui, wb, settings);
        ui.separator();
        model_ui(ui, wb, settings.train.full, cmds);
        ui.separator();
        settings_ui(ui, settings, panel);
    });
}

/// The output folder and Start / Cancel.
fn start_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    let running = wb.train.as_ref().is_some_and(|t| t.is_running());
    ui.add_enabled_ui(!running, |ui| {
        ui.horizontal(|ui| {
            let l = ui.label("Output folder");
            let full = settings.train.full;
            let leaf = format!("{}-<date-time>", out_prefix(full));
            let hint = wb
                .data
                .as_ref()
                .map(|d| d.dir.join(out_parent(full)).join(&leaf).display().to_string())
                .unwrap_or_else(|| format!("<dataset>/{}/{leaf}", out_parent(full)));
            ui.add(
                egui::TextEdit::singleline(&mut panel.out_dir)
                    .hint_text(hint)
                    .desired_width((ui.available_width() - 90.0).max(120.0)),
            )
            .labelled_by(l.id)
            .on_hover_text(if full {
                "the best epoch's model (model.gguf or model.safetensors) and train_log.json; empty: a new folder under the dataset's models/"
            } else {
                "the adapter (PEFT format), checkpoints/ per epoch and train_log.json; empty: a new folder under the dataset's adapters/"
            });
            if ui.button("Browse...").clicked() {
                cmds.push(Command::Train(TrainCmd::PickOutDir));
            }
        });
    });
    ui.horizontal_wrapped(|ui| {
        let why = blocker(wb, settings);
        if ui
            .add_enabled(why.is_none(), egui::Button::new("Start training"))
            .clicked()
        {
            cmds.push(Command::Train(TrainCmd::Start));
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel training"))
            .on_hover_text(format!(
                "Stops at the next example; finished epochs are kept ({} cancels every job)",
                crate::app::command::shortcut_text(ui.ctx(), Command::Cancel)
            ))
            .clicked()
        {
            cmds.push(Command::Train(TrainCmd::Cancel));
        }
        if let Some(w) = why.filter(|_| !running) {
            if settings.train.validate().is_err() {
                // The problem is shown in red under the settings.
                ui.weak("fix the settings on the left");
            } else {
                ui.weak(w);
            }
        }
    });
    if let Some(e) = &panel.error {
        error(ui, e.clone());
    }
}

/// The run: progress, loss curve, validation.
fn run_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    ui.heading("Run");
    start_ui(ui, wb, settings, panel, cmds);
    ui.separator();
    let Some(run) = &wb.train else {
        ui.weak("No training run yet: set it up and press Start training.");
        if settings.train.full {
            ui.weak("Full fine-tuning needs about 16 bytes per parameter (2.2 GB for the default 135M model) plus activations; on 2 CPU cores one example takes tens of seconds, and each epoch writes and reloads the whole model (4 bytes per parameter) to validate it.");
        } else {
            ui.weak("On a CPU, one training example of the default 135M model takes a few seconds, one validation case about as long.");
        }
        return;
    };
    ui.label(format!("Output: {}", run.out.display()));
    if run.is_running() {
        progress_ui(ui, run);
    } else {
        outcome_ui(ui, run);
    }
    build_ui(ui, run);
    if run.adapter_ready() {
        adapter_ui(ui, wb, run, cmds);
    }
    ui.separator();
    loss_plot_ui(ui, run);
    ui.separator();
    validation_ui(ui, run);
}

/// A running run: what it does, a progress bar with the ETA.
fn progress_ui(ui: &mut egui::Ui, run: &TrainRun) {
    let eta = run
        .eta_secs()
        .map(|s| format!(" · ETA {}", fmt_secs(s)))
        .unwrap_or_else(|| " · ETA: estimating".into());
    ui.horizontal(|ui| {
        ui.spinner();
        ui.label(run.phase_text());
    });
    ui.add(
        egui::ProgressBar::new(run.fraction())
            .show_percentage()
            .text(format!(
                "{:.0}% · {} elapsed{eta}",
                run.fraction() * 100.0,
                fmt_secs(run.started.elapsed().as_secs_f64())
            )),
    );
    ui.ctx()
        .request_repaint_after(std::time::Duration::from_millis(500));
}

/// An ended run: how it ended, where its output is.
fn outcome_ui(ui: &mut egui::Ui, run: &TrainRun) {
    let took = run
        .finished_at
        .map(|t| fmt_secs(t.duration_since(run.started).as_secs_f64()))
        .unwrap_or_default();
    match run.phase {
        Phase::Finished => {
            ui.label(format!("Finished in {took}."));
        }
        Phase::Cancelled => {
            warn(ui, format!("Cancelled after {took}."));
            let interrupted = run.out.join("checkpoints").join("interrupted");
            let mut s = if run.settings.full {
                format!(
                    "The best finished epoch's model is in {}",
                    run.out.display()
                )
            } else {
                format!(
                    "Finished epochs' checkpoints are in {}",
                    run.out.join("checkpoints").display()
                )
            };
            if run.report.as_ref().is_some_and(|r| r.cancelled) {
                s.push_str(&format!(
                    "; the weights at the cancel in {}",
                    interrupted.display()
                ));
            }
            ui.label(s + ".");
        }
        Phase::Failed => {
            error(
                ui,
                format!(
                    "Training failed: {}",
                    run.error.as_deref().unwrap_or("unknown error")
                ),
            );
        }
        _ => {}
    }
    ui.add(egui::ProgressBar::new(run.fraction()).show_percentage());
}

/// What the run trains on, and its last optimiser step.
fn build_ui(ui: &mut egui::Ui, run: &TrainRun) {
    if let Some(b) = &run.build {
        ui.label(format!(
            "{} from {} ({} with a summary, {} without; longest {} tokens) · {} · {} trainable parameters",
            plural(b.examples, "example"),
            plural(b.cases, "case"),
            b.with_summary,
            b.without_summary,
            b.longest_tokens,
            plural(run.steps_total, "optimiser step"),
            fmt_count(run.trainable)
        ));
        if b.no_negative > 0 {
            warn(
                ui,
                format!("{} cases without negatives were left out.", b.no_negative),
            );
        }
    }
    if let Some((step, loss, lr)) = run.last_step {
        ui.label(format!(
            "Step {step}/{}: loss {loss:.4}, learning rate {lr:.2e}",
            run.steps_total
        ));
    }
}

/// The best adapter (or full model) so far and "Use this adapter" ("Use this model").
fn adapter_ui(ui: &mut egui::Ui, wb: &Workbench, run: &TrainRun, cmds: &mut Vec<Command>) {
    if run.settings.full {
        return model_out_ui(ui, wb, run, cmds);
    }
    ui.horizontal_wrapped(|ui| {
        let e = run.best_epoch.unwrap_or_default();
        ui.label(format!("Adapter (epoch {e}, best): {}", run.out.display()));
    });
    let in_use = wb
        .loaded_spec
        .as_ref()
        .and_then(|s| s.adapter.as_ref())
        .is_some_and(|a| a == &run.out);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(
                !run.is_running() && !in_use,
                egui::Button::new("Use this adapter"),
            )
            .on_hover_text("Reload the model with this adapter: the Ranking tab (and summaries) then use the fine-tuned model")
            .clicked()
        {
            cmds.push(Command::Train(TrainCmd::UseAdapter(run.out.clone())));
        }
        if in_use {
            ui.weak("the loaded model uses this adapter");
        } else if run.is_running() {
            ui.weak("(when the run has ended)");
        }
    });
}

/// A full fine-tuning's model and "Use this model".
fn model_out_ui(ui: &mut egui::Ui, wb: &Workbench, run: &TrainRun, cmds: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        let e = run.best_epoch.unwrap_or_default();
        ui.label(format!("Model (epoch {e}, best): {}", run.out.display()));
    });
    let out = run.out.display().to_string();
    let in_use = wb
        .loaded_spec
        .as_ref()
        .is_some_and(|s| s.model == out && s.adapter.is_none());
    ui.horizontal(|ui| {
        if ui
            .add_enabled(
                !run.is_running() && !in_use,
                egui::Button::new("Use this model"),
            )
            .on_hover_text("Load this folder as the model (Model & settings): the Ranking tab (and summaries) then use the fine-tuned model")
            .clicked()
        {
            cmds.push(Command::Train(TrainCmd::UseModel(run.out.clone())));
        }
        if in_use {
            ui.weak("the loaded model is this one");
        } else if run.is_running() {
            ui.weak("(when the run has ended)");
        }
    });
}

/// The loss per example and per optimiser step, epochs marked.
fn loss_plot_ui(ui: &mut egui::Ui, run: &TrainRun) {
    ui.strong("Training loss");
    let per_example = run.example_losses.clone();
    let per_step = run.step_losses.clone();
    let epoch_ends: Vec<f64> = (1..run.settings.epochs)
        .map(|e| (e * run.examples_per_epoch) as f64 + 0.5)
        .filter(|x| *x < run.examples_done as f64)
        .collect();
    Plot::new("train_loss_plot")
        .height(220.0)
        .legend(Legend::default().position(egui_plot::Corner::LeftBottom))
        .x_axis_label("example")
        .y_axis_label("loss")
        .include_x(0.0)
        .include_x((run.examples_per_epoch * run.settings.epochs) as f64 + 0.5)
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |p| {
            let step_color = egui::Color32::from_rgb(90, 160, 240);
            p.line(
                Line::new("per step (mean)", per_step.clone())
                    .width(2.0)
                    .color(step_color),
            );
            p.points(
                Points::new("per step (mean)", per_step)
                    .radius(3.5)
                    .color(step_color),
            );
            // On top: with one example per step both mark the same place.
            p.points(
                Points::new("per example", per_example)
                    .radius(2.0)
                    .color(egui::Color32::from_rgb(240, 150, 80)),
            );
            for x in epoch_ends {
                p.vline(VLine::new("epoch end", x).color(egui::Color32::GRAY));
            }
        });
}

/// The validation metrics per epoch: a table (best marked) and a plot.
fn validation_ui(ui: &mut egui::Ui, run: &TrainRun) {
    match run.validations.first() {
        Some((_, m)) => ui.strong(format!("Validation ({})", plural(m.cases, "case"))),
        None => ui.strong("Validation"),
    };
    if run.val_cases == 0 && run.build.is_some() {
        ui.weak("No validation cases: the last epoch is kept.");
    } else if run.validations.is_empty() {
        ui.weak("Metrics appear after each epoch (and before training when chosen).");
    }
    if run.validations.is_empty() {
        return;
    }
    validation_table_ui(ui, run);
    validation_plot_ui(ui, run);
}

fn validation_table_ui(ui: &mut egui::Ui, run: &TrainRun) {
    let rows = run.rows();
    let names: Vec<String> = metric_names(&run.settings.ks)
        .into_iter()
        .filter(|n| n != "auc")
        .collect();
    egui::ScrollArea::horizontal()
        .id_salt("train_val_table")
        .show(ui, |ui| {
            egui::Grid::new("train_val_grid")
                .striped(true)
                .num_columns(names.len() + 1)
                .show(ui, |ui| {
                    ui.strong("");
                    for n in &names {
                        ui.strong(n);
                    }
                    ui.end_row();
                    for (label, m, best) in &rows {
                        if *best {
                            ui.strong(format!("{label} (best)"));
                        } else {
                            ui.label(label);
                        }
                        for n in &names {
                            let v = m
                                .metrics
                                .get(n)
                                .map(|v| format!("{v:.3}"))
                                .unwrap_or_default();
                            if *best {
                                ui.strong(v);
                            } else {
                                ui.label(v);
                            }
                        }
                        ui.end_row();
                    }
                });
        });
}

/// Recall, MRR and NDCG at the first K per epoch, the best epoch marked.
fn validation_plot_ui(ui: &mut egui::Ui, run: &TrainRun) {
    let k = run.settings.ks.first().copied().unwrap_or(5);
    let series: Vec<(String, egui::Color32, Vec<[f64; 2]>)> = [
        ("recall", egui::Color32::from_rgb(90, 160, 240)),
        ("mrr", egui::Color32::from_rgb(230, 110, 110)),
        ("ndcg", egui::Color32::from_rgb(110, 200, 130)),
    ]
    .iter()
    .map(|(m, color)| {
        let name = format!("{m}@{k}");
        let pts = run
            .validations
            .iter()
            .filter_map(|(e, s)| Some([*e as f64, *s.metrics.get(&name)?]))
            .collect();
        (name, *color, pts)
    })
    .collect();
    let best = run.best_epoch.filter(|_| run.validations.len() > 1);
    Plot::new("train_val_plot")
        .height(180.0)
        .legend(Legend::default().position(egui_plot::Corner::RightBottom))
        .x_axis_label("epoch (0: before training)")
        .include_x(-0.25)
        .include_x(run.settings.epochs as f64 + 0.25)
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |p| {
            for (name, color, pts) in series {
                // Line and points share name and colour: one legend entry.
                p.line(Line::new(name.clone(), pts.clone()).color(color));
                p.points(Points::new(name, pts).radius(3.0).color(color));
            }
            if let Some(e) = best {
                p.vline(
                    VLine::new("best epoch", e as f64).color(egui::Color32::from_rgb(230, 180, 40)),
                );
            }
        });
}
