"""Sinusoidal positional encoding, from "Attention Is All You Need" (Vaswani et al., 2017).

Attention itself is blind to order: shuffle the tokens and each one gets the same output, shuffled.
So a position signal is added to every token embedding. The original Transformer used fixed sines
and cosines of geometrically spaced wavelengths::

    PE[pos, 2i]   = sin(pos / 10000^(2i / d_model))
    PE[pos, 2i+1] = cos(pos / 10000^(2i / d_model))

Each (sin, cos) pair rotates at its own speed as ``pos`` grows, so PE[pos + k] is a fixed rotation
of PE[pos] for any offset k, and the dot product PE[i] · PE[j] depends only on i - j.

BERT does not use this: it *learns* a position table (``bertkit.nn.bert.BertEmbeddings``), which
also caps its input at ``max_position_embeddings`` tokens. This module is here to compare against,
and to draw (``bertkit inspect positional-encoding``). An odd ``d_model`` simply drops the last cosine.
"""

from __future__ import annotations

import torch
from torch import nn


def sinusoidal_encoding(max_len: int, d_model: int) -> torch.Tensor:
    """The (max_len, d_model) table above, in float32 (computed in float64 for accuracy)."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    even = torch.arange(0, d_model, 2, dtype=torch.float64)  # the 2i of each pair: (ceil(d_model/2),)
    angles = position / 10000.0 ** (even / d_model)  # (max_len, ceil(d_model/2))
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)[:, : d_model // 2]
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed table to token embeddings: (batch, seq, d_model) -> (batch, seq, d_model)."""

    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        self.register_buffer("table", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.size(1)
        if seq > self.table.size(0):
            raise ValueError(f"sequence of {seq} tokens is longer than max_len={self.table.size(0)}")
        return x + self.table[:seq]  # (seq, d_model) broadcasts over the batch
