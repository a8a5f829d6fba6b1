"""broadcast_parameters, broadcast_optimizer_state and check_replicas: every rank ends on the
root's values, and ranks that do not match raise DistributedError on every rank."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _dp import COMM, RANK, SIZE, RecordingComm, assert_replicas

import ferroptim as fo
from ferroptim.distributed import (
    DistributedError,
    DistributedOptimizer,
    ZeroRedundancyOptimizer,
    broadcast_optimizer_state,
    broadcast_parameters,
    check_replicas,
)

SHAPES = [(3, 4), (5,), (2, 2, 2), ()]
DTYPES = [np.float64, np.float32, np.float64, np.float32]


def arrays_of(rank: int) -> list[np.ndarray]:
    """Arrays whose values depend on ``rank``: any rank can compute any other rank's."""
    rng = np.random.default_rng(rank)
    return [np.asarray(rng.standard_normal(s)).astype(d) for s, d in zip(SHAPES, DTYPES)]


def _as(form: str, arrays: list[np.ndarray]) -> Any:
    if form == "list":
        return arrays
    if form == "dict":
        return {f"p{i}": a for i, a in enumerate(arrays)}
    return [(f"p{i}", a) for i, a in enumerate(arrays)]


@pytest.mark.parametrize("form", ["list", "dict", "pairs"])
@pytest.mark.parametrize("root", [0, -1], ids=["root0", "last"])
def test_broadcast_parameters_copies_root_values_in_place(form: str, root: int) -> None:
    root = root % SIZE
    arrays = arrays_of(RANK)
    before = [a for a in arrays]  # the very objects: the broadcast writes into them
    broadcast_parameters(_as(form, arrays), root=root)
    for i, (a, expected) in enumerate(zip(arrays, arrays_of(root))):
        assert a is before[i]
        np.testing.assert_array_equal(a, expected, err_msg=f"parameter {i}")
    assert_replicas(arrays)
    check_replicas(_as(form, arrays))


def test_broadcast_parameters_of_a_flat_buffer_is_one_bcast_in_place() -> None:
    flat = fo.flatten_parameters(arrays_of(RANK), dtype=np.float32)
    comm = RecordingComm()
    calls = []
    original = comm.Bcast

    def bcast(buf: Any, root: int = 0) -> None:
        calls.append(int(np.asarray(buf).__array_interface__["data"][0]))
        original(buf, root=root)

    comm.Bcast = bcast  # type: ignore[method-assign]
    broadcast_parameters(flat.params, comm=comm, root=0)
    assert calls == [flat.data.__array_interface__["data"][0]]
    expected = fo.flatten_parameters(arrays_of(0), dtype=np.float32)
    np.testing.assert_array_equal(flat.data, expected.data)


def test_broadcast_parameters_of_other_dtypes() -> None:
    ints = np.arange(6, dtype=np.int64) * (RANK + 1)
    flags = np.array([RANK == 0, RANK != 0])
    broadcast_parameters([ints, flags])
    np.testing.assert_array_equal(ints, np.arange(6))
    np.testing.assert_array_equal(flags, [True, False])


@pytest.mark.parametrize("mismatch", ["shape", "dtype", "count", "name"])
def test_broadcast_parameters_mismatch_raises_on_every_rank(mismatch: str) -> None:
    arrays = arrays_of(RANK)
    odd = RANK == SIZE - 1 and SIZE > 1
    if odd and mismatch == "shape":
        arrays[1] = np.zeros(6)
    elif odd and mismatch == "dtype":
        arrays[1] = arrays[1].astype(np.float32 if arrays[1].dtype == np.float64 else np.float64)
    elif odd and mismatch == "count":
        arrays.append(np.zeros(2))
    params: Any = {f"{'q' if odd and mismatch == 'name' else 'p'}{i}": a for i, a in enumerate(arrays)}
    snapshot = [a.copy() for a in arrays]
    if SIZE == 1:
        pytest.skip("needs two ranks")
    with pytest.raises(DistributedError, match=str(SIZE - 1)):
        broadcast_parameters(params)
    for a, s in zip(arrays, snapshot):
        np.testing.assert_array_equal(a, s)  # nothing was sent
    # the ranks are still in step: a good broadcast follows
    good = arrays_of(RANK)
    broadcast_parameters(good)
    assert_replicas(good)


def test_invalid_root_raises() -> None:
    with pytest.raises((ValueError, DistributedError), match="root"):
        broadcast_parameters([np.zeros(2)], root=SIZE)


def _stepped_adam(rank: int, steps: int) -> tuple[list[fo.Parameter], fo.Adam]:
    params = [fo.Parameter(a) for a in arrays_of(0)[:3]]
    opt = fo.Adam(params, lr=0.01 * (rank + 1), betas=(0.9, 0.99))
    rng = np.random.default_rng(50 + rank)
    for _ in range(steps):
        opt.step(grads=[rng.standard_normal(p.shape).astype(p.dtype) for p in params])
    return params, opt


def _state_arrays(opt: Any) -> list[tuple[int, str, bytes]]:
    sd = opt.state_dict()
    return [
        (i, k, np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v).encode())
        for i, entry in sorted(sd["state"].items())
        for k, v in sorted(entry.items())
    ]


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "distributed"])
@pytest.mark.parametrize("root", [0, -1], ids=["root0", "last"])
def test_broadcast_optimizer_state_gives_every_rank_root_state(wrap: bool, root: int) -> None:
    root = root % SIZE
    params, opt = _stepped_adam(RANK, steps=2 + RANK)  # different step counts, state and lr
    target: Any = DistributedOptimizer(opt) if wrap else opt
    broadcast_optimizer_state(target, root=root)
    _, root_opt = _stepped_adam(root, steps=2 + root)  # root's state, computed here
    assert _state_arrays(opt) == _state_arrays(root_opt)
    assert opt.param_groups[0]["lr"] == root_opt.param_groups[0]["lr"]
    gathered = COMM.allgather(_state_arrays(opt))
    assert all(g == gathered[0] for g in gathered)
    # with the parameters broadcast too, the replicas then stay identical
    broadcast_parameters(params, root=root)
    step_rng = np.random.default_rng(99)
    for _ in range(3):
        grads = [step_rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        if wrap:
            target.step(grads=grads)
        else:
            opt.step(grads=grads)
        assert_replicas(params)


def test_broadcast_optimizer_state_mismatch_raises_on_every_rank() -> None:
    if SIZE == 1:
        pytest.skip("needs two ranks")
    shape = (7,) if RANK == SIZE - 1 else (6,)
    opt = fo.Adam([fo.Parameter(np.zeros(shape))], lr=0.1)
    opt.step(grads=[np.ones(shape)])
    with pytest.raises(DistributedError, match=f"rank {SIZE - 1}"):
        broadcast_optimizer_state(opt)


def test_broadcast_optimizer_state_refuses_zero() -> None:
    zero = ZeroRedundancyOptimizer([fo.Parameter(np.zeros(5))], optimizer_class=fo.Adam)
    with pytest.raises(DistributedError, match="sharded"):
        broadcast_optimizer_state(zero)


def test_check_replicas_names_the_parameter_and_the_rank() -> None:
    arrays = arrays_of(0)
    check_replicas(arrays)
    if SIZE == 1:
        pytest.skip("needs two ranks")
    if RANK == SIZE - 1:
        arrays[2].reshape(-1)[3] = np.nextafter(arrays[2].reshape(-1)[3], np.inf)  # one ulp
    with pytest.raises(DistributedError, match=rf"p2.*{SIZE - 1}|{SIZE - 1}.*p2"):
        check_replicas({f"p{i}": a for i, a in enumerate(arrays)})
