"""NER features: examples -> tokens with word ids -> labelled windows the model reads.

What it does: tokenises pre-split words (``encode_words``) or raw text with original-text offsets
(``encode_texts``); for span data checks and counts span problems (``_Problems``), cuts training
examples at gold boundaries and turns kept spans into word tags; rewrites gold tags into the label
scheme; labels each word's first sub-token; splits long examples into overlapping windows
(``windows``) so nothing is truncated; reports lengths and problems (``length_report``).
What it does not do: read raw rows (``ner.data``) or turn model outputs back into entities
(``ner.decoding``). Each window's first row carries the example's ``meta`` (JSON) so decoding
needs nothing but the feature rows.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bertkit import encoding
from bertkit.errors import BertkitError
from bertkit.metrics import entities as ents
from bertkit.recipe import Recipe
from bertkit.tasks import boundaries
from bertkit.tasks.ner.data import _form
from bertkit.tasks.ner.spec import Options, Spec


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
    pieces = encoding.word_token_ids(tokenizer, flat)
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
    template = encoding.template(tokenizer)
    budget, stride = recipe.max_length - template.n_specials(False), opts.window_stride(recipe.max_length)
    label_id = {tag: i for i, tag in enumerate(spec.labels)} if spec else {}
    rows = []
    for example, enc in enumerate(encoded):
        labels = token_labels(enc, label_id, opts.label_all_tokens) if spec and enc.word_tags is not None else None
        for k, (s, e) in enumerate(windows(enc.word_ids, budget, stride)):
            ids, types = template.wrap(enc.ids[s:e])
            row = {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids), "length": len(ids),
                   "example_id": example, "window_start": s, "meta": enc.meta() if k == 0 else ""}
            if labels is not None:
                row["labels"] = template.around(labels[s:e], -100)
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
    report = length_report(encoded, recipe, len(rows), notes, encoding.n_specials(tokenizer, False))
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


def length_report(encoded: list[Encoded], recipe: Recipe, n_features: int, notes: dict[str, str],
                  specials: int) -> dict[str, Any]:
    """Token counts per example (with ``specials`` special tokens) and how many needed windows; never any truncation."""
    stats, longer, pct = encoding.length_stats([len(e.ids) + specials for e in encoded], recipe.max_length)
    report: dict[str, Any] = {**stats, "windowed": longer, "windowed_pct": pct, "features": n_features}
    if longer:
        report["note_windows"] = (f"{longer} ({report['windowed_pct']} %) longer than max_length={recipe.max_length}, "
                                  f"split into {n_features - len(encoded) + longer} overlapping windows "
                                  f"(stride {recipe.options.window_stride(recipe.max_length)}); nothing is cut")
    return {**report, **notes}


def collator(tokenizer: Any, spec: Any = None) -> Any:
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8)
