//! The window's preset selector (Model & settings): switching to `reference` puts the
//! reference code's prompts, item text and sampling in place, and back again.

mod common;

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use trsr::app::{StartOptions, WorkbenchApp};
use trsr::preset::Preset;
use trsr::prompt::PromptForm;
use trsr::worker::{Loader, ModelSpec};

fn no_model() -> Loader {
    Box::new(|_: &ModelSpec| anyhow::bail!("no model in this test"))
}

#[test]
fn the_window_shows_and_switches_the_preset() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .with_max_steps(1_000)
        .build_eframe(|cc| {
            WorkbenchApp::new(&cc.egui_ctx, no_model(), StartOptions::default()).unwrap()
        });
    h.run_ok();
    h.get_by_label("Model & settings").click();
    h.run_ok();
    assert_eq!(h.state().settings.preset, Preset::Workbench);
    h.get_by_label("Preset").click();
    h.run_ok();
    h.get_by_label("reference").click();
    h.run_ok();
    let s = &h.state().settings;
    assert_eq!(s.preset, Preset::Reference);
    assert_eq!(s.templates.form, PromptForm::Verbatim);
    assert!(s.templates.system.is_none());
    assert!(s.text_template.reference.is_some());
    assert_eq!(s.sampling.temperature, 1.0);
    assert_eq!(s.sampling.repeat_penalty, 1.0);
    // And back: our wording and sampling again.
    h.get_by_label("Preset").click();
    h.run_ok();
    h.get_by_label("workbench").click();
    h.run_ok();
    let s = &h.state().settings;
    assert_eq!(s.preset, Preset::Workbench);
    assert_eq!(s.templates.form, PromptForm::Chat);
    assert!(s.text_template.reference.is_none());
    assert_eq!(s.sampling.temperature, 0.7);
}

/// The window loads the model by the templates' answer rule, as the CLI does: the first
/// token of each word under our wording, the vocabulary entry under the reference's
/// (`answer_by_vocab`); the preset also switches the Train tab's preset-bound settings.
#[test]
fn the_window_loads_with_the_presets_answer_rule_and_training_settings() {
    use std::sync::{Arc, Mutex};
    let specs: Arc<Mutex<Vec<ModelSpec>>> = Arc::default();
    let seen = specs.clone();
    let loader: Loader = Box::new(move |s: &ModelSpec| {
        seen.lock().unwrap().push(s.clone());
        anyhow::bail!("no model in this test")
    });
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .with_max_steps(1_000)
        .build_eframe(|cc| {
            WorkbenchApp::new(&cc.egui_ctx, loader, StartOptions::default()).unwrap()
        });
    h.run_ok();
    h.get_by_label("Model & settings").click();
    h.run_ok();
    let load = |h: &mut Harness<'_, WorkbenchApp>, n: usize| -> ModelSpec {
        h.get_by_label("Load model").click();
        let t0 = std::time::Instant::now();
        while specs.lock().unwrap().len() < n {
            assert!(t0.elapsed().as_secs() < 120, "the loader was not called");
            h.step();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        h.run_steps(2);
        specs.lock().unwrap()[n - 1].clone()
    };
    let spec = load(&mut h, 1);
    assert!(!spec.answer_by_vocab);
    assert_eq!(
        (spec.yes_word.as_str(), spec.no_word.as_str()),
        ("yes", "no")
    );
    h.get_by_label("Preset").click();
    h.run_ok();
    h.get_by_label("reference").click();
    h.run_ok();
    let s = &h.state().settings;
    assert!(s.templates.answer_by_vocab());
    assert_eq!(s.train.batch_size, 8);
    assert_eq!(s.train.best_by, trsr::train::BestEpoch::RecallSum);
    assert_eq!(s.train.truncate_tokens, Some(2048));
    let spec = load(&mut h, 2);
    assert!(spec.answer_by_vocab);
}

/// The worker's engine loader honours the rule: a word that is no vocabulary entry
/// (` yes`, spelled `Ġyes` in a byte-level BPE vocabulary) loads by the first-token
/// rule and is refused by the vocabulary rule, with the CLI's message.
#[test]
fn the_engine_loader_takes_the_answer_rule_from_the_spec() {
    let Some(path) = common::default_model() else {
        return;
    };
    let mut loader = trsr::worker::engine_loader();
    let spec = |by_vocab: bool| ModelSpec {
        model: path.display().to_string(),
        device: "cpu".into(),
        answer_by_vocab: by_vocab,
        yes_word: " yes".into(),
        ..ModelSpec::default()
    };
    assert!(loader(&spec(false)).is_ok());
    let err = loader(&spec(true)).err().expect("refused").to_string();
    assert!(err.contains("no token spelled exactly ` yes`"), "{err}");
}
