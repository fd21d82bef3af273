"""``evaluate`` and ``predict``: a saved model applied to new data, through the same task code.

A bertkit output directory carries its ``recipe.yaml``, so the task, the column names and the
options (max_length, truncation, threshold) come back from it; command-line ``key=value``
overrides change them as in ``finetune``. A plain ``save_pretrained`` directory works too (a
sequence classifier, with default column names).

Launched on several processes (``--num-processes``), every process reads the same input and runs the
same code; ``inference.across_processes`` shares out the model's batches and gathers the outputs, and
the main process alone writes files, so the output equals one process's, row for row.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit import data as data_mod
from bertkit import distributed, hardware, inference, mistakes, models, onnx_model, outputs, tasks
from bertkit import recipe as recipe_mod
from bertkit.errors import BertkitError
from bertkit.train import Prepared, evaluate_split, log


def saved_recipe(model_dir: str, overrides: list[str], data: dict[str, Any] | None = None) -> recipe_mod.Recipe:
    """The recipe a model was trained with (or a default), pointed at ``model_dir`` and new data."""
    recipe_mod._load_task_modules()
    path = Path(model_dir) / "recipe.yaml"
    if path.exists():
        tree = recipe_mod.read_yaml(path)
    else:
        models.resolve(model_dir)  # a clear error for a missing path or a non-model directory
        tree = {"task": "classification"}
    tree["model"] = model_dir
    tree.setdefault("output_dir", str(Path(model_dir) / "evaluations"))
    data_tree = dict(tree.get("data") or {})
    for key in ("dataset", "config", "train", "validation", "test"):
        data_tree.pop(key, None)
    data_tree.update(data or {})
    tree["data"] = data_tree
    tree = recipe_mod.apply_overrides(tree, overrides)
    return recipe_mod.from_dict(tree, source=str(path) if path.exists() else None, for_training=False)


def _data_source(data: str, split: str | None) -> dict[str, Any]:
    """A local file is evaluated as the 'test' split; anything else is taken as a hub dataset id."""
    if Path(data).exists() or Path(data).suffix.lower() in data_mod.FORMATS_BY_SUFFIX:
        return {"test": data}
    return {"dataset": data, "test": split or "test"}


def evaluate(model_dir: str, data: str, *, split: str | None = None, overrides: list[str] | None = None,
             output_dir: str | None = None, batch_size: int = 64) -> tuple[dict[str, Any], Path]:
    """Score ``model_dir`` on ``data``; write metrics.json, predictions.jsonl and errors.jsonl."""
    with inference.across_processes():
        return _evaluate(model_dir, data, split=split, overrides=overrides, output_dir=output_dir,
                         batch_size=batch_size)


def _evaluate(model_dir: str, data: str, *, split: str | None, overrides: list[str] | None,
              output_dir: str | None, batch_size: int) -> tuple[dict[str, Any], Path]:
    recipe = saved_recipe(model_dir, overrides or [], _data_source(data, split))
    task = tasks.get(recipe.task)
    raw = data_mod.load(recipe.data, recipe.task)
    dataset = raw["test"]
    dropped = 0
    if task.clean_split is not None:
        with _naming(data):
            dataset, dropped = task.clean_split(dataset, recipe, "test")
    dataset = data_mod.limit(dataset, recipe.data.max_eval_samples)
    tokenizer = models.load_tokenizer(model_dir, trust_remote_code=recipe.trust_remote_code,
                                       japanese=recipe.japanese)
    model = _load_model(model_dir, task, recipe)
    spec = task.spec_from_model(model.config, recipe)
    # The task sees the split's role ("test": score as it is read, never as training data), whatever
    # the file is called; errors then name the file.
    with _naming(data):
        feats, lengths = task.features(dataset, tokenizer, recipe, spec, "test")
    import datasets

    p = Prepared(recipe=recipe, task=task, spec=spec, tokenizer=tokenizer, raw=datasets.DatasetDict({"test": dataset}),
                 features={"test": feats}, lengths={"test": lengths}, dropped={"test": dropped})
    started = time.perf_counter()
    metrics, rows, artifacts = evaluate_split(p, model, "test", batch_size)
    seconds = time.perf_counter() - started
    metrics["data"] = {"source": data, "split": split or "test", "examples": len(dataset), "dropped_empty": dropped,
                       "lengths": lengths}
    metrics["seconds"] = round(seconds, 2)
    target = Path(output_dir) if output_dir else Path(model_dir) / "evaluations" / _slug(data, split)
    if not distributed.is_main_process():
        return metrics, target
    target.mkdir(parents=True, exist_ok=True)
    outputs.write_json(target / "metrics.json", metrics)
    outputs.write_jsonl(target / "predictions.jsonl", rows)
    if recipe.task != "mlm":
        outputs.write_jsonl(target / "errors.jsonl", mistakes.rows_for(recipe.task, rows, getattr(spec, "lang", "en")))
    for name, content in artifacts.items():
        outputs.write_json(target / name, content)
    return metrics, target


@contextlib.contextmanager
def _naming(data: str) -> Iterator[None]:
    """Put the evaluated file's name in front of a data error (the task calls it the test data)."""
    try:
        yield
    except BertkitError as exc:
        raise BertkitError(f"{data}: {exc.message}", exc.hint) from exc


def _slug(data: str, split: str | None) -> str:
    """A directory name for an evaluation: letters, digits, '-', '_' and '.' only, so it stays inside
    ``evaluations/`` whatever the data path or split name holds (``..``, ``/``, NUL, ...)."""
    stem = Path(data).stem if Path(data).suffix else data.replace("/", "__")
    name = stem + (f"-{split}" if split else "")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "data"


def _load_model(model_dir: str, task: Any, recipe: recipe_mod.Recipe, threads: int | None = None) -> Any:
    """The PyTorch model on its device, or an ONNX Runtime session for an export directory."""
    if onnx_model.is_export(model_dir):
        return onnx_model.OnnxModel(model_dir, threads)
    model = models.load_model(model_dir, task.model_class(), allow_pickle=recipe.allow_pickle,
                              trust_remote_code=recipe.trust_remote_code)
    return model.to(hardware.device())


def load_for_prediction(model_dir: str, overrides: list[str] | None = None, threads: int | None = None
                        ) -> tuple[Any, Any, Any, Any, Any, str]:
    """(recipe, task, tokenizer, model on its device, spec, precision) of a trained model directory or of
    its ONNX export (``bertkit export``): what ``predict`` and ``serve`` run ``task.predict_batch`` with.
    ``threads``: the CPU threads an ONNX Runtime session may use (None: its default, every core)."""
    recipe = saved_recipe(model_dir, overrides or [])
    task = tasks.get(recipe.task)
    tokenizer = models.load_tokenizer(model_dir, trust_remote_code=recipe.trust_remote_code,
                                       japanese=recipe.japanese)
    model = _load_model(model_dir, task, recipe, threads)
    return recipe, task, tokenizer, model, task.spec_from_model(model.config, recipe), _precision_here(recipe.precision)


def _precision_here(trained_with: str) -> str:
    """The saved recipe's precision where this machine runs it; else (a model trained in fp16 on a GPU,
    predicting on a CPU) what ``auto`` measures here, said once."""
    try:
        return hardware.resolve_precision(trained_with)
    except BertkitError:
        chosen, reason = hardware.precision_choice("auto")
        log(f"the model was trained with precision {trained_with}, which this machine cannot run: {reason}")
        return chosen


def predict(model_dir: str, source: str | None, *, output: str | None, overrides: list[str] | None = None,
            batch_size: int = 64, chunk: int = 2048, one: dict[str, str] | None = None) -> int:
    """Stream ``source`` through the model in chunks; write one JSON line per input. Returns the count.

    ``one`` replaces ``source`` with a single input from the command line: ``{"text": ...}``, or
    ``{"question": ..., "context": ...}`` for a question-answering model.
    """
    with inference.across_processes() as several:
        if several and one is None and source in (None, "-"):
            raise BertkitError("predict on several processes reads a file, not standard input",
                               "give the input as a file, or drop --num-processes")
        return _predict(model_dir, source, output=output, overrides=overrides, batch_size=batch_size, chunk=chunk,
                        one=one)


def _predict(model_dir: str, source: str | None, *, output: str | None, overrides: list[str] | None,
             batch_size: int, chunk: int, one: dict[str, str] | None) -> int:
    import os
    import sys

    from bertkit import console

    recipe, task, tokenizer, model, spec, precision = load_for_prediction(model_dir, overrides)
    column = recipe.data.text_column
    out_path = Path(output) if output else None
    partial = out_path.with_name(out_path.name + ".partial") if out_path else None
    if not distributed.is_main_process():  # the main process writes what every process computed
        out_path = partial = None
        sink = open(os.devnull, "w", encoding="utf-8")
    else:
        sink = open(partial, "w", encoding="utf-8") if partial else sys.stdout
    count = 0
    # none with the predictions on stdout: on a terminal, a bar would tear their lines
    bar = console.progress(None, "predicting" if out_path else None)
    try:
        pending: list[dict[str, Any]] = []
        own_check = task.INPUT_COLUMNS is not None  # tasks with several input fields (qa) check rows themselves
        rows = data_mod.iter_input_lines(source, column) if one is None else [_one_row(one, recipe, model_dir)]
        for row in rows:
            if not own_check and column not in row and "text" in row:
                row = {**row, column: row["text"]}
            if not own_check and column not in row:
                raise BertkitError(f"{source}: input row {count + len(pending) + 1} has no '{column}' field",
                                   f"its fields are {', '.join(row)}; set data.text_column=...")
            pending.append(row)
            if len(pending) >= chunk:
                count += _write(sink, task.predict_batch(spec, recipe, tokenizer, model, pending, precision, batch_size))
                bar.update(len(pending))
                pending = []
        if pending:
            count += _write(sink, task.predict_batch(spec, recipe, tokenizer, model, pending, precision, batch_size))
            bar.update(len(pending))
    except BaseException:
        bar.close()  # end the progress line, so an error message starts on its own line
        if partial:
            sink.close()
            partial.unlink(missing_ok=True)
        raise
    bar.close()
    if partial:
        sink.close()
        partial.replace(out_path)
    if count == 0:
        log(f"warning: {source} held no input lines")
    return count


def _one_row(one: dict[str, str], recipe: recipe_mod.Recipe, model_dir: str) -> dict[str, str]:
    """The command line's single input as a row in the model's own column names."""
    if recipe.task == "qa":
        if "question" not in one:
            raise BertkitError(f"{model_dir} answers questions: one text is not an input for it",
                               "give --question and --context")
        return {recipe.options.question_column: one["question"], recipe.options.context_column: one["context"]}
    if "question" in one:
        raise BertkitError(f"{model_dir} is a {recipe.task} model: --question and --context are for question answering",
                           "give --text, or an input file")
    return {recipe.data.text_column: one["text"]}


def _write(sink: Any, rows: list[dict[str, Any]]) -> int:
    import json

    for row in rows:
        sink.write(json.dumps(outputs.json_safe(row), ensure_ascii=False) + "\n")
    sink.flush()
    return len(rows)
