#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of trsr (issue #16), with libFuzzer on stable
# Rust (no cargo-fuzz, no nightly: fuzz/rustc-wrap.sh adds the coverage options to the
# crates under test only).
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Runs every target (default: all, see fuzz/src/lib.rs) for SECONDS each, FUZZ_JOBS at a
# time (default 2), under `nice -n 19`, each with a memory limit (FUZZ_RSS_MB, default
# 2048: an input that makes the process grow past it is an out-of-memory finding) and a
# per-input time limit (FUZZ_TIMEOUT_S, default 10: a slower input is a hang finding).
# A run goes on past findings (libFuzzer's fork mode). At the end it prints, per target,
# the seconds run, executions, and findings: crashes (distinct panic sites), hangs and
# out-of-memory inputs (inputs saved). The table is also written to fuzz/out/summary.txt.
#
# Corpora grow in fuzz/corpus/TARGET (kept between runs, not committed), seeded from
# fuzz/seeds/TARGET, from sample_data/ and the tests' fixtures, and from the committed
# regression inputs in tests/data/fuzz/TARGET. Findings land in fuzz/out/TARGET/; each
# one fixed is minimized (`TRSR_FUZZ_TARGET=T target/debug/trsr-fuzz -minimize_crash=1
# -runs=2000 INPUT`) and committed under tests/data/fuzz/TARGET/, where
# tests/fuzz_regressions.rs runs it on every `cargo test`.
#
# The build goes into the repository's own target/ (FUZZ_TARGET_DIR to change), reusing
# the dependencies the normal debug build compiled.
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^([0-9]+|--summary)$ ]]; then
    echo "usage: scripts/fuzz.sh SECONDS [TARGET...]   (or --summary [TARGET...]: the last run's table)" >&2
    exit 2
fi
secs=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${FUZZ_JOBS:-2}
rss_mb=${FUZZ_RSS_MB:-2048}
timeout_s=${FUZZ_TIMEOUT_S:-10}
target_dir=${FUZZ_TARGET_DIR:-$root/target}
out=$root/fuzz/out
bin=$target_dir/debug/trsr-fuzz

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n '/^pub const TARGETS/,/^];/p' "$root/fuzz/src/lib.rs" | grep -o '"[a-z_]*"' | tr -d '"')
fi

summarize() {
    printf '%-14s %8s %12s %8s %6s %6s\n' target seconds executions crashes hangs ooms
    for t in "${targets[@]}"; do
        log=$out/$t/fuzz.log
        [[ -f $log ]] || continue
        execs=$({ grep -o '^#[0-9]*' "$log" || true; } | tail -1 | tr -d '#')
        crashes=$({ grep -o 'panicked at [^:]*:[0-9]*' "$log" || true; } | sort -u | wc -l)
        hangs=$(find "$out/$t" -name 'timeout-*' | wc -l)
        ooms=$(find "$out/$t" -name 'oom-*' | wc -l)
        printf '%-14s %8s %12s %8s %6s %6s\n' "$t" "$(cat "$out/$t/seconds" 2>/dev/null)" "${execs:-0}" "$crashes" "$hangs" "$ooms"
    done
}
if [[ $secs == --summary ]]; then
    summarize
    exit 0
fi

echo "building libFuzzer (fuzz/libfuzzer) ..."
(cd "$root/fuzz/libfuzzer" && nice -n 19 cargo build --quiet --target-dir "$root/fuzz/target")
lib=$(ls -t "$root"/fuzz/target/debug/build/libfuzzer-sys-*/out/libfuzzer.a | head -1)
echo "building the fuzz harness (target dir $target_dir) ..."
# The root's lock file, so that the harness resolves the same versions as the root build.
cp -f "$root/Cargo.lock" "$root/fuzz/Cargo.lock"
(cd "$root/fuzz" && TRSR_LIBFUZZER_DIR=$(dirname "$lib") CARGO_TARGET_DIR=$target_dir \
    RUSTC_WRAPPER=$root/fuzz/rustc-wrap.sh nice -n 19 cargo build --quiet --bin trsr-fuzz)
# Run a copy, so that a rebuild during the run does not change the binary under it.
mkdir -p "$out"
cp -f "$bin" "$out/trsr-fuzz.$$"
bin=$out/trsr-fuzz.$$
trap 'rm -f "$bin"' EXIT

# Seeds: the committed ones, the regression inputs, and the real files of the repository;
# tiny GGUF models (and their tokenizer.json) are written by a test helper.
if [[ " ${targets[*]} " =~ " "(gguf|tokenizer|project)" " ]] &&
    ! compgen -G "$root/fuzz/corpus/gguf/tiny-*.gguf" >/dev/null; then
    echo "writing the GGUF seeds ..."
    (cd "$root" && TRSR_FUZZ_SEEDS=$root/fuzz/corpus nice -n 19 cargo test --quiet \
        --test fuzz_regressions write_fuzz_seeds -- --ignored >/dev/null)
fi
seed() { # seed TARGET FILE...
    local dir=$root/fuzz/corpus/$1
    shift
    mkdir -p "$dir"
    for f in "$@"; do
        [[ -f $f ]] && cp -n "$f" "$dir/" 2>/dev/null || true
    done
}
pair() { # pair TARGET NAME FIRST SECOND: one two-part seed
    local dir=$root/fuzz/corpus/$1
    mkdir -p "$dir"
    [[ -f $3 ]] || return 0
    {
        head -c 20000 "$3"
        printf '\n#-8<-#\n'
        [[ -f $4 ]] && head -c 20000 "$4"
    } >"$dir/seed-$2"
}
for t in "${targets[@]}"; do
    mkdir -p "$root/fuzz/corpus/$t" "$out/$t"
    [[ -d $root/fuzz/seeds/$t ]] && seed "$t" "$root/fuzz/seeds/$t"/*
    [[ -d $root/tests/data/fuzz/$t ]] && seed "$t" "$root/tests/data/fuzz/$t"/*
    case $t in
    dataset)
        pair dataset mind "$root/sample_data/mind/news.tsv" "$root/sample_data/mind/behaviors.tsv"
        pair dataset amazon "$root/sample_data/amazon-m2/products_train.csv" "$root/sample_data/amazon-m2/sessions_train.csv"
        pair dataset recbole "$root/sample_data/recbole/sample.item" "$root/sample_data/recbole/sample.inter"
        pair dataset jsonl "$root/sample_data/jsonl/items.jsonl" "$root/sample_data/jsonl/cases.jsonl"
        ;;
    peft) pair peft lora "$root/tests/data/lora/adapter/adapter_config.json" "$root/tests/data/lora/adapter/adapter_model.safetensors" ;;
    safetensors) pair safetensors tiny "$root/tests/data/lora/tiny-llama/config.json" "$root/tests/data/lora/tiny-llama/model.safetensors" ;;
    results) seed results "$root/tests/data/stats_scores.jsonl" "$root/tests/data/stats_expected.json" ;;
    remote) seed remote "$root"/tests/data/remote/*.json "$root"/tests/data/remote/*.txt ;;
    esac
done

run_one() { # run_one TARGET
    local t=$1 log=$out/$1/fuzz.log scratch
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/trsr-fuzz-$t.XXXXXX")
    rm -f "$out/$t"/crash-* "$out/$t"/oom-* "$out/$t"/timeout-* "$out/$t"/leak-*
    local t0=$SECONDS
    TRSR_FUZZ_TARGET=$t TMPDIR=$scratch CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1 \
        nice -n 19 "$bin" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$secs" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" \
        -timeout="$timeout_s" -artifact_prefix="$out/$t/" -print_final_stats=1 \
        "$root/fuzz/corpus/$t" >"$log" 2>&1 || true
    echo $((SECONDS - t0)) >"$out/$t/seconds"
    rm -rf "$scratch"
    echo "done: $t"
}

running=0
for t in "${targets[@]}"; do
    if ((running >= jobs)); then
        wait -n || true
        running=$((running - 1))
    fi
    echo "fuzzing $t for ${secs}s ..."
    run_one "$t" &
    running=$((running + 1))
done
wait

summarize | tee "$out/summary.txt"
echo "findings: $out/TARGET/{crash,timeout,oom}-*; logs: $out/TARGET/fuzz.log"
