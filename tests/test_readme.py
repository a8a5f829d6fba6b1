"""The ```python blocks of README.md and docs/**/*.md run as written.

The convention: every fenced block whose info string is ``python`` is run, each on its
own, in a fresh interpreter in an empty temporary directory, and must exit with status 0.
A block that cannot run by itself (it needs your model, your data or a launcher such as
``mpirun``) starts with a comment line ``# fragment: <what it needs>`` and is only
compiled, so it still cannot hold a syntax error. Blocks with another info string
(``sh``, none for output) are not Python. New blocks are picked up by themselves.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_generated" not in p.parts),  # not the site's copies
]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)
FRAGMENT = "# fragment:"


def _blocks() -> list[tuple[str, str]]:
    """(id, code) of every ```python block, the id being ``file:line``."""
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1).strip() == "python":
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", match.group(2)))
    return found


BLOCKS = _blocks()
RUNNABLE = [(where, code) for where, code in BLOCKS if not code.lstrip().startswith(FRAGMENT)]


def test_the_documents_have_runnable_blocks():
    assert len(RUNNABLE) >= 5, [where for where, _ in BLOCKS]


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_block_compiles(where, code):
    compile(code, where, "exec")


@pytest.mark.parametrize(("where", "code"), RUNNABLE, ids=[where for where, _ in RUNNABLE])
def test_block_runs(where, code, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"{where} failed (mark it `{FRAGMENT} ...` if it cannot run by itself):\n{result.stderr}"
    )


def test_quickstart_prints_what_the_readme_says(tmp_path):
    text = (ROOT / "README.md").read_text()
    quickstart = text[text.index("## Quickstart") :]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", quickstart, flags=re.S)[:2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout == shown
