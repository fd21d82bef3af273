"""The position-wise feed-forward network and the encoder layer that wraps it with attention.

BERT's layer is the original Transformer's "post-LN" layer: each sub-block's output is added to its
input (the residual connection) and *then* layer-normalised::

    x = LayerNorm(x + Dropout(MultiHeadAttention(x)))
    x = LayerNorm(x + Dropout(FeedForward(x)))

(Many later models normalise *before* each sub-block instead, "pre-LN"; that trains more stably
but is not what BERT checkpoints expect.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bertkit.nn.attention import MultiHeadAttention


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU that some checkpoints were trained with ("gelu_new")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


# The names checkpoints use in their config's ``hidden_act``. "gelu" is the exact x * Φ(x).
ACTIVATIONS = {
    "gelu": nn.functional.gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": nn.functional.relu,
    "silu": nn.functional.silu,
    "swish": nn.functional.silu,
}


class FeedForward(nn.Module):
    """The same two-layer MLP applied to every position on its own: d_model -> d_ff -> d_model.

    Attention mixes information *between* tokens; this is where each token's vector is transformed,
    in a space usually 4x wider (d_ff = 4 * d_model in BERT).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.expand = nn.Linear(d_model, d_ff)
        self.activation = ACTIVATIONS[activation]
        self.contract = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, d_model) -> (batch, seq, d_model)"""
        return self.contract(self.activation(self.expand(x)))  # via (batch, seq, d_ff)


class EncoderLayer(nn.Module):
    """One Transformer encoder layer, post-LN as in BERT (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, *, activation: str = "gelu", dropout: float = 0.0,
                 attention_dropout: float = 0.0, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.attention = MultiHeadAttention(d_model, n_heads, attention_dropout)
        self.attention_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.feed_forward = FeedForward(d_model, d_ff, activation)
        self.feed_forward_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (batch, seq, d_model) -> (batch, seq, d_model) and the weights (batch, heads, seq, seq)."""
        attended, weights = self.attention(x, mask)
        x = self.attention_norm(x + self.dropout(attended))
        x = self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))
        return x, weights
