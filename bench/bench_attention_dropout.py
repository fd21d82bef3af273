"""One MiniLM training step (forward + backward), attention dropout 0.1 vs 0, bf16 autocast vs fp32.

    python bench/bench_attention_dropout.py [--length 384] [--batch 16]

Why bertkit trains with ``attention_dropout: 0.0`` by default: PyTorch's fused scaled-dot-product
attention kernel on CPU has no dropout, so with attention dropout it falls back to the unfused path.
Prints the best of three steps for each setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def step_seconds(path: str, dropout: float, precision: str, length: int, batch: int, reps: int = 3) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, attention_probs_dropout_prob=dropout)
    model.train()
    ids = torch.randint(1000, 20000, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    labels = torch.randint(0, 2, (batch,))
    times = []
    for i in range(reps + 1):  # the first step warms up and is not counted
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        model.zero_grad()
        if i:
            times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--length", type=int, default=384)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    from bertkit import models

    path = models.resolve(args.model)[0]
    for precision in ("bf16", "fp32"):
        with_dropout = step_seconds(path, 0.1, precision, args.length, args.batch)
        without = step_seconds(path, 0.0, precision, args.length, args.batch)
        print(f"{precision}: attention dropout 0.1 {with_dropout:.2f} s/step, 0.0 {without:.2f} s/step "
              f"({with_dropout / without:.2f}x), batch {args.batch} x {args.length} tokens")


if __name__ == "__main__":
    main()
