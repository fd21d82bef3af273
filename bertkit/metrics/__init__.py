"""Offline metrics and label schemes: no hub downloads.

``squad.py`` and ``entities.py`` are what bertkit reports. The same scores ship as Hugging Face
``evaluate`` modules (``metrics/evaluate/``), so a user's own script can load them with no network:
``evaluate.load(bertkit.metrics.evaluate_module("squad"))`` (or ``"entities"``).
"""

from __future__ import annotations

from pathlib import Path

EVALUATE_MODULES = ("squad", "entities")


def evaluate_module(name: str) -> str:
    """The local path that ``evaluate.load`` takes for bertkit's ``name`` metric (squad, entities)."""
    if name not in EVALUATE_MODULES:
        raise ValueError(f"no bertkit evaluate module {name!r}; there are {', '.join(EVALUATE_MODULES)}")
    return str(Path(__file__).resolve().parent / "evaluate" / f"bertkit_{name}")
