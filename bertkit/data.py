"""Load raw examples from the hub or local files into a ``datasets.DatasetDict``.

Local formats: CSV, TSV, JSON (a list of records, ``{"data": [...]}``, or SQuAD nesting), JSONL,
parquet, CoNLL columns and plain text (one example a line). Every reader checks what a user gets
wrong — missing or empty files, binary or non-UTF-8 bytes (Shift_JIS is recognised), a bad JSON line
(with its number), ragged CSV rows — and raises one ``BertkitError`` naming the file and row.

What this module does not do: tokenise, or interpret labels (the task modules do). It only turns
files into rows and makes the train / validation / test splits.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError
from bertkit.recipe import DataConfig

SPLITS = ("train", "validation", "test")
FORMATS_BY_SUFFIX = {
    ".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".conll": "conll", ".iob": "conll", ".bio": "conll", ".txt": "text",
}


# ---------------------------------------------------------------------------------------------
# Text decoding


def read_text(path: str | Path, limit: int | None = None) -> str:
    """Read a file as UTF-8 text, with a precise error for missing, binary or mis-encoded files.

    With ``limit``, read and check only the first ``limit`` bytes: for a file about to be streamed
    (``predict``), so a big input is never held in memory whole.
    """
    path = Path(path)
    if not path.exists():
        raise BertkitError(f"data file {path} does not exist", "check the path (relative paths start from the current directory)")
    if path.is_dir():
        raise BertkitError(f"data path {path} is a directory, not a file", "point to a file inside it")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(-1 if limit is None else limit)
    except OSError as exc:
        raise BertkitError(f"data file {path} cannot be read: {exc.strerror}", "check its permissions") from exc
    cut = limit is not None and len(raw) == limit  # more follows: the last character may be cut short
    if not raw.strip() and not cut:
        raise BertkitError(f"data file {path} is empty", "give a file with at least one example")
    if b"\x00" in raw[:8192]:
        raise BertkitError(f"data file {path} looks binary (it contains NUL bytes), not text",
                           "give a CSV, TSV, JSON, JSONL, CoNLL or text file (parquet needs the .parquet suffix)")
    try:
        import codecs

        return codecs.getincrementaldecoder("utf-8-sig")().decode(raw, final=not cut)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        for encoding in ("cp932", "euc_jp"):
            try:
                codecs.getincrementaldecoder(encoding)().decode(raw, final=not cut)
            except UnicodeDecodeError:
                continue
            label = "Shift_JIS (cp932)" if encoding == "cp932" else "EUC-JP"
            raise BertkitError(
                f"data file {path} is not UTF-8: it looks {label}-encoded (first bad byte on line {line})",
                f"convert it: iconv -f {'CP932' if encoding == 'cp932' else 'EUC-JP'} -t UTF-8 {path} > utf8.{path.suffix.lstrip('.')}",
            ) from exc
        raise BertkitError(f"data file {path} is not UTF-8 text (first bad byte on line {line})",
                           "re-save it as UTF-8") from exc


def lines(text: str) -> list[str]:
    """Split on newlines only: ``str.splitlines`` also splits on U+0085, U+2028 and friends,
    which real text (IMDb reviews, for one) contains inside JSON strings."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


# ---------------------------------------------------------------------------------------------
# Readers: each returns a list of row dicts


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(lines(read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BertkitError(f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})",
                               "fix or remove that line; JSONL needs one JSON object per line") from exc
        if not isinstance(row, dict):
            raise BertkitError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}",
                               'each line must look like {"text": ..., "label": ...}')
        rows.append(row)
    return rows


def read_json(path: Path) -> list[dict[str, Any]]:
    text = read_text(path)
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a JSONL file named .json
            return read_jsonl(path)
        raise BertkitError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                           "fix the JSON, or use JSONL (one object per line)") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("data"), list):
        if loaded["data"] and isinstance(loaded["data"][0], dict) and "paragraphs" in loaded["data"][0]:
            return flatten_squad(loaded, path)
        loaded = loaded["data"]
    if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
        raise BertkitError(f"{path}: expected a JSON list of objects (or {{\"data\": [...]}})",
                           "write one object per example")
    return loaded


def flatten_squad(tree: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """SQuAD nesting (data[].paragraphs[].qas[]) -> flat rows with id/title/question/context/answers."""
    rows = []
    for article in tree["data"]:
        title = article.get("title", "")
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            if context is None:
                raise BertkitError(f"{path}: a paragraph of article {title!r} has no 'context'")
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers", [])
                rows.append({
                    "id": str(qa.get("id", len(rows))),
                    "title": title,
                    "question": qa.get("question", ""),
                    "context": context,
                    "answers": {"text": [a["text"] for a in answers],
                                "answer_start": [int(a["answer_start"]) for a in answers]},
                    "is_impossible": bool(qa.get("is_impossible", False)),
                })
    return rows


def read_delimited(path: Path, delimiter: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise BertkitError(f"data file {path} is empty") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise BertkitError(f"{path}: the header row repeats a column name ({', '.join(header)})", "give each column a unique name")
    rows = []
    try:
        start = reader.line_num + 1
        for cells in reader:
            first, start = start, reader.line_num + 1  # a quoted field can span lines
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) < len(header) and reader.line_num > first and any("\n" in c for c in cells):
                raise BertkitError(f"{path}, line {first}: a quoted field opens there and runs on to line "
                                   f"{reader.line_num}, leaving {len(cells)} fields where the header has {len(header)}",
                                   "close the quote on that line (a quote inside a field is written twice: \"\")")
            if len(cells) != len(header):
                raise BertkitError(
                    f"{path}, line {reader.line_num}: {len(cells)} fields where the header has {len(header)}",
                    "quote fields that contain the delimiter, or fix that row",
                )
            rows.append(dict(zip(header, cells)))
    except csv.Error as exc:
        raise BertkitError(f"{path}, line {reader.line_num}: {exc}", "fix the quoting on that line") from exc
    return [_numbers(row) for row in rows]


def _numbers(row: dict[str, str]) -> dict[str, Any]:
    """CSV cells are strings; turn integer-looking labels into ints so 0/1 files act like JSON ones."""
    out = {}
    for key, value in row.items():
        stripped = value.strip()
        if stripped.lstrip("-").isdigit() and len(stripped) < 18:
            out[key] = int(stripped)
        else:
            out[key] = value
    return out


def read_conll(path: Path, token_column: int = 0, tag_column: int = -1) -> list[dict[str, Any]]:
    """CoNLL columns: one token per line, blank line between sentences, ``-DOCSTART-`` skipped.

    Rows hold ``tokens`` (first column) and ``tags`` (last column). When every line of the file has
    the same number of columns and there are more than two (CoNLL-2003: word, POS, chunk, NER), the
    rows also hold every column as ``col0``, ``col1``, ..., so a recipe can pick another one
    (``ner.tags_column=col2`` for the chunk tags).
    """
    rows: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    cells_of: list[list[str]] = []
    widths: set[int] = set()

    def flush() -> None:
        if tokens:
            rows.append({"tokens": list(tokens), "tags": list(tags), "_cells": list(cells_of)})
            tokens.clear()
            tags.clear()
            cells_of.clear()

    for number, line in enumerate(lines(read_text(path)), start=1):
        if not line.strip():
            flush()
            continue
        cells = line.split("\t") if "\t" in line else line.split()
        if cells[0] == "-DOCSTART-":
            flush()
            continue
        try:
            tokens.append(cells[token_column])
            tags.append(cells[tag_column].strip())
        except IndexError:
            raise BertkitError(f"{path}, line {number}: expected token and tag columns, got {line!r}",
                               "CoNLL lines are `token<TAB>tag`; separate sentences with a blank line") from None
        cells_of.append(cells)
        widths.add(len(cells))
    flush()
    width = next(iter(widths)) if len(widths) == 1 else 0
    for row in rows:
        cells = row.pop("_cells")
        for k in range(width if width > 2 else 0):
            row[f"col{k}"] = [c[k].strip() for c in cells]
    return rows


def read_plain_text(path: Path) -> list[dict[str, Any]]:
    return [{"text": line} for line in lines(read_text(path)) if line.strip()]


def read_parquet(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        read_text(path)  # raises the standard missing-file error
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise BertkitError(f"data file {path} is not a readable parquet file ({exc})") from exc


def detect_format(path: Path, declared: str = "auto", task: str | None = None) -> str:
    if declared != "auto":
        return declared
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise BertkitError(f"cannot tell the format of {path} from its suffix",
                           "use .csv, .tsv, .json, .jsonl, .parquet, .conll or .txt, or set data.format=...")
    # Token-classification corpora ship as two-column .tsv/.txt files without a header.
    if task == "ner" and fmt in ("tsv", "text"):
        return "conll"
    return fmt


def read_rows(path: str | Path, fmt: str = "auto", task: str | None = None) -> list[dict[str, Any]]:
    path = Path(path)
    fmt = detect_format(path, fmt, task)
    readers = {
        "csv": lambda p: read_delimited(p, ","),
        "tsv": lambda p: read_delimited(p, "\t"),
        "json": read_json,
        "squad": read_json,
        "jsonl": read_jsonl,
        "parquet": read_parquet,
        "conll": read_conll,
        "text": read_plain_text,
    }
    rows = readers[fmt](path)
    if not rows:
        raise BertkitError(f"data file {path} holds no examples", "check that it is not just a header or blank lines")
    return rows


def iter_input_lines(path: str, text_column: str = "text") -> Iterator[dict[str, Any]]:
    """Stream prediction inputs (JSONL / CSV / TSV / plain text or '-' for stdin) one row at a time.

    Used by ``predict`` so memory stays flat however large the input is.
    """
    import sys

    if path == "-":
        stream: Any = sys.stdin
        fmt = "text"
        source = "<stdin>"
    else:
        p = Path(path)
        read_text(p, limit=1 << 16)  # the usual errors from the first bytes; the file is then streamed
        fmt = detect_format(p)
        # Lines end at "\n" only (a lone "\r" or U+2028 inside a line is text), as in read_rows.
        stream = open(p, encoding="utf-8-sig", newline="" if fmt in ("csv", "tsv") else "\n")
        source = str(p)
    try:
        if fmt in ("csv", "tsv"):
            reader = csv.DictReader(stream, delimiter="," if fmt == "csv" else "\t")
            for row in reader:
                yield row
        elif fmt in ("jsonl", "json") and path != "-":
            if fmt == "json":
                yield from read_json(Path(path))
                return
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise BertkitError(f"{source}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})",
                                           "fix or remove that line; JSONL needs one JSON object per line") from exc
                    yield row if isinstance(row, dict) else {text_column: row}
        else:
            for line in stream:
                line = line[:-1] if line.endswith("\n") else line
                line = line[:-1] if line.endswith("\r") else line
                if path == "-" and line.startswith("{"):
                    try:
                        row = json.loads(line)
                        if isinstance(row, dict):
                            yield row
                            continue
                    except json.JSONDecodeError:
                        pass
                if line.strip():
                    yield {text_column: line}
    except UnicodeDecodeError as exc:
        raise BertkitError(f"{source} is not UTF-8 text past its first {1 << 16} bytes ({exc.reason})",
                           "re-save it as UTF-8") from exc
    finally:
        if stream is not sys.stdin:
            stream.close()


# ---------------------------------------------------------------------------------------------
# Splits


def _hub_splits(cfg: DataConfig) -> dict[str, Any]:
    from bertkit.models import hub_unreachable_error

    import datasets

    names = {"train": cfg.train or "train", "validation": cfg.validation, "test": cfg.test}
    try:
        available = datasets.get_dataset_split_names(cfg.dataset, cfg.config)
    except Exception as exc:
        if _looks_offline(exc):
            raise hub_unreachable_error("dataset", cfg.dataset, "data.train=path/to/train.jsonl") from exc
        raise BertkitError(f"hub dataset {cfg.dataset!r} could not be opened: {exc}",
                           "check the id (and data.config), or use local files with data.train=...") from exc
    if names["validation"] is None and "validation" in available:
        names["validation"] = "validation"
    if names["test"] is None and "test" in available:
        names["test"] = "test"
    out = {}
    for split, name in names.items():
        if name is None:
            continue
        if name not in available:
            raise BertkitError(f"hub dataset {cfg.dataset!r} has no split {name!r} (it has {', '.join(available)})",
                               f"set data.{split}= to one of those")
        out[split] = datasets.load_dataset(cfg.dataset, cfg.config, split=name)
    return out


def _looks_offline(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("offline", "connection", "resolve", "network", "timed out", "max retries",
                                         "couldn't reach", "could not reach", "unreachable"))


def load(cfg: DataConfig, task: str | None = None) -> Any:
    """Load the configured splits as a ``datasets.DatasetDict`` of raw rows (train, validation?, test?)."""
    import datasets

    if cfg.dataset:
        splits = _hub_splits(cfg)
    else:
        splits = {}
        for split in SPLITS:
            path = getattr(cfg, split)
            if path is None:
                continue
            rows = read_rows(path, cfg.format, task)
            try:
                splits[split] = datasets.Dataset.from_list(rows)
            except (TypeError, ValueError) as exc:  # arrow cannot unify column types across rows
                raise BertkitError(f"{path}: rows disagree on a column's type ({exc})",
                                   "make each column hold one type in every row") from exc
    return datasets.DatasetDict(splits)


def limit(dataset: Any, n: int | None) -> Any:
    return dataset if n is None or len(dataset) <= n else dataset.select(range(n))


DEFAULT_VALIDATION_SIZE = 0.1


def validation_fraction(dsd: Any, cfg: DataConfig, always: bool = False) -> float:
    """How much of train to hold out: ``data.validation_size`` if set; else 0.1 when nothing else
    could be scored (no test split) or the task always measures held-out data (``always``), and 0
    when a test split is given, so that every training row trains, as in the standard recipe."""
    if "validation" in dsd:
        return 0.0
    if cfg.validation_size is not None:
        return cfg.validation_size
    return DEFAULT_VALIDATION_SIZE if always or "test" not in dsd else 0.0


def ensure_validation(dsd: Any, cfg: DataConfig, seed: int, stratify: list[Any] | None = None,
                      always: bool = False) -> Any:
    """Hold out ``validation_fraction`` of train when no validation split exists, stratified if
    labels are given; with a fraction of 0 the splits stay as they are (no validation split)."""
    import datasets

    size = validation_fraction(dsd, cfg, always)
    if size == 0:
        return dsd
    train = dsd["train"]
    if len(train) < 4:
        raise BertkitError(f"the training data has only {len(train)} examples, too few to hold out a validation split",
                           "add examples or give a validation file with data.validation=...")
    from sklearn.model_selection import train_test_split

    indices = list(range(len(train)))
    can_stratify = stratify is not None and _stratifiable(stratify, size)
    train_idx, val_idx = train_test_split(indices, test_size=size, random_state=seed,
                                          stratify=stratify if can_stratify else None)
    out = dict(dsd)
    out["train"] = train.select(sorted(train_idx))
    out["validation"] = train.select(sorted(val_idx))
    return datasets.DatasetDict(out)


def _stratifiable(labels: list[Any], fraction: float) -> bool:
    from collections import Counter

    counts = Counter(labels)
    n_val = max(1, round(fraction * len(labels)))
    return min(counts.values()) >= 2 and n_val >= len(counts) and len(labels) - n_val >= len(counts)


def require_columns(dataset: Any, columns: dict[str, str | None], split: str, where: str = "data") -> None:
    """Check that every configured column exists, suggesting the closest actual column name."""
    import difflib

    available = dataset.column_names
    for key, column in columns.items():
        if column is None or column in available:
            continue
        close = difflib.get_close_matches(column, available, n=1, cutoff=0.4)
        suggestion = f"; did you mean '{close[0]}'? (set {where}.{key}={close[0]})" if close else f" (set {where}.{key}=...)"
        raise BertkitError(f"the {split} data has no column '{column}'{suggestion}",
                           f"its columns are: {', '.join(available)}")
