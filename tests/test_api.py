"""The public API: ``fo.Parameter`` and the torch.optim-style optimizer interface.

Parameter: wraps without copying, ``.grad`` checks, arithmetic gives plain ndarrays, in-place
ops keep the Parameter, pickle / deepcopy keep data and grad. Optimizer: the accepted forms of
``params``, ``add_param_group``, ``zero_grad``, closures, skipped parameters,
``param_groups`` edits, ``defaults``, ``repr`` and state keys (both against torch.optim),
``opt.state[p]`` for plain arrays, and the rejected forms of ``params``. Numerical checks
use a NumPy transcription of SGD.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import ferroptim as fo

torch = pytest.importorskip("torch")

ALL = [
    fo.SGD,
    fo.Adagrad,
    fo.RMSprop,
    fo.Adadelta,
    fo.Adam,
    fo.AdamW,
    fo.NAdam,
    fo.RAdam,
    fo.Adamax,
    fo.Lion,
    fo.AdagradNorm,
]
TORCH_ONLY = {"foreach", "fused", "capturable", "differentiable"}


def sgd_reference(theta, grads, lr, momentum=0.0, weight_decay=0.0):
    """torch's SGD (no dampening, no nesterov) in NumPy; ``grads`` may contain None."""
    theta = np.array(theta, copy=True)
    buf = None
    for g in grads:
        if g is None:
            continue
        d = g + weight_decay * theta
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + d
            d = buf
        theta = theta - lr * d
    return theta


# --------------------------------------------------------------------------------------------
# Parameter


def test_parameter_wraps_without_copy():
    a = np.arange(6.0).reshape(2, 3)
    p = fo.Parameter(a)
    assert isinstance(p, fo.Parameter) and isinstance(p, np.ndarray)
    assert np.shares_memory(a, p)
    assert p.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    a[0, 0] = 42.0
    assert p[0, 0] == 42.0
    p[1, 2] = -1.0  # item assignment writes through to the wrapped array
    assert a[1, 2] == -1.0
    assert p.grad is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameter_keeps_dtype_and_grad_setter_checks(dtype):
    p = fo.Parameter(np.zeros((2, 3), dtype=dtype))
    assert p.dtype == dtype and p.grad is None
    g = np.ones((2, 3), dtype=dtype)
    p.grad = g
    assert p.grad is g  # stored as given, not copied
    with pytest.raises(ValueError):
        p.grad = np.ones((3, 2), dtype=dtype)
    with pytest.raises(ValueError):
        p.grad = np.ones(6, dtype=dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    for bad in (other, np.float16, np.int64, np.complex128):
        with pytest.raises(TypeError):
            p.grad = np.ones((2, 3), dtype=bad)
    with pytest.raises(TypeError):
        p.grad = [[1.0] * 3] * 2
    assert p.grad is g  # rejected values leave the old gradient
    p.grad = None
    assert p.grad is None


@pytest.mark.parametrize("dtype", [np.int64, np.complex128, np.float16, np.bool_])
def test_parameter_rejects_non_float_arrays(dtype):
    with pytest.raises(TypeError):
        fo.Parameter(np.zeros(3, dtype=dtype))


OPS = {
    "p + 1": lambda p: p + 1,
    "1 - p": lambda p: 1 - p,
    "p * p": lambda p: p * p,
    "p / 2": lambda p: p / 2,
    "p @ p.T": lambda p: p @ p.T,
    "-p": lambda p: -p,
    "np.exp(p)": np.exp,
    "np.sum(p, axis=0)": lambda p: np.sum(p, axis=0),
    "p.sum(axis=1)": lambda p: p.sum(axis=1),
    "p[0:2]": lambda p: p[0:2],
    "p[0]": lambda p: p[0],
    "p[:, ::2]": lambda p: p[:, ::2],
    "p.T": lambda p: p.T,
    "p.transpose()": lambda p: p.transpose(),
    "p.reshape(-1)": lambda p: p.reshape(-1),
    "p.ravel()": lambda p: p.ravel(),
    "p.copy()": lambda p: p.copy(),
    "p.astype(f32)": lambda p: p.astype(np.float32),
    "np.concatenate": lambda p: np.concatenate([p, p]),
    "np.where": lambda p: np.where(p > 0, p, 0.0),
    "p > 0": lambda p: p > 0,
}


@pytest.mark.parametrize("op", OPS)
def test_parameter_arithmetic_returns_plain_arrays(op):
    a = np.arange(1.0, 7.0).reshape(3, 2)
    p = fo.Parameter(a.copy())
    got = OPS[op](p)
    want = OPS[op](a)
    assert type(got) is np.ndarray, type(got)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("reduce", [np.sum, np.mean, lambda p: p.max(), lambda p: float(p[1, 1])], ids=str)
def test_parameter_reductions_are_not_parameters(reduce):
    p = fo.Parameter(np.arange(1.0, 7.0).reshape(3, 2))
    got = reduce(p)
    assert not isinstance(got, fo.Parameter)
    assert got == reduce(np.arange(1.0, 7.0).reshape(3, 2))


def test_parameter_in_place_ops_keep_it():
    a = np.arange(4.0)
    p = fo.Parameter(a)
    g = np.ones(4)
    p.grad = g
    ident = id(p)
    p -= 1
    assert id(p) == ident and isinstance(p, fo.Parameter)
    assert np.array_equal(a, np.arange(4.0) - 1)
    p *= 2
    np.add(p, 0.5, out=p)
    assert id(p) == ident and isinstance(p, fo.Parameter) and p.grad is g
    assert np.array_equal(a, (np.arange(4.0) - 1) * 2 + 0.5)
    p[...] = 3.0
    assert np.array_equal(a, np.full(4, 3.0))


@pytest.mark.parametrize("with_grad", [False, True])
@pytest.mark.parametrize("order", ["C", "F"])
def test_parameter_pickle_and_deepcopy_keep_data_and_grad(with_grad, order):
    a = np.asarray(np.arange(6.0, dtype=np.float32).reshape(2, 3), order=order)
    p = fo.Parameter(a)
    if with_grad:
        p.grad = np.full((2, 3), 0.25, dtype=np.float32)
    for clone in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):
        assert isinstance(clone, fo.Parameter)
        assert clone.dtype == np.float32 and clone.shape == (2, 3)
        assert np.array_equal(clone, a)
        assert not np.shares_memory(clone, a)
        if with_grad:
            assert clone.grad is not p.grad and np.array_equal(clone.grad, p.grad)
            assert not np.shares_memory(clone.grad, p.grad)
            assert clone.grad.dtype == np.float32
        else:
            assert clone.grad is None
    pair = copy.deepcopy([p, p])
    assert pair[0] is pair[1]  # deepcopy's memo keeps shared references shared


# --------------------------------------------------------------------------------------------
# forms of params


def test_params_as_list_of_arrays():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(3), rng.standard_normal((2, 2))
    start = [a.copy(), b.copy()]
    grads = [[rng.standard_normal(3), rng.standard_normal((2, 2))] for _ in range(4)]
    opt = fo.SGD([a, b], lr=0.1, momentum=0.5)
    assert len(opt.param_groups) == 1
    assert opt.param_groups[0]["params"][0] is a and opt.param_groups[0]["params"][1] is b
    for gs in grads:
        opt.step(grads=gs)
    for k, x in enumerate((a, b)):
        want = sgd_reference(start[k], [gs[k] for gs in grads], 0.1, 0.5)
        np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-14)


def test_params_as_generator_of_parameters():
    ps = [fo.Parameter(np.ones(2)), fo.Parameter(np.ones(3))]
    opt = fo.SGD((p for p in ps), lr=0.5)
    for p in ps:
        p.grad = np.ones(p.shape)
    opt.step()
    assert all(np.array_equal(p, np.full(p.shape, 0.5)) for p in ps)


def test_param_groups_with_their_own_lr():
    rng = np.random.default_rng(1)
    a, b, c = rng.standard_normal(3), rng.standard_normal(4), rng.standard_normal(2)
    start = [a.copy(), b.copy(), c.copy()]
    opt = fo.SGD(
        [{"params": [a, b]}, {"params": [c], "lr": 0.01, "weight_decay": 0.5}],
        lr=0.1,
        momentum=0.9,
    )
    g0, g1 = opt.param_groups
    assert (g0["lr"], g1["lr"]) == (0.1, 0.01)
    assert (g0["weight_decay"], g1["weight_decay"]) == (0, 0.5)
    assert g1["momentum"] == 0.9  # missing keys take the defaults
    grads = [[rng.standard_normal(x.shape) for x in (a, b, c)] for _ in range(5)]
    for gs in grads:
        opt.step(grads=gs)
    settings = [(0.1, 0.0), (0.1, 0.0), (0.01, 0.5)]
    for k, (x, (lr, wd)) in enumerate(zip((a, b, c), settings)):
        want = sgd_reference(start[k], [gs[k] for gs in grads], lr, 0.9, wd)
        np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-14)


def test_params_as_dict_of_names():
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    start = [w.copy(), b.copy()]
    opt = fo.Adam({"layer.weight": w, "layer.bias": b}, lr=0.1)
    group = opt.param_groups[0]
    assert group["param_names"] == ["layer.weight", "layer.bias"]
    assert group["params"][0] is w and group["params"][1] is b
    sgd = fo.SGD({"w": w, "b": b}, lr=0.1)
    grads = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    w[...], b[...] = start
    sgd.step(grads=grads)
    np.testing.assert_allclose(w, start[0] - 0.1 * grads[0], rtol=1e-12)
    np.testing.assert_allclose(b, start[1] - 0.1 * grads[1], rtol=1e-12)


def test_named_params_match_torch_param_names():
    t = {"a": torch.nn.Parameter(torch.zeros(2)), "b": torch.nn.Parameter(torch.zeros(3))}
    topt = torch.optim.SGD(t.items(), lr=0.1)
    opt = fo.SGD({"a": np.zeros(2), "b": np.zeros(3)}, lr=0.1)
    assert opt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"]
    opt2 = fo.SGD([{"params": [("a", np.zeros(2)), ("b", np.zeros(3))], "lr": 0.2}])
    assert opt2.param_groups[0]["param_names"] == ["a", "b"]


def test_empty_param_list_is_rejected():
    for cls in ALL:
        with pytest.raises(ValueError):
            cls([])
        with pytest.raises(ValueError):
            cls(iter([]))


@pytest.mark.parametrize("cls", ALL)
def test_a_set_of_params_is_rejected(cls):
    """The order of a set changes between runs; torch deprecates it, ferroptim refuses it."""
    ps = {fo.Parameter(np.zeros(2)), fo.Parameter(np.zeros(3))}
    with pytest.raises(TypeError):
        cls([{"params": ps}])
    with pytest.raises(TypeError):
        cls(frozenset(ps))
    with pytest.raises(TypeError):
        cls(ps)


@pytest.mark.parametrize("cls", ALL)
def test_a_single_array_is_rejected(cls):
    with pytest.raises(TypeError):
        cls(np.zeros(3))


# --------------------------------------------------------------------------------------------
# add_param_group, zero_grad, closures, skipped params


@pytest.mark.parametrize("cls", ALL)
def test_add_param_group_fills_defaults(cls):
    p, q = fo.Parameter(np.zeros(2)), fo.Parameter(np.zeros(3))
    opt = cls([p], lr=0.5)
    opt.add_param_group({"params": [q], "weight_decay": 0.25})
    assert len(opt.param_groups) == 2
    new = opt.param_groups[1]
    assert new["params"] == [q] and new["params"][0] is q
    assert new["lr"] == 0.5 and new["weight_decay"] == 0.25
    assert set(new) == set(opt.defaults) | {"params"}
    for k, v in opt.defaults.items():
        if k != "weight_decay":
            assert new[k] == v


@pytest.mark.parametrize("cls", ALL)
def test_add_param_group_rejects_a_param_already_present(cls):
    p, q = fo.Parameter(np.zeros(2)), fo.Parameter(np.zeros(3))
    opt = cls([p])
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [p]})
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [q, p]})
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [q, q]})
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == [p]
    opt.add_param_group({"params": [q]})  # q alone is fine afterwards
    assert len(opt.param_groups) == 2


def test_add_param_group_then_step_against_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(3), rng.standard_normal(2)
    start_b = b.copy()
    opt = fo.SGD([a], lr=0.1, momentum=0.9)
    opt.step(grads=[rng.standard_normal(3)])
    opt.add_param_group({"params": [b], "lr": 0.02})
    grads = [rng.standard_normal(2) for _ in range(3)]
    for g in grads:
        opt.step(grads=[None, g])
    np.testing.assert_allclose(b, sgd_reference(start_b, grads, 0.02, 0.9), rtol=1e-12)


@pytest.mark.parametrize("cls", ALL)
def test_zero_grad(cls):
    p, q = fo.Parameter(np.zeros(2)), fo.Parameter(np.zeros(3, dtype=np.float32))
    opt = cls([p, q])
    gp, gq = np.ones(2), np.ones(3, dtype=np.float32)
    p.grad, q.grad = gp, gq
    opt.zero_grad(set_to_none=False)
    assert p.grad is gp and q.grad is gq  # zeroed in place, same objects
    assert np.array_equal(gp, np.zeros(2)) and np.array_equal(gq, np.zeros(3))
    assert gq.dtype == np.float32
    gp[...] = 5.0
    opt.zero_grad()  # torch's default: set_to_none=True
    assert p.grad is None and q.grad is None
    assert np.array_equal(gp, np.full(2, 5.0))  # the old array is not touched
    opt.zero_grad(set_to_none=False)  # with grads already None: nothing to do
    assert p.grad is None and q.grad is None


@pytest.mark.parametrize("cls", ALL)
def test_closure_value_is_returned(cls):
    p = fo.Parameter(np.ones(3))
    opt = cls([p])
    calls = []

    def closure():
        calls.append(1)
        p.grad = np.full(3, 0.5)
        return 1.25

    assert opt.step(closure) == 1.25
    assert calls == [1]
    assert not np.array_equal(p, np.ones(3))  # the gradient set by the closure was used
    assert opt.step() is None
    p.grad = None
    sentinel = object()
    assert opt.step(lambda: sentinel) is sentinel


def test_closure_gradient_is_used_sgd():
    p = fo.Parameter(np.array([1.0, -2.0]))

    def closure():
        p.grad = 2 * np.asarray(p)  # d/dp ||p||^2
        return float(np.sum(np.asarray(p) ** 2))

    opt = fo.SGD([p], lr=0.1)
    assert opt.step(closure) == 5.0
    np.testing.assert_allclose(p, [0.8, -1.6], rtol=1e-15)


CONFIGS = [
    (fo.SGD, {"momentum": 0.9, "weight_decay": 0.1}),
    (fo.Adagrad, {"weight_decay": 0.1}),
    (fo.RMSprop, {"momentum": 0.9, "centered": True, "weight_decay": 0.1}),
    (fo.Adadelta, {"weight_decay": 0.1}),
    (fo.Adam, {"weight_decay": 0.1, "amsgrad": True}),
    (fo.AdamW, {}),
    (fo.NAdam, {"weight_decay": 0.1}),
    (fo.RAdam, {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    (fo.Adamax, {"weight_decay": 0.1}),
    (fo.Lion, {"weight_decay": 0.1}),
    (fo.AdagradNorm, {"weight_decay": 0.1}),
    (fo.AdagradNorm, {"scope": "tensor"}),
]


def _arrays_equal(a, b) -> bool:
    if isinstance(a, dict):
        return set(a) == set(b) and all(_arrays_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_arrays_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_step_with_all_grads_none_changes_nothing(cls, kwargs):
    """No update, no weight decay, no state change (torch skips params without grad)."""
    ps = [fo.Parameter(np.linspace(-1, 1, 4)), fo.Parameter(np.linspace(1, 2, 3))]
    opt = cls(ps, **kwargs)
    fresh = opt.state_dict()
    opt.step()
    opt.step(grads=[None, None])
    assert _arrays_equal(opt.state_dict(), fresh)
    assert np.array_equal(ps[0], np.linspace(-1, 1, 4))
    for p in ps:
        p.grad = np.ones(p.shape)
    opt.step()
    opt.zero_grad()
    before = opt.state_dict()
    values = [p.copy() for p in ps]
    opt.step()
    opt.step(grads=[None, None])
    assert _arrays_equal(opt.state_dict(), before)
    assert all(np.array_equal(p, v) for p, v in zip(ps, values))


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_param_without_grad_is_skipped(cls, kwargs):
    """A None gradient skips that parameter only: it and its state stay as they were."""
    ps = [fo.Parameter(np.linspace(-1, 1, 4)), fo.Parameter(np.linspace(1, 2, 3))]
    opt = cls(ps, **kwargs)
    opt.step(grads=[np.ones(4), np.ones(3)])
    kept = ps[1].copy()
    state = copy.deepcopy(opt.state_dict()["state"].get(1))
    moved = ps[0].copy()
    opt.step(grads=[np.ones(4), None])
    assert np.array_equal(ps[1], kept)
    assert not np.array_equal(ps[0], moved)
    if cls is fo.AdagradNorm and kwargs.get("scope", "global") == "global":
        return  # b_sq lives in the first parameter's state and changed with it
    assert _arrays_equal(opt.state_dict()["state"].get(1), state)


def test_param_groups_edits_take_effect_at_next_step():
    rng = np.random.default_rng(4)
    a = rng.standard_normal(5)
    theta = a.copy()
    opt = fo.SGD([a], lr=0.1, momentum=0.9)
    buf = None
    schedule = [(0.1, 0.9, 0.0)] * 3 + [(0.05, 0.5, 0.0)] * 2 + [(0.05, 0.5, 0.2)] * 2
    for lr, mu, wd in schedule:
        group = opt.param_groups[0]
        group["lr"], group["momentum"], group["weight_decay"] = lr, mu, wd
        g = rng.standard_normal(5)
        opt.step(grads=[g])
        d = g + wd * theta
        buf = d.copy() if buf is None else mu * buf + d
        theta = theta - lr * buf
        np.testing.assert_allclose(a, theta, rtol=1e-12, atol=1e-14)


def test_adam_lr_edit_takes_effect_at_next_step():
    """Adam with a per-step learning rate against the NumPy form of Algorithm 1."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal(4)
    theta, m, v = a.copy(), np.zeros(4), np.zeros(4)
    opt = fo.Adam([a], lr=1e-3)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t, lr in enumerate([1e-3, 1e-3, 0.1, 0.1, 0.02], start=1):
        opt.param_groups[0]["lr"] = lr
        g = rng.standard_normal(4)
        opt.step(grads=[g])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(a, theta, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------
# defaults, repr, state keys: against torch.optim

PAIRS = [
    (fo.SGD, torch.optim.SGD, {}),
    (fo.SGD, torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "lr": 0.5}),
    (fo.Adagrad, torch.optim.Adagrad, {}),
    (fo.Adagrad, torch.optim.Adagrad, {"lr_decay": 0.1, "initial_accumulator_value": 0.2}),
    (fo.RMSprop, torch.optim.RMSprop, {}),
    (fo.RMSprop, torch.optim.RMSprop, {"momentum": 0.9, "centered": True}),
    (fo.Adadelta, torch.optim.Adadelta, {}),
    (fo.Adam, torch.optim.Adam, {}),
    (fo.Adam, torch.optim.Adam, {"amsgrad": True, "betas": (0.8, 0.99), "maximize": True}),
    (fo.AdamW, torch.optim.AdamW, {}),
    (fo.AdamW, torch.optim.AdamW, {"amsgrad": True, "weight_decay": 0.5}),
    (fo.NAdam, torch.optim.NAdam, {}),
    (fo.NAdam, torch.optim.NAdam, {"momentum_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    (fo.RAdam, torch.optim.RAdam, {}),
    (fo.RAdam, torch.optim.RAdam, {"decoupled_weight_decay": True, "betas": (0.8, 0.99)}),
    (fo.Adamax, torch.optim.Adamax, {}),
    (fo.Adamax, torch.optim.Adamax, {"weight_decay": 0.1, "maximize": True}),
]
PAIR_IDS = [f"{f.__name__}-{'-'.join(k) or 'default'}" for f, _, k in PAIRS]
# Not in torch: RMSprop's eps_in_sqrt, and the bfloat16 state option (state_dtype, seed).
LOW_PRECISION = {"state_dtype", "seed"}
#: Every optimizer's gradient settings (tests/test_grad_scaling.py); torch has none of them.
GRAD_SETTINGS = {"grad_scale", "max_grad_norm", "skip_nonfinite"}
FO_ONLY = {
    fo.RMSprop: {"eps_in_sqrt"} | LOW_PRECISION,
    fo.SGD: LOW_PRECISION,
    fo.Adagrad: LOW_PRECISION,
    fo.Adam: LOW_PRECISION,
    fo.AdamW: LOW_PRECISION,
}


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), PAIRS, ids=PAIR_IDS)
def test_defaults_match_torch(ours, theirs, kwargs):
    opt = ours([np.zeros(2)], **kwargs)
    topt = theirs([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    want = {k: v for k, v in topt.defaults.items() if k not in TORCH_ONLY}
    got = {k: v for k, v in opt.defaults.items() if k not in (FO_ONLY.get(ours, set()) | GRAD_SETTINGS)}
    assert got == want
    assert [type(got[k]) for k in sorted(got)] == [type(want[k]) for k in sorted(want)]
    assert (FO_ONLY.get(ours, set()) | GRAD_SETTINGS) <= set(opt.defaults)


def test_defaults_of_adagrad_norm():
    opt = fo.AdagradNorm([np.zeros(2)])
    assert opt.defaults == {
        "lr": 1.0,
        "b0": 0.01,
        "weight_decay": 0,
        "scope": "global",
        "maximize": False,
        "grad_scale": None,
        "max_grad_norm": None,
        "skip_nonfinite": False,
    }
    assert fo.RMSprop([np.zeros(2)]).defaults["eps_in_sqrt"] is False


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), PAIRS, ids=PAIR_IDS)
def test_repr_matches_torch_format(ours, theirs, kwargs):
    p = np.zeros(2)
    opt = ours([p], **kwargs)
    opt.add_param_group({"params": [np.zeros(3)], "lr": 0.125})
    topt = theirs([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    topt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 0.125})
    text = repr(opt)
    assert text.startswith(ours.__name__ + " (\n")
    assert "Parameter Group 0" in text and "Parameter Group 1" in text
    assert text.endswith("\n)")
    skipped = TORCH_ONLY | (FO_ONLY.get(ours, set()) | GRAD_SETTINGS)
    want = [
        line for line in repr(topt).splitlines() if not any(line.startswith(f"    {k}:") for k in skipped)
    ]
    got = [
        line
        for line in text.splitlines()
        if not any(line.startswith(f"    {k}:") for k in (FO_ONLY.get(ours, set()) | GRAD_SETTINGS))
    ]
    assert got == want
    assert "    lr: 0.125" in text


def test_repr_of_adagrad_norm():
    text = repr(fo.AdagradNorm([np.zeros(2)], lr=0.5, scope="group"))
    assert text.startswith("AdagradNorm (") and "Parameter Group 0" in text
    for line in ("    lr: 0.5", "    b0: 0.01", "    scope: group", "    maximize: False"):
        assert line in text.splitlines()


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), PAIRS, ids=PAIR_IDS)
def test_state_keys_match_torch(ours, theirs, kwargs):
    rng = np.random.default_rng(6)
    g = rng.standard_normal(3)
    a = np.zeros(3)
    opt = ours([a], **kwargs)
    t = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    topt = theirs([t], foreach=False, **kwargs)
    for _ in range(2):
        opt.step(grads=[g])
        t.grad = torch.from_numpy(g.copy())
        topt.step()
    want = {k for k, v in topt.state[t].items() if v is not None}
    assert set(opt.state.get(a, {})) == want
    for k in want:
        if k == "step":
            assert isinstance(opt.state[a]["step"], float) and opt.state[a]["step"] == 2.0
        elif k == "mu_product":  # NAdam's: a float holding torch's float32 0-d tensor's value
            assert isinstance(opt.state[a][k], float) and opt.state[a][k] == float(topt.state[t][k])
        else:
            got = opt.state[a][k]
            assert isinstance(got, np.ndarray) and got.shape == (3,) and got.dtype == np.float64


def test_state_is_keyed_by_plain_ndarray_identity():
    a, b = np.zeros(3), np.zeros(3)
    opt = fo.Adam([a, b], lr=0.1)
    g = np.array([1.0, -2.0, 0.5])
    opt.step(grads=[g, None])
    assert a in opt.state and b not in opt.state
    assert np.zeros(3) not in opt.state  # equal values, different object
    np.testing.assert_allclose(opt.state[a]["exp_avg"], 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(opt.state[a]["exp_avg_sq"], 0.001 * g * g, rtol=1e-15)
    assert opt.state[a]["step"] == 1.0
    assert list(opt.state) == [a] and len(opt.state) == 1
    assert opt.state.get(b) is None and b not in opt.state  # get and `in` insert nothing
    # As torch's defaultdict(dict): a parameter without state reads as {}.
    held = opt.state[b]
    assert held == {} and b in opt.state
    opt.step(grads=[None, g])
    assert held is opt.state[b] and held["step"] == 1.0  # the held dict is the live state
    assert opt.state[b]["step"] == 1.0 and opt.state[a]["step"] == 1.0


def test_state_works_for_parameters_and_mixed():
    p, a = fo.Parameter(np.zeros(2)), np.zeros(2)
    opt = fo.SGD([p, a], lr=0.1, momentum=0.9)
    opt.step(grads=[np.ones(2), np.full(2, 2.0)])
    assert np.array_equal(opt.state[p]["momentum_buffer"], np.ones(2))
    assert np.array_equal(opt.state[a]["momentum_buffer"], np.full(2, 2.0))


def test_adagrad_uses_each_groups_initial_accumulator_value():
    """A deliberate difference from torch, which fills every group's ``sum`` from the
    constructor's value: here a group's own ``initial_accumulator_value`` is used, and the
    step is the lecture's ``theta - lr g / (sqrt(sum) + eps)`` with ``sum`` starting there."""
    a, b = np.zeros(3), np.zeros(3)
    opt = fo.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 4.0}], lr=0.5)
    assert np.array_equal(opt.state[a]["sum"], np.zeros(3))
    assert np.array_equal(opt.state[b]["sum"], np.full(3, 4.0))
    g = np.array([1.0, -2.0, 3.0])
    opt.step(grads=[g, g])
    np.testing.assert_allclose(b, -0.5 * g / (np.sqrt(4.0 + g * g) + 1e-10), rtol=1e-15)
    np.testing.assert_allclose(a, -0.5 * g / (np.sqrt(g * g) + 1e-10), rtol=1e-15)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copied_optimizer_continues_like_the_original(how):
    """A deep-copied or unpickled optimizer keeps its state attached to its own copies of
    the parameters (state is keyed by identity, which copying changes)."""
    import copy
    import pickle

    rng = np.random.default_rng(3)
    params = [fo.Parameter(rng.standard_normal(4)), fo.Parameter(rng.standard_normal((2, 3)))]
    opt = fo.Adam(params, lr=0.1)
    for p in params:
        p.grad = rng.standard_normal(p.shape)
    opt.step()
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    twin_params = twin.param_groups[0]["params"]
    assert all(tp is not p and np.array_equal(tp, p) for tp, p in zip(twin_params, params))
    assert all(tp in twin.state and twin.state[tp]["step"] == 1.0 for tp in twin_params)
    grads = [rng.standard_normal(p.shape) for p in params]
    opt.step(grads=grads)
    twin.step(grads=grads)
    for p, tp in zip(params, twin_params):
        assert np.array_equal(p, tp)
        assert np.array_equal(opt.state[p]["exp_avg_sq"], twin.state[tp]["exp_avg_sq"])


def test_numpy_scalar_hyperparameters_and_list_betas_are_accepted():
    """As torch: hyperparameters read from NumPy configs, and betas edited to a list."""
    a = np.zeros(3)
    opt = fo.Adam([a], lr=np.float32(0.5), betas=(np.float64(0.9), 0.99), eps=np.float64(1e-8))
    opt.param_groups[0]["betas"] = [0.0, 0.5]
    g = np.array([1.0, -2.0, 4.0])
    opt.step(grads=[g])
    # beta1 = 0, beta2 = 0.5, t = 1: m_hat = g, v_hat = g^2, theta = -lr * g / (|g| + eps)
    np.testing.assert_allclose(a, -0.5 * g / (np.abs(g) + 1e-8), rtol=1e-7)


def test_np_function_with_out_returns_the_parameter():
    p = fo.Parameter(np.array([-1.0, 0.25, 2.0]))
    assert np.clip(p, 0.0, 0.5, out=p) is p
    np.testing.assert_array_equal(p, [0.0, 0.25, 0.5])


def test_zero_grad_reaches_every_group():
    p, q = fo.Parameter(np.zeros(2)), fo.Parameter(np.zeros(3))
    opt = fo.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}])
    for set_to_none in (True, False):
        p.grad, q.grad = np.ones(2), np.ones(3)
        held = q.grad
        opt.zero_grad(set_to_none=set_to_none)
        if set_to_none:
            assert p.grad is None and q.grad is None
        else:
            assert q.grad is held and not q.grad.any() and not p.grad.any()


def test_the_callers_group_dict_is_the_group():
    """As torch: the dict passed in becomes the param group, defaults filled in, so
    edits through the caller's reference take effect."""
    p = np.zeros(2)
    group = {"params": [p], "lr": 0.5}
    opt = fo.SGD([group])
    assert opt.param_groups[0] is group and group["momentum"] == 0
    group["lr"] = 0.25
    opt.step(grads=[np.ones(2)])
    np.testing.assert_array_equal(p, [-0.25, -0.25])


def test_state_dict_ignores_a_stray_state_lookup():
    """opt.state[x] for an x that is not a parameter (here the array a Parameter wraps)
    inserts an empty entry, as torch's defaultdict does; state_dict() leaves it out."""
    w_data = np.zeros(3)
    w = fo.Parameter(w_data)
    opt = fo.Adam([w])
    w.grad = np.ones(3)
    opt.step()
    assert opt.state[w_data] == {}
    sd = opt.state_dict()
    assert list(sd["state"]) == [0] and sd["state"][0]["step"] == 1.0


def test_non_dict_state_is_refused():
    """A parameter's state must be a dict: assigning anything else fails at once, so a
    step can never update parameters and then fail to record their state."""
    a, b = np.zeros(2), np.zeros(2)
    opt = fo.Adam([a, b], lr=0.1)
    opt.step(grads=[np.ones(2), np.ones(2)])
    with pytest.raises(TypeError, match="must be a dict"):
        opt.state[b] = None
    assert opt.state[b]["step"] == 1.0


def test_momentum_buffer_reset_to_none_starts_afresh_as_torch():
    p, tp = np.zeros(3), torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt, topt = fo.SGD([p], lr=0.1, momentum=0.9), torch.optim.SGD([tp], lr=0.1, momentum=0.9)
    for k in range(4):
        g = np.array([1.0, -2.0, 0.5]) * (k + 1)
        if k == 2:
            opt.state[p]["momentum_buffer"] = None
            topt.state[tp]["momentum_buffer"] = None
        tp.grad = torch.from_numpy(g.copy())
        opt.step(grads=[g])
        topt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-14)


def test_required_state_set_to_none_names_it():
    p = np.zeros(2)
    opt = fo.RMSprop([p])
    opt.step(grads=[np.ones(2)])
    opt.state[p]["square_avg"] = None
    with pytest.raises(ValueError, match="'square_avg' of param_groups"):
        opt.step(grads=[np.ones(2)])


def test_hyperparameter_problems_are_named_and_early():
    p = np.zeros(2)
    opt = fo.SGD([p], lr=0.1, momentum=0.5)
    opt.param_groups[0]["momentum"] = None
    with pytest.raises(TypeError, match=r"param_groups\[0\]: 'momentum'"):
        opt.step(grads=[np.ones(2)])
    with pytest.raises(ValueError, match="does not fit in a float"):
        fo.SGD([np.zeros(2)], lr=10**400)
    opt = fo.Adam([np.zeros(2)], lr=np.array(0.01))  # a converted torch tensor lr
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == 0.01


def test_loaded_param_names_replace_the_current_ones_as_torch():
    a = np.zeros(2)
    opt = fo.SGD({"w": a}, lr=0.1)
    sd = opt.state_dict()
    sd["param_groups"][0]["param_names"] = ["layer.w"]
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["param_names"] == ["layer.w"]


@pytest.mark.parametrize(
    "op",
    [
        lambda p: p.dot(p),
        lambda p: p.view(),
        lambda p: p.swapaxes(0, 1),
        lambda p: p.take([0, 1]),
        lambda p: p.diagonal(),
        lambda p: p.squeeze(),
        lambda p: p.repeat(2),
    ],
)
def test_array_methods_return_plain_arrays(op):
    p = fo.Parameter(np.arange(4.0).reshape(2, 2))
    result = op(p)
    assert type(result) is np.ndarray or np.isscalar(result)
