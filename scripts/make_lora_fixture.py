#!/usr/bin/env python3
"""Writes tests/data/lora/: a tiny random Llama (Hugging Face safetensors), a PEFT LoRA
adapter on it, and what PyTorch + PEFT compute with them, for tests/lora.rs.

Run once (the output is committed):
    python3 -m venv /tmp/venv-peft && /tmp/venv-peft/bin/pip install torch transformers peft
    /tmp/venv-peft/bin/python scripts/make_lora_fixture.py

Recorded in expected.json:
  ids            the input token ids
  base_logits    logits [len, vocab] of the base model
  lora_logits    logits [len, vocab] with the adapter (PeftModel)
  target         a token id; loss = -log softmax(lora_logits[-1])[target]
  loss           that loss as PyTorch computes it
  grads          d loss / d lora_A and lora_B for a few modules (PEFT tensor names)
  versions       torch / transformers / peft versions
"""
import json
import os
import sys

import torch
import transformers
import peft
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "lora")
torch.manual_seed(1234)

config = LlamaConfig(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    initializer_range=0.2,
    bos_token_id=1,
    eos_token_id=2,
)
base = LlamaForCausalLM(config).float().eval()
base_dir = os.path.join(OUT, "tiny-llama")
os.makedirs(base_dir, exist_ok=True)
base.save_pretrained(base_dir, safe_serialization=True)
for extra in ("generation_config.json",):
    p = os.path.join(base_dir, extra)
    if os.path.exists(p):
        os.remove(p)

ids = torch.tensor([[1, 5, 17, 42, 8, 63, 2, 11, 90, 33, 7, 64]])
with torch.no_grad():
    base_logits = base(ids).logits[0]

lcfg = LoraConfig(
    r=4,
    lora_alpha=8,
    lora_dropout=0.0,
    # gate_proj left out on purpose: the update of up_proj sits after gate's rows in our
    # stacked gate|up matrix.
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
    bias="none",
    task_type="CAUSAL_LM",
    init_lora_weights=False,  # random B too, so the update is not zero
)
model = get_peft_model(base, lcfg)
model.peft_config["default"].base_model_name_or_path = "tiny-llama"
model.eval()
# Scale the random weights so that the update is clearly visible in the logits.
with torch.no_grad():
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.mul_(3.0)
adapter_dir = os.path.join(OUT, "adapter")
model.save_pretrained(adapter_dir, safe_serialization=True)
readme = os.path.join(adapter_dir, "README.md")
if os.path.exists(readme):
    os.remove(readme)

target = 42
logits = model(ids).logits[0]
loss = -torch.log_softmax(logits[-1], dim=-1)[target]
loss.backward()
grads = {}
for n, p in model.named_parameters():
    if p.grad is None:
        continue
    if any(k in n for k in ("layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj",
                             "layers.1.self_attn.o_proj", "layers.1.mlp.down_proj",
                             "layers.0.mlp.up_proj")):
        name = n.replace(".default", "")
        grads[name] = p.grad.tolist()

expected = {
    "ids": ids[0].tolist(),
    "base_logits": base_logits.tolist(),
    "lora_logits": logits.detach().tolist(),
    "target": target,
    "loss": loss.item(),
    "grads": grads,
    "versions": {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": sys.version.split()[0],
    },
}
with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f)
print("wrote", OUT, "loss", loss.item(), "grads for", sorted(grads))
