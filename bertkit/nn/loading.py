"""Map a ``transformers`` BERT checkpoint's parameter names onto ``bertkit.nn.BertEncoder``'s.

The tensors are the same; only the names differ::

    embeddings.word_embeddings                ->  embeddings.word
    encoder.layer.3.attention.self.query      ->  layers.3.attention.query
    encoder.layer.3.attention.output.dense    ->  layers.3.attention.output
    encoder.layer.3.intermediate.dense        ->  layers.3.feed_forward.expand
    encoder.layer.3.output.dense              ->  layers.3.feed_forward.contract
    encoder.layer.3.output.LayerNorm          ->  layers.3.feed_forward_norm

Task models keep the body under ``bert.``; their heads (``cls.*``, ``classifier.*``) and buffers
such as ``position_ids`` are left out. Old TensorFlow-converted LayerNorm names (gamma/beta) are read too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

OUTSIDE_LAYERS = {
    "embeddings.word_embeddings": "embeddings.word",
    "embeddings.position_embeddings": "embeddings.position",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
    "pooler.dense": "pooler.dense",
}
IN_A_LAYER = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.output",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "feed_forward.expand",
    "output.dense": "feed_forward.contract",
    "output.LayerNorm": "feed_forward_norm",
}


def rename(name: str) -> str | None:
    """Our name for a ``transformers`` parameter name, or None for one BertEncoder does not have."""
    name = name.removeprefix("bert.")
    module, _, param = name.rpartition(".")
    param = {"gamma": "weight", "beta": "bias"}.get(param, param)
    layer = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", module)
    if layer:
        inside = IN_A_LAYER.get(layer[2])
        return f"layers.{layer[1]}.{inside}.{param}" if inside else None
    outside = OUTSIDE_LAYERS.get(module)
    return f"{outside}.{param}" if outside else None


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted = {}
    for name, tensor in state.items():
        ours = rename(name)
        if ours is not None:
            converted[ours] = tensor
    return converted


def build(cls: Any, shape: Any, state: dict[str, torch.Tensor]) -> Any:
    """A ``cls(shape)`` holding the checkpoint's weights, in eval mode; no pooler if none was saved."""
    converted = convert_state_dict(state)
    if not converted:
        raise ValueError("the checkpoint holds no BERT parameters (no embeddings.* or encoder.layer.* names)")
    model = cls(shape, with_pooler="pooler.dense.weight" in converted)
    model.load_state_dict(converted, strict=True)  # any missing or surplus name is an error
    return model.eval()


def read_checkpoint(ref: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """config.json and every *.safetensors shard of a local model directory (or bertkit alias)."""
    from safetensors.torch import load_file

    from bertkit import models
    from bertkit.errors import BertkitError

    location, _ = models.resolve(ref)
    directory = Path(location)
    if not directory.is_dir():
        raise BertkitError(f"{ref} is not a local directory, so it cannot be read without transformers",
                           "load it with transformers.BertModel and use BertEncoder.from_transformers(model)")
    models.check_weights(location, allow_pickle=False)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(directory.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    return config, state
