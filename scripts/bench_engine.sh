#!/usr/bin/env bash
# Benchmark: our engine against llama.cpp (llama-cpp-python) on the same GGUF, the same
# thread count, in one run. Prints prefill tok/s, decode tok/s and candidates/s
# (21 candidates per user, shared prefix reused by both), with ratios.
#
# Usage: scripts/bench_engine.sh [MODEL.gguf] [THREADS]
# Env:   BENCH_VENV  virtual environment to use/create (default: target/bench-venv);
#        building llama-cpp-python from source takes ~10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${1:-${TRSR_BENCH_MODEL:-}}"
if [[ -z "$MODEL" || ! -f "$MODEL" ]]; then
  for c in "${TRSR_MODEL_DIR:-$HOME/.cache/trsr/models}/SmolLM2-135M-Instruct.Q4_1.gguf" /tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf; do
    if [[ -f "$c" ]]; then MODEL="$c"; break; fi
  done
fi
if [[ -z "$MODEL" || ! -f "$MODEL" ]]; then
  echo "no model: pass a GGUF path or run 'trsr fetch-model' first" >&2
  exit 1
fi
THREADS="${2:-${TRSR_BENCH_THREADS:-$(nproc)}}"

VENV="${BENCH_VENV:-target/bench-venv}"
if ! "$VENV/bin/python" -c "import llama_cpp, numpy" 2>/dev/null; then
  echo "setting up $VENV with llama-cpp-python (builds llama.cpp from source; ~10 min on 2 cores)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "llama-cpp-python==0.3.*" numpy
fi

export TRSR_BENCH_MODEL="$MODEL" TRSR_BENCH_THREADS="$THREADS" TRSR_BENCH_PYTHON="$VENV/bin/python"
exec cargo bench --bench engine
