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
"""

import argparse
import hashlib
import json
import sys

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
    args = ap.parse_args()

    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed in this Python (pip install llama-cpp-python)")

    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    cases = []
    for s in STRINGS:
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


if __name__ == "__main__":
    main()
