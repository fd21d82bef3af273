"""The QA task's recipe options, its Spec and model head, and the model card's notes.

What it does: ``Options`` (the recipe's ``qa:`` section, registered with the recipe loader on
import), ``Spec`` (the metric language and the validation windows ``compute_metrics`` needs), the
model class, the metric that picks the best checkpoint and the card notes. What it does not do:
read data (``qa.data``) or touch a tokenizer (``qa.featurize``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bertkit.recipe import Recipe, register_task_options

PIPELINE_TAG = "question-answering"
# predict's own input check (evaluation.predict checks data.text_column for single-text tasks).
INPUT_COLUMNS = ("question", "context")


@dataclass(frozen=True)
class Options:
    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"  # {"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"}
    id_column: str = "id"  # made up from the row number when the data has none
    version_2_with_negative: bool = False  # SQuAD 2.0: some questions have no answer in the context
    doc_stride: int = 128  # tokens shared by consecutive windows of a long context (at most half a window)
    n_best: int = 20  # start and end candidates per window, and answers kept per question
    max_answer_length: int = 30  # in tokens
    null_score_diff_threshold: float = 0.0  # v2: answer "" when null score - best span score > this
    # Gold answers whose answer_start does not point at their text: move them to the nearest
    # occurrence of the text (fix), drop them (drop), or stop (error). Always counted and shown.
    bad_answers: Literal["fix", "drop", "error"] = "fix"
    metric_lang: Literal["auto", "en", "ja"] = "auto"  # auto: ja (JGLUE char F1) for Japanese tokenizers or text
    top_k: int = 5  # alternatives listed per question by `bertkit predict`

    def check(self, recipe: Recipe) -> list[str]:
        problems = []
        if self.doc_stride < 0:
            problems.append(f"'qa.doc_stride' must be 0 or more, got {self.doc_stride}")
        for key in ("n_best", "max_answer_length", "top_k"):
            if getattr(self, key) < 1:
                problems.append(f"'qa.{key}' must be at least 1, got {getattr(self, key)}")
        return problems


register_task_options("qa", Options)


@dataclass
class Spec:
    """What QA needs beyond the model: the metric language and the validation windows."""

    lang: str = "en"  # set by features() from qa.metric_lang and the tokenizer
    validation: Any = None  # validation windows, kept by features() for compute_metrics

    def model_kwargs(self) -> dict[str, Any]:
        return {}


def model_class() -> Any:
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering


def best_metric(recipe: Recipe) -> tuple[str, bool]:
    name = recipe.metric_for_best_model or "f1"
    return name, "loss" not in name


def card_notes(recipe: Recipe, spec: Spec) -> list[str]:
    opts = recipe.options
    notes = [f"Extractive QA: answers are spans of the context, at most {opts.max_answer_length} tokens; contexts "
             f"longer than max_length={recipe.max_length} are read in windows overlapping by {opts.doc_stride} tokens.",
             f"EM/F1 use the {'JGLUE character-level (Japanese)' if spec.lang == 'ja' else 'official SQuAD (English)'} "
             "normalisation."]
    if opts.version_2_with_negative:
        notes.append(f"SQuAD 2.0 style: the model may answer \"\" (no answer); null_score_diff_threshold = "
                     f"{opts.null_score_diff_threshold}.")
    return notes
