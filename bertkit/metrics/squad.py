"""Extractive QA scores: SQuAD exact match and F1, offline, for English and Japanese.

English (``lang="en"``) follows the official SQuAD v2.0 script (the same as v1.1 whenever each gold
keeps a word after normalising): lowercase, drop ASCII punctuation (``string.punctuation``), drop the words a/an/the,
collapse whitespace; F1 is over the whitespace tokens left, counting repeats.

Japanese (``lang="ja"``) follows what JGLUE ran to report JSQuAD (the ``squad_metrics.py`` patch in
yahoojapan/JGLUE ``fine-tuning/patch``), so scores compare with published JSQuAD numbers:
lowercase, strip trailing ``。``, collapse whitespace runs to one space; F1 is over the characters
left, the spaces between words included. Nothing else is removed: no NFKC, no stripping of 「」、・
or other punctuation, no removal of particles. That is narrower than one might guess, but it is
what the JSQuAD leaderboard numbers mean.

Both languages share the SQuAD v2.0 rules for answers:

- golds that normalise to nothing are ignored; a question with no gold left is unanswerable, and
  on it EM = F1 = 1 exactly when the prediction normalises to nothing (the empty string);
- EM and F1 take the best score over the golds;
- ``squad_scores`` counts a question with no prediction as predicted ``""`` (an abstention), where
  the official v1.1 script scores it 0 and the v2.0 script leaves it out of the total.

Not handled: the v2.0 script's no-answer probability threshold search (``best_f1_thresh``); the
caller decides abstentions before scoring.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence

from bertkit.errors import BertkitError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)  # ASCII only, as in the official script
LANGS = ("en", "ja")


def normalize_answer_en(s: str) -> str:
    """Official SQuAD normalisation: lowercase, remove punctuation, then articles, collapse spaces.

    The order matters and is kept: punctuation goes first, so ``"the-end"`` becomes ``"theend"``.
    """
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def normalize_answer_ja(s: str) -> str:
    """JGLUE's JSQuAD normalisation: lowercase, strip trailing ``。``, collapse whitespace runs.

    The ``。`` is stripped before whitespace is collapsed, as JGLUE does, so ``"東京。 "`` keeps it.
    """
    return " ".join(s.lower().rstrip("。").split())


def _normalize(s: str, lang: str) -> str:
    if lang == "en":
        return normalize_answer_en(s)
    if lang == "ja":
        return normalize_answer_ja(s)
    raise BertkitError(f"unknown QA metric language '{lang}'", f"use one of {', '.join(LANGS)}")


def _tokens(normalized: str, lang: str) -> list[str]:
    # JGLUE scores characters because Japanese is written without spaces between words.
    return list(normalized) if lang == "ja" else normalized.split()


def _scored_golds(golds: Sequence[str] | str, lang: str) -> list[str]:
    """Normalised golds, the empty ones dropped; ``[""]`` when none is left (unanswerable)."""
    if isinstance(golds, str):  # one gold passed bare; a str would otherwise iterate by character
        golds = [golds]
    return [n for n in (_normalize(g, lang) for g in golds) if n] or [""]


def exact_match(pred: str, golds: Sequence[str] | str, lang: str = "en") -> float:
    """1.0 if the normalised prediction equals some normalised gold, else 0.0."""
    p = _normalize(pred, lang)
    return max(float(p == g) for g in _scored_golds(golds, lang))


def f1(pred: str, golds: Sequence[str] | str, lang: str = "en") -> float:
    """Best token (en) or character (ja) F1 of the prediction against the golds, in [0, 1]."""
    p = _tokens(_normalize(pred, lang), lang)
    return max(_f1(p, _tokens(g, lang)) for g in _scored_golds(golds, lang))


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:  # a no-answer on either side scores only against a no-answer
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
                 lang: str = "en", no_answer_ids: Iterable[Hashable] | None = None) -> dict:
    """EM and F1 (0-100) over every question in ``references``, with a v2.0 breakdown when needed.

    ``references`` maps question id -> gold answers; an empty list (or only blank strings) marks an
    unanswerable question. ``no_answer_ids`` marks more questions unanswerable whatever their golds
    say (datasets that flag ``is_impossible`` but still list plausible answers). A missing or ``None``
    prediction counts as ``""``. Predictions or ``no_answer_ids`` for ids not in ``references`` are an error:
    they mean the two sides were built from different data.

    Returns ``exact_match``, ``f1``, ``total``; when some question is unanswerable, also
    ``HasAns_exact``/``HasAns_f1``/``HasAns_total`` and ``NoAns_*`` the same way, each group only
    when it has questions (as the official script does).
    """
    no_answer = set(no_answer_ids or ())
    _check_ids(predictions, references, no_answer)
    groups: dict[str, list[tuple[float, float]]] = {"HasAns": [], "NoAns": []}
    for qid, golds in references.items():
        golds = [] if qid in no_answer else golds
        has_answer = any(g.strip() for g in ([golds] if isinstance(golds, str) else golds))
        pred = predictions.get(qid) or ""  # None too: an abstention however the caller wrote it
        groups["HasAns" if has_answer else "NoAns"].append((exact_match(pred, golds, lang), f1(pred, golds, lang)))
    scores = _summary("", groups["HasAns"] + groups["NoAns"])
    if groups["NoAns"]:
        for name, pairs in groups.items():
            if pairs:
                scores.update(_summary(name + "_", pairs))
    return scores


def _summary(prefix: str, pairs: list[tuple[float, float]]) -> dict:
    n = len(pairs)
    em_key = f"{prefix}exact" if prefix else "exact_match"
    return {
        em_key: 100.0 * sum(em for em, _ in pairs) / n if n else 0.0,
        f"{prefix}f1": 100.0 * sum(f for _, f in pairs) / n if n else 0.0,
        f"{prefix}total": n,
    }


def _check_ids(predictions, references, no_answer) -> None:
    for what, ids in (("predictions", predictions), ("no_answer_ids", no_answer)):
        unknown = [qid for qid in ids if qid not in references]
        if unknown:
            raise BertkitError(f"{what} has {len(unknown)} question id(s) not in the references, "
                               f"e.g. {unknown[:3]!r}",
                               "score predictions against the split they were made for; "
                               "check the id types match (int vs str)")
