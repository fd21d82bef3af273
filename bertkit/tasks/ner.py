"""Token classification (``task: ner``): tagged words or character spans in, entities out.

Two shapes of data (``clean_split`` brings every split to one of them):

- **words with tags** (``tokens`` + ``tags``): CoNLL column files, JSON/JSONL rows, hub datasets whose
  tag feature is a ``ClassLabel`` sequence (conll2003's ``ner_tags``; the names come from the
  dataset's features), or integer tags named by ``ner.label_names``. Gold tags may be written in
  IOB1, IOB2, BIOES or IO (``ner.tag_scheme``, detected by default) and are rewritten into the
  scheme the model learns (``ner.label_scheme``: IOB2 or BIOES).
- **character spans** (``text`` + ``entities``: ``[{"span": [start, end], "type": ...}]``). The words
  are the tokenizer's own (``bertkit.japanese.align``: MeCab words for a Tohoku BERT, pre-tokenizer
  words for a fast tokenizer); an entity labels the words of every token that overlaps it. An
  training example where an entity starts or ends inside a token or a word is tokenised again, cut
  at its entity boundaries (``bertkit.tasks.boundaries``), so that its labels say exactly what the
  gold says; ``note_cuts`` counts them. Evaluation and prediction read the text as it comes, so there
  an entity boundary inside a token or word stays out of reach (the tokenizer's ceiling; counted). Spans that are out
  of range, overlap another or cover no token are counted and shown by ``validate`` (``note_*``
  keys of the length report), never silently moved.

One label per word, on its first sub-token (``ner.label_all_tokens`` labels the others too, with B-
turned into I-, as transformers' ``run_ner`` does). A sentence longer than ``max_length`` becomes
overlapping windows (``ner.stride`` tokens of overlap); predictions are merged back token by token,
each token taken from the window where it sits most centrally, so nothing is truncated.

Metrics are computed on whole examples after merging: entity precision / recall / F1 with seqeval's
semantics (``bertkit.metrics.entities``; ``ner.strict`` for its strict mode) over words, or over exact
character spans for span data, plus token (word) accuracy. ``oracle`` pushes gold annotations through
the same labelling, windowing, merging and decoding, to show what the representation can reproduce.

Not handled: nested or overlapping entities (of two overlapping spans the later is dropped and
counted), discontinuous entities, tokenizers whose special tokens are not BERT's ``[CLS] .. [SEP]``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bertkit import encoding
from bertkit.errors import BertkitError
from bertkit.metrics import entities as ents
from bertkit.recipe import Recipe, register_task_options
from bertkit.tasks import boundaries

TAG_COLUMNS = ("tags", "ner_tags", "labels")  # looked for, in this order, when tags_column is not set


@dataclass(frozen=True)
class Options:
    tokens_column: str = "tokens"  # words of pre-split data
    tags_column: str | None = None  # their tags; default: the first of tags, ner_tags, labels
    entities_column: str = "entities"  # span data: [{"span": [start, end], "type": ...}] beside data.text_column
    tag_scheme: Literal["auto", "IOB1", "IOB2", "BIOES", "IO"] = "auto"  # how the gold tags are written
    label_scheme: Literal["IOB2", "BIOES"] = "IOB2"  # what the model learns to predict
    label_names: list[str] | None = None  # tag names of integer tags 0..n-1, in order
    label_all_tokens: bool = False  # label every sub-token, not just the first of each word
    stride: int | None = None  # tokens shared by neighbouring windows; default (max_length - 2) // 4
    strict: bool = False  # seqeval's strict mode for metrics (invalid spans score nothing)
    aggregation: Literal["simple", "first", "average", "max"] = "first"  # as transformers' pipeline
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


# ---------------------------------------------------------------------------------------------
# Raw rows -> one of two shapes


def _form(dataset: Any) -> str:
    return "words" if "tokens" in dataset.column_names else "spans"


def clean_split(dataset: Any, recipe: Recipe, split: str, need_labels: bool = True) -> tuple[Any, int]:
    """Bring a split to ``tokens``/``tags`` (string tags) or ``text``/``entities``; drop empty rows.

    Returns (dataset, rows dropped). ``id`` columns are kept for predictions.jsonl.
    """
    import datasets

    from bertkit.data import require_columns

    opts = recipe.options
    d = recipe.data
    columns = dataset.column_names
    keep_id = {"id": [str(v) for v in dataset["id"]]} if "id" in columns else {}
    spans = opts.tokens_column not in columns and (opts.entities_column in columns or d.text_column in columns)
    if not spans:
        require_columns(dataset, {"tokens_column": opts.tokens_column}, split, where="ner")
        tokens = [_words(row, i, split) for i, row in enumerate(dataset[opts.tokens_column])]
        tags = _string_tags(dataset, opts, split) if need_labels else None
        for i, (words, row_tags) in enumerate(zip(tokens, tags or [])):
            if len(words) != len(row_tags):
                raise BertkitError(f"the {split} data, row {i + 1}: {len(words)} words but {len(row_tags)} tags",
                                   "give exactly one tag per word")
        keep = [i for i, words in enumerate(tokens) if words]
        out = {"tokens": [tokens[i] for i in keep]}
        if tags is not None:
            out["tags"] = [tags[i] for i in keep]
    else:
        require_columns(dataset, {"text_column": d.text_column}, split)
        if need_labels:
            require_columns(dataset, {"entities_column": opts.entities_column}, split, where="ner")
        texts = ["" if t is None else str(t) for t in dataset[d.text_column]]
        entities = ([_span_entities(row, i, split) for i, row in enumerate(dataset[opts.entities_column])]
                    if opts.entities_column in columns else [[] for _ in texts])
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if len(keep) < len(texts) and d.empty_text == "error":
            first = next(i for i, t in enumerate(texts) if not t.strip())
            raise BertkitError(f"the {split} data has {len(texts) - len(keep)} rows with empty text (first: row {first + 1})",
                               "remove them, or set data.empty_text=drop")
        out = {"text": [texts[i] for i in keep], "entities": [entities[i] for i in keep]}
    if not keep:
        raise BertkitError(f"every row of the {split} data is empty", "check the data and its column settings")
    if keep_id:
        out["id"] = [keep_id["id"][i] for i in keep]
    return datasets.Dataset.from_dict(out), len(dataset) - len(keep)


def _words(row: Any, i: int, split: str) -> list[str]:
    if not isinstance(row, (list, tuple)) or any(w is None for w in row):
        raise BertkitError(f"the {split} data, row {i + 1}: the words must be a list of strings, got {row!r:.80}",
                           "pre-split data holds a list of words per row; for raw text use a text column with entities")
    return [str(w) for w in row]


def _string_tags(dataset: Any, opts: Options, split: str) -> list[list[str]]:
    """Tags as strings: ClassLabel names from the dataset's features, ``label_names``, or as written."""
    from bertkit.data import require_columns

    column = opts.tags_column or next((c for c in TAG_COLUMNS if c in dataset.column_names), TAG_COLUMNS[0])
    require_columns(dataset, {"tags_column": column}, split, where="ner")
    names = getattr(getattr(dataset.features[column], "feature", None), "names", None) or opts.label_names
    out = []
    for i, row in enumerate(dataset[column]):
        if not isinstance(row, (list, tuple)):
            raise BertkitError(f"the {split} data, row {i + 1}: tags must be a list, got {row!r:.80}")
        tags = []
        for tag in row:
            if isinstance(tag, int) and not isinstance(tag, bool):
                if not names:
                    raise BertkitError(f"the {split} data has integer tags ({tag}) and nothing names them",
                                       "set ner.label_names=[O,B-PER,I-PER,...] (tag names in id order)")
                if not 0 <= tag < len(names):
                    raise BertkitError(f"the {split} data, row {i + 1}: tag id {tag} but ner.label_names has {len(names)} names",
                                       "give one name per tag id, in id order")
                tag = names[tag]
            elif not isinstance(tag, str):
                raise BertkitError(f"the {split} data, row {i + 1}: tag {tag!r} is neither a string nor an integer")
            tags.append(tag.strip())
        out.append(tags)
    return out


def _span_entities(row: Any, i: int, split: str) -> list[dict[str, Any]]:
    """``[{"span": [s, e], "type": t}]`` (or ``start``/``end``, ``label``) -> ``[{start, end, type, name}]``."""
    where = f"the {split} data, row {i + 1}"
    out = []
    for entity in row or []:
        if not isinstance(entity, dict):
            raise BertkitError(f"{where}: an entity is {entity!r:.60}, not an object",
                               'entities look like {"span": [start, end], "type": "PER"}')
        span = entity.get("span")
        start, end = (span if isinstance(span, (list, tuple)) and len(span) == 2
                      else (entity.get("start"), entity.get("end")))
        etype = entity.get("type", entity.get("label"))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not etype:
            raise BertkitError(f"{where}: entity {entity!r:.80} needs integer character offsets and a type",
                               'entities look like {"span": [start, end], "type": "PER"} (end exclusive)')
        name = entity.get("name", entity.get("text"))
        out.append({"start": start, "end": end, "type": str(etype), "name": None if name is None else str(name)})
    return out


def prepare(raw: Any, recipe: Recipe) -> Spec:
    """The label set (``O`` + every type in every split, in the label scheme) and the gold tag scheme."""
    forms = {split: _form(ds) for split, ds in raw.items()}
    if len(set(forms.values())) > 1:
        shown = ", ".join(f"{s}: {'words with tags' if f == 'words' else 'text with spans'}" for s, f in forms.items())
        raise BertkitError(f"the splits do not share one shape ({shown})", "give every split in the same format")
    opts = recipe.options
    types: set[str] = set()
    source = None
    if forms["train"] == "words":
        try:
            source = opts.tag_scheme if opts.tag_scheme != "auto" else ents.detect_scheme(raw["train"]["tags"])
        except BertkitError as exc:
            raise BertkitError(f"the train data: {exc.message}", exc.hint) from None
        for split, ds in raw.items():
            for n, tags in enumerate(ds["tags"]):
                try:
                    types.update(e[0] for e in ents.get_entities(tags, source))
                except BertkitError as exc:
                    raise BertkitError(f"the {split} data, row {n + 1}, {exc.message}",
                                       exc.hint or "set ner.tag_scheme to the scheme of the data") from None
    else:
        types = {e["type"] for ds in raw.values() for row in ds["entities"] for e in row}
    if not types:
        where = "tags are all O" if forms["train"] == "words" else "entity lists are all empty"
        raise BertkitError(f"the data has no entities (its {where})",
                           "check ner.tags_column / ner.entities_column, or ner.label_names for integer tags")
    labels = _labels(sorted(types), opts.label_scheme)
    return Spec(labels=labels, scheme=opts.label_scheme, source_scheme=source)


def _labels(types: list[str], scheme: str) -> list[str]:
    return ents.label_list([[f"B-{t}" for t in types]], scheme) if types else ["O"]


def spec_from_model(config: Any, recipe: Recipe) -> Spec:
    labels = [config.id2label[i] for i in range(config.num_labels)]
    scheme = "BIOES" if any(tag[:2] in ("E-", "S-") for tag in labels) else "IOB2"
    opts = recipe.options
    return Spec(labels=labels, scheme=scheme, source_scheme=None if opts.tag_scheme == "auto" else opts.tag_scheme)


# ---------------------------------------------------------------------------------------------
# Examples -> tokens with word ids -> windows of features


@dataclass
class Encoded:
    """One example as tokens (no special tokens) and the words they belong to."""

    ids: list[int]
    word_ids: list[int]  # per token, the index of its word (non-decreasing)
    n_words: int  # words without tokens (whitespace, control characters) are counted too
    offsets: list[tuple[int, int]] | None = None  # per token, its span of the original text (raw text)
    n_chars: int | None = None  # length of the original text (raw text)
    word_tags: list[str] | None = None  # gold tag per word in the label scheme
    spans: list[tuple[str, int, int]] | None = None  # gold character spans kept for scoring (span data)

    def meta(self) -> str:
        return json.dumps({"n_tokens": len(self.ids), "word_ids": self.word_ids, "n_words": self.n_words,
                           "offsets": self.offsets, "n_chars": self.n_chars, "tags": self.word_tags, "spans": self.spans},
                          ensure_ascii=False, separators=(",", ":"))


def encode_words(tokenizer: Any, sentences: list[list[str]]) -> list[Encoded]:
    """Pre-split words -> tokens; each word is tokenised on its own (as ``is_split_into_words`` does)."""
    flat = [w for words in sentences for w in words]
    pieces = encoding.token_ids(tokenizer, flat)
    out, k = [], 0
    for words in sentences:
        ids, word_ids = [], []
        for w in range(len(words)):
            ids += pieces[k]
            word_ids += [w] * len(pieces[k])
            k += 1
        out.append(Encoded(ids=ids, word_ids=word_ids, n_words=len(words)))
    return out


def encode_texts(tokenizer: Any, texts: list[str], cuts: list[list[int]] | None = None) -> list[Encoded]:
    """Raw texts -> tokens with original-text offsets; the words are the tokenizer's words.

    With ``cuts`` (per text, sorted character positions), each text is tokenised in pieces cut there
    (``boundaries.align_cut``), so no token or word crosses a cut.
    """
    from bertkit.japanese import align_batch

    if not texts:
        return []
    aligned = boundaries.align_cut(tokenizer, texts, cuts) if cuts else align_batch(tokenizer, texts)
    out: list[Encoded] = []
    for text, a in zip(texts, aligned):
        word_ids: list[int] = []
        remap: dict[Any, int] = {}
        for w in a.word_ids:  # renumber 0.., and give a token outside any word (-1) a word of its own
            key = ("token", len(word_ids)) if w is None or w < 0 else w
            word_ids.append(remap.setdefault(key, len(remap)))
        out.append(Encoded(ids=list(a.input_ids), word_ids=word_ids, n_words=len(remap),
                           offsets=[(int(s), int(e)) for s, e in a.offsets], n_chars=len(text)))
    return out


class _Problems:
    """Counted span problems, with a few examples each, in a fixed order for the report."""

    WHAT = {
        "out_of_range": "are empty or outside the text (dropped)",
        "overlap": "overlap an earlier entity (dropped)",
        "name_mismatch": "have a name that differs from the text at their span (the span is used)",
        "no_token": "cover no token (whitespace only; not labelled)",
        "shares_word": "share a word with another entity (not labelled)",
    }
    FATAL = ("out_of_range", "overlap", "name_mismatch")

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, row: int, text: str, start: int, end: int) -> None:
        self.count[kind] += 1
        shown = repr(text[max(start, 0):end][:30]) if 0 <= start < end <= len(text) else "-"
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < 2:
            self.examples[kind].append(f"row {row + 1} [{start}, {end}) {shown}")

    def line(self, kinds: tuple[str, ...] | None = None) -> str:
        parts = [f"{self.count[k]} {self.WHAT[k]}, e.g. {'; '.join(self.examples[k])}"
                 for k in self.WHAT if self.count[k] and (kinds is None or k in kinds)]
        return "entity spans: " + " | ".join(parts)


def gold_spans(text: str, entities: list[dict[str, Any]], problems: _Problems, row: int) -> list[tuple[str, int, int]]:
    """The gold spans kept for labelling and scoring, as (type, start, end) in text order.

    Out-of-range spans and spans overlapping an earlier one are dropped (and counted).
    """
    valid = []
    for e in entities:
        s, t, etype = e["start"], e["end"], e["type"]
        if not 0 <= s < t <= len(text):
            problems.add("out_of_range", row, text, s, t)
            continue
        if e.get("name") is not None and text[s:t] != e["name"]:
            problems.add("name_mismatch", row, text, s, t)
        valid.append((s, t, etype))
    valid.sort(key=lambda x: (x[0], -x[1]))
    kept: list[tuple[str, int, int]] = []
    reach = -1
    for s, t, etype in valid:
        if s < reach:
            problems.add("overlap", row, text, s, t)
            continue
        kept.append((etype, s, t))
        reach = t
    return kept


def cut_at_boundaries(tokenizer: Any, encoded: list[Encoded], texts: list[str],
                      spans: list[list[tuple[str, int, int]]], cut: bool = True) -> int:
    """Tokenise again, in pieces cut at its gold boundaries (``boundaries.cuts``), every example where
    a gold span starts or ends strictly inside a word (and so perhaps inside a token); the others keep
    their tokens. Returns how many examples needed it; with ``cut=False`` they are only counted."""
    cuts = [boundaries.cuts(boundaries.word_spans(enc.offsets or [], enc.word_ids),
                            [b for _, s, t in kept for b in (s, t)], len(text))
            for enc, text, kept in zip(encoded, texts, spans)]
    redo = [i for i, at in enumerate(cuts) if at]
    if cut:
        for i, enc in zip(redo, encode_texts(tokenizer, [texts[i] for i in redo], [cuts[i] for i in redo])):
            encoded[i] = enc
    return len(redo)


def place_spans(enc: Encoded, text: str, kept: list[tuple[str, int, int]], scheme: str, problems: _Problems,
                row: int) -> None:
    """Set ``enc.word_tags`` from the kept gold spans (``gold_spans``), and ``enc.spans`` to them.

    An entity labels the words of the tokens overlapping it; once ``cut_at_boundaries`` has run,
    those are exactly the words inside it.
    """
    offsets = enc.offsets or []
    word_entities, taken = [], -1
    for etype, s, t in kept:
        toks = [k for k, (a, b) in enumerate(offsets) if a < t and b > s and b > a]
        if not toks:
            problems.add("no_token", row, text, s, t)
            continue
        w0, w1 = enc.word_ids[toks[0]], enc.word_ids[toks[-1]]
        if w0 <= taken:  # cannot happen after the cuts unless a tokenizer's offsets go backwards
            problems.add("shares_word", row, text, s, t)
            continue
        word_entities.append((etype, w0, w1 + 1))
        taken = w1
    enc.word_tags = ents.entities_to_tags(enc.n_words, word_entities, scheme)
    enc.spans = kept


def windows(word_ids: list[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of at most ``budget`` tokens covering every token, neighbours
    sharing about ``stride`` tokens. Windows end and start on word boundaries where a word allows."""
    n = len(word_ids)
    if n <= budget:
        return [(0, n)]
    out, start, prev_end = [], 0, 0
    while True:
        end = min(start + budget, n)
        if end < n:  # do not cut a word in two if it can be moved whole into the next window
            cut = end
            while cut > prev_end + 1 and word_ids[cut] == word_ids[cut - 1]:
                cut -= 1
            if word_ids[cut] != word_ids[cut - 1]:
                end = cut
        out.append((start, end))
        if end >= n:
            return out
        prev_end = end
        nxt = max(end - stride, start + 1)
        k = nxt
        while k > start + 1 and word_ids[k] == word_ids[k - 1]:
            k -= 1
        start = k if word_ids[k] != word_ids[k - 1] else nxt


def token_labels(enc: Encoded, label_id: dict[str, int], all_tokens: bool) -> list[int]:
    """Per token: its word's label on the first sub-token; -100 (ignored) or the label on the others."""
    out, prev = [], None
    for w in enc.word_ids:
        tag = enc.word_tags[w]
        if w != prev:
            out.append(label_id[tag])
        elif all_tokens:
            out.append(label_id["I-" + tag[2:] if tag.startswith("B-") else tag])
        else:
            out.append(-100)
        prev = w
    return out


def feature_rows(encoded: list[Encoded], tokenizer: Any, recipe: Recipe, spec: Spec | None) -> list[dict[str, Any]]:
    """Model inputs, one row per window; ``labels`` when ``spec`` is given and the words carry gold tags."""
    opts = recipe.options
    budget, stride = recipe.max_length - 2, opts.window_stride(recipe.max_length)
    label_id = {tag: i for i, tag in enumerate(spec.labels)} if spec else {}
    rows = []
    for example, enc in enumerate(encoded):
        labels = token_labels(enc, label_id, opts.label_all_tokens) if spec and enc.word_tags is not None else None
        for k, (s, e) in enumerate(windows(enc.word_ids, budget, stride)):
            ids, types = encoding.with_specials(tokenizer, enc.ids[s:e])
            row = {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids), "length": len(ids),
                   "example_id": example, "window_start": s, "meta": enc.meta() if k == 0 else ""}
            if labels is not None:
                row["labels"] = [-100, *labels[s:e], -100]
            rows.append(row)
    return rows


def _gold_tags(tags: list[list[str]], spec: Spec, split: str) -> tuple[list[list[str]], str, int]:
    """Gold tags rewritten into the label scheme; also the scheme read and how many rows were invalid."""
    source = spec.source_scheme or ents.detect_scheme(tags)
    known = set(spec.labels)
    out, invalid = [], 0
    for n, row in enumerate(tags):
        try:
            invalid += bool(ents.validate_tags(row, source))
            converted = ents.convert_tags(row, source, spec.scheme)
        except BertkitError as exc:
            raise BertkitError(f"the {split} data, row {n + 1}, {exc.message}", exc.hint) from None
        for tag in converted:
            if tag not in known:
                raise BertkitError(f"the {split} data, row {n + 1}: entity type {tag[2:]!r} is not one the model knows "
                                   f"({', '.join(spec.types[:20])})", "fix the tag, or retrain with it in the training data")
        out.append(converted)
    return out, source, invalid


def features(dataset: Any, tokenizer: Any, recipe: Recipe, spec: Spec, split: str = "train",
             with_labels: bool = True) -> tuple[Any, dict[str, Any]]:
    """Tokenise, label and window a split; return the feature Dataset and a report of lengths and problems."""
    import datasets

    opts = recipe.options
    notes: dict[str, str] = {}
    cut_examples = None
    if _form(dataset) == "words":
        encoded = encode_words(tokenizer, list(dataset["tokens"]))
        if with_labels and "tags" in dataset.column_names:
            tags, source, invalid = _gold_tags(list(dataset["tags"]), spec, split)
            for enc, row in zip(encoded, tags):
                enc.word_tags = row
            if invalid:
                notes["note_tags"] = (f"{invalid} sentences have invalid {source} transitions "
                                      f"(read leniently, as seqeval does)")
            if source != spec.scheme:
                notes["note_scheme"] = f"gold tags read as {source}, learned as {spec.scheme}"
        tokenless = sum(enc.n_words - len(set(enc.word_ids)) for enc in encoded)
        if tokenless:
            notes["note_tokenless"] = f"{tokenless} words produce no token (predicted from their neighbours)"
    else:
        texts = list(dataset["text"])
        encoded = encode_texts(tokenizer, texts)
        if with_labels:
            cut_examples = _label_spans(encoded, texts, list(dataset["entities"]), tokenizer, spec, opts, split, notes)
    if with_labels and encoded and encoded[0].word_tags is not None:
        counts = Counter(e[0] for enc in encoded for e in ents.get_entities(enc.word_tags, spec.scheme))
        notes["note_entities"] = f"{sum(counts.values())} entities (" + ", ".join(
            f"{t} {c}" for t, c in counts.most_common(12)) + ")"
    rows = feature_rows(encoded, tokenizer, recipe, spec if with_labels else None)
    report = length_report(encoded, recipe, len(rows), notes)
    if cut_examples is not None:
        report["cut_examples"] = cut_examples
    return datasets.Dataset.from_list(rows), report


def _label_spans(encoded: list[Encoded], texts: list[str], entities: list[list[dict[str, Any]]], tokenizer: Any,
                 spec: Spec, opts: Options, split: str, notes: dict[str, str]) -> int:
    """Check span data, cut the examples that need it (``cut_at_boundaries``) and set their word tags;
    problems and cuts go into ``notes``. Returns how many examples were cut."""
    problems = _Problems()
    known = set(spec.types)
    kept = []
    for row, (text, row_entities) in enumerate(zip(texts, entities)):
        for e in row_entities:
            if e["type"] not in known:
                raise BertkitError(f"the {split} data, row {row + 1}: entity type {e['type']!r} is not one the "
                                   f"model knows ({', '.join(spec.types[:20])})",
                                   "fix the type, or retrain with it in the training data")
        kept.append(gold_spans(text, row_entities, problems, row))
    cut = boundaries.applies(split)
    n_cut = cut_at_boundaries(tokenizer, encoded, texts, kept, cut)
    for row, (enc, text, spans) in enumerate(zip(encoded, texts, kept)):
        place_spans(enc, text, spans, spec.scheme, problems, row)
    if opts.bad_spans == "error" and any(problems.count[k] for k in problems.FATAL):
        raise BertkitError(f"the {split} data: " + problems.line(problems.FATAL),
                           "fix those spans, or set ner.bad_spans=report to count them and go on")
    if problems.count:
        notes["note_spans"] = problems.line()
    if n_cut:
        notes["note_cuts"] = boundaries.note("examples with an entity starting or ending inside a token or word", n_cut, cut)
    return n_cut if cut else 0


def length_report(encoded: list[Encoded], recipe: Recipe, n_features: int, notes: dict[str, str]) -> dict[str, Any]:
    """Token counts per example (with [CLS]/[SEP]) and how many needed windows; never any truncation."""
    stats, longer, pct = encoding.length_stats([len(e.ids) + 2 for e in encoded], recipe.max_length)
    report: dict[str, Any] = {**stats, "windowed": longer, "windowed_pct": pct, "features": n_features}
    if longer:
        report["note_windows"] = (f"{longer} ({report['windowed_pct']} %) longer than max_length={recipe.max_length}, "
                                  f"split into {n_features - len(encoded) + longer} overlapping windows "
                                  f"(stride {recipe.options.window_stride(recipe.max_length)}); nothing is cut")
    return {**report, **notes}


def collator(tokenizer: Any, spec: Any = None) -> Any:
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8)


# ---------------------------------------------------------------------------------------------
# Model outputs -> merged per-token scores -> words -> entities


@dataclass
class Scored:
    """One example's per-token scores (logits or probabilities) after merging its windows."""

    meta: dict[str, Any]
    scores: np.ndarray  # (n_tokens, n_labels)


def merge(rows: list[dict[str, Any]], per_feature: list[np.ndarray]) -> list[Scored]:
    """Put windows back together: each token takes its scores from the window where it is most central."""
    parts: dict[int, list[tuple[int, np.ndarray]]] = {}
    metas: dict[int, str] = {}
    for row, scores in zip(rows, per_feature):
        parts.setdefault(row["example_id"], []).append((row["window_start"], np.asarray(scores)[1:-1]))
        if row["meta"]:
            metas[row["example_id"]] = row["meta"]
    out = []
    for example in sorted(parts):
        meta = json.loads(metas[example])
        n, width = meta["n_tokens"], parts[example][0][1].shape[-1]
        merged = np.zeros((n, width), dtype=np.float32)
        best = np.full(n, -1)
        for start, scores in parts[example]:
            pos = np.arange(len(scores))
            centrality = np.minimum(pos, len(scores) - 1 - pos)
            better = centrality > best[start + pos]
            merged[start + pos[better]] = scores[better]
            best[start + pos[better]] = centrality[better]
        out.append(Scored(meta=meta, scores=merged))
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True)) if logits.size else logits
    return exp / exp.sum(axis=-1, keepdims=True) if logits.size else logits


def word_tags(probs: np.ndarray, word_ids: list[int], n_words: int, labels: list[str], how: str
              ) -> tuple[list[str], list[float]]:
    """One tag and score per word from its tokens' probabilities, as the transformers pipeline's
    ``first`` / ``average`` / ``max`` aggregation. A word without tokens continues the entity around
    it (``I-``) when both neighbours belong to it, else ``O``."""
    tags, scores = ["O"] * n_words, [math.nan] * n_words
    first, last = 0, 0
    while first < len(word_ids):
        last = first
        while last + 1 < len(word_ids) and word_ids[last + 1] == word_ids[first]:
            last += 1
        group = probs[first:last + 1]
        if how == "average":
            vector = group.mean(axis=0)
        elif how == "max":
            vector = group[int(group.max(axis=1).argmax())]
        else:
            vector = group[0]
        best = int(vector.argmax())
        tags[word_ids[first]], scores[word_ids[first]] = labels[best], float(vector[best])
        first = last + 1
    has_tokens = set(word_ids)
    for w in range(n_words):
        if w not in has_tokens and 0 < w < n_words - 1:
            before, after = tags[w - 1], tags[w + 1]
            if before[:2] in ("B-", "I-") and after[:2] in ("I-", "E-") and before[2:] == after[2:]:
                tags[w] = "I-" + before[2:]
    return tags, scores


def decode(tags: list[str], scheme: str, strict: bool) -> list[tuple[str, int, int]]:
    return ents.get_entities_strict(tags, scheme) if strict else ents.get_entities(tags, scheme)


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return round(sum(kept) / len(kept), 6) if kept else 0.0


def predict_entities(scored: Scored, labels: list[str], scheme: str, how: str, strict: bool
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    """(predicted word tags, entities) for one example.

    Entities carry ``type``, ``start``/``end`` (word indices, or token indices with ``simple``, which
    works on tokens as the pipeline does) and ``score`` (mean over their words or tokens); the caller
    turns indices into characters or words.
    """
    meta = scored.meta
    probs = _softmax(scored.scores)
    unit_how = "first" if how == "simple" else how
    tags, scores = word_tags(probs, meta["word_ids"], meta["n_words"], labels, unit_how)
    if how == "simple":  # tokens are the units: one tag per token
        token_tags = [labels[int(i)] for i in probs.argmax(axis=-1)] if len(probs) else []
        token_scores = [float(p.max()) for p in probs]
        found = decode(token_tags, scheme, strict)
        return tags, [{"type": t, "start": s, "end": e, "score": _mean(token_scores[s:e]), "unit": "token"}
                      for t, s, e in found]
    return tags, [{"type": t, "start": s, "end": e, "score": _mean(scores[s:e]), "unit": "word"}
                  for t, s, e in decode(tags, scheme, strict)]


def _token_range(meta: dict[str, Any], entity: dict[str, Any]) -> tuple[int, int] | None:
    """First and last token of an entity given in words or tokens; None if its words have no tokens."""
    if entity["unit"] == "token":
        return entity["start"], entity["end"] - 1
    first, last = {}, {}
    for k, w in enumerate(meta["word_ids"]):
        first.setdefault(w, k)
        last[w] = k
    inside = [w for w in range(entity["start"], entity["end"]) if w in first]
    return (first[inside[0]], last[inside[-1]]) if inside else None


def char_span(meta: dict[str, Any], entity: dict[str, Any]) -> tuple[int, int] | None:
    """Character start/end (end exclusive) of an entity in the original text."""
    tokens = _token_range(meta, entity)
    if tokens is None:
        return None
    return meta["offsets"][tokens[0]][0], meta["offsets"][tokens[1]][1]


def to_characters(meta: dict[str, Any], text: str, entity: dict[str, Any]) -> dict[str, Any] | None:
    """An entity as type, text, character start/end in the original text and score."""
    span = char_span(meta, entity)
    if span is None:
        return None
    start, end = span
    return {"type": entity["type"], "text": text[start:end], "start": start, "end": end, "score": entity["score"]}


def to_words(meta: dict[str, Any], words: list[str], entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as type, text (words joined by spaces), word start/end (end exclusive) and score."""
    start, end = entity["start"], entity["end"]
    if entity["unit"] == "token":
        start, end = meta["word_ids"][start], meta["word_ids"][end - 1] + 1
    return {"type": entity["type"], "text": " ".join(words[start:end]), "start": start, "end": end,
            "score": entity["score"]}


# ---------------------------------------------------------------------------------------------
# Training-time metrics, full report, predictions


def compute_metrics(spec: Spec, recipe: Recipe) -> Any:
    """Feature-level scores during training: the labelled sub-tokens of each window, as sequences."""
    strict = recipe.options.strict

    def fn(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        pred_ids = np.asarray(logits).argmax(-1)
        gold, pred = [], []
        for p_row, g_row in zip(pred_ids, np.asarray(eval_pred.label_ids)):
            mask = g_row != -100
            gold.append([spec.labels[i] for i in g_row[mask]])
            pred.append([spec.labels[i] for i in p_row[mask]])
        scores = ents.entity_scores(gold, pred, spec.scheme, strict=strict)
        return {k: scores[k] for k in ("precision", "recall", "f1", "accuracy")}

    return fn


def infer(model: Any, feats: Any, tokenizer: Any, precision: str, batch_size: int, desc: str | None = None) -> list[Scored]:
    """Per-token logits of every window, merged back into whole examples (in example order)."""
    from bertkit import inference

    rows = list(feats)
    out = inference.forward(model, rows, pad_id=tokenizer.pad_token_id, batch_size=batch_size, precision=precision,
                            per_token=True, desc=desc)
    return merge(rows, out["logits"])


def _eval_aggregation(opts: Options) -> str:
    # Metrics need one tag per word; "simple" tags tokens, so words are then read from their first token.
    return "first" if opts.aggregation == "simple" else opts.aggregation


def _decoded(spec: Spec, recipe: Recipe, outputs: list[Scored]) -> list[tuple[list[str], list[dict[str, Any]], list]]:
    """Per example: (predicted word tags, predicted entities, gold entities) as they are scored."""
    opts = recipe.options
    how = _eval_aggregation(opts)
    out = []
    for scored in outputs:
        tags, predicted = predict_entities(scored, spec.labels, spec.scheme, how, opts.strict)
        meta = scored.meta
        if meta["spans"] is not None:
            gold = [tuple(s) for s in meta["spans"]]
        else:
            gold = decode(meta["tags"], spec.scheme, opts.strict) if meta["tags"] is not None else []
        out.append((tags, predicted, gold))
    return out


def report(spec: Spec, recipe: Recipe, outputs: list[Scored], feats: Any) -> dict[str, Any]:
    """Entity P/R/F1 (micro, per type) and word accuracy on whole examples after window merging."""
    opts = recipe.options
    decoded = _decoded(spec, recipe, outputs)
    if any(s.meta["spans"] is not None for s in outputs):
        # Span data is scored on exact character spans: gold and predicted spans become character
        # tags, so entity_scores counts (type, start, end) matches just as seqeval counts word spans.
        level = "character"
        y_true, y_pred, y_pred_other = [], [], []
        for scored, (tags, predicted, gold) in zip(outputs, decoded):
            other = [{"type": t, "start": s, "end": e, "unit": "word"} for t, s, e in decode(tags, spec.scheme, not opts.strict)]
            n = scored.meta["n_chars"]
            y_true.append(_char_tags(n, list(gold)))
            y_pred.append(_char_tags(n, _char_spans(scored.meta, predicted)))
            y_pred_other.append(_char_tags(n, _char_spans(scored.meta, other)))
        scores = ents.entity_scores(y_true, y_pred, "IOB2")
        other_f1 = ents.entity_scores(y_true, y_pred_other, "IOB2")["f1"]
    else:
        level = "word"
        y_true = [s.meta["tags"] for s in outputs]
        y_pred = [tags for tags, _, _ in decoded]
        scores = ents.entity_scores(y_true, y_pred, spec.scheme, strict=opts.strict)
        other_f1 = ents.entity_scores(y_true, y_pred, spec.scheme, strict=not opts.strict)["f1"]
    gold_words = [t for s in outputs for t in (s.meta["tags"] or [])]
    pred_words = [t for tags, _, _ in decoded for t in tags]
    accuracy = sum(g == p for g, p in zip(gold_words, pred_words)) / len(gold_words) if gold_words else 0.0
    return {
        "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"], "accuracy": accuracy,
        "macro_f1": scores["macro_f1"], f"f1_{'default' if opts.strict else 'strict'}_mode": other_f1,
        "n_true": scores["n_true"], "n_pred": scores["n_pred"], "examples": len(outputs),
        "per_type": scores["per_type"], "level": level, "aggregation": _eval_aggregation(opts),
        "mode": "strict" if opts.strict else "default",
    }


def _char_spans(meta: dict[str, Any], predicted: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    spans = [(e["type"], char_span(meta, e)) for e in predicted]
    return [(t, *span) for t, span in spans if span is not None]


def _char_tags(n: int, spans: list[tuple[str, int, int]]) -> list[str]:
    """Character IOB2 tags of non-overlapping spans (a span overlapping an earlier one is skipped)."""
    tags = ["O"] * n
    for etype, s, e in sorted(spans, key=lambda x: x[1]):
        if any(t != "O" for t in tags[s:e]):
            continue
        tags[s:e] = [f"B-{etype}"] + [f"I-{etype}"] * (e - s - 1)
    return tags


def prediction_rows(spec: Spec, recipe: Recipe, outputs: list[Scored], raw: Any) -> list[dict[str, Any]]:
    """predictions.jsonl: the input, gold entities and predicted entities, as they were scored."""
    rows = []
    for example, scored, (_, predicted, gold) in zip(raw, outputs, _decoded(spec, recipe, outputs)):
        row: dict[str, Any] = {"id": example["id"]} if "id" in example else {}
        if "tokens" in example:
            words = example["tokens"]
            row["tokens"] = words
            row["gold"] = [{"type": t, "text": " ".join(words[s:e]), "start": s, "end": e} for t, s, e in gold]
            row["predicted"] = [to_words(scored.meta, words, e) for e in predicted]
        else:
            text = example["text"]
            row["text"] = text
            row["gold"] = [{"type": t, "text": text[s:e], "start": s, "end": e} for t, s, e in gold]
            row["predicted"] = [c for c in (to_characters(scored.meta, text, e) for e in predicted) if c]
        rows.append(row)
    return rows


def predict_batch(spec: Spec, recipe: Recipe, tokenizer: Any, model: Any, rows: list[dict[str, Any]],
                  precision: str, batch_size: int) -> list[dict[str, Any]]:
    """Entities for raw rows (``predict``): a text (character offsets into it) or pre-split words
    (a list in ``ner.tokens_column`` or in the text column; word indices)."""
    from bertkit import inference

    opts = recipe.options
    column = recipe.data.text_column
    inputs: list[Any] = []
    for row in rows:
        value = row.get(opts.tokens_column) if isinstance(row.get(opts.tokens_column), list) else row.get(column)
        inputs.append([str(w) for w in value] if isinstance(value, list) else ("" if value is None else str(value)))
    words_at = [i for i, v in enumerate(inputs) if isinstance(v, list)]
    text_at = [i for i, v in enumerate(inputs) if not isinstance(v, list)]
    encoded: list[Encoded | None] = [None] * len(rows)
    for i, enc in zip(words_at, encode_words(tokenizer, [inputs[i] for i in words_at])):
        encoded[i] = enc
    for i, enc in zip(text_at, encode_texts(tokenizer, [inputs[i] for i in text_at])):
        encoded[i] = enc
    feats = feature_rows(encoded, tokenizer, recipe, None)
    logits = inference.forward(model, feats, pad_id=tokenizer.pad_token_id, batch_size=batch_size,
                               precision=precision, per_token=True)["logits"]
    n_windows = Counter(f["example_id"] for f in feats)
    results = []
    for i, scored in enumerate(merge(feats, logits)):
        _, predicted = predict_entities(scored, spec.labels, spec.scheme, opts.aggregation, opts.strict)
        result: dict[str, Any] = {k: rows[i][k] for k in ("id",) if k in rows[i]}
        if isinstance(inputs[i], list):
            result["entities"] = [to_words(scored.meta, inputs[i], e) for e in predicted]
        else:
            result["entities"] = [c for c in (to_characters(scored.meta, inputs[i], e) for e in predicted) if c]
        if n_windows[i] > 1:
            result["windows"] = n_windows[i]
        results.append(result)
    return results


def card_notes(recipe: Recipe, spec: Spec) -> list[str]:
    opts = recipe.options
    stride = opts.window_stride(recipe.max_length)
    return [
        f"Labels are {spec.scheme} tags of {len(spec.types)} entity type{'' if len(spec.types) == 1 else 's'}, one per word on "
        + ("every sub-token (B- continued as I-)." if opts.label_all_tokens else "its first sub-token."),
        f"Sentences longer than max_length={recipe.max_length} are split into overlapping windows (stride {stride}) "
        "and merged back token by token; nothing is truncated.",
        f"Entity scores use seqeval's {'strict' if opts.strict else 'default'} mode on whole examples "
        f"(word aggregation: {_eval_aggregation(opts)}).",
    ]


# ---------------------------------------------------------------------------------------------
# Oracle: gold -> labels -> windows -> decode, with no model in between


def oracle(dataset: Any, tokenizer: Any, recipe: Recipe, spec: Spec) -> dict[str, Any]:
    """Push a cleaned split's gold annotations through labelling, windowing, merging and decoding.

    Each window gets one-hot scores from its own labels; the merged scores are decoded as predictions
    are. Returns how many gold entities (all of them, dropped spans included) come back exactly:
    same type and same character span (span data) or word span (words with tags), and, for span
    data, ``cut``: how many examples were tokenised in pieces so that their labels are exact.
    """
    feats, lengths = features(dataset, tokenizer, recipe, spec, "oracle")
    rows = list(feats)
    n_labels = len(spec.labels)
    one_hot = []
    for row in rows:
        labels = np.asarray(row["labels"])
        scores = np.zeros((len(labels), n_labels), dtype=np.float32)
        hit = np.nonzero(labels >= 0)[0]
        scores[hit, labels[hit]] = 10.0
        one_hot.append(scores)
    total, reproduced, misses = 0, 0, []
    source = (spec.source_scheme or ents.detect_scheme(dataset["tags"])) if "tags" in dataset.column_names else None
    for n, (example, scored) in enumerate(zip(dataset, merge(rows, one_hot))):
        _, predicted = predict_entities(scored, spec.labels, spec.scheme, "first", strict=False)
        if "tokens" in example:
            gold = set(ents.get_entities(example["tags"], source))
            got = {(e["type"], e["start"], e["end"]) for e in predicted}
        else:
            gold = {(e["type"], e["start"], e["end"]) for e in example["entities"]}
            chars = [to_characters(scored.meta, example["text"], e) for e in predicted]
            got = {(c["type"], c["start"], c["end"]) for c in chars if c}
        total += len(gold)
        reproduced += len(gold & got)
        for miss in sorted(gold - got, key=lambda g: g[1]):
            if len(misses) < 20:
                shown = example["text"][miss[1]:miss[2]] if "text" in example else " ".join(example["tokens"][miss[1]:miss[2]])
                misses.append(f"row {n + 1}: {miss[0]} [{miss[1]}, {miss[2]}) {shown!r}")
    return {"entities": total, "reproduced": reproduced,
            "percent": round(100.0 * reproduced / total, 3) if total else 100.0,
            "windowed": lengths["windowed"], "cut": lengths.get("cut_examples", 0), "misses": misses,
            "notes": {k: v for k, v in lengths.items() if k.startswith("note")}}
