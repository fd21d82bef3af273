"""The command line's side of ``--num-processes`` / ``--accelerate-config``: rebuild the command a user
typed from its parsed parameters and start it on several processes through ``distributed.launch``.

Kept apart from ``cli.py`` so that module stays one small function per command; every command that
takes the launcher options (finetune, adapt-domain, predict, evaluate, embed) calls ``launch_if_asked``
first and returns when it has run the command on the processes.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Optional

import typer

from bertkit.errors import BertkitError


def command_line() -> str:
    """The command as the user typed it (for the model card's Reproduce line)."""
    from bertkit import distributed

    # A process started by --num-processes gets the command as the user typed it, launcher flags included.
    return os.environ.get(distributed.COMMAND_LINE) or "bertkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


LAUNCH_OPTIONS = ("num_processes", "accelerate_config")


def same_command(ctx: typer.Context) -> list[str]:
    """This command's words, rebuilt from its parsed parameters, without the launcher's own options."""
    words = [ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in LAUNCH_OPTIONS or value is None:
            continue
        if param.param_type_name == "argument":
            words += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        elif value != param.default:
            if param.is_flag:
                words.append(param.opts[0] if value else param.secondary_opts[0])
            else:
                for item in value if param.multiple else [value]:
                    words += [param.opts[0], str(item)]
    return words


def launch_if_asked(ctx: typer.Context, num_processes: Optional[int], accelerate_config: Optional[str]) -> bool:
    """Run this command on several processes when asked to; True when it did (and succeeded)."""
    if num_processes is not None and num_processes < 1:
        raise BertkitError(f"--num-processes must be 1 or more, got {num_processes}",
                           "give --num-processes 2 or more to share the work, or leave it out")
    if not accelerate_config and (num_processes or 1) == 1:
        return False
    from bertkit import distributed

    code = distributed.launch(same_command(ctx), num_processes=num_processes, config_file=accelerate_config,
                              command_line=command_line())
    if code:
        raise typer.Exit(code)
    return True


NUM_PROCESSES_HELP = "train on N processes through Accelerate (one per GPU; CPU processes without GPUs)"
ACCELERATE_CONFIG_HELP = "accelerate config file: machines, DeepSpeed, FSDP (examples in recipes/accelerate/)"
INFER_PROCESSES_HELP = "share the batches among N processes through Accelerate (one per GPU; CPU processes without)"
