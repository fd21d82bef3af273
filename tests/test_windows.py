"""classification.truncation: windows — long texts read whole in overlapping windows, one prediction
per text. Window layout and aggregation are checked against independent computations; a synthetic set
whose label sits only in each text's last sentence shows what windows buy over head-only reading."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bertkit.cli import app
from bertkit.tasks import text_windows
from conftest import NEGATIVE, NEUTRAL, POSITIVE, write_jsonl

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("n,budget,stride,cap", [(5, 8, 2, 4), (8, 8, 2, 4), (9, 8, 2, 4), (30, 8, 2, 100),
                                                 (30, 8, 0, 100), (31, 10, 5, 100), (100, 8, 3, 4), (100, 8, 3, 1)])
def test_window_spans_cover_the_text_in_full_windows(n, budget, stride, cap):
    spans = text_windows.spans(n, budget, stride, cap)
    if n <= budget:
        assert spans == [(0, n)]
        return
    # independently: windows advance by budget - stride until one reaches the end
    expected_count, end = 1, budget
    while end < n:
        end += budget - stride
        expected_count += 1
    assert text_windows.needed(n, budget, stride) == expected_count
    assert all(e - s == budget for s, e in spans)  # every window is full
    assert spans[0][0] == 0  # the head is always read
    assert spans[-1][1] == n or cap == 1  # and the end, unless one window (the head) is all there is
    if expected_count <= cap:
        assert len(spans) == expected_count
        covered = set().union(*(range(s, e) for s, e in spans))
        assert covered == set(range(n))  # nothing is left out
        for (s0, e0), (s1, _) in zip(spans, spans[1:]):
            assert e0 - s1 >= stride  # neighbours share at least stride tokens
    else:  # too long: the first cap-1 windows and the last (the head alone for cap 1)
        assert len(spans) == cap
        full = text_windows.spans(n, budget, stride, 10**9)
        assert spans == (full[: cap - 1] + full[-1:] if cap > 1 else full[:1])


@pytest.mark.parametrize("how", ["mean", "max"])
def test_windows_combine_per_text_and_per_label(how):
    rng = np.random.default_rng(0)
    docs = [0, 0, 0, 1, 2, 2, 3]
    logits = rng.normal(size=(len(docs), 3)).astype(np.float32)
    combined = text_windows.combine_windows(logits, text_windows.window_counts(docs), how)
    for doc in sorted(set(docs)):
        rows = [logits[i] for i, d in enumerate(docs) if d == doc]
        expected = [max(r[j] for r in rows) if how == "max" else sum(r[j] for r in rows) / len(rows) for j in range(3)]
        np.testing.assert_allclose(combined[doc], expected, rtol=1e-6)
    assert combined.windows == [3, 1, 2, 1]


def _long_doc(rng: random.Random, positive: bool, filler: int) -> str:
    """Neutral filler, then one last sentence that alone decides the label."""
    words = [rng.choice(NEUTRAL) for _ in range(filler)]
    return " ".join(words) + ". the film was " + rng.choice(POSITIVE if positive else NEGATIVE) + "."


@pytest.fixture()
def last_sentence_files(tmp_path: Path) -> dict[str, Path]:
    rng = random.Random(3)
    out = {}
    for split, n in (("train", 240), ("validation", 40), ("test", 80)):
        rows = [{"text": _long_doc(rng, i % 2 == 0, rng.randint(14, 40)), "label": "pos" if i % 2 == 0 else "neg"}
                for i in range(n)]
        out[split] = write_jsonl(tmp_path / f"{split}.jsonl", rows)
    return out


def _recipe(tmp_path: Path, model: Path, files: dict[str, Path], truncation: str) -> Path:
    path = tmp_path / f"{truncation}.yaml"
    path.write_text(f"""# bertkit finetune {truncation}.yaml
task: classification
model: {model}
output_dir: {tmp_path / truncation}
seed: 11
max_length: 16
precision: fp32
data:
  train: {files['train']}
  validation: {files['validation']}
  test: {files['test']}
classification:
  truncation: {truncation}
training:
  num_train_epochs: 6
  learning_rate: 3.0e-3
  per_device_train_batch_size: 16
  logging_steps: 20
""", encoding="utf-8")
    return path


def test_windows_read_the_deciding_last_sentence_that_head_only_never_sees(tmp_path, tiny_en_model,
                                                                          last_sentence_files):
    accuracy = {}
    for truncation in ("head", "windows"):
        result = invoke("finetune", _recipe(tmp_path, tiny_en_model, last_sentence_files, truncation), "--quiet")
        assert result.exit_code == 0, result.output
        accuracy[truncation] = json.loads((tmp_path / truncation / "metrics.json").read_text())["test"]["accuracy"]
    assert accuracy["head"] <= 0.65  # the deciding word is never inside the first 16 tokens: chance
    assert accuracy["windows"] >= 0.95

    # one prediction per text, with its window count, in evaluate, in predict and in the metrics report
    model = tmp_path / "windows"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    test_rows = read_jsonl(last_sentence_files["test"])
    expected = []
    for row in test_rows:
        n = len(tokenizer(row["text"], add_special_tokens=False)["input_ids"])
        budget, stride = 16 - 2, 16 // 4  # [CLS] ... [SEP]; the default overlap is a quarter of max_length
        expected.append(1 if n <= budget else -(-(n - budget) // (budget - stride)) + 1)
    assert [r["windows"] for r in read_jsonl(model / "predictions.jsonl")] == expected
    assert max(expected) > 1
    out = tmp_path / "predicted.jsonl"
    assert invoke("predict", model, last_sentence_files["test"], "-o", out).exit_code == 0
    predicted = read_jsonl(out)
    assert len(predicted) == len(test_rows)
    assert [r["windows"] for r in predicted] == expected
    gold = [r["label"] for r in test_rows]
    assert sum(p["label"] == g for p, g in zip(predicted, gold)) / len(gold) == pytest.approx(accuracy["windows"])
    lengths = json.loads((model / "metrics.json").read_text())
    report = json.dumps(lengths)
    assert "texts need more than one window" in report  # the training data report keeps the count


def test_validate_counts_the_texts_that_need_several_windows(tmp_path, tiny_en_model, last_sentence_files):
    recipe = _recipe(tmp_path, tiny_en_model, last_sentence_files, "windows")
    result = invoke("validate", recipe, "classification.windows.max_windows=2")
    assert result.exit_code == 0, result.output
    assert "texts need more than one window of max_length=16" in result.output
    assert "need more than max_windows=2" in result.output


@pytest.mark.parametrize("override,named", [
    ("classification.windows.stride=16", "classification.windows.stride"),
    ("classification.windows.max_windows=0", "classification.windows.max_windows"),
    ("classification.windows.aggregate=median", "classification.windows.aggregate"),
])
def test_bad_window_settings_are_one_line_and_write_nothing(tmp_path, tiny_en_model, last_sentence_files, override,
                                                           named):
    recipe = _recipe(tmp_path, tiny_en_model, last_sentence_files, "windows")
    result = runner.invoke(app, ["finetune", str(recipe), override])
    assert result.exit_code == 1
    assert named in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "windows").exists()
