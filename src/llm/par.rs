//! Parallel loops of the engine's own kernels, on rayon's pool.
//!
//! candle's CPU kernels run on its "barrier pool", whose threads spin while they wait:
//! fast on an idle machine, but when the cores are shared (a build, a second model
//! instance, the window's own thread) a descheduled worker leaves the others spinning for
//! a whole time slice, and one-token decode fell from ~60 to ~6 tokens/s on 2 busy cores.
//! So the engine runs every heavy loop of its own here, on rayon (whose idle threads
//! sleep), and [`init`] makes candle's pool single-threaded unless `CANDLE_NUM_THREADS`
//! says otherwise; the quantized matrices candle multiplies are split into row chunks that
//! run in parallel here too (see `model.rs`).

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

/// Sets the thread counts before the first inference: rayon's pool to `threads` (all
/// cores when `None`), candle's spinning pool to one thread unless `CANDLE_NUM_THREADS`
/// is set.
pub fn init(threads: Option<usize>) {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if let Some(n) = threads.filter(|n| *n > 0) {
        // candle reads RAYON_NUM_THREADS for its GEMM and its thread report.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
}
