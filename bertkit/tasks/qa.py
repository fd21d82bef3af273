"""Extractive question answering (SQuAD v1.1 / v2.0, JSQuAD): answers are spans of the context.

Each example is ``[CLS] question [SEP] context-window [SEP]``. Contexts longer than ``max_length``
are read in overlapping windows (``qa.doc_stride`` tokens of overlap, as Hugging Face's ``run_qa``);
a window's start/end labels point at the answer's first and last token, or at ``[CLS]`` (position 0)
when the answer is not wholly inside it. Token ids and character offsets come from
``bertkit.japanese.align``, so the slow Tohoku ``BertJapaneseTokenizer`` works like a fast tokenizer
and every offset indexes the ORIGINAL context: answers are cut from the user's text as it was, never
from a normalised copy. A question keeps at most half the window (longer ones are cut and counted);
consecutive windows share at most half a window. A literal ``[SEP]`` inside a context (JSQuAD's title
separator) becomes the ``[SEP]`` token, as in JGLUE's own fine-tuning, and is still context.

Training labels are exact: when a training question's gold answer starts or ends inside a token
(``8th`` in ``18th``), that question's context is tokenised in pieces cut at the answer's boundaries
(``bertkit.tasks.boundaries``), so its start/end tokens decode to exactly the gold text; every other
question keeps the alignment its context shares with the paragraph's other questions. Evaluation and
``predict`` read contexts as they come, so there such an answer stays out of reach (the tokenizer's
ceiling).

Decoding an example looks at all its windows: the ``n_best`` best starts and ends of each window,
inside the context only (never the question or a special token), end not before start, at most
``max_answer_length`` tokens; equal character spans from overlapping windows count once, with their
best score. With ``version_2_with_negative`` the null answer ``""`` scores the smallest
``[CLS]``-``[CLS]`` logit sum over the windows and wins when it beats the best span by more than
``null_score_diff_threshold``. ``score`` is always a start+end logit sum; ``probability`` is its
softmax share within the example's n-best list.

The Trainer's per-epoch ``compute_metrics`` sees only logits and labels, so ``features`` keeps the
validation windows (with their contexts and gold answers) in the ``Spec``, and evaluation windows
carry start/end labels like training ones, which gives an eval loss and makes the Trainer call
``compute_metrics`` at all. Best-model selection therefore uses the real SQuAD F1. (With bertkit's
default ``train_sampling_strategy=group_by_length`` the Trainer also shuffles evaluation batches by
length; ``_eval_order`` rebuilds that order and checks it against the returned labels.)

Not handled: answers that are not verbatim spans of the context (yes/no, free-form); tokenizers
whose layout is not BERT's ``[CLS] A [SEP] B [SEP]`` (see ``bertkit.encoding``); contexts so long
that holding their windows' offsets in memory matters (book-length documents).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bertkit import encoding
from bertkit.errors import BertkitError
from bertkit.recipe import Recipe, register_task_options
from bertkit.tasks import boundaries

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
    metric_lang: Literal["auto", "en", "ja"] = "auto"  # auto: ja (JGLUE char F1) for Japanese tokenizers
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


# ---------------------------------------------------------------------------------------------
# Data checks: columns, empty rows, ids, and gold answers that must be spans of their context


def _log(message: str) -> None:
    from bertkit.train import log

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


# ---------------------------------------------------------------------------------------------
# Windows and labels


@dataclass
class Window:
    """One model input: ``[CLS] question [SEP] context[token_from:token_from+len(offsets)] [SEP]``."""

    example: int  # index of the example (row) it came from
    input_ids: list[int]
    token_type_ids: list[int]
    context_start: int  # position in input_ids of the window's first context token
    token_from: int  # index of that token among all the context's tokens
    offsets: list[tuple[int, int]]  # character span, in the original context, of each context token here


@dataclass
class Encoded:
    """The windows of a list of examples, with each context's full token offsets."""

    windows: list[Window]
    context_offsets: list[list[tuple[int, int]]]  # per example
    full_lengths: list[int]  # per example: question + context + 3 specials, uncut
    questions_cut: int = 0
    answers_cut: int = 0  # examples whose context was tokenised in pieces cut at the answer's boundaries


def encode(tokenizer: Any, questions: list[str], contexts: list[str], max_length: int, doc_stride: int,
           answers: list[tuple[int, int] | None] | None = None) -> Encoded:
    """Windows over each context (ids and offsets from ``bertkit.japanese.align``; no labels yet).

    The question keeps at most half of the room; a context window takes the rest. Consecutive
    windows share ``doc_stride`` tokens, or half a window when a long question leaves less room.
    ``answers`` (per example, the character span its labels will mark, or None) makes those spans
    token boundaries: see ``_cut_at_answers``.
    """
    from bertkit.japanese import align_batch

    unique = list(dict.fromkeys(contexts))  # SQuAD asks ~5 questions per paragraph: align each once
    by_text = {text: (a.input_ids, [tuple(o) for o in a.offsets]) for text, a in zip(unique, align_batch(tokenizer, unique))}
    tokens = [by_text[context] for context in contexts]
    answers_cut = _cut_at_answers(tokenizer, contexts, answers, tokens) if answers else 0
    question_ids = [a.input_ids for a in align_batch(tokenizer, questions)]
    room = max_length - encoding.n_specials(pair=True)
    windows, all_offsets, full_lengths, cut = [], [], [], 0
    for i, (q, (ids, offsets)) in enumerate(zip(question_ids, tokens)):
        full_lengths.append(len(q) + len(ids) + 3)
        if len(q) > room // 2:
            q, cut = q[: room // 2], cut + 1
        budget = room - len(q)
        step = budget - min(doc_stride, budget // 2)
        all_offsets.append(offsets)
        start = 0
        while True:
            input_ids, types = encoding.with_specials(tokenizer, q, ids[start:start + budget])
            windows.append(Window(i, input_ids, types, len(q) + 2, start, offsets[start:start + budget]))
            if start + budget >= len(ids):
                break
            start += step
    return Encoded(windows, all_offsets, full_lengths, cut, answers_cut)


def _cut_at_answers(tokenizer: Any, contexts: list[str], answers: list[tuple[int, int] | None],
                    tokens: list[tuple[list[int], list[tuple[int, int]]]]) -> int:
    """Replace, in ``tokens`` (per example: context ids and offsets), the tokens of every example
    whose answer starts or ends strictly inside a token by its context tokenised in pieces cut at
    the answer's boundaries (``boundaries.cuts``). Returns how many examples were cut."""
    cuts = _answer_cuts([offsets for _, offsets in tokens], contexts, answers)
    redo = [i for i, at in enumerate(cuts) if at]
    for i, a in zip(redo, boundaries.align_cut(tokenizer, [contexts[i] for i in redo], [cuts[i] for i in redo])):
        tokens[i] = (a.input_ids, [tuple(o) for o in a.offsets])
    return len(redo)


def _answer_cuts(offsets: list[list[tuple[int, int]]], contexts: list[str],
                 answers: list[tuple[int, int] | None]) -> list[list[int]]:
    """Per example, where to cut its context so the answer's boundaries are token edges (``boundaries.cuts``;
    empty when they already are, or when there is no answer)."""
    return [boundaries.cuts(offs, span, len(context)) if span else [] for offs, context, span in zip(offsets, contexts, answers)]


def answer_tokens(offsets: list[tuple[int, int]], start_char: int, end_char: int) -> tuple[int, int] | None:
    """First and last context token overlapping the characters [start_char, end_char), or None."""
    ends = [e for _, e in offsets]
    starts = [s for s, _ in offsets]
    first = bisect.bisect_right(ends, start_char)  # first token ending after the answer starts
    last = bisect.bisect_left(starts, end_char) - 1  # last token starting before the answer ends
    if first >= len(offsets) or last < first:
        return None
    return first, last


def label(window: Window, tokens: tuple[int, int] | None) -> tuple[int, int]:
    """Start/end positions of the answer's tokens in the window; (0, 0) = [CLS] unless wholly inside."""
    if tokens is None:
        return 0, 0
    first, last = tokens[0] - window.token_from, tokens[1] - window.token_from
    if first < 0 or last >= len(window.offsets):
        return 0, 0
    return window.context_start + first, window.context_start + last


def span_chars(window: Window, start: int, end: int) -> tuple[int, int]:
    """Character span in the context of the window's tokens ``start..end`` (positions in input_ids)."""
    return window.offsets[start - window.context_start][0], window.offsets[end - window.context_start][1]


def _metric_lang(recipe: Recipe, tokenizer: Any) -> str:
    lang = recipe.options.metric_lang
    return ("ja" if encoding.is_japanese(tokenizer) else "en") if lang == "auto" else lang


def features(dataset: Any, tokenizer: Any, recipe: Recipe, spec: Spec, split: str = "train",
             with_labels: bool = True) -> tuple[Any, dict[str, Any]]:
    """Windows of a split as a Dataset, and a report of lengths and windows.

    Every window carries ``start_positions``/``end_positions`` (from the first gold answer). Outside
    training, windows also carry what decoding needs: ``example_index``, ``context_start`` and the
    context tokens' ``offsets`` (flattened start, end pairs); the first window of each example also
    carries its ``example_id``, ``question``, ``context`` and ``gold`` answer texts (None on later
    windows, so a long context is stored once).
    """
    import datasets

    opts = recipe.options
    spec.lang = _metric_lang(recipe, tokenizer)
    questions = [str(q).strip() for q in list(dataset[opts.question_column])]
    contexts = [str(c) for c in list(dataset[opts.context_column])]
    golds = _split_golds(dataset, recipe) if with_labels else [[] for _ in contexts]
    spans = [_first_span(g) for g in golds]
    cut = boundaries.applies(split)
    enc = encode(tokenizer, questions, contexts, recipe.max_length, opts.doc_stride, spans if cut else None)
    # Read as predict reads it: count the answers no prediction can give exactly (a boundary inside a token).
    unreachable = 0 if cut else sum(map(bool, _answer_cuts(enc.context_offsets, contexts, spans)))
    ids = list(dataset[opts.id_column]) if opts.id_column in dataset.column_names else [str(i) for i in range(len(dataset))]
    keep_meta = split != "train"
    first_tokens = [answer_tokens(enc.context_offsets[i], *span) if span else None for i, span in enumerate(spans)]
    rows, seen, located = [], set(), set()
    for w in enc.windows:
        row: dict[str, Any] = {"input_ids": w.input_ids, "token_type_ids": w.token_type_ids,
                               "attention_mask": [1] * len(w.input_ids), "length": len(w.input_ids)}
        if with_labels:
            row["start_positions"], row["end_positions"] = label(w, first_tokens[w.example])
            if row["start_positions"]:
                located.add(w.example)
        if keep_meta:
            first = w.example not in seen
            seen.add(w.example)
            row.update({"example_index": w.example, "context_start": w.context_start,
                        "offsets": [x for pair in w.offsets for x in pair],
                        "example_id": str(ids[w.example]) if first else None,
                        "question": questions[w.example] if first else None,
                        "context": contexts[w.example] if first else None,
                        "gold": [t for t, _ in golds[w.example]] if first else None})
        rows.append(row)
    feats = datasets.Dataset.from_list(rows)
    if split == "validation":
        spec.validation = feats
    lost = sum(1 for i, g in enumerate(golds) if g and i not in located) if with_labels else 0
    return feats, _length_report(enc, recipe, lost, unreachable)


def _first_span(golds: list[tuple[str, int]]) -> tuple[int, int] | None:
    """Character span of the first gold answer, the one the labels mark (None: no answer)."""
    return (golds[0][1], golds[0][1] + len(golds[0][0])) if golds else None


def _split_golds(dataset: Any, recipe: Recipe) -> list[list[tuple[str, int]]]:
    opts = recipe.options
    answers = list(dataset[opts.answers_column]) if opts.answers_column in dataset.column_names else [None] * len(dataset)
    impossible = list(dataset["is_impossible"]) if "is_impossible" in dataset.column_names else [False] * len(dataset)
    return [_golds(a, imp) for a, imp in zip(answers, impossible)]


def _length_report(enc: Encoded, recipe: Recipe, lost: int, unreachable: int = 0) -> dict[str, Any]:
    per_example = Counter(w.example for w in enc.windows)
    stats, longer, pct = encoding.length_stats(enc.full_lengths, recipe.max_length)
    report = {
        **stats, "windows": len(enc.windows), "truncated": longer, "truncated_pct": pct,
        "note_windows": f"read as {len(enc.windows)} windows (up to {max(per_example.values(), default=0)} per "
                        f"question, doc_stride={recipe.options.doc_stride})",
    }
    if enc.questions_cut:
        report["note_questions"] = f"{enc.questions_cut} questions cut to half of max_length"
    report["cut_examples"] = enc.answers_cut
    if enc.answers_cut or unreachable:
        report["note_cuts"] = boundaries.note("questions whose gold answer starts or ends inside a token",
                                              enc.answers_cut or unreachable, cut=bool(enc.answers_cut))
    if lost:
        report["note_answers"] = f"{lost} gold answers fit in no window (longer than a window; labelled [CLS])"
    return report


def collator(tokenizer: Any, spec: Any = None) -> Any:
    """Dynamic padding of the model inputs; decoding columns are dropped if the Trainer kept them."""
    from transformers import DataCollatorWithPadding

    pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    keep = {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    return lambda rows: pad([{k: v for k, v in r.items() if k in keep} for r in rows])


# ---------------------------------------------------------------------------------------------
# Decoding: logits of all of an example's windows -> n-best answers


@dataclass
class Outputs:
    """Per-window logits with what decoding needs; ``examples`` are (id, question, context, golds)."""

    windows: list[Window]
    start_logits: list[np.ndarray]
    end_logits: list[np.ndarray]
    examples: list[tuple[str, str, str, list[str]]]
    _decoded: dict = field(default_factory=dict, repr=False)


def _outputs_from(feats: Any, start_logits: list[np.ndarray], end_logits: list[np.ndarray]) -> Outputs:
    windows, examples = [], {}
    columns = feats.select_columns(["example_index", "context_start", "offsets", "example_id", "question",
                                    "context", "gold"])
    for row in columns:
        offs = row["offsets"]
        windows.append(Window(row["example_index"], [], [], row["context_start"], 0, list(zip(offs[0::2], offs[1::2]))))
        if row["example_id"] is not None:
            examples[row["example_index"]] = (row["example_id"], row["question"], row["context"], row["gold"] or [])
    return Outputs(windows, start_logits, end_logits, [examples[i] for i in range(len(examples))])


def infer(model: Any, feats: Any, tokenizer: Any, precision: str, batch_size: int, desc: str | None = None) -> Outputs:
    """Start/end logits of every window, through the shared length-sorted inference."""
    from bertkit import inference

    model_inputs = feats.select_columns(["input_ids", "token_type_ids", "attention_mask"])
    out = inference.forward(model, list(model_inputs), pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                            precision=precision, outputs=("start_logits", "end_logits"), per_token=True, desc=desc)
    return _outputs_from(feats, out["start_logits"], out["end_logits"])


def _softmax(scores: list[float]) -> list[float]:
    arr = np.asarray(scores, dtype=np.float64)
    exp = np.exp(arr - arr.max())
    return (exp / exp.sum()).tolist()


def decode_example(context: str, windows: list[Window], start_logits: list[np.ndarray], end_logits: list[np.ndarray],
                   *, n_best: int, max_answer_length: int, version_2: bool, null_threshold: float
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(chosen answer, n-best list) for one example from all its windows.

    Each answer is {text, start, end, score, probability}; the null answer has text "" and start =
    end = None. Candidates lie inside the context tokens only.
    """
    best: dict[tuple[int, int], float] = {}
    null_score = None
    for w, sl, el in zip(windows, start_logits, end_logits):
        sl, el = np.asarray(sl, dtype=np.float64), np.asarray(el, dtype=np.float64)
        null = float(sl[0] + el[0])
        null_score = null if null_score is None else min(null_score, null)
        lo, hi = w.context_start, w.context_start + len(w.offsets)
        if hi <= lo:
            continue
        starts = lo + np.argsort(-sl[lo:hi], kind="stable")[:n_best]
        ends = lo + np.argsort(-el[lo:hi], kind="stable")[:n_best]
        s, e = np.meshgrid(starts, ends, indexing="ij")  # (n_best, n_best) every start with every end
        ok = (e >= s) & (e - s + 1 <= max_answer_length)
        for a, b in zip(s[ok].tolist(), e[ok].tolist()):
            chars = span_chars(w, a, b)
            score = float(sl[a] + el[b])
            if chars[1] > chars[0] and score > best.get(chars, -np.inf):
                best[chars] = score
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:n_best]
    nbest = [{"text": context[a:b], "start": a, "end": b, "score": s} for (a, b), s in ranked]
    null_answer = {"text": "", "start": None, "end": None, "score": null_score}
    if version_2 and null_score is not None:
        nbest = sorted(nbest + [null_answer], key=lambda c: -c["score"])[:n_best + 1]
    for cand, p in zip(nbest, _softmax([c["score"] for c in nbest]) if nbest else []):
        cand["probability"] = p
    spans = [c for c in nbest if c["start"] is not None]
    if not spans:
        chosen = next((c for c in nbest if c["start"] is None), {**null_answer, "probability": None})
    elif version_2 and null_score is not None and null_score - spans[0]["score"] > null_threshold:
        chosen = next(c for c in nbest if c["start"] is None)
    else:
        chosen = spans[0]
    return dict(chosen), nbest


def decode(outputs: Outputs, recipe: Recipe) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(answer, n-best) per example, in example order; cached on ``outputs``."""
    opts = recipe.options
    key = (opts.n_best, opts.max_answer_length, opts.version_2_with_negative, opts.null_score_diff_threshold)
    if key not in outputs._decoded:
        by_example: dict[int, list[int]] = {}
        for j, w in enumerate(outputs.windows):
            by_example.setdefault(w.example, []).append(j)
        results = []
        for i, (_, _, context, _) in enumerate(outputs.examples):
            js = by_example.get(i, [])
            results.append(decode_example(context, [outputs.windows[j] for j in js],
                                          [outputs.start_logits[j] for j in js], [outputs.end_logits[j] for j in js],
                                          n_best=opts.n_best, max_answer_length=opts.max_answer_length,
                                          version_2=opts.version_2_with_negative,
                                          null_threshold=opts.null_score_diff_threshold))
        outputs._decoded = {key: results}
    return outputs._decoded[key]


# ---------------------------------------------------------------------------------------------
# Metrics, predictions and artifacts


def _scores(spec: Spec, recipe: Recipe, outputs: Outputs) -> dict[str, Any]:
    from bertkit.metrics.squad import squad_scores

    decoded = decode(outputs, recipe)
    predictions = {qid: answer["text"] for (qid, _, _, _), (answer, _) in zip(outputs.examples, decoded)}
    references = {qid: golds for qid, _, _, golds in outputs.examples}
    return squad_scores(predictions, references, lang=spec.lang)


def report(spec: Spec, recipe: Recipe, outputs: Outputs, feats: Any) -> dict[str, Any]:
    scores = _scores(spec, recipe, outputs)
    return {**scores, "metric_lang": spec.lang, "windows": len(outputs.windows)}


def compute_metrics(spec: Spec, recipe: Recipe) -> Any:
    """The Trainer's metric function: EM/F1 from the validation windows kept in ``spec``."""

    def fn(eval_pred: Any) -> dict[str, float]:
        feats = spec.validation
        start, end = eval_pred.predictions[:2]
        order = _eval_order(feats, eval_pred.label_ids, recipe)
        lengths = list(feats["length"])
        starts, ends = [None] * len(order), [None] * len(order)
        for row, j in enumerate(order):  # the Trainer pads every row to its longest with -100
            starts[j], ends[j] = start[row][: lengths[j]], end[row][: lengths[j]]
        scores = _scores(spec, recipe, _outputs_from(feats, starts, ends))
        return {k: v for k, v in scores.items() if not k.endswith("total")}

    return fn


def _eval_order(feats: Any, label_ids: Any, recipe: Recipe) -> list[int]:
    """Which window each row of the Trainer's eval predictions is.

    With ``train_sampling_strategy=group_by_length`` the Trainer also groups evaluation batches by
    length (a seeded shuffle), so rows come back out of order; this rebuilds that order with the
    Trainer's own function and checks it against the labels, which come back in the same order.
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    n = len(feats)
    want = (np.asarray(list(feats["start_positions"])), np.asarray(list(feats["end_positions"])))
    got = tuple(np.asarray(x).reshape(-1) for x in label_ids[:2])
    candidates = [list(range(n))]
    args = recipe.training_args()
    if args.get("train_sampling_strategy") == "group_by_length":
        seed = args.get("data_seed") if args.get("data_seed") is not None else args["seed"]
        for devices in sorted({1, max(1, torch.cuda.device_count())}):
            generator = torch.Generator().manual_seed(seed)
            candidates.insert(0, get_length_grouped_indices(list(feats["length"]), args["per_device_eval_batch_size"] * devices,
                                                            generator=generator))
    for order in candidates:
        if len(got[0]) == n and all((w[order] == g).all() for w, g in zip(want, got)):
            return order
    raise BertkitError("could not match the Trainer's evaluation predictions to the validation windows",
                       "set training.train_sampling_strategy=random (evaluation order then stays as it is)")


def prediction_rows(spec: Spec, recipe: Recipe, outputs: Outputs, raw: Any) -> list[dict[str, Any]]:
    """predictions.jsonl: id, question, gold answers, the answer with its character span and score."""
    rows = []
    for (qid, question, _, golds), (answer, _) in zip(outputs.examples, decode(outputs, recipe)):
        rows.append({"id": qid, "question": question, "gold": golds, "answer": answer["text"],
                     "start": answer["start"], "end": answer["end"], "score": answer["score"],
                     "probability": answer["probability"]})
    return rows


def artifacts(spec: Spec, recipe: Recipe, outputs: Outputs, raw: Any) -> dict[str, Any]:
    """The official SQuAD script's inputs: predictions.json {id: text} and nbest_predictions.json."""
    decoded = decode(outputs, recipe)
    ids = [qid for qid, _, _, _ in outputs.examples]
    return {"predictions.json": {qid: answer["text"] for qid, (answer, _) in zip(ids, decoded)},
            "nbest_predictions.json": {qid: nbest for qid, (_, nbest) in zip(ids, decoded)}}


def predict_batch(spec: Spec, recipe: Recipe, tokenizer: Any, model: Any, rows: list[dict[str, Any]],
                  precision: str, batch_size: int) -> list[dict[str, Any]]:
    """``predict`` on {question, context} rows: the answer, its character span in the context
    (``start``/``end``, None for the v2 null answer), ``score``, ``probability``, and ``alternatives``:
    the ``qa.top_k`` best of the n-best list, best first (the answer itself included)."""
    from bertkit import inference

    opts = recipe.options
    questions, contexts = [], []
    for row in rows:
        for column in (opts.question_column, opts.context_column):
            if not isinstance(row.get(column), str):
                raise BertkitError(f"an input row has no '{column}' text (its fields are {', '.join(row) or 'none'})",
                                   'QA input lines look like {"question": "...", "context": "..."}; '
                                   "qa.question_column=/qa.context_column= name other fields")
        questions.append(row[opts.question_column].strip())
        contexts.append(row[opts.context_column])
    enc = encode(tokenizer, questions, contexts, recipe.max_length, opts.doc_stride)
    feats = [{"input_ids": w.input_ids, "token_type_ids": w.token_type_ids, "attention_mask": [1] * len(w.input_ids)}
             for w in enc.windows]
    out = inference.forward(model, feats, pad_id=tokenizer.pad_token_id, batch_size=batch_size, precision=precision,
                            outputs=("start_logits", "end_logits"), per_token=True)
    outputs = Outputs(enc.windows, out["start_logits"], out["end_logits"],
                      [(str(r.get(opts.id_column, i)), q, c, []) for i, (r, q, c) in enumerate(zip(rows, questions, contexts))])
    results = []
    for row, (answer, nbest) in zip(rows, decode(outputs, recipe)):
        result = {k: row[k] for k in (opts.id_column,) if k in row}
        result.update(answer=answer["text"], start=answer["start"], end=answer["end"], score=answer["score"],
                      probability=answer["probability"], alternatives=nbest[: opts.top_k])
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------
# Oracle: gold answer -> labels -> decoded text, the round trip every window must survive


def oracle(tokenizer: Any, examples: list[dict[str, Any]], max_length: int, doc_stride: int) -> dict[str, Any]:
    """Label each example's first gold answer in every window, as ``features`` does (cuts at the
    answer's boundaries included), decode the labels back through ``span_chars`` and count how often
    the text comes back exactly.

    ``examples`` are raw rows with ``question``, ``context`` and ``answers`` (not checked by
    ``clean_split``). A gold answer whose text is not the context at its ``answer_start`` is a data
    error: counted in ``inconsistent`` (with a few ``failures``) and left out of the percentages.
    Returns counts and percentages: ``exact_pct`` over the other answered questions (exact in every
    window holding the answer), ``windows_exact_pct`` over (question, window) pairs, ``in_no_window``,
    ``cut`` (contexts tokenised in pieces) and a few ``failures``, each with why it failed.
    """
    contexts = [str(e["context"]) for e in examples]
    golds = [_golds(e["answers"], e.get("is_impossible")) for e in examples]
    spans = [_first_span(g) for g in golds]
    consistent = [span is not None and contexts[i][span[0]:span[1]] == golds[i][0][0] for i, span in enumerate(spans)]
    enc = encode(tokenizer, [str(e["question"]).strip() for e in examples], contexts, max_length, doc_stride,
                 [span if ok else None for span, ok in zip(spans, consistent)])
    by_example: dict[int, list[Window]] = {}
    for w in enc.windows:
        by_example.setdefault(w.example, []).append(w)
    asked = exact = pairs = pairs_exact = no_window = inconsistent = 0
    failures = []
    for i, gold in enumerate(golds):
        if not gold:
            continue
        text, start = gold[0]
        if not consistent[i]:
            inconsistent += 1
            if len(failures) < 10:
                failures.append({"gold": text, "decoded": contexts[i][start:start + len(text)],
                                 "why": "gold text is not the context at answer_start"})
            continue
        asked += 1
        tokens = answer_tokens(enc.context_offsets[i], *spans[i])
        ok, found = True, False
        for w in by_example[i]:
            s, e = label(w, tokens)
            if s == 0:
                continue
            found = True
            pairs += 1
            a, b = span_chars(w, s, e)
            got = contexts[i][a:b]
            pairs_exact += got == text
            if got != text:
                ok = False
                if len(failures) < 10:
                    why = _why(contexts[i], text, enc.context_offsets[i], spans[i])
                    failures.append({"gold": text, "decoded": got, "why": why})
        no_window += not found
        exact += ok and found
    return {"questions": asked, "exact": exact, "exact_pct": round(100.0 * exact / max(asked, 1), 2),
            "window_pairs": pairs, "windows_exact_pct": round(100.0 * pairs_exact / max(pairs, 1), 2),
            "in_no_window": no_window, "windows": len(enc.windows), "cut": enc.answers_cut,
            "inconsistent": inconsistent, "failures": failures}


def _why(context: str, text: str, offsets: list[tuple[int, int]], span: tuple[int, int]) -> str:
    """The reason a consistent gold answer did not come back from its labels."""
    if text != text.strip():
        return "whitespace at the edge of the gold text (tokens never cover it)"
    if boundaries.cuts(offsets, span, len(context)):
        return "a boundary inside a token"
    return "other"
