"""Subword pieces for the fast path: token ids and spans of MeCab-parsed text from a word cache.

``_PieceTokens`` turns MeCab's wakati parse of pieces of text into their token ids, or ids + offsets
+ word ids, relative to each piece. It caches the WordPiece split of every word it has seen (a
vocabulary word is one token, found without a search; an unseen one goes to a ``tokenizers``
WordPiece over the same vocabulary) in the shapes the assembly reads with C-level loops.

It is built from plain, picklable data (``_PieceTokens.spec_of(tokenizer)``), not from the tokenizer,
so that a MeCab helper process (``mecab_pool``) builds the same object and answers tokens itself;
``pack`` / ``unpack`` carry an answer of ids between processes.

Not here: MeCab itself (the caller parses, here or in a helper), the added-token split and the
choice of fast or slow (``fast``), character subwords (only the slow alignment has them).
"""

from __future__ import annotations

import array
from itertools import accumulate, chain, islice

from bertkit.japanese.spans import _NormMap, _Tracked
from bertkit.japanese.words import place_words


class _PieceTokens:
    """The tokens of MeCab-parsed pieces of text, from a cache of the WordPiece of single words.

    Built from plain data (``spec_of``), not from the tokenizer, so that a MeCab helper process
    (``mecab_pool``) can build the same thing and answer tokens itself: the fast path is
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
