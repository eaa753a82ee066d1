//! The generic path (candle's operations: the code the CUDA build runs) forced onto the
//! CPU and compared with the engine's CPU kernels on the real default model, through the
//! library and through `trsr gpu-check --device cpu`; and `--device cuda` where it cannot
//! be had (no GPU here, and the `cuda` feature is off in CI).

mod common;

use trsr::llm::lora::{LoraConfig, Target};
use trsr::llm::train::{OptimSettings, TrainExample, Trainer};
use trsr::llm::{DevicePref, Engine, LoadOptions};
use trsr::lm::{ChatMessage, LanguageModel, SamplingParams};

fn load(path: &std::path::Path, generic: bool) -> Engine {
    Engine::load_path(
        path,
        &LoadOptions {
            device: DevicePref::Cpu,
            generic_kernels: generic,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

fn greedy(e: &mut Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut g = e
        .start_ids(prompt.to_vec(), &SamplingParams::greedy(n))
        .unwrap();
    let mut out = Vec::new();
    while let Some(d) = e.next_token(&mut g).unwrap() {
        out.push(d.token);
    }
    e.finish(g);
    out
}

#[test]
fn generic_path_matches_the_cpu_kernels_on_the_default_model() {
    let Some(path) = common::default_model() else {
        return;
    };
    let mut cpu = load(&path, false);
    let mut generic = load(&path, true);
    assert!(generic.model().is_generic());
    assert!(!cpu.model().is_generic());
    assert!(
        generic.info().device.contains("generic path"),
        "{}",
        generic.info().device
    );
    assert_eq!(generic.numerics(), "generic");
    assert!(!generic.model().flash_attention() && !cpu.model().flash_attention());

    // Greedy decode: the first tokens agree.
    let prompt = cpu
        .render_chat(&[ChatMessage::user(
            "Name three fruits and say why they are healthy.",
        )])
        .unwrap();
    let ids = cpu.encode_prompt(&prompt).unwrap();
    let a = greedy(&mut cpu, &ids, 8);
    let b = greedy(&mut generic, &ids, 8);
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "greedy tokens: CPU kernels {a:?}, generic {b:?}");

    // P(yes) after a shared prefix: within 0.05 (the generic path rounds activations to 8
    // bits in candle's quantized kernels, the CPU kernels differently).
    let prefix = cpu
        .encode_prompt("<|im_start|>user\nThe user reads sports news. Candidate: ")
        .unwrap();
    let suffixes: Vec<Vec<u32>> = [
        "Late rally lifts the home side. Will the user click? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
        "Five quick dinners. Will the user click? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
        "Markets close higher. Will the user click? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
    ]
    .iter()
    .map(|s| cpu.tokenizer().encode(s, false).unwrap())
    .collect();
    let pa = cpu.score_ids(&prefix, &suffixes).unwrap();
    let pb = generic.score_ids(&prefix, &suffixes).unwrap();
    for (x, y) in pa.iter().zip(&pb) {
        assert!(
            (x - y).abs() < 0.05,
            "P(yes): CPU kernels {pa:?}, generic {pb:?}"
        );
    }
    // Not the same arithmetic: the comparison above is not comparing a path with itself.
    assert_ne!(pa, pb);

    // One tiny LoRA step on the generic path: same loss as the CPU kernels' trainer
    // before it, and the step changes it.
    let (yes, _) = generic.answer_ids();
    let mut train_ids = prefix.clone();
    train_ids.extend_from_slice(&suffixes[0]);
    train_ids.push(yes);
    let ex = TrainExample {
        loss_from: train_ids.len() - 1,
        ids: train_ids,
    };
    let cfg = LoraConfig {
        r: 4,
        dropout: 0.0,
        targets: vec![Target::Q, Target::V],
        ..LoraConfig::paper()
    };
    let optim = OptimSettings {
        lr: 1e-2,
        ..OptimSettings::default()
    };
    let mut losses = Vec::new();
    for e in [&cpu, &generic] {
        let mut t = Trainer::new(e.model(), cfg.clone(), &optim, None, 3).unwrap();
        let before = t.backward(&ex, 1.0).unwrap();
        t.step(optim.lr).unwrap();
        let after = t.loss(&ex, false).unwrap().to_scalar::<f32>().unwrap();
        assert!(
            after.is_finite() && (after - before).abs() > 1e-5,
            "{before} -> {after}"
        );
        losses.push(before);
    }
    assert!(
        (losses[0] - losses[1]).abs() < 0.02 * losses[0].abs().max(1.0),
        "loss before the step: CPU kernels {}, generic {}",
        losses[0],
        losses[1]
    );
}

#[test]
fn gpu_check_on_the_cpu_passes_and_can_fail() {
    let Some(path) = common::default_model() else {
        return;
    };
    let model = path.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.md");
    let (ok, out, err) = common::trsr(&[
        "gpu-check",
        "--device",
        "cpu",
        "--model",
        model,
        "--tokens",
        "8",
        "--candidates",
        "4",
        "--bench",
        "--bench-users",
        "1",
        "--decode-tokens",
        "8",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    for check in [
        "load",
        "greedy decode",
        "P(yes)",
        "LoRA step",
        "sampling copies",
        "bf16 LoRA step",
    ] {
        assert!(out.contains(&format!("PASS {check}:")), "{check}:\n{out}");
    }
    assert!(out.contains("generic path"), "{out}");
    // Flash attention needs the `flash-attn` build and a GPU: said, not failed.
    assert!(
        out.contains("PASS flash attention: not run: this build has no flash attention"),
        "{out}"
    );
    assert!(
        out.contains("greedy 16/16 equal, 8 of 196608 bytes"),
        "{out}"
    );
    assert!(out.contains("with small copies"), "{out}");
    assert!(
        out.contains("tok/s") && out.contains("candidates/s"),
        "{out}"
    );
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.starts_with("## gpu-check: "), "{md}");
    assert!(md.contains("**PASS** P(yes)"), "{md}");

    // With no tolerance the two paths' different arithmetic shows: the check fails.
    let (ok, out, err) = common::trsr(&[
        "gpu-check",
        "--device",
        "cpu",
        "--model",
        model,
        "--tokens",
        "2",
        "--candidates",
        "2",
        "--p-yes-tolerance",
        "0",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL P(yes):"), "{out}");
    assert!(err.contains("gpu-check failed: P(yes)"), "{err}");
}

#[test]
fn cuda_that_cannot_be_had_is_a_clear_error_offering_the_cpu() {
    if cfg!(feature = "cuda") {
        common::skipped("this build has the `cuda` feature; the error differs with a GPU");
        return;
    }
    let Some(path) = common::default_model() else {
        return;
    };
    let model = path.to_str().unwrap();
    let (ok, out, err) = common::trsr(&["gpu-check", "--device", "cuda", "--model", model]);
    assert!(!ok);
    assert!(out.contains("FAIL load:"), "{out}");
    assert!(out.contains("without the `cuda` feature"), "{out}");
    assert!(out.contains("--device cpu"), "{out}");
    assert!(err.contains("did not load on cuda"), "{err}");
    // `auto` is refused: the check needs a named device.
    let (ok, _, err) = common::trsr(&["gpu-check", "--device", "auto"]);
    assert!(!ok);
    assert!(err.contains("not auto"), "{err}");
}
