"""Token classification: reading tags and spans, label alignment, windows, the gold round trip, and
finetune -> evaluate -> predict through the CLI for English CoNLL and Japanese character spans, with
entity F1 recounted from predictions.jsonl by hand."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bertkit import recipe as recipe_mod
from bertkit.cli import app
from bertkit.errors import BertkitError
from bertkit.tasks import ner

runner = CliRunner()

PLACES = ["paris", "rome", "tokyo"]
PEOPLE = ["anna", "bob", "tom"]
FILLER = ["the", "movie", "was", "good", "in", "and", "it", "is", "very", "story", "of", "at", "this"]


def invoke(*args, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_recipe(tree: dict | None = None, **top) -> recipe_mod.Recipe:
    base = {"task": "ner", "model": "unused", "output_dir": "unused", "max_length": 32, "data": {"train": "unused"}}
    base.update(top)
    if tree:
        base["ner"] = tree
    return recipe_mod.from_dict(base)


def tokenizer_of(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def cleaned(rows: list[dict], recipe: recipe_mod.Recipe, features=None):
    import datasets

    ds = datasets.Dataset.from_list(rows, features=features)
    return ner.clean_split(ds, recipe, "train")[0]


def metas(feats) -> list[dict]:
    return [json.loads(m) for m in feats["meta"] if m]


# ---------------------------------------------------------------------------------------------
# Reading tags


def test_schemes_and_integer_tags_are_read_into_the_label_scheme(tiny_en_model: Path) -> None:
    import datasets

    tok = tokenizer_of(tiny_en_model)
    iob1 = [{"tokens": ["anna", "bob", "tom", "is"], "tags": ["I-PER", "I-PER", "B-PER", "O"]},
            {"tokens": ["rome", "is", "good"], "tags": ["I-LOC", "O", "O"]}]
    for scheme, expected in (("IOB2", ["B-PER", "I-PER", "B-PER", "O"]), ("BIOES", ["B-PER", "E-PER", "S-PER", "O"])):
        recipe = make_recipe({"label_scheme": scheme})
        ds = cleaned(iob1, recipe)
        spec = ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
        assert spec.source_scheme == "IOB1" and spec.scheme == scheme
        feats, report = ner.features(ds, tok, recipe, spec)
        assert metas(feats)[0]["tags"] == expected
        assert report["note_scheme"] == f"gold tags read as IOB1, learned as {scheme}"
    assert spec.labels == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]

    # Integer tags: names from a ClassLabel feature (the hub's conll2003 layout) or from label_names.
    names = ["O", "B-LOC", "I-LOC"]
    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=names))})
    rows = [{"tokens": ["rome", "is", "good"], "ner_tags": [1, 0, 0]}]
    assert cleaned(rows, make_recipe(), features)["tags"] == [["B-LOC", "O", "O"]]
    plain = [{"tokens": ["rome", "is"], "tags": [1, 0]}]
    assert cleaned(plain, make_recipe({"label_names": names}))["tags"] == [["B-LOC", "O"]]
    with pytest.raises(BertkitError, match="integer tags .* nothing names them"):
        cleaned(plain, make_recipe())


def test_conll_columns_can_be_chosen(tmp_path: Path) -> None:
    from bertkit import data

    path = tmp_path / "c.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    rows = data.read_rows(path)
    assert rows[0]["tokens"] == ["EU", "rejects"] and rows[0]["tags"] == ["B-ORG", "O"]
    assert rows[0]["col2"] == ["B-NP", "B-VP"] and rows[1]["col1"] == ["NNP"]
    ds = cleaned(rows, make_recipe({"tags_column": "col2"}))
    assert ds["tags"] == [["B-NP", "B-VP"], ["B-NP"]]


def test_bad_tags_name_the_row(tiny_en_model: Path) -> None:
    import datasets

    recipe = make_recipe({"tag_scheme": "IOB2"})
    ds = cleaned([{"tokens": ["a", "b"], "tags": ["O", "S-PER"]}], recipe)
    with pytest.raises(BertkitError, match="train data, row 1, token 1: tag 'S-PER' is not used in the IOB2 scheme"):
        ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
    with pytest.raises(BertkitError, match="row 1: 2 words but 1 tags"):
        cleaned([{"tokens": ["a", "b"], "tags": ["O"]}], recipe)
    none = cleaned([{"tokens": ["a", "b"], "tags": ["O", "O"]}], recipe)
    with pytest.raises(BertkitError, match="the data has no entities"):
        ner.prepare(datasets.DatasetDict({"train": none}), recipe)


# ---------------------------------------------------------------------------------------------
# Alignment and windows


def test_labels_go_on_the_first_sub_token_or_on_all(tiny_en_model: Path) -> None:
    import datasets

    tok = tokenizer_of(tiny_en_model)
    rows = [{"tokens": ["paris", "is", "good"], "tags": ["B-LOC", "O", "O"]}]
    for all_tokens in (False, True):
        recipe = make_recipe({"label_all_tokens": all_tokens})
        ds = cleaned(rows, recipe)
        spec = ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
        feats, _ = ner.features(ds, tok, recipe, spec)
        tokens = tok.convert_ids_to_tokens(feats[0]["input_ids"])
        assert tokens == ["[CLS]", "p", "##a", "##r", "##i", "##s", "is", "good", "[SEP]"]
        b, i, o = (spec.labels.index(t) for t in ("B-LOC", "I-LOC", "O"))
        rest = [i] * 4 if all_tokens else [-100] * 4
        assert feats[0]["labels"] == [-100, b, *rest, o, o, -100]


def test_every_sub_token_is_labelled_by_default() -> None:
    assert ner.Options().label_all_tokens is True
    assert (ner.Options().aggregation, ner.Options().decoding) == ("average", "viterbi")


# ---------------------------------------------------------------------------------------------
# Constrained decoding: the best well-formed sequence, checked against trying every sequence


def _every_well_formed(n: int, labels: list[str], scheme: str):
    import itertools

    from bertkit.metrics import entities as ents

    for seq in itertools.product(range(len(labels)), repeat=n):
        tags = ["O", *(labels[i] for i in seq), "O"]
        if all(ents.may_follow(a, b, scheme) for a, b in zip(tags, tags[1:])):
            yield list(seq)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["IOB2", "BIOES"]), st.integers(1, 4), st.data())
def test_best_path_is_the_most_probable_well_formed_sequence(scheme: str, n: int, data) -> None:
    import numpy as np

    from bertkit.metrics import entities as ents

    labels = ents.label_list([], None) + [f"{p}-{t}" for t in ("LOC", "PER") for p in ("BI" if scheme == "IOB2" else "BIES")]
    raw = data.draw(st.lists(st.lists(st.floats(0.01, 1.0), min_size=len(labels), max_size=len(labels)),
                             min_size=n, max_size=n))
    probs = np.array(raw) / np.array(raw).sum(axis=1, keepdims=True)
    path = ner.decoding.best_path(probs, labels, scheme)

    def logp(seq: list[int]) -> float:
        return float(sum(np.log(probs[k, i] + 1e-12) for k, i in enumerate(seq)))

    best = max(logp(seq) for seq in _every_well_formed(n, labels, scheme))
    assert logp(path) == pytest.approx(best, abs=1e-9)
    tags = [labels[i] for i in path]
    assert ents.get_entities(tags, scheme) == ents.get_entities_strict(tags, scheme)  # well formed


def test_viterbi_opens_an_entity_the_argmax_would_start_with_i() -> None:
    import numpy as np

    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    # word 0: I-LOC most probable, B-LOC second; word 1: I-LOC; word 2: O
    probs = np.array([[0.1, 0.35, 0.45, 0.05, 0.05],
                      [0.1, 0.1, 0.7, 0.05, 0.05],
                      [0.8, 0.05, 0.05, 0.05, 0.05]])
    meta = {"word_ids": [0, 1, 2], "n_words": 3}
    logits = np.log(probs)
    argmax_tags, _ = ner.predict_entities(ner.Scored(meta=meta, scores=logits), labels, "IOB2", "first", False, "argmax")
    tags, entities = ner.predict_entities(ner.Scored(meta=meta, scores=logits), labels, "IOB2", "first", False, "viterbi")
    assert argmax_tags == ["I-LOC", "I-LOC", "O"]
    assert tags == ["B-LOC", "I-LOC", "O"]
    assert [(e["type"], e["start"], e["end"]) for e in entities] == [("LOC", 0, 2)]
    assert entities[0]["score"] == pytest.approx((0.35 + 0.7) / 2, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=40), st.integers(4, 20), st.data())
def test_windows_cover_every_token_within_the_budget(word_lengths: list[int], budget: int, data) -> None:
    stride = data.draw(st.integers(0, budget // 2))
    word_ids = [w for w, n in enumerate(word_lengths) for _ in range(n)]
    spans = ner.windows(word_ids, budget, stride)
    assert spans[0][0] == 0 and spans[-1][1] == len(word_ids)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s0 < s1 <= e0 < e1  # progress, and no gap between neighbours
    assert all(0 < e - s <= budget for s, e in spans)


def test_merging_takes_each_token_from_its_most_central_window() -> None:
    import numpy as np

    meta = json.dumps({"n_tokens": 6})
    rows = [{"example_id": 0, "window_start": 0, "meta": meta}, {"example_id": 0, "window_start": 2, "meta": ""}]
    first = np.zeros((6, 1))  # [CLS] + tokens 0..3 + [SEP], scored 1
    first[1:5] = 1
    second = np.zeros((6, 1))  # [CLS] + tokens 2..5 + [SEP], scored 2
    second[1:5] = 2
    (merged,) = ner.merge(rows, [first, second])
    # token 2 sits at the edge-distance 1 in both windows (tie: the first wins); token 3 is central in the second
    assert merged.scores[:, 0].tolist() == [1, 1, 1, 2, 2, 2]


def test_windowing_keeps_every_gold_entity(tiny_en_model: Path) -> None:
    import datasets

    tok = tokenizer_of(tiny_en_model)
    rng = random.Random(3)
    words, tags = [], []
    for _ in range(30):  # one long sentence: multi-token names among filler words
        if rng.random() < 0.4:
            name = rng.choice(PLACES + PEOPLE)
            words.append(name)
            tags.append(("B-LOC" if name in PLACES else "B-PER"))
            if rng.random() < 0.5:
                words.append(rng.choice(PEOPLE))
                tags.append("I-" + tags[-1][2:])
        else:
            words.append(rng.choice(FILLER))
            tags.append("O")
    recipe = make_recipe({"stride": 3}, max_length=12)
    ds = cleaned([{"tokens": words, "tags": tags}], recipe)
    spec = ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
    result = ner.oracle(ds, tok, recipe, spec)
    assert result["windowed"] == 1
    assert result["entities"] > 8 and result["reproduced"] == result["entities"], result["misses"]
    feats, report = ner.features(ds, tok, recipe, spec)
    assert len(feats) > 5 and "longer than max_length=12, split into" in report["note_windows"]


# ---------------------------------------------------------------------------------------------
# Character spans


def test_span_problems_are_counted_not_hidden(tiny_en_model: Path) -> None:
    import datasets

    tok = tokenizer_of(tiny_en_model)
    text = "anna is in paris and rome"
    rows = [{"text": text, "entities": [
        {"span": [0, 4], "type": "PER"},
        {"span": [2, 6], "type": "PER"},  # overlaps anna
        {"span": [11, 16], "type": "LOC"},
        {"span": [21, 40], "type": "LOC"},  # past the end
        {"span": [11, 13], "type": "LOC", "name": "pa"},  # overlaps paris
    ]}, {"text": "this movie is good", "entities": [{"span": [15, 17], "type": "LOC"}]}]  # inside 'good'
    recipe = make_recipe()
    ds = cleaned(rows, recipe)
    spec = ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
    _, report = ner.features(ds, tok, recipe, spec)
    note = report["note_spans"]
    assert "1 are empty or outside the text" in note and "row 1 [21, 40)" in note
    assert "2 overlap an earlier entity" in note
    assert report["cut_examples"] == 1 and ": 1, tokenised in pieces" in report["note_cuts"]  # 'oo' is cut out of 'good'
    assert ner.oracle(ds, tok, recipe, spec)["reproduced"] == 3  # anna, paris, 'oo'; the dropped two cannot come back
    with pytest.raises(BertkitError, match="outside the text.*overlap an earlier entity"):
        ner.features(ds, tok, make_recipe({"bad_spans": "error"}), spec)


def test_japanese_spans_round_trip_through_labels(tiny_ja_model: Path) -> None:
    import datasets

    tok = tokenizer_of(tiny_ja_model)
    rows = ja_rows(random.Random(0), 12)
    recipe = make_recipe(max_length=10)
    ds = cleaned(rows, recipe)
    spec = ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
    result = ner.oracle(ds, tok, recipe, spec)
    assert result["windowed"] > 0
    assert result["entities"] == sum(len(r["entities"]) for r in rows)
    assert result["reproduced"] == result["entities"], result["misses"]


def test_english_conll_round_trip_through_labels(tiny_en_model: Path, tmp_path: Path) -> None:
    import datasets

    from bertkit import data

    files = conll_files(tmp_path)
    for scheme in ("IOB2", "BIOES"):
        recipe = make_recipe({"label_scheme": scheme}, max_length=16)
        ds = cleaned(data.read_rows(files["train"], task="ner"), recipe)
        spec = ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
        result = ner.oracle(ds, tokenizer_of(tiny_en_model), recipe, spec)
        assert result["reproduced"] == result["entities"] > 40, result["misses"]


# ---------------------------------------------------------------------------------------------
# Gold boundaries inside a token or a word: only those examples are tokenised in pieces


def plain_ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def pieces_ids(tok, text: str, cuts: list[int]) -> list[int]:
    """The ids of ``text`` cut at ``cuts``, each piece tokenised by the tokenizer itself."""
    edges = [0, *cuts, len(text)]
    return [i for a, b in zip(edges, edges[1:]) for i in plain_ids(tok, text[a:b])]


def word_edges(meta: dict) -> set[int]:
    """Every character position where a word of the example starts or ends."""
    edges = set()
    for w in set(meta["word_ids"]):
        spans = [o for o, x in zip(meta["offsets"], meta["word_ids"]) if x == w]
        edges |= {min(s for s, _ in spans), max(e for _, e in spans)}
    return edges


def check_cuts(tok, rows: list[dict], cut_rows: set[int]) -> None:
    """The oracle gets every entity back; in training, the rows in ``cut_rows``, and only they, are
    tokenised in pieces cut at every entity boundary, which are then word edges; validation and
    prediction inputs stay plain (the rows that would need cuts are counted in a note)."""
    import datasets

    recipe = make_recipe(max_length=64)
    ds = cleaned(rows, recipe)
    spec = ner.prepare(datasets.DatasetDict({"train": ds}), recipe)
    result = ner.oracle(ds, tok, recipe, spec)
    assert result["reproduced"] == result["entities"] == sum(len(r["entities"]) for r in rows), result["misses"]
    assert result["cut"] == len(cut_rows)
    feats, report = ner.features(ds, tok, recipe, spec)
    assert len(feats) == len(rows)  # one window each
    assert "note_spans" not in report and report["cut_examples"] == len(cut_rows)
    for n, (row, feat, meta) in enumerate(zip(rows, feats, metas(feats))):
        text = row["text"]
        inner = sorted({b for e in row["entities"] for b in e["span"] if 0 < b < len(text)})
        expected = pieces_ids(tok, text, inner) if n in cut_rows else plain_ids(tok, text)
        assert feat["input_ids"][1:-1] == expected, (n, text)
        assert set(inner) <= word_edges(meta), (n, text)
    raw, _ = ner.features(ds, tok, recipe, spec, with_labels=False)  # what predict does: no gold, no cuts
    assert [f["input_ids"][1:-1] for f in raw] == [plain_ids(tok, r["text"]) for r in rows]
    held_out, report = ner.features(ds, tok, recipe, spec, "validation")  # scored as predict reads it
    assert [f["input_ids"][1:-1] for f in held_out] == [plain_ids(tok, r["text"]) for r in rows]
    assert report.get("cut_examples", 0) == 0
    assert (f": {len(cut_rows)};" in report.get("note_cuts", "")) == bool(cut_rows)


def test_japanese_boundaries_inside_a_token_or_mecab_word_are_cut(tiny_ja_model: Path) -> None:
    from bertkit.tasks import boundaries

    tok = tokenizer_of(tiny_ja_model)
    rows = [
        {"text": "東京都に本社を置く株式会社です。", "entities": [{"span": [0, 1], "type": "地名"}]},  # 東 of the token 東京
        {"text": "本業は好調です。", "entities": [{"span": [0, 1], "type": "法人名"}]},  # 本 of the word 本 ##業
        {"text": "東大は好調です。", "entities": [{"span": [0, 1], "type": "地名"}, {"span": [1, 2], "type": "法人名"}]},
        {"text": "次期駐日大使に指名する。", "entities": [{"span": [3, 4], "type": "地名"}]},  # 日 of the word 駐日
        {"text": "田中さんは大阪で働いています。", "entities": [{"span": [0, 2], "type": "人名"},
                                                      {"span": [5, 7], "type": "地名"}]},  # nothing to cut
    ]
    assert tok.tokenize(rows[0]["text"])[0] == "東京" and tok.tokenize(rows[1]["text"])[:2] == ["本", "##業"]
    # Why every boundary is cut, not only the one inside a word: 日大使 alone is read 日大|使.
    (only_start,) = boundaries.align_cut(tok, [rows[3]["text"]], [[3]])
    assert 4 not in word_edges({"offsets": only_start.offsets, "word_ids": only_start.word_ids})
    check_cuts(tok, rows, cut_rows={0, 1, 2, 3})


def test_english_boundaries_inside_a_wordpiece_token_are_cut(tiny_en_model: Path) -> None:
    tok = tokenizer_of(tiny_en_model)
    text = "the film was wonderful and anna is in paris"
    assert "wonderful" in tok.tokenize(text) and "##r" in tok.tokenize(text)
    wonder, paris = text.index("wonder"), text.index("paris")
    rows = [{"text": text, "entities": [{"span": [wonder, wonder + 6], "type": "MISC"},  # inside the token wonderful
                                        {"span": [paris, paris + 3], "type": "LOC"}]},  # 'par' of p ##a ##r ##i ##s
            {"text": "anna is in rome", "entities": [{"span": [0, 4], "type": "PER"}, {"span": [11, 15], "type": "LOC"}]}]
    check_cuts(tok, rows, cut_rows={0})


@functools.lru_cache(maxsize=None)
def cached_tokenizer(path: Path):
    return tokenizer_of(path)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(FILLER + PLACES + PEOPLE + ["wonderful", "lovely"]), min_size=1, max_size=10), st.data())
def test_any_span_with_non_space_edges_comes_back(tiny_en_model: Path, words: list[str], data) -> None:
    text = " ".join(words)
    points = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=6)) | {0, len(text)})
    spans = [(a, b) for a, b in zip(points, points[1:]) if text[a:b].strip() == text[a:b] and data.draw(st.booleans())]
    assume(spans)
    # words are split on spaces only here: a boundary with a letter on both sides is inside a word
    needs = any(0 < b < len(text) and text[b - 1] != " " != text[b] for span in spans for b in span)
    rows = [{"text": text, "entities": [{"span": list(span), "type": "X"} for span in spans]}]
    check_cuts(cached_tokenizer(tiny_en_model), rows, cut_rows={0} if needs else set())


# ---------------------------------------------------------------------------------------------
# Prediction semantics: the transformers pipeline is the reference for aggregation


@pytest.mark.parametrize("how", ["simple", "first", "average", "max"])
def test_aggregation_matches_the_transformers_pipeline(tiny_en_model: Path, how: str) -> None:
    import torch
    from transformers import AutoModelForTokenClassification, pipeline

    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    torch.manual_seed(1)
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_en_model, num_labels=5, id2label=dict(enumerate(labels)), label2id={t: i for i, t in enumerate(labels)})
    with torch.no_grad():  # a sharper random head, so every label is predicted somewhere
        model.classifier.weight.mul_(40)
    tok = tokenizer_of(tiny_en_model)
    texts = ["anna and bob live in paris, a very good town!", "tom is at rome. the story was dull"]
    recipe = recipe_mod.from_dict({"task": "ner", "model": "unused", "output_dir": "unused", "data": {},
                                   "ner": {"aggregation": how, "decoding": "argmax"}}, for_training=False)
    spec = ner.Spec(labels=labels, scheme="IOB2")
    ours = ner.predict_batch(spec, recipe, tok, model, [{"text": t} for t in texts], "fp32", 8)
    pipe = pipeline("token-classification", model=model, tokenizer=tok, aggregation_strategy=how, device="cpu")
    n_entities = 0
    for text, row in zip(texts, ours):
        expected = pipe(text)
        assert [(e["entity_group"], e["start"], e["end"]) for e in expected] == \
               [(e["type"], e["start"], e["end"]) for e in row["entities"]]
        assert [float(e["score"]) for e in expected] == pytest.approx([e["score"] for e in row["entities"]], abs=1e-5)
        assert all(text[e["start"]:e["end"]] == e["text"] for e in row["entities"])
        n_entities += len(row["entities"])
    assert n_entities >= 2


# ---------------------------------------------------------------------------------------------
# End to end through the CLI


def conll_files(tmp_path: Path) -> dict[str, Path]:
    """CoNLL train / validation / test files: names (split into sub-tokens) among filler words."""
    rng = random.Random(0)
    out = {}
    for split, n in (("train", 60), ("validation", 12), ("test", 16)):
        lines = ["-DOCSTART- O", ""]
        for k in range(n):
            length = 12 if k % 4 else 3  # every 4th sentence is short; the others need windows at max_length 16
            for _ in range(length):
                if rng.random() < 0.3:
                    name = rng.choice(PLACES + PEOPLE)
                    kind = "LOC" if name in PLACES else "PER"
                    lines.append(f"{name}\tB-{kind}")
                    if kind == "PER" and rng.random() < 0.5:
                        lines.append(f"{rng.choice(PEOPLE)}\tI-PER")
                else:
                    lines.append(f"{rng.choice(FILLER)}\tO")
            lines.append("")
        out[split] = tmp_path / f"{split}.conll"
        out[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def independent_f1(rows: list[dict]) -> tuple[float, int, int]:
    """Entity F1 from exact (row, type, start, end) matches, counted here."""
    gold = {(n, e["type"], e["start"], e["end"]) for n, r in enumerate(rows) for e in r["gold"]}
    pred = {(n, e["type"], e["start"], e["end"]) for n, r in enumerate(rows) for e in r["predicted"]}
    hits = len(gold & pred)
    p = hits / len(pred) if pred else 0.0
    r = hits / len(gold) if gold else 0.0
    return (2 * p * r / (p + r) if p + r else 0.0), len(gold), len(pred)


EN_OUTPUTS = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "recipe.yaml",
              "metrics.json", "predictions.jsonl", "train_log.jsonl", "README.md", "training_curves.png",
              "training_args.json", "errors.jsonl"}


def test_english_conll_finetune_evaluate_predict(tiny_en_model: Path, tmp_path: Path) -> None:
    files = conll_files(tmp_path)
    out = tmp_path / "out"
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ncbi-disease-ner.yaml"
    result = invoke("finetune", recipe, f"model={tiny_en_model}", f"output_dir={out}", "max_length=16",
                    "precision=fp32", "ner.stride=4", f"data.train={files['train']}",
                    f"data.validation={files['validation']}", f"data.test={files['test']}",
                    "training.num_train_epochs=3", "training.learning_rate=0.01", "training.per_device_train_batch_size=16",
                    "training.warmup_steps=0")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == EN_OUTPUTS
    metrics = json.loads((out / "metrics.json").read_text())
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 16
    f1, n_gold, n_pred = independent_f1(rows)
    gold_in_file = sum(line.split("\t")[1].startswith("B-") for line in files["test"].read_text().splitlines()
                       if "\t" in line)
    assert n_gold == gold_in_file == metrics["test"]["n_true"]  # windows lost no gold entity
    assert metrics["test"]["n_pred"] == n_pred
    assert metrics["test"]["f1"] == pytest.approx(f1)
    assert metrics["test"]["f1"] > 0.3  # the tiny model learns the names
    assert metrics["data"]["lengths"]["test"]["windowed"] == 12
    for row in rows:
        for e in row["predicted"]:
            assert e["text"] == " ".join(row["tokens"][e["start"]:e["end"]]) and 0 < e["score"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "O", "1": "B-LOC", "2": "I-LOC", "3": "B-PER", "4": "I-PER"}

    result = invoke("evaluate", out, files["test"], "--output-dir", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert "f1=" in result.output
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["f1"] == pytest.approx(metrics["test"]["f1"])

    texts = tmp_path / "in.txt"
    texts.write_text("anna and bob  visited paris.\n")
    result = invoke("predict", out, texts, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    (text_row,) = read_jsonl(tmp_path / "p.jsonl")
    words = tmp_path / "words.jsonl"  # pre-split input: the words' column stands in for the text column
    words.write_text(json.dumps({"id": 7, "tokens": ["tom", "is", "in", "rome"]}) + "\n")
    result = invoke("predict", out, words, "--output", tmp_path / "w.jsonl", "data.text_column=tokens")
    assert result.exit_code == 0, result.output
    (words_row,) = read_jsonl(tmp_path / "w.jsonl")
    for e in text_row["entities"]:
        assert "anna and bob  visited paris."[e["start"]:e["end"]] == e["text"]
    assert {e["text"] for e in text_row["entities"]} & {"anna", "anna and bob", "bob", "paris"}
    assert words_row["id"] == 7
    for e in words_row["entities"]:
        assert e["text"] == " ".join(["tom", "is", "in", "rome"][e["start"]:e["end"]])

    result = invoke("validate", recipe, f"model={tiny_en_model}", f"data.train={files['train']}",
                    f"data.validation={files['validation']}", "data.test=null", "max_length=16")
    assert result.exit_code == 0, result.output
    assert "labels (5): O, B-LOC, I-LOC, B-PER, I-PER" in result.output
    assert "longer than max_length=16, split into" in result.output


JA_PEOPLE = ["田中", "中田"]
JA_PLACES = ["大阪", "東京"]


def ja_rows(rng: random.Random, n: int) -> list[dict]:
    """Japanese texts with character spans: a person and a place, sometimes two sentences long."""
    rows = []
    for k in range(n):
        text, entities = "", []
        for _ in range(1 + k % 2):
            person, place = rng.choice(JA_PEOPLE), rng.choice(JA_PLACES)
            if rng.random() < 0.5:
                start = len(text)
                text += f"{person}さんは{place}で働いています。"
                entities += [{"span": [start, start + 2], "type": "人名"}, {"span": [start + 5, start + 7], "type": "地名"}]
            else:
                start = len(text)
                text += f"ＡＢＣは{place}都に本社を置く株式会社です。"
                entities += [{"span": [start, start + 3], "type": "法人名", "name": "ＡＢＣ"},
                             {"span": [start + 4, start + 6], "type": "地名"}]
        rows.append({"text": text, "entities": entities})
    return rows


def test_japanese_spans_finetune_evaluate_predict(tiny_ja_model: Path, tmp_path: Path, monkeypatch) -> None:
    from conftest import write_jsonl

    rng = random.Random(5)
    train = write_jsonl(tmp_path / "train.jsonl", ja_rows(rng, 48))
    valid = write_jsonl(tmp_path / "valid.jsonl", ja_rows(rng, 12))
    out = tmp_path / "ja-out"
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ja-ner-wikipedia.yaml"
    result = invoke("finetune", recipe, f"model={tiny_ja_model}", f"output_dir={out}", f"data.train={train}",
                    f"data.validation={valid}", "max_length=24", "precision=fp32", "training.num_train_epochs=4",
                    "training.learning_rate=0.005", "training.per_device_train_batch_size=8")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    assert metrics["level"] == "character"
    rows = read_jsonl(out / "predictions.jsonl")
    f1, n_gold, n_pred = independent_f1(rows)
    assert n_gold == sum(len(r["entities"]) for r in read_jsonl(valid)) == metrics["n_true"]
    assert metrics["n_pred"] == n_pred and metrics["f1"] == pytest.approx(f1)
    for row in rows:
        for e in row["gold"] + row["predicted"]:
            assert row["text"][e["start"]:e["end"]] == e["text"]
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "BertJapaneseTokenizer"

    result = invoke("evaluate", out, valid, "--output-dir", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["f1"] == pytest.approx(metrics["f1"])
    # a data file that happens to be called "train" is still evaluated as held-out data
    (tmp_path / "train").write_text(valid.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("evaluate", out, "train", "data.format=jsonl", "--output-dir", tmp_path / "ev-train")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ev-train" / "metrics.json").read_text())["f1"] == pytest.approx(metrics["f1"])

    text = "田中さんはＡＢＣの東京都に本社を置く株式会社で働いています。"
    result = invoke("predict", out, "-", input=text + "\n")
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.strip().splitlines() if x.startswith("{")]
    for e in line["entities"]:
        assert text[e["start"]:e["end"]] == e["text"] and e["type"] in ("人名", "地名", "法人名")
