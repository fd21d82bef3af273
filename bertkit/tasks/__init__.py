"""Task modules: one file per task, each exposing the same few functions.

Every task module provides:

- ``Options``                    dataclass behind the recipe section named after the task
- ``model_class()``              the ``transformers`` Auto class to load
- ``prepare(raw, recipe)``       check columns/labels on raw splits -> a task ``Spec`` (labels etc.)
- ``spec_from_model(config, recipe)``  the same ``Spec`` recovered from a saved model's config
- ``features(dataset, tokenizer, recipe, spec)``  tokenised ``Dataset`` + a length/truncation report
- ``collator(tokenizer, spec)``  batches padded dynamically (and masked, for mlm)
- ``compute_metrics(spec, recipe)``  the Trainer's per-evaluation metric function
- ``infer(model, features, tokenizer, precision, batch_size, desc)``  raw model outputs for features,
                                 through ``bertkit.inference`` (whatever ``report`` needs)
- ``report(spec, recipe, outputs, features)``  full metrics for ``metrics.json`` (per class etc.)
- ``prediction_rows(spec, recipe, outputs, raw)``  one dict per example for predictions.jsonl
- ``predict_batch(spec, recipe, tokenizer, model, rows, precision, batch_size)``  ``predict`` on raw rows
- ``best_metric(recipe)``        (metric name, greater_is_better) for best-model selection

Optional: ``clean_split(dataset, recipe, split)`` (drop/refuse empty rows, check columns),
``stratify_labels(train, recipe)`` (labels to stratify the held-out validation split by),
``class_weights(spec)``, ``card_notes(recipe, spec)`` (lines for the model card), ``PIPELINE_TAG``,
``artifacts(spec, recipe, outputs, raw)`` ({file name: JSON content} written beside predictions.jsonl),
``load_raw(recipe)`` (read the splits itself instead of ``data.load``: mlm's streamed corpora),
``TRAINING_DEFAULTS`` (TrainingArguments defaults the task needs; the recipe's ``training:`` still wins),
``before_training(prepared, model, trainer)`` (metrics of the starting model, ``metrics.json["before"]``).

Adding a task means adding one module and one line in ``TASKS``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = {
    "classification": "bertkit.tasks.classification",
    "ner": "bertkit.tasks.ner",
    "qa": "bertkit.tasks.qa",
    "mlm": "bertkit.tasks.mlm",
}


def get(task: str) -> ModuleType:
    return importlib.import_module(_MODULES[task])


def names() -> list[str]:
    return list(_MODULES)


for _name in _MODULES:  # importing registers each task's recipe section
    get(_name)
