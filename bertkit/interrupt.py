"""Ctrl-C and SIGTERM during ``finetune``: finish the step, write a checkpoint, say how to resume.

``Guard`` owns SIGINT and SIGTERM for the whole run. While the training loop runs (``deferring``) the
first signal only raises a flag; ``bertkit.trainer.StopOnSignal`` sees it at the end of the current optimizer step
and asks the Trainer to checkpoint into the staging directory and stop. ``run`` then raises
``Interrupted``: exit code 130 (SIGINT) or 143 (SIGTERM) and the exact command plus ``--resume``.
Outside the loop, or on a second signal, a signal interrupts at once (``KeyboardInterrupt``).

A stop mid-epoch skips the end-of-epoch evaluation and save the Trainer would otherwise run right
away, and ``bertkit.trainer`` draws every epoch's batches from (seed, epoch), so a resumed run sees the
same batches, evaluates at the same steps and ends with the same model and metrics as an
uninterrupted one (``tests/test_reliability.py`` checks this).

Test hook: ``BERTKIT_TEST_INTERRUPT_AT_STEP=k`` (optionally ``BERTKIT_TEST_INTERRUPT_SIGNAL=TERM``,
and ``BERTKIT_TEST_INTERRUPT_RANK=r`` for one process of several) makes the run send itself the
signal at the end of optimizer step ``k``: a deterministic Ctrl-C.

Several processes (``--num-processes``, torchrun) agree at every step end, through one all-reduce of
the flag, so they all stop at the same step even when the signal reaches them a step apart.

What this does not do: make a checkpoint write itself atomic (the Trainer writes
``trainer_state.json`` last, so ``last_complete_checkpoint`` ignores a checkpoint without it).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit.console import log
from bertkit.errors import BertkitError, Interrupted  # noqa: F401 - Interrupted is raised from here
from bertkit.outputs import last_complete_checkpoint

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEST_STEP_ENV = "BERTKIT_TEST_INTERRUPT_AT_STEP"
TEST_SIGNAL_ENV = "BERTKIT_TEST_INTERRUPT_SIGNAL"
TEST_RANK_ENV = "BERTKIT_TEST_INTERRUPT_RANK"


class Guard:
    """Own SIGINT/SIGTERM for a block; inside ``deferring()`` the first one only sets ``signum``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Guard:
        import threading

        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._deferring and self.signum is None:
            self.signum = signum
            log(f"\n{signal.Signals(signum).name} received: stopping after this step and writing a checkpoint "
                "(send it again to stop at once)", always=True)
            return
        self.signum = self.signum or signum
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def interrupted(self, work: Path, command: str) -> Interrupted:
        """The error to raise once stopped: where the checkpoint is and the command that resumes."""
        signum = self.signum or signal.SIGINT
        name = signal.Signals(signum).name
        checkpoint = last_complete_checkpoint(work)
        if checkpoint is None:
            return Interrupted(f"{name} received before the first checkpoint; nothing was saved",
                               "run the same command again to start over", signum)
        return Interrupted(f"{name} received: training stopped; its last checkpoint is {checkpoint}",
                           f"resume with: {resume_command(command)}", signum)


def resume_command(command: str) -> str:
    """The original command line with ``--resume`` added (once)."""
    command = command or "bertkit finetune RECIPE"
    return command if "--resume" in shlex.split(command) else f"{command} --resume"


def agreed(signum: int | None, args: Any) -> int | None:
    """Every process's view of the signal, so all of them stop at the same step (one signalled
    process stopping alone would leave the others waiting in the next step's collective)."""
    if args.world_size <= 1:
        return signum
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return signum
    flag = torch.tensor([signum or 0], device=args.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def mean_train_loss(log_history: list[dict[str, Any]], fallback: float) -> float:
    """Mean training loss over every step, from the logged per-interval means.

    A resumed run's Trainer only averages the steps it ran itself; the log history (restored from
    the checkpoint) covers the whole run, so the number is the same with or without a resume.
    Falls back to ``fallback`` when the logs do not reach the last step.
    """
    total, last = 0.0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry and entry["step"] > last:
            total += entry["loss"] * (entry["step"] - last)
            last = entry["step"]
    final = max((e.get("step", 0) for e in log_history), default=0)
    return total / last if last and last == final else fallback
