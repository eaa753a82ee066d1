#!/bin/sh
# RUSTC_WRAPPER for the fuzz build (scripts/fuzz.sh): adds libFuzzer's coverage
# instrumentation (stable rustc codegen options) to the crates under test only: trsr,
# this harness, and minijinja. Every other dependency is reused as the root build left
# it, which is what makes this build take minutes instead of an hour on a small machine.
# Those three get artifacts of their own (see the profile notes in Cargo.toml), so the
# root's normal build is never linked against instrumented code.
rustc="$1"
shift
# Build scripts run at build time, without libFuzzer: never instrumented.
case " $* " in
*" --crate-name build_script_"*) exec "$rustc" "$@" ;;
esac
case "$CARGO_PKG_NAME" in
trsr | trsr-fuzz | minijinja | minijinja-contrib)
    exec "$rustc" "$@" \
        -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares
    ;;
*)
    exec "$rustc" "$@"
    ;;
esac
