#!/usr/bin/env bash
# Our MIND loader vs pandas read_csv on the same MIND-large-shaped files, in one run.
# Usage: scripts/bench_loaders.sh [--rows N] [--news N] [--repeat N]
# Env: BENCH_DIR (where the files go; default a temp folder, removed afterwards),
#      BENCH_VENV (the pandas venv; default target/bench-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=1000000 NEWS=100000 REPEAT=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --news) NEWS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

VENV=${BENCH_VENV:-target/bench-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pandas' 2>/dev/null; then
  echo "== creating $VENV with pandas"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check pandas
fi

if [ -n "${BENCH_DIR:-}" ]; then
  DIR=$BENCH_DIR; mkdir -p "$DIR"
else
  DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
fi

echo "== building the benchmark (release)"
cargo bench --bench loaders --no-run 2>&1 | tail -n 2
BIN=$(cargo bench --bench loaders --no-run --message-format=json 2>/dev/null \
  | "$VENV/bin/python" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "loaders" and m.get("executable"):
        print(m["executable"])')

echo "== generating $NEWS news + $ROWS behaviour rows in $DIR"
"$BIN" --generate "$DIR" --news "$NEWS" --rows "$ROWS"
ls -l "$DIR"

echo "== trsr (best of $REPEAT)"
OURS=$("$BIN" --load "$DIR" --repeat "$REPEAT" | tee /dev/stderr | grep '^RESULT')
echo "== pandas (best of $REPEAT)"
THEIRS=$("$VENV/bin/python" scripts/bench_pandas.py "$DIR" "$REPEAT" | tee /dev/stderr | grep '^RESULT')

get() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
"$VENV/bin/python" - "$(get "$OURS" best_s)" "$(get "$THEIRS" best_s)" \
  "$(get "$OURS" peak_rss_bytes)" "$(get "$THEIRS" peak_rss_bytes)" "$(get "$OURS" files_bytes)" <<'PY'
import sys
ours, theirs, our_rss, their_rss, files = map(float, sys.argv[1:])
print("== summary")
print(f"files:        {files / 1e6:8.1f} MB (news.tsv + behaviors.tsv)")
print(f"trsr load:    {ours:8.3f} s   peak RSS {our_rss / 1e6:8.1f} MB = {our_rss / files:.2f}x the files")
print(f"pandas read:  {theirs:8.3f} s   peak RSS {their_rss / 1e6:8.1f} MB = {their_rss / files:.2f}x the files")
print(f"speed-up:     {theirs / ours:8.2f}x  (goal >= 3x)")
print(f"memory goal:  {'met' if our_rss <= 2 * files else 'NOT met'} (<= 2x the file size)")
PY
