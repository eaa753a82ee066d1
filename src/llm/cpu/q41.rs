//! Q4_1 weights times f32 activations, with AVX2 on x86-64.
//!
//! candle 0.11 has no SIMD kernel for Q4_1 (its `vec_dot` for Q4_1 is the scalar
//! reference loop), and the default model's projections are all Q4_1: one-token decode
//! spent ~60% of its time there. This module keeps the GGUF blocks as they are
//! (`d: f16, m: f16, qs: [u8; 16]`, 32 weights per 20 bytes; weight = d·q + m), quantizes
//! the activations to 8 bits per 32-value block (scale `d`, and `s = d·Σq`, both f32), and
//! computes `Σ w·x = Σ_blocks d_w·d_x·Σ q_w·q_x + m_w·s_x` as llama.cpp's
//! `ggml_vec_dot_q4_1_q8_1` does, with the rows split over the engine's threads (`par.rs`).
//! Where the int8 kernels run (AVX-512 VNNI or AVX2, see [`super::level`]) the blocks are
//! repacked at load and multiplied by `int8.rs`, for batched work as well as decode; the
//! GGUF-layout path here serves CPUs without them and `TRSR_NO_INT8=1`. The activation
//! blocks ([`Q81`]) and the block helpers (`f16_at`, `push_q4`) serve every type.

use candle_core::{DType, Device, Tensor};

const QK: usize = 32;
const BLOCK_BYTES: usize = 20;

/// An activation block quantized to 8 bits.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Q81 {
    pub(crate) d: f32,
    pub(crate) s: f32,
    pub(crate) qs: [i8; QK],
}

pub(crate) const Q81_ZERO: Q81 = Q81 {
    d: 0.0,
    s: 0.0,
    qs: [0; QK],
};

/// A Q4_1 matrix `[rows, cols]`: GGUF's block layout, or repacked for the int8 kernels
/// (then `data` is empty).
pub struct Q41Matrix {
    rows: usize,
    cols: usize,
    data: Vec<u8>,
    #[cfg(target_arch = "x86_64")]
    packed: Option<super::int8::Packed>,
}

impl Q41Matrix {
    /// From GGUF bytes (`rows * cols / 32` blocks of 20 bytes, row-major), repacked for the
    /// VNNI kernel when the CPU has it.
    pub fn from_bytes(data: Vec<u8>, rows: usize, cols: usize) -> candle_core::Result<Self> {
        #[cfg(target_arch = "x86_64")]
        let pack = super::int8::available();
        #[cfg(not(target_arch = "x86_64"))]
        let pack = false;
        Self::from_bytes_as(data, rows, cols, pack)
    }

    /// As [`Q41Matrix::from_bytes`], repacked only when `pack` (which needs the VNNI CPU
    /// features).
    pub(crate) fn from_bytes_as(
        data: Vec<u8>,
        rows: usize,
        cols: usize,
        pack: bool,
    ) -> candle_core::Result<Self> {
        if !cols.is_multiple_of(QK) || data.len() != rows * cols / QK * BLOCK_BYTES {
            candle_core::bail!(
                "Q4_1 matrix [{rows}, {cols}]: {} bytes, expected {}",
                data.len(),
                rows * (cols / QK) * BLOCK_BYTES
            );
        }
        #[cfg(target_arch = "x86_64")]
        if pack {
            let packed = super::int8::Packed::from_gguf(&data, rows, cols);
            return Ok(Self {
                rows,
                cols,
                data: Vec::new(),
                packed: Some(packed),
            });
        }
        let _ = pack;
        Ok(Self {
            rows,
            cols,
            data,
            #[cfg(target_arch = "x86_64")]
            packed: None,
        })
    }

    /// Whether the VNNI kernel serves this matrix (then batched work uses it too).
    pub fn is_packed(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.packed.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.cols / QK * BLOCK_BYTES;
        &self.data[r * n..(r + 1) * n]
    }

    /// The weights as f32 `[rows, cols]`.
    pub fn dequantize(&self, device: &Device) -> candle_core::Result<Tensor> {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = &self.packed {
            return Tensor::from_vec(p.dequantize(), (self.rows, self.cols), device);
        }
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for blk in self.data.chunks_exact(BLOCK_BYTES) {
            let mut qs = [0u8; 16];
            qs.copy_from_slice(&blk[4..20]);
            push_q4(&mut out, f16_at(blk, 0), f16_at(blk, 2), &qs);
        }
        Tensor::from_vec(out, (self.rows, self.cols), device)
    }

    /// `x [m, cols] · selfᵀ` -> `[m, rows]` (f32, CPU).
    pub fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = &self.packed {
            return packed_matmul(p, x);
        }
        let (m, k) = x.dims2()?;
        if k != self.cols {
            candle_core::bail!(
                "Q4_1 matmul: input has {k} columns, the matrix {}",
                self.cols
            );
        }
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let nb = k / QK;
        let xq = quantized_input(&x, false)?;
        let n = self.rows;
        let mut out = vec![0f32; m * n];
        let parts = super::par::threads();
        let per = n.div_ceil(parts);
        let o = super::par::Disjoint::new(&mut out);
        let dot = dot_fn();
        let dot2 = dot2_fn();
        super::par::for_each_part(parts, |tid| {
            let r0 = tid * per;
            let r1 = (r0 + per).min(n);
            // SAFETY (both writes): each thread writes only rows r0..r1 of every output
            // row `i`; `out` outlives the call, which returns after all threads end.
            let put = |i: usize, r: usize, v: f32| unsafe {
                *o.ptr_at(i * n + r) = v;
            };
            let mut r = r0;
            if let Some(dot2) = dot2 {
                // Two weight rows per pass share each activation block.
                while r + 1 < r1 {
                    let (wa, wb) = (self.row(r), self.row(r + 1));
                    for i in 0..m {
                        let (a, b) = dot2(wa, wb, &xq[i * nb..(i + 1) * nb]);
                        put(i, r, a);
                        put(i, r + 1, b);
                    }
                    r += 2;
                }
            }
            for r in r..r1 {
                let w = self.row(r);
                for i in 0..m {
                    put(i, r, dot(w, &xq[i * nb..(i + 1) * nb]));
                }
            }
        });
        Tensor::from_vec(out, (m, n), x.device())
    }
}

/// `x [m, k]` (f32, CPU) quantized per row and block, with the AVX-512 code when `simd`.
fn quantized_input(x: &Tensor, simd: bool) -> candle_core::Result<Vec<Q81>> {
    use candle_core::{CpuStorage, Storage};
    let (m, k) = x.dims2()?;
    let mut xq = vec![Q81_ZERO; m * (k / QK)];
    let (st, layout) = x.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(v)), Some((o0, o1))) = (&*st, layout.contiguous_offsets())
    else {
        candle_core::bail!("quantized matmul: the input is not contiguous f32 on the CPU");
    };
    quantize_rows(&v[o0..o1], &mut xq, simd);
    Ok(xq)
}

/// `x [m, cols] · wᵀ` for a matrix in the VNNI layout -> `[m, rows]` (f32, CPU).
#[cfg(target_arch = "x86_64")]
pub(crate) fn packed_matmul(w: &super::int8::Packed, x: &Tensor) -> candle_core::Result<Tensor> {
    let (m, k) = x.dims2()?;
    if k != w.cols() {
        candle_core::bail!(
            "quantized matmul: input has {k} columns, the matrix {}",
            w.cols()
        );
    }
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let xq = quantized_input(&x, true)?;
    let mut out = vec![0f32; m * w.rows()];
    w.matmul(&xq, m, &mut out);
    Tensor::from_vec(out, (m, w.rows()), x.device())
}

/// Appends a 4-bit block's 32 weights `d·q + m` to `out`: the low nibbles of `qs` are
/// weights 0..16, the high nibbles 16..32.
pub(crate) fn push_q4(out: &mut Vec<f32>, d: f32, m: f32, qs: &[u8; 16]) {
    out.extend(qs.iter().map(|q| d * (q & 0x0F) as f32 + m));
    out.extend(qs.iter().map(|q| d * (q >> 4) as f32 + m));
}

pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Quantizes whole blocks of `x` into `out`, with the AVX-512 code when `simd` (the VNNI
/// path: its callers have checked the CPU), in parallel for long inputs.
fn quantize_rows(x: &[f32], out: &mut [Q81], simd: bool) {
    let blocks = out.len();
    let run = |x: &[f32], out: &mut [Q81]| {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is set only when the int8 kernels are available (AVX2 at least).
            unsafe { super::int8::quantize_any(x, out) };
            return;
        }
        let _ = simd;
        for (src, dst) in x.chunks_exact(QK).zip(out.iter_mut()) {
            quantize_block(src, dst);
        }
    };
    if blocks < 4096 {
        run(x, out);
        return;
    }
    let o = super::par::Disjoint::new(out);
    super::par::for_each_chunk(blocks, |r| {
        // SAFETY: the chunks are disjoint ranges of `out`, which outlives the call.
        let o = unsafe { o.piece(r.start, r.end - r.start) };
        run(&x[r.start * QK..r.end * QK], o);
    });
}

fn quantize_block(x: &[f32], out: &mut Q81) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in out.qs.iter_mut().zip(x) {
        let t = (v * id).round() as i32;
        *q = t as i8;
        sum += t;
    }
    out.d = d;
    out.s = d * sum as f32;
}

type DotFn = fn(&[u8], &[Q81]) -> f32;
type Dot2Fn = fn(&[u8], &[u8], &[Q81]) -> (f32, f32);

fn dot2_fn() -> Option<Dot2Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return Some(|a, b, x| {
                // SAFETY: the CPU has AVX2 and FMA (checked by has_avx2).
                unsafe { dot2_avx2(a, b, x) }
            });
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
use super::has_avx2_fma as has_avx2;

fn dot_fn() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return |w, x| {
            // SAFETY: the CPU has AVX2 and FMA (checked by has_avx2).
            unsafe { dot_avx2(w, x) }
        };
    }
    dot_scalar
}

/// The reference: `Σ_blocks d_w·d_x·Σ q_w·q_x + m_w·s_x`.
fn dot_scalar(w: &[u8], x: &[Q81]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in w.chunks_exact(BLOCK_BYTES).zip(x) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qs = &b[4..20];
        let mut s = 0i32;
        let (lo, hi) = y.qs.split_at(QK / 2);
        for ((q, a), b) in qs.iter().zip(lo).zip(hi) {
            s += (q & 0x0F) as i32 * *a as i32;
            s += (q >> 4) as i32 * *b as i32;
        }
        sum += d * y.d * s as f32 + m * y.s;
    }
    sum
}

/// One block's `(d, m)` scales, read from its two leading f16 values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block_scales(b: *const u8) -> (f32, f32) {
    (
        half::f16::from_bits(u16::from_le_bytes([*b, *b.add(1)])).to_f32(),
        half::f16::from_bits(u16::from_le_bytes([*b.add(2), *b.add(3)])).to_f32(),
    )
}

/// `Σ q_w·q_x` of one block as 8 i32 lanes: the block's 16 bytes of nibbles (low nibbles
/// are weights 0..16, high nibbles 16..32) times the activation's 32 signed bytes `by`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_products(
    qs: *const u8,
    by: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let tmp = _mm_loadu_si128(qs as *const __m128i);
    let bx = _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp),
        _mm256_set1_epi8(0x0F),
    );
    // u8 (0..15) x i8 pairs: |sum| <= 2 * 15 * 127, no saturation.
    _mm256_madd_epi16(_mm256_maddubs_epi16(bx, by), _mm256_set1_epi16(1))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(w: &[u8], x: &[Q81]) -> f32 {
    use std::arch::x86_64::*;
    let nb = x.len().min(w.len() / BLOCK_BYTES);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    let wp = w.as_ptr();
    for (i, y) in x.iter().enumerate().take(nb) {
        let b = wp.add(i * BLOCK_BYTES);
        let (d, m) = block_scales(b);
        let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
        let p = block_products(b.add(4), by);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), _mm256_cvtepi32_ps(p), acc);
        summs += m * y.s;
    }
    hsum(acc) + summs
}

/// Two rows against the same activations: twice the independent work per loaded block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot2_avx2(wa: &[u8], wb: &[u8], x: &[Q81]) -> (f32, f32) {
    use std::arch::x86_64::*;
    let nb = x
        .len()
        .min(wa.len() / BLOCK_BYTES)
        .min(wb.len() / BLOCK_BYTES);
    let mut acc_a = _mm256_setzero_ps();
    let mut acc_b = _mm256_setzero_ps();
    let (mut sa, mut sb) = (0f32, 0f32);
    let (pa, pb) = (wa.as_ptr(), wb.as_ptr());
    for (i, y) in x.iter().enumerate().take(nb) {
        let (a, b) = (pa.add(i * BLOCK_BYTES), pb.add(i * BLOCK_BYTES));
        let by = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
        let (da, ma) = block_scales(a);
        let (db, mb) = block_scales(b);
        let qa = block_products(a.add(4), by);
        let qb = block_products(b.add(4), by);
        acc_a = _mm256_fmadd_ps(_mm256_set1_ps(da * y.d), _mm256_cvtepi32_ps(qa), acc_a);
        acc_b = _mm256_fmadd_ps(_mm256_set1_ps(db * y.d), _mm256_cvtepi32_ps(qb), acc_b);
        sa += ma * y.s;
        sb += mb * y.s;
    }
    (hsum(acc_a) + sa, hsum(acc_b) + sb)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(acc: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s4 = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};

    fn q41_of(t: &Tensor, pack: bool) -> Q41Matrix {
        let q = QTensor::quantize(t, GgmlDType::Q4_1).unwrap();
        let (rows, cols) = t.dims2().unwrap();
        Q41Matrix::from_bytes_as(q.data().unwrap().to_vec(), rows, cols, pack).unwrap()
    }

    fn max_abs(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn quantized(x: &[f32]) -> Vec<Q81> {
        let mut xq = vec![Q81_ZERO; x.len() / QK];
        for (src, dst) in x.chunks_exact(QK).zip(xq.iter_mut()) {
            quantize_block(src, dst);
        }
        xq
    }

    fn vnni_here() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            super::super::int8::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    #[test]
    fn matches_dequantized_weights_and_scalar_reference() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (37, 96), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 96), &dev).unwrap();
        // The dequantized weights are candle's own dequantization of the same blocks.
        let cand = QTensor::quantize(&w, GgmlDType::Q4_1)
            .unwrap()
            .dequantize(&dev)
            .unwrap();
        let want = x.matmul(&cand.t().unwrap()).unwrap();
        let forms: &[bool] = if vnni_here() {
            &[false, true]
        } else {
            &[false]
        };
        for &pack in forms {
            let q = q41_of(&w, pack);
            assert_eq!(q.is_packed(), pack);
            let deq = q.dequantize(&dev).unwrap();
            assert_eq!(max_abs(&(&deq - &cand).unwrap()), 0.0, "packed: {pack}");
            let got = q.matmul(&x).unwrap();
            let err = max_abs(&(&got - &want).unwrap());
            // 8-bit activations: about 1% of the largest output.
            assert!(err < 0.02 * max_abs(&want), "packed {pack}: {err}");
        }
        // AVX2 and scalar agree on the same quantized inputs.
        let q = q41_of(&w, false);
        let xq = quantized(&x.to_vec2::<f32>().unwrap()[1]);
        for r in 0..37 {
            let a = dot_scalar(q.row(r), &xq);
            let b = dot_fn()(q.row(r), &xq);
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "row {r}: {a} vs {b}"
            );
        }
    }

    /// The VNNI kernel against the scalar reference on the same quantized inputs, for
    /// token counts that hit every tile width and the one-token path, and row counts
    /// that end in a partial group.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vnni_kernel_matches_scalar_reference() {
        use super::super::int8 as vnni;
        if !vnni::available() {
            eprintln!(
                "SKIPPED: no int8 kernels here (no AVX2, or TRSR_NO_INT8 / TRSR_NO_VNNI set)"
            );
            return;
        }
        let has512 = is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni");
        let levels: &[vnni::Level] = if has512 {
            &[vnni::Level::Avx512, vnni::Level::Avx2]
        } else {
            &[vnni::Level::Avx2]
        };
        let dev = Device::Cpu;
        for (rows, cols) in [(37, 96), (70, 64), (128, 160)] {
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap();
            let raw = q41_of(&w, false);
            let packed = q41_of(&w, true);
            for m in [1, 2, 3, 5, 8, 9, 13, 17] {
                let x = Tensor::randn(0f32, 1.0, (m, cols), &dev).unwrap();
                let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                // The SIMD quantizers agree with the scalar one (ties may round apart) and
                // with each other exactly.
                let xq = quantized(&xv);
                let mut x2 = vec![Q81_ZERO; xq.len()];
                // SAFETY: the int8 kernels run here, so the CPU has AVX2 and FMA.
                unsafe { vnni::quantize_avx2(&xv, &mut x2) };
                for (a, b) in xq.iter().zip(&x2) {
                    assert_eq!(a.d, b.d);
                    for (p, q) in a.qs.iter().zip(&b.qs) {
                        assert!((*p as i32 - *q as i32).abs() <= 1);
                    }
                }
                if has512 {
                    let mut xs = vec![Q81_ZERO; xq.len()];
                    // SAFETY: checked the CPU above.
                    unsafe { vnni::quantize(&xv, &mut xs) };
                    for (a, b) in xs.iter().zip(&x2) {
                        assert_eq!((a.d, a.s, a.qs), (b.d, b.s, b.qs));
                    }
                }
                let Some(p) = &packed.packed else {
                    panic!("not packed")
                };
                for &level in levels {
                    let mut out = vec![f32::NAN; m * rows];
                    p.matmul_at(level, &xq, m, &mut out);
                    let nb = cols / QK;
                    for i in 0..m {
                        for r in 0..rows {
                            let want = dot_scalar(raw.row(r), &xq[i * nb..(i + 1) * nb]);
                            let got = out[i * rows + r];
                            assert!(
                            (want - got).abs() <= 1e-4 * want.abs().max(1.0),
                            "{level:?} [{rows}x{cols}] m {m}, token {i}, row {r}: {want} vs {got}"
                        );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(Q41Matrix::from_bytes(vec![0; 19], 1, 32).is_err());
        assert!(Q41Matrix::from_bytes(vec![0; 20], 1, 33).is_err());
        let q = Q41Matrix::from_bytes(vec![0; 40], 2, 32).unwrap();
        let x = Tensor::zeros((1, 64), DType::F32, &Device::Cpu).unwrap();
        assert!(q.matmul(&x).is_err());
    }
}
