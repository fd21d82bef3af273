"""NER decoding: per-window model scores -> whole examples -> word tags -> entities.

What it does: merges windows back token by token (``merge``, each token from the window where it
is most central), aggregates tokens into one tag per word as transformers' pipeline does
(``word_tags``), decodes tags into entities with seqeval's default or strict reading (``decode``)
and maps entities to character or word offsets of the input. What it does not do: run the model
(``ner.scoring.infer``), score entities against gold (``ner.scoring``) or know about recipes: it
works from the ``meta`` that ``ner.featurize`` put in the feature rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertkit.japanese.spans import covered
from bertkit.metrics import entities as ents


@dataclass
class Scored:
    """One example's per-token scores (logits or probabilities) after merging its windows."""

    meta: dict[str, Any]
    scores: np.ndarray  # (n_tokens, n_labels)


def merge(rows: list[dict[str, Any]], per_feature: list[np.ndarray]) -> list[Scored]:
    """Put windows back together: each token takes its scores from the window where it is most central."""
    parts: dict[int, list[tuple[int, np.ndarray]]] = {}
    metas: dict[int, str] = {}
    for row, scores in zip(rows, per_feature):
        parts.setdefault(row["example_id"], []).append((row["window_start"], np.asarray(scores)[1:-1]))
        if row["meta"]:
            metas[row["example_id"]] = row["meta"]
    out = []
    for example in sorted(parts):
        meta = json.loads(metas[example])
        n, width = meta["n_tokens"], parts[example][0][1].shape[-1]
        merged = np.zeros((n, width), dtype=np.float32)
        best = np.full(n, -1)
        for start, scores in parts[example]:
            pos = np.arange(len(scores))
            centrality = np.minimum(pos, len(scores) - 1 - pos)
            better = centrality > best[start + pos]
            merged[start + pos[better]] = scores[better]
            best[start + pos[better]] = centrality[better]
        out.append(Scored(meta=meta, scores=merged))
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True)) if logits.size else logits
    return exp / exp.sum(axis=-1, keepdims=True) if logits.size else logits


def word_tags(probs: np.ndarray, word_ids: list[int], n_words: int, labels: list[str], how: str
              ) -> tuple[list[str], list[float]]:
    """One tag and score per word from its tokens' probabilities, as the transformers pipeline's
    ``first`` / ``average`` / ``max`` aggregation. A word without tokens continues the entity around
    it (``I-``) when both neighbours belong to it, else ``O``."""
    tags, scores = ["O"] * n_words, [math.nan] * n_words
    first, last = 0, 0
    while first < len(word_ids):
        last = first
        while last + 1 < len(word_ids) and word_ids[last + 1] == word_ids[first]:
            last += 1
        group = probs[first:last + 1]
        if how == "average":
            vector = group.mean(axis=0)
        elif how == "max":
            vector = group[int(group.max(axis=1).argmax())]
        else:
            vector = group[0]
        best = int(vector.argmax())
        tags[word_ids[first]], scores[word_ids[first]] = labels[best], float(vector[best])
        first = last + 1
    has_tokens = set(word_ids)
    for w in range(n_words):
        if w not in has_tokens and 0 < w < n_words - 1:
            before, after = tags[w - 1], tags[w + 1]
            if before[:2] in ("B-", "I-") and after[:2] in ("I-", "E-") and before[2:] == after[2:]:
                tags[w] = "I-" + before[2:]
    return tags, scores


def decode(tags: list[str], scheme: str, strict: bool) -> list[tuple[str, int, int]]:
    return ents.get_entities_strict(tags, scheme) if strict else ents.get_entities(tags, scheme)


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return round(sum(kept) / len(kept), 6) if kept else 0.0


def predict_entities(scored: Scored, labels: list[str], scheme: str, how: str, strict: bool
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    """(predicted word tags, entities) for one example.

    Entities carry ``type``, ``start``/``end`` (word indices, or token indices with ``simple``, which
    works on tokens as the pipeline does) and ``score`` (mean over their words or tokens); the caller
    turns indices into characters or words.
    """
    meta = scored.meta
    probs = _softmax(scored.scores)
    unit_how = "first" if how == "simple" else how
    tags, scores = word_tags(probs, meta["word_ids"], meta["n_words"], labels, unit_how)
    if how == "simple":  # tokens are the units: one tag per token
        token_tags = [labels[int(i)] for i in probs.argmax(axis=-1)] if len(probs) else []
        token_scores = [float(p.max()) for p in probs]
        found = decode(token_tags, scheme, strict)
        return tags, [{"type": t, "start": s, "end": e, "score": _mean(token_scores[s:e]), "unit": "token"}
                      for t, s, e in found]
    return tags, [{"type": t, "start": s, "end": e, "score": _mean(scores[s:e]), "unit": "word"}
                  for t, s, e in decode(tags, scheme, strict)]


def _token_range(meta: dict[str, Any], entity: dict[str, Any]) -> tuple[int, int] | None:
    """First and last token of an entity given in words or tokens; None if its words have no tokens."""
    if entity["unit"] == "token":
        return entity["start"], entity["end"] - 1
    first, last = {}, {}
    for k, w in enumerate(meta["word_ids"]):
        first.setdefault(w, k)
        last[w] = k
    inside = [w for w in range(entity["start"], entity["end"]) if w in first]
    return (first[inside[0]], last[inside[-1]]) if inside else None


def char_span(meta: dict[str, Any], entity: dict[str, Any]) -> tuple[int, int] | None:
    """Character start/end (end exclusive) of an entity in the original text."""
    tokens = _token_range(meta, entity)
    if tokens is None:
        return None
    return covered(meta["offsets"][tokens[0]:tokens[1] + 1])




def to_characters(meta: dict[str, Any], text: str, entity: dict[str, Any]) -> dict[str, Any] | None:
    """An entity as type, text, character start/end in the original text and score."""
    span = char_span(meta, entity)
    if span is None:
        return None
    start, end = span
    return {"type": entity["type"], "text": text[start:end], "start": start, "end": end, "score": entity["score"]}


def to_words(meta: dict[str, Any], words: list[str], entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as type, text (words joined by spaces), word start/end (end exclusive) and score."""
    start, end = entity["start"], entity["end"]
    if entity["unit"] == "token":
        start, end = meta["word_ids"][start], meta["word_ids"][end - 1] + 1
    return {"type": entity["type"], "text": " ".join(words[start:end]), "start": start, "end": end,
            "score": entity["score"]}
