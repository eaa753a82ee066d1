#!/usr/bin/env bash
# Throughput of the server model against the in-process engine: `trsr summarize` and
# `trsr score` on N cases of sample_data/jsonl, against a local llama.cpp server at
# --concurrency 1, 2 and 4, and in-process; prints cases/minute side by side.
#
# Usage: scripts/bench_remote.sh [N]   (default N=8)
# Environment: TRSR_BIN (a built trsr; default: cargo build --release), BENCH_SLOTS (server
# slots, default 4), BENCH_SUMMARIZE_FLAGS (default: recurrent, 2 blocks, greedy, 48 tokens).
set -euo pipefail
cd "$(dirname "$0")/.."

n="${1:-8}"
slots="${BENCH_SLOTS:-4}"
sum_flags=${BENCH_SUMMARIZE_FLAGS:---method recurrent --max-blocks 2 --greedy --max-new-tokens 48}
if [ -z "${TRSR_BIN:-}" ]; then
  cargo build --release --quiet
  TRSR_BIN=target/release/trsr
fi
server_bin="$(scripts/build_llama_server.sh)"
model="$("$TRSR_BIN" fetch-model --print-path)"
data=sample_data/jsonl
work="$(mktemp -d "${TMPDIR:-/tmp}/trsr-bench-remote.XXXXXX")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

server_pid=""
trap 'stop_server; rm -rf "$work"' EXIT
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; fi; }
# A fresh server for each row, so that no row gains from the prompt cache an earlier one left.
start_server() {
  stop_server
  "$server_bin" -m "$model" --host 127.0.0.1 --port "$port" -np "$slots" -c $((4096 * slots)) \
    -t "$(nproc)" --no-webui >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "llama-server did not start (log: $work/server.log)" >&2
  return 1
}
url="http://127.0.0.1:$port/v1"

# Seconds taken by a command (its output is kept in $work/last.log).
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
per_min() { python3 -c "print(f'{$n * 60 / $1:.1f}')"; }

printf '%-16s %22s %22s\n' "model" "summarize cases/min" "score cases/min"
run_mode() {
  local label="$1"; shift
  local s="$work/$label.summaries.jsonl" o="$work/$label.scores.jsonl"
  # shellcheck disable=SC2086
  local ts tc
  ts=$(timed "$TRSR_BIN" summarize --data "$data" --limit "$n" --out "$s" --no-cache --quiet $sum_flags "$@")
  tc=$(timed "$TRSR_BIN" score --data "$data" --limit "$n" --summaries "$s" --out "$o" --no-cache --quiet "$@")
  printf '%-16s %15s (%6ss) %15s (%6ss)\n' "$label" "$(per_min "$ts")" "$ts" "$(per_min "$tc")" "$tc"
}
start_server; run_mode "server c=1" --model "$url" --concurrency 1
start_server; run_mode "server c=2" --model "$url" --concurrency 2
start_server; run_mode "server c=4" --model "$url" --concurrency 4
stop_server; run_mode "in-process" --model "$model"
echo "($n cases of $data; llama-server with $slots slots on $(nproc) cores; summarize flags: $sum_flags)"
