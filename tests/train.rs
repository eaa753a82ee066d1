//! LoRA training: the loss goes down on the tiny fixture model, a saved adapter reproduces
//! the trainer's logits, and `llm::finetune::train` on the real default model writes PEFT
//! checkpoints whose scores come back the same when the adapter is loaded again.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use trsr::data::Case;
use trsr::llm::finetune::{lora_config, train};
use trsr::llm::lora::{self, Adapter, LoraConfig, Target};
use trsr::llm::model::Model;
use trsr::llm::train::{OptimSettings, TrainExample, Trainer};
use trsr::llm::{Engine, LoadOptions};
use trsr::lm::CancelToken;
use trsr::rank::{score_llm, RecommendOptions};
use trsr::train::{TrainEvent, TrainInput, TrainSettings};

fn fixture_model() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora/tiny-llama");
    Model::from_safetensors(&dir, &Device::Cpu).unwrap()
}

fn examples() -> Vec<TrainExample> {
    // Two "prompts" that differ only in their middle, answered with different tokens.
    vec![
        TrainExample {
            ids: vec![1, 5, 17, 42, 8, 63, 70],
            loss_from: 6,
        },
        TrainExample {
            ids: vec![1, 5, 17, 43, 8, 63, 71],
            loss_from: 6,
        },
    ]
}

#[test]
fn loss_goes_down_and_saved_adapter_reproduces_the_logits() {
    let model = fixture_model();
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![Target::Q, Target::K, Target::V, Target::O],
        use_rslora: false,
        base_model: Some("tiny-llama".into()),
    };
    let optim = OptimSettings {
        lr: 1e-2,
        ..OptimSettings::default()
    };
    let mut t = Trainer::new(&model, cfg, &optim, None, 7).unwrap();
    // Fresh LoRA: B is zero, so the model is the base model.
    let mut losses = Vec::new();
    for _ in 0..30 {
        let mut sum = 0.0;
        for ex in examples() {
            sum += t.backward(&ex, 0.5).unwrap();
        }
        t.step(1e-2).unwrap();
        losses.push(sum / 2.0);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < first * 0.5,
        "loss did not go down enough: {first} -> {last} ({losses:?})"
    );

    // Save -> load -> the same logits as the trainer's.
    let dir = tempfile::tempdir().unwrap();
    let adapter = t.adapter().unwrap();
    adapter.save(dir.path()).unwrap();
    let loaded = Adapter::load(dir.path()).unwrap();
    assert_eq!(loaded.config.r, 4);
    assert_eq!(loaded.config.base_model.as_deref(), Some("tiny-llama"));
    let ids = &examples()[0].ids;
    let want = t.eval_logits(ids).unwrap();
    let mut m = fixture_model();
    lora::apply(&mut m, Some(&loaded), true).unwrap();
    let mut cache = m.new_cache(ids.len()).unwrap();
    let h = m
        .forward_batch(ids, 1, ids.len(), &mut cache, true)
        .unwrap();
    let got = m.logits(&h).unwrap();
    let d = (got - &want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-4, "loaded adapter logits differ by {d}");
    // And they differ from the base model's: training changed something.
    let mut cache = fixture_model().new_cache(ids.len()).unwrap();
    let base = fixture_model();
    let hb = base
        .forward_batch(ids, 1, ids.len(), &mut cache, true)
        .unwrap();
    let moved = (base.logits(&hb).unwrap() - &want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 0.05, "training left the logits unchanged ({moved})");
}

#[test]
fn dropout_and_bad_examples() {
    let model = fixture_model();
    let cfg = LoraConfig {
        dropout: 0.5,
        ..LoraConfig::paper()
    };
    let mut t = Trainer::new(&model, cfg, &OptimSettings::default(), None, 1).unwrap();
    // r 8 on q/k/v/o of 2 layers: A [8, in] + B [out, 8].
    // q: 32->32, k/v: 32->16, o: 32->32.
    let per_layer = 8 * 32 * 4 + 8 * (32 + 16 + 16 + 32);
    assert_eq!(t.n_trainable(), 2 * per_layer);
    let err = t
        .backward(
            &TrainExample {
                ids: vec![1],
                loss_from: 1,
            },
            1.0,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("no token to learn"), "{err}");
    let long = TrainExample {
        ids: vec![3; 200],
        loss_from: 199,
    };
    let err = t.backward(&long, 1.0).unwrap_err().to_string();
    assert!(err.contains("exceeds the model's context of 64"), "{err}");
}

#[test]
fn settings_are_checked() {
    let mut s = TrainSettings::default();
    assert_eq!(s.epochs, 5);
    assert_eq!(s.lora_r, 8);
    assert_eq!(s.lora_alpha, 16.0);
    assert_eq!(s.lr, 1e-4);
    assert_eq!((s.beta1, s.beta2), (0.9, 0.95));
    assert_eq!(s.weight_decay, 5e-4);
    let cfg = lora_config(&s).unwrap();
    assert_eq!(
        cfg.targets,
        vec![Target::Q, Target::K, Target::V, Target::O]
    );
    // Warmup then linear decay.
    let lrs: Vec<f64> = (0..10).map(|i| s.lr_at(i, 10)).collect();
    assert!(lrs[0] <= lrs[1] && (lrs[1] - 1e-4).abs() < 1e-12, "{lrs:?}");
    assert!(lrs[9] < lrs[2], "{lrs:?}");
    s.targets = vec!["q_proj".into(), "lm_head".into()];
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("lm_head"), "{err}");
    let s = TrainSettings {
        epochs: 0,
        ..TrainSettings::default()
    };
    assert!(s.validate().unwrap_err().to_string().contains("epochs"));
}

fn model_path() -> Option<PathBuf> {
    common::default_model()
}

#[test]
fn real_model_train_writes_peft_checkpoints_that_score_the_same_when_loaded() {
    let Some(path) = model_path() else { return };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/jsonl");
    let data = trsr::data::jsonl::load_prepared(&repo).unwrap();
    let templates = trsr::prompt::Templates::news();
    let text = trsr::data::ItemTextTemplate::with_fields(trsr::data::MIND_FIELDS);
    // Short histories and few negatives keep the test quick.
    let mut cases: Vec<Case> = data.cases.iter().take(3).cloned().collect();
    for (i, c) in cases.iter_mut().enumerate() {
        c.negatives.truncate(3);
        c.split = Some(if i < 2 { "train" } else { "val" }.into());
    }
    let summaries: HashMap<String, String> = HashMap::from([(
        cases[0].case.clone(),
        "Reads mostly sports and politics.".to_string(),
    )]);
    let input = TrainInput {
        train: cases.iter().take(2).collect(),
        val: cases.iter().skip(2).collect(),
        catalogue: &data.catalogue,
        text: &text,
        templates: &templates,
        summaries: &summaries,
        opts: RecommendOptions::default(),
    };
    let settings = TrainSettings {
        epochs: 2,
        batch_size: 2,
        grad_accum: 1,
        lr: 2e-3,
        ..TrainSettings::default()
    };
    let opts = LoadOptions {
        threads: Some(2),
        yes_word: templates.yes.clone(),
        no_word: templates.no.clone(),
        ..LoadOptions::default()
    };
    let mut engine = Engine::load_path(&path, &opts).unwrap();
    // The validation case's scores with whatever the engine holds.
    let score_val = |e: &mut Engine| {
        score_llm(
            e,
            &templates,
            &cases[2],
            &data.catalogue,
            &text,
            None,
            &RecommendOptions::default(),
        )
        .unwrap()
    };
    let before = score_val(&mut engine);
    let out = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let report = train(
        &mut engine,
        &input,
        &settings,
        out.path(),
        &CancelToken::new(),
        &mut |e| events.push(e.clone()),
    )
    .unwrap();
    // The SFT set: one positive and one negative per training case.
    assert_eq!(report.build.examples, 4);
    assert_eq!(report.build.with_summary, 2);
    assert_eq!(report.build.without_summary, 2);
    assert_eq!(report.epochs.len(), 2);
    assert!(report.before.is_some());
    assert!(matches!(events.first(), Some(TrainEvent::Prepared { .. })));
    let examples = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Example { .. }))
        .count();
    assert_eq!(examples, 8);
    let steps = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Step { .. }))
        .count();
    assert_eq!(steps, 4);
    let best = report.best_epoch.unwrap();
    assert!(report.epochs.iter().filter(|e| e.best).count() == 1);
    for f in [Adapter::CONFIG_FILE, Adapter::WEIGHTS_FILE] {
        assert!(out.path().join(f).is_file(), "{f}");
        for e in 1..=2 {
            assert!(out
                .path()
                .join(format!("checkpoints/epoch-{e}/{f}"))
                .is_file());
        }
    }
    assert!(out.path().join("train_log.json").is_file());
    // The engine is left without an adapter.
    assert!(!engine.info().identity.name.contains('+'));

    // Scores with the best checkpoint: loaded at start-up (merged) ...
    let loaded_opts = LoadOptions {
        adapter: Some(out.path().to_path_buf()),
        ..opts.clone()
    };
    let mut tuned = Engine::load_path(&path, &loaded_opts).unwrap();
    assert!(tuned.info().identity.name.ends_with(&format!(
        "+{}",
        out.path().file_name().unwrap().to_string_lossy()
    )));
    let after = score_val(&mut tuned);
    // ... equal those of the best epoch's checkpoint applied at run time.
    let ckpt = Adapter::load(&out.path().join(format!("checkpoints/epoch-{best}"))).unwrap();
    engine.set_adapter(Some(&ckpt), Some("check")).unwrap();
    let runtime = score_val(&mut engine);
    let mut moved = 0f64;
    for ((a, r), b) in after
        .candidates
        .iter()
        .zip(&runtime.candidates)
        .zip(&before.candidates)
    {
        assert!(
            (a.score - r.score).abs() < 1e-3,
            "merged {} vs run-time {}",
            a.score,
            r.score
        );
        moved = moved.max((a.score - b.score).abs());
    }
    assert!(moved > 1e-3, "training did not change the scores ({moved})");
    // The per-epoch train loss went down.
    assert!(
        report.epochs[1].train_loss < report.epochs[0].train_loss,
        "{:?}",
        report
            .epochs
            .iter()
            .map(|e| e.train_loss)
            .collect::<Vec<_>>()
    );
    // A mismatching base model is refused by name.
    let other = tempfile::tempdir().unwrap();
    let mut a = Adapter::load(out.path()).unwrap();
    a.config.base_model = Some("Qwen/Qwen2.5-0.5B-Instruct".into());
    a.save(other.path()).unwrap();
    let err = Engine::load_path(
        &path,
        &LoadOptions {
            adapter: Some(other.path().to_path_buf()),
            ..opts.clone()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("Qwen2.5") && err.contains("--ignore-adapter-base"),
        "{err}"
    );
}
