"""Long texts read whole: overlapping windows of one text, and their outputs combined back per text.

Used by classification's ``truncation: windows`` (NER and QA window their own way, per token and per
answer span). A text of ``n`` tokens that does not fit ``budget`` becomes windows of exactly ``budget``
tokens that overlap by at least ``stride`` (``spans``); each window is a feature row whose ``doc``
column names its text, rows of one text adjacent. After inference, ``combine_windows`` reduces each
text's rows to one (mean, or per-label max, of the logits) and keeps each text's window count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Windows:
    """``truncation: windows``: how a long text is read in overlapping windows of max_length tokens."""

    stride: int | None = None  # tokens a window shares with the one before it; None: a quarter of max_length
    # Windows per text at most: a longer text keeps its first max_windows-1 windows and its last one
    # (the end of a text often decides, as head+tail's lead over head-only shows) and is counted as cut.
    max_windows: int = 8
    aggregate: Literal["mean", "max"] = "mean"  # how a text's window logits combine (per label)


def needed(n: int, budget: int, stride: int) -> int:
    """How many windows ``spans`` gives ``n`` tokens before ``max_windows`` applies."""
    return 1 if n <= budget else -(-(n - budget) // (budget - stride)) + 1


def spans(n: int, budget: int, stride: int, max_windows: int) -> list[tuple[int, int]]:
    """(start, end) token spans covering ``n`` tokens in windows of ``budget`` tokens that overlap by at
    least ``stride``: starts move on by ``budget - stride`` and the last window ends at the text's end
    (so every window is full). Over ``max_windows``, the first ``max_windows - 1`` and the last are kept
    (the first alone when ``max_windows`` is 1)."""
    if n <= budget:
        return [(0, n)]
    starts = list(range(0, n - budget, budget - stride)) + [n - budget]  # as many as needed() counts
    if len(starts) > max_windows:  # one window: the head, as truncation: head reads it
        starts = starts[: max_windows - 1] + starts[-1:] if max_windows > 1 else starts[:1]
    return [(s, s + budget) for s in starts]


def window_counts(docs: list[int]) -> list[int]:
    """Windows per text, in text order, from the feature rows' ``doc`` column (rows of a text are adjacent)."""
    counts: list[int] = []
    previous = None
    for doc in docs:
        if doc == previous:
            counts[-1] += 1
        else:
            counts.append(1)
            previous = doc
    return counts


class DocumentLogits(np.ndarray):
    """Logits (texts, labels) combined from windows, with ``windows``: each text's window count."""

    windows: list[int]


def combine_windows(logits: np.ndarray, counts: list[int], how: str) -> DocumentLogits:
    """One row per text: the mean or the per-label max of its consecutive window rows."""
    ends = np.cumsum(counts)
    reduce = np.max if how == "max" else np.mean
    rows = [reduce(logits[end - n:end], axis=0) for n, end in zip(counts, ends)]
    combined = np.stack(rows).astype(logits.dtype, copy=False).view(DocumentLogits)
    combined.windows = list(counts)
    return combined


def document_labels(feats: Any) -> np.ndarray:
    """The gold label of each text: of its first window when the rows are windows."""
    labels = feats["labels"]
    if "doc" not in feats.column_names:
        return np.asarray(labels)
    firsts, previous = [], None
    for label, doc in zip(labels, feats["doc"]):
        if doc != previous:
            firsts.append(label)
            previous = doc
    return np.asarray(firsts)


def report(windows_needed: list[int], max_length: int, max_windows: int) -> dict[str, Any]:
    """The length report's window entries: windows kept in all, texts needing several, texts needing more
    than ``max_windows`` (those lose their middle windows), and a sentence saying so."""
    several = sum(1 for n in windows_needed if n > 1)
    cut = sum(1 for n in windows_needed if n > max_windows)
    kept = sum(min(n, max_windows) for n in windows_needed)
    note = (f"{several} ({round(100 * several / max(1, len(windows_needed)), 2)} %) texts need more than one window "
            f"of max_length={max_length}; {kept} windows in all")
    if cut:
        note += f"; {cut} texts need more than max_windows={max_windows} and keep their first {max_windows - 1} and last"
    return {"windows": kept, "texts_windowed": several, "windows_cut": cut, "note_windows": note}
