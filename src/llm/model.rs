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

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::LlmError;

/// Models with more parameters than this keep only the quantized weights.
const DENSE_MAX_PARAMS: u64 = 1_500_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// Hyper-parameters read from the model file.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub context_len: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// GGUF llama weights have q/k rows permuted for the interleaved (GPT-J) rotation;
    /// Qwen and Hugging Face safetensors use the half-split (NeoX) rotation.
    pub rope_interleaved: bool,
}

impl Config {
    fn group(&self) -> usize {
        self.n_head / self.n_kv_head
    }
}

/// How the weights are held; reported in `ModelInfo::weight_form`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightForm {
    /// Quantized for decode plus dequantized f32 for batched work.
    QuantizedAndF32,
    /// Quantized only (large models).
    Quantized,
    /// Dense f32 only (unquantized source weights).
    F32,
}

impl WeightForm {
    pub fn describe(self) -> &'static str {
        match self {
            WeightForm::QuantizedAndF32 => "quantized (decode) + f32 (prefill, scoring)",
            WeightForm::Quantized => "quantized",
            WeightForm::F32 => "dense (unquantized: f32, f16 above 1.5B parameters)",
        }
    }
}

/// `x [n, in] · wᵀ` with `w` in f32, or in f16/bf16 (large unquantized models).
pub(crate) fn dense_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if w.dtype() == x.dtype() {
        if let Some(y) = pool_matmul_t(x, w)? {
            return Ok(y);
        }
        x.matmul(&w.t()?)
    } else {
        x.to_dtype(w.dtype())?.matmul(&w.t()?)?.to_dtype(x.dtype())
    }
}

/// `x [m, k] · wᵀ` for contiguous f32 CPU tensors `x` and `w [n, k]`: the output
/// columns are split across the engine's threads (`par.rs`), each running a
/// single-threaded GEMM (candle's own matmul parallelises inside gemm instead, which
/// competed with candle's spinning pool). `None` when the inputs do not qualify (the
/// caller falls back).
fn pool_matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    pool_gemm(x, w, true)
}

/// `x [m, k] · w` for `w [k, n]` (contiguous f32 CPU tensors) on the engine's threads, like
/// [`pool_matmul_t`]; `None` when the inputs do not qualify.
pub(crate) fn pool_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    pool_gemm(x, w, false)
}

/// `x · wᵀ` (`transposed`: `w [n, k]`) or `x · w` (`w [k, n]`).
fn pool_gemm(x: &Tensor, w: &Tensor, transposed: bool) -> candle_core::Result<Option<Tensor>> {
    use candle_core::{CpuStorage, Storage};
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return Ok(None);
    }
    let (Ok((m, k)), Ok(wd)) = (x.dims2(), w.dims2()) else {
        return Ok(None);
    };
    let (n, k2) = if transposed { wd } else { (wd.1, wd.0) };
    if k != k2 || m == 0 || n == 0 || k == 0 {
        return Ok(None);
    }
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(xv)), Storage::Cpu(CpuStorage::F32(wv))) = (&*xs, &*ws)
    else {
        return Ok(None);
    };
    let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
    else {
        return Ok(None);
    };
    let (xv, wv) = (&xv[x0..x1], &wv[w0..w1]);
    let mut dst = vec![0f32; m * n];
    let parts = super::par::threads();
    // Column blocks that are multiples of 16 (the micro-kernel's width).
    let cols = n.div_ceil(parts).div_ceil(16) * 16;
    let dst_addr = dst.as_mut_ptr() as usize;
    super::par::for_each_part(parts, |tid| {
        let c0 = tid * cols;
        if c0 >= n {
            return;
        }
        let nc = cols.min(n - c0);
        // Column block c0.. of the right-hand side [k, n]: from `w [n, k]` (transposed)
        // or `w [k, n]`.
        let (rhs_off, rhs_cs, rhs_rs) = if transposed {
            (c0 * k, k as isize, 1)
        } else {
            (c0, 1, n as isize)
        };
        // SAFETY: every thread writes only columns c0..c0 + nc of `dst` (m x n, row
        // major); `xv` holds m x k and `wv` n x k elements, both row major, alive for
        // the whole call, which returns only after every thread has finished.
        unsafe {
            gemm::gemm(
                m,
                nc,
                k,
                (dst_addr as *mut f32).add(c0),
                1,
                n as isize,
                false,
                xv.as_ptr(),
                1,
                k as isize,
                wv.as_ptr().add(rhs_off),
                rhs_cs,
                rhs_rs,
                0f32,
                1f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
    drop((xs, ws));
    Ok(Some(Tensor::from_vec(dst, (m, n), x.device())?))
}

/// Raw f32 data of a contiguous CPU tensor (storage guard and element range), or `None`.
fn f32_data(
    t: &Tensor,
) -> Option<(
    impl std::ops::Deref<Target = candle_core::Storage> + '_,
    usize,
    usize,
)> {
    use candle_core::{CpuStorage, Storage};
    let (st, layout) = t.storage_and_layout();
    let (o0, o1) = layout.contiguous_offsets()?;
    if !matches!(&*st, Storage::Cpu(CpuStorage::F32(_))) {
        return None;
    }
    Some((st, o0, o1))
}

fn f32_slice<D: std::ops::Deref<Target = candle_core::Storage>>(g: &(D, usize, usize)) -> &[f32] {
    match &*g.0 {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => &v[g.1..g.2],
        _ => &[],
    }
}

/// Attention of `b` sequences of `l` new tokens after a prefix of `p` cached tokens, on
/// the engine's threads (CPU, f32). `qa [nkv, b*g*l, hd]` (rows b, g, l; pre-scaled),
/// `kc, vc [nkv, cap, hd]` the cache (first `p` rows used), `ks, vs [nkv*b, l, hd]` the
/// new keys and values. Scores are written straight into one `[nkv, b*g*l, p+l]` buffer
/// (no concatenation), the causal mask is set in place on the own part only, and the
/// output `[nkv, b*g*l, hd]` accumulates the prefix and own products in place. Work is
/// split into row blocks per (kv head, sequence), so each output row is computed by one
/// thread in a fixed order (deterministic). `None` when the inputs do not qualify.
fn pool_attention(
    qa: &Tensor,
    kc: &Tensor,
    vc: &Tensor,
    ks: &Tensor,
    vs: &Tensor,
    (nkv, b, g, l, hd, p): (usize, usize, usize, usize, usize, usize),
) -> candle_core::Result<Option<Tensor>> {
    if !qa.device().is_cpu() {
        return Ok(None);
    }
    let (Some(qg), Some(kcg), Some(vcg), Some(ksg), Some(vsg)) = (
        f32_data(qa),
        f32_data(kc),
        f32_data(vc),
        f32_data(ks),
        f32_data(vs),
    ) else {
        return Ok(None);
    };
    let (q, kcd, vcd, ksd, vsd) = (
        f32_slice(&qg),
        f32_slice(&kcg),
        f32_slice(&vcg),
        f32_slice(&ksg),
        f32_slice(&vsg),
    );
    let gl = g * l;
    let rows = b * gl;
    let pl = p + l;
    let cap = if p > 0 { kcd.len() / (nkv * hd) } else { 0 };
    if q.len() != nkv * rows * hd
        || ksd.len() != nkv * b * l * hd
        || vsd.len() != ksd.len()
        || (p > 0 && (cap < p || kcd.len() != vcd.len()))
    {
        return Ok(None);
    }
    #[cfg(target_arch = "x86_64")]
    if super::attn::available() && super::attn::supports(hd) {
        use super::attn::{Keys, ROWS};
        let blocks = gl.div_ceil(ROWS);
        let mut out = vec![0f32; nkv * rows * hd];
        let o_addr = out.as_mut_ptr() as usize;
        super::par::for_each_chunk(nkv * b * blocks, |range| {
            let mut scratch = Vec::new();
            let mut pos = [0usize; ROWS];
            for t in range {
                let (h, bi, r0) = (t / (b * blocks), (t / blocks) % b, (t % blocks) * ROWS);
                let m = ROWS.min(gl - r0);
                for (rr, ps) in pos.iter_mut().enumerate().take(m) {
                    *ps = p + (r0 + rr) % l;
                }
                let own = (h * b + bi) * l * hd..(h * b + bi + 1) * l * hd;
                let keys = Keys {
                    prefix_k: &kcd[h * cap * hd..(h * cap + p) * hd],
                    prefix_v: &vcd[h * cap * hd..(h * cap + p) * hd],
                    p,
                    own_k: &ksd[own.clone()],
                    own_v: &vsd[own],
                };
                let at = (h * rows + bi * gl + r0) * hd;
                // SAFETY: each task writes its own rows `at..at + m * hd` of `out`, which
                // outlives the call; the CPU has AVX-512 (checked above) and `keys` holds
                // positions 0..p + l.
                unsafe {
                    let dst = std::slice::from_raw_parts_mut((o_addr as *mut f32).add(at), m * hd);
                    super::attn::block(
                        &q[at..at + m * hd],
                        &pos[..m],
                        hd,
                        &keys,
                        &mut scratch,
                        dst,
                    );
                }
            }
        });
        drop((qg, kcg, vcg, ksg, vsg));
        return Ok(Some(Tensor::from_vec(out, (nkv, rows, hd), qa.device())?));
    }
    // Tasks: (kv head, sequence, row block within the sequence's g*l rows).
    const BLOCK: usize = 96;
    let blocks = gl.div_ceil(BLOCK);
    let n_tasks = nkv * b * blocks;
    let task = |t: usize| {
        let h = t / (b * blocks);
        let bi = (t / blocks) % b;
        let r0 = (t % blocks) * BLOCK;
        (h, bi, r0, BLOCK.min(gl - r0))
    };
    let mut scores = vec![0f32; nkv * rows * pl];
    let s_addr = scores.as_mut_ptr() as usize;
    super::par::for_each_chunk(n_tasks, |range| {
        for t in range {
            let (h, bi, r0, m) = task(t);
            let row = bi * gl + r0;
            // SAFETY: each task writes rows `row..row + m` of head `h` only; all
            // reads are within the slices checked above.
            unsafe {
                let dst = (s_addr as *mut f32).add((h * rows + row) * pl);
                let lhs = q.as_ptr().add((h * rows + row) * hd);
                if p > 0 {
                    gemm::gemm(
                        m,
                        p,
                        hd,
                        dst,
                        1,
                        pl as isize,
                        false,
                        lhs,
                        1,
                        hd as isize,
                        kcd.as_ptr().add(h * cap * hd),
                        hd as isize,
                        1,
                        0f32,
                        1f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                gemm::gemm(
                    m,
                    l,
                    hd,
                    dst.add(p),
                    1,
                    pl as isize,
                    false,
                    lhs,
                    1,
                    hd as isize,
                    ksd.as_ptr().add((h * b + bi) * l * hd),
                    hd as isize,
                    1,
                    0f32,
                    1f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                // Causal mask over the own part: query i sees own keys 0..=i.
                for r in 0..m {
                    let i = (r0 + r) % l;
                    let own = std::slice::from_raw_parts_mut(dst.add(r * pl + p), l);
                    own[i + 1..].fill(f32::NEG_INFINITY);
                }
            }
        }
    });
    let probs = candle_nn::ops::softmax_last_dim(&Tensor::from_vec(
        scores,
        (nkv * rows, pl),
        qa.device(),
    )?)?;
    let Some(pg) = f32_data(&probs) else {
        return Ok(None);
    };
    let pr = f32_slice(&pg);
    let mut out = vec![0f32; nkv * rows * hd];
    let o_addr = out.as_mut_ptr() as usize;
    super::par::for_each_chunk(n_tasks, |range| {
        for t in range {
            let (h, bi, r0, m) = task(t);
            let row = bi * gl + r0;
            // SAFETY: as above; each task writes its own rows of `out`.
            unsafe {
                let dst = (o_addr as *mut f32).add((h * rows + row) * hd);
                let lhs = pr.as_ptr().add((h * rows + row) * pl);
                if p > 0 {
                    gemm::gemm(
                        m,
                        hd,
                        p,
                        dst,
                        1,
                        hd as isize,
                        false,
                        lhs,
                        1,
                        pl as isize,
                        vcd.as_ptr().add(h * cap * hd),
                        1,
                        hd as isize,
                        0f32,
                        1f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                gemm::gemm(
                    m,
                    hd,
                    l,
                    dst,
                    1,
                    hd as isize,
                    p > 0,
                    lhs.add(p),
                    1,
                    pl as isize,
                    vsd.as_ptr().add((h * b + bi) * l * hd),
                    1,
                    hd as isize,
                    1f32,
                    1f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    });
    drop((qg, kcg, vcg, ksg, vsg, pg));
    Ok(Some(Tensor::from_vec(out, (nkv, rows, hd), qa.device())?))
}

/// The mask over `[prefix of p | own l tokens]`, causal over the own part: `[1, l, p + l]`.
fn causal_mask(l: usize, p: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; l * (p + l)];
    for i in 0..l {
        for j in (i + 1)..l {
            m[i * (p + l) + p + j] = f32::NEG_INFINITY;
        }
    }
    Tensor::from_vec(m, (1, l, p + l), device)
}

/// One decode step's attention with the batch kernel (`attn.rs`): the query heads `q`
/// (`nkv * g` heads of `hd`, pre-scaled) over cache rows `0..=p` of `kc, vc [nkv, cap,
/// hd]`, as `[nkv, g, hd]`; `None` where the kernel does not run.
fn decode_attention(
    q: &Tensor,
    kc: &Tensor,
    vc: &Tensor,
    (nkv, g, hd, p): (usize, usize, usize, usize),
) -> candle_core::Result<Option<Tensor>> {
    #[cfg(target_arch = "x86_64")]
    if super::attn::available() && super::attn::supports(hd) && g <= super::attn::ROWS {
        let q = q.contiguous()?;
        let (Some(qg), Some(kg), Some(vg)) = (f32_data(&q), f32_data(kc), f32_data(vc)) else {
            return Ok(None);
        };
        let (qd, kd, vd) = (f32_slice(&qg), f32_slice(&kg), f32_slice(&vg));
        let cap = kd.len() / (nkv * hd);
        if qd.len() != nkv * g * hd || cap <= p || vd.len() != kd.len() {
            return Ok(None);
        }
        let mut out = vec![0f32; nkv * g * hd];
        let o_addr = out.as_mut_ptr() as usize;
        let head = |h: usize| {
            let keys = super::attn::Keys {
                prefix_k: &kd[h * cap * hd..(h * cap + p + 1) * hd],
                prefix_v: &vd[h * cap * hd..(h * cap + p + 1) * hd],
                p: p + 1,
                own_k: &[],
                own_v: &[],
            };
            let pos = [p; super::attn::ROWS];
            let mut scratch = Vec::new();
            // SAFETY: head `h` writes its own rows of `out`, which outlives the call; the
            // CPU has AVX-512 (checked above) and `keys` holds positions 0..=p.
            unsafe {
                let dst =
                    std::slice::from_raw_parts_mut((o_addr as *mut f32).add(h * g * hd), g * hd);
                super::attn::block(
                    &qd[h * g * hd..(h + 1) * g * hd],
                    &pos[..g],
                    hd,
                    &keys,
                    &mut scratch,
                    dst,
                );
            }
        };
        // Short contexts are not worth a parallel loop.
        if p >= 256 {
            super::par::for_each_part(nkv, head);
        } else {
            (0..nkv).for_each(head);
        }
        drop((qg, kg, vg));
        return Ok(Some(Tensor::from_vec(out, (nkv, g, hd), q.device())?));
    }
    let _ = (q, kc, vc, nkv, g, hd, p);
    Ok(None)
}

/// `silu(y[:, ..ff]) * y[:, ff..]` for `y [n, 2 ff]` (contiguous f32 on the CPU) in one
/// pass into a contiguous `[n, ff]`, rows split over the engine's threads when large
/// (candle's own silu and mul on the two strided halves run single-threaded and take two
/// passes). `None` when the input does not qualify.
fn silu_mul(y: &Tensor, ff: usize) -> candle_core::Result<Option<Tensor>> {
    if !y.device().is_cpu() || ff == 0 {
        return Ok(None);
    }
    let Ok((n, w)) = y.dims2() else {
        return Ok(None);
    };
    if w != 2 * ff {
        return Ok(None);
    }
    let Some(guard) = f32_data(y) else {
        return Ok(None);
    };
    let yv = f32_slice(&guard);
    if yv.len() != n * w {
        return Ok(None);
    }
    let mut out = vec![0f32; n * ff];
    let addr = out.as_mut_ptr() as usize;
    let row = |r: usize| {
        let src = &yv[r * w..(r + 1) * w];
        let (g, u) = src.split_at(ff);
        // SAFETY: row `r` of `out` (n x ff) is written by exactly one caller.
        let dst = unsafe { std::slice::from_raw_parts_mut((addr as *mut f32).add(r * ff), ff) };
        #[cfg(target_arch = "x86_64")]
        if super::vnni::level() == Some(super::vnni::Level::Avx512) {
            // SAFETY: the CPU has AVX-512 (checked).
            unsafe { super::attn::silu_mul(g, u, dst) };
            return;
        }
        for ((d, &a), &b) in dst.iter_mut().zip(g).zip(u) {
            *d = a / (1.0 + (-a).exp()) * b;
        }
    };
    if n * ff >= 64 * 1024 {
        super::par::for_each_chunk(n, |range| range.for_each(row));
    } else {
        (0..n).for_each(row);
    }
    drop(guard);
    Ok(Some(Tensor::from_vec(out, (n, ff), y.device())?))
}

/// Quantized weights of a projection: one matrix, or parts of different types whose
/// outputs are concatenated.
pub(crate) enum QuantParts {
    One(QMatMul),
    Parts(Vec<QMatMul>),
    /// Q4_1 on the CPU: our AVX2 kernel (candle's Q4_1 dot product is scalar).
    Q41(super::q41::Q41Matrix),
    /// On the CPU: row chunks (of any types), multiplied in parallel on the engine's
    /// threads, their outputs side by side.
    Chunks(Vec<QMatMul>),
    /// Q8_0, Q4_0 or Q4_K in the AVX-512 VNNI layout (`vnni.rs`), for decode and batched
    /// work.
    #[cfg(target_arch = "x86_64")]
    Packed(super::vnni::Packed),
}

/// The types [`packed`] takes at this CPU's kernel level (Q4_1 goes through `q41.rs`;
/// Q8_0 needs AVX-512 VNNI), so that no caller reads a matrix's bytes for nothing.
fn packable(dtype: GgmlDType) -> bool {
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q4K => true,
        #[cfg(target_arch = "x86_64")]
        GgmlDType::Q8_0 => super::vnni::packs_q8_0(),
        _ => false,
    }
}

/// Whether [`packed`] packs on `device` (the CPU, with the int8 kernels).
fn packs_on(device: &Device) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        device.is_cpu() && super::vnni::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = device;
        false
    }
}

/// GGUF bytes `[rows, cols]` of a [`packable`] type in the VNNI layout, where the CPU has it.
fn packed(
    dtype: GgmlDType,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    device: &Device,
) -> Option<QuantParts> {
    #[cfg(target_arch = "x86_64")]
    if device.is_cpu() && super::vnni::available() {
        use super::vnni::Packed;
        let p = match dtype {
            GgmlDType::Q8_0 if super::vnni::packs_q8_0() => {
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
fn row_chunks(parts: Vec<QMatMul>, device: &Device) -> candle_core::Result<QuantParts> {
    let t = super::par::threads();
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
    /// Chunks on the CPU, the parts as they are elsewhere.
    fn for_device(parts: Vec<QMatMul>, device: &Device) -> candle_core::Result<Option<Self>> {
        Ok(match parts.len() {
            0 => None,
            _ if device.is_cpu() => Some(row_chunks(parts, device)?),
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
    fn is_packed(&self) -> bool {
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
    fn forward(&self, x: &Tensor, batch: bool) -> candle_core::Result<Tensor> {
        let (mut y, used_dense) = match (&self.quant, &self.dense) {
            // The int8 kernel beats f32 GEMM on batches too (and no f32 copy is held).
            (Some(QuantParts::Q41(q)), _) if q.is_packed() => (q.matmul(x)?, false),
            #[cfg(target_arch = "x86_64")]
            (Some(QuantParts::Packed(p)), _) => (super::q41::packed_matmul(p, x)?, false),
            (Some(_), Some(d)) if batch => (dense_matmul(x, d)?, true),
            (Some(QuantParts::One(q)), _) => (q.forward(x)?, false),
            (Some(QuantParts::Q41(q)), _) => (q.matmul(x)?, false),
            (Some(QuantParts::Chunks(cs)), _) => {
                let outs: Vec<std::sync::Mutex<Option<candle_core::Result<Tensor>>>> =
                    cs.iter().map(|_| std::sync::Mutex::new(None)).collect();
                super::par::for_each_part(cs.len(), |i| {
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
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> LlmError {
    LlmError::BadGguf {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads GGUF metadata and tensors, with every failure a [`LlmError`] naming the file.
struct GgufReader<'a, R> {
    content: &'a gguf_file::Content,
    reader: &'a mut R,
    path: &'a Path,
    device: &'a Device,
}

impl<R: std::io::Read + std::io::Seek> GgufReader<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    fn qtensor(&mut self, name: &str) -> Result<QTensor, LlmError> {
        if !self.has(name) {
            return Err(bad(self.path, format!("tensor `{name}` is missing")));
        }
        self.content
            .tensor(self.reader, name, self.device)
            .map_err(|e| bad(self.path, format!("tensor `{name}`: {e}")))
    }
    fn dense(&mut self, name: &str) -> Result<Tensor, LlmError> {
        let q = self.qtensor(name)?;
        Ok(q.dequantize(self.device)?)
    }

    /// Raw bytes of a tensor as stored.
    fn raw(&mut self, name: &str) -> Result<Vec<u8>, LlmError> {
        use std::io::SeekFrom;
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| bad(self.path, format!("tensor `{name}` is missing")))?;
        let size =
            info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let mut buf = vec![0u8; size];
        self.reader
            .seek(SeekFrom::Start(
                self.content.tensor_data_offset + info.offset,
            ))
            .and_then(|_| self.reader.read_exact(&mut buf))
            .map_err(|e| bad(self.path, format!("tensor `{name}`: {e}")))?;
        Ok(buf)
    }

    /// The biases `names` concatenated (q|k|v).
    fn bias_of(&mut self, names: Option<&[String]>) -> Result<Option<Tensor>, LlmError> {
        match names {
            Some(bs) => {
                let ts = bs
                    .iter()
                    .map(|b| self.dense(b))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Tensor::cat(&ts, 0)?))
            }
            None => Ok(None),
        }
    }

    /// Projections `names` (sharing their input) stacked into one, in the forms `form` asks.
    fn proj(
        &mut self,
        names: &[String],
        bias: Option<&[String]>,
        form: WeightForm,
    ) -> Result<Proj, LlmError> {
        let mut dtypes = Vec::new();
        let mut rows = 0;
        let mut cols = None;
        for n in names {
            let info = self
                .content
                .tensor_infos
                .get(n)
                .ok_or_else(|| bad(self.path, format!("tensor `{n}` is missing")))?;
            let dims = info.shape.dims();
            if dims.len() != 2 || cols.is_some_and(|c| c != dims[1]) {
                return Err(bad(self.path, format!("tensor `{n}` has shape {dims:?}")));
            }
            cols = Some(dims[1]);
            rows += dims[0];
            dtypes.push(info.ggml_dtype);
        }
        let cols = cols.ok_or_else(|| bad(self.path, "empty projection"))?;
        let is_float =
            |d: &GgmlDType| matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let all_float = dtypes.iter().all(is_float);
        let keep_quant = !all_float && form != WeightForm::F32;
        let keep_dense = all_float || form != WeightForm::Quantized;
        let mut parts = Vec::new();
        let mut dense_parts = Vec::new();
        let same_type = dtypes.iter().all(|d| *d == dtypes[0]);
        if keep_quant && same_type && dtypes[0] == GgmlDType::Q4_1 && self.device.is_cpu() {
            let mut bytes = Vec::new();
            for n in names {
                bytes.extend(self.raw(n)?);
            }
            let q = super::q41::Q41Matrix::from_bytes(bytes, rows, cols)
                .map_err(|e| bad(self.path, format!("tensors {names:?}: {e}")))?;
            if keep_dense && !q.is_packed() {
                dense_parts.push(q.dequantize(self.device)?);
            }
            let bias = self.bias_of(bias)?;
            return Ok(Proj {
                quant: Some(QuantParts::Q41(q)),
                dense: dense_parts.pop(),
                bias,
                lora: None,
            });
        }
        if keep_quant && same_type && packable(dtypes[0]) && packs_on(self.device) {
            let mut bytes = Vec::new();
            for n in names {
                bytes.extend(self.raw(n)?);
            }
            if let Some(q) = packed(dtypes[0], &bytes, rows, cols, self.device) {
                let bias = self.bias_of(bias)?;
                return Ok(Proj {
                    quant: Some(q),
                    dense: None,
                    bias,
                    lora: None,
                });
            }
        }
        if keep_quant && same_type && names.len() > 1 {
            let mut bytes = Vec::new();
            for n in names {
                bytes.extend(self.raw(n)?);
            }
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtypes[0],
                &bytes,
                vec![rows, cols],
                self.device,
            )
            .map_err(|e| bad(self.path, format!("tensors {names:?}: {e}")))?;
            if keep_dense {
                dense_parts.push(q.dequantize(self.device)?);
            }
            parts.push(QMatMul::from_arc(Arc::new(q))?);
        } else {
            for n in names {
                let q = self.qtensor(n)?;
                if keep_dense {
                    dense_parts.push(q.dequantize(self.device)?);
                }
                if keep_quant {
                    parts.push(QMatMul::from_arc(Arc::new(q))?);
                }
            }
        }
        let quant = QuantParts::for_device(parts, self.device)?;
        let dense = match dense_parts.len() {
            0 => None,
            1 => dense_parts.pop(),
            _ => Some(Tensor::cat(&dense_parts, 0)?),
        };
        let bias = self.bias_of(bias)?;
        Ok(Proj {
            quant,
            dense,
            bias,
            lora: None,
        })
    }
}

fn md_u32(content: &gguf_file::Content, path: &Path, key: &str) -> Result<usize, LlmError> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| bad(path, format!("metadata `{key}` is missing")))?
        .to_u32()
        .map(|v| v as usize)
        .map_err(|e| bad(path, format!("metadata `{key}`: {e}")))
}

fn md_f32(content: &gguf_file::Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// Reads a GGUF file's header, turning I/O and format errors into [`LlmError`].
pub fn read_gguf(path: &Path) -> Result<(gguf_file::Content, std::fs::File), LlmError> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LlmError::NotFound(path.to_path_buf())
        } else {
            LlmError::Other(format!("{}: cannot open: {e}", path.display()))
        }
    })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| bad(path, e))?;
    // A truncated file parses its header but lacks tensor data: check the extent now.
    let file_len = file
        .metadata()
        .map_err(|e| LlmError::Other(format!("{}: {e}", path.display())))?
        .len();
    for (name, info) in content.tensor_infos.iter() {
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        let bytes = elems / block * info.ggml_dtype.type_size();
        let end = content.tensor_data_offset + info.offset + bytes as u64;
        if end > file_len {
            return Err(bad(
                path,
                format!("file is truncated: tensor `{name}` ends at byte {end} but the file has {file_len} bytes"),
            ));
        }
    }
    Ok((content, file))
}

fn arch_of(content: &gguf_file::Content, path: &Path) -> Result<Arch, LlmError> {
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| bad(path, "metadata `general.architecture` is missing"))?;
    match arch.as_str() {
        "llama" | "mistral" => Ok(Arch::Llama),
        "qwen2" => Ok(Arch::Qwen2),
        "qwen3" => Ok(Arch::Qwen3),
        other => Err(LlmError::UnsupportedArch {
            arch: other.to_string(),
            path: path.to_path_buf(),
        }),
    }
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
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| bad(path, "tensor `token_embd.weight` is missing"))?;
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
        } else if n_params <= DENSE_MAX_PARAMS && device.is_cpu() {
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
            let ff = content
                .tensor_infos
                .get(&n("ffn_up.weight"))
                .map(|t| t.shape.dims()[0])
                .ok_or_else(|| bad(path, format!("tensor `{}` is missing", n("ffn_up.weight"))))?;
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
        let head_w = match take("lm_head.weight", dtype) {
            Ok(w) => w,
            Err(_) => embed.clone(),
        };
        let (cos, sin) = rope_tables(&config, device)?;
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
        })
    }

    /// `"int8-vnni"` or `"int8-avx2"` when some weights run on the int8 kernels (8-bit
    /// activations; the two levels round a few steps differently), else `""` (see
    /// [`crate::lm::LanguageModel::numerics`]).
    pub fn numerics_tag(&self) -> &'static str {
        let any = self.head.is_packed()
            || self
                .layers
                .iter()
                .any(|l| l.projections().iter().any(|p| p.is_packed()));
        #[cfg(target_arch = "x86_64")]
        if any {
            return match super::vnni::level() {
                Some(super::vnni::Level::Avx512) => "int8-vnni",
                _ => "int8-avx2",
            };
        }
        let _ = any;
        ""
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
            let out = out
                .reshape((nkv, b, g, l, hd))?
                .permute((1, 3, 0, 2, 4))?
                .contiguous()?
                .reshape((b * l, c.n_head * hd))?;
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
            Some((_, vp)) => probs.narrow(2, 0, p)?.matmul(vp)? + own,
            None => Ok(own),
        }
    }

    /// One decode step: `token` at position `cache.len()`, appended to the cache.
    /// Returns the logits over the vocabulary `[vocab]`.
    pub fn forward_one(&self, token: u32, cache: &mut KvCache) -> candle_core::Result<Tensor> {
        super::par::low_latency(|| self.decode_step(token, cache))
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
        self.head.forward(hidden, false)
    }

    /// Prefills `tokens` into `cache` in chunks (bounding attention memory) and returns the
    /// normed hidden state of the last token `[1, hidden]`.
    pub fn prefill(&self, tokens: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        const CHUNK: usize = 512;
        let mut last = None;
        for chunk in tokens.chunks(CHUNK) {
            let h = self.forward_batch(chunk, 1, chunk.len(), cache, true)?;
            last = Some(h.narrow(0, chunk.len() - 1, 1)?);
        }
        last.ok_or_else(|| candle_core::Error::Msg("prefill of no tokens".into()))
    }
}

/// Softmax helper on the last dimension of a small tensor, returned as a Vec.
pub fn log_softmax_vec(logits: &Tensor) -> candle_core::Result<Vec<f32>> {
    candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?.to_vec1::<f32>()
}
