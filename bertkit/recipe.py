"""Recipes: YAML + dotted command-line overrides -> one validated, frozen ``Recipe``.

A recipe file is plain data. ``load`` reads it safely, applies ``key=value`` overrides (the command
line wins), then checks *everything* and reports every problem in one error: unknown keys (with the
closest valid key), wrong types, out-of-range values, and ``training:`` keys that
``transformers.TrainingArguments`` does not know. ``save`` writes the resolved recipe so an output
directory alone is enough to rerun a job.

What this module does not do: read data or models (``data.py`` and ``models.py`` do), or decide
task-specific defaults beyond the option dataclasses each task declares.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from bertkit.errors import BertkitError

TaskName = Literal["classification", "ner", "qa", "mlm"]


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and which columns hold what."""

    dataset: str | None = None  # hub dataset id; then train/validation/test name splits
    config: str | None = None  # hub dataset configuration
    train: str | None = None  # local file (or hub split name when `dataset` is set)
    validation: str | None = None
    test: str | None = None
    format: Literal["auto", "csv", "tsv", "json", "jsonl", "parquet", "conll", "squad", "text"] = "auto"
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    # Fraction of train held out when there is no validation split. Default (null): 0.1 when there is
    # no test split either (something must be scored) or the task measures held-out data (mlm), else 0:
    # with a test split, train on every row as the standard recipe does. 0: never hold out.
    validation_size: float | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    empty_text: Literal["drop", "error"] = "drop"


@dataclass(frozen=True)
class JapaneseConfig:
    """How Japanese text reaches the tokenizer (the ``japanese:`` section; any task)."""

    # MeCab dictionary of a MeCab-splitting BertJapaneseTokenizer. auto: the tokenizer's own config
    # (transformers' default is unidic_lite; Tohoku v1 models were built with ipadic, NICT's with jumandic).
    mecab_dic: Literal["auto", "ipadic", "unidic_lite", "unidic", "jumandic"] = "auto"
    # Segment text into words joined by spaces before the tokenizer, for models trained on segmented
    # text (ku-nlp DeBERTa-v2 and nlp-waseda RoBERTa: jumanpp). Offsets still point into the raw text.
    pre_segment: Literal["none", "jumanpp", "mecab"] = "none"


# Each task module registers the dataclass behind its recipe section (classification:, ner:, ...).
TASK_OPTIONS: dict[str, type] = {}


def register_task_options(task: str, options_type: type) -> None:
    """Let a task module declare the dataclass behind its recipe section (e.g. ``ner:``)."""
    TASK_OPTIONS[task] = options_type


# bertkit's defaults for TrainingArguments; the recipe's `training:` block overrides any of them.
TRAINING_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 3,
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "weight_decay": 0.01,
    "warmup_steps": 0.06,  # a float < 1 is a fraction of the total steps
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 10,
    "load_best_model_at_end": True,
    "train_sampling_strategy": "group_by_length",
    "report_to": "none",
}

# The trackers `training.report_to` may name: the Trainer's callback for each logs the loss and every
# evaluation, bertkit.tracking adds the final metrics, the recipe and the card. Each maps to the module
# that must import, and to the install command the error names when it does not.
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "pip install 'bertkit[tracking]'"),
    "mlflow": ("mlflow", "pip install 'bertkit[tracking]'"),
    "trackio": ("trackio", "pip install trackio"),  # not in the extra: it swaps serve's uvicorn for uvloop/httptools
}


def tracker_installed(name: str) -> bool:
    """Whether tracker ``name``'s package can be imported (found, not imported: the check stays fast)."""
    import importlib.util

    return importlib.util.find_spec(TRACKERS[name][0]) is not None


@dataclass(frozen=True)
class Recipe:
    task: TaskName
    model: str
    output_dir: str
    data: DataConfig
    japanese: JapaneseConfig = field(default_factory=JapaneseConfig)
    seed: int = 42
    max_length: int = 256
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    metric_for_best_model: str | None = None  # default chosen by the task
    early_stopping_patience: int | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False  # allow loading .bin (pickle) weights; off because pickle runs code
    # Attention-probability dropout while training. 0 lets PyTorch's fused attention kernel run on CPU
    # (with dropout it falls back to the unfused path: 2.1x slower steps, MiniLM 16x384, bench/RESULTS.md);
    # null keeps the model's own value (0.1 for BERT). Hidden-layer dropout is untouched.
    attention_dropout: float | None = 0.0
    resume: bool = False  # continue from the last checkpoint in <output_dir>.partial (as --resume does)
    options: Any = None  # the task's options dataclass (the YAML section named after the task)
    training: dict[str, Any] = field(default_factory=dict)
    # bertkit tune's search space: recipe key -> {low, high, log} or [choices]; null: tune.DEFAULT_SPACE.
    # finetune ignores it.
    tune: dict[str, Any] | None = None
    source: str | None = None  # file the recipe came from

    def training_args(self) -> dict[str, Any]:
        """TrainingArguments keyword arguments: bertkit defaults, then the recipe's block."""
        return {**TRAINING_DEFAULTS, "seed": self.seed, **self.training}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        out.pop("resume")  # how this run started, not a setting to repeat
        options = out.pop("options")
        if options is not None:
            out[self.task] = options
        if out.get("tune") is None:
            out.pop("tune", None)
        out["training"] = {**TRAINING_DEFAULTS, **self.training}
        return out


TOP_LEVEL = {f.name for f in dataclasses.fields(Recipe)} - {"options", "source", "data", "japanese", "training"}


# ---------------------------------------------------------------------------------------------
# Reading and overriding


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only: no ``!!python/...`` tags) that also refuses a key given
    twice in one mapping, which YAML would otherwise settle silently in favour of the last."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise BertkitError(
            f"recipe file {path} does not exist",
            "run `bertkit recipes` to list the shipped recipes, or give the path to your YAML file",
        )
    if path.is_dir():
        raise BertkitError(f"recipe {path} is a directory, not a YAML file", "give the path to a .yaml file")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        hint = ("recipes are plain data: remove the !!python tag" if "python/" in problem
                else "fix the YAML syntax there")
        raise BertkitError(f"recipe {path} is not valid YAML{where}: {problem}", hint) from exc
    except UnicodeDecodeError as exc:
        raise BertkitError(f"recipe {path} is not UTF-8 text", "save the recipe as UTF-8") from exc
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise BertkitError(f"recipe {path} must be a YAML mapping of keys to values, not a {type(loaded).__name__}")
    return loaded


def parse_override(text: str) -> tuple[list[str], Any]:
    """``training.learning_rate=3e-5`` -> (["training", "learning_rate"], 3e-05)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise BertkitError(f"override '{text}' is not of the form key=value", "e.g. training.learning_rate=3e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    # YAML reads 3e-5 as a string (it wants 3.0e-5); users mean the number.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            pass
    return key.strip().split("."), value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    tree = dict(tree)
    for text in overrides:
        path, value = parse_override(text)
        node = tree
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise BertkitError(f"override '{text}': '{part}' is a value, not a section", f"set {part}=... instead")
            node[part] = child = dict(child)
            node = child
        node[path[-1]] = value
    return tree


# ---------------------------------------------------------------------------------------------
# Validation


def _suggest(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _suggest_nested(key: str, top_level: typing.Iterable[str]) -> str:
    """Like ``_suggest``, and also finds a top-level key that belongs in ``data:`` or ``training:``."""
    found = _suggest(key, top_level)
    if found:
        return found
    from transformers import TrainingArguments

    for section, names in (("data", [f.name for f in dataclasses.fields(DataConfig)]),
                           ("training", [f.name for f in dataclasses.fields(TrainingArguments) if f.init])):
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.8)
        if close:
            return f"; did you mean '{section}.{close[0]}'?"
    return ""


def _type_ok(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Check ``value`` against a dataclass annotation; return (ok, value converted where lossless)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True, value
    if origin is Literal:
        return value in typing.get_args(annotation), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            ok, converted = _type_ok(value, arg)
            if ok:
                return True, converted
        return False, value
    if annotation is type(None):
        return value is None, value
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, list):
            return False, value
        return all(_type_ok(v, item)[0] for v in value), value
    if origin is dict:
        return isinstance(value, dict), value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    return True, value


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _build(cls: type, values: dict[str, Any], prefix: str, errors: list[str], fixed: dict[str, Any] | None = None) -> Any:
    """Instantiate ``cls`` from ``values``, appending a message to ``errors`` for every bad key.

    ``fixed`` holds fields already built elsewhere (they are not user keys at this level).
    """
    fixed = fixed or {}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    kwargs = dict(fixed)
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in names:
            errors.append(f"unknown key '{where}'{_suggest(key, names)}")
            continue
        if dataclasses.is_dataclass(hints[key]):  # a nested section, e.g. classification.windows
            if not isinstance(value, dict):
                errors.append(f"'{where}' must be a mapping of {', '.join(f.name for f in dataclasses.fields(hints[key]))}")
                continue
            built = _build(hints[key], value, f"{where}.", errors)
            if built is not None:  # else the error is recorded and the default stands in
                kwargs[key] = built
            continue
        ok, converted = _type_ok(value, hints[key])
        if not ok:
            errors.append(f"'{where}' must be {_describe(hints[key])}, got {value!r} (override with {where}=...)")
            continue
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        for name in missing:
            if not any(f"'{prefix}{name}'" in e for e in errors):
                errors.append(f"missing required key '{prefix}{name}' (add it to the YAML or pass {prefix}{name}=...)")
        if not missing:
            errors.append(str(exc))
        return None


def _scalar_type(annotation: Any) -> type | None:
    """float, int or bool when a TrainingArguments annotation is (optionally) one of them, else None."""
    args = set(typing.get_args(annotation)) or {annotation}
    for kind in (float, int, bool):
        if kind in args and args - {kind, type(None)} <= set():
            return kind
    return None


def _check_training(training: Any, errors: list[str]) -> dict[str, Any]:
    if training is None:
        return {}
    if not isinstance(training, dict):
        errors.append("'training' must be a mapping of TrainingArguments keys")
        return {}
    from transformers import TrainingArguments

    fields = {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}
    owned = {"output_dir": "output_dir", "seed": "seed", "bf16": "precision", "fp16": "precision"}
    checked = {}
    for key, value in training.items():
        if key in owned:
            errors.append(f"'training.{key}' is set by bertkit; use the top-level key '{owned[key]}' instead")
            continue
        if key not in fields:
            errors.append(f"unknown key 'training.{key}' (not a TrainingArguments field){_suggest(key, fields)}")
            continue
        expected = _scalar_type(fields[key].type)
        if value is False and key.endswith("_strategy"):
            value = "no"  # YAML 1.1 reads `eval_strategy: no` (and the override `=no`) as false
        if expected in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if expected is float:
                value = float(value)
            elif not float(value).is_integer():
                errors.append(f"'training.{key}' must be an integer, got {value!r}")
                continue
            else:
                value = int(value)
        elif expected is bool and not isinstance(value, bool):
            errors.append(f"'training.{key}' must be true or false, got {value!r}")
            continue
        elif expected in (int, float) and value is not None and (isinstance(value, bool)
                                                                 or not isinstance(value, (int, float))):
            errors.append(f"'training.{key}' must be a number, got {value!r}")
            continue
        checked[key] = value
    if "report_to" in checked:
        checked["report_to"] = _check_report_to(checked["report_to"], errors)
    for key in ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size"):
        if key in checked and isinstance(checked[key], (int, float)) and checked[key] <= 0:
            errors.append(f"'training.{key}' must be positive, got {checked[key]!r}")
    return checked


def _check_report_to(value: Any, errors: list[str]) -> Any:
    """``training.report_to`` as the Trainer takes it ("none", a tracker name, or a list of them): a comma
    list becomes a list; an unknown name or a tracker whose package is missing is an error now, not a
    failure after the data is loaded (the Trainer would only notice when it builds its callbacks)."""
    accepted = "none, " + ", ".join(TRACKERS) + " (a list or a comma list for several)"
    if value is None:
        return "none"
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        errors.append(f"'training.report_to' must be one of {accepted}, got {value!r}")
        return value
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))  # a name twice would add two callbacks
    if names in ([], ["none"]):
        return "none"
    for name in names:
        if name not in TRACKERS:
            why = "cannot be combined with a tracker" if name == "none" else "is not a tracker bertkit reports to"
            errors.append(f"'training.report_to': {name!r} {why}; use {accepted}{_suggest(name, TRACKERS)}")
        elif not tracker_installed(name):
            errors.append(f"'training.report_to': {name} is not installed; run {TRACKERS[name][1]}, "
                          f"or set training.report_to=none")
    return names[0] if len(names) == 1 else names


def _check_ranges(recipe: Recipe, errors: list[str], for_training: bool) -> None:
    if recipe.max_length < 8:
        errors.append(f"'max_length' must be at least 8, got {recipe.max_length}")
    if recipe.attention_dropout is not None and not 0 <= recipe.attention_dropout < 1:
        errors.append(f"'attention_dropout' must be at least 0 and below 1 (or null), got {recipe.attention_dropout}")
    if recipe.data.validation_size is not None and not 0 <= recipe.data.validation_size < 1:
        errors.append(f"'data.validation_size' must be between 0 and 1, got {recipe.data.validation_size}")
    for key in ("max_train_samples", "max_eval_samples"):
        value = getattr(recipe.data, key)
        if value is not None and value <= 0:
            errors.append(f"'data.{key}' must be positive, got {value}")
    if recipe.early_stopping_patience is not None and recipe.early_stopping_patience < 1:
        errors.append(f"'early_stopping_patience' must be at least 1, got {recipe.early_stopping_patience}")
    if for_training and recipe.data.dataset is None and recipe.data.train is None:
        errors.append("no training data: set 'data.train' to a file (data.train=path.jsonl) or 'data.dataset' to a hub id")
    checker = getattr(recipe.options, "check", None)
    if callable(checker):
        errors.extend(checker(recipe))


def from_dict(tree: dict[str, Any], source: str | None = None, for_training: bool = True) -> Recipe:
    """Validate a recipe mapping; raise one BertkitError listing every problem.

    ``for_training=False`` (evaluate, predict) does not require training data.
    """
    errors: list[str] = []
    tree = dict(tree)
    task = tree.get("task")
    if task not in TASK_OPTIONS:
        _load_task_modules()
    if task is None:
        errors.append("missing required key 'task' (one of: " + ", ".join(sorted(TASK_OPTIONS)) + ")")
    elif task not in TASK_OPTIONS:
        errors.append(f"'task' must be one of {', '.join(sorted(TASK_OPTIONS))}, got {task!r}{_suggest(str(task), TASK_OPTIONS)}")
    section_names = set(TASK_OPTIONS)
    options_values = tree.pop(task, None) if task in TASK_OPTIONS else None
    for other in section_names & set(tree):
        errors.append(f"section '{other}:' does not apply to task '{task}'; remove it")
        tree.pop(other)
    data_values = tree.pop("data", None) or {}
    training_values = tree.pop("training", None)
    if not isinstance(data_values, dict):
        errors.append("'data' must be a mapping (data: {train: ..., text_column: ...})")
        data_values = {}
    data = _build(DataConfig, data_values, "data.", errors)
    japanese_values = tree.pop("japanese", None) or {}
    if not isinstance(japanese_values, dict):
        errors.append("'japanese' must be a mapping (japanese: {mecab_dic: ipadic, pre_segment: none})")
        japanese_values = {}
    japanese = _build(JapaneseConfig, japanese_values, "japanese.", errors)
    options = None
    if task in TASK_OPTIONS:
        if options_values is not None and not isinstance(options_values, dict):
            errors.append(f"'{task}' must be a mapping of options")
            options_values = None
        options = _build(TASK_OPTIONS[task], options_values or {}, f"{task}.", errors)
    training = _check_training(training_values, errors)
    _one_best_metric(tree, training, errors)
    for key in list(tree):
        if key not in TOP_LEVEL:
            errors.append(f"unknown key '{key}'{_suggest_nested(key, TOP_LEVEL | section_names | {'data', 'japanese', 'training'})}")
            tree.pop(key)
    recipe = None
    if data is not None and japanese is not None and options is not None and task in TASK_OPTIONS:
        fixed = {"data": data, "japanese": japanese, "options": options, "training": training, "source": source}
        recipe = _build(Recipe, tree, "", errors, fixed=fixed)
    if recipe is not None:
        _check_ranges(recipe, errors, for_training)
    if errors:
        where = f"recipe {source}" if source else "recipe"
        listing = "\n  - ".join(errors)
        raise BertkitError(f"{where} has {len(errors)} problem{'s' if len(errors) > 1 else ''}:\n  - {listing}",
                           "fix them in the YAML or override on the command line, e.g. key=value")
    return recipe


def _one_best_metric(tree: dict[str, Any], training: dict[str, Any], errors: list[str]) -> None:
    """One best-model metric, whichever way it is written: ``training.metric_for_best_model`` becomes
    the top-level ``metric_for_best_model`` (the task derives from its name whether greater is better,
    so a loss is minimised); ``training.greater_is_better`` is refused, as it could only contradict."""
    if "greater_is_better" in training:
        errors.append("'training.greater_is_better' is derived from the best-model metric's name (a loss, mse or mae "
                      "is minimised, every other metric maximised); remove it")
        training.pop("greater_is_better")
    if "metric_for_best_model" not in training:
        return
    name = training.pop("metric_for_best_model")
    top = tree.get("metric_for_best_model")
    if top is not None and top != name:
        errors.append(f"the best-model metric is given twice: metric_for_best_model={top!r} and "
                      f"training.metric_for_best_model={name!r}; keep one")
    tree["metric_for_best_model"] = name


def _load_task_modules() -> None:
    """Importing the task package registers each task's options section."""
    import bertkit.tasks  # noqa: F401


def _resolve_data_paths(tree: dict[str, Any], recipe_path: Path) -> dict[str, Any]:
    """Relative data paths written in a YAML file: the current directory first, then the recipe's
    own directory, then its parent (a project root that holds ``recipes/``). Overrides given on the
    command line are applied afterwards and stay relative to the current directory."""
    data = tree.get("data")
    if not isinstance(data, dict) or data.get("dataset"):
        return tree
    data = dict(data)
    base = recipe_path.resolve().parent
    for key in ("train", "validation", "test"):
        value = data.get(key)
        if not isinstance(value, str) or Path(value).is_absolute() or Path(value).exists():
            continue
        for root in (base, base.parent):
            if (root / value).exists():
                data[key] = str(root / value)
                break
    return {**tree, "data": data}


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    _load_task_modules()
    tree = _resolve_data_paths(read_yaml(path), Path(path))
    tree = apply_overrides(tree, overrides or [])
    return from_dict(tree, source=str(path))


def save(recipe: Recipe, path: str | Path, notes: list[str] | None = None) -> None:
    """Write the resolved recipe (every default filled in) as YAML that ``load`` accepts again.

    ``notes`` become comment lines at the top (e.g. the effective batch size and devices).
    """
    tree = recipe.to_dict()
    header = "# Resolved recipe written by bertkit; rerun with: bertkit finetune recipe.yaml --overwrite\n"
    header += "".join(f"# {line}\n" for line in notes or [])
    Path(path).write_text(header + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True), encoding="utf-8")


def build_section(cls: type, values: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    """A recipe-like section of another command (e.g. ``distill:``) built and checked as a recipe's own
    sections are: unknown keys with the closest name, types, nested sections; problems go to ``errors``."""
    return _build(cls, values, prefix, errors)
