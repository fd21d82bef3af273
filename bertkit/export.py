"""``bertkit export``: a trained model as an ONNX graph (fp32 or int8) checked against the PyTorch model.

The path: the saved model is traced with attention in its plain ("eager") form by ``torch.onnx``,
ONNX Runtime's transformer optimizer fuses each layer's attention, layer norms and GELU into single
operators, and with ``--quantize int8`` ONNX Runtime's quantizer turns the matrix multiplies into int8
ones (int8 weights per output channel; activations scaled per batch as they come (``dynamic``), or
with fixed ranges calibrated on the given rows (``static``)). The export is then run through the task's
own ``predict_batch`` beside the PyTorch model on check rows: label, entity or answer agreement, the
largest probability difference and texts/s of both go to ``export_report.json``. While agreement does not
clear the bar (99 % by default) by half a standard error, the layers whose quantisation costs most are kept in
fp32, one at a time and at most half of them, each then narrowed to the one matrix multiply that is enough;
under the bar the export is refused (exit 1, nothing written) unless ``--force``.

Agreement is measured on rows the model did not train on: a model is surest of its own training rows,
so agreement there over-states agreement on new inputs (a classifier checked on its 300 IMDb training
reviews: 99.33 %; on 600 unseen ones: 97.5 %). Without ``--check``/``--calibration`` the check rows are
the model's validation (else test) file. Check rows (given or default) that are in the training file of
the model's saved ``recipe.yaml`` (``data.train``, every row of it, validation rows held out of it
included) are dropped from the check, and the log says how many; static calibration may still use them.
A row is matched by a hash of its model input, normalised as the leakage guard normalises text
(``task_text.normalise``: case, spaces and punctuation dropped): the text and its pair, NER words joined
or the raw text, QA question and context. ``export_report.json`` records the rows given
(``check_rows_given``), the unseen ones measured (``unseen_rows``; null, with ``check_note`` saying why,
when the training file cannot be read: a hub dataset, a moved file; then every given row is measured).
Fewer than ``MIN_UNSEEN_ROWS`` unseen rows are refused before anything is written, unless ``--force``
(with none unseen, the given rows are measured and the note says so).

Why ``torch.onnx`` and not optimum's exporter: ``optimum-onnx`` 0.1 pins ``transformers < 4.58``, and
bertkit runs transformers 5. Why eager attention: the optimizer recognises that pattern and fuses it into
its ``Attention`` operator (one kernel per layer); the SDPA graph stays as separate pieces. Why dynamic
activations by default: on IMDb reviews with MiniLM (bench/RESULTS.md) they were both faster and closer
to the PyTorch model than calibrated static ranges.

What it does not do: export masked-LM models, or change what the model computes (same truncation, same
decoding: the export directory is read back by ``predict``/``evaluate``/``serve`` through the task code);
or find near-copies of training rows (a paraphrase, a review cut short) or rows of data the recipe does
not name.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit import data as data_mod
from bertkit import evaluation, onnx_model, outputs
from bertkit.errors import BertkitError
from bertkit.train import log

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = ("logits", "start_logits", "end_logits")
# Files of a model directory that travel with its export: config (labels, thresholds, temperature),
# tokenizer, recipe, card. Weights, predictions and plots stay behind.
TRAVELS = (".json", ".txt", ".model", ".yaml", ".md", ".vocab", ".spm")
STAYS = ("metrics.json", "training_args.json", "trainer_state.json", "model.safetensors.index.json")
CHECK_ROWS = 500
READ_ROWS = 4 * CHECK_ROWS  # rows read before training rows are dropped; CHECK_ROWS of what is left are measured
# Fewer unseen check rows measure too little: an export that agrees on 98 % of new rows clears the 99 % bar
# (with likely_at_least's margin) 36 % of the time on 50 check rows, 13 % on 100, 9 % on 200 and 1 % on 500.
# 200 keeps that under one in ten while a validation file of a few hundred rows is still enough.
MIN_UNSEEN_ROWS = 200
MAX_FP32_LAYERS = 0.5  # the share of layers an int8 export may keep in fp32 to reach --min-agreement
CALIBRATION_ROWS = 200
# ONNX Runtime's transformer optimizer knows these layouts (RoBERTa-shaped models use the BERT one).
FUSION_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert", "electra": "bert",
                "distilbert": "bert"}


@dataclass
class Reference:
    """What an export is checked against: the PyTorch model's predictions on the check rows (fp32)."""

    rows: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    texts_per_s: float
    config: Any


def run(model_dir: str, output: str, *, quantize: str | None = None, activations: str = "dynamic",
        calibration: str | None = None, check: str | None = None, min_agreement: float = 0.99, force: bool = False,
        overwrite: bool = False, overrides: list[str] | None = None) -> dict[str, Any]:
    """Export ``model_dir`` into ``output``; returns the report (also written as ``export_report.json``)."""
    if onnx_model.is_export(model_dir):
        raise BertkitError(f"{model_dir} is already an ONNX export", "export the model directory it came from")
    if quantize not in (None, "int8"):
        raise BertkitError(f"--quantize {quantize}: the choices are int8 (or leave it out for fp32)", "e.g. --quantize int8")
    if activations not in ("dynamic", "static"):
        raise BertkitError(f"--activations {activations}: the choices are dynamic and static", "e.g. --activations dynamic")
    if quantize and activations == "static" and not calibration:
        raise BertkitError("static int8 activations need calibration rows", "give --calibration FILE "
                           "(a few hundred inputs like those the model will see, e.g. your validation file)")
    _require_onnx()
    recipe, task, tokenizer, model, spec, _ = evaluation.load_for_prediction(model_dir, overrides)
    if recipe.task == "mlm":
        raise BertkitError(f"{model_dir} is a masked-LM model: export serves classification, NER and QA models",
                           "fine-tune it for a task first (bertkit finetune)")
    static = bool(quantize) and activations == "static"
    calib_rows, given = _rows(model_dir, recipe, calibration, check, static)
    check_rows, counts = _unseen(model_dir, recipe, given)
    check_rows = check_rows[:CHECK_ROWS]
    if counts["unseen_rows"] is not None and counts["unseen_rows"] < MIN_UNSEEN_ROWS:
        seen = len(given) - counts["unseen_rows"]
        if not force:  # refused before the output directory is touched
            where = f" ({seen} are in its training data, {counts['training_data']})" if seen else ""
            raise BertkitError(f"only {counts['unseen_rows']} of the {len(given)} check rows are unseen by the model"
                               f"{where}; at least {MIN_UNSEEN_ROWS} are needed to measure agreement on new inputs",
                               "give --check FILE with rows the model did not train on, e.g. its test file, "
                               "or accept with --force")
        _add_note(counts, f"only {counts['unseen_rows']} unseen check rows, under {MIN_UNSEEN_ROWS} (--force)")
        if not check_rows:  # nothing unseen to measure on: measured on the given rows, and said so
            check_rows = given
            _add_note(counts, "agreement is measured on rows the model trained on and over-states it")
    work = outputs.prepare(output, overwrite=overwrite)
    try:
        model.to("cpu")
        graph = work / "graph.fp32.onnx"
        names = _trace(model, graph)
        fused = _fuse(graph, model.config)
        reference = _reference(recipe, task, spec, tokenizer, model, check_rows)
        chosen, kept = fused, []
        if quantize:
            batches = _recorded_batches(fused, reference, recipe, task, spec, tokenizer, calib_rows) if static else None
            chosen, kept, report = _quantize(fused, work / "graph.int8.onnx", activations, batches, reference,
                                             recipe, task, spec, tokenizer, min_agreement)
        else:
            report = _compare(reference, chosen, recipe, task, spec, tokenizer)
        shutil.move(str(chosen), work / onnx_model.ONNX_FILE)
        for leftover in work.glob("graph.*"):
            leftover.unlink()
        report.update(model=str(model_dir), task=recipe.task, quantize=quantize or "fp32",
                      activations=activations if quantize else None, kept_fp32=kept, inputs=names["inputs"],
                      outputs=names["outputs"], min_agreement=min_agreement, check_rows=len(check_rows), **counts,
                      calibration_rows=len(calib_rows) if static else 0,
                      onnx_mb=round((work / onnx_model.ONNX_FILE).stat().st_size / 2**20, 1))
        report["agreement_interval_95"] = [round(v, 4) for v in interval(report)]
        report["passed"] = report["agreement"] >= min_agreement
        if not report["passed"] and not force:
            detail = (f" (int8 everywhere: {report['int8_everywhere_agreement']:.2%}; keeping up to half of the layers "
                      "in fp32 did not close the gap)") if quantize else ""
            raise BertkitError(f"the export agrees with the PyTorch model on {report['agreement']:.2%} of the check rows, "
                               f"under the required {min_agreement:.0%}{detail}",
                               "export without --quantize (fp32)" + (", give more representative --calibration rows"
                                                                      if static else "") +
                               ", lower --min-agreement, or accept it with --force")
        _copy_companions(Path(model_dir), work)
        outputs.write_json(work / onnx_model.REPORT_FILE, report)
    except BaseException:
        outputs.discard(work)
        raise
    outputs.publish(work, output)
    return report


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise BertkitError("bertkit export needs onnx and onnxruntime, which are not installed",
                           onnx_model.INSTALL_HINT) from exc


def _rows(model_dir: str, recipe: Any, calibration: str | None, check: str | None,
          static: bool) -> tuple[list[dict], list[dict]]:
    """(calibration rows, check rows). For static ranges the calibration file's first rows calibrate and the
    rest check (agreement is measured on rows the ranges were not fitted to); otherwise all its rows check.
    ``--check`` names the check rows itself; without either file, the model's own validation or test file
    (from its recipe) is used."""
    column = recipe.data.text_column

    def read(path: str, limit: int) -> list[dict]:
        rows = []
        for row in data_mod.iter_input_lines(path, column):
            if column not in row and "text" in row and recipe.task != "qa":
                row = {**row, column: row["text"]}
            rows.append(row)
            if len(rows) >= limit:
                break
        if not rows:
            raise BertkitError(f"{path} holds no input rows", "give a file with inputs in the format predict reads")
        return rows

    if calibration is None and check is None:
        # training data, read as training reads it (CoNLL columns, SQuAD JSON, ...); the task takes its rows
        path, fmt = _trained_on(model_dir)
        return [], data_mod.read_rows(path, fmt, recipe.task)[:READ_ROWS]
    calib = read(calibration, CALIBRATION_ROWS + READ_ROWS) if calibration else []
    if check:
        checks = read(check, READ_ROWS)
    elif not static:
        checks = calib
    else:
        cut = min(CALIBRATION_ROWS, len(calib) // 2) if len(calib) > 1 else len(calib)
        calib, checks = calib[:cut], calib[cut:] or calib
    return calib[:CALIBRATION_ROWS], checks


def _saved_data(model_dir: str) -> dict[str, Any]:
    """The ``data`` section of the model's saved ``recipe.yaml`` ({} without one)."""
    from bertkit import recipe as recipe_mod

    path = Path(model_dir) / "recipe.yaml"
    return (recipe_mod.read_yaml(path).get("data") or {}) if path.exists() else {}


def _trained_on(model_dir: str) -> tuple[str, str]:
    """(path, format) of the validation (else test) file the model was trained with, if it is still there."""
    saved = _saved_data(model_dir)
    for split in ("validation", "test"):
        path = saved.get(split)
        if isinstance(path, str) and Path(path).is_file():
            return path, str(saved.get("format") or "auto")
    raise BertkitError("export needs rows to check the export against the PyTorch model",
                       "give --check FILE (or --calibration FILE): inputs in the format predict reads")


def _unseen(model_dir: str, recipe: Any, rows: list[dict]) -> tuple[list[dict], dict[str, Any]]:
    """(the check rows that are not in the model's training file, the report's counts of them).

    ``unseen_rows`` is None, and ``check_note`` says why, when the training file cannot be read; then
    every given row is checked."""
    counts: dict[str, Any] = {"check_rows_given": len(rows), "unseen_rows": None, "training_data": None,
                              "check_note": None}
    saved = _saved_data(model_dir)
    train = saved.get("train")
    if saved.get("dataset"):
        reason = f"the model was trained on the hub dataset {saved['dataset']}"
    elif not isinstance(train, str):
        reason = f"{Path(model_dir) / 'recipe.yaml'} names no training file"
    elif not Path(train).is_file():
        reason = f"its training file {train} is not there (moved or deleted)"
    else:
        try:
            known = {_input_key(row, recipe) for row in data_mod.read_rows(train, str(saved.get("format") or "auto"),
                                                                           recipe.task)}
        except (BertkitError, OSError, ValueError) as exc:
            reason = f"its training file {train} could not be read ({str(exc).splitlines()[0][:120]})"
        else:
            unseen = [row for row in rows if _input_key(row, recipe) not in known]
            if len(unseen) < len(rows):
                log(f"{len(rows) - len(unseen)} of {len(rows)} check rows are in the model's training data ({train}) "
                    "and are not counted")
            counts.update(unseen_rows=len(unseen), training_data=train)
            return unseen, counts
    _add_note(counts, f"check rows not compared with the training data: {reason}")
    log(f"note: {counts['check_note']}; agreement may be over-stated if they overlap")
    return rows, counts


def _add_note(counts: dict[str, Any], note: str) -> None:
    counts["check_note"] = f"{counts['check_note']}; {note}" if counts["check_note"] else note


def _input_key(row: dict[str, Any], recipe: Any) -> bytes:
    """A hash of the model input in ``row``, normalised as the leakage guard normalises text, so that a
    training row (CoNLL words, SQuAD JSON) and a check row (raw text) with the same input match."""
    from bertkit.tasks.task_text import normalise

    d, opts = recipe.data, recipe.options
    if recipe.task == "qa":
        parts = [row.get(opts.question_column), row.get(opts.context_column)]
    elif recipe.task == "ner":
        words = row.get(opts.tokens_column)
        value = words if isinstance(words, list) else row.get(d.text_column)
        parts = [" ".join(str(w) for w in value) if isinstance(value, list) else value]
    else:
        parts = [row.get(d.text_column)] + ([row.get(d.text_pair_column)] if d.text_pair_column else [])
    # "\n" cannot come out of normalise, so the text and its pair cannot run into each other
    text = "\n".join(normalise("" if p is None else str(p)) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


def _trace(model: Any, path: Path) -> dict[str, list[str]]:
    """Trace ``model`` to ONNX with dynamic batch and sequence axes; returns the input and output names."""
    import inspect
    import warnings

    import torch

    from bertkit.inference import accepted_inputs

    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except (ValueError, AttributeError):
            pass  # a model without an eager path keeps its own attention; the check below still runs
    model.eval()
    takes = accepted_inputs(model)
    order = [n for n in inspect.signature(model.forward).parameters if n in INPUTS and n in takes]
    # Two rows, the second padded: a graph traced without padding could leave the mask out.
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    mask[1, 9:] = 0
    sample = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros((2, 16), dtype=torch.long)}
    args = {n: sample[n] for n in order}
    with torch.inference_mode():
        out = model(**args)
    names = [n for n in OUTPUTS if n in out]

    class Outputs(torch.nn.Module):  # a tuple of the named outputs, in a fixed order
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> tuple:
            result = self.inner(**dict(zip(order, inputs)))
            return tuple(result[n] for n in names)

    axes = {n: {0: "batch", 1: "sequence"} for n in order}
    for n in names:  # sequence logits are (batch, labels); token and span logits have a sequence axis
        axes[n] = {0: "batch"} if n == "logits" and out[n].dim() == 2 else {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python conditions it folded are for developers
        torch.onnx.export(Outputs(model), tuple(args[n] for n in order), str(path), input_names=order, output_names=names,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return {"inputs": order, "outputs": names}


def _fuse(path: Path, config: Any) -> Path:
    """ONNX Runtime's transformer fusions (attention, layer norm, GELU) where it knows the layout."""
    kind = FUSION_TYPES.get(getattr(config, "model_type", ""))
    if kind is None:
        return path
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    fused = path.with_name("graph.fused.onnx")
    try:
        optimized = optimizer.optimize_model(str(path), model_type=kind, num_heads=config.num_attention_heads,
                                             hidden_size=config.hidden_size, opt_level=0)
        optimized.save_model_to_file(str(fused))
    except Exception as exc:  # a layout the optimizer misreads: the unfused graph is exact, only slower
        log(f"note: ONNX Runtime could not fuse this graph ({str(exc).splitlines()[0][:120]}); exporting it unfused")
        return path
    return fused


def _reference(recipe: Any, task: Any, spec: Any, tokenizer: Any, model: Any, rows: list[dict]) -> Reference:
    started = time.perf_counter()
    predictions = task.predict_batch(spec, recipe, tokenizer, model, rows, "fp32", 64)
    return Reference(rows, predictions, round(len(rows) / (time.perf_counter() - started), 2), model.config)


def _compare(reference: Reference, graph: Path, recipe: Any, task: Any, spec: Any, tokenizer: Any) -> dict[str, Any]:
    """Run ``graph`` through ``predict_batch`` on the check rows: agreement with the reference, and speed."""
    model = _session_model(graph, reference.config)
    started = time.perf_counter()
    predicted = task.predict_batch(spec, recipe, tokenizer, model, reference.rows, "fp32", 64)
    texts_per_s = round(len(reference.rows) / (time.perf_counter() - started), 2)
    result = agreement_of(recipe.task, reference.predictions, predicted)
    result["pytorch"] = {"precision": "fp32", "texts_per_s": reference.texts_per_s}
    result["onnx"] = {"texts_per_s": texts_per_s}
    result["speedup"] = round(texts_per_s / reference.texts_per_s, 2)
    return result


def _session_model(graph: Path, config: Any) -> Any:
    """An ``OnnxModel`` over a graph file still in the staging directory, with the model's config."""
    return onnx_model.OnnxModel(graph.parent, graph=graph, config=config)


def agreement_of(task: str, reference: list[dict], predicted: list[dict]) -> dict[str, Any]:
    """How far the export's ``predict`` rows are from the PyTorch model's, in the task's own terms.

    classification: share of rows with the same label(s); largest difference of any label's probability.
    ner: entities both find (same span and type) over entities either finds; largest score difference of
    those both find. qa: share of questions with the same answer span; largest difference of its probability.
    """
    if task == "ner":
        ref = {(i, e["start"], e["end"], e["type"]): e["score"] for i, r in enumerate(reference) for e in r["entities"]}
        got = {(i, e["start"], e["end"], e["type"]): e["score"] for i, r in enumerate(predicted) for e in r["entities"]}
        both = ref.keys() & got.keys()
        union = ref.keys() | got.keys()
        diff = max((abs(ref[k] - got[k]) for k in both), default=0.0)
        return {"agreement": len(both) / len(union) if union else 1.0, "agreement_kind": "entity", "counted": len(union),
                "entities": {"both": len(both), "pytorch_only": len(ref.keys() - both), "onnx_only": len(got.keys() - both)},
                "max_prob_diff": round(diff, 6)}
    if task == "qa":
        same = [(r["start"], r["end"]) == (p["start"], p["end"]) for r, p in zip(reference, predicted)]
        diff = max((abs(r["probability"] - p["probability"]) for r, p, s in zip(reference, predicted, same) if s), default=0.0)
        return {"agreement": sum(same) / len(same), "agreement_kind": "answer", "counted": len(same),
                "max_prob_diff": round(diff, 6)}
    if "value" in reference[0]:  # regression: agreement within 1 % of the reference's spread
        values = [r["value"] for r in reference]
        tolerance = 0.01 * (max(values) - min(values) or 1.0)
        gaps = [abs(r["value"] - p["value"]) for r, p in zip(reference, predicted)]
        return {"agreement": sum(g <= tolerance for g in gaps) / len(gaps), "agreement_kind": "value", "counted": len(gaps),
                "max_value_diff": round(max(gaps), 6)}
    key, probs = ("labels", "scores") if "labels" in reference[0] else ("label", "probabilities")
    same = [r[key] == p[key] for r, p in zip(reference, predicted)]
    diff = max(abs(r[probs][name] - p[probs][name]) for r, p in zip(reference, predicted) for name in r[probs])
    return {"agreement": sum(same) / len(same), "agreement_kind": "label", "counted": len(same),
            "max_prob_diff": round(diff, 6)}


def likely_at_least(result: dict[str, Any], required: float) -> bool:
    """Whether agreement is at least ``required`` with half a standard error to spare (the lower end of
    Wilson's score interval at z = 0.5), so that new rows, not only the check rows, reach it: 99.0 % on 500
    check rows was 98.85 % on 2,000 new ones (bench/RESULTS.md). A margin, not a guarantee."""
    return interval(result, z=0.5)[0] >= required


def interval(result: dict[str, Any], z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval of the agreement over its counted rows (z = 1.96: 95 %)."""
    n, p = max(int(result.get("counted", 0)), 1), result["agreement"]
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def _quantizable(graph: Path) -> tuple[list[str], list[str]]:
    """(encoder nodes that can be int8, head nodes kept in fp32), by graph position: the nodes with a
    weight matrix after the encoder's last layer norm are the task head (small, and closest to the scores)."""
    import onnx

    nodes = onnx.load(str(graph), load_external_data=False).graph
    weights = {init.name for init in nodes.initializer}
    norms = [i for i, n in enumerate(nodes.node) if "LayerNorm" in n.op_type or "LayerNormalization" in n.op_type]
    last_norm = norms[-1] if norms else len(nodes.node)
    candidates = [(i, n) for i, n in enumerate(nodes.node)
                  if n.op_type in ("MatMul", "Gemm", "Attention") and any(x in weights for x in n.input[1:2])]
    body = [n.name for i, n in candidates if i < last_norm]
    head = [n.name for i, n in candidates if i >= last_norm]
    return body, head


def _quantize(fused: Path, target: Path, activations: str, batches: list | None, reference: Reference,
              recipe: Any, task: Any, spec: Any, tokenizer: Any, min_agreement: float) -> tuple:
    """Quantise; while agreement is short of ``min_agreement``, keep the most sensitive layers in fp32,
    then narrow each kept layer to one matrix multiply where one is enough (measured, not guessed)."""
    prepared = _shape_inferred(fused)
    body, head = _quantizable(prepared)
    layers = max(1, int(getattr(reference.config, "num_hidden_layers", 1) or 1))
    size = max(1, -(-len(body) // layers))
    groups = [body[i:i + size] for i in range(0, len(body), size)]  # graph order: one group per layer
    written: list[list[str]] = [[]]

    def attempt(kept: list[str]) -> dict:
        _quantize_once(prepared, target, activations, batches, head + kept)
        written[0] = list(kept)
        result = _compare(reference, target, recipe, task, spec, tokenizer)
        log(f"int8, {len(kept)} of {len(body)} matrix multiplies in fp32: agreement {result['agreement']:.2%}")
        return result

    kept: list[str] = []
    result = attempt(kept)
    everywhere = result["agreement"]
    # Layers go back to fp32 until agreement is likely to hold on new rows (the pass itself is on the check rows).
    if not likely_at_least(result, min_agreement) and groups:
        alone = [(attempt(group), g) for g, group in enumerate(groups)]  # each layer alone in fp32
        ranked = sorted(alone, key=lambda t: (t[0]["agreement"], -t[0].get("max_prob_diff", 0.0)), reverse=True)
        chosen: list[int] = []
        # Past half the layers in fp32 an int8 export buys little: better refused than passed off as int8.
        for trial, g in ranked[: max(1, int(len(groups) * MAX_FP32_LAYERS))]:
            chosen.append(g)
            kept = [n for c in chosen for n in groups[c]]
            result = trial if len(chosen) == 1 else attempt(kept)
            if likely_at_least(result, min_agreement):
                break
        if likely_at_least(result, min_agreement):
            for g in chosen:
                for node in groups[g]:
                    narrower = [n for n in kept if n not in groups[g]] + [node]
                    trial = attempt(narrower)
                    if likely_at_least(trial, min_agreement):
                        kept, result = narrower, trial
                        break
    if written[0] != kept:
        result = attempt(kept)
    prepared.unlink(missing_ok=True)
    layer_of = {n: g for g, group in enumerate(groups) for n in group}
    result["int8_everywhere_agreement"] = everywhere
    return target, [f"layer {layer_of[n]}: {n}" for n in kept], result


def _shape_inferred(graph: Path) -> Path:
    """The graph with every tensor's type and shape written in (the quantizer needs them)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = graph.with_name("graph.shaped.onnx")
    try:
        quant_pre_process(str(graph), str(out), skip_optimization=True, skip_symbolic_shape=False)
    except Exception:  # symbolic inference can fail on unfused graphs; ONNX's own inference is enough there
        quant_pre_process(str(graph), str(out), skip_optimization=True, skip_symbolic_shape=True)
    return out


def _quantize_once(graph: Path, target: Path, activations: str, batches: list | None, excluded: list[str]) -> None:
    import logging

    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs every node it passes over
    # Tensors whose type shape inference cannot name (outputs of ONNX Runtime's fused operators) are float.
    options = {"DefaultTensorType": 1}
    # Matrix multiplies only: int8 embedding tables (QEmbedLayerNormalization) save ~1 % of the time and cost
    # agreement (NCBI-disease NER: 97.2 % entity agreement with every matrix multiply in fp32).
    operators = ["MatMul", "Attention", "Gemm"]
    if activations == "dynamic":
        quantize_dynamic(str(graph), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=operators, nodes_to_exclude=excluded, extra_options=options)
        return

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches or [])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    quantize_static(str(graph), str(target), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=operators, nodes_to_exclude=excluded, extra_options=options)


class _Recorder:
    """An fp32 ONNX model that keeps each batch it is given: the calibration inputs are then exactly the
    batches ``predict`` builds (the task's tokenisation, windows, padding and length sorting)."""

    onnx = True

    def __init__(self, inner: Any) -> None:
        self.inner, self.batches = inner, []
        self.config, self.input_names, self.on_cpu = inner.config, inner.input_names, inner.on_cpu

    def run(self, batch: dict) -> dict:
        feed = {n: batch[n] for n in self.input_names}
        self.batches.append(feed)
        return self.inner.run(feed)


def _recorded_batches(graph: Path, reference: Reference, recipe: Any, task: Any, spec: Any, tokenizer: Any,
                      rows: list[dict]) -> list[dict]:
    recorder = _Recorder(_session_model(graph, reference.config))
    task.predict_batch(spec, recipe, tokenizer, recorder, rows, "fp32", 64)
    return recorder.batches


def _copy_companions(source: Path, target: Path) -> None:
    """Config, tokenizer, recipe and card go with the graph; weights, predictions and plots do not."""
    for path in source.iterdir():
        if path.is_file() and path.suffix in TRAVELS and path.name not in STAYS and not path.name.endswith(".onnx"):
            shutil.copy2(path, target / path.name)


def summary(report: dict[str, Any]) -> str:
    kind, given = report["agreement_kind"], report.get("check_rows_given", report["check_rows"])
    if report.get("unseen_rows") is None:
        rows = f"{report['check_rows']} check rows (not compared with the training data)"
    elif report["unseen_rows"] < report["check_rows"]:  # none unseen, forced: measured on training rows
        rows = f"{report['check_rows']} check rows the model trained on"
    else:
        rows = f"{report['unseen_rows']} unseen check rows of {given} given"
    low, high = report.get("agreement_interval_95") or (report["agreement"], report["agreement"])
    return (f"{report['quantize']} export: {kind} agreement {report['agreement']:.2%} (95 % interval {low:.2%} to "
            f"{high:.2%}) on {rows}, "
            f"largest probability difference {report.get('max_prob_diff', report.get('max_value_diff'))}, "
            f"{report['onnx']['texts_per_s']} texts/s vs PyTorch fp32 {report['pytorch']['texts_per_s']} "
            f"({report['speedup']}x)" + (f"; kept in fp32: {', '.join(report['kept_fp32'])}" if report["kept_fp32"] else "")
            + (f"; note: {report['check_note']}" if report.get("check_note") else ""))
