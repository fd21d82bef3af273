"""Benchmark: ``bertkit predict`` vs ``transformers.pipeline("text-classification")``, same model and texts.

    python bench/bench_inference.py --model-dir DIR [--data ../shared/data] [--n 2000] [--json FILE]

DIR is a fine-tuned classifier (``bench/run_all.py`` passes the one ``bench_finetune.py`` trained;
``bertkit finetune recipes/quickstart.yaml`` makes another). The texts are the last N reviews of
``imdb/train.jsonl`` in a seeded order (long texts: median ~230 words).

- baseline: ``pipeline("text-classification", model=DIR)`` called on the list of texts with its
  defaults (one text at a time, fp32); ``truncation=True`` is the one setting added, without which
  reviews longer than the model's 512 positions crash it;
- bertkit: ``bertkit predict DIR FILE`` as a user runs it (length-sorted batches, bf16 autocast where
  the CPU has it, streamed JSONL in and out), with ``classification.truncation=head`` so both sides
  see the same 512 tokens of each review.

Timed per side: from loading the model to the last prediction, in a fresh process. Label agreement
is the share of texts both give the same label. Utilisation is the model's FLOP/s on the real
(unpadded, truncated) tokens over the matmul peak measured in that process in the dtype it ran in;
the ratio of the two peaks (bf16 / fp32) is what bf16 alone can buy at equal utilisation.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def side_bertkit(args, texts_file: Path, work: Path) -> list[str]:
    from bertkit import evaluation

    out = work / "predictions.jsonl"
    evaluation.predict(args.model_dir, str(texts_file), output=str(out), overrides=["classification.truncation=head"],
                       batch_size=args.batch_size)
    return [row["label"] for row in common.read_jsonl(out)]


def side_baseline(args, texts_file: Path, work: Path) -> list[str]:
    import torch
    from transformers import pipeline

    texts = [row["text"] for row in common.read_jsonl(texts_file)]
    classifier = pipeline("text-classification", model=args.model_dir, device=0 if torch.cuda.is_available() else -1)
    return [r["label"] for r in classifier(texts, truncation=True)]


def child(args) -> None:
    texts_file = Path(args.texts)
    n = sum(1 for _ in texts_file.open(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        labels = (side_bertkit if args.side == "bertkit" else side_baseline)(args, texts_file, Path(tmp))
        seconds = time.perf_counter() - started
    result = {"seconds": round(seconds, 2), "texts_per_s": round(n / seconds, 2), "texts": n, "labels": labels}
    result.update(utilisation(args, texts_file, seconds))
    common.write_result(args.result, result)


def utilisation(args, texts_file: Path, seconds: float) -> dict:
    """Model FLOP/s on the real tokens both sides see, over this process's matmul peak in its dtype."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertkit.hardware import resolve_precision

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    texts = [row["text"] for row in common.read_jsonl(texts_file)]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir)
    precision = resolve_precision("auto", "cpu") if args.side == "bertkit" else "fp32"
    flops = common.model_flops(model, lengths, passes=1)
    peak = common.matmul_peak(precision)
    return {"precision": precision, "real_tokens_per_s": round(sum(lengths) / seconds, 1),
            "model_tflops": round(flops / seconds / 1e12, 4), "matmul_peak_tflops": round(peak / 1e12, 4),
            "utilisation": round(flops / seconds / peak, 4)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    common.add_common_args(parser)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        child(args)
        return {}
    source = Path(args.data) / "imdb" / "train.jsonl"
    if not source.exists():
        sys.exit(f"{source} not found: pass --data")
    rows = common.read_jsonl(source)
    random.Random(args.seed).shuffle(rows)
    rows = rows[-args.n:]  # bench_finetune draws its subset from the front of the same order
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.jsonl"
        texts.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows), encoding="utf-8")
        passed = ["--model-dir", args.model_dir, "--batch-size", str(args.batch_size), "--texts", str(texts)]
        results = {side: common.run_side(Path(__file__), side, passed, Path(tmp) / f"{side}.json")
                   for side in ("bertkit", "baseline")}
    ours, theirs = results["bertkit"].pop("labels"), results["baseline"].pop("labels")
    agreement = sum(a == b for a, b in zip(ours, theirs)) / max(len(ours), 1)
    speedup = results["bertkit"]["texts_per_s"] / results["baseline"]["texts_per_s"]
    report = {"benchmark": "inference", "machine": common.machine(), "model_dir": args.model_dir, "texts": len(rows),
              "results": results, "label_agreement": round(agreement, 4), "ratios": {"texts_per_s": round(speedup, 2)}}
    print(common.table(f"inference: {len(rows)} IMDb reviews, model {args.model_dir}",
                       [("seconds", "time (s)"), ("texts_per_s", "texts/s"), ("real_tokens_per_s", "real tokens/s"),
                        ("peak_rss_mib", "peak RSS (MiB)"), ("precision", "precision"),
                        ("model_tflops", "model TFLOP/s (real tokens)"), ("matmul_peak_tflops", "matmul peak TFLOP/s"),
                        ("utilisation", "utilisation (model / peak)")],
                       results["bertkit"], results["baseline"], {}))
    print(f"  speed-up (texts/s): {speedup:.2f}x; label agreement: {100 * agreement:.2f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
