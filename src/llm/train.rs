//! LoRA fine-tuning on candle's autograd.
//!
//! The base weights stay frozen (the model's dense f32 weights, dequantized where it only
//! holds quantized ones); each targeted projection gets a trainable pair `A [r, in]`
//! (Kaiming-uniform, as PEFT initialises it) and `B [out, r]` (zeros), applied as
//! `W·x + scale · B·A·dropout(x)`. The forward pass is written with differentiable
//! candle operations; frozen matrix products on the CPU go through a custom operation
//! whose backward pass computes only the input's gradient (candle's own matmul would
//! also compute the gradient of every frozen weight).
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

fn frozen_linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if super::cpu::kernels_on(x.device()) && w.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(FrozenLinear { w: w.clone() })
    } else if w.dtype() == x.dtype() {
        x.matmul(&w.t()?)
    } else {
        x.to_dtype(w.dtype())?.matmul(&w.t()?)?.to_dtype(x.dtype())
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

/// A LoRA trainer over a loaded model. It shares the model's tensors (no copy where the
/// model holds dense f32 weights) and does not borrow the model, so the same engine can
/// score with the trainer's current adapter between epochs.
pub struct Trainer {
    base: Base,
    frozen: Vec<FrozenLayer>,
    head: Tensor,
    config: LoraConfig,
    /// `(layer, target) -> (A, B)`, B rows in the model's order.
    vars: BTreeMap<(usize, Target), (Var, Var)>,
    opt: AdamW,
    acc: Option<GradStore>,
    rng: rand::rngs::StdRng,
    /// The model runs the generic path (see `Model::generic`): so does its training.
    generic: bool,
}

impl Trainer {
    /// A trainer with fresh LoRA weights (or `init`'s, to continue training).
    pub fn new(
        model: &Model,
        config: LoraConfig,
        optim: &OptimSettings,
        init: Option<&Adapter>,
        seed: u64,
    ) -> anyhow::Result<Trainer> {
        let device = model.device().clone();
        let c = &model.config;
        let mut frozen = Vec::with_capacity(model.layers.len());
        for l in &model.layers {
            frozen.push(FrozenLayer {
                attn_norm: l.attn_norm.clone(),
                ffn_norm: l.ffn_norm.clone(),
                q_norm: l.q_norm.clone(),
                k_norm: l.k_norm.clone(),
                ff: l.ff,
                qkv: dense_of(&l.qkv, &device)?.to_dtype(DType::F32)?,
                qkv_bias: l.qkv.bias.clone(),
                wo: dense_of(&l.wo, &device)?.to_dtype(DType::F32)?,
                gate_up: dense_of(&l.gate_up, &device)?.to_dtype(DType::F32)?,
                down: dense_of(&l.down, &device)?.to_dtype(DType::F32)?,
            });
        }
        let head = match &model.head_dense_source {
            Some(h) => h.to_dtype(DType::F32)?,
            None => dense_of(&model.head, &device)?.to_dtype(DType::F32)?,
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
        let opt = AdamW::new(
            all,
            ParamsAdamW {
                lr: optim.lr,
                beta1: optim.beta1,
                beta2: optim.beta2,
                eps: optim.eps,
                weight_decay: optim.weight_decay,
            },
        )?;
        let base = Base {
            config: c.clone(),
            device: device.clone(),
            embed: model.embed.clone(),
            norm: model.norm.clone(),
            cos: model.cos.clone(),
            sin: model.sin.clone(),
            cos_q: model.cos_q.clone(),
            sin_q: model.sin_q.clone(),
        };
        Ok(Trainer {
            base,
            frozen,
            head,
            config,
            vars,
            opt,
            acc: None,
            rng,
            generic: model.generic,
        })
    }

    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// Trainable parameter count.
    pub fn n_trainable(&self) -> usize {
        self.vars
            .values()
            .map(|(a, b)| a.elem_count() + b.elem_count())
            .sum()
    }

    fn dropout(&mut self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let p = self.config.dropout;
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
        let c = &self.base.config;
        let ff = self.frozen[li].ff;
        let scale = self.config.scale();
        let targets: Vec<Target> = self
            .config
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
                for (a, b) in self.vars.values() {
                    for v in [a, b] {
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

    /// The current weights as a PEFT adapter (B rows in Hugging Face order).
    pub fn adapter(&self) -> anyhow::Result<Adapter> {
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
            config: self.config.clone(),
            modules,
            source: None,
        })
    }
}
