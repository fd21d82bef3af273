"""What a run tells the person at the terminal: progress on stderr, at a chosen verbosity.

Lower layers (interrupt, corpus, the task modules) report through ``log`` and ``progress`` here
rather than through the commands above them, so no module imports a command to print a line. In a
multi-process run only the main process prints, unless a line is about every rank.

Verbosity (``--quiet`` / ``--verbose``, ``set_level``): ``quiet`` is results only: no progress bars
(bertkit's, the Trainer's, datasets', transformers') and no progress lines, only what a line marks
``always`` (a stop by a signal), the command's own results and errors; ``normal`` shows one progress
display per phase and a metrics table per evaluation; ``verbose`` adds every training log record as
a line and transformers' own bars. The full record of every run is in its ``train_log.jsonl``
whatever the verbosity.

Progress is a bar only on a terminal. When stderr is not one (a log file, a pipe, CI), a phase is
plain lines instead, never carriage-return frames: one each time it reaches another ``LINE_EVERY``
percent (10, 20, ... 100; a jump past several gives one line), and at its end if the last line did
not show where it ended; a phase of unknown size gives a line each time its count doubles, and one
at the end. Libraries' bars cannot be made to write lines, so off a terminal they are switched off
and bertkit writes the lines of that phase itself (``library_phase``). ``BERTKIT_PROGRESS=bars`` or
``lines`` overrides the terminal check (the tests use it; so can a notebook, where stderr is no TTY).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bertkit import distributed

LEVELS = ("quiet", "normal", "verbose")
LINE_EVERY = 10  # percent between two progress lines off a terminal
PROGRESS_ENV = "BERTKIT_PROGRESS"  # "bars" or "lines" overrides the terminal check
_level = "normal"


def set_level(level: str) -> None:
    """Set the verbosity, and with it whether datasets' and transformers' own bars may draw."""
    global _level
    if level not in LEVELS:
        raise ValueError(f"verbosity must be one of {LEVELS}, got {level!r}")
    _level = level
    _configure_libraries()


def level() -> str:
    return _level


def quiet() -> bool:
    return _level == "quiet"


def log(message: str, *, every_rank: bool = False, always: bool = False) -> None:
    """A progress line on stderr; in a multi-process run only the main process prints, unless
    ``every_rank``; ``--quiet`` hides it unless ``always``."""
    if (always or not quiet()) and (every_rank or distributed.is_main_process()):
        print(message, file=sys.stderr, flush=True)


def interactive() -> bool:
    """Whether progress is drawn as bars: stderr is a terminal, unless ``BERTKIT_PROGRESS`` says
    ``bars`` or ``lines`` (any other value: the terminal decides)."""
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in ("bars", "lines"):
        return forced == "bars"
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def library_bars() -> bool:
    """Whether libraries may draw their own bars: on a terminal, unless ``--quiet``."""
    return not quiet() and interactive()


def _configure_libraries() -> None:
    import datasets
    from transformers.utils import logging as hf_logging

    with warnings.catch_warnings():  # HF_DATASETS_DISABLE_PROGRESS_BARS, when set, wins, with a warning
        warnings.simplefilter("ignore")
        datasets.enable_progress_bars() if library_bars() else datasets.disable_progress_bars()
    # transformers' bars (loading weights, writing shards) say nothing a user needs unless verbose
    hf_logging.enable_progress_bar() if library_bars() and _level == "verbose" else hf_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------
# Progress: one object per phase, a bar on a terminal, lines elsewhere, nothing under --quiet


class Progress:
    """A phase's count, shown nowhere: the interface every progress display has (``update``,
    ``close``, ``write``, ``n``, a context manager); ``progress`` returns it where nothing may show."""

    def __init__(self, total: int | None, desc: str | None, unit: str) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def write(self, text: str) -> None:
        """A line on stderr that does not break the display."""
        print(text, file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Bar(Progress):
    """tqdm's bar, on a terminal."""

    def __init__(self, total: int | None, desc: str, unit: str, leave: bool) -> None:
        from tqdm.auto import tqdm

        super().__init__(total, desc, unit)
        self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        super().update(n)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()

    def write(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)


class _Lines(Progress):
    """Plain lines off a terminal (the rule is in the module doc)."""

    def __init__(self, total: int | None, desc: str, unit: str) -> None:
        super().__init__(total or None, desc, unit)  # a total of 0 would make every percentage 100
        self._started = time.perf_counter()
        self._step = 0  # total known: the last multiple of LINE_EVERY percent a line was written for
        self._next = 1  # total unknown: the count that earns the next line
        self._shown = 0  # the count the last line showed
        self._closed = False

    def update(self, n: int = 1) -> None:
        super().update(n)
        if self.total is not None:
            step = min(self.n * 100 // self.total, 100) // LINE_EVERY
            if step > self._step:
                self._step = step
                self._line()
        elif self.n >= self._next:
            self._next = 2 * self.n
            self._line()

    def close(self) -> None:
        if not self._closed and self.n != self._shown:
            self._line()
        self._closed = True

    def _line(self) -> None:
        self._shown = self.n
        elapsed = time.perf_counter() - self._started
        if self.total is None:
            print(f"{self.desc}: {self.n} {self.unit} ({_clock(elapsed)})", file=sys.stderr, flush=True)
            return
        left = f", ~{_clock(elapsed * (self.total - self.n) / self.n)} left" if 0 < self.n < self.total else ""
        print(f"{self.desc}: {min(self.n * 100 // self.total, 100)}% ({self.n}/{self.total} {self.unit}, "
              f"{_clock(elapsed)}{left})", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress(total: int | None, desc: str | None, *, unit: str = "ex", leave: bool = True) -> Progress:
    """The display of one phase of ``total`` units (None: not known in advance): a tqdm bar on a
    terminal, lines elsewhere, nothing under ``--quiet``, without a ``desc`` or on a process other
    than the main one. Its ``n`` counts in every case (a caller may report it)."""
    if desc is None or quiet() or not distributed.is_main_process():
        return Progress(total, desc, unit)
    if interactive():
        return _Bar(total, desc, unit, leave)
    return _Lines(total, desc, unit)


@contextlib.contextmanager
def library_phase(total: int, desc: str, *, unit: str = "ex") -> Iterator[Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """A phase that datasets runs and draws its own bar for (``map``, ``filter``): on a terminal that
    bar; elsewhere bertkit's lines, counted by wrapping the batched function datasets calls::

        with console.library_phase(len(dataset), "tokenising train") as counted:
            feats = dataset.map(counted(encode_batch), batched=True, desc="tokenising train")

    The phase is complete when the block ends without an error: a result datasets read from its
    cache, or made in worker processes, never passed through the wrapper."""
    _configure_libraries()  # datasets' bar on or off by the rule, also where no command set the level
    bar = Progress(total, desc, unit) if library_bars() else progress(total, desc, unit=unit)
    try:
        yield lambda fn: _Counted(fn, bar)
        bar.update(max(0, total - bar.n))
    finally:
        bar.close()


def _same(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


class _Counted:
    """A batched function that advances ``bar`` by the rows of each batch it is given. It pickles
    as the bare function: datasets hashes the function into its cache fingerprint (the count must
    not change it, or every run would miss the cache) and sends it to worker processes (where a
    copy of the bar would print from every worker)."""

    def __init__(self, fn: Callable[..., Any], bar: Progress) -> None:
        self.fn, self.bar = fn, bar

    def __call__(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        # a batch is a mapping of columns, or one column's values (``input_columns``)
        rows = len(next(iter(batch.values()), ())) if isinstance(batch, Mapping) else len(batch)
        out = self.fn(batch, *args, **kwargs)
        self.bar.update(rows)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return _same, (self.fn,)
