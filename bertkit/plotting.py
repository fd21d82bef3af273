"""Matplotlib set-up and the plots a run writes: the Agg backend, Japanese-capable fonts, heatmaps, training curves, the confusion matrix.

Labels with Japanese (or other CJK) characters need a font that has their glyphs, or matplotlib
draws empty boxes. An installed Noto Sans CJK / IPA / Takao font is used when there is one; otherwise
the IPAexGothic that the ``matplotlib-fontja`` dependency ships is registered (without importing that
package, which would change the global font on import). Latin text stays in DejaVu Sans; the CJK
font is the fallback for the glyphs DejaVu lacks.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bertkit.outputs import staged_file

PREFERRED_CJK = ("Noto Sans CJK JP", "Noto Sans JP", "Noto Sans CJK", "IPAexGothic", "IPAGothic", "TakaoGothic")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def needs_cjk(texts: Iterable[str]) -> bool:
    return any(ord(c) >= 0x2E80 for text in texts for c in text)


def _bundled_font() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "ipaexg.ttf"
    return path if path.exists() else None


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of a font with Japanese glyphs: an installed one, else the bundled IPAexGothic."""
    from matplotlib import font_manager

    def installed() -> str | None:
        names = {font.name for font in font_manager.fontManager.ttflist}
        for key in PREFERRED_CJK:
            for name in sorted(names):
                if key in name:
                    return name
        return None

    found = installed()
    if found is None and (bundled := _bundled_font()) is not None:
        font_manager.fontManager.addfont(str(bundled))
        found = installed()
    return found


def use_cjk_font(plt: Any, texts: Iterable[str]) -> None:
    """Let labels with Japanese characters render (else they are drawn as empty boxes)."""
    if needs_cjk(texts) and (name := cjk_font()) is not None:
        plt.rcParams["font.family"] = ["DejaVu Sans", name]  # per-glyph fallback to the CJK font


def shorten(text: str, width: int = 28) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def heatmap(ax: Any, matrix: Any, row_labels: list[str] | None, col_labels: list[str] | None, *,
            cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
            fontsize: float = 8, aspect: str = "auto") -> Any:
    """``matrix`` as an image on ``ax`` with optional tick labels (columns rotated); returns the image."""
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), col_labels, rotation=90, fontsize=fontsize)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=fontsize)
    return image


def save(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """Write the figure as PNG to ``path`` atomically (a staged file renamed into place), then close it."""
    plt = pyplot()
    with staged_file(path) as partial:
        fig.savefig(partial, dpi=dpi, format="png")
    plt.close(fig)



def plot_training(log_history: list[dict[str, Any]], metric: str, path: Path) -> bool:
    """Loss (train and eval) and the selection metric against the epoch, as one PNG."""
    train = [(e["epoch"], e["loss"]) for e in log_history if "loss" in e and "epoch" in e]
    # bertkit's own per-epoch evaluation reports the task's metrics and no loss; the Trainer's reports both
    evals = [e for e in log_history if "epoch" in e and any(k.startswith("eval_") for k in e)]
    if not train and not evals:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if train:
        axes[0].plot(*zip(*train), label="train loss", lw=1)
    losses = [(e["epoch"], e["eval_loss"]) for e in evals if "eval_loss" in e]
    if losses:
        axes[0].plot(*zip(*losses), "o-", label="validation loss")
    if evals:
        key = f"eval_{metric}"
        points = [(e["epoch"], e[key]) for e in evals if key in e]
        if points:
            axes[1].plot(*zip(*points), "o-", color="tab:green")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(f"validation {metric}")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_search(points: list[tuple[int, float]], metric: str, greater: bool, path: Path) -> None:
    """``bertkit tune``: each finished trial's validation metric, and the best so far."""
    plt = pyplot()
    points = sorted(points)
    best, running = [], None
    for _, value in points:
        running = value if running is None else (max(running, value) if greater else min(running, value))
        best.append(running)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot([n for n, _ in points], [v for _, v in points], "o", label="trial", alpha=0.7)
    ax.step([n for n, _ in points], best, where="post", color="tab:green", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(labels: list[str], matrix: list[list[int]], path: Path) -> None:
    plt = pyplot()
    use_cjk_font(plt, labels)
    n = len(labels)
    size = max(3.5, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    peak = max((max(r) for r in matrix), default=0)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center",
                    color="white" if matrix[i][j] > peak / 2 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
