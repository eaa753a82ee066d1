#!/usr/bin/env python3
"""Expected values for tests/stats_scipy.rs, computed by SciPy.

Writes tests/data/stats_expected.json (fixed data and SciPy's answers) and
tests/data/stats_scores.jsonl (a scores file whose per-case MRR@10 and Recall@3
are the paired data, so `trsr eval` itself is checked end to end).

    python3 -m venv /tmp/statsvenv && /tmp/statsvenv/bin/pip install scipy numpy
    /tmp/statsvenv/bin/python scripts/stats_expected.py

SciPy functions used: scipy.stats.bootstrap (method='percentile') and
scipy.stats.permutation_test (paired: permutation_type='samples', two-sided;
exact with n_resamples=inf).
"""

import json
import os

import numpy as np
import scipy
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data")

# Bootstrap resamples on SciPy's side: many, so its quantiles are close to the
# bootstrap distribution's true quantiles; the Rust test's tolerance covers its own
# (fewer) resamples' Monte Carlo error.
SCIPY_RESAMPLES = 200_000


def mean_diff(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


def percentile_ci(data, paired=False):
    if paired:
        res = stats.bootstrap(
            data,
            mean_diff,
            paired=True,
            vectorized=True,
            confidence_level=0.95,
            n_resamples=SCIPY_RESAMPLES,
            method="percentile",
            random_state=np.random.default_rng(12345),
        )
    else:
        res = stats.bootstrap(
            (np.asarray(data),),
            np.mean,
            confidence_level=0.95,
            n_resamples=SCIPY_RESAMPLES,
            method="percentile",
            random_state=np.random.default_rng(12345),
        )
    ci = res.confidence_interval
    return [float(ci.low), float(ci.high)], float(np.std(res.bootstrap_distribution))


def paired_p(a, b, n_resamples=np.inf, seed=None):
    res = stats.permutation_test(
        (np.asarray(a, float), np.asarray(b, float)),
        mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        random_state=None if seed is None else np.random.default_rng(seed),
    )
    return float(res.pvalue)


def main():
    rng = np.random.default_rng(2026)
    expected = {"scipy": scipy.__version__, "numpy": np.__version__}

    # 1. Interval of a mean (per-case Recall-like values in [0, 1]).
    x = [round(float(v), 4) for v in rng.beta(2, 3, size=30)]
    ci, sd = percentile_ci(x)
    expected["bootstrap_mean"] = {"data": x, "level": 0.95, "ci": ci, "boot_sd": sd}

    # 2. Interval of a paired mean difference.
    a = [round(float(v), 4) for v in rng.beta(3, 2, size=40)]
    b = [round(min(1.0, max(0.0, v - 0.05 + float(rng.normal(0, 0.15)))), 4) for v in a]
    ci, sd = percentile_ci((np.asarray(a), np.asarray(b)), paired=True)
    expected["bootstrap_paired"] = {"a": a, "b": b, "level": 0.95, "ci": ci, "boot_sd": sd}

    # 3. Exact paired permutation tests on small n (all 2^n pair swaps).
    exact = []
    for n, shift in [(8, 0.2), (12, 0.05), (15, 0.1)]:
        a = [round(float(v), 3) for v in rng.uniform(0, 1, size=n)]
        b = [round(min(1.0, max(0.0, v - shift + float(rng.normal(0, 0.2)))), 3) for v in a]
        b[0] = a[0]  # a zero difference, which a sign flip does not change
        exact.append({"a": a, "b": b, "p": paired_p(a, b)})
    # Differences with ties among |d| (many equal sums in the null distribution).
    a = [1, 1, 0, 1, 0.5, 1, 0, 1, 0.5, 1]
    b = [0, 1, 0, 0, 0.5, 0, 1, 0, 0, 0.5]
    exact.append({"a": a, "b": b, "p": paired_p(a, b)})
    expected["permutation_exact"] = exact

    # 4. A Monte Carlo permutation test (n = 40: 2^40 patterns).
    a = [round(float(v), 3) for v in rng.uniform(0, 1, size=40)]
    b = [round(min(1.0, max(0.0, v - 0.04 + float(rng.normal(0, 0.2)))), 3) for v in a]
    expected["permutation_mc"] = {
        "a": a,
        "b": b,
        "resamples": 200_000,
        "p": paired_p(a, b, n_resamples=200_000, seed=7),
    }

    # 5. A scores file for `trsr eval`: 12 cases, 1 positive + 11 negatives each, no
    # ties; scorer A puts the positive at rank ra, scorer B at rank rb. Per case
    # MRR@10 = 1/rank (0 past 10) and Recall@3 = [rank <= 3].
    ra = [int(v) for v in rng.integers(1, 9, size=12)]
    rb = [int(v) for v in rng.integers(2, 13, size=12)]
    rb[3] = ra[3]
    lines = []
    for scorer, ranks in [("A", ra), ("B", rb)]:
        for i, r in enumerate(ranks):
            cands = []
            for pos in range(1, 13):
                score = round(1.0 - pos / 20.0, 4)
                if pos == r:
                    cands.append({"id": "T", "label": 1, "score": score})
                else:
                    cands.append({"id": f"N{pos}", "label": 0, "score": score})
            lines.append({"case": f"c{i + 1}", "scorer": scorer, "candidates": cands})
    # One more case scored by A only: reported and left out of the pair.
    lines.append({"case": "c13", "scorer": "A", "candidates": [
        {"id": "T", "label": 1, "score": 0.9}, {"id": "N1", "label": 0, "score": 0.1}]})
    with open(os.path.join(OUT, "stats_scores.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    mrr = lambda r: 1.0 / r if r <= 10 else 0.0
    rec3 = lambda r: 1.0 if r <= 3 else 0.0
    ma = [mrr(r) for r in ra]
    mb = [mrr(r) for r in rb]
    ra3 = [rec3(r) for r in ra]
    rb3 = [rec3(r) for r in rb]
    ci_a, sd_a = percentile_ci(ma + [1.0])  # A's 13 cases, c13 at rank 1
    ci_d, sd_d = percentile_ci((np.asarray(ma), np.asarray(mb)), paired=True)
    expected["eval_cli"] = {
        "ranks_a": ra,
        "ranks_b": rb,
        "mrr@10_a_ci": ci_a,
        "mrr@10_a_boot_sd": sd_a,
        "mrr@10_diff": float(np.mean(np.asarray(ma) - np.asarray(mb))),
        "mrr@10_diff_ci": ci_d,
        "mrr@10_diff_boot_sd": sd_d,
        "mrr@10_p": paired_p(ma, mb),
        "recall@3_p": paired_p(ra3, rb3),
    }

    with open(os.path.join(OUT, "stats_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print(json.dumps({k: expected[k] for k in ["scipy", "numpy"]}))
    print("wrote", os.path.join(OUT, "stats_expected.json"))


if __name__ == "__main__":
    main()
