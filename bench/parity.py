"""Parity harness: bertkit against the standard recipe on the same rows, as whole commands, over seeds.

    python bench/parity.py [--tasks classification,ner,qa] [--seeds 3] [--data ../shared/data]
                           [--sides standard,bertkit] [--set ner:precision=fp32 ...] [--model DIR] [--json FILE]

For each task it draws fixed rows from ``../shared/data`` (the draw does not change with the seed),
then for each seed runs, each in its own process and timed from start to exit:

- ``standard``: ``bench/standard_recipe.py`` (the Hugging Face example way: ``padding="max_length"``,
  fp32, stock ``Trainer``, first sub-token labelled);
- ``bertkit``: ``bertkit finetune`` with the task's shipped recipe, given the same train and test files
  and the same model, max_length, epochs, learning rate, batch size and seed.

Both sides train on the same training rows and are scored on the same test rows; neither sees the test
rows before its final evaluation. Printed per task: the metric of each seed, mean +- std, the difference
(bertkit - standard) and the whole-command time with the speed ratio. ``--set TASK:key=value`` adds a
bertkit override (for A/B studies: ``--sides bertkit --set ner:precision=fp32``).

| task | data | rows (train / test) | settings |
|---|---|---|---|
| classification | imdb/train.jsonl | 2,000 / 1,000 reviews | max_length 256, 1 epoch, lr 5e-5, batch 16 |
| ner | ncbi_disease train.tsv / test.tsv | 1,500 / 940 sentences | max_length 128, 2 epochs, lr 5e-5, batch 16 |
| qa | squad/train.json, split by article | 1,200 / 1,000 questions | max_length 256, stride 64, 1 epoch, lr 5e-5, batch 16 |

With these sizes the whole harness (2 seeds, both sides) runs in about 50 minutes on 2 CPU cores;
the sizes and the seed count are options. Smaller classification sets are too noisy to compare: with
800 reviews (50 steps) accuracy moved by 6-8 points between seeds on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HERE = Path(__file__).resolve().parent
METRIC = {"classification": "accuracy", "ner": "f1", "qa": "f1"}
SCALE = {"classification": 100, "ner": 100, "qa": 1}  # report every metric in points
RECIPE = {"classification": "imdb.yaml", "ner": "ncbi-disease-ner.yaml", "qa": "squad.yaml"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def conll_sentences(path: Path) -> list[list[str]]:
    """Sentences as lists of raw lines (token<TAB>tag)."""
    out, current = [], []
    for line in path.open(encoding="utf-8"):
        if line.strip():
            current.append(line.rstrip("\n"))
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def write_conll(path: Path, sentences: list[list[str]]) -> Path:
    path.write_text("".join("\n".join(s) + "\n\n" for s in sentences), encoding="utf-8")
    return path


def draw(task: str, args, data: Path, out: Path) -> dict[str, Path]:
    """The fixed train / test rows of one task, as files both sides read."""
    rng = random.Random(args.data_seed)
    out.mkdir(parents=True, exist_ok=True)
    if task == "classification":
        rows = common.read_jsonl(data / "imdb" / "train.jsonl")
        rng.shuffle(rows)
        n, m = args.cls_train, args.cls_test
        return {"train": write_jsonl(out / "train.jsonl", rows[:n]), "test": write_jsonl(out / "test.jsonl", rows[n:n + m])}
    if task == "ner":
        # ncbi_disease: one entity type, its test file; bc5cdr (chemicals and diseases): its devel file as test
        folder, test_file = {"ncbi_disease": ("ncbi_disease", "test.tsv"), "bc5cdr": ("bc5cdr", "devel.tsv")}[args.ner_data]
        train = conll_sentences(data / folder / "train.tsv")
        rng.shuffle(train)
        test = conll_sentences(data / folder / test_file)[: args.ner_test]
        return {"train": write_conll(out / "train.tsv", train[: args.ner_train]),
                "test": write_conll(out / "test.tsv", test)}
    squad = json.loads((data / "squad" / "train.json").read_text(encoding="utf-8"))["data"]
    flat = [[{"id": qa["id"], "question": qa["question"], "context": p["context"],
              "answers": {"text": [a["text"] for a in qa["answers"]],
                          "answer_start": [a["answer_start"] for a in qa["answers"]]}}
             for p in article["paragraphs"] for qa in p["qas"]] for article in squad]
    test_rows = [row for article in flat[-3:] for row in article]  # whole articles: no context seen in training
    train_rows = [row for article in flat[:-3] for row in article]
    rng.shuffle(train_rows)
    rng.shuffle(test_rows)
    return {"train": write_jsonl(out / "train.jsonl", train_rows[: args.qa_train]),
            "test": write_jsonl(out / "test.jsonl", test_rows[: args.qa_test])}


def settings(task: str, args) -> dict:
    if task == "classification":
        return {"max_length": 256, "epochs": 1, "lr": 5e-5, "batch_size": 16}
    if task == "ner":
        return {"max_length": 128, "epochs": 2, "lr": 5e-5, "batch_size": 16}
    return {"max_length": 256, "epochs": 1, "lr": 5e-5, "batch_size": 16, "stride": 64}


def timed(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}): {' '.join(command)}\n{log.read_text()[-3000:]}")
    return seconds


def run_standard(task: str, files: dict[str, Path], s: dict, seed: int, model: str, work: Path) -> dict:
    out = work / "standard.json"
    command = [sys.executable, str(HERE / "standard_recipe.py"), task, "--train", str(files["train"]),
               "--test", str(files["test"]), "--model", model, "--out", str(out), "--work", str(work / "std"),
               "--max-length", str(s["max_length"]), "--epochs", str(s["epochs"]), "--lr", str(s["lr"]),
               "--batch-size", str(s["batch_size"]), "--seed", str(seed)]
    if task == "qa":
        command += ["--stride", str(s["stride"])]
    seconds = timed(command, work / "standard.log")
    result = json.loads(out.read_text())
    return {"metric": result[METRIC[task]] * SCALE[task], "seconds": seconds, "all": result}


def run_bertkit(task: str, files: dict[str, Path], s: dict, seed: int, extra: list[str], work: Path, model: str) -> dict:
    output = work / "bertkit-run"
    bertkit = Path(sys.executable).parent / "bertkit"
    command = [str(bertkit), "finetune", str(common.REPO / "recipes" / RECIPE[task]), f"model={model}",
               "data.dataset=null", f"data.train={files['train']}", "data.validation=null", f"data.test={files['test']}",
               f"output_dir={output}", f"seed={seed}", f"max_length={s['max_length']}",
               f"training.num_train_epochs={s['epochs']}", f"training.learning_rate={s['lr']}",
               f"training.per_device_train_batch_size={s['batch_size']}", "--overwrite"]
    if task == "qa":
        command.append(f"qa.doc_stride={s['stride']}")
    seconds = timed(command + extra, work / "bertkit.log")
    metrics = json.loads((output / "metrics.json").read_text())["test"]
    return {"metric": metrics[METRIC[task]] * SCALE[task], "seconds": seconds,
            "standard_scorer": rescore(task, output / "predictions.jsonl"),
            "all": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}


def rescore(task: str, predictions: Path) -> float | None:
    """bertkit's test predictions scored by the standard script's own scorer (seqeval for NER, the
    script's SQuAD EM/F1 for QA), to tell a difference of scoring from one of training."""
    import standard_recipe

    rows = common.read_jsonl(predictions)
    if task == "ner":
        from seqeval.metrics import f1_score

        def tags(n: int, entities: list[dict]) -> list[str]:
            out = ["O"] * n
            for e in entities:
                out[e["start"]:e["end"]] = [f"B-{e['type']}"] + [f"I-{e['type']}"] * (e["end"] - e["start"] - 1)
            return out

        return 100 * f1_score([tags(len(r["tokens"]), r["gold"]) for r in rows],
                              [tags(len(r["tokens"]), r["predicted"]) for r in rows])
    if task == "qa":
        return 100 * statistics.mean(max(standard_recipe._f1(r["answer"] or "", g) for g in r["gold"]) for r in rows)
    return None


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--tasks", default="classification,ner,qa")
    parser.add_argument("--sides", default="bertkit,standard")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the row draw (fixed across training seeds)")
    parser.add_argument("--cls-train", type=int, default=2000)
    parser.add_argument("--cls-test", type=int, default=1000)
    parser.add_argument("--ner-train", type=int, default=1500)
    parser.add_argument("--ner-test", type=int, default=940)
    parser.add_argument("--ner-data", choices=["ncbi_disease", "bc5cdr"], default="ncbi_disease",
                        help="the NER set: NCBI disease (one entity type) or BC5CDR (two: chemicals, diseases)")
    parser.add_argument("--qa-train", type=int, default=1200)
    parser.add_argument("--qa-test", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="TASK:KEY=VALUE",
                        help="an extra bertkit override for one task (repeatable)")
    parser.add_argument("--model", default="minilm-l6",
                        help="a local model directory both sides start from (default: the built-in MiniLM; "
                             "bench/make_family_model.py builds other families)")
    parser.add_argument("--json", help="write every result here")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = arguments().parse_args(argv)

    from bertkit import models

    model = models.resolve(args.model)[0]
    tasks = args.tasks.split(",")
    sides = args.sides.split(",")
    extra = {t: [s.split(":", 1)[1] for s in args.set if s.split(":", 1)[0] == t] for t in tasks}
    report: dict = {"benchmark": "parity", "machine": common.machine(), "settings": vars(args), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            files = draw(task, args, Path(args.data), Path(tmp) / task / "data")
            s = settings(task, args)
            results: dict[str, list[dict]] = {side: [] for side in sides}
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for side in sides:
                    work = Path(tmp) / task / f"{side}-{seed}"
                    work.mkdir(parents=True)
                    print(f"[{time.strftime('%H:%M:%S')}] {task} seed {seed}: {side}", file=sys.stderr, flush=True)
                    r = (run_standard(task, files, s, seed, model, work) if side == "standard"
                         else run_bertkit(task, files, s, seed, extra[task], work, model))
                    print(f"    {METRIC[task]} {r['metric']:.2f}, {r['seconds']:.1f} s", file=sys.stderr, flush=True)
                    results[side].append(r)
            report["tasks"][task] = {"settings": s, "extra": extra[task], "results": results}
            print_task(task, s, extra[task], results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def print_task(task: str, s: dict, extra: list[str], results: dict[str, list[dict]], args) -> None:
    rows = {"classification": f"{args.cls_train} / {args.cls_test} reviews",
            "ner": f"{args.ner_data}, {args.ner_train} / {args.ner_test} sentences",
            "qa": f"{args.qa_train} / {args.qa_test} questions"}[task]
    print(f"\n{task} ({rows}; {', '.join(f'{k} {v}' for k, v in s.items())}"
          f"{'; bertkit ' + ' '.join(extra) if extra else ''}), {METRIC[task]} in points:")
    print(f"  {'side':10s} {'per seed':32s} {'mean +- std':>16s} {'seconds (mean)':>15s}")
    for side, rs in results.items():
        values = [r["metric"] for r in rs]
        print(f"  {side:10s} {' '.join(f'{v:6.2f}' for v in values):32s} {mean_std(values):>16s} "
              f"{statistics.mean(r['seconds'] for r in rs):15.1f}")
    rescored = [r["standard_scorer"] for r in results.get("bertkit", []) if r.get("standard_scorer") is not None]
    if rescored:
        print(f"  {'bertkit, scored by the standard script':42s} {mean_std(rescored):>16s}")
    if "standard" in results and "bertkit" in results:
        a = statistics.mean(r["metric"] for r in results["bertkit"])
        b = statistics.mean(r["metric"] for r in results["standard"])
        ta = statistics.mean(r["seconds"] for r in results["bertkit"])
        tb = statistics.mean(r["seconds"] for r in results["standard"])
        print(f"  bertkit - standard: {a - b:+.2f} points; speed (whole command): {tb / ta:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
