#!/usr/bin/env python3
"""Loads `trsr export` SFT files with Hugging Face `datasets`, as TRL would.

Usage: python3 scripts/check_export_datasets.py FILE.jsonl [FILE.jsonl ...]

Each file must load with `datasets.load_dataset("json", data_files=FILE)` and have
either string `prompt` and `completion` columns, or a `messages` column of
`{"role", "content"}` turns (user, then assistant). Exits non-zero on the first
problem, naming the file.
"""
import sys

import datasets


def check(path):
    ds = datasets.load_dataset("json", data_files=path, split="train")
    if len(ds) == 0:
        raise SystemExit(f"{path}: no examples")
    cols = set(ds.column_names)
    if {"prompt", "completion"} <= cols:
        for i, row in enumerate(ds):
            if not isinstance(row["prompt"], str) or not isinstance(row["completion"], str):
                raise SystemExit(f"{path}: row {i}: prompt/completion are not strings")
        form = "prompt-completion"
    elif "messages" in cols:
        for i, row in enumerate(ds):
            roles = [m["role"] for m in row["messages"]]
            if roles != ["user", "assistant"] or not all(
                isinstance(m["content"], str) for m in row["messages"]
            ):
                raise SystemExit(f"{path}: row {i}: messages are not user then assistant turns")
        form = "messages"
    else:
        raise SystemExit(f"{path}: neither prompt/completion nor messages columns: {sorted(cols)}")
    print(f"{path}: {len(ds)} examples, {form}, columns {ds.column_names}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for p in sys.argv[1:]:
        check(p)
