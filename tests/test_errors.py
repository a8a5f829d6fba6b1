"""Bad input: every error has the right type, names the parameter, and changes nothing.

Each step-time check runs on an optimizer that has already stepped (so state exists), with
three parameters over two groups and both dtypes: ``p0`` (float64, 4x3) and ``p1`` (float32,
6) in group 0, ``p2`` (float64, 4x3) in group 1. Parameters, gradients and ``state_dict()``
are snapshotted before the failing call and compared bit for bit afterwards; then one valid
step must give exactly what an identical optimizer that never saw the error gives.

Also: inputs that look suspicious but are allowed (mixed dtypes, interleaved views, one
gradient array shared by two parameters, read-only gradients) work and update correctly,
and NaN/Inf gradients propagate as in torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

# --------------------------------------------------------------------------------------------
# helpers


def site(group: int, index: int) -> str:
    return f"param_groups[{group}]['params'][{index}]"


#: Where each of the three parameters sits, and how the message names it.
SITES = [site(0, 0), site(0, 1), site(1, 0)]
ANY_SITE = r"param_groups\[\d\]\['params'\]\[\d\]"

CONFIGS = [
    pytest.param(fo.SGD, {"lr": 0.1, "momentum": 0.9}, id="SGD"),
    pytest.param(fo.Adagrad, {"lr": 0.1, "lr_decay": 0.01}, id="Adagrad"),
    pytest.param(fo.RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True}, id="RMSprop"),
    pytest.param(fo.Adadelta, {"weight_decay": 0.1}, id="Adadelta"),
    pytest.param(fo.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}, id="Adam"),
    pytest.param(fo.AdamW, {"lr": 0.01}, id="AdamW"),
    pytest.param(fo.NAdam, {"lr": 0.01, "weight_decay": 0.1}, id="NAdam"),
    pytest.param(fo.RAdam, {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}, id="RAdam"),
    pytest.param(fo.Adamax, {"lr": 0.01}, id="Adamax"),
    pytest.param(fo.Lion, {"lr": 0.01, "weight_decay": 0.1}, id="Lion"),
    pytest.param(fo.AdagradNorm, {"scope": "global"}, id="AdagradNorm-global"),
    pytest.param(fo.AdagradNorm, {"scope": "tensor"}, id="AdagradNorm-tensor"),
]
ALL_CLASSES = [
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


def fresh_grads(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((4, 3)),
        rng.standard_normal(6).astype(np.float32),
        rng.standard_normal((4, 3)),
    ]


def make_stepped(cls: type, kwargs: dict[str, Any], *, plain: bool = False) -> tuple[Any, list]:
    """An optimizer over p0, p1 (group 0) and p2 (group 1) that already took 3 steps; the
    Parameters then hold a valid ``.grad`` for a 4th step."""
    rng = np.random.default_rng(1)
    arrays = [
        rng.standard_normal((4, 3)),
        rng.standard_normal(6).astype(np.float32),
        rng.standard_normal((4, 3)),
    ]
    params = arrays if plain else [fo.Parameter(a) for a in arrays]
    opt = cls([{"params": params[:2]}, {"params": params[2:]}], **kwargs)
    for k in range(3):
        opt.step(grads=fresh_grads(10 + k))
    if not plain:
        for p, g in zip(params, fresh_grads(20)):
            p.grad = g
    return opt, params


def snapshot(opt: Any, params: list) -> dict[str, Any]:
    return {
        "params": [np.array(p, copy=True) for p in params],
        "grads": [None if getattr(p, "grad", None) is None else p.grad.copy() for p in params],
        "state_dict": opt.state_dict(),
    }


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Recursive exact equality; arrays must match in dtype, shape and every bit of value."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


def check_failing_step(
    cls: type,
    kwargs: dict[str, Any],
    act: Callable[[Any, list], Any],
    exc: type,
    match: str,
    *,
    plain: bool = False,
    restore: Callable[[Any, list], None] | None = None,
) -> None:
    """``act(opt, params)`` raises exactly ``exc`` (never a PanicException) with a message
    matching ``match``; nothing changes; a following valid step equals an untouched twin's."""
    opt, params = make_stepped(cls, kwargs, plain=plain)
    twin, twin_params = make_stepped(cls, kwargs, plain=plain)
    before = snapshot(opt, params)
    with pytest.raises(BaseException) as info:
        act(opt, params)
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
    assert re.search(match, str(info.value)), str(info.value)
    assert_same(snapshot(opt, params), before)
    if restore is not None:
        restore(opt, params)
    grads = fresh_grads(30)
    opt.step(grads=grads)
    twin.step(grads=grads)
    for p, q in zip(params, twin_params):
        assert np.array_equal(p, q)
    assert_same(opt.state_dict(), twin.state_dict())


def sgd_momentum_reference(theta, grads, lr, momentum, dampening=0.0, weight_decay=0.0):
    """torch's SGD with momentum, transcribed in NumPy (in the parameter's dtype)."""
    theta = np.array(theta, copy=True)
    dt = theta.dtype.type
    buf = None
    for g in grads:
        g = g + dt(weight_decay) * theta if weight_decay else g.copy()
        if momentum:
            buf = g.copy() if buf is None else dt(momentum) * buf + dt(1 - dampening) * g
            g = buf
        theta = theta - dt(lr) * g
    return theta


def tol(dtype: np.dtype) -> dict[str, float]:
    return {"rtol": 1e-12, "atol": 1e-14} if dtype == np.float64 else {"rtol": 1e-6, "atol": 1e-7}


# --------------------------------------------------------------------------------------------
# wrong dtypes

BAD_PARAM_DTYPES = [np.int64, np.int32, np.complex128, np.float16, np.bool_]


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("dtype", BAD_PARAM_DTYPES)
def test_param_of_wrong_dtype_at_construction(cls, dtype):
    good = np.zeros(3)
    bad = np.zeros(3, dtype=dtype)
    with pytest.raises(TypeError, match=re.escape(site(0, 1))):
        cls([good, bad])
    with pytest.raises(TypeError, match=re.escape(site(1, 0))):
        cls([{"params": [good]}, {"params": [bad]}])
    assert np.array_equal(bad, np.zeros(3, dtype=dtype))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_add_param_group_with_wrong_dtype_changes_nothing(cls):
    opt, params = make_stepped(cls, {})
    before = snapshot(opt, params)
    with pytest.raises(TypeError, match=re.escape(site(2, 0))):
        opt.add_param_group({"params": [np.zeros(3, dtype=np.int64)]})
    assert len(opt.param_groups) == 2
    assert_same(snapshot(opt, params), before)


# (target parameter, gradient dtype): p0/p2 are float64, p1 is float32.
BAD_GRAD_DTYPES = [
    (0, np.float32),
    (0, np.float16),
    (0, np.int64),
    (0, np.complex128),
    (1, np.float64),
    (1, np.float16),
    (1, np.int32),
    (1, np.complex64),
    (2, np.float32),
    (2, np.int64),
]


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize(("target", "dtype"), BAD_GRAD_DTYPES)
def test_grad_of_wrong_dtype(cls, kwargs, target, dtype):
    def act(opt, params):
        grads = [p.grad for p in params]
        grads[target] = np.ones(params[target].shape, dtype=dtype)
        opt.step(grads=grads)

    check_failing_step(cls, kwargs, act, TypeError, re.escape(SITES[target]))


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("target", [0, 1, 2])
@pytest.mark.parametrize("bad", [[1.0, 2.0], 3.0, "grad", object()], ids=["list", "float", "str", "object"])
def test_non_array_grad(cls, kwargs, target, bad):
    def act(opt, params):
        grads = [p.grad for p in params]
        grads[target] = bad
        opt.step(grads=grads)

    check_failing_step(cls, kwargs, act, TypeError, re.escape(SITES[target]))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_grad_setter_rejects_wrong_dtype(cls):
    opt, params = make_stepped(cls, {})
    with pytest.raises(TypeError):
        params[1].grad = np.ones(6, dtype=np.float64)
    with pytest.raises(TypeError):
        params[0].grad = np.ones((4, 3), dtype=np.int64)
    with pytest.raises(TypeError):
        params[0].grad = [[0.0] * 3] * 4


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_mixed_dtypes_across_params_are_allowed(cls, kwargs):
    """float32 and float64 parameters in one optimizer (and one group) both update; each
    keeps its dtype and its state has its dtype."""
    rng = np.random.default_rng(5)
    a64 = rng.standard_normal((3, 2))
    a32 = rng.standard_normal(5).astype(np.float32)
    opt = cls([a64, a32], **kwargs)
    ref64 = cls([a64.copy()], **kwargs)
    ref32 = cls([a32.copy()], **kwargs)
    for _ in range(4):
        g64, g32 = rng.standard_normal((3, 2)), rng.standard_normal(5).astype(np.float32)
        opt.step(grads=[g64, g32])
        ref64.step(grads=[g64])
        ref32.step(grads=[g32])
    assert a64.dtype == np.float64 and a32.dtype == np.float32
    for p, ref in ((a64, ref64), (a32, ref32)):
        if cls is fo.AdagradNorm and kwargs["scope"] == "global":
            continue  # one b over both tensors: not separable; see the SGD test below
        np.testing.assert_allclose(p, ref.param_groups[0]["params"][0], **tol(p.dtype))
        for value in opt.state.get(p, {}).values():
            if isinstance(value, np.ndarray):
                assert value.dtype == p.dtype


@pytest.mark.parametrize("nesterov", [False, True])
def test_mixed_dtypes_sgd_against_numpy(nesterov):
    rng = np.random.default_rng(6)
    a64 = rng.standard_normal((3, 2))
    a32 = rng.standard_normal(5).astype(np.float32)
    start64, start32 = a64.copy(), a32.copy()
    p64, p32 = fo.Parameter(a64), fo.Parameter(a32)
    opt = fo.SGD([p64, p32], lr=0.05, momentum=0.8, nesterov=nesterov, weight_decay=0.01)
    grads64 = [rng.standard_normal((3, 2)) for _ in range(6)]
    grads32 = [rng.standard_normal(5).astype(np.float32) for _ in range(6)]
    for g64, g32 in zip(grads64, grads32):
        p64.grad, p32.grad = g64, g32
        opt.step()
    for start, grads, got in ((start64, grads64, a64), (start32, grads32, a32)):
        dt = start.dtype.type
        theta, buf = start.copy(), None
        for g in grads:
            g = g + dt(0.01) * theta
            buf = g.copy() if buf is None else dt(0.8) * buf + g
            theta = theta - dt(0.05) * (g + dt(0.8) * buf if nesterov else buf)
        np.testing.assert_allclose(got, theta, **tol(got.dtype))


# --------------------------------------------------------------------------------------------
# shapes, read-only arrays


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize(
    ("target", "shape"),
    [(0, (3, 4)), (0, (12,)), (0, (4, 3, 1)), (1, (7,)), (1, ()), (2, (4, 2)), (2, (0,))],
)
def test_grad_shape_mismatch(cls, kwargs, target, shape):
    def act(opt, params):
        grads = [p.grad for p in params]
        grads[target] = np.ones(shape, dtype=params[target].dtype)
        opt.step(grads=grads)

    check_failing_step(cls, kwargs, act, ValueError, re.escape(SITES[target]))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_read_only_param_at_construction(cls):
    good, bad = np.zeros(3), np.zeros(3)
    bad.flags.writeable = False
    with pytest.raises(ValueError, match=re.escape(site(0, 1))):
        cls([good, bad])
    view = np.broadcast_to(np.zeros(3), (2, 3))  # read-only by construction
    with pytest.raises(ValueError, match=re.escape(site(1, 0))):
        cls([{"params": [good]}, {"params": [view]}])


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("target", [0, 1, 2])
def test_param_made_read_only_after_construction(cls, kwargs, target):
    """Nothing changes, including the parameters that come before it in the same step."""

    def act(opt, params):
        params[target].flags.writeable = False
        opt.step()

    def restore(opt, params):
        params[target].flags.writeable = True

    check_failing_step(
        cls, kwargs, act, ValueError, re.escape(SITES[target]) + ".*read-only", restore=restore
    )


#: The configurations whose state holds arrays (AdagradNorm keeps one float per scope).
WITH_STATE_ARRAYS = [c for c in CONFIGS if c.values[0] is not fo.AdagradNorm]


@pytest.mark.parametrize(("cls", "kwargs"), WITH_STATE_ARRAYS)
def test_read_only_state_array(cls, kwargs):

    def act(opt, params):
        arrays = [v for v in opt.state[params[2]].values() if isinstance(v, np.ndarray)]
        arrays[-1].flags.writeable = False
        opt.step()

    def restore(opt, params):
        for v in opt.state[params[2]].values():
            if isinstance(v, np.ndarray):
                v.flags.writeable = True

    check_failing_step(cls, kwargs, act, ValueError, re.escape(SITES[2]), restore=restore)


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_read_only_grad_is_allowed(cls, kwargs):
    opt, params = make_stepped(cls, kwargs)
    twin, twin_params = make_stepped(cls, kwargs)
    grads = fresh_grads(40)
    frozen = [g.copy() for g in grads]
    for g in frozen:
        g.flags.writeable = False
    opt.step(grads=frozen)
    twin.step(grads=grads)
    for p, q in zip(params, twin_params):
        assert np.array_equal(p, q)
    assert_same(opt.state_dict(), twin.state_dict())


# --------------------------------------------------------------------------------------------
# aliasing


def _twice(a):
    return [a, a]


def _twice_in_groups(a):
    return [{"params": [a]}, {"params": [np.zeros(2), a]}]


def _overlapping_slices(a):
    return [a[:5], a[3:8]]


def _view_and_base(a):
    return [a, a[2:4]]


def _parameter_and_its_array(a):
    return [a, fo.Parameter(a)]


def _reversed_view(a):
    return [a[:6], a[::-1][4:6]]  # a[::-1][4:6] is a[5:3:-1], inside a[:6]


def _transpose(a):
    m = a[:9].reshape(3, 3)
    return [m, m.T]


def _crossing_2d(a):
    m = a.reshape(2, 5)
    return [m[:, 1:3], m[1, :]]


OVERLAPS = [
    _twice,
    _twice_in_groups,
    _overlapping_slices,
    _view_and_base,
    _parameter_and_its_array,
    _reversed_view,
    _transpose,
    _crossing_2d,
]


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("build", OVERLAPS, ids=lambda f: f.__name__.strip("_"))
def test_overlapping_params_at_construction(cls, build):
    a = np.arange(10.0)
    with pytest.raises(BaseException) as info:
        cls(build(a))
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert np.array_equal(a, np.arange(10.0))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_overlapping_views_message_names_the_param(cls):
    a = np.arange(10.0)
    with pytest.raises(ValueError, match=re.escape(site(0, 2))):
        cls([np.zeros(2), a[:5], a[3:8]])


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("overlap", [True, False], ids=["overlapping", "already-present"])
def test_add_param_group_rejects_shared_memory(cls, overlap):
    opt, params = make_stepped(cls, {})
    before = snapshot(opt, params)
    new = params[0][1:3] if overlap else params[2]
    with pytest.raises(BaseException) as info:
        opt.add_param_group({"params": [new]})
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert len(opt.param_groups) == 2
    assert_same(snapshot(opt, params), before)


def _interleaved(n=16):
    a = np.linspace(-1.0, 1.0, n)
    return a, [a[::2], a[1::2]]


def _halves():
    a = np.linspace(-1.0, 1.0, 16)
    return a, [a[:8], a[8:]]


def _rows():
    m = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    return m, [m[::2], m[1::2]]


def _columns_interleaved():
    m = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    return m, [m[:, ::2], m[:, 1::2]]


def _column_blocks():
    m = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    return m, [m[:, :3], m[:, 3:]]


def _three_way():
    a = np.linspace(-1.0, 1.0, 18)
    return a, [a[::3], a[1::3], a[2::3]]


def _row_blocks():
    m = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    return m, [m[:2], m[2:]]


DISJOINT = [_interleaved, _halves, _columns_interleaved, _row_blocks, _three_way]
# Disjoint, but their elements interleave so that rust-numpy's borrow checker cannot prove
# it: refused at construction (the documented limitation), never half-updated at a step.
INTERLEAVED = [_rows, _column_blocks]


@pytest.mark.parametrize("build", DISJOINT, ids=lambda f: f.__name__.strip("_"))
def test_disjoint_views_of_one_array_sgd_against_numpy(build):
    """Views that share a buffer but no element are allowed (np.shares_memory is False for
    every pair) and each is updated as SGD-momentum in NumPy says."""
    base, views = build()
    for i in range(len(views)):
        for j in range(i):
            assert not np.shares_memory(views[i], views[j])
    start = [v.copy() for v in views]
    rng = np.random.default_rng(7)
    grads = [[rng.standard_normal(v.shape) for v in views] for _ in range(5)]
    opt = fo.SGD(views, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)
    for gs in grads:
        opt.step(grads=gs)
    for k, v in enumerate(views):
        ref = sgd_momentum_reference(
            start[k], [gs[k] for gs in grads], 0.1, 0.9, dampening=0.1, weight_decay=0.01
        )
        np.testing.assert_allclose(v, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("build", DISJOINT, ids=lambda f: f.__name__.strip("_"))
def test_disjoint_views_of_one_array(cls, kwargs, build):
    """Same, for every class: the views are updated as contiguous copies of them would be."""
    base, views = build()
    copies = [np.ascontiguousarray(v).copy() for v in views]
    opt = cls(views, **kwargs)
    ref = cls(copies, **kwargs)
    rng = np.random.default_rng(8)
    for _ in range(4):
        gs = [rng.standard_normal(v.shape) for v in views]
        opt.step(grads=gs)
        ref.step(grads=gs)
    for v, c in zip(views, copies):
        np.testing.assert_allclose(v, c, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("build", INTERLEAVED, ids=lambda f: f.__name__.strip("_"))
def test_interleaved_views_are_refused_at_construction(cls, build):
    """Views the borrow checker cannot prove disjoint raise a ValueError that says why,
    naming the second parameter, instead of being accepted and refused at every step."""
    base, views = build()
    before = base.copy()
    with pytest.raises(BaseException) as info:
        cls(views)
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert "param_groups[0]['params'][1]" in str(info.value)
    assert "interleaves" in str(info.value)
    assert np.array_equal(base, before)


@pytest.mark.parametrize(
    "split",
    [lambda m: (m[::2], m[1::2]), lambda m: (m[:, :3], m[:, 3:])],
    ids=["interleaved-rows", "column-blocks"],
)
def test_grad_interleaving_with_its_param_is_refused(split):
    """A gradient interleaving with its parameter in one buffer is refused at the step
    with a ValueError, and nothing changes."""
    m = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    param, grad = split(m)
    before = m.copy()
    opt = fo.SGD([param], lr=0.1, momentum=0.9)
    with pytest.raises(BaseException) as info:
        opt.step(grads=[grad])
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert "param_groups[0]['params'][0]" in str(info.value)
    assert np.array_equal(m, before)
    assert len(opt.state) == 0


@pytest.mark.parametrize(
    "split",
    [lambda m: (m[:, ::2], m[:, 1::2]), lambda m: (m[:2], m[2:])],
    ids=["interleaved-columns", "row-blocks"],
)
def test_grad_in_the_params_buffer_but_disjoint_is_allowed(split):
    """A gradient may live in the same buffer as its parameter when no element is shared."""
    m = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    param, grad = split(m)
    assert not np.shares_memory(param, grad)
    start, g = param.copy(), grad.copy()
    opt = fo.SGD([param], lr=0.1, momentum=0.9)
    opt.step(grads=[grad])
    opt.step(grads=[grad])
    want = sgd_momentum_reference(start, [g, g], 0.1, 0.9)
    np.testing.assert_allclose(param, want, rtol=1e-12, atol=1e-14)
    assert np.array_equal(grad, g)


def _grad_is_own_param(opt, params):
    grads = [p.grad for p in params]
    grads[1] = params[1]
    opt.step(grads=grads)


def _grad_is_view_of_own_param(opt, params):
    grads = [p.grad for p in params]
    grads[0] = params[0].view(np.ndarray)[...]
    opt.step(grads=grads)


def _grad_is_reversed_own_param(opt, params):
    grads = [p.grad for p in params]
    grads[1] = params[1][::-1]
    opt.step(grads=grads)


def _grads_swapped_across_groups(opt, params):
    opt.step(grads=[params[2], params[1].grad, params[0]])


def _grad_is_later_param(opt, params):
    opt.step(grads=[params[2], params[1].grad, params[2].grad])


def _grad_is_earlier_param(opt, params):
    opt.step(grads=[params[0].grad, params[1].grad, params[0]])


def _grad_set_to_own_param(opt, params):
    old = params[2].grad
    params[2].grad = params[2]
    try:
        opt.step()
    finally:
        params[2].grad = old


ALIASES = [
    (_grad_is_own_param, re.escape(SITES[1])),
    (_grad_is_view_of_own_param, re.escape(SITES[0])),
    (_grad_is_reversed_own_param, re.escape(SITES[1])),
    (_grads_swapped_across_groups, ANY_SITE),
    (_grad_is_later_param, ANY_SITE),
    (_grad_is_earlier_param, ANY_SITE),
    (_grad_set_to_own_param, re.escape(SITES[2])),
]


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize(("act", "match"), ALIASES, ids=[f.__name__.strip("_") for f, _ in ALIASES])
def test_grad_aliasing_a_param(cls, kwargs, act, match):
    """ValueError (never pyo3's PanicException, a BaseException), and nothing changes."""
    check_failing_step(cls, kwargs, act, ValueError, match)


@pytest.mark.parametrize(("cls", "kwargs"), WITH_STATE_ARRAYS)
def test_grad_aliasing_a_state_array(cls, kwargs):

    def act(opt, params):
        state = next(v for v in opt.state[params[2]].values() if isinstance(v, np.ndarray))
        opt.step(grads=[state, params[1].grad, params[2].grad])

    check_failing_step(cls, kwargs, act, ValueError, ANY_SITE)


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_one_grad_array_for_two_params_is_allowed(cls, kwargs):
    """Gradients are only read, so two parameters may share one gradient array."""
    opt, params = make_stepped(cls, kwargs)
    twin, twin_params = make_stepped(cls, kwargs)
    g = fresh_grads(50)
    opt.step(grads=[g[0], g[1], g[0]])
    twin.step(grads=[g[0].copy(), g[1], g[0].copy()])
    for p, q in zip(params, twin_params):
        assert np.array_equal(p, q)
    assert_same(opt.state_dict(), twin.state_dict())


# --------------------------------------------------------------------------------------------
# hyperparameters

INF, NAN = float("inf"), float("nan")

BAD_HYPER = [
    # SGD
    (fo.SGD, {"lr": -0.1}, ValueError, "lr"),
    (fo.SGD, {"lr": NAN}, ValueError, "lr"),
    (fo.SGD, {"momentum": -0.5}, ValueError, "momentum"),
    (fo.SGD, {"dampening": -0.1, "momentum": 0.9}, ValueError, "dampening"),
    (fo.SGD, {"weight_decay": -1e-4}, ValueError, "weight_decay"),
    (fo.SGD, {"nesterov": True}, ValueError, "(?i)nesterov"),
    (fo.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "(?i)nesterov"),
    (fo.SGD, {"nesterov": 1, "momentum": 0.9}, TypeError, "nesterov"),
    (fo.SGD, {"maximize": "yes"}, TypeError, "maximize"),
    (fo.SGD, {"lr": "0.1"}, TypeError, "lr"),
    (fo.SGD, {"lr": None}, TypeError, "lr"),
    # Adagrad
    (fo.Adagrad, {"lr": -1.0}, ValueError, "lr"),
    (fo.Adagrad, {"lr_decay": -0.1}, ValueError, "lr_decay"),
    (fo.Adagrad, {"weight_decay": -0.1}, ValueError, "weight_decay"),
    (fo.Adagrad, {"initial_accumulator_value": -0.1}, ValueError, "initial_accumulator_value"),
    (fo.Adagrad, {"eps": -1e-10}, ValueError, "eps"),
    (fo.Adagrad, {"maximize": 0}, TypeError, "maximize"),
    # RMSprop
    (fo.RMSprop, {"lr": -0.01}, ValueError, "lr"),
    (fo.RMSprop, {"alpha": -0.1}, ValueError, "alpha"),
    (fo.RMSprop, {"eps": -1e-8}, ValueError, "eps"),
    (fo.RMSprop, {"momentum": -0.9}, ValueError, "momentum"),
    (fo.RMSprop, {"weight_decay": -0.1}, ValueError, "weight_decay"),
    (fo.RMSprop, {"centered": "no"}, TypeError, "centered"),
    (fo.RMSprop, {"eps_in_sqrt": 1}, TypeError, "eps_in_sqrt"),
    # Adadelta
    (fo.Adadelta, {"rho": 1.1}, ValueError, "rho"),
    (fo.Adadelta, {"rho": -0.1}, ValueError, "rho"),
    (fo.Adadelta, {"lr": -1.0}, ValueError, "lr"),
    (fo.Adadelta, {"eps": -1e-6}, ValueError, "eps"),
    (fo.Adadelta, {"weight_decay": -0.1}, ValueError, "weight_decay"),
    # Adam and the classes that share its betas check
    *[
        (cls, kw, ValueError, pattern)
        for cls in (fo.Adam, fo.AdamW, fo.NAdam, fo.RAdam, fo.Adamax, fo.Lion)
        for kw, pattern in [
            ({"lr": -1e-3}, "lr"),
            ({"betas": (1.0, 0.999)}, "beta"),
            ({"betas": (0.9, 1.0)}, "beta"),
            ({"betas": (-0.1, 0.999)}, "beta"),
            ({"betas": (0.9, -0.1)}, "beta"),
            ({"betas": (0.9, 1.5)}, "beta"),
            ({"betas": (NAN, 0.999)}, "beta"),
            ({"betas": (0.9,)}, "beta"),
            ({"betas": (0.9, 0.99, 0.999)}, "beta"),
            ({"weight_decay": -0.01}, "weight_decay"),
            ({"lr": NAN}, "lr"),
            ({"weight_decay": NAN}, "weight_decay"),
        ]
    ],
    *[(cls, {"eps": -1e-8}, ValueError, "eps") for cls in (fo.Adam, fo.AdamW, fo.NAdam, fo.RAdam, fo.Adamax)],
    (fo.Adam, {"amsgrad": "x"}, TypeError, "amsgrad"),
    (fo.AdamW, {"amsgrad": None}, TypeError, "amsgrad"),
    (fo.Adam, {"decoupled_weight_decay": 1}, TypeError, "decoupled_weight_decay"),
    (fo.Adam, {"maximize": None}, TypeError, "maximize"),
    (fo.NAdam, {"momentum_decay": -4e-3}, ValueError, "momentum_decay"),
    (fo.NAdam, {"momentum_decay": NAN}, ValueError, "momentum_decay"),
    (fo.NAdam, {"momentum_decay": "fast"}, TypeError, "momentum_decay"),
    (fo.NAdam, {"decoupled_weight_decay": "yes"}, TypeError, "decoupled_weight_decay"),
    (fo.RAdam, {"decoupled_weight_decay": 0}, TypeError, "decoupled_weight_decay"),
    (fo.Adamax, {"maximize": 1}, TypeError, "maximize"),
    (fo.Lion, {"maximize": None}, TypeError, "maximize"),
    (fo.Lion, {"betas": "ab"}, ValueError, "beta"),
    # AdagradNorm
    (fo.AdagradNorm, {"b0": 0.0}, ValueError, "b0"),
    (fo.AdagradNorm, {"b0": -1.0}, ValueError, "b0"),
    (fo.AdagradNorm, {"b0": NAN}, ValueError, "b0"),
    (fo.AdagradNorm, {"b0": INF}, ValueError, "b0"),
    (fo.AdagradNorm, {"lr": -1.0}, ValueError, "lr"),
    (fo.AdagradNorm, {"weight_decay": -1.0}, ValueError, "weight_decay"),
    (fo.AdagradNorm, {"scope": "layer"}, ValueError, "scope"),
    (fo.AdagradNorm, {"scope": "GLOBAL"}, ValueError, "scope"),
    (fo.AdagradNorm, {"scope": None}, ValueError, "scope"),
    (fo.AdagradNorm, {"maximize": "True"}, TypeError, "maximize"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "exc", "match"),
    BAD_HYPER,
    ids=[f"{c.__name__}-{'-'.join(f'{k}={v!r}' for k, v in kw.items())}" for c, kw, _, _ in BAD_HYPER],
)
def test_invalid_hyperparameters_at_construction(cls, kwargs, exc, match):
    a = np.ones(3)
    with pytest.raises(BaseException) as info:
        cls([a], **kwargs)
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
    assert re.search(match, str(info.value)), str(info.value)
    assert np.array_equal(a, np.ones(3))


@pytest.mark.parametrize(
    ("cls", "kwargs", "exc", "match"),
    BAD_HYPER[::3],
    ids=[f"{c.__name__}-{'-'.join(kw)}" for c, kw, _, _ in BAD_HYPER[::3]],
)
def test_invalid_hyperparameters_in_add_param_group(cls, kwargs, exc, match):
    """Also in a group of its own; the optimizer keeps its groups and state."""
    opt, params = make_stepped(cls, {})
    before = snapshot(opt, params)
    with pytest.raises(BaseException) as info:
        opt.add_param_group({"params": [np.ones(3)], **kwargs})
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
    assert len(opt.param_groups) == 2
    assert_same(snapshot(opt, params), before)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (fo.SGD, {"nesterov": True, "momentum": 0.9}),
        (fo.Adadelta, {"rho": 1.0}),
        (fo.Adadelta, {"rho": 0.0}),
        (fo.Adam, {"betas": (0.0, 0.0)}),
        (fo.Adam, {"betas": [0.5, 0.6]}),
        (fo.NAdam, {"momentum_decay": 0.0, "betas": (0.0, 0.0)}),
        (fo.RAdam, {"betas": (0.0, 0.0)}),
        (fo.Adamax, {"betas": (0.0, 0.0), "eps": 0.0}),
        (fo.Lion, {"betas": (0.0, 0.0), "lr": 0.0}),
        (fo.AdagradNorm, {"b0": 1e-300}),
        (fo.AdagradNorm, {"scope": "group"}),
        (fo.SGD, {"lr": 0}),
        (fo.RMSprop, {"alpha": 0.0}),
    ],
)
def test_boundary_hyperparameters_are_accepted(cls, kwargs):
    a = np.ones(3)
    opt = cls([a], **kwargs)
    opt.step(grads=[np.full(3, 0.5)])
    assert np.all(np.isfinite(a))


# --------------------------------------------------------------------------------------------
# the grads argument


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("length", [0, 1, 2, 4])
def test_grads_of_wrong_length(cls, kwargs, length):
    def act(opt, params):
        opt.step(grads=(fresh_grads(60) * 2)[:length])

    check_failing_step(cls, kwargs, act, ValueError, str(length))


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize(
    "grads",
    [5, 2.0, object(), np.zeros(3), np.zeros((3, 4))],
    ids=["int", "float", "object", "ndarray", "ndarray-2d"],
)
def test_grads_not_a_sequence(cls, kwargs, grads):
    check_failing_step(cls, kwargs, lambda opt, params: opt.step(grads=grads), TypeError, "grads")


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_plain_ndarray_params_need_grads(cls, kwargs):
    check_failing_step(
        cls, kwargs, lambda opt, params: opt.step(), TypeError, re.escape(SITES[0]), plain=True
    )


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_plain_ndarray_among_parameters_is_named(cls):
    p = fo.Parameter(np.zeros(3))
    p.grad = np.ones(3)
    q = np.zeros(2)
    opt = cls([{"params": [p]}, {"params": [fo.Parameter(np.zeros(1)), q]}])
    before = opt.state_dict()
    with pytest.raises(TypeError, match=re.escape(site(1, 1))):
        opt.step()
    assert np.array_equal(p, np.zeros(3))
    assert_same(opt.state_dict(), before)


# --------------------------------------------------------------------------------------------
# NaN and Inf


def _nan_inf_grads(rng, shape, dtype, steps):
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
    flat = grads[1].reshape(-1)
    flat[0], flat[1], flat[2] = np.nan, np.inf, -np.inf
    grads[3].reshape(-1)[5] = np.inf
    grads[4].reshape(-1)[7] = np.nan
    return grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": 0.1}),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        ("Adam", {"lr": 0.01}),
        ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
        ("AdamW", {"lr": 0.01}),
        ("NAdam", {"lr": 0.01, "weight_decay": 0.1}),
        ("RAdam", {"lr": 0.01}),
        ("RAdam", {"lr": 0.01, "betas": (0.9, 0.6)}),
        ("Adamax", {"lr": 0.01}),
    ],
)
def test_nan_and_inf_propagate_as_in_torch(dtype, name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    start = rng.standard_normal((3, 4)).astype(dtype)
    grads = _nan_inf_grads(rng, (3, 4), dtype, 6)
    ours = start.copy()
    opt = getattr(fo, name)([ours], **kwargs)
    t = torch.nn.Parameter(torch.from_numpy(start.copy()))
    topt = getattr(torch.optim, name)([t], foreach=False, **kwargs)
    for g in grads:
        opt.step(grads=[g])
        t.grad = torch.from_numpy(g.copy())
        topt.step()
        ref = t.detach().numpy()
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        assert np.array_equal(np.isposinf(ours), np.isposinf(ref))
        assert np.array_equal(np.isneginf(ours), np.isneginf(ref))
        np.testing.assert_allclose(ours, ref, equal_nan=True, **tol(np.dtype(dtype)))
    assert np.isnan(ours).any()  # the test really exercised non-finite values
    for key, value in opt.state.get(ours, {}).items():
        if isinstance(value, np.ndarray):
            ref = topt.state[t][key].numpy()
            assert np.array_equal(np.isnan(value), np.isnan(ref)), key
            np.testing.assert_allclose(value, ref, equal_nan=True, **tol(np.dtype(dtype)))


# --- layouts the kernels cannot address -------------------------------------------------


def _packed_field():
    """A float64 field of a packed structured array: stride 12, not aligned."""
    rec = np.zeros(4, dtype=[("a", "<f8"), ("b", "<f4")])
    rec["b"] = 7
    return rec, rec["a"]


def _offset_by_one_byte():
    buf = bytearray(8 * 5)
    return buf, np.frombuffer(buf, np.float64, offset=1, count=4)


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("build", [_packed_field, _offset_by_one_byte], ids=["packed-field", "offset"])
def test_misaligned_param_is_refused_at_construction(cls, build):
    owner, a = build()
    assert not a.flags.aligned and a.flags.writeable
    before = bytes(owner.tobytes() if isinstance(owner, np.ndarray) else owner)
    with pytest.raises(BaseException) as info:
        cls([a])
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert "param_groups[0]['params'][0]" in str(info.value) and "aligned" in str(info.value)
    assert bytes(owner.tobytes() if isinstance(owner, np.ndarray) else owner) == before


def test_misaligned_grad_is_refused_and_changes_nothing():
    rec, field = _packed_field()
    field[:] = [-1.0, -2.0, -3.0, -4.0]
    p = np.zeros(4)
    opt = fo.SGD([p], lr=1.0, momentum=0.9)
    with pytest.raises(BaseException) as info:
        opt.step(grads=[field])
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert "gradient of param_groups[0]['params'][0]" in str(info.value)
    assert np.array_equal(p, np.zeros(4)) and len(opt.state) == 0
    opt.step(grads=[np.ascontiguousarray(field)])  # an aligned copy works: p = -lr * g
    np.testing.assert_array_equal(p, [1.0, 2.0, 3.0, 4.0])
    assert np.array_equal(rec["b"], np.full(4, 7.0, np.float32))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_more_than_32_dimensions_is_a_value_error(cls):
    p = np.zeros((1,) * 33)
    with pytest.raises(BaseException) as info:
        cls([p])
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert "32 dimensions" in str(info.value)


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize(
    ("shape", "strides"), [((4,), (0,)), ((3, 4), (16, 8))], ids=["zero-stride", "overlapping-windows"]
)
def test_self_overlapping_param_is_refused(cls, shape, strides):
    """A writeable view whose elements share memory (torch refuses these too) cannot hold
    an update: refused at construction rather than silently giving last-write-wins."""
    base = np.zeros(16)
    p = np.lib.stride_tricks.as_strided(base, shape, strides)
    assert p.flags.writeable
    with pytest.raises(BaseException) as info:
        cls([p])
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert "share memory with each other" in str(info.value)
    assert np.array_equal(base, np.zeros(16))


def test_broadcast_grad_is_allowed():
    """A read-only gradient may repeat elements (np.broadcast_to): it is only read."""
    p = np.zeros((3, 4))
    fo.SGD([p], lr=0.5).step(grads=[np.broadcast_to(np.arange(4.0), (3, 4))])
    np.testing.assert_array_equal(p, -0.5 * np.broadcast_to(np.arange(4.0), (3, 4)))


@pytest.mark.parametrize(
    ("cls", "key", "value", "exc"),
    [
        (fo.Adam, "lr", "fast", TypeError),
        (fo.NAdam, "lr", None, TypeError),
        (fo.NAdam, "momentum_decay", "fast", TypeError),
        (fo.NAdam, "momentum_decay", -1.0, ValueError),
        (fo.NAdam, "betas", 0.9, ValueError),
        (fo.RAdam, "betas", (0.9,), ValueError),
        (fo.Lion, "weight_decay", [0.1], TypeError),
    ],
)
def test_bad_hyperparameter_edited_into_a_group_names_the_group(cls, key, value, exc):
    p = np.zeros(2)
    opt = cls([{"params": [np.zeros(2)]}, {"params": [p]}])
    opt.param_groups[1][key] = value
    with pytest.raises(exc, match=r"param_groups\[1\].*" + key.rstrip("s")):
        opt.step(grads=[np.ones(2), np.ones(2)])
    assert np.array_equal(p, np.zeros(2)) and len(opt.state) == 0


# --------------------------------------------------------------------------------------------
# masked arrays: refused, as their masks would be ignored

MASKED = "masked arrays are not supported"


def _masked(a: np.ndarray) -> np.ma.MaskedArray:
    """``a`` with its first element masked (and NaN underneath, which an update would copy)."""
    out = np.ma.array(a.copy(), mask=np.zeros(a.shape, bool))
    out.flat[0] = np.nan
    out.mask.flat[0] = True
    return out


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_masked_param_is_refused_at_construction_and_in_add_param_group(cls):
    """Regression: a ``numpy.ma.MaskedArray`` parameter was accepted and every element,
    masked ones included, updated."""
    with pytest.raises(TypeError, match=rf"param_groups\[0\]\['params'\]\[1\] .*{MASKED}"):
        cls([np.zeros(3), _masked(np.zeros(3))])
    opt = cls([np.zeros(3)])
    with pytest.raises(TypeError, match=rf"param_groups\[1\]\['params'\]\[0\] .*{MASKED}"):
        opt.add_param_group({"params": [_masked(np.zeros(3))]})
    assert len(opt.param_groups) == 1
    with pytest.raises(TypeError, match=f"data .*{MASKED}"):
        fo.Parameter(_masked(np.zeros(3)))


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("target", [0, 1, 2])
def test_masked_grad_is_refused_at_the_step(cls, kwargs, target):
    """Regression: a masked gradient's masked NaN was copied into the parameter."""

    def act(opt, params):
        grads = fresh_grads(30)
        grads[target] = _masked(grads[target])
        opt.step(grads=grads)

    check_failing_step(cls, kwargs, act, TypeError, rf"the gradient of {re.escape(SITES[target])} .*{MASKED}")


@pytest.mark.parametrize("settings", [{"max_grad_norm": 1.0}, {"skip_nonfinite": True}])
def test_masked_grad_is_refused_by_the_steps_clipping(settings):
    def act(opt, params):
        grads = fresh_grads(30)
        grads[1] = _masked(grads[1])
        opt.step(grads=grads)

    check_failing_step(fo.Adam, settings, act, TypeError, rf"{re.escape(SITES[1])} .*{MASKED}")


def test_masked_grad_assignment_is_refused():
    p = fo.Parameter(np.zeros(3))
    with pytest.raises(TypeError, match=f"grad .*{MASKED}"):
        p.grad = _masked(np.ones(3))
    assert p.grad is None
    flat = fo.flatten_parameters([np.zeros(3)])
    with pytest.raises(TypeError, match=f"grad .*{MASKED}"):
        flat.params[0].grad = _masked(np.ones(3))
    assert np.array_equal(flat.grad, np.zeros(3))
    with pytest.raises(TypeError, match=f"array 1 .*{MASKED}"):
        fo.flatten_parameters([np.zeros(3), _masked(np.ones(3))])


@pytest.mark.parametrize(
    "clip",
    [
        lambda gs: fo.clip_grad_norm_(None, 1.0, grads=gs),
        lambda gs: fo.clip_grads_with_norm_(None, 1.0, 5.0, grads=gs),
        lambda gs: fo.clip_grad_value_(None, 0.1, grads=gs),
        lambda gs: fo.get_total_norm(gs),
    ],
    ids=["clip_grad_norm_", "clip_grads_with_norm_", "clip_grad_value_", "get_total_norm"],
)
def test_masked_grad_is_refused_by_the_clipping_functions(clip):
    grads = [np.full(4, 3.0), _masked(np.full(4, 3.0))]
    before = [np.ma.getdata(g).copy() for g in grads]
    with pytest.raises(TypeError, match=rf"\[1\] .*{MASKED}"):
        clip(grads)
    for g, b in zip(grads, before):
        assert np.array_equal(np.ma.getdata(g), b, equal_nan=True)


def test_masked_state_in_a_loaded_state_dict_is_refused():
    p = np.zeros(3)
    opt = fo.Adam([p], lr=0.1)
    opt.step(grads=[np.ones(3)])
    before = opt.state_dict()
    for key in ("exp_avg", "step"):
        sd = opt.state_dict()
        value = sd["state"][0][key]
        sd["state"][0][key] = _masked(value) if key != "step" else np.ma.masked
        with pytest.raises(TypeError, match=rf"state .{key}. of {re.escape(site(0, 0))} .*{MASKED}"):
            opt.load_state_dict(sd)
        assert_same(opt.state_dict(), before)


# --------------------------------------------------------------------------------------------
# hyperparameters too large for a float, edited into a group


def _too_large(group: dict[str, Any]) -> list[tuple[str, Any]]:
    """Per numeric hyperparameter of ``group`` (and each element of ``betas``): its key and
    the value with ``10**400`` in its place."""
    edits: list[tuple[str, Any]] = []
    for key, value in group.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            edits.append((key, 10**400))
        elif key == "betas":
            edits += [("betas", (10**400, value[1])), ("betas", (value[0], 10**400))]
    return edits


#: Settings a step of parameters that all have state does not read: the initial
#: accumulators (read for a new state, where they are checked) and the seed of bfloat16
#: state (float32/float64 state here).
NOT_READ_WITH_STATE = {"initial_accumulator_value", "b0", "seed"}


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_hyperparameter_too_large_for_a_float_is_a_value_error_at_the_step(cls, kwargs):
    """Regression: ``lr = 10**400`` edited into a group raised ``OverflowError`` from the
    step. Every numeric hyperparameter the step reads (``betas``, ``grad_scale`` and
    ``max_grad_norm`` included) edited to ``10**400`` makes the step raise ``ValueError``
    naming the group and the key, with nothing changed."""
    opt, params = make_stepped(cls, {**kwargs, "grad_scale": 2.0, "max_grad_norm": 10.0})
    group = opt.param_groups[0]
    grads = fresh_grads(30)
    for key, value in _too_large(group):
        kept = group[key]
        group[key] = value
        before = snapshot(opt, params)
        if key in NOT_READ_WITH_STATE:
            group[key] = kept
            continue
        with pytest.raises(BaseException) as info:
            opt.step(grads=grads)
        assert type(info.value) is ValueError, f"{key}: {type(info.value).__name__}: {info.value}"
        named = "beta" if key == "betas" else key  # Python words it as torch: "beta parameter at index i"
        assert re.search(rf"param_groups\[0\].*{named}", str(info.value)), str(info.value)
        assert_same(snapshot(opt, params), before, key)
        group[key] = kept
    opt.step(grads=grads)  # the restored group steps


# --------------------------------------------------------------------------------------------
# bfloat16 state: the step count keys the stochastic rounding


@pytest.mark.parametrize("step", [2.0**64, 1e300])
def test_bf16_step_beyond_2_64_is_refused_at_load(step):
    """Regression: a loaded ``step`` of 2**64 or more with bfloat16 state made every later
    step raise ``TypeError: failed to extract field Tensors.rounding``, naming neither the
    parameter nor ``step``. The load is refused, naming both, and changes nothing; the
    largest step below 2**64 loads."""
    p = np.zeros(4, np.float32)
    opt = fo.Adam([p], lr=0.1, state_dtype="bfloat16")
    opt.step(grads=[np.ones(4, np.float32)])
    before = opt.state_dict()
    sd = opt.state_dict()
    sd["state"][0]["step"] = step
    with pytest.raises(ValueError, match=rf"state 'step' of {re.escape(site(0, 0))} .*below 2\*\*64"):
        opt.load_state_dict(sd)
    assert_same(opt.state_dict(), before)
    sd["state"][0]["step"] = float(np.nextafter(2.0**64, 0))
    opt.load_state_dict(sd)
    opt.step(grads=[np.ones(4, np.float32)])


def test_bf16_step_beyond_2_64_edited_into_the_state_is_refused_at_the_step():
    p = np.zeros(4, np.float32)
    opt = fo.Adam([p], lr=0.1, state_dtype="bfloat16")
    opt.step(grads=[np.ones(4, np.float32)])
    opt.state[p]["step"] = 2.0**64
    before = snapshot(opt, [p])
    with pytest.raises(ValueError, match=rf"state 'step' of {re.escape(site(0, 0))} .*below 2\*\*64"):
        opt.step(grads=[np.ones(4, np.float32)])
    assert_same(snapshot(opt, [p]), before)


# --------------------------------------------------------------------------------------------
# arrays refused by the borrow checker: aliased in one step, or in use by another call


def test_aliased_arrays_of_one_step_are_named_as_such():
    """Two arrays of the same step that share memory: the message says so ('of this step')
    and does not blame another thread."""
    p = np.zeros(5)
    opt = fo.SGD([p], lr=0.1)
    with pytest.raises(ValueError) as info:
        opt.step(grads=[p])
    assert "of this step" in str(info.value) and "another call" not in str(info.value)
    with pytest.raises(ValueError) as info:
        fo.clip_grad_norm_(None, 1.0, grads=[p, p[1:]])
    assert "shares memory" in str(info.value) and "another call" not in str(info.value)


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (fo.Adagrad, {}, "initial_accumulator_value"),
        (fo.AdagradNorm, {}, "b0"),
        (fo.Adam, {"state_dtype": "bfloat16"}, "seed"),
        (fo.SGD, {"momentum": 0.9, "state_dtype": "bfloat16"}, "seed"),
    ],
)
def test_setting_too_large_for_a_float_is_a_value_error_where_the_step_reads_it(cls, kwargs, key):
    """The settings a step reads only for a new state (or for bfloat16 state), edited to
    ``10**400``: the step that reads them raises ``ValueError`` naming them, changing nothing."""
    p = np.zeros(3, np.float32)
    opt = cls([p], **kwargs)
    opt.state.pop(p, None)  # Adagrad creates its state at construction
    opt.param_groups[0][key] = 10**400
    before = snapshot(opt, [p])
    with pytest.raises(ValueError, match=rf"param_groups\[0\].*{key}"):
        opt.step(grads=[np.ones(3, np.float32)])
    assert_same(snapshot(opt, [p]), before)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: fo.clip_grad_norm_(None, 10**400, grads=[np.ones(3)]), "max_norm"),
        (lambda: fo.clip_grad_norm_(None, 1.0, 10**400, grads=[np.ones(3)]), "norm_type"),
        (lambda: fo.clip_grads_with_norm_(None, 1.0, 10**400, grads=[np.ones(3)]), "total_norm"),
        (lambda: fo.clip_grad_value_(None, -(10**400), grads=[np.ones(3)]), "clip_value"),
        (lambda: fo.get_total_norm([np.ones(3)], 10**400), "norm_type"),
        (lambda: fo.MinibatchSampler(10**400, 3), "m"),
        (lambda: fo.MinibatchSampler(10, 3, seed=2**64), "seed"),
        (lambda: fo.MinibatchSampler(10, 3).set_epoch(-(10**400)), "epoch"),
        (lambda: fo.set_num_threads(10**400), "num_threads"),
    ],
    ids=[
        "max_norm",
        "norm_type",
        "total_norm",
        "clip_value",
        "get_total_norm",
        "m",
        "seed",
        "epoch",
        "threads",
    ],
)
def test_ints_too_large_for_a_float_or_64_bits_are_value_errors(call, name):
    """Siblings of the ``lr = 10**400`` regression: the other numeric arguments raised
    ``OverflowError`` for an int beyond a float or 64 bits; now ``ValueError`` naming them."""
    threads = fo.get_num_threads()
    with pytest.raises(BaseException) as info:
        call()
    assert type(info.value) is ValueError, f"{type(info.value).__name__}: {info.value}"
    assert name in str(info.value)
    assert fo.get_num_threads() == threads
