"""Run every benchmark back to back and write one JSON file: ``make bench``.

    python bench/run_all.py [--data ../shared/data] [--out bench/out] [--quick]

1. fine-tuning (bench_finetune.py): bertkit vs the textbook Trainer recipe, MiniLM, IMDb, max_length 512;
2. inference (bench_inference.py): ``bertkit predict`` vs ``pipeline("text-classification")`` on the
   model trained in 1;
3. Japanese tokenisation (bench_ja_tokenize.py): the fast path vs ``BertJapaneseTokenizer``;
4. utilisation is part of 1 (model FLOP/s over the matmul peak measured in the same process).

``--quick`` shrinks every size for a smoke run (minutes, numbers not meaningful).
Everything printed also lands in OUT/results.json; each benchmark's own table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The default sizes take about 50 minutes on 2 CPU cores (the fp32 baseline at max_length 512 is
    # most of it): 2,000 training reviews so both sides train to a settled accuracy, and 1,000
    # evaluation reviews so one review is 0.1 point.
    sizes = (["--train", "64", "--eval", "32"], ["--n", "64"], ["--limit", "500", "--repeat", "1"]) if args.quick \
        else (["--train", "2000", "--eval", "1000"], ["--n", "2000"], ["--repeat", "3"])
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    steps = [
        ("finetune", ["bench_finetune.py", "--data", args.data, "--keep", str(out / "model"), *sizes[0]]),
        ("inference", ["bench_inference.py", "--data", args.data, "--model-dir", str(out / "model"), *sizes[1]]),
        ("ja_tokenize", ["bench_ja_tokenize.py", "--data", args.data, *sizes[2]]),
    ]
    report = {"started": started, "machine": None, "benchmarks": {}}
    for name, command in steps:
        print(f"\n=== {name}: python bench/{' '.join(command)}", flush=True)
        target = out / f"{name}.json"
        proc = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:], "--json", str(target)])
        if proc.returncode != 0:
            sys.exit(f"bench/{command[0]} failed (exit {proc.returncode})")
        report["benchmarks"][name] = json.loads(target.read_text())
    report["machine"] = report["benchmarks"]["finetune"].get("machine")
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
