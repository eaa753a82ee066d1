//! The Curation tab's drawing and keys: the counters and re-run button, the case list,
//! each summary of the shown case with its status, editor, word diff and notes, and the
//! ranking before and after a re-score. Asks for every change with a [`Command`].

use crate::app::notices::{notice_ui, Level};
use eframe::egui;
use egui::{Key as EKey, Modifiers};

use super::actions::CurateCmd;
use super::session::ProjectSession;
use super::state::{entries, selected_key, target_rank, targets, CaseFilter, CuratePanel};
use crate::app::{Command, Workbench};
use crate::curate::{self, Curation, DiffOp, Edit, Key, Scope, Status, Target};
use crate::metrics::ScoredCandidate;

/// The curation keys, shown in the help overlay. Plain letters act only while the
/// Curation tab is shown and no text field has the focus.
pub const CURATE_SHORTCUTS: &[(&str, &str)] = &[
    ("A", "Accept the selected summary"),
    ("R", "Reject the selected summary"),
    ("F", "Flag the selected summary"),
    ("E", "Edit the selected summary"),
    ("J / K", "Next / previous case"),
    ("N / P", "Next / previous summary of the case"),
    ("Ctrl+Z", "Undo (curation)"),
    ("Ctrl+Shift+Z, Ctrl+Y", "Redo (curation)"),
];

/// The curation keys. Undo/redo act on any tab (not while a text field has the
/// focus: it has its own undo); the letters only on the Curation tab.
pub fn curate_shortcuts(
    ctx: &egui::Context,
    wb: &Workbench,
    state: &CuratePanel,
    on_tab: bool,
    cmds: &mut Vec<Command>,
) {
    if wb.project.is_none() || ctx.text_edit_focused() {
        return;
    }
    let key = selected_key(state);
    ctx.input_mut(|i| {
        if i.consume_key(Modifiers::COMMAND | Modifiers::SHIFT, EKey::Z)
            || i.consume_key(Modifiers::COMMAND, EKey::Y)
        {
            cmds.push(Command::Curate(CurateCmd::Redo));
        }
        if i.consume_key(Modifiers::COMMAND, EKey::Z) {
            cmds.push(Command::Curate(CurateCmd::Undo));
        }
        if !on_tab {
            return;
        }
        for (k, cmd) in [
            (EKey::J, CurateCmd::Move(1)),
            (EKey::K, CurateCmd::Move(-1)),
            (EKey::N, CurateCmd::MoveTarget(1)),
            (EKey::P, CurateCmd::MoveTarget(-1)),
            (EKey::E, CurateCmd::StartEdit),
        ] {
            if i.consume_key(Modifiers::NONE, k) {
                cmds.push(Command::Curate(cmd));
            }
        }
        if let Some(key) = &key {
            for (k, s) in [
                (EKey::A, Status::Accepted),
                (EKey::R, Status::Rejected),
                (EKey::F, Status::Flagged),
            ] {
                if i.consume_key(Modifiers::NONE, k) {
                    cmds.push(Command::Curate(CurateCmd::Apply(
                        key.clone(),
                        Edit::SetStatus(s),
                    )));
                }
            }
        }
    });
}

fn status_color(ui: &egui::Ui, s: Status) -> egui::Color32 {
    match s {
        Status::Unreviewed => ui.visuals().weak_text_color(),
        Status::Accepted => egui::Color32::from_rgb(60, 160, 80),
        Status::Rejected => ui.visuals().error_fg_color,
        Status::Flagged => ui.visuals().warn_fg_color,
    }
}

/// Draws the word diff: deletions struck through in red, insertions in green.
fn diff_ui(ui: &mut egui::Ui, ops: &[DiffOp]) {
    let mut job = egui::text::LayoutJob::default();
    let base = egui::TextFormat {
        color: ui.visuals().text_color(),
        ..Default::default()
    };
    for op in ops {
        let fmt = match op {
            DiffOp::Equal(_) => base.clone(),
            DiffOp::Insert(_) => egui::TextFormat {
                color: egui::Color32::from_rgb(40, 150, 60),
                background: egui::Color32::from_rgba_unmultiplied(40, 150, 60, 40),
                ..base.clone()
            },
            DiffOp::Delete(_) => egui::TextFormat {
                color: ui.visuals().error_fg_color,
                strikethrough: egui::Stroke::new(1.0, ui.visuals().error_fg_color),
                ..base.clone()
            },
        };
        job.append(op.text(), 0.0, fmt);
    }
    job.wrap.max_width = ui.available_width();
    ui.label(job);
}

/// The Curation tab.
pub fn curate_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    state: &mut CuratePanel,
    cmds: &mut Vec<Command>,
) {
    let Some(p) = wb.project.as_ref() else {
        ui.label("No project is open. Curation is kept in a project file.");
        if ui.button("Open or create a project...").clicked() {
            cmds.push(Command::OpenProjectDialog);
        }
        ui.weak("or start the window with `trsr gui --project FILE`");
        return;
    };
    let cur = &p.project.curation;
    // Follow the user selected in the dataset list.
    let selected = wb.selected_case().map(|c| c.case.clone());
    // (Also while nothing is shown: the selected user's summary may arrive later.)
    if selected != state.last_selected || state.current.is_none() {
        if let Some(case) = &selected {
            if let Some((c, m, _)) = cur.traces().find(|(c, _, _)| c == case) {
                state.current = Some((c.to_string(), m.to_string()));
                state.target = Some(Target::Final);
                state.editor = None;
            }
        }
        state.last_selected = selected;
    }
    header_ui(ui, p, state, cmds);
    ui.separator();
    let list = entries(cur, state.filter);
    case_list_ui(ui, cur, &list, state, cmds);
    let Some((case, method)) = state.current.clone() else {
        if list.is_empty() {
            ui.label(
                "No summaries in the project yet: run a summary (Summaries tab) and it is added \
                 here.",
            );
        } else {
            ui.label("Pick a case (J / K).");
        }
        return;
    };
    let Some(trace) = cur.trace(&case, &method) else {
        ui.label(format!("{case} / {method} is not in the project"));
        return;
    };
    let stale = cur.staleness(&case, &method).unwrap_or_default();
    let target = state.target.unwrap_or(Target::Final);
    egui::ScrollArea::vertical()
        .id_salt("curate summaries")
        .show(ui, |ui| {
            ui.heading(format!("{case} · {method}"));
            for t in targets(cur, &case, &method) {
                let key = Key::new(case.clone(), method.clone(), t);
                let s = cur.status(&key);
                let kind = match t {
                    Target::Step(i) => trace.steps[i].kind.name(),
                    Target::Final => "final",
                };
                let is_stale = match t {
                    Target::Step(i) => stale.steps.contains(&i),
                    Target::Final => stale.final_stale,
                };
                let edited = cur.annotation(&key).is_some_and(|a| a.is_edited());
                let head = format!(
                    "{t} · {kind} · {}{}{}",
                    s.name(),
                    if edited { " · edited" } else { "" },
                    if is_stale { " · STALE" } else { "" }
                );
                let on = t == target;
                ui.separator();
                if ui
                    .selectable_label(on, egui::RichText::new(head).color(status_color(ui, s)))
                    .clicked()
                {
                    cmds.push(Command::Curate(CurateCmd::SelectTarget(t)));
                }
                if on {
                    selected_ui(ui, cur, &key, state, cmds);
                } else {
                    let text = cur.effective_text(&key).unwrap_or_default();
                    ui.add(egui::Label::new(egui::RichText::new(text).weak()).truncate());
                }
            }
            ui.separator();
            ranking_change_ui(ui, trace, stale.scores_stale);
            if !p.log.is_empty() {
                ui.collapsing("Re-run log", |ui| {
                    for l in p.log.iter().rev().take(20) {
                        ui.weak(l);
                    }
                });
            }
        });
}

/// The counters, the list filter, undo / redo, "Re-run stale" and the save state.
fn header_ui(
    ui: &mut egui::Ui,
    p: &ProjectSession,
    state: &mut CuratePanel,
    cmds: &mut Vec<Command>,
) {
    let cur = &p.project.curation;
    let all = cur.counts(Scope::All);
    let finals = cur.counts(Scope::Finals);
    let plan = cur.rerun_plan();
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("{} done · {} left", all.done(), all.left()))
            .on_hover_text(format!(
                "all summaries (steps and finals): {} accepted, {} rejected, {} flagged, {} \
                 unreviewed; final summaries: {} done, {} left",
                all.accepted,
                all.rejected,
                all.flagged,
                all.unreviewed,
                finals.done(),
                finals.left()
            ));
        ui.separator();
        ui.label(format!(
            "{} accepted · {} rejected · {} flagged",
            all.accepted, all.rejected, all.flagged
        ));
        ui.separator();
        egui::ComboBox::from_label("show")
            .selected_text(state.filter.label())
            .show_ui(ui, |ui| {
                for f in CaseFilter::ALL {
                    ui.selectable_value(&mut state.filter, f, f.label());
                }
            });
        ui.separator();
        if ui
            .add_enabled(cur.can_undo(), egui::Button::new("Undo"))
            .on_hover_text("Ctrl+Z")
            .clicked()
        {
            cmds.push(Command::Curate(CurateCmd::Undo));
        }
        if ui
            .add_enabled(cur.can_redo(), egui::Button::new("Redo"))
            .on_hover_text("Ctrl+Shift+Z")
            .clicked()
        {
            cmds.push(Command::Curate(CurateCmd::Redo));
        }
        ui.separator();
        let running = !p.jobs.is_empty();
        let label = if running {
            format!("Re-running ({} jobs)", p.jobs.len())
        } else {
            format!("Re-run stale ({})", plan.len())
        };
        if ui
            .add_enabled(!plan.is_empty() && !running, egui::Button::new(label))
            .on_hover_text(
                "re-run exactly the stale steps (from the first stale one), then re-score",
            )
            .clicked()
        {
            cmds.push(Command::Curate(CurateCmd::RerunStale));
        }
        ui.separator();
        ui.weak(&p.save_state);
        if p.autosaver.is_dirty() || p.is_saving() {
            ui.weak("(unsaved changes)");
        }
    });
}

/// The (case, method) list, coloured by the final summary's status.
fn case_list_ui(
    ui: &mut egui::Ui,
    cur: &Curation,
    list: &[(String, String)],
    state: &CuratePanel,
    cmds: &mut Vec<Command>,
) {
    egui::Panel::left("curate cases")
        .resizable(true)
        .default_size(220.0)
        .show(ui, |ui| {
            ui.label(format!("{} cases", list.len()));
            egui::ScrollArea::vertical().show(ui, |ui| {
                for (case, method) in list {
                    let s = cur.status(&Key::final_of(case, method));
                    let stale = cur.staleness(case, method).is_ok_and(|s| !s.is_fresh());
                    let on = state.current.as_ref() == Some(&(case.clone(), method.clone()));
                    let text = egui::RichText::new(format!(
                        "{case} · {method} · {}{}",
                        s.name(),
                        if stale { " · stale" } else { "" }
                    ))
                    .color(status_color(ui, s));
                    if ui.selectable_label(on, text).clicked() {
                        cmds.push(Command::Curate(CurateCmd::Select(
                            case.clone(),
                            method.clone(),
                        )));
                    }
                }
            });
        });
}

/// The selected summary: its text or editor, the diff, status buttons and notes.
fn selected_ui(
    ui: &mut egui::Ui,
    cur: &Curation,
    key: &Key,
    state: &mut CuratePanel,
    cmds: &mut Vec<Command>,
) {
    ui.horizontal(|ui| {
        for (label, s) in [
            ("Accept (A)", Status::Accepted),
            ("Reject (R)", Status::Rejected),
            ("Flag (F)", Status::Flagged),
            ("Unreviewed", Status::Unreviewed),
        ] {
            if ui.selectable_label(cur.status(key) == s, label).clicked() {
                cmds.push(Command::Curate(CurateCmd::Apply(
                    key.clone(),
                    Edit::SetStatus(s),
                )));
            }
        }
        if ui.button("Edit (E)").clicked() {
            cmds.push(Command::Curate(CurateCmd::StartEdit));
        }
    });
    let editing = state.editor.as_ref().is_some_and(|(k, _)| k == key);
    if editing {
        let mut save = None;
        let mut cancel = false;
        if let Some((_, text)) = state.editor.as_mut() {
            ui.add(
                egui::TextEdit::multiline(text)
                    .desired_width(f32::INFINITY)
                    .desired_rows(4)
                    .hint_text("the summary as it should read"),
            )
            .labelled_by(ui.label("Edited summary").id);
            ui.horizontal(|ui| {
                if ui.button("Save edit").clicked() {
                    save = Some(text.clone());
                }
                if ui.button("Cancel edit").clicked() {
                    cancel = true;
                }
            });
        }
        if let Some(text) = save {
            cmds.push(Command::Curate(CurateCmd::Apply(
                key.clone(),
                Edit::SetText(Some(text)),
            )));
            state.editor = None;
        } else if cancel {
            state.editor = None;
        }
    } else {
        match cur.annotation(key).filter(|a| a.is_edited()) {
            Some(a) => {
                ui.label("Edited (word diff against the model's text):");
                diff_ui(ui, &a.diff());
                if ui.button("Revert to the model's text").clicked() {
                    cmds.push(Command::Curate(CurateCmd::Apply(
                        key.clone(),
                        Edit::SetText(None),
                    )));
                }
            }
            None => {
                let text = cur.effective_text(key).unwrap_or_default();
                ui.label(text);
            }
        }
        if cur.review_outdated(key) {
            notice_ui(
                ui,
                Level::Warning,
                "reviewed against an earlier model text: review again",
            );
        }
    }
    // Notes: typed into the panel's buffer, committed as one edit when the field
    // loses the focus.
    let stored = cur
        .annotation(key)
        .map(|a| a.notes.clone())
        .unwrap_or_default();
    if state.notes.as_ref().is_none_or(|(k, _)| k != key) {
        state.notes = Some((key.clone(), stored.clone()));
    }
    if let Some((_, notes)) = state.notes.as_mut() {
        let label = ui.label("Notes");
        let r = ui
            .add(egui::TextEdit::singleline(notes).desired_width(f32::INFINITY))
            .labelled_by(label.id);
        if r.lost_focus() && *notes != stored {
            cmds.push(Command::Curate(CurateCmd::Apply(
                key.clone(),
                Edit::SetNotes(notes.clone()),
            )));
        }
    }
}

/// The ranking with this summary before and after the latest re-score.
fn ranking_change_ui(ui: &mut egui::Ui, trace: &curate::TraceRecord, scores_stale: bool) {
    let Some(after) = trace.scores.as_ref() else {
        ui.weak("Not ranked with this summary yet (Ranking tab).");
        return;
    };
    let rank = |c: &[ScoredCandidate]| {
        target_rank(c).map_or("-".to_string(), |r| format!("#{r} of {}", c.len()))
    };
    let before = trace.scores_before.as_deref();
    ui.label(format!(
        "Ranking of the target: before {} · after {}{}",
        before.map_or("-".to_string(), rank),
        rank(after),
        if scores_stale { " (stale: re-run)" } else { "" }
    ));
    egui::Grid::new("curate ranking")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            ui.strong("candidate");
            ui.strong("before");
            ui.strong("after");
            ui.end_row();
            for c in after {
                let b = before
                    .and_then(|b| b.iter().find(|x| x.id == c.id))
                    .map_or("-".to_string(), |x| format!("{:.3}", x.score));
                ui.label(format!(
                    "{}{}",
                    c.id,
                    if c.label > 0 { " (target)" } else { "" }
                ));
                ui.label(b);
                ui.label(format!("{:.3}", c.score));
                ui.end_row();
            }
        });
}
