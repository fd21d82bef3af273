"""NER evaluation and prediction: training-time metrics, the full report, predictions.jsonl rows,
``predict`` on raw rows and the model card's notes.

What it does: scores whole examples after window merging (entity P/R/F1 by seqeval over words, or
over exact character spans for span data, plus word accuracy), writes gold and predicted entities
per example, and runs the model on raw rows for ``bertkit predict``. What it does not do: tokenise
or window (``ner.featurize``) or decode scores into entities (``ner.decoding``); it only calls them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from bertkit.metrics import entities as ents
from bertkit.recipe import Recipe
from bertkit.tasks.ner.decoding import Scored, char_span, decode, merge, predict_entities, to_characters, to_words
from bertkit.tasks.ner.featurize import Encoded, encode_texts, encode_words, feature_rows
from bertkit.tasks.ner.spec import Options, Spec


def compute_metrics(spec: Spec, recipe: Recipe) -> Any:
    """Feature-level scores during training: the labelled sub-tokens of each window, as sequences."""
    strict = recipe.options.strict

    def fn(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        pred_ids = np.asarray(logits).argmax(-1)
        gold, pred = [], []
        for p_row, g_row in zip(pred_ids, np.asarray(eval_pred.label_ids)):
            mask = g_row != -100
            gold.append([spec.labels[i] for i in g_row[mask]])
            pred.append([spec.labels[i] for i in p_row[mask]])
        scores = ents.entity_scores(gold, pred, spec.scheme, strict=strict)
        return {k: scores[k] for k in ("precision", "recall", "f1", "accuracy")}

    return fn


def infer(model: Any, feats: Any, tokenizer: Any, precision: str, batch_size: int, desc: str | None = None,
          recipe: Any = None) -> list[Scored]:
    """Per-token logits of every window, merged back into whole examples (in example order)."""
    from bertkit import inference

    rows = list(feats)
    out = inference.forward(model, rows, pad_id=tokenizer.pad_token_id, batch_size=batch_size, precision=precision,
                            per_token=True, desc=desc)
    return merge(rows, out["logits"])


def _eval_aggregation(opts: Options) -> str:
    # Metrics need one tag per word; "simple" tags tokens, so words are then read from their first token.
    return "first" if opts.aggregation == "simple" else opts.aggregation


def _decoded(spec: Spec, recipe: Recipe, outputs: list[Scored]) -> list[tuple[list[str], list[dict[str, Any]], list]]:
    """Per example: (predicted word tags, predicted entities, gold entities) as they are scored."""
    opts = recipe.options
    how = _eval_aggregation(opts)
    out = []
    for scored in outputs:
        tags, predicted = predict_entities(scored, spec.labels, spec.scheme, how, opts.strict, opts.decoding)
        meta = scored.meta
        if meta["spans"] is not None:
            gold = [tuple(s) for s in meta["spans"]]
        else:
            gold = decode(meta["tags"], spec.scheme, opts.strict) if meta["tags"] is not None else []
        out.append((tags, predicted, gold))
    return out


def report(spec: Spec, recipe: Recipe, outputs: list[Scored], feats: Any) -> dict[str, Any]:
    """Entity P/R/F1 (micro, per type) and word accuracy on whole examples after window merging."""
    opts = recipe.options
    decoded = _decoded(spec, recipe, outputs)
    if any(s.meta["spans"] is not None for s in outputs):
        # Span data is scored on exact character spans: gold and predicted spans become character
        # tags, so seqeval (through entity_scores) counts exact (type, start, end) matches as it counts word spans.
        level = "character"
        y_true, y_pred, y_pred_other = [], [], []
        for scored, (tags, predicted, gold) in zip(outputs, decoded):
            other = [{"type": t, "start": s, "end": e, "unit": "word"} for t, s, e in decode(tags, spec.scheme, not opts.strict)]
            n = scored.meta["n_chars"]
            y_true.append(_char_tags(n, list(gold)))
            y_pred.append(_char_tags(n, _char_spans(scored.meta, predicted)))
            y_pred_other.append(_char_tags(n, _char_spans(scored.meta, other)))
        scores = ents.entity_scores(y_true, y_pred, "IOB2")
        other_f1 = ents.entity_scores(y_true, y_pred_other, "IOB2")["f1"]
    else:
        level = "word"
        y_true = [s.meta["tags"] for s in outputs]
        y_pred = [tags for tags, _, _ in decoded]
        scores = ents.entity_scores(y_true, y_pred, spec.scheme, strict=opts.strict)
        other_f1 = ents.entity_scores(y_true, y_pred, spec.scheme, strict=not opts.strict)["f1"]
    gold_words = [t for s in outputs for t in (s.meta["tags"] or [])]
    pred_words = [t for tags, _, _ in decoded for t in tags]
    accuracy = sum(g == p for g, p in zip(gold_words, pred_words)) / len(gold_words) if gold_words else 0.0
    return {
        "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"], "accuracy": accuracy,
        "macro_f1": scores["macro_f1"], f"f1_{'default' if opts.strict else 'strict'}_mode": other_f1,
        "n_true": scores["n_true"], "n_pred": scores["n_pred"], "examples": len(outputs),
        "per_type": scores["per_type"], "level": level, "aggregation": _eval_aggregation(opts),
        "decoding": opts.decoding, "mode": "strict" if opts.strict else "default",
    }


def _char_spans(meta: dict[str, Any], predicted: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    spans = [(e["type"], char_span(meta, e)) for e in predicted]
    return [(t, *span) for t, span in spans if span is not None]


def _char_tags(n: int, spans: list[tuple[str, int, int]]) -> list[str]:
    """Character IOB2 tags of non-overlapping spans (a span overlapping an earlier one is skipped)."""
    tags = ["O"] * n
    for etype, s, e in sorted(spans, key=lambda x: x[1]):
        if any(t != "O" for t in tags[s:e]):
            continue
        tags[s:e] = [f"B-{etype}"] + [f"I-{etype}"] * (e - s - 1)
    return tags


def prediction_rows(spec: Spec, recipe: Recipe, outputs: list[Scored], raw: Any) -> list[dict[str, Any]]:
    """predictions.jsonl: the input, gold entities and predicted entities, as they were scored."""
    rows = []
    for example, scored, (_, predicted, gold) in zip(raw, outputs, _decoded(spec, recipe, outputs)):
        row: dict[str, Any] = {"id": example["id"]} if "id" in example else {}
        if "tokens" in example:
            words = example["tokens"]
            row["tokens"] = words
            row["gold"] = [{"type": t, "text": " ".join(words[s:e]), "start": s, "end": e} for t, s, e in gold]
            row["predicted"] = [to_words(scored.meta, words, e) for e in predicted]
        else:
            text = example["text"]
            row["text"] = text
            row["gold"] = [{"type": t, "text": text[s:e], "start": s, "end": e} for t, s, e in gold]
            row["predicted"] = [c for c in (to_characters(scored.meta, text, e) for e in predicted) if c]
        rows.append(row)
    return rows


def predict_batch(spec: Spec, recipe: Recipe, tokenizer: Any, model: Any, rows: list[dict[str, Any]],
                  precision: str, batch_size: int) -> list[dict[str, Any]]:
    """Entities for raw rows (``predict``): a text (character offsets into it) or pre-split words
    (a list in ``ner.tokens_column`` or in the text column; word indices)."""
    from bertkit import inference

    opts = recipe.options
    column = recipe.data.text_column
    inputs: list[Any] = []
    for row in rows:
        value = row.get(opts.tokens_column) if isinstance(row.get(opts.tokens_column), list) else row.get(column)
        inputs.append([str(w) for w in value] if isinstance(value, list) else ("" if value is None else str(value)))
    words_at = [i for i, v in enumerate(inputs) if isinstance(v, list)]
    text_at = [i for i, v in enumerate(inputs) if not isinstance(v, list)]
    encoded: list[Encoded | None] = [None] * len(rows)
    for i, enc in zip(words_at, encode_words(tokenizer, [inputs[i] for i in words_at])):
        encoded[i] = enc
    for i, enc in zip(text_at, encode_texts(tokenizer, [inputs[i] for i in text_at])):
        encoded[i] = enc
    feats = feature_rows(encoded, tokenizer, recipe, None)
    logits = inference.forward(model, feats, pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                               precision=precision, per_token=True)["logits"]
    n_windows = Counter(f["example_id"] for f in feats)
    results = []
    for i, scored in enumerate(merge(feats, logits)):
        _, predicted = predict_entities(scored, spec.labels, spec.scheme, opts.aggregation, opts.strict,
                                        opts.decoding)
        result: dict[str, Any] = {k: rows[i][k] for k in ("id",) if k in rows[i]}
        if isinstance(inputs[i], list):
            result["entities"] = [to_words(scored.meta, inputs[i], e) for e in predicted]
        else:
            result["entities"] = [c for c in (to_characters(scored.meta, inputs[i], e) for e in predicted) if c]
        if n_windows[i] > 1:
            result["windows"] = n_windows[i]
        results.append(result)
    return results


def card_notes(recipe: Recipe, spec: Spec) -> list[str]:
    opts = recipe.options
    stride = opts.window_stride(recipe.max_length)
    return [
        f"Labels are {spec.scheme} tags of {len(spec.types)} entity type{'' if len(spec.types) == 1 else 's'}, one per word on "
        + ("every sub-token (B- continued as I-)." if opts.label_all_tokens else "its first sub-token."),
        f"Sentences longer than max_length={recipe.max_length} are split into overlapping windows (stride {stride}) "
        "and merged back token by token; nothing is truncated.",
        f"Entity scores use seqeval's {'strict' if opts.strict else 'default'} mode on whole examples "
        f"(word aggregation: {_eval_aggregation(opts)}; tags chosen by "
        + ("the best well-formed sequence, Viterbi)." if opts.decoding == "viterbi" else "each word's argmax).")
    ]
