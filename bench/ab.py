"""A/B of bertkit's departures from the standard recipe, one at a time, on the parity harness's rows.

    python bench/ab.py --task ner [--seeds 3] [--ner-train 2000] [--variant NAME=key=value,key=value ...]

Each variant is bertkit's default run plus overrides that undo one departure (fp32 instead of bf16,
the model's own attention dropout, random instead of length-grouped batches, the stock Trainer's
optimizer settings, every sub-token labelled); every variant runs with the same seeds on the same rows
(``bench/parity.py``'s draw). Printed: the metric per seed, mean +- std and the difference from the
default. Accuracy only: the runs may share the machine, so their times are not compared here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import parity  # noqa: E402

VARIANTS = {
    "default": [],
    "fp32": ["precision=fp32"],
    "attention dropout 0.1": ["attention_dropout=null"],
    "random batches": ["training.train_sampling_strategy=random"],
    "no warm-up or weight decay": ["training.warmup_steps=0", "training.weight_decay=0"],
}
TASK_VARIANTS = {
    "ner": {"every sub-token labelled": ["ner.label_all_tokens=true"]},
    "classification": {"head truncation": ["classification.truncation=head"]},
    "qa": {},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(TASK_VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--only", action="append", help="a variant to run (repeatable; default: all)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                        help="an extra variant")
    parser.add_argument("--json", help="write the results here")
    args, rest = parser.parse_known_args(argv)
    sizing = parity.arguments().parse_args(rest)  # the harness's data and size options
    variants = {**VARIANTS, **TASK_VARIANTS[args.task]}
    for extra in args.variant:
        name, _, overrides = extra.partition("=")
        variants[name] = overrides.split(",")
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = parity.draw(args.task, sizing, Path(sizing.data), Path(tmp) / "data")
        s = parity.settings(args.task, sizing)
        for name, overrides in variants.items():
            results[name] = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                work = Path(tmp) / f"{len(results)}-{seed}"
                work.mkdir()
                r = parity.run_bertkit(args.task, files, s, seed, overrides, work)
                results[name].append(r["metric"])
                print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}: {r['metric']:.2f}", file=sys.stderr, flush=True)
    base = statistics.mean(results["default"]) if "default" in results else None
    print(f"\n{args.task}: {parity.METRIC[args.task]} in points, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}")
    print(f"  {'variant':30s} {'overrides':58s} {'per seed':24s} {'mean +- std':>14s} {'vs default':>10s}")
    for name, values in results.items():
        diff = f"{statistics.mean(values) - base:+.2f}" if base is not None and name != "default" else ""
        print(f"  {name:30s} {' '.join(variants[name]) or '(bertkit as shipped)':58s} "
              f"{' '.join(f'{v:6.2f}' for v in values):24s} {parity.mean_std(values):>14s} {diff:>10s}")
    if args.json:
        Path(args.json).write_text(json.dumps({"task": args.task, "variants": variants, "results": results}, indent=2))


if __name__ == "__main__":
    main()
