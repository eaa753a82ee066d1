#!/usr/bin/env python3
"""llama.cpp side of `cargo bench --bench engine` (called by benches/engine.rs).

Reads the workload (token ids, so both engines see exactly the same tokens) from a JSON
file and prints one JSON object with prefill tok/s, decode tok/s and candidates/s.
Scoring reuses each user's prefix: the prefix is evaluated once, then for every
candidate the context is rolled back to the prefix (llama-cpp-python's eval drops the
KV cells past n_tokens) and only the candidate's tokens are evaluated.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--workload", required=True)
    args = ap.parse_args()
    with open(args.workload) as f:
        w = json.load(f)

    llm = Llama(
        model_path=args.model,
        n_ctx=w["n_ctx"],
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=512,
        logits_all=False,
        verbose=False,
    )

    def last_logits():
        return np.asarray(llm.scores[llm.n_tokens - 1])

    # Warm-up.
    llm.reset()
    llm.eval(w["prefill"][:32])

    # Prefill.
    times = []
    for _ in range(w["repeats"]):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(w["prefill"])
        times.append(time.perf_counter() - t0)
    prefill_tps = len(w["prefill"]) / min(times)

    # Decode: greedy, after the prefill.
    llm.reset()
    llm.eval(w["prefill"])
    tok = int(np.argmax(last_logits()))
    t0 = time.perf_counter()
    decoded = []
    for _ in range(w["decode_tokens"]):
        decoded.append(tok)
        llm.eval([tok])
        tok = int(np.argmax(last_logits()))
    decode_tps = w["decode_tokens"] / (time.perf_counter() - t0)

    # Scoring with prefix reuse.
    yes, no = w["yes_id"], w["no_id"]
    p_yes = []
    n_cands = 0
    t0 = time.perf_counter()
    for user in w["users"]:
        llm.reset()
        llm.eval(user["prefix"])
        n_prefix = llm.n_tokens
        for cand in user["suffixes"]:
            llm.n_tokens = n_prefix
            llm.eval(cand)
            lg = last_logits()
            a, b = float(lg[yes]), float(lg[no])
            m = max(a, b)
            p_yes.append(math.exp(a - m) / (math.exp(a - m) + math.exp(b - m)))
            n_cands += 1
    score_s = time.perf_counter() - t0

    json.dump(
        {
            "engine": "llama.cpp (llama-cpp-python)",
            "prefill_tps": prefill_tps,
            "decode_tps": decode_tps,
            "cands_per_s": n_cands / score_s,
            "decoded": decoded,
            "p_yes": p_yes,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
