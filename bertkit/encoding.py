"""Turn text into BERT inputs the same way for every task and every tokenizer.

Tasks tokenise *without* special tokens or truncation first, so they can see how long each input
really is (nothing is truncated silently), then fit it to ``max_length`` their own way and add the
special tokens here. Japanese ``BertJapaneseTokenizer`` inputs go through ``bertkit.japanese`` (fast,
verified-identical ids); everything else through the tokenizer itself.

The special tokens come from the tokenizer's own template (``Template``, read once per tokenizer by
encoding a probe text with and without them): BERT's ``[CLS] A [SEP] B [SEP]``, RoBERTa's and
XLM-R's ``<s> A </s></s> B </s>``, ModernBERT's ``[CLS] A [SEP] B [SEP]``, whatever a tokenizer's
post-processor says. ``token_type_ids`` are the ones the tokenizer gives when asked for them
(``return_token_type_ids=True``): 0/1 for BERT-style pairs, all zeros for RoBERTa's and XLM-R's
single-row type table. They are asked for even where ``model_input_names`` leaves them out
(transformers 5 does so for ALBERT and ``BertJapaneseTokenizer``, whose models were pretrained with
segment types); models whose ``forward`` takes no types (DistilBERT, ModernBERT) never get them.

What this does not handle: tokenizers that put the special tokens anywhere but around the texts in
order (XLNet's ``A <sep> B <sep> <cls>`` with left padding); ``Template`` refuses what it cannot read.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from bertkit.errors import BertkitError


def is_japanese(tokenizer: Any) -> bool:
    """A Tohoku-style ``BertJapaneseTokenizer`` (checked by class name: no import needed for others)."""
    return any(cls.__name__ == "BertJapaneseTokenizer" for cls in type(tokenizer).__mro__)


def token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Ids of each text, without special tokens and without truncation."""
    if not texts:
        return []
    if is_japanese(tokenizer) or getattr(tokenizer, "_bertkit_segmenter", None) is not None:
        from bertkit.japanese import token_ids_batch

        return token_ids_batch(tokenizer, texts)
    return tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


@dataclass(frozen=True)
class Template:
    """Where a tokenizer puts its special tokens: ``before A after`` for one text and ``before A
    between B after`` for a pair, with the token type of every position."""

    single: tuple[tuple[int, ...], tuple[int, ...]]  # (before, after)
    pair: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (before, between, after)
    single_types: tuple[tuple[int, ...], int, tuple[int, ...]]  # types of before, of A, of after
    pair_types: tuple[tuple[int, ...], int, tuple[int, ...], int, tuple[int, ...]]
    space_before_words: bool = False  # byte-level BPE: a word inside a sentence is its tokens after a space

    def n_specials(self, pair: bool) -> int:
        return sum(map(len, self.pair if pair else self.single))

    def second_start(self, n_first: int) -> int:
        """Position in a pair's ids of the second text's first token."""
        return len(self.pair[0]) + n_first + len(self.pair[1])

    def wrap(self, first: list[int], second: list[int] | None = None) -> tuple[list[int], list[int]]:
        if second is None:
            (before, after), (tb, ta, tf) = self.single, self.single_types
            return [*before, *first, *after], [*tb, *[ta] * len(first), *tf]
        (before, between, after), (tb, ta, tm, tbb, tf) = self.pair, self.pair_types
        return ([*before, *first, *between, *second, *after],
                [*tb, *[ta] * len(first), *tm, *[tbb] * len(second), *tf])

    def around(self, values: list[Any], fill: Any) -> list[Any]:
        """Per-token ``values`` of one text, with ``fill`` at the special tokens' positions."""
        before, after = self.single
        return [*[fill] * len(before), *values, *[fill] * len(after)]


_TEMPLATES: weakref.WeakKeyDictionary[Any, Template] = weakref.WeakKeyDictionary()
PROBE = ("a", "b")


def _find(seq: list[int], part: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(part) + 1):
        if seq[i:i + len(part)] == part:
            return i
    return -1


def template(tokenizer: Any) -> Template:
    """The tokenizer's special-token template, read once by encoding ``PROBE`` with and without them."""
    try:
        return _TEMPLATES[tokenizer]
    except (KeyError, TypeError):
        pass
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in PROBE)
    one = tokenizer(PROBE[0], return_token_type_ids=True)
    two = tokenizer(*PROBE, return_token_type_ids=True)
    i = _find(one["input_ids"], a) if a else -1
    j = _find(two["input_ids"], a) if a else -1
    k = _find(two["input_ids"], b, j + len(a)) if b and j >= 0 else -1
    if min(i, j, k) < 0:
        raise BertkitError(f"cannot read where {type(tokenizer).__name__} puts its special tokens "
                           f"(its encoding of {PROBE[0]!r} is not inside its encoding with special tokens)",
                           "bertkit serves encoders whose special tokens wrap the text, as BERT's and RoBERTa's do")
    ids, types = one["input_ids"], one.get("token_type_ids") or [0] * len(one["input_ids"])
    pids, ptypes = two["input_ids"], two.get("token_type_ids") or [0] * len(two["input_ids"])
    end_a, end_b = j + len(a), k + len(b)
    found = Template(
        single=(tuple(ids[:i]), tuple(ids[i + len(a):])),
        pair=(tuple(pids[:j]), tuple(pids[end_a:k]), tuple(pids[end_b:])),
        single_types=(tuple(types[:i]), types[i], tuple(types[i + len(a):])),
        pair_types=(tuple(ptypes[:j]), ptypes[j], tuple(ptypes[end_a:k]), ptypes[k], tuple(ptypes[end_b:])),
        space_before_words=tokenizer(" " + PROBE[0], add_special_tokens=False)["input_ids"] != a,
    )
    try:
        _TEMPLATES[tokenizer] = found
    except TypeError:  # not weak-referenceable: read it again next time
        pass
    return found


def word_token_ids(tokenizer: Any, words: list[str]) -> list[list[int]]:
    """Ids of each pre-split word as it is tokenised inside a sentence: after a space for byte-level
    BPE (``ĠParis``, as ``is_split_into_words`` with ``add_prefix_space`` does), alone for WordPiece and
    SentencePiece (whose ``▁Paris`` is the same either way)."""
    if words and template(tokenizer).space_before_words:
        return token_ids(tokenizer, [" " + w for w in words])
    return token_ids(tokenizer, words)


def with_specials(tokenizer: Any, first: list[int], second: list[int] | None = None) -> tuple[list[int], list[int]]:
    """``first`` (and ``second``) wrapped in the tokenizer's special tokens, and the token_type_ids."""
    return template(tokenizer).wrap(first, second)


def n_specials(tokenizer: Any, pair: bool) -> int:
    return template(tokenizer).n_specials(pair)


def fit_single(ids: list[int], budget: int, strategy: str = "head", head_tokens: int = 128) -> list[int]:
    """Cut ``ids`` to ``budget`` tokens: keep the head, the tail, or ``head_tokens`` + the rest from the tail."""
    if len(ids) <= budget:
        return ids
    if strategy == "tail":
        return ids[len(ids) - budget:]
    if strategy == "head_tail":
        head = min(head_tokens, budget)
        tail = budget - head
        return ids[:head] + (ids[len(ids) - tail:] if tail else [])
    return ids[:budget]


def fit_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Truncate a pair to ``budget`` tokens exactly as the tokenizers' ``longest_first`` does: a text
    that fits in half the budget stays whole and the other takes the rest; otherwise the longer text
    keeps the larger half (the second text on a tie), each cut from its end."""
    if len(a) + len(b) <= budget:
        return list(a), list(b)
    half = budget // 2
    if min(len(a), len(b)) <= half:
        keep_a = len(a) if len(a) <= len(b) else budget - len(b)
    else:
        keep_a = budget - half if len(a) > len(b) else half
    return list(a[:keep_a]), list(b[:budget - keep_a])


def length_stats(lengths: list[int], max_length: int) -> tuple[dict[str, int], int, float]:
    """Percentiles of per-example token counts, plus how many (and what percentage) exceed ``max_length``.

    Each task reports the excess its own way: truncated (classification) or windowed (NER, QA).
    """
    import numpy as np

    arr = np.asarray(lengths or [0])
    longer = int((arr > max_length).sum())
    stats = {"examples": len(lengths), "tokens_p50": int(np.percentile(arr, 50)),
             "tokens_p90": int(np.percentile(arr, 90)), "tokens_p99": int(np.percentile(arr, 99)),
             "tokens_max": int(arr.max())}
    return stats, longer, round(100.0 * longer / max(len(lengths), 1), 2)
