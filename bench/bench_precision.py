"""`precision: auto` against each forced precision, as whole commands on this machine.

    python bench/bench_precision.py [--recipe quickstart] [--repeats 2] [--set key=value ...]

Prints what the probe chose here and why (``hardware.precision_choice``), then for auto, bf16 and fp32 in
turn (repeated, interleaved, each a fresh `bertkit finetune` process timed from start to exit): seconds
and the test metric. auto should match the faster forced choice within the run-to-run noise.
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    from bertkit import hardware

    chosen, reason = hardware.precision_choice("auto")
    print(f"probe on this machine: precision: {reason}", flush=True)
    seconds: dict[str, list[float]] = {"auto": [], "bf16": [], "fp32": []}
    scores: dict[str, list[float]] = {k: [] for k in seconds}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for precision in seconds:
                out = Path(tmp) / f"{precision}-{repeat}"
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "bertkit", "finetune", args.recipe, f"precision={precision}",
                                f"output_dir={out}", "--quiet", *args.set], check=True, cwd=ROOT,
                               stdout=subprocess.DEVNULL)
                seconds[precision].append(time.perf_counter() - started)
                metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
                split = "test" if "test" in metrics else "validation"
                scores[precision].append(metrics[split].get("accuracy", float("nan")))
                print(f"  {precision:5s} run {repeat + 1}: {seconds[precision][-1]:6.1f} s, {split} accuracy "
                      f"{scores[precision][-1]:.4f} (trained in {metrics['train']['precision']})", flush=True)
    print(f"\nbertkit finetune {args.recipe} {' '.join(args.set)}, whole commands, {args.repeats} runs each:")
    for precision in seconds:
        print(f"  {precision:5s} {statistics.mean(seconds[precision]):6.1f} s (runs: "
              f"{', '.join(f'{s:.1f}' for s in seconds[precision])}), accuracy {statistics.mean(scores[precision]):.4f}")
    fastest = min(("bf16", "fp32"), key=lambda p: statistics.mean(seconds[p]))
    print(f"  auto chose {chosen}; the faster forced choice here: {fastest} "
          f"(auto / {fastest}: {statistics.mean(seconds['auto']) / statistics.mean(seconds[fastest]):.2f}x time)")


if __name__ == "__main__":
    main()
