"""bertkit tune: a few trials on the tiny model write trials.csv, best.yaml and the best model only;
best.yaml reproduces the best trial; a killed study resumes; bad search spaces and options are one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bertkit.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


SPACE = """tune:
  learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
  num_train_epochs: {low: 1, high: 2}
"""


def tune_recipe(tiny_recipe: Path, space: str = SPACE) -> Path:
    path = tiny_recipe.with_name("tune.yaml")
    path.write_text(tiny_recipe.read_text() + space, encoding="utf-8")
    return path


def test_tune_writes_trials_best_recipe_and_only_the_best_model(tiny_recipe: Path, tmp_path: Path) -> None:
    result = invoke("tune", tune_recipe(tiny_recipe), "--trials", 3)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "tune"
    rows = list(csv.DictReader((folder / "trials.csv").open(encoding="utf-8")))
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"number", "state", "value", "training.learning_rate", "training.num_train_epochs", "seconds"}
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: float(r["value"]))
    assert sorted(p.name for p in folder.glob("trial-*")) == [f"trial-{best['number']}"]
    assert (folder / "search.png").stat().st_size > 0 and (folder / "study.db").exists()
    chosen = yaml.safe_load((folder / "best.yaml").read_text())
    assert chosen["training"]["learning_rate"] == pytest.approx(float(best["training.learning_rate"]))
    assert chosen["data"]["test"] is not None and "tune" not in chosen  # the test split is back; no search block
    trial_metrics = json.loads((folder / f"trial-{best['number']}" / "metrics.json").read_text())
    assert "test" not in trial_metrics  # trials never see the test split
    # best.yaml reproduces the best trial (same seed, same held-out rows)
    result = invoke("finetune", folder / "best.yaml", f"output_dir={tmp_path / 'again'}")
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["validation"]["f1_macro"] == pytest.approx(float(best["value"]), abs=0.01)
    assert "test" in again
    # more trials on the same study: it resumes, counting the three done
    result = invoke("tune", tune_recipe(tiny_recipe), "--trials", 4)
    assert result.exit_code == 0, result.output
    assert "3 trial(s) done" in result.output
    assert len(list(csv.DictReader((folder / "trials.csv").open(encoding="utf-8")))) == 4


@pytest.mark.parametrize("space,message", [
    ("tune:\n  learnin_rate: {low: 1.0e-5, high: 1.0e-4}\n", "tune.learnin_rate cannot be searched"),
    ("tune: {}\n", "names no setting to search"),
    ("tune:\n  learning_rate: {low: 1.0e-3, high: 1.0e-4}\n", "needs numbers low < high"),
    ("tune:\n  learning_rate: 0.1\n", "must be a list of choices or a range"),
])
def test_bad_search_spaces_are_one_line_and_write_nothing(tiny_recipe: Path, tmp_path: Path, space: str, message: str) -> None:
    result = invoke("tune", tune_recipe(tiny_recipe, space), "--trials", 2)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_bad_trials_and_storage_are_one_line_and_write_nothing(tiny_recipe: Path, tmp_path: Path) -> None:
    result = invoke("tune", tune_recipe(tiny_recipe), "--trials", 0)
    assert result.exit_code == 1 and "at least one trial" in result.output
    result = invoke("tune", tune_recipe(tiny_recipe), "--storage", "nosuchdb://x/y")
    assert result.exit_code == 1 and "could not open the study storage" in result.output
    assert not (tmp_path / "out").exists()


def test_seeds_report_mean_and_std_and_keep_the_best_run(tiny_recipe: Path, tmp_path: Path) -> None:
    import statistics

    result = invoke("finetune", tiny_recipe, "--seeds", 3, "training.num_train_epochs=1")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    summary = json.loads((out / "metrics.json").read_text())["seeds"]
    assert summary["seeds"] == [7, 8, 9]
    values = summary["validation.f1_macro"]["values"]
    assert summary["validation.f1_macro"]["mean"] == pytest.approx(statistics.mean(values))
    assert summary["validation.f1_macro"]["std"] == pytest.approx(statistics.stdev(values))
    assert len(summary["test.accuracy"]["values"]) == 3
    kept = summary["kept"]
    assert json.loads((out / "metrics.json").read_text())["validation"]["f1_macro"] == max(values)
    assert values[kept - 7] == max(values)
    assert not list(tmp_path.glob("out.seed-*"))  # the other runs are gone
    assert "validation.f1_macro:" in result.output and "+-" in result.output
    assert yaml.safe_load((out / "recipe.yaml").read_text())["seed"] == kept


def test_a_killed_tune_resumes_from_its_storage(tiny_recipe: Path, tmp_path: Path) -> None:
    import optuna

    path = tune_recipe(tiny_recipe)
    assert invoke("tune", path, "--trials", 1).exit_code == 0
    folder = tmp_path / "out" / "tune"
    # a tune killed in its second trial leaves that trial RUNNING in the study
    study = optuna.load_study(study_name="bertkit", storage=f"sqlite:///{folder / 'study.db'}")
    study.ask()
    result = invoke("tune", path, "--trials", 2)
    assert result.exit_code == 0, result.output
    assert "1 trial(s) done" in result.output
    states = [r["state"] for r in csv.DictReader((folder / "trials.csv").open(encoding="utf-8"))]
    assert states.count("COMPLETE") + states.count("PRUNED") == 2 and states[1] == "FAIL"
    assert len(list(folder.glob("trial-*"))) == 1
