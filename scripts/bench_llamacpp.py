#!/usr/bin/env python3
"""Measure llama.cpp (through llama-cpp-python) on the engine benchmark shapes.

    python scripts/bench_llamacpp.py --model M.gguf --threads 2 --json [--prompts benches/data/bench_prompts.json]

Prints one JSON object (with --json; a readable summary otherwise):
- prefill: tokens/s evaluating the ~300-token prompt from an empty cache;
- decode: tokens/s for `decode_tokens` greedy tokens after the decode prompt (argmax of the last
  logits, one token per llama_decode call, as llama.cpp generates);
- scoring: candidates/s scoring the 21 candidates of one user: the shared prefix is evaluated
  once, then for each candidate the cache is cut back to the prefix (KV sequence removal, the
  cheapest reuse llama.cpp offers) and the candidate's ~40 tokens are evaluated; P(yes) is the
  softmax over the yes/no logits at the last position. The same without reuse (prefix +
  candidate from an empty cache each time) is reported too, and the P(yes) values, so that the
  engine's scores can be checked against llama.cpp's.

Each figure is the median over --repeats runs after one warm-up run. The prompts file is shared
with scripts/bench_engine.sh, so both engines see identical text.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

DEFAULT_PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches", "data", "bench_prompts.json")


def last_logits(llm, np, llama_cpp):
    """Logits of the last evaluated position (works without logits_all)."""
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))


def first_token(llm, word):
    ids = llm.tokenize(word.encode("utf-8"), add_bos=False, special=False)
    if not ids:
        sys.exit(f"answer word {word!r} encodes to no tokens")
    if len(ids) > 1:
        print(f"note: answer word {word!r} is {len(ids)} tokens; using its first", file=sys.stderr)
    return ids[0]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--prompts", default=DEFAULT_PROMPTS, help="benchmark prompts (JSON)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median reported)")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--n-batch", type=int, default=512)
    args = ap.parse_args()

    try:
        import numpy as np
        import llama_cpp
    except ImportError as e:
        sys.exit(f"llama-cpp-python (and numpy) must be installed in this Python: {e}")

    with open(args.prompts, encoding="utf-8") as f:
        prompts = json.load(f)

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=args.n_ctx,
        n_batch=args.n_batch,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=False,
        verbose=False,
    )

    def tok(text, bos):
        return llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    repeats = max(1, args.repeats)

    # ---- prefill
    prefill_ids = tok(prompts["prefill_prompt"], True)

    def prefill():
        llm.reset()
        llm.eval(prefill_ids)

    prefill()  # warm-up
    prefill_s = [timed(prefill)[0] for _ in range(repeats)]
    prefill_med = statistics.median(prefill_s)

    # ---- decode (greedy)
    decode_ids = tok(prompts["decode_prompt"], True)
    n_decode = int(prompts.get("decode_tokens", 128))
    eos = set(i for i in (llm.token_eos(),) if i >= 0)

    def decode():
        llm.reset()
        llm.eval(decode_ids)
        t0 = time.perf_counter()
        produced = []
        for _ in range(n_decode):
            nxt = int(np.argmax(last_logits(llm, np, llama_cpp)))
            produced.append(nxt)
            llm.eval([nxt])
        return time.perf_counter() - t0, produced

    decode()  # warm-up
    decode_runs = [decode() for _ in range(repeats)]
    decode_s = [r[0] for r in decode_runs]
    decode_med = statistics.median(decode_s)
    decode_text = llm.detokenize(decode_runs[0][1], special=True).decode("utf-8", errors="replace")
    hit_eos = any(t in eos for t in decode_runs[0][1])

    # ---- scoring
    yes_id = first_token(llm, prompts.get("yes_word", "yes"))
    no_id = first_token(llm, prompts.get("no_word", "no"))
    prefix_ids = tok(prompts["prefix"], True)
    cand_ids = [tok(c, False) for c in prompts["candidates"]]

    def p_yes():
        logits = last_logits(llm, np, llama_cpp)
        a, b = float(logits[yes_id]), float(logits[no_id])
        m = max(a, b)
        ea, eb = math.exp(a - m), math.exp(b - m)
        return ea / (ea + eb)

    def score_reuse():
        llm.reset()
        llm.eval(prefix_ids)
        n_prefix = llm.n_tokens
        out = []
        for ids in cand_ids:
            llm.n_tokens = n_prefix  # eval() removes cache cells past n_tokens first
            llm.eval(ids)
            out.append(p_yes())
        return out

    def score_full():
        out = []
        for ids in cand_ids:
            llm.reset()
            llm.eval(prefix_ids + ids)
            out.append(p_yes())
        return out

    score_reuse()  # warm-up
    reuse_runs = [timed(score_reuse) for _ in range(repeats)]
    reuse_med = statistics.median(r[0] for r in reuse_runs)
    full_runs = [timed(score_full) for _ in range(max(1, min(repeats, 2)))]
    full_med = statistics.median(r[0] for r in full_runs)
    p_reuse = reuse_runs[0][1]
    p_full = full_runs[0][1]

    result = {
        "engine": "llama.cpp",
        "llama_cpp_python_version": llama_cpp.__version__,
        "model": os.path.abspath(args.model),
        "threads": args.threads,
        "repeats": repeats,
        "prefill": {
            "tokens": len(prefill_ids),
            "median_ms": prefill_med * 1000,
            "tok_per_s": len(prefill_ids) / prefill_med,
        },
        "decode": {
            "prompt_tokens": len(decode_ids),
            "tokens": n_decode,
            "median_ms": decode_med * 1000,
            "tok_per_s": n_decode / decode_med,
            "hit_eos": hit_eos,
            "text": decode_text,
        },
        "scoring": {
            "candidates": len(cand_ids),
            "prefix_tokens": len(prefix_ids),
            "candidate_tokens": [len(c) for c in cand_ids],
            "yes_id": yes_id,
            "no_id": no_id,
            "median_ms": reuse_med * 1000,
            "candidates_per_s": len(cand_ids) / reuse_med,
            "no_reuse_median_ms": full_med * 1000,
            "candidates_per_s_no_reuse": len(cand_ids) / full_med,
            "p_yes": p_reuse,
            "max_abs_diff_reuse_vs_full": max(abs(a - b) for a, b in zip(p_reuse, p_full)),
        },
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"llama.cpp {result['llama_cpp_python_version']}, {args.threads} threads, {os.path.basename(args.model)}")
        print(f"prefill  {len(prefill_ids)} tokens: {result['prefill']['tok_per_s']:.1f} tok/s")
        print(f"decode   {n_decode} tokens: {result['decode']['tok_per_s']:.1f} tok/s")
        s = result["scoring"]
        print(
            f"scoring  {s['candidates']} candidates (prefix {s['prefix_tokens']} tokens, "
            f"~{statistics.mean(s['candidate_tokens']):.0f} per candidate): {s['candidates_per_s']:.2f} candidates/s "
            f"with prefix reuse, {s['candidates_per_s_no_reuse']:.2f} without"
        )


if __name__ == "__main__":
    main()
