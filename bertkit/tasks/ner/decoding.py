"""NER decoding: per-window model scores -> whole examples -> word tags -> entities.

What it does: merges windows back token by token (``merge``, each token from the window where it
is most central), aggregates tokens into one tag per word as transformers' pipeline does
(``word_tags``), chooses the tags as the best well-formed sequence of the label scheme (``best_path``,
Viterbi; ``ner.decoding``) or per word (argmax), decodes tags into entities with seqeval's default or strict reading (``decode``)
and maps entities to character or word offsets of the input. What it does not do: run the model
(``ner.scoring.infer``), score entities against gold (``ner.scoring``) or know about recipes: it
works from the ``meta`` that ``ner.featurize`` put in the feature rows.
"""

from __future__ import annotations

import functools
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


def best_path(probs: np.ndarray, labels: list[str], scheme: str) -> list[int]:
    """The label sequence of highest probability among the well-formed ones of ``scheme`` (Viterbi
    over the per-unit probabilities, transitions allowed or not by ``entities.may_follow``).

    Argmax per unit can write ``O I-X`` or ``B-X I-Y``, which seqeval's default mode reads as extra
    entities and its strict mode drops; here the model's second choice fills such a place instead.
    Measured on BC5CDR and NCBI-disease (bench/RESULTS.md, session 9): +0.1 to +0.7 F1 over argmax.
    """
    n = len(probs)
    if n == 0:
        return []
    logp = np.log(np.asarray(probs, dtype=np.float64) + 1e-12)
    follow, opens, closes = _transitions(tuple(labels), scheme)
    score, back = opens + logp[0], np.zeros((n, len(labels)), dtype=np.int64)
    for i in range(1, n):
        candidates = score[:, None] + follow
        back[i] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + logp[i]
    path = [int((score + closes).argmax())]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i][path[-1]]))
    return path[::-1]


@functools.lru_cache(maxsize=32)
def _transitions(labels: tuple[str, ...], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-weights 0 (allowed) or -inf: label -> label, sentence start -> label, label -> end."""
    def weight(a: str, b: str) -> float:
        return 0.0 if ents.may_follow(a, b, scheme) else -np.inf

    return (np.array([[weight(a, b) for b in labels] for a in labels]),
            np.array([weight("O", b) for b in labels]), np.array([weight(a, "O") for a in labels]))


def unit_scores(probs: np.ndarray, word_ids: list[int], how: str) -> tuple[list[int], np.ndarray]:
    """One probability vector per word that has tokens (the words, in order, and their vectors), from
    its tokens' vectors as the transformers pipeline's ``first`` / ``average`` / ``max`` aggregation."""
    words, vectors, first = [], [], 0
    while first < len(word_ids):
        last = first
        while last + 1 < len(word_ids) and word_ids[last + 1] == word_ids[first]:
            last += 1
        group = probs[first:last + 1]
        if how == "average":
            vectors.append(group.mean(axis=0))
        elif how == "max":
            vectors.append(group[int(group.max(axis=1).argmax())])
        else:
            vectors.append(group[0])
        words.append(word_ids[first])
        first = last + 1
    return words, np.asarray(vectors).reshape(len(vectors), probs.shape[-1])


def choose(vectors: np.ndarray, labels: list[str], scheme: str, decoding: str) -> list[int]:
    """A label per unit: the best well-formed sequence (``viterbi``) or each unit's argmax."""
    if decoding == "viterbi":
        return best_path(vectors, labels, scheme)
    return [int(i) for i in vectors.argmax(axis=-1)] if len(vectors) else []


def word_tags(probs: np.ndarray, word_ids: list[int], n_words: int, labels: list[str], how: str,
              scheme: str = "IOB2", decoding: str = "argmax") -> tuple[list[str], list[float]]:
    """One tag and score per word from its tokens' probabilities (``unit_scores``), chosen by
    ``choose``. A word without tokens continues the entity around it (``I-``) when both neighbours
    belong to it, else ``O``."""
    tags, scores = ["O"] * n_words, [math.nan] * n_words
    words, vectors = unit_scores(probs, word_ids, how)
    for w, vector, best in zip(words, vectors, choose(vectors, labels, scheme, decoding)):
        tags[w], scores[w] = labels[best], float(vector[best])
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


def predict_entities(scored: Scored, labels: list[str], scheme: str, how: str, strict: bool,
                     decoding: str = "argmax") -> tuple[list[str], list[dict[str, Any]]]:
    """(predicted word tags, entities) for one example.

    Entities carry ``type``, ``start``/``end`` (word indices, or token indices with ``simple``, which
    works on tokens as the pipeline does) and ``score`` (mean over their words or tokens); the caller
    turns indices into characters or words.
    """
    meta = scored.meta
    probs = _softmax(scored.scores)
    unit_how = "first" if how == "simple" else how
    tags, scores = word_tags(probs, meta["word_ids"], meta["n_words"], labels, unit_how, scheme, decoding)
    if how == "simple":  # tokens are the units: one tag per token
        best = choose(probs, labels, scheme, decoding)
        token_tags = [labels[i] for i in best]
        token_scores = [float(p[i]) for p, i in zip(probs, best)]
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
