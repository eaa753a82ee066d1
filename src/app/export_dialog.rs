//! File ▸ Export SFT data: the same export as `trsr export --kind recommender|summarizer`,
//! of the project as it stands in the window, written to a file chosen with rfd.

use std::path::PathBuf;

use eframe::egui;

use super::{Command, Workbench};
use crate::export::SftForm;
use crate::export::{sft_export, write_out, SftRequest};
use crate::prompt::Wording;

/// The dialog's choices.
pub struct ExportDialog {
    pub open: bool,
    pub recommender: bool,
    pub form: SftForm,
    pub include_unreviewed: bool,
    /// `None`: guessed from the items.
    pub wording: Option<Wording>,
    pub seed: u64,
}

impl Default for ExportDialog {
    fn default() -> Self {
        Self {
            open: false,
            recommender: true,
            form: SftForm::PromptCompletion,
            include_unreviewed: false,
            wording: None,
            seed: 42,
        }
    }
}

impl ExportDialog {
    pub fn request(&self) -> SftRequest {
        SftRequest {
            recommender: self.recommender,
            form: self.form,
            include_unreviewed: self.include_unreviewed,
            methods: Vec::new(),
            seed: self.seed,
            dataset: None,
            templates: None,
            wording: self.wording,
        }
    }
}

/// Draws the dialog (when open).
pub fn export_dialog_ui(
    ctx: &egui::Context,
    wb: &Workbench,
    d: &mut ExportDialog,
    cmds: &mut Vec<Command>,
) {
    if !d.open {
        return;
    }
    let mut open = d.open;
    egui::Window::new("Export SFT data")
        .open(&mut open)
        .collapsible(false)
        .show(ctx, |ui| {
            if wb.project.is_none() {
                ui.label("Open a project first: exports come from its curation.");
                return;
            }
            ui.horizontal(|ui| {
                ui.label("Data:");
                ui.radio_value(&mut d.recommender, true, "recommender (yes / no)");
                ui.radio_value(&mut d.recommender, false, "summarizer");
            });
            ui.horizontal(|ui| {
                ui.label("Form:");
                ui.radio_value(
                    &mut d.form,
                    SftForm::PromptCompletion,
                    "prompt / completion",
                );
                ui.radio_value(&mut d.form, SftForm::Messages, "chat messages");
            });
            ui.horizontal(|ui| {
                ui.label("Wording:");
                ui.radio_value(&mut d.wording, None, "guess");
                ui.radio_value(&mut d.wording, Some(Wording::News), "news");
                ui.radio_value(&mut d.wording, Some(Wording::Products), "products");
            });
            ui.checkbox(
                &mut d.include_unreviewed,
                "also unreviewed summaries (never rejected or flagged ones)",
            );
            ui.horizontal(|ui| {
                ui.label("Seed of the negatives");
                ui.add(egui::DragValue::new(&mut d.seed));
            });
            if ui.button("Export to file...").clicked() {
                cmds.push(Command::ExportSftDialog);
            }
        });
    d.open = open;
}

/// Runs the export on a background thread; the outcome goes to the notices.
pub fn run_export(wb: &Workbench, req: SftRequest, out: PathBuf) {
    let Some(p) = wb.project.as_ref() else { return };
    let project = p.project.clone();
    let path = p.path.clone();
    let notices = wb.async_notices.clone();
    let wake = wb.wake.clone();
    let spawned = std::thread::Builder::new()
        .name("export".into())
        .spawn(move || {
            let msg = match sft_export(&path, &project, &req)
                .and_then(|(bytes, m)| write_out(&out, &bytes).map(|_| m))
            {
                Ok(m) => format!("exported {m} to {}", out.display()),
                Err(e) => format!("export failed: {e:#}"),
            };
            if let Ok(mut n) = notices.lock() {
                n.push(msg);
            }
            wake();
        });
    if let Err(e) = spawned {
        if let Ok(mut n) = wb.async_notices.lock() {
            n.push(format!("could not start the export: {e}"));
        }
    }
}
