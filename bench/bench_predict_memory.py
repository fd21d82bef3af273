"""Benchmark: ``bertkit predict`` memory stays flat as the input grows (10,000 vs 100,000 lines).

    python bench/bench_predict_memory.py [--model-dir DIR] [--lines 10000 100000] [--json FILE]

Each size runs ``python -m bertkit predict MODEL input.txt --output preds.jsonl`` in its own child
process and reads that child's peak RSS from ``os.wait4`` (``ru_maxrss``), so nothing is shared
between sizes. Predict streams its input in chunks of 2,048 lines and writes each chunk's lines at
once, so the peak should not depend on the number of lines: the table prints the peak of each size
and the ratio largest / smallest (flat: under 1.10).

``--model-dir`` takes any saved classifier, e.g. the output of
``bertkit finetune recipes/quickstart.yaml``; without it a tiny random BERT classifier (2 layers,
width 32) is built in a temporary directory, which makes the check about bertkit's own buffers
rather than the model. Inputs are generated, seeded English-like lines of 3 to 60 words. Not a
test: ``make bench`` does not run it either; run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS = ("the a movie film plot acting story was is very really not good great bad awful boring fun "
         "wonderful terrible music cast ending it this of and at all quite show").split()


def tiny_classifier(directory: Path) -> Path:
    """A random 2-layer BERT sequence classifier with a WordPiece vocabulary over WORDS."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS + letters + [f"##{c}" for c in letters]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(directory / "vocab.txt"), model_max_length=128)
    (directory / "vocab.txt").unlink()
    tokenizer.save_pretrained(directory)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2,
                        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


def write_input(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            fh.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))) + ".\n")


def run_predict(model_dir: Path, source: Path, output: Path) -> dict:
    """One child process; its wall time and its own peak RSS (Linux reports ru_maxrss in KiB)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bertkit", "predict", str(model_dir), str(source),
                             "--output", str(output)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()  # read before waiting, so a full pipe cannot block the child
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"bertkit predict failed (exit {proc.returncode}):\n{stderr.decode(errors='replace')[-3000:]}")
    with output.open(encoding="utf-8") as fh:
        written = sum(1 for _ in fh)
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "written": written}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="a saved classifier (default: a tiny random one built here)")
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bertkit-predict-mem-") as tmp:
        work = Path(tmp)
        if args.model_dir:
            model_dir = Path(args.model_dir)
        else:
            model_dir = work / "model"
            model_dir.mkdir()
            tiny_classifier(model_dir)
        results = {}
        for n in sorted(args.lines):
            source = work / f"input-{n}.txt"
            write_input(source, n)
            print(f"predicting {n:,} lines ...", flush=True)
            results[n] = run_predict(model_dir, source, work / f"preds-{n}.jsonl")
            if results[n]["written"] != n:
                sys.exit(f"{n} input lines but {results[n]['written']} predictions")
    small, large = results[min(results)], results[max(results)]
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    print(f"\nmodel: {args.model_dir or 'tiny random BERT classifier (2 layers, width 32)'}")
    print(f"{'lines':>9}  {'seconds':>8}  {'lines/s':>9}  {'peak RSS MiB':>12}")
    for n, r in results.items():
        print(f"{n:>9,}  {r['seconds']:>8}  {n / max(r['seconds'], 1e-9):>9,.0f}  {r['peak_rss_mib']:>12}")
    verdict = "flat" if ratio < 1.10 else "GROWS with the input"
    print(f"peak RSS {max(results):,} / {min(results):,} lines: {ratio:.3f} ({verdict}; "
          f"+{large['peak_rss_mib'] - small['peak_rss_mib']:.1f} MiB)")
    report = {"model": args.model_dir or "tiny-random", "sizes": {str(k): v for k, v in results.items()},
              "peak_rss_ratio": round(ratio, 3), "flat": ratio < 1.10}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
