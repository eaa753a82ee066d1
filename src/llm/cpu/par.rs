//! Parallel loops of the engine's own kernels, on rayon's pool.
//!
//! candle's CPU kernels run on its "barrier pool", whose threads spin while they wait:
//! fast on an idle machine, but when the cores are shared (a build, a second model
//! instance, the window's own thread) a descheduled worker leaves the others spinning for
//! a whole time slice, and one-token decode fell from ~60 to ~6 tokens/s on 2 busy cores.
//! So the engine runs every heavy loop of its own here, on rayon (whose idle threads
//! sleep), and [`configure_process`] makes candle's pool single-threaded unless
//! `CANDLE_NUM_THREADS` says otherwise; the quantized matrices candle multiplies are split
//! into row chunks that run in parallel here too (see `weights.rs`).

use std::ops::Range;

use rayon::prelude::*;

/// Threads the kernels use.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

thread_local! {
    static LOW_LATENCY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's parallel loops on the engine's spinning pool (`pool.rs`):
/// for one-token decode, whose loops are tens of microseconds long. Batched work stays on
/// rayon, whose threads do not spin while candle's own (rayon) operations run between loops.
pub(crate) fn low_latency<R>(f: impl FnOnce() -> R) -> R {
    let before = LOW_LATENCY.with(|c| c.replace(true));
    let r = f();
    LOW_LATENCY.with(|c| c.set(before));
    r
}

/// Runs `f(0)`, ..., `f(parts - 1)` in parallel: inside [`low_latency`] on the engine's
/// pool (unless that is busy with another thread's loop, or this is a nested call), else on
/// rayon.
pub(crate) fn for_each_part(parts: usize, f: impl Fn(usize) + Sync + Send) {
    if parts <= 1 {
        (0..parts).for_each(f);
        return;
    }
    if LOW_LATENCY.with(|c| c.get()) && super::pool::enabled() {
        let pool = super::pool::Pool::global(threads());
        if pool.workers() > 0 && pool.run(parts, &f) {
            return;
        }
    }
    (0..parts).into_par_iter().for_each(f);
}

/// Runs `f` over chunks of `0..n` in parallel (a few chunks per thread, for balance).
pub(crate) fn for_each_chunk(n: usize, f: impl Fn(Range<usize>) + Sync + Send) {
    if n == 0 {
        return;
    }
    let t = threads();
    if t == 1 {
        f(0..n);
        return;
    }
    let chunk = n.div_ceil(t * 4).max(1);
    for_each_part(n.div_ceil(chunk), |c| f(c * chunk..n.min((c + 1) * chunk)));
}

/// Sets rayon's pool to `threads` threads before the first inference (all cores when
/// `None`; only the first call in a process takes effect). Sets no environment variable:
/// that is [`configure_process`]'s job, at process start.
pub fn init(threads: Option<usize>) {
    if let Some(n) = threads.filter(|n| *n > 0) {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
}

/// Makes candle's spinning pool single-threaded (`CANDLE_NUM_THREADS=1`, read by candle
/// when its pool starts) unless the user set it. candle takes the setting from the
/// environment only, so this writes the variable, and must run at process start before
/// any other thread exists (the binary's `main` calls it first thing; `cargo test` gets
/// the same setting from `.cargo/config.toml`). Library code never calls it.
pub fn configure_process() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY-like contract: called by `main` before any thread is spawned, so no
        // other thread can read the environment concurrently.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // CUDA loads a module's kernels when first launched rather than all at start-up: with
    // flash attention the binary holds hundreds of kernels as sm_80 code and PTX, and a
    // GPU without sm_80-compatible code (sm_90) would JIT-compile all of them first.
    if cfg!(feature = "cuda") && std::env::var_os("CUDA_MODULE_LOADING").is_none() {
        std::env::set_var("CUDA_MODULE_LOADING", "LAZY");
    }
}

/// A buffer that the parts of a parallel loop write disjoint pieces of. It replaces
/// passing the buffer's address around as a `usize`: the borrow keeps the buffer alive
/// and exclusive for the loop, and every piece is bounds-checked. Disjointness is the
/// caller's promise (hence `unsafe`).
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _buf: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: a `Disjoint` hands out only pieces its callers promise not to overlap, of a
// buffer it borrows exclusively; `T: Send` makes writing them from other threads sound.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}
unsafe impl<T: Send> Send for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub(crate) fn new(buf: &'a mut [T]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: std::marker::PhantomData,
        }
    }

    /// Elements `start..start + len`.
    ///
    /// # Safety
    /// No other piece in use at the same time overlaps it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn piece(&self, start: usize, len: usize) -> &mut [T] {
        assert!(
            start.checked_add(len).is_some_and(|e| e <= self.len),
            "piece {start}+{len} of a buffer of {}",
            self.len
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }

    /// A pointer to element `at` (`at <= len`), for kernels that take raw pointers (the
    /// caller keeps to its own elements, as for [`Disjoint::piece`]).
    pub(crate) fn ptr_at(&self, at: usize) -> *mut T {
        assert!(at <= self.len, "offset {at} of a buffer of {}", self.len);
        // SAFETY: within the buffer (or one past its end).
        unsafe { self.ptr.add(at) }
    }
}

/// One operand of [`gemm_f32`]: a matrix at `ptr` with row and column strides (elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub ptr: *const f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl Mat {
    /// A row-major matrix with `cols` columns (rows `cols` apart, columns adjacent).
    pub(crate) fn rows(ptr: *const f32, cols: usize) -> Self {
        Self {
            ptr,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub(crate) fn transposed(ptr: *const f32, cols: usize) -> Self {
        Self {
            ptr,
            row_stride: 1,
            col_stride: cols as isize,
        }
    }
}

/// `dst [m, n] (row stride dst_rs) = (accumulate ? dst : 0) + lhs [m, k] · rhs [k, n]`, on
/// the calling thread (the callers split the work across threads themselves): the
/// `gemm` crate's 19-argument call, with the arguments we never vary fixed.
///
/// # Safety
/// `lhs`, `rhs` and `dst` address `m x k`, `k x n` and `m x n` valid elements with their
/// strides, and no other thread writes `dst`'s elements meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        accumulate,
        lhs.ptr,
        lhs.col_stride,
        lhs.row_stride,
        rhs.ptr,
        rhs.col_stride,
        rhs.row_stride,
        if accumulate { 1f32 } else { 0f32 },
        1f32,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
