"""End to end through the CLI: finetune -> evaluate -> predict on a tiny model, asserting exit codes,
the exact output files, and metrics recomputed independently of bertkit's own code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertkit.cli import app

runner = CliRunner()

OUTPUT_FILES = {
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "recipe.yaml", "metrics.json",
    "predictions.jsonl", "train_log.jsonl", "README.md", "training_curves.png", "confusion_matrix.png",
    "training_args.json", "errors.jsonl",
}


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def independent_scores(gold: list[str], pred: list[str]) -> dict[str, float]:
    """Accuracy and macro F1 from counts, without sklearn or bertkit."""
    labels = sorted(set(gold) | set(pred))
    f1s = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, pred))
        fp = sum(p == label != g for g, p in zip(gold, pred))
        fn = sum(g == label != p for g, p in zip(gold, pred))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {"accuracy": sum(g == p for g, p in zip(gold, pred)) / len(gold), "f1_macro": sum(f1s) / len(f1s)}


@pytest.fixture()
def trained(tiny_recipe: Path) -> Path:
    result = invoke("finetune", tiny_recipe)
    assert result.exit_code == 0, result.output
    return tiny_recipe.parent / "out"


def test_finetune_writes_a_complete_output_directory(trained: Path) -> None:
    assert {p.name for p in trained.iterdir()} == OUTPUT_FILES
    assert not (trained.parent / "out.partial").exists()
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics) >= {"validation", "test", "train", "data"}
    config = json.loads((trained / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    card = (trained / "README.md").read_text()
    assert "## Labels" in card and "`neg`, `pos`" in card and "bertkit predict" in card
    snippet = card.split("```python", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(snippet.replace(f'"{trained.name}"', repr(str(trained))), scope)  # the card's snippet works as written
    assert scope["pipe"]("a great film")[0]["label"] in ("neg", "pos")


def test_test_metrics_match_an_independent_count(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())["test"]
    rows = read_jsonl(trained / "predictions.jsonl")
    assert len(rows) == 24
    expected = independent_scores([r["gold"] for r in rows], [r["label"] for r in rows])
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["f1_macro"] == pytest.approx(expected["f1_macro"])
    matrix = metrics["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == 24
    for row in rows:
        assert set(row["probabilities"]) == {"neg", "pos"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["score"] == max(row["probabilities"].values())


def test_evaluate_agrees_with_plain_transformers(trained: Path, sentiment_files: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = invoke("evaluate", trained, sentiment_files["test"], "--output-dir", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert "accuracy=" in result.output
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    # The same model and data through plain transformers, one example at a time, in fp32.
    tokenizer = AutoTokenizer.from_pretrained(trained)
    model = AutoModelForSequenceClassification.from_pretrained(trained).eval()
    gold, pred = [], []
    for row in read_jsonl(sentiment_files["test"]):
        with torch.no_grad():
            logits = model(**tokenizer(row["text"], return_tensors="pt", truncation=True, max_length=32)).logits
        pred.append(model.config.id2label[int(logits.argmax())])
        gold.append(row["label"])
    expected = independent_scores(gold, pred)
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["f1_macro"] == pytest.approx(expected["f1_macro"])


def test_predict_writes_one_scored_line_per_input(trained: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("a really great movie\n\nthe plot was boring\nexcellent acting\n")
    result = invoke("predict", trained, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(tmp_path / "p.jsonl")
    assert len(rows) == 3
    for row in rows:
        assert row["label"] in ("neg", "pos") and 0.5 <= row["score"] <= 1.0
        assert set(row["probabilities"]) == {"neg", "pos"}
    csv_source = tmp_path / "in.csv"
    csv_source.write_text("id,review\n7,great fun\n")
    result = invoke("predict", trained, csv_source, "data.text_column=review")
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["id"] == "7" and line["label"] in ("neg", "pos")


def test_predict_one_text_from_the_command_line(trained: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("a really great movie\n")
    from_file = invoke("predict", trained, source)
    result = invoke("predict", trained, "--text", "a really great movie")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == json.loads(from_file.stdout.strip().splitlines()[-1])
    for args, words in ((["--text", "x", str(source)], "both an input file"), ([], "needs an input"),
                        (["--text", "x", "--question", "q"], "--text is for one text"), (["--question", "q"], "go together"),
                        (["--question", "q", "--context", "c"], "is a classification model")):
        result = invoke("predict", trained, *args)
        assert result.exit_code == 1 and words in result.output, (args, result.output)


def test_existing_output_dir_is_refused_then_overwritten(trained: Path, tiny_recipe: Path) -> None:
    result = runner.invoke(app, ["finetune", str(tiny_recipe)])
    assert result.exit_code == 1
    assert "already exists" in result.output and "--overwrite" in result.output
    assert "Traceback" not in result.output
    result = invoke("finetune", tiny_recipe, "--overwrite", "training.num_train_epochs=1")
    assert result.exit_code == 0, result.output
    assert {p.name for p in trained.iterdir()} == OUTPUT_FILES


def test_validate_reports_without_training(tiny_recipe: Path) -> None:
    result = invoke("validate", tiny_recipe, "max_length=8")
    assert result.exit_code == 0, result.output
    assert "splits: train=64, validation=24, test=24" in result.output
    assert "labels (2): neg (32), pos (32)" in result.output
    assert "longer than max_length=8" in result.output
    assert not (tiny_recipe.parent / "out").exists()


def test_japanese_classification_end_to_end(tiny_ja_model: Path, ja_sentiment_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ja-out"
    result = invoke("finetune", Path(__file__).parent.parent / "recipes" / "ja-sentiment.yaml",
                    f"model={tiny_ja_model}", f"data.train={ja_sentiment_file}", f"output_dir={out}",
                    "max_length=32", "precision=fp32", "training.num_train_epochs=1", "data.validation_size=0.25")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "BertJapaneseTokenizer"
    result = invoke("predict", out, "-", input="売上高は増加しました。\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"] in ("negative", "positive")


def test_training_metric_for_best_model_eval_loss_keeps_the_lowest_loss(tiny_recipe: Path, tmp_path: Path) -> None:
    """training.metric_for_best_model=eval_loss: the checkpoint with the lowest validation loss is
    restored (greater_is_better is derived from the name, not the task's default)."""
    out = tmp_path / "by-loss"
    result = invoke("finetune", tiny_recipe, "training.metric_for_best_model=eval_loss", "training.num_train_epochs=3",
                    "training.learning_rate=0.05", f"output_dir={out}")
    assert result.exit_code == 0, result.output
    args = json.loads((out / "training_args.json").read_text())
    assert args["metric_for_best_model"] == "eval_loss" and args["greater_is_better"] is False
    losses = [e["eval_loss"] for e in read_jsonl(out / "train_log.jsonl") if "eval_loss" in e]
    assert len(losses) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["best_checkpoint_metric"] == pytest.approx(min(losses))
    result = runner.invoke(app, ["validate", str(tiny_recipe), "training.greater_is_better=true"])
    assert result.exit_code == 1 and "'training.greater_is_better' is derived" in result.output
    result = runner.invoke(app, ["validate", str(tiny_recipe), "metric_for_best_model=accuracy",
                                 "training.metric_for_best_model=eval_loss"])
    assert result.exit_code == 1 and "the best-model metric is given twice" in result.output


def test_console_shows_tables_not_raw_dicts(tiny_recipe: Path, tmp_path: Path) -> None:
    """No raw Trainer dicts on the console: a table per evaluation; --quiet only the results;
    --verbose each log record as a line. The full record is in train_log.jsonl every time."""
    result = invoke("finetune", tiny_recipe, f"output_dir={tmp_path / 'normal'}")
    assert result.exit_code == 0, result.output
    assert "{'" not in result.output and "validation, epoch 1.00" in result.output
    assert "f1_macro" in result.output.split("validation, epoch 2.00")[1]
    quiet = invoke("finetune", tiny_recipe, f"output_dir={tmp_path / 'quiet'}", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert "validation, epoch" not in quiet.output and "tokenising" not in quiet.output
    assert "test: accuracy=" in quiet.output and "saved to" in quiet.output
    verbose = invoke("finetune", tiny_recipe, f"output_dir={tmp_path / 'verbose'}", "--verbose")
    assert verbose.exit_code == 0, verbose.output
    assert "{'" not in verbose.output and "step 2/16 (epoch 0.25): loss " in verbose.output
    for run in ("normal", "quiet", "verbose"):
        log = read_jsonl(tmp_path / run / "train_log.jsonl")
        assert sum("eval_f1_macro" in e for e in log) == 2 and sum("loss" in e for e in log) >= 8
    both = runner.invoke(app, ["finetune", str(tiny_recipe), "--quiet", "--verbose"])
    assert both.exit_code == 1 and "--quiet and --verbose contradict" in both.output


def test_train_and_test_only_trains_on_every_row(tiny_recipe: Path, tmp_path: Path) -> None:
    """No validation split with a test split: every training row trains, nothing is evaluated while
    training, the last epoch's model is kept and scored on test (as the standard recipe does)."""
    out = tmp_path / "no-val"
    result = invoke("finetune", tiny_recipe, "data.validation=null", f"output_dir={out}")
    assert result.exit_code == 0, result.output
    assert "splits: train=64, test=24" in result.output and "no validation split" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert "validation" not in metrics and metrics["evaluated_split"] == "test"
    assert metrics["train"]["examples"] == 64
    log = read_jsonl(out / "train_log.jsonl")
    assert not any("eval_loss" in entry for entry in log)
    gold = [json.loads(line)["label"] for line in Path(str(tiny_recipe.parent / "test.jsonl")).read_text().splitlines()]
    predicted = [row["label"] for row in read_jsonl(out / "predictions.jsonl")]
    assert metrics["test"]["accuracy"] == pytest.approx(independent_scores(gold, predicted)["accuracy"])
    result = runner.invoke(app, ["validate", str(tiny_recipe), "data.validation=null", "early_stopping_patience=2"])
    assert result.exit_code == 1 and "early_stopping_patience needs a validation split" in result.output


@pytest.mark.parametrize("args, message", [
    (["finetune", "missing.yaml"], "recipe file missing.yaml does not exist"),
    (["evaluate", "no/such/model", "x.jsonl"], "model path no/such/model does not exist"),
])
def test_errors_are_one_sentence_and_exit_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"error: {message}" in result.output
    assert "Traceback" not in result.output


def test_bad_data_and_unknown_labels(tiny_recipe: Path, tmp_path: Path, trained: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "pos"}\n{"text": oops}\n')
    result = runner.invoke(app, ["validate", str(tiny_recipe), f"data.train={bad}"])
    assert result.exit_code == 1 and "bad.jsonl, line 2: not valid JSON" in result.output
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"text": "fine", "label": "maybe"}\n')
    result = runner.invoke(app, ["evaluate", str(trained), str(unknown)])
    assert result.exit_code == 1 and "label 'maybe' is not one the model knows" in result.output
    result = runner.invoke(app, ["validate", str(tiny_recipe), "data.text_column=txt"])
    assert result.exit_code == 1 and "no column 'txt'; did you mean 'text'" in result.output


def test_hub_id_offline_fails_fast_with_the_override_to_use(tiny_recipe: Path) -> None:
    result = runner.invoke(app, ["validate", str(tiny_recipe), "model=someone/not-cached-model"])
    assert result.exit_code == 1
    assert "cannot be reached" in result.output and "model=minilm-l6" in result.output


def test_help_is_instant_and_imports_nothing_heavy() -> None:
    code = "import sys; from bertkit.cli import app; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_errors_and_calibration_are_reported(trained: Path) -> None:
    import numpy as np

    metrics = json.loads((trained / "metrics.json").read_text())["validation"]
    rows = read_jsonl(trained / "errors.jsonl")
    # every wrong validation prediction, worst (highest -log p(gold)) first
    gold_rows = [r for r in read_jsonl(trained / "predictions.jsonl")]  # the test split's; validation's are in errors
    assert all(r["label"] != r["gold"] for r in rows)
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True)
    for r in rows:
        assert r["loss"] == pytest.approx(-np.log(r["probabilities"][r["gold"]]), abs=1e-4)
        assert isinstance(r["likely_label_error"], bool)
    n_wrong = round((1 - metrics["accuracy"]) * sum(map(sum, metrics["confusion_matrix"]["matrix"])))
    assert len(rows) == n_wrong
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["brier"] <= 2
    assert gold_rows


def test_calibration_matches_an_independent_computation() -> None:
    import numpy as np

    from bertkit.tasks.classification import calibration

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=200)
    gold = rng.integers(0, 3, size=200)
    top, pred = probs.max(1), probs.argmax(1)
    ece = 0.0
    for lo in np.arange(0, 1, 0.1):
        inside = (top > lo) & (top <= lo + 0.1)
        if inside.any():
            ece += inside.mean() * abs((pred[inside] == gold[inside]).mean() - top[inside].mean())
    brier = np.mean([sum((probs[i, k] - (gold[i] == k)) ** 2 for k in range(3)) for i in range(200)])
    out = calibration(probs, gold)
    assert out["ece"] == pytest.approx(ece) and out["brier"] == pytest.approx(brier)


def test_auto_threshold_and_temperature_are_fitted_saved_and_applied(tiny_recipe: Path, tmp_path: Path) -> None:
    """threshold: auto and calibrate: true are fitted on validation, kept in config.json, and evaluate and
    predict apply them (checked against the saved model's own logits)."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = invoke("finetune", tiny_recipe, "classification.threshold=auto", "classification.calibrate=true",
                    "training.num_train_epochs=1")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())
    t, (cut,) = config["bertkit_temperature"], config["bertkit_thresholds"]
    assert 0.05 <= t <= 20.1 and 0.05 <= cut <= 0.95
    texts = ["a really great movie", "the plot was boring", "excellent acting", "it was dull", "the movie"]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    result = invoke("predict", out, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModelForSequenceClassification.from_pretrained(out).eval()
    for text, row in zip(texts, read_jsonl(tmp_path / "p.jsonl")):
        with torch.no_grad():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0].numpy().astype(np.float64)
        probs = np.exp(logits / t) / np.exp(logits / t).sum()
        assert row["probabilities"][model.config.id2label[1]] == pytest.approx(probs[1], abs=1e-4)
        assert row["label"] == model.config.id2label[int(probs[1] >= cut)]
    # evaluate applies the same decisions: its accuracy is the one recomputed from its predictions
    result = invoke("evaluate", out, tiny_recipe.parent / "test.jsonl", "--output-dir", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(tmp_path / "ev" / "predictions.jsonl")
    accuracy = sum(r["label"] == r["gold"] for r in rows) / len(rows)
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] == pytest.approx(accuracy)


def test_temperature_lowers_the_validation_nll_it_was_fitted_on() -> None:
    import numpy as np

    from bertkit import recipe as recipe_mod
    from bertkit.tasks import classification

    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, size=300)
    logits = np.stack([-gold * 4.0, gold * 4.0], axis=1) + rng.normal(0, 3, size=(300, 2))  # overconfident
    recipe = recipe_mod.from_dict({"task": "classification", "model": "m", "output_dir": "o", "data": {"train": "t"},
                                   "classification": {"calibrate": True}})
    spec = classification.Spec(problem_type="single_label", labels=["a", "b"], values=[0, 1])

    def nll() -> float:
        p = classification.probabilities(spec, logits)
        return float(-np.log(p[np.arange(300), gold]).mean())

    before = nll()
    import datasets

    validation = datasets.Dataset.from_dict({"labels": gold.tolist()})  # the validation features' labels
    fitted = classification.fit_on_validation(spec, recipe, logits, validation)
    assert fitted["bertkit_temperature"] == spec.temperature != 1.0
    assert nll() < before
    raw = classification.Spec("single_label", ["a", "b"], [0, 1])  # temperature 1
    ece = classification.calibration(classification.probabilities(spec, logits), gold)["ece"]
    assert ece < classification.calibration(classification.probabilities(raw, logits), gold)["ece"]
