"""Masked-language-model training: whole-word masking checked against words found independently
(the ## rule for English WordPiece, MeCab for Japanese), masking rates, grouping with [SEP] between
documents, the seeded held-out split by document, perplexity against plain transformers, and
`adapt-domain` end to end into `finetune`, `evaluate` and `predict`."""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bertkit import corpus, masking
from bertkit import recipe as recipe_mod
from bertkit.cli import app

runner = CliRunner()

EN_DOCS = ["the carcinoma was benign and the tumour was good\nthe melanoma is not a lovely story",
           "a lymphoma and a sarcoma of the cast", "the plot was dull\nthe acting was superb"]
JA_DOCS = ["同社の前期の業績は不良で低下しました。\n社会の評判は好評で改良しました。", "増減は大阪の本業です。"]
EN_WORDS = ["the", "film", "was", "good", "great", "plot", "and", "acting", "story", "really", "music", "cast"]
JA_LINES = ["売上高は前年同期比で増加しました。", "営業利益は減少しました。", "新製品の評判は良好です。",
            "業績は悪化しています。", "受注は好調です。", "販売は低迷しています。"]


def invoke(*args: object, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def tokenizer_of(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_recipe(tmp_path: Path, model: Path, train: Path, **mlm_options: object) -> Path:
    """A task: mlm recipe over a tiny model: 3 quick epochs, a quarter of the documents held out."""
    import yaml

    tree = {"task": "mlm", "model": str(model), "output_dir": str(tmp_path / "adapted"), "seed": 3, "max_length": 32,
            "precision": "fp32", "data": {"train": str(train), "validation_size": 0.25},
            "mlm": {"cache_dir": str(tmp_path / "cache"), **mlm_options},
            "training": {"num_train_epochs": 3, "learning_rate": 5.0e-3, "per_device_train_batch_size": 8,
                         "logging_steps": 2}}
    path = tmp_path / "mlm.yaml"
    path.write_text("# bertkit adapt-domain mlm.yaml\n" + yaml.safe_dump(tree), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Whole words, found independently of bertkit


def english_words(tokens: list[str]) -> list[list[int]]:
    """Positions of each word: a token and its ## continuations; special tokens belong to none."""
    words: list[list[int]] = []
    for pos, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        if token.startswith("##") and words and words[-1][-1] == pos - 1:
            words[-1].append(pos)
        else:
            words.append([pos])
    return words


def japanese_words(tokenizer, docs: list[str]) -> tuple[list[str], list[list[int]]]:
    """Tokens and word positions from MeCab (fugashi + unidic-lite, NFKC) and the WordPiece alone,
    laid out as a block: [CLS] words of every line [SEP] between documents [SEP]."""
    import fugashi
    import unidic_lite

    tagger = fugashi.GenericTagger(f'-d "{unidic_lite.DICDIR}" -r /dev/null -Owakati')
    tokens, words = ["[CLS]"], []
    for d, doc in enumerate(docs):
        if d:
            tokens.append("[SEP]")
        for line in doc.split("\n"):
            for word in tagger.parse(unicodedata.normalize("NFKC", line)).split():
                pieces = tokenizer.subword_tokenizer.tokenize(word)
                words.append(list(range(len(tokens), len(tokens) + len(pieces))))
                tokens += pieces
    return tokens + ["[SEP]"], words


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_every_masked_set_covers_whole_words_only(lang: str, tiny_en_model: Path, tiny_ja_model: Path) -> None:
    import torch

    tok = tokenizer_of(tiny_en_model if lang == "en" else tiny_ja_model)
    docs = EN_DOCS if lang == "en" else JA_DOCS
    block = corpus.encode_batch({"text": docs}, tokenizer=tok, column="text", budget=126, line_by_line=False)
    assert len(block["input_ids"]) == 1
    ids = block["input_ids"][0]
    tokens = tok.convert_ids_to_tokens(ids)
    if lang == "en":
        words = english_words(tokens)
    else:
        expected_tokens, words = japanese_words(tok, docs)
        assert tokens == expected_tokens
    assert sum(len(w) > 1 for w in words) >= 4  # the property is not vacuous
    in_words = {i for w in words for i in w}
    collate = masking.Collator.for_tokenizer(tok, masking.Rates(probability=0.3))
    feature = {"input_ids": ids, "word_ids": block["word_ids"][0]}
    whole_multi_piece = 0
    for seed in range(300):
        torch.manual_seed(seed)
        labels = collate([feature])["labels"][0].tolist()
        chosen = {i for i, label in enumerate(labels) if label != masking.IGNORE}
        assert chosen, f"seed {seed}: nothing to predict"
        assert chosen <= in_words, f"seed {seed}: a special token was chosen"
        for word in words:
            assert set(word) <= chosen or not set(word) & chosen, f"seed {seed}: word {word} partly masked"
        whole_multi_piece += any(len(w) > 1 and set(w) <= chosen for w in words)
        assert all(labels[i] == ids[i] for i in chosen)
    assert whole_multi_piece > 100


def test_token_masking_can_split_words(tiny_en_model: Path) -> None:
    import torch

    tok = tokenizer_of(tiny_en_model)
    block = corpus.encode_batch({"text": EN_DOCS}, tokenizer=tok, column="text", budget=126, line_by_line=False)
    words = english_words(tok.convert_ids_to_tokens(block["input_ids"][0]))
    collate = masking.Collator.for_tokenizer(tok, masking.Rates(probability=0.3, whole_word=False))
    torch.manual_seed(0)
    split = 0
    for _ in range(50):
        labels = collate([{"input_ids": block["input_ids"][0], "word_ids": block["word_ids"][0]}])["labels"][0].tolist()
        chosen = {i for i, label in enumerate(labels) if label != masking.IGNORE}
        split += any(set(w) & chosen and not set(w) <= chosen for w in words)
    assert split > 25


@pytest.mark.parametrize("whole_word", [True, False])
@pytest.mark.parametrize("probability, mask, random", [(0.15, 0.8, 0.1), (0.3, 0.5, 0.4)])
def test_rates_hold_over_many_tokens(whole_word: bool, probability: float, mask: float, random: float) -> None:
    rng = np.random.default_rng(0)
    rates = masking.Rates(probability, mask, random, whole_word)
    mask_id, random_ids = 4, np.arange(5, 1005)  # ids 0..4 are special
    chosen = shown_mask = shown_random = unchanged = total = 0
    for _ in range(800):
        sizes = rng.integers(1, 5, size=40)  # 40 words of 1-4 tokens between [CLS] and [SEP]
        words = np.concatenate([[-1], np.repeat(np.arange(40), sizes), [-1]])
        ids = np.where(words >= 0, rng.integers(5, 1005, size=len(words)), 2)
        seen, labels = masking.mask_example(ids, words, rng, rates, mask_id, random_ids)
        picked = labels != masking.IGNORE
        assert not picked[words < 0].any()
        assert (labels[picked] == ids[picked]).all() and (seen[~picked] == ids[~picked]).all()
        total += int((words >= 0).sum())
        chosen += int(picked.sum())
        shown_mask += int((seen[picked] == mask_id).sum())
        shown_random += int(((seen[picked] != mask_id) & (seen[picked] != ids[picked])).sum())
        unchanged += int((seen[picked] == ids[picked]).sum())
        assert (seen >= 5)[picked & (seen != mask_id)].all()  # random tokens are never special
    assert chosen / total == pytest.approx(probability, abs=0.01)
    assert shown_mask / chosen == pytest.approx(mask, abs=0.02)
    assert shown_random / chosen == pytest.approx(random, abs=0.02)
    assert unchanged / chosen == pytest.approx(1 - mask - random, abs=0.02)


def test_fixed_masking_depends_on_seed_and_index_only() -> None:
    rates, random_ids = masking.Rates(), np.arange(5, 100)
    ids, words = list(range(10, 60)), [-1] + list(range(48)) + [-1]
    a = masking.mask_example(ids, words, masking.example_rng(7, 3), rates, 4, random_ids)
    b = masking.mask_example(ids, words, masking.example_rng(7, 3), rates, 4, random_ids)
    c = masking.mask_example(ids, words, masking.example_rng(8, 3), rates, 4, random_ids)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not (a[1] == c[1]).all()


# ---------------------------------------------------------------------------------------------
# Corpus: line by line, grouped, held out by document


def test_line_by_line_makes_one_example_per_line_and_splits_long_lines(tiny_en_model: Path) -> None:
    tok = tokenizer_of(tiny_en_model)
    out = corpus.encode_batch({"text": EN_DOCS}, tokenizer=tok, column="text", budget=30, line_by_line=True)
    lines = [line for doc in EN_DOCS for line in doc.split("\n")]
    expected = [tok(line)["input_ids"] for line in lines]
    assert out["input_ids"] == expected and set(out["piece"]) == {0}
    out = corpus.encode_batch({"text": EN_DOCS}, tokenizer=tok, column="text", budget=10, line_by_line=True)
    assert max(out["length"]) <= 12 and max(out["piece"]) >= 2
    rebuilt, line = [], []
    for ids, piece in zip(out["input_ids"], out["piece"]):
        if piece == 0 and line:
            rebuilt.append(line)
            line = []
        line += ids[1:-1]
        assert not tok.convert_ids_to_tokens(ids[1]).startswith("##")  # cut before a word
    rebuilt.append(line)
    assert rebuilt == [ids[1:-1] for ids in expected]  # nothing lost


def test_grouped_blocks_put_sep_between_documents_only(tiny_en_model: Path) -> None:
    tok = tokenizer_of(tiny_en_model)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    out = corpus.encode_batch({"text": EN_DOCS}, tokenizer=tok, column="text", budget=10, line_by_line=False)
    docs = [[t for line in doc.split("\n") for t in tok(line, add_special_tokens=False)["input_ids"]] for doc in EN_DOCS]
    boundaries = {sum(len(d) for d in docs[:k]) for k in range(1, len(docs))}
    seen = 0  # document tokens before the current position
    for ids, words, length in zip(out["input_ids"], out["word_ids"], out["length"]):
        assert ids[0] == cls and ids[-1] == sep and length == len(ids) <= 12
        assert ids[1] != sep and ids[-2] != sep
        assert [w < 0 for w in words] == [i in (cls, sep) for i in ids]
        assert not tok.convert_ids_to_tokens(ids[1]).startswith("##")
        for token in ids[1:-1]:
            if token == sep:
                assert seen in boundaries  # a [SEP] inside a block marks a document boundary
            else:
                seen += 1
    assert [t for ids in out["input_ids"] for t in ids[1:-1] if t != sep] == [t for d in docs for t in d]
    assert sum(ids[1:-1].count(sep) for ids in out["input_ids"]) >= 1


def paragraphs_file(path: Path, n: int) -> list[str]:
    docs = [f"{EN_WORDS[k % 12]} {EN_WORDS[(k * 5) % 12]} was good\nthe {EN_WORDS[(k * 7) % 12]} doc {k}" for k in range(n)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return docs


def test_folders_globs_and_jsonl_text_columns_are_read(tiny_en_model: Path, tmp_path: Path) -> None:
    (tmp_path / "docs" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "a" / "one.txt").write_text("first doc\nits second line\n\nanother doc\n", encoding="utf-8")
    (tmp_path / "docs" / "two.txt").write_text("a doc of one paragraph\n", encoding="utf-8")
    (tmp_path / "docs" / "notes.md").write_text("not a corpus file\n", encoding="utf-8")
    path = write_recipe(tmp_path, tiny_en_model, tmp_path / "docs")
    expected = ["first doc\nits second line", "another doc", "a doc of one paragraph"]
    for source in (tmp_path / "docs", f"{tmp_path}/docs/**/*.txt"):
        rows = corpus.load(recipe_mod.load(path, [f"data.train={source}"]))["train"]["text"]
        assert [r.strip() for r in rows] == expected  # paragraphs: one.txt has blank lines
    (tmp_path / "rows.jsonl").write_text('{"body": "one row"}\n{"body": "another row"}\n', encoding="utf-8")
    rows = corpus.load(recipe_mod.load(path, [f"data.train={tmp_path / 'rows.jsonl'}", "data.text_column=body"]))
    assert rows["train"]["body"] == ["one row", "another row"]
    lines = corpus.load(recipe_mod.load(path, [f"data.train={tmp_path / 'docs' / 'a' / 'one.txt'}", "mlm.documents=line"]))
    assert [r for r in lines["train"]["text"] if r.strip()] == ["first doc", "its second line", "another doc"]


def test_held_out_documents_are_whole_and_seeded(tiny_en_model: Path, tmp_path: Path) -> None:
    from bertkit import train

    docs = paragraphs_file(tmp_path / "corpus.txt", 40)
    path = write_recipe(tmp_path, tiny_en_model, tmp_path / "corpus.txt")

    def held_out(seed: int) -> tuple[set[str], set[str]]:
        p = train.prepare(recipe_mod.load(path, [f"seed={seed}"]))
        return ({t.strip() for t in p.raw["train"]["text"]}, {t.strip() for t in p.raw["validation"]["text"]})

    train_docs, val_docs = held_out(1)
    assert len(val_docs) == 10 and not train_docs & val_docs and train_docs | val_docs == set(docs)
    assert held_out(1)[1] == val_docs
    assert held_out(2)[1] != val_docs


def test_features_are_cached_and_the_same_with_several_processes(tiny_ja_model: Path, tmp_path: Path) -> None:
    from bertkit import train

    (tmp_path / "ja.txt").write_text("\n".join(JA_LINES * 10) + "\n", encoding="utf-8")
    path = write_recipe(tmp_path, tiny_ja_model, tmp_path / "ja.txt")
    one = train.prepare(recipe_mod.load(path))
    files = [f["filename"] for f in one.features["train"].cache_files]
    stamps = [Path(f).stat().st_mtime_ns for f in files]
    again = train.prepare(recipe_mod.load(path))
    assert [f["filename"] for f in again.features["train"].cache_files] == files
    assert [Path(f).stat().st_mtime_ns for f in files] == stamps  # read from the cache, not recomputed
    two = train.prepare(recipe_mod.load(path, ["mlm.num_proc=2"]))
    for split in ("train", "validation"):
        assert two.features[split][:] == one.features[split][:]


def test_perplexity_matches_plain_transformers(tiny_en_model: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForMaskedLM

    from bertkit import train
    from bertkit.tasks import mlm

    paragraphs_file(tmp_path / "corpus.txt", 40)
    p = train.prepare(recipe_mod.load(write_recipe(tmp_path, tiny_en_model, tmp_path / "corpus.txt")))
    model = AutoModelForMaskedLM.from_pretrained(tiny_en_model).eval()
    feats = p.features["validation"]
    got = mlm.report(p.spec, p.recipe, mlm.infer(model, feats, p.tokenizer, "fp32", 4), feats)
    total = count = correct = 0
    for row in feats:  # one example at a time, no padding, transformers' own loss
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
        with torch.no_grad():
            out = model(input_ids=ids, labels=labels)
        n = int((labels != -100).sum())
        total += float(out.loss) * n
        count += n
        correct += int((out.logits.argmax(-1)[labels != -100] == labels[labels != -100]).sum())
    assert got["masked_tokens"] == count == p.lengths["validation"]["masked_tokens"]
    assert got["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)
    assert got["accuracy"] == pytest.approx(correct / count)


# ---------------------------------------------------------------------------------------------
# The command line, end to end


ADAPTED_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "recipe.yaml",
                 "metrics.json", "predictions.jsonl", "train_log.jsonl", "README.md", "training_curves.png",
                 "domain_vocabulary.json", "training_args.json"}


def test_adapt_domain_then_finetune_evaluate_predict(tiny_en_model: Path, tiny_recipe: Path, tmp_path: Path) -> None:
    paragraphs_file(tmp_path / "corpus.txt", 60)
    path = write_recipe(tmp_path, tiny_en_model, tmp_path / "corpus.txt", vocabulary_report=5)
    result = invoke("adapt-domain", path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "adapted"
    assert {p.name for p in out.iterdir()} == ADAPTED_FILES
    metrics = json.loads((out / "metrics.json").read_text())
    before, after = metrics["before"]["validation"], metrics["validation"]
    assert after["perplexity"] < before["perplexity"]
    assert f"{before['perplexity']:.2f} before -> {after['perplexity']:.2f} after" in result.output
    rows = read_jsonl(out / "predictions.jsonl")  # the aggregate, recounted from the per-example rows
    n = sum(r["masked_tokens"] for r in rows)
    assert n == after["masked_tokens"] == before["masked_tokens"]
    assert after["loss"] == pytest.approx(sum(r["loss"] * r["masked_tokens"] for r in rows) / n, rel=1e-5)
    assert after["accuracy"] == pytest.approx(sum(x["gold"] == x["predicted"] for r in rows for x in r["predictions"]) / n)
    card = (out / "README.md").read_text()
    assert "**validation before training**: perplexity" in card and "whole-word masking of 15%" in card
    vocab = json.loads((out / "domain_vocabulary.json").read_text())
    assert vocab["most_frequent"] and all(w["pieces"] >= 3 for w in vocab["most_frequent"])

    result = invoke("finetune", tiny_recipe, f"model={out}", f"output_dir={tmp_path / 'classifier'}")
    assert result.exit_code == 0, result.output
    assert "accuracy" in json.loads((tmp_path / "classifier" / "metrics.json").read_text())["test"]

    result = invoke("evaluate", out, tmp_path / "corpus.txt", "--output-dir", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["perplexity"] > 1

    result = invoke("predict", out, "-", input="the film was [MASK] and the plot was good\n")
    assert result.exit_code == 0, result.output
    (masks,) = json.loads(result.stdout.strip().splitlines()[-1])["masks"]
    scores = [m["score"] for m in masks]
    assert len(masks) == 5 and scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
    result = runner.invoke(app, ["predict", str(out), "-"], input="no mask here\n")
    assert result.exit_code == 1 and "has no [MASK] to fill in" in result.output


def test_japanese_adapt_domain_then_finetune(tiny_ja_model: Path, ja_sentiment_file: Path, tmp_path: Path) -> None:
    (tmp_path / "ja.txt").write_text("\n".join(JA_LINES * 8) + "\n", encoding="utf-8")
    path = write_recipe(tmp_path, tiny_ja_model, tmp_path / "ja.txt", line_by_line=True)
    result = invoke("adapt-domain", path)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "adapted" / "metrics.json").read_text())
    assert metrics["validation"]["perplexity"] < metrics["before"]["validation"]["perplexity"]
    recipe = tmp_path / "cls.yaml"
    recipe.write_text(f"task: classification\nmodel: {tmp_path / 'adapted'}\noutput_dir: {tmp_path / 'cls'}\n"
                      f"max_length: 32\nprecision: fp32\ndata:\n  train: {ja_sentiment_file}\n"
                      "training:\n  num_train_epochs: 1\n", encoding="utf-8")
    result = invoke("finetune", recipe)
    assert result.exit_code == 0, result.output
    assert "f1_macro" in json.loads((tmp_path / "cls" / "metrics.json").read_text())["validation"]


def test_an_encoder_without_mlm_head_gets_a_fresh_tied_head(tiny_en_model: Path, tmp_path: Path) -> None:
    import shutil

    from transformers import AutoModelForMaskedLM, BertModel

    from bertkit.tasks import mlm

    encoder = tmp_path / "encoder"
    BertModel.from_pretrained(tiny_en_model).save_pretrained(encoder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_en_model / name, encoder / name)
    assert mlm.fresh_head(str(encoder), AutoModelForMaskedLM.from_pretrained(encoder)) == ["cls"]
    assert mlm.fresh_head(str(tiny_en_model), AutoModelForMaskedLM.from_pretrained(tiny_en_model)) == []
    paragraphs_file(tmp_path / "corpus.txt", 20)
    path = write_recipe(tmp_path, encoder, tmp_path / "corpus.txt")
    result = invoke("adapt-domain", path, "training.num_train_epochs=1")
    assert result.exit_code == 0, result.output
    assert "has no pretrained masked-language-model head" in result.output
    assert "missing keys" not in result.output
    assert "no pretrained masked-language-model head (cls)" in (tmp_path / "adapted" / "README.md").read_text()
    adapted = AutoModelForMaskedLM.from_pretrained(tmp_path / "adapted")
    assert adapted.get_output_embeddings().weight is adapted.get_input_embeddings().weight


def test_bad_inputs_fail_with_one_clear_sentence(tiny_en_model: Path, tiny_recipe: Path, tmp_path: Path) -> None:
    paragraphs_file(tmp_path / "corpus.txt", 20)
    path = write_recipe(tmp_path, tiny_en_model, tmp_path / "corpus.txt")
    (tmp_path / "blank.txt").write_text("\n\n   \n\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    cases = [
        ([f"data.train={tmp_path / 'missing.txt'}"], f"corpus file {tmp_path / 'missing.txt'} does not exist"),
        ([f"data.train={tmp_path / 'blank.txt'}"], "holds no text"),
        ([f"data.train={tmp_path / 'empty.txt'}"], "is empty"),
        ([f"data.train={tmp_path / 'nothing'}/*.txt"], "no files match the corpus pattern"),
        (["mlm.block_size=512"], "mlm.block_size=512 is more than the model takes (128 tokens)"),
        (["mlm.mask_replace=0.9", "mlm.random_replace=0.2"], "'mlm.mask_replace' + 'mlm.random_replace' must be at most 1"),
    ]
    for overrides, message in cases:
        result = runner.invoke(app, ["adapt-domain", str(path), *overrides])
        assert result.exit_code == 1, (overrides, result.output)
        assert message in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["adapt-domain", str(tiny_recipe)])
    assert result.exit_code == 1 and "adapt-domain trains task: mlm recipes" in result.output
