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

Why ``torch.onnx`` and not optimum's exporter: ``optimum-onnx`` 0.1 pins ``transformers < 4.58``, and
bertkit runs transformers 5. Why eager attention: the optimizer recognises that pattern and fuses it into
its ``Attention`` operator (one kernel per layer); the SDPA graph stays as separate pieces. Why dynamic
activations by default: on IMDb reviews with MiniLM (bench/RESULTS.md) they were both faster and closer
to the PyTorch model than calibrated static ranges.

What it does not do: export masked-LM models, or change what the model computes (same truncation, same
decoding: the export directory is read back by ``predict``/``evaluate``/``serve`` through the task code).
"""

from __future__ import annotations

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
    calib_rows, check_rows = _rows(model_dir, recipe, calibration, check, static)
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
                      outputs=names["outputs"], min_agreement=min_agreement, check_rows=len(check_rows),
                      calibration_rows=len(calib_rows) if static else 0,
                      onnx_mb=round((work / onnx_model.ONNX_FILE).stat().st_size / 2**20, 1))
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
        return [], data_mod.read_rows(path, fmt, recipe.task)[:CHECK_ROWS]
    calib = read(calibration, CALIBRATION_ROWS + CHECK_ROWS) if calibration else []
    if check:
        checks = read(check, CHECK_ROWS)
    elif not static:
        checks = calib[:CHECK_ROWS]
    else:
        cut = min(CALIBRATION_ROWS, len(calib) // 2) if len(calib) > 1 else len(calib)
        calib, checks = calib[:cut], calib[cut:] or calib
    return calib[:CALIBRATION_ROWS], checks


def _trained_on(model_dir: str) -> tuple[str, str]:
    """(path, format) of the validation (else test) file the model was trained with, if it is still there."""
    from bertkit import recipe as recipe_mod

    path = Path(model_dir) / "recipe.yaml"
    saved = (recipe_mod.read_yaml(path).get("data") or {}) if path.exists() else {}
    for split in ("validation", "test"):
        path = saved.get(split)
        if isinstance(path, str) and Path(path).is_file():
            return path, str(saved.get("format") or "auto")
    raise BertkitError("export needs rows to check the export against the PyTorch model",
                       "give --check FILE (or --calibration FILE): inputs in the format predict reads")


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
    n, p, z = max(int(result.get("counted", 0)), 1), result["agreement"], 0.5
    lower = (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return lower >= required


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
    kind = report["agreement_kind"]
    return (f"{report['quantize']} export: {kind} agreement {report['agreement']:.2%} on {report['check_rows']} rows, "
            f"largest probability difference {report.get('max_prob_diff', report.get('max_value_diff'))}, "
            f"{report['onnx']['texts_per_s']} texts/s vs PyTorch fp32 {report['pytorch']['texts_per_s']} "
            f"({report['speedup']}x)" + (f"; kept in fp32: {', '.join(report['kept_fp32'])}" if report["kept_fp32"] else ""))
