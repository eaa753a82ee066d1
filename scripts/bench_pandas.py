#!/usr/bin/env python3
"""pandas read_csv of MIND news.tsv + behaviors.tsv: the competitor in bench_loaders.sh.

Times two things, best of `repeat` runs each:
  read_csv:  pd.read_csv of both files (what the issue names as the competitor);
  same work: read_csv plus what our loader also does: keep each user's earliest
             impression row, split history and impressions, keep ids found in news.tsv.
Prints one RESULT line with both times and the peak RSS."""
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
    best_same = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        news = pd.read_csv(f"{d}/news.tsv", sep="\t", header=None, names=NEWS,
                           quoting=csv.QUOTE_NONE)
        beh = pd.read_csv(f"{d}/behaviors.tsv", sep="\t", header=None, names=BEHAVIORS,
                          quoting=csv.QUOTE_NONE)
        secs = time.perf_counter() - t
        best = min(best, secs)
        print(f"pandas {pd.__version__} read_csv: {secs:.3f} s ({len(news)} news, {len(beh)} behaviour rows)")
        beh = beh[beh["history"].notna()]
        beh = beh.assign(t=pd.to_datetime(beh["time"], format="%m/%d/%Y %I:%M:%S %p"))
        first = beh.sort_values("t", kind="stable").drop_duplicates("user", keep="first")
        ids = set(news["id"])
        seqs = [[i for i in h.split() if i in ids] for h in first["history"]]
        shown = [[x[:-2] for x in imp.split() if x.endswith("-0") and x[:-2] in ids]
                 for imp in first["impressions"].fillna("")]
        same = time.perf_counter() - t
        best_same = min(best_same, same)
        print(f"pandas read_csv + same sequences: {same:.3f} s ({len(seqs)} users, {sum(map(len, shown))} shown ids)")
        del news, beh, first, seqs, shown
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"RESULT best_s={best:.3f} same_work_s={best_same:.3f} peak_rss_bytes={peak}")


if __name__ == "__main__":
    main()
