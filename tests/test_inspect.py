"""``bertkit inspect``: the attention weights drawn are transformers' own, the PNGs are written (with
Japanese tokens rendered in a font that has them), and bad layer / head / sizes are one sentence."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bertkit import inspection
from bertkit.cli import app

runner = CliRunner()


def _image(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)


def _missing_glyphs(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


@pytest.fixture(autouse=True)
def default_font(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from matplotlib's default font, so none passes on a font an earlier test chose."""
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "font.family", ["sans-serif"])


@pytest.mark.parametrize("fixture,text", [("tiny_en_model", "a great movie"), ("tiny_ja_model", "売上高は増加しました。")])
def test_attention_weights_are_transformers_own(fixture: str, text: str, request: pytest.FixtureRequest) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = request.getfixturevalue(fixture)
    tokens, weights, cut = inspection.attention_weights(str(model_dir), text)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    batch = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        expected = torch.stack(model(**batch, output_attentions=True).attentions)[:, 0].numpy()
    assert tokens == tokenizer.convert_ids_to_tokens(batch["input_ids"][0]) and not cut
    assert weights.shape == (2, 2, len(tokens), len(tokens))
    assert np.abs(weights - expected).max() <= 1e-6
    assert np.allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


def test_long_text_is_cut_and_said(tiny_en_model: Path) -> None:
    tokens, weights, cut = inspection.attention_weights(str(tiny_en_model), "good " * 200, max_tokens=20)
    assert cut and len(tokens) == 20 and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert weights.shape[-1] == 20


def test_japanese_head_and_grid_pngs(tmp_path: Path, tiny_ja_model: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one = runner.invoke(app, ["inspect", "attention", str(tiny_ja_model), "売上高は前年同期比で増加しました。",
                                  "--layer", "0", "--head", "1", "--output", str(tmp_path / "head.png")])
        grid = runner.invoke(app, ["inspect", "attention", str(tiny_ja_model), "営業利益は減少しました。",
                                   "--output", str(tmp_path / "grid.png")])
    assert one.exit_code == 0, one.output
    assert grid.exit_code == 0, grid.output
    assert f"wrote {tmp_path / 'head.png'}: layer 0 of 0-1, head 1," in one.output
    assert "layer 1 of 0-1, all 2 heads" in grid.output  # the default: every head of the last layer
    assert not _missing_glyphs(caught)
    for name in ("head.png", "grid.png"):
        image = _image(tmp_path / name)
        assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "head.png"]


@pytest.mark.parametrize("args,message", [
    (["--layer", "2"], "layer 2 does not exist: the model has 2 layers"),
    (["--head", "-3"], "head -3 does not exist"),
])
def test_bad_layer_or_head(tmp_path: Path, tiny_en_model: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["inspect", "attention", str(tiny_en_model), "a movie", *args,
                                 "--output", str(tmp_path / "a.png")])
    assert result.exit_code == 1 and message in result.output
    assert not list(tmp_path.iterdir())


def test_positional_encoding_png(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", "positional-encoding", "--d-model", "64", "--max-len", "50",
                                 "--output", str(tmp_path / "pe.png")])
    assert result.exit_code == 0, result.output
    assert "50 positions x 64 dimensions" in result.output
    image = _image(tmp_path / "pe.png")
    assert image.shape[1] > image.shape[0] > 300 and image.std() > 0.05
    bad = runner.invoke(app, ["inspect", "positional-encoding", "--d-model", "0", "--output", str(tmp_path / "x.png")])
    assert bad.exit_code == 1 and "--d-model must be between 1 and 8192" in bad.output
    assert not (tmp_path / "x.png").exists()


def test_confusion_matrix_uses_the_shared_cjk_font(tmp_path: Path) -> None:
    from bertkit import plotting

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plotting.plot_confusion(["肯定", "否定"], [[3, 1], [0, 4]], tmp_path / "cm.png")
    assert not _missing_glyphs(caught)
    assert (tmp_path / "cm.png").stat().st_size > 1000
