"""QA evaluation and prediction: SQuAD EM/F1, the Trainer's metric function, predictions.jsonl rows,
the official script's files and ``predict`` on raw rows.

What it does: scores decoded answers with ``bertkit.metrics.squad`` (English or JGLUE Japanese
normalisation), matches the Trainer's possibly length-grouped evaluation order back to the
validation windows (``_eval_order``), and writes predictions. What it does not do: decode logits
(``qa.decoding``) or build windows (``qa.featurize``); it only calls them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertkit.errors import BertkitError
from bertkit.recipe import Recipe
from bertkit.tasks.qa.decoding import Outputs, _outputs_from, decode
from bertkit.tasks.qa.featurize import encode
from bertkit.tasks.qa.spec import Spec


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
