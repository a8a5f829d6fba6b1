"""DistributedOptimizer: N ranks, each on B/N of every minibatch, take the steps of one
process on the whole batch B, and hold bit-identical parameters after every step.

The reference is computed on every rank: a plain (unsharded) ferroptim optimizer stepping on
the full-batch gradient. Run with ``mpirun -n N python -m pytest tests/mpi``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _dp import (
    COMM,
    OPTIMIZERS,
    RANK,
    SIZE,
    STEPS,
    TOL,
    RecordingComm,
    address,
    assert_close,
    assert_replicas,
    dataset,
    gradients,
    init_params,
    local_slice,
)

import ferroptim as fo
from ferroptim.distributed import DistributedOptimizer, check_replicas

DTYPES = [np.float64, np.float32]


def _set_grads(params: list[fo.Parameter], grads: list[np.ndarray]) -> None:
    for p, g in zip(params, grads):
        p.grad = g


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "cls", "kwargs"), OPTIMIZERS, ids=[case[0] for case in OPTIMIZERS])
def test_ranks_on_batch_slices_match_one_process_on_the_full_batch(
    name: str, cls: type[fo.Optimizer], kwargs: dict[str, Any], dtype: Any
) -> None:
    x, y = dataset(dtype)
    reference = [fo.Parameter(a) for a in init_params(dtype)]
    reference_opt = cls(reference, **kwargs)
    replica = [fo.Parameter(a) for a in init_params(dtype)]
    dopt = DistributedOptimizer(cls(replica, **kwargs), op="average")
    start = [p.copy() for p in replica]
    for t in range(STEPS):
        _set_grads(reference, gradients(reference, x[t], y[t]))
        reference_opt.step()
        _set_grads(replica, gradients(replica, local_slice(x[t]), local_slice(y[t])))
        dopt.step()
        assert_replicas(replica)
        check_replicas(replica)
        assert_close(replica, reference, dtype, f"{name}, step {t + 1}")
    # the comparison means something only if the parameters moved well beyond the tolerance
    moved = max(float(np.max(np.abs(p - s))) for p, s in zip(replica, start))
    assert moved > 100 * TOL[np.dtype(dtype).type]["atol"], f"{name}: parameters moved only {moved}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_reduced_gradient_is_the_average_written_into_each_grad(dtype: Any) -> None:
    x, y = dataset(dtype)
    params = [fo.Parameter(a) for a in init_params(dtype)]
    dopt = DistributedOptimizer(fo.SGD(params, lr=0.1))
    mine = gradients(params, local_slice(x[0]), local_slice(y[0]))
    every = COMM.allgather(mine)
    _set_grads(params, mine)
    dopt.step()
    full_batch = gradients(init_params(dtype), x[0], y[0])
    tol = TOL[np.dtype(dtype).type]
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.grad, sum(g[i] for g in every) / SIZE, **tol, err_msg=f"grad {i}")
        np.testing.assert_allclose(p.grad, full_batch[i], **tol, err_msg=f"grad {i} vs the full batch")
    assert_replicas([p.grad for p in params], "reduced gradient")
    assert dopt.last_step_bytes == sum(p.nbytes for p in params)


def test_sum_gives_the_summed_gradient() -> None:
    x, y = dataset(np.float64)
    reference = [fo.Parameter(a) for a in init_params(np.float64)]
    reference_opt = fo.SGD(reference, lr=0.01, momentum=0.5)
    replica = [fo.Parameter(a) for a in init_params(np.float64)]
    dopt = DistributedOptimizer(fo.SGD(replica, lr=0.01, momentum=0.5), op="sum")
    for t in range(5):
        # the sum over ranks of slice means is SIZE times the full-batch mean
        _set_grads(reference, [SIZE * g for g in gradients(reference, x[t], y[t])])
        reference_opt.step()
        _set_grads(replica, gradients(replica, local_slice(x[t]), local_slice(y[t])))
        dopt.step()
        assert_replicas(replica)
        assert_close(replica, reference, np.float64, f"op='sum', step {t + 1}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_flat_buffer_is_reduced_in_place_and_matches_the_per_tensor_path(dtype: Any) -> None:
    x, y = dataset(dtype)
    flat = fo.flatten_parameters(init_params(dtype))
    flat_comm = RecordingComm()
    flat_opt = DistributedOptimizer(fo.Adam([flat.param], lr=1e-2), comm=flat_comm)
    tensors = [fo.Parameter(a) for a in init_params(dtype)]
    tensor_comm = RecordingComm()
    tensor_opt = DistributedOptimizer(fo.Adam(tensors, lr=1e-2), comm=tensor_comm)
    for t in range(STEPS):
        flat.zero_grad()
        grads = gradients(flat.params, local_slice(x[t]), local_slice(y[t]))
        _set_grads(flat.params, grads)  # copies into the slots of flat.grad
        flat_comm.calls.clear()
        flat_opt.step()
        # one Allreduce, on the gradient buffer itself: nothing packed, nothing copied back
        assert flat_comm.named("Allreduce") == [("Allreduce", address(flat.grad), flat.grad.nbytes)]
        assert flat_opt.last_step_bytes == flat.grad.nbytes
        _set_grads(tensors, gradients(tensors, local_slice(x[t]), local_slice(y[t])))
        tensor_comm.calls.clear()
        tensor_opt.step()
        assert len(tensor_comm.named("Allreduce")) == 1  # one per dtype
        # the same bytes reduced by the same call, then the same elementwise kernel: the same bits
        for i, (a, b) in enumerate(zip(flat.params, tensors)):
            np.testing.assert_array_equal(a, b, err_msg=f"parameter {i}, step {t + 1}")
            np.testing.assert_array_equal(a.grad, b.grad, err_msg=f"gradient {i}, step {t + 1}")
        assert_replicas([flat.data])


def test_one_allreduce_per_dtype() -> None:
    rng = np.random.default_rng(5)
    shapes, dtypes = [(40,), (3, 7), (25,), (2, 2)], [np.float64, np.float32, np.float32, np.float64]
    start = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    params = [fo.Parameter(a.copy()) for a in start]
    comm = RecordingComm()
    dopt = DistributedOptimizer(fo.SGD(params, lr=0.5), comm=comm)
    grad_rng = np.random.default_rng(100 + RANK)
    grads = [grad_rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    every = COMM.allgather(grads)
    dopt.step(grads=grads)
    assert len(comm.named("Allreduce")) == 2
    assert dopt.last_step_bytes == sum(a.nbytes for a in start)
    for i, (p, a) in enumerate(zip(params, start)):
        average = sum(g[i].astype(np.float64) for g in every) / SIZE
        np.testing.assert_allclose(p, a - 0.5 * average, **TOL[a.dtype.type], err_msg=f"parameter {i}")
    assert_replicas(params)


def test_bucket_cap_changes_nothing_but_the_calls() -> None:
    rng = np.random.default_rng(5)
    shapes, dtypes = [(40,), (3, 7), (25,), (2, 2)], [np.float64, np.float32, np.float32, np.float64]
    start = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    one_call = [fo.Parameter(a.copy()) for a in start]
    capped = [fo.Parameter(a.copy()) for a in start]
    comm = RecordingComm()
    one_opt = DistributedOptimizer(fo.Adam(one_call, lr=1e-2), bucket_cap_mb=None)
    capped_opt = DistributedOptimizer(fo.Adam(capped, lr=1e-2), comm=comm, bucket_cap_mb=64 / 2**20)
    grad_rng = np.random.default_rng(100 + RANK)
    for _ in range(5):
        grads = [grad_rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
        comm.calls.clear()
        one_opt.step(grads=grads)
        capped_opt.step(grads=grads)
        # float64: 44 elements = 352 bytes in 6 calls; float32: 46 elements = 184 bytes in 3
        assert len(comm.named("Allreduce")) == 6 + 3
        assert all(nbytes <= 64 for _, _, nbytes in comm.named("Allreduce"))
        assert capped_opt.last_step_bytes == one_opt.last_step_bytes == sum(a.nbytes for a in start)
        for i, (a, b) in enumerate(zip(one_call, capped)):
            np.testing.assert_allclose(a, b, **TOL[a.dtype.type], err_msg=f"parameter {i}")
        assert_replicas(capped)


def test_a_gradient_missing_on_some_ranks_counts_as_zeros_there() -> None:
    rng = np.random.default_rng(3)
    start = [rng.standard_normal(6), rng.standard_normal(4), rng.standard_normal(3)]
    params = [fo.Parameter(a.copy()) for a in start]
    dopt = DistributedOptimizer(fo.SGD(params, lr=0.5))
    grad_rng = np.random.default_rng(10 + RANK)
    mine = [grad_rng.standard_normal(6), grad_rng.standard_normal(4), None]
    if RANK == 0:
        mine[1] = None  # rank 0 has no gradient for the second parameter
    every = COMM.allgather(mine)
    dopt.step(grads=mine)
    first = sum(g[0] for g in every) / SIZE
    second = sum(g[1] for g in every if g[1] is not None) / SIZE
    np.testing.assert_allclose(params[0], start[0] - 0.5 * first, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(params[1], start[1] - 0.5 * second, rtol=1e-12, atol=1e-14)
    # no gradient on any rank: skipped, as the unsharded optimizer skips it
    np.testing.assert_array_equal(params[2], start[2])
    assert_replicas(params)


def test_synchronize_then_clip_then_step() -> None:
    """The reduced gradients can be clipped before the step (Horovod's ``synchronize()``
    pattern): the step then uses the clipped average, reduced once. (A second reduction is
    invisible with "average" on two ranks, whose replicas' gradients are already equal, so
    "sum" is checked too.)"""
    x, y = dataset(np.float64)
    for op in ("average", "sum"):
        reference = [fo.Parameter(a) for a in init_params(np.float64)]
        reference_opt = fo.SGD(reference, lr=0.1)
        replica = [fo.Parameter(a) for a in init_params(np.float64)]
        dopt = DistributedOptimizer(fo.SGD(replica, lr=0.1), op=op)
        scale = 1 if op == "average" else SIZE
        for t in range(5):
            _set_grads(reference, [scale * g for g in gradients(reference, x[t], y[t])])
            fo.clip_grad_norm_(reference, max_norm=0.05)
            reference_opt.step()
            _set_grads(replica, gradients(replica, local_slice(x[t]), local_slice(y[t])))
            dopt.synchronize()  # the reduced gradients, written into each p.grad
            fo.clip_grad_norm_(replica, max_norm=0.05)
            dopt.step()  # reduced already: steps on the clipped average without reducing again
            assert_replicas(replica)
            assert_close(replica, reference, np.float64, f"op={op!r}, step {t + 1}")


def test_lr_scheduler_drives_the_wrapped_optimizer_on_every_rank() -> None:
    x, y = dataset(np.float64)
    reference = [fo.Parameter(a) for a in init_params(np.float64)]
    reference_opt = fo.Adam(reference, lr=0.05)
    reference_sched = fo.lr_scheduler.StepLR(reference_opt, step_size=2, gamma=0.5)
    replica = [fo.Parameter(a) for a in init_params(np.float64)]
    dopt = DistributedOptimizer(fo.Adam(replica, lr=0.05))
    sched = fo.lr_scheduler.StepLR(dopt, step_size=2, gamma=0.5)
    for t in range(8):
        _set_grads(reference, gradients(reference, x[t], y[t]))
        reference_opt.step()
        reference_sched.step()
        _set_grads(replica, gradients(replica, local_slice(x[t]), local_slice(y[t])))
        dopt.step()
        sched.step()
        assert dopt.optimizer.param_groups[0]["lr"] == reference_opt.param_groups[0]["lr"]
        assert len(set(COMM.allgather(dopt.param_groups[0]["lr"]))) == 1
        assert_close(replica, reference, np.float64, f"step {t + 1}")
    assert dopt.param_groups[0]["lr"] == 0.05 * 0.5**4
