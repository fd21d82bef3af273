"""Text corpora for masked-language-model training: documents in, blocks of token ids and word ids out.

Reading (``load``): ``data.train`` / ``data.validation`` / ``data.test`` name a file, a folder (every
.txt, .jsonl, .json, .csv, .tsv and .parquet file below it) or a glob pattern (``corpus/**/*.txt``);
``data.dataset`` names a hub dataset. Files go through ``datasets.load_dataset``, so they are
converted once to Arrow files in the datasets cache (``mlm.cache_dir``) and memory-mapped: a corpus
far larger than RAM is never loaded into it. Each row is one *document*: a JSON/CSV/parquet row (its
``data.text_column``), or for plain text (``mlm.documents``) a paragraph (blank-line separated), a
line, or a whole file; ``auto`` takes paragraphs when a file has blank lines and lines otherwise.
CoNLL files (``data.format: conll``: tagged NER data) give one document per sentence, words joined.

Cutting (``encode_batch``, run through ``Dataset.map`` by the mlm task): every line of a document is
tokenised with its word ids (``tokenize_lines``), then either

- ``line_by_line``: each line is an example; a line longer than the block becomes several, or
- grouped: the documents of a batch are concatenated with ``[SEP]`` between documents and cut into
  blocks of ``block_size`` tokens, the tokenizer's special tokens included (``[CLS]`` ... ``[SEP]``,
  ``<s>`` ... ``</s>``: ``encoding.template``).

Blocks are cut before a word, never inside one (unless a single word is longer than a block), so
whole-word masking sees whole words. The last block of each map batch may be shorter.

What this does not do: deduplicate or clean text, or hold out data (``data.ensure_validation`` holds
out whole documents, seeded).
"""

from __future__ import annotations

import glob
from collections import Counter
from pathlib import Path
from typing import Any

from bertkit import encoding
from bertkit.errors import BertkitError

BUILDERS = {"text": "text", "json": "json", "jsonl": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}
SAMPLE_BY = {"line": "line", "paragraph": "paragraph", "file": "document"}
_SUFFIXES = {".txt", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".conll"}  # files taken from a folder


# ---------------------------------------------------------------------------------------------
# Files


def expand(path: str) -> list[Path]:
    """The files a corpus path names: a file, every corpus file below a folder, or a glob's matches."""
    if any(c in path for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file())
        if not found:
            raise BertkitError(f"no files match the corpus pattern {path}", "check the pattern; relative paths start "
                               "from the current directory, and ** needs a folder level (corpus/**/*.txt)")
        return found
    p = Path(path)
    if not p.exists():
        raise BertkitError(f"corpus file {p} does not exist", "check the path (relative paths start from the current directory)")
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _SUFFIXES)
        if not found:
            raise BertkitError(f"corpus folder {p} holds no .txt, .jsonl, .json, .csv, .tsv or .parquet files",
                               "point data.train at the files, or use a glob with data.format=text (folder/*.text)")
        return found
    return [p]


def _format(files: list[Path], declared: str) -> str:
    from bertkit.data import detect_format

    formats = {detect_format(f, declared) for f in files}
    if len(formats) > 1:
        raise BertkitError(f"the corpus mixes file formats ({', '.join(sorted(formats))})",
                           "give one split one format, or convert the files")
    fmt = formats.pop()
    if fmt not in BUILDERS and fmt != "conll":
        raise BertkitError(f"{fmt} files are not a text corpus", "use .txt, .jsonl, .json, .csv, .tsv or .parquet files")
    return fmt


def _check_file(path: Path, fmt: str) -> None:
    """Refuse binary and non-UTF-8 text files from their first 64 KiB (the rest is streamed later)."""
    if fmt == "parquet":
        return
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if b"\x00" in head:
        raise BertkitError(f"corpus file {path} looks binary (it contains NUL bytes), not text",
                           "give UTF-8 text, JSONL, CSV or parquet files")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            line = head[: exc.start].count(b"\n") + 1
            raise BertkitError(f"corpus file {path} is not UTF-8 text (first bad byte on line {line})",
                               f"convert it, e.g. iconv -f CP932 -t UTF-8 {path} > {path.stem}.utf8{path.suffix} "
                               "for Shift_JIS") from exc


def _has_blank_line(path: Path) -> bool:
    """Streamed: stops at the first blank line (universal newlines, as the text reader sees them)."""
    tail = ""
    with open(path, encoding="utf-8", errors="replace") as fh:
        while chunk := fh.read(1 << 20):
            if "\n\n" in tail + chunk:
                return True
            tail = chunk[-1:]
    return False


def document_mode(files: list[Path], declared: str) -> str:
    if declared != "auto":
        return declared
    return "paragraph" if any(_has_blank_line(f) for f in files) else "line"


def load(recipe: Any) -> Any:
    """A ``DatasetDict`` with one document per row in ``data.text_column``."""
    from bertkit.console import log

    cfg, opts = recipe.data, recipe.options
    if cfg.dataset:
        from bertkit import data

        return data.load(cfg, "mlm")
    import datasets
    from datasets.exceptions import DatasetGenerationError

    splits = {}
    for split in ("train", "validation", "test"):
        if getattr(cfg, split) is None:
            continue
        files = expand(getattr(cfg, split))
        fmt = _format(files, cfg.format)
        for f in files:
            _check_file(f, fmt)
        if all(f.stat().st_size == 0 for f in files):
            raise BertkitError(f"the {split} corpus ({getattr(cfg, split)}) is empty", "give files with text in them")
        kwargs: dict[str, Any] = {"delimiter": "\t"} if fmt == "tsv" else {}
        where = f"{len(files)} file{'s' if len(files) > 1 else ''}"
        if fmt == "text":
            mode = document_mode(files, opts.documents)
            kwargs["sample_by"] = SAMPLE_BY[mode]
            where += f", one document per {mode}" + (" (no blank lines found)" if opts.documents == "auto" and mode == "line" else "")
        log(f"reading the {split} corpus: {where}" + (", one document per sentence (words joined)" if fmt == "conll" else ""))
        if fmt == "conll":  # tagged sentences (NER training data) as unlabelled text
            splits[split] = _conll_documents(files, cfg.text_column)
            continue
        try:
            ds = datasets.load_dataset(BUILDERS[fmt], data_files={split: [str(f) for f in files]}, split=split,
                                       cache_dir=opts.cache_dir, **kwargs)
        except (DatasetGenerationError, ValueError, OSError) as exc:
            cause = str(exc.__cause__ or exc).strip() or type(exc).__name__
            raise BertkitError(f"the {split} corpus could not be read: {cause.splitlines()[0]}",
                               "check that every file is valid in its format (one JSON object per line for JSONL)") from exc
        if fmt == "text" and cfg.text_column != "text":
            ds = ds.rename_column("text", cfg.text_column)
        splits[split] = ds  # blank documents are dropped (and counted) by the mlm task's clean_split
    return datasets.DatasetDict(splits)


def _conll_documents(files: list[Path], column: str) -> Any:
    """CoNLL files (``data.format: conll``) as a corpus: each sentence a document, its words joined by
    spaces, so tagged NER data of a domain can be adapted on without its tags. Read into memory:
    tagged data is small."""
    import datasets

    from bertkit.data import read_rows

    texts = [" ".join(row["tokens"]) for f in files for row in read_rows(f, "conll", "ner")]
    return datasets.Dataset.from_dict({column: texts})


def has_text(texts: list[Any]) -> list[bool]:
    return [text is not None and bool(str(text).strip()) for text in texts]


# ---------------------------------------------------------------------------------------------
# Tokens, words and blocks


def tokenize_lines(tokenizer: Any, lines: list[str]) -> list[tuple[list[int], list[int]]]:
    """(ids, word ids) of each line, no special tokens. Words are the tokenizer's own: pre-tokenizer
    words for fast tokenizers (a WordPiece token and its ``##`` continuations), MeCab words for
    Japanese ones (``bertkit.japanese``); other slow tokenizers are refused there, with a hint."""
    from bertkit.japanese import align_batch

    return [(a.input_ids, a.word_ids) for a in align_batch(tokenizer, lines)] if lines else []


def cut(words: list[int], budget: int) -> list[tuple[int, int]]:
    """(start, end) of pieces of at most ``budget`` tokens, cut before a word where possible; word id
    -1 (a document separator) is dropped at the edges of a piece."""
    pieces, start, n = [], 0, len(words)
    while start < n:
        while start < n and words[start] < 0:
            start += 1
        if start == n:
            break
        end = min(start + budget, n)
        if end < n and words[end] >= 0 and words[end] == words[end - 1]:
            back = end - 1
            while back > start and words[back - 1] == words[end]:
                back -= 1
            if back > start:  # else a single word longer than a block: cut inside it
                end = back
        stop = end
        while stop > start and words[stop - 1] < 0:
            stop -= 1
        pieces.append((start, stop))
        start = end
    return pieces


def _add_blocks(out: dict[str, list[Any]], ids: list[int], words: list[int], budget: int, template: Any) -> None:
    for k, (a, b) in enumerate(cut(words, budget)):
        dense: dict[int, int] = {}
        renumbered = [w if w < 0 else dense.setdefault(w, len(dense)) for w in words[a:b]]
        out["input_ids"].append(template.wrap(ids[a:b])[0])
        out["word_ids"].append(template.around(renumbered, -1))
        out["piece"].append(k)


def encode_batch(batch: dict[str, list[Any]], *, tokenizer: Any, column: str, budget: int, line_by_line: bool) -> dict[str, list[Any]]:
    """``Dataset.map`` function: documents -> examples with ``input_ids``, ``word_ids`` (-1 for special
    tokens, 0.. within the example), ``length`` and ``piece`` (0, or k for the k-th cut of one line)."""
    docs = [[line for line in str(text).split("\n") if line.strip()] for text in batch[column]]
    encoded = iter(tokenize_lines(tokenizer, [line for lines in docs for line in lines]))
    out: dict[str, list[Any]] = {"input_ids": [], "word_ids": [], "piece": []}
    template = encoding.template(tokenizer)
    sep_id = tokenizer.sep_token_id
    stream_ids: list[int] = []
    stream_words: list[int] = []
    next_word = 0  # word ids stay distinct across the lines of the concatenation
    for lines in docs:
        if stream_ids and not line_by_line:  # a document boundary inside the concatenation
            stream_ids.append(sep_id)
            stream_words.append(-1)
        for _ in lines:
            ids, words = next(encoded)
            if line_by_line:
                _add_blocks(out, ids, words, budget, template)
                continue
            stream_ids += ids
            stream_words += [w + next_word for w in words]
            next_word += max(words, default=-1) + 1
    if stream_ids:
        _add_blocks(out, stream_ids, stream_words, budget, template)
    out["length"] = [len(ids) for ids in out["input_ids"]]
    return out


def domain_vocabulary(dataset: Any, tokenizer: Any, column: str, top: int, min_pieces: int,
                      sample: int = 20_000) -> dict[str, Any]:
    """The most frequent words of the first ``sample`` documents that the tokenizer splits into at
    least ``min_pieces`` tokens (words with an ``[UNK]`` piece are left out)."""
    texts = dataset.select(range(min(sample, len(dataset))))[column]
    lines = [line for text in texts for line in str(text).split("\n") if line.strip()]
    counts: Counter[str] = Counter()
    tokens_of: dict[str, list[str]] = {}
    total = 0
    for start in range(0, len(lines), 1000):
        for ids, words in tokenize_lines(tokenizer, lines[start:start + 1000]):
            groups: dict[int, list[str]] = {}
            for token, word in zip(tokenizer.convert_ids_to_tokens(ids), words):
                groups.setdefault(word, []).append(token)
            total += len(groups)
            for pieces in groups.values():
                if len(pieces) >= min_pieces and tokenizer.unk_token not in pieces:
                    word = "".join(p[2:] if p.startswith("##") else p for p in pieces)
                    counts[word] += 1
                    tokens_of[word] = pieces
    return {"documents_read": len(texts), "words": total, "min_pieces": min_pieces,
            "split_words": sum(counts.values()),
            "split_pct": round(100.0 * sum(counts.values()) / max(total, 1), 2),
            "most_frequent": [{"word": w, "count": c, "pieces": len(tokens_of[w]), "tokens": tokens_of[w]}
                              for w, c in counts.most_common(top)]}
