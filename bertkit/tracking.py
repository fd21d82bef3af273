"""Experiment trackers (``training.report_to``): what bertkit adds to the Trainer's own reporting.

While training, the Trainer's integration callback for each tracker (``TensorBoardCallback``,
``MLflowCallback``, ``TrackioCallback``) receives every ``Trainer.log`` record: the training loss
every ``logging_steps``, and each per-epoch evaluation, which ``trainer.BertkitTrainer.evaluate``
logs with the ``eval_`` prefix (TensorBoard shows them as ``eval/<metric>``, one point per
evaluation at its global step). Nothing here repeats that.

After training, the run's final results exist only once the saved model has been scored, after
the Trainer's callbacks have closed their runs. ``finish`` sends them to the same place:

- the final metrics (``metrics.json``'s ``before``, ``validation``, ``test`` and ``train`` numbers,
  nested names joined by ``/``) as scalars named ``final/<split>/<metric>`` at the last step;
- the resolved recipe (``recipe.yaml``) and the model card (``README.md``) as text.

TensorBoard: a new event file in the callback's log directory (``<output_dir>/runs/<date>_<host>``, or
``TENSORBOARD_LOGGING_DIR``), written with ``torch.utils.tensorboard.SummaryWriter``; the recipe and
card as text summaries ``recipe`` and ``model_card``. MLflow: the run the callback used (remembered by
``RunHandles`` at the start of training), reopened by id: ``log_metrics``, and the two files (and
``metrics.json``) as artifacts. trackio: the run reopened by name (``resume="must"``): the scalars,
and the recipe and card as ``trackio.Markdown``, one more log after the callback's (with
``train/global_step`` beside it, as the callback logs it).

Only the main process writes (``finish`` is called from ``train._write_outputs``, which runs there
alone). A tracker that fails here is reported on the console and skipped: the trained model is
already written, and a tracker outage must not cost it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from bertkit.console import log


class RunHandles(TrainerCallback):
    """Remembers the MLflow run id and trackio run the Trainer's callbacks open, so ``finish`` can add
    to them after those callbacks have ended them. Added after the integration callbacks (the Trainer
    puts them first), so ``on_train_begin`` runs once they have started their runs."""

    def __init__(self) -> None:
        self.mlflow_run_id: str | None = None
        self.trackio_run: tuple[str, str] | None = None  # (project, run name)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if "mlflow" in args.report_to:
            import mlflow

            run = mlflow.active_run()
            self.mlflow_run_id = run.info.run_id if run is not None else None
        if "trackio" in args.report_to:
            import trackio

            run = trackio.context_vars.current_run.get()
            self.trackio_run = (run.project, run.name) if run is not None else None


def callbacks(args: Any) -> list[TrainerCallback]:
    """The callbacks a run reporting to ``args.report_to`` needs (none when it reports nowhere)."""
    return [RunHandles()] if set(args.report_to) & {"mlflow", "trackio"} else []


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of ``metrics.json`` worth a chart: ``final/<split>/<name>`` (nested names joined by
    ``/``, e.g. ``final/test/per_class/pos/f1``); lists (a confusion matrix) and text are left out."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix] = float(value)

    for split in ("before", "validation", "test", "train"):
        if isinstance(metrics.get(split), dict):
            walk(f"final/{split}", metrics[split])
    return out


def finish(trainer: Any, metrics: dict[str, Any], work: Path) -> None:
    """Send the final metrics, ``recipe.yaml`` and ``README.md`` (already written in ``work``) to each
    tracker in ``trainer.args.report_to``."""
    report_to = list(trainer.args.report_to or [])
    if not report_to:
        return
    values = scalars(metrics)
    recipe_text = (work / "recipe.yaml").read_text(encoding="utf-8")
    card = (work / "README.md").read_text(encoding="utf-8")
    step = trainer.state.global_step
    handles = next((c for c in trainer.callback_handler.callbacks if isinstance(c, RunHandles)), RunHandles())
    writers = {"tensorboard": lambda: _tensorboard(trainer, values, recipe_text, card, step),
               "mlflow": lambda: _mlflow(handles.mlflow_run_id, values, work, step),
               "trackio": lambda: _trackio(handles.trackio_run, values, recipe_text, card, step)}
    for name in report_to:
        if name not in writers:
            continue
        try:
            writers[name]()
        except Exception as exc:  # any tracker failure; the model is written (see the module docstring)
            log(f"could not send the final metrics to {name}: {type(exc).__name__}: {exc}", always=True)


def tensorboard_dir(trainer: Any) -> str | None:
    """The directory the Trainer's TensorBoard callback wrote to (set when training began)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir:
            return callback.logging_dir
    return None


def _tensorboard(trainer: Any, values: dict[str, float], recipe_text: str, card: str, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    logdir = tensorboard_dir(trainer) or os.path.join(trainer.args.output_dir, "runs")
    writer = SummaryWriter(log_dir=logdir)
    try:
        for name, value in values.items():
            writer.add_scalar(name, value, step)
        # TensorBoard renders text as Markdown: a fenced block keeps the YAML's lines and indentation.
        writer.add_text("recipe", f"```yaml\n{recipe_text}\n```", step)
        writer.add_text("model_card", card, step)
    finally:
        writer.close()


def _mlflow(run_id: str | None, values: dict[str, float], work: Path, step: int) -> None:
    import mlflow

    if run_id is None:
        return
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        # the user's own run around bertkit (the callback left it open): add to it and leave it open
        _mlflow_log(mlflow, values, work, step)
        return
    with mlflow.start_run(run_id=run_id):  # the callback ended it at train end; reopen, log, end again
        _mlflow_log(mlflow, values, work, step)


def _mlflow_log(mlflow: Any, values: dict[str, float], work: Path, step: int) -> None:
    mlflow.log_metrics(values, step=step)
    for name in ("recipe.yaml", "README.md", "metrics.json"):
        mlflow.log_artifact(str(work / name))


def _trackio(run: tuple[str, str] | None, values: dict[str, float], recipe_text: str, card: str, step: int) -> None:
    import trackio

    if run is None:
        return
    project, name = run
    trackio.init(project=project, name=name, resume="must")
    try:
        # trackio counts its own steps; the Trainer's callback records the global step beside each log, so do the same
        trackio.log({**values, "train/global_step": step, "recipe": trackio.Markdown(f"```yaml\n{recipe_text}\n```"),
                     "model_card": trackio.Markdown(card)})
    finally:
        trackio.finish()
