"""Training on several processes (GPUs, CPU processes or machines) through Accelerate.

Two halves, one per side of the launch:

- ``launch``: ``bertkit finetune RECIPE --num-processes N`` (or ``--accelerate-config FILE``) runs the
  same command again as ``python -m bertkit finetune ...`` on every process through Accelerate's own
  launcher (torchrun underneath; DeepSpeed or FSDP when the config file says so), and turns a failed
  rank into one ``BertkitError`` naming the rank and its message.
- the processes: ``accelerate launch -m bertkit ...``, ``torchrun -m bertkit ...`` and ``launch`` all
  end in the same ``train.run``, which uses the helpers below to write files on the main process only
  (``on_main``), to say where each process runs (``placement``) and to count each rank's batches.

With one process and no launcher every helper is a plain pass-through, so the single-device path is
the same code. What this does not do: choose a parallelism strategy (the Accelerate config does) or
launch through MPI.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from bertkit.errors import BertkitError, Interrupted

T = TypeVar("T")

# Set by ``launch`` for the processes it starts: they leave printing a BertkitError to the launcher,
# which reads it from torchrun's per-rank error file and prints it once instead of once per rank.
LAUNCHED_BY_BERTKIT = "BERTKIT_LAUNCHED"
# The command line the user typed (launcher flags included), for the model card's "Reproduce".
COMMAND_LINE = "BERTKIT_COMMAND_LINE"


def _group() -> Any:
    """``torch.distributed`` when a process group with more than one process is up, else None."""
    dist = sys.modules.get("torch.distributed")  # never imports torch just to ask
    if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def rank() -> int:
    dist = _group()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    dist = _group()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def rank_prefix() -> str:
    """``[rank 1/2] `` in a multi-process run, so a message says which process it came from."""
    return f"[rank {rank()}/{world_size()}] " if world_size() > 1 else ""


def in_launched_process() -> bool:
    """True in a process started by accelerate launch, torchrun or ``launch``."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only; every process waits for it and gets its result.

    The others wait in a broadcast, so nobody reads a file before it is written or exits while the
    main process still works. A failure there is raised on every process (the same BertkitError), so
    none is left waiting at the next collective.
    """
    dist = _group()
    if dist is None:
        return fn()
    outcome: list[Any] = [None, None]  # [result, (message, hint) of a failure on the main process]
    failure: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            outcome[0] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others are told
            failure = exc
            outcome[1] = ((exc.message, exc.hint) if isinstance(exc, BertkitError)
                          else (f"{type(exc).__name__}: {exc}", None))
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[1] is not None:
        message, hint = outcome[1]
        raise BertkitError(f"the main process failed: {message}", hint)
    return outcome[0]


def shutdown() -> None:
    """Leave the process group together and tear it down before the interpreter exits.

    Left to interpreter shutdown, gloo's worker threads can be destroyed while still joinable, and
    the process dies with SIGABRT ("terminate called without an active exception") after a run that
    succeeded.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    try:
        if dist.get_world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def join_group() -> bool:
    """In a process that ``launch`` started for an inference command (``predict``, ``evaluate``, ``embed``):
    join the process group the way Accelerate does for training (gloo between CPU processes, NCCL
    between GPUs, this process's GPU made the current one). True when a group of several is up."""
    if in_launched_process() and _group() is None:
        from accelerate import PartialState

        PartialState()
    return _group() is not None


def gather_indexed(local: dict[int, Any]) -> dict[int, Any]:
    """Every process's ``{index: value}`` merged, on every process (a collective; pickled objects)."""
    dist = _group()
    if dist is None:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    merged: dict[int, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def sum_over_processes(values: list[int], device: Any) -> list[int]:
    """``values`` summed element-wise over all processes (a collective); unchanged on one process."""
    dist = _group()
    if dist is None:
        return values
    import torch

    total = torch.tensor(values, dtype=torch.long, device=device)
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]


def placement(args: Any) -> dict[str, Any]:
    """Where the processes run: count, machines, devices (one per rank) and backend.

    Reading ``args.device`` is what joins the process group under a launcher, so call this before
    anything else needs the group. A collective: every process must call it.
    """
    device = str(args.device)
    dist = _group()
    if dist is None:
        return {"processes": 1, "machines": 1, "devices": [device], "backend": None}
    import socket

    rows: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(rows, (socket.gethostname(), device))
    return {"processes": len(rows), "machines": len({host for host, _ in rows}), "devices": [d for _, d in rows],
            "backend": dist.get_backend()}


def strategy(trainer: Any) -> str:
    """How the Trainer's Accelerator actually spreads the model: what the config asked for, where it applies.

    (On CPU, accelerate runs an FSDP config as plain DDP, for one.)
    """
    if trainer.is_deepspeed_enabled:
        return "deepspeed"
    if trainer.is_fsdp_enabled:
        return "fsdp"
    return "ddp" if _group() is not None else "single process"


def describe(where: dict[str, Any]) -> str:
    """``2 processes on 1 machine (ddp, nccl): rank 0 cuda:0, rank 1 cuda:1`` or ``1 process on cuda:0``."""
    if where["processes"] == 1:
        return f"1 process on {where['devices'][0]}"
    machines = f"{where['machines']} machine" + ("s" if where["machines"] > 1 else "")
    ranks = ", ".join(f"rank {r} {d}" for r, d in enumerate(where["devices"]))
    return f"{where['processes']} processes on {machines} ({where['strategy']}, {where['backend']}): {ranks}"


def batch_counter() -> Any:
    """A Trainer callback counting the training batches this process ran (micro-batches included)."""
    from transformers import TrainerCallback

    class BatchCounter(TrainerCallback):
        def __init__(self) -> None:
            self.batches = 0

        def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.batches += 1  # a micro-batch inside gradient accumulation

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.batches += 1  # the micro-batch that ends an optimizer step

    return BatchCounter()


# ---------------------------------------------------------------------------------------------
# Failures: each process records its own; the launcher names the one that failed first.


def record_failure(exc: BaseException) -> bool:
    """Write ``exc`` to torchrun's error file for this rank, if there is one; True when written."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return False
    import traceback

    if isinstance(exc, BertkitError):  # what the user would have seen: no traceback
        message = exc.message
        shown = message + (f"\nhint: {exc.hint}" if exc.hint else "")
    else:
        message = f"{type(exc).__name__}: {exc}"
        shown = "".join(traceback.format_exception(exc))
    # torch's own layout (torchrun prints ``py_callstack`` in its report), plus the exact time and
    # hint that ``_root_cause`` reads.
    data = {"message": {"message": message, "extraInfo": {"py_callstack": shown, "timestamp": str(int(time.time()))}},
            "bertkit": {"hint": getattr(exc, "hint", None), "time": time.time()}}
    try:
        Path(path).write_text(json.dumps(data), encoding="utf-8")
    except OSError:
        return False
    return True


def leave_to_launcher(exc: BaseException) -> bool:
    """Record ``exc``; True when bertkit's launcher will print it, so this process need not.

    A stop by a signal (exit code 130, 143) is printed here all the same: the launcher was signalled
    too and exits without reading the ranks' errors, and the message carries the resume command.
    """
    recorded = record_failure(exc)
    return recorded and os.environ.get(LAUNCHED_BY_BERTKIT) == "1" and getattr(exc, "exit_code", 1) == 1


def _root_cause(failures: dict[int, Any]) -> tuple[int, str, str | None]:
    """The failed rank whose error came first: (rank, message, hint).

    Ranks that bertkit recorded are preferred to bare exit codes, and among them the earliest wins:
    when one rank fails, the others often fail a moment later at the next collective ("connection
    closed by peer"), which is a consequence, not the cause.
    """
    recorded = {r: f.error_file_data["bertkit"] for r, f in failures.items()
                if isinstance(getattr(f, "error_file_data", None), dict) and "bertkit" in f.error_file_data}
    if recorded:
        first = min(recorded, key=lambda r: recorded[r]["time"])
        return first, failures[first].error_file_data["message"]["message"], recorded[first].get("hint")
    first = min(failures, key=lambda r: failures[r].timestamp)
    failure = failures[first]
    message = failure.message if isinstance(failure.message, str) and failure.message else ""
    if not message or message.startswith("To enable traceback"):
        message = f"it exited with code {failure.exitcode}"
    return first, message, None


# ---------------------------------------------------------------------------------------------
# The launcher


def launch(command: list[str], *, num_processes: int | None, config_file: str | None, command_line: str) -> int:
    """Run ``python -m bertkit <command>`` on several processes through Accelerate; return the exit code.

    Without ``config_file``: ``num_processes`` processes on this machine (one per GPU, or CPU processes
    talking over gloo). With it: whatever the config says (machines, DeepSpeed, FSDP), and
    ``num_processes``, when given, overrides its count. A failed rank raises a BertkitError naming it.
    """
    if in_launched_process():
        raise BertkitError("--num-processes and --accelerate-config cannot be used inside a process that "
                           "accelerate launch or torchrun started",
                           "drop them (the launcher already runs one process per rank), or run bertkit directly")
    argv = _launch_arguments(num_processes, config_file)
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(argv + ["-m", "bertkit", *command])
    env = {LAUNCHED_BY_BERTKIT: "1", COMMAND_LINE: command_line}
    if not _has_gpu() and "OMP_NUM_THREADS" not in os.environ:
        # torchrun would pin every CPU process to one thread; share the cores out instead.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(1, num_processes or 1)))
    import subprocess

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        launch_command(args)
    except ChildFailedError as exc:
        failed, message, hint = _root_cause(exc.failures)
        codes = {f.exitcode for f in exc.failures.values()}
        if codes <= {130, 143}:  # a rank stopped by a signal, with a checkpoint: keep its exit code
            raise Interrupted(message, hint, max(codes) - 128) from None
        what = "training" if command[0] in ("finetune", "adapt-domain") else f"bertkit {command[0]}"
        raise BertkitError(f"{what} stopped because rank {failed} of {args.num_processes} failed: {message}",
                           hint or "no output directory was published; fix the cause and run the command again"
                           ) from None
    except subprocess.CalledProcessError as exc:  # the single-process and multi-node DeepSpeed paths
        return exc.returncode or 1
    except SignalException as exc:  # Ctrl-C or SIGTERM: the agent passed it on; the ranks say where they stopped
        return 128 + int(exc.sigval)
    except (ValueError, AssertionError, ConnectionError, ImportError) as exc:
        raise BertkitError(f"accelerate could not launch the run: {str(exc).strip().splitlines()[0]}",
                           "install what it names" if isinstance(exc, ImportError)
                           else "check --num-processes and the accelerate config file") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return 0


def _launch_arguments(num_processes: int | None, config_file: str | None) -> list[str]:
    """``accelerate launch`` options for a local N-process run, or for a config file."""
    if config_file is not None:
        _check_config(config_file)
        argv = ["--config_file", config_file]
        return argv + (["--num_processes", str(num_processes)] if num_processes else [])
    # Everything accelerate would otherwise warn it guessed. ``--multi_gpu`` selects its torchrun
    # launcher, which also runs CPU processes (gloo); ``--cpu`` would need MPI for more than one.
    return ["--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", "0"]


def _check_config(config_file: str) -> None:
    if not Path(config_file).is_file():
        raise BertkitError(f"accelerate config file {config_file} does not exist",
                           "pass a file written by `accelerate config --config_file FILE`, or one from "
                           "recipes/accelerate/")
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        load_config_from_file(config_file)
    except Exception as exc:  # accelerate raises KeyError/TypeError/yaml errors for a bad file
        raise BertkitError(f"{config_file} is not an accelerate config file: {type(exc).__name__}: {exc}",
                           "start from one in recipes/accelerate/ or run `accelerate config --config_file FILE`"
                           ) from None


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
