"""bertkit.nn against independent implementations: torch's own attention and encoder layer, the
sinusoid formula written out with math, and transformers' BertModel on the tiny English and
Japanese models (last_hidden_state, pooler_output and every attention map)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkit.nn import (BertEncoder, BertShape, EncoderLayer, MultiHeadAttention, SinusoidalPositionalEncoding,
                        padding_mask, scaled_dot_product_attention, sinusoidal_encoding)
from bertkit.nn.loading import rename

TEXTS_EN = ["a great movie", "the plot was really boring and the acting was poor", "fun"]
TEXTS_JA = ["この映画はとても面白かった。", "営業利益は減少しました。", "良好です。"]


def _masks(batch: int, heads: int, q: int, k: int) -> dict[str, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(1)
    random = torch.rand(batch, heads, q, k, generator=generator) > 0.5
    random[..., 0] = True  # every query keeps at least one key
    lengths = torch.tensor([k, 3])
    return {
        "none": None,
        "padding": padding_mask((torch.arange(k)[None, :] < lengths[:, None]).long()),
        "causal": torch.ones(q, k, dtype=torch.bool).tril(),
        "random": random,
    }


@pytest.mark.parametrize("kind", ["none", "padding", "causal", "random"])
def test_scaled_dot_product_attention_matches_torch(kind: str) -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)
    mask = _masks(2, 3, 6, 6)[kind]
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.shape == (2, 3, 6, 5) and weights.shape == (2, 3, 6, 6)
    assert torch.allclose(out, expected, atol=1e-6)
    # the weights, element by element from the definition, in float64
    qn, kn = q.double().numpy(), k.double().numpy()
    allowed = np.ones((2, 3, 6, 6), bool) if mask is None else np.broadcast_to(mask.numpy(), (2, 3, 6, 6))
    for b, h, i in np.ndindex(2, 3, 6):
        scores = np.array([qn[b, h, i] @ kn[b, h, j] / math.sqrt(8) for j in range(6)])
        e = np.where(allowed[b, h, i], np.exp(scores - scores.max()), 0.0)
        assert np.allclose(weights[b, h, i].numpy(), e / e.sum(), atol=1e-6)


def test_multi_head_attention_matches_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, 4).eval()
    theirs = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
        theirs.out_proj.weight.copy_(ours.output.weight)
        theirs.out_proj.bias.copy_(ours.output.bias)
    x = torch.randn(2, 7, 16)
    attention_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        out, weights = ours(x, padding_mask(attention_mask))
        # torch's key_padding_mask says True = ignore: the opposite of ours
        expected, expected_weights = theirs(x, x, x, key_padding_mask=attention_mask == 0, average_attn_weights=False)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-6)
    assert weights[1, :, :, 4:].abs().max() == 0  # padding keys get no weight from anyone


def test_encoder_layer_matches_torch_transformer_encoder_layer() -> None:
    torch.manual_seed(0)
    ours = EncoderLayer(16, 4, 32, activation="gelu", layer_norm_eps=1e-12).eval()
    theirs = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", batch_first=True,
                                              norm_first=False, layer_norm_eps=1e-12).eval()
    state = {
        "self_attn.in_proj_weight": torch.cat([ours.attention.query.weight, ours.attention.key.weight,
                                               ours.attention.value.weight]),
        "self_attn.in_proj_bias": torch.cat([ours.attention.query.bias, ours.attention.key.bias,
                                             ours.attention.value.bias]),
        "self_attn.out_proj.weight": ours.attention.output.weight, "self_attn.out_proj.bias": ours.attention.output.bias,
        "linear1.weight": ours.feed_forward.expand.weight, "linear1.bias": ours.feed_forward.expand.bias,
        "linear2.weight": ours.feed_forward.contract.weight, "linear2.bias": ours.feed_forward.contract.bias,
        "norm1.weight": ours.attention_norm.weight, "norm1.bias": ours.attention_norm.bias,
        "norm2.weight": ours.feed_forward_norm.weight, "norm2.bias": ours.feed_forward_norm.bias,
    }
    theirs.load_state_dict({k: v.detach().clone() for k, v in state.items()})
    x = torch.randn(2, 6, 16)
    attention_mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    out, _ = ours(x, padding_mask(attention_mask))
    expected = theirs(x, src_key_padding_mask=attention_mask == 0)  # grad enabled: torch's reference path
    real = attention_mask.bool()
    assert torch.allclose(out[real], expected[real], atol=1e-5)


def test_sinusoidal_encoding_is_the_formula() -> None:
    for d_model in (16, 7):
        table = sinusoidal_encoding(50, d_model)
        assert table.shape == (50, d_model) and table.dtype == torch.float32
        for pos in range(50):
            for i in range(d_model):
                angle = pos / 10000 ** ((i - i % 2) / d_model)
                expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
                assert abs(table[pos, i].item() - expected) < 1e-6


def test_sinusoidal_dot_product_depends_only_on_distance() -> None:
    table = sinusoidal_encoding(64, 32).double()
    for offset in (1, 5, 20):
        dots = (table[:-offset] * table[offset:]).sum(dim=1)  # PE[p] · PE[p + offset] for every p
        assert torch.allclose(dots, dots[0].expand_as(dots), atol=1e-9)


def test_positional_encoding_module_adds_the_table() -> None:
    module = SinusoidalPositionalEncoding(8, max_len=10)
    x = torch.zeros(2, 4, 8)
    assert torch.equal(module(x), sinusoidal_encoding(4, 8).expand(2, 4, 8))
    with pytest.raises(ValueError, match="longer than max_len=10"):
        module(torch.zeros(1, 11, 8))


def _hf_and_ours(model_dir: Path):
    from transformers import BertModel

    torch.manual_seed(0)  # the MLM checkpoints hold no pooler: transformers initialises one
    hf = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    return hf, BertEncoder.from_transformers(hf)


@pytest.mark.parametrize("fixture,texts", [("tiny_en_model", TEXTS_EN), ("tiny_ja_model", TEXTS_JA)])
def test_bert_encoder_matches_transformers(fixture: str, texts: list[str], request: pytest.FixtureRequest) -> None:
    from transformers import AutoTokenizer

    model_dir = request.getfixturevalue(fixture)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hf, ours = _hf_and_ours(model_dir)
    batches = [tokenizer(texts, padding=True, return_token_type_ids=True, return_tensors="pt"),
               tokenizer([texts[0]], [texts[1]], return_token_type_ids=True, return_tensors="pt")]  # a pair: segments 0, 1
    assert batches[0]["attention_mask"].min() == 0 and batches[1]["token_type_ids"].max() == 1
    for batch in batches:
        with torch.no_grad():
            expected = hf(**batch, output_attentions=True)
            got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        assert (got.last_hidden_state - expected.last_hidden_state).abs().max() <= 1e-5
        assert (got.pooler_output - expected.pooler_output).abs().max() <= 1e-5
        assert len(got.attentions) == len(expected.attentions) == 2
        for mine, theirs in zip(got.attentions, expected.attentions):
            assert mine.shape == theirs.shape
            assert (mine - theirs).abs().max() <= 1e-5


def test_from_pretrained_reads_the_checkpoint_itself(tiny_en_model: Path) -> None:
    from transformers import BertModel

    hf = BertModel.from_pretrained(tiny_en_model, attn_implementation="eager").eval()
    ours = BertEncoder.from_pretrained(str(tiny_en_model))
    assert ours.pooler is None  # saved from BertForMaskedLM: there is no trained pooler to load
    assert ours.shape == BertShape(vocab_size=hf.config.vocab_size, hidden_size=32, num_layers=2, num_heads=2,
                                   intermediate_size=64, max_position_embeddings=128)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        got = ours(ids)
        expected = hf(input_ids=ids)
    assert got.pooler_output is None
    assert (got.last_hidden_state - expected.last_hidden_state).abs().max() <= 1e-5


def test_parameter_names_map_onto_ours() -> None:
    assert rename("bert.encoder.layer.3.output.LayerNorm.gamma") == "layers.3.feed_forward_norm.weight"
    assert rename("encoder.layer.0.attention.self.key.bias") == "layers.0.attention.key.bias"
    assert rename("embeddings.word_embeddings.weight") == "embeddings.word.weight"
    assert rename("cls.predictions.transform.dense.weight") is None
    assert rename("embeddings.position_ids") is None


def test_unsupported_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="relative_key"):
        BertShape.from_config({"model_type": "bert", "vocab_size": 10, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="BERT only, and this is a 'roberta' model"):
        BertShape.from_config({"model_type": "roberta", "vocab_size": 10})
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


def test_other_families_are_refused_with_the_reason(family_model) -> None:
    from bertkit.nn import BertEncoder

    with pytest.raises(ValueError, match="implements BERT only, and this is a 'roberta' model"):
        BertEncoder.from_pretrained(str(family_model("roberta")))
