"""Second review of ferroptim.distributed (the package since ff684ef) and its step hooks. Each
test failed on the reviewed code; its docstring tells the defect and a fix.

Every test makes the same collective calls on every rank (tests/mpi/conftest.py), and a failing
one fails on every rank without leaving a rank in a collective: the one scenario that hangs
runs in a child MPI job under a timeout.
"""

from __future__ import annotations

import numpy as np
import pytest
from _dp import COMM, RANK, SIZE, assert_replicas

import ferroptim as fo
from ferroptim.distributed import DistributedError, DistributedOptimizer, ZeroRedundancyOptimizer


def rank_grad(shape: tuple[int, ...], rank: int, dtype: type = np.float64) -> np.ndarray:
    """Rank ``rank``'s gradient: different on every rank, the same on every run."""
    return np.random.default_rng([rank, 41]).standard_normal(shape).astype(dtype)


def test_a_refused_step_after_synchronize_does_not_reduce_the_gradients_again() -> None:
    """``synchronize()`` then ``step(grads=...)``: the step is refused on every rank ("pass the
    same gradients to both"), but it has already cleared ``_synchronized``
    (data_parallel.py, ``step``: ``synchronized, self._synchronized = self._synchronized,
    None`` before ``_check_synchronized``). The corrected ``step()`` then all-reduces the
    already reduced ``p.grad`` a second time: with ``op="sum"`` the gradient is ``N`` times
    the sum. Fix: clear ``_synchronized`` only once the check has passed (a refused call
    changes nothing)."""
    shape = (6,)
    params = [fo.Parameter(np.zeros(shape))]
    dist = DistributedOptimizer(fo.SGD(params, lr=0.5), op="sum")
    params[0].grad = rank_grad(shape, RANK)
    dist.synchronize()
    with pytest.raises(DistributedError, match="synchronize\\(\\) reduced p.grad"):
        dist.step(grads=[params[0].grad])
    dist.step()
    reference = [np.zeros(shape)]  # one unsharded step on the sum of every rank's gradient
    fo.SGD(reference, lr=0.5).step(grads=[np.sum([rank_grad(shape, r) for r in range(SIZE)], axis=0)])
    np.testing.assert_allclose(params[0], reference[0], rtol=1e-12, atol=1e-15)


def test_zero_read_only_parameter_raises_on_every_rank_and_changes_nothing() -> None:
    """A parameter made read-only after construction (not laid out in one buffer, so the
    bucket keeps a private copy): the unsharded optimizer refuses it ("is read-only") with
    nothing changed. ZeRO steps the private copy, all-gathers, and only ``_Bucket.store``
    (zero.py, the loop after ``Allgatherv``) fails -- on that rank alone, with a plain
    ``ValueError``, after its shard state advanced; the other ranks step without error and
    the replicas diverge. Fix: check that every parameter of a private bucket is writable in
    the step's collective check (``_exchange_plan``'s error), before any communication."""
    start = [np.linspace(-1.0, 1.0, 5), np.linspace(0.0, 2.0, 6)]
    params = [a.copy() for a in start]
    zero = ZeroRedundancyOptimizer(params, fo.SGD, lr=0.5, momentum=0.9)
    if RANK == SIZE - 1:
        params[1].flags.writeable = False
    outcome = "no error"
    try:
        zero.step(grads=[rank_grad(p.shape, RANK) for p in params])
    except Exception as err:
        outcome = type(err).__name__
    params[1].flags.writeable = True
    outcomes = COMM.allgather(outcome)
    changed = COMM.allgather(
        [f"params[{i}]" for i, (p, a) in enumerate(zip(params, start)) if not np.array_equal(p, a)]
        + [f"{len(zero.state)} shard state(s)"] * bool(zero.state)
    )
    assert outcomes == ["DistributedError"] * SIZE, f"each rank's outcome: {outcomes}"
    assert changed == [[]] * SIZE, f"each rank's changed parameters and shard states: {changed}"


def test_zero_bfloat16_numpy_integer_seed_is_mixed_with_the_rank() -> None:
    """``_settings`` mixes the rank into the rounding ``seed`` only when ``type(seed) is
    int``. A NumPy integer seed edited into a group after construction (``seed`` validation
    accepts any integral number, e.g. ``rng.integers(2**32)`` to reseed) is left unmixed, the
    local optimizer then normalizes it to the same ``int`` on every rank, and all shards
    draw the same random stream again -- the defect of 8f471bf. Fix: mix
    ``int(seed)`` for any ``numbers.Integral`` that is not a bool (or run
    ``storage_settings`` on the full group first)."""
    m = 4096
    param = fo.Parameter(np.full(SIZE * m, 0.5, dtype=np.float32))
    zero = ZeroRedundancyOptimizer([param], fo.Adam, lr=1e-3, state_dtype="bfloat16", seed=3)
    zero.param_groups[0]["seed"] = np.int64(5)
    for t in range(3):
        param.grad = np.full(SIZE * m, 0.1 + 0.01 * t, dtype=np.float32)  # not a bfloat16 value
        zero.step()
    (state,) = zero.optim.state.values()
    bits = COMM.allgather(state["exp_avg"].tobytes())
    assert len(set(bits)) == SIZE, "the ranks' shards rounded with the same random stream"
    assert_replicas([param])
