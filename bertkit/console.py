"""What a run tells the person at the terminal: progress lines on stderr.

Lower layers (interrupt, corpus, the task modules) report through ``log`` here rather than through
the commands above them, so no module imports a command to print a line. In a multi-process run
only the main process prints, unless a line is about every rank.
"""

from __future__ import annotations

import sys

from bertkit import distributed


def log(message: str, *, every_rank: bool = False) -> None:
    """A progress line on stderr; in a multi-process run only the main process prints, unless ``every_rank``."""
    if every_rank or distributed.is_main_process():
        print(message, file=sys.stderr, flush=True)
