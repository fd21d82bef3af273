"""QA decoding: start/end logits of all of an example's windows -> the answer and its n-best list.

What it does: runs the model over the windows (``infer``), rebuilds the windows from the feature
rows (``_outputs_from``), and picks, per example, the ``n_best`` best spans inside the context
(SQuAD v2's null answer included when asked), cached on ``Outputs``. What it does not do: score
answers against gold (``qa.scoring``) or build windows (``qa.featurize``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertkit.recipe import Recipe
from bertkit.tasks.qa.featurize import Window, span_chars


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


def infer(model: Any, feats: Any, tokenizer: Any, precision: str, batch_size: int, desc: str | None = None,
          recipe: Any = None) -> Outputs:
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
