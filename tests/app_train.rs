//! The Train tab driven headless with egui_kittest: the form, splitting cases that
//! have no split, bad input in the panel, a fake model's clear error, and a real run
//! of the candle engine on a tiny random GGUF (tests/common): progress, validation
//! table, cancel, and "Use this adapter" reloading the model for the Ranking tab.

mod common;

use std::path::{Path, PathBuf};

use common::scripted::Scripted;
use common::ui::step_until;
use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use trsr::app::train::Phase;
use trsr::app::{ModelStatus, StartOptions, WorkbenchApp};
use trsr::curate::{Curation, Edit, Key, Status, StepKind};
use trsr::project::{DatasetRef, Project};
use trsr::train::TrainSettings;
use trsr::worker::Loader;

/// A fake model (plumbing only): not the candle engine, so it cannot train.
fn fake_loader() -> Loader {
    Scripted::new("quick-fake").loader()
}

fn harness(data: &Path, loader: Loader, model: Option<String>) -> Harness<'static, WorkbenchApp> {
    harness_with_project(data, loader, model, None)
}

fn harness_with_project(
    data: &Path,
    loader: Loader,
    model: Option<String>,
    project: Option<PathBuf>,
) -> Harness<'static, WorkbenchApp> {
    common::ui::harness(
        loader,
        data,
        StartOptions {
            model,
            project,
            ..StartOptions::default()
        },
    )
}

fn ready(a: &WorkbenchApp) -> bool {
    a.wb.data.is_some() && matches!(a.wb.model, ModelStatus::Loaded(_))
}

fn split_count(a: &WorkbenchApp, name: &str) -> usize {
    a.wb.data
        .as_ref()
        .map(|d| {
            d.cases
                .iter()
                .filter(|c| c.split.as_deref() == Some(name))
                .count()
        })
        .unwrap_or(0)
}

fn open_train_tab(h: &mut Harness<'_, WorkbenchApp>) {
    h.get_by_label("Train").click();
    h.run_steps(3);
}

fn is_disabled(h: &Harness<'_, WorkbenchApp>, label: &str) -> bool {
    h.get_by_role_and_label(Role::Button, label)
        .accesskit_node()
        .is_disabled()
}

#[test]
fn the_form_splits_unsplit_cases_checks_input_and_a_fake_model_cannot_train() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), false);
    let mut h = harness(dir.path(), fake_loader(), Some("fake".into()));
    step_until(&mut h, "data and model", 30, ready);
    open_train_tab(&mut h);

    // The form with the paper's settings.
    for label in [
        "Epochs",
        "Batch size",
        "Gradient accumulation",
        "Learning rate",
        "LoRA r",
        "LoRA alpha",
        "LoRA dropout",
        "Target projections",
        "Loss on",
        "Seed",
        "Output folder",
    ] {
        assert!(
            h.query_all_by_label(label).next().is_some(),
            "no field labelled {label}"
        );
    }
    h.get_by_label_contains("= 16 examples per step");
    assert_eq!(h.state().settings.train, TrainSettings::default());
    // No split yet: said so, and Start is off.
    h.get_by_label_contains("These 7 cases have no split");
    h.get_by_label_contains("has no `train` cases");
    assert!(is_disabled(&h, "Start training"));

    // A bad split is refused in the panel.
    h.state_mut().ui.train.split_spec.clear();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Split").click();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Split")
        .type_text("train=0.5");
    h.run_steps(2);
    h.get_by_label("Split the cases").click();
    h.run_steps(3);
    h.get_by_label_contains("split `train=0.5`:");
    assert_eq!(split_count(h.state(), "train"), 0);

    // A good one labels the cases: train 4, val 3 (rounded, seeded).
    h.state_mut().ui.train.split_spec = "train=0.5,val=0.5".into();
    h.run_steps(2);
    h.get_by_label("Split the cases").click();
    h.run_steps(3);
    assert_eq!(split_count(h.state(), "train"), 4);
    assert_eq!(split_count(h.state(), "val"), 3);
    h.get_by_label_contains("Splits: train 4, val 3");
    h.get_by_label_contains("Training on 4 of 4 `train` cases, validating on 3 of 3 `val` cases");
    h.get_by_label_contains("No project is open: no summaries");

    // Targets are checkboxes; none at all is a settings problem shown in red.
    for t in ["q", "k", "v", "o"] {
        h.get_by_role_and_label(Role::CheckBox, t).click();
        h.run_steps(2);
    }
    assert!(h.state().settings.train.targets.is_empty());
    h.get_by_label_contains("`targets` must name at least one projection");
    h.get_by_label("fix the settings on the left");
    assert!(is_disabled(&h, "Start training"));
    h.get_by_role_and_label(Role::CheckBox, "gate").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.train.targets, ["gate_proj"]);
    h.get_by_label("Paper's settings").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.train, TrainSettings::default());

    // An output "folder" that is a file is refused with a message.
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    h.state_mut().ui.train.out_dir = file.display().to_string();
    h.run_steps(2);
    assert!(!is_disabled(&h, "Start training"));
    h.get_by_label("Start training").click();
    h.run_steps(3);
    h.get_by_label_contains("is a file, not a folder");
    assert!(h.state().wb.train.is_none());

    // The fake model is not the candle engine: the job fails with a clear message.
    h.state_mut().ui.train.out_dir = dir.path().join("out").display().to_string();
    h.run_steps(2);
    h.get_by_label("Start training").click();
    step_until(&mut h, "the run's end", 30, |a| {
        a.wb.train.as_ref().is_some_and(|t| !t.is_running())
    });
    let run = h.state().wb.train.clone().unwrap();
    assert_eq!(run.phase, Phase::Failed);
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("needs the candle engine") && e.contains("quick-fake")),
        "{:?}",
        run.error
    );
    h.get_by_label_contains("Training failed: training needs the candle engine");
}

fn tiny_setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    common::write_split_dataset(&data);
    let model = common::write_tiny_for_prompts(dir.path());
    (dir, data, model)
}

/// A project on `data` with recurrent summaries of c1 (train), c2 (train, rejected)
/// and c5 (val).
fn project_file(dir: &Path, data: &Path) -> PathBuf {
    let mut c = Curation::new();
    for case in ["c1", "c2", "c5"] {
        c.register_trace(
            case,
            "recurrent",
            vec![(
                StepKind::Block,
                vec!["N1".into()],
                format!("{case} likes football"),
            )],
            None,
        )
        .unwrap();
    }
    c.apply(
        &Key::final_of("c2", "recurrent"),
        Edit::SetStatus(Status::Rejected),
    )
    .unwrap();
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

#[test]
fn a_tiny_engine_trains_from_the_tab_and_its_adapter_is_used_for_ranking() {
    let (dir, data, model) = tiny_setup();
    let project = project_file(dir.path(), &data);
    let mut h = harness_with_project(
        &data,
        trsr::app::engine_loader(),
        Some(model.display().to_string()),
        Some(project),
    );
    step_until(&mut h, "data and model", 60, ready);
    open_train_tab(&mut h);
    h.get_by_label_contains("Splits: test 1, train 4, val 2");
    // The project's summaries: c1 and c5 stand, c2 was rejected.
    h.get_by_label_contains("1 of 4 training and 1 of 2 validation cases have one");
    h.get_by_label("1 rejected summary is left out.");
    h.get_by_label("No training run yet: set it up and press Start training.");
    h.state_mut().settings.train = TrainSettings {
        epochs: 2,
        batch_size: 2,
        grad_accum: 1,
        ks: vec![1, 3],
        ..TrainSettings::default()
    };
    h.state_mut().ui.train.ks_text = None;
    let out = dir.path().join("adapter");
    h.get_by_role_and_label(Role::TextInput, "Output folder")
        .click();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Output folder")
        .type_text(&out.display().to_string());
    h.run_steps(2);
    assert_eq!(h.state().ui.train.out_dir, out.display().to_string());
    h.get_by_label("Start training").click();
    h.run_steps(2);
    assert!(h.state().wb.train.as_ref().is_some_and(|t| t.is_running()));
    step_until(&mut h, "the run's end", 300, |a| {
        a.wb.train.as_ref().is_some_and(|t| !t.is_running())
    });
    let run = h.state().wb.train.clone().unwrap();
    assert_eq!(run.error, None);
    assert_eq!(run.phase, Phase::Finished);
    assert_eq!(run.example_losses.len(), 16, "8 examples x 2 epochs");
    // c1's summary is in its two examples; the rejected one of c2 is not used.
    let build = run.build.clone().unwrap();
    assert_eq!((build.with_summary, build.without_summary), (2, 6));
    assert_eq!(run.step_losses.len(), 8);
    assert_eq!(
        run.validations.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let best = run.best_epoch.expect("a best epoch");
    assert!(out.join("adapter_model.safetensors").is_file());
    h.get_by_label_contains("Finished in");
    h.get_by_label("before training");
    h.get_by_label(&format!("epoch {best} (best)"));
    assert!(h.query_all_by_label("recall@1").next().is_some());
    h.get_by_label_contains(&format!("Adapter (epoch {best}, best)"));

    // "Use this adapter" reloads the model with it.
    h.get_by_label("Use this adapter").click();
    step_until(&mut h, "the model with the adapter", 60, |a| {
        matches!(a.wb.model, ModelStatus::Loaded(_))
            && a.wb
                .loaded_spec
                .as_ref()
                .is_some_and(|s| s.adapter.is_some())
    });
    assert_eq!(
        h.state().settings.model.adapter.as_deref(),
        Some(out.as_path())
    );
    match &h.state().wb.model {
        ModelStatus::Loaded(m) => {
            assert!(m.identity.name.contains("+adapter"), "{}", m.identity.name)
        }
        other => panic!("{other:?}"),
    }
    h.get_by_label("the loaded model uses this adapter");
    // Training again would start from a model with an adapter merged: refused, with a way out.
    h.get_by_label_contains("the loaded model carries an adapter");
    assert!(is_disabled(&h, "Start training"));
    h.get_by_label("Reload the base model");

    // The Ranking tab scores with the fine-tuned recommender.
    h.get_by_label("Ranking").click();
    h.run_steps(2);
    h.get_by_label("Rank candidates").click();
    step_until(&mut h, "the ranking", 60, |a| {
        a.wb.rank
            .as_ref()
            .is_some_and(|r| r.record.is_some() || r.error.is_some())
    });
    let rank = h.state().wb.rank.clone().unwrap();
    assert_eq!(rank.error, None);
    assert_eq!(rank.record.unwrap().candidates.len(), 4);

    // The model settings show the adapter and clear it.
    h.get_by_label("Model & settings").click();
    h.run_steps(2);
    let field = h.get_by_role_and_label(Role::TextInput, "LoRA adapter");
    assert_eq!(
        field.value().as_deref(),
        Some(out.display().to_string().as_str())
    );
    h.get_by_label("Clear").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.model.adapter, None);
    h.get_by_label_contains("press Load model to apply the change");
}

#[test]
fn cancel_in_the_tab_stops_a_long_run() {
    let (dir, data, model) = tiny_setup();
    let mut h = harness(
        &data,
        trsr::app::engine_loader(),
        Some(model.display().to_string()),
    );
    step_until(&mut h, "data and model", 60, ready);
    open_train_tab(&mut h);
    h.state_mut().settings.train = TrainSettings {
        epochs: 10_000,
        batch_size: 1,
        grad_accum: 1,
        validate_before: false,
        ..TrainSettings::default()
    };
    h.state_mut().ui.train.out_dir = dir.path().join("long").display().to_string();
    h.run_steps(2);
    h.get_by_label("Start training").click();
    step_until(&mut h, "some examples", 120, |a| {
        a.wb.train.as_ref().is_some_and(|t| t.examples_done > 0)
    });
    assert!(h
        .query_all_by_label_contains("training epoch")
        .next()
        .is_some());
    assert!(h.query_all_by_label_contains("ETA").next().is_some());
    assert!(is_disabled(&h, "Start training"));
    h.get_by_label("Cancel training").click();
    step_until(&mut h, "the cancel", 120, |a| {
        a.wb.train.as_ref().is_some_and(|t| !t.is_running())
    });
    let run = h.state().wb.train.clone().unwrap();
    assert_eq!(run.phase, Phase::Cancelled);
    assert!(run.examples_done < 10_000 * 8);
    assert!(run.report.as_ref().is_some_and(|r| r.cancelled));
    h.get_by_label_contains("Cancelled after");
    h.get_by_label_contains("the weights at the cancel in");
    assert!(dir
        .path()
        .join("long/checkpoints/interrupted/adapter_config.json")
        .is_file());
}

#[test]
fn the_newer_settings_are_in_the_tab_and_a_full_run_gives_a_model_to_use() {
    let (dir, data, model) = tiny_setup();
    let mut h = harness(
        &data,
        trsr::app::engine_loader(),
        Some(model.display().to_string()),
    );
    step_until(&mut h, "data and model", 60, ready);
    open_train_tab(&mut h);
    for label in ["Fine-tuning", "Best epoch by", "Negative", "Long texts"] {
        assert!(
            h.query_all_by_label(label).next().is_some(),
            "no field labelled {label}"
        );
    }
    h.get_by_label_contains("Preset workbench (Model & settings)");

    // Full fine-tuning: the LoRA settings go grey.
    h.get_by_role_and_label(Role::RadioButton, "full (every weight)")
        .click();
    h.run_steps(2);
    assert!(h.state().settings.train.full);
    assert!(h
        .get_by_role_and_label(Role::SpinButton, "LoRA r")
        .accesskit_node()
        .is_disabled());
    h.get_by_role_and_label(Role::RadioButton, "Recall@3+@5+@10")
        .click();
    h.get_by_role_and_label(Role::RadioButton, "first").click();
    h.get_by_role_and_label(Role::CheckBox, "cut at").click();
    h.run_steps(2);
    let t = h.state().settings.train.clone();
    assert_eq!(t.best_by, trsr::train::BestEpoch::RecallSum);
    assert_eq!(t.negative, trsr::train::NegativePick::First);
    assert_eq!(t.truncate_tokens, Some(2048));
    // They persist with the other settings.
    let file = dir.path().join("settings.ron");
    h.state().settings.save(&file).unwrap();
    assert_eq!(trsr::app::Settings::load_or_default(&file).train, t);

    // The reference preset's training settings, one button away.
    h.get_by_label("Reference settings").click();
    h.run_steps(2);
    assert_eq!(
        h.state().settings.train,
        TrainSettings::for_preset(trsr::preset::Preset::Reference)
    );

    // A full run on the tiny model: the best epoch's model, then "Use this model".
    h.state_mut().settings.train = TrainSettings {
        epochs: 1,
        batch_size: 2,
        grad_accum: 1,
        ks: vec![1, 3],
        full: true,
        ..TrainSettings::default()
    };
    h.state_mut().ui.train.ks_text = None;
    let out = dir.path().join("tuned");
    h.state_mut().ui.train.out_dir = out.display().to_string();
    h.run_steps(2);
    h.get_by_label("Start training").click();
    h.run_steps(2);
    step_until(&mut h, "the run's end", 300, |a| {
        a.wb.train.as_ref().is_some_and(|t| !t.is_running())
    });
    let run = h.state().wb.train.clone().unwrap();
    assert_eq!(run.error, None);
    assert_eq!(run.phase, Phase::Finished);
    assert_eq!(run.best_epoch, Some(1));
    assert!(out.join(trsr::train::FULL_GGUF_FILE).is_file());
    h.get_by_label_contains("Model (epoch 1, best)");
    h.get_by_label("Use this model").click();
    step_until(&mut h, "the fine-tuned model", 60, |a| {
        matches!(a.wb.model, ModelStatus::Loaded(_))
            && a.wb
                .loaded_spec
                .as_ref()
                .is_some_and(|s| s.model == out.display().to_string())
    });
    match &h.state().wb.model {
        ModelStatus::Loaded(m) => assert_eq!(m.identity.name, "tuned"),
        other => panic!("{other:?}"),
    }
    h.get_by_label("the loaded model is this one");
}
