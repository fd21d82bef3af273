"""The fast path: MeCab words + cached WordPiece, for mecab / wordpiece BertJapaneseTokenizers.

``_fast_path_for(tokenizer)`` gives the tokenizer's ``_FastPath`` (cached per tokenizer object,
rebuilt when its config changes), or None. A ``_FastPath`` parses each text once with a wakati-mode
MeCab tagger built with the tokenizer's own dictionary and options (``words._mecab_option``), cuts
texts at added tokens, and builds tokens from its word cache (``pieces._PieceTokens``, which it
is); big batches go through MeCab helper processes (``mecab_pool``). It is checked against the
slow alignment on tricky strings (``_SELF_CHECK``) when it is first built for a tokenizer, and is
only used if it agrees on all of them.

Not here: the other configurations (basic words, character subwords; the slow alignment does
them), texts it cannot do exactly (NUL, added tokens with strip / single_word rules: it answers
None for them and the caller takes the slow alignment), and the choice between fast, slow and a
fast tokenizer's native offsets (``api``). Not thread-safe (see ``_FastPath``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import weakref
from itertools import count

from bertkit.japanese import mecab_pool
from bertkit.japanese.pieces import _PieceTokens
from bertkit.japanese.slow import _slow_align
from bertkit.japanese.spans import Aligned
from bertkit.japanese.words import _mecab_option

log = logging.getLogger(__name__)


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
        happen in helper processes (``mecab_pool``), and this process only joins pieces.
        """
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
