"""NER data: raw rows of a split -> one of two shapes, and the label set they need.

What it does: ``clean_split`` brings a split to ``tokens``/``tags`` (string tags) or
``text``/``entities`` (character spans) and drops empty rows; ``prepare`` reads the gold tag scheme
and every entity type into a ``Spec``; ``spec_from_model`` reads it back from a trained model's
config. What it does not do: tokenise, check spans against tokens or convert tags into the label
scheme (``ner.featurize``).
"""

from __future__ import annotations

from typing import Any

from bertkit.errors import BertkitError
from bertkit.metrics import entities as ents
from bertkit.recipe import Recipe
from bertkit.tasks.ner.spec import Options, Spec

TAG_COLUMNS = ("tags", "ner_tags", "labels")  # looked for, in this order, when tags_column is not set


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


def unlabeled_text(dataset: Any, recipe: Recipe) -> list[str]:
    """Each row as text: span data as it is; words joined by spaces, or by nothing for Japanese and
    Chinese words (a space there would change how MeCab splits the text)."""
    if "tokens" not in dataset.column_names:
        return [str(t) for t in dataset["text"]]
    from bertkit.tasks.task_text import CJK

    return [("" if CJK.search("".join(words[:20])) else " ").join(words) for words in dataset["tokens"]]


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
