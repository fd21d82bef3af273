"""Character offsets and word ids for Japanese BERT tokenizers, plus a fast path.

``transformers.BertJapaneseTokenizer`` (the Tohoku models: MeCab words, then WordPiece or character
subwords) is a slow tokenizer: it has no ``offset_mapping`` and no ``word_ids()``, which NER label
alignment, QA answer spans and whole-word masking all need. ``align`` gives, for one text, exactly
the ids the tokenizer produces (``tokenizer(text, add_special_tokens=False)["input_ids"]``), the span
of the ORIGINAL text every token came from, and the index of the word it belongs to.

Two implementations give the same answer:

- the slow alignment mirrors the tokenizer step by step (added-token split, NFKC or NFC, MeCab or the
  basic splitter, lower-casing, accent stripping, WordPiece or character subwords) on a string whose
  every character remembers the original span it came from; it uses the tokenizer's own MeCab tagger
  and WordPiece, so the tokens are the tokenizer's own;
- the fast path (MeCab words + WordPiece only) parses once with a wakati-mode MeCab tagger built with
  the tokenizer's own dictionary and options, caches the WordPiece split of every word it has seen,
  and sends unseen words to a ``tokenizers`` WordPiece over the same vocabulary. It is checked against
  the slow alignment on tricky strings when it is first built for a tokenizer, and is only used if it
  agrees on all of them.

Offsets are as fine as the normalisation allows: when NFKC makes several characters out of one
(``㈱`` -> ``(株)``) or one out of several (``ｶﾞ`` -> ``ガ``), every token touching the result gets the
span of the whole original group. An ``[UNK]`` token spans the word (WordPiece) or character
(character subwords) it replaced.

Not handled: sentencepiece subwords and the sudachi / jumanpp word tokenizers (``BertkitError``);
other slow tokenizers (``BertkitError``: use a fast tokenizer, which has native offsets).
"""

from __future__ import annotations

import array
import bisect
import contextlib
import functools
import gc
import importlib
import logging
import os
import re
import sys
import unicodedata
import weakref
from dataclasses import dataclass
from itertools import accumulate, chain, count, islice

from bertkit.errors import BertkitError

log = logging.getLogger(__name__)

_JA_MODULE = "transformers.models.bert_japanese.tokenization_bert_japanese"
# MeCab can crash the whole process on one very long input, and BertJapaneseTokenizer hands it each
# text whole (measured here: "東京都に住んでいます。x" repeated to 900,000 characters, 2.55 MB of
# UTF-8, crashed both the tokenizer and fugashi; 840,000 did not); such a text is refused first.
MAX_TEXT_CHARS = 500_000


@dataclass(frozen=True, slots=True)
class Aligned:
    """Ids, original-text spans and word indices of one text's tokens (no special tokens added)."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int]


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

    Equal to ``tokenizer(text, add_special_tokens=False)["input_ids"]`` for every text.
    """
    if getattr(tokenizer, "is_fast", False):
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


# --- fast (Rust) tokenizers: native offsets -------------------------------------------------------


def _align_native(tokenizer, texts: list[str]) -> list[Aligned]:
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for i, ids in enumerate(enc["input_ids"]):
        # Renumber 0, 1, 2, ... in order, and give an added token found in the text (word id
        # None) a word of its own, as the Japanese alignment does.
        dense: dict[object, int] = {}
        words = [dense.setdefault(k if w is None else w, len(dense)) for k, w in enumerate(enc.word_ids(i))]
        offsets = [tuple(o) for o in enc["offset_mapping"][i]]
        out.append(Aligned(list(ids), offsets, words))
    return out


def _check_supported(tok) -> None:
    word_ok = not tok.do_word_tokenize or tok.word_tokenizer_type in ("mecab", "basic")
    sub_ok = not tok.do_subword_tokenize or tok.subword_tokenizer_type in ("wordpiece", "character")
    if not (word_ok and sub_ok):
        raise BertkitError(
            f"offsets are not implemented for word_tokenizer_type={tok.word_tokenizer_type!r}, "
            f"subword_tokenizer_type={tok.subword_tokenizer_type!r}",
            hint="supported: mecab or basic words with wordpiece or character subwords",
        )


# --- tracked strings: every character remembers its original span ----------------------------------


def _nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s)


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _segments(text: str, fn) -> list[tuple[int, int]]:
    """Cut ``text`` into the smallest pieces that ``fn`` (a normaliser) transforms independently.

    First coarse pieces: a starter with the marks after it (NFKC reorders and composes marks
    across each other, so only a cut before a starter can be safe), merged with the next piece
    when ``fn`` of the two joined differs from ``fn`` of each (``ｶ`` + ``ﾞ``, a final sigma).
    Then each changed coarse piece is cut finer, before every character, if that still adds up
    (``ｱ`` + a mark it cannot compose with). Whatever does not add up stays whole: coarse, never
    wrong.
    """
    coarse = _merge_cuts(text, [i for i in range(1, len(text)) if _is_starter(text[i])], fn)
    if "".join(fn(text[a:b]) for a, b in coarse) != fn(text):
        return [(0, len(text))] if text else []
    out = []
    for a, b in coarse:
        piece = text[a:b]
        fine = _merge_cuts(piece, range(1, len(piece)), fn) if b - a > 1 and fn(piece) != piece else []
        if len(fine) > 1 and "".join(fn(piece[x:y]) for x, y in fine) == fn(piece):
            out += [(a + x, a + y) for x, y in fine]
        else:
            out.append((a, b))
    return out


def _merge_cuts(text: str, cuts, fn) -> list[tuple[int, int]]:
    """Pieces between ``cuts``, dropping a cut where ``fn`` does not act on both sides alone."""
    if not text:
        return []
    segs, a, b = [], 0, None
    for c in list(cuts) + [len(text)]:
        if b is not None:
            left, right = text[a:b], text[b:c]
            if fn(left + right) == fn(left) + fn(right):
                segs.append((a, b))
                a = b
        b = c
    segs.append((a, len(text)))
    return segs


def _is_starter(c: str) -> bool:
    """Combining class 0, also after compatibility decomposition (``ﾞ`` becomes a mark)."""
    return not unicodedata.combining(c) and not unicodedata.combining(unicodedata.normalize("NFKD", c)[0])


_WORD_RE = re.compile(r"\S+")  # \S on str patterns is exactly "not str.isspace()", as str.split()


class _Tracked:
    """A string whose i-th character came from ``original[spans[i][0]:spans[i][1]]``."""

    __slots__ = ("text", "spans")

    def __init__(self, text: str, spans: list[tuple[int, int]]):
        self.text = text
        self.spans = spans

    @classmethod
    def of(cls, text: str, start: int = 0) -> _Tracked:
        return cls(text, [(i, i + 1) for i in range(start, start + len(text))])

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, sl: slice) -> _Tracked:
        return _Tracked(self.text[sl], self.spans[sl])

    def __add__(self, other: _Tracked) -> _Tracked:
        return _Tracked(self.text + other.text, self.spans + other.spans)

    def span(self) -> tuple[int, int]:
        return (self.spans[0][0], self.spans[-1][1])

    def lstrip(self) -> _Tracked:
        return self[len(self.text) - len(self.text.lstrip()) :]

    def rstrip(self) -> _Tracked:
        return self[: len(self.text.rstrip())]

    def split(self) -> list[_Tracked]:
        """``str.split()`` with spans."""
        return [self[m.start() : m.end()] for m in _WORD_RE.finditer(self.text)]

    def map(self, fn) -> _Tracked:
        """Apply a normaliser; characters it makes from a changed piece share the piece's span."""
        if fn(self.text) == self.text:
            return self
        text, spans = [], []
        for a, b in _segments(self.text, fn):
            piece = self.text[a:b]
            out = fn(piece)
            text.append(out)
            if out == piece:
                spans.extend(self.spans[a:b])
            else:
                spans.extend([(self.spans[a][0], self.spans[b - 1][1])] * len(out))
        return _Tracked("".join(text), spans)


# --- the slow alignment: BertJapaneseTokenizer, step by step --------------------------------------


def _slow_align(tok, text: str) -> Aligned:
    """Mirror ``tok.tokenize(text)`` on a tracked string; one group of (token, span) per word."""
    encoder = tok._added_tokens_encoder
    specials = set(tok.all_special_tokens)
    groups: list[list[tuple[str, tuple[int, int]]]] = []
    for piece in _split_added(tok, text):
        if not piece.text:
            continue
        if piece.text in encoder or piece.text in specials:
            groups.append([(piece.text, piece.span())])
        else:
            groups.extend(_tokenize_piece(tok, piece, specials))
    tokens = [t for g in groups for t, _ in g]
    ids = tok.convert_tokens_to_ids(tokens) if tokens else []
    offsets = [span for g in groups for _, span in g]
    word_ids = [w for w, g in enumerate(groups) for _ in g]
    return Aligned(list(ids), offsets, word_ids)


def _split_added(tok, text: str) -> list[_Tracked]:
    """``PreTrainedTokenizer.tokenize``'s split on added tokens, with its strip / single_word rules."""
    if tok.split_special_tokens:
        return [_Tracked.of(text)]
    pieces, pos = [], 0
    for part in tok.tokens_trie.split(text):
        pieces.append(_Tracked.of(part, pos))
        pos += len(part)
    from tokenizers import AddedToken

    encoder, decoder = tok._added_tokens_encoder, tok._added_tokens_decoder
    empty = _Tracked("", [])
    # The same loop as transformers: neighbours are read before this step changes them.
    for i in range(len(pieces)):
        token = pieces[i]
        if token.text not in encoder:
            continue
        ext = decoder.get(encoder[token.text])
        if not isinstance(ext, AddedToken):
            continue
        left = pieces[i - 1] if i > 0 else None
        right = pieces[i + 1] if i < len(pieces) - 1 else None
        if ext.rstrip and right:
            pieces[i + 1] = right.lstrip()
        if ext.lstrip and left:
            pieces[i - 1] = left.rstrip()
        if ext.single_word:
            if left and left.text[-1] != " ":
                pieces[i - 1] = pieces[i - 1] + token
                pieces[i] = empty
            elif right and right.text[0] != " ":
                pieces[i + 1] = token + pieces[i + 1]
                pieces[i] = empty
    return pieces


def _tokenize_piece(tok, piece: _Tracked, specials: set[str]):
    """``BertJapaneseTokenizer._tokenize``: words, then subwords; one group per word."""
    if not tok.do_word_tokenize:
        words = [piece]
    elif tok.word_tokenizer_type == "mecab":
        words = _mecab_words(tok.word_tokenizer, piece, specials)
    else:
        words = _basic_words(tok.word_tokenizer, piece, specials)
    if not tok.do_subword_tokenize:
        return [[(w.text, w.span())] for w in words if w.text]
    if tok.subword_tokenizer_type == "wordpiece":
        return [g for w in words for g in _wordpiece(tok.subword_tokenizer, w)]
    return [g for w in words if (g := _characters(tok.subword_tokenizer, w))]


def _mecab_words(wt, piece: _Tracked, specials: set[str]) -> list[_Tracked]:
    """``MecabTokenizer.tokenize``: NFKC, the tokenizer's own tagger, per-word lower-casing."""
    text = piece.map(_nfkc) if wt.normalize_text else piece
    never_split = set(wt.never_split) | specials
    words, pos = [], 0
    for node in wt.mecab(text.text):
        surface = node.surface
        pos += len(node.white_space)
        if not text.text.startswith(surface, pos):  # white_space missed something: search
            pos = text.text.index(surface, pos)
        word = text[pos : pos + len(surface)]
        pos += len(surface)
        if wt.do_lower_case and surface not in never_split:
            word = word.map(str.lower)
        words.append(word)
    return words


def _basic_words(wt, piece: _Tracked, specials: set[str]) -> list[_Tracked]:
    """``BasicTokenizer.tokenize``: clean, (CJK spacing), NFC, split, lower / strip accents, punct."""
    from transformers.tokenization_python import _is_control, _is_whitespace

    never_split = wt.never_split | specials
    chars, spans = [], []
    for c, span in zip(piece.text, piece.spans):
        if ord(c) in (0, 0xFFFD) or _is_control(c):
            continue
        chars.append(" " if _is_whitespace(c) else c)
        spans.append(span)
    text = _Tracked("".join(chars), spans)
    if wt.tokenize_chinese_chars:
        text = text.map(wt._tokenize_chinese_chars)
    words = []
    for word in text.map(_nfc).split():
        if word.text not in never_split:
            if wt.do_lower_case:
                word = word.map(str.lower)
                if wt.strip_accents is not False:
                    word = word.map(wt._run_strip_accents)
            elif wt.strip_accents:
                word = word.map(wt._run_strip_accents)
        for part in _split_on_punc(wt, word, never_split):
            words.extend(part.split())
    return words


def _split_on_punc(wt, word: _Tracked, never_split) -> list[_Tracked]:
    from transformers.tokenization_python import _is_punctuation

    if not wt.do_split_on_punc or word.text in never_split:
        return [word]
    parts, start = [], 0
    for i, c in enumerate(word.text):
        if _is_punctuation(c):
            if start < i:
                parts.append(word[start:i])
            parts.append(word[i : i + 1])
            start = i + 1
    if start < len(word.text):
        parts.append(word[start:])
    return parts


def _wordpiece(st, word: _Tracked) -> list[list[tuple[str, tuple[int, int]]]]:
    """The tokenizer's own WordPiece on each whitespace-split part; pieces get their char spans."""
    groups = []
    for part in word.split():
        pieces = st.tokenize(part.text)
        if pieces == [st.unk_token]:
            groups.append([(pieces[0], part.span())])
            continue
        group, pos = [], 0
        for k, p in enumerate(pieces):
            n = len(p) - 2 if k else len(p)  # continuation pieces carry "##"
            group.append((p, part[pos : pos + n].span()))
            pos += n
        if pos != len(part.text):
            raise RuntimeError(f"WordPiece pieces {pieces} do not spell {part.text!r}")
        groups.append(group)
    return groups


def _characters(st, word: _Tracked) -> list[tuple[str, tuple[int, int]]]:
    """``CharacterTokenizer.tokenize``: NFKC again, then one token per character."""
    text = word.map(_nfkc) if st.normalize_text else word
    return [(c if c in st.vocab else st.unk_token, span) for c, span in zip(text.text, text.spans)]


# --- NFKC index map for the fast path --------------------------------------------------------------


@functools.cache
def _complex_res() -> tuple[re.Pattern, re.Pattern]:
    """Regexes for runs of characters NFKC does not map one-to-one and independently.

    Every other character becomes exactly one character that cannot compose with its neighbours,
    so outside these runs (each widened by the character before it, which a mark or a second
    jamo can compose with) normalised index == original index. Two regexes because ``re`` only
    tests a class fast when it stays in the BMP: one for BMP-only text (nearly all text), one for
    text with astral characters. Built once per process (~0.5 s).
    """
    seconds = {chr(c) for c in range(0x1161, 0x1176)} | {chr(c) for c in range(0x11A8, 0x11C3)}
    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]
    for cp in code_points:
        dec = unicodedata.decomposition(chr(cp))
        if dec and not dec.startswith("<") and len(parts := dec.split()) == 2:
            seconds.add(chr(int(parts[1], 16)))  # second half of a canonical composition
    complex_cps = []
    for cp in code_points:
        c = chr(cp)
        if unicodedata.combining(c) or c in seconds:
            complex_cps.append(cp)
            continue
        d = _nfkc(c)
        if d != c and (len(d) != 1 or unicodedata.combining(d) or d in seconds):
            complex_cps.append(cp)
    bmp = [cp for cp in complex_cps if cp < 0x10000]
    return re.compile("[" + _char_class(bmp) + "]+"), re.compile("[" + _char_class(complex_cps) + "]+")


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def _complex_runs(text: str):
    """(start, end) of each run of NFKC-complex characters, widened by one character on the left."""
    bmp_re, full_re = _complex_res()
    regex = full_re if _ASTRAL.search(text) else bmp_re
    return [(max(m.start() - 1, 0), m.end()) for m in regex.finditer(text)]


def _char_class(cps: list[int]) -> str:
    ranges, start, prev = [], cps[0], cps[0]
    for cp in cps[1:] + [-1]:
        if cp != prev + 1:
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start else ""))
            start = cp
        prev = cp
    return "".join(ranges)


class _NormMap:
    """Normalised index -> original index for one NFKC-normalised piece of text.

    Only the groups that NFKC changed in length or merged are stored; between them the map is a
    shift. Groups are cut exactly as ``_Tracked.map(_nfkc)`` cuts them, so both paths agree.
    """

    __slots__ = ("starts", "groups")

    def __init__(self, groups: list[tuple[int, int, int, int]]):
        self.groups = groups  # (norm_start, norm_end, orig_start, orig_end)
        self.starts = [g[0] for g in groups]

    @classmethod
    def build(cls, text: str, norm: str) -> _NormMap | None:
        """None when normalised index == original index everywhere."""
        groups, delta = [], 0
        for base, end in _complex_runs(text):
            for a, b in _segments(text[base:end], _nfkc):
                piece = text[base + a : base + b]
                out = _nfkc(piece)
                if out != piece and not (len(piece) == 1 and len(out) == 1):
                    ns = base + a + delta
                    groups.append((ns, ns + len(out), base + a, base + b))
                delta += len(out) - len(piece)
        if len(text) + delta != len(norm):  # cannot happen if the tables are right; stay exact
            return cls._from_tracked(text)
        return cls(groups) if groups else None

    @classmethod
    def _from_tracked(cls, text: str) -> _NormMap:
        t = _Tracked.of(text).map(_nfkc)
        return cls([(i, i + 1, a, b) for i, (a, b) in enumerate(t.spans)])

    def start(self, x: int) -> int:
        i = bisect.bisect_right(self.starts, x) - 1
        if i < 0:
            return x
        ns, ne, os_, oe = self.groups[i]
        return os_ if x < ne else oe + (x - ne)

    def end(self, x: int) -> int:
        i = bisect.bisect_right(self.starts, x - 1) - 1
        if i < 0:
            return x
        ns, ne, os_, oe = self.groups[i]
        return oe if x - 1 < ne else oe + (x - ne)


# --- the fast path ---------------------------------------------------------------------------------

# Strings chosen to break a naive fast path: normalisation that changes length or composes,
# whitespace MeCab skips or keeps, control and zero-width characters, added tokens, case folding
# that changes length, over-long words, emoji sequences, NUL (MeCab stops reading there).
_SELF_CHECK = [
    "",
    " \t\n",
    "東京都に住んでいます。",
    "ＡＢＣ１２３ａｂｃ　全角スペース",
    "㈱東京①②③と…本当？！",
    "ｶﾞｷﾞｸﾞﾊﾟﾋﾟﾌﾟ ﾃﾞｰﾀ",
    "か\u3099き\u3099く\u3099 e\u0301 q\u0301 a\u0323\u0302",
    "café CAFÉ İstanbul ΑΣ ß ﬁ",
    "絵文字😀👍🏽👨‍👩‍👧 テスト",
    "ゼロ幅\u200bスペース\u00adと\u200d結合",
    "制御\x07文字\x1c\x85\u2028改行\r\n終わり",
    "[SEP] 前後 [MASK][UNK]x[CLS]y [PAD]",
    "［ＳＥＰ］と[sep]と[SEP",
    "長" * 120 + "い",
    "ﾞ先頭の濁点と\u3099",
    "한국어 \u1100\u1161\u11a8",
    "NUL\x00の後は読まれない",
]


class _PieceTokens:
    """The tokens of MeCab-parsed pieces of text, from a cache of the WordPiece of single words.

    Built from plain data (``spec_of``), not from the tokenizer, so that a MeCab helper process
    (``bertkit.mecab_pool``) can build the same thing and answer tokens itself: the fast path is
    one, and every helper that served it holds one made from the same spec. ``answer`` turns the
    MeCab parse of pieces into their ids, or ids + offsets + word ids, each relative to its piece.
    """

    _CACHE_LIMIT = 500_000  # words; cleared when full (Zipf: it refills with the frequent ones)
    # The answers a MeCab helper builds itself rather than sending its parse back. Ids are small
    # to send; offsets and word ids cost more to send and unpack (pickle, 4 ints a token) than
    # to build here: 0.94-1.12 s for all the bench's lines built apart, 0.77-0.80 s built here.
    BUILT_APART = frozenset({"ids"})

    def __init__(self, spec: dict):
        from tokenizers import Tokenizer
        from tokenizers.models import WordPiece

        self.spec = spec
        self.vocab = spec["vocab"]
        self.unk = spec["unk"]
        self.max_chars = spec["max_chars"]
        self.lower = spec["lower"]
        self.never_split = spec["never_split"]
        self.id_fix = spec["id_fix"]
        self.wordpiece = Tokenizer(  # used through .model.tokenize: one word in, pieces out
            WordPiece(vocab=self.vocab, unk_token=self.unk, continuing_subword_prefix="##",
                      max_input_chars_per_word=self.max_chars)
        )
        # The cache, one table per shape the assembly needs (word -> ...):
        self.ids_of: dict[str, tuple[int, ...]] = {}  # token ids
        self.lens_of: dict[str, tuple[int, ...] | None] = {}  # token lengths (None: irregular)
        self.offsets_of: dict[str, tuple[tuple[int, int], ...]] = {}  # spans within the word
        self.single: dict[str, int] = {}  # the id of a word that is exactly one token
        self.irregular: set[str] = set()  # words whose tokens do not tile them
        # firsts[k]: 1 then k - 1 zeros, summed up into word ids (a word has <= max_chars tokens)
        self.firsts = [(1,) + (0,) * (k - 1) if k else () for k in range(self.max_chars + 2)]

    @staticmethod
    def spec_of(tok) -> dict:
        """What a ``_PieceTokens`` needs from a BertJapaneseTokenizer, as picklable data."""
        wt, st = tok.word_tokenizer, tok.subword_tokenizer
        return {
            "vocab": dict(tok.vocab),
            "unk": str(st.unk_token),
            "max_chars": st.max_input_chars_per_word,
            "lower": wt.do_lower_case,
            "never_split": set(wt.never_split) | set(tok.all_special_tokens),
            # convert_tokens_to_ids looks at added tokens first; WordPiece only knows the vocab.
            "id_fix": {tok.vocab[t]: i for t, i in tok._added_tokens_encoder.items() if t in tok.vocab and tok.vocab[t] != i},
        }

    def answer(self, what: str, pieces: list[str], parsed: list[tuple[str | None, str]]) -> list:
        """For every piece, from ``(its NFKC or None if unchanged, MeCab wakati output)``: its token
        ids (``what="ids"``) or ``(ids, offsets, word ids)`` relative to the piece (``"aligned"``),
        None where the words cannot be placed in the text (the slow alignment takes it)."""
        if what == "ids":
            return self._pieces_ids([out for _, out in parsed])
        parts = []
        for piece, (norm, out) in zip(pieces, parsed):
            placed = place_words(piece if norm is None else norm, out)
            parts.append(None if placed is None else (*placed, None if norm is None else _NormMap.build(piece, norm)))
        self.fill(set(chain.from_iterable(p[0] for p in parts if p)).difference(self.ids_of))
        return [None if p is None else self._assemble(*p) for p in parts]

    @staticmethod
    def pack(answer: list) -> tuple:
        """An answer built apart (``BUILT_APART``: ids, a list per piece) as a size per piece and
        one flat int array, which pickle sends and ``unpack`` rebuilds several times faster."""
        return array.array("i", map(len, answer)), array.array("i", chain.from_iterable(answer))

    @staticmethod
    def unpack(packed: tuple) -> list:
        """The answer that ``pack`` flattened."""
        sizes, flat = packed
        ids = flat.tolist()
        starts = list(accumulate(sizes, initial=0))
        return [ids[a:b] for a, b in zip(starts, islice(starts, 1, None))]

    def _pieces_ids(self, parses: list[str]) -> list[list[int]]:
        """The token ids of every piece, with one lookup pass over all the words (most words
        are one token each)."""
        words = [p.split() for p in parses]  # fugashi strips the output; whitespace inside a word splits anyway
        every = list(chain.from_iterable(words))
        self.fill(set(every).difference(self.ids_of))
        found = list(map(self.single.get, every))
        out, pos = [], 0
        for w in words:
            ids = found[pos : pos + len(w)]
            pos += len(w)
            out.append(ids if None not in ids else list(chain.from_iterable(map(self.ids_of.__getitem__, w))))
        return out

    def _assemble(self, words: list[str], lead: int, starts, nmap) -> tuple[list, list, list]:
        """Ids, offsets and word ids of one piece's placed words: the hot loop of the module,
        kept to C-level loops over the cache."""
        single = list(map(self.single.get, words))
        if None not in single:  # one token per word, the usual case with a real vocabulary
            ids, word_ids, lens = single, list(range(len(words))), map(len, words)
        else:
            per_word = list(map(self.ids_of.__getitem__, words))
            ids = list(chain.from_iterable(per_word))
            firsts = chain.from_iterable(map(self.firsts.__getitem__, map(len, per_word)))
            word_ids = list(islice(accumulate(firsts, initial=-1), 1, None))
            lens = chain.from_iterable(map(self.lens_of.__getitem__, words))
        if starts is None and nmap is None and self.irregular.isdisjoint(words):
            # Tokens tile the piece: each starts where the previous one ended.
            edges = list(accumulate(lens, initial=lead))
            return ids, list(zip(edges, islice(edges, 1, None))), word_ids
        starts = starts or list(accumulate(map(len, words), initial=lead))
        spans = [(s + a, s + b) for s, offs in zip(starts, map(self._relative, words)) for a, b in offs]
        if nmap is not None:
            spans = [(nmap.start(a), nmap.end(b)) for a, b in spans]
        return ids, spans, word_ids

    def fill(self, missing: set[str]) -> None:
        """WordPiece the words not seen before (a vocabulary word is one token, no search)."""
        if len(self.ids_of) + len(missing) > self._CACHE_LIMIT:
            for table in (self.ids_of, self.lens_of, self.offsets_of, self.single):
                table.clear()
            self.irregular.clear()
        single, ids_of, lens_of, fix = self.single, self.ids_of, self.lens_of, self.id_fix
        vocab_get, tokenize = self.vocab.get, self.wordpiece.model.tokenize
        for w in missing:
            low, back = self._lower(w) if self.lower else (w, None)
            i = vocab_get(low) if len(low) <= self.max_chars else None
            if i is not None:  # greedy longest-match takes a whole vocabulary word at once
                i = fix.get(i, i)
                single[w], ids_of[w], lens_of[w] = i, (i,), (len(w),)
            else:
                self._store(w, low, back, [(t.id, t.value) for t in tokenize(low)])

    def _store(self, word: str, low: str, back, pieces: list[tuple[int, str]]) -> None:
        """Cache a word's WordPiece pieces in the shapes ``_assemble`` reads with C-level loops."""
        fix = self.id_fix
        ids = tuple(fix.get(i, i) for i, _ in pieces) if fix else tuple(i for i, _ in pieces)
        self.ids_of[word] = ids
        if len(pieces) == 1 and pieces[0][1] == self.unk:
            sizes = [len(low)]  # the whole word is unknown
        else:
            sizes = [len(v) - 2 if k else len(v) for k, (_, v) in enumerate(pieces)]  # "##" prefix
            if sum(sizes) != len(low):
                raise RuntimeError(f"WordPiece pieces {pieces} do not spell {low!r}")
        if back is None:  # the usual case: the tokens tile the word
            lens = tuple(sizes)
        else:  # lower-casing changed the length: map the spans back to the word's characters
            edges = list(accumulate(sizes, initial=0))
            offsets = tuple((back[a][0], back[b - 1][1]) for a, b in zip(edges, edges[1:]))
            tiles = offsets[0][0] == 0 and offsets[-1][1] == len(word)
            tiles = tiles and all(x[1] == y[0] for x, y in zip(offsets, offsets[1:]))
            lens = tuple(b - a for a, b in offsets) if tiles else None
        self.lens_of[word] = lens
        if lens is None:  # overlapping tokens (two of them from one upper-case letter)
            self.offsets_of[word] = offsets
            self.irregular.add(word)
        elif len(ids) == 1:
            self.single[word] = ids[0]

    def _relative(self, word: str) -> tuple[tuple[int, int], ...]:
        """Token spans within a word (built from the lengths unless stored)."""
        offsets = self.offsets_of.get(word)
        if offsets is None:
            edges = list(accumulate(self.lens_of[word], initial=0))
            offsets = self.offsets_of[word] = tuple(zip(edges, edges[1:]))
        return offsets

    def _lower(self, word: str):
        """(word as the tokenizer lower-cases it, map to the word's chars if lengths differ)."""
        if not self.lower or word in self.never_split:
            return word, None
        low = word.lower()
        if len(low) == len(word):
            return low, None
        return low, _Tracked.of(word).map(str.lower).spans


def place_words(norm: str, parsed: str) -> tuple[list[str], int, list[int] | None] | None:
    """MeCab's words (wakati output ``parsed``) placed in the normalised piece ``norm``.

    ``(words, lead, None)`` when the words spell ``norm`` without gaps after ``lead`` whitespace
    (their tokens then tile it), ``(words, 0, starts)`` with each word's start otherwise, None when
    a word cannot be found in order (the slow alignment takes the text).
    """
    words = parsed.split()  # fugashi strips the output; whitespace inside a word splits anyway
    joined = "".join(words)
    if joined == norm:
        return (words, 0, None)
    stripped = norm.lstrip()
    if joined == stripped.rstrip():
        return (words, len(norm) - len(stripped), None)
    starts, pos = [], 0
    for w in words:
        at = norm.find(w, pos)
        if at < 0 or (at > pos and not norm[pos:at].isspace()):
            return None
        starts.append(at)
        pos = at + len(w)
    return (words, 0, starts)


_SERIAL = count()  # names a fast path's word-cache spec for the helpers; never reused


class _FastPath(_PieceTokens):
    """MeCab (wakati) + cached WordPiece for one mecab/wordpiece BertJapaneseTokenizer.

    One per tokenizer object (see ``_fast_path_for``). Not meant for concurrent use from several
    threads: the word cache is filled and read without locks.
    """

    _CHUNK = 1024  # texts per MeCab-then-WordPiece round (256 measured 20-40 % slower with helpers)

    def __init__(self, tok):
        import fugashi

        super().__init__(self.spec_of(tok))
        self.key = next(_SERIAL)
        self.tok = weakref.proxy(tok)  # the cache holds us; do not keep the tokenizer alive
        self.option = _mecab_option(tok.mecab_kwargs or {}) + " -Owakati"
        self.tagger = fugashi.GenericTagger(self.option)
        self.normalize = tok.word_tokenizer.normalize_text
        self.added_re, self.added_simple = _added_token_regex(tok)

    @classmethod
    def create(cls, tok) -> _FastPath | None:
        """A verified fast path, or None when the config needs the slow alignment."""
        if not (
            tok.do_word_tokenize
            and tok.do_subword_tokenize
            and tok.word_tokenizer_type == "mecab"
            and tok.subword_tokenizer_type == "wordpiece"
        ):
            return None
        try:
            fast = cls(tok)
            for text in _SELF_CHECK:
                got, want = fast.align_batch([text])[0], _slow_align(tok, text)
                ids = tok(text, add_special_tokens=False)["input_ids"]
                if got is not None and (got != want or got.input_ids != ids):
                    log.warning("bertkit: fast Japanese path disagrees on %r; using slow", text)
                    return None
        except Exception as err:  # any surprise in a third-party config: stay exact, stay slow
            log.warning("bertkit: fast Japanese path unavailable (%s); using slow", err)
            return None
        return fast

    def align_batch(self, texts: list[str], *, ids_only: bool = False) -> list:
        """Aligned (or, with ``ids_only``, just the ids) per text; None where only the slow
        alignment can be exact.

        Texts are cut at added tokens into pieces, the pieces parsed by MeCab chunk by chunk, and
        each chunk's tokens built as soon as its parse is back (``answer``). For a big batch both
        happen in helper processes (``bertkit.mecab_pool``), and this process only joins pieces.
        """
        from bertkit import mecab_pool

        out: list = []
        join = self._join_ids if ids_only else self._join_aligned
        with _gc_paused():
            layouts = [self._layout(t) for t in texts]
            bounds = range(0, len(texts), self._CHUNK)
            chunks = [
                [item[0] for lay in layouts[i : i + self._CHUNK] if lay for item in lay if item[0] is not None]
                for i in bounds
            ]
            answers = mecab_pool.parse_chunks(self.tagger, self.option, self.normalize, chunks, self, "ids" if ids_only else "aligned")
            for i, answer in zip(bounds, answers):
                pieces = iter(answer)
                out += [join(lay, pieces) for lay in layouts[i : i + self._CHUNK]]
        return out

    @staticmethod
    def _join_ids(layout, pieces) -> list[int] | None:
        """A text's ids from its layout and the ids of its pieces (the next ones in ``pieces``)."""
        if layout is None:
            return None
        if len(layout) == 1 and layout[0][0] is not None:  # no added token: the usual case
            return next(pieces)
        ids: list[int] = []
        for item in layout:
            ids += next(pieces) if item[0] is not None else (item[1],)
        return ids

    @staticmethod
    def _join_aligned(layout, pieces) -> Aligned | None:
        """A text's Aligned from its layout and its pieces' ``(ids, offsets, word ids)`` (the next
        ones in ``pieces``, each relative to its piece); None if any piece needs the slow path."""
        if layout is None:
            return None
        if len(layout) == 1 and layout[0][0] is not None:  # no added token: the usual case
            got = next(pieces)
            return None if got is None else Aligned(*got)
        got = [next(pieces) if item[0] is not None else None for item in layout]  # all of them, to stay in step
        ids, offsets, word_ids = [], [], []
        for item, part in zip(layout, got):
            first_word = word_ids[-1] + 1 if word_ids else 0
            if item[0] is None:  # an added token found in the text: a word of its own
                ids.append(item[1])
                offsets.append(item[2])
                word_ids.append(first_word)
            elif part is None:
                return None
            else:
                base = item[1]
                ids += part[0]
                offsets += [(a + base, b + base) for a, b in part[1]]
                word_ids += [w + first_word for w in part[2]]
        return Aligned(ids, offsets, word_ids)

    def _layout(self, text: str):
        """The text cut at added tokens: ``(piece, start)`` for MeCab, ``(None, id, span)`` for an
        added token; None when the text needs the slow path."""
        if "\x00" in text:  # MeCab segments differently around NUL in node and string mode
            return None
        if self.added_re is None or not self.added_re.search(text):
            return [(text, 0)]
        if not self.added_simple:
            return None
        layout, pos = [], 0
        for m in self.added_re.finditer(text):
            if pos < m.start():
                layout.append((text[pos : m.start()], pos))
            layout.append((None, self.tok.convert_tokens_to_ids(m.group()), m.span()))
            pos = m.end()
        if pos < len(text):
            layout.append((text[pos:], pos))
        return layout


def _added_token_regex(tok):
    """(regex over the added tokens, whether a regex split equals the trie split) or (None, True)."""
    if tok.split_special_tokens:
        return None, True
    tokens = sorted(tok.tokens_trie._tokens, key=len, reverse=True)
    if not tokens:
        return None, True
    regex = re.compile("|".join(map(re.escape, tokens)))
    # The trie's greedy longest-match equals a regex scan when no token can overlap another, and
    # the strip / single_word rules need the slow path.
    overlap = any(
        a != b and (a in b or any(b.startswith(a[i:]) for i in range(1, len(a))))
        for a in tokens
        for b in tokens
    )
    flags = any(
        getattr(t, "lstrip", False) or getattr(t, "rstrip", False) or getattr(t, "single_word", False)
        for t in tok._added_tokens_decoder.values()
    )
    return regex, not (overlap or flags)


def _mecab_option(kwargs: dict) -> str:
    """The option string ``MecabTokenizer`` builds from its kwargs (same dictionary, same rc)."""
    dic = kwargs.get("mecab_dic", "unidic_lite")
    option = kwargs.get("mecab_option") or ""
    if dic is None:
        return option
    if dic not in ("ipadic", "unidic_lite", "unidic"):
        raise ValueError(f"unknown mecab_dic {dic!r}")
    dic_dir = importlib.import_module(dic).DICDIR
    return f'-d "{dic_dir}" -r "{os.path.join(dic_dir, "mecabrc")}" ' + option


@contextlib.contextmanager
def _gc_paused():
    """Keep the cyclic garbage collector off while building results, then restore it.

    Every token makes a tuple and every text three lists, none of them in a cycle, so collecting
    during the batch frees nothing; left on, the collector's full passes over the heap (a few
    hundred thousand objects once transformers is imported) took a fifth to a third of the fast
    path's time. Its one pass over the new objects happens after the batch instead.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_FAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fast_path_for(tok) -> _FastPath | None:
    """The cached fast path of this tokenizer object, rebuilt if its config changed since."""
    key = (
        tok.lower_case,
        tok.split_special_tokens,
        tuple(tok._added_tokens_encoder.items()),
        id(tok.word_tokenizer) if tok.do_word_tokenize else None,
        id(tok.subword_tokenizer) if tok.do_subword_tokenize else None,
    )
    hit = _FAST.get(tok)
    if hit is None or hit[0] != key:
        hit = (key, _FastPath.create(tok))
        _FAST[tok] = hit
    return hit[1]
