"""QA oracle: gold answer -> window labels -> decoded text, the round trip every window must survive.

What it does: ``oracle`` labels each example's first gold answer in every window as ``features``
does (cuts included), decodes the labels back through ``span_chars`` and counts exact returns,
with a reason for each failure (``_why``); ``bench/check_qa_oracle.py`` and the tests use it.
What it does not do: run a model, or repair the gold answers it finds inconsistent (counted).
"""

from __future__ import annotations

from typing import Any

from bertkit.tasks import boundaries
from bertkit.tasks.qa.data import _golds
from bertkit.tasks.qa.featurize import Window, _first_span, answer_tokens, encode, label, span_chars


def oracle(tokenizer: Any, examples: list[dict[str, Any]], max_length: int, doc_stride: int) -> dict[str, Any]:
    """Label each example's first gold answer in every window, as ``features`` does (cuts at the
    answer's boundaries included), decode the labels back through ``span_chars`` and count how often
    the text comes back exactly.

    ``examples`` are raw rows with ``question``, ``context`` and ``answers`` (not checked by
    ``clean_split``). A gold answer whose text is not the context at its ``answer_start`` is a data
    error: counted in ``inconsistent`` (with a few ``failures``) and left out of the percentages.
    Returns counts and percentages: ``exact_pct`` over the other answered questions (exact in every
    window holding the answer), ``windows_exact_pct`` over (question, window) pairs, ``in_no_window``,
    ``cut`` (contexts tokenised in pieces) and a few ``failures``, each with why it failed.
    """
    contexts = [str(e["context"]) for e in examples]
    golds = [_golds(e["answers"], e.get("is_impossible")) for e in examples]
    spans = [_first_span(g) for g in golds]
    consistent = [span is not None and contexts[i][span[0]:span[1]] == golds[i][0][0] for i, span in enumerate(spans)]
    enc = encode(tokenizer, [str(e["question"]).strip() for e in examples], contexts, max_length, doc_stride,
                 [span if ok else None for span, ok in zip(spans, consistent)])
    by_example: dict[int, list[Window]] = {}
    for w in enc.windows:
        by_example.setdefault(w.example, []).append(w)
    asked = exact = pairs = pairs_exact = no_window = inconsistent = 0
    failures = []
    for i, gold in enumerate(golds):
        if not gold:
            continue
        text, start = gold[0]
        if not consistent[i]:
            inconsistent += 1
            if len(failures) < 10:
                failures.append({"gold": text, "decoded": contexts[i][start:start + len(text)],
                                 "why": "gold text is not the context at answer_start"})
            continue
        asked += 1
        tokens = answer_tokens(enc.context_offsets[i], *spans[i])
        ok, found = True, False
        for w in by_example[i]:
            s, e = label(w, tokens)
            if s == 0:
                continue
            found = True
            pairs += 1
            a, b = span_chars(w, s, e)
            got = contexts[i][a:b]
            pairs_exact += got == text
            if got != text:
                ok = False
                if len(failures) < 10:
                    why = _why(contexts[i], text, enc.context_offsets[i], spans[i])
                    failures.append({"gold": text, "decoded": got, "why": why})
        no_window += not found
        exact += ok and found
    return {"questions": asked, "exact": exact, "exact_pct": round(100.0 * exact / max(asked, 1), 2),
            "window_pairs": pairs, "windows_exact_pct": round(100.0 * pairs_exact / max(pairs, 1), 2),
            "in_no_window": no_window, "windows": len(enc.windows), "cut": enc.answers_cut,
            "inconsistent": inconsistent, "failures": failures}


def _why(context: str, text: str, offsets: list[tuple[int, int]], span: tuple[int, int]) -> str:
    """The reason a consistent gold answer did not come back from its labels."""
    if text != text.strip():
        return "whitespace at the edge of the gold text (tokens never cover it)"
    if boundaries.cuts(offsets, span, len(context)):
        return "a boundary inside a token"
    return "other"
