"""The one exception type users see.

Every anticipated failure (bad recipe, bad data, missing model, unwritable output) is raised as a
``BertkitError`` carrying one sentence that names the file, row or key, and a hint with the fix.
The CLI prints ``error: <message>`` and ``hint: <hint>`` and exits with code 1; set
``BERTKIT_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations


class BertkitError(Exception):
    label = "error"  # the CLI prints "<label>: <message>" ...
    exit_code = 1  # ... and exits with this code (an interrupted run uses 130 / 143)

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class Interrupted(BertkitError):
    """A run stopped by a signal; the CLI exits with 128 + the signal number (130, 143)."""

    label = "interrupted"

    def __init__(self, message: str, hint: str | None, signum: int):
        super().__init__(message, hint)
        self.exit_code = 128 + signum
