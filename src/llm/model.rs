//! The llama-family transformer (llama, qwen2, qwen3) on candle tensors, with an explicit
//! KV cache owned by the caller.
//!
//! Every projection keeps the weight form that suits its workload: quantized (`QMatMul`)
//! for one-token decode, where reading fewer bytes wins, and dequantized f32 for batched
//! prompt work (prefill, candidate scoring), where candle's f32 GEMM is several times
//! faster than the quantized kernels. Large models keep only the quantized form.
//!
//! Attention is written once for the general case: `B` sequences of `L` new tokens each,
//! all continuing one shared prefix held in a [`KvCache`]. Prefill is `B = 1`; candidate
//! scoring is `B` suffixes after the user's prefix; decode (`B = 1, L = 1`) has a shorter
//! path of its own.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul};
use candle_core::{DType, Device, Tensor, D};

use super::config::DENSE_MAX_PARAMS;
pub use super::config::{Arch, Config, WeightForm};
use super::cpu::ops::{causal_mask, decode_attention, pool_attention, silu_mul};
pub use super::gguf::read_gguf;
use super::gguf::{arch_of, bad, md_f32, md_u32, GgufReader};
use super::weights::{packable, packed, packs_on};
pub(crate) use super::weights::{LowRank, Proj, QuantParts};
use super::LlmError;

pub(crate) struct Layer {
    pub(crate) attn_norm: Tensor,
    /// q | k | v.
    pub(crate) qkv: Proj,
    pub(crate) q_norm: Option<Tensor>,
    pub(crate) k_norm: Option<Tensor>,
    pub(crate) wo: Proj,
    pub(crate) ffn_norm: Tensor,
    /// gate | up.
    pub(crate) gate_up: Proj,
    pub(crate) down: Proj,
    pub(crate) ff: usize,
}

impl Layer {
    fn projections(&self) -> [&Proj; 4] {
        [&self.qkv, &self.wo, &self.gate_up, &self.down]
    }

    fn mlp(&self, x: &Tensor, batch: bool) -> candle_core::Result<Tensor> {
        let y = self.gate_up.forward(x, batch)?;
        if let Some(h) = silu_mul(&y, self.ff)? {
            return self.down.forward(&h, batch);
        }
        let g = y.narrow(1, 0, self.ff)?;
        let u = y.narrow(1, self.ff, self.ff)?;
        self.down.forward(&(candle_nn::ops::silu(&g)? * u)?, batch)
    }
}

/// Prefill chunk length in positions on the CPU (prefill chunks end at multiples of it).
/// Shorter chunks cost prefill speed (a cold 300-token prefill of the default model took
/// about 18% longer in chunks of 64 than of 512; 1,500 tokens about 5%), but a kept prefix
/// is cut to a chunk boundary, and with 64 consecutive cases still reuse most of a shared
/// instruction, which should win much of that back in batch scoring (not measured).
const PREFILL_CHUNK_CPU: usize = 64;
/// The same on a GPU, where each chunk is a series of kernel launches.
const PREFILL_CHUNK_GPU: usize = 256;

/// Per-layer keys and values, preallocated to a capacity and written in place.
/// Layout per layer: `[n_kv_head, capacity, head_dim]`.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Forgets everything after the first `len` tokens (keeps the allocation).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    fn view(&self, layer: usize) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            self.k[layer].narrow(1, 0, self.len)?,
            self.v[layer].narrow(1, 0, self.len)?,
        ))
    }
    /// A copy of the first `len` tokens with room for `capacity` (for branching off a prefix).
    pub fn fork(&self, capacity: usize) -> candle_core::Result<KvCache> {
        let capacity = capacity.max(self.len);
        let grow = |t: &Tensor| -> candle_core::Result<Tensor> {
            let (h, _, d) = t.dims3()?;
            let out = Tensor::zeros((h, capacity, d), t.dtype(), t.device())?;
            if self.len > 0 {
                out.slice_set(&t.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            Ok(out)
        };
        Ok(KvCache {
            k: self
                .k
                .iter()
                .map(grow)
                .collect::<candle_core::Result<_>>()?,
            v: self
                .v
                .iter()
                .map(grow)
                .collect::<candle_core::Result<_>>()?,
            len: self.len,
            capacity,
        })
    }
}

pub struct Model {
    pub config: Config,
    pub form: WeightForm,
    pub n_params: u64,
    device: Device,
    pub(crate) embed: Tensor,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Tensor,
    pub(crate) head: Proj,
    /// Dense rows of the output matrix, for the few logits scoring needs.
    pub(crate) head_dense_source: Option<Tensor>,
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
    /// The tables times 1/sqrt(head_dim): rotating q with them also applies the
    /// attention scale, saving an operation per layer.
    pub(crate) cos_q: Tensor,
    pub(crate) sin_q: Tensor,
    /// An adapter is merged into the dense weights (see `lora::apply`).
    pub(crate) merged_adapter: bool,
    /// The output matrix is the embedding (the file has no output matrix of its own).
    pub(crate) tied_head: bool,
    /// Runs the generic path (candle's operations, as on a GPU) although on the CPU: set
    /// when loaded inside `cpu::with_generic(true, ..)` (see `LoadOptions::generic_kernels`).
    pub(crate) generic: bool,
    /// Prefill attention runs candle-flash-attn's fused kernel (see [`flash_attention_fits`]).
    pub(crate) flash: bool,
}

/// Whether prefill attention can run candle-flash-attn's fused kernel here: a build with
/// the `flash-attn` feature, a CUDA GPU of compute capability 8.0 or newer (the kernels
/// are sm_80 code), a head size the kernels take (a multiple of 8, at most 256), and
/// `TRSR_FLASH_ATTN` not set to `0`.
///
/// Only single-sequence prefill chunks use it (prompts, scoring prefixes, block
/// summaries: where attention grows with the prompt). Decoding one token and scoring
/// candidates in a batch keep the matrix-product path, which reads the f32 cache in
/// place; the fused kernel would need it converted to bf16 on every call.
pub fn flash_attention_fits(device: &Device, head_dim: usize) -> bool {
    flash_attention_unfit(device, head_dim).is_none()
}

/// Why [`flash_attention_fits`] says no, or `None` where it fits.
pub fn flash_attention_unfit(device: &Device, head_dim: usize) -> Option<&'static str> {
    if !cfg!(feature = "flash-attn") {
        return Some(
            "this build has no flash attention (scripts/build_cuda.sh with TRSR_FLASH_ATTN=1)",
        );
    }
    if std::env::var("TRSR_FLASH_ATTN").as_deref() == Ok("0") {
        return Some("TRSR_FLASH_ATTN=0");
    }
    let sm80 = super::device::gpu_status(device).is_some_and(|g| g.compute_cap >= (8, 0));
    if !(sm80 && head_dim.is_multiple_of(8) && head_dim <= 256) {
        return Some(
            "the fused kernel needs a CUDA GPU of compute capability 8.0 or newer and a head \
             size that is a multiple of 8 up to 256",
        );
    }
    None
}

fn rope_tables(cfg: &Config, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1f32 / cfg.rope_theta.powf((2 * i) as f32 / cfg.head_dim as f32))
        .collect();
    let n = cfg.context_len;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, half), device)?,
        Tensor::from_vec(sin, (n, half), device)?,
    ))
}

impl Model {
    /// Loads a GGUF model of the llama family.
    pub fn from_gguf(
        content: &gguf_file::Content,
        reader: &mut std::fs::File,
        path: &Path,
        device: &Device,
    ) -> Result<Model, LlmError> {
        let arch = arch_of(content, path)?;
        let key_arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let k = |s: &str| format!("{key_arch}.{s}");
        let n_head = md_u32(content, path, &k("attention.head_count"))?;
        let n_kv_head = md_u32(content, path, &k("attention.head_count_kv")).unwrap_or(n_head);
        let hidden = md_u32(content, path, &k("embedding_length"))?;
        let n_layer = md_u32(content, path, &k("block_count"))?;
        let context_len = md_u32(content, path, &k("context_length")).unwrap_or(4096);
        let head_dim =
            md_u32(content, path, &k("attention.key_length")).unwrap_or(hidden / n_head.max(1));
        if n_head == 0
            || n_kv_head == 0
            || !n_head.is_multiple_of(n_kv_head)
            || !head_dim.is_multiple_of(2)
        {
            return Err(bad(path, format!("inconsistent head counts: {n_head} heads, {n_kv_head} kv heads, head size {head_dim}")));
        }
        let rms_eps = md_f32(content, &k("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
        let rope_theta = md_f32(content, &k("rope.freq_base")).unwrap_or(10_000.0);
        let vocab = match content.tensor_infos.get("token_embd.weight") {
            None => return Err(bad(path, "tensor `token_embd.weight` is missing")),
            Some(t) => match t.shape.dims() {
                [rows, cols] if *cols == hidden => *rows,
                dims => {
                    return Err(bad(
                        path,
                        format!("tensor `token_embd.weight` has shape {dims:?}, expected [vocabulary, {hidden}] (`{}`)", k("embedding_length")),
                    ))
                }
            },
        };
        // Each layer has at least 9 tensors: a count beyond what the file lists is a
        // hostile or broken header, not a reason to reserve memory for it.
        if n_layer == 0 || n_layer > content.tensor_infos.len() {
            return Err(bad(
                path,
                format!(
                    "metadata `{}`: {n_layer} layers, but the file has {} tensors",
                    k("block_count"),
                    content.tensor_infos.len()
                ),
            ));
        }
        let config = Config {
            arch,
            n_layer,
            n_head,
            n_kv_head,
            head_dim,
            hidden,
            vocab,
            // Bound the RoPE tables and caches for very long-context models.
            context_len: context_len.min(32_768),
            rms_eps,
            rope_theta,
            rope_interleaved: arch == Arch::Llama,
        };
        let n_params: u64 = content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count() as u64)
            .sum();
        let all_float = content.tensor_infos.values().all(|t| {
            matches!(
                t.ggml_dtype,
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
            )
        });
        let form = if all_float {
            WeightForm::F32
        } else if n_params <= DENSE_MAX_PARAMS && super::cpu::kernels_on(device) {
            WeightForm::QuantizedAndF32
        } else {
            WeightForm::Quantized
        };
        let mut r = GgufReader {
            content,
            reader,
            path,
            device,
        };
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let has_bias = r.has(&n("attn_q.bias"));
            if arch == Arch::Qwen2 && !has_bias {
                return Err(bad(
                    path,
                    format!("tensor `{}` is missing", n("attn_q.bias")),
                ));
            }
            let bias_names = [n("attn_q.bias"), n("attn_k.bias"), n("attn_v.bias")];
            let qkv = r.proj(
                &[n("attn_q.weight"), n("attn_k.weight"), n("attn_v.weight")],
                has_bias.then_some(&bias_names[..]),
                form,
            )?;
            let (q_norm, k_norm) = if arch == Arch::Qwen3 {
                (
                    Some(r.dense(&n("attn_q_norm.weight"))?),
                    Some(r.dense(&n("attn_k_norm.weight"))?),
                )
            } else {
                (None, None)
            };
            // The head counts and sizes of the metadata size the RoPE tables and caches:
            // they must agree with the tensors the file has.
            let q_name = n("attn_q.weight");
            match content.tensor_infos.get(&q_name).map(|t| t.shape.dims()) {
                Some([rows, cols]) if *rows == n_head * head_dim && *cols == hidden => {}
                Some(dims) => {
                    return Err(bad(
                        path,
                        format!(
                            "tensor `{q_name}` has shape {dims:?}, but the metadata says {n_head} heads of size {head_dim} over {hidden}"
                        ),
                    ))
                }
                None => return Err(bad(path, format!("tensor `{q_name}` is missing"))),
            }
            let ff = match content
                .tensor_infos
                .get(&n("ffn_up.weight"))
                .map(|t| t.shape.dims())
            {
                Some([rows, _]) => *rows,
                Some(dims) => {
                    return Err(bad(
                        path,
                        format!("tensor `{}` has shape {dims:?}", n("ffn_up.weight")),
                    ))
                }
                None => {
                    return Err(bad(
                        path,
                        format!("tensor `{}` is missing", n("ffn_up.weight")),
                    ))
                }
            };
            layers.push(Layer {
                attn_norm: r.dense(&n("attn_norm.weight"))?,
                qkv,
                q_norm,
                k_norm,
                wo: r.proj(&[n("attn_output.weight")], None, form)?,
                ffn_norm: r.dense(&n("ffn_norm.weight"))?,
                gate_up: r.proj(&[n("ffn_gate.weight"), n("ffn_up.weight")], None, form)?,
                down: r.proj(&[n("ffn_down.weight")], None, form)?,
                ff,
            });
        }
        let norm = r.dense("output_norm.weight")?;
        let embed_q = r.qtensor("token_embd.weight")?;
        let embed = if form == WeightForm::Quantized {
            embed_q.dequantize_f16(device)?
        } else {
            embed_q.dequantize(device)?
        };
        let tied = !r.has("output.weight");
        let head_q = if tied {
            embed_q
        } else {
            r.qtensor("output.weight")?
        };
        let head_is_float = matches!(
            head_q.dtype(),
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        );
        let (head, head_dense_source) = if head_is_float || form == WeightForm::F32 {
            let d = if tied {
                embed.to_dtype(DType::F32)?
            } else {
                head_q.dequantize(device)?
            };
            (
                Proj {
                    quant: None,
                    dense: Some(d.clone()),
                    bias: None,
                    lora: None,
                },
                Some(d),
            )
        } else {
            let dense_src = if tied && form != WeightForm::Quantized {
                Some(embed.clone())
            } else {
                None
            };
            // Generation needs one row of logits at a time: the quantized head serves it.
            let (rows, cols) = head_q.shape().dims2()?;
            let head_packed = if packable(head_q.dtype()) && packs_on(device) {
                packed(head_q.dtype(), &head_q.data()?, rows, cols, device)
            } else {
                None
            };
            let quant = match head_packed {
                Some(p) => Some(p),
                None => QuantParts::for_device(vec![QMatMul::from_arc(Arc::new(head_q))?], device)?,
            };
            let head = Proj {
                quant,
                dense: None,
                bias: None,
                lora: None,
            };
            (head, dense_src)
        };
        let (cos, sin) = rope_tables(&config, device)?;
        let flash = flash_attention_fits(device, config.head_dim);
        let scale = 1.0 / (config.head_dim as f64).sqrt();
        let (cos_q, sin_q) = ((&cos * scale)?, (&sin * scale)?);
        Ok(Model {
            config,
            form,
            n_params,
            device: device.clone(),
            embed,
            layers,
            norm,
            head,
            head_dense_source,
            cos,
            sin,
            cos_q,
            sin_q,
            merged_adapter: false,
            tied_head: tied,
            generic: super::cpu::generic_now(),
            flash,
        })
    }

    /// Loads Hugging Face weights: `dir` holds `config.json` and `*.safetensors`
    /// (llama, mistral, qwen2, qwen3). Weights are kept dense (f32, or f16 above
    /// 1.5B parameters to keep memory sane).
    pub fn from_safetensors(dir: &Path, device: &Device) -> Result<Model, LlmError> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LlmError::NotFound(cfg_path.clone())
            } else {
                LlmError::Other(format!("{}: {e}", cfg_path.display()))
            }
        })?;
        let cfg: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| LlmError::Other(format!("{}: invalid JSON: {e}", cfg_path.display())))?;
        let field = |k: &str| -> Result<usize, LlmError> {
            cfg.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| {
                    LlmError::Other(format!(
                        "{}: field `{k}` is missing or not a number",
                        cfg_path.display()
                    ))
                })
        };
        let model_type = cfg
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let arch = match model_type.as_str() {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => {
                return Err(LlmError::UnsupportedArch {
                    arch: other.to_string(),
                    path: cfg_path.clone(),
                })
            }
        };
        let hidden = field("hidden_size")?;
        let n_head = field("num_attention_heads")?;
        let n_kv_head = field("num_key_value_heads").unwrap_or(n_head);
        let n_layer = field("num_hidden_layers")?;
        let head_dim = field("head_dim").unwrap_or(hidden / n_head.max(1));
        let ff = field("intermediate_size")?;
        let vocab = field("vocab_size")?;
        if n_head == 0
            || n_kv_head == 0
            || !n_head.is_multiple_of(n_kv_head)
            || !head_dim.is_multiple_of(2)
        {
            return Err(LlmError::Other(format!(
                "{}: inconsistent head counts",
                cfg_path.display()
            )));
        }
        let f = |k: &str, d: f64| cfg.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
        let config = Config {
            arch,
            n_layer,
            n_head,
            n_kv_head,
            head_dim,
            hidden,
            vocab,
            context_len: field("max_position_embeddings").unwrap_or(4096).min(32_768),
            rms_eps: f("rms_norm_eps", 1e-6) as f32,
            rope_theta: f("rope_theta", 10_000.0) as f32,
            rope_interleaved: false,
        };
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| LlmError::Other(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(LlmError::NotFound(dir.join("model.safetensors")));
        }
        let mut ws = std::collections::HashMap::new();
        for file in &files {
            let part = candle_core::safetensors::load(file, device).map_err(|e| {
                LlmError::Other(format!(
                    "{}: not a valid safetensors file ({e})",
                    file.display()
                ))
            })?;
            ws.extend(part);
        }
        let n_params: u64 = ws.values().map(|t| t.elem_count() as u64).sum();
        let dtype = if n_params > DENSE_MAX_PARAMS {
            DType::F16
        } else {
            DType::F32
        };
        // Each layer has at least 9 tensors: a count beyond what the files hold is broken,
        // not a reason to reserve memory for it.
        if n_layer == 0 || n_layer > ws.len() {
            return Err(LlmError::Other(format!(
                "{}: field `num_hidden_layers`: {n_layer} layers, but the weights have {} tensors",
                cfg_path.display(),
                ws.len()
            )));
        }
        // The head counts and sizes of config.json size the RoPE tables and caches: they
        // must agree with the weights.
        let want = n_head.checked_mul(head_dim).map(|rows| [rows, hidden]);
        for i in 0..n_layer {
            let q_name = format!("model.layers.{i}.self_attn.q_proj.weight");
            if let Some(q) = ws.get(&q_name) {
                if want.as_ref().map(|w| &w[..]) != Some(q.dims()) {
                    return Err(LlmError::Other(format!(
                        "{}: tensor `{q_name}` has shape {:?}, but config.json says {n_head} heads of size {head_dim} over {hidden} (`num_attention_heads`, `head_dim`, `hidden_size`)",
                        dir.display(),
                        q.dims()
                    )));
                }
            }
        }
        let mut take = |name: &str, dt: DType| -> Result<Tensor, LlmError> {
            let t = ws.remove(name).ok_or_else(|| {
                LlmError::Other(format!("{}: tensor `{name}` is missing", dir.display()))
            })?;
            Ok(t.to_dtype(dt)?)
        };
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let n = |s: &str| format!("model.layers.{i}.{s}");
            let qkv = Tensor::cat(
                &[
                    take(&n("self_attn.q_proj.weight"), dtype)?,
                    take(&n("self_attn.k_proj.weight"), dtype)?,
                    take(&n("self_attn.v_proj.weight"), dtype)?,
                ],
                0,
            )?;
            let bias = if arch == Arch::Qwen2 {
                Some(Tensor::cat(
                    &[
                        take(&n("self_attn.q_proj.bias"), DType::F32)?,
                        take(&n("self_attn.k_proj.bias"), DType::F32)?,
                        take(&n("self_attn.v_proj.bias"), DType::F32)?,
                    ],
                    0,
                )?)
            } else {
                None
            };
            let (q_norm, k_norm) = if arch == Arch::Qwen3 {
                (
                    Some(take(&n("self_attn.q_norm.weight"), DType::F32)?),
                    Some(take(&n("self_attn.k_norm.weight"), DType::F32)?),
                )
            } else {
                (None, None)
            };
            let dense = |t: Tensor| Proj {
                quant: None,
                dense: Some(t),
                bias: None,
                lora: None,
            };
            let gate_up = Tensor::cat(
                &[
                    take(&n("mlp.gate_proj.weight"), dtype)?,
                    take(&n("mlp.up_proj.weight"), dtype)?,
                ],
                0,
            )?;
            layers.push(Layer {
                attn_norm: take(&n("input_layernorm.weight"), DType::F32)?,
                qkv: Proj {
                    quant: None,
                    dense: Some(qkv),
                    bias,
                    lora: None,
                },
                q_norm,
                k_norm,
                wo: dense(take(&n("self_attn.o_proj.weight"), dtype)?),
                ffn_norm: take(&n("post_attention_layernorm.weight"), DType::F32)?,
                gate_up: dense(gate_up),
                down: dense(take(&n("mlp.down_proj.weight"), dtype)?),
                ff,
            });
        }
        let norm = take("model.norm.weight", DType::F32)?;
        let embed = take("model.embed_tokens.weight", dtype)?;
        let (head_w, tied) = match take("lm_head.weight", dtype) {
            Ok(w) => (w, false),
            Err(_) => (embed.clone(), true),
        };
        let (cos, sin) = rope_tables(&config, device)?;
        let flash = flash_attention_fits(device, config.head_dim);
        let scale = 1.0 / (config.head_dim as f64).sqrt();
        let (cos_q, sin_q) = ((&cos * scale)?, (&sin * scale)?);
        Ok(Model {
            config,
            form: WeightForm::F32,
            n_params,
            device: device.clone(),
            embed,
            layers,
            norm,
            head: Proj {
                quant: None,
                dense: Some(head_w.clone()),
                bias: None,
                lora: None,
            },
            head_dense_source: Some(head_w),
            cos,
            sin,
            cos_q,
            sin_q,
            merged_adapter: false,
            tied_head: tied,
            generic: super::cpu::generic_now(),
            flash,
        })
    }

    /// `"int8-vnni"` or `"int8-avx2"` when some weights run on the int8 kernels (8-bit
    /// activations; the two levels round a few steps differently), else `""` (see
    /// [`crate::lm::LanguageModel::numerics`]). The generic path has its own tags: `"cuda"`
    /// (`"cuda-flash"` with the fused flash prefill, which rounds attention inputs to
    /// bf16), `"metal"`, or `"generic"` on the CPU (candle's quantized kernels round activations
    /// to 8 bits, unlike the CPU reference).
    pub fn numerics_tag(&self) -> &'static str {
        match &self.device {
            Device::Cuda(_) if self.flash => return "cuda-flash",
            Device::Cuda(_) => return "cuda",
            Device::Metal(_) => return "metal",
            Device::Cpu if self.generic => return "generic",
            Device::Cpu => {}
        }
        let any = self.head.is_packed()
            || self
                .layers
                .iter()
                .any(|l| l.projections().iter().any(|p| p.is_packed()));
        match super::cpu::numerics_tag() {
            Some(tag) if any => tag,
            _ => "",
        }
    }

    /// How the weights are held, for reports: [`WeightForm::describe`], or the int8 kernel
    /// when every layer's projections use it.
    pub fn describe_form(&self) -> String {
        let all = !self.layers.is_empty()
            && self
                .layers
                .iter()
                .all(|l| l.projections().iter().all(|p| p.is_packed()));
        if all {
            let level = match self.numerics_tag() {
                "int8-vnni" => "AVX-512 VNNI",
                _ => "AVX2",
            };
            format!("quantized (int8 kernels, {level}: decode, prefill, scoring)")
        } else {
            self.form.describe().to_string()
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether this model runs the generic path (candle's operations, as on a GPU).
    pub fn is_generic(&self) -> bool {
        self.generic || !self.device.is_cpu()
    }

    /// An empty cache with room for `capacity` tokens.
    pub fn new_cache(&self, capacity: usize) -> candle_core::Result<KvCache> {
        let c = &self.config;
        let capacity = capacity.min(c.context_len).max(1);
        let mk = || {
            Tensor::zeros(
                (c.n_kv_head, capacity, c.head_dim),
                DType::F32,
                &self.device,
            )
        };
        let mut k = Vec::with_capacity(c.n_layer);
        let mut v = Vec::with_capacity(c.n_layer);
        for _ in 0..c.n_layer {
            k.push(mk()?);
            v.push(mk()?);
        }
        Ok(KvCache {
            k,
            v,
            len: 0,
            capacity,
        })
    }

    /// Rows of the output matrix for `ids` (`[ids.len(), hidden]`, f32): the logits of just
    /// these tokens are `hidden · rowsᵀ`.
    pub fn head_rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let idx = Tensor::new(ids, &self.device)?;
        match &self.head_dense_source {
            Some(d) => d.index_select(&idx, 0)?.to_dtype(DType::F32),
            #[cfg(target_arch = "x86_64")]
            None if let Some(QuantParts::Packed(p)) = &self.head.quant => {
                let mut rows = Vec::with_capacity(ids.len() * p.cols());
                for &id in ids {
                    if id as usize >= p.rows() {
                        candle_core::bail!("token {id} is outside the output matrix");
                    }
                    p.dequantize_row(id as usize, &mut rows);
                }
                Tensor::from_vec(rows, (ids.len(), p.cols()), &self.device)
            }
            None => match &self.head.quant {
                Some(q) => q.dequantize(&self.device)?.index_select(&idx, 0),
                None => candle_core::bail!("output matrix has no weights"),
            },
        }
    }

    fn embed(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let idx = Tensor::new(ids, &self.device)?;
        self.embed.index_select(&idx, 0)?.to_dtype(DType::F32)
    }

    /// Rotates `x` (`[b, heads, len, head_dim]`) for positions `pos..pos + len`; with
    /// `scaled` also multiplies by the attention scale (for queries).
    fn rope(
        &self,
        x: &Tensor,
        pos: usize,
        len: usize,
        scaled: bool,
    ) -> candle_core::Result<Tensor> {
        let (cos, sin) = if scaled {
            (&self.cos_q, &self.sin_q)
        } else {
            (&self.cos, &self.sin)
        };
        let cos = cos.narrow(0, pos, len)?;
        let sin = sin.narrow(0, pos, len)?;
        if self.config.rope_interleaved {
            candle_nn::rotary_emb::rope_i(x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(x, &cos, &sin)
        }
    }

    fn split_qkv(&self, y: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let c = &self.config;
        let qd = c.n_head * c.head_dim;
        let kd = c.n_kv_head * c.head_dim;
        Ok((
            y.narrow(1, 0, qd)?,
            y.narrow(1, qd, kd)?,
            y.narrow(1, qd + kd, kd)?,
        ))
    }

    fn head_norm(&self, x: &Tensor, w: &Option<Tensor>) -> candle_core::Result<Tensor> {
        match w {
            None => Ok(x.clone()),
            Some(w) => {
                let dims = x.dims().to_vec();
                let flat = x.reshape(((), self.config.head_dim))?;
                candle_nn::ops::rms_norm(&flat, w, self.config.rms_eps)?.reshape(dims)
            }
        }
    }

    /// Runs `b` sequences of `l` new tokens each (row-major `tokens`, `b * l` ids), all
    /// continuing the prefix in `cache` at positions `cache.len() ..`. Returns the final
    /// hidden states (after the output norm) `[b * l, hidden]`. When `write_cache` is set
    /// (requires `b == 1`) the new keys and values are appended to the cache.
    pub fn forward_batch(
        &self,
        tokens: &[u32],
        b: usize,
        l: usize,
        cache: &mut KvCache,
        write_cache: bool,
    ) -> candle_core::Result<Tensor> {
        super::cpu::with_generic(self.generic, || {
            self.forward_batch_here(tokens, b, l, cache, write_cache)
        })
    }

    fn forward_batch_here(
        &self,
        tokens: &[u32],
        b: usize,
        l: usize,
        cache: &mut KvCache,
        write_cache: bool,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        if tokens.len() != b * l || b == 0 || l == 0 {
            candle_core::bail!("forward_batch: {} tokens for {b} x {l}", tokens.len());
        }
        if write_cache && b != 1 {
            candle_core::bail!("forward_batch: only one sequence can be written to the cache");
        }
        let p = cache.len();
        if p + l > c.context_len || (write_cache && p + l > cache.capacity) {
            candle_core::bail!("forward_batch: {} tokens exceed the cache", p + l);
        }
        let (nkv, g, hd) = (c.n_kv_head, c.group(), c.head_dim);
        // Mask over [prefix | own tokens] for the fallback attention, made when first needed
        // (the CPU kernels mask in place).
        let mut mask: Option<Tensor> = None;
        let mut x = self.embed(tokens)?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps)?;
            let (q, k, v) = self.split_qkv(&layer.qkv.forward(&h, true)?)?;
            // [b*l, heads*hd] -> [b, heads, l, hd]
            let q = q
                .reshape((b, l, c.n_head, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = k.reshape((b, l, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let v = v.reshape((b, l, nkv, hd))?;
            let q = self.head_norm(&q, &layer.q_norm)?;
            let k = self.head_norm(&k, &layer.k_norm)?;
            let q = self.rope(&q, p, l, true)?;
            let k = self.rope(&k, p, l, false)?;
            // q: [b, nkv, g, l, hd] -> [nkv, b*g*l, hd]
            let qa = q
                .reshape((b, nkv, g, l, hd))?
                .permute((1, 0, 2, 3, 4))?
                .contiguous()?
                .reshape((nkv, b * g * l, hd))?;
            // own keys/values: [nkv*b, l, hd]
            let ks = k
                .permute((1, 0, 2, 3))?
                .contiguous()?
                .reshape((nkv * b, l, hd))?;
            let vs = v
                .permute((2, 0, 1, 3))?
                .contiguous()?
                .reshape((nkv * b, l, hd))?;
            let out = match self.flash_prefill(&q, &ks, &vs, cache, li, (b, l, p))? {
                Some(out) => out,
                None => {
                    let pooled = if p > 0 {
                        let (kc, vc) = (&cache.k[li], &cache.v[li]);
                        pool_attention(&qa, kc, vc, &ks, &vs, (nkv, b, g, l, hd, p))?
                    } else {
                        let none = Tensor::zeros((nkv, 1, hd), DType::F32, qa.device())?;
                        pool_attention(&qa, &none, &none, &ks, &vs, (nkv, b, g, l, hd, 0))?
                    };
                    let out = match pooled {
                        Some(out) => out,
                        None => {
                            let m = match mask {
                                Some(ref m) => m,
                                None => mask.insert(causal_mask(l, p, &self.device)?),
                            };
                            self.attention_fallback(&qa, &ks, &vs, m, cache, li, (b, g, l, p))?
                        }
                    };
                    // [nkv, b, g, l, hd] -> [b, l, nkv, g, hd] -> [b*l, hidden]
                    out.reshape((nkv, b, g, l, hd))?
                        .permute((1, 3, 0, 2, 4))?
                        .contiguous()?
                        .reshape((b * l, c.n_head * hd))?
                }
            };
            if write_cache {
                // ks/vs are [nkv*1, l, hd] for b == 1.
                cache.k[li].slice_set(&ks, 1, p)?;
                cache.v[li].slice_set(&vs, 1, p)?;
            }
            let x1 = (layer.wo.forward(&out, true)? + &x)?;
            let h = candle_nn::ops::rms_norm(&x1, &layer.ffn_norm, c.rms_eps)?;
            let m = layer.mlp(&h, true)?;
            x = (m + x1)?;
        }
        if write_cache {
            cache.len = p + l;
        }
        candle_nn::ops::rms_norm(&x, &self.norm, c.rms_eps)
    }

    /// Attention of one sequence's new tokens over the cached prefix and themselves with
    /// candle-flash-attn's fused causal kernel, when [`Self::flash`] is on and `b == 1`:
    /// `[l, hidden]`, or `None` to use the other paths. `q` is `[1, n_head, l, hd]` (already
    /// scaled by the rotation tables), `ks`/`vs` `[nkv, l, hd]`. The kernel takes bf16 in
    /// `[1, len, heads, hd]` and masks causally from the bottom right (query `i` sees keys
    /// up to `p + i`); grouped-query heads map as ours do (query head `h` reads key/value
    /// head `h / g`).
    #[cfg(feature = "flash-attn")]
    #[allow(clippy::too_many_arguments)]
    fn flash_prefill(
        &self,
        q: &Tensor,
        ks: &Tensor,
        vs: &Tensor,
        cache: &KvCache,
        li: usize,
        (b, l, p): (usize, usize, usize),
    ) -> candle_core::Result<Option<Tensor>> {
        if !self.flash || b != 1 {
            return Ok(None);
        }
        let bf16 = DType::BF16;
        let with_prefix = |cached: &Tensor, own: &Tensor| -> candle_core::Result<Tensor> {
            let all = if p > 0 {
                Tensor::cat(&[&cached.narrow(1, 0, p)?, own], 1)?
            } else {
                own.clone()
            };
            // [nkv, p + l, hd] -> [1, p + l, nkv, hd]
            all.transpose(0, 1)?
                .unsqueeze(0)?
                .to_dtype(bf16)?
                .contiguous()
        };
        let kf = with_prefix(&cache.k[li], ks)?;
        let vf = with_prefix(&cache.v[li], vs)?;
        let qf = q.transpose(1, 2)?.to_dtype(bf16)?.contiguous()?;
        // The scale 1/sqrt(hd) is already in q.
        let out = candle_flash_attn::flash_attn(&qf, &kf, &vf, 1.0, true)?;
        let hidden = self.config.n_head * self.config.head_dim;
        Ok(Some(out.to_dtype(DType::F32)?.reshape((l, hidden))?))
    }

    #[cfg(not(feature = "flash-attn"))]
    #[allow(clippy::too_many_arguments)]
    fn flash_prefill(
        &self,
        _q: &Tensor,
        _ks: &Tensor,
        _vs: &Tensor,
        _cache: &KvCache,
        _li: usize,
        _shape: (usize, usize, usize),
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(None)
    }

    /// Whether prefill attention runs the fused flash kernel ([`flash_attention_fits`]).
    pub fn flash_attention(&self) -> bool {
        self.flash
    }

    /// Turns the fused flash kernel off (or back on where it fits), e.g. to compare the
    /// two paths; returns whether it is on now.
    pub fn set_flash_attention(&mut self, on: bool) -> bool {
        self.flash = on && flash_attention_fits(&self.device, self.config.head_dim);
        self.flash
    }

    /// Attention with candle's ops (non-CPU devices): `[nkv, b*g*l, hd]`.
    #[allow(clippy::too_many_arguments)]
    fn attention_fallback(
        &self,
        qa: &Tensor,
        ks: &Tensor,
        vs: &Tensor,
        mask: &Tensor,
        cache: &KvCache,
        li: usize,
        (b, g, l, p): (usize, usize, usize, usize),
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (nkv, hd) = (c.n_kv_head, c.head_dim);
        let s_own = qa
            .reshape((nkv * b, g * l, hd))?
            .matmul(&ks.t()?)?
            .reshape((nkv, b * g * l, l))?;
        let prefix = if p > 0 { Some(cache.view(li)?) } else { None };
        let scores = match &prefix {
            Some((kp, _)) => Tensor::cat(&[&qa.matmul(&kp.t()?)?, &s_own], 2)?,
            None => s_own,
        };
        let scores = scores
            .reshape((nkv * b * g, l, p + l))?
            .broadcast_add(mask)?
            .reshape((nkv, b * g * l, p + l))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let own = probs
            .narrow(2, p, l)?
            .contiguous()?
            .reshape((nkv * b, g * l, l))?
            .matmul(vs)?
            .reshape((nkv, b * g * l, hd))?;
        match &prefix {
            // contiguous: CUDA matmuls take a left operand only with rows back to back.
            Some((_, vp)) => probs.narrow(2, 0, p)?.contiguous()?.matmul(vp)? + own,
            None => Ok(own),
        }
    }

    /// One decode step: `token` at position `cache.len()`, appended to the cache.
    /// Returns the logits over the vocabulary `[vocab]`.
    pub fn forward_one(&self, token: u32, cache: &mut KvCache) -> candle_core::Result<Tensor> {
        super::cpu::with_generic(self.generic, || {
            super::cpu::par::low_latency(|| self.decode_step(token, cache))
        })
    }

    fn decode_step(&self, token: u32, cache: &mut KvCache) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let p = cache.len();
        if p + 1 > cache.capacity {
            candle_core::bail!("forward_one: the cache is full ({} tokens)", cache.capacity);
        }
        let (nkv, g, hd) = (c.n_kv_head, c.group(), c.head_dim);
        let mut x = self.embed(&[token])?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps)?;
            let (q, k, v) = self.split_qkv(&layer.qkv.forward(&h, false)?)?;
            let q = self.head_norm(&q.reshape((1, c.n_head, 1, hd))?, &layer.q_norm)?;
            let k = self.head_norm(&k.reshape((1, nkv, 1, hd))?, &layer.k_norm)?;
            let q = self.rope(&q, p, 1, true)?;
            let k = self.rope(&k, p, 1, false)?;
            cache.k[li].slice_set(&k.reshape((nkv, 1, hd))?, 1, p)?;
            cache.v[li].slice_set(&v.reshape((nkv, 1, hd))?.contiguous()?, 1, p)?;
            let out = match decode_attention(&q, &cache.k[li], &cache.v[li], (nkv, g, hd, p))? {
                Some(out) => out,
                None => {
                    let kc = cache.k[li].narrow(1, 0, p + 1)?;
                    let vc = cache.v[li].narrow(1, 0, p + 1)?;
                    let att = q.reshape((nkv, g, hd))?.matmul(&kc.t()?)?;
                    let att = candle_nn::ops::softmax_last_dim(&att)?;
                    att.matmul(&vc)?
                }
            }
            .reshape((1, c.n_head * hd))?;
            let x1 = (layer.wo.forward(&out, false)? + &x)?;
            let h = candle_nn::ops::rms_norm(&x1, &layer.ffn_norm, c.rms_eps)?;
            let m = layer.mlp(&h, false)?;
            x = (m + x1)?;
        }
        cache.len = p + 1;
        let h = candle_nn::ops::rms_norm(&x, &self.norm, c.rms_eps)?;
        self.head.forward(&h, false)?.squeeze(0)
    }

    /// Logits over the vocabulary for hidden states `[n, hidden]` (already normed).
    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        super::cpu::with_generic(self.generic, || self.head.forward(hidden, false))
    }

    /// Prefill chunk length on this model's device, in positions.
    pub fn prefill_chunk(&self) -> usize {
        if self.device.is_cpu() {
            PREFILL_CHUNK_CPU
        } else {
            PREFILL_CHUNK_GPU
        }
    }

    /// Prefills `tokens` into `cache` in chunks (bounding attention memory) and returns the
    /// normed hidden state of the last token `[1, hidden]`.
    ///
    /// Chunks end at multiples of [`Self::prefill_chunk`] positions, whatever the cache held
    /// before: a position's keys and values are then computed by the same kernels on the
    /// same rows whether the prefix was prefilled in one call or continued from a kept
    /// one, so a reused prefix (kept at a chunk boundary, see `score.rs`) gives bit-for-bit
    /// the numbers of a fresh one. (Kernels' results depend on the rows they see at once:
    /// split differently, a resumed batch run's first case differed from an uninterrupted
    /// run's by up to ~1e-3.)
    pub fn prefill(&self, tokens: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        let mut last = None;
        let mut rest = tokens;
        while !rest.is_empty() {
            // Chunks end at multiples of PREFILL_CHUNK positions.
            let to_boundary = self.prefill_chunk() - cache.len() % self.prefill_chunk();
            let (chunk, tail) = rest.split_at(to_boundary.min(rest.len()));
            let h = self.forward_batch(chunk, 1, chunk.len(), cache, true)?;
            last = Some(h.narrow(0, chunk.len() - 1, 1)?);
            rest = tail;
        }
        last.ok_or_else(|| candle_core::Error::Msg("prefill of no tokens".into()))
    }
}

/// Softmax helper on the last dimension of a small tensor, returned as a Vec.
pub fn log_softmax_vec(logits: &Tensor) -> candle_core::Result<Vec<f32>> {
    candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?.to_vec1::<f32>()
}
