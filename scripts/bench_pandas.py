#!/usr/bin/env python3
"""pandas read_csv of MIND news.tsv + behaviors.tsv: the competitor in bench_loaders.sh.
Prints one RESULT line: best wall time over --repeat runs and peak RSS."""
import csv
import resource
import sys
import time

import pandas as pd

NEWS = ["id", "category", "subcategory", "title", "abstract", "url", "title_entities",
        "abstract_entities"]
BEHAVIORS = ["impression_id", "user", "time", "history", "impressions"]


def main():
    d = sys.argv[1]
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        news = pd.read_csv(f"{d}/news.tsv", sep="\t", header=None, names=NEWS,
                           quoting=csv.QUOTE_NONE)
        beh = pd.read_csv(f"{d}/behaviors.tsv", sep="\t", header=None, names=BEHAVIORS,
                          quoting=csv.QUOTE_NONE)
        secs = time.perf_counter() - t
        best = min(best, secs)
        print(f"pandas {pd.__version__} read_csv: {secs:.3f} s ({len(news)} news, {len(beh)} behaviour rows)")
        del news, beh
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"RESULT best_s={best:.3f} peak_rss_bytes={peak}")


if __name__ == "__main__":
    main()
