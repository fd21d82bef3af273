"""Matplotlib set-up shared by every plot bertkit draws: the Agg backend, Japanese-capable fonts, heatmaps.

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
    from bertkit.outputs import staged_file

    plt = pyplot()
    with staged_file(path) as partial:
        fig.savefig(partial, dpi=dpi, format="png")
    plt.close(fig)
