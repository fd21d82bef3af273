"""Property tests on arbitrary Unicode: every data reader gives back what was written, and the
Japanese alignment keeps its promises (exact ids, spans in bounds and in order, slices that hold the
token's characters) on emoji, combining marks, control characters and very long lines.

Text strategies draw from all of Unicode except surrogates (which cannot be written as UTF-8). The
delimited, CoNLL and plain-text readers refuse a NUL byte as "binary", so their texts leave NUL out
(JSON escapes it, so JSON and JSONL texts keep it).
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bertkit import data
from bertkit.errors import BertkitError

PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Nasty characters drawn often, beside anything else in Unicode.
NASTY = ["\u2028", "\u2029", "\x85", "\r", "\t", "\x0b", "\x0c", "\x1c", "\u200b", "\u200d", "\ufeff", "\u00ad",
         "\u0301", "\u3099", "\u309a", "😀", "👨\u200d👩\u200d👧", "🇯🇵", "👍🏽", "\U0010fffd", "ｶﾞ", "㈱", "①", "\x7f",
         '"', ",", "'", "\\", "{", "}", "[", "]", "-DOCSTART-", "İ", "ß", "ﬁ"]
any_char = st.characters(blacklist_categories=("Cs",))
unicode_text = st.lists(st.one_of(any_char, st.sampled_from(NASTY)), max_size=40).map("".join)
text_no_nul = unicode_text.map(lambda s: s.replace("\x00", ""))


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# Readers


@PROPERTY
@given(texts=st.lists(unicode_text, min_size=1, max_size=8), labels=st.lists(st.integers(-5, 5), min_size=8, max_size=8))
def test_jsonl_and_json_round_trip(tmp_path: Path, texts: list[str], labels: list[int]) -> None:
    rows = [{"text": t, "label": label} for t, label in zip(texts, labels)]
    jsonl = _write(tmp_path, "x.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert data.read_rows(jsonl) == rows
    as_json = _write(tmp_path, "x.json", json.dumps(rows, ensure_ascii=False))
    assert data.read_rows(as_json) == rows
    # predict streams the same file line by line
    assert list(data.iter_input_lines(str(jsonl))) == rows


def _not_a_number(s: str) -> bool:
    # CSV cells that look like integers become ints (so 0/1 labels act as in JSON)
    stripped = s.strip()
    return not (stripped.lstrip("-").isdigit() and len(stripped) < 18)


@PROPERTY
@given(texts=st.lists(text_no_nul.filter(_not_a_number), min_size=1, max_size=8),
       delimiter=st.sampled_from([",", "\t"]))
def test_csv_and_tsv_round_trip(tmp_path: Path, texts: list[str], delimiter: str) -> None:
    rows = [{"text": t, "label": i % 3} for i, t in enumerate(texts)]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["text", "label"])
    writer.writerows([[r["text"], r["label"]] for r in rows])
    path = _write(tmp_path, "x.csv" if delimiter == "," else "x.tsv", buffer.getvalue())
    assert data.read_rows(path) == rows


@PROPERTY
@given(lines=st.lists(text_no_nul.map(lambda s: s.replace("\n", " ")), min_size=1, max_size=10))
def test_plain_text_is_one_example_per_line(tmp_path: Path, lines: list[str]) -> None:
    content = "\n".join(lines) + "\n"
    path = _write(tmp_path, "x.txt", content)
    # A trailing "\r" belongs to a CRLF line ending; a BOM at the very start is not text.
    expected = [{"text": line[:-1] if line.endswith("\r") else line} for line in lines]
    if expected and expected[0]["text"].startswith("\ufeff"):
        expected[0]["text"] = expected[0]["text"][1:]
    expected = [r for r in expected if r["text"].strip()]
    if not expected:
        with pytest.raises(BertkitError, match="is empty|holds no examples"):
            data.read_rows(path)
        return
    assert data.read_rows(path) == expected
    assert list(data.iter_input_lines(str(path))) == expected


token = st.lists(st.one_of(any_char, st.sampled_from(NASTY)), min_size=1, max_size=6).map("".join).map(
    lambda s: s.replace("\t", "").replace("\n", "").replace("\x00", "").replace("\r", "")
).filter(lambda s: s.strip() and s != "-DOCSTART-")
tag = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-日本"])


@PROPERTY
@given(sentences=st.lists(st.lists(st.tuples(token, tag), min_size=1, max_size=6), min_size=1, max_size=5))
def test_conll_round_trip(tmp_path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    content = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in sentence) for sentence in sentences) + "\n"
    if content.startswith("\ufeff"):
        content = "x\tO\n\n" + content
        sentences = [[("x", "O")], *sentences]
    path = _write(tmp_path, "x.conll", content)
    assert data.read_rows(path) == [{"tokens": [w for w, _ in s], "tags": [t for _, t in s]} for s in sentences]


@PROPERTY
@given(raw=st.binary(min_size=1, max_size=200))
def test_arbitrary_bytes_give_rows_or_one_bertkit_error(tmp_path: Path, raw: bytes) -> None:
    """Whatever the bytes, each reader returns rows or raises BertkitError: never another exception."""
    for suffix in ("jsonl", "json", "csv", "tsv", "txt", "conll"):
        path = tmp_path / f"x.{suffix}"
        path.write_bytes(raw)
        try:
            rows = data.read_rows(path)
        except BertkitError as exc:
            assert str(path) in exc.message or path.name in exc.message, exc.message
        else:
            assert rows and all(isinstance(r, dict) for r in rows)


# ---------------------------------------------------------------------------------------------
# Japanese alignment on arbitrary Unicode


@pytest.fixture(scope="module")
def ja_tokenizer(tiny_ja_model: Path):
    pytest.importorskip("fugashi")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_ja_model)
    return tok


def _check(tok, text: str, method: str) -> None:
    from bertkit.japanese import align

    a = align(tok, text, method=method)
    assert a.input_ids == tok(text, add_special_tokens=False)["input_ids"]
    assert len(a.offsets) == len(a.input_ids) == len(a.word_ids)
    starts = [s for s, _ in a.offsets]
    ends = [e for _, e in a.offsets]
    assert starts == sorted(starts) and ends == sorted(ends)
    assert all(0 <= s < e <= len(text) for s, e in a.offsets)
    assert all(b - a_ in (0, 1) for a_, b in zip([-1] + a.word_ids, a.word_ids))
    for token, (s, e) in zip(tok.convert_ids_to_tokens(a.input_ids), a.offsets):
        piece = text[s:e]
        assert piece.strip(), (token, piece)  # a token never covers only whitespace
        if token not in ("[UNK]",) and not token.startswith("["):
            # the token's characters are in its slice, after the tokenizer's own normalisation
            body = token.removeprefix("##")
            assert body in "".join(unicodedata.normalize("NFKC", piece).split()), (token, piece)


@PROPERTY
@given(text=unicode_text)
@example(text="東京\u0301😀\x00の\u2028ｶﾞ\u200d①")
@example(text="\x85\u3000\ufeff[SEP]\x1c")
@pytest.mark.parametrize("method", ["fast", "slow"])
def test_japanese_alignment_on_arbitrary_unicode(ja_tokenizer, method: str, text: str) -> None:
    _check(ja_tokenizer, text, method)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(unit=unicode_text.filter(lambda s: s.strip()), repeat=st.integers(200, 600))
def test_japanese_alignment_on_very_long_lines(ja_tokenizer, unit: str, repeat: int) -> None:
    text = ("売上高は増加しました。" + unit) * (repeat // max(1, len(unit) // 10 + 1))
    _check(ja_tokenizer, text, "auto")
