//! The window (eframe + egui). Only this module knows egui.
//!
//! Shape (after rerun's viewer): [`WorkbenchApp`] owns the long-lived things (the worker,
//! the loaded dataset, job views); [`Settings`] is the persisted part (RON); [`UiState`]
//! holds each panel's own transient state. Panels draw from a read-only view of the
//! workbench, edit only their own state and the settings, and ask for everything else
//! with a [`Command`], executed in one place at the end of the frame.
//!
//! One file per panel; the two large tabs are folders split by role (`train/`, `curate/`:
//! egui-free state, actions, view; the open project's session in `curate/session.rs`).
//! Work off the UI thread other than inference goes through [`background`] (named
//! threads, results on one channel drained each frame); messages to the user carry a
//! [`notices::Level`] and are drawn the same way everywhere.

pub mod background;
mod blocks;
mod command;
pub mod curate;
mod dataset;
pub mod export_dialog;
mod native;
pub mod notices;
pub mod plot_stats;
pub mod plots;
mod ranking;
mod settings;
mod summaries;
pub mod train;
mod workbench;

pub use background::TaskOutput;
pub use command::{Command, Shortcut, SHORTCUTS};
pub use curate::{CurateCmd, CuratePanel, ProjectSession};
pub use native::run_native;
pub use notices::{Level, Notice};
pub use settings::{BlockControls, Settings};
pub use train::{TrainCmd, TrainPanel};
pub use workbench::{ModelStatus, RankView, StepSource, StepView, SummaryView, Workbench};

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
    pub curate: curate::CuratePanel,
    pub export: export_dialog::ExportDialog,
    pub train: train::TrainPanel,
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
    /// The results cache shared with the CLI (`trsr gui` passes the default folder);
    /// `None`: summaries are neither looked up nor stored (tests pass a temporary one).
    pub cache_dir: Option<PathBuf>,
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
            wb: Workbench::new(worker, wake, opts.cache_dir.clone()),
            saved_settings: settings.to_ron(),
            settings,
            ui: UiState::default(),
            commands: Vec::new(),
            settings_path: opts.settings_path,
            autorun: opts.autorun,
        };
        app.settings.apply_theme(ctx);
        app.ui.model.settings_path = app.settings_path.clone();
        if let Some(p) = &opts.project {
            match ProjectSession::open_or_create(p, opts.data.as_deref()) {
                Ok(session) => {
                    if opts.data.is_none() {
                        if let Some(dir) = session.dataset_dir() {
                            app.commands.push(Command::OpenDataset(dir));
                        }
                    }
                    app.wb.notify(Notice::info(session.save_state.clone()));
                    app.wb.project = Some(session);
                    app.ui.tab = Some(Tab::Curation);
                }
                Err(e) => app.wb.notify(Notice::error(format!("{e}"))),
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
        let wb = &mut self.wb;
        match wb.project.as_mut() {
            Some(p) => p.flush(&mut wb.tasks),
            None => Ok(()),
        }
    }

    /// Routes what the background tasks handed back since the last frame.
    fn take_task_outputs(&mut self) {
        let now = std::time::Instant::now();
        for done in self.wb.tasks.drain(DRAIN_BUDGET) {
            let saving = self.wb.project.as_ref().and_then(|p| p.saving_task());
            if saving == Some(done.id) {
                let result = match done.output {
                    Ok(TaskOutput::ProjectSaved(r)) => r,
                    Ok(other) => Err(format!("unexpected save result {other:?}")),
                    Err(panic) => Err(panic),
                };
                let failed = self
                    .wb
                    .project
                    .as_mut()
                    .and_then(|p| p.save_done(done.id, result, now));
                if let Some(n) = failed {
                    self.wb.notify(n);
                }
                continue;
            }
            match done.output {
                Ok(TaskOutput::Notice(n)) => self.wb.notify(n),
                Ok(TaskOutput::Results { path, read }) => self.ui.plots.results_read(&path, read),
                Ok(TaskOutput::ServedModels(r)) => self.ui.model.server_tested(r),
                Ok(TaskOutput::PlotIntervals { generation, result }) => {
                    self.ui.plots.stats.finished(generation, result)
                }
                // A save of a project closed since: it was waited for on closing.
                Ok(TaskOutput::ProjectSaved(_)) => {}
                Err(panic) => self
                    .wb
                    .notify(Notice::error(format!("{}: {panic}", done.name))),
            }
        }
    }

    fn persist_settings(&mut self) {
        let now = self.settings.to_ron();
        if now != self.saved_settings {
            if let Some(path) = &self.settings_path {
                if let Err(e) = self.settings.save(path) {
                    self.wb
                        .notify(Notice::error(format!("could not save settings: {e:#}")));
                }
            }
            self.saved_settings = now;
        }
    }

    /// The per-frame work that draws nothing: worker events, dataset loading, autorun.
    fn frame_logic(&mut self, ctx: &egui::Context) {
        let events = self.wb.worker.drain(DRAIN_BUDGET);
        let events = curate::observe_events(&mut self.wb, &self.settings, events);
        let events = train::observe_events(&mut self.wb, events);
        for ev in events {
            self.wb.apply_event(ev, &self.settings);
        }
        self.take_task_outputs();
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
        curate::adopt_shown_summary(&mut self.wb);
        let mut save_error = None;
        if let Some(p) = self.wb.project.as_mut() {
            // The project records the preset its summaries and scores are made under.
            let ps = &mut p.project.settings;
            let wording = (self.settings.preset == crate::preset::Preset::Reference)
                .then_some(self.settings.reference_wording);
            if ps.preset != self.settings.preset || ps.reference_wording != wording {
                ps.preset = self.settings.preset;
                ps.reference_wording = wording;
                p.changed();
            }
            save_error = p.poll_save(std::time::Instant::now(), &self.wb.tasks);
            if p.autosaver.is_dirty() || p.is_saving() {
                // Come back when the debounce has passed.
                ctx.request_repaint_after(p.autosaver.debounce);
            }
        }
        if let Some(e) = save_error {
            self.wb.notify(e);
        }
        curate::curate_shortcuts(
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
                Tab::Curation => curate::curate_ui(ui, &self.wb, &mut self.ui.curate, cmds),
                Tab::Train => {
                    train::train_ui(ui, &self.wb, &mut self.settings, &mut self.ui.train, cmds)
                }
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
                notices::notice_ui(ui, Level::Error, format!("model failed: {e}"))
            }
        };
        ui.separator();
        ui.label(wb.job_state_text());
        if let Some(tps) = wb.summary.as_ref().and_then(|s| s.tokens_per_sec()) {
            ui.separator();
            ui.label(format!("{tps:.1} tok/s"));
        }
        if !wb.notices.is_empty() {
            ui.separator();
            notices::last_notice_ui(ui, &wb.notices);
        }
    });
}

/// The loader the window uses: the candle engine.
pub fn engine_loader() -> Loader {
    crate::worker::engine_loader()
}
