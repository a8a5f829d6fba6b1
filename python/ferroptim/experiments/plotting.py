"""The experiments' figures: a grid of axes made here, or axes the caller passes in.

Each experiment's ``plot(..., ax=None)`` draws into ``ax`` (one Axes, or any array of
them, one per panel) when given, else into a new figure, and returns the
``matplotlib.figure.Figure``. A new figure is detached from pyplot (as if
``plt.close(fig)``), so Jupyter shows it once, as the cell's value, and a script keeps
it only as long as it holds the object; ``fig.savefig(...)`` writes it either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def axes_grid(ax: Any, rows: int, cols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    """The figure and a ``rows × cols`` array of axes to draw into: ``ax`` (an Axes or an
    array-like of ``rows * cols`` Axes, in row-major order) when given, else a new figure."""
    if ax is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(
            rows, cols, figsize=(width * cols, height * rows), dpi=80, squeeze=False, layout="constrained"
        )
        plt.close(fig)
        return fig, axes
    axes = np.asarray(ax, dtype=object).reshape(-1)
    if axes.size != rows * cols:
        raise ValueError(f"ax: this plot has {rows * cols} panel(s) ({rows} × {cols}), got {axes.size} Axes")
    return axes[0].figure, axes.reshape(rows, cols)


def save(fig: Any, path: Path) -> None:
    """Writes ``fig`` to ``path`` as a PNG."""
    fig.savefig(path, dpi=110)
