"""Word splitters: the words a BertJapaneseTokenizer cuts a text into, before any subword.

- ``_mecab_words``, ``_jumanpp_words`` and ``_basic_words`` mirror ``MecabTokenizer.tokenize``,
  ``JumanppTokenizer.tokenize`` and ``BasicTokenizer.tokenize``
  on a tracked string (``spans._Tracked``), so every word keeps its original span; MeCab words come
  from the tokenizer's own tagger, so they are the tokenizer's own. The slow alignment uses them.
- ``_mecab_option`` is the MeCab option string ``MecabTokenizer`` builds (which dictionary, which
  mecabrc): the fast path and its helper processes build their wakati taggers with it.
- ``place_words`` finds the words of MeCab's wakati output in the normalised text they came from.

MeCab (ipadic, unidic_lite, unidic, or a dictionary named in ``mecab_option`` such as jumandic),
Juman++ (``_jumanpp_words``, through the tokenizer's own ``rhoknp`` process) and the basic splitter; no
sudachi (the entry points refuse it). No subwords here (``slow`` and ``pieces`` do them), and no MeCab parsing for
the fast path (``fast`` and ``mecab_pool`` parse).
"""

from __future__ import annotations

import importlib
import os

from bertkit.japanese.spans import _nfc, _nfkc, _Tracked


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


def _jumanpp_words(wt, piece: _Tracked, specials: set[str]) -> list[_Tracked]:
    """``JumanppTokenizer.tokenize``: NFKC, strip, Juman++ (through ``rhoknp``), lower-casing, trimming.

    Juman++ reads a line and answers it; a text with newlines goes to it one line at a time (in one
    call, the second line's answer would be read as the next text's).
    """
    text = piece.map(_nfkc) if wt.normalize_text else piece
    text = text.lstrip().rstrip()
    never_split = set(wt.never_split) | specials
    words, start = [], 0
    for end in [*(i for i, c in enumerate(text.text) if c == "\n"), len(text.text)]:
        line, pos = text[start:end], 0
        start = end + 1
        if not line.text.strip():
            continue
        for morpheme in wt.juman.apply_to_sentence(line.text).morphemes:
            surface = morpheme.text
            if not line.text.startswith(surface, pos):
                pos = line.text.index(surface, pos)
            word = line[pos : pos + len(surface)]
            pos += len(surface)
            if wt.do_lower_case and surface not in never_split:
                word = word.map(str.lower)
            if wt.trim_whitespace:
                if not surface.strip():
                    continue
                word = word.lstrip().rstrip()
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
