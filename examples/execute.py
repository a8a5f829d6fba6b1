"""Executes the notebooks of ``examples/`` in place, so that they are committed with their
outputs (``make notebooks``): ``python examples/execute.py [NOTEBOOK ...]``, all by default.

Each runs top to bottom in a fresh kernel whose working directory is ``examples/``; a cell
that raises stops it with the error, and the file is left as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> None:
    # cell ids are required from nbformat 4.5 on: normalize() gives cells without one an id
    _, fixed = nbformat.validator.normalize(nbformat.read(path, as_version=4))
    book = nbformat.from_dict(fixed)
    nbclient.NotebookClient(
        book,
        timeout=600,
        kernel_name="python3",
        record_timing=False,  # no timestamps: a re-run changes only what the cells print
        resources={"metadata": {"path": str(HERE)}},
    ).execute()
    nbformat.write(book, path)


if __name__ == "__main__":
    for notebook in [Path(p) for p in sys.argv[1:]] or sorted(HERE.glob("*.ipynb")):
        print(f"executing {notebook}")
        execute(notebook)
