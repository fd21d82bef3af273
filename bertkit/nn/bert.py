"""BERT built from the parts in this package: embeddings, a stack of encoder layers, a pooler.

::

    input_ids, token_type_ids (batch, seq)
      -> BertEmbeddings: word + segment + learned position, LayerNorm     (batch, seq, hidden)
      -> EncoderLayer x num_layers, each with the padding mask             (batch, seq, hidden)
      = last_hidden_state: one contextual vector per token
      -> BertPooler: tanh(W · vector of [CLS] + b)                         (batch, hidden)
      = pooler_output: trained for next-sentence prediction, not a sentence embedding as such

Load real weights with ``BertEncoder.from_transformers(model)`` (a ``transformers`` BertModel or any
Bert*For* task model) or ``BertEncoder.from_pretrained(path_or_alias)`` (a saved directory, read
straight from its config.json and safetensors); ``bertkit.nn.loading`` maps the parameter names.
With the same weights in fp32 the outputs match ``transformers`` to float rounding
(tests/test_nn.py, bench/check_nn_minilm.py).

Not handled: relative position embeddings, cross-attention / decoder use, key-value caches, and
other families' layouts (RoBERTa's position offset, ALBERT's shared layers, DistilBERT's names).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from bertkit.nn.attention import padding_mask
from bertkit.nn.layers import EncoderLayer


@dataclass(frozen=True)
class BertShape:
    """The hyper-parameters that fix a BERT's architecture (the defaults are BERT-base)."""

    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BertShape:
        """From the keys of a ``transformers`` BERT config.json (or ``model.config.to_dict()``)."""
        if config.get("model_type", "bert") != "bert":
            raise ValueError(f"bertkit.nn implements BERT only, and this is a {config.get('model_type')!r} model: "
                             "load it with transformers' own class (AutoModel.from_pretrained)")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {config['position_embedding_type']!r} is not supported")
        names = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads", "activation": "hidden_act",
                 "dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob"}
        values = {f.name: config[names.get(f.name, f.name)] for f in fields(cls) if names.get(f.name, f.name) in config}
        return cls(**values)


@dataclass
class BertOutput:
    last_hidden_state: torch.Tensor  # (batch, seq, hidden)
    pooler_output: torch.Tensor | None  # (batch, hidden); None for a checkpoint saved without a pooler
    attentions: tuple[torch.Tensor, ...]  # one (batch, heads, seq, seq) per layer


class BertEmbeddings(nn.Module):
    """Token ids to vectors: what the token is, which segment it is in, and where it stands.

    The three are simply added, then layer-normalised. Unlike the Transformer paper's sinusoids
    (``bertkit.nn.positional``), BERT learns one vector per position, up to max_position_embeddings.
    """

    def __init__(self, shape: BertShape):
        super().__init__()
        self.word = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.token_type = nn.Embedding(shape.type_vocab_size, shape.hidden_size)  # segment A = 0, B = 1
        self.position = nn.Embedding(shape.max_position_embeddings, shape.hidden_size)
        self.norm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """(batch, seq) ids -> (batch, seq, hidden)"""
        positions = torch.arange(input_ids.size(1), device=input_ids.device)  # (seq,), broadcast over the batch
        x = self.word(input_ids) + self.token_type(token_type_ids) + self.position(positions)
        return self.dropout(self.norm(x))


class BertPooler(nn.Module):
    """The [CLS] vector through one dense layer and tanh: (batch, seq, hidden) -> (batch, hidden)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # position 0 is always [CLS]


class BertEncoder(nn.Module):
    """The whole BERT body: embeddings, ``num_layers`` encoder layers and (optionally) the pooler."""

    def __init__(self, shape: BertShape, with_pooler: bool = True):
        super().__init__()
        self.shape = shape
        self.embeddings = BertEmbeddings(shape)
        self.layers = nn.ModuleList(
            EncoderLayer(shape.hidden_size, shape.num_heads, shape.intermediate_size, activation=shape.activation,
                         dropout=shape.dropout, attention_dropout=shape.attention_dropout,
                         layer_norm_eps=shape.layer_norm_eps)
            for _ in range(shape.num_layers))
        self.pooler = BertPooler(shape.hidden_size) if with_pooler else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> BertOutput:
        """input_ids, attention_mask (1 = token, 0 = padding), token_type_ids: all (batch, seq)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = padding_mask(attention_mask)  # (batch, 1, 1, seq): no query ever attends to padding
        x = self.embeddings(input_ids, token_type_ids)  # (batch, seq, hidden)
        attentions = []
        for layer in self.layers:
            x, weights = layer(x, mask)  # (batch, seq, hidden), (batch, heads, seq, seq)
            attentions.append(weights)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BertOutput(last_hidden_state=x, pooler_output=pooled, attentions=tuple(attentions))

    @classmethod
    def from_transformers(cls, model: Any) -> BertEncoder:
        """Copy the weights of a ``transformers`` BertModel (or Bert*For* task model) into a new encoder."""
        from bertkit.nn.loading import build

        config = model.config.to_dict()
        return build(cls, BertShape.from_config(config), model.state_dict())

    @classmethod
    def from_pretrained(cls, ref: str) -> BertEncoder:
        """Load a saved BERT directory (or a bertkit alias such as ``minilm-l6``) without ``transformers``."""
        from bertkit.nn.loading import build, read_checkpoint

        config, state = read_checkpoint(ref)
        return build(cls, BertShape.from_config(config), state)
