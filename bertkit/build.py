"""Build tokenizers and randomly initialised BERT models from local text, offline.

- ``build_tokenizer``: a WordPiece vocabulary trained with ``tokenizers`` on local corpus files,
  saved so that ``AutoTokenizer.from_pretrained(dir)`` loads it: for ``ja`` a
  ``BertJapaneseTokenizer`` laid out like the Tohoku models (MeCab words, then WordPiece), for ``en``
  a fast BERT tokenizer.
- ``init_model``: a random ``BertForMaskedLM`` of a standard miniature shape plus the tokenizer.
- ``token_table`` / ``format_token_table``: what ``bertkit tokenize`` shows, token by token, with
  word ids and the original characters each token came from.

It does not download anything, does not train models, and does not pick hyper-parameters for you
beyond the stated defaults.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterator

from bertkit.errors import BertkitError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4, as in the Tohoku models

# (layers, hidden, heads, feed-forward): the BERT miniatures (Turc et al. 2019), plus "micro" for tests
MODEL_SIZES = {
    "micro": (2, 32, 2, 64),
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}

MECAB_DICTIONARIES = ("unidic_lite", "ipadic", "unidic")


# --- corpus ---------------------------------------------------------------------------------------


def read_corpus(paths: list[str]) -> Iterator[str]:
    """Yield the non-empty texts of corpus files.

    ``.txt`` (and any other extension): one text per line. ``.jsonl``: the ``text``, ``context`` and
    ``question`` fields of each row, where present. ``.json``: SQuAD (contexts and questions) or a
    list of rows as in ``.jsonl``.
    """
    for path in paths:
        if not os.path.isfile(path):
            raise BertkitError(f"corpus file not found: {path}", hint="pass existing .txt/.jsonl/.json files")
        if path.endswith(".jsonl"):
            yield from _jsonl_texts(path)
        elif path.endswith(".json"):
            yield from _json_texts(path)
        else:
            with open(path, encoding="utf-8") as f:
                yield from (line.rstrip("\n") for line in f if line.strip())


_TEXT_FIELDS = ("text", "context", "question")


def _row_texts(row, where: str) -> Iterator[str]:
    if not isinstance(row, dict):
        raise BertkitError(f"{where}: expected a JSON object", hint='rows look like {"text": "..."}')
    yield from (row[k] for k in _TEXT_FIELDS if isinstance(row.get(k), str) and row[k].strip())


def _jsonl_texts(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise BertkitError(f"{path}:{n}: not valid JSON ({err.msg})", hint="one JSON object per line")
                yield from _row_texts(row, f"{path}:{n}")


def _json_texts(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as err:
            raise BertkitError(f"{path}: not valid JSON ({err.msg})", hint="SQuAD JSON or a list of rows")
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):  # SQuAD
        for article in doc["data"]:
            for para in article.get("paragraphs", []):
                yield para["context"]
                yield from (qa["question"] for qa in para.get("qas", []))
    elif isinstance(doc, list):
        for n, row in enumerate(doc):
            yield from _row_texts(row, f"{path}[{n}]")
    else:
        raise BertkitError(f"{path}: unrecognised JSON layout", hint='SQuAD {"data": [...]} or a list of rows')


# --- tokenizers -----------------------------------------------------------------------------------


def build_tokenizer(
    corpus_paths: list[str],
    lang: str,
    vocab_size: int,
    output_dir: str,
    *,
    model_max_length: int = 512,
    mecab_dic: str = "unidic_lite",
    lowercase: bool | None = None,
    min_frequency: int = 2,
) -> str:
    """Train a WordPiece vocabulary on the corpus and save a loadable tokenizer; returns output_dir.

    ``ja``: words come from the very MeCab word tokenizer the saved ``BertJapaneseTokenizer`` will
    use (NFKC, same dictionary), so the vocabulary fits what it will see; ``lowercase`` defaults to
    False. ``en``: BERT normalisation and pre-tokenisation; ``lowercase`` defaults to True.
    ``mecab_dic`` only matters for ``ja``.
    """
    if lang not in ("ja", "en"):
        raise BertkitError(f"unknown language {lang!r}", hint="use lang=ja or lang=en")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise BertkitError(f"vocab_size={vocab_size} is too small", hint="use a few thousand or more")
    texts = list(read_corpus(corpus_paths))
    if not texts:
        raise BertkitError(f"no text found in {', '.join(corpus_paths)}", hint="the corpus files are empty")
    os.makedirs(output_dir, exist_ok=True)
    if lang == "ja":
        _build_japanese(texts, vocab_size, output_dir, model_max_length, mecab_dic, bool(lowercase), min_frequency)
    else:
        _build_english(texts, vocab_size, output_dir, model_max_length, lowercase is not False, min_frequency)
    return output_dir


def _wordpiece_trainer(vocab_size: int, min_frequency: int):
    from tokenizers import trainers

    return trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
    )


def _mecab_word_tokenizer(mecab_dic: str, lowercase: bool):
    from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

    if mecab_dic not in MECAB_DICTIONARIES:
        raise BertkitError(f"unknown mecab_dic {mecab_dic!r}", hint=f"use one of {', '.join(MECAB_DICTIONARIES)}")
    try:
        return MecabTokenizer(do_lower_case=lowercase, mecab_dic=mecab_dic)
    except (ModuleNotFoundError, RuntimeError) as err:
        package = {"unidic_lite": "unidic-lite"}.get(mecab_dic, mecab_dic)
        raise BertkitError(f"MeCab dictionary {mecab_dic!r} is not available ({err})", hint=f"pip install {package}")


def _build_japanese(texts, vocab_size, output_dir, model_max_length, mecab_dic, lowercase, min_frequency):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = _mecab_word_tokenizer(mecab_dic, lowercase)
    # Special-token strings in the corpus (JSQuAD contexts hold " [SEP] ") stay out of the counts:
    # the tokenizer splits them off before MeCab ever sees them.
    specials = re.compile("|".join(map(re.escape, SPECIAL_TOKENS)))
    lines = (" ".join(words.tokenize(part)) for text in texts for part in specials.split(text))
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # words arrive pre-split by MeCab
    tok.train_from_iterator(lines, _wordpiece_trainer(vocab_size, min_frequency))
    _write_vocab(tok.get_vocab(), os.path.join(output_dir, "vocab.txt"))
    config = {
        "tokenizer_class": "BertJapaneseTokenizer",
        "do_lower_case": lowercase,
        "word_tokenizer_type": "mecab",
        "subword_tokenizer_type": "wordpiece",
        "mecab_kwargs": {"mecab_dic": mecab_dic},
        "model_max_length": model_max_length,
        **_special_map(),
    }
    _write_json(os.path.join(output_dir, "tokenizer_config.json"), config)
    _write_json(os.path.join(output_dir, "special_tokens_map.json"), _special_map())


def _build_english(texts, vocab_size, output_dir, model_max_length, lowercase, min_frequency):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, _wordpiece_trainer(vocab_size, min_frequency))
    vocab = tok.get_vocab()
    _write_vocab(vocab, os.path.join(output_dir, "vocab.txt"))
    # transformers v5: BertTokenizerFast takes the vocabulary itself (vocab=dict), not a file.
    fast = BertTokenizerFast(vocab=vocab, do_lower_case=lowercase, model_max_length=model_max_length)
    fast.save_pretrained(output_dir)


def _special_map() -> dict[str, str]:
    return {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def _write_vocab(vocab: dict[str, int], path: str) -> None:
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))) or tokens[:5] != SPECIAL_TOKENS:
        raise RuntimeError("trained vocabulary is not contiguous with the special tokens first")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in tokens)


def _write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


# --- models ---------------------------------------------------------------------------------------


def init_model(
    tokenizer_dir: str,
    size: str,
    output_dir: str,
    *,
    seed: int = 0,
    max_position_embeddings: int | None = None,
) -> str:
    """Save a randomly initialised ``BertForMaskedLM`` (safetensors) and the tokenizer; returns output_dir.

    The vocabulary size and pad id come from the tokenizer; positions default to its
    ``model_max_length`` (512 when it has none).
    """
    if size not in MODEL_SIZES:
        raise BertkitError(f"unknown model size {size!r}", hint=f"use one of {', '.join(MODEL_SIZES)}")
    tokenizer = _load_tokenizer(tokenizer_dir)
    import torch
    from transformers import BertConfig, BertForMaskedLM

    layers, hidden, heads, ff = MODEL_SIZES[size]
    positions = max_position_embeddings or _model_max_length(tokenizer)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ff,
        max_position_embeddings=positions,
        pad_token_id=tokenizer.pad_token_id,
        # Lets AutoTokenizer find a BertJapaneseTokenizer from the model directory alone.
        tokenizer_class=type(tokenizer).__name__ if not tokenizer.is_fast else None,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    if not os.path.isdir(path):
        raise BertkitError(f"tokenizer directory not found: {path}", hint="build one with build_tokenizer")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise BertkitError(f"cannot load a tokenizer from {path} ({err})", hint="it needs vocab.txt and tokenizer_config.json")


def _model_max_length(tokenizer) -> int:
    n = getattr(tokenizer, "model_max_length", None)
    return n if isinstance(n, int) and 0 < n <= 1_000_000 else 512  # transformers uses 1e30 for "none"


# --- token tables for `bertkit tokenize` ----------------------------------------------------------


def token_table(tokenizer, texts: list[str]) -> list[list[dict]]:
    """Per text, one row per token of the model's input (``tokenizer(text)``, or of the text segmented
    first under ``japanese.pre_segment``), special tokens included.

    Rows: ``index``, ``token``, ``id``, ``word_id``, ``start``, ``end``, ``text`` (the original
    characters); special tokens added around the text have ``word_id``, ``start``, ``end`` and
    ``text`` None. Works for fast tokenizers and Japanese slow tokenizers; other slow tokenizers
    raise ``BertkitError``.
    """
    from bertkit import encoding
    from bertkit.japanese import align_batch

    tables = []
    before = len(encoding.template(tokenizer).single[0])
    for text, aligned in zip(texts, align_batch(tokenizer, list(texts))):
        full = encoding.with_specials(tokenizer, aligned.input_ids)[0]  # as the tasks build their inputs
        tokens = tokenizer.convert_ids_to_tokens(full)
        rows = []
        for i, (tok_id, tok) in enumerate(zip(full, tokens)):
            k = i - before
            if 0 <= k < len(aligned.input_ids):
                start, end = aligned.offsets[k]
                rows.append(_row(i, tok, tok_id, aligned.word_ids[k], start, end, text[start:end]))
            else:
                rows.append(_row(i, tok, tok_id, None, None, None, None))
        tables.append(rows)
    return tables


def _row(index, token, tok_id, word_id, start, end, text) -> dict:
    return {"index": index, "token": token, "id": tok_id, "word_id": word_id, "start": start, "end": end, "text": text}


def format_token_table(tables: list[list[dict]], texts: list[str]) -> str:
    """Plain-text tables, columns aligned by display width (a kanji takes two cells)."""
    header = ("#", "token", "id", "word", "span", "text")
    blocks = []
    for n, (rows, text) in enumerate(zip(tables, texts), 1):
        cells = [header] + [
            (
                str(r["index"]),
                r["token"],
                str(r["id"]),
                "" if r["word_id"] is None else str(r["word_id"]),
                "" if r["start"] is None else f"{r['start']}:{r['end']}",
                "" if r["text"] is None else _visible(r["text"]),
            )
            for r in rows
        ]
        widths = [max(_width(row[c]) for row in cells) for c in range(len(header))]
        lines = [f"text {n}: {_visible(text)}"]
        for row in cells:
            lines.append("  ".join(_pad(v, w, right=c in (0, 2)) for c, (v, w) in enumerate(zip(row, widths))).rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _visible(s: str) -> str:
    """Show whitespace and invisible characters as escapes so the table stays on one line."""
    return "".join(c if c == " " or unicodedata.category(c)[0] not in "CZ" else repr(c)[1:-1] for c in s)


def _width(s: str) -> int:
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _pad(s: str, width: int, right: bool = False) -> str:
    fill = " " * (width - _width(s))
    return fill + s if right else s + fill
