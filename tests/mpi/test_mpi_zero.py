"""ZeroRedundancyOptimizer (ZeRO stage 1): the trajectory of DistributedOptimizer with each
rank keeping the optimizer state of its shard only; balanced shards; state memory about 1/N;
consolidated checkpoints that resume unsharded and sharded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _dp import (
    COMM,
    ELEMENTWISE,
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
    own_range,
    shard_counts,
    state_arrays_nbytes,
)

import ferroptim as fo
from ferroptim.distributed import (
    DistributedError,
    DistributedOptimizer,
    ZeroRedundancyOptimizer,
    check_replicas,
)

DTYPES = [np.float64, np.float32]


def assert_same_trajectory(zero: list[np.ndarray], dp: list[np.ndarray], dtype: Any, what: str) -> None:
    """ZeRO against DistributedOptimizer. With two ranks every sum of two gradients is the one
    IEEE addition ``a + b``, whichever collective computes it, so the two agree bit for bit;
    with more ranks the reduce-scatter may add in another order than the all-reduce."""
    if SIZE <= 2:
        for i, (a, b) in enumerate(zip(zero, dp)):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}, parameter {i}")
    else:
        assert_close(zero, dp, dtype, what)


def rank_grads(shapes: list[tuple[int, ...]], dtypes: list[Any], step: int) -> list[np.ndarray]:
    """This rank's gradients at ``step``: different on every rank, the same on every run."""
    rng = np.random.default_rng([RANK, step])
    return [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory that every rank sees (made by rank 0; all ranks run on this host)."""
    path = COMM.bcast(tempfile.mkdtemp(prefix="ferroptim-mpi-") if RANK == 0 else None)
    yield path
    COMM.Barrier()
    if RANK == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "cls", "kwargs"), ELEMENTWISE, ids=[case[0] for case in ELEMENTWISE])
def test_zero_follows_the_distributed_optimizer(
    name: str, cls: type[fo.Optimizer], kwargs: dict[str, Any], dtype: Any
) -> None:
    x, y = dataset(dtype)
    dp_params = [fo.Parameter(a) for a in init_params(dtype)]
    dp = DistributedOptimizer(cls(dp_params, **kwargs))
    zero_params = [fo.Parameter(a) for a in init_params(dtype)]
    zero = ZeroRedundancyOptimizer(zero_params, optimizer_class=cls, **kwargs)
    for t in range(STEPS):
        for params, opt in ((dp_params, dp), (zero_params, zero)):
            for p, g in zip(params, gradients(params, local_slice(x[t]), local_slice(y[t]))):
                p.grad = g
            opt.step()
        assert_replicas(zero_params)
        check_replicas(zero_params)
        assert_same_trajectory(zero_params, dp_params, dtype, f"{name}, step {t + 1}")
    # each rank holds the state of its shard: its bytes are the shard's share of the unsharded
    # state, exactly (every state array has one element per parameter element)
    unsharded = state_arrays_nbytes(dp.optimizer)
    total = sum(p.size for p in zero_params)
    assert zero.state_nbytes() == state_arrays_nbytes(zero.optim)
    assert zero.state_nbytes() * total == unsharded * zero.shard_sizes()[RANK]
    assert sum(COMM.allgather(zero.state_nbytes())) == unsharded


@pytest.mark.parametrize(
    "shapes",
    [[(7,)], [(101,)], [(3, 4), (5,), (1,)], [(2,)], [(1,)], [(1,), (1,)]],
    ids=["7", "101", "12+5+1", "2", "1", "1+1"],
)
def test_shards_are_balanced_contiguous_and_train_like_the_distributed_optimizer(
    shapes: list[tuple[int, ...]],
) -> None:
    total = sum(int(np.prod(s)) for s in shapes)
    rng = np.random.default_rng(11)
    start = [rng.standard_normal(s) for s in shapes]
    zero_params = [fo.Parameter(a.copy()) for a in start]
    zero = ZeroRedundancyOptimizer(zero_params, optimizer_class=fo.Adam, lr=0.05)
    sizes = zero.shard_sizes()
    (counts,) = shard_counts([total])
    assert sizes == counts
    assert sum(sizes) == total and max(sizes) - min(sizes) <= 1
    lo, hi = own_range(counts)
    dp_params = [fo.Parameter(a.copy()) for a in start]
    dp = DistributedOptimizer(fo.Adam(dp_params, lr=0.05))
    for t in range(10):
        grads = rank_grads(shapes, [np.float64] * len(shapes), t)
        zero.step(grads=grads)
        dp.step(grads=grads)
        assert_replicas(zero_params)
        assert_same_trajectory(zero_params, dp_params, np.float64, f"total {total}, step {t + 1}")
    assert zero.state_nbytes() == 2 * 8 * (hi - lo)  # exp_avg and exp_avg_sq of the shard
    shard_params = [p for g in zero.optim.param_groups for p in g["params"]]
    assert sum(p.size for p in shard_params) == hi - lo
    # the local optimizer steps exactly this rank's contiguous slice of the flat parameters
    np.testing.assert_array_equal(
        np.concatenate([p.reshape(-1) for p in shard_params]),
        np.concatenate([p.reshape(-1) for p in zero_params])[lo:hi],
    )


def test_collectives_of_a_step_flat_buffer_in_place() -> None:
    """With flat buffers, the reduce-scatter reads the gradient buffer and the all-gather
    writes the parameter buffer, both in place; ``last_step_bytes`` counts both."""
    flat = fo.flatten_parameters(init_params(np.float32))
    comm = RecordingComm()
    zero = ZeroRedundancyOptimizer([flat.param], optimizer_class=fo.Adam, comm=comm, lr=1e-2)
    x, y = dataset(np.float32)
    dp_params = [fo.Parameter(a) for a in init_params(np.float32)]
    dp = DistributedOptimizer(fo.Adam(dp_params, lr=1e-2))
    for t in range(5):
        for p, g in zip(flat.params, gradients(flat.params, local_slice(x[t]), local_slice(y[t]))):
            p.grad = g
        comm.calls.clear()
        zero.step()
        assert comm.named("Reduce_scatter") == [("Reduce_scatter", address(flat.grad), flat.grad.nbytes)]
        assert comm.named("Allgatherv") == [("Allgatherv", address(flat.data), flat.data.nbytes)]
        assert zero.last_step_bytes == flat.grad.nbytes + flat.data.nbytes
        for p, g in zip(dp_params, gradients(dp_params, local_slice(x[t]), local_slice(y[t]))):
            p.grad = g
        dp.step()
        assert_same_trajectory(flat.params, dp_params, np.float32, f"step {t + 1}")
    assert_replicas([flat.data])


def test_param_groups_of_mixed_dtypes() -> None:
    shapes = [(6, 3), (5,), (4,), (3, 3), (2,)]
    dtypes = [np.float64, np.float32, np.float64, np.float32, np.float64]
    rng = np.random.default_rng(8)
    start = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]

    def groups(params: list[fo.Parameter]) -> list[dict[str, Any]]:
        return [
            {"params": params[:3], "lr": 0.02},
            {"params": params[3:], "lr": 0.005, "weight_decay": 0.1, "betas": (0.8, 0.9)},
        ]

    zero_params = [fo.Parameter(a.copy()) for a in start]
    zero = ZeroRedundancyOptimizer(groups(zero_params), optimizer_class=fo.AdamW)
    dp_params = [fo.Parameter(a.copy()) for a in start]
    dp = DistributedOptimizer(fo.AdamW(groups(dp_params)))
    # four buckets (group x dtype): each split evenly, and the ranks' totals balanced too
    buckets = [18 + 4, 5, 9, 2]
    sizes = zero.shard_sizes()
    assert sizes == [sum(counts[r] for counts in shard_counts(buckets)) for r in range(SIZE)]
    assert sum(sizes) == sum(buckets) and max(sizes) - min(sizes) <= 1
    # the local optimizer's parameters of each bucket (group x dtype) hold its shard
    bucket_dtypes = [(0, np.float64), (0, np.float32), (1, np.float32), (1, np.float64)]
    groups = zero.optim.param_groups
    shards = [sum(p.size for p in groups[gi]["params"] if p.dtype == d) for gi, d in bucket_dtypes]
    assert shards == [counts[RANK] for counts in shard_counts(buckets)]
    for t in range(10):
        grads = rank_grads(shapes, dtypes, t)
        zero.step(grads=grads)
        dp.step(grads=grads)
        assert_replicas(zero_params)
        for i, (a, b) in enumerate(zip(zero_params, dp_params)):
            assert a.dtype == b.dtype
            assert_same_trajectory([a], [b], a.dtype, f"parameter {i}, step {t + 1}")
    # the consolidated state is the unsharded one, group by group and dtype by dtype
    zero.consolidate_state_dict(to=0)
    if RANK == 0:
        _assert_state_dicts_close(zero.state_dict(), dp.state_dict())


def _assert_state_dicts_close(actual: dict[str, Any], expected: dict[str, Any], exact: bool = False) -> None:
    assert [g["params"] for g in actual["param_groups"]] == [g["params"] for g in expected["param_groups"]]
    for ga, ge in zip(actual["param_groups"], expected["param_groups"]):
        assert {k: v for k, v in ga.items() if k != "params"} == {
            k: v for k, v in ge.items() if k != "params"
        }
    assert sorted(actual["state"]) == sorted(expected["state"])
    for index, entry in expected["state"].items():
        assert sorted(actual["state"][index]) == sorted(entry), f"state {index}"
        for key, value in entry.items():
            got = actual["state"][index][key]
            if isinstance(value, np.ndarray):
                assert got.dtype == value.dtype and got.shape == value.shape, f"state {index} {key}"
                if exact or SIZE <= 2:
                    np.testing.assert_array_equal(got, value, err_msg=f"state {index} {key}")
                else:
                    np.testing.assert_allclose(
                        got, value, **TOL[value.dtype.type], err_msg=f"state {index} {key}"
                    )
            else:
                assert got == value, f"state {index} {key}"


@pytest.mark.parametrize(("name", "cls", "kwargs"), ELEMENTWISE, ids=[case[0] for case in ELEMENTWISE])
def test_consolidated_checkpoint_resumes_unsharded_and_sharded(
    name: str, cls: type[fo.Optimizer], kwargs: dict[str, Any], shared_dir: str
) -> None:
    dtype = np.float64
    x, y = dataset(dtype)
    zero_params = [fo.Parameter(a) for a in init_params(dtype)]
    zero = ZeroRedundancyOptimizer(zero_params, optimizer_class=cls, **kwargs)
    dp_params = [fo.Parameter(a) for a in init_params(dtype)]
    dp = DistributedOptimizer(cls(dp_params, **kwargs))

    def step(params: list[fo.Parameter], opt: Any, t: int) -> None:
        for p, g in zip(params, gradients(params, local_slice(x[t]), local_slice(y[t]))):
            p.grad = g
        opt.step()

    half = STEPS // 2
    for t in range(half):
        step(zero_params, zero, t)
        step(dp_params, dp, t)
    with pytest.raises(RuntimeError):
        zero.state_dict()  # not consolidated yet
    zero.consolidate_state_dict(to=0)
    path = os.path.join(shared_dir, "zero.npz")
    if RANK == 0:
        sd = zero.state_dict()
        _assert_state_dicts_close(sd, dp.state_dict())
        fo.save({"params": [np.asarray(p) for p in zero_params], "optimizer": sd}, path)
    else:
        with pytest.raises(RuntimeError):
            zero.state_dict()
    COMM.Barrier()
    checkpoint = fo.load(path)
    # on every rank, the checkpoint holds this rank's shard of the state bit for bit
    own = zero.optim.state_dict()["state"]
    lo, hi = own_range(shard_counts([43])[0])
    for key in cls.state_slots:
        saved = [checkpoint["optimizer"]["state"].get(i, {}).get(key) for i in range(4)]
        if own and key in own[0]:  # the local parameters' state, laid end to end
            flat = np.concatenate([np.asarray(s).reshape(-1) for s in saved])
            mine = np.concatenate([np.ravel(own[k][key]) for k in sorted(own)])
            np.testing.assert_array_equal(mine, flat[lo:hi], err_msg=key)

    # resumed unsharded (every rank a plain optimizer on the full batch) ...
    resumed = [fo.Parameter(np.array(a)) for a in checkpoint["params"]]
    resumed_opt = cls(resumed, **kwargs)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    # ... and sharded again, from the same file
    again = [fo.Parameter(np.array(a)) for a in checkpoint["params"]]
    again_opt = ZeroRedundancyOptimizer(again, optimizer_class=cls, **kwargs)
    again_opt.load_state_dict(checkpoint["optimizer"])
    for t in range(half, STEPS):
        step(zero_params, zero, t)
        step(again, again_opt, t)
        for p, g in zip(resumed, gradients(resumed, x[t], y[t])):
            p.grad = g
        resumed_opt.step()
        # the same shards, state bits and reductions: the sharded resume is bit-exact
        for i, (a, b) in enumerate(zip(again, zero_params)):
            np.testing.assert_array_equal(
                a, b, err_msg=f"{name}: sharded resume, parameter {i}, step {t + 1}"
            )
        assert_close(resumed, zero_params, dtype, f"{name}: unsharded resume, step {t + 1}")
        assert_replicas(zero_params)


@pytest.mark.parametrize(("name", "cls", "kwargs"), ELEMENTWISE, ids=[case[0] for case in ELEMENTWISE])
def test_an_unsharded_state_dict_loads_into_zero(
    name: str, cls: type[fo.Optimizer], kwargs: dict[str, Any]
) -> None:
    dtype = np.float64
    x, y = dataset(dtype)
    dp_params = [fo.Parameter(a) for a in init_params(dtype)]
    dp = DistributedOptimizer(cls(dp_params, **kwargs))
    for t in range(STEPS // 2):
        for p, g in zip(dp_params, gradients(dp_params, local_slice(x[t]), local_slice(y[t]))):
            p.grad = g
        dp.step()
    sd = dp.state_dict()
    zero_params = [fo.Parameter(p.copy()) for p in dp_params]
    zero = ZeroRedundancyOptimizer(zero_params, optimizer_class=cls, **kwargs)
    zero.load_state_dict(sd)
    # consolidating right away gives the state dict back, bit for bit
    zero.consolidate_state_dict(to=SIZE - 1)
    if RANK == SIZE - 1:
        _assert_state_dicts_close(zero.state_dict(), sd, exact=True)
    for t in range(STEPS // 2, STEPS):
        for params, opt in ((dp_params, dp), (zero_params, zero)):
            for p, g in zip(params, gradients(params, local_slice(x[t]), local_slice(y[t]))):
                p.grad = g
            opt.step()
        assert_same_trajectory(zero_params, dp_params, dtype, f"{name}, step {t + 1}")


def test_lr_scheduler_sets_lr_on_every_rank_and_shard() -> None:
    x, y = dataset(np.float64)
    reference = [fo.Parameter(a) for a in init_params(np.float64)]
    reference_opt = fo.Adam(reference, lr=0.05)
    reference_sched = fo.lr_scheduler.StepLR(reference_opt, step_size=2, gamma=0.5)
    zero_params = [fo.Parameter(a) for a in init_params(np.float64)]
    zero = ZeroRedundancyOptimizer(zero_params, optimizer_class=fo.Adam, lr=0.05)
    sched = fo.lr_scheduler.StepLR(zero, step_size=2, gamma=0.5)
    for t in range(8):
        for p, g in zip(reference, gradients(reference, x[t], y[t])):
            p.grad = g
        reference_opt.step()
        reference_sched.step()
        for p, g in zip(zero_params, gradients(zero_params, local_slice(x[t]), local_slice(y[t]))):
            p.grad = g
        zero.step()
        assert zero.optim.param_groups[0]["lr"] == 0.05 * 0.5 ** (t // 2)  # the lr this step used
        sched.step()
        assert zero.param_groups[0]["lr"] == reference_opt.param_groups[0]["lr"]
        assert len(set(COMM.allgather(zero.param_groups[0]["lr"]))) == 1
        assert_close(zero_params, reference, np.float64, f"step {t + 1}")


def test_adagrad_norm_is_refused() -> None:
    with pytest.raises(TypeError, match="AdagradNorm"):
        ZeroRedundancyOptimizer([fo.Parameter(np.zeros(5))], optimizer_class=fo.AdagradNorm)


def test_state_memory_of_a_larger_model() -> None:
    """Adam over 100 000 float32 elements: 800 000 bytes of state unsharded, 1/N per rank."""
    params = [fo.Parameter(np.zeros((300, 300), np.float32)), fo.Parameter(np.zeros(10_000, np.float32))]
    zero = ZeroRedundancyOptimizer(params, optimizer_class=fo.Adam, lr=1e-3)
    zero.step(grads=[np.ones_like(p) for p in params])
    unsharded = 2 * 4 * 100_000
    mine = zero.state_nbytes()
    assert mine == state_arrays_nbytes(zero.optim)
    assert abs(mine - unsharded / SIZE) <= 2 * 4  # shards differ by one element at most
    assert sum(COMM.allgather(mine)) == unsharded


def test_shard_parameters_hold_the_current_values_from_the_start() -> None:
    """Before any step, the local shard parameters (``zero.optim``), laid end to end, hold
    this rank's slice of the parameters laid out one after the other (separate arrays:
    views of the parameters that the shard overlaps)."""
    rng = np.random.default_rng(7)
    params = [fo.Parameter(rng.standard_normal(s)) for s in [(3, 2), (5,), (1,)]]
    zero = ZeroRedundancyOptimizer(params, fo.SGD, lr=0.1)
    flat = np.concatenate([p.reshape(-1) for p in params])
    lo = sum(zero.shard_sizes()[:RANK])
    shard = np.concatenate([p.reshape(-1) for p in zero.optim.param_groups[0]["params"]])
    np.testing.assert_array_equal(shard, flat[lo : lo + shard.size])


@pytest.mark.parametrize(
    "settings",
    [
        {"max_grad_norm": 0.05},
        {"max_grad_norm": 0.05, "grad_scale": 4.0},
        {"grad_scale": 1024.0, "skip_nonfinite": True},
    ],
    ids=["clip", "clip+scale", "scale+skip"],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_gradient_settings_act_across_shards(settings: dict[str, Any], dtype: Any) -> None:
    """``max_grad_norm`` clips by the norm of the whole (averaged) gradient, not of a shard;
    ``grad_scale`` unscales it; ``skip_nonfinite`` skips the step on every rank when one
    rank's gradient holds a NaN: as the unsharded optimizer inside DistributedOptimizer."""
    x, y = dataset(dtype)
    dp_params = [fo.Parameter(a) for a in init_params(dtype)]
    dp = DistributedOptimizer(fo.Adam(dp_params, lr=0.01, **settings))
    zero_params = [fo.Parameter(a) for a in init_params(dtype)]
    zero = ZeroRedundancyOptimizer(zero_params, fo.Adam, lr=0.01, **settings)
    scale = settings.get("grad_scale", 1.0)
    for t in range(8):
        poisoned = settings.get("skip_nonfinite") and t == 3
        for params, opt in ((dp_params, dp), (zero_params, zero)):
            grads = gradients(params, local_slice(x[t]), local_slice(y[t]))
            for p, g in zip(params, grads):
                p.grad = g * dtype(scale)
            if poisoned and RANK == SIZE - 1:
                params[0].grad.flat[0] = np.nan
            opt.step()
        assert zero.last_step_skipped == dp.last_step_skipped == bool(poisoned)
        assert_replicas(zero_params)
        assert_close(zero_params, dp_params, dtype, f"{settings}, step {t + 1}")
    assert zero.skipped_steps == dp.skipped_steps == (1 if settings.get("skip_nonfinite") else 0)
    # the clipping was active: the run without it goes elsewhere
    if "max_grad_norm" in settings:
        free = [fo.Parameter(a) for a in init_params(dtype)]
        unclipped = DistributedOptimizer(fo.Adam(free, lr=0.01, grad_scale=settings.get("grad_scale")))
        for t in range(8):
            for p, g in zip(free, gradients(free, local_slice(x[t]), local_slice(y[t]))):
                p.grad = g * dtype(scale)
            unclipped.step()
        assert any(not np.allclose(a, b, rtol=1e-3) for a, b in zip(free, zero_params))


def test_bfloat16_shards_draw_different_rounding_streams() -> None:
    """Every rank's shard sits at the same position of its local optimizer; with one seed
    their stochastic rounding would repeat the same random bits on every rank. Here every
    shard sees the same values, so the rounded state tells the streams apart."""
    m = 4096
    param = fo.Parameter(np.full(SIZE * m, 0.5, dtype=np.float32))
    zero = ZeroRedundancyOptimizer([param], fo.Adam, lr=1e-3, state_dtype="bfloat16", seed=3)
    for t in range(3):
        param.grad = np.full(SIZE * m, 0.1 + 0.01 * t, dtype=np.float32)  # not a bfloat16 value
        zero.step()
    (state,) = zero.optim.state.values()
    bits = COMM.allgather(state["exp_avg"].tobytes())
    assert len(set(bits)) == SIZE, "the ranks' shards rounded with the same random stream"


def test_step_hooks_run_once_with_the_zero_optimizer() -> None:
    """Own and global step hooks see the ZeroRedundancyOptimizer, once per step (not its
    local shard optimizer); a pre hook's returned arguments are the step's."""
    from ferroptim.optimizer import register_optimizer_step_post_hook

    params = [fo.Parameter(np.linspace(-1.0, 1.0, 7))]
    zero = ZeroRedundancyOptimizer(params, fo.SGD, lr=0.5)
    dp_params = [fo.Parameter(np.linspace(-1.0, 1.0, 7))]
    dp = DistributedOptimizer(fo.SGD(dp_params, lr=0.5))
    seen: list[tuple[str, Any]] = []
    grads = rank_grads([p.shape for p in params], [np.float64], 0)

    def pre(optimizer: Any, args: Any, kwargs: Any) -> Any:
        seen.append(("pre", optimizer))
        return args, {"grads": grads}  # the step takes these instead of .grad (None here)

    handles = [
        zero.register_step_pre_hook(pre),
        zero.register_step_post_hook(lambda o, a, k: seen.append(("post", o))),
        register_optimizer_step_post_hook(lambda o, a, k: seen.append(("global post", o))),
    ]
    try:
        zero.step()
        dp.step(grads=grads)
    finally:
        for handle in handles:
            handle.remove()
    assert seen[:3] == [("pre", zero), ("post", zero), ("global post", zero)]
    assert [name for name, _ in seen] == ["pre", "post", "global post", "global post"]  # + dp's own
    assert_replicas(params)
    assert_same_trajectory(params, dp_params, np.float64, "hooked step")


def test_a_pre_hook_that_raises_on_one_rank_raises_on_every_rank() -> None:
    params = [fo.Parameter(np.linspace(-1.0, 1.0, 7))]
    zero = ZeroRedundancyOptimizer(params, fo.SGD, lr=0.5)

    def pre(optimizer: Any, args: Any, kwargs: Any) -> None:
        if RANK == SIZE - 1:
            raise KeyError("the hook's lookup failed")

    handle = zero.register_step_pre_hook(pre)
    params[0].grad = np.ones(7)
    with pytest.raises(DistributedError, match=f"rank {SIZE - 1}: KeyError"):
        zero.step(lambda: 0.0)  # with a closure: the hook's error is checked with the closure's
    with pytest.raises(DistributedError, match=f"rank {SIZE - 1}: KeyError"):
        zero.step()
    np.testing.assert_array_equal(params[0], np.linspace(-1.0, 1.0, 7))
    handle.remove()
    zero.step()
    assert_replicas(params)
