"""ZeroRedundancyOptimizer's total memory per rank, and its exchanges in rounds.

Memory: ZeRO keeps no full-size copy of the parameters or the gradients. Traced by
``tracemalloc``, Adam under ZeRO holds less per rank than under DistributedOptimizer, for
separate arrays and for a flat buffer, and stays within the bound its docstring states.

Rounds: with separate arrays, the reduce-scatter and the all-gather go through a staging
buffer of at most ``bucket_cap_mb``. On every layout (0-d, size 0, Fortran order, strided,
views of one buffer, mixed dtypes in two groups), a tiny cap splits them into many rounds,
and the trajectory, the replicas and the checkpoints are those of one exchange.
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _dp import COMM, RANK, SIZE, TOL, RecordingComm, assert_replicas

import ferroptim as fo
from ferroptim.distributed import DistributedOptimizer, ZeroRedundancyOptimizer

#: Four float64 arrays: 800 kB of parameters, large beside the few kB of Python objects.
SIZES = [25_000] * 4
ITEMSIZE = 8
#: Bytes of Python objects a step allocates besides the arrays (dicts, pickled checks).
SLACK = 64 * 1024
STEPS = 2


def model(layout: str) -> list[fo.Parameter]:
    """The parameters with this rank's gradients in ``.grad``: separate arrays, or views of
    one buffer (``fo.flatten_parameters``)."""
    rng = np.random.default_rng(RANK)
    values = [rng.standard_normal(n) for n in SIZES]
    if layout == "flat buffer":
        params = fo.flatten_parameters(values).params
    else:
        params = [fo.Parameter(v) for v in values]
    for p in params:
        p.grad = rng.standard_normal(p.shape)
    return params


def traced(build: Callable[[list[fo.Parameter]], Any], params: list[fo.Parameter]) -> tuple[int, int]:
    """The largest peak and the largest held memory over the ranks, traced from building
    the optimizer through ``STEPS`` steps."""
    gc.collect()
    tracemalloc.start()
    try:
        opt = build(params)
        for _ in range(STEPS):
            opt.step()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(COMM.allgather(peak)), max(COMM.allgather(current))


@pytest.mark.parametrize("layout", ["separate arrays", "flat buffer"])
def test_zero_holds_less_memory_per_rank_than_the_distributed_optimizer(layout: str) -> None:
    """Adam (two state arrays): the distributed optimizer holds the full state, plus (for
    separate arrays) a packing buffer for the gradients. ZeRO holds the state of its shard,
    the shard's reduced gradient, and (for separate arrays) a staging buffer, which is the
    whole vector here: ``(2 + 1)·n·b/N + n·b`` against ``3·n·b`` for separate arrays, and
    ``3·n·b/N`` against ``2·n·b`` for the flat buffer."""
    dp_peak, dp_held = traced(lambda ps: DistributedOptimizer(fo.Adam(ps, lr=1e-3)), model(layout))
    zero_peak, zero_held = traced(lambda ps: ZeroRedundancyOptimizer(ps, fo.Adam, lr=1e-3), model(layout))
    n = sum(SIZES)
    shard = math.ceil(n / SIZE)
    staging = n * ITEMSIZE if layout == "separate arrays" else 0
    bound = 3 * shard * ITEMSIZE + staging + SLACK  # the docstring's bound, 25 MiB cap
    assert zero_peak < dp_peak, f"{layout}: ZeRO's peak {zero_peak} B >= DistributedOptimizer's {dp_peak} B"
    assert zero_held < dp_held, f"{layout}: ZeRO holds {zero_held} B >= DistributedOptimizer's {dp_held} B"
    assert zero_peak <= bound, f"{layout}: ZeRO's peak {zero_peak} B > the documented bound {bound} B"
    # and the distributed optimizer is what its docstring says, so the comparison is fair
    assert dp_peak >= 2 * n * ITEMSIZE + (n * ITEMSIZE if layout == "separate arrays" else 0)


def test_the_staging_buffer_is_bounded_by_bucket_cap_mb() -> None:
    """With a cap of a quarter of the vector, every reduce-scatter sends and every
    all-gather receives at most the cap, the rounds together move the whole vector, and
    the peak memory is below that of the default cap (one round of the whole vector)."""
    n = sum(SIZES)
    cap = n * ITEMSIZE // 4
    comm = RecordingComm()
    zero = ZeroRedundancyOptimizer(
        model("separate arrays"), fo.Adam, comm=comm, lr=1e-3, bucket_cap_mb=cap / 2**20
    )
    zero.step()
    for name in ("Reduce_scatter", "Allgatherv"):
        calls = comm.named(name)
        assert len(calls) >= 4, f"{name}: {len(calls)} calls"
        assert all(nbytes <= cap for _, _, nbytes in calls), f"{name}: {calls}"
        assert sum(nbytes for _, _, nbytes in calls) == n * ITEMSIZE, f"{name}: {calls}"
    capped, _ = traced(
        lambda ps: ZeroRedundancyOptimizer(ps, fo.Adam, lr=1e-3, bucket_cap_mb=cap / 2**20),
        model("separate arrays"),
    )
    whole, _ = traced(lambda ps: ZeroRedundancyOptimizer(ps, fo.Adam, lr=1e-3), model("separate arrays"))
    assert capped <= whole - 3 * n * ITEMSIZE // 4 + SLACK, f"peak {capped} B with the cap, {whole} B without"


def odd_layouts() -> list[np.ndarray]:
    """A 0-d, a size-0, a Fortran-order matrix (whose shard parts need staged copies), a
    strided view, a reversed 3-d view, two views of one buffer in reverse order, and two
    float32 arrays."""
    buf = np.linspace(-1.0, 1.0, 12)
    return [
        np.array(0.5),
        np.zeros(0),
        np.asfortranarray(np.linspace(-2.0, 2.0, 35).reshape(5, 7)),
        np.linspace(0.0, 1.0, 20)[::2],
        np.linspace(-3.0, 3.0, 60).reshape(3, 4, 5)[:, ::-1, 1:],
        buf[5:].reshape(7, 1),
        buf[:5],
        np.linspace(0.0, 1.0, 9, dtype=np.float32).reshape(3, 3),
        np.asfortranarray(np.linspace(1.0, 2.0, 12, dtype=np.float32).reshape(4, 3)),
    ]


def groups(params: list[np.ndarray]) -> list[dict[str, Any]]:
    return [{"params": params[:5]}, {"params": params[5:], "lr": 0.02, "weight_decay": 0.1}]


def rank_grads(params: list[np.ndarray], step: int) -> list[np.ndarray]:
    rng = np.random.default_rng([RANK, step, 13])
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def bits(arrays: Any) -> list[bytes]:
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


@pytest.mark.parametrize("bucket_cap_mb", [16 / 2**20, 100 / 2**20, None], ids=["16B", "100B", "None"])
@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(fo.Adam, {"lr": 0.05, "amsgrad": True}), (fo.SGD, {"lr": 0.1, "momentum": 0.9})],
    ids=["Adam-amsgrad", "SGD-momentum"],
)
def test_exchanges_in_rounds_match_one_exchange_on_every_layout(
    cls: type[fo.Optimizer], kwargs: dict[str, Any], bucket_cap_mb: float | None
) -> None:
    """Rounds of a few elements per rank, against DistributedOptimizer: the same trajectory
    (bit for bit on two ranks, where every sum is one addition), identical replicas, and
    a consolidated state dict that reloads (with another cap) and resumes the trajectory."""
    zp, dp = odd_layouts(), odd_layouts()
    zero = ZeroRedundancyOptimizer(groups(zp), cls, bucket_cap_mb=bucket_cap_mb, **kwargs)
    dist = DistributedOptimizer(cls(groups(dp), **kwargs))

    def step(t: int) -> None:
        grads = rank_grads(zp, t)
        zero.step(grads=grads)
        dist.step(grads=[g.copy() for g in grads])
        assert_replicas(zp)
        for i, (z, d) in enumerate(zip(zp, dp)):
            if SIZE == 2:
                np.testing.assert_array_equal(z, d, err_msg=f"step {t + 1}, parameter {i}")
            else:
                np.testing.assert_allclose(z, d, **TOL[z.dtype.type], err_msg=f"step {t + 1}, parameter {i}")

    for t in range(4):
        step(t)
    zero.consolidate_state_dict(to=0)
    consolidated = COMM.bcast(zero.state_dict() if RANK == 0 else None)
    reference = dist.state_dict()["state"]
    assert sorted(consolidated["state"]) == sorted(reference)
    for i, entry in reference.items():
        for key, value in entry.items():
            np.testing.assert_allclose(
                consolidated["state"][i][key], value, rtol=1e-6, atol=1e-9, err_msg=key
            )
    # reloaded into a ZeRO with another cap over the current values, it steps on the same way
    again = [np.array(p, order="K") for p in zp]  # copies: other layouts, other shard parts
    resumed = ZeroRedundancyOptimizer(
        groups(again), cls, bucket_cap_mb=None if bucket_cap_mb else 1e-5, **kwargs
    )
    resumed.load_state_dict(consolidated)
    for t in range(4, 7):
        grads = rank_grads(zp, t)
        resumed.step(grads=grads)
        zero.step(grads=grads)
        dist.step(grads=[g.copy() for g in grads])
        if SIZE == 2:
            assert bits(again) == bits(zp), f"step {t + 1}: resumed and uninterrupted differ"
        assert_replicas(again)


@pytest.mark.parametrize("bad", [0, -1.0, True, "25", float("nan")])
def test_a_bad_bucket_cap_mb_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number or None"):
        ZeroRedundancyOptimizer([np.zeros(3)], fo.SGD, lr=0.1, bucket_cap_mb=bad)
