//! LoRA adapters against PyTorch + PEFT: tests/data/lora holds a tiny random Llama in
//! Hugging Face form, a PEFT adapter on it, and the logits, loss and gradients PEFT
//! computed (written once by scripts/make_lora_fixture.py).
//!
//! Checked: our logits with the adapter (safetensors base; GGUF base with the converter's
//! q/k row permutation), the trainer's forward pass, loss and gradients, save -> load, the
//! quantized (run-time) path against the merged dense one, and the mismatch errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use trsr::llm::lora::{self, Adapter, Target};
use trsr::llm::model::{read_gguf, Model};
use trsr::llm::train::{OptimSettings, TrainExample, Trainer};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lora")
}

struct Expected {
    ids: Vec<u32>,
    base: Vec<Vec<f32>>,
    lora: Vec<Vec<f32>>,
    target: u32,
    loss: f32,
    grads: HashMap<String, Vec<Vec<f32>>>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mat = |v: &serde_json::Value| -> Vec<Vec<f32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    };
    Expected {
        ids: v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect(),
        base: mat(&v["base_logits"]),
        lora: mat(&v["lora_logits"]),
        target: v["target"].as_u64().unwrap() as u32,
        loss: v["loss"].as_f64().unwrap() as f32,
        grads: v["grads"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, g)| (k.clone(), mat(g)))
            .collect(),
    }
}

fn max_diff(a: &Tensor, b: &[Vec<f32>]) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a.len(), b.len(), "rows");
    let mut m = 0f32;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len(), "columns");
        for (p, q) in x.iter().zip(y) {
            m = m.max((p - q).abs());
        }
    }
    m
}

/// Logits `[len, vocab]` of `ids` through the batched (dense) path.
fn logits_batch(model: &Model, ids: &[u32]) -> Tensor {
    let mut cache = model.new_cache(ids.len()).unwrap();
    let h = model
        .forward_batch(ids, 1, ids.len(), &mut cache, true)
        .unwrap();
    model.logits(&h).unwrap()
}

/// Logits of the last token, one token at a time (decode path).
fn logits_decode(model: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache(ids.len()).unwrap();
    let mut last = None;
    for &t in ids {
        last = Some(model.forward_one(t, &mut cache).unwrap());
    }
    last.unwrap().to_vec1::<f32>().unwrap()
}

fn safetensors_model() -> Model {
    Model::from_safetensors(&fixture().join("tiny-llama"), &Device::Cpu).unwrap()
}

/// llama.cpp's converter permutes q/k rows for the interleaved rotation.
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (out, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, out / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((out, cols))
        .unwrap()
}

/// Writes the fixture's base model as a llama GGUF, the way convert_hf_to_gguf.py lays
/// it out; attention projections in `attn_dtype`.
fn write_gguf(path: &Path, attn_dtype: GgmlDType) {
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("tiny-llama/config.json")).unwrap(),
    )
    .unwrap();
    let u = |k: &str| cfg[k].as_u64().unwrap() as u32;
    let (n_head, n_kv) = (
        u("num_attention_heads") as usize,
        u("num_key_value_heads") as usize,
    );
    let ws = candle_core::safetensors::load(
        fixture().join("tiny-llama/model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let w = |n: &str| ws[n].to_dtype(DType::F32).unwrap();
    let f = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let a = |t: Tensor| QTensor::quantize(&t, attn_dtype).unwrap();
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            f(w("model.embed_tokens.weight")),
        ),
        ("output_norm.weight".into(), f(w("model.norm.weight"))),
        ("output.weight".into(), f(w("lm_head.weight"))),
    ];
    for i in 0..u("num_hidden_layers") {
        let hf = |s: &str| w(&format!("model.layers.{i}.{s}.weight"));
        let b = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.push((b("attn_norm"), f(hf("input_layernorm"))));
        tensors.push((b("ffn_norm"), f(hf("post_attention_layernorm"))));
        tensors.push((b("attn_q"), a(permute(&hf("self_attn.q_proj"), n_head))));
        tensors.push((b("attn_k"), a(permute(&hf("self_attn.k_proj"), n_kv))));
        tensors.push((b("attn_v"), a(hf("self_attn.v_proj"))));
        tensors.push((b("attn_output"), a(hf("self_attn.o_proj"))));
        tensors.push((b("ffn_gate"), f(hf("mlp.gate_proj"))));
        tensors.push((b("ffn_up"), f(hf("mlp.up_proj"))));
        tensors.push((b("ffn_down"), f(hf("mlp.down_proj"))));
    }
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String("tiny-llama".into())),
        (
            "llama.attention.head_count".into(),
            Value::U32(n_head as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(n_kv as u32),
        ),
        (
            "llama.embedding_length".into(),
            Value::U32(u("hidden_size")),
        ),
        (
            "llama.block_count".into(),
            Value::U32(u("num_hidden_layers")),
        ),
        (
            "llama.context_length".into(),
            Value::U32(u("max_position_embeddings")),
        ),
        (
            "llama.feed_forward_length".into(),
            Value::U32(u("intermediate_size")),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        ("llama.rope.freq_base".into(), Value::F32(10000.0)),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &md_refs, &t_refs).unwrap();
}

fn gguf_model(dir: &tempfile::TempDir, attn: GgmlDType) -> Model {
    let path = dir.path().join("tiny-llama.gguf");
    write_gguf(&path, attn);
    let (content, mut file) = read_gguf(&path).unwrap();
    Model::from_gguf(&content, &mut file, &path, &Device::Cpu).unwrap()
}

fn adapter() -> Adapter {
    Adapter::load(&fixture().join("adapter")).unwrap()
}

#[test]
fn reads_peft_config_and_weights() {
    let a = adapter();
    assert_eq!(a.config.r, 4);
    assert_eq!(a.config.alpha, 8.0);
    assert_eq!(a.config.scale(), 2.0);
    assert_eq!(a.config.base_model.as_deref(), Some("tiny-llama"));
    assert_eq!(
        a.config.targets,
        vec![
            Target::Q,
            Target::K,
            Target::V,
            Target::O,
            Target::Up,
            Target::Down
        ]
    );
    // 2 layers x 6 modules.
    assert_eq!(a.modules.len(), 12);
    assert_eq!(a.modules[&(0, Target::Q)].a.dims(), &[4, 32]);
    assert_eq!(a.modules[&(1, Target::Down)].b.dims(), &[32, 4]);
}

#[test]
fn base_model_matches_pytorch() {
    let e = expected();
    let d = max_diff(&logits_batch(&safetensors_model(), &e.ids), &e.base);
    assert!(
        d < 1e-4,
        "safetensors base logits differ from PyTorch by {d}"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = max_diff(
        &logits_batch(&gguf_model(&dir, GgmlDType::F32), &e.ids),
        &e.base,
    );
    assert!(d < 1e-4, "GGUF base logits differ from PyTorch by {d}");
}

#[test]
fn adapter_on_safetensors_base_matches_peft() {
    let e = expected();
    let mut m = safetensors_model();
    lora::apply(&mut m, Some(&adapter()), true).unwrap();
    let d = max_diff(&logits_batch(&m, &e.ids), &e.lora);
    assert!(d < 1e-4, "merged adapter logits differ from PEFT by {d}");
    // The update is visible: the base logits are far from PEFT's adapted ones.
    let base = max_diff(&logits_batch(&safetensors_model(), &e.ids), &e.lora);
    assert!(
        base > 0.1,
        "the fixture's adapter changes too little ({base})"
    );

    let mut m = safetensors_model();
    lora::apply(&mut m, Some(&adapter()), false).unwrap();
    let d = max_diff(&logits_batch(&m, &e.ids), &e.lora);
    assert!(d < 1e-4, "run-time adapter logits differ from PEFT by {d}");
    // Taken off again: the base logits come back.
    lora::apply(&mut m, None, false).unwrap();
    let d = max_diff(&logits_batch(&m, &e.ids), &e.base);
    assert!(d < 1e-4, "after removing the adapter: {d}");
}

#[test]
fn adapter_on_gguf_base_is_permuted_like_the_weights() {
    let e = expected();
    let dir = tempfile::tempdir().unwrap();
    let mut m = gguf_model(&dir, GgmlDType::F32);
    lora::apply(&mut m, Some(&adapter()), true).unwrap();
    let d = max_diff(&logits_batch(&m, &e.ids), &e.lora);
    assert!(d < 1e-4, "GGUF + adapter logits differ from PEFT by {d}");
    let last = logits_decode(&m, &e.ids);
    let want = e.lora.last().unwrap();
    let d = last
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        d < 1e-4,
        "decode path with adapter differs from PEFT by {d}"
    );
}

#[test]
fn quantized_path_applies_the_update_at_run_time() {
    let e = expected();
    let dir = tempfile::tempdir().unwrap();
    let mut m = gguf_model(&dir, GgmlDType::Q8_0);
    let base_last = logits_decode(&m, &e.ids);
    lora::apply(&mut m, Some(&adapter()), true).unwrap();
    // Decode uses the quantized weights plus the run-time update; batched work uses the
    // merged dense weights, or, where the int8 kernels run (AVX-512 VNNI), the quantized
    // ones plus the run-time update too. All land near PEFT's logits (Q8_0 weights; 8-bit
    // activations: ~0.1 on this random model's every position, whose logits move by
    // ~5.6 with the adapter).
    let batch = logits_batch(&m, &e.ids);
    let d_batch = max_diff(&batch, &e.lora);
    let last = logits_decode(&m, &e.ids);
    let want = e.lora.last().unwrap();
    let d = last
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let moved = base_last
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        d_batch < 0.3 && d_batch < moved / 10.0,
        "batched (Q8_0 base) with the adapter is {d_batch} from PEFT (base: {moved})"
    );
    assert!(
        d < 0.1 && d < moved / 5.0,
        "quantized decode with the adapter is {d} from PEFT (base: {moved})"
    );
}

fn check_trainer(model: &Model, what: &str) {
    let e = expected();
    let a = adapter();
    let mut cfg = a.config.clone();
    cfg.dropout = 0.0;
    let mut t = Trainer::new(model, cfg, &OptimSettings::default(), Some(&a), 1).unwrap();
    let d = max_diff(&t.eval_logits(&e.ids).unwrap(), &e.lora);
    assert!(d < 1e-4, "{what}: trainer forward differs from PEFT by {d}");
    let mut ids = e.ids.clone();
    ids.push(e.target);
    let ex = TrainExample {
        loss_from: e.ids.len(),
        ids,
    };
    let loss = t.backward(&ex, 1.0).unwrap();
    assert!(
        (loss - e.loss).abs() < 1e-4,
        "{what}: loss {loss} vs PEFT {}",
        e.loss
    );
    let grads = t.grads().unwrap();
    assert!(!e.grads.is_empty());
    for (name, want) in &e.grads {
        let layer: usize = name
            .split("layers.")
            .nth(1)
            .and_then(|s| s.split('.').next())
            .unwrap()
            .parse()
            .unwrap();
        let target = Target::ALL
            .into_iter()
            .find(|t| name.contains(&format!(".{}.", t.hf_name())))
            .unwrap();
        let (ga, gb) = &grads[&(layer, target)];
        let got = if name.contains("lora_A") { ga } else { gb };
        let scale = want
            .iter()
            .flatten()
            .fold(0f32, |m, x| m.max(x.abs()))
            .max(1e-6);
        let d = max_diff(got, want);
        assert!(
            d < 1e-3 * scale.max(1.0),
            "{what}: gradient of {name} differs from PyTorch by {d} (largest {scale})"
        );
    }
}

#[test]
fn trainer_forward_loss_and_gradients_match_pytorch() {
    check_trainer(&safetensors_model(), "safetensors");
    let dir = tempfile::tempdir().unwrap();
    check_trainer(&gguf_model(&dir, GgmlDType::F32), "gguf");
}

#[test]
fn save_then_load_gives_the_same_adapter_and_logits() {
    let e = expected();
    let dir = tempfile::tempdir().unwrap();
    let m = gguf_model(&dir, GgmlDType::F32);
    let a = adapter();
    let t = Trainer::new(&m, a.config.clone(), &OptimSettings::default(), Some(&a), 1).unwrap();
    let out = dir.path().join("saved");
    t.adapter().unwrap().save(&out).unwrap();
    let b = Adapter::load(&out).unwrap();
    assert_eq!(b.modules.len(), a.modules.len());
    for (k, p) in &a.modules {
        let q = &b.modules[k];
        let da = (&p.a - &q.a).unwrap().abs().unwrap().max_all().unwrap();
        let db = (&p.b - &q.b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(da.to_scalar::<f32>().unwrap(), 0.0, "{k:?} A");
        assert_eq!(db.to_scalar::<f32>().unwrap(), 0.0, "{k:?} B");
    }
    let mut m2 = safetensors_model();
    lora::apply(&mut m2, Some(&b), true).unwrap();
    assert!(max_diff(&logits_batch(&m2, &e.ids), &e.lora) < 1e-4);
}

#[test]
fn mismatched_adapters_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture().join("adapter");
    let copy = |name: &str| -> PathBuf {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in [Adapter::CONFIG_FILE, Adapter::WEIGHTS_FILE] {
            std::fs::copy(src.join(f), d.join(f)).unwrap();
        }
        d
    };
    // Shapes: a model with another hidden size.
    let tiny = safetensors_model();
    let mut a = adapter();
    let (_, ff) = Target::Down.shape(&tiny.config, 48);
    assert_eq!(ff, 32);
    let bad_a = Tensor::zeros((4, 16), DType::F32, &Device::Cpu).unwrap();
    a.modules.get_mut(&(0, Target::Q)).unwrap().a = bad_a;
    let mut m = safetensors_model();
    let err = lora::apply(&mut m, Some(&a), true).unwrap_err().to_string();
    assert!(
        err.contains("does not match the base model") && err.contains("layers.0.self_attn.q_proj"),
        "{err}"
    );
    // A layer the model lacks.
    let mut a = adapter();
    let p = a.modules[&(1, Target::V)].clone();
    a.modules.insert((7, Target::V), p);
    let err = lora::apply(&mut m, Some(&a), true).unwrap_err().to_string();
    assert!(err.contains("layer 7") && err.contains("2 layers"), "{err}");
    // The base model named in the config.
    let a = adapter();
    assert!(lora::base_name_mismatch(&a, "tiny-llama").is_none());
    assert!(lora::base_name_mismatch(&a, "tiny-llama.Q8_0.gguf").is_none());
    let msg = lora::base_name_mismatch(&a, "SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    assert!(
        msg.contains("tiny-llama") && msg.contains("SmolLM2"),
        "{msg}"
    );
    // Config problems name the file and the field.
    // A copy of the adapter whose config has `from` replaced by `to`.
    let edited = |name: &str, from: &str, to: &str| -> PathBuf {
        let d = copy(name);
        let cfg = std::fs::read_to_string(d.join(Adapter::CONFIG_FILE)).unwrap();
        assert!(cfg.contains(from), "the fixture's config has no `{from}`");
        std::fs::write(d.join(Adapter::CONFIG_FILE), cfg.replace(from, to)).unwrap();
        d
    };
    let d = edited("dora", "\"use_dora\": false", "\"use_dora\": true");
    let err = Adapter::load(&d).unwrap_err().to_string();
    assert!(
        err.contains("adapter_config.json") && err.contains("use_dora"),
        "{err}"
    );
    let d = edited("rank", "\"r\": 4", "\"r\": 8");
    let err = Adapter::load(&d).unwrap_err().to_string();
    assert!(err.contains("r = 8"), "{err}");
    let d = copy("truncated");
    let w = std::fs::read(d.join(Adapter::WEIGHTS_FILE)).unwrap();
    std::fs::write(d.join(Adapter::WEIGHTS_FILE), &w[..w.len() / 2]).unwrap();
    let err = Adapter::load(&d).unwrap_err().to_string();
    assert!(
        err.contains("adapter_model.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    let err = Adapter::load(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adapter_config.json") && err.contains("not found"),
        "{err}"
    );
}
