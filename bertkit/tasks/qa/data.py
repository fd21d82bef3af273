"""QA data checks: columns, empty rows, unique ids, and gold answers that must be spans of their context.

What it does: ``clean_split`` checks a split's columns, drops (or refuses) empty questions and
contexts, makes ids unique and puts every gold answer where its ``answer_start`` says
(``qa.bad_answers``: fix, drop or error; always counted); ``answer_pairs`` reads the usual answer
layouts; ``prepare`` checks that v1.1-style data answers every training question. What it does not
do: tokenise, window or label (``qa.featurize``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bertkit.errors import BertkitError
from bertkit.recipe import Recipe
from bertkit.tasks.qa.spec import Spec


def _log(message: str) -> None:
    from bertkit.console import log

    log(message)


def answer_pairs(value: Any) -> list[tuple[str, int | None]]:
    """Gold answers in any of the usual layouts -> [(text, answer_start or None)]."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(value, None)]
    if isinstance(value, dict):
        texts, starts = value.get("text", []), value.get("answer_start", [])
        if isinstance(texts, str):
            texts, starts = [texts], [starts]
        starts = list(starts) if isinstance(starts, (list, tuple)) else []
        return [(str(t), starts[i] if i < len(starts) else None) for i, t in enumerate(texts)]
    if isinstance(value, (list, tuple)):
        return [p for item in value for p in answer_pairs(item)]
    raise BertkitError(f"cannot read the answers {value!r}",
                       'give {"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"}')


def _place(text: str, start: int | None, context: str) -> int | None:
    """``start`` if the text is there, else the nearest occurrence of the text, else None."""
    if start is not None and 0 <= start and context[start:start + len(text)] == text:
        return start
    found, at = [], context.find(text)
    while at >= 0:
        found.append(at)
        at = context.find(text, at + 1)
    if not found:
        return None
    return min(found, key=lambda p: abs(p - (start or 0)))


def unlabeled_text(dataset: Any, recipe: Recipe) -> list[str]:
    """Each context once (questions share them), for task-adaptive pretraining and the leakage guard."""
    return list(dict.fromkeys(str(c) for c in dataset[recipe.options.context_column]))


def clean_split(dataset: Any, recipe: Recipe, split: str, need_labels: bool = True) -> tuple[Any, int]:
    """Check columns; drop (or refuse) empty questions/contexts; give every row a unique id; check
    that each gold answer is where its ``answer_start`` says (``qa.bad_answers``). Returns
    (dataset, number of rows dropped for empty text)."""
    from bertkit.data import require_columns

    opts = recipe.options
    columns = {"question_column": opts.question_column, "context_column": opts.context_column}
    if need_labels:
        columns["answers_column"] = opts.answers_column
    require_columns(dataset, columns, split, where="qa")
    questions, contexts = list(dataset[opts.question_column]), list(dataset[opts.context_column])
    empty = [i for i, (q, c) in enumerate(zip(questions, contexts)) if not str(q or "").strip() or not str(c or "").strip()]
    if empty and recipe.data.empty_text == "error":
        raise BertkitError(f"the {split} data has {len(empty)} rows with an empty question or context "
                           f"(first: row {empty[0] + 1})", "remove them, or set data.empty_text=drop")
    keep = sorted(set(range(len(dataset))) - set(empty))
    ids = [str(v) for v in dataset[opts.id_column]] if opts.id_column in dataset.column_names \
        else [str(i) for i in range(len(dataset))]
    if need_labels:
        answers, keep = _check_answers(dataset, recipe, split, keep)
        dataset = _replace_column(dataset, opts.answers_column, answers)
    ids = _unique(ids, split)
    dataset = _replace_column(dataset, opts.id_column, ids)
    if len(keep) < len(dataset):
        dataset = dataset.select(keep)
    if len(dataset) == 0:
        raise BertkitError(f"no usable rows are left in the {split} data",
                           f"check qa.question_column ({opts.question_column}) and qa.context_column ({opts.context_column})")
    return dataset, len(empty)


def _replace_column(dataset: Any, name: str, values: list[Any]) -> Any:
    if name in dataset.column_names:
        dataset = dataset.remove_columns(name)
    return dataset.add_column(name, values)


def _unique(ids: list[str], split: str) -> list[str]:
    counts = Counter(ids)
    if len(counts) == len(ids):
        return ids
    _log(f"warning: the {split} data repeats {sum(c > 1 for c in counts.values())} ids; repeats get a suffix (-2, -3, ...)")
    seen: Counter = Counter()
    out = []
    for qid in ids:
        seen[qid] += 1
        out.append(qid if seen[qid] == 1 else f"{qid}-{seen[qid]}")
    return out


def _check_answers(dataset: Any, recipe: Recipe, split: str, keep: list[int]) -> tuple[list[dict], list[int]]:
    """Answers in the {"text": [...], "answer_start": [...]} layout, and the rows still kept."""
    opts = recipe.options
    contexts, values = list(dataset[opts.context_column]), list(dataset[opts.answers_column])
    kept = set(keep)
    out, bad, fixed, lost_rows = [], [], 0, []
    for i, (context, value) in enumerate(zip(contexts, values)):
        pairs = [(t, s) for t, s in answer_pairs(value) if t.strip()]  # blank golds mean no answer (v2)
        good = []
        for text, start in pairs:
            at = _place(text, start, str(context or ""))
            if at is not None and (start is None or at == start):  # no answer_start given: looked up
                good.append((text, at))
                continue
            if start is None:
                bad.append(f"row {i + 1}: {text!r} is not in the context")
                continue
            there = str(context or "")[max(start, 0):max(start, 0) + len(text)]
            bad.append(f"row {i + 1}: {text!r} at {start} (the context there reads {there!r})")
            if at is not None and opts.bad_answers == "fix":
                good.append((text, at))
                fixed += 1
        if pairs and not good and i in kept:
            lost_rows.append(i)
            kept.discard(i)
        out.append({"text": [t for t, _ in good], "answer_start": [s for _, s in good]})
    if bad:
        message = (f"the {split} data has {len(bad)} gold answers whose answer_start does not point at their text, "
                   f"e.g. {'; '.join(bad[:3])}")
        if opts.bad_answers == "error":
            raise BertkitError(message, "fix answer_start, or set qa.bad_answers=fix (nearest occurrence) or drop")
        _log(f"warning: {message}. {fixed} moved to the nearest occurrence of their text, {len(bad) - fixed} dropped"
             f"{f', leaving {len(lost_rows)} questions without an answer (dropped)' if lost_rows else ''} "
             f"(qa.bad_answers={opts.bad_answers})")
    return out, sorted(kept)


def _golds(example_answers: Any, impossible: Any) -> list[tuple[str, int]]:
    return [] if impossible else [(t, s) for t, s in answer_pairs(example_answers) if t.strip() and s is not None]


def prepare(raw: Any, recipe: Recipe) -> Spec:
    """Check that the answers fit the recipe: v1.1 data answers every training question."""
    opts = recipe.options
    train = raw["train"]
    impossible = train["is_impossible"] if "is_impossible" in train.column_names else [False] * len(train)
    unanswered = [i for i, (a, imp) in enumerate(zip(train[opts.answers_column], impossible)) if not _golds(a, imp)]
    if unanswered and not opts.version_2_with_negative:
        raise BertkitError(f"{len(unanswered)} training questions have no answer (first: row {unanswered[0] + 1}), "
                           "which SQuAD v1.1-style training cannot learn",
                           "for SQuAD 2.0-style data set qa.version_2_with_negative=true; otherwise fix those rows")
    if len(unanswered) == len(train):
        raise BertkitError("no training question has an answer", f"check qa.answers_column ({opts.answers_column})")
    return Spec()


def spec_from_model(config: Any, recipe: Recipe) -> Spec:
    return Spec()
