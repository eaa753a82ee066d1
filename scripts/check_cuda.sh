#!/usr/bin/env bash
# Type-checks the `cuda` feature's Rust code on a machine without a CUDA toolkit or GPU:
# `cargo check --features cuda --all-targets` with a stand-in `nvcc` (scripts/fake-nvcc)
# that answers `--version` and writes empty PTX and object files. Nothing it builds can
# run on a GPU; with a real toolkit installed, run `cargo build --features cuda` instead.
#
# With TRSR_FLASH_ATTN=1 it checks the `flash-attn` feature too (candle-flash-attn's build
# still needs the CUTLASS headers: GitHub, or TRSR_CUTLASS_GIT, see scripts/cuda/seed-cutlass).
#
# Usage: scripts/check_cuda.sh   (uses target/cuda-check; ~10 minutes cold on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
fake="$PWD/scripts/fake-nvcc"
export PATH="$fake:$PATH" CUDA_HOME="$fake" CUDA_ROOT="$fake" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda-check}"
# candle-kernels caches its PTX outputs; start it clean so the stand-in writes them.
rm -rf "$CARGO_TARGET_DIR"/debug/build/candle-kernels-*
features=cuda
if [[ "${TRSR_FLASH_ATTN:-}" == 1 ]]; then
  features="cuda flash-attn"
  scripts/cuda/seed-cutlass
fi
exec cargo check --features "$features" --all-targets
