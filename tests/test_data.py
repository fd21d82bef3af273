"""Data readers: every format, and the precise error for each thing users get wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertkit import data
from bertkit.errors import BertkitError
from bertkit.recipe import DataConfig


def test_reads_every_table_format(tmp_path: Path) -> None:
    rows = [{"text": "a b", "label": 1}, {"text": "c, d", "label": 0}]
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "x.json").write_text(json.dumps(rows))
    (tmp_path / "x.csv").write_text('text,label\na b,1\n"c, d",0\n')
    (tmp_path / "x.tsv").write_text("text\tlabel\na b\t1\nc, d\t0\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    for suffix in ("jsonl", "json", "csv", "tsv", "parquet"):
        assert data.read_rows(tmp_path / f"x.{suffix}") == rows, suffix


def test_squad_nesting_is_flattened(tmp_path: Path) -> None:
    tree = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}
    (tmp_path / "s.json").write_text(json.dumps(tree))
    (row,) = data.read_rows(tmp_path / "s.json")
    assert row["answers"] == {"text": ["France"], "answer_start": [12]}
    assert row["context"][12:18] == "France"


def test_conll_reader(tmp_path: Path) -> None:
    (tmp_path / "n.conll").write_text("-DOCSTART- O\n\nA\tO\ncold\tB-Disease\n\nB\tO\n")
    assert data.read_rows(tmp_path / "n.conll") == [{"tokens": ["A", "cold"], "tags": ["O", "B-Disease"]},
                                                   {"tokens": ["B"], "tags": ["O"]}]


@pytest.mark.parametrize("content, pattern", [
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"\x00\x01\x02binary", "looks binary"),
    ('{"text": "\u6771\u4eac"}\n'.encode("cp932"), "Shift_JIS"),
    (b'{"text": "ok"}\n{"text": broken}\n', "line 2: not valid JSON"),
    (b'["not", "an", "object"]\n{"a": 1}\n', "line 1: expected a JSON object"),
])
def test_bad_jsonl_files(tmp_path: Path, content: bytes, pattern: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(BertkitError, match=pattern):
        data.read_rows(path)


def test_ragged_csv_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("text,label\nfine,1\ntoo,many,fields\n")
    with pytest.raises(BertkitError, match=r"r.csv, line 3: 3 fields where the header has 2"):
        data.read_rows(path)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(BertkitError, match="does not exist"):
        data.read_rows(tmp_path / "nope.jsonl")
    (tmp_path / "x.xyz").write_text("a")
    with pytest.raises(BertkitError, match="cannot tell the format"):
        data.read_rows(tmp_path / "x.xyz")


def test_validation_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": "a" if i % 4 else "b"} for i in range(200)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = DataConfig(train=str(tmp_path / "t.jsonl"), validation_size=0.2)
    raw = data.load(cfg)
    one = data.ensure_validation(raw, cfg, seed=3, stratify=raw["train"]["label"])
    two = data.ensure_validation(raw, cfg, seed=3, stratify=raw["train"]["label"])
    assert len(one["validation"]) == 40 and len(one["train"]) == 160
    assert one["validation"]["text"] == two["validation"]["text"]
    assert one["validation"]["label"].count("b") == 10  # 25 % of 40, as in the whole set
    assert not set(one["validation"]["text"]) & set(one["train"]["text"])


def test_missing_column_suggests_the_closest(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text('{"review": "x", "label": 1}\n')
    raw = data.load(DataConfig(train=str(tmp_path / "t.jsonl")))
    with pytest.raises(BertkitError, match="no column 'text'") as info:
        data.require_columns(raw["train"], {"text_column": "text"}, "train")
    assert "review" in info.value.hint


def test_jsonl_text_may_contain_unicode_line_separators(tmp_path: Path) -> None:
    rows = [{"text": "before\x85after \u2028 and \u2029 end", "label": 1}, {"text": "second", "label": 0}]
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), encoding="utf-8")
    assert data.read_rows(path) == rows


def test_nothing_is_held_out_when_a_test_split_is_given(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(40)]
    for name in ("t", "e"):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with_test = DataConfig(train=str(tmp_path / "t.jsonl"), test=str(tmp_path / "e.jsonl"))
    raw = data.load(with_test)
    assert set(data.ensure_validation(raw, with_test, seed=1)) == {"train", "test"}  # every row trains
    # a task that always scores held-out data (mlm), or an explicit fraction, still holds out
    assert len(data.ensure_validation(raw, with_test, seed=1, always=True)["validation"]) == 4
    explicit = DataConfig(train=str(tmp_path / "t.jsonl"), test=str(tmp_path / "e.jsonl"), validation_size=0.25)
    assert len(data.ensure_validation(raw, explicit, seed=1)["validation"]) == 10
    train_only = DataConfig(train=str(tmp_path / "t.jsonl"))  # nothing else to score: 10 % held out
    assert len(data.ensure_validation(data.load(train_only), train_only, seed=1)["validation"]) == 4
    never = DataConfig(train=str(tmp_path / "t.jsonl"), validation_size=0)
    assert set(data.ensure_validation(data.load(never), never, seed=1)) == {"train"}
