"""Benchmark: ``bertkit predict`` on an int8 ONNX export vs ``transformers.pipeline``, as whole commands.

    python bench/bench_export.py --model-dir DIR [--data ../shared/data] [--n 2000] [--check 500] [--json FILE]

DIR is a fine-tuned classifier (``bench_finetune.py --keep DIR`` makes the one in bench/RESULTS.md). The
texts are the last N reviews of ``imdb/train.jsonl`` in the seeded order ``bench_inference.py`` uses; the
export's check rows are the ``--check`` reviews before them (no text is both checked and timed).

One run, three commands, each a fresh process timed from its start to its exit (imports and loading
included), one after the other on a quiet machine:

- pipeline: a Python script calling ``pipeline("text-classification", model=DIR)`` on the list of texts
  with its defaults (fp32, one text at a time) and ``truncation=True``, writing the labels;
- bertkit (PyTorch): ``bertkit predict DIR texts.jsonl -o out.jsonl classification.truncation=head``;
- bertkit (int8 export): ``bertkit predict EXPORT texts.jsonl -o out.jsonl classification.truncation=head``,
  where EXPORT was written beforehand by ``bertkit export DIR --quantize int8 --check CHECK.jsonl``
  (timed too, shown apart: an export is made once, like a training run).

``classification.truncation=head`` keeps the same first 512 tokens of each review the pipeline sees.
Label agreement is against the pipeline's labels (fp32 PyTorch).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

PIPELINE = """
import json, sys
from transformers import pipeline
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf-8")]
classifier = pipeline("text-classification", model=sys.argv[1], device=-1)
with open(sys.argv[3], "w") as out:
    for r in classifier(texts, truncation=True):
        out.write(json.dumps({"label": r["label"]}) + "\\n")
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def labels(path: Path) -> list[str]:
    return [row["label"] for row in common.read_jsonl(path)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--check", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--activations", default="dynamic")
    parser.add_argument("--skip-pytorch", action="store_true", help="leave out bertkit predict on the PyTorch model")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = common.read_jsonl(Path(args.data) / "imdb" / "train.jsonl")
    random.Random(args.seed).shuffle(rows)
    timed_rows, check_rows = rows[-args.n:], rows[-args.n - args.check:-args.n]
    bertkit = [sys.executable, "-m", "bertkit"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        texts, check = work / "texts.jsonl", work / "check.jsonl"
        for path, chosen in ((texts, timed_rows), (check, check_rows)):
            path.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in chosen), encoding="utf-8")
        export = work / "export"
        extra = ["--calibration", str(check)] if args.activations == "static" else ["--check", str(check)]
        export_s = timed([*bertkit, "export", args.model_dir, "--output", str(export), "--quantize", "int8",
                          "--activations", args.activations, *extra])
        report = json.loads((export / "export_report.json").read_text())
        seconds = {"pipeline": timed([sys.executable, "-c", PIPELINE, args.model_dir, str(texts), str(work / "pipeline.jsonl")])}
        if not args.skip_pytorch:
            seconds["bertkit (PyTorch)"] = timed([*bertkit, "predict", args.model_dir, str(texts), "-o", str(work / "torch.jsonl"),
                                                  "classification.truncation=head"])
        seconds["bertkit (int8 export)"] = timed([*bertkit, "predict", str(export), str(texts), "-o", str(work / "onnx.jsonl"),
                                                  "classification.truncation=head"])
        reference = labels(work / "pipeline.jsonl")
        files = {"pipeline": "pipeline.jsonl", "bertkit (PyTorch)": "torch.jsonl", "bertkit (int8 export)": "onnx.jsonl"}
        agreement = {name: sum(a == b for a, b in zip(labels(work / files[name]), reference)) / len(reference) for name in seconds}
    base = len(timed_rows) / seconds["pipeline"]
    print(f"predict, whole commands: {len(timed_rows)} IMDb reviews, model {args.model_dir}; machine {common.machine().get('cpu')}")
    print(f"  {'':24}{'seconds':>9}{'texts/s':>9}{'vs pipeline':>13}{'label agreement':>17}")
    for name, s in seconds.items():
        print(f"  {name:24}{s:9.1f}{len(timed_rows) / s:9.2f}{len(timed_rows) / s / base:12.2f}x{100 * agreement[name]:16.2f}%")
    print(f"  export (once): {export_s:.1f} s, int8 ({args.activations} activations); its report on {report['check_rows']} other "
          f"reviews: agreement {100 * report['agreement']:.2f} %, largest probability difference {report['max_prob_diff']}, "
          f"kept in fp32: {', '.join(report['kept_fp32']) or 'none'}")
    result = {"benchmark": "export", "machine": common.machine(), "texts": len(timed_rows), "seconds": seconds,
              "label_agreement_with_pipeline": agreement, "export_seconds": export_s, "export_report": report,
              "speedup": round(len(timed_rows) / seconds["bertkit (int8 export)"] / base, 2)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
