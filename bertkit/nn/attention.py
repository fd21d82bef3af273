"""Attention, the one operation that lets every token look at every other token.

Mask convention, used everywhere in ``bertkit.nn``: a **boolean** tensor where **True means "this
query may attend to this key"** and False means "never look there". It must broadcast to the
attention scores, shape ``(batch, heads, q_len, k_len)``; a padding mask built by ``padding_mask``
has shape ``(batch, 1, 1, k_len)`` and hides the padding keys from every query. This is the
convention of ``torch.nn.functional.scaled_dot_product_attention``'s boolean ``attn_mask``, and the
opposite of ``torch.nn.MultiheadAttention``'s ``key_padding_mask`` (where True means "ignore").

What this does not handle: a query with no key it may attend to (a mask row that is all False)
gives NaN, since softmax over nothing is undefined; BERT never produces one, because the [CLS] key
is always real. Cross-attention and key/value caches are left out: BERT needs neither.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq) with 1 = real token, 0 = padding  ->  (batch, 1, 1, seq) boolean, True = attend."""
    return attention_mask.bool()[:, None, None, :]


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 mask: torch.Tensor | None = None,
                                 dropout: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d_k) V, returning the output and the attention weights.

    query (..., q_len, d_k), key (..., k_len, d_k), value (..., k_len, d_v) -> output (..., q_len, d_v)
    and weights (..., q_len, k_len), each row of which sums to 1. ``mask``: True = attend (see above).
    ``dropout`` (training only) drops weights before they mix the values; the returned weights are the
    ones before dropout, i.e. what the model attends to.
    """
    d_k = query.size(-1)
    # How well each query matches each key. Scaling by 1/√d_k keeps the scores' spread independent of
    # the head size, so softmax does not saturate into a one-hot choice as d_k grows. (Multiplying by
    # the reciprocal rather than dividing rounds exactly as transformers does: bit-identical results.)
    scores = query @ key.transpose(-2, -1) * (1.0 / math.sqrt(d_k))  # (..., q_len, k_len)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: masked keys get no weight
    weights = scores.softmax(dim=-1)  # (..., q_len, k_len)
    mixing = dropout(weights) if dropout is not None else weights
    return mixing @ value, weights  # (..., q_len, d_v), (..., q_len, k_len)


class MultiHeadAttention(nn.Module):
    """Self-attention in ``n_heads`` independent subspaces, concatenated and projected back.

    Each head gets its own d_model / n_heads slice of the query, key and value projections, so
    different heads can attend to different things (the previous token, the [SEP], the same word)
    at the cost of one full-width attention.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, d_model) -> (batch, heads, seq, d_head)"""
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (batch, seq, d_model) -> output (batch, seq, d_model), weights (batch, heads, seq, seq)."""
        batch, seq, d_model = x.shape
        q = self.split_heads(self.query(x))  # (batch, heads, seq, d_head)
        k = self.split_heads(self.key(x))  # (batch, heads, seq, d_head)
        v = self.split_heads(self.value(x))  # (batch, heads, seq, d_head)
        context, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout)  # (batch, heads, seq, d_head)
        context = context.transpose(1, 2).reshape(batch, seq, d_model)  # heads side by side again
        return self.output(context), weights
