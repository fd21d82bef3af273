"""Benchmark: long IMDb reviews read head-only, head+tail, or whole in windows (issue 31).

    python bench/bench_windows.py [--lengths 128,256] [--modes head,head_tail,windows] [--seeds 3] [--json FILE]

``imdb/train.jsonl`` in a fixed seeded order (``common.imdb_subset``, seed 0): 2,000 reviews to train on,
the next 1,000 to test. Each run is one ``bertkit finetune recipes/imdb.yaml`` with MiniLM-L6, 1 epoch
at 5e-5, batch 16 (the parity settings), timed as a whole command, at each max_length and
``classification.truncation``: ``head``; ``head_tail`` with a quarter of the tokens from the head
(Sun et al. 2019 kept 128 of 512); ``windows`` with the defaults (overlap a quarter of max_length,
at most 8 windows, mean of the logits). Accuracy is reported on all test reviews and on those longer
than max_length (counted with the model's own tokenizer), mean +- std over seeds, with the training
windows per review and the time per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

BERTKIT = str(Path(sys.executable).parent / "bertkit")


def run(files: dict[str, Path], max_length: int, mode: str, seed: int, out: Path) -> dict:
    done = out.with_name(out.name + ".run.json")  # a run finished earlier (the bench was restarted): reuse it
    if done.is_file() and (out / "metrics.json").is_file():
        return {**json.loads(done.read_text()), "metrics": json.loads((out / "metrics.json").read_text())}
    command = [BERTKIT, "finetune", str(common.REPO / "recipes" / "imdb.yaml"), "model=minilm-l6", "data.dataset=null",
               f"data.train={files['train']}", "data.validation=null", f"data.test={files['eval']}",
               f"output_dir={out}", f"max_length={max_length}", "training.num_train_epochs=1",
               "training.learning_rate=5e-5", "training.per_device_train_batch_size=16", f"seed={seed}",
               f"classification.truncation={mode}", "--overwrite", "--quiet"]
    if mode == "head_tail":
        command.append(f"classification.head_tokens={(max_length - 2) // 4}")
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    done.write_text(json.dumps({"seconds": round(seconds, 1)}))
    return {"seconds": round(seconds, 1), "metrics": metrics}


def long_mask(model_dir: Path, eval_file: Path, max_length: int) -> list[bool]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [row["text"] for row in common.read_jsonl(eval_file)]
    return [len(ids) > max_length for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


def accuracy(model_dir: Path, mask: list[bool] | None) -> float:
    rows = common.read_jsonl(model_dir / "predictions.jsonl")
    chosen = [r for r, keep in zip(rows, mask or [True] * len(rows)) if keep]
    return sum(str(r["label"]) == str(r["gold"]) for r in chosen) / len(chosen)


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} +- {100 * statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--lengths", default="128,256")
    parser.add_argument("--modes", default="head,head_tail,windows")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-windows-"))
    files = common.imdb_subset(Path(args.data), 2000, 1000, 0, out / "data")
    report: dict = {"benchmark": "windows", "machine": common.machine(), "settings": vars(args), "rows": []}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    modes = args.modes.split(",")
    for max_length in map(int, args.lengths.split(",")):
        mask = None
        rows = {mode: {"max_length": max_length, "mode": mode, "runs": []} for mode in modes}
        for seed in seeds:  # the modes side by side within a seed: whatever else the machine does hits all alike
            for mode in modes:
                target = out / f"{max_length}-{mode}-{seed}"
                r = run(files, max_length, mode, seed, target)
                if mask is None:
                    mask = long_mask(target, files["eval"], max_length)
                r.update(accuracy=accuracy(target, None), accuracy_long=accuracy(target, mask), seed=seed)
                r["train_windows"] = r["metrics"]["data"]["lengths"]["train"].get("windows", 2000)
                print(f"[{time.strftime('%H:%M:%S')}] max_length {max_length} {mode} seed {seed}: accuracy "
                      f"{r['accuracy']:.4f}, long {r['accuracy_long']:.4f}, {r['seconds']} s, "
                      f"{r['train_windows']} training rows", file=sys.stderr, flush=True)
                r.pop("metrics")
                rows[mode]["runs"].append(r)
        for row in rows.values():
            row["long_reviews"] = sum(mask)
            report["rows"].append(row)
    print(f"\nIMDb, MiniLM-L6, 2,000 train / 1,000 test reviews, 1 epoch; seeds {seeds.start}..{seeds.stop - 1}; "
          "accuracy in points (mean +- std)")
    print(f"{'max_length':>10} {'truncation':>10} {'all':>15} {'long reviews':>22} {'train rows':>10} {'s/run':>7}")
    for row in report["rows"]:
        runs = row["runs"]
        print(f"{row['max_length']:>10} {row['mode']:>10} {fmt([r['accuracy'] for r in runs]):>15} "
              f"{fmt([r['accuracy_long'] for r in runs]):>15} (n={row['long_reviews']}) "
              f"{runs[0]['train_windows']:>10} {statistics.mean(r['seconds'] for r in runs):>7.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
