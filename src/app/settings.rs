//! Persisted settings (RON) and the "Model & settings" panel.

use crate::app::notices::{notice_ui, Level};
use eframe::egui;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Command, ModelStatus, TaskOutput, Workbench};
use crate::data::ItemTextTemplate;
use crate::lm::SamplingParams;
use crate::preset::{Preset, ReferenceWording};
use crate::segment::BlockParams;
use crate::worker::jobs::{Method, RecommendOptions};
use crate::worker::ModelSpec;

/// The block controls as the user sets them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockControls {
    /// Cut by token budget instead of item count.
    pub by_tokens: bool,
    pub size: usize,
    pub max_blocks: usize,
    pub budget_tokens: usize,
}

impl Default for BlockControls {
    fn default() -> Self {
        Self {
            by_tokens: false,
            size: 5,
            max_blocks: 5,
            budget_tokens: 256,
        }
    }
}

impl BlockControls {
    pub fn params(&self) -> BlockParams {
        if self.by_tokens {
            BlockParams::ByTokens {
                budget_tokens: self.budget_tokens.max(1),
                max_blocks: self.max_blocks.max(1),
            }
        } else {
            BlockParams::ByCount {
                size: self.size.max(1),
                max_blocks: self.max_blocks.max(1),
            }
        }
    }
}

/// Everything that persists between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub model: ModelSpec,
    pub sampling: SamplingParams,
    pub blocks: BlockControls,
    pub text_template: ItemTextTemplate,
    pub method: Method,
    pub recommend: RecommendOptions,
    /// Prompt templates (the pipeline's; news wording by default).
    pub templates: crate::prompt::Templates,
    pub recent_dirs: Vec<PathBuf>,
    pub dark: bool,
    pub color_by_prob: bool,
    pub batch_cases: usize,
    pub batch_summarize: bool,
    /// LoRA fine-tuning settings (the Train tab).
    pub train: crate::train::TrainSettings,
    /// `workbench` (our prompts) or `reference` (the reference code's, byte for byte).
    pub preset: Preset,
    /// Which dataset's reference wording the `reference` preset uses.
    pub reference_wording: ReferenceWording,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: ModelSpec::default(),
            sampling: SamplingParams::default(),
            blocks: BlockControls::default(),
            text_template: ItemTextTemplate::default(),
            method: Method::Hierarchical,
            recommend: RecommendOptions::default(),
            templates: crate::prompt::Templates::news(),
            recent_dirs: Vec::new(),
            dark: true,
            color_by_prob: false,
            batch_cases: 20,
            batch_summarize: false,
            train: crate::train::TrainSettings::default(),
            preset: Preset::Workbench,
            reference_wording: ReferenceWording::Mind,
        }
    }
}

impl Settings {
    /// Puts the preset's templates, item text and sampling in place (the workbench
    /// preset's templates follow the reference wording's dataset kind).
    pub fn apply_preset(&mut self) {
        match self.preset {
            Preset::Reference => {
                self.templates = crate::prompt::Templates::reference(self.reference_wording);
                self.text_template = ItemTextTemplate::reference(self.reference_wording);
            }
            Preset::Workbench => {
                let (templates, fields) = match self.reference_wording {
                    ReferenceWording::Mind => {
                        (crate::prompt::Templates::news(), crate::data::MIND_FIELDS)
                    }
                    ReferenceWording::Amazon => (
                        crate::prompt::Templates::products(),
                        crate::data::AMAZON_M2_FIELDS,
                    ),
                };
                self.templates = templates;
                if self.text_template.reference.is_some() {
                    self.text_template = ItemTextTemplate::with_fields(fields);
                }
            }
        }
        self.sampling = self.preset.sampling();
        self.recommend.truncate_tokens = self.preset.score_cut();
    }

    /// The model to load: the Model panel's choice with the templates' answer words and
    /// answer-token rule (the vocabulary rule under the reference form), as the CLI
    /// loads it.
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            answer_by_vocab: self.templates.answer_by_vocab(),
            yes_word: self.templates.yes.clone(),
            no_word: self.templates.no.clone(),
            ..self.model.clone()
        }
    }

    /// The default settings file: `<config dir>/trsr/settings.ron`.
    pub fn default_path() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("trsr").join("settings.ron"))
    }

    /// Reads settings; a missing or unreadable file gives the defaults (and a note on stderr).
    pub fn load_or_default(path: &Path) -> Self {
        match std::fs::read_to_string(path) {
            Ok(s) => ron::from_str(&s).unwrap_or_else(|e| {
                eprintln!("note: ignoring settings {}: {e}", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default()).unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, self.to_ron()).with_context(|| format!("writing {}", path.display()))
    }

    pub fn apply_theme(&self, ctx: &egui::Context) {
        ctx.set_theme(if self.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
    }

    /// Remembers a dataset folder at the top of the recent list (10 kept).
    pub fn remember_dir(&mut self, dir: &Path) {
        self.recent_dirs.retain(|d| d != dir);
        self.recent_dirs.insert(0, dir.to_path_buf());
        self.recent_dirs.truncate(10);
    }
}

/// The model panel's own state.
#[derive(Default)]
pub struct ModelPanel {
    /// A server connection test is running (its answer comes back as a background task).
    server_testing: bool,
    /// The last test's answer: the served models, or the one-line error.
    server_result: Option<Result<Vec<String>, String>>,
    /// Where the settings are written (`--settings FILE` or the default); `None`: memory only.
    pub settings_path: Option<PathBuf>,
}

impl ModelPanel {
    /// Starts a connection test of `url` as a background task (the window stays live).
    fn test_server(&mut self, wb: &Workbench, url: String, api_key_env: Option<String>) {
        self.server_result = None;
        match wb.tasks.spawn("server-test", move || {
            TaskOutput::ServedModels(
                crate::worker::served_models(&url, api_key_env.as_deref())
                    .map_err(|e| format!("{e:#}")),
            )
        }) {
            Ok(_) => self.server_testing = true,
            Err(e) => self.server_result = Some(Err(format!("could not start the test: {e}"))),
        }
    }

    /// The answer of a connection test.
    pub fn server_tested(&mut self, result: Result<Vec<String>, String>) {
        self.server_testing = false;
        self.server_result = Some(result);
    }
}

/// The rows for a server model (`http(s)://…/v1`): served model, API-key variable, and a
/// connection test that lists the served models.
/// How a model spec picks the answer tokens, in words.
fn answer_rule(spec: &ModelSpec) -> String {
    let rule = if spec.answer_by_vocab {
        "the vocabulary entries"
    } else {
        "the first tokens of"
    };
    format!("{rule} `{}` / `{}`", spec.yes_word, spec.no_word)
}

fn server_rows(ui: &mut egui::Ui, wb: &Workbench, settings: &mut Settings, panel: &mut ModelPanel) {
    let l = ui.label("Served model");
    ui.horizontal(|ui| {
        let mut name = settings.model.server_model.clone().unwrap_or_default();
        let served: Vec<String> = match &panel.server_result {
            Some(Ok(list)) => list.clone(),
            _ => Vec::new(),
        };
        if served.is_empty() {
            if ui
                .add(
                    egui::TextEdit::singleline(&mut name)
                        .hint_text("the server's first")
                        .desired_width(240.0),
                )
                .labelled_by(l.id)
                .changed()
            {
                settings.model.server_model =
                    (!name.trim().is_empty()).then(|| name.trim().to_string());
            }
        } else {
            egui::ComboBox::from_id_salt("served_model")
                .selected_text(if name.is_empty() {
                    "the server's first".to_string()
                } else {
                    name.clone()
                })
                .show_ui(ui, |ui| {
                    for m in &served {
                        ui.selectable_value(&mut settings.model.server_model, Some(m.clone()), m);
                    }
                });
        }
        let testing = panel.server_testing;
        if ui
            .add_enabled(!testing, egui::Button::new("Test connection"))
            .on_hover_text("Ask the server for its models (GET /v1/models)")
            .clicked()
        {
            panel.test_server(
                wb,
                settings.model.model.clone(),
                settings.model.api_key_env.clone(),
            );
        }
        if testing {
            ui.spinner();
        }
    });
    ui.end_row();
    let l = ui.label("API key variable");
    let mut var = settings.model.api_key_env.clone().unwrap_or_default();
    if ui
        .add(
            egui::TextEdit::singleline(&mut var)
                .hint_text(crate::worker::API_KEY_ENV)
                .desired_width(240.0),
        )
        .labelled_by(l.id)
        .on_hover_text(
            "The environment variable holding the server's API key; the key itself is never stored",
        )
        .changed()
    {
        settings.model.api_key_env = (!var.trim().is_empty()).then(|| var.trim().to_string());
    }
    ui.end_row();
    match &panel.server_result {
        Some(Ok(list)) => {
            ui.label("Connection");
            ui.label(format!("ok: serves {}", list.join(", ")));
            ui.end_row();
        }
        Some(Err(e)) => {
            ui.label("Connection");
            ui.colored_label(ui.visuals().error_fg_color, e);
            ui.end_row();
        }
        None => {}
    }
}

/// Model choice, device, sampling, theme.
pub fn model_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut ModelPanel,
    cmds: &mut Vec<Command>,
) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading("Model");
        egui::Grid::new("model_grid").num_columns(2).show(ui, |ui| {
            let l = ui.label("Model");
            ui.horizontal(|ui| {
                ui.add(egui::TextEdit::singleline(&mut settings.model.model).desired_width(360.0))
                    .labelled_by(l.id)
                    .on_hover_text("`default`, a GGUF/safetensors path, a Hugging Face repo (`owner/repo:file.gguf`), or an OpenAI-compatible server (`http://HOST:PORT/v1`: llama.cpp, vLLM, SGLang)");
                if ui.button("Browse...").on_hover_text("Pick a GGUF or safetensors file").clicked() {
                    cmds.push(Command::PickModelFile);
                }
            });
            ui.end_row();
            if crate::worker::is_server_ref(&settings.model.model) {
                server_rows(ui, wb, settings, panel);
            }
            let l = ui.label("Device");
            egui::ComboBox::from_id_salt("device")
                .selected_text(settings.model.device.clone())
                .show_ui(ui, |ui| {
                    for d in ["auto", "cpu"] {
                        ui.selectable_value(&mut settings.model.device, d.to_string(), d);
                    }
                    // The GPUs the driver reports (name and memory); `cuda:0` when none is
                    // known, so that choosing it explains what is missing.
                    let gpus = crate::worker::cuda_devices();
                    if gpus.is_empty() {
                        ui.selectable_value(&mut settings.model.device, "cuda:0".into(), "cuda:0")
                            .on_hover_text("No CUDA GPU found by this build (see the README's GPU section)");
                    }
                    for (d, about) in gpus {
                        ui.selectable_value(&mut settings.model.device, d.clone(), format!("{d} ({about})"));
                    }
                    ui.selectable_value(&mut settings.model.device, "metal".into(), "metal");
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Preset");
            ui.horizontal(|ui| {
                let before = (settings.preset, settings.reference_wording);
                egui::ComboBox::from_id_salt("preset")
                    .selected_text(settings.preset.name())
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut settings.preset, Preset::Workbench, "workbench")
                            .on_hover_text("Our wording: system message, chat template, numbered items; sampling 0.7 / top-p 0.9, repetition penalty 1.1");
                        ui.selectable_value(&mut settings.preset, Preset::Reference, "reference")
                            .on_hover_text("The LLM-TRSR reference code's prompts (raw ### User: form, no system message, no chat template), item text and sampling (1.0 / top-k 50 / top-p 1.0, no penalty)");
                    })
                    .response
                    .labelled_by(l.id);
                let lw = ui.label("wording of");
                egui::ComboBox::from_id_salt("reference_wording")
                    .selected_text(match settings.reference_wording {
                        ReferenceWording::Mind => "MIND (news)",
                        ReferenceWording::Amazon => "Amazon-M2 (products)",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut settings.reference_wording, ReferenceWording::Mind, "MIND (news)");
                        ui.selectable_value(&mut settings.reference_wording, ReferenceWording::Amazon, "Amazon-M2 (products)");
                    })
                    .response
                    .labelled_by(lw.id);
                if (settings.preset, settings.reference_wording) != before {
                    settings.apply_preset();
                }
                if settings.preset != before.0 {
                    // The training settings the presets differ in follow too (the Train tab).
                    settings.train.apply_preset(settings.preset);
                }
            });
            ui.end_row();
            ui.label("Prompt form");
            ui.add_enabled(
                settings.preset == Preset::Workbench,
                egui::Checkbox::new(&mut settings.model.raw_prompt, "raw ### User: / ### Assistant: instead of the chat template"),
            );
            ui.end_row();
            let l = ui.label("LoRA adapter");
            ui.horizontal(|ui| {
                let mut text = settings
                    .model
                    .adapter
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                if ui
                    .add(
                        egui::TextEdit::singleline(&mut text)
                            .hint_text("none: the base model")
                            .desired_width(360.0),
                    )
                    .labelled_by(l.id)
                    .on_hover_text("A PEFT adapter folder (e.g. from the Train tab), merged into the weights at Load: summaries and ranking both use it")
                    .changed()
                {
                    settings.model.adapter =
                        (!text.trim().is_empty()).then(|| PathBuf::from(text.trim()));
                }
                if ui.button("Browse...").on_hover_text("Pick an adapter folder").clicked() {
                    cmds.push(Command::Train(super::TrainCmd::PickAdapterFolder));
                }
                if ui
                    .add_enabled(settings.model.adapter.is_some(), egui::Button::new("Clear"))
                    .on_hover_text("Use the base model (press Load model to apply)")
                    .clicked()
                {
                    cmds.push(Command::Train(super::TrainCmd::ClearAdapter));
                }
            });
            ui.end_row();
        });
        if let (Some(loaded), ModelStatus::Loaded(_)) = (&wb.loaded_spec, &wb.model) {
            let want = settings.model_spec();
            if (loaded.answer_by_vocab, &loaded.yes_word, &loaded.no_word)
                != (want.answer_by_vocab, &want.yes_word, &want.no_word)
            {
                ui.weak(format!(
                    "The loaded model reads the answer as {}; the templates now ask for {}: press Load model to apply.",
                    answer_rule(loaded),
                    answer_rule(&want)
                ));
            }
        }
        let loaded_adapter = wb.loaded_spec.as_ref().and_then(|s| s.adapter.clone());
        if loaded_adapter != settings.model.adapter && matches!(wb.model, ModelStatus::Loaded(_)) {
            ui.weak(match &loaded_adapter {
                Some(a) => format!("The loaded model carries the adapter {}; press Load model to apply the change.", a.display()),
                None => "The loaded model has no adapter; press Load model to apply the change.".into(),
            });
        }
        ui.horizontal(|ui| {
            let loading = matches!(wb.model, ModelStatus::Loading(_));
            if ui.add_enabled(!loading, egui::Button::new("Load model")).clicked() {
                cmds.push(Command::LoadModel);
            }
            match &wb.model {
                ModelStatus::None => {
                    ui.label("no model loaded");
                }
                ModelStatus::Loading(s) => {
                    ui.spinner();
                    ui.label(format!("loading {}...", s.model));
                }
                ModelStatus::Loaded(m) => {
                    ui.label(format!(
                        "{} ({}, ctx {} tokens) on {} in {:.0} ms",
                        m.identity.name, m.identity.architecture, m.identity.context_len, m.device, m.load_ms
                    ));
                }
                ModelStatus::Failed(e) => {
                    notice_ui(ui, Level::Error, e.as_str());
                }
            }
        });
        ui.separator();
        ui.heading("Sampling");
        let s = &mut settings.sampling;
        egui::Grid::new("sampling_grid").num_columns(2).show(ui, |ui| {
            ui.label("Temperature (0 = greedy)");
            ui.add(egui::Slider::new(&mut s.temperature, 0.0..=2.0).text("temperature"));
            ui.end_row();
            ui.label("Top-k");
            let mut k = s.top_k.unwrap_or(0);
            if ui.add(egui::Slider::new(&mut k, 0..=200).text("top-k (0 = off)")).changed() {
                s.top_k = (k > 0).then_some(k);
            }
            ui.end_row();
            ui.label("Top-p");
            let mut p = s.top_p.unwrap_or(1.0);
            if ui.add(egui::Slider::new(&mut p, 0.05..=1.0).text("top-p")).changed() {
                s.top_p = (p < 1.0).then_some(p);
            }
            ui.end_row();
            ui.label("Max new tokens");
            ui.add(egui::Slider::new(&mut s.max_new_tokens, 1..=1024).text("max new tokens"));
            ui.end_row();
            ui.label("Repeat penalty");
            ui.add(egui::Slider::new(&mut s.repeat_penalty, 1.0..=2.0).text("repeat penalty (1 = none)"));
            ui.end_row();
            ui.label("Repeat window");
            ui.add(egui::Slider::new(&mut s.repeat_last_n, 1..=512).text("last tokens penalized"));
            ui.end_row();
            ui.label("Max length");
            let mut on = s.max_length.is_some();
            ui.horizontal(|ui| {
                if ui
                    .checkbox(&mut on, "prompt + generation at most")
                    .on_hover_text("Hugging Face's max_length, as the reference's 30B runs use it (2048); replaces max new tokens")
                    .changed()
                {
                    s.max_length = on.then_some(2048);
                }
                if let Some(n) = s.max_length.as_mut() {
                    ui.add(egui::DragValue::new(n).range(1..=131_072).suffix(" tokens"));
                }
            });
            ui.end_row();
            ui.label("Seed");
            ui.add(egui::DragValue::new(&mut s.seed)).on_hover_text("seed");
            ui.end_row();
        });
        if ui
            .button(format!("Reset sampling to the {} preset's", settings.preset.name()))
            .clicked()
        {
            settings.sampling = settings.preset.sampling();
        }
        ui.separator();
        ui.heading("Look");
        if ui
            .checkbox(&mut settings.dark, "Dark theme")
            .on_hover_text(format!("Toggle theme ({})", super::command::shortcut_text(ui.ctx(), Command::ToggleTheme)))
            .changed()
        {
            settings.apply_theme(ui.ctx());
        }
        match &panel.settings_path {
            Some(p) => ui.weak(format!("Settings are saved to {}", p.display())),
            None => ui.weak("Settings are kept for this session only"),
        };
    });
}
