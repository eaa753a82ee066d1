//! Persisted settings (RON) and the "Model & settings" panel.

use eframe::egui;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Command, ModelStatus, Workbench};
use crate::data::ItemTextTemplate;
use crate::lm::SamplingParams;
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
        }
    }
}

impl Settings {
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
    /// The server connection test: running (its answer comes on this channel) or done.
    server_test: Option<crossbeam_channel::Receiver<Result<Vec<String>, String>>>,
    /// The last test's answer: the served models, or the one-line error.
    server_result: Option<Result<Vec<String>, String>>,
}

impl ModelPanel {
    /// Starts a connection test of `url` on a background thread (the window stays live).
    fn test_server(&mut self, url: String, api_key_env: Option<String>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.server_result = None;
        self.server_test = Some(rx);
        let spawned = std::thread::Builder::new()
            .name("trsr-server-test".into())
            .spawn(move || {
                let r = crate::remote::api_key_from_env(api_key_env.as_deref())
                    .and_then(|key| crate::remote::served_models(&url, key))
                    .map_err(|e| e.to_string());
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            self.server_test = None;
            self.server_result = Some(Err(format!("could not start the test: {e}")));
        }
    }

    fn poll(&mut self) -> bool {
        if let Some(rx) = &self.server_test {
            if let Ok(r) = rx.try_recv() {
                self.server_result = Some(r);
                self.server_test = None;
            }
        }
        self.server_test.is_some()
    }
}

/// The rows for a server model (`http(s)://…/v1`): served model, API-key variable, and a
/// connection test that lists the served models.
fn server_rows(ui: &mut egui::Ui, settings: &mut Settings, panel: &mut ModelPanel) {
    if panel.poll() {
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(100));
    }
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
        let testing = panel.server_test.is_some();
        if ui
            .add_enabled(!testing, egui::Button::new("Test connection"))
            .on_hover_text("Ask the server for its models (GET /v1/models)")
            .clicked()
        {
            panel.test_server(
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
                .hint_text(crate::remote::API_KEY_ENV)
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
            if crate::remote::is_remote_ref(&settings.model.model) {
                server_rows(ui, settings, panel);
            }
            ui.label("Device");
            egui::ComboBox::from_id_salt("device")
                .selected_text(settings.model.device.clone())
                .show_ui(ui, |ui| {
                    for d in ["auto", "cpu", "cuda:0", "metal"] {
                        ui.selectable_value(&mut settings.model.device, d.to_string(), d);
                    }
                });
            ui.end_row();
            ui.label("Prompt form");
            ui.checkbox(&mut settings.model.raw_prompt, "raw ### User: / ### Assistant: (the paper's)");
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
                    ui.colored_label(ui.visuals().error_fg_color, e);
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
            ui.add(egui::Slider::new(&mut s.repeat_penalty, 1.0..=2.0).text("repeat penalty"));
            ui.end_row();
            ui.label("Seed");
            ui.add(egui::DragValue::new(&mut s.seed)).on_hover_text("seed");
            ui.end_row();
        });
        if ui.button("Reset sampling to the paper's (sampling, 150 tokens, seed 42)").clicked() {
            settings.sampling = SamplingParams::default();
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
        if let Some(p) = Settings::default_path() {
            ui.weak(format!("Settings are saved to {}", p.display()));
        }
    });
}
