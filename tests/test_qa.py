"""Extractive QA: windows and labels, decoding rules, the oracle round trip, answer checks, and the
CLI end to end (finetune -> evaluate -> predict) on tiny English and Japanese models, with EM/F1
recomputed here from predictions.json, independently of bertkit.metrics."""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bertkit import recipe as recipe_mod
from bertkit.cli import app
from bertkit.errors import BertkitError
from bertkit.tasks import qa

runner = CliRunner()

NOUNS = ["movie", "film", "book", "plot", "acting", "story", "ending", "music", "cast", "show"]
ADJECTIVES = ["good", "great", "wonderful", "lovely", "fun", "bad", "awful", "boring", "dull", "poor"]
JA_FACTS = [("売上高は", "増加しました。"), ("営業利益は", "減少しました。"), ("業績は", "悪化しています。"),
            ("受注は", "好調です。"), ("販売は", "低迷しています。"), ("利益は", "改善しました。")]


def tokenizer_of(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def en_example(rng: random.Random, i: int, n_sentences: int = 6) -> dict:
    nouns = rng.sample(NOUNS, n_sentences)
    adjectives = [rng.choice(ADJECTIVES) for _ in nouns]
    context = " ".join(f"The {n} was {a}." for n, a in zip(nouns, adjectives))
    k = rng.randrange(n_sentences)
    answer = adjectives[k]
    start = context.index(f"The {nouns[k]} was {answer}.") + len(f"The {nouns[k]} was ")
    return {"id": f"en-{i}", "question": f"How was the {nouns[k]}?", "context": context,
            "answers": {"text": [answer], "answer_start": [start]}}


def ja_example(rng: random.Random, i: int, impossible: bool = False) -> dict:
    facts = rng.sample(JA_FACTS, 4)
    context = "決算 [SEP] " + "".join(s + p for s, p in facts[:3])
    subject, predicate = facts[3] if impossible else facts[rng.randrange(3)]
    answer = predicate.rstrip("。")
    golds = [] if impossible else [{"text": answer, "answer_start": context.index(subject + predicate) + len(subject)}]
    return {"id": f"ja-{i}", "question": f"{subject}どうなりましたか？", "context": context, "answers": golds,
            "is_impossible": impossible}


def squad_json(rows: list[dict]) -> dict:
    """Rows -> SQuAD nesting, one paragraph per row."""
    def answers(a):
        if isinstance(a, dict):
            return [{"text": t, "answer_start": s} for t, s in zip(a["text"], a["answer_start"])]
        return a

    paragraphs = [{"context": r["context"], "qas": [{"id": r["id"], "question": r["question"], "answers": answers(r["answers"]),
                                                    "is_impossible": r.get("is_impossible", False)}]} for r in rows]
    return {"version": "test", "data": [{"title": "t", "paragraphs": paragraphs}]}


def make_recipe(**overrides) -> recipe_mod.Recipe:
    tree = {"task": "qa", "model": "x", "output_dir": "out", "max_length": 32, "data": {"train": "t.json"}}
    return recipe_mod.apply_overrides(tree, [f"{k}={v}" for k, v in overrides.items()])


def recipe_of(**overrides) -> recipe_mod.Recipe:
    return recipe_mod.from_dict(make_recipe(**overrides))


# ---------------------------------------------------------------------------------------------
# Windows and labels


def test_windows_overlap_and_label_the_answer_or_cls(tiny_en_model: Path) -> None:
    tok = tokenizer_of(tiny_en_model)
    example = en_example(random.Random(0), 0, n_sentences=8)
    enc = qa.encode(tok, [example["question"]], [example["context"]], max_length=24, doc_stride=6)
    n_context = len(enc.context_offsets[0])
    assert len(enc.windows) > 2
    covered = set()
    for prev, w in zip([None] + enc.windows, enc.windows):
        assert len(w.input_ids) <= 24
        assert w.input_ids[0] == tok.cls_token_id and w.input_ids[w.context_start - 1] == tok.sep_token_id
        assert w.input_ids[-1] == tok.sep_token_id and w.token_type_ids[w.context_start] == 1
        if prev is not None:  # consecutive windows share doc_stride tokens
            assert prev.token_from + len(prev.offsets) - w.token_from == 6
        covered.update(range(w.token_from, w.token_from + len(w.offsets)))
    assert covered == set(range(n_context))
    text, start = example["answers"]["text"][0], example["answers"]["answer_start"][0]
    tokens = qa.answer_tokens(enc.context_offsets[0], start, start + len(text))
    inside = 0
    for w in enc.windows:
        s, e = qa.label(w, tokens)
        if w.token_from <= tokens[0] and tokens[1] < w.token_from + len(w.offsets):
            inside += 1
            a, b = qa.span_chars(w, s, e)
            assert example["context"][a:b] == text and s >= w.context_start
        else:
            assert (s, e) == (0, 0)  # the answer is not (wholly) in this window: [CLS]
    assert 1 <= inside < len(enc.windows)


def test_features_carry_labels_and_what_decoding_needs(tiny_en_model: Path) -> None:
    import datasets

    tok = tokenizer_of(tiny_en_model)
    rows = [en_example(random.Random(i), i) for i in range(3)]
    recipe = recipe_of(**{"qa.doc_stride": 4})
    spec = qa.Spec()
    train, _ = qa.features(datasets.Dataset.from_list(rows), tok, recipe, spec, "train")
    assert {"start_positions", "end_positions", "length"} <= set(train.column_names)
    assert "offsets" not in train.column_names  # training windows stay lean
    val, report = qa.features(datasets.Dataset.from_list(rows), tok, recipe, spec, "validation")
    assert spec.validation is val and spec.lang == "en"
    assert report["windows"] == len(val) > 3 and report["truncated"] == 3
    firsts = [r for r in val if r["example_id"] is not None]
    assert [r["example_id"] for r in firsts] == ["en-0", "en-1", "en-2"]
    assert all(r["context"] is None for r in val if r["example_id"] is None)  # one copy of each context


# ---------------------------------------------------------------------------------------------
# Decoding rules


def _window() -> tuple[str, qa.Window]:
    # [CLS] q q q [SEP] c0 c1 c2 c3 c4 [SEP]; context "aa bb cc dd ee"
    context = "aa bb cc dd ee"
    offsets = [(0, 2), (3, 5), (6, 8), (9, 11), (12, 14)]
    return context, qa.Window(0, list(range(11)), [0] * 5 + [1] * 6, 5, 0, offsets)


def _decode(start, end, **kw):
    context, w = _window()
    args = {"n_best": 20, "max_answer_length": 30, "version_2": False, "null_threshold": 0.0, **kw}
    return qa.decode_example(context, [w], [np.asarray(start, float)], [np.asarray(end, float)], **args)


def test_decoding_never_answers_from_the_question_or_special_tokens() -> None:
    start = [9, 0, 10, 0, 9, 1, 5, 0, 0, 0, 9]  # the largest starts sit on [CLS], the question and [SEP]
    end = [9, 0, 10, 0, 9, 0, 0, 6, 0, 0, 9]
    answer, nbest = _decode(start, end)
    assert (answer["text"], answer["start"], answer["end"]) == ("bb cc", 3, 8)
    assert answer["score"] == pytest.approx(11.0)
    assert all(c["start"] is not None for c in nbest)
    assert sum(c["probability"] for c in nbest) == pytest.approx(1.0)
    assert [c["score"] for c in nbest] == sorted((c["score"] for c in nbest), reverse=True)


def test_decoding_respects_max_answer_length_and_order() -> None:
    start = [0, 0, 0, 0, 0, 8, 0, 0, 3, 0, 0]
    end = [0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0]  # best pair c0..c4 is 5 tokens long
    answer, _ = _decode(start, end, max_answer_length=5)
    assert answer["text"] == "aa bb cc dd ee"
    answer, nbest = _decode(start, end, max_answer_length=2)
    assert answer["text"] == "dd ee"
    assert all(len(c["text"].split()) <= 2 for c in nbest)
    answer, _ = _decode([0] * 5 + [0, 0, 0, 9, 0, 0], [0] * 5 + [9, 0, 0, 0, 0, 0])  # end before start
    assert answer["start"] <= answer["end"]


def test_v2_null_answer_and_threshold() -> None:
    start = [6, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]
    end = [6, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]  # null 12 vs best span "bb" 8
    answer, nbest = _decode(start, end, version_2=True)
    assert answer["text"] == "" and answer["start"] is None and answer["score"] == pytest.approx(12.0)
    assert nbest[0]["text"] == "" and sum(c["probability"] for c in nbest) == pytest.approx(1.0)
    answer, _ = _decode(start, end, version_2=True, null_threshold=5.0)  # 12 - 8 = 4 is not > 5
    assert answer["text"] == "bb"
    answer, nbest = _decode(start, end, version_2=False)
    assert answer["text"] == "bb" and all(c["text"] for c in nbest)


# ---------------------------------------------------------------------------------------------
# Oracle round trip and gold-answer checks


def test_oracle_round_trip_english(tiny_en_model: Path) -> None:
    rows = [en_example(random.Random(i), i) for i in range(20)]
    rows.append({"question": "Who?", "context": "It was, in fact, \"Lovely Acting\" (the cast).",
                 "answers": [{"text": "Lovely Acting", "answer_start": 18}]})
    for max_length, stride in ((64, 16), (20, 4)):
        result = qa.oracle(tokenizer_of(tiny_en_model), rows, max_length, stride)
        assert result["exact_pct"] == 100.0 and result["in_no_window"] == 0, result["failures"]
    assert result["window_pairs"] > len(rows)


def test_oracle_round_trip_japanese(tiny_ja_model: Path) -> None:
    rows = [ja_example(random.Random(i), i) for i in range(20)]
    rows.append({"question": "本社は？", "context": "ＡＢＣ株式会社は東京都に本社を置く株式会社です。",
                 "answers": {"text": ["東京都"], "answer_start": [8]}})
    for max_length, stride in ((64, 16), (16, 4)):
        result = qa.oracle(tokenizer_of(tiny_ja_model), rows, max_length, stride)
        assert result["exact_pct"] == 100.0 and result["in_no_window"] == 0, result["failures"]


def test_oracle_counts_data_errors_apart(tiny_en_model: Path) -> None:
    tok = tokenizer_of(tiny_en_model)
    context = "The film was wonderful. The book was lovely."
    at = context.index("lovely")
    good = {"question": "How was the book?", "context": context, "answers": {"text": ["lovely"], "answer_start": [at]}}
    wrong = {**good, "answers": {"text": ["lovely"], "answer_start": [at - 7]}}  # the context there reads 'ok was'
    result = qa.oracle(tok, [good, wrong], 64, 16)
    assert (result["questions"], result["exact_pct"], result["inconsistent"]) == (1, 100.0, 1)
    assert result["failures"] == [{"gold": "lovely", "decoded": "ok was", "why": "gold text is not the context at answer_start"}]
    spaced = {**good, "answers": {"text": [" lovely"], "answer_start": [at - 1]}}  # consistent, but no token covers a space
    result = qa.oracle(tok, [spaced], 64, 16)
    assert (result["exact_pct"], result["inconsistent"]) == (0.0, 0)
    assert result["failures"][0]["decoded"] == "lovely" and result["failures"][0]["why"].startswith("whitespace")


def plain_ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def check_cuts(tok, rows: list[dict], cut_rows: set[int]) -> None:
    """Every answer comes back; in training, the questions in ``cut_rows``, and only they, see their
    context cut at the answer (each piece tokenised by the tokenizer itself); validation and predict
    (no gold) read every context uncut."""
    import datasets

    result = qa.oracle(tok, rows, 64, 16)
    assert result["exact_pct"] == 100.0 and result["in_no_window"] == 0, result["failures"]
    assert result["cut"] == len(cut_rows) and result["inconsistent"] == 0
    held_out, report = qa.features(datasets.Dataset.from_list(rows), tok, recipe_of(max_length=64), qa.Spec(), "validation")
    assert report["cut_examples"] == 0
    assert (f": {len(cut_rows)};" in report.get("note_cuts", "")) == bool(cut_rows)  # counted, not cut
    assert [f["input_ids"][f["context_start"]:-1] for f in held_out] == [plain_ids(tok, r["context"]) for r in rows]
    feats, report = qa.features(datasets.Dataset.from_list(rows), tok, recipe_of(max_length=64), qa.Spec(), "train")
    assert len(feats) == len(rows)  # one window each
    assert report["cut_examples"] == len(cut_rows) and ("note_cuts" in report) == bool(cut_rows)
    spans = [(r["answers"]["answer_start"][0], r["answers"]["answer_start"][0] + len(r["answers"]["text"][0])) for r in rows]
    enc = qa.encode(tok, [r["question"] for r in rows], [r["context"] for r in rows], 64, 16, spans)  # as training
    assert [w.input_ids for w in enc.windows] == list(feats["input_ids"])
    for n, (row, w, (start, end)) in enumerate(zip(rows, enc.windows, spans)):
        context = row["context"]
        edges = [0, start, end, len(context)] if n in cut_rows else [0, len(context)]
        expected = [i for a, b in zip(edges, edges[1:]) for i in plain_ids(tok, context[a:b])]
        assert w.input_ids[w.context_start:-1] == expected, (n, context[start:end])
        s_tok, e_tok = qa.label(w, qa.answer_tokens(enc.context_offsets[n], start, end))
        a, b = qa.span_chars(w, s_tok, e_tok)
        assert context[a:b] == context[start:end]  # the labels say exactly the gold answer
    enc = qa.encode(tok, [r["question"] for r in rows], [r["context"] for r in rows], 64, 16)  # what predict does
    assert enc.answers_cut == 0
    assert [w.input_ids[w.context_start:-1] for w in enc.windows] == [plain_ids(tok, r["context"]) for r in rows]


def qa_row(question: str, context: str, answer: str, after: str = "") -> dict:
    start = context.index(after + answer) + len(after)
    return {"id": question, "question": question, "context": context, "answers": {"text": [answer], "answer_start": [start]}}


def test_answers_inside_a_wordpiece_token_are_cut_for_that_question_only(tiny_en_model: Path) -> None:
    tok = tokenizer_of(tiny_en_model)
    context = "The film was wonderful. The book was lovely. The cast was bad."
    assert "wonderful" in tok.tokenize(context) and "lovely" in tok.tokenize(context)
    rows = [qa_row("How was the book?", context, "lovely"),
            qa_row("What was the film?", context, "wonder"),  # inside the token wonderful
            qa_row("Who was bad?", context, "ast", after="c"),  # inside the token cast
            qa_row("How was the cast?", context, "bad")]
    check_cuts(tok, rows, cut_rows={1, 2})


def test_answers_inside_a_japanese_token_are_cut_for_that_question_only(tiny_ja_model: Path) -> None:
    tok = tokenizer_of(tiny_ja_model)
    context = "東京都に本社を置く本業は好調です。次期駐日大使に指名する。"
    assert tok.tokenize(context)[:2] == ["東京", "都"] and "##業" in tok.tokenize(context)
    rows = [qa_row("どこ？", context, "東"),  # inside the token 東京
            qa_row("何は好調？", context, "本", after="置く"),  # inside the MeCab word 本業 but a token edge: no cut
            qa_row("どこの大使？", context, "日", after="駐"),  # inside the [UNK] token 駐日 (日大使 alone reads 日大|使)
            qa_row("何を置く？", context, "本社")]
    check_cuts(tok, rows, cut_rows={0, 2})


def test_answer_layouts() -> None:
    assert qa.answer_pairs({"text": ["a", "b"], "answer_start": [1, 5]}) == [("a", 1), ("b", 5)]
    assert qa.answer_pairs([{"text": "a", "answer_start": 1}]) == [("a", 1)]
    assert qa.answer_pairs({"text": "a", "answer_start": 1}) == [("a", 1)]
    assert qa.answer_pairs(["a", "b"]) == [("a", None), ("b", None)]
    assert qa.answer_pairs(None) == [] and qa.answer_pairs({"text": [], "answer_start": []}) == []


def test_bad_answers_are_fixed_dropped_or_refused(capsys: pytest.CaptureFixture) -> None:
    import datasets

    rows = [{"question": "q1", "context": "the cat and the dog", "answers": {"text": ["dog"], "answer_start": [3]}},
            {"question": "q2", "context": "no pets here", "answers": {"text": ["cat"], "answer_start": [0]}},
            {"question": "q3", "context": "a cat", "answers": {"text": ["cat"], "answer_start": [2]}},
            {"question": "q4", "context": "a dog", "answers": {"text": ["dog"], "answer_start": [None]}},
            {"question": " ", "context": "a dog", "answers": {"text": ["dog"], "answer_start": [2]}}]
    data = datasets.Dataset.from_list(rows)
    fixed, n_empty = qa.clean_split(data, recipe_of(), "train")
    assert n_empty == 1
    assert [r["question"] for r in fixed] == ["q1", "q3", "q4"]
    assert fixed[0]["answers"] == {"text": ["dog"], "answer_start": [16]}  # moved to the real occurrence
    assert fixed[2]["answers"] == {"text": ["dog"], "answer_start": [2]}  # no answer_start: looked up
    assert fixed["id"] == ["0", "2", "3"]
    err = capsys.readouterr().err
    assert "2 gold answers whose answer_start does not point at their text" in err
    assert "row 1: 'dog' at 3" in err and "1 moved" in err and "leaving 1 questions without an answer" in err
    dropped, _ = qa.clean_split(data, recipe_of(**{"qa.bad_answers": "drop"}), "train")
    assert [r["question"] for r in dropped] == ["q3", "q4"]
    with pytest.raises(BertkitError, match="2 gold answers"):
        qa.clean_split(data, recipe_of(**{"qa.bad_answers": "error"}), "train")
    with pytest.raises(BertkitError, match="no column 'answer'; did you mean 'answers'"):
        qa.clean_split(data, recipe_of(**{"qa.answers_column": "answer"}), "train")


def test_v1_training_data_without_answers_is_refused() -> None:
    import datasets

    rows = [{"question": "q", "context": "a cat", "answers": {"text": [], "answer_start": []}},
            {"question": "q", "context": "a cat", "answers": {"text": ["cat"], "answer_start": [2]}}]
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    with pytest.raises(BertkitError, match="version_2_with_negative=true"):
        qa.prepare(raw, recipe_of())
    assert isinstance(qa.prepare(raw, recipe_of(**{"qa.version_2_with_negative": True})), qa.Spec)


# ---------------------------------------------------------------------------------------------
# CLI end to end, scored independently


def _norm_en(s: str) -> str:
    s = "".join(c for c in s.lower() if c not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def _norm_ja(s: str) -> str:
    return " ".join(s.lower().rstrip("。").split())


def independent_em_f1(predictions: dict, golds: dict, lang: str) -> tuple[float, float]:
    norm = _norm_ja if lang == "ja" else _norm_en
    pieces = list if lang == "ja" else str.split
    em = f1 = 0.0
    for qid, answers in golds.items():
        pred = norm(predictions[qid])
        refs = [norm(a) for a in answers if norm(a)] or [""]
        em += max(pred == g for g in refs)
        best = 0.0
        for g in refs:
            if not g or not pred:
                best = max(best, float(g == pred))
                continue
            same = sum((Counter(pieces(pred)) & Counter(pieces(g))).values())
            if same:
                p, r = same / len(pieces(pred)), same / len(pieces(g))
                best = max(best, 2 * p * r / (p + r))
        f1 += best
    return 100 * em / len(golds), 100 * f1 / len(golds)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_recipe(tmp_path: Path, model: Path, train: Path, extra: str = "") -> Path:
    path = tmp_path / "qa.yaml"
    path.write_text(f"""# bertkit finetune qa.yaml
task: qa
model: {model}
output_dir: {tmp_path / 'out'}
seed: 3
max_length: 32
precision: fp32
data:
  train: {train}
  validation_size: 0.25
qa:
  doc_stride: 8
{extra}training:
  num_train_epochs: 2
  learning_rate: 5.0e-3
  per_device_train_batch_size: 8
  per_device_eval_batch_size: 4
  logging_steps: 2
""", encoding="utf-8")
    return path


def check_scores(directory: Path, golds: dict, lang: str, key: str | None = None) -> dict:
    metrics = json.loads((directory / "metrics.json").read_text())
    metrics = metrics[key] if key else metrics
    predictions = json.loads((directory / "predictions.json").read_text())
    assert set(predictions) == set(golds)
    em, f1 = independent_em_f1(predictions, golds, lang)
    assert metrics["exact_match"] == pytest.approx(em) and metrics["f1"] == pytest.approx(f1)
    assert metrics["metric_lang"] == lang
    nbest = json.loads((directory / "nbest_predictions.json").read_text())
    for qid, text in predictions.items():
        if text:
            assert any(c["text"] == text for c in nbest[qid])
    return metrics


def test_english_finetune_evaluate_predict(tiny_en_model: Path, tmp_path: Path) -> None:
    rng = random.Random(5)
    train = tmp_path / "train.json"
    train.write_text(json.dumps(squad_json([en_example(rng, i) for i in range(40)])), encoding="utf-8")
    result = runner.invoke(app, ["finetune", str(write_recipe(tmp_path, tiny_en_model, train))])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "recipe.yaml", "metrics.json",
        "predictions.jsonl", "predictions.json", "nbest_predictions.json", "train_log.jsonl", "README.md",
        "training_curves.png", "training_args.json", "errors.jsonl"}
    # Per-epoch evaluation scored real F1 (the Trainer's shuffled eval order was matched back).
    assert [e for e in read_jsonl(out / "train_log.jsonl") if "eval_f1" in e]
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 10
    metrics = check_scores(out, {r["id"]: r["gold"] for r in rows}, "en", key="validation")
    # The best epoch's F1 as the Trainer scored it equals the saved model's F1 recomputed from scratch.
    best = json.loads((out / "metrics.json").read_text())["train"]["best_checkpoint_metric"]
    assert best == pytest.approx(metrics["f1"])
    # evaluate on a flat JSONL file whose answers are a list of {text, answer_start}
    test_rows = [en_example(rng, 100 + i, n_sentences=4) for i in range(8)]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps({**r, "answers": [{"text": r["answers"]["text"][0],
                                                              "answer_start": r["answers"]["answer_start"][0]}]}) + "\n"
                                 for r in test_rows), encoding="utf-8")
    result = runner.invoke(app, ["evaluate", str(out), str(test_file), "--output-dir", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "f1=" in result.output
    assert {p.name for p in (tmp_path / "ev").iterdir()} == {"metrics.json", "predictions.jsonl", "predictions.json",
                                                              "nbest_predictions.json", "errors.jsonl"}
    check_scores(tmp_path / "ev", {r["id"]: r["answers"]["text"] for r in test_rows}, "en")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": r["id"], "question": r["question"], "context": r["context"]}) + "\n"
                              for r in test_rows[:3]), encoding="utf-8")
    result = runner.invoke(app, ["predict", str(out), str(source), "--output", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    predicted = read_jsonl(tmp_path / "p.jsonl")
    assert [p["id"] for p in predicted] == [r["id"] for r in test_rows[:3]]
    for p, r in zip(predicted, test_rows):
        assert p["answer"] == r["context"][p["start"]:p["end"]] and p["answer"]
        assert 1 <= len(p["alternatives"]) <= 5 and p["alternatives"][0]["score"] >= p["alternatives"][-1]["score"]
    card = (out / "README.md").read_text(encoding="utf-8")
    snippet = card.split("```python", 1)[1].split("```", 1)[0]
    exec(snippet.replace(f'"{out.name}"', repr(str(out))), {})  # the card's Python snippet loads this model as written
    one = runner.invoke(app, ["predict", str(out), "--question", test_rows[0]["question"], "--context", test_rows[0]["context"]])
    assert one.exit_code == 0, one.output
    answer = json.loads(one.stdout.strip().splitlines()[-1])
    assert {k: answer[k] for k in ("answer", "start", "end")} == {k: predicted[0][k] for k in ("answer", "start", "end")}
    alone = runner.invoke(app, ["predict", str(out), "--text", test_rows[0]["context"]])
    assert alone.exit_code == 1 and "answers questions" in alone.output and "--question and --context" in alone.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no question here"}\n', encoding="utf-8")
    result = runner.invoke(app, ["predict", str(out), str(bad)])
    assert result.exit_code == 1 and "no 'question' text" in result.output


def test_japanese_v2_finetune_evaluate_predict(tiny_ja_model: Path, tmp_path: Path) -> None:
    rng = random.Random(6)
    rows = [ja_example(rng, i, impossible=i % 4 == 0) for i in range(32)]
    train = tmp_path / "ja.json"
    train.write_text(json.dumps(squad_json(rows), ensure_ascii=False), encoding="utf-8")
    recipe = write_recipe(tmp_path, tiny_ja_model, train, extra="  version_2_with_negative: true\n")
    result = runner.invoke(app, ["finetune", str(recipe), "training.num_train_epochs=1"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert {"predictions.json", "nbest_predictions.json", "metrics.json", "vocab.txt"} <= {p.name for p in out.iterdir()}
    preds = read_jsonl(out / "predictions.jsonl")
    metrics = check_scores(out, {r["id"]: r["gold"] for r in preds}, "ja", key="validation")
    assert metrics["total"] == 8 and "HasAns_f1" in metrics and "NoAns_f1" in metrics
    result = runner.invoke(app, ["evaluate", str(out), str(train), "--output-dir", str(tmp_path / "ev"),
                                 "qa.null_score_diff_threshold=1000"])  # never abstain
    assert result.exit_code == 0, result.output
    answers = json.loads((tmp_path / "ev" / "predictions.json").read_text())
    assert len(answers) == 32 and all(answers.values())
    check_scores(tmp_path / "ev", {r["id"]: [a["text"] for a in r["answers"]] for r in rows}, "ja")
    result = runner.invoke(app, ["predict", str(out), "-"],
                           input=json.dumps({"question": rows[1]["question"], "context": rows[1]["context"]},
                                            ensure_ascii=False) + "\n")
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["answer"] == (rows[1]["context"][line["start"]:line["end"]] if line["start"] is not None else "")
