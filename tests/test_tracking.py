"""Experiment tracking (``training.report_to``): a tiny classifier fine-tuned for 2 epochs with TensorBoard
and MLflow, both read back with the trackers' own readers (TensorBoard's ``EventAccumulator``, an
``MlflowClient`` over a local SQLite store); the loss curve, one point per epoch of bertkit's own task
metric, the final metrics, the recipe and the card must be there, with the values bertkit wrote to its
output directory. Bad ``report_to`` values fail in validation: one problem line, exit 1, nothing written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import _review, write_jsonl
from typer.testing import CliRunner

from bertkit import recipe as recipe_mod
from bertkit.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, tiny_en_model: Path) -> dict[str, Path]:
    """One finetune reporting to TensorBoard and MLflow (a comma list), shared by the tests that read it."""
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("tracked")
    rng = random.Random(0)
    files = {}
    for split, n in (("train", 64), ("validation", 24), ("test", 24)):
        rows = [{"text": _review(rng, i % 2 == 0), "label": "pos" if i % 2 == 0 else "neg"} for i in range(n)]
        files[split] = write_jsonl(root / f"{split}.jsonl", rows)
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""task: classification
model: {tiny_en_model}
output_dir: {root / 'out'}
seed: 7
max_length: 32
precision: fp32
data:
  train: {files['train']}
  validation: {files['validation']}
  test: {files['test']}
training:
  num_train_epochs: 2
  learning_rate: 5.0e-3
  per_device_train_batch_size: 8
  logging_steps: 2
""", encoding="utf-8")
    store = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow keeps a SQLite store's artifacts under ./mlruns
        mp.setenv("MLFLOW_TRACKING_URI", store)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "bertkit-test")
        result = invoke("finetune", recipe, "training.report_to=tensorboard, mlflow")
        assert result.exit_code == 0, result.output
        mlflow.set_tracking_uri(store)
        experiment = mlflow.get_experiment_by_name("bertkit-test")
        runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
        client = mlflow.tracking.MlflowClient(store)
        assert len(runs) == 1
        run = runs[0]
        histories = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                     for key in run.data.metrics}
        artifacts = root / "mlflow-artifacts"
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(artifacts))
    (root / "mlflow-run.json").write_text(json.dumps({"status": run.info.status, "histories": histories}))
    return {"out": root / "out", "mlflow": root / "mlflow-run.json", "artifacts": artifacts}


def _event_reader(out: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdirs = [p for p in (out / "runs").iterdir() if p.is_dir()]
    assert len(logdirs) == 1, logdirs  # the Trainer's callback and bertkit's final summaries share one directory
    reader = EventAccumulator(str(logdirs[0]), size_guidance={"scalars": 0, "tensors": 0})  # 0: keep every point
    reader.Reload()
    return reader


def _text(reader, tag: str) -> str:
    (event,) = reader.Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode("utf-8")


def _bertkit_curves(out: Path) -> tuple[list[tuple[int, float]], dict[str, list[tuple[int, float]]]]:
    """(step, training loss) records, and per validation metric its (step, value) per epoch, as bertkit
    logged them (train_log.jsonl is the Trainer's log history)."""
    history = read_jsonl(out / "train_log.jsonl")
    loss = [(r["step"], r["loss"]) for r in history if "loss" in r]
    evaluations: dict[str, list[tuple[int, float]]] = {}
    for record in history:
        for key, value in record.items():
            if key.startswith("eval_"):
                evaluations.setdefault(key.removeprefix("eval_"), []).append((record["step"], value))
    return loss, evaluations


def test_tensorboard_event_file_holds_loss_epoch_metrics_final_metrics_recipe_and_card(tracked: dict[str, Path]) -> None:
    out = tracked["out"]
    reader = _event_reader(out)
    loss, evaluations = _bertkit_curves(out)
    assert len(loss) == 8  # 16 steps logged every 2
    # bertkit's own task evaluation, once per epoch; Brier score moves even while accuracy stands still
    assert {"f1_macro", "accuracy", "brier", "ece"} <= set(evaluations)
    assert len(evaluations["brier"]) == 2 and evaluations["brier"][0][1] != evaluations["brier"][1][1]

    curve = [(e.step, e.value) for e in reader.Scalars("train/loss")]
    assert [s for s, _ in curve] == [s for s, _ in loss]
    assert [v for _, v in curve] == pytest.approx([v for _, v in loss], rel=1e-6)  # event files hold float32
    for name, points in evaluations.items():
        per_epoch = [(e.step, e.value) for e in reader.Scalars(f"eval/{name}")]
        assert [s for s, _ in per_epoch] == [s for s, _ in points] == [8, 16], name
        assert [v for _, v in per_epoch] == pytest.approx([v for _, v in points], rel=1e-6), name

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for split in ("test", "validation"):
        for name in ("accuracy", "f1_macro"):
            (event,) = reader.Scalars(f"final/{split}/{name}")
            assert event.step == 16
            assert event.value == pytest.approx(metrics[split][name], rel=1e-6)
    (event,) = reader.Scalars("final/test/per_class/pos/f1")
    assert event.value == pytest.approx(metrics["test"]["per_class"]["pos"]["f1"], rel=1e-6)
    (event,) = reader.Scalars("final/train/loss")
    assert event.value == pytest.approx(metrics["train"]["loss"], rel=1e-6)
    # the kept checkpoint's validation score is the best of the per-epoch points
    assert metrics["validation"]["f1_macro"] == pytest.approx(max(v for _, v in evaluations["f1_macro"]))

    recipe_text = (out / "recipe.yaml").read_text(encoding="utf-8")
    assert recipe_text in _text(reader, "recipe")
    assert "report_to:\n  - tensorboard\n  - mlflow" in recipe_text
    assert _text(reader, "model_card") == (out / "README.md").read_text(encoding="utf-8")


def test_mlflow_run_holds_loss_epoch_metrics_final_metrics_and_files(tracked: dict[str, Path]) -> None:
    out = tracked["out"]
    run = json.loads(tracked["mlflow"].read_text())
    assert run["status"] == "FINISHED"
    histories = {key: [tuple(point) for point in points] for key, points in run["histories"].items()}
    loss, evaluations = _bertkit_curves(out)
    assert [s for s, _ in histories["loss"]] == [s for s, _ in loss]
    assert [v for _, v in histories["loss"]] == pytest.approx([v for _, v in loss])
    for name in ("f1_macro", "brier"):
        assert [s for s, _ in histories[f"eval_{name}"]] == [s for s, _ in evaluations[name]] == [8, 16]
        assert [v for _, v in histories[f"eval_{name}"]] == pytest.approx([v for _, v in evaluations[name]])
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert histories["final/test/accuracy"] == [(16, pytest.approx(metrics["test"]["accuracy"]))]
    assert histories["final/validation/f1_macro"] == [(16, pytest.approx(metrics["validation"]["f1_macro"]))]
    for name in ("recipe.yaml", "README.md", "metrics.json"):
        assert (tracked["artifacts"] / name).read_bytes() == (out / name).read_bytes()


def test_trackio_run_holds_epoch_metrics_final_metrics_recipe_and_card(tiny_recipe: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """trackio is not in the tracking extra (see README); this runs where it is installed."""
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # read when trackio is first imported
    pytest.importorskip("trackio")
    from trackio.sqlite_storage import SQLiteStorage

    result = invoke("finetune", tiny_recipe, "training.report_to=trackio", "training.project=bertkit-test-tracking")
    assert result.exit_code == 0, result.output
    out = tiny_recipe.parent / "out"
    (run,) = SQLiteStorage.get_runs("bertkit-test-tracking")
    logs = SQLiteStorage.get_logs("bertkit-test-tracking", run)
    _, evaluations = _bertkit_curves(out)
    logged = [(r["train/global_step"], r["eval/brier"]) for r in logs if "eval/brier" in r]
    assert [s for s, _ in logged] == [s for s, _ in evaluations["brier"]] == [8, 16]
    assert [v for _, v in logged] == pytest.approx([v for _, v in evaluations["brier"]])
    (final,) = [r for r in logs if "final/test/accuracy" in r]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert final["train/global_step"] == 16
    assert final["final/test/accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert (out / "recipe.yaml").read_text(encoding="utf-8") in final["recipe"]["_value"]
    assert final["model_card"]["_value"] == (out / "README.md").read_text(encoding="utf-8")


def test_scalars_flatten_nested_numbers_and_leave_out_lists_and_text() -> None:
    from bertkit.tracking import scalars

    metrics = {"test": {"accuracy": 0.5, "per_class": {"pos": {"f1": 0.25}}, "confusion_matrix": {"matrix": [[1]]}},
               "train": {"loss": 0.7, "examples": 64, "strategy": "single process", "backend": None, "resumed": False},
               "data": {"splits": {"train": 64}}, "evaluated_split": "test"}
    assert scalars(metrics) == {"final/test/accuracy": 0.5, "final/test/per_class/pos/f1": 0.25,
                                "final/train/loss": 0.7, "final/train/examples": 64.0}


def test_a_tracker_failing_after_training_is_one_console_line_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from types import SimpleNamespace

    from bertkit import tracking

    (tmp_path / "recipe.yaml").write_text("task: classification\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("# card\n", encoding="utf-8")
    sent = []

    def unreachable(*args: object) -> None:
        raise ConnectionError("tracking server unreachable")

    monkeypatch.setattr(tracking, "_mlflow", unreachable)
    monkeypatch.setattr(tracking, "_tensorboard", lambda trainer, values, recipe, card, step: sent.append(values))
    trainer = SimpleNamespace(args=SimpleNamespace(report_to=["mlflow", "tensorboard"]),
                              state=SimpleNamespace(global_step=3), callback_handler=SimpleNamespace(callbacks=[]))
    tracking.finish(trainer, {"test": {"accuracy": 1.0}}, tmp_path)
    assert capsys.readouterr().err == ("could not send the final metrics to mlflow: ConnectionError: "
                                       "tracking server unreachable\n")
    assert sent == [{"final/test/accuracy": 1.0}]  # the next tracker still gets them


@pytest.mark.parametrize("command", ["validate", "finetune"])
def test_a_tracker_that_is_not_installed_fails_before_anything_is_written(
        command: str, tiny_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipe_mod, "tracker_installed", lambda name: name != "tensorboard")
    result = invoke(command, tiny_recipe, "training.report_to=tensorboard")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    problems = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert problems == ["  - 'training.report_to': tensorboard is not installed; run pip install 'bertkit[tracking]', "
                        "or set training.report_to=none"]
    assert "1 problem:" in result.output
    assert not (tiny_recipe.parent / "out").exists() and not (tiny_recipe.parent / "out.partial").exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("tensorbord", "'training.report_to': 'tensorbord' is not a tracker bertkit reports to; use none, tensorboard, "
                   "mlflow, trackio (a list or a comma list for several); did you mean 'tensorboard'?"),
    ("wandb", "'training.report_to': 'wandb' is not a tracker bertkit reports to; use none, tensorboard, mlflow, "
              "trackio (a list or a comma list for several)"),
    ("none,tensorboard", "'training.report_to': 'none' cannot be combined with a tracker; use none, tensorboard, "
                         "mlflow, trackio (a list or a comma list for several)"),
])
def test_an_unknown_tracker_name_fails_naming_the_accepted_values(value: str, expected: str, tiny_recipe: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipe_mod, "tracker_installed", lambda name: True)
    result = invoke("validate", tiny_recipe, f"training.report_to={value}")
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("  - ")] == [f"  - {expected}"]
    assert not (tiny_recipe.parent / "out").exists()


@pytest.mark.parametrize(("value", "resolved"), [
    ("none", "none"), (None, "none"), ("tensorboard", "tensorboard"), (" mlflow , tensorboard ", ["mlflow", "tensorboard"]),
    (["tensorboard", "trackio"], ["tensorboard", "trackio"]),
])
def test_report_to_accepts_none_one_tracker_or_several(value, resolved, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipe_mod, "tracker_installed", lambda name: True)
    recipe = recipe_mod.from_dict({"task": "classification", "model": "m", "output_dir": "o",
                                   "data": {"train": "t.jsonl"}, "training": {"report_to": value}})
    assert recipe.training["report_to"] == resolved
    assert recipe.training_args()["report_to"] == resolved
