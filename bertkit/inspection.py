"""``bertkit inspect``: pictures of what happens inside a model.

- ``attention``: the attention weights of one head, or of every head of one layer as a grid, for one
  text. Rows are the token that attends (the query), columns the token it attends to (the key);
  each row sums to 1. The weights are the ones ``transformers`` computes (eager attention, so the
  softmax is materialised); ``bertkit.nn`` reproduces them exactly.
- ``positional-encoding``: the sinusoidal table of ``bertkit.nn.positional`` and the dot product of
  every pair of positions, which depends only on their distance.

Not handled: text pairs, and more than ``MAX_TOKENS`` tokens (a longer text is cut, and it is said);
a heatmap of hundreds of tokens shows nothing a person can read.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bertkit.errors import BertkitError

MAX_TOKENS = 96


def attention_weights(model_ref: str, text: str, max_tokens: int = MAX_TOKENS) -> tuple[list[str], np.ndarray, bool]:
    """Tokens, the (layers, heads, seq, seq) attention weights for ``text``, and whether it was cut."""
    import torch
    from transformers import AutoModel

    from bertkit import models
    from bertkit.embed import feature_rows

    if not text.strip():
        raise BertkitError("the text to inspect is empty", 'give a sentence, e.g. "The movie was great."')
    tokenizer = models.load_tokenizer(model_ref)
    model = models.load_model(model_ref, AutoModel, attn_implementation="eager").eval()
    limit = min(max_tokens, getattr(model.config, "max_position_embeddings", max_tokens))
    (row,), cut = feature_rows(tokenizer, model, [text], limit)
    batch = {key: torch.tensor([values]) for key, values in row.items()}  # a batch of one: no padding
    with torch.inference_mode():
        out = model(**batch, output_attentions=True)
    if not getattr(out, "attentions", None):
        raise BertkitError(f"model {model_ref} does not return attention weights",
                           "inspect attention works with BERT-family encoders saved by transformers")
    weights = torch.stack(out.attentions)[:, 0].float().numpy()  # (layers, heads, seq, seq)
    return tokenizer.convert_ids_to_tokens(row["input_ids"]), weights, bool(cut)


def _pick(index: int | None, count: int, what: str, option: str) -> int | None:
    if index is None:
        return None
    if not -count <= index < count:
        raise BertkitError(f"{what} {index} does not exist: the model has {count} {what}s (0 to {count - 1})",
                           f"use {option} between 0 and {count - 1}, or -1 for the last")
    return index % count


def plot_attention(tokens: list[str], weights: np.ndarray, path: str | Path, *, layer: int | None = None,
                   head: int | None = None) -> tuple[int, int | None]:
    """One head's map (``head`` given) or a grid of every head of ``layer`` (default: the last layer).

    Returns the (layer, head) drawn, counted from 0.
    """
    from bertkit import plotting

    n_layers, n_heads = weights.shape[:2]
    layer = _pick(-1 if layer is None else layer, n_layers, "layer", "--layer")
    head = _pick(head, n_heads, "head", "--head")
    plt = plotting.pyplot()
    plotting.use_cjk_font(plt, tokens)
    n = len(tokens)
    labelled = n <= 48
    if head is not None:
        size = min(3.5 + 0.28 * n, 20.0)
        fig, ax = plt.subplots(figsize=(size + 1.5, size))
        image = plotting.heatmap(ax, weights[layer, head], tokens if labelled else None, tokens if labelled else None,
                                 cmap="viridis", vmin=0.0, aspect="equal")
        fig.colorbar(image, ax=ax, label="attention weight")
        ax.set_xlabel("attended to (key)")
        ax.set_ylabel("attending (query)")
        ax.set_title(f"layer {layer}, head {head}")
    else:
        cols = math.ceil(math.sqrt(n_heads))
        rows = math.ceil(n_heads / cols)
        cell = min(2.2 + 0.16 * n, 8.0)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell), squeeze=False)
        for h, ax in enumerate(axes.flat):
            if h >= n_heads:
                ax.axis("off")
                continue
            small = labelled and n <= 24
            plotting.heatmap(ax, weights[layer, h], tokens if small else None, tokens if small else None,
                             cmap="viridis", vmin=0.0, fontsize=6, aspect="equal")
            if not small:
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(f"head {h}", fontsize=9)
        fig.suptitle(f"layer {layer}: attention of every head (rows attend to columns; colour scaled per head)")
    fig.tight_layout()
    plotting.save(fig, path)
    return layer, head


def plot_positional_encoding(d_model: int, max_len: int, path: str | Path) -> None:
    """The (max_len, d_model) sinusoidal table beside the (max_len, max_len) dot products of its rows."""
    from bertkit import plotting
    from bertkit.nn.positional import sinusoidal_encoding

    if not 1 <= d_model <= 8192:
        raise BertkitError(f"--d-model must be between 1 and 8192, got {d_model}", "e.g. --d-model 128")
    if not 1 <= max_len <= 4096:
        raise BertkitError(f"--max-len must be between 1 and 4096, got {max_len}", "e.g. --max-len 100")
    table = sinusoidal_encoding(max_len, d_model).numpy()  # (max_len, d_model)
    plt = plotting.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    image = plotting.heatmap(left, table, None, None, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    left.set_xlabel("dimension (even: sin, odd: cos; wavelength grows to the right)")
    left.set_ylabel("position")
    left.set_title(f"sinusoidal positional encoding, d_model={d_model}")
    fig.colorbar(image, ax=left)
    dots = table @ table.T  # (max_len, max_len)
    image = plotting.heatmap(right, dots, None, None, cmap="viridis")
    right.set_xlabel("position j")
    right.set_ylabel("position i")
    right.set_title("PE[i] · PE[j]: depends only on i - j")
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    plotting.save(fig, path)
