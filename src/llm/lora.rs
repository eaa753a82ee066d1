//! LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! An adapter holds, per layer and target module, `A [r, in]` and `B [out, r]` (PEFT's
//! `lora_A` / `lora_B`, rows in Hugging Face order); the update of a projection is
//! `W' = W + scale · B·A` with `scale = lora_alpha / r` (`/ √r` with rsLoRA).
//!
//! On a model it is applied by [`apply`]: merged into the dense weights where the model
//! keeps them (exact, and free at run time) and applied at run time as `(x·Aᵀ)·Bᵀ` on the
//! quantized path, so decode on quantized weights stays exact too. GGUF llama files store
//! q/k rows permuted for the interleaved rotation; the adapter's `B` rows of q and k are
//! permuted the same way before use, and back when saving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use super::model::{Config, LowRank, Model, Proj};
use super::LlmError;

/// A projection a LoRA update can target, by its Hugging Face module name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// `q_proj`, `k_proj`, ...
    pub fn hf_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The module path inside a layer: `self_attn.q_proj`, `mlp.up_proj`, ...
    pub fn hf_path(self) -> String {
        let block = match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            Target::Gate | Target::Up | Target::Down => "mlp",
        };
        format!("{block}.{}", self.hf_name())
    }

    pub fn from_hf_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.hf_name() == name)
    }

    /// `(in, out)` features of this projection in a model of `config` with `ff` hidden
    /// MLP units.
    pub fn shape(self, config: &Config, ff: usize) -> (usize, usize) {
        let q = config.n_head * config.head_dim;
        let kv = config.n_kv_head * config.head_dim;
        match self {
            Target::Q => (config.hidden, q),
            Target::K | Target::V => (config.hidden, kv),
            Target::O => (q, config.hidden),
            Target::Gate | Target::Up => (config.hidden, ff),
            Target::Down => (ff, config.hidden),
        }
    }
}

/// The adapter's settings (PEFT's `LoraConfig`, the fields we use).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<Target>,
    pub use_rslora: bool,
    /// `base_model_name_or_path`.
    pub base_model: Option<String>,
}

impl LoraConfig {
    /// The paper's settings: r 8, alpha 16, dropout 0.05 on q/k/v/o.
    pub fn paper() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: vec![Target::Q, Target::K, Target::V, Target::O],
            use_rslora: false,
            base_model: None,
        }
    }

    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

/// One module's low-rank pair, in Hugging Face orientation and row order.
#[derive(Clone, Debug)]
pub struct LoraPair {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
}

/// A loaded (or trained) LoRA adapter.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub config: LoraConfig,
    /// `(layer, target) -> (A, B)`.
    pub modules: BTreeMap<(usize, Target), LoraPair>,
    /// Where it was read from, if it was.
    pub source: Option<PathBuf>,
}

fn adapter_err(dir: &Path, file: &str, reason: impl std::fmt::Display) -> LlmError {
    LlmError::Other(format!("{}: {reason}", dir.join(file).display()))
}

/// `base_model.model.model.layers.{i}.{path}.lora_{A|B}.weight` -> `(i, target, is_b)`.
fn parse_tensor_name(name: &str) -> Option<(usize, Target, bool)> {
    let rest = name.strip_prefix("base_model.model.")?;
    let rest = rest.strip_prefix("model.").unwrap_or(rest);
    let rest = rest.strip_prefix("layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, ab) = rest.rsplit_once(".lora_")?;
    let is_b = match ab {
        "A.weight" => false,
        "B.weight" => true,
        _ => return None,
    };
    let target = Target::ALL.into_iter().find(|t| t.hf_path() == module)?;
    Some((layer, target, is_b))
}

impl Adapter {
    pub const CONFIG_FILE: &'static str = "adapter_config.json";
    pub const WEIGHTS_FILE: &'static str = "adapter_model.safetensors";

    /// Reads a PEFT LoRA adapter folder.
    pub fn load(dir: &Path) -> Result<Adapter, LlmError> {
        let cfg_path = dir.join(Self::CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LlmError::Other(format!(
                    "{}: not found (a PEFT LoRA adapter folder holds {} and {})",
                    cfg_path.display(),
                    Self::CONFIG_FILE,
                    Self::WEIGHTS_FILE
                ))
            } else {
                adapter_err(dir, Self::CONFIG_FILE, e)
            }
        })?;
        let cfg: Value = serde_json::from_str(&text)
            .map_err(|e| adapter_err(dir, Self::CONFIG_FILE, format!("invalid JSON: {e}")))?;
        let bad = |reason: String| adapter_err(dir, Self::CONFIG_FILE, reason);
        let peft_type = cfg.get("peft_type").and_then(|v| v.as_str()).unwrap_or("");
        if peft_type != "LORA" {
            return Err(bad(format!(
                "field `peft_type` is `{peft_type}`; only LORA adapters are supported"
            )));
        }
        if cfg.get("use_dora").and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad(
                "`use_dora` is true; DoRA adapters are not supported".into()
            ));
        }
        if cfg.get("fan_in_fan_out").and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad(
                "`fan_in_fan_out` is true (Conv1D layers); llama/qwen models use Linear".into(),
            ));
        }
        match cfg.get("bias").and_then(|v| v.as_str()) {
            None | Some("none") => {}
            Some(b) => {
                return Err(bad(format!(
                    "field `bias` is `{b}`; only `none` is supported"
                )))
            }
        }
        for key in ["modules_to_save", "alpha_pattern", "rank_pattern"] {
            let set = match cfg.get(key) {
                None | Some(Value::Null) => false,
                Some(Value::Object(m)) => !m.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            };
            if set {
                return Err(bad(format!("field `{key}` is set; it is not supported")));
            }
        }
        let r = cfg
            .get("r")
            .and_then(|v| v.as_u64())
            .filter(|&r| r > 0)
            .ok_or_else(|| bad("field `r` is missing or not a positive integer".into()))?
            as usize;
        let alpha = cfg
            .get("lora_alpha")
            .and_then(|v| v.as_f64())
            .ok_or_else(|| bad("field `lora_alpha` is missing or not a number".into()))?;
        let dropout = cfg
            .get("lora_dropout")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        let use_rslora = cfg
            .get("use_rslora")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let base_model = cfg
            .get("base_model_name_or_path")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let declared: Vec<String> = match cfg.get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };

        let w_path = dir.join(Self::WEIGHTS_FILE);
        if !w_path.exists() {
            let bin = dir.join("adapter_model.bin");
            return Err(if bin.exists() {
                LlmError::Other(format!(
                    "{}: PyTorch pickle adapters are not read; save it with \
                     `model.save_pretrained(dir, safe_serialization=True)` to get {}",
                    bin.display(),
                    Self::WEIGHTS_FILE
                ))
            } else {
                LlmError::NotFound(w_path)
            });
        }
        let tensors = candle_core::safetensors::load(&w_path, &Device::Cpu).map_err(|e| {
            LlmError::Other(format!(
                "{}: not a valid safetensors file ({e})",
                w_path.display()
            ))
        })?;
        let mut halves: BTreeMap<(usize, Target), (Option<Tensor>, Option<Tensor>)> =
            BTreeMap::new();
        for (name, t) in tensors {
            let Some((layer, target, is_b)) = parse_tensor_name(&name) else {
                return Err(LlmError::Other(format!(
                    "{}: tensor `{name}` is not a LoRA weight of a llama/qwen projection \
                     (expected base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight \
                     and the like)",
                    w_path.display()
                )));
            };
            let t = t.to_dtype(DType::F32)?;
            if t.rank() != 2 {
                return Err(LlmError::Other(format!(
                    "{}: tensor `{name}` has shape {:?}, expected a matrix",
                    w_path.display(),
                    t.dims()
                )));
            }
            let entry = halves.entry((layer, target)).or_default();
            if is_b {
                entry.1 = Some(t);
            } else {
                entry.0 = Some(t);
            }
        }
        let mut modules = BTreeMap::new();
        let mut targets: Vec<Target> = Vec::new();
        for ((layer, target), (a, b)) in halves {
            let name = format!("layers.{layer}.{}", target.hf_path());
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (None, _) => {
                    return Err(LlmError::Other(format!(
                        "{}: `{name}` has lora_B but no lora_A",
                        w_path.display()
                    )))
                }
                (_, None) => {
                    return Err(LlmError::Other(format!(
                        "{}: `{name}` has lora_A but no lora_B",
                        w_path.display()
                    )))
                }
            };
            if a.dims()[0] != r || b.dims()[1] != r {
                return Err(LlmError::Other(format!(
                    "{}: `{name}` has lora_A {:?} and lora_B {:?}, but the config says r = {r}",
                    w_path.display(),
                    a.dims(),
                    b.dims()
                )));
            }
            if !targets.contains(&target) {
                targets.push(target);
            }
            modules.insert((layer, target), LoraPair { a, b });
        }
        if modules.is_empty() {
            return Err(LlmError::Other(format!(
                "{}: no LoRA weights in the file",
                w_path.display()
            )));
        }
        targets.sort();
        if let Some(missing) = declared
            .iter()
            .filter(|d| d.len() < 40 && Target::from_hf_name(d).is_none())
            .find(|d| !d.contains(['*', '.', '(', '|']))
        {
            return Err(bad(format!(
                "target module `{missing}` is not a llama/qwen projection (supported: {})",
                Target::ALL.map(Target::hf_name).join(", ")
            )));
        }
        Ok(Adapter {
            config: LoraConfig {
                r,
                alpha,
                dropout,
                targets,
                use_rslora,
                base_model,
            },
            modules,
            source: Some(dir.to_path_buf()),
        })
    }

    /// Writes the adapter in PEFT's format (config and safetensors weights).
    pub fn save(&self, dir: &Path) -> Result<(), LlmError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LlmError::Other(format!("{}: {e}", dir.display())))?;
        let c = &self.config;
        let cfg = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": c.base_model,
            "r": c.r,
            "lora_alpha": c.alpha,
            "lora_dropout": c.dropout,
            "target_modules": c.targets.iter().map(|t| t.hf_name()).collect::<Vec<_>>(),
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": c.use_rslora,
            "use_dora": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
            "library": "trsr",
        });
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for ((layer, target), p) in &self.modules {
            let base = format!("base_model.model.model.layers.{layer}.{}", target.hf_path());
            tensors.insert(format!("{base}.lora_A.weight"), p.a.to_dtype(DType::F32)?);
            tensors.insert(format!("{base}.lora_B.weight"), p.b.to_dtype(DType::F32)?);
        }
        let w_tmp = dir.join(format!("{}.tmp", Self::WEIGHTS_FILE));
        candle_core::safetensors::save(&tensors, &w_tmp)
            .map_err(|e| LlmError::Other(format!("{}: {e}", w_tmp.display())))?;
        let text =
            serde_json::to_string_pretty(&cfg).map_err(|e| LlmError::Other(e.to_string()))?;
        let c_tmp = dir.join(format!("{}.tmp", Self::CONFIG_FILE));
        std::fs::write(&c_tmp, text + "\n")
            .map_err(|e| LlmError::Other(format!("{}: {e}", c_tmp.display())))?;
        for (tmp, name) in [(w_tmp, Self::WEIGHTS_FILE), (c_tmp, Self::CONFIG_FILE)] {
            std::fs::rename(&tmp, dir.join(name))
                .map_err(|e| LlmError::Other(format!("{}: {e}", dir.join(name).display())))?;
        }
        Ok(())
    }

    /// SHA-256 over the adapter's two files (for model identity and cache keys).
    pub fn files_sha256(dir: &Path) -> Result<String, LlmError> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for f in [Self::CONFIG_FILE, Self::WEIGHTS_FILE] {
            let p = dir.join(f);
            let s = super::source::file_sha256(&p)
                .map_err(|e| LlmError::Other(format!("{}: {e}", p.display())))?;
            h.update(s.as_bytes());
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Checks the adapter against a model: layer indices and every matrix's shape.
    pub fn check(&self, config: &Config, ffs: &[usize]) -> Result<(), LlmError> {
        let place = self
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "adapter".into());
        for ((layer, target), p) in &self.modules {
            let name = format!("layers.{layer}.{}", target.hf_path());
            let Some(&ff) = ffs.get(*layer) else {
                return Err(LlmError::Other(format!(
                    "{place}: the adapter does not match the base model: `{name}` is in layer \
                     {layer}, but the model has {} layers",
                    config.n_layer
                )));
            };
            let (fin, fout) = target.shape(config, ff);
            let (a, b) = (p.a.dims(), p.b.dims());
            if a[1] != fin || b[0] != fout {
                return Err(LlmError::Other(format!(
                    "{place}: the adapter does not match the base model: `{name}` maps {} -> {} \
                     features (lora_A {a:?}, lora_B {b:?}) but the model's {} maps {fin} -> {fout}",
                    a[1],
                    b[0],
                    target.hf_name()
                )));
            }
        }
        Ok(())
    }
}

/// Hugging Face row order -> GGUF llama row order for q/k (the converter's permutation
/// for the interleaved rotation): rows `[heads, 2, hd/2]` become `[heads, hd/2, 2]`.
pub(crate) fn permute_rows_to_gguf(b: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (out, r) = b.dims2()?;
    let hd = out / heads;
    b.reshape((heads, 2, hd / 2, r))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, r))
}

/// The inverse of [`permute_rows_to_gguf`].
pub(crate) fn permute_rows_from_gguf(b: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (out, r) = b.dims2()?;
    let hd = out / heads;
    b.reshape((heads, hd / 2, 2, r))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, r))
}

/// Heads whose rows a q or k `B` matrix spans, when the model permutes them.
pub(crate) fn permute_heads(config: &Config, target: Target) -> Option<usize> {
    if !config.rope_interleaved {
        return None;
    }
    match target {
        Target::Q => Some(config.n_head),
        Target::K => Some(config.n_kv_head),
        _ => None,
    }
}

/// Which stacked projection of a layer a target lives in, and its row offset there.
pub(crate) fn slot(config: &Config, ff: usize, target: Target) -> (usize, usize) {
    let q = config.n_head * config.head_dim;
    let kv = config.n_kv_head * config.head_dim;
    match target {
        Target::Q => (0, 0),
        Target::K => (0, q),
        Target::V => (0, q + kv),
        Target::O => (1, 0),
        Target::Gate => (2, 0),
        Target::Up => (2, ff),
        Target::Down => (3, 0),
    }
}

/// Puts `adapter` on `model`: merged into dense weights when `merge` is set (and the
/// model holds them), at run time otherwise (and always on the quantized path). A
/// model can hold one adapter; `None` removes a run-time one.
pub fn apply(model: &mut Model, adapter: Option<&Adapter>, merge: bool) -> Result<(), LlmError> {
    let config = model.config.clone();
    let device = model.device().clone();
    if model.merged_adapter {
        return Err(LlmError::Other(
            "this model has an adapter merged into its weights; load the base model again to \
             change adapters"
                .into(),
        ));
    }
    // Remove the current one first.
    for layer in &mut model.layers {
        for proj in [
            &mut layer.qkv,
            &mut layer.wo,
            &mut layer.gate_up,
            &mut layer.down,
        ] {
            proj.lora = None;
        }
    }
    let Some(adapter) = adapter else {
        return Ok(());
    };
    let ffs: Vec<usize> = model.layers.iter().map(|l| l.ff).collect();
    adapter.check(&config, &ffs)?;
    let scale = adapter.config.scale();
    // Group the modules per (layer, slot).
    type Parts<'a> = Vec<(usize, Target, &'a LoraPair)>;
    let mut groups: BTreeMap<(usize, usize), Parts> = BTreeMap::new();
    for ((layer, target), p) in &adapter.modules {
        let (s, off) = slot(&config, ffs[*layer], *target);
        groups
            .entry((*layer, s))
            .or_default()
            .push((off, *target, p));
    }
    for ((li, s), parts) in groups {
        let layer = &mut model.layers[li];
        let ff = layer.ff;
        let proj: &mut Proj = match s {
            0 => &mut layer.qkv,
            1 => &mut layer.wo,
            2 => &mut layer.gate_up,
            _ => &mut layer.down,
        };
        let out_total = match s {
            0 => (config.n_head + 2 * config.n_kv_head) * config.head_dim,
            1 | 3 => config.hidden,
            _ => 2 * ff,
        };
        let in_f = adapter.modules[&(li, parts[0].1)].a.dims()[1];
        let r_total: usize = parts.iter().map(|(_, _, p)| p.a.dims()[0]).sum();
        // A: the modules' A stacked; B: block-diagonal, scale folded in.
        let mut a_rows = Vec::new();
        let mut b_full = Tensor::zeros((out_total, r_total), DType::F32, &Device::Cpu)?;
        let mut col = 0;
        for (off, target, p) in &parts {
            let r = p.a.dims()[0];
            a_rows.push(p.a.clone());
            let mut b = (&p.b * scale)?;
            if let Some(h) = permute_heads(&config, *target) {
                b = permute_rows_to_gguf(&b, h)?;
            }
            let rows = b.dims()[0];
            // Place b at rows off.., columns col..
            let left = Tensor::zeros((rows, col), DType::F32, &Device::Cpu)?;
            let right = Tensor::zeros((rows, r_total - col - r), DType::F32, &Device::Cpu)?;
            let band = Tensor::cat(&[&left, &b, &right], 1)?;
            b_full = b_full.slice_assign(&[*off..*off + rows, 0..r_total], &band)?;
            col += r;
        }
        let a = Tensor::cat(&a_rows, 0)?;
        debug_assert_eq!(a.dims(), &[r_total, in_f]);
        let a = a.to_device(&device)?.contiguous()?;
        let b_full = b_full.to_device(&device)?.contiguous()?;
        let mut in_dense = false;
        if merge {
            if let Some(d) = &proj.dense {
                let delta = b_full.matmul(&a)?.to_dtype(d.dtype())?;
                proj.dense = Some((d + delta)?.contiguous()?);
                in_dense = true;
            }
        }
        // Merged weights serve the dense path; the quantized one (or an unmerged model)
        // applies the update at run time.
        if !in_dense || proj.quant.is_some() {
            proj.lora = Some(LowRank {
                a,
                b: b_full,
                in_dense,
            });
        }
        model.merged_adapter |= in_dense;
    }
    Ok(())
}

/// How well an adapter's `base_model_name_or_path` matches a model's file or folder name:
/// `None` when it matches (or names nothing), else a message.
pub fn base_name_mismatch(adapter: &Adapter, model_name: &str) -> Option<String> {
    let base = adapter.config.base_model.as_deref()?;
    let norm = |s: &str| -> String {
        let s = s.rsplit(['/', '\\']).next().unwrap_or(s).to_lowercase();
        let s = s.strip_suffix(".gguf").unwrap_or(&s).to_string();
        let s = s.strip_suffix("-gguf").unwrap_or(&s).to_string();
        // Drop a quantization suffix such as `.q4_1` or `-q8_0`.
        let cut = s
            .rfind(['.', '-'])
            .filter(|&i| {
                let tail = &s[i + 1..];
                tail.starts_with('q')
                    && tail.len() <= 7
                    && tail[1..].starts_with(|c: char| c.is_ascii_digit())
                    || tail == "f16"
                    || tail == "f32"
                    || tail == "bf16"
            })
            .unwrap_or(s.len());
        s[..cut].replace('_', "-")
    };
    let (a, m) = (norm(base), norm(model_name));
    if a.is_empty() || m.is_empty() || a.contains(&m) || m.contains(&a) {
        None
    } else {
        Some(format!(
            "the adapter was trained on `{base}` but the model is `{model_name}`"
        ))
    }
}
