"""Words of raw Japanese text for tokenizers that do not find Japanese words themselves.

Two uses, one ``Segmenter`` (Juman++ through ``rhoknp``, or MeCab through ``fugashi`` with unidic-lite):

- ``japanese.pre_segment``: models pretrained on text segmented into words with spaces (ku-nlp
  DeBERTa-v2 and nlp-waseda RoBERTa: Juman++) read the text as ``segment`` returns it, and every
  offset is mapped back to the raw text (``align_segmented``), so spans slice the user's input.
- word ids for SentencePiece or BPE tokenizers on Japanese text (``mecab_word_ids``): their own
  "words" are whitespace-separated, which in Japanese is a whole sentence; NER labels words and
  whole-word masking masks words, so those words are MeCab's.

What this does not do: tokenise (the tokenizer does, on the segmented text) or normalise (a word is
the raw text's characters, and the tokenizer normalises as it always does).
"""

from __future__ import annotations

import re
from typing import Any

from bertkit.japanese.spans import Aligned

JUMANPP_HINT = ("install Juman++ (https://github.com/ku-nlp/jumanpp: build it from the release tarball) and put "
                "the jumanpp executable on PATH; rhoknp, which runs it, comes with pip install 'bertkit[japanese]'")
JAPANESE_CHARS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


class Segmenter:
    """Word spans of raw text (whitespace never inside a word); picklable (the process is not pickled)."""

    def __init__(self, kind: str):
        if kind not in ("jumanpp", "mecab"):
            raise ValueError(f"unknown segmenter {kind!r}")
        self.kind = kind
        self._engine: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"kind": self.kind, "_engine": None}

    def _start(self) -> Any:
        if self._engine is None:
            if self.kind == "jumanpp":
                from bertkit.errors import BertkitError

                try:
                    import rhoknp
                except ImportError as exc:
                    raise BertkitError("japanese.pre_segment=jumanpp needs rhoknp, which is not installed",
                                       JUMANPP_HINT) from exc
                import logging

                log = logging.getLogger("rhoknp")
                level = log.level
                log.setLevel(logging.ERROR)  # "failed to start Juman++": said below in one line
                try:
                    engine = rhoknp.Jumanpp(skip_sanity_check=True)
                finally:
                    log.setLevel(level)
                if not engine.is_available():
                    raise BertkitError("japanese.pre_segment=jumanpp needs Juman++, and the jumanpp executable "
                                       "is not installed (not on PATH)", JUMANPP_HINT)
                self._engine = engine
            else:
                import fugashi
                import unidic_lite

                self._engine = fugashi.GenericTagger(f'-d "{unidic_lite.DICDIR}" -r /dev/null')
        return self._engine

    def words(self, text: str) -> list[tuple[int, int]]:
        """``[start, end)`` of every word of ``text``, in order."""
        engine, spans = self._start(), []
        line_start = 0
        for line in text.split("\n"):
            if line.strip():
                surfaces = ([m.text for m in engine.apply_to_sentence(line).morphemes] if self.kind == "jumanpp"
                            else [node.surface for node in engine(line)])
                pos = 0
                for surface in surfaces:
                    if not surface.strip():
                        continue
                    at = line.find(surface, pos)
                    if at < 0:  # not spelled as in the text: leave the rest as one word
                        rest = line[pos:].strip()
                        if rest:
                            at = line.index(rest, pos)
                            spans.append((line_start + at, line_start + at + len(rest)))
                        break
                    spans.append((line_start + at, line_start + at + len(surface)))
                    pos = at + len(surface)
            line_start += len(line) + 1
        return spans

    def segment(self, text: str) -> tuple[str, list[int], list[int]]:
        """(words joined by spaces, per character of it the raw position it came from (an added
        space: the next word's start; one more entry for the end), per character its word index)."""
        parts, origin, word_of = [], [], []
        for k, (start, end) in enumerate(self.words(text)):
            if parts:
                parts.append(" ")
                origin.append(start)
                word_of.append(k)
            parts.append(text[start:end])
            origin.extend(range(start, end))
            word_of.extend([k] * (end - start))
        origin.append(len(text))
        return "".join(parts), origin, word_of


def align_segmented(tokenizer: Any, texts: list[str], segmenter: Segmenter, native: Any) -> list[Aligned]:
    """``align_batch`` for a tokenizer that reads segmented text: ids of the segmented text,
    offsets into the raw text, the segmenter's words as word ids. ``native`` aligns the segmented
    texts (``api._align_native``)."""
    segmented = [segmenter.segment(t) for t in texts]
    out = []
    for (_, origin, word_of), a in zip(segmented, native(tokenizer, [s for s, _, _ in segmented])):
        offsets, words = [], []
        for s, e in a.offsets:
            if e > s:
                offsets.append((origin[s], origin[e - 1] + 1))
                words.append(word_of[s])
            else:  # a lone ▁: empty, before the next word
                offsets.append((origin[s], origin[s]))
                words.append(word_of[s] if s < len(word_of) else (word_of[-1] if word_of else 0))
        out.append(Aligned(list(a.input_ids), offsets, _dense(words)))
    return out


def mecab_word_ids(text: str, offsets: list[tuple[int, int]], segmenter: Segmenter) -> list[int]:
    """Word ids of a Japanese text's tokens from MeCab words: each token belongs to the word its first
    character is in (a lone ``▁``, empty, to the word after it)."""
    spans = segmenter.words(text)
    starts = [s for s, _ in spans]
    import bisect

    words = []
    for s, e in offsets:
        k = bisect.bisect_right(starts, s) - 1
        if e == s and (k < 0 or s >= spans[k][1]):
            k += 1  # empty, between words: the next one
        words.append(min(max(k, 0), max(len(spans) - 1, 0)))
    return _dense(words)


def _dense(words: list[int]) -> list[int]:
    dense: dict[int, int] = {}
    return [dense.setdefault(w, len(dense)) for w in words]
