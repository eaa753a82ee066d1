//! Attention of batched work with AVX-512, computed the same way for a query row whatever
//! batch, padding or prompt chunk it arrives in.
//!
//! With 8-bit activations (`vnni.rs`) a last-bit difference in an attention output can
//! flip a rounding step of the next projection's input, and over 30 layers that grows to
//! about 0.01 in P(yes). A GEMM-based attention sums in an order that depends on the
//! key count and on where the cached prefix ends, so a candidate scored against a cached
//! prefix, in a padded batch, or from scratch got slightly different numbers. Here every
//! quantity of a query row at absolute position `pos` is a fixed sequence of operations
//! over keys `0..=pos` (masked keys contribute exact zeros):
//! - a score is one FMA chain over the head dimension (16 rows per register lane-wise,
//!   the queries transposed, so no horizontal sums);
//! - the row maximum, `exp(s - max)` and the running sum are lane-wise, in key order;
//! - the output is one FMA chain per element over the keys, in key order, divided by the
//!   sum at the end.

use std::arch::x86_64::*;

/// Query rows per block (register lanes).
pub(crate) const ROWS: usize = 16;

/// Whether the kernels run here: on with the int8 kernels (`int8.rs`), whose rounding
/// makes the order of sums matter, at either level — the 16-lane AVX-512 form or the
/// 8-lane AVX2 form, chosen by [`block`]. `exp` and `silu_mul` need AVX-512F: callers
/// check [`super::avx512`] for them, not this.
pub(crate) fn available() -> bool {
    super::available()
}

/// The keys and values a block attends to: a cached prefix of `p` rows followed by the
/// block's own sequence (rows `hd` floats each, contiguous).
pub(crate) struct Keys<'a> {
    pub(crate) prefix_k: &'a [f32],
    pub(crate) prefix_v: &'a [f32],
    pub(crate) p: usize,
    pub(crate) own_k: &'a [f32],
    pub(crate) own_v: &'a [f32],
}

impl Keys<'_> {
    fn k(&self, j: usize, hd: usize) -> *const f32 {
        if j < self.p {
            self.prefix_k[j * hd..(j + 1) * hd].as_ptr()
        } else {
            self.own_k[(j - self.p) * hd..(j - self.p + 1) * hd].as_ptr()
        }
    }

    fn v(&self, j: usize, hd: usize) -> *const f32 {
        if j < self.p {
            self.prefix_v[j * hd..(j + 1) * hd].as_ptr()
        } else {
            self.own_v[(j - self.p) * hd..(j - self.p + 1) * hd].as_ptr()
        }
    }
}

/// Whether [`block`] handles head dimension `hd`.
pub(crate) fn supports(hd: usize) -> bool {
    matches!(hd, 32 | 64 | 96 | 128)
}

/// Attention of up to [`ROWS`] query rows `q` (`pos.len()` rows of `hd`, pre-scaled)
/// over keys `0..=pos[r]` each, into `out` (same shape). `scratch` is reused between
/// calls. Runs the AVX-512 kernel, or the AVX2 one on 8 rows at a time; a row's result
/// does not depend on the rows beside it.
///
/// # Safety
/// [`available`]; `keys` holds every key up to the largest position; `supports(hd)`.
pub(crate) unsafe fn block(
    q: &[f32],
    pos: &[usize],
    hd: usize,
    keys: &Keys,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    if super::avx512() {
        return block16(q, pos, hd, keys, scratch, out);
    }
    for (i, p) in pos.chunks(8).enumerate() {
        let rows = i * 8 * hd..(i * 8 + p.len()) * hd;
        block8(&q[rows.clone()], p, hd, keys, scratch, &mut out[rows]);
    }
}

/// Lays out `scratch` for a block of `L` lanes (`L` query rows): the queries transposed
/// (`qt[d * L + lane]`, unused lanes zero), then room for `nk * L` scores and the lanes'
/// inverse sums. Returns `nk` (keys up to the largest position) and each lane's position;
/// unused lanes take the largest, so they see every key (scores 0) and their sums stay
/// finite.
fn prepare<const L: usize>(
    q: &[f32],
    pos: &[usize],
    hd: usize,
    scratch: &mut Vec<f32>,
) -> (usize, [i32; L]) {
    let r = pos.len();
    debug_assert!(r > 0 && r <= L && q.len() >= r * hd);
    let last = pos.iter().copied().max().unwrap_or(0);
    let nk = last + 1;
    scratch.clear();
    scratch.resize(hd * L + nk * L + 2 * L, 0.0);
    for (lane, row) in q.chunks_exact(hd).take(r).enumerate() {
        for (d, &v) in row.iter().enumerate() {
            scratch[d * L + lane] = v;
        }
    }
    let mut pos_lanes = [last as i32; L];
    for (l, &p) in pos_lanes.iter_mut().zip(pos) {
        *l = p as i32;
    }
    (nk, pos_lanes)
}

/// [`block`] with AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn block16(
    q: &[f32],
    pos: &[usize],
    hd: usize,
    keys: &Keys,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    debug_assert!(out.len() >= pos.len() * hd);
    let (nk, pos_lanes) = prepare::<ROWS>(q, pos, hd, scratch);
    let (qt, rest) = scratch.split_at_mut(hd * ROWS);
    let (s, lanes) = rest.split_at_mut(nk * ROWS);
    let posv = _mm512_loadu_si512(pos_lanes.as_ptr() as *const __m512i);
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let qt = qt.as_ptr();
    let sp = s.as_mut_ptr();
    // Scores, eight keys at a time (independent FMA chains).
    let mut j = 0;
    while j < nk {
        let n = (nk - j).min(8);
        let mut kp = [std::ptr::null::<f32>(); 8];
        for (u, k) in kp.iter_mut().enumerate().take(n) {
            *k = keys.k(j + u, hd);
        }
        let mut acc = [_mm512_setzero_ps(); 8];
        for d in 0..hd {
            let qd = _mm512_loadu_ps(qt.add(d * ROWS));
            unroll!(8, |u| {
                if u < n {
                    acc[u] = _mm512_fmadd_ps(qd, _mm512_set1_ps(*kp[u].add(d)), acc[u]);
                }
            });
        }
        for (u, a) in acc.iter().enumerate().take(n) {
            let later = _mm512_cmplt_epi32_mask(posv, _mm512_set1_epi32((j + u) as i32));
            _mm512_storeu_ps(
                sp.add((j + u) * ROWS),
                _mm512_mask_mov_ps(*a, later, neg_inf),
            );
        }
        j += n;
    }
    // Softmax numerators, lane-wise in key order.
    let mut mx = neg_inf;
    for j in 0..nk {
        mx = _mm512_max_ps(mx, _mm512_loadu_ps(sp.add(j * ROWS)));
    }
    let mut sum = _mm512_setzero_ps();
    for j in 0..nk {
        let e = exp(_mm512_sub_ps(_mm512_loadu_ps(sp.add(j * ROWS)), mx));
        _mm512_storeu_ps(sp.add(j * ROWS), e);
        sum = _mm512_add_ps(sum, e);
    }
    _mm512_storeu_ps(lanes.as_mut_ptr(), _mm512_div_ps(_mm512_set1_ps(1.0), sum));
    let inv = &lanes[..ROWS];
    let s = &s[..];
    match hd {
        32 => values::<2, 8>(s, pos, keys, inv, out),
        64 => values::<4, 4>(s, pos, keys, inv, out),
        96 => values::<6, 2>(s, pos, keys, inv, out),
        _ => values::<8, 2>(s, pos, keys, inv, out),
    }
}

/// `out[r] = inv[r] · Σ_j s[j][r] · v[j]` for rows in blocks of `RB`, head dimension
/// `16 * HV`, keys `0..=pos[r]` in order.
#[target_feature(enable = "avx512f")]
unsafe fn values<const HV: usize, const RB: usize>(
    s: &[f32],
    pos: &[usize],
    keys: &Keys,
    inv: &[f32],
    out: &mut [f32],
) {
    let hd = HV * 16;
    let mut r0 = 0;
    while r0 < pos.len() {
        let rb = (pos.len() - r0).min(RB);
        let nk = pos[r0..r0 + rb].iter().copied().max().unwrap_or(0) + 1;
        let mut acc = [[_mm512_setzero_ps(); HV]; RB];
        for j in 0..nk {
            let vp = keys.v(j, hd);
            let mut v = [_mm512_setzero_ps(); HV];
            unroll!(HV, |h| {
                v[h] = _mm512_loadu_ps(vp.add(16 * h));
            });
            let w = s.as_ptr().add(j * ROWS + r0);
            unroll!(RB, |rr| {
                if rr < rb {
                    let wr = _mm512_set1_ps(*w.add(rr));
                    unroll!(HV, |h| {
                        acc[rr][h] = _mm512_fmadd_ps(wr, v[h], acc[rr][h]);
                    });
                }
            });
        }
        unroll!(RB, |rr| {
            if rr < rb {
                let k = _mm512_set1_ps(inv[r0 + rr]);
                let o = out.as_mut_ptr().add((r0 + rr) * hd);
                unroll!(HV, |h| {
                    _mm512_storeu_ps(o.add(16 * h), _mm512_mul_ps(acc[rr][h], k));
                });
            }
        });
        r0 += rb;
    }
}

/// [`block`] for up to 8 rows with AVX2 and FMA: the same operations, 8 lanes wide.
#[target_feature(enable = "avx2,fma")]
unsafe fn block8(
    q: &[f32],
    pos: &[usize],
    hd: usize,
    keys: &Keys,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    const L: usize = 8;
    let r = pos.len();
    debug_assert!(out.len() >= r * hd);
    let (nk, pos_lanes) = prepare::<L>(q, pos, hd, scratch);
    let (qt, rest) = scratch.split_at_mut(hd * L);
    let (s, lanes) = rest.split_at_mut(nk * L);
    let posv = _mm256_loadu_si256(pos_lanes.as_ptr() as *const __m256i);
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    let qt = qt.as_ptr();
    let sp = s.as_mut_ptr();
    let mut j = 0;
    while j < nk {
        let n = (nk - j).min(8);
        let mut kp = [std::ptr::null::<f32>(); 8];
        for (u, k) in kp.iter_mut().enumerate().take(n) {
            *k = keys.k(j + u, hd);
        }
        let mut acc = [_mm256_setzero_ps(); 8];
        for d in 0..hd {
            let qd = _mm256_loadu_ps(qt.add(d * L));
            unroll!(8, |u| {
                if u < n {
                    acc[u] = _mm256_fmadd_ps(qd, _mm256_set1_ps(*kp[u].add(d)), acc[u]);
                }
            });
        }
        for (u, a) in acc.iter().enumerate().take(n) {
            let later =
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((j + u) as i32), posv));
            _mm256_storeu_ps(sp.add((j + u) * L), _mm256_blendv_ps(*a, neg_inf, later));
        }
        j += n;
    }
    let mut mx = neg_inf;
    for j in 0..nk {
        mx = _mm256_max_ps(mx, _mm256_loadu_ps(sp.add(j * L)));
    }
    let mut sum = _mm256_setzero_ps();
    for j in 0..nk {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sp.add(j * L)), mx));
        _mm256_storeu_ps(sp.add(j * L), e);
        sum = _mm256_add_ps(sum, e);
    }
    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_div_ps(_mm256_set1_ps(1.0), sum));
    // out[r] = inv[r] · Σ_j s[j][r] · v[j]: four rows and 16 columns at a time, each
    // element one FMA chain over the keys in order.
    let inv = &lanes[..L];
    let mut r0 = 0;
    while r0 < r {
        let rb = (r - r0).min(4);
        let nk = pos[r0..r0 + rb].iter().copied().max().unwrap_or(0) + 1;
        for c0 in (0..hd).step_by(16) {
            values8(s, r0, rb, nk, keys, hd, c0, inv, out);
        }
        r0 += rb;
    }
}

/// Rows `r0..r0 + rb` (rb <= 4), columns `c0..c0 + 16` of [`block8`]'s output over keys
/// `0..nk` (weights past a row's position are zero).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn values8(
    s: &[f32],
    r0: usize,
    rb: usize,
    nk: usize,
    keys: &Keys,
    hd: usize,
    c0: usize,
    inv: &[f32],
    out: &mut [f32],
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    for j in 0..nk {
        let v = keys.v(j, hd).add(c0);
        let v0 = _mm256_loadu_ps(v);
        let v1 = _mm256_loadu_ps(v.add(8));
        let w = s.as_ptr().add(j * 8 + r0);
        unroll!(4, |rr| {
            if rr < rb {
                let wr = _mm256_set1_ps(*w.add(rr));
                acc[rr][0] = _mm256_fmadd_ps(wr, v0, acc[rr][0]);
                acc[rr][1] = _mm256_fmadd_ps(wr, v1, acc[rr][1]);
            }
        });
    }
    unroll!(4, |rr| {
        if rr < rb {
            let k = _mm256_set1_ps(inv[r0 + rr]);
            let o = out.as_mut_ptr().add((r0 + rr) * hd + c0);
            _mm256_storeu_ps(o, _mm256_mul_ps(acc[rr][0], k));
            _mm256_storeu_ps(o.add(8), _mm256_mul_ps(acc[rr][1], k));
        }
    });
}

/// [`exp`] with AVX2: the same polynomial, `2^n` built in the exponent bits.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp8(x: __m256) -> __m256 {
    let live = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.0));
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // n is in -126..=127 here: 2^n is a normal float.
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), live)
}

/// `e^x` lane-wise (relative error ~2e-7); 0 below -87 (and for -inf).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp(x: __m512) -> __m512 {
    let live = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.0));
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.0),
    );
    // x = n ln2 + r, |r| <= ln2 / 2.
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    // e^r by its Taylor polynomial to degree 6 (Horner).
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n))
}

/// `out[i] = silu(g[i]) · u[i] = g[i] / (1 + e^-g[i]) · u[i]` (the gated MLP's product).
///
/// # Safety
/// AVX-512F ([`super::avx512`]; [`available`] alone is not enough: it also holds on
/// AVX2-only CPUs).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    let n = g.len().min(u.len()).min(out.len());
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i < n {
        let mask: __mmask16 = if n - i >= 16 {
            0xFFFF
        } else {
            ((1u32 << (n - i)) - 1) as __mmask16
        };
        let a = _mm512_maskz_loadu_ps(mask, g.as_ptr().add(i));
        let b = _mm512_maskz_loadu_ps(mask, u.as_ptr().add(i));
        // e^-a overflows to +inf for a < -88: then a / inf = -0, as the scalar form gives.
        let e = exp_unbounded(_mm512_sub_ps(_mm512_setzero_ps(), a));
        let s = _mm512_div_ps(a, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), mask, _mm512_mul_ps(s, b));
        i += 16;
    }
}

/// `e^x` lane-wise like [`exp`], but +inf above 88 (for the sigmoid's denominator).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn exp_unbounded(x: __m512) -> __m512 {
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(88.0));
    _mm512_mask_mov_ps(exp(x), big, _mm512_set1_ps(f32::INFINITY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(q: &[f32], pos: usize, hd: usize, k: &[f32], v: &[f32]) -> Vec<f32> {
        let s: Vec<f64> = (0..=pos)
            .map(|j| (0..hd).map(|d| (q[d] * k[j * hd + d]) as f64).sum())
            .collect();
        let mx = s.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
        let sum: f64 = e.iter().sum();
        (0..hd)
            .map(|d| (0..=pos).map(|j| e[j] * v[j * hd + d] as f64).sum::<f64>() / sum)
            .map(|x| x as f32)
            .collect()
    }

    fn rand(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn exp8_matches_std() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("SKIPPED exp8_matches_std: this CPU has no AVX2 + FMA");
            return;
        }
        let xs: Vec<f32> = (-2000..=880).map(|i| i as f32 * 0.1).collect();
        for c in xs.chunks(8) {
            let mut buf = [0f32; 8];
            buf[..c.len()].copy_from_slice(c);
            let mut got = [0f32; 8];
            // SAFETY: checked the CPU above.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), exp8(_mm256_loadu_ps(buf.as_ptr()))) };
            for (x, g) in buf.iter().zip(got) {
                let want = x.exp();
                if *x < -87.0 {
                    assert_eq!(g, 0.0);
                } else {
                    assert!(
                        (g - want).abs() <= 1e-6 * want,
                        "exp({x}) = {g}, want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn exp_matches_std() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("SKIPPED exp_matches_std: this CPU has no AVX-512F");
            return;
        }
        let xs: Vec<f32> = (-2000..=880).map(|i| i as f32 * 0.1).collect();
        for c in xs.chunks(16) {
            let mut buf = [0f32; 16];
            buf[..c.len()].copy_from_slice(c);
            let mut got = [0f32; 16];
            // SAFETY: checked `available`.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp(_mm512_loadu_ps(buf.as_ptr()))) };
            for (x, g) in buf.iter().zip(got) {
                let want = x.exp();
                if *x < -87.0 {
                    assert_eq!(g, 0.0);
                } else {
                    assert!(
                        (g - want).abs() <= 1e-6 * want,
                        "exp({x}) = {g}, want {want}"
                    );
                }
            }
        }
        let mut got = [1f32; 16];
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp(_mm512_set1_ps(f32::NEG_INFINITY))) };
        assert_eq!(got, [0.0; 16]);
    }

    #[test]
    fn silu_mul_matches_scalar() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("SKIPPED silu_mul_matches_scalar: this CPU has no AVX-512F");
            return;
        }
        let g: Vec<f32> = (-1000..1000).map(|i| i as f32 * 0.1).collect();
        let u: Vec<f32> = (0..2000)
            .map(|i| ((i * 37) % 17) as f32 * 0.25 - 2.0)
            .collect();
        for n in [1, 15, 16, 17, 2000] {
            let mut out = vec![f32::NAN; n];
            // SAFETY: checked `available`.
            unsafe { silu_mul(&g[..n], &u[..n], &mut out) };
            for i in 0..n {
                let want = g[i] / (1.0 + (-g[i]).exp()) * u[i];
                assert!(
                    (out[i] - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "n {n}, {i}: silu({}) * {} = {} vs {want}",
                    g[i],
                    u[i],
                    out[i]
                );
            }
        }
    }

    type BlockFn = unsafe fn(&[f32], &[usize], usize, &Keys, &mut Vec<f32>, &mut [f32]);

    /// The kernels this CPU can run: the AVX-512 one (16 rows) and the AVX2 one (8).
    fn kernels() -> Vec<(BlockFn, usize)> {
        let mut k: Vec<(BlockFn, usize)> = Vec::new();
        if is_x86_feature_detected!("avx512f") {
            k.push((block16, 16));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            k.push((block8, 8));
        }
        k
    }

    /// Against an f64 reference, and bit-identical whatever the split between cached prefix
    /// and own keys, the rows sharing the block and the keys past a row's position; for
    /// each kernel this CPU runs.
    #[test]
    fn matches_reference_and_is_independent_of_split_and_block() {
        for (f, lanes) in kernels() {
            check_kernel(f, lanes);
        }
    }

    fn check_kernel(kernel: BlockFn, lanes: usize) {
        let mut seed = 7u64;
        for hd in [32, 64, 96, 128] {
            let n = 53;
            let k = rand(n * hd, &mut seed);
            let v = rand(n * hd, &mut seed);
            let q: Vec<f32> = rand(lanes * hd, &mut seed)
                .iter()
                .map(|x| x * 0.5)
                .collect();
            let pos: Vec<usize> = (0..lanes).map(|i| 30 + i).collect();
            let run = |p: usize, rows: std::ops::Range<usize>| {
                let keys = Keys {
                    prefix_k: &k[..p * hd],
                    prefix_v: &v[..p * hd],
                    p,
                    own_k: &k[p * hd..],
                    own_v: &v[p * hd..],
                };
                let mut out = vec![0f32; rows.len() * hd];
                let mut scratch = Vec::new();
                // SAFETY: `kernels` checked the CPU; keys cover every position.
                unsafe {
                    kernel(
                        &q[rows.start * hd..rows.end * hd],
                        &pos[rows.clone()],
                        hd,
                        &keys,
                        &mut scratch,
                        &mut out,
                    )
                };
                out
            };
            let all = run(0, 0..lanes);
            for (i, row) in all.chunks(hd).enumerate() {
                let want = reference(&q[i * hd..(i + 1) * hd], pos[i], hd, &k, &v);
                for (a, b) in row.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{lanes} lanes, hd {hd} row {i}: {a} vs {b}"
                    );
                }
            }
            for p in [1, 17, 30, 45] {
                assert_eq!(run(p, 0..lanes), all, "hd {hd}, prefix {p}");
            }
            // A row alone, or with different neighbours, gives the same bits.
            assert_eq!(run(0, 5..6), all[5 * hd..6 * hd].to_vec(), "hd {hd}");
            assert_eq!(run(21, 3..7), all[3 * hd..7 * hd].to_vec(), "hd {hd}");
        }
    }
}
