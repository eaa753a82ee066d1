//! The dataset panel: open, progress, load report, the users list (virtualized), search, filters.

use super::{Command, Settings, Workbench};
use crate::app::notices::{notice_ui, Level};
use crate::worker::dataset::LoadedData;
use eframe::egui;

/// The dataset panel's own state.
#[derive(Default)]
pub struct DatasetPanel {
    pub query: String,
    pub min_len: usize,
    pub max_len: usize,
    /// Only users whose curated summary has this status (with a project open).
    pub curate_filter: super::curate::CaseFilter,
    /// Case indices passing the search and filters (recomputed when they change).
    pub filtered: Vec<usize>,
    /// Those passing the search and length filters (before the curation filter).
    base: Vec<usize>,
    curate_applied: bool,
    key: Option<(String, usize, usize, u64, usize)>,
    pub show_report: bool,
}

impl DatasetPanel {
    /// Recomputes the filtered list when the query, filters or data changed.
    pub fn refresh(&mut self, wb: &Workbench) {
        let Some(data) = &wb.data else {
            self.filtered.clear();
            self.key = None;
            return;
        };
        let key = (
            self.query.clone(),
            self.min_len,
            self.max_len,
            wb.revision,
            data.cases.len(),
        );
        let changed = self.key.as_ref() != Some(&key);
        if changed {
            self.base = filter_cases(data, &self.query, self.min_len, self.max_len);
            self.key = Some(key);
        }
        // The curation changes with every review: that filter is applied afresh.
        let curation = wb
            .project
            .as_ref()
            .map(|p| &p.project.curation)
            .filter(|_| self.curate_filter != super::curate::CaseFilter::All);
        if let Some(cur) = curation {
            let keep: std::collections::HashSet<String> =
                super::curate::entries(cur, self.curate_filter)
                    .into_iter()
                    .map(|(case, _)| case)
                    .collect();
            self.filtered = self
                .base
                .iter()
                .copied()
                .filter(|&i| keep.contains(&data.cases[i].case))
                .collect();
        } else if changed || self.curate_applied {
            self.filtered = self.base.clone();
        }
        self.curate_applied = curation.is_some();
    }

    /// The case `delta` rows away from the selected one in the filtered list.
    pub fn neighbour(&mut self, wb: &Workbench, delta: isize) -> Option<usize> {
        self.refresh(wb);
        if self.filtered.is_empty() {
            return None;
        }
        let pos = wb
            .selected
            .and_then(|s| self.filtered.iter().position(|&i| i == s));
        let next = match pos {
            None => 0,
            Some(p) => (p as isize + delta).clamp(0, self.filtered.len() as isize - 1) as usize,
        };
        self.filtered.get(next).copied()
    }
}

/// Cases whose user or case id contains `query`, or whose history or target holds an item
/// whose text contains it; history length within `[min_len, max_len]` (0 = no bound).
pub fn filter_cases(data: &LoadedData, query: &str, min_len: usize, max_len: usize) -> Vec<usize> {
    let q = query.trim().to_lowercase();
    // Items whose text matches, found once over the catalogue.
    let matching_items: Option<std::collections::HashSet<usize>> = (!q.is_empty()).then(|| {
        data.item_text_lower
            .iter()
            .enumerate()
            .filter(|(_, t)| t.contains(&q))
            .map(|(i, _)| i)
            .collect()
    });
    data.cases
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let n = c.history.len();
            n >= min_len && (max_len == 0 || n <= max_len)
        })
        .filter(|(_, c)| match &matching_items {
            None => true,
            Some(items) => {
                c.user.to_lowercase().contains(&q)
                    || c.case.to_lowercase().contains(&q)
                    || c.history
                        .iter()
                        .chain(std::iter::once(&c.target))
                        .any(|id| {
                            data.catalogue
                                .position(id)
                                .is_some_and(|p| items.contains(&p))
                        })
            }
        })
        .map(|(i, _)| i)
        .collect()
}

pub fn dataset_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut DatasetPanel,
    cmds: &mut Vec<Command>,
) {
    ui.horizontal(|ui| {
        ui.heading("Dataset");
        if ui
            .button("Open...")
            .on_hover_text(format!(
                "Open a dataset folder ({}); or drop one on the window",
                super::command::shortcut_text(ui.ctx(), Command::OpenDatasetDialog)
            ))
            .clicked()
        {
            cmds.push(Command::OpenDatasetDialog);
        }
        super::command::recent_menu_ui(ui, settings, cmds);
    });
    if wb.loading.is_some() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(&wb.load_progress.0);
        });
        ui.add(egui::ProgressBar::new(wb.load_progress.1).show_percentage());
    }
    if let Some(e) = &wb.load_error {
        notice_ui(ui, Level::Error, e.as_str());
    }
    let Some(data) = &wb.data else {
        ui.label("No dataset open. Open a folder or drop one here.");
        return;
    };
    ui.label(format!(
        "{} · {} · {} items · {} users",
        data.dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        data.format,
        data.catalogue.len(),
        data.cases.len()
    ))
    .on_hover_text(data.dir.display().to_string());
    egui::CollapsingHeader::new("Load report").show(ui, |ui| {
        let r = &data.report;
        ui.label(format!("rows read: {}", r.rows_read));
        ui.label(format!("items: {} · sequences: {}", r.items, r.sequences));
        ui.label(format!("unresolved ids: {}", r.unresolved_ids));
        if r.skipped.is_empty() {
            ui.label("skipped: none");
        }
        for (why, n) in &r.skipped {
            ui.label(format!("skipped {n}: {why}"));
        }
        for e in &r.examples {
            ui.weak(e);
        }
    });
    ui.separator();
    let l = ui.label("Search");
    ui.add(egui::TextEdit::singleline(&mut panel.query).hint_text("user id or item text"))
        .labelled_by(l.id);
    ui.horizontal(|ui| {
        ui.label("History length");
        ui.add(
            egui::DragValue::new(&mut panel.min_len)
                .prefix(">= ")
                .range(0..=10_000),
        )
        .on_hover_text("minimum history length");
        ui.add(
            egui::DragValue::new(&mut panel.max_len)
                .prefix("<= ")
                .range(0..=10_000),
        )
        .on_hover_text("maximum history length (0 = any)");
    });
    if wb.project.is_some() {
        egui::ComboBox::from_label("curation")
            .selected_text(panel.curate_filter.label())
            .show_ui(ui, |ui| {
                for f in super::curate::CaseFilter::ALL {
                    ui.selectable_value(&mut panel.curate_filter, f, f.label());
                }
            })
            .response
            .on_hover_text("only users whose final summary has this curation status");
    }
    panel.refresh(wb);
    ui.label(format!(
        "{} of {} users",
        panel.filtered.len(),
        data.cases.len()
    ));
    ui.separator();
    let row_h = ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
    let hint = format!(
        "{} / {}",
        super::command::shortcut_text(ui.ctx(), Command::NextUser),
        super::command::shortcut_text(ui.ctx(), Command::PrevUser)
    );
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show_rows(ui, row_h, panel.filtered.len(), |ui, range| {
            for row in range {
                let i = panel.filtered[row];
                let c = &data.cases[i];
                let text = format!("{}  ({} items)", c.user, c.history.len());
                let r = ui.selectable_label(wb.selected == Some(i), text);
                if r.clicked() {
                    cmds.push(Command::SelectCase(i));
                }
                r.on_hover_text(format!("case {}; next/previous user: {hint}", c.case));
            }
        });
}
