"""``python -m ferroptim.examples.data_parallel`` under ``mpirun -n 2``: its data-parallel
loss curve is the one a single process prints (run here separately, on one rank), and the
gap it reports against its own single-process reference is rounding. A rank that raises
ends the job instead of hanging it. Skipped without ``mpirun`` or mpi4py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("mpi4py")
pytest.importorskip("sklearn")  # the digits data
MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun (Open MPI) is not installed")

STEPS = 12
TIMEOUT_S = 120
STEP_LINE = re.compile(r"^\s*(\d+)\s+(\d+\.\d+)\s+\d+\s*$", re.M)
GAP_LINE = re.compile(r"max \|loss difference\| over (\d+) steps = (\S+)")


def _mpirun(ranks: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``args`` run on ``ranks`` ranks, killed (every rank: mpirun forwards SIGTERM) after
    ``TIMEOUT_S`` seconds."""
    assert MPIRUN is not None
    command = [MPIRUN, "-n", str(ranks), "--oversubscribe"]
    if os.geteuid() == 0:
        command.append("--allow-run-as-root")
    timeout = shutil.which("timeout")
    guard = [timeout, "-k", "10", str(TIMEOUT_S)] if timeout else []
    return subprocess.run([*guard, *command, *args], capture_output=True, text=True, timeout=TIMEOUT_S + 30)


def _example(*args: str) -> list[str]:
    return [sys.executable, "-m", "ferroptim.examples.data_parallel", "--steps", str(STEPS), *args]


def _curve(stdout: str) -> list[float]:
    steps = [(int(s), float(loss)) for s, loss in STEP_LINE.findall(stdout)]
    assert [s for s, _ in steps] == list(range(1, STEPS + 1)), stdout
    return [loss for _, loss in steps]


@pytest.mark.parametrize("mode", [[], ["--zero"], ["--optimizer", "SGD", "--lr", "0.1"]], ids=str)
def test_two_ranks_trace_the_single_process_loss_curve(mode):
    result = _mpirun(2, *_example(*mode))
    assert result.returncode == 0, result.stdout + result.stderr
    curve = _curve(result.stdout)
    gap = GAP_LINE.search(result.stdout)
    assert gap is not None, result.stdout
    assert int(gap[1]) == STEPS
    assert float(gap[2]) < 1e-12, result.stdout
    # Independently of the example's own comparison: one process, one rank, no mpirun.
    alone = subprocess.run(_example(*mode), capture_output=True, text=True, timeout=TIMEOUT_S, check=True)
    single = _curve(alone.stdout)
    assert max(abs(a - b) for a, b in zip(curve, single)) <= 2e-6  # printed to 6 decimals
    assert curve[-1] < 0.8 * curve[0]  # and it trains


def test_a_rank_that_raises_ends_the_job():
    # Rank 1's model fails in its backward pass while rank 0 waits in the all-reduce.
    script = (
        "from mpi4py import MPI\n"
        "import ferroptim.examples.data_parallel as dp\n"
        "if MPI.COMM_WORLD.rank == 1:\n"
        "    build = dp.flat_model\n"
        "    def flat_model(*args):\n"
        "        model, param = build(*args)\n"
        "        def fail(x, y):\n"
        "            raise ValueError('injected failure')\n"
        "        model.loss_and_grads = fail\n"
        "        return model, param\n"
        "    dp.flat_model = flat_model\n"
        f"dp.main(['--steps', '{STEPS}'])\n"
    )
    result = _mpirun(2, sys.executable, "-c", script)
    assert result.returncode not in (0, 124, 137), result.stdout + result.stderr  # failed, not hung
    assert "rank 1 of 2 failed" in result.stderr
    assert "ValueError: injected failure" in result.stderr
