"""QA features: question and context -> ``[CLS] question [SEP] context-window [SEP]`` windows (in the
tokenizer's own template: ``<s> question </s></s> context-window </s>`` for RoBERTa) with start/end labels.

What it does: aligns each context once (``bertkit.japanese.align``, offsets into the original
text), cuts a training context at its answer's boundaries when the answer starts or ends inside a
token (``bertkit.tasks.boundaries``), splits long contexts into overlapping windows (``encode``),
labels each window with the first gold answer's tokens or ``[CLS]`` (``label``), keeps what
decoding needs on evaluation windows (``features``) and reports lengths, windows and cuts.
What it does not do: check the raw data (``qa.data``) or read answers out of logits
(``qa.decoding``, which uses ``span_chars`` from here).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bertkit import encoding
from bertkit.japanese.spans import covered
from bertkit.recipe import Recipe
from bertkit.tasks import boundaries
from bertkit.tasks.qa.data import _golds
from bertkit.tasks.qa.spec import Spec


@dataclass
class Window:
    """One model input: ``[CLS] question [SEP] context[token_from:token_from+len(offsets)] [SEP]`` (or the
    tokenizer's own layout); position 0 is where a "no answer" points."""

    example: int  # index of the example (row) it came from
    input_ids: list[int]
    token_type_ids: list[int]
    context_start: int  # position in input_ids of the window's first context token
    token_from: int  # index of that token among all the context's tokens
    offsets: list[tuple[int, int]]  # character span, in the original context, of each context token here


@dataclass
class Encoded:
    """The windows of a list of examples, with each context's full token offsets."""

    windows: list[Window]
    context_offsets: list[list[tuple[int, int]]]  # per example
    full_lengths: list[int]  # per example: question + context + special tokens, uncut
    questions_cut: int = 0
    answers_cut: int = 0  # examples whose context was tokenised in pieces cut at the answer's boundaries


def encode(tokenizer: Any, questions: list[str], contexts: list[str], max_length: int, doc_stride: int,
           answers: list[tuple[int, int] | None] | None = None) -> Encoded:
    """Windows over each context (ids and offsets from ``bertkit.japanese.align``; no labels yet).

    The question keeps at most half of the room; a context window takes the rest. Consecutive
    windows share ``doc_stride`` tokens, or half a window when a long question leaves less room.
    ``answers`` (per example, the character span its labels will mark, or None) makes those spans
    token boundaries: see ``_cut_at_answers``.
    """
    from bertkit.japanese import align_batch

    unique = list(dict.fromkeys(contexts))  # SQuAD asks ~5 questions per paragraph: align each once
    by_text = {text: (a.input_ids, [tuple(o) for o in a.offsets]) for text, a in zip(unique, align_batch(tokenizer, unique))}
    tokens = [by_text[context] for context in contexts]
    answers_cut = _cut_at_answers(tokenizer, contexts, answers, tokens) if answers else 0
    question_ids = [a.input_ids for a in align_batch(tokenizer, questions)]
    template = encoding.template(tokenizer)
    specials = template.n_specials(pair=True)
    room = max_length - specials
    windows, all_offsets, full_lengths, cut = [], [], [], 0
    for i, (q, (ids, offsets)) in enumerate(zip(question_ids, tokens)):
        full_lengths.append(len(q) + len(ids) + specials)
        if len(q) > room // 2:
            q, cut = q[: room // 2], cut + 1
        budget = room - len(q)
        step = budget - min(doc_stride, budget // 2)
        all_offsets.append(offsets)
        start = 0
        while True:
            input_ids, types = template.wrap(q, ids[start:start + budget])
            windows.append(Window(i, input_ids, types, template.second_start(len(q)), start, offsets[start:start + budget]))
            if start + budget >= len(ids):
                break
            start += step
    return Encoded(windows, all_offsets, full_lengths, cut, answers_cut)


def _cut_at_answers(tokenizer: Any, contexts: list[str], answers: list[tuple[int, int] | None],
                    tokens: list[tuple[list[int], list[tuple[int, int]]]]) -> int:
    """Replace, in ``tokens`` (per example: context ids and offsets), the tokens of every example
    whose answer starts or ends strictly inside a token by its context tokenised in pieces cut at
    the answer's boundaries (``boundaries.cuts``). Returns how many examples were cut."""
    cuts = _answer_cuts([offsets for _, offsets in tokens], contexts, answers)
    redo = [i for i, at in enumerate(cuts) if at]
    for i, a in zip(redo, boundaries.align_cut(tokenizer, [contexts[i] for i in redo], [cuts[i] for i in redo])):
        tokens[i] = (a.input_ids, [tuple(o) for o in a.offsets])
    return len(redo)


def _answer_cuts(offsets: list[list[tuple[int, int]]], contexts: list[str],
                 answers: list[tuple[int, int] | None]) -> list[list[int]]:
    """Per example, where to cut its context so the answer's boundaries are token edges (``boundaries.cuts``;
    empty when they already are, or when there is no answer)."""
    return [boundaries.cuts(offs, span, len(context)) if span else [] for offs, context, span in zip(offsets, contexts, answers)]


def answer_tokens(offsets: list[tuple[int, int]], start_char: int, end_char: int) -> tuple[int, int] | None:
    """First and last context token overlapping the characters [start_char, end_char), or None."""
    ends = [e for _, e in offsets]
    starts = [s for s, _ in offsets]
    first = bisect.bisect_right(ends, start_char)  # first token ending after the answer starts
    last = bisect.bisect_left(starts, end_char) - 1  # last token starting before the answer ends
    if first >= len(offsets) or last < first:
        return None
    return first, last


def label(window: Window, tokens: tuple[int, int] | None) -> tuple[int, int]:
    """Start/end positions of the answer's tokens in the window; (0, 0) = [CLS] unless wholly inside."""
    if tokens is None:
        return 0, 0
    first, last = tokens[0] - window.token_from, tokens[1] - window.token_from
    if first < 0 or last >= len(window.offsets):
        return 0, 0
    return window.context_start + first, window.context_start + last


def span_chars(window: Window, start: int, end: int) -> tuple[int, int]:
    """Character span in the context of the window's tokens ``start..end`` (positions in input_ids),
    from the first to the last of them that covers any character (a lone ``Ġ`` or ``▁`` token has an
    empty span); ``(0, 0)`` if none does."""
    return covered(window.offsets[start - window.context_start:end - window.context_start + 1]) or (0, 0)


def _metric_lang(recipe: Recipe, tokenizer: Any, contexts: list[str] | None = None) -> str:
    """``qa.metric_lang``; auto: JGLUE's character-level scores for Japanese (a Japanese tokenizer, a
    pre-segmenting one, or contexts mostly in Japanese: SentencePiece models read it too), else SQuAD's."""
    from bertkit.japanese.presegment import JAPANESE_CHARS

    lang = recipe.options.metric_lang
    if lang != "auto":
        return lang
    if encoding.is_japanese(tokenizer) or getattr(tokenizer, "_bertkit_segmenter", None) is not None:
        return "ja"
    sample = (contexts or [])[:50]
    return "ja" if sample and sum(bool(JAPANESE_CHARS.search(c)) for c in sample) * 2 > len(sample) else "en"


def features(dataset: Any, tokenizer: Any, recipe: Recipe, spec: Spec, split: str = "train",
             with_labels: bool = True) -> tuple[Any, dict[str, Any]]:
    """Windows of a split as a Dataset, and a report of lengths and windows.

    Every window carries ``start_positions``/``end_positions`` (from the first gold answer). Outside
    training, windows also carry what decoding needs: ``example_index``, ``context_start`` and the
    context tokens' ``offsets`` (flattened start, end pairs); the first window of each example also
    carries its ``example_id``, ``question``, ``context`` and ``gold`` answer texts (None on later
    windows, so a long context is stored once).
    """
    import datasets

    opts = recipe.options
    questions = [str(q).strip() for q in list(dataset[opts.question_column])]
    contexts = [str(c) for c in list(dataset[opts.context_column])]
    spec.lang = _metric_lang(recipe, tokenizer, contexts)
    golds = _split_golds(dataset, recipe) if with_labels else [[] for _ in contexts]
    spans = [_first_span(g) for g in golds]
    cut = boundaries.applies(split)
    enc = encode(tokenizer, questions, contexts, recipe.max_length, opts.doc_stride, spans if cut else None)
    # Read as predict reads it: count the answers no prediction can give exactly (a boundary inside a token).
    unreachable = 0 if cut else sum(map(bool, _answer_cuts(enc.context_offsets, contexts, spans)))
    ids = list(dataset[opts.id_column]) if opts.id_column in dataset.column_names else [str(i) for i in range(len(dataset))]
    keep_meta = split != "train"
    first_tokens = [answer_tokens(enc.context_offsets[i], *span) if span else None for i, span in enumerate(spans)]
    rows, seen, located = [], set(), set()
    for w in enc.windows:
        row: dict[str, Any] = {"input_ids": w.input_ids, "token_type_ids": w.token_type_ids,
                               "attention_mask": [1] * len(w.input_ids), "length": len(w.input_ids)}
        if with_labels:
            row["start_positions"], row["end_positions"] = label(w, first_tokens[w.example])
            if row["start_positions"]:
                located.add(w.example)
        if keep_meta:
            first = w.example not in seen
            seen.add(w.example)
            row.update({"example_index": w.example, "context_start": w.context_start,
                        "offsets": [x for pair in w.offsets for x in pair],
                        "example_id": str(ids[w.example]) if first else None,
                        "question": questions[w.example] if first else None,
                        "context": contexts[w.example] if first else None,
                        "gold": [t for t, _ in golds[w.example]] if first else None})
        rows.append(row)
    feats = datasets.Dataset.from_list(rows)
    if split == "validation":
        spec.validation = feats
    lost = sum(1 for i, g in enumerate(golds) if g and i not in located) if with_labels else 0
    return feats, _length_report(enc, recipe, lost, unreachable)


def _first_span(golds: list[tuple[str, int]]) -> tuple[int, int] | None:
    """Character span of the first gold answer, the one the labels mark (None: no answer)."""
    return (golds[0][1], golds[0][1] + len(golds[0][0])) if golds else None


def _split_golds(dataset: Any, recipe: Recipe) -> list[list[tuple[str, int]]]:
    opts = recipe.options
    answers = list(dataset[opts.answers_column]) if opts.answers_column in dataset.column_names else [None] * len(dataset)
    impossible = list(dataset["is_impossible"]) if "is_impossible" in dataset.column_names else [False] * len(dataset)
    return [_golds(a, imp) for a, imp in zip(answers, impossible)]


def _length_report(enc: Encoded, recipe: Recipe, lost: int, unreachable: int = 0) -> dict[str, Any]:
    per_example = Counter(w.example for w in enc.windows)
    stats, longer, pct = encoding.length_stats(enc.full_lengths, recipe.max_length)
    report = {
        **stats, "windows": len(enc.windows), "truncated": longer, "truncated_pct": pct,
        "note_windows": f"read as {len(enc.windows)} windows (up to {max(per_example.values(), default=0)} per "
                        f"question, doc_stride={recipe.options.doc_stride})",
    }
    if enc.questions_cut:
        report["note_questions"] = f"{enc.questions_cut} questions cut to half of max_length"
    report["cut_examples"] = enc.answers_cut
    if enc.answers_cut or unreachable:
        report["note_cuts"] = boundaries.note("questions whose gold answer starts or ends inside a token",
                                              enc.answers_cut or unreachable, cut=bool(enc.answers_cut))
    if lost:
        report["note_answers"] = f"{lost} gold answers fit in no window (longer than a window; labelled [CLS])"
    return report


def collator(tokenizer: Any, spec: Any = None) -> Any:
    """Dynamic padding of the model inputs; decoding columns are dropped if the Trainer kept them."""
    from transformers import DataCollatorWithPadding

    pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    keep = {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    return lambda rows: pad([{k: v for k, v in r.items() if k in keep} for r in rows])
