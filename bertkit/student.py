"""A smaller copy of a trained encoder: the student ``bertkit distill`` starts from.

``make_student`` keeps K of the teacher's layers, evenly spaced with the last one among them, and
copies embeddings, those layers and the task head weight for weight (as DistilBERT initialises from
its teacher), for any family whose layers are numbered ``layer.N`` / ``layers.N`` in its weights
(BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, DeBERTa, ModernBERT). ALBERT shares one layer and is
refused. What it does not do: train (``bertkit.distill``) or choose K.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError

_LAYER = re.compile(r"(^|\.)(layer|layers)\.(\d+)\.")
_DEPTH_KEYS = ("num_hidden_layers", "n_layers")


def kept_layers(teacher_layers: int, k: int) -> list[int]:
    """K evenly spaced teacher layers, the last among them."""
    return [round((i + 1) * teacher_layers / k) - 1 for i in range(k)]


def layer_count(config: Any) -> tuple[str, int]:
    """(config key, value) of a model config's layer count."""
    for key in _DEPTH_KEYS:
        if isinstance(getattr(config, key, None), int):
            return key, getattr(config, key)
    raise BertkitError(f"cannot tell how many layers a {config.model_type} model has",
                       "give distill.student=MODEL instead of distill.student_layers")


def make_student(teacher_dir: str, model_class: Any, k: int, target: Path) -> dict[str, Any]:
    """Write a K-layer copy of the teacher to ``target`` (weights, config, tokenizer); return the map."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(teacher_dir)
    key, depth = layer_count(config)
    if getattr(config, "num_hidden_groups", 1) != 1 or config.model_type == "albert":
        raise BertkitError("an ALBERT teacher shares its layers, so there are no layers to keep",
                           "give distill.student=MODEL instead of distill.student_layers")
    if not 1 <= k < depth:
        raise BertkitError(f"distill.student_layers={k}, but the teacher has {depth} layers",
                           f"give a number from 1 to {depth - 1}")
    kept = kept_layers(depth, k)
    teacher = model_class.from_pretrained(teacher_dir)
    setattr(config, key, k)
    if hasattr(config, "layer_types") and isinstance(config.layer_types, list):  # e.g. ModernBERT's attention kinds
        config.layer_types = [config.layer_types[i] for i in kept]
    student = model_class.from_config(config)
    source = teacher.state_dict()
    state = {}
    for name in student.state_dict():
        match = _LAYER.search(name)
        origin = name
        if match:
            origin = name[:match.start(3)] + str(kept[int(match.group(3))]) + name[match.end(3):]
        state[name] = source[origin]
    student.load_state_dict(state, strict=True)
    student.save_pretrained(target)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(target)
    return {"teacher_layers": depth, "student_layers": k, "kept": kept}


def same_tokenizer(a: Any, b: Any) -> bool:
    return type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab()
