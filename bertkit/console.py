"""What a run tells the person at the terminal: progress lines on stderr, at a chosen verbosity.

Lower layers (interrupt, corpus, the task modules) report through ``log`` here rather than through
the commands above them, so no module imports a command to print a line. In a multi-process run
only the main process prints, unless a line is about every rank.

Verbosity (``--quiet`` / ``--verbose`` on the training commands, ``set_level``): ``quiet`` shows no
progress bars and no progress lines, only what a line marks ``always`` (a stop by a signal) and the
command's own results; ``normal`` shows one progress bar per phase and a metrics table per
evaluation; ``verbose`` adds every training log record as a line and transformers' own bars. The
full record of every run is in its ``train_log.jsonl`` whatever the verbosity.
"""

from __future__ import annotations

import sys

from bertkit import distributed

LEVELS = ("quiet", "normal", "verbose")
_level = "normal"


def set_level(level: str) -> None:
    global _level
    if level not in LEVELS:
        raise ValueError(f"verbosity must be one of {LEVELS}, got {level!r}")
    _level = level


def level() -> str:
    return _level


def quiet() -> bool:
    return _level == "quiet"


def log(message: str, *, every_rank: bool = False, always: bool = False) -> None:
    """A progress line on stderr; in a multi-process run only the main process prints, unless
    ``every_rank``; ``--quiet`` hides it unless ``always``."""
    if (always or not quiet()) and (every_rank or distributed.is_main_process()):
        print(message, file=sys.stderr, flush=True)
