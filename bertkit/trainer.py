"""bertkit's ``transformers.Trainer``: the stock training loop with changes at named hooks.

- ``_get_train_sampler``: length-grouped batches drawn from (seed, epoch), so a resumed run sees the
  same batches as an uninterrupted one (the stock sampler draws from the global RNG, which a resumed
  run restores only after it has drawn the order of the epoch it resumes in).
- ``compute_loss``: with ``model_loss`` (the task's ``training_loss``, e.g. mlm's head at the masked
  positions only) the loss comes from that function instead of the model's full forward, in training
  and in loss-only evaluation, whenever the model is not wrapped (one process); a wrapped model (DDP,
  DataParallel, DeepSpeed, FSDP, torch.compile) takes the stock path, since calling its submodules
  around the wrapper would skip the wrapper's gradient synchronisation; a ``model_loss`` marked
  ``whole_model`` (distillation: it calls the model as a whole) runs on the wrapped model too.
- ``evaluate``: in a one-process run the per-epoch evaluation is the task's own full evaluation
  (``train.evaluate_split``: length-sorted batches, bf16 weight copies on CPU, the metric a user gets,
  e.g. word-level entity F1 or SQuAD F1 after answer decoding) instead of the Trainer's loop and the
  task's window-level ``compute_metrics``. Each result is kept by step, so the final report reuses
  the evaluation of the checkpoint it keeps instead of scoring the validation split again.

``StopOnSignal`` turns ``interrupt.Guard``'s flag into "checkpoint now and stop" at a step boundary
(``SignalAtStep`` is the test hook that sends the signal). ``ConsoleCallback`` takes the place of
the Trainer's progress callback: the same training bar (``console.progress``: lines off a terminal),
but no raw log dicts on the console; a compact table per evaluation instead, and each log record as
one line with ``--verbose`` (``bertkit.console``). The records themselves all go to ``train_log.jsonl``.

Everything else (optimizer, schedule, checkpoints, logging, several processes) is the stock Trainer.
Imports transformers at module level: import this module inside commands only.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from bertkit import interrupt


# (report, prediction rows, artifacts) of one evaluation of the validation split
Evaluation = tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]


class EpochSeededSampler(LengthGroupedSampler):
    """Length-grouped batches in random order, drawn from (seed, epoch) alone.

    The stock sampler sorts each mega-batch (up to 50 batches) by length, longest first, so an epoch
    walks from long to short examples again and again: a length curriculum nobody asked for, which
    on small data put streaks of similar examples (and labels) in a row. Here the batches it forms
    are shuffled, so batches still pad only to members of similar length but come in random order;
    the longest batch stays first (memory peaks at once, as with the stock sampler) and a short last
    batch stays last (a batch in the middle must be full, or every later batch would straddle two).
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        import torch

        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it before each epoch
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        import torch

        self.generator.manual_seed(self.seed + self.epoch)
        grouped = list(super().__iter__())
        batches = [grouped[i:i + self.batch_size] for i in range(0, len(grouped), self.batch_size)]
        if len(batches) < 3:
            return iter(grouped)
        tail = [batches.pop()] if len(batches[-1]) < self.batch_size else []
        middle = [batches[1 + int(i)] for i in torch.randperm(len(batches) - 1, generator=self.generator)]
        return iter([i for batch in [batches[0], *middle, *tail] for i in batch])


class BertkitTrainer(Trainer):
    """The stock Trainer; ``evaluate_validation`` (model -> Evaluation) replaces its evaluation loop
    in one-process runs when the best-model metric is one the task reports (not a loss),
    ``model_loss`` ((model, inputs) -> (loss, outputs)) replaces the model's own loss where it can
    (``compute_loss``), and ``ConsoleCallback(console_level)`` replaces its progress callback."""

    def __init__(self, *args: Any, evaluate_validation: Callable[[Any], Evaluation] | None = None,
                 console_level: str = "normal", model_loss: Callable[[Any, Any], tuple[Any, Any]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.evaluate_validation = evaluate_validation
        self.model_loss = model_loss
        self._loss_only = False  # set while prediction_step wants the loss alone (no logits)
        self.evaluations: dict[int, Evaluation] = {}  # global step -> its evaluation
        # No raw log dicts on the console: bertkit's bar and tables at the console's verbosity.
        self.remove_callback(ProgressCallback)
        self.remove_callback(PrinterCallback)
        self.add_callback(ConsoleCallback(console_level))

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler and sampler.generator is None:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """``model_loss`` when it applies, else the stock loss. It applies to a model that is not wrapped
        (DDP and the other wrappers synchronise gradients in their own forward, which calling the model's
        submodules would skip), with labels, no ``compute_loss_func`` or label smoothing, a model that
        takes no loss kwargs (``model_loss`` is a per-batch mean, which the Trainer then divides by the
        accumulation steps as it does for such a model's own loss), and, when outputs are wanted, only
        for a loss-only evaluation step: its outputs' logits cover the predicted positions alone."""
        whole = getattr(self.model_loss, "whole_model", False)  # calls model(...) itself: any wrapper is fine
        if (self.model_loss is None or not any(name in inputs for name in self.label_names)
                or self.compute_loss_func is not None
                or self.label_smoother is not None or self.model_accepts_loss_kwargs
                or (return_outputs and not self._loss_only)
                or (not whole and self.accelerator.unwrap_model(model) is not model)):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        loss, outputs = self.model_loss(model, inputs)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> Any:
        self._loss_only = prediction_loss_only
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        finally:
            self._loss_only = False

    def _own_evaluation(self, eval_dataset: Any) -> bool:
        metric = self.args.metric_for_best_model or ""
        return (self.evaluate_validation is not None and eval_dataset is None and self.args.world_size == 1
                and "loss" not in metric)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict:
        if not self._own_evaluation(eval_dataset):
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        started = time.perf_counter()
        evaluation = self.evaluate_validation(self.model)
        self.evaluations[self.state.global_step] = evaluation
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in evaluation[0].items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - started, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def kept_evaluation(self) -> Evaluation | None:
        """The evaluation of the model training ended with (the best checkpoint's when it was
        restored, else the last step's), if this process made one."""
        state = self.state
        if self.args.load_best_model_at_end and state.best_model_checkpoint:
            step = int(str(state.best_model_checkpoint).rstrip("/").rsplit("-", 1)[-1])
        else:
            step = state.global_step
        return self.evaluations.get(step)


# Log keys that are bookkeeping rather than results: left out of the console lines and tables.
_QUIET_KEYS = {"total_flos", "epoch", "step"}


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ConsoleCallback(ProgressCallback):
    """The training progress bar, a metrics table per evaluation, no raw dicts (see the module doc)."""

    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = level

    # The bars are console.progress displays (bars on a terminal, lines elsewhere), not tqdm's
    # directly, so a log file gets no carriage-return frames of the training bar.
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from bertkit import console

        self.current_step = 0
        if self.level != "quiet" and state.is_world_process_zero:
            self.training_bar = console.progress(state.max_steps, "training", unit="steps")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.training_bar is not None:
            self.training_bar.update(state.global_step - self.current_step)
            self.current_step = state.global_step

    def on_prediction_step(self, args: Any, state: Any, control: Any, eval_dataloader: Any = None,
                           **kwargs: Any) -> None:
        from transformers.trainer_utils import has_length

        from bertkit import console

        if self.level == "quiet" or not state.is_world_process_zero or not has_length(eval_dataloader):
            return
        if self.prediction_bar is None:
            self.prediction_bar = console.progress(len(eval_dataloader), "evaluating", unit="batches",
                                                   leave=self.training_bar is None)
        self.prediction_bar.update(1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None

    def _write(self, text: str) -> None:
        if self.training_bar is not None:
            self.training_bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.level != "verbose" or not logs:
            return
        if any(key.startswith("eval_") for key in logs):
            return  # on_evaluate shows evaluations as a table
        shown = "  ".join(f"{k} {_number(v)}" for k, v in logs.items() if k not in _QUIET_KEYS)
        self._write(f"step {state.global_step}/{state.max_steps} (epoch {state.epoch or 0:.2f}): {shown}")

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        super().on_evaluate(args, state, control, **kwargs)
        if not state.is_world_process_zero or self.level == "quiet" or not metrics:
            return
        self._write(evaluation_table(metrics, state.epoch, state.global_step, state.max_steps))


def evaluation_table(metrics: dict[str, Any], epoch: float | None, step: int, max_steps: int) -> str:
    """One evaluation as a compact two-row table (names over values), rendered by rich as text."""
    import io

    from rich.console import Console
    from rich.table import Table

    shown = {k.removeprefix("eval_"): v for k, v in metrics.items()
             if isinstance(v, (int, float)) and not k.endswith(("_per_second", "runtime")) and k not in _QUIET_KEYS}
    table = Table(box=None, pad_edge=False)
    for name in shown:
        table.add_column(name, justify="right")
    table.add_row(*(_number(v) for v in shown.values()))
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(table)
    return f"validation, epoch {epoch or 0:.2f} (step {step}/{max_steps})\n" + out.getvalue().rstrip()


class StopOnSignal(TrainerCallback):
    """Turn the guard's flag into 'checkpoint now and stop' at an optimizer-step boundary."""

    def __init__(self, guard: interrupt.Guard) -> None:
        self.guard = guard
        self.stopped_at: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        signum = interrupt.agreed(self.guard.signum, args)
        if signum is not None and self.stopped_at is None:
            self.guard.signum = signum
            self.stopped_at = state.global_step
            control.should_training_stop = True
            # Log now so train_log.jsonl (and the run's mean loss) covers every step up to here.
            control.should_log = True
        elif state.global_step >= state.max_steps:
            control.should_log = True  # the last steps too, for the same reason
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.stopped_at is None:
            return control
        if state.epoch is not None and float(state.epoch) != int(state.epoch):
            # Mid-epoch: no early evaluation (it would change which checkpoint is best).
            control.should_evaluate = False
            control.should_log = False
        control.should_save = True
        return control


class SignalAtStep(TrainerCallback):
    """The test hook (``interrupt.TEST_STEP_ENV``): send ourselves a signal at the end of a given step."""

    def __init__(self, step: int, signum: int, rank: int | None) -> None:
        self.step, self.signum, self.rank = step, signum, rank

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step == self.step and self.rank in (None, args.process_index):
            os.kill(os.getpid(), self.signum)
        return control


def signal_callbacks(guard: interrupt.Guard) -> list[TrainerCallback]:
    """StopOnSignal for the guard, preceded by the test hook when its environment variable is set."""
    out: list[TrainerCallback] = []
    step = os.environ.get(interrupt.TEST_STEP_ENV)
    if step:
        name = os.environ.get(interrupt.TEST_SIGNAL_ENV, "INT").upper().removeprefix("SIG")
        rank = os.environ.get(interrupt.TEST_RANK_ENV)
        out.append(SignalAtStep(int(step), getattr(signal, f"SIG{name}"), int(rank) if rank else None))
    out.append(StopOnSignal(guard))
    return out
