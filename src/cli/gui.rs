//! `trsr gui [--data DIR] [--model M] [--project FILE] [--autorun]`: open the window.

use eframe::egui;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::app::{engine_loader, Settings, StartOptions, WorkbenchApp};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct GuiArgs {
    /// Dataset folder to open at start.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Model to load at start: `default`, a GGUF/safetensors path, or a Hugging Face reference.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Curation project file (RON) to open; created when missing. Autosaved.
    #[arg(long, value_name = "FILE")]
    pub project: Option<PathBuf>,
    /// Select the first user and run a summary as soon as data and model are ready
    /// (used by scripts/screenshot.sh).
    #[arg(long)]
    pub autorun: bool,
    /// Settings file (RON) instead of the default one under the config folder.
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
}

pub fn run(args: GuiArgs) -> anyhow::Result<()> {
    let opts = StartOptions {
        data: args.data,
        model: args.model,
        project: args.project,
        settings_path: args.settings.or_else(Settings::default_path),
        autorun: args.autorun,
        load_model: false,
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("TRSR Workbench")
            .with_inner_size([1400.0, 900.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "TRSR Workbench",
        native,
        Box::new(move |cc| {
            let app = WorkbenchApp::new(&cc.egui_ctx, engine_loader(), opts)?;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("could not open the window (is a display available?)")
}
