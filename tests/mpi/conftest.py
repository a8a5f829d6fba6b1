"""Runs under ``mpirun -n N python -m pytest tests/mpi``: every rank runs the same tests, and
tests call collectives, so the ranks must agree on every outcome. A test that fails on one
rank fails on all (the message names the rank and its error); otherwise the others would go
on to the next test and wait forever in a collective that the failed rank never joins.

Ranks above 0 report briefly (their failures are in rank 0's report too).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
from mpi4py import MPI

COMM = MPI.COMM_WORLD
#: The outcomes travel on a communicator of their own, so that they can never be matched with
#: a collective of a test that another rank is still in.
OUTCOMES = COMM.Dup()
#: How long a rank whose test failed waits for the others to finish that test. If they do not
#: come, they wait in a collective the failed rank left (the test broke off before it): abort
#: the job then, with the failure printed, rather than hang until the outer timeout.
PATIENCE_S = 20.0


def pytest_configure(config: pytest.Config) -> None:
    if COMM.size > 1 and COMM.rank > 0:
        config.option.tbstyle = "no"
        config.option.reportchars = ""


def pytest_report_header() -> str:
    return f"MPI: rank {COMM.rank} of {COMM.size} ({MPI.Get_library_version().splitlines()[0]})"


def _own_frames(error: BaseException | None) -> list[str]:
    """The traceback of ``error`` without pytest's and pluggy's frames."""
    if error is None:
        return []
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if "_pytest" not in f.filename and "pluggy" not in f.filename
    ]
    return traceback.format_list(frames) + traceback.format_exception_only(type(error), error)


def _gather_flags(failed: bool, where: str, error: BaseException | None) -> np.ndarray:
    """Every rank's failed flag. Non-blocking, so a failed rank can give up waiting."""
    mine = np.array([failed], dtype=np.int8)
    every = np.empty(COMM.size, dtype=np.int8)
    request = OUTCOMES.Iallgather(mine, every)
    deadline = time.monotonic() + PATIENCE_S
    while not request.Test():
        if failed and time.monotonic() > deadline:
            sys.stderr.write(
                f"\nrank {COMM.rank}: {where} failed, and the other ranks did not finish it within "
                f"{PATIENCE_S:.0f} s (they wait in a collective this rank left): aborting the job\n"
                + "".join(_own_frames(error))
            )
            sys.stderr.flush()
            COMM.Abort(1)
        time.sleep(0.0005)
    return every


def _in_lockstep(item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
    """Runs one phase (setup, call or teardown) of a test, then exchanges every rank's
    outcome; if any rank failed, raises on every rank. A skip is not a failure (and must be
    decided alike on every rank, before any collective)."""
    error: BaseException | None = None
    result = None
    try:
        result = yield
    except BaseException as exc:  # noqa: B036 -- KeyboardInterrupt too: the other ranks must not wait
        error = exc
    skipped = isinstance(error, (pytest.skip.Exception, pytest.xfail.Exception))
    failed = error is not None and not skipped
    flags = _gather_flags(failed, f"{item.nodeid} ({phase})", error)
    if flags.any():
        summary = f"{type(error).__name__}: {error}".strip() if failed else None
        failures = [(rank, s) for rank, s in enumerate(OUTCOMES.allgather(summary)) if s is not None]
        if not failed:
            pytest.fail(
                f"{phase} failed on another rank; "
                + "; ".join(f"rank {rank}: {message}" for rank, message in failures),
                pytrace=False,
            )
    if error is not None:
        raise error
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _in_lockstep(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _in_lockstep(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _in_lockstep(item, "teardown"))
