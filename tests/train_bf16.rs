//! LoRA training with the frozen base in bf16 (`trsr train --dtype bf16`, meant for GPUs
//! with bf16 support) on the real default model, computed on the CPU (candle's bf16 matrix
//! products; slow but the same arithmetic a GPU does): the loss is finite and close to the
//! f32 run's, a few steps lower it, and the saved adapter loads and scores like the f32 one.

mod common;

use trsr::llm::lora::{Adapter, LoraConfig, Target};
use trsr::llm::train::{OptimSettings, TrainExample, Trainer};
use trsr::llm::{Engine, LoadOptions};
use trsr::train::TrainDtype;

/// Tolerance between the bf16 and f32 losses, relative to max(loss, 1). bf16 keeps 8
/// significant bits (a relative rounding of up to 2^-9, about 0.2%, per weight and per cast
/// activation); over 30 layers the roundings partly cancel. Measured here: 0.5% before the
/// first step (the same weights), up to 0.04 apart after three steps at lr 1e-3 (the two
/// runs' updates differ a little and compound).
const TOL: f32 = 0.05;

#[test]
fn bf16_lora_steps_track_the_f32_run_and_the_adapter_scores() {
    let Some(path) = common::default_model() else {
        return;
    };
    let mut engine = Engine::load_path(
        &path,
        &LoadOptions {
            threads: Some(2),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let prefix = engine
        .encode_prompt("<|im_start|>user\nThe user reads sports news. Candidate: ")
        .unwrap();
    let suffix = engine
        .tokenizer()
        .encode(
            "Late rally lifts the home side. Will the user click? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
            false,
        )
        .unwrap();
    let (yes, _) = engine.answer_ids();
    let mut ids = prefix.clone();
    ids.extend_from_slice(&suffix);
    ids.push(yes);
    let ex = TrainExample {
        loss_from: ids.len() - 1,
        ids,
    };
    let cfg = LoraConfig {
        r: 4,
        dropout: 0.0,
        targets: vec![Target::Q, Target::V],
        ..LoraConfig::paper()
    };
    let optim = OptimSettings {
        lr: 1e-3,
        ..OptimSettings::default()
    };
    let mut runs = Vec::new();
    for dtype in [TrainDtype::F32, TrainDtype::Bf16] {
        let mut t = Trainer::new_in(engine.model(), cfg.clone(), &optim, None, 3, dtype).unwrap();
        assert_eq!(t.base_dtype(), dtype);
        let mut losses = Vec::new();
        for _ in 0..3 {
            losses.push(t.backward(&ex, 1.0).unwrap());
            t.step(optim.lr).unwrap();
        }
        losses.push(t.loss(&ex, false).unwrap().to_scalar::<f32>().unwrap());
        assert!(
            losses.iter().all(|l| l.is_finite()),
            "{dtype:?}: {losses:?}"
        );
        assert!(
            losses[3] < losses[0],
            "{dtype:?}: the steps did not lower the loss: {losses:?}"
        );
        runs.push((losses, t.adapter().unwrap()));
    }
    let (f32_losses, bf16_losses) = (&runs[0].0, &runs[1].0);
    for (a, b) in f32_losses.iter().zip(bf16_losses) {
        assert!(
            (a - b).abs() <= TOL * a.abs().max(1.0),
            "bf16 losses {bf16_losses:?} vs f32 {f32_losses:?}"
        );
    }
    println!("losses over 3 steps: f32 {f32_losses:?}, bf16 {bf16_losses:?}");

    // The bf16 run's adapter, saved and loaded again, scores (P(yes)) close to the f32 one's.
    let dir = tempfile::tempdir().unwrap();
    runs[1].1.save(dir.path()).unwrap();
    let loaded = Adapter::load(dir.path()).unwrap();
    let base = engine
        .score_ids(&prefix, std::slice::from_ref(&suffix))
        .unwrap()[0];
    engine.set_adapter(Some(&runs[0].1), Some("f32")).unwrap();
    let with_f32 = engine
        .score_ids(&prefix, std::slice::from_ref(&suffix))
        .unwrap()[0];
    engine.set_adapter(Some(&loaded), Some("bf16")).unwrap();
    let with_bf16 = engine
        .score_ids(&prefix, std::slice::from_ref(&suffix))
        .unwrap()[0];
    println!("P(yes): base {base}, f32 adapter {with_f32}, bf16 adapter {with_bf16}");
    assert!(with_bf16.is_finite() && (0.0..=1.0).contains(&with_bf16));
    assert!(
        (with_bf16 - with_f32).abs() < 0.05,
        "{with_bf16} vs {with_f32}"
    );
    assert!(
        (with_bf16 - base).abs() > 1e-3,
        "the adapter changed nothing"
    );
}

/// `trsr train --dtype` parses to the settings (f32 by default), the settings record it
/// (train_log.json holds them), and bf16 with `--full` is refused by name.
#[test]
fn the_dtype_flag_reaches_the_settings_and_full_bf16_is_refused() {
    use clap::Parser;
    use trsr::cli::{Cli, Command};
    let settings = |args: &[&str]| {
        let mut all = vec!["trsr", "train", "--data", "d", "--out", "o"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Some(Command::Train(a)) => a.settings(),
            other => panic!("not a train command: {other:?}"),
        }
    };
    assert_eq!(settings(&[]).dtype, TrainDtype::F32);
    let s = settings(&["--dtype", "bf16"]);
    assert_eq!(s.dtype, TrainDtype::Bf16);
    s.validate().unwrap();
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains(r#""dtype":"bf16""#), "{json}");
    // Settings saved before the option existed read as f32.
    let old: trsr::train::TrainSettings = serde_json::from_str(r#"{"epochs": 2}"#).unwrap();
    assert_eq!(old.dtype, TrainDtype::F32);
    let err = settings(&["--dtype", "bf16", "--full"])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("dtype") && err.contains("full"), "{err}");
    assert!(
        Cli::try_parse_from(["trsr", "train", "--data", "d", "--out", "o", "--dtype", "f16"])
            .is_err()
    );
}
