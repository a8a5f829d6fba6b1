"""matplotlib with the non-interactive Agg backend, and the experiments' figure defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def figure(rows: int, cols: int, width: float = 4.0, height: float = 3.6) -> tuple[Any, Any]:
    """A figure with a ``rows × cols`` grid of axes (always a 2-D array)."""
    return plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )


def save(fig: Any, path: Path) -> None:
    """Writes ``fig`` to ``path`` and frees it."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
