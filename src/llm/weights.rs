//! The weights of one projection in the forms its workloads want: quantized parts for
//! one-token decode (repacked for the int8 kernels where the CPU has them, or split into
//! row chunks), dense f32 for batched prompt work, plus run-time LoRA updates.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device, Module, Tensor};

use super::cpu::ops::dense_matmul;

/// Quantized weights of a projection: one matrix, or parts of different types whose
/// outputs are concatenated.
pub(crate) enum QuantParts {
    One(QMatMul),
    Parts(Vec<QMatMul>),
    /// Q4_1 on the CPU: our AVX2 kernel (candle's Q4_1 dot product is scalar).
    Q41(super::cpu::q41::Q41Matrix),
    /// On the CPU: row chunks (of any types), multiplied in parallel on the engine's
    /// threads, their outputs side by side.
    Chunks(Vec<QMatMul>),
    /// Q8_0, Q4_0 or Q4_K in the AVX-512 VNNI layout (`vnni.rs`), for decode and batched
    /// work.
    #[cfg(target_arch = "x86_64")]
    Packed(super::cpu::int8::Packed),
}

/// The types [`packed`] takes at this CPU's kernel level (Q4_1 goes through `q41.rs`;
/// Q8_0 needs AVX-512 VNNI), so that no caller reads a matrix's bytes for nothing.
pub(crate) fn packable(dtype: GgmlDType) -> bool {
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q4K => true,
        #[cfg(target_arch = "x86_64")]
        GgmlDType::Q8_0 => super::cpu::packs_q8_0(),
        _ => false,
    }
}

/// Whether [`packed`] packs on `device` (the CPU, with the int8 kernels).
pub(crate) fn packs_on(device: &Device) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::cpu::kernels_on(device) && super::cpu::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = device;
        false
    }
}

/// GGUF bytes `[rows, cols]` of a [`packable`] type in the VNNI layout, where the CPU has it.
pub(crate) fn packed(
    dtype: GgmlDType,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    device: &Device,
) -> Option<QuantParts> {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::kernels_on(device) && super::cpu::available() {
        use super::cpu::int8::Packed;
        let p = match dtype {
            GgmlDType::Q8_0 if super::cpu::packs_q8_0() => {
                Packed::from_gguf_q8_0(bytes, rows, cols)
            }
            GgmlDType::Q4_0 => Packed::from_gguf_q4_0(bytes, rows, cols),
            GgmlDType::Q4K => Packed::from_gguf_q4_k(bytes, rows, cols),
            _ => None,
        };
        return p.map(QuantParts::Packed);
    }
    let _ = (dtype, bytes, rows, cols, device);
    None
}

/// Splits quantized matrices into row chunks, one per engine thread, so that candle's
/// single-threaded quantized kernels run in parallel (see `par.rs`). Dense parts stay whole.
pub(crate) fn row_chunks(parts: Vec<QMatMul>, device: &Device) -> candle_core::Result<QuantParts> {
    let t = super::cpu::par::threads();
    let mut out = Vec::new();
    for p in parts {
        let QMatMul::QTensor(q) = &p else {
            out.push(p);
            continue;
        };
        let dt = q.dtype();
        let (rows, cols) = q.shape().dims2()?;
        if t == 1 || rows < 2 * t || matches!(dt, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
        {
            out.push(p);
            continue;
        }
        let bytes = q.data()?;
        let row_bytes = cols / dt.block_size() * dt.type_size();
        let per = rows.div_ceil(t);
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + per).min(rows);
            let part = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dt,
                &bytes[r0 * row_bytes..r1 * row_bytes],
                vec![r1 - r0, cols],
                device,
            )?;
            out.push(QMatMul::from_arc(Arc::new(part))?);
            r0 = r1;
        }
    }
    Ok(QuantParts::Chunks(out))
}

impl QuantParts {
    /// Chunks on the CPU kernels, the parts as they are on the generic path.
    pub(crate) fn for_device(
        parts: Vec<QMatMul>,
        device: &Device,
    ) -> candle_core::Result<Option<Self>> {
        Ok(match parts.len() {
            0 => None,
            _ if super::cpu::kernels_on(device) => Some(row_chunks(parts, device)?),
            1 => parts.into_iter().next().map(QuantParts::One),
            _ => Some(QuantParts::Parts(parts)),
        })
    }

    /// The weights as one dense f32 matrix.
    pub(crate) fn dequantize(&self, device: &Device) -> candle_core::Result<Tensor> {
        let deq = |q: &QMatMul| -> candle_core::Result<Tensor> {
            match q {
                QMatMul::QTensor(t) => t.dequantize(device),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(DType::F32),
            }
        };
        match self {
            QuantParts::One(q) => deq(q),
            QuantParts::Parts(ps) | QuantParts::Chunks(ps) => {
                let ts = ps
                    .iter()
                    .map(deq)
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&ts, 0)
            }
            QuantParts::Q41(q) => q.dequantize(device),
            #[cfg(target_arch = "x86_64")]
            QuantParts::Packed(p) => Tensor::from_vec(p.dequantize(), (p.rows(), p.cols()), device),
        }
    }
}

/// One or more projections `[out_i, in]` sharing their input (q|k|v, gate|up), held as
/// one matrix `[sum out_i, in]` in one or both forms, with an optional bias.
pub(crate) struct Proj {
    pub(crate) quant: Option<QuantParts>,
    pub(crate) dense: Option<Tensor>,
    pub(crate) bias: Option<Tensor>,
    /// A LoRA update applied at run time (see [`super::lora`]).
    pub(crate) lora: Option<LowRank>,
}

/// A low-rank update `y += (x · aᵀ) · bᵀ` of a projection: `a [R, in]`, `b [out, R]` with
/// the adapter's scale folded into `b`. When `in_dense` is set, the update is already
/// merged into the dense weights and is applied only on the quantized path.
pub(crate) struct LowRank {
    pub(crate) a: Tensor,
    pub(crate) b: Tensor,
    pub(crate) in_dense: bool,
}

impl Proj {
    /// Whether the int8 kernels (`vnni.rs`) multiply this projection.
    pub(crate) fn is_packed(&self) -> bool {
        match &self.quant {
            Some(QuantParts::Q41(q)) => q.is_packed(),
            #[cfg(target_arch = "x86_64")]
            Some(QuantParts::Packed(_)) => true,
            _ => false,
        }
    }

    /// `x: [n, in]` -> `[n, sum out_i]`. Batched work (`batch`) uses the dense form when
    /// held, so that prompt and scoring results do not depend on how tokens were chunked;
    /// decode uses the quantized form.
    pub(crate) fn forward(&self, x: &Tensor, batch: bool) -> candle_core::Result<Tensor> {
        let (mut y, used_dense) = match (&self.quant, &self.dense) {
            // The int8 kernel beats f32 GEMM on batches too (and no f32 copy is held).
            (Some(QuantParts::Q41(q)), _) if q.is_packed() => (q.matmul(x)?, false),
            #[cfg(target_arch = "x86_64")]
            (Some(QuantParts::Packed(p)), _) => (super::cpu::q41::packed_matmul(p, x)?, false),
            (Some(_), Some(d)) if batch => (dense_matmul(x, d)?, true),
            (Some(QuantParts::One(q)), _) => (q.forward(x)?, false),
            (Some(QuantParts::Q41(q)), _) => (q.matmul(x)?, false),
            (Some(QuantParts::Chunks(cs)), _) => {
                let outs: Vec<std::sync::Mutex<Option<candle_core::Result<Tensor>>>> =
                    cs.iter().map(|_| std::sync::Mutex::new(None)).collect();
                super::cpu::par::for_each_part(cs.len(), |i| {
                    let y = cs[i].forward(x);
                    *outs[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(y);
                });
                let outs = outs
                    .into_iter()
                    .map(|o| {
                        o.into_inner()
                            .unwrap_or_else(|e| e.into_inner())
                            .unwrap_or_else(|| candle_core::bail!("a row chunk did not run"))
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                (Tensor::cat(&outs, 1)?, false)
            }
            (Some(QuantParts::Parts(ps)), _) => {
                let outs = ps
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                (Tensor::cat(&outs, 1)?, false)
            }
            (None, Some(d)) => (dense_matmul(x, d)?, true),
            (None, None) => candle_core::bail!("projection has no weights"),
        };
        if let Some(l) = &self.lora {
            if !(used_dense && l.in_dense) {
                let t = dense_matmul(&x.contiguous()?, &l.a)?;
                y = (y + dense_matmul(&t, &l.b)?)?;
            }
        }
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}
