"""The NER task's recipe options, label set and model head.

What it does: ``Options`` (the recipe's ``ner:`` section, registered with the recipe loader on
import), ``Spec`` (the tags a model predicts and the scheme gold tags are read in), the model class
and the metric that picks the best checkpoint. What it does not do: read data or build the label
set from it (``ner.data``), or touch a tokenizer (``ner.featurize``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bertkit.recipe import Recipe, register_task_options


@dataclass(frozen=True)
class Options:
    tokens_column: str = "tokens"  # words of pre-split data
    tags_column: str | None = None  # their tags; default: the first of tags, ner_tags, labels
    entities_column: str = "entities"  # span data: [{"span": [start, end], "type": ...}] beside data.text_column
    tag_scheme: Literal["auto", "IOB1", "IOB2", "BIOES", "IO"] = "auto"  # how the gold tags are written
    label_scheme: Literal["IOB2", "BIOES"] = "IOB2"  # what the model learns to predict
    label_names: list[str] | None = None  # tag names of integer tags 0..n-1, in order
    # Label every sub-token (B- continued as I-), not only each word's first. With word scores
    # averaged over the sub-tokens, +4 to +6 F1 on BC5CDR and NCBI-disease (bench/RESULTS.md, session 9).
    label_all_tokens: bool = True
    stride: int | None = None  # tokens shared by neighbouring windows; default (max_length - 2) // 4
    strict: bool = False  # seqeval's strict mode for metrics (invalid spans score nothing)
    aggregation: Literal["simple", "first", "average", "max"] = "average"  # as transformers' pipeline
    # viterbi: the best well-formed tag sequence of the label scheme; argmax: each word's own best tag
    # (the pipeline's way, which can start an entity with I-)
    decoding: Literal["viterbi", "argmax"] = "viterbi"
    bad_spans: Literal["report", "error"] = "report"  # span data: count problems and go on, or stop

    def check(self, recipe: Recipe) -> list[str]:
        half = (recipe.max_length - 2) // 2
        if self.stride is not None and not 0 <= self.stride <= half:
            return [f"'ner.stride' must be between 0 and (max_length - 2) / 2 = {half}, got {self.stride} "
                    f"(override with ner.stride=...)"]
        return []

    def window_stride(self, max_length: int) -> int:
        return (max_length - 2) // 4 if self.stride is None else self.stride


register_task_options("ner", Options)

PIPELINE_TAG = "token-classification"


@dataclass
class Spec:
    """The label set a NER model predicts, and how gold tags are read."""

    labels: list[str]  # id -> tag, "O" first
    scheme: str  # scheme of the labels (IOB2 or BIOES)
    source_scheme: str | None = None  # scheme of the gold tags; None: detect on each dataset
    class_counts: dict[str, int] = field(default_factory=dict)

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": {tag: i for i, tag in enumerate(self.labels)}}

    @property
    def types(self) -> list[str]:
        return sorted({tag[2:] for tag in self.labels if tag != "O"})


def model_class() -> Any:
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification


def best_metric(recipe: Recipe) -> tuple[str, bool]:
    if recipe.metric_for_best_model:
        name = recipe.metric_for_best_model
        return name, "loss" not in name
    return "f1", True
