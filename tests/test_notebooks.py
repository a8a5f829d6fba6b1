"""The notebooks in ``examples/`` are committed executed (``make notebooks``), run headless
from top to bottom, and print no warning: no cell writes to stderr or says "Warning"."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.ipynb"))


def _run(book, cwd: Path):
    nbclient.NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return book


def _outputs(book):
    return [(i, o) for i, cell in enumerate(book.cells) for o in cell.get("outputs", [])]


def _noise(book) -> list[str]:
    """Errors, stderr and warnings in the outputs."""
    found = []
    for i, o in _outputs(book):
        text = o.get("text", "") + "".join(
            str(v) for k, v in o.get("data", {}).items() if k.startswith("text/")
        )
        if o["output_type"] == "error" or o.get("name") == "stderr" or "warning" in text.lower():
            found.append(
                f"cell {i}: {o['output_type']} {o.get('name', '')}: {text or o.get('evalue', '')}"[:300]
            )
    return found


def _kinds(book) -> Counter:
    """How many outputs of each kind (stream or MIME type) each cell has."""
    return Counter((i, o.get("name") or "/".join(sorted(o.get("data", {})))) for i, o in _outputs(book))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "lecture.ipynb", "torch.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_as_committed(path, tmp_path):
    committed = nbformat.read(path, as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert [cell.get("execution_count") for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name} is not committed executed top to bottom: run `make notebooks`"
    )
    assert not _noise(committed)
    fresh = _run(nbformat.read(path, as_version=4), tmp_path)
    assert not _noise(fresh)
    assert _kinds(fresh) == _kinds(committed), f"{path.name}'s outputs are stale: run `make notebooks`"


def test_lecture_notebook_shows_its_figures_inline():
    book = nbformat.read(next(p for p in NOTEBOOKS if p.name == "lecture.ipynb"), as_version=4)
    figures = [o for _, o in _outputs(book) if "image/png" in o.get("data", {})]
    assert len(figures) >= 4
    assert all(len(o["data"]["image/png"]) < 200_000 for o in figures)  # base64 PNG, modest dpi


def test_progress_in_jupyter_is_a_widget_bar_without_warnings(tmp_path):
    """tqdm.auto's widget (ipywidgets, the experiments extra): a bar, and nothing on stderr."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("sklearn")
    book = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from ferroptim.experiments import compare, data\n"
                "runs = compare.run(data.digits(), model_names=['logreg'], optimizer_names=['SGD'],"
                " epochs=2, batch_size=512, hidden=4, seed=0, progress=True)"
            )
        ]
    )
    _run(book, tmp_path)
    assert not _noise(book)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for _, o in _outputs(book))
