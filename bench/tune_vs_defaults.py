"""Does ``bertkit tune`` find better settings than a recipe's defaults? Same rows, scored on test.

    python bench/tune_vs_defaults.py [--tasks ner,qa] [--trials 8] [--timeout 1500] [--seeds 2] [--json FILE]

For each task it draws the rows ``bench/parity.py`` draws (NCBI-disease NER, SQuAD QA; MiniLM), then

1. ``bertkit tune`` on the training rows alone (validation held out of them; the test rows never seen),
   with the default search space, ``--trials`` trials or ``--timeout`` seconds, whichever ends first;
2. ``bertkit finetune tune/best.yaml --seeds N`` with the test rows;
3. ``bertkit finetune RECIPE --seeds N`` with the recipe's own settings on the same rows and hold-out.

Printed per task: the test metric of each side, mean +- std over the seeds, the difference, the chosen
settings and the time the search took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import parity  # noqa: E402

METRIC = {"ner": "f1", "qa": "f1", "classification": "accuracy"}


def bertkit(*args: object, log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run([str(Path(sys.executable).parent / "bertkit"), *map(str, args)], stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f"failed: bertkit {' '.join(map(str, args))}\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="ner,qa")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=1500)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--json")
    args, rest = parser.parse_known_args()
    draw_args = parity.arguments().parse_args(rest)
    report = {"benchmark": "tune_vs_defaults", "machine": common.machine(), "settings": vars(args), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            files = parity.draw(task, draw_args, Path(args.data), Path(tmp) / task / "data")
            recipe = common.REPO / "recipes" / parity.RECIPE[task]
            base = ["model=minilm-l6", "data.dataset=null", f"data.train={files['train']}", "data.validation=null",
                    "data.validation_size=0.1"]
            if task == "qa":
                base.append("qa.doc_stride=64")
            work = Path(tmp) / task
            print(f"[{time.strftime('%H:%M:%S')}] {task}: tune", file=sys.stderr, flush=True)
            length = "max_length=256" if task == "qa" else "max_length=128"
            tune_seconds = bertkit("tune", recipe, *base, f"output_dir={work / 'tuned'}", length,
                                   "--trials", args.trials, "--timeout", args.timeout, log=work / "tune.log")
            best = work / "tuned" / "tune" / "best.yaml"
            trials = (work / "tuned" / "tune" / "trials.csv").read_text()
            results = {}
            for side, source, extra in (("tuned", best, []), ("defaults", recipe, [*base, length])):
                print(f"[{time.strftime('%H:%M:%S')}] {task}: {side}, {args.seeds} seeds", file=sys.stderr, flush=True)
                out = work / f"final-{side}"
                bertkit("finetune", source, *extra, f"data.test={files['test']}", f"output_dir={out}", "--seeds", args.seeds,
                        "--overwrite", log=work / f"{side}.log")
                summary = json.loads((out / "metrics.json").read_text())["seeds"]
                results[side] = summary[f"test.{METRIC[task]}"]
            chosen = json.loads(json.dumps(__import__("yaml").safe_load(best.read_text())["training"]))
            report["tasks"][task] = {"results": results, "tune_seconds": round(tune_seconds), "trials_csv": trials,
                                     "chosen": {k: chosen[k] for k in ("learning_rate", "num_train_epochs",
                                                                        "per_device_train_batch_size", "warmup_steps", "weight_decay")}}
            t, d = results["tuned"], results["defaults"]
            print(f"\n{task} (test {METRIC[task]}, {args.seeds} seeds): tuned {t['mean']:.4f} +- {t['std']:.4f} "
                  f"{t['values']} vs recipe defaults {d['mean']:.4f} +- {d['std']:.4f} {d['values']}; "
                  f"difference {t['mean'] - d['mean']:+.4f}; search {tune_seconds:.0f} s")
            print(f"  chosen: {report['tasks'][task]['chosen']}")
            print("  trials:\n    " + trials.strip().replace("\n", "\n    "), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
