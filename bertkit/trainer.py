"""bertkit's ``transformers.Trainer``: the stock training loop with two changes at named hooks.

- ``_get_train_sampler``: length-grouped batches drawn from (seed, epoch), so a resumed run sees the
  same batches as an uninterrupted one (the stock sampler draws from the global RNG, which a resumed
  run restores only after it has drawn the order of the epoch it resumes in).
- ``evaluate``: in a one-process run the per-epoch evaluation is the task's own full evaluation
  (``train.evaluate_split``: length-sorted batches, bf16 weight copies on CPU, the metric a user gets,
  e.g. word-level entity F1 or SQuAD F1 after answer decoding) instead of the Trainer's loop and the
  task's window-level ``compute_metrics``. Each result is kept by step, so the final report reuses
  the evaluation of the checkpoint it keeps instead of scoring the validation split again.

Everything else (optimizer, schedule, checkpoints, logging, several processes) is the stock Trainer.
Imports transformers at module level: import this module inside commands only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

# (report, prediction rows, artifacts) of one evaluation of the validation split
Evaluation = tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]


class EpochSeededSampler(LengthGroupedSampler):
    """Length-grouped batches whose order depends only on (seed, epoch)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        import torch

        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it before each epoch
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class BertkitTrainer(Trainer):
    """The stock Trainer; ``evaluate_validation`` (model -> Evaluation) replaces its evaluation loop
    in one-process runs when the best-model metric is one the task reports (not a loss)."""

    def __init__(self, *args: Any, evaluate_validation: Callable[[Any], Evaluation] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.evaluate_validation = evaluate_validation
        self.evaluations: dict[int, Evaluation] = {}  # global step -> its evaluation

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler and sampler.generator is None:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

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
