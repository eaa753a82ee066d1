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

// The defects of issue 12, seen in the window.

#[test]
fn plots_show_placeholders_before_results_and_results_files_are_read_in_the_background() {
    let dir = common::three_users_dir();
    let mut h = harness(slow().loader(), dir.path(), with_model(None));
    step_until(&mut h, "the dataset", 30, |a| a.wb.data.is_some());
    h.get_by_label("Plots").click();
    h.run_steps(3);
    // No empty axes: a short note says what fills each plot.
    h.get_by_label_contains("No results yet");
    h.get_by_label_contains("No rankings yet");
    h.get_by_label_contains("No sweep yet");
    let scores = dir.path().join("scores.jsonl");
    std::fs::write(
        &scores,
        "{\"case\": \"c1\", \"scorer\": \"llm:x\", \"candidates\": [{\"id\": \"N36\", \"label\": 1, \"score\": 0.8}, {\"id\": \"N37\", \"label\": 0, \"score\": 0.9}]}\n",
    )
    .unwrap();
    h.state_mut()
        .push_command(trsr::app::Command::LoadResults(scores));
    step_until(&mut h, "the scores file", 30, |a| {
        a.ui.plots.metrics.contains_key("llm:x")
    });
    h.run_steps(2);
    assert!(h.state().ui.plots.reading.is_empty());
    assert!(h.query_by_label_contains("No results yet").is_none());
    assert!(h.query_by_label_contains("No rankings yet").is_none());
    // A bad file: the tab shows the error with file and line.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{oops\n").unwrap();
    h.state_mut()
        .push_command(trsr::app::Command::LoadResults(bad));
    step_until(&mut h, "the bad file", 30, |a| a.ui.plots.error.is_some());
    h.get_by_label_contains("bad.jsonl:1");
}

#[test]
fn the_export_dialog_says_what_to_do_in_the_window_when_the_project_names_no_dataset() {
    use egui_kittest::kittest::NodeT as _;
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project.ron");
    let p = project.clone();
    let mut h = egui_kittest::Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .with_max_steps(10_000)
        .build_eframe(move |cc| {
            trsr::app::WorkbenchApp::new(
                &cc.egui_ctx,
                slow().loader(),
                StartOptions {
                    project: Some(p),
                    ..StartOptions::default()
                },
            )
            .unwrap()
        });
    h.run_steps(2);
    h.state_mut()
        .push_command(trsr::app::Command::ShowExportDialog);
    // A new window's first frame only measures it.
    h.run_steps(4);
    h.get_by_label_contains("The project names no dataset. Open its prepared dataset folder");
    assert!(h.query_by_label_contains("--dataset").is_none());
    assert!(h
        .get_by_label("Export to file...")
        .accesskit_node()
        .is_disabled());
    // Asked for anyway (a command): an error notice with the same advice; nothing runs.
    h.state_mut()
        .push_command(trsr::app::Command::ExportSft(dir.path().join("x.jsonl")));
    h.run_steps(2);
    let n = h.state().wb.notices.last().unwrap().clone();
    assert_eq!(n.level, trsr::app::Level::Error);
    assert!(n.text.contains("File > Open dataset folder"), "{}", n.text);
    assert!(!n.text.contains("--dataset"), "{}", n.text);
    // With a prepared dataset open, the project names it and the export can run.
    let data = common::three_users_dir();
    h.state_mut()
        .push_command(trsr::app::Command::OpenDataset(data.path().to_path_buf()));
    step_until(&mut h, "the dataset", 30, |a| a.wb.data.is_some());
    h.run_steps(2);
    assert!(h
        .state()
        .wb
        .project
        .as_ref()
        .unwrap()
        .project
        .dataset
        .is_some());
    assert!(!h
        .get_by_label("Export to file...")
        .accesskit_node()
        .is_disabled());
}

#[test]
fn a_step_from_the_cache_shows_the_traces_token_count_and_says_where_it_came_from() {
    use trsr::summarize::{StepTrace, SummaryTrace};
    use trsr::worker::{Event, StepKind};
    let dir = common::three_users_dir();
    let mut h = harness(slow().loader(), dir.path(), with_model(Some("fake".into())));
    step_until(&mut h, "data and model", 30, |a| {
        a.wb.data.is_some() && a.wb.context_len().is_some()
    });
    // A finished summary of c1 in the window's memory, as an earlier run leaves it.
    let params = h.state().settings.blocks.params();
    let method = h.state().settings.method;
    let trace = SummaryTrace {
        case: "c1".into(),
        method,
        blocks: vec![vec!["N0".into(), "N1".into()]],
        steps: vec![StepTrace {
            kind: StepKind::Block,
            blocks: vec![0],
            prompt: "the prompt".into(),
            output: "likes football".into(),
            prompt_tokens: 40,
            output_tokens: 17,
            ms: 250.0,
            token_logprobs: Vec::new(),
        }],
        final_summary: "likes football".into(),
        model: trsr::lm::LanguageModel::identity(&slow()),
        sampling: trsr::lm::SamplingParams::default(),
        block_params: params.clone(),
        notes: Vec::new(),
        preset: Default::default(),
    };
    h.state_mut()
        .wb
        .traces
        .insert(("c1".into(), method, format!("{params:?}")), trace);
    h.get_by_label("Summaries").click();
    h.run_steps(2);
    h.get_by_label("Run summary").click();
    h.run_steps(3);
    assert!(h.state().wb.summary.as_ref().unwrap().from_cache);
    h.get_by_label_contains("output 17 tokens · 250 ms");
    h.get_by_label("from cache");
    assert!(h.query_by_label_contains("output 0 tokens").is_none());
    // A job the worker answers from its results cache marks its steps `cached`; a
    // generated step streams its tokens and says it is live.
    let job = 9_999;
    let app = h.state_mut();
    app.wb.summary.as_mut().unwrap().job = Some(job);
    let started = |step: usize| Event::StepStarted {
        job,
        step,
        kind: StepKind::Block,
        blocks: vec![step],
        prompt: "p".into(),
        prompt_tokens: 30,
    };
    let finished = |step: usize, output_tokens: usize, cached: bool| Event::StepFinished {
        job,
        step,
        output: "likes markets".into(),
        output_tokens,
        prompt_tokens: 30,
        ms: 100.0,
        cached,
    };
    app.wb.apply_event(started(0), &app.settings);
    app.wb.apply_event(finished(0, 23, true), &app.settings);
    app.wb.apply_event(started(1), &app.settings);
    app.wb.apply_event(
        Event::Tokens {
            job,
            step: 1,
            deltas: vec![
                trsr::lm::TokenDelta {
                    token: 1,
                    text: "likes ".into(),
                    logprob: -0.5,
                },
                trsr::lm::TokenDelta {
                    token: 2,
                    text: "markets".into(),
                    logprob: -0.5,
                },
            ],
        },
        &app.settings,
    );
    app.wb.apply_event(finished(1, 2, false), &app.settings);
    app.wb.summary.as_mut().unwrap().job = None;
    h.run_steps(3);
    h.get_by_label_contains("output 23 tokens · 100 ms");
    h.get_by_label_contains("output 2 tokens · 100 ms");
    h.get_by_label("from cache");
    h.get_by_label("live");
}
