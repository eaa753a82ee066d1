//! The window driven headless with egui_kittest (no GPU, no display).
//!
//! UI flows that need no model run with a fake model (plumbing only); the summary and
//! ranking flows run the real default model and skip with a note when it is absent.

mod common;

use std::time::Duration;

use common::scripted::Scripted;
use common::ui::{harness, step_until};
use eframe::egui;
use egui_kittest::kittest::Queryable;
use trsr::app::StartOptions;

fn slow() -> Scripted {
    Scripted::streaming("slow-fake", "word ", Duration::from_millis(2))
}

fn with_model(model: Option<String>) -> StartOptions {
    StartOptions {
        model,
        ..StartOptions::default()
    }
}

#[test]
fn open_data_select_a_user_and_block_size_changes_the_block_count() {
    let dir = common::three_users_dir();
    let mut h = harness(slow().loader(), dir.path(), with_model(None));
    step_until(&mut h, "the dataset", 30, |a| a.wb.data.is_some());
    h.get_by_label_contains("items · 3 users");
    // Select U3 (20 items): 5 per block, at most 5 blocks -> 4 blocks.
    h.get_by_label_contains("U3  (20 items)").click();
    h.run_steps(3);
    assert_eq!(h.state().wb.selected, Some(2));
    h.get_by_label_contains("20 history items · 4 blocks");
    // Block size 3 -> 7 blocks, capped at 5.
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "block size")
        .set_value_accesskit(3.0);
    h.run_steps(3);
    h.get_by_label_contains("20 history items · 5 blocks");
    h.get_by_label_contains("5 oldest left out");
    // Search by item text narrows the list.
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Search")
        .click();
    h.run_steps(2);
    h.get_by_role_and_label(egui::accesskit::Role::TextInput, "Search")
        .type_text("story 33");
    h.run_steps(3);
    h.get_by_label_contains("1 of 3 users");
}

#[test]
fn a_running_summary_streams_and_cancel_stops_it() {
    let dir = common::three_users_dir();
    let mut h = harness(slow().loader(), dir.path(), with_model(Some("fake".into())));
    step_until(&mut h, "data and model", 30, |a| {
        a.wb.data.is_some() && a.wb.context_len().is_some()
    });
    h.get_by_label("Summaries").click();
    h.run_steps(2);
    h.get_by_label("Run summary").click();
    step_until(&mut h, "streamed words", 30, |a| {
        a.wb.summary
            .as_ref()
            .is_some_and(|s| s.steps.first().is_some_and(|st| st.text.contains("word")))
    });
    h.get_by_label_contains("word word");
    h.get_by_label("Cancel").click();
    step_until(&mut h, "the cancel", 30, |a| {
        a.wb.summary.as_ref().is_some_and(|s| !s.is_running())
    });
    h.get_by_label("cancelled");
    assert!(h.state().wb.summary.as_ref().unwrap().cancelled);
}

#[test]
fn f1_shows_the_shortcuts_and_alt_down_selects_the_next_user() {
    let dir = common::three_users_dir();
    let mut h = harness(slow().loader(), dir.path(), with_model(None));
    step_until(&mut h, "the dataset", 30, |a| a.wb.data.is_some());
    assert_eq!(h.state().wb.selected, Some(0));
    h.key_press(egui::Key::F1);
    h.run_steps(3);
    h.get_by_label("Keyboard shortcuts");
    h.get_by_label("Next user");
    h.key_press_modifiers(egui::Modifiers::ALT, egui::Key::ArrowDown);
    h.run_steps(3);
    assert_eq!(h.state().wb.selected, Some(1));
    h.key_press_modifiers(egui::Modifiers::ALT, egui::Key::ArrowUp);
    h.run_steps(3);
    assert_eq!(h.state().wb.selected, Some(0));
}

#[test]
fn real_model_summary_text_appears_and_candidates_are_ranked() {
    let Some(model) = common::default_model() else {
        return;
    };
    let dir = common::three_users_dir();
    // No results cache, so the summary is computed, not reused.
    let mut h = harness(
        trsr::app::engine_loader(),
        dir.path(),
        with_model(Some(model.display().to_string())),
    );
    step_until(&mut h, "data and model", 120, |a| {
        a.wb.data.is_some() && a.wb.context_len().is_some()
    });
    // Short generations keep the test quick on 2 cores.
    h.state_mut().settings.sampling.max_new_tokens = 12;
    h.get_by_label_contains("U2  (7 items)").click();
    h.run_steps(2);
    h.get_by_label("Summaries").click();
    h.run_steps(2);
    h.get_by_label("Run summary").click();
    step_until(&mut h, "the summary", 300, |a| {
        a.wb.summary
            .as_ref()
            .is_some_and(|s| s.result.is_some() || s.error.is_some())
    });
    let s = h.state().wb.summary.clone().unwrap();
    assert_eq!(s.error, None);
    let r = s.result.unwrap();
    assert_eq!(r.steps.len(), 3, "7 items: 2 blocks + merge");
    assert!(
        r.steps.iter().all(|st| !st.output.trim().is_empty()),
        "empty step output"
    );
    h.get_by_label_contains(r.steps[0].output.lines().next().unwrap().trim());
    h.get_by_label("Ranking").click();
    h.run_steps(2);
    h.get_by_label("Rank candidates").click();
    step_until(&mut h, "the ranking", 300, |a| {
        a.wb.rank
            .as_ref()
            .is_some_and(|r| r.record.is_some() || r.error.is_some())
    });
    let rank = h.state().wb.rank.clone().unwrap();
    assert_eq!(rank.error, None);
    let rec = rank.record.unwrap();
    assert_eq!(rec.candidates.len(), 4);
    assert!(rec
        .candidates
        .iter()
        .all(|c| (0.0..=1.0).contains(&c.score)));
    assert!(rank.used_summary);
    h.get_by_label_contains("Target rank:");
}
