"""Tasks: the contract every task provides (``Task``) and the one table of tasks (``TASKS``).

A task is a module (or package) with the functions and constants ``Task`` lists; ``get(name)`` turns
it into a ``Task``, checking that nothing required is missing, so a caller uses ``task.features(...)``
and tests an optional part with ``task.clean_split is not None``, never ``hasattr``.

Adding a task = one package under ``bertkit/tasks/`` and one line in ``TASKS``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

TASKS = {
    "classification": "bertkit.tasks.classification",
    "ner": "bertkit.tasks.ner",
    "qa": "bertkit.tasks.qa",
    "mlm": "bertkit.tasks.mlm",
}


@dataclass(frozen=True)
class Task:
    """What train, evaluate and predict call on a task. Required first, then optional parts (None
    where a task has none) and constants with defaults."""

    name: str
    Options: type  # the dataclass behind the recipe section named after the task
    model_class: Callable[[], Any]  # the transformers Auto class to load
    prepare: Callable[..., Any]  # (raw, recipe) -> Spec: check columns/labels, the label set
    spec_from_model: Callable[..., Any]  # (config, recipe) -> the same Spec, from a saved model
    features: Callable[..., Any]  # (dataset, tokenizer, recipe, spec, split) -> (Dataset, length report)
    collator: Callable[..., Any]  # (tokenizer, spec) -> the Trainer's data collator
    compute_metrics: Callable[..., Any]  # (spec, recipe) -> the Trainer's metric function (several processes)
    # (model, features, tokenizer, precision, batch_size, desc, recipe) -> raw outputs, one entry per raw row
    # (classification: windows combined per text) or per window (ner, qa: decoded later)
    infer: Callable[..., Any]
    report: Callable[..., dict[str, Any]]  # (spec, recipe, outputs, features) -> metrics.json's split entry
    prediction_rows: Callable[..., list[dict[str, Any]]]  # (spec, recipe, outputs, raw) -> predictions.jsonl
    predict_batch: Callable[..., list[dict[str, Any]]]  # (spec, recipe, tokenizer, model, rows, precision, batch)
    best_metric: Callable[..., tuple[str, bool]]  # recipe -> (metric name, greater is better)
    clean_split: Callable[..., Any] | None = None  # (dataset, recipe, split) -> (dataset, rows dropped)
    stratify_labels: Callable[..., Any] | None = None  # (train, recipe) -> labels to stratify a hold-out by
    class_weights: Callable[..., list[float]] | None = None  # spec -> per-class loss weights
    card_notes: Callable[..., list[str]] | None = None  # (recipe, spec) -> lines for the model card
    artifacts: Callable[..., dict[str, Any]] | None = None  # (spec, recipe, outputs, raw) -> {file: JSON}
    load_raw: Callable[..., Any] | None = None  # recipe -> DatasetDict, instead of data.load (mlm corpora)
    before_training: Callable[..., dict[str, Any]] | None = None  # (prepared, model, evaluate) -> "before" metrics
    # (spec, recipe, validation logits, validation features) -> settings fitted on validation, saved in config.json
    # (classification: decision thresholds, a calibration temperature); {} when the recipe asks for none
    fit_on_validation: Callable[..., dict[str, Any]] | None = None
    # (model, inputs) -> (loss, outputs): the loss without the model's full forward (mlm: the head at
    # masked positions only)
    training_loss: Callable[..., Any] | None = None
    # (cleaned split, recipe) -> the split's inputs as plain text, one string per row: what a domain
    # adaptation may train on (task-adaptive pretraining) and what its leakage guard compares
    unlabeled_text: Callable[..., list[str]] | None = None
    # (prepared, model) -> TrainerCallbacks the task adds after before_training (mlm: the head warm-up)
    training_callbacks: Callable[..., list[Any]] | None = None
    # (tokenizer, raw, recipe, spec) -> the tokenizer the features are made with (mlm: domain words added)
    adapt_tokenizer: Callable[..., Any] | None = None
    PIPELINE_TAG: str | None = None  # the transformers pipeline / hub tag
    TRAINING_DEFAULTS: dict[str, Any] = field(default_factory=dict)  # TrainingArguments the task needs
    INPUT_COLUMNS: tuple[str, ...] | None = None  # several input fields: predict rows are checked by the task
    SCORES_HELD_OUT: bool = False  # always hold out a validation split (mlm measures held-out perplexity)


_REQUIRED = [f.name for f in dataclasses.fields(Task) if f.default is dataclasses.MISSING
             and f.default_factory is dataclasses.MISSING and f.name != "name"]
_OPTIONAL = [f.name for f in dataclasses.fields(Task) if f.name not in _REQUIRED and f.name != "name"]


@lru_cache(maxsize=None)
def get(name: str) -> Task:
    """The task called ``name`` (a key of ``TASKS``), checked against the contract."""
    module = importlib.import_module(TASKS[name])
    missing = [key for key in _REQUIRED if not hasattr(module, key)]
    if missing:
        raise TypeError(f"task module {module.__name__} lacks {', '.join(missing)} (see bertkit.tasks.Task)")
    parts = {key: getattr(module, key) for key in _REQUIRED}
    parts.update({key: getattr(module, key) for key in _OPTIONAL if hasattr(module, key)})
    return Task(name=name, **parts)


def names() -> list[str]:
    return list(TASKS)


for _name in TASKS:  # importing registers each task's recipe section (and checks the contract)
    get(_name)
