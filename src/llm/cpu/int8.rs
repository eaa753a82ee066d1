//! Quantized weights times 8-bit activations: the int8 kernels (x86-64), at two levels
//! (see [`super::Level`]): AVX-512 VNNI, and an AVX2 form of the same kernels for CPUs
//! without it (4-bit types only).
//!
//! `vpdpbusd` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
//! products into one of 16 i32 lanes. 4-bit weights (0..15) are the unsigned side and the
//! Q8_1 activations the signed side, so one instruction does 64 multiply-adds, four times
//! what an f32 FMA of the same width does. The weights are repacked at load so that each
//! lane is one weight row: a "group" is 16 rows, and per 32-weight block a group holds
//! four 64-byte lines of nibbles (line `v`, byte `4r + j`: row `r`'s GGUF byte `4v + j`,
//! whose low nibble is weight `4v + j` and high nibble weight `16 + 4v + j`), then the 16
//! rows' scales `d` and offsets `m` (weight = d·q + m): Q4_1 as it is, Q4_0 with `m =
//! -8d`, and each 32-weight sub-block of Q4_K with `d·sc`, `-dmin·m`. The file's bytes are
//! not kept.
//!
//! Q8_0 weights (`d: f16, qs: [i8; 32]`) use the same layout with eight lines of bytes per
//! block, each weight stored as `q + 128` (unsigned), and `Σ q·a = Σ (q+128)·a - 128·Σ a`;
//! then the `d` line (9 lines, 576 bytes per 512 weights).
//!
//! The same kernel serves decode (one token, four groups at a time) and batched prompt
//! and scoring work (eight tokens per group), so a token's result does not depend on how
//! the tokens were batched. Each token's row is quantized per 32-value block (`d =
//! max|x| / 127`, rounded to nearest even, as llama.cpp's AVX code does).

use std::arch::x86_64::*;

use super::q41::{f16_at, Q81};

/// Blocks of 32 weights.
const QK: usize = 32;
/// Layouts, by the 64-byte lines per (group, block): 4-bit weights have four lines of
/// nibbles, then their scales: 16 `d` and 16 `m` as f16 in one line where they are f16 in
/// the file (Q4_1, Q4_0: 320 bytes per 512 weights, as many as Q4_1's), else as f32 in two
/// lines (Q4_K, whose `d·sc` products f16 cannot hold); Q8_0 has eight lines of bytes and
/// a line of f32 `d`.
const K4H: u8 = 0;
const K4F: u8 = 1;
const K8: u8 = 2;

const fn lines_of(kind: u8) -> usize {
    match kind {
        K4H => 5,
        K4F => 6,
        _ => 9,
    }
}
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

pub(crate) use super::{available, level, Level};

/// A Q4_1 matrix `[rows, cols]` in the VNNI layout.
pub(crate) struct Packed {
    rows: usize,
    nb: usize,
    /// [`K4H`], [`K4F`] or [`K8`].
    kind: u8,
    lines: Vec<Line>,
}

impl Packed {
    /// Repacks GGUF Q4_1 bytes (`rows * cols / 32` blocks of 20 bytes, row-major); the
    /// caller has checked the sizes.
    pub(crate) fn from_gguf(data: &[u8], rows: usize, cols: usize) -> Packed {
        let nb = cols / QK;
        Self::pack_4bit(rows, cols, true, |r, b| {
            let blk = &data[(r * nb + b) * 20..(r * nb + b + 1) * 20];
            let mut qs = [0u8; 16];
            qs.copy_from_slice(&blk[4..20]);
            (f16_at(blk, 0), f16_at(blk, 2), qs)
        })
    }

    /// Repacks GGUF Q4_0 bytes (blocks of 18: `d`, then the nibbles; weight = d·(q - 8)),
    /// or `None` when the sizes do not fit.
    pub(crate) fn from_gguf_q4_0(data: &[u8], rows: usize, cols: usize) -> Option<Packed> {
        if !cols.is_multiple_of(QK) || data.len() != rows * (cols / QK) * 18 {
            return None;
        }
        let nb = cols / QK;
        // m = -8·d is exact in f16 (a power-of-two multiple).
        Some(Self::pack_4bit(rows, cols, true, |r, b| {
            let blk = &data[(r * nb + b) * 18..(r * nb + b + 1) * 18];
            let mut qs = [0u8; 16];
            qs.copy_from_slice(&blk[2..18]);
            let d = f16_at(blk, 0);
            (d, -8.0 * d, qs)
        }))
    }

    /// Repacks GGUF Q4_K bytes (super-blocks of 256 weights in 144 bytes: `d`, `dmin`, twelve
    /// bytes of 6-bit scales and mins for the eight 32-weight sub-blocks, 128 bytes of
    /// nibbles), or `None` when the sizes do not fit. Sub-block `j` has weight
    /// `d·sc_j·q - dmin·m_j`: Q4_1's form with `d = d·sc_j`, `m = -dmin·m_j`.
    pub(crate) fn from_gguf_q4_k(data: &[u8], rows: usize, cols: usize) -> Option<Packed> {
        const QKK: usize = 256;
        if !cols.is_multiple_of(QKK) || data.len() != rows * (cols / QKK) * 144 {
            return None;
        }
        let nsb = cols / QKK;
        Some(Self::pack_4bit(rows, cols, false, |r, b| {
            let sb = &data[(r * nsb + b / 8) * 144..(r * nsb + b / 8 + 1) * 144];
            let j = b % 8;
            let sc = &sb[4..16];
            let (s, m) = if j < 4 {
                (sc[j] & 63, sc[j + 4] & 63)
            } else {
                (
                    (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4),
                    (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
                )
            };
            // Sub-blocks 2i and 2i + 1 share 32 bytes: low nibbles, then high nibbles.
            let src = &sb[16 + (j / 2) * 32..16 + (j / 2) * 32 + 32];
            let nib = |i: usize| {
                if j % 2 == 0 {
                    src[i] & 0x0F
                } else {
                    src[i] >> 4
                }
            };
            let mut qs = [0u8; 16];
            for (i, q) in qs.iter_mut().enumerate() {
                *q = nib(i) | (nib(16 + i) << 4);
            }
            (f16_at(sb, 0) * s as f32, -(f16_at(sb, 2) * m as f32), qs)
        }))
    }

    /// Packs a 4-bit matrix from its blocks: `block(r, b)` gives row `r`'s block `b` as
    /// `(d, m, nibbles)` (weight `i` in the low nibble of byte `i`, weight `16 + i` in its
    /// high nibble; weight = d·q + m). `f16_scales`: `d` and `m` are exact in f16.
    fn pack_4bit(
        rows: usize,
        cols: usize,
        f16_scales: bool,
        block: impl Fn(usize, usize) -> (f32, f32, [u8; 16]),
    ) -> Packed {
        let kind = if f16_scales { K4H } else { K4F };
        let lpb = lines_of(kind);
        let nb = cols / QK;
        let groups = rows.div_ceil(GROUP);
        let mut lines = vec![Line([0; 64]); groups * nb * lpb];
        for r in 0..rows {
            let rr = r % GROUP;
            let lane = rr * 4;
            for b in 0..nb {
                let (d, m, qs) = block(r, b);
                let base = ((r / GROUP) * nb + b) * lpb;
                for v in 0..4 {
                    lines[base + v].0[lane..lane + 4].copy_from_slice(&qs[4 * v..4 * v + 4]);
                }
                if f16_scales {
                    let (d, m) = (half::f16::from_f32(d), half::f16::from_f32(m));
                    lines[base + 4].0[2 * rr..2 * rr + 2].copy_from_slice(&d.to_le_bytes());
                    lines[base + 4].0[32 + 2 * rr..34 + 2 * rr].copy_from_slice(&m.to_le_bytes());
                } else {
                    lines[base + 4].0[lane..lane + 4].copy_from_slice(&d.to_le_bytes());
                    lines[base + 5].0[lane..lane + 4].copy_from_slice(&m.to_le_bytes());
                }
            }
        }
        Packed {
            rows,
            nb,
            kind,
            lines,
        }
    }

    /// Repacks GGUF Q8_0 bytes (`rows * cols / 32` blocks of 34 bytes, row-major), or
    /// `None` when the sizes do not fit.
    pub(crate) fn from_gguf_q8_0(data: &[u8], rows: usize, cols: usize) -> Option<Packed> {
        if !cols.is_multiple_of(QK) || data.len() != rows * (cols / QK) * 34 {
            return None;
        }
        let nb = cols / QK;
        let groups = rows.div_ceil(GROUP);
        let mut lines = vec![Line([0; 64]); groups * nb * lines_of(K8)];
        for (i, blk) in data.chunks_exact(34).enumerate() {
            let (r, b) = (i / nb, i % nb);
            let base = ((r / GROUP) * nb + b) * lines_of(K8);
            let lane = (r % GROUP) * 4;
            for v in 0..8 {
                for j in 0..4 {
                    lines[base + v].0[lane + j] = blk[2 + 4 * v + j] ^ 0x80;
                }
            }
            lines[base + 8].0[lane..lane + 4].copy_from_slice(&f16_at(blk, 0).to_le_bytes());
        }
        Some(Packed {
            rows,
            nb,
            kind: K8,
            lines,
        })
    }

    fn lines_per_block(&self) -> usize {
        lines_of(self.kind)
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.nb * QK
    }

    /// Row `r`'s block `b` of a 4-bit matrix: `(d, m, the 16 nibble bytes)`.
    pub(crate) fn block(&self, r: usize, b: usize) -> (f32, f32, [u8; 16]) {
        debug_assert!(self.kind != K8);
        let base = ((r / GROUP) * self.nb + b) * self.lines_per_block();
        let (rr, lane) = (r % GROUP, (r % GROUP) * 4);
        let mut qs = [0u8; 16];
        for v in 0..4 {
            qs[4 * v..4 * v + 4].copy_from_slice(&self.lines[base + v].0[lane..lane + 4]);
        }
        if self.kind == K4H {
            let line = &self.lines[base + 4].0;
            let d = f16_at(line, 2 * rr);
            let m = f16_at(line, 32 + 2 * rr);
            return (d, m, qs);
        }
        (self.f32_at(base + 4, lane), self.f32_at(base + 5, lane), qs)
    }

    fn f32_at(&self, line: usize, lane: usize) -> f32 {
        let s = &self.lines[line].0[lane..lane + 4];
        f32::from_le_bytes([s[0], s[1], s[2], s[3]])
    }

    /// The weights as f32, row-major.
    pub(crate) fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.nb * QK);
        for r in 0..self.rows {
            self.dequantize_row(r, &mut out);
        }
        out
    }

    /// Appends row `r` as f32 to `out`.
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut Vec<f32>) {
        let lpb = self.lines_per_block();
        let lane = (r % GROUP) * 4;
        for b in 0..self.nb {
            let base = ((r / GROUP) * self.nb + b) * lpb;
            if self.kind == K8 {
                let d = self.f32_at(base + 8, lane);
                for v in 0..8 {
                    for &q in &self.lines[base + v].0[lane..lane + 4] {
                        out.push(d * ((q ^ 0x80) as i8) as f32);
                    }
                }
            } else {
                let (d, m, qs) = self.block(r, b);
                super::q41::push_q4(out, d, m, &qs);
            }
        }
    }

    /// `out[i * rows + r] = Σ_k w[r, k] · x[i, k]` for the `m` tokens of `xq` (each `nb`
    /// blocks, from [`quantize`]), rows split over the engine's threads.
    pub(crate) fn matmul(&self, xq: &[Q81], m: usize, out: &mut [f32]) {
        self.matmul_at(level().unwrap_or(Level::Avx2), xq, m, out);
    }

    /// [`Packed::matmul`] with the kernels of `level` (which the CPU must have; AVX2 only
    /// for 4-bit matrices).
    pub(crate) fn matmul_at(&self, level: Level, xq: &[Q81], m: usize, out: &mut [f32]) {
        assert!(level == Level::Avx512 || self.kind != K8);
        let (n, nb) = (self.rows, self.nb);
        assert!(xq.len() >= m * nb && out.len() >= m * n);
        let groups = n.div_ceil(GROUP);
        let parts = super::par::threads().min(groups);
        // Whole groups per thread; decode takes four at a time.
        let step = if m == 1 { 4 } else { 1 };
        let per = groups.div_ceil(parts).div_ceil(step) * step;
        let chunk = (CHUNK_BYTES / (nb * self.lines_per_block() * 64)).max(1);
        let o = super::par::Disjoint::new(out);
        super::par::for_each_part(parts, |tid| {
            let g0 = tid * per;
            let g1 = (g0 + per).min(groups);
            let mut c0 = g0;
            while c0 < g1 {
                let c1 = (c0 + chunk).min(g1);
                // SAFETY: the CPU has the features (callers check `available`); each thread
                // writes only the columns of its own groups (masked at the last group), of
                // rows < m of `out`, which outlives the call; `xq` has m * nb blocks.
                unsafe { self.run(level, c0, c1, xq, m, o.ptr_at(0)) };
                c0 = c1;
            }
        });
    }

    /// Groups `g0..g1` against all `m` tokens.
    ///
    /// # Safety
    /// As in [`Packed::matmul`].
    unsafe fn run(&self, level: Level, g0: usize, g1: usize, xq: &[Q81], m: usize, out: *mut f32) {
        let (n, nb) = (self.rows, self.nb);
        let gs = nb * self.lines_per_block();
        let mask = |g: usize| -> __mmask16 {
            let valid = (n - g * GROUP).min(GROUP);
            ((1u32 << valid) - 1) as __mmask16
        };
        let w = |g: usize| self.lines.as_ptr().add(g * gs);
        let x = |t: usize| xq.as_ptr().add(t * nb);
        if level == Level::Avx2 {
            // AVX2: one group, up to two tokens at a time (16 ymm registers).
            let mut t0 = 0;
            while t0 < m {
                let tn = (m - t0).min(2);
                for g in g0..g1 {
                    let o = out.add(t0 * n + g * GROUP);
                    match (tn, self.kind) {
                        (2, K4H) => tile_avx2::<2, K4H>(w(g), nb, x(t0), nb, o, n, mask(g)),
                        (2, _) => tile_avx2::<2, K4F>(w(g), nb, x(t0), nb, o, n, mask(g)),
                        (_, K4H) => tile_avx2::<1, K4H>(w(g), nb, x(t0), nb, o, n, mask(g)),
                        (_, _) => tile_avx2::<1, K4F>(w(g), nb, x(t0), nb, o, n, mask(g)),
                    }
                }
                t0 += tn;
            }
            return;
        }
        if m == 1 {
            let mut g = g0;
            while g + 4 <= g1 {
                let masks = [mask(g), mask(g + 1), mask(g + 2), mask(g + 3)];
                let f: Tile4Fn = match self.kind {
                    K4H => tile::<4, 1, K4H>,
                    K4F => tile::<4, 1, K4F>,
                    _ => tile::<4, 1, K8>,
                };
                f(w(g), gs, nb, x(0), nb, out.add(g * GROUP), n, masks);
                g += 4;
            }
            for g in g..g1 {
                let f = tile_fn(1, self.kind);
                f(w(g), gs, nb, x(0), nb, out.add(g * GROUP), n, [mask(g)]);
            }
            return;
        }
        let mut t0 = 0;
        while t0 < m {
            let tn = (m - t0).min(TILE);
            let f = tile_fn(tn, self.kind);
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
type Tile4Fn =
    unsafe fn(*const Line, usize, usize, *const Q81, usize, *mut f32, usize, [__mmask16; 4]);

/// The one-group kernel for `tn` (1..=8) tokens of a `kind` matrix.
fn tile_fn(tn: usize, kind: u8) -> TileFn {
    macro_rules! by_tokens {
        ($k:expr) => {
            match tn {
                8 => tile::<1, 8, { $k }>,
                7 => tile::<1, 7, { $k }>,
                6 => tile::<1, 6, { $k }>,
                5 => tile::<1, 5, { $k }>,
                4 => tile::<1, 4, { $k }>,
                3 => tile::<1, 3, { $k }>,
                2 => tile::<1, 2, { $k }>,
                _ => tile::<1, 1, { $k }>,
            }
        };
    }
    match kind {
        K4H => by_tokens!(K4H),
        K4F => by_tokens!(K4F),
        _ => by_tokens!(K8),
    }
}

/// `G` consecutive groups (`gs` lines apart, from `w`) times `T` consecutive tokens (`xs`
/// blocks apart, from `x`), over `nb` blocks; token `t`, group `g` goes to
/// `out + t * os + g * 16` under `masks[g]`.
///
/// # Safety
/// AVX-512 F/BW/VNNI; the pointers cover the ranges described.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const G: usize, const T: usize, const K: u8>(
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
    let lpb = lines_of(K);
    let mut accf = [[_mm512_setzero_ps(); T]; G];
    for b in 0..nb {
        let mut acci = [[_mm512_setzero_si512(); T]; G];
        // Line v of Q8_0 holds weights 4v..4v+4 of each row; Q4_1's low nibbles of line
        // v those of v, and its high nibbles those of v + 4.
        unroll!(4, |v| {
            let mut lo = [_mm512_setzero_si512(); G];
            let mut hi = [_mm512_setzero_si512(); G];
            unroll!(G, |g| {
                let line = w.add(g * gs + b * lpb);
                if K == K8 {
                    lo[g] = _mm512_load_si512(line.add(v) as *const __m512i);
                    hi[g] = _mm512_load_si512(line.add(v + 4) as *const __m512i);
                } else {
                    let p = _mm512_load_si512(line.add(v) as *const __m512i);
                    lo[g] = _mm512_and_si512(p, low);
                    hi[g] = _mm512_and_si512(_mm512_srli_epi16::<4>(p), low);
                }
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
            let line = w.add(g * gs + b * lpb);
            if K == K8 {
                // d_w · (d_x · Σ(q+128)·a - 128 · s_x), s_x = d_x · Σ a.
                let dv = _mm512_load_ps(line.add(8) as *const f32);
                unroll!(T, |t| {
                    let xb = &*x.add(t * xs + b);
                    let p = _mm512_fmsub_ps(
                        _mm512_cvtepi32_ps(acci[g][t]),
                        _mm512_set1_ps(xb.d),
                        _mm512_set1_ps(128.0 * xb.s),
                    );
                    accf[g][t] = _mm512_fmadd_ps(p, dv, accf[g][t]);
                });
            } else {
                let (dv, mv) = if K == K4H {
                    let h = line.add(4) as *const __m256i;
                    (
                        _mm512_cvtph_ps(_mm256_load_si256(h)),
                        _mm512_cvtph_ps(_mm256_load_si256(h.add(1))),
                    )
                } else {
                    (
                        _mm512_load_ps(line.add(4) as *const f32),
                        _mm512_load_ps(line.add(5) as *const f32),
                    )
                };
                unroll!(T, |t| {
                    let xb = &*x.add(t * xs + b);
                    let p = _mm512_mul_ps(_mm512_cvtepi32_ps(acci[g][t]), dv);
                    accf[g][t] = _mm512_fmadd_ps(p, _mm512_set1_ps(xb.d), accf[g][t]);
                    accf[g][t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(xb.s), accf[g][t]);
                });
            }
        });
    }
    unroll!(G, |g| {
        unroll!(T, |t| {
            _mm512_mask_storeu_ps(out.add(t * os + g * GROUP), masks[g], accf[g][t]);
        });
    });
}

/// The AVX2 form of [`tile`] for one group of a 4-bit matrix (the group's two halves of
/// 8 rows in two registers) and `T` tokens: `Σ q·a` per 4 bytes by `vpmaddubsw` (u8 · i8
/// pairs, at most 2·15·127, so no saturation) then `vpmaddwd` by ones.
///
/// # Safety
/// AVX2, FMA and F16C; the pointers cover the ranges described at [`tile`]; a 4-bit kind.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<const T: usize, const K: u8>(
    w: *const Line,
    nb: usize,
    x: *const Q81,
    xs: usize,
    out: *mut f32,
    os: usize,
    mask: __mmask16,
) {
    debug_assert!(K != K8);
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let lpb = lines_of(K);
    let mut accf = [[_mm256_setzero_ps(); T]; 2];
    for b in 0..nb {
        let line = w.add(b * lpb);
        let mut acci = [[_mm256_setzero_si256(); T]; 2];
        unroll!(4, |v| {
            let base = line.add(v) as *const __m256i;
            let mut lo = [_mm256_setzero_si256(); 2];
            let mut hi = [_mm256_setzero_si256(); 2];
            unroll!(2, |h| {
                let p = _mm256_load_si256(base.add(h));
                lo[h] = _mm256_and_si256(p, low);
                hi[h] = _mm256_and_si256(_mm256_srli_epi16::<4>(p), low);
            });
            unroll!(T, |t| {
                let qs = (x.add(t * xs + b) as *const u8).add(8);
                let al = _mm256_set1_epi32((qs.add(4 * v) as *const i32).read_unaligned());
                let ah = _mm256_set1_epi32((qs.add(16 + 4 * v) as *const i32).read_unaligned());
                unroll!(2, |h| {
                    let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[h], al), ones);
                    let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[h], ah), ones);
                    acci[h][t] = _mm256_add_epi32(acci[h][t], _mm256_add_epi32(pl, ph));
                });
            });
        });
        unroll!(2, |h| {
            let (dv, mv) = if K == K4H {
                let s = line.add(4) as *const __m128i;
                (
                    _mm256_cvtph_ps(_mm_load_si128(s.add(h))),
                    _mm256_cvtph_ps(_mm_load_si128(s.add(2 + h))),
                )
            } else {
                (
                    _mm256_load_ps((line.add(4) as *const f32).add(8 * h)),
                    _mm256_load_ps((line.add(5) as *const f32).add(8 * h)),
                )
            };
            unroll!(T, |t| {
                let xb = &*x.add(t * xs + b);
                let p = _mm256_mul_ps(_mm256_cvtepi32_ps(acci[h][t]), dv);
                accf[h][t] = _mm256_fmadd_ps(p, _mm256_set1_ps(xb.d), accf[h][t]);
                accf[h][t] = _mm256_fmadd_ps(mv, _mm256_set1_ps(xb.s), accf[h][t]);
            });
        });
    }
    let mut buf = [0f32; 16];
    unroll!(T, |t| {
        _mm256_storeu_ps(buf.as_mut_ptr(), accf[0][t]);
        _mm256_storeu_ps(buf.as_mut_ptr().add(8), accf[1][t]);
        let o = out.add(t * os);
        for (r, v) in buf.iter().enumerate() {
            if mask & (1 << r) != 0 {
                *o.add(r) = *v;
            }
        }
    });
}

/// Quantizes `x` (whole blocks of 32) into `out` with this CPU's [`Level`] (the same
/// rounding as [`quantize`]: to nearest, ties to even).
///
/// # Safety
/// [`available`] holds.
pub(crate) unsafe fn quantize_any(x: &[f32], out: &mut [Q81]) {
    match level() {
        Some(Level::Avx512) => quantize(x, out),
        _ => quantize_avx2(x, out),
    }
}

#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_avx2(x: &[f32], out: &mut [Q81]) {
    let sign = _mm256_set1_ps(-0.0);
    for (o, v) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let p = v.as_ptr();
        let xs = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let mut m = _mm256_setzero_ps();
        for &x in &xs {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, x));
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let mut sum = 0i32;
        for (k, &x) in xs.iter().enumerate() {
            let q = _mm256_cvtps_epi32(_mm256_mul_ps(x, id));
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, q);
            for (j, l) in lanes.iter().enumerate() {
                o.qs[8 * k + j] = *l as i8;
                sum += l;
            }
        }
        o.d = d;
        o.s = d * sum as f32;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// Q8_0 against the scalar reference on the same quantized inputs, and its
    /// dequantization against candle's, for every tile width and a partial last group.
    #[test]
    fn q8_0_kernel_matches_scalar_reference() {
        if !(is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")) {
            eprintln!("SKIPPED: this CPU has no AVX-512 VNNI");
            return;
        }
        let dev = Device::Cpu;
        for (rows, cols) in [(37, 96), (70, 64)] {
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
            let bytes = q.data().unwrap().to_vec();
            let p = Packed::from_gguf_q8_0(&bytes, rows, cols).unwrap();
            let cand = q.dequantize(&dev).unwrap().flatten_all().unwrap();
            assert_eq!(p.dequantize(), cand.to_vec1::<f32>().unwrap());
            let nb = cols / QK;
            for m in [1, 3, 8, 11] {
                let x = Tensor::randn(0f32, 1.0, (m, cols), &dev).unwrap();
                let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let mut xq = vec![super::super::q41::Q81_ZERO; m * nb];
                // SAFETY: checked `available` above.
                unsafe { quantize(&xv, &mut xq) };
                let mut out = vec![f32::NAN; m * rows];
                p.matmul_at(Level::Avx512, &xq, m, &mut out);
                for i in 0..m {
                    for r in 0..rows {
                        let mut want = 0f32;
                        for b in 0..nb {
                            let blk = &bytes[(r * nb + b) * 34..(r * nb + b + 1) * 34];
                            let xb = &xq[i * nb + b];
                            let s: i32 = (0..QK)
                                .map(|j| blk[2 + j] as i8 as i32 * xb.qs[j] as i32)
                                .sum();
                            want += f16_at(blk, 0) * xb.d * s as f32;
                        }
                        let got = out[i * rows + r];
                        assert!(
                            (want - got).abs() <= 1e-4 * want.abs().max(1.0),
                            "[{rows}x{cols}] m {m}, token {i}, row {r}: {want} vs {got}"
                        );
                    }
                }
            }
        }
        assert!(Packed::from_gguf_q8_0(&[0; 33], 1, 32).is_none());
    }

    /// Q4_0 and Q4_K repacked into the Q4_1 form dequantize exactly as candle does, and
    /// multiply like the dequantized weights (8-bit activations: ~1%).
    #[test]
    fn q4_0_and_q4_k_repack_exactly() {
        if !available() {
            eprintln!(
                "SKIPPED: no int8 kernels here (no AVX2, or TRSR_NO_INT8 / TRSR_NO_VNNI set)"
            );
            return;
        }
        let dev = Device::Cpu;
        let (rows, cols) = (37, 512);
        let w = Tensor::randn(0f32, 1.0, (rows, cols), &dev).unwrap();
        for dt in [GgmlDType::Q4_0, GgmlDType::Q4K] {
            let q = QTensor::quantize(&w, dt).unwrap();
            let bytes = q.data().unwrap().to_vec();
            let p = match dt {
                GgmlDType::Q4_0 => Packed::from_gguf_q4_0(&bytes, rows, cols),
                _ => Packed::from_gguf_q4_k(&bytes, rows, cols),
            }
            .unwrap();
            let cand = q.dequantize(&dev).unwrap();
            let want = cand.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = p.dequantize();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                // Q4_K: d·sc and dmin·m are formed in f32 here, in candle per weight.
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{dt:?} weight {i}: {a} vs {b}"
                );
            }
            let x = Tensor::randn(0f32, 1.0, (3, cols), &dev).unwrap();
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut xq = vec![super::super::q41::Q81_ZERO; 3 * cols / QK];
            // SAFETY: the int8 kernels run here (checked above): AVX2 at least.
            unsafe { quantize_avx2(&xv, &mut xq) };
            let mut out = vec![0f32; 3 * rows];
            p.matmul_at(Level::Avx2, &xq, 3, &mut out);
            if is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni") {
                // The VNNI kernel gives the same sums (integer products, same f32 steps).
                let mut o2 = vec![0f32; 3 * rows];
                p.matmul_at(Level::Avx512, &xq, 3, &mut o2);
                for (a, b) in out.iter().zip(&o2) {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                        "{dt:?} vnni: {a} vs {b}"
                    );
                }
            }
            let exact = x.matmul(&cand.t().unwrap()).unwrap().flatten_all().unwrap();
            let exact = exact.to_vec1::<f32>().unwrap();
            let scale = exact.iter().fold(0f32, |a, b| a.max(b.abs()));
            for (a, b) in out.iter().zip(&exact) {
                assert!((a - b).abs() < 0.02 * scale, "{dt:?}: {a} vs {b}");
            }
        }
        assert!(Packed::from_gguf_q4_0(&[0; 17], 1, 32).is_none());
        assert!(Packed::from_gguf_q4_k(&[0; 144], 1, 128).is_none());
    }
}
