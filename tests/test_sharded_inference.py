"""predict, evaluate and embed on several processes (``--num-processes 2``: CPU processes over gloo,
through Accelerate's launcher, as a user starts them) write exactly what one process writes: the same
rows in the same order with the same values, for classification, NER and QA.

Both sides run with one thread per process (OMP_NUM_THREADS=1): the batches are the same, and the same
thread count keeps every matrix product's summation order the same, so the files are compared byte for
byte (metrics.json less its timing).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _review, write_jsonl
from typer.testing import CliRunner

from bertkit.cli import app

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # a hung rank must not hang the suite
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def bertkit(*args: object, processes: int = 1) -> str:
    """Run a command (its stderr back): one process here, in-process on one thread as each launched
    process runs; several through the launcher, as a user starts them."""
    if processes == 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        finally:
            torch.set_num_threads(threads)
        assert result.exit_code == 0, result.output
        return result.stderr
    command = [sys.executable, "-m", "bertkit", *map(str, args), "--num-processes", str(processes)]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def finetune(*args: object) -> None:
    result = CliRunner().invoke(app, ["finetune", *map(str, args), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def same_evaluation(model: Path, data: Path, tmp_path: Path) -> None:
    for n in (1, 2):
        bertkit("evaluate", model, data, "--output-dir", tmp_path / f"ev{n}", "--quiet", processes=n)
    for name in ("predictions.jsonl", "errors.jsonl"):
        assert (tmp_path / "ev1" / name).read_bytes() == (tmp_path / "ev2" / name).read_bytes(), name
    one, two = (json.loads((tmp_path / f"ev{n}" / "metrics.json").read_text()) for n in (1, 2))
    one.pop("seconds"), two.pop("seconds")
    assert one == two


def same_predictions(model: Path, data: Path, tmp_path: Path) -> list[str]:
    for n in (1, 2):
        stderr = bertkit("predict", model, data, "-o", tmp_path / f"p{n}.jsonl", "--quiet", processes=n)
        assert stderr.count("predictions to") == 1  # the main process reports, once
    lines = (tmp_path / "p1.jsonl").read_text().splitlines()
    assert (tmp_path / "p2.jsonl").read_text().splitlines() == lines
    assert not list(tmp_path.glob("*.partial"))
    return lines


def test_classification_predict_evaluate_and_embed(tiny_recipe: Path, tmp_path: Path, sentiment_files) -> None:
    finetune(tiny_recipe, "training.num_train_epochs=1")
    model = tmp_path / "out"
    rng = random.Random(2)  # more rows than one batch per process, of many lengths
    data = write_jsonl(tmp_path / "many.jsonl", [{"text": " ".join(_review(rng, i % 2 == 0) for _ in range(i % 7 + 1)),
                                                  "label": "pos" if i % 2 == 0 else "neg"} for i in range(150)])
    lines = same_predictions(model, data, tmp_path)
    assert len(lines) == 150
    same_evaluation(model, data, tmp_path)
    for n in (1, 2):
        bertkit("embed", model, data, "-o", tmp_path / f"e{n}.npy", "--quiet", processes=n)
    assert (tmp_path / "e1.npy").read_bytes() == (tmp_path / "e2.npy").read_bytes()


def test_ner(tiny_en_model: Path, tmp_path: Path) -> None:
    from test_ner import conll_files

    files = conll_files(tmp_path)
    finetune(ROOT / "recipes" / "ncbi-disease-ner.yaml", f"model={tiny_en_model}", f"output_dir={tmp_path / 'ner'}",
             "max_length=16", "precision=fp32", "ner.stride=4", f"data.train={files['train']}",
             f"data.validation={files['validation']}", "data.test=null", "training.num_train_epochs=1")
    same_evaluation(tmp_path / "ner", files["test"], tmp_path)
    sentences = [" ".join(line.split()[0] for line in block.splitlines() if line.strip())
                 for block in files["test"].read_text().split("\n\n") if block.strip() and "DOCSTART" not in block]
    data = write_jsonl(tmp_path / "sentences.jsonl", [{"text": s} for s in sentences])
    assert len(same_predictions(tmp_path / "ner", data, tmp_path)) == len(sentences)


def test_qa(tiny_en_model: Path, tmp_path: Path) -> None:
    from test_qa import en_example, squad_json, write_recipe

    rng = random.Random(6)
    train, test = tmp_path / "train.json", tmp_path / "test.json"
    train.write_text(json.dumps(squad_json([en_example(rng, i) for i in range(24)])), encoding="utf-8")
    rows = [en_example(rng, 100 + i) for i in range(20)]
    test.write_text(json.dumps(squad_json(rows)), encoding="utf-8")
    finetune(write_recipe(tmp_path, tiny_en_model, train), "training.num_train_epochs=1")
    same_evaluation(tmp_path / "out", test, tmp_path)
    questions = write_jsonl(tmp_path / "questions.jsonl", [{"question": r["question"], "context": r["context"]}
                                                           for r in rows])
    assert len(same_predictions(tmp_path / "out", questions, tmp_path)) == 20


@pytest.mark.parametrize("command", ["predict", "evaluate", "embed"])
def test_zero_processes_is_one_line(command: str, tiny_recipe: Path, sentiment_files, tmp_path: Path) -> None:
    args = {"predict": [tmp_path, sentiment_files["test"], "-o", tmp_path / "p.jsonl"],
            "evaluate": [tmp_path, sentiment_files["test"], "--output-dir", tmp_path / "ev"],
            "embed": [tmp_path, sentiment_files["test"], "-o", tmp_path / "e.npy"]}[command]
    result = CliRunner().invoke(app, [command, *map(str, args), "--num-processes", "0"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--num-processes must be 1 or more" in lines[0]
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "ev").exists() and not (tmp_path / "e.npy").exists()


def test_standard_input_is_refused_on_several_processes(tiny_recipe: Path, tmp_path: Path) -> None:
    finetune(tiny_recipe, "training.num_train_epochs=1")
    command = [sys.executable, "-m", "bertkit", "predict", str(tmp_path / "out"), "-", "--num-processes", "2"]
    result = subprocess.run(command, input="a great film\n", capture_output=True, text=True, env=ENV, cwd=ROOT,
                            timeout=TIMEOUT)
    assert result.returncode == 1
    assert "reads a file, not standard input" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
