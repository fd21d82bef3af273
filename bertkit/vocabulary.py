"""Domain words added to a WordPiece vocabulary, their embeddings started from their old pieces.

``mlm.add_domain_tokens: N`` (``bertkit adapt-domain``) takes the N most frequent words of the corpus
that the tokenizer cuts into ``mlm.vocabulary_min_pieces`` or more pieces (``candidates``), makes
them ordinary WordPiece vocabulary entries (``extend_tokenizer``), and gives each new row of the
model the mean of its old pieces' rows (``init_new_embeddings``). The caller saves the returned
tokenizer with the model, so every later command loads it and sees those words whole.

Why not ``tokenizer.add_tokens``: transformers' added tokens are cut out of the text before it is
split into words, wherever they occur, so an added ``protein`` also cuts ``lipoproteins`` into three
words (``lip ##o``, ``protein``, ``s``), which changes word ids and whole-word masking. A vocabulary
entry is only taken by WordPiece's longest match inside a word: ``proteins`` becomes
``protein ##s``, ``lipoproteins`` keeps its pieces.

Why the mean of the pieces: the new row then starts where the model already represents the word (the
sum of what its pieces meant) instead of at a random point (transformers' default) or the mean of all
rows (``mean_resizing``); averaging the subword embeddings is the initialisation Koto, Lau and
Baldwin found best for new domain words (IndoBERTweet, EMNLP 2021).

Not handled: tokenizers that are not WordPiece (SentencePiece / Unigram, BPE, character-level
Japanese subwords), refused with one sentence by ``require_wordpiece``; a Japanese tokenizer with
added tokens after its ``vocab.txt`` (new ids would collide with theirs), refused likewise.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

from bertkit import corpus
from bertkit.errors import BertkitError

_JA_MODULE = "transformers.models.bert_japanese.tokenization_bert_japanese"
# Files save_pretrained writes for a tokenizer; cleared from the work folder first, so that no file
# of an earlier tokenizer (a tokenizer.json beside a new vocab.txt) decides what is loaded.
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json")


# ---------------------------------------------------------------------------------------------
# What kind of tokenizer


def _japanese(tokenizer: Any) -> bool:
    module = sys.modules.get(_JA_MODULE)
    return module is not None and isinstance(tokenizer, module.BertJapaneseTokenizer)


def _kind(tokenizer: Any) -> str:
    """``"wordpiece"``, or the tokenizer's kind in words (for the refusal)."""
    if getattr(tokenizer, "is_fast", False):
        model = type(tokenizer.backend_tokenizer.model).__name__
        return {"WordPiece": "wordpiece", "BPE": "BPE", "Unigram": "SentencePiece (Unigram)",
                "WordLevel": "word-level (WordLevel)"}.get(model, model)
    if _japanese(tokenizer):
        if not tokenizer.do_subword_tokenize:
            return "a BertJapaneseTokenizer without subwords (do_subword_tokenize=false)"
        sub = tokenizer.subword_tokenizer_type
        if sub == "wordpiece":
            return "wordpiece"
        what = {"character": "character-level", "sentencepiece": "SentencePiece"}.get(sub, sub)
        return f"{what} (BertJapaneseTokenizer, subword_tokenizer_type={sub})"
    return f"{type(tokenizer).__name__} (not a WordPiece tokenizer bertkit can extend)"


def require_wordpiece(tokenizer: Any) -> None:
    """Refuse, in one sentence, a tokenizer whose vocabulary is not WordPiece."""
    kind = _kind(tokenizer)
    if kind != "wordpiece":
        name = getattr(tokenizer, "name_or_path", "") or "the model"
        raise BertkitError(f"mlm.add_domain_tokens needs a WordPiece vocabulary, and the tokenizer of {name} is {kind}",
                           "remove mlm.add_domain_tokens (adaptation then trains the existing pieces), or start "
                           "from a model with a WordPiece tokenizer (BERT, ELECTRA, Tohoku Japanese BERT)")


def _one_word(tokenizer: Any, word: str) -> str | None:
    """``word`` as the tokenizer's word splitter leaves it (lower-cased, NFKC, ...) when it stays one
    word; None when the splitter cuts it (a CJK character in a multilingual BERT, inner punctuation)."""
    if getattr(tokenizer, "is_fast", False):
        backend = tokenizer.backend_tokenizer
        text = backend.normalizer.normalize_str(word) if backend.normalizer is not None else word
        words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)] if backend.pre_tokenizer is not None else [text]
    elif tokenizer.do_word_tokenize:  # BertJapaneseTokenizer: MeCab / Juman++ / basic words
        words = tokenizer.word_tokenizer.tokenize(word, never_split=tokenizer.all_special_tokens)
    else:
        words = [word]
    return words[0] if len(words) == 1 and words[0] else None


# ---------------------------------------------------------------------------------------------
# Candidates


def candidates(texts_or_dataset: Any, tokenizer: Any, n: int, min_pieces: int, column: str = "text",
               sample: int = 20_000) -> list[dict[str, Any]]:
    """The ``n`` most frequent words of the first ``sample`` documents that ``tokenizer`` cuts into at
    least ``min_pieces`` pieces, most frequent first: ``{"word", "count", "pieces", "piece_ids"}``.

    Words are the tokenizer's own, as it splits text before its subwords (for an uncased BERT the
    lower-cased basic-tokenizer words, for a ``BertJapaneseTokenizer`` its MeCab words), counted by
    ``corpus.domain_vocabulary``. Left out: words with no letter (numbers, punctuation, symbols),
    words with an ``[UNK]`` piece, and words that would not stay one word when tokenised alone (a
    CJK character is a word of its own to a multilingual BERT, so a MeCab word of kanji is left out).
    """
    require_wordpiece(tokenizer)
    if isinstance(texts_or_dataset, (list, tuple)):
        import datasets

        texts_or_dataset = datasets.Dataset.from_dict({column: [str(t) for t in texts_or_dataset]})
    found = corpus.domain_vocabulary(texts_or_dataset, tokenizer, column, top=sys.maxsize,  # all: some are left out here
                                     min_pieces=min_pieces, sample=sample)["most_frequent"]
    out: list[dict[str, Any]] = []
    for entry in found:
        word = entry["word"]
        if not any(unicodedata.category(c).startswith("L") for c in word) or _one_word(tokenizer, word) != word:
            continue
        pieces = list(entry["tokens"])
        out.append({"word": word, "count": entry["count"], "pieces": pieces,
                    "piece_ids": tokenizer.convert_tokens_to_ids(pieces)})
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------------------------------------
# The tokenizer


def first_new_id(tokenizer: Any) -> int:
    """The id ``extend_tokenizer`` gives its first new word: one past the highest id in use. That is
    ``len(tokenizer)``, unless the vocabulary has holes (a vocab.txt with a repeated line keeps the
    last line's id for the token, so ids run past ``len``: counting would reuse a taken id)."""
    return max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)


def extend_tokenizer(tokenizer: Any, words: list[str], workdir: str | Path) -> Any:
    """A copy of ``tokenizer`` with ``words`` as WordPiece vocabulary entries, loaded from ``workdir``.

    Each word is taken as the tokenizer's word splitter leaves it (an uncased tokenizer adds
    ``protein`` for ``Protein``); words already in the vocabulary, and repeats, are skipped. The
    others get the ids ``first_new_id(tokenizer)`` (normally ``len(tokenizer)``), + 1, ... in the
    order given; existing ids do not change. The copy is saved to ``workdir`` (its tokenizer files are replaced) and loaded
    back through ``models.load_tokenizer``, so a Japanese tokenizer gets the same MeCab settings and
    fast path as any other load. Returns ``tokenizer`` itself when there is nothing to add.

    Raises ``BertkitError`` for a tokenizer that is not WordPiece and for a word the tokenizer splits
    into several words; checks that every added word comes out as exactly its one new id.
    """
    from bertkit.models import load_tokenizer

    require_wordpiece(tokenizer)
    vocab = tokenizer.get_vocab()
    kept: list[str] = []
    for word in words:
        entry = _one_word(tokenizer, word)
        if entry is None:
            raise BertkitError(f"'{word}' is not one word to the tokenizer of {tokenizer.name_or_path}, so it cannot "
                               "become one vocabulary entry", "add single words, as the tokenizer splits text")
        if entry not in vocab and entry not in kept:
            kept.append(entry)
    if not kept:
        return tokenizer
    first = first_new_id(tokenizer)
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        (out / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(out)
    if getattr(tokenizer, "is_fast", False):
        _add_to_tokenizer_json(out / "tokenizer.json", kept, first)
    else:
        _add_to_vocab_txt(tokenizer, out / "vocab.txt", kept, first)
    new = load_tokenizer(str(out))
    segmenter = getattr(tokenizer, "_bertkit_segmenter", None)
    if segmenter is not None:  # japanese.pre_segment is not saved with a tokenizer: carry it over
        new._bertkit_segmenter = segmenter
    _check_extension(tokenizer, new, vocab, kept, first)
    return new


def _add_to_tokenizer_json(path: Path, words: list[str], first: int) -> None:
    # Since transformers 5 a fast BERT tokenizer saves tokenizer.json alone (no vocab.txt): the
    # WordPiece vocabulary is its "model"."vocab" table. On loading, `tokenizers` renumbers an added
    # token the table lacks from the table's size on, which would now land on a new word's id; an
    # added token after the vocabulary therefore goes into the table too, at its own id (as BERT's
    # [CLS] and [SEP] are). A vocab.txt saved beside tokenizer.json gets the same lines.
    spec = json.loads(path.read_text(encoding="utf-8"))
    table = spec["model"]["vocab"]
    for token in spec.get("added_tokens") or []:
        table.setdefault(token["content"], token["id"])
    table.update({word: first + k for k, word in enumerate(words)})
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    txt = path.with_name("vocab.txt")
    if txt.exists():
        lines = txt.read_text(encoding="utf-8").splitlines()
        if len(lines) == first:
            txt.write_text("\n".join(lines + words) + "\n", encoding="utf-8")
        else:
            txt.unlink()  # it would disagree with tokenizer.json, which is what loads


def _add_to_vocab_txt(tokenizer: Any, path: Path, words: list[str], first: int) -> None:
    # BertJapaneseTokenizer (slow): vocab.txt is the vocabulary, line k is id k.
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != first:  # added tokens after the vocabulary: a new line would take an added token's id
        raise BertkitError(f"the tokenizer of {tokenizer.name_or_path} uses ids up to {first - 1} and its saved vocab.txt "
                           f"has {len(lines)} lines, so new lines would not get new ids (added tokens after the "
                           "vocabulary?)", "remove mlm.add_domain_tokens, or start from the tokenizer without its added tokens")
    path.write_text("\n".join(lines + words) + "\n", encoding="utf-8")


def _check_extension(old: Any, new: Any, vocab: dict[str, int], words: list[str], first: int) -> None:
    new_vocab = new.get_vocab()
    moved = [t for t, i in vocab.items() if new_vocab.get(t) != i]
    ids = new(words, add_special_tokens=False)["input_ids"]
    whole = [w for k, (w, got) in enumerate(zip(words, ids)) if got != [first + k]]
    if moved or whole or len(new) != len(old) + len(words):
        what = (f"{len(moved)} existing tokens changed ids (first: {moved[0]!r})" if moved
                else f"{len(whole)} added words do not come out as their one new token (first: {whole[0]!r})" if whole
                else f"the vocabulary has {len(new)} entries, not {len(old) + len(words)}")
        raise BertkitError(f"extending the vocabulary of {old.name_or_path} went wrong: {what}",
                           "this is a bertkit bug; remove mlm.add_domain_tokens to go on")


# ---------------------------------------------------------------------------------------------
# The model


def init_new_embeddings(model: Any, added: list[dict[str, Any]], first_new_id: int) -> None:
    """Resize ``model`` for the added words and set each one's rows to the mean of its pieces' rows.

    ``added`` holds, in id order, the entries ``extend_tokenizer`` added (``candidates`` entries:
    ``piece_ids``); entry k gets id ``first_new_id + k`` (pass ``first_new_id(old_tokenizer)``) unless
    it carries its own ``"id"``. Set: the input embeddings, the output embeddings (MLM decoder) when
    they are not tied to them, and every per-token output bias (``cls.predictions.bias`` /
    ``decoder.bias``, where the head has one), each from its own old rows. Tied weights stay tied;
    ``config.vocab_size`` follows. The matrix never shrinks (a model may have more rows than tokens).
    """
    import torch

    ids = [int(entry.get("id", first_new_id + k)) for k, entry in enumerate(added)]
    rows = model.get_input_embeddings().weight.shape[0]
    size = max([rows] + [i + 1 for i in ids])
    for entry in added:
        if not entry["piece_ids"] or max(entry["piece_ids"]) >= min(first_new_id, rows):
            raise BertkitError(f"the pieces of '{entry.get('word', '?')}' ({entry['piece_ids']}) are not old tokens "
                               f"of the model (ids below {min(first_new_id, rows)})",
                               "pass the entries candidates() gave for the tokenizer before extension")
    tied = _tied(model)
    model.resize_token_embeddings(size, mean_resizing=False)
    if tied and not _tied(model):
        model.tie_weights()
    with torch.no_grad():
        for tensor in _per_token_tensors(model, size):
            for new_id, entry in zip(ids, added):
                tensor[new_id] = tensor[list(entry["piece_ids"])].float().mean(0).to(tensor.dtype)
    model.config.vocab_size = size
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    text_config.vocab_size = size


def _tied(model: Any) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def _per_token_tensors(model: Any, size: int) -> list[Any]:
    """The input embeddings, an untied output matrix, and the output biases: once each (a tied
    parameter is one tensor under two names)."""
    found = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None:
        found.append(out.weight)
        if getattr(out, "bias", None) is not None:
            found.append(out.bias)
    # Heads that keep their bias beside the decoder as well (BERT's cls.predictions.bias)
    found += [p for name, p in model.named_parameters(remove_duplicate=False)
              if name.endswith("bias") and p.dim() == 1 and p.shape[0] == size]
    unique: dict[int, Any] = {}
    for tensor in found:
        unique.setdefault(tensor.data_ptr(), tensor)
    return list(unique.values())
