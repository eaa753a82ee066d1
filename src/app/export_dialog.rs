//! File ▸ Export SFT data: the same export as `trsr export --kind recommender|summarizer`,
//! of the project as it stands in the window, written to a file chosen with rfd.

use std::path::PathBuf;

use eframe::egui;

use super::background::TaskOutput;
use super::notices::{notice_ui, Level, Notice};
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
    /// The export of the dialog's choices; `dataset`: see [`export_dataset`].
    pub fn request(&self, dataset: Option<PathBuf>) -> SftRequest {
        SftRequest {
            recommender: self.recommender,
            form: self.form,
            include_unreviewed: self.include_unreviewed,
            methods: Vec::new(),
            seed: self.seed,
            dataset,
            templates: None,
            wording: self.wording,
        }
    }
}

/// The prepared dataset the export reads: `Ok(None)` the project's own; `Ok(Some)` the
/// prepared folder open in the window when the project names none; `Err` what to do in
/// the window when there is neither.
pub fn export_dataset(wb: &Workbench) -> Result<Option<PathBuf>, String> {
    let Some(p) = wb.project.as_ref() else {
        return Err("Open a project first: exports come from its curation.".into());
    };
    if p.project.dataset.is_some() {
        return Ok(None);
    }
    match &wb.data {
        Some(d) if d.format == "jsonl" => Ok(Some(d.dir.clone())),
        Some(d) => Err(format!(
            "The project names no dataset and the folder open in the window ({}) is a raw {} \
             folder. Open a prepared dataset folder (one with items.jsonl and cases.jsonl) with \
             File > Open dataset folder; the project then names it.",
            d.dir.display(),
            d.format
        )),
        None => Err(
            "The project names no dataset. Open its prepared dataset folder (one with \
             items.jsonl and cases.jsonl) with File > Open dataset folder; the project then \
             names it."
                .into(),
        ),
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
            let dataset = export_dataset(wb);
            if wb.project.is_none() {
                if let Err(e) = &dataset {
                    ui.label(e.as_str());
                }
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
            match &dataset {
                Ok(Some(dir)) => {
                    ui.weak(format!(
                        "Dataset: {} (open in the window; the project names none)",
                        dir.display()
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    notice_ui(ui, Level::Warning, e.as_str());
                }
            }
            if ui
                .add_enabled(dataset.is_ok(), egui::Button::new("Export to file..."))
                .clicked()
            {
                cmds.push(Command::ExportSftDialog);
            }
        });
    d.open = open;
}

/// Runs the export as a background task; the outcome goes to the notices.
pub fn run_export(wb: &mut Workbench, dialog: &ExportDialog, out: PathBuf) {
    let dataset = match export_dataset(wb) {
        Ok(d) => d,
        Err(e) => {
            wb.notify(Notice::error(format!("export not started: {e}")));
            return;
        }
    };
    let Some(p) = wb.project.as_ref() else { return };
    let req = dialog.request(dataset);
    let project = p.project.clone();
    let path = p.path.clone();
    let spawned = wb.tasks.spawn("export", move || {
        TaskOutput::Notice(
            match sft_export(&path, &project, &req)
                .and_then(|(bytes, m)| write_out(&out, &bytes).map(|_| m))
            {
                Ok(m) => Notice::info(format!("exported {m} to {}", out.display())),
                Err(e) => Notice::error(format!("export failed: {e:#}")),
            },
        )
    });
    if let Err(e) = spawned {
        wb.notify(Notice::error(format!("could not start the export: {e}")));
    }
}
