"""The per-group gradient settings of every optimizer: ``grad_scale`` (loss-scale
unscaling), ``max_grad_norm`` (clipping by the global norm) and ``skip_nonfinite``.

References: torch's own ``GradScaler.unscale_`` arithmetic (``grad * (1/S)`` in the
gradient's dtype), ``torch.nn.utils.clip_grad_norm_`` / ``get_total_norm`` /
``clip_grads_with_norm_`` followed by ``torch.optim``'s ``step()``; for Lion and AdagradNorm
(not in torch), the same ferroptim optimizer without the settings, fed torch-clipped
gradients. A skipped step is compared with a twin optimizer that never saw the bad
gradients.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest
import torch

import ferroptim as fo

DTYPES = (np.float64, np.float32)
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
TOL = {np.float64: (1e-12, 1e-13), np.float32: (2e-6, 2e-6)}
SHAPES = ((5, 4), (7,), ())
STEPS = 8

# (ferroptim class, torch class, kwargs): one representative setting per algorithm.
TORCH_PAIRS = [
    (fo.SGD, torch.optim.SGD, {"lr": 0.1}),
    (fo.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (fo.Adagrad, torch.optim.Adagrad, {"lr": 0.1, "weight_decay": 0.1}),
    (fo.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    (fo.Adadelta, torch.optim.Adadelta, {"lr": 1.0, "maximize": True}),
    (fo.Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True}),
    (fo.AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    (fo.NAdam, torch.optim.NAdam, {"lr": 0.01}),
    (fo.RAdam, torch.optim.RAdam, {"lr": 0.01}),
    (fo.Adamax, torch.optim.Adamax, {"lr": 0.01}),
]
PAIR_IDS = [f"{ours.__name__}-{i}" for i, (ours, _, _) in enumerate(TORCH_PAIRS)]

ALL_CLASSES = [
    (fo.SGD, {"lr": 0.1, "momentum": 0.9}),
    (fo.Adagrad, {"lr": 0.1}),
    (fo.RMSprop, {"lr": 0.01}),
    (fo.Adadelta, {}),
    (fo.Adam, {"lr": 0.01}),
    (fo.AdamW, {"lr": 0.01}),
    (fo.NAdam, {"lr": 0.01}),
    (fo.RAdam, {"lr": 0.01}),
    (fo.Adamax, {"lr": 0.01}),
    (fo.Lion, {"lr": 0.01}),
    (fo.AdagradNorm, {"lr": 0.5}),
]
CLASS_IDS = [cls.__name__ for cls, _ in ALL_CLASSES]


def _params(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    return [np.asarray(rng.standard_normal(shape), dtype=dtype) for shape in SHAPES]


def _grads(rng: np.random.Generator, dtype: Any, magnitude: float) -> list[np.ndarray]:
    return [np.asarray(magnitude * rng.standard_normal(shape), dtype=dtype) for shape in SHAPES]


def _close(actual: np.ndarray, expected: np.ndarray, dtype: Any, what: str) -> None:
    rtol, atol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def _torch_params(params: list[np.ndarray]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]


def _set_torch_grads(tparams: list[torch.nn.Parameter], grads: list[np.ndarray]) -> None:
    for t, g in zip(tparams, grads):
        t.grad = torch.from_numpy(g.copy())


def _unscale_like_grad_scaler(tparams: list[torch.nn.Parameter], scale: float) -> None:
    """``GradScaler.unscale_``: each gradient times ``1/S``, rounded to its dtype."""
    for t in tparams:
        inv = torch.tensor(1.0 / scale, dtype=torch.float64).to(t.grad.dtype)
        t.grad.mul_(inv)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), TORCH_PAIRS, ids=PAIR_IDS)
def test_max_grad_norm_is_clip_grad_norm_then_step(ours, theirs, kwargs, dtype, rng):
    params = _params(rng, dtype)
    tparams = _torch_params(params)
    opt = ours(params, max_grad_norm=1.5, **kwargs)
    topt = theirs(tparams, foreach=False, **kwargs)
    clipped = 0
    for step in range(STEPS):
        # alternate small and large gradients, so some steps clip and some do not
        grads = _grads(rng, dtype, 0.1 if step % 2 else 3.0)
        before = [g.copy() for g in grads]
        _set_torch_grads(tparams, grads)
        norm = torch.nn.utils.clip_grad_norm_(tparams, 1.5, foreach=False)
        clipped += bool(norm > 1.5)
        topt.step()
        opt.step(grads=grads)
        for g, b in zip(grads, before):  # the caller's gradients are not written (pytorch #56843)
            np.testing.assert_array_equal(g, b)
        for i, (p, t) in enumerate(zip(params, tparams)):
            _close(p, t.detach().numpy(), dtype, f"step {step}, param {i}")
    assert 0 < clipped < STEPS
    assert not opt.last_step_skipped


@pytest.mark.parametrize("scale", [1024.0, 1000.0, 0.25])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), TORCH_PAIRS, ids=PAIR_IDS)
def test_grad_scale_is_grad_scaler_unscale_then_step(ours, theirs, kwargs, dtype, scale, rng):
    params = _params(rng, dtype)
    tparams = _torch_params(params)
    opt = ours(params, grad_scale=scale, **kwargs)
    topt = theirs(tparams, foreach=False, **kwargs)
    for step in range(STEPS):
        scaled = [np.asarray(g * scale, dtype=dtype) for g in _grads(rng, dtype, 1.0)]
        before = [g.copy() for g in scaled]
        _set_torch_grads(tparams, scaled)
        _unscale_like_grad_scaler(tparams, scale)
        topt.step()
        opt.step(grads=scaled)
        for g, b in zip(scaled, before):
            np.testing.assert_array_equal(g, b)
        for i, (p, t) in enumerate(zip(params, tparams)):
            _close(p, t.detach().numpy(), dtype, f"step {step}, param {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), TORCH_PAIRS[1::2], ids=PAIR_IDS[1::2])
def test_unscale_then_clip_then_step(ours, theirs, kwargs, dtype, rng):
    """The documented order: unscale, then the norm of the unscaled gradients, then clip."""
    scale = 4096.0
    params = _params(rng, dtype)
    tparams = _torch_params(params)
    opt = ours(params, grad_scale=scale, max_grad_norm=1.0, skip_nonfinite=True, **kwargs)
    topt = theirs(tparams, foreach=False, **kwargs)
    for step in range(STEPS):
        scaled = [np.asarray(g * scale, dtype=dtype) for g in _grads(rng, dtype, 2.0)]
        _set_torch_grads(tparams, scaled)
        _unscale_like_grad_scaler(tparams, scale)
        torch.nn.utils.clip_grad_norm_(tparams, 1.0, foreach=False)
        topt.step()
        opt.step(grads=scaled)
        assert not opt.last_step_skipped
        for i, (p, t) in enumerate(zip(params, tparams)):
            _close(p, t.detach().numpy(), dtype, f"step {step}, param {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_groups_clip_with_their_own_bound_against_the_global_norm(dtype, rng):
    """One norm over all groups; a group without ``max_grad_norm`` is not clipped."""
    params = _params(rng, dtype)
    tparams = _torch_params(params)
    opt = fo.Adam(
        [
            {"params": params[:1], "max_grad_norm": 0.5},
            {"params": params[1:2]},
            {"params": params[2:], "max_grad_norm": 2.0},
        ],
        lr=0.01,
    )
    topt = torch.optim.Adam(
        [{"params": tparams[:1]}, {"params": tparams[1:2]}, {"params": tparams[2:]}], lr=0.01
    )
    for step in range(STEPS):
        grads = _grads(rng, dtype, 1.0)
        _set_torch_grads(tparams, grads)
        total = torch.nn.utils.get_total_norm([t.grad for t in tparams], foreach=False)
        torch.nn.utils.clip_grads_with_norm_(tparams[:1], 0.5, total, foreach=False)
        torch.nn.utils.clip_grads_with_norm_(tparams[2:], 2.0, total, foreach=False)
        topt.step()
        opt.step(grads=grads)
        for i, (p, t) in enumerate(zip(params, tparams)):
            _close(p, t.detach().numpy(), dtype, f"step {step}, param {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cls", [fo.Lion, fo.AdagradNorm], ids=lambda c: c.__name__)
def test_optimizers_without_torch_counterpart_see_torch_clipped_gradients(cls, dtype, rng):
    scale = 512.0
    params = _params(rng, dtype)
    twin = [p.copy() for p in params]
    opt = cls(params, lr=0.01, grad_scale=scale, max_grad_norm=1.0)
    ref = cls(twin, lr=0.01)
    for step in range(STEPS):
        scaled = [np.asarray(g * scale, dtype=dtype) for g in _grads(rng, dtype, 3.0 if step % 2 else 0.1)]
        tgrads = [torch.from_numpy(g.copy()) for g in scaled]
        for t in tgrads:
            t.mul_(torch.tensor(1.0 / scale, dtype=torch.float64).to(t.dtype))
        params_t = [torch.nn.Parameter(torch.zeros_like(t)) for t in tgrads]
        for pt, t in zip(params_t, tgrads):
            pt.grad = t
        torch.nn.utils.clip_grad_norm_(params_t, 1.0, foreach=False)
        opt.step(grads=scaled)
        ref.step(grads=[pt.grad.numpy() for pt in params_t])
        for i, (p, r) in enumerate(zip(params, twin)):
            _close(p, r, dtype, f"step {step}, param {i}")


@pytest.mark.parametrize(("cls", "kwargs"), ALL_CLASSES, ids=CLASS_IDS)
def test_settings_that_change_nothing_change_no_bit(cls, kwargs, rng):
    """``grad_scale=1`` and ``max_grad_norm=inf`` multiply by exactly 1."""
    params = _params(rng, np.float32)
    twin = [p.copy() for p in params]
    opt = cls(params, grad_scale=1.0, max_grad_norm=np.inf, skip_nonfinite=True, **kwargs)
    ref = cls(twin, **kwargs)
    for _ in range(4):
        grads = _grads(rng, np.float32, 2.0)
        opt.step(grads=grads)
        ref.step(grads=grads)
    for p, r in zip(params, twin):
        np.testing.assert_array_equal(p, r)


def _snapshot(opt: fo.Optimizer) -> Any:
    return copy.deepcopy(opt.state_dict())


def _assert_same_state(a: Any, b: Any) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        assert a["state"][i].keys() == b["state"][i].keys()
        for k in a["state"][i]:
            np.testing.assert_array_equal(a["state"][i][k], b["state"][i][k])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("cls", "kwargs"), ALL_CLASSES, ids=CLASS_IDS)
def test_skip_nonfinite_skips_exactly_the_bad_steps(cls, kwargs, dtype, bad, rng):
    params = _params(rng, dtype)
    twin = [p.copy() for p in params]
    opt = cls(params, skip_nonfinite=True, max_grad_norm=5.0, **kwargs)
    ref = cls(twin, max_grad_norm=5.0, **kwargs)
    for step in range(6):
        grads = _grads(rng, dtype, 1.0)
        if step in (0, 3):
            poisoned = [g.copy() for g in grads]
            poisoned[0 if step == 0 else 2].reshape(-1)[-1] = bad  # a matrix, then the 0-d one
            before_params = [p.copy() for p in params]
            before_state = _snapshot(opt)
            opt.step(grads=poisoned)
            assert opt.last_step_skipped
            for p, b in zip(params, before_params):
                np.testing.assert_array_equal(p, b)
            _assert_same_state(_snapshot(opt), before_state)
        opt.step(grads=grads)
        ref.step(grads=grads)
        assert not opt.last_step_skipped
        for p, r in zip(params, twin):
            np.testing.assert_array_equal(p, r)
    assert opt.skipped_steps == 2
    ours_sd, ref_sd = _snapshot(opt), _snapshot(ref)
    ref_sd["param_groups"] = ours_sd["param_groups"]  # they differ in skip_nonfinite only
    _assert_same_state(ours_sd, ref_sd)


def test_a_finite_gradient_that_overflows_when_unscaled_skips():
    p = np.zeros(3, dtype=np.float32)
    opt = fo.SGD([p], lr=1.0, grad_scale=0.5, skip_nonfinite=True)
    opt.step(grads=[np.array([1.0, 3e38, 0.0], dtype=np.float32)])
    assert opt.last_step_skipped and opt.skipped_steps == 1
    np.testing.assert_array_equal(p, 0.0)
    opt.step(grads=[np.array([1.0, 1e38, 0.0], dtype=np.float32)])
    assert not opt.last_step_skipped
    np.testing.assert_array_equal(p, -np.array([2.0, 2e38, 0.0], dtype=np.float32))


def test_without_skip_nonfinite_a_nan_gradient_is_applied_as_torch_does():
    p = np.zeros(2)
    opt = fo.SGD([p], lr=1.0)
    opt.step(grads=[np.array([np.nan, 1.0])])
    assert not opt.last_step_skipped and opt.skipped_steps == 0
    assert np.isnan(p[0]) and p[1] == -1.0


def test_only_groups_with_skip_nonfinite_are_checked_but_the_whole_step_is_skipped():
    a, b = np.zeros(2), np.zeros(2)
    opt = fo.Adam([{"params": [a], "skip_nonfinite": True}, {"params": [b]}], lr=0.1)
    opt.step(grads=[np.ones(2), np.array([np.nan, 1.0])])  # the NaN is in the unchecked group
    assert not opt.last_step_skipped
    assert np.isnan(b[0]) and a[0] != 0.0
    a0 = a.copy()
    opt.step(grads=[np.array([np.inf, 1.0]), np.ones(2)])  # the checked group: no group steps
    assert opt.last_step_skipped and opt.skipped_steps == 1
    np.testing.assert_array_equal(a, a0)
    assert b[1] != 0.0 and opt.state[b]["step"] == 1.0 and opt.state[a]["step"] == 1.0


def test_the_check_and_the_norm_do_not_depend_on_the_thread_count(rng):
    n = 300_000  # above the serial threshold: the reductions run on the pool
    g = rng.standard_normal(n).astype(np.float32)
    results = []
    for threads in (1, 3):
        fo.set_num_threads(threads)
        p = np.ones(n, dtype=np.float32)
        opt = fo.SGD([p], lr=0.1, max_grad_norm=1.0, skip_nonfinite=True)
        opt.step(grads=[g])
        bad = g.copy()
        bad[n - 7] = np.nan
        opt.step(grads=[bad])
        assert opt.last_step_skipped
        results.append(p)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize(
    ("key", "value", "error", "match"),
    [
        ("grad_scale", 0.0, ValueError, "grad_scale"),
        ("grad_scale", -2.0, ValueError, "grad_scale"),
        ("grad_scale", float("nan"), ValueError, "grad_scale"),
        ("grad_scale", float("inf"), ValueError, "grad_scale"),
        ("grad_scale", "big", TypeError, "grad_scale"),
        ("max_grad_norm", -1.0, ValueError, "max_grad_norm"),
        ("max_grad_norm", float("nan"), ValueError, "max_grad_norm"),
        ("max_grad_norm", True, TypeError, "max_grad_norm"),
        ("skip_nonfinite", 1, TypeError, "skip_nonfinite"),
    ],
)
@pytest.mark.parametrize(("cls", "kwargs"), ALL_CLASSES, ids=CLASS_IDS)
def test_bad_settings_are_refused_naming_the_group(cls, kwargs, key, value, error, match):
    with pytest.raises(error, match=match):
        cls([np.zeros(2)], **{key: value}, **kwargs)
    a, b = np.zeros(2), np.zeros(2)
    opt = cls([{"params": [a]}, {"params": [b]}], **kwargs)
    opt.step(grads=[np.ones(2), np.ones(2)])
    before = (a.copy(), b.copy(), _snapshot(opt))
    opt.param_groups[1][key] = value  # edited after construction: caught by the step
    with pytest.raises(error, match=rf"param_groups\[1\].*{match}"):
        opt.step(grads=[np.ones(2), np.ones(2)])
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])
    opt.param_groups[1][key] = before[2]["param_groups"][1][key]
    _assert_same_state(_snapshot(opt), before[2])


def test_settings_can_be_edited_between_steps_like_a_dynamic_loss_scale(rng):
    p = np.zeros(3)
    opt = fo.SGD([p], lr=1.0, grad_scale=8.0)
    opt.step(grads=[np.full(3, 8.0)])
    opt.param_groups[0]["grad_scale"] = 2.0
    opt.step(grads=[np.full(3, 8.0)])
    np.testing.assert_array_equal(p, -5.0)


@pytest.mark.parametrize(("cls", "kwargs"), ALL_CLASSES, ids=CLASS_IDS)
def test_state_dict_keeps_the_settings(cls, kwargs):
    opt = cls([np.zeros(2)], grad_scale=128.0, max_grad_norm=1.0, skip_nonfinite=True, **kwargs)
    opt.step(grads=[np.ones(2)])
    sd = opt.state_dict()
    assert {k: sd["param_groups"][0][k] for k in ("grad_scale", "max_grad_norm", "skip_nonfinite")} == {
        "grad_scale": 128.0,
        "max_grad_norm": 1.0,
        "skip_nonfinite": True,
    }
    fresh = cls([np.zeros(2)], **kwargs)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["grad_scale"] == 128.0
    assert fresh.param_groups[0]["max_grad_norm"] == 1.0
    assert fresh.param_groups[0]["skip_nonfinite"] is True


def test_a_torch_state_dict_without_the_settings_loads_with_the_defaults(rng):
    from _torchref import torch_sd_to_numpy

    t = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    topt = torch.optim.Adam([t], lr=0.01)
    t.grad = torch.ones(3, dtype=torch.float64)
    topt.step()
    opt = fo.Adam([np.zeros(3)], lr=0.01, max_grad_norm=2.0)
    opt.load_state_dict(torch_sd_to_numpy(topt.state_dict()))
    group = opt.param_groups[0]
    assert group["grad_scale"] is None and group["max_grad_norm"] == 2.0 and group["skip_nonfinite"] is False
    opt.step(grads=[np.ones(3)])
    assert opt.state[group["params"][0]]["step"] == 2.0


def test_copies_keep_the_skip_counters():
    opt = fo.SGD([np.zeros(2)], lr=0.1, skip_nonfinite=True)
    opt.step(grads=[np.array([np.nan, 0.0])])
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone.last_step_skipped and clone.skipped_steps == 1


@pytest.mark.parametrize(("key", "value"), [("grad_scale", 0.0), ("grad_scale", np.nan), ("grad_scale", "x")])
@pytest.mark.parametrize(("cls", "kwargs"), [ALL_CLASSES[0], ALL_CLASSES[4], ALL_CLASSES[-1]], ids=str)
def test_the_rust_boundary_refuses_bad_multipliers_too(cls, kwargs, key, value, monkeypatch):
    """Behind the Python checks, the kernels' own: a bad value raises, naming the group."""
    import ferroptim.optimizer

    monkeypatch.setattr(ferroptim.optimizer, "grad_settings", lambda group: (1.0, None, False))
    p = np.zeros(2)
    opt = cls([p], **kwargs)
    opt.param_groups[0][key] = value
    with pytest.raises((TypeError, ValueError), match=rf"param_groups\[0\]: '?{key}"):
        opt.step(grads=[np.ones(2)])
    np.testing.assert_array_equal(p, 0.0)
    assert not opt.state


def test_a_group_key_named_clip_coef_does_not_reach_the_kernel():
    p = np.zeros(2)
    opt = fo.SGD([{"params": [p], "clip_coef": 0.0}], lr=1.0)
    opt.step(grads=[np.ones(2)])
    np.testing.assert_array_equal(p, -1.0)


@pytest.mark.parametrize("bad", [np.full(3, np.nan), [np.nan, 1.0]], ids=["wrong-shape", "not-an-array"])
def test_a_malformed_gradient_raises_rather_than_skipping(bad):
    p = np.zeros(2)
    opt = fo.Adam([p], skip_nonfinite=True, max_grad_norm=1.0)
    with pytest.raises((TypeError, ValueError), match=r"gradient of param_groups\[0\]\['params'\]\[0\]"):
        opt.step(grads=[bad])
    assert opt.skipped_steps == 0 and not opt.state
    np.testing.assert_array_equal(p, 0.0)


def test_a_gradient_of_the_wrong_dtype_is_refused_not_counted_as_a_skip():
    """skip_nonfinite: a NaN in one gradient does not hide another gradient's wrong dtype."""
    a, b = fo.Parameter(np.zeros(3, np.float32)), fo.Parameter(np.zeros(3, np.float32))
    opt = fo.Adam([a, b], lr=0.1, skip_nonfinite=True)
    with pytest.raises(TypeError):
        opt.step(grads=[np.full(3, np.nan, np.float32), np.ones(3, np.float64)])
    assert not opt.last_step_skipped and opt.skipped_steps == 0 and not opt.state[a]
