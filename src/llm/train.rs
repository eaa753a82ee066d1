//! Fine-tuning on candle's autograd: LoRA ([`Trainer::new`]) or every weight
//! ([`Trainer::new_full`]).
//!
//! With LoRA the base weights stay frozen (the model's dense f32 weights, dequantized where it only
//! holds quantized ones); each targeted projection gets a trainable pair `A [r, in]`
//! (Kaiming-uniform, as PEFT initialises it) and `B [out, r]` (zeros), applied as
//! `W·x + scale · B·A·dropout(x)`. The forward pass is written with differentiable
//! candle operations; frozen matrix products on the CPU go through a custom operation
//! whose backward pass computes only the input's gradient (candle's own matmul would
//! also compute the gradient of every frozen weight).
//!
//! The frozen base can be held in bf16 instead ([`Trainer::new_in`], `trsr train --dtype
//! bf16`), for GPUs with bf16: the frozen products run in bf16 (activations cast at each
//! one) while the LoRA pairs, AdamW's state and the loss stay f32. That halves the
//! trainer's dequantized copy of a quantized (GGUF) model's projections; a model already
//! held in dense f32 is shared in f32, so bf16 there adds a half-size copy instead.
//!
//! Full fine-tuning makes every weight of the model a trainable f32 variable, as a
//! Hugging Face `Trainer` without PEFT does: the projections (and Qwen2's biases), the
//! norms, the embedding and the output matrix (one variable when the model ties them).
//! Quantized weights are dequantized first; the result is saved in f32 (`llm::full`).
//! Memory: about 16 bytes per parameter (weight, gradient, AdamW's two moments), plus
//! the activations of one example.
//!
//! Optimiser: AdamW. Gradients of several examples are summed before a step
//! ([`Trainer::backward`], then [`Trainer::step`]).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};

use super::lora::{
    permute_heads, permute_rows_from_gguf, permute_rows_to_gguf, slot, Adapter, LoraConfig,
    LoraPair, Target,
};
use super::model::{Config, Model, Proj};
use crate::train::TrainDtype;

/// Optimiser settings (the paper's: lr 1e-4, AdamW betas 0.9/0.95, weight decay 5e-4).
#[derive(Clone, Debug)]
pub struct OptimSettings {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for OptimSettings {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 5e-4,
        }
    }
}

/// One training sequence: `ids`, with the loss on the tokens at `loss_from..`
/// (each predicted from the tokens before it).
#[derive(Clone, Debug)]
pub struct TrainExample {
    pub ids: Vec<u32>,
    pub loss_from: usize,
}

/// `x [n, in] · wᵀ` for a frozen `w [out, in]`: forward and backward on the engine's threads,
/// the backward only to the input.
struct FrozenLinear {
    w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = s else {
            candle_core::bail!("frozen-linear: f32 input expected");
        };
        let (n, k) = l.shape().dims2()?;
        let data = match l.contiguous_offsets() {
            Some((a, b)) => &v[a..b],
            None => candle_core::bail!("frozen-linear: contiguous input expected"),
        };
        let x = Tensor::from_slice(data, (n, k), &candle_core::Device::Cpu)?;
        let y = super::cpu::ops::dense_matmul(&x, &self.w)?;
        let out = self.w.dim(0)?;
        let y = y.flatten_all()?.to_vec1::<f32>()?;
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        if let Some(x) = super::cpu::ops::pool_matmul(&g, &self.w)? {
            return Ok(Some(x));
        }
        Ok(Some(g.matmul(&self.w)?))
    }
}

/// `x · wᵀ`: through [`FrozenLinear`] for a frozen `w`, through candle's matmul (which
/// also gives `w` its gradient) when `w` is a trained variable.
fn frozen_linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if w.is_variable() {
        return x.matmul(&w.t()?);
    }
    if super::cpu::kernels_on(x.device()) && w.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(FrozenLinear { w: w.clone() })
    } else if w.dtype() == x.dtype() {
        x.matmul(&w.t()?)
    } else {
        x.to_dtype(w.dtype())?.matmul(&w.t()?)?.to_dtype(x.dtype())
    }
}

/// Refuses a training dtype `device` cannot compute: bf16 on a CUDA GPU only with compute
/// capability 8.0 or newer (older GPUs have no bf16 matrix units, and candle's bf16
/// kernels are built for sm_80+).
pub fn check_train_dtype(device: &Device, dtype: TrainDtype) -> anyhow::Result<()> {
    match dtype {
        TrainDtype::F32 => Ok(()),
        TrainDtype::Bf16 => {
            if let Some(g) = super::device::gpu_status(device) {
                if g.compute_cap.0 < 8 {
                    anyhow::bail!(
                        "bf16 training needs a GPU with compute capability 8.0 or newer; {} \
                         has {}.{}: use --dtype f32",
                        g.name,
                        g.compute_cap.0,
                        g.compute_cap.1
                    );
                }
            }
            Ok(())
        }
    }
}

/// A projection's dense weight: the model's, or its quantized parts dequantized.
fn dense_of(p: &Proj, device: &candle_core::Device) -> candle_core::Result<Tensor> {
    if let Some(d) = &p.dense {
        return Ok(d.clone());
    }
    match &p.quant {
        Some(q) => q.dequantize(device),
        None => candle_core::bail!("projection has no weights"),
    }
}

/// AdamW over `params`.
fn adamw(params: Vec<Var>, optim: &OptimSettings) -> candle_core::Result<AdamW> {
    AdamW::new(
        params,
        ParamsAdamW {
            lr: optim.lr,
            beta1: optim.beta1,
            beta2: optim.beta2,
            eps: optim.eps,
            weight_decay: optim.weight_decay,
        },
    )
}

/// The weights of a full fine-tuning, on the CPU in f32, in the model's layout: q|k|v
/// and gate|up stacked, q and k rows in the order the model was loaded with (a GGUF
/// file's for llama GGUF models).
pub struct FullWeights {
    pub config: Config,
    pub embed: Tensor,
    pub norm: Tensor,
    /// The output matrix; `None` when it is the embedding.
    pub head: Option<Tensor>,
    pub layers: Vec<FullLayer>,
}

/// One layer of [`FullWeights`].
pub struct FullLayer {
    pub attn_norm: Tensor,
    pub ffn_norm: Tensor,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub qkv: Tensor,
    pub qkv_bias: Option<Tensor>,
    pub wo: Tensor,
    pub gate_up: Tensor,
    pub down: Tensor,
    pub ff: usize,
}

struct FrozenLayer {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    ff: usize,
    qkv: Tensor,
    qkv_bias: Option<Tensor>,
    wo: Tensor,
    gate_up: Tensor,
    down: Tensor,
}

/// The frozen base: the model's tensors (shared, not copied) in dense f32.
struct Base {
    config: Config,
    device: Device,
    embed: Tensor,
    norm: Tensor,
    cos: Tensor,
    sin: Tensor,
    cos_q: Tensor,
    sin_q: Tensor,
}

/// A trainer over a loaded model. With LoRA it shares the model's tensors (no copy where
/// the model holds dense f32 weights); fully, it holds its own f32 copy of every weight.
/// It does not borrow the model, so the same engine can score between epochs.
pub struct Trainer {
    base: Base,
    /// The layers' weights: frozen tensors, or (full fine-tuning) the variables' tensors.
    frozen: Vec<FrozenLayer>,
    head: Tensor,
    /// The LoRA configuration; `None`: full fine-tuning.
    config: Option<LoraConfig>,
    /// `(layer, target) -> (A, B)`, B rows in the model's order.
    vars: BTreeMap<(usize, Target), (Var, Var)>,
    /// Every trainable variable (the LoRA pairs, or all the weights).
    params: Vec<Var>,
    /// The output matrix is the embedding (one variable, saved once).
    tied_head: bool,
    opt: AdamW,
    acc: Option<GradStore>,
    rng: rand::rngs::StdRng,
    /// The model runs the generic path (see `Model::generic`): so does its training.
    generic: bool,
}

impl Base {
    fn of(model: &Model) -> Base {
        Base {
            config: model.config.clone(),
            device: model.device().clone(),
            embed: model.embed.clone(),
            norm: model.norm.clone(),
            cos: model.cos.clone(),
            sin: model.sin.clone(),
            cos_q: model.cos_q.clone(),
            sin_q: model.sin_q.clone(),
        }
    }
}

impl Trainer {
    /// A trainer with fresh LoRA weights (or `init`'s, to continue training), the frozen
    /// base in f32.
    pub fn new(
        model: &Model,
        config: LoraConfig,
        optim: &OptimSettings,
        init: Option<&Adapter>,
        seed: u64,
    ) -> anyhow::Result<Trainer> {
        Self::new_in(model, config, optim, init, seed, TrainDtype::F32)
    }

    /// [`Trainer::new`] with the frozen base weights (projections and output matrix) held
    /// and multiplied in `dtype`: f32, or bf16 (half the memory; mixed precision: the
    /// activations are cast to bf16 for each frozen product and back, while the LoRA pairs,
    /// AdamW's state and the loss stay f32). BF16 on a CUDA GPU needs compute capability
    /// 8.0 or newer (refused below, naming the GPU's); the CPU computes it (slowly).
    pub fn new_in(
        model: &Model,
        config: LoraConfig,
        optim: &OptimSettings,
        init: Option<&Adapter>,
        seed: u64,
        dtype: TrainDtype,
    ) -> anyhow::Result<Trainer> {
        let device = model.device().clone();
        check_train_dtype(&device, dtype)?;
        let base_dtype = match dtype {
            TrainDtype::F32 => DType::F32,
            TrainDtype::Bf16 => DType::BF16,
        };
        let c = &model.config;
        let mut frozen = Vec::with_capacity(model.layers.len());
        for l in &model.layers {
            frozen.push(FrozenLayer {
                attn_norm: l.attn_norm.clone(),
                ffn_norm: l.ffn_norm.clone(),
                q_norm: l.q_norm.clone(),
                k_norm: l.k_norm.clone(),
                ff: l.ff,
                qkv: dense_of(&l.qkv, &device)?.to_dtype(base_dtype)?,
                qkv_bias: l.qkv.bias.clone(),
                wo: dense_of(&l.wo, &device)?.to_dtype(base_dtype)?,
                gate_up: dense_of(&l.gate_up, &device)?.to_dtype(base_dtype)?,
                down: dense_of(&l.down, &device)?.to_dtype(base_dtype)?,
            });
        }
        let head = match &model.head_dense_source {
            Some(h) => h.to_dtype(base_dtype)?,
            None => dense_of(&model.head, &device)?.to_dtype(base_dtype)?,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut vars = BTreeMap::new();
        let mut all = Vec::new();
        if let Some(a) = init {
            let ffs: Vec<usize> = model.layers.iter().map(|l| l.ff).collect();
            a.check(c, &ffs)?;
        }
        for (li, l) in model.layers.iter().enumerate() {
            for &t in &config.targets {
                let (fin, fout) = t.shape(c, l.ff);
                let (a, b) = match init.and_then(|a| a.modules.get(&(li, t))) {
                    Some(p) => {
                        let mut b = p.b.clone();
                        if let Some(h) = permute_heads(c, t) {
                            b = permute_rows_to_gguf(&b, h)?;
                        }
                        (p.a.to_device(&device)?, b.to_device(&device)?)
                    }
                    None => {
                        // PEFT: kaiming_uniform_(a = sqrt(5)) on A gives bound 1/sqrt(in).
                        let bound = 1.0 / (fin as f64).sqrt();
                        let data: Vec<f32> = (0..config.r * fin)
                            .map(|_| rng.random_range(-bound..bound) as f32)
                            .collect();
                        (
                            Tensor::from_vec(data, (config.r, fin), &device)?,
                            Tensor::zeros((fout, config.r), DType::F32, &device)?,
                        )
                    }
                };
                let (a, b) = (Var::from_tensor(&a)?, Var::from_tensor(&b)?);
                all.push(a.clone());
                all.push(b.clone());
                vars.insert((li, t), (a, b));
            }
        }
        let opt = adamw(all.clone(), optim)?;
        Ok(Trainer {
            base: Base::of(model),
            frozen,
            head,
            config: Some(config),
            vars,
            params: all,
            tied_head: model.tied_head,
            opt,
            acc: None,
            rng,
            generic: model.generic,
        })
    }

    /// A trainer of every weight of `model` (full fine-tuning), starting from its weights
    /// in f32.
    pub fn new_full(model: &Model, optim: &OptimSettings) -> anyhow::Result<Trainer> {
        let device = model.device().clone();
        let mut params = Vec::new();
        let mut var = |t: Tensor| -> anyhow::Result<Tensor> {
            let v = Var::from_tensor(&t.to_dtype(DType::F32)?.contiguous()?)?;
            let t = v.as_tensor().clone();
            params.push(v);
            Ok(t)
        };
        let mut frozen = Vec::with_capacity(model.layers.len());
        for l in &model.layers {
            frozen.push(FrozenLayer {
                attn_norm: var(l.attn_norm.clone())?,
                ffn_norm: var(l.ffn_norm.clone())?,
                q_norm: l.q_norm.clone().map(&mut var).transpose()?,
                k_norm: l.k_norm.clone().map(&mut var).transpose()?,
                ff: l.ff,
                qkv: var(dense_of(&l.qkv, &device)?)?,
                qkv_bias: l.qkv.bias.clone().map(&mut var).transpose()?,
                wo: var(dense_of(&l.wo, &device)?)?,
                gate_up: var(dense_of(&l.gate_up, &device)?)?,
                down: var(dense_of(&l.down, &device)?)?,
            });
        }
        let mut base = Base::of(model);
        base.embed = var(model.embed.clone())?;
        base.norm = var(model.norm.clone())?;
        let head = if model.tied_head {
            base.embed.clone()
        } else {
            match &model.head_dense_source {
                Some(h) => var(h.clone())?,
                None => var(dense_of(&model.head, &device)?)?,
            }
        };
        let opt = adamw(params.clone(), optim)?;
        Ok(Trainer {
            base,
            frozen,
            head,
            config: None,
            vars: BTreeMap::new(),
            params,
            tied_head: model.tied_head,
            opt,
            acc: None,
            rng: rand::rngs::StdRng::seed_from_u64(0),
            generic: model.generic,
        })
    }

    /// The LoRA configuration (`None`: full fine-tuning).
    pub fn config(&self) -> Option<&LoraConfig> {
        self.config.as_ref()
    }

    /// The format the frozen weights are held in (f32 for a full fine-tuning).
    pub fn base_dtype(&self) -> TrainDtype {
        match self.head.dtype() {
            DType::BF16 => TrainDtype::Bf16,
            _ => TrainDtype::F32,
        }
    }

    /// Trainable parameter count.
    pub fn n_trainable(&self) -> usize {
        self.params.iter().map(|v| v.elem_count()).sum()
    }

    fn dropout(&mut self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let p = self.config.as_ref().map_or(0.0, |c| c.dropout);
        if !train || p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - p;
        let n = x.elem_count();
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if self.rng.random::<f64>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        x * mask
    }

    /// `x [n, in]` through a stacked projection of layer `li` (slot `s`), plus the LoRA
    /// updates of the targets in that slot.
    fn proj(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        li: usize,
        s: usize,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let mut y = frozen_linear(x, w)?;
        let Some(config) = &self.config else {
            return Ok(y);
        };
        let c = &self.base.config;
        let ff = self.frozen[li].ff;
        let scale = config.scale();
        let targets: Vec<Target> = config
            .targets
            .iter()
            .copied()
            .filter(|&t| slot(c, ff, t).0 == s)
            .collect();
        if targets.is_empty() {
            return Ok(y);
        }
        let out_total = y.dim(1)?;
        let mut parts = Vec::new();
        let mut at = 0;
        let mut ordered: Vec<(usize, Target)> =
            targets.iter().map(|&t| (slot(c, ff, t).1, t)).collect();
        ordered.sort();
        let n = x.dim(0)?;
        for (off, t) in ordered {
            if off > at {
                parts.push(Tensor::zeros((n, off - at), DType::F32, x.device())?);
            }
            let (a, b) = self.vars[&(li, t)].clone();
            let xd = self.dropout(x, train)?;
            let u = xd
                .matmul(&a.as_tensor().t()?)?
                .matmul(&b.as_tensor().t()?)?;
            let u = (u * scale)?;
            at = off + u.dim(1)?;
            parts.push(u);
        }
        if at < out_total {
            parts.push(Tensor::zeros((n, out_total - at), DType::F32, x.device())?);
        }
        y = (y + Tensor::cat(&parts, 1)?)?;
        Ok(y)
    }

    /// Final normed hidden states `[len, hidden]` of `ids`.
    fn hidden(&mut self, ids: &[u32], train: bool) -> candle_core::Result<Tensor> {
        super::cpu::with_generic(self.generic, || self.hidden_here(ids, train))
    }

    fn hidden_here(&mut self, ids: &[u32], train: bool) -> candle_core::Result<Tensor> {
        let c = self.base.config.clone();
        let dev = self.base.device.clone();
        let t = ids.len();
        let (nh, nkv, hd) = (c.n_head, c.n_kv_head, c.head_dim);
        let g = nh / nkv;
        let idx = Tensor::new(ids, &dev)?;
        let mut x = self
            .base
            .embed
            .index_select(&idx, 0)?
            .to_dtype(DType::F32)?;
        let mask = {
            let mut m = vec![0f32; t * t];
            for i in 0..t {
                for j in (i + 1)..t {
                    m[i * t + j] = f32::NEG_INFINITY;
                }
            }
            Tensor::from_vec(m, (1, 1, t, t), &dev)?
        };
        let (cos_t, sin_t) = (self.base.cos.clone(), self.base.sin.clone());
        let (cos_q, sin_q) = (self.base.cos_q.clone(), self.base.sin_q.clone());
        let rope = |x: &Tensor, q: bool| -> candle_core::Result<Tensor> {
            let (cos, sin) = if q {
                (&cos_q, &sin_q)
            } else {
                (&cos_t, &sin_t)
            };
            if c.rope_interleaved {
                candle_nn::rotary_emb::rope_i_slow(x, cos, sin)
            } else {
                candle_nn::rotary_emb::rope_slow(x, cos, sin)
            }
        };
        for li in 0..self.frozen.len() {
            let (qkv_w, qkv_b, wo, gate_up, down, attn_norm, ffn_norm, q_norm, k_norm, ff) = {
                let f = &self.frozen[li];
                (
                    f.qkv.clone(),
                    f.qkv_bias.clone(),
                    f.wo.clone(),
                    f.gate_up.clone(),
                    f.down.clone(),
                    f.attn_norm.clone(),
                    f.ffn_norm.clone(),
                    f.q_norm.clone(),
                    f.k_norm.clone(),
                    f.ff,
                )
            };
            let h = candle_nn::ops::rms_norm_slow(&x, &attn_norm, c.rms_eps)?;
            let mut y = self.proj(&h, &qkv_w, li, 0, train)?;
            if let Some(b) = &qkv_b {
                y = y.broadcast_add(b)?;
            }
            let (qd, kd) = (nh * hd, nkv * hd);
            let q = y
                .narrow(1, 0, qd)?
                .reshape((1, t, nh, hd))?
                .transpose(1, 2)?;
            let k = y
                .narrow(1, qd, kd)?
                .reshape((1, t, nkv, hd))?
                .transpose(1, 2)?;
            let v = y
                .narrow(1, qd + kd, kd)?
                .reshape((1, t, nkv, hd))?
                .transpose(1, 2)?;
            let head_norm = |x: Tensor, w: &Option<Tensor>| -> candle_core::Result<Tensor> {
                match w {
                    Some(w) => candle_nn::ops::rms_norm_slow(&x, w, c.rms_eps),
                    None => Ok(x),
                }
            };
            let q = head_norm(q.contiguous()?, &q_norm)?;
            let k = head_norm(k.contiguous()?, &k_norm)?;
            let q = rope(&q.contiguous()?, true)?;
            let k = rope(&k.contiguous()?, false)?;
            // Grouped heads: query head h uses kv head h / g.
            let expand = |x: Tensor| -> candle_core::Result<Tensor> {
                if g == 1 {
                    return Ok(x);
                }
                x.unsqueeze(2)?
                    .broadcast_as((1, nkv, g, t, hd))?
                    .reshape((1, nh, t, hd))
            };
            let k = expand(k.contiguous()?)?;
            let v = expand(v.contiguous()?)?;
            let att = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let out = att.matmul(&v)?.transpose(1, 2)?.reshape((t, nh * hd))?;
            let o = self.proj(&out, &wo, li, 1, train)?;
            let x1 = (o + &x)?;
            let h = candle_nn::ops::rms_norm_slow(&x1, &ffn_norm, c.rms_eps)?;
            let gu = self.proj(&h, &gate_up, li, 2, train)?;
            let act = (candle_nn::ops::silu(&gu.narrow(1, 0, ff)?)? * gu.narrow(1, ff, ff)?)?;
            let m = self.proj(&act, &down, li, 3, train)?;
            x = (m + x1)?;
        }
        candle_nn::ops::rms_norm_slow(&x, &self.base.norm, c.rms_eps)
    }

    /// Mean negative log-likelihood of `ex`'s loss tokens (a scalar tensor).
    pub fn loss(&mut self, ex: &TrainExample, train: bool) -> anyhow::Result<Tensor> {
        let n = ex.ids.len();
        if n < 2 || ex.loss_from == 0 || ex.loss_from >= n {
            anyhow::bail!(
                "training example of {n} tokens has no token to learn (loss from {})",
                ex.loss_from
            );
        }
        if n - 1 > self.base.config.context_len {
            anyhow::bail!(
                "training example of {n} tokens exceeds the model's context of {}",
                self.base.config.context_len
            );
        }
        let h = self.hidden(&ex.ids[..n - 1], train)?;
        // Positions loss_from-1 .. n-2 predict tokens loss_from .. n-1.
        let h = h.narrow(0, ex.loss_from - 1, n - ex.loss_from)?;
        let logits = super::cpu::with_generic(self.generic, || frozen_linear(&h, &self.head))?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let tgt = Tensor::new(&ex.ids[ex.loss_from..], logp.device())?.unsqueeze(1)?;
        let picked = logp.gather(&tgt, 1)?;
        Ok(picked.mean_all()?.neg()?)
    }

    /// Adds `weight · ∇loss(ex)` to the accumulated gradients; returns the loss.
    pub fn backward(&mut self, ex: &TrainExample, weight: f64) -> anyhow::Result<f32> {
        let loss = self.loss(ex, true)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            anyhow::bail!("the loss is not finite ({value}); lower the learning rate");
        }
        let grads = (loss * weight)?.backward()?;
        match &mut self.acc {
            None => self.acc = Some(grads),
            Some(acc) => {
                for v in &self.params {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        let sum = match acc.get(v.as_tensor()) {
                            Some(old) => (old + g)?,
                            None => g.clone(),
                        };
                        acc.insert(v.as_tensor(), sum);
                    }
                }
            }
        }
        Ok(value)
    }

    /// One optimiser step with the accumulated gradients at learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> anyhow::Result<()> {
        if let Some(acc) = self.acc.take() {
            self.opt.set_learning_rate(lr);
            self.opt.step(&acc)?;
        }
        Ok(())
    }

    /// Logits `[len, vocab]` of `ids` with the current weights (no dropout).
    pub fn eval_logits(&mut self, ids: &[u32]) -> anyhow::Result<Tensor> {
        let h = self.hidden(ids, false)?;
        let generic = self.generic;
        Ok(super::cpu::with_generic(generic, || {
            frozen_linear(&h, &self.head)
        })?)
    }

    /// The accumulated gradients of each module's `(A, B)`, B rows in Hugging Face order
    /// (empty before the first [`Trainer::backward`] and after a [`Trainer::step`]).
    pub fn grads(&self) -> anyhow::Result<BTreeMap<(usize, Target), (Tensor, Tensor)>> {
        let mut out = BTreeMap::new();
        let Some(acc) = &self.acc else {
            return Ok(out);
        };
        let c = &self.base.config;
        for (&(li, t), (a, b)) in &self.vars {
            if let (Some(ga), Some(gb)) = (acc.get(a.as_tensor()), acc.get(b.as_tensor())) {
                let mut gb = gb.clone();
                if let Some(h) = permute_heads(c, t) {
                    gb = permute_rows_from_gguf(&gb, h)?;
                }
                out.insert((li, t), (ga.clone(), gb));
            }
        }
        Ok(out)
    }

    /// The current weights of a full fine-tuning, in the model's layout (q and k rows
    /// as the model holds them).
    pub fn full_weights(&self) -> anyhow::Result<FullWeights> {
        if self.config.is_some() {
            anyhow::bail!("this trainer trains a LoRA adapter, not the full weights");
        }
        let cpu = |t: &Tensor| -> anyhow::Result<Tensor> { Ok(t.to_device(&Device::Cpu)?.copy()?) };
        let opt = |t: &Option<Tensor>| t.as_ref().map(cpu).transpose();
        let mut layers = Vec::with_capacity(self.frozen.len());
        for f in &self.frozen {
            layers.push(FullLayer {
                attn_norm: cpu(&f.attn_norm)?,
                ffn_norm: cpu(&f.ffn_norm)?,
                q_norm: opt(&f.q_norm)?,
                k_norm: opt(&f.k_norm)?,
                qkv: cpu(&f.qkv)?,
                qkv_bias: opt(&f.qkv_bias)?,
                wo: cpu(&f.wo)?,
                gate_up: cpu(&f.gate_up)?,
                down: cpu(&f.down)?,
                ff: f.ff,
            });
        }
        Ok(FullWeights {
            config: self.base.config.clone(),
            embed: cpu(&self.base.embed)?,
            norm: cpu(&self.base.norm)?,
            head: if self.tied_head {
                None
            } else {
                Some(cpu(&self.head)?)
            },
            layers,
        })
    }

    /// The current weights as a PEFT adapter (B rows in Hugging Face order).
    pub fn adapter(&self) -> anyhow::Result<Adapter> {
        let Some(config) = &self.config else {
            anyhow::bail!("a full fine-tuning has no adapter; save its weights instead");
        };
        let c = &self.base.config;
        let mut modules = BTreeMap::new();
        for (&(li, t), (a, b)) in &self.vars {
            let mut b = b.as_tensor().to_device(&candle_core::Device::Cpu)?;
            if let Some(h) = permute_heads(c, t) {
                b = permute_rows_from_gguf(&b, h)?;
            }
            modules.insert(
                (li, t),
                LoraPair {
                    a: a.as_tensor().to_device(&candle_core::Device::Cpu)?.copy()?,
                    b: b.copy()?,
                },
            );
        }
        Ok(Adapter {
            config: config.clone(),
            modules,
            source: None,
        })
    }
}
