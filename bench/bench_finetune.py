"""Benchmark: fine-tuning with bertkit vs the textbook Trainer recipe, same model, data and settings.

    python bench/bench_finetune.py [--data ../shared/data] [--train 800] [--eval 400] [--epochs 1]
                                   [--batch-size 16] [--lr 1e-4] [--max-length 512] [--json FILE]

A fixed, seeded subset of ``imdb/train.jsonl`` (split into train and eval), the MiniLM encoder
(``minilm-l6``), ``max_length=512``, the same epochs, batch size, learning rate, warm-up and seed:

- baseline: what most tutorials do — ``tokenizer(..., padding="max_length", truncation=True)``,
  fp32, the stock ``Trainer`` with its defaults otherwise (random batches, no evaluation or
  checkpoints during training);
- bertkit: ``recipes/imdb.yaml`` as shipped (dynamic padding, length-grouped batches, bf16 autocast
  where the CPU has it, head+tail truncation) with the same settings, evaluation and checkpoints
  during training switched off so both sides time the same work.

Reported per side: wall time (whole child process: load, tokenise, train, evaluate), training
seconds and samples/s, tokens/s (real tokens, and padded tokens actually computed), peak RSS,
eval accuracy, and utilisation: model FLOP/s on real tokens (6 x non-embedding parameters x tokens,
plus 12 x layers x hidden x length^2 per sequence for attention, forward and backward) divided by
the matmul peak measured in the same process in the dtype that side trains in.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def side_bertkit(args, paths: dict[str, Path], work: Path) -> dict:
    from bertkit import hardware
    from bertkit import recipe as recipe_mod
    from bertkit import train

    recipe = recipe_mod.load(str(common.REPO / "recipes" / "imdb.yaml"), [
        f"model={args.model}", "data.dataset=null", f"data.train={paths['train']}",
        f"data.validation={paths['eval']}", "data.test=null", f"max_length={args.max_length}", f"seed={args.seed}",
        f"training.num_train_epochs={args.epochs}", f"training.per_device_train_batch_size={args.batch_size}",
        f"training.learning_rate={args.lr}", f"training.warmup_steps={args.warmup}", "training.eval_strategy=no",
        "training.save_strategy=no", f"output_dir={work}",
    ])
    metrics = train.run(recipe, overwrite=True)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(work))
    t = metrics["train"]
    precision = hardware.resolve_precision(recipe.precision)
    return {"accuracy": metrics["validation"]["accuracy"], "train_seconds": t["seconds"],
            "padded_tokens": t["tokens_padded"] * args.epochs, "precision": precision,
            "model_dir": str(work), "_model": model}


def side_baseline(args, paths: dict[str, Path], work: Path) -> dict:
    import numpy as np
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from bertkit import models

    set_seed(args.seed)
    path = models.resolve(args.model)[0]
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = load_dataset("json", data_files={"train": str(paths["train"]), "eval": str(paths["eval"])})
    encoded = raw.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=args.max_length),
                      batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    targs = TrainingArguments(output_dir=str(work / "baseline"), num_train_epochs=args.epochs,
                              per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                              warmup_steps=args.warmup, seed=args.seed, save_strategy="no", report_to="none",
                              use_cpu=not __import__("torch").cuda.is_available())
    trainer = Trainer(model=model, args=targs, train_dataset=encoded["train"])
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    predictions = trainer.predict(encoded["eval"])
    accuracy = float(np.mean(predictions.predictions.argmax(-1) == np.array(raw["eval"]["label"])))
    return {"accuracy": round(accuracy, 4), "train_seconds": round(seconds, 1),
            "padded_tokens": len(encoded["train"]) * args.max_length * args.epochs, "precision": "fp32",
            "_model": model}


def child(args) -> None:
    import torch

    paths = {"train": Path(args.subset) / "train.jsonl", "eval": Path(args.subset) / "eval.jsonl"}
    lengths = json.loads((Path(args.subset) / "lengths.json").read_text())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep and args.side == "bertkit" else Path(tmp) / args.side
        result = (side_bertkit if args.side == "bertkit" else side_baseline)(args, paths, work)
        wall = time.perf_counter() - started
        model = result.pop("_model")
        n_train = len(lengths)
        real = sum(lengths) * args.epochs
        flops = args.epochs * common.model_flops(model, lengths, passes=3)
        peak = common.matmul_peak(result["precision"])
    result.update({
        "wall_seconds": round(wall, 1),
        "train_samples_per_s": round(n_train * args.epochs / result["train_seconds"], 3),
        "real_tokens_per_s": round(real / result["train_seconds"], 1),
        "padded_tokens_per_s": round(result["padded_tokens"] / result["train_seconds"], 1),
        "padding_fraction": round(1 - real / result["padded_tokens"], 4),
        "model_tflops": round(flops / result["train_seconds"] / 1e12, 4),
        "matmul_peak_tflops": round(peak / 1e12, 4),
        "utilisation": round(flops / result["train_seconds"] / peak, 4),
        "threads": torch.get_num_threads(),
    })
    common.write_result(args.result, result)


ROWS = [("wall_seconds", "wall time (s)"), ("train_seconds", "training time (s)"),
        ("train_samples_per_s", "training samples/s"), ("real_tokens_per_s", "real tokens/s"),
        ("padded_tokens_per_s", "computed (padded) tokens/s"), ("padding_fraction", "padding fraction"),
        ("peak_rss_mib", "peak RSS (MiB)"), ("accuracy", "eval accuracy"), ("precision", "precision"),
        ("model_tflops", "model TFLOP/s (real tokens)"), ("matmul_peak_tflops", "matmul peak TFLOP/s"),
        ("utilisation", "utilisation (model / peak)")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--eval", type=int, default=400)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=0.06, help="warm-up steps, or a fraction of them when < 1")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", help="keep bertkit's fine-tuned model in this directory (for bench_inference)")
    parser.add_argument("--sides", default="bertkit,baseline")
    common.add_common_args(parser)
    parser.add_argument("--subset", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        child(args)
        return {}

    from transformers import AutoTokenizer

    from bertkit import models

    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "subset"
        paths = common.imdb_subset(Path(args.data), args.train, args.eval, args.seed, subset)
        tokenizer = AutoTokenizer.from_pretrained(models.resolve(args.model)[0])
        texts = [row["text"] for row in common.read_jsonl(paths["train"])]
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
        (subset / "lengths.json").write_text(json.dumps(lengths))
        passed = ["--subset", str(subset)]
        for key in ("model", "epochs", "batch_size", "lr", "warmup", "max_length", "seed", "keep"):
            if getattr(args, key) is not None:
                passed += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        results = {side: common.run_side(Path(__file__), side, passed, Path(tmp) / f"{side}.json")
                   for side in args.sides.split(",")}
    report = {"benchmark": "finetune", "machine": common.machine(), "settings": {
        k: getattr(args, k) for k in ("model", "train", "eval", "epochs", "batch_size", "lr", "warmup", "max_length", "seed")},
        "results": results}
    if "bertkit" in results and "baseline" in results:
        b, base = results["bertkit"], results["baseline"]
        report["ratios"] = {"train_samples_per_s": round(b["train_samples_per_s"] / base["train_samples_per_s"], 2),
                            "accuracy_points": round(100 * (b["accuracy"] - base["accuracy"]), 2)}
        print(common.table(f"fine-tuning: {args.model}, IMDb {args.train} train / {args.eval} eval, max_length "
                           f"{args.max_length}, {args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr}",
                           ROWS, b, base, {}))
        print(f"  speed-up (training samples/s): {report['ratios']['train_samples_per_s']}x; accuracy difference: "
              f"{report['ratios']['accuracy_points']:+.2f} points")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
