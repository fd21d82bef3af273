"""Every encoder family x every task shape, through the CLI, on tiny random models (``families.py``).

Each family trains a few steps of single-text and pair classification, NER on raw text with
character spans, extractive QA and masked-LM domain adaptation, then predicts. Classification
predictions are compared with ``transformers`` itself (the ``text-classification`` pipeline for
single texts; the tokenizer's own pair encoding through the model for pairs); entity spans and
answers must slice the input exactly, with no whitespace at their edges.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

import families
from bertkit.cli import app
from conftest import FAMILY_NOUNS as NOUNS
from conftest import FAMILY_PEOPLE as PEOPLE
from conftest import FAMILY_PLACES as PLACES
from conftest import NEGATIVE, NEUTRAL, POSITIVE, write_jsonl

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def recipe(tmp_path: Path, task: str, model: Path, train: Path, extra: str = "") -> Path:
    path = tmp_path / f"{task}.yaml"
    path.write_text(f"""# bertkit finetune {task}.yaml
task: {task}
model: {model}
output_dir: {tmp_path / 'out'}
seed: 1
max_length: 32
precision: fp32
data:
  train: {train}
  validation_size: 0.25
{extra}training:
  num_train_epochs: 1
  learning_rate: 1.0e-3
  per_device_train_batch_size: 8
""", encoding="utf-8")
    return path


def finetune(path: Path) -> Path:
    result = invoke("finetune", path)
    assert result.exit_code == 0, result.output
    return path.parent / "out"


def review(rng: random.Random, positive: bool) -> str:
    words = rng.sample(NEUTRAL, 4) + [rng.choice(POSITIVE if positive else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words) + "."


@pytest.mark.parametrize("family", families.FAMILIES)
def test_single_text_classification_agrees_with_the_pipeline(family: str, family_model, tmp_path: Path) -> None:
    from transformers import pipeline

    rng = random.Random(0)
    rows = [{"text": review(rng, i % 2 == 0), "label": "pos" if i % 2 == 0 else "neg"} for i in range(32)]
    out = finetune(recipe(tmp_path, "classification", family_model(family), write_jsonl(tmp_path / "t.jsonl", rows)))
    texts = [review(rng, i % 3 == 0) for i in range(12)] + ["Anna met Bob in Paris", "good"]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = invoke("predict", out, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    ours = read_jsonl(tmp_path / "p.jsonl")
    theirs = pipeline("text-classification", model=str(out), device="cpu", top_k=None)(texts)
    for row, expected in zip(ours, theirs):
        probabilities = {e["label"]: e["score"] for e in expected}
        assert row["probabilities"] == pytest.approx(probabilities, abs=1e-4)
    assert len({r["probabilities"]["pos"] for r in ours}) > 1  # the inputs really differ


@pytest.mark.parametrize("family", families.FAMILIES)
def test_pair_classification_uses_the_tokenizers_own_pair_encoding(family: str, family_model, tmp_path: Path) -> None:
    import inspect

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rng = random.Random(1)
    rows = []
    for i in range(32):
        a, b = i % 2 == 0, i % 3 == 0
        rows.append({"premise": review(rng, a), "hypothesis": review(rng, b), "label": "same" if a == b else "different"})
    extra = "  text_column: premise\n  text_pair_column: hypothesis\n"
    path = recipe(tmp_path, "classification", family_model(family), write_jsonl(tmp_path / "t.jsonl", rows))
    path.write_text(path.read_text().replace("  validation_size: 0.25\n", "  validation_size: 0.25\n" + extra))
    out = finetune(path)
    pairs = [{"premise": review(rng, True), "hypothesis": review(rng, i % 2 == 0)} for i in range(10)]
    source = write_jsonl(tmp_path / "in.jsonl", pairs)
    result = invoke("predict", out, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    ours = read_jsonl(tmp_path / "p.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    for pair, row in zip(pairs, ours):
        enc = tokenizer(pair["premise"], pair["hypothesis"], return_tensors="pt", return_token_type_ids=takes_types)
        with torch.no_grad():
            probs = model(**enc).logits.softmax(-1)[0].tolist()
        expected = {model.config.id2label[i]: p for i, p in enumerate(probs)}
        assert row["probabilities"] == pytest.approx(expected, abs=1e-4)
    # The inputs themselves, exactly: a tiny random model's outputs hardly move with the token types.
    from bertkit import recipe as recipe_mod
    from bertkit.tasks import classification

    loaded = recipe_mod.load(out / "recipe.yaml")
    features, _ = classification.encode_texts(tokenizer, loaded, [p["premise"] for p in pairs], [p["hypothesis"] for p in pairs])
    for pair, feature in zip(pairs, features):
        enc = tokenizer(pair["premise"], pair["hypothesis"], return_token_type_ids=True, truncation=True,
                        max_length=loaded.max_length)
        assert feature["input_ids"] == enc["input_ids"]
        assert feature["token_type_ids"] == enc["token_type_ids"]


def ner_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        person, place, filler = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(NEUTRAL)
        text = f"{person} lives in {place}, {filler} {rng.choice(POSITIVE)}."
        entities = [{"start": 0, "end": len(person), "type": "PER"},
                    {"start": text.index(place), "end": text.index(place) + len(place), "type": "LOC"}]
        rows.append({"text": text, "entities": entities})
    return rows


def assert_exact(text: str, start: int, end: int, shown: str) -> None:
    assert text[start:end] == shown and shown == shown.strip() and shown, (text, start, end, shown)


@pytest.mark.parametrize("family", families.FAMILIES)
def test_ner_spans_slice_the_text(family: str, family_model, tmp_path: Path) -> None:
    rng = random.Random(2)
    out = finetune(recipe(tmp_path, "ner", family_model(family), write_jsonl(tmp_path / "t.jsonl", ner_rows(rng, 40))))
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    rows = read_jsonl(out / "predictions.jsonl")
    assert metrics["n_true"] == sum(len(r["gold"]) for r in rows) == 20
    for row in rows:
        for e in row["gold"] + row["predicted"]:
            assert_exact(row["text"], e["start"], e["end"], e["text"])
    texts = ["Tom met Anna in  Rome.", "  Bob lives in Tokyo  ", "Paris"]
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [{"text": t} for t in texts])
    result = invoke("predict", out, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    for text, row in zip(texts, read_jsonl(tmp_path / "p.jsonl")):
        for e in row["entities"]:
            assert_exact(text, e["start"], e["end"], e["text"])


def qa_rows(rng: random.Random, n: int) -> dict:
    paragraphs = []
    for i in range(n):
        nouns = rng.sample(NOUNS, 4)
        adjectives = [rng.choice(POSITIVE + NEGATIVE) for _ in nouns]
        context = " ".join(f"The {a} was {b}." for a, b in zip(nouns, adjectives))
        k = rng.randrange(len(nouns))
        start = context.index(f"The {nouns[k]} was ") + len(f"The {nouns[k]} was ")
        qas = [{"id": f"q{i}", "question": f"How was the {nouns[k]}?",
                "answers": [{"text": adjectives[k], "answer_start": start}]}]
        paragraphs.append({"context": context, "qas": qas})
    return {"data": [{"title": "t", "paragraphs": paragraphs}]}


@pytest.mark.parametrize("family", families.FAMILIES)
def test_qa_answers_slice_the_context(family: str, family_model, tmp_path: Path) -> None:
    rng = random.Random(3)
    train = tmp_path / "train.json"
    train.write_text(json.dumps(qa_rows(rng, 40)), encoding="utf-8")
    out = finetune(recipe(tmp_path, "qa", family_model(family), train, extra="qa:\n  doc_stride: 8\n"))
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    assert 0 <= metrics["f1"] <= 100 and metrics["n_questions"] == 10 if "n_questions" in metrics else True
    questions = qa_rows(random.Random(9), 4)["data"][0]["paragraphs"]
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": p["qas"][0]["id"], "question": p["qas"][0]["question"],
                                                  "context": p["context"]} for p in questions])
    result = invoke("predict", out, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    predicted = read_jsonl(tmp_path / "p.jsonl")
    assert len(predicted) == 4
    for p, q in zip(predicted, questions):
        assert_exact(q["context"], p["start"], p["end"], p["answer"])
        assert p["start"] > 0 or q["context"].startswith(p["answer"])


@pytest.mark.parametrize("family", families.FAMILIES)
def test_adapt_domain_masks_whole_words_and_lowers_perplexity_reporting(family: str, family_model, tmp_path: Path) -> None:
    rng = random.Random(4)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(review(rng, i % 2 == 0) + " Anna lives in Paris." for i in range(60)) + "\n")
    path = tmp_path / "mlm.yaml"
    path.write_text(f"""# bertkit adapt-domain mlm.yaml
task: mlm
model: {family_model(family)}
output_dir: {tmp_path / 'out'}
seed: 1
max_length: 32
precision: fp32
data:
  train: {corpus}
  validation_size: 0.2
training:
  num_train_epochs: 1
  learning_rate: 1.0e-3
  per_device_train_batch_size: 8
""", encoding="utf-8")
    result = invoke("adapt-domain", path)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["validation"]["perplexity"] > 1


@pytest.mark.parametrize("family", families.FAMILIES)
def test_words_for_whole_word_masking_are_the_whitespace_words(family: str, family_model) -> None:
    """Whole-word masking groups every token of a word: ``##`` continuations, the pieces after a ``▁``
    or a ``Ġ``, a lone ``▁`` with the pieces it starts."""
    from transformers import AutoTokenizer

    from bertkit import corpus

    tokenizer = AutoTokenizer.from_pretrained(family_model(family))
    line = "Anna lives in Tokyo, the plot was wonderful"
    ((ids, words),) = corpus.tokenize_lines(tokenizer, [line])
    groups: dict[int, list[int]] = {}
    for position, word in enumerate(words):
        groups.setdefault(word, []).append(position)
    pieces = [tokenizer.decode([ids[p] for p in positions]).strip() for positions in groups.values()]
    # SentencePiece's words are the whitespace-separated ones, punctuation included; the others split it off
    expected = line.split() if family in ("xlm-roberta", "deberta-v2", "albert") else line.replace(",", " ,").split()
    assert [p.lower() for p in pieces] == [w.lower() for w in expected]


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_decoders_and_encoder_decoders_are_refused_before_any_work(kind: str, family_model, tmp_path: Path) -> None:
    import transformers as tf

    model_dir = tmp_path / kind
    if kind == "gpt2":
        tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100)).save_pretrained(model_dir)
    else:
        tf.T5ForConditionalGeneration(tf.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, vocab_size=100,
                                                  d_kv=16)).save_pretrained(model_dir)
    rows = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 4
    path = recipe(tmp_path, "classification", model_dir, write_jsonl(tmp_path / "t.jsonl", rows))
    result = invoke("finetune", path)
    assert result.exit_code == 1
    assert f"is a '{kind}' model" in result.output and "RoBERTa" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert invoke("embed", model_dir, tmp_path / "t.jsonl").exit_code == 1


def test_pair_truncation_matches_the_tokenizers_longest_first(family_model) -> None:
    from transformers import AutoTokenizer

    from bertkit import encoding

    tokenizer = AutoTokenizer.from_pretrained(family_model("bert"))
    specials = encoding.n_specials(tokenizer, pair=True)
    for first in range(1, 12):
        for second in range(1, 12):
            for budget in range(2, 14):
                a, b = " ".join(["good"] * first), " ".join(["bad"] * second)
                expected = tokenizer(a, b, truncation=True, max_length=budget + specials)["input_ids"]
                ids = encoding.with_specials(tokenizer, *encoding.fit_pair(*encoding.token_ids(tokenizer, [a, b]), budget))[0]
                assert ids == expected, (first, second, budget)


@pytest.mark.parametrize("family", families.FAMILIES)
def test_embed_inspect_validate_and_evaluate(family: str, family_model, tmp_path: Path) -> None:
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = family_model(family)
    texts = ["Anna lives in Paris.", "the movie was very good", "Bob"]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = invoke("embed", model_dir, source, "--pooling", "mean", "--output", tmp_path / "v.npy")
    assert result.exit_code == 0, result.output
    vectors = np.load(tmp_path / "v.npy")
    tokenizer, encoder = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    for text, vector in zip(texts, vectors):
        with torch.no_grad():
            hidden = encoder(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
        assert vector == pytest.approx(hidden.mean(0).numpy(), abs=1e-4)

    result = invoke("inspect", "attention", model_dir, "Anna lives in Paris.", "--output", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.png").stat().st_size > 0

    rng = random.Random(5)
    rows = [{"text": review(rng, i % 2 == 0), "label": "pos" if i % 2 == 0 else "neg"} for i in range(24)]
    path = recipe(tmp_path, "classification", model_dir, write_jsonl(tmp_path / "t.jsonl", rows))
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert "labels (2)" in result.output or "neg" in result.output
    out = finetune(path)
    test = write_jsonl(tmp_path / "test.jsonl", rows[:10])
    result = invoke("evaluate", out, test, "--output-dir", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    predicted = read_jsonl(tmp_path / "ev" / "predictions.jsonl")
    accuracy = sum(p["label"] == r["label"] for p, r in zip(predicted, rows)) / 10
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] == pytest.approx(accuracy)
