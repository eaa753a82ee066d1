//! The Curation tab driven headless with egui_kittest: keys change statuses and
//! counters, edits undo and redo, the project is saved and reopened with its
//! annotations, and "Re-run stale" re-runs exactly the stale steps.

mod common;

use std::path::{Path, PathBuf};

use common::scripted::Scripted;
use common::ui::step_until;
use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use trsr::app::{StartOptions, Tab, WorkbenchApp};
use trsr::curate::{Curation, Edit, Key, Status, StepKind};
use trsr::project::{DatasetRef, Project};

/// A project on `data` with recurrent traces of c1 and c2 (2 steps each).
fn project_file(dir: &Path, data: &Path) -> PathBuf {
    let mut c = Curation::new();
    for case in ["c1", "c2"] {
        c.register_trace(
            case,
            "recurrent",
            vec![
                (
                    StepKind::Block,
                    vec!["N1".into(), "N2".into()],
                    format!("{case} likes football"),
                ),
                (
                    StepKind::Update,
                    vec!["N3".into()],
                    format!("{case} likes football and elections"),
                ),
            ],
            None,
        )
        .unwrap();
    }
    let p = Project {
        dataset: Some(DatasetRef {
            path: data.to_path_buf(),
            format: None,
        }),
        curation: c,
        ..Project::default()
    };
    let path = dir.join("project.ron");
    p.save(&path).unwrap();
    path
}

/// The app on `data` with `project` open and a model that answers at once with a
/// numbered text (plumbing only).
fn harness(data: &Path, project: &Path, model: Option<String>) -> Harness<'static, WorkbenchApp> {
    common::ui::harness(
        Scripted::numbered("quick-fake").loader(),
        data,
        StartOptions {
            project: Some(project.to_path_buf()),
            model,
            ..StartOptions::default()
        },
    )
}

fn curation<'a>(h: &'a Harness<'static, WorkbenchApp>) -> &'a Curation {
    &h.state().wb.project.as_ref().unwrap().project.curation
}

fn ready(dir: &Path, data: &Path) -> Harness<'static, WorkbenchApp> {
    let project = project_file(dir, data);
    let mut h = harness(data, &project, None);
    step_until(&mut h, "the dataset", 30, |a| a.wb.data.is_some());
    assert_eq!(h.state().ui.tab, Some(Tab::Curation));
    h
}

#[test]
fn accept_and_reject_keys_change_the_counters() {
    let data = common::three_users_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut h = ready(dir.path(), data.path());
    // 2 traces x (2 steps + final).
    h.get_by_label("0 done · 6 left");
    h.get_by_label("c1 · recurrent · unreviewed");
    h.key_press(egui::Key::A);
    h.run_steps(2);
    h.get_by_label("1 done · 5 left");
    assert_eq!(
        curation(&h).status(&Key::final_of("c1", "recurrent")),
        Status::Accepted
    );
    // J: the next case; R rejects its final summary.
    h.key_press(egui::Key::J);
    h.run_steps(2);
    assert_eq!(
        h.state().wb.selected,
        Some(1),
        "J follows in the users list"
    );
    h.key_press(egui::Key::R);
    h.run_steps(2);
    h.get_by_label("2 done · 4 left");
    assert_eq!(
        curation(&h).status(&Key::final_of("c2", "recurrent")),
        Status::Rejected
    );
    // P: the step before the final; F flags it.
    h.key_press(egui::Key::P);
    h.run_steps(2);
    h.key_press(egui::Key::F);
    h.run_steps(2);
    h.get_by_label("3 done · 3 left");
    assert_eq!(
        curation(&h).status(&Key::step("c2", "recurrent", 1)),
        Status::Flagged
    );
    // The filter shows only the rejected case.
    assert_eq!(
        trsr::app::curate::entries(
            curation(&h),
            trsr::app::curate::CaseFilter::Status(Status::Rejected)
        ),
        vec![("c2".to_string(), "recurrent".to_string())]
    );
    // The users list filtered by curation status.
    h.state_mut().ui.dataset.curate_filter =
        trsr::app::curate::CaseFilter::Status(Status::Rejected);
    h.run_steps(2);
    h.get_by_label("1 of 3 users");
    h.state_mut().ui.dataset.curate_filter = trsr::app::curate::CaseFilter::All;
    h.run_steps(2);
    h.get_by_label("3 of 3 users");
    // K goes back; Ctrl+Z undoes the flag, the reject, then the accept.
    h.key_press(egui::Key::K);
    h.run_steps(2);
    assert_eq!(h.state().wb.selected, Some(0));
    for left in [4, 5, 6] {
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
        h.run_steps(2);
        h.get_by_label(&format!("{} done · {left} left", 6 - left));
    }
}

#[test]
fn edit_shows_a_word_diff_and_undo_restores_the_model_text() {
    let data = common::three_users_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut h = ready(dir.path(), data.path());
    let key = Key::final_of("c1", "recurrent");
    h.key_press(egui::Key::E);
    h.run_steps(2);
    let editor =
        h.get_by_role_and_label(egui::accesskit::Role::MultilineTextInput, "Edited summary");
    editor.focus();
    h.run_steps(1);
    h.get_by_role_and_label(egui::accesskit::Role::MultilineTextInput, "Edited summary")
        .type_text(" and cooking");
    h.run_steps(2);
    // While the editor has the focus, letters type instead of acting.
    assert_eq!(curation(&h).status(&key), Status::Unreviewed);
    h.get_by_label("Save edit").click();
    h.run_steps(3);
    assert_eq!(
        curation(&h).effective_text(&key).unwrap(),
        "c1 likes football and elections and cooking"
    );
    h.get_by_label_contains("word diff");
    // The final's last step is not changed by editing the final itself.
    assert!(curation(&h)
        .staleness("c1", "recurrent")
        .unwrap()
        .is_fresh());
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(2);
    assert_eq!(
        curation(&h).effective_text(&key).unwrap(),
        "c1 likes football and elections"
    );
    assert!(curation(&h).annotation(&key).is_none_or(|a| !a.is_edited()));
    h.key_press_modifiers(
        egui::Modifiers::COMMAND | egui::Modifiers::SHIFT,
        egui::Key::Z,
    );
    h.run_steps(2);
    assert!(curation(&h)
        .effective_text(&key)
        .unwrap()
        .ends_with("and cooking"));
}

#[test]
fn annotations_are_autosaved_and_survive_reopening() {
    let data = common::three_users_dir();
    let dir = tempfile::tempdir().unwrap();
    let project = project_file(dir.path(), data.path());
    {
        let mut h = harness(data.path(), &project, None);
        step_until(&mut h, "the dataset", 30, |a| a.wb.data.is_some());
        h.key_press(egui::Key::A);
        h.run_steps(2);
        // Edit step 0 through the panel's command path (as the editor would).
        h.state_mut()
            .push_command(trsr::app::Command::Curate(trsr::app::CurateCmd::Apply(
                Key::step("c1", "recurrent", 0),
                Edit::SetText(Some("c1 likes football a lot".into())),
            )));
        h.run_steps(2);
        // The debounced autosave writes it without being asked.
        step_until(&mut h, "the autosave", 30, |a| {
            let p = a.wb.project.as_ref().unwrap();
            !p.autosaver.is_dirty() && !p.is_saving()
        });
        let saved = Project::load(&project).unwrap();
        assert_eq!(
            saved.curation.status(&Key::final_of("c1", "recurrent")),
            Status::Accepted
        );
        // One more change, then exit-style flush.
        h.key_press(egui::Key::J);
        h.run_steps(1);
        h.key_press(egui::Key::F);
        h.run_steps(1);
        h.state_mut().flush_project().unwrap();
    }
    let saved = Project::load(&project).unwrap();
    let c = &saved.curation;
    assert_eq!(c.status(&Key::final_of("c2", "recurrent")), Status::Flagged);
    assert_eq!(
        c.effective_text(&Key::step("c1", "recurrent", 0)).unwrap(),
        "c1 likes football a lot"
    );
    // The edit made step 1 (and the final) stale; that survives too.
    assert_eq!(c.staleness("c1", "recurrent").unwrap().steps, vec![1]);
    // Reopened in a new window: counters and the stale mark are back.
    let mut h = harness(data.path(), &project, None);
    step_until(&mut h, "the dataset", 30, |a| a.wb.data.is_some());
    h.get_by_label("2 done · 4 left");
    h.get_by_label("step 1 · update · unreviewed · STALE");
    h.get_by_label("Re-run stale (1)");
}

#[test]
fn rerun_stale_regenerates_only_the_stale_steps_and_rescores() {
    let data = common::three_users_dir();
    let dir = tempfile::tempdir().unwrap();
    // A new, empty project on the dataset.
    let project = dir.path().join("new.ron");
    let mut h = harness(data.path(), &project, Some("fake".into()));
    step_until(&mut h, "data and model", 30, |a| {
        a.wb.data.is_some() && a.wb.context_len().is_some()
    });
    assert!(project.is_file(), "the project file is created at start");
    h.state_mut().settings.method = trsr::summarize::Method::Recurrent;
    h.get_by_label_contains("U3  (20 items)").click();
    h.run_steps(2);
    h.get_by_label("Summaries").click();
    h.run_steps(2);
    h.get_by_label("Run summary").click();
    step_until(&mut h, "the summary in the project", 60, |a| {
        a.wb.project
            .as_ref()
            .unwrap()
            .project
            .curation
            .trace("c3", "recurrent")
            .is_some()
    });
    let n = curation(&h).trace("c3", "recurrent").unwrap().steps.len();
    assert!(n >= 3, "20 items make several recurrent steps, got {n}");
    h.get_by_label("Ranking").click();
    h.run_steps(2);
    h.get_by_label("Rank candidates").click();
    step_until(&mut h, "the scores in the project", 60, |a| {
        a.wb.project
            .as_ref()
            .unwrap()
            .project
            .curation
            .trace("c3", "recurrent")
            .is_some_and(|t| t.scores.is_some())
    });
    let before: Vec<String> = curation(&h)
        .trace("c3", "recurrent")
        .unwrap()
        .steps
        .iter()
        .map(|s| s.output.clone())
        .collect();
    // Edit step n-2: only the last step and the scores go stale.
    h.state_mut()
        .push_command(trsr::app::Command::Curate(trsr::app::CurateCmd::Apply(
            Key::step("c3", "recurrent", n - 2),
            Edit::SetText(Some("likes space stories".into())),
        )));
    h.get_by_label("Curation").click();
    h.run_steps(2);
    let plan = curation(&h).rerun_plan();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].steps, vec![n - 1]);
    assert!(plan[0].rescore);
    h.get_by_label("Re-run stale (1)").click();
    step_until(&mut h, "the re-run and re-score", 60, |a| {
        let c = &a.wb.project.as_ref().unwrap().project.curation;
        c.rerun_plan().is_empty()
            && c.trace("c3", "recurrent")
                .is_some_and(|t| t.scores_before.is_some())
    });
    let t = curation(&h).trace("c3", "recurrent").unwrap();
    let after: Vec<String> = t.steps.iter().map(|s| s.output.clone()).collect();
    assert_eq!(
        after[..n - 1],
        before[..n - 1],
        "steps before the stale one are kept"
    );
    assert_ne!(
        after[n - 1],
        before[n - 1],
        "the stale step was regenerated"
    );
    assert_eq!(
        curation(&h)
            .effective_text(&Key::step("c3", "recurrent", n - 2))
            .unwrap(),
        "likes space stories"
    );
    h.get_by_label_contains("Ranking of the target: before #");
    assert_eq!(
        curation(&h).staleness("c3", "recurrent").unwrap(),
        Default::default()
    );
}

#[test]
fn the_export_dialog_writes_the_accepted_examples_with_the_real_prompts() {
    let data = common::three_users_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut h = ready(dir.path(), data.path());
    h.key_press(egui::Key::A);
    h.run_steps(2);
    h.state_mut()
        .push_command(trsr::app::Command::ShowExportDialog);
    // A new window's first frame only measures it.
    h.run_steps(4);
    h.get_by_label("Export to file...");
    h.get_by_label("chat messages").click();
    h.run_steps(2);
    let out = dir.path().join("rec.jsonl");
    h.state_mut()
        .push_command(trsr::app::Command::ExportSft(out.clone()));
    step_until(&mut h, "the export", 30, |a| {
        a.wb.notices.iter().any(|n| n.text.starts_with("export"))
    });
    let note = h.state().wb.notices.last().unwrap().text.clone();
    assert!(note.starts_with("exported 2 examples"), "{note}");
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "one positive and one negative of c1");
    assert_eq!(rows[0]["case"], "c1");
    let prompt = rows[0]["messages"][0]["content"].as_str().unwrap();
    // The items have categories: the news wording is guessed.
    assert!(
        prompt.starts_with("Decide whether the user will click"),
        "{prompt}"
    );
    assert!(
        prompt.contains("c1 likes football and elections"),
        "{prompt}"
    );
    assert_eq!(rows[0]["messages"][1]["content"], "yes");
    assert_eq!(rows[1]["messages"][1]["content"], "no");
}
