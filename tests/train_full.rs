//! Full fine-tuning (`trsr train --full`): every weight trains, the loss goes down, and
//! the saved model (GGUF from the real default model, safetensors from the tiny
//! Hugging Face fixture) loads again with the trainer's own logits; the CLI run on the
//! sample data writes a model that `trsr score --model DIR` scores with.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use trsr::llm::full;
use trsr::llm::model::Model;
use trsr::llm::train::{OptimSettings, TrainExample, Trainer};
use trsr::llm::{Engine, LoadOptions};

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Logits `[len, vocab]` of `ids` by the model as the engine runs it.
fn model_logits(m: &Model, ids: &[u32]) -> Tensor {
    let mut cache = m.new_cache(ids.len()).unwrap();
    let h = m
        .forward_batch(ids, 1, ids.len(), &mut cache, true)
        .unwrap();
    m.logits(&h).unwrap()
}

#[test]
fn full_training_on_the_tiny_model_lowers_the_loss_and_saves_safetensors_that_load_the_same() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora/tiny-llama");
    let model = Model::from_safetensors(&base, &Device::Cpu).unwrap();
    let optim = OptimSettings {
        lr: 1e-3,
        ..OptimSettings::default()
    };
    let mut t = Trainer::new_full(&model, &optim).unwrap();
    // Every weight trains: the parameter count of the fixture itself (tied or not).
    assert_eq!(t.n_trainable() as u64, model.n_params);
    assert!(t.config().is_none());
    assert!(t.adapter().is_err(), "a full fine-tuning has no adapter");
    let examples = [
        TrainExample {
            ids: vec![1, 5, 17, 42, 8, 63, 70],
            loss_from: 6,
        },
        TrainExample {
            ids: vec![1, 5, 17, 43, 8, 63, 71],
            loss_from: 6,
        },
    ];
    let mut losses = Vec::new();
    for _ in 0..20 {
        let mut sum = 0.0;
        for ex in &examples {
            sum += t.backward(ex, 0.5).unwrap();
        }
        t.step(1e-3).unwrap();
        losses.push(sum / 2.0);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < first * 0.5,
        "loss did not go down enough: {first} -> {last} ({losses:?})"
    );

    let dir = tempfile::tempdir().unwrap();
    let written = full::save(&t.full_weights().unwrap(), &base, dir.path()).unwrap();
    assert_eq!(written, dir.path().join(full::SAFETENSORS_FILE));
    assert!(dir.path().join("config.json").is_file());
    let saved = Model::from_safetensors(dir.path(), &Device::Cpu).unwrap();
    let ids = &examples[0].ids;
    let want = t.eval_logits(ids).unwrap();
    let d = max_diff(&model_logits(&saved, ids), &want);
    assert!(
        d < 1e-4,
        "saved model's logits differ from the trainer's by {d}"
    );
    let moved = max_diff(&model_logits(&model, ids), &want);
    assert!(moved > 0.05, "training left the logits unchanged ({moved})");
}

#[test]
fn full_training_of_the_real_model_saves_a_gguf_that_loads_with_the_trainers_logits() {
    let Some(path) = common::default_model() else {
        return;
    };
    let opts = LoadOptions {
        threads: Some(2),
        device: trsr::llm::DevicePref::Cpu,
        ..LoadOptions::default()
    };
    let engine = Engine::load_path(&path, &opts).unwrap();
    let ids = engine
        .tokenizer()
        .encode(
            "The user reads football news. Next: a football story? yes",
            false,
        )
        .unwrap();
    let ex = TrainExample {
        loss_from: 1,
        ids: ids.clone(),
    };
    let mut t = Trainer::new_full(engine.model(), &OptimSettings::default()).unwrap();
    assert_eq!(t.n_trainable() as u64, engine.info().n_params);
    // Two steps on one short text: the loss goes down.
    let l0 = t.backward(&ex, 1.0).unwrap();
    t.step(1e-4).unwrap();
    let l1 = t.backward(&ex, 1.0).unwrap();
    t.step(1e-4).unwrap();
    assert!(l1 < l0, "loss did not go down: {l0} -> {l1}");
    let want = t.eval_logits(&ids).unwrap();

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tuned");
    let written = full::save(&t.full_weights().unwrap(), engine.source_path(), &dir).unwrap();
    assert_eq!(written, dir.join(full::GGUF_FILE));
    drop(t);
    // `--model DIR` finds the model in the folder, named after the folder.
    let model_ref: trsr::llm::source::ModelRef = dir.display().to_string().parse().unwrap();
    let tuned = Engine::load(&model_ref, &opts).unwrap();
    assert_eq!(tuned.info().identity.name, "tuned");
    assert_eq!(tuned.info().n_params, engine.info().n_params);
    assert_eq!(tuned.answer_ids(), engine.answer_ids(), "same tokenizer");
    let got = model_logits(tuned.model(), &ids);
    let d = max_diff(&got, &want);
    assert!(
        d < 2e-3,
        "saved model's logits differ from the trainer's by {d}"
    );
    let moved = max_diff(&model_logits(engine.model(), &ids), &want);
    assert!(moved > 1e-2, "training left the logits unchanged ({moved})");
}

#[test]
fn cli_train_full_writes_a_model_that_score_loads() {
    let Some(_) = common::default_model() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mind");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/mind");
    let (ok, _, err) = common::trsr(&[
        "prepare",
        "--input",
        sample.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
        "--split",
        "train=0.5,val=0.5",
    ]);
    assert!(ok, "{err}");
    let out = tmp.path().join("full");
    let (ok, stdout, err) = common::trsr(&[
        "train",
        "--full",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--max-train-cases",
        "1",
        "--max-val-cases",
        "1",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        "--truncate-tokens",
        "96",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("134515008 trainable parameters"), "{err}");
    assert!(err.contains("model (epoch 1) written to"), "{err}");
    assert!(stdout.contains("epoch 1 (best)"), "{stdout}");
    assert!(out.join(full::GGUF_FILE).is_file());
    assert!(out.join("train_log.json").is_file());
    // The epoch's checkpoint moved to the top: no second copy of the model.
    assert!(!out.join("checkpoints/epoch-1").exists());
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train_log.json")).unwrap())
            .unwrap();
    assert_eq!(log["settings"]["full"], true);
    assert_eq!(log["best_epoch"], 1);

    let scores = tmp.path().join("scores.jsonl");
    let (ok, _, err) = common::trsr(&[
        "score",
        "--data",
        data.to_str().unwrap(),
        "--model",
        out.to_str().unwrap(),
        "--split",
        "val",
        "--limit",
        "1",
        "--no-summary",
        "--out",
        scores.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(ok, "{err}");
    let line = std::fs::read_to_string(&scores).unwrap();
    assert!(
        line.contains("\"scorer\":\"llm:full:"),
        "the model is named after its folder: {line}"
    );
}
