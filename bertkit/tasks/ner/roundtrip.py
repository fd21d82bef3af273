"""NER oracle: gold annotations -> labels -> windows -> merged scores -> decoded entities, no model.

What it does: ``oracle`` gives each window one-hot scores from its own labels and decodes them as
predictions are decoded, counting how many gold entities come back exactly; ``bench/check_ner_oracle.py``
and the tests use it to show what the representation can reproduce. What it does not do:
score a model, or fix anything it finds (misses are listed, not repaired).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertkit.metrics import entities as ents
from bertkit.recipe import Recipe
from bertkit.tasks.ner.decoding import merge, predict_entities, to_characters
from bertkit.tasks.ner.featurize import features
from bertkit.tasks.ner.spec import Spec


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
