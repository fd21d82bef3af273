"""Recipe loading: overrides, validation errors collected at once, shipped recipes, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertkit import recipe as recipe_mod
from bertkit.errors import BertkitError

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))

BASE = """task: classification
model: minilm-l6
output_dir: out
data:
  train: train.jsonl
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates_and_says_how_to_run_it(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# bertkit ") and path.name in first
    recipe = recipe_mod.load(path)
    assert recipe.task in ("classification", "ner", "qa", "mlm")


def test_shipped_recipes_exist() -> None:
    assert {"quickstart", "imdb", "ja-sentiment"} <= {p.stem for p in RECIPES}


def test_overrides_win_and_are_typed(tmp_path: Path) -> None:
    recipe = recipe_mod.load(write(tmp_path, BASE), ["training.learning_rate=3e-5", "max_length=64",
                                                     "data.train=other.jsonl", "classification.threshold=0.3"])
    assert recipe.training["learning_rate"] == pytest.approx(3e-5)
    assert recipe.max_length == 64
    assert recipe.data.train == "other.jsonl"
    assert recipe.options.threshold == pytest.approx(0.3)


def test_strategy_no_survives_yaml_reading_it_as_false(tmp_path: Path) -> None:
    # YAML 1.1 turns a bare `no` into false; TrainingArguments wants the string "no".
    recipe = recipe_mod.load(write(tmp_path, BASE + "training:\n  save_strategy: no\n"), ["training.eval_strategy=no"])
    assert recipe.training["save_strategy"] == "no"
    assert recipe.training["eval_strategy"] == "no"


def test_unknown_keys_suggest_the_closest_and_all_problems_come_at_once(tmp_path: Path) -> None:
    text = BASE + "max_lenght: 12\ntraining:\n  learning_rat: 1.0\n  num_train_epochs: -1\n"
    with pytest.raises(BertkitError) as info:
        recipe_mod.load(write(tmp_path, text), ["data.text_colum=x", "seed=abc"])
    message = info.value.message
    assert "4 problems" in message or "5 problems" in message
    assert "did you mean 'max_length'" in message
    assert "did you mean 'learning_rate'" in message
    assert "did you mean 'text_column'" in message
    assert "'seed' must be int" in message
    assert "'training.num_train_epochs' must be positive" in message


def test_wrong_type_and_range_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(BertkitError, match="'training.learning_rate' must be positive"):
        recipe_mod.load(write(tmp_path, BASE), ["training.learning_rate=-1"])
    with pytest.raises(BertkitError, match="'data.validation_size' must be between 0 and 1"):
        recipe_mod.load(write(tmp_path, BASE), ["data.validation_size=2.0"])
    with pytest.raises(BertkitError, match="'classification.truncation' must be one of"):
        recipe_mod.load(write(tmp_path, BASE), ["classification.truncation=middle"])


def test_missing_required_keys_and_bad_task(tmp_path: Path) -> None:
    with pytest.raises(BertkitError, match="missing required key 'model'"):
        recipe_mod.load(write(tmp_path, "task: classification\noutput_dir: o\ndata: {train: t.jsonl}\n"))
    with pytest.raises(BertkitError, match="'task' must be one of"):
        recipe_mod.load(write(tmp_path, BASE.replace("classification", "clasification")))


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BertkitError, match="not valid YAML at line 2"):
        recipe_mod.load(write(tmp_path, "task: classification\nmodel: a: b\n"))
    with pytest.raises(BertkitError, match="does not exist"):
        recipe_mod.load(tmp_path / "nope.yaml")
    with pytest.raises(BertkitError, match="key=value"):
        recipe_mod.load(write(tmp_path, BASE), ["novalue"])


def test_training_keys_bertkit_owns_are_redirected(tmp_path: Path) -> None:
    with pytest.raises(BertkitError, match="use the top-level key 'precision'"):
        recipe_mod.load(write(tmp_path, BASE + "training:\n  bf16: true\n"))


def test_saved_recipe_loads_back_identically(tmp_path: Path) -> None:
    recipe = recipe_mod.load(write(tmp_path, BASE), ["training.num_train_epochs=2", "classification.truncation=head_tail"])
    recipe_mod.save(recipe, tmp_path / "saved.yaml", notes=["ran on cpu"])
    again = recipe_mod.load(tmp_path / "saved.yaml")
    assert again.to_dict() == recipe.to_dict()


def test_attention_dropout_defaults_to_zero_and_is_range_checked(tmp_path: Path) -> None:
    assert recipe_mod.load(write(tmp_path, BASE)).attention_dropout == 0.0
    assert recipe_mod.load(write(tmp_path, BASE), ["attention_dropout=null"]).attention_dropout is None
    with pytest.raises(BertkitError, match="'attention_dropout' must be at least 0"):
        recipe_mod.load(write(tmp_path, BASE), ["attention_dropout=1.5"])
