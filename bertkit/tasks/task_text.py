"""The downstream task of a domain adaptation, read as plain text: the probe recipe, its training
inputs for task-adaptive pretraining, and the leakage guard.

An ``adapt-domain`` recipe may name a probe (``mlm.probe.recipe``): a finetune recipe whose task the
adaptation is for. This module

- resolves and checks the probe recipe before any training (``probe_recipe``): a probe must be a
  classification, NER or QA recipe with a validation or test split to score on;
- reads the probe's splits the way ``finetune`` reads them (the task's ``clean_split`` and the same
  validation hold-out) and turns each into unlabelled text through the task's ``unlabeled_text``
  (classification texts, NER words joined, QA contexts): ``split_texts``. ``mlm.task_text`` and
  ``data.train: task`` add the training inputs to the adaptation corpus (task-adaptive pretraining,
  Gururangan et al. 2020, "Don't Stop Pretraining");
- compares the adaptation corpus with the probe's validation and test inputs (``overlap``): both are cut
  into sentences, normalised (case, spaces and punctuation dropped, so ``disease ( ADTD ) .`` from a
  CoNLL file matches ``disease (ADTD).`` in an abstract) and hashed; an evaluation input with any
  sentence of 20 or more normalised characters (10 for Japanese or Chinese) in the corpus counts as seen.

Not handled: near-duplicates (paraphrases, a sentence cut differently), and overlap with data the
probe does not name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError
from bertkit.recipe import Recipe

MIN_CHARS = 20  # shorter sentences ("Methods", "Results :") are too common to mean the text was seen
MIN_CJK_CHARS = 10  # a Japanese or Chinese character says about as much as a few Latin letters
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")  # kana and CJK ideographs
RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"  # shipped recipes, for a probe given by name
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Probe:
    """``mlm.probe``: the finetune recipe the adaptation is judged by, and how it is run."""

    recipe: str  # path or shipped recipe name (classification, ner or qa)
    seeds: int = 3  # fine-tunes per model (start and adapted), seeds recipe.seed .. + seeds - 1
    max_train_samples: int | None = None  # cap the probe's training rows to keep it short
    overrides: list[str] = dataclasses.field(default_factory=list)  # key=value for the probe recipe
    reuse_start: bool = True  # reuse the starting model's probe scores from an identical earlier run (cache)


def probe_settings(recipe: Recipe) -> Probe | None:
    """The recipe's probe section as a ``Probe`` (checked by ``mlm.Options.check``), or None."""
    values = getattr(recipe.options, "probe", None)
    if not values:
        return None
    return Probe(**values)


def check_probe_section(values: Any) -> list[str]:
    """Problems with an ``mlm.probe`` mapping (unknown keys, types, ranges)."""
    from bertkit.recipe import _build

    if not isinstance(values, dict):
        return [f"'mlm.probe' must be a mapping (probe: {{recipe: recipes/ncbi-disease-ner.yaml, seeds: 3}}), got {values!r}"]
    errors: list[str] = []
    probe = _build(Probe, values, "mlm.probe.", errors)
    if probe is not None:
        if probe.seeds < 1:
            errors.append(f"'mlm.probe.seeds' must be at least 1, got {probe.seeds}")
        if probe.max_train_samples is not None and probe.max_train_samples < 1:
            errors.append(f"'mlm.probe.max_train_samples' must be at least 1, got {probe.max_train_samples}")
    return errors


def _resolve(path: str, mlm_source: str | None) -> str:
    candidates = [Path(path)]
    if mlm_source:
        base = Path(mlm_source).resolve().parent
        candidates += [base / path, base.parent / path]
    candidates += [RECIPES_DIR / path, RECIPES_DIR / f"{path}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise BertkitError(f"the probe recipe {path} does not exist",
                       "give mlm.probe.recipe as a path to a finetune recipe, or a shipped name (`bertkit recipes`)")


def probe_recipe(recipe: Recipe, model: str | None = None, capped: bool = True) -> Recipe:
    """The probe's finetune recipe, loaded with its overrides (and ``model`` when given), checked;
    ``capped=False`` leaves out ``probe.max_train_samples`` (task text adapts on every training row)."""
    from bertkit import recipe as recipe_mod

    probe = probe_settings(recipe)
    if probe is None:
        raise BertkitError("this recipe names no probe", "add mlm.probe.recipe=FINETUNE_RECIPE")
    path = _resolve(probe.recipe, recipe.source)
    overrides = list(probe.overrides)
    if probe.max_train_samples is not None and capped:
        overrides.append(f"data.max_train_samples={probe.max_train_samples}")
    if model is not None:
        overrides.append(f"model={model}")
    resolved = recipe_mod.load(path, overrides)
    if resolved.task == "mlm":
        raise BertkitError(f"the probe recipe {path} is task: mlm; a probe fine-tunes for the task the adaptation is for",
                           "name a classification, ner or qa recipe in mlm.probe.recipe")
    d = resolved.data
    if not d.dataset and not d.validation and not d.test and not d.validation_size:
        raise BertkitError(f"the probe recipe {path} has no validation or test split to score the models on",
                           "give it data.validation or data.test (a file the adaptation corpus does not hold)")
    return resolved


def split_texts(probe: Recipe, splits: tuple[str, ...] = ("train", "validation", "test")) -> dict[str, list[str]]:
    """The probe's splits as ``finetune`` reads them (cleaned; validation held out the same way), each
    as the task's unlabelled inputs; ``held_out_of_train`` is set when validation was cut from train."""
    import datasets

    from bertkit import data as data_mod
    from bertkit import tasks

    task = tasks.get(probe.task)
    raw = task.load_raw(probe) if task.load_raw is not None else data_mod.load(probe.data, probe.task)
    if task.clean_split is not None:
        raw = datasets.DatasetDict({s: task.clean_split(ds, probe, s)[0] for s, ds in raw.items()})
    had_validation = "validation" in raw
    raw = data_mod.ensure_validation(raw, probe.data, probe.seed, always=task.SCORES_HELD_OUT,
                                     stratify=task.stratify_labels(raw["train"], probe)
                                     if task.stratify_labels is not None and "train" in raw else None)
    if "train" in raw:
        raw["train"] = data_mod.limit(raw["train"], probe.data.max_train_samples)
    out = {s: task.unlabeled_text(raw[s], probe) for s in splits if s in raw}
    if "validation" in raw and not had_validation:
        out["held_out_of_train"] = []
    return out


def training_texts(recipe: Recipe) -> list[str]:
    """The probe's training inputs as documents for task-adaptive pretraining (``mlm.task_text``)."""
    probe = probe_recipe(recipe, capped=False)
    texts = split_texts(probe, ("train",))
    if "held_out_of_train" in texts:
        raise BertkitError(f"the probe recipe {probe.source} holds its validation rows out of its training file, so "
                           "its training text cannot be adapted on without them",
                           "give the probe recipe a validation file (data.validation=FILE)")
    found = [t for t in texts.get("train", []) if t.strip()]
    if not found:
        raise BertkitError(f"the probe recipe {probe.source} has no training text to adapt on",
                           "give it data.train with inputs, or set mlm.task_text=false")
    return found


def normalise(sentence: str) -> str:
    return _NOT_WORD.sub("", sentence.lower())


def sentence_keys(text: str) -> set[bytes]:
    """Hashes of the normalised sentences of ``text`` that are long enough to count."""
    keys = set()
    for part in _SENTENCE_END.split(str(text)):
        norm = normalise(part or "")
        if len(norm) >= (MIN_CJK_CHARS if CJK.search(norm) else MIN_CHARS):
            keys.add(hashlib.blake2b(norm.encode(), digest_size=12).digest())
    return keys


def overlap(corpus_batches: Any, evaluation: dict[str, list[str]], known: set[bytes] | None = None
            ) -> dict[str, dict[str, Any]]:
    """Per evaluation split: how many of its inputs have a sentence in the corpus, and the first few.

    ``corpus_batches`` yields lists of documents (a corpus may be far larger than memory); sentences in
    ``known`` (the probe's own training inputs, which its fine-tuning sees anyway) do not count."""
    wanted: dict[bytes, list[tuple[str, int]]] = {}
    for split, texts in evaluation.items():
        for i, text in enumerate(texts):
            for key in sentence_keys(text) - (known or set()):
                wanted.setdefault(key, []).append((split, i))
    seen: set[tuple[str, int]] = set()
    for batch in corpus_batches:
        for doc in batch:
            for key in sentence_keys(doc):
                for hit in wanted.get(key, ()):
                    seen.add(hit)
    report = {}
    for split, texts in evaluation.items():
        rows = sorted(i for s, i in seen if s == split)
        report[split] = {"inputs": len(texts), "seen": len(rows), "examples": [texts[i][:80] for i in rows[:3]]}
    return report


def describe_overlap(report: dict[str, dict[str, Any]]) -> str:
    return " and ".join(f"{r['seen']} of the probe's {r['inputs']} {split} inputs" for split, r in report.items()
                        if r["seen"])


def guard(raw: Any, recipe: Recipe) -> dict[str, Any]:
    """Refuse an adaptation corpus (``raw``: its DatasetDict) that holds the probe's validation or test
    inputs; ``mlm.allow_eval_overlap`` lets it run, and the report says so. {} without a probe.

    A sentence that is also one of the probe's training inputs is not counted: its fine-tuning sees it
    anyway (NCBI-disease has a test title that is also a training sentence)."""
    if not recipe.options.probe:
        return {}
    from bertkit.console import log

    probe = probe_recipe(recipe, capped=False)
    texts = split_texts(probe)
    known = set().union(*(sentence_keys(t) for t in texts.get("train", [])))
    evaluation = {s: texts[s] for s in ("validation", "test") if s in texts}
    column = recipe.data.text_column
    batches = (batch[column] for split in raw.values() for batch in split.select_columns([column]).iter(1000))
    found = overlap(batches, evaluation, known)
    seen = describe_overlap(found)
    if seen and not recipe.options.allow_eval_overlap:
        example = next(r["examples"][0] for r in found.values() if r["examples"])
        raise BertkitError(f"the adaptation corpus holds {seen} (e.g. {example!r}): adapting on text the probe "
                           "scores on makes the comparison optimistic",
                           "remove those documents from the corpus (adapt on training text only), or set "
                           "mlm.allow_eval_overlap=true to run anyway")
    log("leakage check: " + (seen + " are in the corpus (allowed by mlm.allow_eval_overlap)" if seen else
                             "no probe validation or test input is in the corpus"))
    return found
