"""Benchmark: ``bertkit distill`` — a MiniLM-L6 teacher into a 3-layer student, against the same student
trained on the labels alone, over seeds; then the student's speed and its int8 deploy chain.

    python bench/bench_distill.py --task imdb [--seeds 3] [--layers 3] [--out DIR] [--json FILE]
    python bench/bench_distill.py --task ncbi [--seeds 3] ...

imdb: ``imdb/train.jsonl`` (5,000 reviews) in a fixed seeded order: 2,000 train, the next 1,000 test, the
remaining 2,000 unlabelled (``distill.unlabeled``; none of the test reviews, which would leak them into
training). The teacher is ``bertkit finetune recipes/imdb.yaml`` with MiniLM at max_length 256, 1 epoch,
lr 5e-5, batch 16 (the parity settings). Each seed runs ``bertkit distill TEACHER distill.student_layers=3
distill.unlabeled=U distill.compare_labels_only=true seed=S`` (one command trains both students). Then,
each a whole command timed from start to exit, one after the other: ``bertkit predict`` of teacher and
student on the 2,000 unlabelled reviews (speed only); ``bertkit export STUDENT --quantize int8 --check TEST`` and ``bertkit
predict EXPORT`` on 2,000 reviews (the unlabelled ones: speed only) against ``pipeline("text-classification")``
on the teacher (``bench_export.py``'s script), with the export's test accuracy.

ncbi: NCBI-disease with ``recipes/ncbi-disease-ner.yaml`` (train, devel as validation, test scored; 2 epochs
at 1e-4, batch 32). Unlabelled rows: none by default (the rest of NCBI is its test set); ``--unlabeled bc5cdr``
gives the 9,141 BC5CDR train + devel sentences as plain text (PubMed abstracts of another corpus; none of the
NCBI test sentences is among them, as the session-8 leakage guard counted). The 3-layer student with soft
targets vs on labels alone, over seeds.

squad: ``squad/train.json`` split by article as ``bench/parity.py`` splits it (the last 3 articles are the
test set, 1,000 of their questions; no test context is seen in training): 1,200 training questions; up to
``--max-unlabeled`` (default 1,200) other questions of the training articles without their answers are the
unlabelled rows. The teacher uses the settings ``bertkit tune`` chose on these rows in session 6
(bench/RESULTS.md: lr 3.57e-5, 5 epochs, batch 8, warmup 0.031; max_length 256, stride 64); the students
train for the teacher's 5 epochs (``--set distill.epochs=...`` changes it).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from bench_export import PIPELINE, timed  # noqa: E402

BERTKIT = str(Path(sys.executable).parent / "bertkit")


def imdb_files(data: Path, out: Path) -> dict[str, Path]:
    rows = common.read_jsonl(data / "imdb" / "train.jsonl")
    random.Random(0).shuffle(rows)
    parts = {"train": rows[:2000], "test": rows[2000:3000], "unlabeled": rows[3000:]}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in parts.items():
        paths[name] = out / f"{name}.jsonl"
        with paths[name].open("w", encoding="utf-8") as f:
            for row in part:
                f.write(json.dumps({"text": row["text"]} if name == "unlabeled" else
                                   {"text": row["text"], "label": row["label"]}) + "\n")
    return paths


def squad_files(data: Path, out: Path, n_train: int = 1200, n_test: int = 1000,
                n_unlabeled: int = 1200) -> dict[str, Path]:
    articles = json.loads((data / "squad" / "train.json").read_text(encoding="utf-8"))["data"]
    flat = [[{"id": qa["id"], "question": qa["question"], "context": p["context"],
              "answers": {"text": [a["text"] for a in qa["answers"]],
                          "answer_start": [a["answer_start"] for a in qa["answers"]]}}
             for p in article["paragraphs"] for qa in p["qas"]] for article in articles]
    test = [row for article in flat[-3:] for row in article]
    train = [row for article in flat[:-3] for row in article]
    rng = random.Random(0)
    rng.shuffle(train)
    rng.shuffle(test)
    unlabeled = [{"id": r["id"], "question": r["question"], "context": r["context"]}
                 for r in train[n_train:n_train + n_unlabeled]]
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in {"train": train[:n_train], "test": test[:n_test], "unlabeled": unlabeled}.items():
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
    return paths


def conll_text(folder: Path, target: Path) -> Path:
    """The sentences of a CoNLL folder's train and devel files, words joined by spaces, one per line."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lines, words = [], []
    for name in ("train.tsv", "devel.tsv"):
        for line in (folder / name).open(encoding="utf-8"):
            if line.strip():
                words.append(line.split("\t")[0])
            elif words:
                lines.append(" ".join(words))
                words = []
        if words:
            lines.append(" ".join(words))
            words = []
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def teacher_command(task: str, files: dict[str, Path], data: Path, out: Path) -> list[str]:
    if task == "imdb":
        return [BERTKIT, "finetune", str(common.REPO / "recipes" / "imdb.yaml"), "model=minilm-l6", "data.dataset=null",
                f"data.train={files['train']}", "data.validation=null", f"data.test={files['test']}",
                f"output_dir={out}", "max_length=256", "training.num_train_epochs=1", "training.learning_rate=5e-5",
                "training.per_device_train_batch_size=16", "--overwrite", "--quiet"]
    if task == "squad":
        return [BERTKIT, "finetune", str(common.REPO / "recipes" / "squad.yaml"), "model=minilm-l6",
                "data.dataset=null", f"data.train={files['train']}", "data.validation=null",
                f"data.test={files['test']}", f"output_dir={out}", "max_length=256", "qa.doc_stride=64",
                "training.num_train_epochs=5", "training.learning_rate=3.57e-5",
                "training.per_device_train_batch_size=8", "training.warmup_steps=0.031", "--overwrite", "--quiet"]
    folder = data / "ncbi_disease"
    return [BERTKIT, "finetune", str(common.REPO / "recipes" / "ncbi-disease-ner.yaml"), f"data.train={folder / 'train.tsv'}",
            f"data.validation={folder / 'devel.tsv'}", f"data.test={folder / 'test.tsv'}", f"output_dir={out}",
            "--overwrite", "--quiet"]


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["imdb", "ncbi", "squad"], default="imdb")
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="an extra override for the distill commands")
    parser.add_argument("--unlabeled", choices=["none", "bc5cdr"], default="none",
                        help="ncbi: unlabelled sentences for the distilled student")
    parser.add_argument("--max-unlabeled", type=int, default=1200, help="squad: unlabelled questions")
    parser.add_argument("--out", help="keep the models here (default: a temporary folder)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    data = Path(args.data)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-distill-"))
    files = (imdb_files(data, out / "data") if args.task == "imdb" else
             squad_files(data, out / "data", n_unlabeled=args.max_unlabeled) if args.task == "squad" else {})
    if args.task == "squad" and not any(o.startswith("distill.epochs=") for o in args.set):
        args.set.append("distill.epochs=5")
    if args.task == "ncbi" and args.unlabeled == "bc5cdr":
        files["unlabeled"] = conll_text(data / "bc5cdr", out / "data" / "bc5cdr_sentences.txt")
    report: dict = {"benchmark": "distill", "task": args.task, "machine": common.machine(), "settings": vars(args)}

    teacher = out / "teacher"
    if not (teacher / "metrics.json").is_file():
        report["teacher_seconds"] = round(timed(teacher_command(args.task, files, data, teacher)), 1)
        print(f"teacher trained: {report['teacher_seconds']} s", file=sys.stderr, flush=True)
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        student = out / f"student-{seed}"
        command = [BERTKIT, "distill", str(teacher), f"distill.student_layers={args.layers}",
                   "distill.compare_labels_only=true", f"seed={seed}", "--output", str(student), "--overwrite",
                   "--quiet", *args.set]
        if "unlabeled" in files:
            command.append(f"distill.unlabeled={files['unlabeled']}")
        seconds = timed(command)
        r = json.loads((student / "distill.json").read_text())
        r["seconds"] = round(seconds, 1)
        runs.append(r)
        print(f"seed {seed}: student {r['student_score']:.4f}, labels only {r['labels_only_score']:.4f}, teacher "
              f"{r['teacher_score']:.4f}; {seconds:.0f} s (both students)", file=sys.stderr, flush=True)
    report["runs"] = runs
    metric, teacher_score = runs[0]["metric"], runs[0]["teacher_score"]
    students = [r["student_score"] for r in runs]
    labels_only = [r["labels_only_score"] for r in runs]
    print(f"\n{args.task}: teacher MiniLM-L6 -> {args.layers}-layer student, test {metric}, seeds "
          f"{args.first_seed}..{args.first_seed + args.seeds - 1}:")
    print(f"  teacher                {teacher_score:.4f}")
    print(f"  student (distilled)    {mean_std(students)}  [{', '.join(f'{v:.4f}' for v in students)}]  "
          f"= {statistics.mean(students) / teacher_score:.1%} of the teacher")
    print(f"  student (labels only)  {mean_std(labels_only)}  [{', '.join(f'{v:.4f}' for v in labels_only)}]")
    print(f"  distilled - labels only: {statistics.mean(students) - statistics.mean(labels_only):+.4f}")
    print(f"  batched inference on the test split (in-process, from distill.json): teacher "
          f"{runs[0]['teacher_texts_per_s']} texts/s, student {runs[0]['student_texts_per_s']} ({runs[0]['speedup']}x)")

    if args.task == "imdb":
        best = max(runs, key=lambda r: r["student_score"])
        student = out / f"student-{args.first_seed + runs.index(best)}"
        texts = files["unlabeled"]  # 2,000 reviews, for speed only
        t_teacher = timed([BERTKIT, "predict", str(teacher), str(texts), "-o", str(out / "p-teacher.jsonl")])
        t_student = timed([BERTKIT, "predict", str(student), str(texts), "-o", str(out / "p-student.jsonl")])
        print(f"  bertkit predict, 2,000 reviews, whole command: teacher {t_teacher:.1f} s, student "
              f"{t_student:.1f} s ({t_teacher / t_student:.2f}x)")
        export = out / "student-int8"
        t_export = timed([BERTKIT, "export", str(student), "--quantize", "int8", "--check", str(files["test"]),
                          "--output", str(export), "--overwrite"])
        script = out / "pipeline.py"
        script.write_text(PIPELINE, encoding="utf-8")
        t_pipe = timed([sys.executable, str(script), str(teacher), str(files["unlabeled"]), str(out / "p-pipe.jsonl")])
        t_int8 = timed([BERTKIT, "predict", str(export), str(files["unlabeled"]), "-o", str(out / "p-int8.jsonl")])
        timed([BERTKIT, "evaluate", str(export), str(files["test"]), "--output-dir", str(out / "ev-int8")])
        int8_acc = json.loads((out / "ev-int8" / "metrics.json").read_text())["accuracy"]
        teacher_acc = json.loads((teacher / "metrics.json").read_text())["test"]["accuracy"]
        print(f"  deploy chain, 2,000 reviews, whole commands: pipeline (teacher, fp32) {t_pipe:.1f} s, bertkit "
              f"predict on the student's int8 export {t_int8:.1f} s ({t_pipe / t_int8:.2f}x); export took "
              f"{t_export:.1f} s")
        print(f"  test accuracy: teacher {teacher_acc:.4f}, student int8 export {int8_acc:.4f} "
              f"({(int8_acc - teacher_acc) * 100:+.2f} points)")
        report["deploy"] = {"predict_teacher_s": t_teacher, "predict_student_s": t_student, "pipeline_s": t_pipe,
                            "int8_predict_s": t_int8, "export_s": t_export, "int8_accuracy": int8_acc,
                            "teacher_accuracy": teacher_acc, "student": str(student)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
