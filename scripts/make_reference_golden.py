#!/usr/bin/env python3
"""Golden prompts for `--preset reference`, made by the LLM-TRSR reference code itself.

    python3 scripts/make_reference_golden.py REF_CHECKOUT OUTDIR [--mind DIR]
    python3 scripts/make_reference_golden.py REF_CHECKOUT --check PREPARED SUMMARIES DUMP [--mind DIR]

REF_CHECKOUT is a checkout of https://github.com/zhengzhi-1997/LLM-TRSR. Nothing of it is
copied into this repository: at run time this script takes, with `ast`, the reference's
own functions and runs them unchanged --

- `generate_sentence` of `preprocess/{MIND,amazon}/build_dataset.py` (item text),
- `summary_generation_hierarchical` / `summary_generation_recurrent` of
  `preprocess/{MIND,amazon}/summary_generation.py` (summarizer prompts),
- `preprocess` of `LLM-TRSR/dataset_gen.py` (recommender rows),
- `encode`, nested in `main` of `LLM-TRSR/test.py` (the recommender text),

with stand-ins for the model: the Hugging Face pipeline records each prompt and answers
with a stand-in summary that depends on the prompt only (`stand_in` below; the Rust test
answers the same), and the tokenizer records the text it is asked to encode.

Output (OUTDIR): `mind.json` (cases of ../shared/data/mind_sample; the sample's news.tsv
resolves only a few history ids per user, so a case's history is the ids of its row that
resolve, after the reference's own row selection), `amazon.json` (hand-made rows, as no
Amazon-M2 product catalogue is available), and the hand-made `amazon/products_train.csv`
and `amazon/sessions_train.csv` they come from.

`--check` compares a `trsr prepare/summarize/score --preset reference` run (the prepared
folder, summaries.jsonl, and the `--dump-prompts` file) with what the reference code builds
from the same rows and the same generated summaries, and prints the counts.

Needs pandas (e.g. `python3 -m venv /tmp/v && /tmp/v/bin/pip install pandas`).
"""

import argparse
import ast
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import types

import pandas as pd


def stand_in(prompt):
    """The stand-in summary for a prompt (leading space and newline kept on purpose:
    the reference keeps the pipeline's text untrimmed)."""
    return " Stand-in summary %s.\n" % hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12]


def functions(path, names, nested_in=None):
    """Source of the top-level functions `names` of a Python file (or of the functions
    nested in the function `nested_in`), dedented."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    tree = ast.parse(src)
    body = tree.body
    if nested_in:
        outer = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == nested_in]
        if not outer:
            sys.exit("%s: no function %s" % (path, nested_in))
        body = outer[0].body
    out = {}
    for node in body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            seg = ast.get_source_segment(src, node, padded=True)
            # Dedent by the def line's indent, keeping string contents as they are.
            indent = node.col_offset
            lines = seg.split("\n")
            out[node.name] = "\n".join(l[indent:] if l[:indent].strip() == "" else l for l in lines)
    missing = set(names) - set(out)
    if missing:
        sys.exit("%s: missing %s" % (path, ", ".join(sorted(missing))))
    return out


class Pipeline:
    """Stands in for `transformers.pipeline(...)`: records prompts, answers stand_in."""

    def __init__(self):
        self.prompts = []

    def __call__(self, prompts, **kwargs):
        if isinstance(prompts, list):
            self.prompts.extend(prompts)
            return [[{"generated_text": stand_in(p)}] for p in prompts]
        self.prompts.append(prompts)
        return [{"generated_text": stand_in(prompts)}]


class Tokenizer:
    """Stands in for the recommender's tokenizer: records the encoded texts."""

    def __init__(self):
        self.texts = []

    def encode(self, text, **kwargs):
        if not kwargs:
            self.texts.append(text)
        return [0] * 3


def summary_namespace(pipeline):
    ns = {
        "AutoTokenizer": types.SimpleNamespace(
            from_pretrained=lambda *a, **k: types.SimpleNamespace(eos_token_id=2, pad_token_id=None)
        ),
        "AutoModelForCausalLM": types.SimpleNamespace(from_pretrained=lambda *a, **k: None),
        "torch": types.SimpleNamespace(float16=None),
        "transformers": types.SimpleNamespace(pipeline=lambda *a, **k: pipeline),
        "time": time,
        "math": math,
        "print": lambda *a, **k: None,
    }
    return ns


def run_summaries(ref, dataset, rows, products):
    """Runs the reference's two summarizers on `rows` (dicts with prev_items); returns per
    method the prompts of each row, in call order, and the final summaries."""
    folder = {"mind": "MIND", "amazon": "amazon"}[dataset]
    src = functions(
        os.path.join(ref, "preprocess", folder, "summary_generation.py"),
        ["summary_generation_hierarchical", "summary_generation_recurrent"],
    )
    out = {}
    for method in ["hierarchical", "recurrent"]:
        per_row = []
        finals = []
        if dataset == "amazon" and method == "recurrent":
            # Batched over rows per block number: run it once, then sort the prompts out.
            pipe = Pipeline()
            ns = summary_namespace(pipe)
            exec(src["summary_generation_" + method], ns)
            df = pd.DataFrame({"prev_items": [r["prev_items"] for r in rows]})
            df["item_count"] = df["prev_items"].apply(len)
            args = types.SimpleNamespace(model_size="7b", block_size=5, max_block_num=5, batch_size=1)
            df = ns["summary_generation_" + method](args, df, products)
            n = len(rows)
            for i, r in enumerate(rows):
                blocks = math.ceil(len(r["prev_items"]) / 5)
                per_row.append([pipe.prompts[b * n + i] for b in range(blocks)])
                finals.append(df.at[i, "final_summary"])
        else:
            for r in rows:
                pipe = Pipeline()
                ns = summary_namespace(pipe)
                exec(src["summary_generation_" + method], ns)
                df = pd.DataFrame({"prev_items": [r["prev_items"]]})
                df["item_count"] = df["prev_items"].apply(len)
                args = types.SimpleNamespace(model_size="7b", block_size=5, max_block_num=5, batch_size=1)
                df = ns["summary_generation_" + method](args, df, products)
                per_row.append(list(pipe.prompts))
                finals.append(df.at[0, "final_summary"])
        out[method] = (per_row, finals)
    return out


def run_recommender(ref, dataset, rows, finals, products, summary_type="hierarchical", item_num=5):
    """dataset_gen.preprocess, then test.py's encode, per row: the texts scored, per
    candidate (target first, then the negatives in order)."""
    prep = functions(os.path.join(ref, "LLM-TRSR", "dataset_gen.py"), ["preprocess"])
    ns = {"pd": pd, "tqdm": lambda x: x}
    exec(prep["preprocess"], ns)
    df = pd.DataFrame(
        {
            "prev_items": [r["prev_items"] for r in rows],
            "neg_items": [r["neg_items"] for r in rows],
            "next_item": [r["next_item"] for r in rows],
            "final_summary": finals,
        }
    )
    new_df = ns["preprocess"](df, products, "test")
    enc = functions(os.path.join(ref, "LLM-TRSR", "test.py"), ["encode"], nested_in="main")
    tok = Tokenizer()
    args = types.SimpleNamespace(
        dataset={"mind": "MIND", "amazon": "amazon"}[dataset], summary_type=summary_type, item_num=item_num
    )
    ens = {"args": args, "tokenizer": tok, "min": min}
    exec(enc["encode"], ens)
    for _, item in new_df.iterrows():
        ens["encode"](item.to_dict())
    texts = tok.texts
    per = 1 + 20
    return [texts[i * per : (i + 1) * per] for i in range(len(rows))]


def sentence_table(ref, dataset, df_products):
    folder = {"mind": "MIND", "amazon": "amazon"}[dataset]
    src = functions(os.path.join(ref, "preprocess", folder, "build_dataset.py"), ["generate_sentence"])
    ns = {"pd": pd}
    exec(src["generate_sentence"], ns)
    df_products["sentence"] = df_products.apply(ns["generate_sentence"], axis=1)
    return df_products[["id", "sentence"]]


def mind_rows(mind_dir, count):
    """The reference's row selection on the sample (`build_dataset.py`: dropna, first row
    per user in file order, 11-26 history ids), then the ids that resolve."""
    df_sess = pd.read_csv(
        os.path.join(mind_dir, "behaviors.tsv"),
        sep="\t",
        header=None,
        names=["Impression ID", "User ID", "Time", "History", "Impressions"],
    )
    df_products = pd.read_csv(
        os.path.join(mind_dir, "news.tsv"),
        sep="\t",
        header=None,
        names=["id", "Category", "SubCategory", "Title", "Abstract", "URL", "Title Entities", "Abstract Entities"],
    )
    df_sess = df_sess.dropna(subset=["History"]).reset_index(drop=True)
    df_sess = df_sess.drop_duplicates(subset=["User ID"], keep="first").reset_index(drop=True)
    df_sess["History"] = df_sess["History"].apply(lambda x: x.split(" "))
    df_sess["history_count"] = df_sess["History"].apply(len)
    df_sess = df_sess[(df_sess["history_count"] >= 11) & (df_sess["history_count"] <= 26)].reset_index(drop=True)
    known = set(df_products["id"])
    news_ids = list(df_products["id"])
    rows = []
    for _, r in df_sess.iterrows():
        ids = [i for i in r["History"] if i in known]
        if len(ids) < 3:
            continue
        history, target = ids[:-1], ids[-1]
        negs = [i for i in news_ids if i not in ids][len(rows) * 7 : len(rows) * 7 + 20]
        rows.append({"user": r["User ID"], "prev_items": history, "next_item": target, "neg_items": negs})
        if len(rows) == count:
            break
    return rows, df_products


AMAZON_PRODUCTS = """id,locale,title,price,brand,color,size,model,material,author,desc
B001,UK,Steel water bottle 750ml,12.5,Chillys,Blue,750ml,CB-750,Stainless steel,,Keeps drinks cold for 24 hours
B002,UK,"Notebook, A5, ruled",4,Moleskine,Black,A5,,Paper,,"A ruled notebook, 240 pages"
B003,UK,Running socks,9.99,NA,White,M,,Cotton,,
B004,UK,The Hobbit,7.0,HarperCollins,,,,,J. R. R. Tolkien,A classic fantasy novel
B005,UK,USB-C cable 2m,0.00001,Anker,Grey,2m,A8433,Nylon,,Fast charging cable
B006,UK,Yoga mat,25,Gaiam,Purple,183cm,,TPE,,Non-slip yoga mat
B007,UK,Desk lamp,32.99,IKEA,White,,FORSA,Metal,,Adjustable desk lamp
B008,UK,Coffee beans 1kg,18.45,Lavazza,,1kg,,,,Medium roast
B009,UK,Headphones,59,Sony,Black,,WH-CH520,,,Wireless on-ear headphones
B010,UK,Phone case,1e16,Spigen,Clear,,,TPU,,None
B011,UK,Board game,29.99,Catan,,,,,,Strategy board game for 3-4 players
B012,UK,Water filter jug,21,Brita,White,2.4L,Marella,Plastic,,Filters tap water
B013,UK,Sunglasses,15,,Black,,,,,UV400 lenses
B014,UK,Kitchen scale,13.49,Salter,Silver,,1066,Glass,,Digital kitchen scale
B015,UK,Backpack,45,Herschel,Navy,20L,,Polyester,,"Laptop sleeve, 15 inch"
B016,UK,Tea towels (3),8.5,John Lewis,Multi,,,Cotton,,Pack of three
B017,DE,Fahrradlicht,19.99,Sigma,Black,,,,,Nicht im UK-Katalog
B018,UK,Pencil set,3.2,Staedtler,,,,Wood,,12 HB pencils
B019,UK,Plant pot,11,,Terracotta,15cm,,Clay,,
B020,UK,Bluetooth speaker,39.99,JBL,Red,,GO 3,,,Waterproof speaker
B021,UK,Cookbook,16.99,Penguin,,,,,Yotam Ottolenghi,Simple recipes
B022,UK,Umbrella,12,Totes,Black,,,,,Compact umbrella
"""


def amazon_rows():
    ids = ["B%03d" % i for i in range(1, 23) if i != 17]
    # (prev_items, next_item): 12 and 10 previous items (10-25, as the reference keeps).
    a = ids[:12]
    b = ids[8:18]
    rows = []
    for k, (prev, nxt) in enumerate([(a, ids[12]), (b, ids[18])]):
        negs = [ids[(k * 5 + j) % len(ids)] for j in range(20)]
        rows.append({"user": "u%d" % (k + 1), "prev_items": prev, "next_item": nxt, "neg_items": negs})
    return rows


def golden(ref, dataset, rows, products):
    summ = run_summaries(ref, dataset, rows, products)
    hier_prompts, hier_finals = summ["hierarchical"]
    rec_prompts, rec_finals = summ["recurrent"]
    recommend = run_recommender(ref, dataset, rows, hier_finals, products)
    recommend_null = run_recommender(ref, dataset, rows, hier_finals, products, "no_summary", 0)
    cases = []
    for i, r in enumerate(rows):
        cands = [r["next_item"]] + r["neg_items"]
        cases.append(
            {
                "case": "c%d" % (i + 1),
                "user": r["user"],
                "history": r["prev_items"],
                "target": r["next_item"],
                "negatives": r["neg_items"],
                "hierarchical": {"prompts": hier_prompts[i], "final_summary": hier_finals[i]},
                "recurrent": {"prompts": rec_prompts[i], "final_summary": rec_finals[i]},
                "recommend": [{"candidate": c, "prompt": p} for c, p in zip(cands, recommend[i])],
                "recommend_no_summary_no_items": [
                    {"candidate": c, "prompt": p} for c, p in zip(cands, recommend_null[i])
                ],
            }
        )
    return cases


def amazon_products(tmp):
    """The reference's `build_dataset.py` reading of the hand-made catalogue."""
    path = os.path.join(tmp, "products_train.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write(AMAZON_PRODUCTS)
    df = pd.read_csv(path)
    df = df.rename(columns={"desc": "description"})
    df = df[df["locale"] == "UK"].reset_index(drop=True)
    df = df.drop(columns=["locale"])
    return df


def write_amazon_inputs(outdir, rows):
    d = os.path.join(outdir, "amazon")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "products_train.csv"), "w", encoding="utf-8") as f:
        f.write(AMAZON_PRODUCTS)
    with open(os.path.join(d, "sessions_train.csv"), "w", encoding="utf-8") as f:
        f.write("prev_items,next_item,locale\n")
        for r in rows:
            f.write('"[%s]",%s,UK\n' % (" ".join("'%s'" % i for i in r["prev_items"]), r["next_item"]))


def check(ref, mind_dir, prepared, summaries_path, dump_path):
    """Compares a `--preset reference` run on the MIND sample with the reference code."""
    _, df_products = mind_rows(mind_dir, 0)
    products = sentence_table(ref, "mind", df_products.copy())
    known = set(products["id"])
    cases = {}
    with open(os.path.join(prepared, "cases.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                c = json.loads(line)
                cases[c["case"]] = c
    # Items absent from news.tsv: the reference would fail on them; our side writes
    # `id: X`, which is what generate_sentence writes for a row with only an id.
    extra = set()
    for c in cases.values():
        extra.update(i for i in c["history"] + [c["target"]] + c["negatives"] if i not in known)
    if extra:
        products = pd.concat(
            [products, pd.DataFrame({"id": sorted(extra), "sentence": ["id: %s" % i for i in sorted(extra)]})],
            ignore_index=True,
        )
    traces = []
    with open(summaries_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                traces.append(json.loads(line))
    folder = "MIND"
    src = functions(
        os.path.join(ref, "preprocess", folder, "summary_generation.py"),
        ["summary_generation_hierarchical", "summary_generation_recurrent"],
    )
    same = differ = 0
    finals = {}
    for t in traces:
        c = cases[t["case"]]
        outputs = [s["output"] for s in t["steps"]]

        class Replay(Pipeline):
            def __call__(self, prompts, **kwargs):
                self.prompts.append(prompts)
                return [{"generated_text": outputs[len(self.prompts) - 1]}]

        pipe = Replay()
        ns = summary_namespace(pipe)
        exec(src["summary_generation_" + t["method"]], ns)
        df = pd.DataFrame({"prev_items": [c["history"]]})
        args = types.SimpleNamespace(model_size="7b", block_size=5, max_block_num=5, batch_size=1)
        df = ns["summary_generation_" + t["method"]](args, df, products)
        ours = [s["prompt"] for s in t["steps"]]
        if ours == pipe.prompts and df.at[0, "final_summary"] == t["final_summary"]:
            same += 1
        else:
            differ += 1
            print("case %s %s: prompts differ" % (t["case"], t["method"]))
        finals[(t["case"], t["method"])] = t["final_summary"]
    print("summaries: %d traces equal to the reference's prompts, %d differ" % (same, differ))
    dumped = {}
    with open(dump_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                method = d["scorer"].rsplit(":", 1)[-1]
                dumped.setdefault((d["case"], method), []).append(d)
    keys = [k for k in dumped if k in finals]
    missing = len(dumped) - len(keys)
    rows = []
    for case_id, _ in keys:
        c = cases[case_id]
        rows.append({"prev_items": c["history"], "next_item": c["target"], "neg_items": c["negatives"]})
    recommend = run_recommender(ref, "mind", rows, [finals[k] for k in keys], products)
    same = differ = 0
    for key, texts in zip(keys, recommend):
        ours = dumped[key]
        c = cases[key[0]]
        if [d["candidate"] for d in ours] != [c["target"]] + c["negatives"]:
            print("case %s %s: candidates not in the reference's order" % key)
            differ += 1
        for d, theirs in zip(ours, texts):
            if d["prompt"] == theirs:
                same += 1
            else:
                differ += 1
                print("case %s %s candidate %s: the prompt differs" % (key[0], key[1], d["candidate"]))
        differ += abs(len(ours) - len(texts))
    differ += missing
    print("recommender: %d scored prompts equal to test.py's text, %d differ" % (same, differ))
    return 0 if differ == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref")
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--mind", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mind_sample"))
    ap.add_argument("--check", nargs=3, metavar=("PREPARED", "SUMMARIES", "DUMP"))
    a = ap.parse_args()
    if a.check:
        sys.exit(check(a.ref, a.mind, *a.check))
    if not a.outdir:
        ap.error("OUTDIR is required without --check")
    os.makedirs(a.outdir, exist_ok=True)
    rows, df_products = mind_rows(a.mind, 3)
    products = sentence_table(a.ref, "mind", df_products)
    with open(os.path.join(a.outdir, "mind.json"), "w", encoding="utf-8") as f:
        json.dump(golden(a.ref, "mind", rows, products), f, indent=1, ensure_ascii=False)
        f.write("\n")
    with tempfile.TemporaryDirectory() as tmp:
        products = sentence_table(a.ref, "amazon", amazon_products(tmp))
    rows = amazon_rows()
    with open(os.path.join(a.outdir, "amazon.json"), "w", encoding="utf-8") as f:
        json.dump(golden(a.ref, "amazon", rows, products), f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_amazon_inputs(a.outdir, rows)
    print("wrote %s (mind.json, amazon.json, amazon/)" % a.outdir)


if __name__ == "__main__":
    main()
