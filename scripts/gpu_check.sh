#!/usr/bin/env bash
# The GPU check, in one command, for a machine with an NVIDIA GPU and the binary that
# scripts/build_cuda.sh made (carried there: no Rust toolchain or network needed). Runs
# `trsr gpu-check` (load; greedy decode against the CPU engine; P(yes) against the CPU
# engine; one LoRA step; on the GPU alone: sampling with small copies drawing the tokens
# of the whole-vector copy (greedy, reference preset, workbench defaults: the
# sampler-equality test of tests/sampler_device.rs, in the binary) and a LoRA step with
# the frozen base in bf16 against f32 (reported as not run on a GPU below sm_80); in a
# build with flash attention (TRSR_FLASH_ATTN=1 scripts/build_cuda.sh), the fused prefill
# against the matrix-product path; the engine benchmark: prefill (also without flash
# attention where it is on), decode, candidates/s) on the
# default model, then the benchmark alone on a larger GGUF if one is given, and writes a
# short markdown report. Sized to finish in under 8 minutes (each run has a time limit).
#
# Usage: scripts/gpu_check.sh MODEL.gguf [LARGER.gguf]
# Env:   TRSR_BIN     the CUDA binary (default: target/cuda/release/trsr-stripped, else
#                     target/cuda/release/trsr)
#        TRSR_CUDA_LIBS  extra folders (colon-separated) holding the CUDA libraries the
#                     binary links (libcublas, libcublasLt, libcurand, libnvrtc, libcudart
#                     of the toolkit it was built with); common places are searched too
#        REPORT       the report file (default: $OUT/gpu_check.md when $OUT is set, else
#                     gpu_check.md)
#        DEVICE       cuda (default) or cuda:N; `cpu` runs the same checks on the generic
#                     path on the CPU (a dry run of this script on a machine without a GPU)
#        TOKENS       greedy tokens compared (default 32)
set -uo pipefail
cd "$(dirname "$0")/.."

model="${1:-${TRSR_MODEL:-}}"
large="${2:-${TRSR_LARGE_MODEL:-}}"
if [[ -z "$model" || ! -f "$model" ]]; then
  echo "usage: scripts/gpu_check.sh MODEL.gguf [LARGER.gguf]  (model '${model}' not found)" >&2
  exit 2
fi
bin="${TRSR_BIN:-}"
if [[ -z "$bin" ]]; then
  for c in target/cuda/release/trsr-stripped target/cuda/release/trsr; do
    if [[ -x "$c" ]]; then bin="$c"; break; fi
  done
fi
if [[ -z "$bin" || ! -x "$bin" ]]; then
  echo "no CUDA binary: build it with scripts/build_cuda.sh or set TRSR_BIN" >&2
  exit 2
fi
device="${DEVICE:-cuda}"
tokens="${TOKENS:-32}"
if [[ -n "${OUT:-}" ]]; then report="${REPORT:-$OUT/gpu_check.md}"; else report="${REPORT:-gpu_check.md}"; fi
t_start=$SECONDS

{
  echo "# GPU check ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- host: $(hostname), $(nproc) CPU cores"
  if command -v nvidia-smi >/dev/null; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
  else
    echo "- GPU: nvidia-smi not found"
  fi
  echo "- binary: $bin ($(du -h "$bin" | cut -f1))"
} > "$report"

# The libraries the binary links: found here, or in a CUDA install, or in Python's
# nvidia-* wheels; the folders that hold missing ones go on LD_LIBRARY_PATH.
missing() { ldd "$bin" 2>/dev/null | awk '/not found/ {print $1}'; }
if [[ -n "$(missing)" ]]; then
  dirs="${TRSR_CUDA_LIBS:-}"
  for lib in $(missing); do
    found="$(find ${TRSR_CUDA_LIBS//:/ } /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib \
             /usr/lib/x86_64-linux-gnu /usr/lib64 /opt/conda/lib \
             /usr/local/lib/python3*/*-packages/nvidia /usr/lib/python3*/*-packages/nvidia \
             "$HOME"/.local/lib/python3*/site-packages/nvidia \
             -maxdepth 3 -name "$lib" 2>/dev/null | head -1)"
    if [[ -n "$found" ]]; then dirs="$dirs:$(dirname "$found")"; fi
  done
  export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [[ -n "$(missing)" ]]; then
  {
    echo "- **FAIL** libraries: not found: $(missing | paste -sd' ' -)."
    echo "  The binary links the CUDA toolkit's libraries of the version it was built with"
    echo "  (see scripts/build_cuda.sh's report); install them or point TRSR_CUDA_LIBS at them."
  } >> "$report"
  cat "$report"
  exit 1
fi
echo "- libraries: $(ldd "$bin" | awk '/libcu|libnvrtc/ {print $3}' | paste -sd' ' -)" >> "$report"
echo >> "$report"

status=0
run() {  # run LIMIT_S ARGS...: one gpu-check, its output into the report
  local limit="$1"; shift
  local out rc
  out="$(timeout "$limit" "$bin" gpu-check --device "$device" --report "$report" "$@" 2>&1)"
  rc=$?
  echo "$out"
  if (( rc == 124 )); then
    echo "- **FAIL** timed out after ${limit}s: gpu-check $*" >> "$report"
  elif (( rc != 0 )); then
    echo "- exit status $rc; last lines:" >> "$report"
    echo "$out" | tail -5 | sed 's/^/      /' >> "$report"
  fi
  (( rc == 0 )) || status=1
}

# The default model: every check against the CPU engine, and the benchmark (~1-2 min).
run 270 --model "$model" --tokens "$tokens" --candidates 8 --bench
# A larger GGUF: load and benchmark only (the CPU engine would take too long for the
# comparisons), in the time left of the 8 minutes.
if [[ -n "$large" ]]; then
  left=$(( 450 - (SECONDS - t_start) ))
  if [[ ! -f "$large" ]]; then
    echo "- larger model $large not found; skipped" >> "$report"
  elif (( left < 60 )); then
    echo "- larger model skipped: ${left}s left of the 8 minutes" >> "$report"
  else
    run "$left" --model "$large" --no-compare --bench
  fi
fi
echo "- total: $(( SECONDS - t_start ))s; result: $([[ $status == 0 ]] && echo PASS || echo FAIL)" >> "$report"
echo
cat "$report"
exit $status
