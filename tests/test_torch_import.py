"""``ferroptim.torch`` imports torch on use only: ``import ferroptim`` never does, and
without torch ``import ferroptim.torch`` raises an ``ImportError`` naming the extra. Each
check runs in a fresh interpreter, so nothing imported here counts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest


def run(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_import_ferroptim_does_not_import_torch() -> None:
    run(
        """
        import sys
        import numpy as np
        import ferroptim as fo
        fo.Adam([fo.Parameter(np.zeros(2))]).step(grads=[np.ones(2)])
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
        """
    )


def test_without_torch_the_error_names_the_extra() -> None:
    run(
        """
        import sys
        sys.modules["torch"] = None  # as if it were not installed
        import ferroptim
        try:
            import ferroptim.torch
        except ImportError as err:
            assert "ferroptim[torch]" in str(err) and "pip install" in str(err), err
        else:
            raise AssertionError("no ImportError without torch")
        """
    )


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_import_ferroptim_torch_imports_torch() -> None:
    run(
        """
        import sys
        import ferroptim.torch as fot
        assert "torch" in sys.modules
        assert set(fot.__all__) == {"SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam",
                                    "RAdam", "Adamax", "Lion", "AdagradNorm"}
        """
    )
