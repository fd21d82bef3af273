"""CLI: build-tokenizer -> init-model -> tokenize, offline, for Japanese and English."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bertkit.cli import app

runner = CliRunner()

JA_CORPUS = ["売上高は前年同期比で増加しました。", "営業利益は減少しました。", "東京都に本社を置く会社です。"] * 20


def test_japanese_tokenizer_and_model_from_a_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(JA_CORPUS) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["build-tokenizer", str(corpus), "--lang", "ja", "--vocab-size", "200",
                                 "--output", str(tmp_path / "tok")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "BertJapaneseTokenizer"
    assert config["word_tokenizer_type"] == "mecab" and config["mecab_kwargs"]["mecab_dic"] == "unidic_lite"
    result = runner.invoke(app, ["init-model", "--tokenizer", str(tmp_path / "tok"), "--size", "micro",
                                 "--output", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "model.safetensors").exists()
    result = runner.invoke(app, ["tokenize", str(tmp_path / "model"), "売上高は増加", "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    spans = [(t["start"], t["end"], t["text"]) for t in entry["tokens"] if t["start"] is not None]
    assert "".join(text for _, _, text in spans) == "売上高は増加"
    assert all("売上高は増加"[s:e] == text for s, e, text in spans)
    # the tokenizer directory itself (no config.json: not a model) works too, as the README shows
    from_tokenizer = runner.invoke(app, ["tokenize", str(tmp_path / "tok"), "売上高は増加", "--json"])
    assert from_tokenizer.exit_code == 0, from_tokenizer.output
    assert json.loads(from_tokenizer.output) == [entry]


def test_existing_output_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n" * 10)
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "x").write_text("keep")
    result = runner.invoke(app, ["build-tokenizer", str(corpus), "--lang", "en", "--vocab-size", "100",
                                 "--output", str(tmp_path / "tok")])
    assert result.exit_code == 1 and "already exists" in result.output
    assert (tmp_path / "tok" / "x").read_text() == "keep"


def test_tokenize_table_for_an_english_model(tiny_en_model: Path) -> None:
    result = runner.invoke(app, ["tokenize", str(tiny_en_model), "a great movie"])
    assert result.exit_code == 0, result.output
    assert "[CLS]" in result.output and "great" in result.output and "2:7" in result.output


def test_recipes_lists_what_each_recipe_is_for(tmp_path) -> None:
    from typer.testing import CliRunner

    from bertkit.cli import RECIPES_DIR, app, recipe_purpose

    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(list(RECIPES_DIR.glob("*.yaml")))
    assert not any("Override anything" in line for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # a name and a purpose on every line
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# bertkit finetune r.yaml\n# Override anything on the command line, e.g.: x=1\n"
                      "# Sentiment of product reviews with a small\n# encoder. Second sentence.\ntask: classification\n",
                      encoding="utf-8")
    assert recipe_purpose(recipe) == "Sentiment of product reviews with a small encoder"
