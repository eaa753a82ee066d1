//! The window (eframe + egui). Only this module knows egui.
//!
//! Shape (after rerun's viewer): [`WorkbenchApp`] owns the long-lived things (the worker,
//! the loaded dataset, job views); [`Settings`] is the persisted part (RON); [`UiState`]
//! holds each panel's own transient state. Panels draw from a read-only view of the
//! workbench, edit only their own state and the settings, and ask for everything else
//! with a [`Command`], executed in one place at the end of the frame.

mod blocks;
mod command;
pub mod curate_panel;
mod dataset;
pub mod export_dialog;
pub mod plot_stats;
pub mod plots;
mod ranking;
mod settings;
mod summaries;
pub mod train_panel;
mod workbench;

pub use command::{Command, Shortcut, SHORTCUTS};
pub use curate_panel::{CurateCmd, CuratePanel, ProjectSession};
pub use settings::{BlockControls, Settings};
pub use train_panel::{TrainCmd, TrainPanel};
pub use workbench::{ModelStatus, RankView, StepView, SummaryView, Workbench};

use eframe::egui;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::worker::{Loader, Wake, Worker};

/// Time the UI spends per frame taking events from the worker.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(10);

/// The central area's tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Blocks,
    Summaries,
    Ranking,
    Plots,
    Model,
    Curation,
    Train,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Blocks,
        Tab::Summaries,
        Tab::Ranking,
        Tab::Plots,
        Tab::Model,
        Tab::Curation,
        Tab::Train,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Tab::Blocks => "Sequence & blocks",
            Tab::Summaries => "Summaries",
            Tab::Ranking => "Ranking",
            Tab::Plots => "Plots",
            Tab::Model => "Model & settings",
            Tab::Curation => "Curation",
            Tab::Train => "Train",
        }
    }
}

/// Panels' transient state (not persisted).
#[derive(Default)]
pub struct UiState {
    pub tab: Option<Tab>,
    pub show_help: bool,
    pub dataset: dataset::DatasetPanel,
    pub summaries: summaries::SummariesPanel,
    pub plots: plots::PlotsPanel,
    pub model: settings::ModelPanel,
    pub curate: curate_panel::CuratePanel,
    pub export: export_dialog::ExportDialog,
    pub train: train_panel::TrainPanel,
}

/// How the app starts.
#[derive(Default)]
pub struct StartOptions {
    /// Open this dataset folder at start.
    pub data: Option<PathBuf>,
    /// Load this model at start (else the settings' model is loaded when one was set).
    pub model: Option<String>,
    /// A project file (curation) to open.
    pub project: Option<PathBuf>,
    /// Where settings are read and written; `None` keeps them in memory only (tests).
    pub settings_path: Option<PathBuf>,
    /// Select the first user and run a summary as soon as data and model are ready.
    pub autorun: bool,
    /// Load the model at start even if none was given.
    pub load_model: bool,
}

/// The eframe application.
pub struct WorkbenchApp {
    pub wb: Workbench,
    pub settings: Settings,
    pub ui: UiState,
    commands: Vec<Command>,
    settings_path: Option<PathBuf>,
    saved_settings: String,
    autorun: bool,
}

impl WorkbenchApp {
    /// Builds the app: spawns the worker with `loader`, which wakes `ctx` on events.
    pub fn new(ctx: &egui::Context, loader: Loader, opts: StartOptions) -> anyhow::Result<Self> {
        let repaint_ctx = ctx.clone();
        let wake: Wake = Arc::new(move || repaint_ctx.request_repaint());
        let worker = Worker::spawn(loader, wake.clone())?;
        let mut settings = opts
            .settings_path
            .as_deref()
            .map(Settings::load_or_default)
            .unwrap_or_default();
        if let Some(m) = &opts.model {
            settings.model.model = m.clone();
        }
        let mut app = Self {
            wb: Workbench::new(worker, wake),
            saved_settings: settings.to_ron(),
            settings,
            ui: UiState::default(),
            commands: Vec::new(),
            settings_path: opts.settings_path,
            autorun: opts.autorun,
        };
        app.settings.apply_theme(ctx);
        if let Some(p) = &opts.project {
            match ProjectSession::open_or_create(p, opts.data.as_deref()) {
                Ok(session) => {
                    if opts.data.is_none() {
                        if let Some(dir) = session.dataset_dir() {
                            app.commands.push(Command::OpenDataset(dir));
                        }
                    }
                    app.wb.notify(session.save_state.clone());
                    app.wb.project = Some(session);
                    app.ui.tab = Some(Tab::Curation);
                }
                Err(e) => app.wb.notify(format!("{e}")),
            }
        }
        if let Some(dir) = opts.data {
            app.commands.push(Command::OpenDataset(dir));
        }
        if opts.model.is_some() || opts.load_model || opts.autorun {
            app.commands.push(Command::LoadModel);
        }
        app.run_commands(ctx);
        Ok(app)
    }

    /// Queues a command (as a panel would).
    pub fn push_command(&mut self, c: Command) {
        self.commands.push(c);
    }

    fn run_commands(&mut self, ctx: &egui::Context) {
        let cmds = std::mem::take(&mut self.commands);
        for c in cmds {
            command::execute(c, self, ctx);
        }
    }

    /// Waits for a running project save and saves what is unsaved (on exit; tests).
    pub fn flush_project(&mut self) -> Result<(), String> {
        match self.wb.project.as_mut() {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }

    fn persist_settings(&mut self) {
        let now = self.settings.to_ron();
        if now != self.saved_settings {
            if let Some(path) = &self.settings_path {
                if let Err(e) = self.settings.save(path) {
                    self.wb.notify(format!("could not save settings: {e:#}"));
                }
            }
            self.saved_settings = now;
        }
    }

    /// The per-frame work that draws nothing: worker events, dataset loading, autorun.
    fn frame_logic(&mut self, ctx: &egui::Context) {
        let events = self.wb.worker.drain(DRAIN_BUDGET);
        let events = curate_panel::observe_events(&mut self.wb, &self.settings, events);
        let events = train_panel::observe_events(&mut self.wb, events);
        for ev in events {
            self.wb.apply_event(ev, &self.settings);
        }
        let late: Vec<String> = self
            .wb
            .async_notices
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default();
        for n in late {
            self.wb.notify(n);
        }
        if self.wb.worker.has_pending() {
            ctx.request_repaint();
        }
        if let Some(cmd) = self.wb.poll_dataset(&mut self.settings) {
            self.commands.push(cmd);
        }
        if self.autorun && self.wb.data.is_some() && matches!(self.wb.model, ModelStatus::Loaded(_))
        {
            self.autorun = false;
            self.commands.push(Command::SelectCase(0));
            self.commands.push(Command::SetTab(Tab::Summaries));
            self.commands.push(Command::RunSummary);
        }
        // Dropped folders or files open as datasets.
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(p) = dropped.into_iter().next() {
            let dir = if p.is_dir() {
                p
            } else {
                p.parent().map(PathBuf::from).unwrap_or(p)
            };
            self.commands.push(Command::OpenDataset(dir));
        }
        curate_panel::adopt_shown_summary(&mut self.wb);
        let mut save_error = None;
        if let Some(p) = self.wb.project.as_mut() {
            save_error = p.poll_save(std::time::Instant::now());
            if p.autosaver.is_dirty() || p.is_saving() {
                // Come back when the debounce has passed.
                ctx.request_repaint_after(p.autosaver.debounce);
            }
        }
        if let Some(e) = save_error {
            self.wb.notify(e);
        }
        curate_panel::curate_shortcuts(
            ctx,
            &self.wb,
            &self.ui.curate,
            self.ui.tab == Some(Tab::Curation),
            &mut self.commands,
        );
        command::shortcuts(ctx, &mut self.commands);
    }

    /// Draws the whole window.
    pub fn draw_ui(&mut self, ui: &mut egui::Ui) {
        let cmds = &mut self.commands;
        egui::Panel::top("menu").show(ui, |ui| {
            command::menu_bar_ui(ui, &self.wb, &mut self.settings, &mut self.ui, cmds);
        });
        egui::Panel::bottom("status").show(ui, |ui| status_bar_ui(ui, &self.wb));
        egui::Panel::left("dataset")
            .default_size(300.0)
            .show(ui, |ui| {
                dataset::dataset_ui(ui, &self.wb, &mut self.settings, &mut self.ui.dataset, cmds)
            });
        let tab = *self.ui.tab.get_or_insert(Tab::Blocks);
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                for t in Tab::ALL {
                    if ui.selectable_label(tab == t, t.label()).clicked() {
                        cmds.push(Command::SetTab(t));
                    }
                }
            });
            ui.separator();
            match tab {
                Tab::Blocks => blocks::blocks_ui(ui, &self.wb, &mut self.settings, cmds),
                Tab::Summaries => summaries::summaries_ui(
                    ui,
                    &self.wb,
                    &mut self.settings,
                    &mut self.ui.summaries,
                    cmds,
                ),
                Tab::Ranking => ranking::ranking_ui(ui, &self.wb, &mut self.settings, cmds),
                Tab::Plots => {
                    plots::plots_ui(ui, &self.wb, &mut self.settings, &mut self.ui.plots, cmds)
                }
                Tab::Model => {
                    settings::model_ui(ui, &self.wb, &mut self.settings, &mut self.ui.model, cmds)
                }
                Tab::Curation => curate_panel::curate_ui(ui, &self.wb, &mut self.ui.curate, cmds),
                Tab::Train => train_panel::train_ui(
                    ui,
                    &self.wb,
                    &mut self.settings,
                    &mut self.ui.train,
                    cmds,
                ),
            }
        });
        export_dialog::export_dialog_ui(ui.ctx(), &self.wb, &mut self.ui.export, cmds);
        if self.ui.show_help {
            command::help_ui(ui.ctx(), &mut self.ui.show_help);
        }
    }

    /// One frame without eframe (benchmarks and tests drive this through a bare context).
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.frame_logic(&ctx);
        self.draw_ui(ui);
        self.run_commands(&ctx);
        self.persist_settings();
    }
}

impl eframe::App for WorkbenchApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.frame_logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw_ui(ui);
        let ctx = ui.ctx().clone();
        self.run_commands(&ctx);
        self.persist_settings();
    }

    fn on_exit(&mut self) {
        self.persist_settings();
        if let Err(e) = self.flush_project() {
            eprintln!("{e}");
        }
        self.wb.worker.shutdown();
    }
}

/// The bottom bar: model, device, job state, tokens/s, notices.
fn status_bar_ui(ui: &mut egui::Ui, wb: &Workbench) {
    ui.horizontal(|ui| {
        match &wb.model {
            ModelStatus::None => ui.label("model: none"),
            ModelStatus::Loading(s) => {
                ui.spinner();
                ui.label(format!("loading model {}", s.model))
            }
            ModelStatus::Loaded(m) => ui.label(format!(
                "model: {} · device: {} · ctx {}",
                m.identity.name, m.device, m.identity.context_len
            )),
            ModelStatus::Failed(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("model failed: {e}"))
            }
        };
        ui.separator();
        ui.label(wb.job_state_text());
        if let Some(tps) = wb.summary.as_ref().and_then(|s| s.tokens_per_sec()) {
            ui.separator();
            ui.label(format!("{tps:.1} tok/s"));
        }
        if let Some(n) = wb.notices.last() {
            ui.separator();
            ui.label(n).on_hover_text(wb.notices.join("\n"));
        }
    });
}

/// The loader the window uses: the candle engine.
pub fn engine_loader() -> Loader {
    crate::worker::engine_loader()
}
