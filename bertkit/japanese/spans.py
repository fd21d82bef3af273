"""Where every character of normalised text came from: the ``Aligned`` result and the span bookkeeping.

``Aligned`` is what the package answers for one text: token ids, the span of the ORIGINAL text each
token came from, and its word index. Two ways to keep spans through normalisation (NFKC, NFC,
lower-casing), cut the same way so that they agree:

- ``_Tracked``, for the slow alignment: a string whose every character carries its original span;
  ``_Tracked.map(fn)`` applies a normaliser, and the characters made from a changed piece share the
  piece's span. ``_segments`` finds the smallest pieces a normaliser transforms independently.
- ``_NormMap``, for the fast path: normalised index -> original index for one NFKC-normalised piece,
  storing only the groups NFKC changed (found through ``_complex_res``'s regexes), a shift between.

Offsets are as fine as the normalisation allows: when NFKC makes several characters out of one
(``㈱`` -> ``(株)``) or one out of several (``ｶﾞ`` -> ``ガ``), every character made from the group gets
the span of the whole original group.

Pure string work on the standard library: no tokenizer, no MeCab, no tokens here.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without the whitespace at its edges; a span of whitespace only becomes the
    empty span where it ends. Byte-level BPE (``ĠParis`` without ``trim_offsets``) and SentencePiece
    (``▁Paris``) tokens can carry the space before a word in their offsets, and a lone ``Ġ`` or ``▁``
    token covers only whitespace: an entity or answer must slice its words alone."""
    s, e = start, end
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (s, e) if s < e else (end, end)


def covered(offsets: list[Any]) -> tuple[int, int] | None:
    """Characters covered by consecutive tokens, from the first to the last token that covers any: a
    lone ``Ġ`` or ``▁`` token (an empty span after ``trim``) at an edge adds no whitespace."""
    spans = [(s, e) for s, e in offsets if e > s]
    return (spans[0][0], spans[-1][1]) if spans else None


@dataclass(frozen=True, slots=True)
class Aligned:
    """Ids, original-text spans and word indices of one text's tokens (no special tokens added)."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int]


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
