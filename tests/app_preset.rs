//! The window's preset selector (Model & settings): switching to `reference` puts the
//! reference code's prompts, item text and sampling in place, and back again.

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
