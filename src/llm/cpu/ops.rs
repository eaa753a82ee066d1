//! The engine's f32 tensor operations on the CPU, run on its own threads (`par.rs`): GEMM
//! split by output columns, attention of batched work (the batch-invariant kernel of
//! `attn.rs` where the CPU has it, else a deterministic row-block loop), decode attention,
//! and `silu(gate) * up`. Each returns `None` where its inputs do not qualify, and the
//! caller (`model.rs`) falls back to candle's own operations.

use candle_core::{DType, Device, Tensor};

use super::par::{gemm_f32, Disjoint, Mat};

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
pub(crate) fn pool_matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    pool_gemm(x, w, true)
}

/// `x [m, k] · w` for `w [k, n]` (contiguous f32 CPU tensors) on the engine's threads, like
/// [`pool_matmul_t`]; `None` when the inputs do not qualify.
pub(crate) fn pool_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    pool_gemm(x, w, false)
}

/// `x · wᵀ` (`transposed`: `w [n, k]`) or `x · w` (`w [k, n]`).
pub(crate) fn pool_gemm(
    x: &Tensor,
    w: &Tensor,
    transposed: bool,
) -> candle_core::Result<Option<Tensor>> {
    use candle_core::{CpuStorage, Storage};
    if !super::kernels_on(x.device()) || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
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
    let out = Disjoint::new(&mut dst);
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
            gemm_f32(
                m,
                nc,
                k,
                out.ptr_at(c0),
                n as isize,
                false,
                Mat::rows(xv.as_ptr(), k),
                Mat {
                    ptr: wv.as_ptr().add(rhs_off),
                    row_stride: rhs_rs,
                    col_stride: rhs_cs,
                },
            );
        }
    });
    drop((xs, ws));
    Ok(Some(Tensor::from_vec(dst, (m, n), x.device())?))
}

/// Raw f32 data of a contiguous CPU tensor (storage guard and element range), or `None`.
pub(crate) fn f32_data(
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

pub(crate) fn f32_slice<D: std::ops::Deref<Target = candle_core::Storage>>(
    g: &(D, usize, usize),
) -> &[f32] {
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
pub(crate) fn pool_attention(
    qa: &Tensor,
    kc: &Tensor,
    vc: &Tensor,
    ks: &Tensor,
    vs: &Tensor,
    (nkv, b, g, l, hd, p): (usize, usize, usize, usize, usize, usize),
) -> candle_core::Result<Option<Tensor>> {
    if !super::kernels_on(qa.device()) {
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
        let o = Disjoint::new(&mut out);
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
                    let dst = o.piece(at, m * hd);
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
    let sc = Disjoint::new(&mut scores);
    super::par::for_each_chunk(n_tasks, |range| {
        for t in range {
            let (h, bi, r0, m) = task(t);
            let row = bi * gl + r0;
            // SAFETY: each task writes rows `row..row + m` of head `h` only; all
            // reads are within the slices checked above.
            unsafe {
                let dst = sc.ptr_at((h * rows + row) * pl);
                let lhs = q.as_ptr().add((h * rows + row) * hd);
                if p > 0 {
                    gemm_f32(
                        m,
                        p,
                        hd,
                        dst,
                        pl as isize,
                        false,
                        Mat::rows(lhs, hd),
                        Mat::transposed(kcd.as_ptr().add(h * cap * hd), hd),
                    );
                }
                gemm_f32(
                    m,
                    l,
                    hd,
                    dst.add(p),
                    pl as isize,
                    false,
                    Mat::rows(lhs, hd),
                    Mat::transposed(ksd.as_ptr().add((h * b + bi) * l * hd), hd),
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
    let o = Disjoint::new(&mut out);
    super::par::for_each_chunk(n_tasks, |range| {
        for t in range {
            let (h, bi, r0, m) = task(t);
            let row = bi * gl + r0;
            // SAFETY: as above; each task writes its own rows of `out`.
            unsafe {
                let dst = o.ptr_at((h * rows + row) * hd);
                let lhs = pr.as_ptr().add((h * rows + row) * pl);
                if p > 0 {
                    gemm_f32(
                        m,
                        hd,
                        p,
                        dst,
                        hd as isize,
                        false,
                        Mat::rows(lhs, pl),
                        Mat::rows(vcd.as_ptr().add(h * cap * hd), hd),
                    );
                }
                gemm_f32(
                    m,
                    hd,
                    l,
                    dst,
                    hd as isize,
                    p > 0,
                    Mat::rows(lhs.add(p), pl),
                    Mat::rows(vsd.as_ptr().add((h * b + bi) * l * hd), hd),
                );
            }
        }
    });
    drop((qg, kcg, vcg, ksg, vsg, pg));
    Ok(Some(Tensor::from_vec(out, (nkv, rows, hd), qa.device())?))
}

/// The mask over `[prefix of p | own l tokens]`, causal over the own part: `[1, l, p + l]`.
pub(crate) fn causal_mask(l: usize, p: usize, device: &Device) -> candle_core::Result<Tensor> {
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
pub(crate) fn decode_attention(
    q: &Tensor,
    kc: &Tensor,
    vc: &Tensor,
    (nkv, g, hd, p): (usize, usize, usize, usize),
) -> candle_core::Result<Option<Tensor>> {
    if !super::kernels_on(q.device()) {
        return Ok(None);
    }
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
        let o = Disjoint::new(&mut out);
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
                let dst = o.piece(h * g * hd, g * hd);
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
pub(crate) fn silu_mul(y: &Tensor, ff: usize) -> candle_core::Result<Option<Tensor>> {
    if !super::kernels_on(y.device()) || ff == 0 {
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
    let o = Disjoint::new(&mut out);
    let row = |r: usize| {
        let src = &yv[r * w..(r + 1) * w];
        let (g, u) = src.split_at(ff);
        // SAFETY: row `r` of `out` (n x ff) is written by exactly one caller.
        let dst = unsafe { o.piece(r * ff, ff) };
        #[cfg(target_arch = "x86_64")]
        if super::avx512() {
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
