"""ZeroRedundancyOptimizer under ``np.errstate(all="raise")``, in a child ``mpirun -n 2`` job
under a timeout (a job of its own: the MPI suite in tests/mpi cannot start a nested mpirun
reliably). Skipped without ``mpirun`` or mpi4py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mpi4py")
pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun (Open MPI) is not installed")

CHILD = textwrap.dedent(
    """
    import numpy as np
    from mpi4py import MPI

    import ferroptim as fo
    from ferroptim.distributed import ZeroRedundancyOptimizer

    comm = MPI.COMM_WORLD
    param = fo.Parameter(np.ones(4 * comm.size, dtype=np.float32))
    zero = ZeroRedundancyOptimizer([param], fo.SGD, lr=0.1)
    grad = np.ones(4 * comm.size, dtype=np.float32)
    # the last element (in the last rank's shard) sums to the smallest subnormal: its average underflows
    grad[-1] = np.float32(1e-45) if comm.rank == 0 else 0.0
    with np.errstate(all="raise"):
        try:
            zero.step(grads=[grad])
            outcome = "ok"
        except Exception as err:
            outcome = type(err).__name__
    outcomes = comm.gather(outcome)  # one line from rank 0 (the ranks' prints may interleave)
    if comm.rank == 0:
        print("outcomes", *outcomes, flush=True)
    """
)


def test_zero_numpy_floating_point_error_on_one_shard_does_not_hang(tmp_path: Path) -> None:
    """Between its collectives, ZeRO's step does NumPy arithmetic on this rank's shard only
    (the averaging ``np.divide`` after ``Reduce_scatter``; the unscaling and ``np.dot`` of
    ``_apply_grad_settings``). Under the caller's ``np.errstate``/``np.seterr(all="raise")``
    (a common debugging setting) a tiny or huge gradient would raise ``FloatingPointError`` on
    the rank that owns it alone, which would leave the step while the others wait in the next
    collective forever. (DistributedOptimizer's division runs on the same reduced values
    on every rank, so all raise alike.) Run in a child job of 2 ranks under a timeout.
    So ZeRO does that arithmetic under ``np.errstate(all="ignore")``, as the Rust kernels
    never trap: every rank steps."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    command = ["timeout", "-k", "5", "60", "mpirun", "-n", "2", "--oversubscribe", "--allow-run-as-root"]
    run = subprocess.run([*command, sys.executable, str(script)], capture_output=True, text=True)
    returncode, stdout = run.returncode, run.stdout
    lines = [line.split()[1:] for line in stdout.splitlines() if line.startswith("outcomes")]
    assert returncode != 124, f"the child job hung (timeout 60 s); it printed {lines}"
    assert lines == [["ok", "ok"]], stdout
