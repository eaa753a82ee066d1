//! The one command enum, its executor (end of frame), keyboard shortcuts, menu and help.

use eframe::egui;
use std::path::PathBuf;

use egui::{Key, KeyboardShortcut, Modifiers};

use super::background::TaskOutput;
use super::notices::Notice;
use super::{ModelStatus, Settings, Tab, UiState, Workbench, WorkbenchApp};

/// Everything panels, menus and shortcuts ask for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    OpenDatasetDialog,
    OpenDataset(PathBuf),
    SelectCase(usize),
    NextUser,
    PrevUser,
    RunSummary,
    /// Re-run one step of the current summary (and what depends on it).
    RerunStep(usize),
    Cancel,
    Score,
    RunBatch,
    LoadResultsDialog,
    LoadResults(PathBuf),
    PickModelFile,
    LoadModel,
    RequestTokenCounts(Vec<String>),
    /// Save the plot drawn in `rect` (points) as a PNG.
    ExportPlot {
        name: String,
        rect: egui::Rect,
    },
    SetTab(Tab),
    ToggleHelp,
    ToggleTheme,
    /// A curation request (the Curation tab and its keys).
    Curate(super::CurateCmd),
    OpenProjectDialog,
    OpenProject(PathBuf),
    /// Save the project now.
    SaveProject,
    ShowExportDialog,
    /// Pick the output file and run the Export dialog's export.
    ExportSftDialog,
    /// Run the Export dialog's export into this file.
    ExportSft(PathBuf),
    /// A Train-tab request (training, its output, the model's adapter).
    Train(super::TrainCmd),
}

/// A keyboard shortcut bound to a command.
pub struct Shortcut {
    pub shortcut: KeyboardShortcut,
    pub command: fn() -> Command,
    pub what: &'static str,
}

/// All shortcuts, shown in tooltips and in the help overlay (F1).
pub const SHORTCUTS: &[Shortcut] = &[
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::ALT, Key::ArrowDown),
        command: || Command::NextUser,
        what: "Next user",
    },
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::ALT, Key::ArrowUp),
        command: || Command::PrevUser,
        what: "Previous user",
    },
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter),
        command: || Command::RunSummary,
        what: "Run summary",
    },
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::COMMAND, Key::R),
        command: || Command::Score,
        what: "Rank candidates",
    },
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::NONE, Key::Escape),
        command: || Command::Cancel,
        what: "Cancel running jobs",
    },
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::COMMAND, Key::O),
        command: || Command::OpenDatasetDialog,
        what: "Open a dataset folder",
    },
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::COMMAND, Key::T),
        command: || Command::ToggleTheme,
        what: "Light / dark theme",
    },
    Shortcut {
        shortcut: KeyboardShortcut::new(Modifiers::NONE, Key::F1),
        command: || Command::ToggleHelp,
        what: "Show / hide this help",
    },
];

/// The shortcut text of a command, e.g. `Ctrl+Enter`, or empty.
pub fn shortcut_text(ctx: &egui::Context, c: Command) -> String {
    SHORTCUTS
        .iter()
        .find(|s| (s.command)() == c)
        .map(|s| ctx.format_shortcut(&s.shortcut))
        .unwrap_or_default()
}

/// Turns pressed shortcuts into commands.
pub fn shortcuts(ctx: &egui::Context, cmds: &mut Vec<Command>) {
    ctx.input_mut(|i| {
        for s in SHORTCUTS {
            if i.consume_shortcut(&s.shortcut) {
                cmds.push((s.command)());
            }
        }
    });
}

/// The menu bar.
pub fn menu_bar_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    state: &mut UiState,
    cmds: &mut Vec<Command>,
) {
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            if ui.button("Open dataset folder...").clicked() {
                cmds.push(Command::OpenDatasetDialog);
            }
            recent_menu_ui(ui, settings, cmds);
            ui.separator();
            if ui.button("Open or new project...").clicked() {
                cmds.push(Command::OpenProjectDialog);
            }
            if ui
                .add_enabled(wb.project.is_some(), egui::Button::new("Save project"))
                .clicked()
            {
                cmds.push(Command::SaveProject);
            }
            if ui
                .add_enabled(
                    wb.project.is_some(),
                    egui::Button::new("Export SFT data..."),
                )
                .clicked()
            {
                cmds.push(Command::ShowExportDialog);
            }
            ui.separator();
            if ui
                .button("Load results (scores.jsonl / metrics.json)...")
                .clicked()
            {
                cmds.push(Command::LoadResultsDialog);
            }
        });
        ui.menu_button("Run", |ui| {
            let ready = wb.selected_case().is_some() && matches!(wb.model, ModelStatus::Loaded(_));
            if ui
                .add_enabled(ready, egui::Button::new("Summarize selected user"))
                .clicked()
            {
                cmds.push(Command::RunSummary);
            }
            if ui
                .add_enabled(ready, egui::Button::new("Rank candidates"))
                .clicked()
            {
                cmds.push(Command::Score);
            }
            if ui.button("Cancel all jobs").clicked() {
                cmds.push(Command::Cancel);
            }
        });
        ui.menu_button("View", |ui| {
            if ui.checkbox(&mut settings.dark, "Dark theme").changed() {
                settings.apply_theme(ui.ctx());
            }
            ui.checkbox(&mut settings.color_by_prob, "Colour tokens by probability");
        });
        if ui.button("Help (F1)").clicked() {
            state.show_help = !state.show_help;
        }
    });
}

/// The Recent menu: dataset folders opened before (File menu and the dataset panel).
pub fn recent_menu_ui(ui: &mut egui::Ui, settings: &Settings, cmds: &mut Vec<Command>) {
    ui.menu_button("Recent", |ui| {
        if settings.recent_dirs.is_empty() {
            ui.weak("nothing yet");
        }
        for d in &settings.recent_dirs {
            if ui.button(d.display().to_string()).clicked() {
                cmds.push(Command::OpenDataset(d.clone()));
            }
        }
    });
}

/// The help overlay: every shortcut.
pub fn help_ui(ctx: &egui::Context, open: &mut bool) {
    egui::Window::new("Keyboard shortcuts")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            egui::Grid::new("shortcuts")
                .num_columns(2)
                .striped(true)
                .show(ui, |ui| {
                    for s in SHORTCUTS {
                        ui.monospace(ctx.format_shortcut(&s.shortcut));
                        ui.label(s.what);
                        ui.end_row();
                    }
                    for (keys, what) in super::curate::CURATE_SHORTCUTS {
                        ui.monospace(*keys);
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            ui.separator();
            ui.label("Drop a dataset folder onto the window to open it.");
        });
}

/// Opens (or creates) a project, saving the one open before.
fn open_project(app: &mut WorkbenchApp, path: PathBuf) {
    if let Err(e) = app.flush_project() {
        app.wb.notify(Notice::error(e));
    }
    let data = app.wb.data.as_ref().map(|d| d.dir.clone());
    match super::ProjectSession::open_or_create(&path, data.as_deref()) {
        Ok(session) => {
            if data.is_none() {
                if let Some(dir) = session.dataset_dir() {
                    app.push_command(Command::OpenDataset(dir));
                }
            }
            app.wb.notify(Notice::info(session.save_state.clone()));
            app.wb.project = Some(session);
            app.ui.curate = Default::default();
            app.ui.tab = Some(Tab::Curation);
        }
        Err(e) => app.wb.notify(Notice::error(format!("{e}"))),
    }
}

/// Executes one command.
pub fn execute(c: Command, app: &mut WorkbenchApp, ctx: &egui::Context) {
    let WorkbenchApp {
        wb, settings, ui, ..
    } = app;
    match c {
        Command::OpenDatasetDialog => {
            // File dialogs run on the main thread; the reading goes to a background thread.
            if let Some(dir) = rfd::FileDialog::new()
                .set_title("Open a dataset folder")
                .pick_folder()
            {
                wb.open_dataset(dir, settings);
            }
        }
        Command::OpenDataset(dir) => {
            if let Some(p) = wb.project.as_mut().filter(|p| p.project.dataset.is_none()) {
                p.project.dataset = Some(crate::project::DatasetRef {
                    path: dir.clone(),
                    format: None,
                });
                p.changed();
            }
            wb.open_dataset(dir, settings)
        }
        Command::SelectCase(i) => wb.select_case(i),
        Command::NextUser => {
            if let Some(i) = ui.dataset.neighbour(wb, 1) {
                wb.select_case(i);
            }
        }
        Command::PrevUser => {
            if let Some(i) = ui.dataset.neighbour(wb, -1) {
                wb.select_case(i);
            }
        }
        Command::RunSummary => wb.run_summary(settings, None),
        Command::RerunStep(step) => wb.run_summary(settings, Some(step)),
        Command::Cancel => wb.cancel_all(),
        Command::Score => wb.run_score(settings),
        Command::RunBatch => wb.run_batch(settings),
        Command::LoadResultsDialog => {
            if let Some(p) = rfd::FileDialog::new()
                .set_title("Load scores.jsonl or a sweep's metrics.json")
                .add_filter("results", &["jsonl", "json"])
                .pick_file()
            {
                ui.plots.load_results(p, wb);
            }
        }
        Command::LoadResults(p) => ui.plots.load_results(p, wb),
        Command::PickModelFile => {
            if let Some(p) = rfd::FileDialog::new()
                .set_title("Pick a model file")
                .add_filter("models", &["gguf", "safetensors"])
                .pick_file()
            {
                settings.model.model = p.display().to_string();
                wb.load_model(settings);
            }
        }
        Command::LoadModel => wb.load_model(settings),
        Command::RequestTokenCounts(texts) => wb.request_token_counts(texts),
        Command::ExportPlot { name, rect } => {
            if let Some(path) = rfd::FileDialog::new()
                .set_title("Export the plot as PNG")
                .set_file_name(format!("{name}.png"))
                .add_filter("PNG", &["png"])
                .save_file()
            {
                let ppp = ctx.pixels_per_point();
                let tasks = wb.tasks.spawner();
                let repaint = ctx.clone();
                // The image arrives after the frame; encoding and writing go to a task.
                ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
                    egui::ScreenshotCallback::new(move |image| {
                        let region = image.region(&rect, Some(ppp));
                        let spawned = tasks.spawn("plot-png", move || {
                            TaskOutput::Notice(match super::plots::write_png(&region, &path) {
                                Ok(()) => Notice::info(format!("plot saved to {}", path.display())),
                                Err(e) => Notice::error(format!("could not save the plot: {e:#}")),
                            })
                        });
                        if spawned.is_err() {
                            eprintln!("could not start saving the plot");
                        }
                        repaint.request_repaint();
                    }),
                ));
            }
        }
        Command::Curate(c) => super::curate::execute(c, wb, settings, &mut ui.curate),
        Command::Train(c) => super::train::execute(c, wb, settings, &mut ui.train),
        Command::OpenProjectDialog => {
            if let Some(p) = rfd::FileDialog::new()
                .set_title("Open or create a project file")
                .add_filter("project", &["ron"])
                .set_file_name("project.ron")
                .save_file()
            {
                open_project(app, p);
            }
        }
        Command::OpenProject(p) => open_project(app, p),
        Command::SaveProject => {
            if let Some(p) = wb.project.as_mut() {
                p.changed();
                if let Err(e) = p.flush(&mut wb.tasks) {
                    wb.notify(Notice::error(e));
                }
            }
        }
        Command::ShowExportDialog => ui.export.open = true,
        Command::ExportSftDialog => {
            let default = if ui.export.recommender {
                "recommender_sft.jsonl"
            } else {
                "summarizer_sft.jsonl"
            };
            if let Some(out) = rfd::FileDialog::new()
                .set_title("Export SFT data as JSONL")
                .set_file_name(default)
                .add_filter("JSONL", &["jsonl"])
                .save_file()
            {
                super::export_dialog::run_export(wb, &ui.export, out);
            }
        }
        Command::ExportSft(out) => super::export_dialog::run_export(wb, &ui.export, out),
        Command::SetTab(t) => ui.tab = Some(t),
        Command::ToggleHelp => ui.show_help = !ui.show_help,
        Command::ToggleTheme => {
            settings.dark = !settings.dark;
            settings.apply_theme(ctx);
        }
    }
}
