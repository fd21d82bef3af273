"""``errors.jsonl``: the examples a model gets most wrong, from the prediction rows of a scored split.

Each task's rows already hold the gold answer and the prediction (``predictions.jsonl``); this ranks
the wrong ones, worst first, and says why:

- classification: the loss ``-log p(gold)`` (single-label; multi-label the summed binary
  cross-entropy; regression the squared error). A single-label example is flagged ``likely_label_error``
  when the model, which never trained on it, gives another class at least that class's confident
  threshold: the mean probability the model gives the class on the examples labelled with it
  (confident learning's off-diagonal rule, Northcutt, Jiang and Chuang 2021, "Confident Learning:
  Estimating Uncertainty in Dataset Labels", JAIR 70). Written here, not through ``cleanlab``: the
  rule is a dozen lines, and cleanlab would bring pandas and more for it.
- NER: the entities missed and the spurious ones (exact type and span), most errors first.
- QA: token F1 of the answer against the best gold answer, lowest first, the most confident first
  among equals.

What this does not do: score (the tasks' ``report``), or look at training examples (a model fits
those; an error there says little).
"""

from __future__ import annotations

import math
from typing import Any

TOP = 100  # rows written


def classification(rows: list[dict[str, Any]], top: int = TOP) -> list[dict[str, Any]]:
    scored = [r for r in rows if "gold" in r]
    if not scored:
        return []
    if "value" in scored[0]:  # regression
        ranked = sorted(scored, key=lambda r: -(float(r["value"]) - float(r["gold"])) ** 2)
        return [{**r, "loss": round((float(r["value"]) - float(r["gold"])) ** 2, 6)} for r in ranked[:top]]
    if "labels" in scored[0]:  # multi-label
        out = []
        for r in scored:
            gold = set(r["gold"] if isinstance(r["gold"], list) else [r["gold"]])
            loss = -sum(math.log(max(p if name in gold else 1 - p, 1e-12)) for name, p in r["scores"].items())
            if set(r["labels"]) != {str(g) for g in gold}:
                out.append({**r, "loss": round(loss, 6)})
        return sorted(out, key=lambda r: -r["loss"])[:top]
    thresholds = _confident_thresholds(scored)
    out = []
    for r in scored:
        probs = r["probabilities"]
        gold = str(r["gold"])
        if r["label"] == gold:
            continue
        loss = -math.log(max(probs.get(gold, 0.0), 1e-12))
        row = {**r, "loss": round(loss, 6), "gold_probability": probs.get(gold, 0.0)}
        row["likely_label_error"] = bool(probs[r["label"]] >= thresholds.get(r["label"], 1.0))
        out.append(row)
    return sorted(out, key=lambda r: -r["loss"])[:top]


def _confident_thresholds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per class: the mean probability of that class over the examples labelled with it."""
    sums: dict[str, list[float]] = {}
    for r in rows:
        gold = str(r["gold"])
        sums.setdefault(gold, []).append(r["probabilities"].get(gold, 0.0))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def ner(rows: list[dict[str, Any]], top: int = TOP) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if "gold" not in r:
            continue
        key = lambda e: (e["type"], e["start"], e["end"])  # noqa: E731
        gold, predicted = {key(e): e for e in r["gold"]}, {key(e): e for e in r["predicted"]}
        missed = [gold[k] for k in gold if k not in predicted]
        spurious = [predicted[k] for k in predicted if k not in gold]
        if missed or spurious:
            out.append({**r, "errors": len(missed) + len(spurious), "missed": missed, "spurious": spurious})
    return sorted(out, key=lambda r: -r["errors"])[:top]


def qa(rows: list[dict[str, Any]], lang: str, top: int = TOP) -> list[dict[str, Any]]:
    from bertkit.metrics import squad

    out = []
    for r in rows:
        f1 = squad.f1(r.get("answer") or "", r.get("gold") or [], lang)
        if f1 < 1.0:
            out.append({**r, "f1": round(f1, 4)})
    return sorted(out, key=lambda r: (r["f1"], -float(r.get("probability") or r.get("score") or 0)))[:top]


def rows_for(task: str, rows: list[dict[str, Any]], lang: str = "en") -> list[dict[str, Any]]:
    """The worst rows of a split for ``task`` (none for mlm, whose predictions are not rows)."""
    if task == "classification":
        return classification(rows)
    if task == "ner":
        return ner(rows)
    if task == "qa":
        return qa(rows, lang)
    return []
