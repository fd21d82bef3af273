"""The slow alignment: ``BertJapaneseTokenizer.tokenize`` mirrored step by step on a tracked string.

``_slow_align`` repeats what the tokenizer does (the added-token split with its strip / single_word
rules, NFKC or NFC, MeCab or the basic splitter, lower-casing, accent stripping, WordPiece or
character subwords) on a string whose every character remembers its original span (``spans._Tracked``).
It calls the tokenizer's own MeCab tagger and WordPiece, so the tokens are the tokenizer's own. An
``[UNK]`` token spans the word (WordPiece) or character (character subwords) it replaced.

Exact for every mecab, jumanpp or basic / wordpiece, sentencepiece or character configuration, and slow (one MeCab call and
one WordPiece call per word); the fast path checks itself against it and hands it the texts it
cannot do exactly. No configuration checks here: the entry points (``api``) refuse the rest first.
"""

from __future__ import annotations

from bertkit.japanese.spans import Aligned, _nfkc, _Tracked
from bertkit.japanese.words import _basic_words, _jumanpp_words, _mecab_words


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
    elif tok.word_tokenizer_type == "jumanpp":
        words = _jumanpp_words(tok.word_tokenizer, piece, specials)
    else:
        words = _basic_words(tok.word_tokenizer, piece, specials)
    if not tok.do_subword_tokenize:
        return [[(w.text, w.span())] for w in words if w.text]
    if tok.subword_tokenizer_type == "wordpiece":
        return [g for w in words for g in _wordpiece(tok.subword_tokenizer, w)]
    if tok.subword_tokenizer_type == "sentencepiece":
        return [g for w in words if (g := _sentencepiece(tok.subword_tokenizer, w))]
    return [g for w in words if (g := _characters(tok.subword_tokenizer, w))]


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


def _sentencepiece(st, word: _Tracked) -> list[tuple[str, tuple[int, int]]]:
    """``SentencepieceTokenizer.tokenize`` (the tokenizer's own model) on one word; each piece gets the
    characters it spells, a lone ``▁`` the empty span before the word. Where SentencePiece's own
    normalisation makes the pieces spell something else, every piece gets the whole word's span."""
    import unicodedata

    if not word.text.strip():
        return []
    pieces = st.tokenize(word.text)
    text = word.lstrip().rstrip() if st.remove_space else word
    text = text.map(lambda t: t.replace("``", '"').replace("''", '"'))
    if not st.keep_accents:
        text = text.map(lambda t: "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c)))
    if st.do_lower_case:
        text = text.map(str.lower)
    out, pos = [], 0
    for piece in pieces:
        core = piece[1:] if piece.startswith("\u2581") else piece
        if not core:
            at = text.spans[pos][0] if pos < len(text.text) else text.span()[1]
            out.append((piece, (at, at)))
            continue
        if text.text[pos : pos + len(core)].replace(" ", "\u2581") != core:
            return [(p, word.span()) for p in pieces]
        out.append((piece, text[pos : pos + len(core)].span()))
        pos += len(core)
    return out if pos == len(text.text) else [(p, word.span()) for p in pieces]


def _characters(st, word: _Tracked) -> list[tuple[str, tuple[int, int]]]:
    """``CharacterTokenizer.tokenize``: NFKC again, then one token per character."""
    text = word.map(_nfkc) if st.normalize_text else word
    return [(c if c in st.vocab else st.unk_token, span) for c, span in zip(text.text, text.spans)]
