//! Q4_1 weights times 8-bit activations with AVX-512 VNNI (x86-64).
//!
//! `vpdpbusd` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
//! products into one of 16 i32 lanes. Q4_1 nibbles (0..15) are the unsigned side and the
//! Q8_1 activations the signed side, so one instruction does 64 multiply-adds, four times
//! what an f32 FMA of the same width does. The weights are repacked at load so that each
//! lane is one weight row: a "group" is 16 rows, and per 32-weight block a group holds
//! four 64-byte lines of nibbles (line `v`, byte `4r + j`: row `r`'s GGUF byte `4v + j`,
//! whose low nibble is weight `4v + j` and high nibble weight `16 + 4v + j`), then the 16
//! rows' `d` and the 16 rows' `m` as f32. That is 384 bytes per 512 weights, and the GGUF
//! bytes are not kept.
//!
//! The same kernel serves decode (one token, four groups at a time) and batched prompt
//! and scoring work (eight tokens per group), so a token's result does not depend on how
//! the tokens were batched. Each token's row is quantized per 32-value block (`d =
//! max|x| / 127`, rounded to nearest even, as llama.cpp's AVX code does).

use std::arch::x86_64::*;

use super::q41::Q81;

/// Blocks of 32 weights.
const QK: usize = 32;
/// 64-byte lines per (group, block): four of nibbles, `d`, `m`.
const LINES: usize = 6;
/// Rows per group (i32 lanes of a 512-bit register).
const GROUP: usize = 16;
/// Tokens per tile in batched work.
const TILE: usize = 8;
/// Weight bytes per group chunk: each thread runs all its tokens over one chunk of its
/// groups before the next, so the chunk stays in L2.
const CHUNK_BYTES: usize = 256 * 1024;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Whether this CPU runs the kernels (AVX-512 F/BW/VNNI); `TRSR_NO_VNNI=1` turns them off.
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("TRSR_NO_VNNI").is_none_or(|v| v.is_empty() || v == "0")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// A Q4_1 matrix `[rows, cols]` in the VNNI layout.
pub(crate) struct Packed {
    rows: usize,
    nb: usize,
    lines: Vec<Line>,
}

impl Packed {
    /// Repacks GGUF Q4_1 bytes (`rows * cols / 32` blocks of 20 bytes, row-major); the
    /// caller has checked the sizes.
    pub(crate) fn from_gguf(data: &[u8], rows: usize, cols: usize) -> Packed {
        let nb = cols / QK;
        let groups = rows.div_ceil(GROUP);
        let mut lines = vec![Line([0; 64]); groups * nb * LINES];
        for (i, blk) in data.chunks_exact(20).enumerate() {
            let (r, b) = (i / nb, i % nb);
            let base = ((r / GROUP) * nb + b) * LINES;
            let lane = (r % GROUP) * 4;
            for v in 0..4 {
                lines[base + v].0[lane..lane + 4].copy_from_slice(&blk[4 + 4 * v..8 + 4 * v]);
            }
            let d = half::f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
            let m = half::f16::from_bits(u16::from_le_bytes([blk[2], blk[3]])).to_f32();
            lines[base + 4].0[lane..lane + 4].copy_from_slice(&d.to_le_bytes());
            lines[base + 5].0[lane..lane + 4].copy_from_slice(&m.to_le_bytes());
        }
        Packed { rows, nb, lines }
    }

    /// Row `r`'s block `b`: `(d, m, the 16 GGUF nibble bytes)`.
    pub(crate) fn block(&self, r: usize, b: usize) -> (f32, f32, [u8; 16]) {
        let base = ((r / GROUP) * self.nb + b) * LINES;
        let lane = (r % GROUP) * 4;
        let mut qs = [0u8; 16];
        for v in 0..4 {
            qs[4 * v..4 * v + 4].copy_from_slice(&self.lines[base + v].0[lane..lane + 4]);
        }
        let f = |l: usize| {
            let s = &self.lines[base + l].0[lane..lane + 4];
            f32::from_le_bytes([s[0], s[1], s[2], s[3]])
        };
        (f(4), f(5), qs)
    }

    /// `out[i * rows + r] = Σ_k w[r, k] · x[i, k]` for the `m` tokens of `xq` (each `nb`
    /// blocks, from [`quantize`]), rows split over the engine's threads.
    pub(crate) fn matmul(&self, xq: &[Q81], m: usize, out: &mut [f32]) {
        let (n, nb) = (self.rows, self.nb);
        assert!(xq.len() >= m * nb && out.len() >= m * n);
        let groups = n.div_ceil(GROUP);
        let parts = super::par::threads().min(groups);
        // Whole groups per thread; decode takes four at a time.
        let step = if m == 1 { 4 } else { 1 };
        let per = groups.div_ceil(parts).div_ceil(step) * step;
        let chunk = (CHUNK_BYTES / (nb * LINES * 64)).max(1);
        let out_addr = out.as_mut_ptr() as usize;
        super::par::for_each_part(parts, |tid| {
            let g0 = tid * per;
            let g1 = (g0 + per).min(groups);
            let mut c0 = g0;
            while c0 < g1 {
                let c1 = (c0 + chunk).min(g1);
                // SAFETY: the CPU has the features (callers check `available`); each thread
                // writes only the columns of its own groups (masked at the last group), of
                // rows < m of `out`, which outlives the call; `xq` has m * nb blocks.
                unsafe { self.run(c0, c1, xq, m, out_addr as *mut f32) };
                c0 = c1;
            }
        });
    }

    /// Groups `g0..g1` against all `m` tokens.
    ///
    /// # Safety
    /// As in [`Packed::matmul`].
    unsafe fn run(&self, g0: usize, g1: usize, xq: &[Q81], m: usize, out: *mut f32) {
        let (n, nb) = (self.rows, self.nb);
        let gs = nb * LINES;
        let mask = |g: usize| -> __mmask16 {
            let valid = (n - g * GROUP).min(GROUP);
            ((1u32 << valid) - 1) as __mmask16
        };
        let w = |g: usize| self.lines.as_ptr().add(g * gs);
        let x = |t: usize| xq.as_ptr().add(t * nb);
        if m == 1 {
            let mut g = g0;
            while g + 4 <= g1 {
                let masks = [mask(g), mask(g + 1), mask(g + 2), mask(g + 3)];
                tile::<4, 1>(w(g), gs, nb, x(0), nb, out.add(g * GROUP), n, masks);
                g += 4;
            }
            for g in g..g1 {
                tile::<1, 1>(w(g), gs, nb, x(0), nb, out.add(g * GROUP), n, [mask(g)]);
            }
            return;
        }
        let mut t0 = 0;
        while t0 < m {
            let tn = (m - t0).min(TILE);
            let f: TileFn = match tn {
                8 => tile::<1, 8>,
                7 => tile::<1, 7>,
                6 => tile::<1, 6>,
                5 => tile::<1, 5>,
                4 => tile::<1, 4>,
                3 => tile::<1, 3>,
                2 => tile::<1, 2>,
                _ => tile::<1, 1>,
            };
            for g in g0..g1 {
                f(
                    w(g),
                    gs,
                    nb,
                    x(t0),
                    nb,
                    out.add(t0 * n + g * GROUP),
                    n,
                    [mask(g)],
                );
            }
            t0 += tn;
        }
    }
}

type TileFn =
    unsafe fn(*const Line, usize, usize, *const Q81, usize, *mut f32, usize, [__mmask16; 1]);

/// `G` consecutive groups (`gs` lines apart, from `w`) times `T` consecutive tokens (`xs`
/// blocks apart, from `x`), over `nb` blocks; token `t`, group `g` goes to
/// `out + t * os + g * 16` under `masks[g]`.
///
/// # Safety
/// AVX-512 F/BW/VNNI; the pointers cover the ranges described.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const G: usize, const T: usize>(
    w: *const Line,
    gs: usize,
    nb: usize,
    x: *const Q81,
    xs: usize,
    out: *mut f32,
    os: usize,
    masks: [__mmask16; G],
) {
    let low = _mm512_set1_epi8(0x0F);
    let mut accf = [[_mm512_setzero_ps(); T]; G];
    for b in 0..nb {
        let mut acci = [[_mm512_setzero_si512(); T]; G];
        unroll!(4, |v| {
            let mut lo = [_mm512_setzero_si512(); G];
            let mut hi = [_mm512_setzero_si512(); G];
            unroll!(G, |g| {
                let p = _mm512_load_si512(w.add(g * gs + b * LINES + v) as *const __m512i);
                lo[g] = _mm512_and_si512(p, low);
                hi[g] = _mm512_and_si512(_mm512_srli_epi16::<4>(p), low);
            });
            unroll!(T, |t| {
                let qs = (x.add(t * xs + b) as *const u8).add(8);
                let al = _mm512_set1_epi32((qs.add(4 * v) as *const i32).read_unaligned());
                let ah = _mm512_set1_epi32((qs.add(16 + 4 * v) as *const i32).read_unaligned());
                unroll!(G, |g| {
                    acci[g][t] = _mm512_dpbusd_epi32(acci[g][t], lo[g], al);
                    acci[g][t] = _mm512_dpbusd_epi32(acci[g][t], hi[g], ah);
                });
            });
        });
        unroll!(G, |g| {
            let dv = _mm512_load_ps(w.add(g * gs + b * LINES + 4) as *const f32);
            let mv = _mm512_load_ps(w.add(g * gs + b * LINES + 5) as *const f32);
            unroll!(T, |t| {
                let xb = &*x.add(t * xs + b);
                let p = _mm512_mul_ps(_mm512_cvtepi32_ps(acci[g][t]), dv);
                accf[g][t] = _mm512_fmadd_ps(p, _mm512_set1_ps(xb.d), accf[g][t]);
                accf[g][t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(xb.s), accf[g][t]);
            });
        });
    }
    unroll!(G, |g| {
        unroll!(T, |t| {
            _mm512_mask_storeu_ps(out.add(t * os + g * GROUP), masks[g], accf[g][t]);
        });
    });
}

/// Quantizes `x` (whole blocks of 32) into `out` (one [`Q81`] per block).
///
/// # Safety
/// AVX-512 F/BW (callers check [`available`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantize(x: &[f32], out: &mut [Q81]) {
    for (o, v) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let v0 = _mm512_loadu_ps(v.as_ptr());
        let v1 = _mm512_loadu_ps(v.as_ptr().add(16));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        let d = amax / 127.0;
        let id = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        // Round to nearest (even), the MXCSR default.
        let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
        let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
        let qs = o.qs.as_mut_ptr() as *mut __m128i;
        _mm_storeu_si128(qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128(qs.add(1), _mm512_cvtepi32_epi8(q1));
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        o.d = d;
        o.s = d * sum as f32;
    }
}
