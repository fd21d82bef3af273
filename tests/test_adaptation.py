"""Domain adaptation judged downstream: the probe (start vs adapted model, several seeds), task-adaptive
pretraining on the probe's training text, the leakage guard, the fresh head's warm-up, and the bad
inputs around them; English and Japanese."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bertkit.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTKIT_CACHE_DIR", str(tmp_path / "user-cache"))


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def mlm_recipe(tmp_path: Path, model: Path, train: str, **mlm_options: object) -> Path:
    tree = {"task": "mlm", "model": str(model), "output_dir": str(tmp_path / "adapted"), "seed": 3, "max_length": 32,
            "precision": "fp32", "data": {"train": train, "validation_size": 0.25},
            "mlm": {"cache_dir": str(tmp_path / "cache"), **mlm_options},
            "training": {"num_train_epochs": 1, "learning_rate": 5.0e-3, "per_device_train_batch_size": 8}}
    path = tmp_path / "mlm.yaml"
    path.write_text("# bertkit adapt-domain mlm.yaml\n" + yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def corpus_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def texts_of(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def probe_recipe(tmp_path: Path, tiny_recipe: Path, **data: object) -> Path:
    tree = yaml.safe_load(tiny_recipe.read_text(encoding="utf-8"))
    tree["training"]["num_train_epochs"] = 1
    tree["data"].update(data)
    path = tmp_path / "probe.yaml"
    path.write_text("# bertkit finetune probe.yaml\n" + yaml.safe_dump(tree), encoding="utf-8")
    return path


def encoder_only(source: Path, target: Path) -> Path:
    """The tiny model saved without its MLM head, as the MiniLM sentence encoder ships."""
    from transformers import BertModel

    BertModel.from_pretrained(source).save_pretrained(target)
    for f in source.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special")):
            shutil.copy(f, target / f.name)
    return target


# ---------------------------------------------------------------------------------------------
# The probe


def test_probe_compares_start_and_adapted_over_seeds(tiny_en_model: Path, tiny_recipe: Path,
                                                     sentiment_files: dict[str, Path], tmp_path: Path) -> None:
    probe = probe_recipe(tmp_path, tiny_recipe)
    corpus = corpus_file(tmp_path / "corpus.txt", texts_of(sentiment_files["train"]))
    path = mlm_recipe(tmp_path, tiny_en_model, str(corpus), probe={"seeds": 2, "recipe": str(probe)})
    result = invoke("adapt-domain", path)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "adapted" / "metrics.json").read_text())
    report = metrics["probe"]
    assert report["split"] == "test" and report["metric"] == "f1_macro" and report["seeds"] == [7, 8]
    # The adapted run's scores are those of ordinary fine-tunes of the adapted model: rerun one by hand.
    seed_8 = tmp_path / "by-hand"
    again = invoke("finetune", probe, f"model={tmp_path / 'adapted'}", "seed=8", f"output_dir={seed_8}")
    assert again.exit_code == 0, again.output
    assert report["adapted"]["values"][1] == pytest.approx(json.loads((seed_8 / "metrics.json").read_text())["test"]["f1_macro"])
    for label in ("start", "adapted"):
        values = report[label]["values"]
        assert len(values) == 2 and report[label]["mean"] == pytest.approx(sum(values) / 2)
    assert report["difference"] == pytest.approx(report["adapted"]["mean"] - report["start"]["mean"])
    assert report["beats_start"] == (report["difference"] > max(report["start"]["std"], report["adapted"]["std"]))
    assert "probe start" in result.output and "probe adapted" in result.output
    assert ("beats the start" in result.output) or ("NOT" in result.output)
    assert "## Downstream probe" in (tmp_path / "adapted" / "README.md").read_text()
    assert not (tmp_path / "adapted.probe").exists()  # the probe's scratch fine-tunes are gone
    # A second adaptation with the same probe reuses the start model's scores.
    rerun = invoke("adapt-domain", path, "--overwrite", f"output_dir={tmp_path / 'adapted-2'}")
    assert rerun.exit_code == 0, rerun.output
    assert "start model's scores with these settings are cached" in rerun.output
    again = json.loads((tmp_path / "adapted-2" / "metrics.json").read_text())["probe"]
    assert again["start"]["values"] == report["start"]["values"]


# ---------------------------------------------------------------------------------------------
# Task-adaptive pretraining


def test_task_text_is_the_probes_training_inputs(tiny_en_model: Path, tiny_recipe: Path, sentiment_files: dict[str, Path],
                                                 tmp_path: Path) -> None:
    from bertkit import recipe as recipe_mod
    from bertkit.tasks import mlm

    probe = probe_recipe(tmp_path, tiny_recipe)
    other = corpus_file(tmp_path / "domain.txt", ["the plot of the story was dull and weak", "a lovely film"])
    train_texts = texts_of(sentiment_files["train"])
    only = recipe_mod.load(mlm_recipe(tmp_path, tiny_en_model, "task", probe={"recipe": str(probe)}))
    assert mlm.load_raw(only)["train"]["text"] == train_texts
    both = recipe_mod.load(mlm_recipe(tmp_path, tiny_en_model, str(other), task_text=True, probe={"recipe": str(probe)}))
    assert mlm.load_raw(both)["train"]["text"] == ["the plot of the story was dull and weak", "a lovely film", *train_texts]
    result = invoke("adapt-domain", mlm_recipe(tmp_path, tiny_en_model, "task", probe={"recipe": str(probe), "seeds": 1}))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "adapted" / "metrics.json").read_text())
    assert sum(metrics["data"]["splits"].values()) == len(train_texts)


def test_task_text_of_ner_and_qa(tmp_path: Path) -> None:
    import datasets

    from bertkit import recipe as recipe_mod
    from bertkit import tasks

    ner = recipe_mod.from_dict({"task": "ner", "model": "m", "output_dir": "o", "data": {"train": "t"}})
    words = datasets.Dataset.from_dict({"tokens": [["Familial", "adenomatous", "polyposis", "."], ["東京", "に", "行く"]],
                                        "tags": [["O"] * 4, ["O"] * 3]})
    assert tasks.get("ner").unlabeled_text(words, ner) == ["Familial adenomatous polyposis .", "東京に行く"]
    qa = recipe_mod.from_dict({"task": "qa", "model": "m", "output_dir": "o", "data": {"train": "t"}})
    rows = datasets.Dataset.from_dict({"question": ["q1", "q2", "q3"], "context": ["c one", "c one", "c two"]})
    assert tasks.get("qa").unlabeled_text(rows, qa) == ["c one", "c two"]


# ---------------------------------------------------------------------------------------------
# The leakage guard


def test_guard_refuses_a_corpus_holding_probe_test_text(tiny_en_model: Path, tiny_recipe: Path,
                                                        sentiment_files: dict[str, Path], tmp_path: Path) -> None:
    probe = probe_recipe(tmp_path, tiny_recipe)
    test_texts = texts_of(sentiment_files["test"])
    long_test = max(test_texts, key=len)
    # The test sentence written differently (upper case, other spacing) still counts as seen.
    lines = texts_of(sentiment_files["train"]) + [long_test.upper().replace(" ", "  ")]
    corpus = corpus_file(tmp_path / "corpus.txt", lines)
    path = mlm_recipe(tmp_path, tiny_en_model, str(corpus), probe={"recipe": str(probe)})
    result = invoke("adapt-domain", path)
    assert result.exit_code == 1
    assert "the adaptation corpus holds" in result.output and "test inputs" in result.output
    assert "mlm.allow_eval_overlap=true" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "adapted").exists() and not (tmp_path / "adapted.partial").exists()
    allowed = invoke("validate", path, "mlm.allow_eval_overlap=true")
    assert allowed.exit_code == 0, allowed.output
    clean = corpus_file(tmp_path / "clean.txt", texts_of(sentiment_files["train"]))
    passed = invoke("validate", path, f"data.train={clean}")
    assert passed.exit_code == 0, passed.output
    assert "no probe validation or test input is in the corpus" in passed.output


JA_FILLER = ["新製品の評判は良好です。", "業績は悪化しています。", "受注は好調です。"]


def test_guard_on_japanese_text(tiny_ja_model: Path, tmp_path: Path) -> None:
    from bertkit.tasks import task_text

    test = ["売上高は前年同期比で大きく増加しました。", "営業利益は前年同期比で大きく減少しました。"] * 4
    train = ["受注は前年同期比で大きく増加しました。", "販売は前年同期比で大きく減少しました。"] * 4
    for split, texts in (("train", train), ("test", test)):
        rows = [{"text": t, "label": i % 2} for i, t in enumerate(texts)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                                 encoding="utf-8")
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"task": "classification", "model": str(tiny_ja_model), "output_dir": "o",
                                     "data": {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")}}),
                     encoding="utf-8")
    corpus = corpus_file(tmp_path / "corpus.txt", ["社会の評判は好評です。売上高は前年同期比で大きく増加しました。",
                                                   *JA_FILLER])
    path = mlm_recipe(tmp_path, tiny_ja_model, str(corpus), probe={"recipe": str(probe)})
    result = invoke("validate", path)
    assert result.exit_code == 1 and "4 of the probe's 8 test inputs" in result.output
    # A test sentence that is also one of the probe's training inputs is seen by its fine-tuning anyway: not counted.
    corpus_file(tmp_path / "train-too.txt", ["受注は前年同期比で大きく増加しました。", *JA_FILLER])
    passed = invoke("validate", path, f"data.train={tmp_path / 'train-too.txt'}")
    assert passed.exit_code == 0, passed.output
    assert task_text.sentence_keys("売上高は前年同期比で大きく増加しました。") <= task_text.sentence_keys(
        "前文。売上高は前年同期比で大きく増加しました。")


# ---------------------------------------------------------------------------------------------
# The fresh head's warm-up


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_head_warmup_keeps_the_encoder_unchanged(tiny_en_model: Path, sentiment_files: dict[str, Path],
                                                 tmp_path: Path) -> None:
    import torch

    encoder = encoder_only(tiny_en_model, tmp_path / "encoder")
    corpus = corpus_file(tmp_path / "corpus.txt", texts_of(sentiment_files["train"]) * 2)
    path = mlm_recipe(tmp_path, encoder, str(corpus), head_warmup_steps=4)
    result = invoke("adapt-domain", path, "training.max_steps=4")  # every step is a warm-up step
    assert result.exit_code == 0, result.output
    assert "head warm-up: the fresh head trains alone for 4 of 4 steps" in result.output
    before, after = _tensors(encoder), _tensors(tmp_path / "adapted")
    encoder_weights = {n: t for n, t in before.items() if "pooler" not in n}  # the MLM model has no pooler
    for name, tensor in encoder_weights.items():
        assert torch.equal(after["bert." + name.removeprefix("bert.")], tensor), name
    head = [k for k in after if k.startswith("cls.predictions.transform")]
    assert head
    # One more step than the warm-up: the encoder has moved.
    result = invoke("adapt-domain", path, "training.max_steps=6", "--overwrite")
    assert result.exit_code == 0, result.output
    moved = _tensors(tmp_path / "adapted")
    assert any(not torch.equal(moved["bert." + n.removeprefix("bert.")], t) for n, t in encoder_weights.items())


def test_no_warmup_when_the_head_is_pretrained(tiny_en_model: Path, sentiment_files: dict[str, Path], tmp_path: Path) -> None:
    corpus = corpus_file(tmp_path / "corpus.txt", texts_of(sentiment_files["train"]))
    result = invoke("adapt-domain", mlm_recipe(tmp_path, tiny_en_model, str(corpus)), "training.max_steps=2")
    assert result.exit_code == 0, result.output
    assert "head warm-up" not in result.output


# ---------------------------------------------------------------------------------------------
# Bad input: one line each, nothing written


def test_bad_probe_inputs(tiny_en_model: Path, tiny_recipe: Path, sentiment_files: dict[str, Path], tmp_path: Path) -> None:
    corpus = corpus_file(tmp_path / "corpus.txt", texts_of(sentiment_files["train"]))
    mlm_probe = mlm_recipe(tmp_path, tiny_en_model, str(corpus))
    shutil.copy(mlm_probe, tmp_path / "mlm-probe.yaml")
    no_eval = tmp_path / "no-eval.yaml"
    tree = yaml.safe_load(tiny_recipe.read_text(encoding="utf-8"))
    tree["data"] = {"train": tree["data"]["train"], "validation_size": 0}
    no_eval.write_text(yaml.safe_dump(tree), encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "  ", "label": "pos"}) + "\n", encoding="utf-8")
    empty_probe = probe_recipe(tmp_path, tiny_recipe, train=str(empty))
    cases = [
        ([f"--probe={tmp_path / 'mlm-probe.yaml'}"], "is task: mlm; a probe fine-tunes"),
        ([f"--probe={no_eval}"], "has no validation or test split"),
        ([f"--probe={tmp_path / 'nowhere.yaml'}"], "the probe recipe"),
        (["data.train=task"], "no probe is set"),
        ([f"--probe={empty_probe}", "data.train=task"], "every row of the train data has empty text"),
        (["mlm.probe.seeds=0", f"mlm.probe.recipe={tiny_recipe}"], "'mlm.probe.seeds' must be at least 1"),
        (["mlm.probe.sedes=2", f"mlm.probe.recipe={tiny_recipe}"], "did you mean 'seeds'"),
    ]
    for args, message in cases:
        result = invoke("adapt-domain", mlm_probe, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not (tmp_path / "adapted").exists() and not (tmp_path / "adapted.partial").exists()


# ---------------------------------------------------------------------------------------------
# Domain words added to the vocabulary, end to end


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_added_domain_tokens_travel_with_the_model(lang: str, tiny_en_model: Path, tiny_ja_model: Path,
                                                   tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForMaskedLM

    from bertkit import models

    model = tiny_en_model if lang == "en" else tiny_ja_model
    word = "adenoma" if lang == "en" else "増益"
    lines = ([f"the {word} was not a lovely story", f"a {word} and the plot", "the acting was superb"] * 6 if lang == "en"
             else [f"{word}は良好です。", f"業績は{word}です。", "受注は好調です。"] * 6)
    corpus = corpus_file(tmp_path / "corpus.txt", lines)
    start = models.load_tokenizer(str(model))
    pieces = start.convert_tokens_to_ids(start.tokenize(word))
    assert len(pieces) >= 2
    # a learning rate of 1e-12: the saved rows are the initial ones
    path = mlm_recipe(tmp_path, model, str(corpus), add_domain_tokens=1, vocabulary_min_pieces=2)
    result = invoke("adapt-domain", path, "training.learning_rate=1e-12", "training.max_steps=1")
    assert result.exit_code == 0, result.output
    out = tmp_path / "adapted"
    added = json.loads((out / "domain_tokens.json").read_text(encoding="utf-8"))
    assert [a["word"] for a in added] == [word]
    new_id = added[0]["id"]
    reloaded = models.load_tokenizer(str(out))
    assert reloaded.tokenize(word) == [word] and reloaded.convert_tokens_to_ids(word) == new_id
    before = AutoModelForMaskedLM.from_pretrained(model).get_input_embeddings().weight.detach()
    after = AutoModelForMaskedLM.from_pretrained(out).get_input_embeddings().weight.detach()
    assert after.shape[0] == new_id + 1
    assert torch.allclose(after[new_id], before[pieces].mean(0), atol=1e-6)
    shown = invoke("tokenize", out, f"{word}")
    assert shown.exit_code == 0 and word in shown.output
    finetuned = invoke("finetune", mlm_recipe(tmp_path, out, str(corpus)), f"output_dir={tmp_path / 'again'}",
                       "training.max_steps=1")
    assert finetuned.exit_code == 0, finetuned.output


def test_added_tokens_refused_for_a_bpe_tokenizer(family_model, tmp_path: Path) -> None:
    corpus = corpus_file(tmp_path / "corpus.txt", ["the story was lovely and the acting superb"] * 8)
    result = invoke("adapt-domain", mlm_recipe(tmp_path, family_model("roberta"), str(corpus), add_domain_tokens=5))
    assert result.exit_code == 1
    assert "mlm.add_domain_tokens needs a WordPiece vocabulary" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "adapted").exists() and not (tmp_path / "adapted.partial").exists()


def test_japanese_probe_on_task_text(tiny_ja_model: Path, ja_sentiment_file: Path, tmp_path: Path) -> None:
    """TAPT on a Japanese classification task's training texts, then the probe on both models."""
    rows = [json.loads(line) for line in ja_sentiment_file.read_text(encoding="utf-8").splitlines()]
    (tmp_path / "ja-train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:32]),
                                             encoding="utf-8")
    (tmp_path / "ja-test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[32:]),
                                            encoding="utf-8")
    probe = tmp_path / "ja-probe.yaml"
    probe.write_text(yaml.safe_dump({"task": "classification", "model": str(tiny_ja_model), "output_dir": "unused",
                                     "max_length": 32, "precision": "fp32", "seed": 5,
                                     "data": {"train": str(tmp_path / "ja-train.jsonl"), "test": str(tmp_path / "ja-test.jsonl")},
                                     "training": {"num_train_epochs": 1, "learning_rate": 5.0e-3}}), encoding="utf-8")
    path = mlm_recipe(tmp_path, tiny_ja_model, "task", probe={"recipe": str(probe), "seeds": 2})
    result = invoke("adapt-domain", path)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "adapted" / "metrics.json").read_text(encoding="utf-8"))
    assert sum(metrics["data"]["splits"].values()) == 32  # the probe's training texts, nothing else
    assert metrics["probe"]["seeds"] == [5, 6] and len(metrics["probe"]["adapted"]["values"]) == 2
    assert "Task-adaptive pretraining" in (tmp_path / "adapted" / "README.md").read_text(encoding="utf-8")


def test_a_conll_corpus_is_read_as_sentences(tiny_en_model: Path, tmp_path: Path) -> None:
    from bertkit import recipe as recipe_mod
    from bertkit.tasks import mlm

    folder = tmp_path / "tagged"
    folder.mkdir()
    (folder / "a.tsv").write_text("the\tO\nplot\tB-X\n\nwas\tO\ndull\tO\n", encoding="utf-8")
    (folder / "b.tsv").write_text("a\tO\nlovely\tO\nfilm\tB-X\n", encoding="utf-8")
    loaded = recipe_mod.load(mlm_recipe(tmp_path, tiny_en_model, str(folder)), ["data.format=conll"])
    assert mlm.load_raw(loaded)["train"]["text"] == ["the plot", "was dull", "a lovely film"]
