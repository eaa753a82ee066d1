//! Opening the native window: eframe's options and `run_native`, kept beside the app rather
//! than in the command-line parser (rerun keeps this in its viewer's `native.rs`).

use anyhow::Context as _;
use eframe::egui;

use super::{engine_loader, StartOptions, WorkbenchApp};

/// Opens the workbench window and blocks until it is closed.
pub fn run_native(opts: StartOptions) -> anyhow::Result<()> {
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
