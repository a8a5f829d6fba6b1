"""``ferroptim.distributed`` imports mpi4py on first use only: ``import ferroptim`` never needs
it, and never initialises MPI (this suite forks processes, which MPI does not allow once it
is initialised). Each check runs in a fresh interpreter, so nothing imported here counts.

The MPI tests themselves are in ``tests/mpi``, run under ``mpirun`` (``make mpi-test``)."""

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


def test_import_ferroptim_does_not_import_mpi4py() -> None:
    run(
        """
        import sys
        import ferroptim
        assert "mpi4py" not in sys.modules, sorted(m for m in sys.modules if "mpi" in m)
        """
    )


def test_import_of_the_distributed_module_does_not_import_mpi4py() -> None:
    run(
        """
        import sys
        import ferroptim.distributed
        from ferroptim.distributed import (
            DistributedError, DistributedOptimizer, ZeroRedundancyOptimizer,
            broadcast_optimizer_state, broadcast_parameters, check_replicas,
        )
        assert issubclass(DistributedError, RuntimeError)
        assert "mpi4py" not in sys.modules, sorted(m for m in sys.modules if "mpi" in m)
        """
    )


def test_without_mpi4py_first_use_says_what_to_install() -> None:
    run(
        """
        import sys
        sys.modules["mpi4py"] = None  # as if it were not installed
        import numpy as np
        import ferroptim as fo
        from ferroptim.distributed import DistributedOptimizer
        try:
            DistributedOptimizer(fo.SGD([fo.Parameter(np.zeros(2))], lr=0.1))
        except ImportError as err:
            assert "pip install '.[mpi]'" in str(err), err
        else:
            raise AssertionError("no ImportError without mpi4py")
        """
    )


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py is not installed")
def test_first_use_imports_mpi4py() -> None:
    """A single process without mpirun is an MPI job of one rank (a "singleton")."""
    run(
        """
        import sys
        import numpy as np
        import ferroptim as fo
        from ferroptim.distributed import DistributedOptimizer
        p = fo.Parameter(np.ones(3))
        opt = DistributedOptimizer(fo.SGD([p], lr=0.5))
        assert "mpi4py" in sys.modules
        opt.step(grads=[np.ones(3)])
        assert np.array_equal(p, np.full(3, 0.5)), p
        """
    )
