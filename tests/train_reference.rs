//! `trsr train --preset reference`: the reference's training settings (LLM-TRSR/train.py
//! and test.py), and the flags that change each one alone.

use clap::Parser;
use trsr::cli::{Cli, Command};
use trsr::train::{BestEpoch, LossOn, NegativePick, TrainSettings};

fn settings(args: &[&str]) -> TrainSettings {
    let mut full = vec!["trsr", "train", "--data", "d", "--out", "o"];
    full.extend_from_slice(args);
    match Cli::try_parse_from(full).unwrap().command {
        Some(Command::Train(a)) => a.settings(),
        other => panic!("not a train command: {other:?}"),
    }
}

#[test]
fn the_reference_preset_sets_the_reference_training() {
    let s = settings(&["--preset", "reference"]);
    assert_eq!((s.batch_size, s.grad_accum), (8, 8));
    assert_eq!(s.warmup, 0.0);
    assert_eq!(s.loss_on, LossOn::Text);
    assert_eq!(s.best_by, BestEpoch::RecallSum);
    assert_eq!(s.negative, NegativePick::First);
    assert_eq!(s.truncate_tokens, Some(2048));
    s.validate().unwrap();

    let w = settings(&[]);
    assert_eq!((w.batch_size, w.grad_accum), (4, 4));
    assert_eq!(w.warmup, 0.1);
    assert_eq!(w.loss_on, LossOn::Answer);
    assert_eq!(w.best_by, BestEpoch::FirstRecall);
    assert_eq!(w.negative, NegativePick::Random);
    assert_eq!(w.truncate_tokens, None);

    // Each flag alone, over the preset.
    let s = settings(&[
        "--preset",
        "reference",
        "--batch-size",
        "2",
        "--grad-accum",
        "3",
    ]);
    assert_eq!((s.batch_size, s.grad_accum), (2, 3));
    let w = settings(&[
        "--best-by",
        "recall-sum",
        "--truncate-tokens",
        "512",
        "--loss",
        "text",
    ]);
    assert_eq!(w.best_by, BestEpoch::RecallSum);
    assert_eq!(w.truncate_tokens, Some(512));
    assert_eq!(w.loss_on, LossOn::Text);
    let s = settings(&["--preset", "reference", "--negative", "random", "--full"]);
    assert_eq!(s.negative, NegativePick::Random);
    assert!(s.full && !w.full);
    // The window's "Reference settings" and the CLI's preset are one set of values.
    assert_eq!(
        settings(&["--preset", "reference"]),
        TrainSettings::for_preset(trsr::preset::Preset::Reference)
    );
    assert_eq!(settings(&[]), TrainSettings::default());
}

#[test]
fn no_warmup_is_the_linear_decay_of_hugging_face() {
    let s = TrainSettings {
        warmup: 0.0,
        lr: 1e-4,
        ..TrainSettings::default()
    };
    // get_linear_schedule_with_warmup(0 warmup): lr * (total - step) / total.
    for step in 0..10 {
        let want = 1e-4 * (10 - step) as f64 / 10.0;
        assert!((s.lr_at(step, 10) - want).abs() < 1e-15, "step {step}");
    }
}

#[test]
fn the_recall_sum_rule_needs_its_cut_offs() {
    let s = TrainSettings {
        best_by: BestEpoch::RecallSum,
        ks: vec![5, 10],
        ..TrainSettings::default()
    };
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("recall-sum"), "{e}");
}
