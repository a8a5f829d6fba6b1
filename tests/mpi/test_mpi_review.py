"""Review of ferroptim.distributed: edge cases of DistributedOptimizer, ZeroRedundancyOptimizer and
the broadcasts. The ``test_regression_*`` tests failed on the code of their review; each
docstring tells the defect as it was, before its fix. The others cover what tests/mpi had not
(gradient settings, odd layouts, add_param_group after steps, bfloat16 / NAdam / amsgrad state
round trips).

Every test makes the same collective calls on every rank (tests/mpi/conftest.py), and a failing
one fails on every rank without leaving a rank in a collective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _dp import COMM, RANK, SIZE, TOL, assert_close, assert_replicas

import ferroptim as fo
from ferroptim.distributed import (
    DistributedError,
    DistributedOptimizer,
    ZeroRedundancyOptimizer,
    broadcast_optimizer_state,
    broadcast_parameters,
)


def rank_grads(params: list[np.ndarray], step: int) -> list[np.ndarray]:
    """This rank's gradients at ``step``: different on every rank, the same on every run."""
    rng = np.random.default_rng([RANK, step, 99])
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def mean_grads(params: list[np.ndarray], step: int) -> list[np.ndarray]:
    """The average over ranks of :func:`rank_grads`, computed locally (the reference)."""
    per_rank = []
    for r in range(SIZE):
        rng = np.random.default_rng([r, step, 99])
        per_rank.append([rng.standard_normal(p.shape) for p in params])
    return [np.mean([g[i] for g in per_rank], axis=0).astype(p.dtype) for i, p in enumerate(params)]


def agreed(outcome: str) -> list[str]:
    """Every rank's outcome, so that every rank asserts on the same list."""
    return COMM.allgather(outcome)


def bits_equal(a: Any, b: Any) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


# --- regressions (failed on the reviewed code) ---------------------------------------------------


def test_regression_synchronize_then_step_with_a_closure_keeps_replicas_identical() -> None:
    """``synchronize()`` then ``step(closure)``: the closure recomputes this rank's gradients,
    and the step must reduce them (or refuse). The code ran the closure, then
    skips the exchange because ``_synchronized`` is set, so each rank steps on its own
    gradient and the replicas diverge silently."""
    p = fo.Parameter(np.linspace(-1.0, 1.0, 5))
    opt = DistributedOptimizer(fo.SGD([p], lr=0.1))
    p.grad = rank_grads([p], 0)[0]
    opt.synchronize()

    def closure() -> float:
        p.grad = rank_grads([p], 1)[0]
        return 0.0

    outcome = "stepped"
    try:
        opt.step(closure)
    except DistributedError:
        outcome = "refused"
    outcomes = agreed(outcome)
    assert len(set(outcomes)) == 1, outcomes
    if outcome == "stepped":
        assert_replicas([p])
        expected = np.linspace(-1.0, 1.0, 5) - 0.1 * mean_grads([p], 1)[0]
        np.testing.assert_allclose(p, expected, **TOL[np.float64])


def test_regression_synchronize_with_grads_then_step_without_them_is_refused_or_reduced() -> None:
    """``synchronize(grads=g)`` reduces ``g`` but writes nothing into ``p.grad``; a following
    ``step()`` (without ``grads=``) then steps on every rank's own, unreduced ``p.grad``
    and the replicas diverge without an error. The wrapper knows
    which gradients it reduced: it should refuse the mismatch (or reduce ``p.grad``)."""
    p = fo.Parameter(np.linspace(-1.0, 1.0, 5))
    opt = DistributedOptimizer(fo.SGD([p], lr=0.1))
    local = rank_grads([p], 0)
    p.grad = local[0].copy()
    opt.synchronize(grads=local)
    outcome = "stepped"
    try:
        opt.step()
    except DistributedError:
        outcome = "refused"
    outcomes = agreed(outcome)
    assert len(set(outcomes)) == 1, outcomes
    if outcome == "stepped":
        assert_replicas([p])


def test_regression_a_step_hook_that_raises_on_one_rank_raises_distributed_error_everywhere() -> None:
    """A step pre-hook of the wrapped optimizer that raises (here ``KeyError``) on one rank:
    ``DistributedOptimizer.step`` catches only TypeError/ValueError/RuntimeError around the
    wrapped step, so that rank leaves ``step()`` with the KeyError
    while every other rank waits in the collective error check for it: a hang in a real run.
    (The closure path caught ``Exception``.) Here the failing rank
    joins that check itself after catching the KeyError, so the test fails instead of
    hanging."""
    p = fo.Parameter(np.linspace(-1.0, 1.0, 5))
    opt = DistributedOptimizer(fo.SGD([p], lr=0.1))

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        if RANK == SIZE - 1:
            raise KeyError("the hook's lookup failed")

    opt.optimizer.register_step_pre_hook(hook)
    p.grad = rank_grads([p], 0)[0]
    try:
        opt.step()
        outcome = "stepped"
    except DistributedError:
        outcome = "DistributedError"
    except KeyError:
        opt.comm.allgather((None, None))  # release the ranks waiting in _agree for this one
        outcome = "KeyError"
    assert agreed(outcome) == ["DistributedError"] * SIZE


@pytest.mark.parametrize("path", ["grads=", "p.grad"])
def test_regression_read_only_gradients_are_reduced_without_writing_them(path: str) -> None:
    """Read-only gradient arrays (``np.asarray`` of a JAX array, ``np.frombuffer``) that form
    one contiguous block: the unsharded optimizer takes them, but ``synchronize`` all-reduces
    in place into them and
    mpi4py raises ``BufferError: dlpack: buffer is not writable`` -- not a DistributedError,
    and on a rank whose gradients alone are read-only it raises before ``Allreduce`` while
    the others wait there (a hang). The packed path already copies:
    the span path should check ``writeable`` (and ``grads=`` should never be written)."""
    start = np.linspace(-1.0, 1.0, 6)
    p = fo.Parameter(start.copy())
    opt = DistributedOptimizer(fo.SGD([p], lr=0.1))
    g = rank_grads([p], 0)[0]
    g.setflags(write=False)
    if path == "grads=":
        opt.step(grads=[g])
    else:
        p.grad = g
        opt.step()
    assert_replicas([p])
    np.testing.assert_allclose(p, start - 0.1 * mean_grads([p], 0)[0], **TOL[np.float64])
    np.testing.assert_array_equal(g, rank_grads([p], 0)[0])


@pytest.mark.parametrize("layout", ["separate", "one buffer"])
def test_regression_step_grads_leaves_the_callers_arrays_as_they_were(layout: str) -> None:
    """``step(grads=...)`` hands the reduced gradients to the wrapped step. Whether it also
     overwrites the caller's arrays with the average depends on their memory layout: separate
     arrays are left alone, views of one buffer laid out back to back are reduced in place
    . The unsharded optimizer never writes ``grads=``; a caller who
     keeps the local gradient (to log its norm, to accumulate) gets the average instead only
     when it happens to be flat. (Documented as "in place" for the flat buffer; at least the
     two layouts should behave alike for ``grads=``.)"""
    params = [np.linspace(-1.0, 1.0, 4), np.linspace(0.0, 1.0, 6)]
    opt = DistributedOptimizer(fo.SGD(params, lr=0.1))
    local = rank_grads(params, 0)
    if layout == "one buffer":
        flat = np.concatenate([g.ravel() for g in local])
        grads = [flat[:4], flat[4:]]
    else:
        grads = [g.copy() for g in local]
    opt.step(grads=grads)
    for g, expected in zip(grads, local):
        np.testing.assert_array_equal(g, expected)


BAD_SETTINGS = [
    ("grad_scale", -2.0),
    ("grad_scale", 0.0),
    ("grad_scale", float("nan")),
    ("max_grad_norm", -1.0),
    ("skip_nonfinite", "no"),
]


@pytest.mark.parametrize(("key", "value"), BAD_SETTINGS, ids=[f"{k}={v}" for k, v in BAD_SETTINGS])
def test_regression_zero_refuses_bad_gradient_settings_as_the_unsharded_optimizer(
    key: str, value: Any
) -> None:
    """A bad ``grad_scale`` / ``max_grad_norm`` / ``skip_nonfinite`` set in ``param_groups``
    (as a loss scaler or a config would): DistributedOptimizer's wrapped step refuses it
    (``_validate.grad_settings``) and nothing changes. ZeroRedundancyOptimizer's
    ``_apply_grad_settings`` uses the raw values: a negative
    ``grad_scale`` or ``max_grad_norm`` flips the gradient (gradient ascent), NaN makes every
    parameter NaN, ``"no"`` is truthy, and 0 raises a bare ZeroDivisionError. It should call
    ``grad_settings`` on every full group before the reduce-scatter."""
    start = np.linspace(-1.0, 1.0, 7)
    reference = [fo.Parameter(start.copy())]
    dp = DistributedOptimizer(fo.SGD(reference, lr=0.1))
    dp.param_groups[0][key] = value
    reference[0].grad = rank_grads(reference, 0)[0]
    with pytest.raises(DistributedError):
        dp.step()
    np.testing.assert_array_equal(reference[0], start)

    params = [fo.Parameter(start.copy())]
    zero = ZeroRedundancyOptimizer(params, fo.SGD, lr=0.1)
    zero.param_groups[0][key] = value
    params[0].grad = rank_grads(params, 0)[0]
    with pytest.raises(DistributedError, match=key):
        zero.step()
    np.testing.assert_array_equal(params[0], start)


def test_regression_zero_load_state_dict_that_fails_changes_nothing() -> None:
    """ZeroRedundancyOptimizer.load_state_dict of a state dict it refuses (here: two
    parameters of one shard bucket with different step counts): every rank raises
    DistributedError, but ``_load`` has already loaded the dict into
    the full optimizer, so the refused dict's hyperparameters (lr=0.5) stay and drive the next
    step. It should load into a copy (or restore ``param_groups`` on failure)."""
    params = [fo.Parameter(np.linspace(-1.0, 1.0, 7)), fo.Parameter(np.linspace(0.0, 1.0, 4))]
    zero = ZeroRedundancyOptimizer(params, fo.Adam, lr=0.1)
    donor = fo.Adam([fo.Parameter(p.copy()) for p in params], lr=0.5)
    for p in donor.param_groups[0]["params"]:
        p.grad = np.ones_like(p)
    donor.step()
    state_dict = donor.state_dict()
    state_dict["state"][1]["step"] = 7.0
    with pytest.raises(DistributedError):
        zero.load_state_dict(state_dict)
    assert zero.param_groups[0]["lr"] == 0.1
    assert zero.optim.param_groups[0]["lr"] == 0.1


# --- checks that pass: coverage tests/mpi did not have --------------------------------------


def two_groups(params: list[np.ndarray], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Group 0 carries ``settings``, group 1 only what all groups share (so it is not clipped)."""
    shared = {k: v for k, v in settings.items() if k in ("grad_scale", "skip_nonfinite")}
    return [{"params": params[:2], **settings}, {"params": params[2:], **shared}]


GRAD_SETTINGS = [
    ("clip", fo.SGD, {"lr": 0.1, "max_grad_norm": 0.5}),
    ("scale-clip", fo.Adam, {"lr": 0.05, "grad_scale": 8.0, "max_grad_norm": 1.0}),
    ("skip", fo.Adam, {"lr": 0.05, "skip_nonfinite": True}),
    (
        "scale-skip-clip",
        fo.RMSprop,
        {"lr": 0.01, "grad_scale": 4.0, "skip_nonfinite": True, "max_grad_norm": 2.0},
    ),
]


def settings_run(
    cls: type[fo.Optimizer], settings: dict[str, Any], dtypes: list[Any]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """ZeRO and DistributedOptimizer over ``cls(two_groups(...), settings)`` for 5 steps of
    every rank's own gradients (times 3, so that the clip acts), an inf on the last rank at
    step 2 when ``skip_nonfinite`` is set; returns both parameter lists."""
    rng = np.random.default_rng(5)
    shapes = [(3, 4), (5,), (2, 3), (7,)]
    start = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    zp = [fo.Parameter(a.copy()) for a in start]
    dp = [fo.Parameter(a.copy()) for a in start]
    zero = ZeroRedundancyOptimizer(two_groups(zp, settings), cls, lr=settings["lr"])
    dist = DistributedOptimizer(cls(two_groups(dp, settings), lr=settings["lr"]))
    for step in range(5):
        grads = [3 * g for g in rank_grads(zp, step)]
        if step == 2 and RANK == SIZE - 1 and settings.get("skip_nonfinite"):
            grads[2].flat[1] = np.inf
        for z, d, g in zip(zp, dp, grads):
            z.grad, d.grad = g.copy(), g.copy()
        zero.step()
        dist.step()
        assert zero.last_step_skipped == dist.last_step_skipped
    assert zero.skipped_steps == dist.skipped_steps == (1 if settings.get("skip_nonfinite") else 0)
    assert_replicas(zp)
    return zp, dp


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("name", "cls", "settings"), GRAD_SETTINGS, ids=[c[0] for c in GRAD_SETTINGS])
def test_zero_gradient_settings_match_the_distributed_optimizer(
    name: str, cls: type[fo.Optimizer], settings: dict[str, Any], dtype: Any
) -> None:
    """``max_grad_norm`` (one norm over both groups, the second group unclipped),
    ``grad_scale`` and ``skip_nonfinite`` across shards, against DistributedOptimizer over
    ``cls(..., settings)``."""
    zp, dp = settings_run(cls, settings, [dtype] * 4)
    assert_close(zp, dp, dtype, name)


def test_regression_zero_clip_norm_of_mixed_dtypes_is_the_unsharded_one() -> None:
    """``max_grad_norm`` over float64 and float32 gradients: the unsharded optimizer (as
    torch's ``clip_grad_norm_``) takes each tensor's norm in the tensor's dtype, so a float32
    tensor's norm is rounded to float32 before the float64 total. ZeRO's
    ``_apply_grad_settings`` sums the squares of all shards in
    float64 instead, so the clip coefficient -- and every clipped float64 parameter -- differs
    from DistributedOptimizer's by float32 rounding (about 1e-8 relative), not by the
    reduction order (1e-16) that issue 7 allows. One SGD step with lr=1 from zeros shows
    the applied float64 gradient ``coef * g`` directly. Fix: all-reduce one float64 sum of
    squares per parameter (a vector of n_params), then round each tensor's norm to its dtype
    and combine them as ``_core.grad_stats`` does."""
    shapes = [(3, 4), (5,), (20,), (30,)]
    dtypes = [np.float64, np.float64, np.float32, np.float32]
    zp = [fo.Parameter(np.zeros(s, dtype=d)) for s, d in zip(shapes, dtypes)]
    dp = [fo.Parameter(np.zeros(s, dtype=d)) for s, d in zip(shapes, dtypes)]
    settings = {"lr": 1.0, "max_grad_norm": 0.5}
    zero = ZeroRedundancyOptimizer(two_groups(zp, settings), fo.SGD, lr=1.0)
    dist = DistributedOptimizer(fo.SGD(two_groups(dp, settings), lr=1.0))
    grads = rank_grads(zp, 0)
    zero.step(grads=grads)
    dist.step(grads=[g.copy() for g in grads])
    assert_replicas(zp)
    for i in range(2):  # float64: only the reduction order may differ
        np.testing.assert_allclose(zp[i], dp[i], rtol=1e-12, err_msg=f"clipped float64 parameter {i}")


def odd_layouts() -> list[np.ndarray]:
    """A 0-d, a size-0, a Fortran-order, a strided view, and two views of one buffer in
    reverse order; the float32 one-element parameter leaves most ranks an empty shard."""
    buf = np.linspace(-1.0, 1.0, 12)
    return [
        np.array(0.5),
        np.zeros(0),
        np.asfortranarray(np.linspace(-2.0, 2.0, 12).reshape(3, 4)),
        np.linspace(0.0, 1.0, 10)[::2],
        buf[5:].reshape(7, 1),
        buf[:5],
        np.array([0.25], dtype=np.float32),
    ]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (fo.Adam, {"lr": 0.05, "amsgrad": True}),
        (fo.NAdam, {"lr": 0.05}),
        (fo.SGD, {"lr": 0.1, "momentum": 0.9}),
    ],
    ids=["Adam-amsgrad", "NAdam", "SGD-momentum"],
)
def test_zero_of_odd_layouts_matches_the_distributed_optimizer_and_round_trips(
    cls: type[fo.Optimizer], kwargs: dict[str, Any]
) -> None:
    zp, dp = odd_layouts(), odd_layouts()
    zero = ZeroRedundancyOptimizer(zp, cls, **kwargs)
    dist = DistributedOptimizer(cls(dp, **kwargs))
    for step in range(4):
        grads = rank_grads(zp, step)
        zero.step(grads=grads)
        dist.step(grads=[g.copy() for g in grads])
    assert_replicas(zp)
    for z, d in zip(zp, dp):
        np.testing.assert_allclose(z, d, **TOL[np.float32 if z.dtype == np.float32 else np.float64])
    zero.consolidate_state_dict(to=0)
    consolidated = COMM.bcast(zero.state_dict() if RANK == 0 else None)
    reference = dist.state_dict()["state"]
    assert sorted(consolidated["state"]) == sorted(reference)
    for i, entry in reference.items():
        assert sorted(consolidated["state"][i]) == sorted(entry), f"state keys of parameter {i}"
        for key, value in entry.items():
            np.testing.assert_allclose(consolidated["state"][i][key], value, rtol=1e-6, atol=1e-9)
    again = ZeroRedundancyOptimizer(odd_layouts(), cls, **kwargs)
    again.load_state_dict(consolidated)
    again.consolidate_state_dict(to=0)
    if RANK == 0:
        reloaded = again.state_dict()["state"]
        for i, entry in consolidated["state"].items():
            for key, value in entry.items():
                assert bits_equal(reloaded[i][key], value), f"state {key!r} of parameter {i}"


def test_zero_bfloat16_state_round_trips_and_resumes_bit_for_bit() -> None:
    """bfloat16 Adam state with amsgrad: consolidated (as float32), loaded into a fresh ZeRO
    over a copy of the parameters, both then take the same steps bit for bit."""
    rng = np.random.default_rng(3)
    start = [rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (4,), (11,)]]
    kwargs = {"lr": 0.01, "amsgrad": True, "state_dtype": "bfloat16", "seed": 17}
    a = [a0.copy() for a0 in start]
    zero = ZeroRedundancyOptimizer(a, fo.Adam, **kwargs)
    for step in range(3):
        zero.step(grads=rank_grads(a, step))
    zero.consolidate_state_dict(to=0)
    consolidated = COMM.bcast(zero.state_dict() if RANK == 0 else None)
    assert all(
        v.dtype == np.float32
        for e in consolidated["state"].values()
        for v in e.values()
        if hasattr(v, "dtype")
    )
    b = [x.copy() for x in a]
    resumed = ZeroRedundancyOptimizer(b, fo.Adam, **kwargs)
    resumed.load_state_dict(consolidated)
    for step in range(3, 6):
        grads = rank_grads(a, step)
        zero.step(grads=grads)
        resumed.step(grads=[g.copy() for g in grads])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert_replicas(a)


def test_zero_add_param_group_after_steps_matches_the_distributed_optimizer() -> None:
    start = [np.linspace(-1.0, 1.0, 7), np.linspace(0.0, 1.0, 5), np.linspace(0.0, 2.0, 4).astype(np.float32)]
    zp = [fo.Parameter(s.copy()) for s in start]
    dp = [fo.Parameter(s.copy()) for s in start]
    zero = ZeroRedundancyOptimizer([zp[0]], fo.Adam, lr=0.1)
    dist = DistributedOptimizer(fo.Adam([dp[0]], lr=0.1))
    for step in range(5):
        if step == 2:
            zero.add_param_group({"params": zp[1:], "lr": 0.05})
            dist.add_param_group({"params": dp[1:], "lr": 0.05})
        n = 1 if step < 2 else 3
        grads = rank_grads(zp[:n], step)
        for z, d, g in zip(zp, dp, grads):
            z.grad, d.grad = g.copy(), g.copy()
        zero.step()
        dist.step()
    assert_replicas(zp)
    assert_close(zp[:2], dp[:2], np.float64, "float64")
    assert_close(zp[2:], dp[2:], np.float32, "float32")
    zero.consolidate_state_dict(to=0)
    if RANK == 0:
        state, reference = zero.state_dict()["state"], dist.state_dict()["state"]
        assert sorted(state) == sorted(reference)
        for i, entry in reference.items():
            for key, value in entry.items():
                np.testing.assert_allclose(state[i][key], value, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (fo.Adam, {"amsgrad": True, "state_dtype": "bfloat16", "betas": (0.8, 0.99)}),
        (fo.NAdam, {"momentum_decay": 0.004}),
        (fo.SGD, {"momentum": 0.9, "nesterov": True}),
    ],
    ids=["Adam-bf16-amsgrad", "NAdam", "SGD-nesterov"],
)
def test_broadcast_optimizer_state_of_ranks_with_different_histories(
    cls: type[fo.Optimizer], kwargs: dict[str, Any]
) -> None:
    """Each rank took a different number of steps with a different lr; after both broadcasts
    every rank holds root's state bit for bit (bf16 state, NAdam's mu_product, amsgrad's
    maximum) and the next data-parallel step keeps the replicas identical."""
    params = [
        np.linspace(-1.0, 1.0, 7, dtype=np.float32),
        np.linspace(0.0, 1.0, 6, dtype=np.float32).reshape(2, 3),
    ]
    params = [fo.Parameter(p) for p in params]
    opt = cls(params, lr=0.01 * (RANK + 1), **kwargs)
    for step in range(RANK + 1):
        for p, g in zip(params, rank_grads(params, step)):
            p.grad = g
        opt.step()
    broadcast_optimizer_state(opt)
    broadcast_parameters(params)
    mine = opt.state_dict()
    roots = COMM.bcast(mine if RANK == 0 else None)
    assert mine["param_groups"] == roots["param_groups"]
    for i, entry in roots["state"].items():
        for key, value in entry.items():
            assert bits_equal(mine["state"][i][key], value), f"state {key!r} of parameter {i}"
    dist = DistributedOptimizer(opt)
    for p, g in zip(params, rank_grads(params, 10)):
        p.grad = g
    dist.step()
    assert_replicas(params)


def test_broadcast_parameters_of_odd_arrays() -> None:
    """0-d, size-0, Fortran-order, strided, bool and int16 arrays, each rank different."""
    arrays = [
        np.full((), float(RANK)),
        np.zeros(0) + RANK,
        np.asfortranarray(np.arange(6.0).reshape(2, 3) + RANK),
        (np.arange(8.0) + RANK)[::2],
        np.full(3, RANK % 2 == 1),
        np.full(2, RANK, dtype=np.int16),
    ]
    expected = [
        np.full((), 0.0),
        np.zeros(0),
        np.arange(6.0).reshape(2, 3),
        np.arange(8.0)[::2],
        np.full(3, False),
        np.zeros(2, dtype=np.int16),
    ]
    broadcast_parameters(arrays)
    for a, e in zip(arrays, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)
    assert arrays[2].flags.f_contiguous
