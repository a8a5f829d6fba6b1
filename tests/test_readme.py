"""The README's quickstart runs and prints exactly the output the README shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quickstart_prints_what_the_readme_says():
    text = README.read_text()
    quickstart = text[text.index("## Quickstart") :]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", quickstart, flags=re.S)[:2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == shown
