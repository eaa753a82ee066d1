//! libFuzzer's entry points (the runtime is linked by build.rs): runs each input through
//! the target TRSR_FUZZ_TARGET names (see `trsr_fuzz::TARGETS`). A rejected input is
//! fine; a panic aborts the process, which libFuzzer records as a crash with the input.

#![no_main]

use std::sync::OnceLock;

fn target() -> &'static str {
    static TARGET: OnceLock<String> = OnceLock::new();
    TARGET.get_or_init(|| match std::env::var("TRSR_FUZZ_TARGET") {
        Ok(t) if trsr_fuzz::TARGETS.contains(&t.as_str()) => t,
        _ => {
            eprintln!(
                "set TRSR_FUZZ_TARGET to one of: {}",
                trsr_fuzz::TARGETS.join(", ")
            );
            std::process::exit(2);
        }
    })
}

/// Called once by libFuzzer before the first input.
#[no_mangle]
pub extern "C" fn LLVMFuzzerInitialize(
    _argc: *const isize,
    _argv: *const *const *const u8,
) -> isize {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
    target();
    0
}

/// Called by libFuzzer for each input.
///
/// # Safety
/// libFuzzer passes `size` readable bytes at `data` (or a null pointer with size 0).
#[no_mangle]
pub unsafe extern "C" fn LLVMFuzzerTestOneInput(data: *const u8, size: usize) -> i32 {
    let bytes = if size == 0 || data.is_null() {
        &[][..]
    } else {
        // SAFETY: libFuzzer guarantees `size` readable bytes at `data` for this call.
        unsafe { std::slice::from_raw_parts(data, size) }
    };
    let _ = trsr_fuzz::run(target(), bytes);
    0
}
