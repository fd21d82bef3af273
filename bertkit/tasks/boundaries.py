"""Gold boundaries made into token boundaries, for the examples whose labels need it.

Labels sit on tokens (QA: the answer's first and last token) or on words (NER: the first sub-token
of each word). When a gold answer or entity starts or ends strictly inside a token (the answer
``8th`` in ``18th``, ``パ`` in ``パシフィック``) or, for word labels, inside a MeCab word (``近江`` in
``近江国``), no labelling of the usual tokenisation says what the gold says: the model would be
taught, and scored against, a wider span than the annotation. So an example with such a boundary is
tokenised again in pieces: the text is cut at its gold boundaries and each piece is aligned on its own
(``bertkit.japanese.align_batch``), with offsets shifted back into the whole text and word ids kept
increasing across pieces. Its labels are then exact: no token or word crosses a piece edge.

Only those examples change; every other one keeps exactly the ids (and so the windows) of the usual
tokenisation. The cuts need gold spans, and they change what the model reads, so they apply only
where labels are learned (the training split) and where the label encoding itself is checked (the
oracle round trips): ``applies(split)``. Validation, test and ``bertkit evaluate`` read every text as
``predict`` does, so a score measures what a user gets; a gold boundary inside a token stays out of
reach there, the tokenizer's own ceiling, which these cuts do not lift (the length report counts
those examples).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from itertools import accumulate
from typing import Any


CUT_SPLITS = ("train", "oracle")


def applies(split: str) -> bool:
    """Whether examples of this split are cut at their gold boundaries (see the module docstring)."""
    return split in CUT_SPLITS


def note(examples: str, n: int, cut: bool) -> str:
    """The length report's ``note_cuts`` line: ``n`` ``examples`` (a phrase naming them) were cut,
    or, where ``cut`` is off, read as ``predict`` reads them."""
    if cut:
        return (f"{examples}: {n}, tokenised in pieces cut at their gold boundaries, so the labels are exact "
                "(prediction on raw text cannot split those tokens)")
    return f"{examples}: {n}; read as predict reads them, so those cannot come back exactly (the tokenizer's ceiling)"


def cuts(spans: list[tuple[int, int]], bounds: Iterable[int], length: int) -> list[int]:
    """Where to cut a text of ``length`` characters so that every gold boundary in ``bounds`` becomes
    an edge of ``spans`` (its tokens or words, in text order): nowhere (``[]``) when no boundary falls
    strictly inside a span; else at every boundary strictly inside the text, sorted, each once.

    All of them, not only those inside a span: a piece tokenised anew can move a word edge elsewhere
    (MeCab reads 駐日大使 as 駐日|大使, but 日大使 as 日大|使), so a boundary that was an edge before
    need not stay one unless it is cut too.
    """
    bounds = sorted({b for b in bounds if 0 < b < length})
    starts = [s for s, _ in spans]
    reach = list(accumulate((e for _, e in spans), max))  # furthest end among the spans so far
    for b in bounds:
        k = bisect.bisect_left(starts, b) - 1  # the last span starting before b
        if k >= 0 and reach[k] > b:
            return bounds
    return []


def word_spans(offsets: list[tuple[int, int]], word_ids: list[int]) -> list[tuple[int, int]]:
    """Per word (in order of first token): from its first character to its last."""
    spans: dict[int, tuple[int, int]] = {}
    for w, (s, e) in zip(word_ids, offsets):
        old = spans.get(w)
        spans[w] = (s, e) if old is None else (min(old[0], s), max(old[1], e))
    return list(spans.values())


def align_cut(tokenizer: Any, texts: list[str], cuts: list[list[int]]) -> list[Any]:
    """``align_batch`` of each text cut at its positions (sorted, strictly inside the text), each
    piece tokenised on its own: one ``Aligned`` per text, offsets into the whole text, word ids
    increasing across pieces. All the pieces of all the texts go through one ``align_batch`` call."""
    from bertkit.japanese import Aligned, align_batch

    if not texts:
        return []
    starts, pieces = [], []
    for text, at in zip(texts, cuts):
        edges = [0, *at, len(text)]
        starts.append(edges[:-1])
        pieces += [text[a:b] for a, b in zip(edges, edges[1:])]
    aligned = iter(align_batch(tokenizer, pieces))
    out = []
    for piece_starts in starts:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        words: list[int] = []
        for start in piece_starts:
            a = next(aligned)
            base = words[-1] + 1 if words else 0
            ids += a.input_ids
            offsets += [(s + start, e + start) for s, e in a.offsets]
            words += [w + base for w in a.word_ids]
        out.append(Aligned(ids, offsets, words))
    return out
