//! The engine's CPU kernels, and the one place that decides which of them run.
//!
//! [`level`] detects the CPU once (and honours the environment switches); every kernel
//! module asks it rather than testing instruction sets itself. Each SIMD kernel has a
//! scalar or candle reference that tests compare it with bit for bit or within a stated
//! bound.
//!
//! - `int8.rs`: quantized weights × 8-bit activations, repacked at load (AVX-512 VNNI, or
//!   the AVX2 form of the same kernels for 4-bit types).
//! - `q41.rs`: Q4_1 matrices kept in GGUF's layout (AVX2 with f32 activations where the
//!   int8 kernels are off), and the activation blocks (`Q81`) and block helpers every
//!   type uses.
//! - `attn.rs`: the batch-invariant attention kernel and the vectorized `exp` / `silu · up`.
//! - `ops.rs`: the f32 operations of the forward pass on the engine's threads (GEMM,
//!   attention glue, decode attention, gated MLP product).
//! - `par.rs` / `pool.rs`: the parallel loops and the spinning pool decode uses.
//!
//! [`kernels_on`] is the one test of whether these kernels serve a tensor: on the CPU,
//! unless the model runs the generic path ([`with_generic`]), the candle operations a GPU
//! runs. Forcing that path on the CPU (`TRSR_GENERIC_KERNELS=1`, or
//! `LoadOptions::generic_kernels`) lets the tests here run the exact code of the CUDA
//! build and compare it with the CPU kernels.

#[cfg(target_arch = "x86_64")]
pub(crate) mod attn;
#[cfg(target_arch = "x86_64")]
pub(crate) mod int8;
pub(crate) mod ops;
pub mod par;
pub(crate) mod pool;
pub(crate) mod q41;

use std::cell::Cell;

thread_local! {
    /// Set while a generic-path model loads or runs on this thread (see [`with_generic`]).
    static GENERIC: Cell<bool> = const { Cell::new(false) };
}

/// Whether the engine's CPU kernels (and the CPU-only weight layouts) serve tensors on
/// `device`: the CPU, outside a [`with_generic`] scope.
pub(crate) fn kernels_on(device: &candle_core::Device) -> bool {
    device.is_cpu() && !GENERIC.with(Cell::get)
}

/// Runs `f` with the generic path forced (`generic`) or not on this thread; the model
/// wraps its loading and every forward pass in this, so nested calls see its choice.
pub(crate) fn with_generic<R>(generic: bool, f: impl FnOnce() -> R) -> R {
    let before = GENERIC.with(|c| c.replace(generic));
    let r = f();
    GENERIC.with(|c| c.set(before));
    r
}

/// Whether the generic path is forced on this thread now.
pub(crate) fn generic_now() -> bool {
    GENERIC.with(Cell::get)
}

/// `TRSR_GENERIC_KERNELS=1`: load every model on the generic (GPU) path, on the CPU too.
pub fn generic_forced_by_env() -> bool {
    switch_on("TRSR_GENERIC_KERNELS")
}

/// Which int8 kernels this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// AVX2 + FMA + F16C: 4-bit types only, two instructions (`vpmaddubsw`, `vpmaddwd`)
    /// where VNNI has one; Q8_0 stays on candle's kernels. The attention kernel runs its
    /// 8-lane form.
    Avx2,
    /// AVX-512 F/BW/VNNI: every packed type; 16-lane attention, vectorized `silu · up`.
    Avx512,
}

/// Whether a switch variable is set to something other than empty or `0`.
fn switch_on(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The int8 kernels' level here: AVX-512 VNNI, else AVX2, else none (x86-64 only).
/// `TRSR_NO_INT8=1` (or its older name `TRSR_NO_VNNI=1`) turns the int8 kernels off at
/// both levels, and the batch-invariant attention with them; `TRSR_SIMD=avx2` keeps to
/// the AVX2 level.
pub(crate) fn level() -> Option<Level> {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Option<Level>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if switch_on("TRSR_NO_INT8") || switch_on("TRSR_NO_VNNI") {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = has_avx2_fma() && is_x86_feature_detected!("f16c");
            let avx512 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni");
            let only_avx2 = std::env::var("TRSR_SIMD").is_ok_and(|v| v == "avx2");
            match (avx512 && !only_avx2, avx2) {
                (true, _) => Some(Level::Avx512),
                (false, true) => Some(Level::Avx2),
                _ => None,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    })
}

/// Whether the int8 kernels (and the attention kernel) run here, at either [`Level`].
pub(crate) fn available() -> bool {
    level().is_some()
}

/// Whether Q8_0 matrices are packed here (the AVX-512 level only).
pub(crate) fn packs_q8_0() -> bool {
    level() == Some(Level::Avx512)
}

/// Whether the AVX-512 forms run (16-lane attention, vectorized `silu · up`).
pub(crate) fn avx512() -> bool {
    level() == Some(Level::Avx512)
}

/// AVX2 with FMA: Q4_1's f32-activation kernel, independent of the int8 switches (it is
/// the fallback when they are off).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// The numerics tag of this CPU's kernels (see `LanguageModel::numerics`).
pub(crate) fn numerics_tag() -> Option<&'static str> {
    match level() {
        Some(Level::Avx512) => Some("int8-vnni"),
        Some(Level::Avx2) => Some("int8-avx2"),
        None => None,
    }
}
