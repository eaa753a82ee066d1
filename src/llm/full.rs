//! Saving the weights of a full fine-tuning as a model the engine loads again, in the
//! base model's own format, so that `--model DIR` scores with it and nothing about the
//! tokenizer or the chat template can drift:
//! - a GGUF base gives `DIR/model.gguf`: the base file's metadata (tokenizer, chat
//!   template, hyper-parameters) with every trained tensor in f32 (`general.file_type`
//!   0), the rest copied as they were;
//! - a Hugging Face base gives `DIR/model.safetensors` (f32, Hugging Face names) beside
//!   copies of its `config.json` and tokenizer files.
//!
//! f32 because training ran in f32: scoring the saved model reproduces the validation
//! scores of its epoch. Quantize it with llama.cpp if a smaller file is wanted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::train::FullWeights;

/// The model file a GGUF base's fine-tuning is saved as.
pub const GGUF_FILE: &str = crate::train::FULL_GGUF_FILE;
/// The weights file a Hugging Face base's fine-tuning is saved as.
pub const SAFETENSORS_FILE: &str = crate::train::FULL_SAFETENSORS_FILE;
/// The files copied from a Hugging Face base folder beside the weights.
const HF_FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
];

/// Whether `base` (an engine's source) is Hugging Face weights rather than a GGUF file.
fn is_hf(base: &Path) -> bool {
    base.is_dir() || base.extension().is_some_and(|e| e == "safetensors")
}

/// Writes `weights` as a model in `dir` (created), in the format of the `base` model
/// they were trained from; returns the written weights file.
pub fn save(weights: &FullWeights, base: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if is_hf(base) {
        let base_dir = if base.is_dir() {
            base
        } else {
            base.parent().unwrap_or(Path::new("."))
        };
        save_safetensors(weights, base_dir, dir)
    } else {
        save_gguf(weights, base, dir)
    }
}

/// Moves a saved model's files from `from` to `to` (the best epoch to the top of the
/// output folder), replacing what is there.
pub fn move_model(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::rename(&path, to.join(name))
                .with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
        }
    }
    std::fs::remove_dir(from).with_context(|| format!("removing {}", from.display()))
}

/// A copy of `t` in storage of its own: candle's quantize and safetensors writer read
/// a tensor's whole storage, not a narrowed view of it.
fn owned(t: &Tensor) -> anyhow::Result<Tensor> {
    let data = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(Tensor::from_vec(data, t.dims(), &Device::Cpu)?)
}

/// `t`'s rows split at `sizes` (q|k|v, gate|up).
fn split_rows(t: &Tensor, sizes: &[usize]) -> anyhow::Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut at = 0;
    for &n in sizes {
        out.push(owned(&t.narrow(0, at, n)?)?);
        at += n;
    }
    Ok(out)
}

/// The weights under the names `name(role, layer)` gives (`None` layer: model-level).
fn named(
    w: &FullWeights,
    name: impl Fn(&str, Option<usize>) -> String,
) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let c = &w.config;
    let (qd, kd) = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
    let mut out = BTreeMap::new();
    out.insert(name("embed", None), w.embed.clone());
    out.insert(name("norm", None), w.norm.clone());
    if let Some(h) = &w.head {
        out.insert(name("head", None), h.clone());
    }
    for (i, l) in w.layers.iter().enumerate() {
        let mut put = |role: &str, t: Tensor| out.insert(name(role, Some(i)), t);
        put("attn_norm", l.attn_norm.clone());
        put("ffn_norm", l.ffn_norm.clone());
        if let Some(t) = &l.q_norm {
            put("q_norm", t.clone());
        }
        if let Some(t) = &l.k_norm {
            put("k_norm", t.clone());
        }
        let qkv = split_rows(&l.qkv, &[qd, kd, kd])?;
        for (role, t) in ["q", "k", "v"].into_iter().zip(qkv) {
            put(role, t);
        }
        if let Some(b) = &l.qkv_bias {
            let parts = split_rows(b, &[qd, kd, kd])?;
            for (role, t) in ["q_bias", "k_bias", "v_bias"].into_iter().zip(parts) {
                put(role, t);
            }
        }
        put("o", l.wo.clone());
        let gu = split_rows(&l.gate_up, &[l.ff, l.ff])?;
        for (role, t) in ["gate", "up"].into_iter().zip(gu) {
            put(role, t);
        }
        put("down", l.down.clone());
    }
    Ok(out)
}

fn gguf_name(role: &str, layer: Option<usize>) -> String {
    let blk = |s: &str| format!("blk.{}.{s}", layer.unwrap_or(0));
    match role {
        "embed" => "token_embd.weight".into(),
        "norm" => "output_norm.weight".into(),
        "head" => "output.weight".into(),
        "q_norm" => blk("attn_q_norm.weight"),
        "k_norm" => blk("attn_k_norm.weight"),
        "q" | "k" | "v" => blk(&format!("attn_{role}.weight")),
        "q_bias" | "k_bias" | "v_bias" => blk(&format!("attn_{}.bias", &role[..1])),
        "o" => blk("attn_output.weight"),
        "gate" | "up" | "down" => blk(&format!("ffn_{role}.weight")),
        other => blk(&format!("{other}.weight")),
    }
}

fn hf_name(role: &str, layer: Option<usize>) -> String {
    let l = |s: &str| format!("model.layers.{}.{s}", layer.unwrap_or(0));
    match role {
        "embed" => "model.embed_tokens.weight".into(),
        "norm" => "model.norm.weight".into(),
        "head" => "lm_head.weight".into(),
        "attn_norm" => l("input_layernorm.weight"),
        "ffn_norm" => l("post_attention_layernorm.weight"),
        "q_norm" | "k_norm" => l(&format!("self_attn.{role}.weight")),
        "q" | "k" | "v" | "o" => l(&format!("self_attn.{role}_proj.weight")),
        "q_bias" | "k_bias" | "v_bias" => l(&format!("self_attn.{}_proj.bias", &role[..1])),
        _ => l(&format!("mlp.{role}_proj.weight")),
    }
}

fn save_gguf(weights: &FullWeights, base: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let (content, mut file) = super::model::read_gguf(base)?;
    let mut trained = named(weights, gguf_name)?;
    // The base file's tensors in its own order; trained ones replaced, in f32.
    let mut infos: Vec<(&String, &gguf_file::TensorInfo)> = content.tensor_infos.iter().collect();
    infos.sort_by_key(|(_, i)| i.offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let q = match trained.remove(name) {
            Some(t) => {
                if t.dims() != info.shape.dims() {
                    anyhow::bail!(
                        "{}: tensor `{name}` has shape {:?} but the trained one {:?}",
                        base.display(),
                        info.shape.dims(),
                        t.dims()
                    );
                }
                QTensor::quantize(&owned(&t)?, GgmlDType::F32)?
            }
            None => content
                .tensor(&mut file, name, &Device::Cpu)
                .with_context(|| format!("{}: reading tensor `{name}`", base.display()))?,
        };
        tensors.push((name.clone(), q));
    }
    if let Some(name) = trained.keys().next() {
        anyhow::bail!(
            "{}: the base model has no tensor `{name}` to write the trained one to",
            base.display()
        );
    }
    let file_type = gguf_file::Value::U32(0);
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if k == "general.file_type" {
                    &file_type
                } else {
                    v
                },
            )
        })
        .collect();
    metadata.sort_by_key(|(k, _)| *k);
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let path = dir.join(GGUF_FILE);
    let tmp = dir.join(format!("{GGUF_FILE}.tmp"));
    let write = || -> anyhow::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        gguf_file::write(&mut w, &metadata, &refs)?;
        use std::io::Write;
        w.flush()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn save_safetensors(weights: &FullWeights, base: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let named: HashMap<String, Tensor> = named(weights, hf_name)?
        .into_iter()
        .map(|(k, t)| Ok((k, owned(&t)?)))
        .collect::<anyhow::Result<_>>()?;
    let path = dir.join(SAFETENSORS_FILE);
    let tmp = dir.join(format!("{SAFETENSORS_FILE}.tmp"));
    candle_core::safetensors::save(&named, &tmp)
        .and_then(|_| Ok(std::fs::rename(&tmp, &path)?))
        .with_context(|| format!("writing {}", path.display()))?;
    for f in HF_FILES {
        let from = base.join(f);
        if from.is_file() {
            std::fs::copy(&from, dir.join(f))
                .with_context(|| format!("copying {} to {}", from.display(), dir.display()))?;
        }
    }
    Ok(path)
}
