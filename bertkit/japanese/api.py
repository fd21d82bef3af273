"""The entry points: ``align``, ``align_batch``, ``token_ids_batch``, ``word_spans``.

For one text they give exactly the ids the tokenizer produces
(``tokenizer(text, add_special_tokens=False)["input_ids"]``), the span of the ORIGINAL text every
token came from, and the index of the word it belongs to (``spans.Aligned``). Here the answer's
source is chosen: a fast (Rust) tokenizer's native offsets and word ids; for a
BertJapaneseTokenizer the fast path (``fast``) when it is verified for the tokenizer, else the
slow alignment (``slow``), which also takes every text the fast path cannot do exactly.

Checked here, before any work: a text longer than MeCab can parse in one piece (``MAX_TEXT_CHARS``),
other slow tokenizers and unsupported configurations (sentencepiece subwords, sudachi / jumanpp
words), each a ``BertkitError``. No tokenisation of its own: it only dispatches.
"""

from __future__ import annotations

import sys

from bertkit.errors import BertkitError
from bertkit.japanese.fast import _FastPath, _fast_path_for
from bertkit.japanese.presegment import JAPANESE_CHARS, Segmenter, align_segmented, mecab_word_ids
from bertkit.japanese.slow import _slow_align
from bertkit.japanese.spans import Aligned, trim

_JA_MODULE = "transformers.models.bert_japanese.tokenization_bert_japanese"
# MeCab can crash the whole process on one very long input, and BertJapaneseTokenizer hands it each
# text whole (measured here: "東京都に住んでいます。x" repeated to 900,000 characters, 2.55 MB of
# UTF-8, crashed both the tokenizer and fugashi; 840,000 did not); such a text is refused first.
MAX_TEXT_CHARS = 500_000


def is_japanese_tokenizer(tokenizer) -> bool:
    """True for a ``transformers.BertJapaneseTokenizer`` (never imports transformers itself)."""
    module = sys.modules.get(_JA_MODULE)
    return module is not None and isinstance(tokenizer, module.BertJapaneseTokenizer)


def align(tokenizer, text: str, *, method: str = "auto") -> Aligned:
    """Tokenise ``text`` without special tokens and return ids, original offsets and word ids.

    ``method`` is ``"auto"`` (the fast path when it is verified for this tokenizer, else the slow
    alignment), ``"fast"`` (error if the fast path is not available) or ``"slow"``. A fast (Rust)
    tokenizer answers from its native offsets and word ids whatever ``method`` says.
    """
    return align_batch(tokenizer, [text], method=method)[0]


def align_batch(tokenizer, texts: list[str], *, method: str = "auto") -> list[Aligned]:
    """``align`` for many texts; the fast path parses each text once and batches the WordPiece."""
    segmenter = getattr(tokenizer, "_bertkit_segmenter", None)
    if segmenter is not None:  # japanese.pre_segment
        return align_segmented(tokenizer, list(texts), segmenter, lambda tok, t: _align_native(tok, t, mecab_words=False))
    if getattr(tokenizer, "is_fast", False):
        return _align_native(tokenizer, texts)
    _check_lengths(texts)
    fast = _japanese_fast_path(tokenizer, method)
    if fast is None:
        return [_slow_align(tokenizer, text) for text in texts]
    results = fast.align_batch(texts)
    return [r if r is not None else _slow_align(tokenizer, t) for r, t in zip(results, texts)]


def token_ids_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """The ids of ``align_batch`` alone (no offsets or word ids built): what classification needs.

    Equal to ``tokenizer(text, add_special_tokens=False)["input_ids"]`` for every text (of the text
    segmented with spaces first, under ``japanese.pre_segment``).
    """
    segmenter = getattr(tokenizer, "_bertkit_segmenter", None)
    if segmenter is not None:
        texts = [segmenter.segment(t)[0] for t in texts]
    if segmenter is not None or getattr(tokenizer, "is_fast", False):
        return tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    _check_lengths(texts)
    fast = _japanese_fast_path(tokenizer, "auto")
    if fast is None:
        return [_slow_align(tokenizer, text).input_ids for text in texts]
    results = fast.align_batch(texts, ids_only=True)
    return [r if r is not None else _slow_align(tokenizer, t).input_ids for r, t in zip(results, texts)]


def _check_lengths(texts: list[str]) -> None:
    """Refuse a text too long for MeCab in one piece (``MAX_TEXT_CHARS``), before it crashes."""
    if max(map(len, texts), default=0) > MAX_TEXT_CHARS:
        text = next(t for t in texts if len(t) > MAX_TEXT_CHARS)
        raise BertkitError(
            f"a text of {len(text):,} characters (starting {text[:20]!r}) is longer than MeCab can parse in one "
            f"piece ({MAX_TEXT_CHARS:,} characters; longer input can crash it)",
            hint="split long documents into paragraphs or lines, one per row (or per line of a corpus file)",
        )


def _japanese_fast_path(tokenizer, method: str) -> _FastPath | None:
    """The fast path for this BertJapaneseTokenizer (None: use the slow alignment), after the checks."""
    if not is_japanese_tokenizer(tokenizer):
        raise BertkitError(
            f"{type(tokenizer).__name__} is a slow tokenizer: token offsets are not available for it.",
            hint="load the model's fast tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True)) "
            "or use a BertJapaneseTokenizer",
        )
    _check_supported(tokenizer)
    if method not in ("auto", "fast", "slow"):
        raise BertkitError(f"unknown alignment method {method!r}", hint="use auto, fast or slow")
    fast = None if method == "slow" else _fast_path_for(tokenizer)
    if fast is None and method == "fast":
        raise BertkitError(
            "the fast path is not available for this tokenizer configuration",
            hint="it needs word_tokenizer_type=mecab and subword_tokenizer_type=wordpiece; use method='auto'",
        )
    return fast


def word_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Original-text spans of the words of ``text``; ``align(...).word_ids`` index this list.

    A word is a MeCab (or basic-tokenizer) word that produced at least one token; a word the
    WordPiece splits on inner whitespace counts as one word per piece. Whitespace is never inside a
    span.
    """
    aligned = align(tokenizer, text)
    spans: dict[int, tuple[int, int]] = {}
    for word, (start, end) in zip(aligned.word_ids, aligned.offsets):
        old = spans.get(word)
        spans[word] = (start, end) if old is None else (min(old[0], start), max(old[1], end))
    return [spans[w] for w in sorted(spans)]


def _align_native(tokenizer, texts: list[str], mecab_words: bool = True) -> list[Aligned]:
    """A fast tokenizer's own ids and offsets (trimmed of edge whitespace); word ids are its
    pre-tokenizer's words, or, for a text with Japanese characters (``mecab_words``), MeCab's."""
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    lone = _lone_space_ids(tokenizer)
    out = []
    for i, ids in enumerate(enc["input_ids"]):
        # Renumber 0, 1, 2, ... in order, and give an added token found in the text (word id
        # None) a word of its own, as the Japanese alignment does.
        dense: dict[object, int] = {}
        words = [dense.setdefault(k if w is None else w, len(dense)) for k, w in enumerate(enc.word_ids(i))]
        offsets = [trim(texts[i], s, e) for s, e in enc["offset_mapping"][i]]
        offsets = [(s, s) if t in lone else (s, e) for t, (s, e) in zip(ids, offsets)]
        if mecab_words and JAPANESE_CHARS.search(texts[i]):
            # The tokenizer's words are whitespace-separated: in Japanese, whole sentences. Use MeCab's.
            words = mecab_word_ids(texts[i], offsets, _mecab_segmenter())
        out.append(Aligned(list(ids), offsets, words))
    return out


def _lone_space_ids(tokenizer) -> set[int]:
    """Ids of the tokens that are only a word-start mark (``▁``, ``Ġ``). Some SentencePiece
    tokenizers give a lone ``▁`` the offsets of the character after it, overlapping the next token;
    it covers no character of its own, so it gets an empty span where its word starts."""
    cached = getattr(tokenizer, "_bertkit_lone_ids", None)
    if cached is None:
        ids = [tokenizer.convert_tokens_to_ids(mark) for mark in ("\u2581", "\u0120")]
        cached = {i for i in ids if i is not None and i != tokenizer.unk_token_id}
        tokenizer._bertkit_lone_ids = cached
    return cached


_MECAB: list[Segmenter] = []


def _mecab_segmenter() -> Segmenter:
    if not _MECAB:
        _MECAB.append(Segmenter("mecab"))
    return _MECAB[0]



def _check_supported(tok) -> None:
    word_ok = not tok.do_word_tokenize or tok.word_tokenizer_type in ("mecab", "jumanpp", "basic")
    sub_ok = not tok.do_subword_tokenize or tok.subword_tokenizer_type in ("wordpiece", "character", "sentencepiece")
    if not (word_ok and sub_ok):
        raise BertkitError(
            f"offsets are not implemented for word_tokenizer_type={tok.word_tokenizer_type!r}, "
            f"subword_tokenizer_type={tok.subword_tokenizer_type!r}",
            hint="supported: mecab, jumanpp or basic words with wordpiece, sentencepiece or character subwords",
        )
