#!/usr/bin/env python3
"""Record llama.cpp's token ids (and chat-template renderings) for a GGUF, as test data.

Usage:
    python3 -m venv /tmp/venv-llama && /tmp/venv-llama/bin/pip install llama-cpp-python jinja2
    /tmp/venv-llama/bin/python scripts/record_tokenizer_ids.py \
        --model ~/.cache/trsr/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/data/tokenizer_ids_smollm2.json

The model is loaded with vocab_only=True (no weights). Each string is tokenized with
add_bos=True (llama.cpp adds BOS only if the model asks for it) and special=True (control
tokens written in the text, like <|im_start|>, are parsed as special), which is what
`trsr::llm::tokenizer::Tokenizer::encode(text, true)` promises. tests/llm_tokenizer.rs
compares our tokenizer with these ids.

Two more recordings check paths the default model does not take, still against llama.cpp:

    # the same vocabulary under another pre-tokenizer (regex set) of llama.cpp
    ... record_tokenizer_ids.py --model M.gguf --pre qwen2 --out tests/data/tokenizer_ids_smollm2_pre_qwen2.json
    # a small hand-made SentencePiece vocabulary (hyperparameters copied from M so llama.cpp loads it)
    ... record_tokenizer_ids.py --model M.gguf --spm-handmade --out tests/data/tokenizer_ids_spm_handmade.json

Both write a vocabulary-only GGUF (no tensors) to a temporary file and load that in llama.cpp.
"""

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import tempfile

STRINGS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "café naïve résumé Zürich Ærøskøbing façade",
    "I love 🦀 and 🚀! 👍🏽 👨‍👩‍👧 ❤️",
    "你好，世界。日本語のテキストです。한국어 문장",
    "Привет, мир! Ελληνικά. مرحبا بالعالم",
    "line one\nline two\n\n\tindented\r\nwindows\n",
    "\n\n\n",
    "a  b   c    d     e\t\tf",
    "   leading spaces",
    "trailing spaces   ",
    " yes",
    " no",
    "yes",
    "no",
    "Yes",
    "No",
    " Yes",
    "In 2024, 1234567 items cost $3.14 (about 42%) on 12/31.",
    "I'm sure they'll say it's what we'd've done; DON'T",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nIs this relevant? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_end|><|im_start|>",
    "text<|endoftext|>more",
    "fn main() {\n    println!(\"{}\", x);\n}\n",
    "id: N12345; category: news; subcategory: technology; title: Microsoft's new AI model beats benchmarks",
    "non\u00a0breaking\u2003em-space\u3000ideographic",
    "mixed123numbers456and789letters",
    "!!!???...,,,;;;",
    "x" * 200,
]

# Chat-template cases: (messages, add_generation_prompt).
CHATS = [
    ([{"role": "user", "content": "hi"}], True),
    ([{"role": "user", "content": "hi"}], False),
    (
        [
            {"role": "system", "content": "You are a news recommender."},
            {"role": "user", "content": "Summarize the user's interests."},
            {"role": "assistant", "content": "They like technology."},
            {"role": "user", "content": "Is the candidate relevant? Answer yes or no."},
        ],
        True,
    ),
    ([{"role": "user", "content": "  spaced  \n\ncontent\t"}], True),
]


# ---- minimal GGUF metadata reader / writer (no tensors) ------------------------------------

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
T_STRING, T_ARRAY, T_BOOL, T_U32, T_I32, T_F32 = 8, 9, 7, 4, 5, 6


def read_gguf_metadata(path):
    """[(key, type, value)]; arrays are (element_type, [values])."""
    with open(path, "rb") as f:
        def r(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def rs():
            return f.read(r("Q")).decode("utf-8", "surrogateescape")

        def rv(t):
            if t == T_STRING:
                return rs()
            if t == T_ARRAY:
                et = r("I")
                n = r("Q")
                return (et, [rv(et) for _ in range(n)])
            return r(_SCALAR[t])

        if f.read(4) != b"GGUF":
            sys.exit(f"{path}: not a GGUF file")
        r("I")
        r("Q")
        n_kv = r("Q")
        out = []
        for _ in range(n_kv):
            k = rs()
            t = r("I")
            out.append((k, t, rv(t)))
        return out


def write_gguf_metadata(path, kvs):
    def ws(f, x):
        b = x.encode("utf-8", "surrogateescape")
        f.write(struct.pack("<Q", len(b)))
        f.write(b)

    def wv(f, t, v):
        if t == T_STRING:
            ws(f, v)
        elif t == T_ARRAY:
            et, items = v
            f.write(struct.pack("<IQ", et, len(items)))
            for item in items:
                wv(f, et, item)
        else:
            f.write(struct.pack("<" + _SCALAR[t], v))

    with open(path, "wb") as f:
        f.write(b"GGUF")
        f.write(struct.pack("<IQQ", 3, 0, len(kvs)))
        for k, t, v in kvs:
            ws(f, k)
            f.write(struct.pack("<I", t))
            wv(f, t, v)
        f.write(b"\0" * ((32 - f.tell() % 32) % 32))


# The hand-made SentencePiece vocabulary; tests/llm_tokenizer.rs reads it back from the JSON.
SPM_PIECES = [
    "▁", "h", "e", "l", "o", "w", "r", "d", "a", "i", "n", "ll", "he", "▁h", "llo", "▁he", "▁hello", "or", "▁w",
    "▁wor", "ld", "▁world", "an", "▁a", "▁an", "in", "hi", "▁hi", "▁▁", "ol", "lo", "▁▁▁", "▁l", "▁lo", "ow", "▁low",
    "er", "▁lower", "ne", "new", "▁new", "wer", "ra", "ar", "▁ra", "dr", "▁d", "▁r",
]


def spm_vocab():
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
    types = [2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES)
    # Single characters score lowest; merged pieces in listed order, all distinct.
    scores = [0.0] * 259 + [(-1000.0 - i) if len(p) == 1 else float(-i) for i, p in enumerate(SPM_PIECES)]
    return tokens, scores, types


def spm_strings():
    rng = random.Random(20241126)
    alphabet = "helowrdanié z\n\t"
    out = ["hello world", " hello", "  hello  world ", "lower newer", "<s>hi</s>hello", "hi\né", "ééé", "🦀 crab", ""]
    for _ in range(300):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24))))
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def render_chats(template, bos, eos):
    """Render with jinja2 the way transformers and llama-cpp-python do."""
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        print("jinja2 is not installed: chat renderings not recorded", file=sys.stderr)
        return None, None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    tmpl = env.from_string(template)
    out = []
    for messages, add_gen in CHATS:
        text = tmpl.render(
            messages=messages,
            add_generation_prompt=add_gen,
            bos_token=bos,
            eos_token=eos,
            raise_exception=raise_exception,
        )
        out.append({"messages": messages, "add_generation_prompt": add_gen, "rendered": text})
    return out, jinja2.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--pre", help="record under this tokenizer.ggml.pre instead of the file's own")
    ap.add_argument("--spm-handmade", action="store_true", help="record the hand-made SentencePiece vocabulary")
    ap.add_argument("--extra-strings", help="a text file: one more string per line (for ad-hoc checks)")
    args = ap.parse_args()

    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed in this Python (pip install llama-cpp-python)")

    strings = list(STRINGS)
    if args.extra_strings:
        with open(args.extra_strings, encoding="utf-8") as f:
            strings += [line.rstrip("\n").replace("\\n", "\n") for line in f]

    if args.pre or args.spm_handmade:
        record_variant(llama_cpp, args, strings)
        return

    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    cases = []
    for s in strings:
        ids = llm.tokenize(s.encode("utf-8"), add_bos=True, special=True)
        back = llm.detokenize(ids, special=True).decode("utf-8", errors="replace")
        cases.append({"text": s, "ids": ids, "llama_cpp_detokenized": back})

    meta = llm.metadata
    template = meta.get("tokenizer.chat_template")
    bos_id = llm.token_bos()
    eos_id = llm.token_eos()
    bos = llm._model.token_get_text(bos_id) if bos_id >= 0 else ""
    eos = llm._model.token_get_text(eos_id) if eos_id >= 0 else ""
    chats, jinja_version = (None, None)
    if template:
        chats, jinja_version = render_chats(template, bos, eos)

    # llama-cpp-python's own chat formatter, for the first chat (it always opens the assistant turn).
    formatter_prompt = None
    if template:
        try:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            formatter_prompt = fmt(messages=CHATS[0][0]).prompt
        except Exception as e:  # the formatter's signature changes between versions
            print(f"Jinja2ChatFormatter not used: {e}", file=sys.stderr)

    record = {
        "model_file": args.model.rsplit("/", 1)[-1],
        "model_sha256": sha256(args.model),
        "llama_cpp_python_version": llama_cpp.__version__,
        "jinja2_version": jinja_version,
        "tokenize": {"add_bos": True, "special": True},
        "bos_id": bos_id,
        "eos_id": eos_id,
        "vocab_size": llm.n_vocab(),
        "cases": cases,
        "chat_template": template,
        "chats": chats,
        "llama_cpp_formatter_prompt": formatter_prompt,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} strings to {args.out}")


def tokenize_all(llm, strings):
    return [{"text": s, "ids": llm.tokenize(s.encode("utf-8"), add_bos=True, special=True)} for s in strings]


def record_variant(llama_cpp, args, strings):
    """A vocabulary-only GGUF derived from --model, tokenized by llama.cpp."""
    kvs = read_gguf_metadata(args.model)
    record = {
        "source_model_file": os.path.basename(args.model),
        "source_model_sha256": sha256(args.model),
        "llama_cpp_python_version": llama_cpp.__version__,
        "tokenize": {"add_bos": True, "special": True},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vocab.gguf")
        if args.pre:
            kvs = [(k, t, args.pre if k == "tokenizer.ggml.pre" else v) for k, t, v in kvs]
            write_gguf_metadata(path, kvs)
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            record["pre"] = args.pre
            record["cases"] = tokenize_all(llm, strings)
        else:
            hparams = [(k, t, v) for k, t, v in kvs if k.startswith("general.") or k.startswith("llama.")]
            tokens, scores, types = spm_vocab()
            spm_strs = spm_strings()
            record["vocab"] = {"tokens": tokens, "scores": scores, "types": types}
            record["variants"] = []
            for add_space_prefix in (True, False):
                write_gguf_metadata(path, hparams + [
                    ("tokenizer.ggml.model", T_STRING, "llama"),
                    ("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens)),
                    ("tokenizer.ggml.scores", T_ARRAY, (T_F32, scores)),
                    ("tokenizer.ggml.token_type", T_ARRAY, (T_I32, types)),
                    ("tokenizer.ggml.bos_token_id", T_U32, 1),
                    ("tokenizer.ggml.eos_token_id", T_U32, 2),
                    ("tokenizer.ggml.unknown_token_id", T_U32, 0),
                    ("tokenizer.ggml.add_space_prefix", T_BOOL, add_space_prefix),
                ])
                llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
                record["variants"].append({"add_space_prefix": add_space_prefix, "cases": tokenize_all(llm, spm_strs)})
                del llm
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
