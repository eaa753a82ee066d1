//! A small fork-join pool for the engine's kernels: workers spin briefly, then sleep.
//!
//! One-token decode runs ~125 parallel loops per token, each only tens of microseconds
//! long. On rayon, whose idle workers go to sleep almost at once, every loop paid for
//! waking a thread (futex calls and a context switch: ~30% of decode's CPU time in the
//! kernel's scheduler). Here a worker that finishes a loop spins for a short while
//! ([`SPIN`]) watching for the next one, and only then sleeps; the next loop of the same
//! token finds it awake.
//!
//! The caller takes part too, and the parts of a loop are claimed one by one with a
//! compare-and-swap on a word holding (loop number, next part): a worker that is slow to
//! wake, or descheduled on a busy machine, simply claims nothing, and the caller runs the
//! parts itself rather than waiting for it (the failure mode of a spinning barrier
//! pool). The caller waits only for parts a worker has claimed and not finished.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker watches for the next loop before sleeping.
const SPIN: Duration = Duration::from_micros(200);
/// After this long, the spinning worker yields its core between looks.
const YIELD_AFTER: Duration = Duration::from_micros(20);

/// Whether decode uses this pool (`TRSR_KERNEL_POOL=rayon` uses rayon instead).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TRSR_KERNEL_POOL").map_or(true, |v| v != "rayon"))
}

type Part<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// (loop number << 32) | next unclaimed part.
    state: AtomicU64,
    /// The current loop's closure (a `*const Part`) and its part count, valid while the
    /// loop number in `state` is current and a claimed part is unfinished.
    job: AtomicUsize,
    parts: AtomicUsize,
    done: AtomicUsize,
    /// A worker's part panicked (the caller panics too, after the loop ends).
    panicked: std::sync::atomic::AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

pub(crate) struct Pool {
    shared: &'static Shared,
    workers: usize,
    /// One loop at a time; other callers (another engine's thread) fall back.
    busy: Mutex<()>,
}

thread_local! {
    static IN_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Pool {
    /// The process-wide pool with `threads - 1` workers (none for one thread).
    pub(crate) fn global(threads: usize) -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool::new(threads.saturating_sub(1)))
    }

    fn new(workers: usize) -> Pool {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            state: AtomicU64::new(0),
            job: AtomicUsize::new(0),
            parts: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: std::sync::atomic::AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }));
        for i in 0..workers {
            let _ = std::thread::Builder::new()
                .name(format!("trsr-kernel-{i}"))
                .spawn(move || worker(shared));
        }
        Pool {
            shared,
            workers,
            busy: Mutex::new(()),
        }
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `f(0) .. f(parts - 1)` on the caller and the workers; `false` (nothing run)
    /// when the pool is in use by another thread or this is a nested call.
    pub(crate) fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        if parts == 0 {
            return true;
        }
        if IN_POOL.with(|c| c.get()) {
            return false;
        }
        let Ok(_guard) = self.busy.try_lock() else {
            return false;
        };
        let s = self.shared;
        let part: Part = f;
        let part_ptr: *const Part = &part;
        s.job.store(part_ptr as usize, Ordering::Relaxed);
        s.parts.store(parts, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        let epoch = (s.state.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xFFFF_FFFF;
        s.state.store(epoch << 32, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        IN_POOL.with(|c| c.set(true));
        let mine = std::cell::Cell::new(0);
        let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            claim_and_run(s, epoch, parts, &part, &mine)
        }));
        IN_POOL.with(|c| c.set(false));
        if own.is_err() {
            // Take the rest so no worker starts one, then wait for theirs below.
            while claim(s, epoch, parts).is_some() {
                mine.set(mine.get() + 1);
            }
        }
        // Wait for the parts workers claimed (the closure must outlive them).
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) + mine.get() < parts {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(e) = own {
            std::panic::resume_unwind(e);
        }
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a kernel thread panicked");
        }
        true
    }
}

/// Claims the next part of loop `epoch`, if one is left.
fn claim(s: &Shared, epoch: u64, parts: usize) -> Option<usize> {
    loop {
        let cur = s.state.load(Ordering::Acquire);
        if cur >> 32 != epoch || (cur & 0xFFFF_FFFF) as usize >= parts {
            return None;
        }
        if s.state
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Some((cur & 0xFFFF_FFFF) as usize);
        }
    }
}

/// The caller's share: claims and runs parts until none is left, counting them in `ran`
/// (the caller's parts are not counted in `done`, the workers' are).
fn claim_and_run(s: &Shared, epoch: u64, parts: usize, f: Part, ran: &std::cell::Cell<usize>) {
    while let Some(i) = claim(s, epoch, parts) {
        ran.set(ran.get() + 1);
        f(i);
    }
}

fn worker(s: &'static Shared) {
    IN_POOL.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        // Wait for a new loop: spin, then sleep.
        let t0 = Instant::now();
        let mut n = 0u32;
        let epoch = loop {
            let e = s.state.load(Ordering::Acquire) >> 32;
            if e != seen {
                break e;
            }
            n += 1;
            if !n.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let waited = t0.elapsed();
            if waited > SPIN {
                let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.state.load(Ordering::SeqCst) >> 32 == seen {
                    l = s.wake.wait(l).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(l);
            } else if waited > YIELD_AFTER {
                // Let another process have the core if it wants it.
                std::thread::yield_now();
            }
        };
        seen = epoch;
        // Claim parts of this loop; the job pointer is read only after a successful claim,
        // when the caller cannot have moved on (it waits for claimed parts).
        loop {
            let parts = s.parts.load(Ordering::Acquire);
            let Some(i) = claim(s, epoch, parts) else {
                break;
            };
            // SAFETY: the claim succeeded for the current loop, so `job` points at the
            // caller's closure, which lives until `done` counts this part.
            let f: Part = unsafe { *(s.job.load(Ordering::Acquire) as *const Part) };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_err() {
                s.panicked.store(true, Ordering::Release);
            }
            s.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_over_many_loops() {
        let pool = Pool::new(3);
        for n in [1usize, 2, 3, 7, 64] {
            for _ in 0..500 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                assert!(pool.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                }));
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
        // Workers that went to sleep wake for the next loop.
        std::thread::sleep(Duration::from_millis(5));
        let total = AtomicUsize::new(0);
        assert!(pool.run(16, &|i| {
            total.fetch_add(i, Ordering::Relaxed);
        }));
        assert_eq!(total.load(Ordering::Relaxed), 120);
    }

    #[test]
    fn nested_and_concurrent_calls_are_refused_not_deadlocked() {
        let pool = Pool::new(1);
        let nested = AtomicUsize::new(0);
        assert!(pool.run(2, &|_| {
            if !pool.run(2, &|_| {}) {
                nested.fetch_add(1, Ordering::Relaxed);
            }
        }));
        assert_eq!(nested.load(Ordering::Relaxed), 2);
    }
}
