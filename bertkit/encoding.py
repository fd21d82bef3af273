"""Turn text into BERT inputs the same way for every task and every tokenizer.

Tasks tokenise *without* special tokens or truncation first, so they can see how long each input
really is (nothing is truncated silently), then fit it to ``max_length`` their own way and add the
special tokens here. Japanese ``BertJapaneseTokenizer`` inputs go through ``bertkit.japanese`` (fast,
verified-identical ids); everything else through the tokenizer itself.

What this does not handle: tokenizers whose special-token layout is not BERT's
``[CLS] A [SEP] (B [SEP])`` (RoBERTa's ``<s> A </s></s> B </s>``, for instance).
"""

from __future__ import annotations

from typing import Any


def is_japanese(tokenizer: Any) -> bool:
    """A Tohoku-style ``BertJapaneseTokenizer`` (checked by class name: no import needed for others)."""
    return any(cls.__name__ == "BertJapaneseTokenizer" for cls in type(tokenizer).__mro__)


def token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Ids of each text, without special tokens and without truncation."""
    if not texts:
        return []
    if is_japanese(tokenizer):
        from bertkit.japanese import token_ids_batch

        return token_ids_batch(tokenizer, texts)
    return tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


def with_specials(tokenizer: Any, first: list[int], second: list[int] | None = None) -> tuple[list[int], list[int]]:
    """``[CLS] first [SEP] (second [SEP])`` and the matching token_type_ids."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids = [cls, *first, sep]
    types = [0] * len(ids)
    if second is not None:
        ids += [*second, sep]
        types += [1] * (len(second) + 1)
    return ids, types


def n_specials(pair: bool) -> int:
    return 3 if pair else 2


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
    """Longest-first truncation of a pair, as ``truncation='longest_first'`` does."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        if len(a) >= len(b):
            a.pop()
        else:
            b.pop()
    return a, b


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
