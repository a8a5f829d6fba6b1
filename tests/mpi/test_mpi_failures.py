"""One rank's bad step makes every rank raise DistributedError naming that rank, and no rank
is left waiting in a collective (the suite finishing under ``timeout`` is the proof); after
the error the optimizers still work and the replicas stay identical."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _dp import COMM, RANK, SIZE, assert_close, assert_replicas

import ferroptim as fo
from ferroptim.distributed import (
    DistributedError,
    DistributedOptimizer,
    ZeroRedundancyOptimizer,
    broadcast_optimizer_state,
    broadcast_parameters,
    check_replicas,
)

pytestmark = pytest.mark.skipif(SIZE == 1, reason="needs two ranks or more")

SHAPES = [(4, 3), (3,), (5,)]
#: The rank that misbehaves: the last, so that rank 0 (which reports) is a bystander.
BAD = SIZE - 1


def start_values() -> list[np.ndarray]:
    rng = np.random.default_rng(21)
    return [rng.standard_normal(s) for s in SHAPES]


def good_grads(step: int, rank: int = RANK) -> list[np.ndarray]:
    rng = np.random.default_rng([rank, step])
    return [rng.standard_normal(s) for s in SHAPES]


def averaged(step: int) -> list[np.ndarray]:
    """The average over ranks of :func:`good_grads`, computed here from every rank's seed."""
    per_rank = [good_grads(step, r) for r in range(SIZE)]
    return [sum(g[i] for g in per_rank) / SIZE for i in range(len(SHAPES))]


def bad_grads(kind: str, step: int) -> list[Any]:
    grads: list[Any] = good_grads(step)
    if RANK != BAD:
        return grads
    if kind == "shape":
        grads[1] = np.zeros(4)
    elif kind == "dtype":
        grads[1] = grads[1].astype(np.float32)
    elif kind == "count":
        grads = grads[:2]
    elif kind == "type":
        grads[0] = grads[0].tolist()
    return grads


def _snapshot(opt: Any, params: list[np.ndarray]) -> tuple[list[np.ndarray], list[Any]]:
    inner = opt.optim if isinstance(opt, ZeroRedundancyOptimizer) else opt
    sd = inner.state_dict()
    return [p.copy() for p in params], sorted(
        (i, k, np.asarray(v).tobytes()) for i, e in sd["state"].items() for k, v in e.items()
    )


@pytest.mark.parametrize("kind", ["shape", "dtype", "count", "type"])
@pytest.mark.parametrize("wrapper", ["distributed", "zero"])
def test_a_bad_gradient_on_one_rank_raises_on_every_rank(kind: str, wrapper: str) -> None:
    params = [fo.Parameter(a) for a in start_values()]
    opt: Any = (
        DistributedOptimizer(fo.Adam(params, lr=0.05))
        if wrapper == "distributed"
        else ZeroRedundancyOptimizer(params, optimizer_class=fo.Adam, lr=0.05)
    )
    reference = [fo.Parameter(a) for a in start_values()]
    reference_opt = fo.Adam(reference, lr=0.05)
    opt.step(grads=good_grads(0))
    reference_opt.step(grads=averaged(0))
    before = _snapshot(opt, params)
    with pytest.raises(DistributedError, match=f"rank {BAD}") as caught:
        opt.step(grads=bad_grads(kind, 1))
    if RANK == BAD:
        assert caught.value.__cause__ is not None  # the rank's own error
    after = _snapshot(opt, params)
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)  # nothing changed, on any rank
    assert before[1] == after[1]
    # still in step: the next good steps succeed, and match a run that never saw the bad one
    for t in (2, 3):
        opt.step(grads=good_grads(t))
        reference_opt.step(grads=averaged(t))
        assert_replicas(params)
        check_replicas(params)
        assert_close(params, reference, np.float64, f"step {t} after the error")


def test_param_count_mismatch_raises_on_every_rank() -> None:
    values = start_values() + ([np.zeros(2)] if RANK == BAD else [])
    params = [fo.Parameter(a) for a in values]
    dopt = DistributedOptimizer(fo.SGD(params, lr=0.1))
    grads = [np.ones_like(p) for p in params]
    with pytest.raises(DistributedError, match=f"rank.*{BAD}"):
        dopt.step(grads=grads)
    for p, a in zip(params, values):
        np.testing.assert_array_equal(p, a)


def test_hyperparameter_mismatch_raises_on_every_rank() -> None:
    params = [fo.Parameter(a) for a in start_values()]
    dopt = DistributedOptimizer(fo.SGD(params, lr=0.2 if RANK == BAD else 0.1))
    with pytest.raises(DistributedError, match=f"rank.*{BAD}"):
        dopt.step(grads=good_grads(0))


def test_zero_parameter_without_a_gradient_anywhere_raises_on_every_rank() -> None:
    params = [fo.Parameter(a) for a in start_values()]
    zero = ZeroRedundancyOptimizer(params, optimizer_class=fo.Adam)
    grads: list[Any] = good_grads(0)
    grads[2] = None
    with pytest.raises(DistributedError, match=r"param_groups\[0\]\['params'\]\[2\]"):
        zero.step(grads=grads)
    zero.step(grads=good_grads(1))
    assert_replicas(params)


def test_a_failed_wrapped_step_raises_everywhere_and_broadcasts_resynchronise() -> None:
    """The wrapped step fails on one rank only (a read-only parameter there): every rank
    raises; the other ranks stepped, so the documented recovery is to broadcast root's
    parameters and state."""
    params = [fo.Parameter(a) for a in start_values()]
    dopt = DistributedOptimizer(fo.Adam(params, lr=0.05))
    params[0].flags.writeable = RANK != BAD
    with pytest.raises(DistributedError, match=f"rank {BAD}"):
        dopt.step(grads=good_grads(0))
    params[0].flags.writeable = True
    broadcast_parameters(params, root=0)
    broadcast_optimizer_state(dopt, root=0)
    dopt.step(grads=good_grads(1))
    assert_replicas(params)
    check_replicas(params)
    # rank 0 took both steps: so did every rank now
    reference = [fo.Parameter(a) for a in start_values()]
    reference_opt = fo.Adam(reference, lr=0.05)
    reference_opt.step(grads=averaged(0))
    reference_opt.step(grads=averaged(1))
    assert_close(params, reference, np.float64, "after the resynchronisation")


def test_errors_on_several_ranks_are_all_named() -> None:
    params = [fo.Parameter(a) for a in start_values()]
    dopt = DistributedOptimizer(fo.SGD(params, lr=0.1))
    grads = good_grads(0)
    grads[0] = np.zeros(7)  # wrong on every rank
    with pytest.raises(DistributedError) as caught:
        dopt.step(grads=grads)
    for rank in range(SIZE):
        assert f"rank {rank}" in str(caught.value)
    assert len(set(COMM.allgather(str(caught.value)))) == 1  # the same message everywhere


@pytest.mark.parametrize("wrapper", ["distributed", "zero"])
def test_a_closure_that_raises_on_one_rank_raises_on_every_rank(wrapper: str) -> None:
    params = [fo.Parameter(a) for a in start_values()]
    opt: Any = (
        DistributedOptimizer(fo.SGD(params, lr=0.1))
        if wrapper == "distributed"
        else ZeroRedundancyOptimizer(params, optimizer_class=fo.SGD, lr=0.1)
    )

    def closure() -> float:
        if RANK == BAD:
            raise FloatingPointError("the loss is NaN on this rank")
        for p, g in zip(params, good_grads(0)):
            p.grad = g
        return 1.0

    with pytest.raises(DistributedError, match=f"rank {BAD}.*FloatingPointError"):
        opt.step(closure)
    for p, a in zip(params, start_values()):
        np.testing.assert_array_equal(p, a)
    opt.step(grads=good_grads(1))
    assert_replicas(params)


def test_ranks_in_different_steps_raise_instead_of_going_on() -> None:
    """Rank 0 passes a closure to ``step()``, the others do not: rank 0's closure check meets
    the others' gradient check. Every rank sees that the ranks are in different collective
    steps and raises, and the next (agreed) step works."""
    p = fo.Parameter(np.linspace(-1.0, 1.0, 5))
    opt = DistributedOptimizer(fo.SGD([p], lr=0.1))
    p.grad = np.full(5, float(RANK))
    with pytest.raises(DistributedError, match="different collective steps"):
        opt.step((lambda: 0.0) if RANK == 0 else None)
    np.testing.assert_array_equal(p, np.linspace(-1.0, 1.0, 5))
    opt.step()
    np.testing.assert_allclose(p, np.linspace(-1.0, 1.0, 5) - 0.1 * (SIZE - 1) / 2)
