"""``bertkit embed``: vectors, similarity matrix and search, checked against a reference computed here
with transformers alone (each text on its own, unpadded), on the tiny English and Japanese models."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bertkit import embed
from bertkit.cli import app
from bertkit.errors import BertkitError

runner = CliRunner()

EN = ["a great movie", "the plot was really boring and the acting was poor", "fun", "it was not good at all",
      "a lovely and brilliant film", "bad"]
JA = ["この映画はとても面白かった。", "営業利益は減少しました。", "売上高は前年同期比で増加しました。", "良好です。",
      "田中さんは大阪で働いています。"]


def reference(model_dir: Path, texts: list[str], pooling: str = "mean", normalize: bool = False,
              max_length: int = 128) -> np.ndarray:
    """Pooled vectors from transformers directly: one text at a time, so there is no padding to exclude."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            result = model(**batch)
            hidden = result.last_hidden_state[0].numpy().astype(np.float64)  # (seq, dim)
            vector = {"mean": hidden.mean(axis=0), "max": hidden.max(axis=0), "cls": hidden[0],
                      "pooler": result.pooler_output[0].numpy()}[pooling]
            out.append(vector / np.linalg.norm(vector) if normalize else vector)
    return np.array(out)


def lines_file(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def test_npy_vectors_match_mean_pooling_reference(tmp_path: Path, tiny_en_model: Path) -> None:
    source = lines_file(tmp_path / "in.txt", EN)
    result = runner.invoke(app, ["embed", str(tiny_en_model), str(source), "--pooling", "mean", "--normalize",
                                 "--output", str(tmp_path / "v.npy")])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(EN)} vectors of dimension 32 (mean pooling, normalized)" in result.output
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (len(EN), 32) and vectors.dtype == np.float32
    assert np.abs(vectors - reference(tiny_en_model, EN, "mean", normalize=True)).max() <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "v.npy"]


@pytest.mark.parametrize("pooling", ["max", "cls", "mean"])
def test_japanese_jsonl_vectors_match_reference(tmp_path: Path, tiny_ja_model: Path, pooling: str) -> None:
    rows = [{"id": f"r{i}", "body": text} for i, text in enumerate(JA)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = embed.run(str(tiny_ja_model), str(source), pooling=pooling, output=str(tmp_path / "v.jsonl"),
                       text_column="body")
    assert result["count"] == len(JA) and result["dim"] == 32
    records = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows] and [r["text"] for r in records] == JA
    vectors = np.array([r["embedding"] for r in records])
    assert np.abs(vectors - reference(tiny_ja_model, JA, pooling)).max() <= 1e-5


def test_chunks_and_length_sorting_keep_input_order(tmp_path: Path, tiny_en_model: Path) -> None:
    texts = EN * 3 + ["good " * n for n in range(1, 12)]
    source = lines_file(tmp_path / "in.txt", texts)
    embed.run(str(tiny_en_model), str(source), output=str(tmp_path / "small.npy"), chunk=4, batch_size=3)
    embed.run(str(tiny_en_model), str(source), output=str(tmp_path / "one.npy"), chunk=1000)
    small, one = np.load(tmp_path / "small.npy"), np.load(tmp_path / "one.npy")
    assert small.shape == (len(texts), 32)
    assert np.abs(small - one).max() <= 1e-6
    assert np.abs(small - reference(tiny_en_model, texts)).max() <= 1e-5


def test_pooler_needs_a_trained_pooler(tmp_path: Path, tiny_en_model: Path) -> None:
    source = lines_file(tmp_path / "in.txt", EN[:3])
    result = runner.invoke(app, ["embed", str(tiny_en_model), str(source), "--pooling", "pooler",
                                 "--output", str(tmp_path / "v.npy")])
    assert result.exit_code == 1 and "has no trained pooler" in result.output
    assert not (tmp_path / "v.npy").exists()
    # a BertModel checkpoint saves its pooler: then --pooling pooler is the model's pooler_output
    import torch
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(0)
    with_pooler = tmp_path / "with-pooler"
    BertModel.from_pretrained(tiny_en_model).save_pretrained(with_pooler)
    AutoTokenizer.from_pretrained(tiny_en_model).save_pretrained(with_pooler)
    embed.run(str(with_pooler), str(source), pooling="pooler", output=str(tmp_path / "p.npy"))
    assert np.abs(np.load(tmp_path / "p.npy") - reference(with_pooler, EN[:3], "pooler")).max() <= 1e-5


def test_sentence_transformers_max_seq_length_is_the_default(tmp_path: Path, tiny_en_model: Path) -> None:
    model = tmp_path / "st-model"
    shutil.copytree(tiny_en_model, model)
    (model / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8, "do_lower_case": False}))
    texts = ["the plot was really boring and the acting was poor", "fun"]
    result = embed.run(str(model), str(lines_file(tmp_path / "in.txt", texts)), output=str(tmp_path / "v.npy"))
    assert result["max_length"] == 8 and result["truncated"] == 1
    assert np.abs(np.load(tmp_path / "v.npy") - reference(model, texts, max_length=8)).max() <= 1e-5


def test_similarity_matrix_and_japanese_heatmap(tmp_path: Path, tiny_ja_model: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "font.family", ["sans-serif"])  # not a font an earlier test chose
    source = lines_file(tmp_path / "in.txt", JA)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["embed", str(tiny_ja_model), str(source), "--similarity",
                                     "--output", str(tmp_path / "sim.npy")])
    assert result.exit_code == 0, result.output
    assert not [w for w in caught if "missing from font" in str(w.message)]  # the Japanese labels have glyphs
    matrix = np.load(tmp_path / "sim.npy")
    vectors = reference(tiny_ja_model, JA)
    for i in range(len(JA)):
        for j in range(len(JA)):
            cosine = vectors[i] @ vectors[j] / (np.linalg.norm(vectors[i]) * np.linalg.norm(vectors[j]))
            assert abs(matrix[i, j] - cosine) <= 1e-5
    from matplotlib.image import imread

    image = imread(tmp_path / "sim.png")
    assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "sim.npy", "sim.png"]


def test_query_ranks_inputs_by_cosine(tmp_path: Path, tiny_en_model: Path) -> None:
    source = lines_file(tmp_path / "in.txt", EN)
    query = "a really great film"
    result = runner.invoke(app, ["embed", str(tiny_en_model), str(source), "--query", query, "--top-k", "3",
                                 "--output", str(tmp_path / "hits.jsonl")])
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    vectors = reference(tiny_en_model, EN, normalize=True)
    target = reference(tiny_en_model, [query], normalize=True)[0]
    scores = vectors @ target
    expected = sorted(range(len(EN)), key=lambda i: -scores[i])[:3]
    assert [h["index"] for h in hits] == expected and [h["rank"] for h in hits] == [1, 2, 3]
    assert [h["text"] for h in hits] == [EN[i] for i in expected]
    assert np.allclose([h["score"] for h in hits], scores[expected], atol=1e-5)
    printed = runner.invoke(app, ["embed", str(tiny_en_model), str(source), "--query", query, "--top-k", "2"])
    table = re.findall(r"(?m)^ *(\d+)  [-\d.]+  (.+)$", printed.output.replace("\r", "\n"))  # stderr bars aside
    assert printed.exit_code == 0 and table == [("1", EN[expected[0]]), ("2", EN[expected[1]])]


@pytest.mark.parametrize("args,message", [
    (["--pooling", "sum"], "unknown pooling 'sum'"),
    (["--top-k", "3"], "no --query was given"),
    (["--output", "OUT.csv"], "cannot tell the format"),
    (["--query", "x", "--similarity"], "two different outputs"),
])
def test_bad_options_are_one_sentence(tmp_path: Path, tiny_en_model: Path, args: list[str], message: str) -> None:
    source = lines_file(tmp_path / "in.txt", EN)
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "out.npy")]
    result = runner.invoke(app, ["embed", str(tiny_en_model), str(source), *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_bad_inputs_leave_nothing_behind(tmp_path: Path, tiny_en_model: Path) -> None:
    out = tmp_path / "v.npy"
    missing = runner.invoke(app, ["embed", str(tiny_en_model), str(tmp_path / "nope.txt"), "--output", str(out)])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    blank = lines_file(tmp_path / "blank.txt", ["", "   "])
    empty = runner.invoke(app, ["embed", str(tiny_en_model), str(blank), "--output", str(out)])
    assert empty.exit_code == 1 and "is empty" in empty.output
    header_only = lines_file(tmp_path / "header.csv", ["text"])
    empty = runner.invoke(app, ["embed", str(tiny_en_model), str(header_only), "--output", str(out)])
    assert empty.exit_code == 1 and "holds no text lines" in empty.output
    # a row without the text field, after several chunks were already written
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": t}) + "\n" for t in EN) + '{"title": "x"}\n', encoding="utf-8")
    with pytest.raises(BertkitError, match="input 7 has no 'text' field"):
        embed.run(str(tiny_en_model), str(bad), output=str(out), chunk=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "blank.txt", "header.csv"]


def test_pool_excludes_padding() -> None:
    import torch

    hidden = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]]])  # the third position is padding
    mask = torch.tensor([[1, 1, 0]])
    assert embed.pool(hidden, mask, "mean").tolist() == [[2.0, 1.0]]
    assert embed.pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert embed.pool(hidden, mask, "cls").tolist() == [[1.0, -2.0]]
