"""Check that ``bertkit.nn.BertEncoder`` reproduces ``transformers.BertModel`` on the real MiniLM weights.

    python bench/check_nn_minilm.py [--data ../shared/data] [--batch 16]

Loads all-MiniLM-L6-v2 (alias ``minilm-l6``) twice: with ``transformers`` (eager attention, so the
attention weights are materialised) and with ``BertEncoder.from_pretrained``, which reads the same
config.json and safetensors without ``transformers``. A padded batch of real texts (IMDb reviews,
some cut at 256 tokens, PubMed sentences, Japanese reviews) and a sentence pair with token_type_ids
go through both, in fp32. Prints the max absolute difference of last_hidden_state (all positions
and real tokens only), pooler_output and every layer's attention weights, and also compares with
transformers' SDPA attention path. Exits 1 if any exceeds 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOLERANCE = 1e-4


def load_texts(data: Path, n: int) -> list[str]:
    texts = []
    with open(data / "imdb" / "train.jsonl", encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for _, line in zip(range(n // 2), fh)]
    with open(data / "ncbi_disease" / "abstract_sentences.txt", encoding="utf-8") as fh:
        texts += [line.strip() for _, line in zip(range(n // 4), fh)]
    with open(data / "ja_sentiment" / "train.jsonl", encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for _, line in zip(range(n - len(texts)), fh)]
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from bertkit import models
    from bertkit.nn import BertEncoder

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    model_dir, _ = models.resolve("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    eager = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    sdpa = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    ours = BertEncoder.from_pretrained("minilm-l6")

    texts = load_texts(Path(args.data), args.batch)
    batches = {
        "texts": tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt"),
        "pair": tokenizer(["A man is playing a guitar."], ["Someone plays an instrument."], return_tensors="pt"),
    }
    worst = 0.0
    for name, batch in batches.items():
        with torch.inference_mode():
            ref = eager(**batch, output_attentions=True)
            fast = sdpa(**batch)
            got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        real = batch["attention_mask"].bool()
        diffs = {
            "last_hidden_state": (got.last_hidden_state - ref.last_hidden_state).abs().max(),
            "last_hidden_state (real tokens)": (got.last_hidden_state - ref.last_hidden_state)[real].abs().max(),
            "pooler_output": (got.pooler_output - ref.pooler_output).abs().max(),
            "attentions (all 6 layers)": max((a - b).abs().max() for a, b in zip(got.attentions, ref.attentions)),
            "last_hidden_state vs transformers sdpa (real tokens)":
                (got.last_hidden_state - fast.last_hidden_state)[real].abs().max(),
        }
        shape = tuple(batch["input_ids"].shape)
        print(f"{name}: batch {shape[0]} x {shape[1]} tokens, {int(real.sum())} real")
        for key, value in diffs.items():
            print(f"  {key:<55} max abs difference {float(value):.3e}")
            worst = max(worst, float(value))
    print(f"{'PASS' if worst <= TOLERANCE else 'FAIL'}: worst {worst:.3e} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
