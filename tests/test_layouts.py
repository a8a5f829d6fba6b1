"""Memory layouts and zero copy: any layout is updated in place through the user's view.

Parameters in C order, F order, strided and negatively strided slices, transposes, permuted
3-D arrays, 0-d and size 0 are stepped together with gradients in other layouts; the
reference is the same algorithm on C-contiguous copies (layout independence is
the property under test), elements matched by index. One case is checked against a NumPy
transcription of SGD with momentum. Also: memory outside a strided view is untouched,
``Parameter`` shares memory with the wrapped array, identities survive a step, state arrays
take the parameter's shape, dtype and layout, and a contiguous step allocates nothing
proportional to the parameter size (tracemalloc).
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

CONFIGS = [
    pytest.param(fo.SGD, {"lr": 0.1}, id="SGD"),
    pytest.param(fo.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, id="SGD-nag"),
    pytest.param(fo.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01}, id="Adagrad"),
    pytest.param(fo.RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True}, id="RMSprop-centered"),
    pytest.param(fo.Adadelta, {"weight_decay": 0.1, "maximize": True}, id="Adadelta"),
    pytest.param(fo.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}, id="Adam-ams"),
    pytest.param(fo.AdamW, {"lr": 0.01}, id="AdamW"),
    pytest.param(fo.NAdam, {"lr": 0.01, "weight_decay": 0.1, "momentum_decay": 0.1}, id="NAdam"),
    pytest.param(fo.RAdam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}, id="RAdamW"),
    pytest.param(fo.Adamax, {"lr": 0.01, "weight_decay": 0.1}, id="Adamax"),
    pytest.param(fo.Lion, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}, id="Lion"),
    pytest.param(fo.AdagradNorm, {"scope": "tensor"}, id="AdagradNorm-tensor"),
    pytest.param(fo.AdagradNorm, {"scope": "global", "b0": 0.5}, id="AdagradNorm-global"),
]

# Parameter layouts: (shape of the owning base array, its order, view of the base).
Layout = tuple[tuple[int, ...], str, Callable[[np.ndarray], np.ndarray]]
PARAM_LAYOUTS: dict[str, Layout] = {
    "C-2d": ((5, 4), "C", lambda b: b),
    "F-2d": ((5, 4), "F", lambda b: b),
    "strided-2d": ((10, 12), "C", lambda b: b[1::2, ::3]),
    "strided-F": ((10, 12), "F", lambda b: b[::2, 1::3]),
    "step-1d": ((41,), "C", lambda b: b[::2]),
    "reversed-1d": ((20,), "C", lambda b: b[::-1]),
    "reversed-2d": ((6, 8), "C", lambda b: b[::-1, ::-2]),
    "mixed-2d": ((7, 9), "C", lambda b: b[1:6:2, 8:0:-3]),
    "transpose": ((4, 5), "C", lambda b: b.T),
    "permuted-3d": ((2, 3, 4), "C", lambda b: b.transpose(2, 0, 1)),
    "column": ((6, 5), "C", lambda b: b[:, 2]),
    "broadcastless-1x": ((1, 7), "C", lambda b: b),
    "0-d": ((), "C", lambda b: b),
    "0-d-view": ((4,), "C", lambda b: b[2, ...]),
    "size-0": ((0,), "C", lambda b: b),
    "size-0-2d": ((3, 0), "F", lambda b: b),
}


def _reverse_all(a: np.ndarray) -> np.ndarray:
    return a[(slice(None, None, -1),) * a.ndim]


# Gradient layouts: the same values (by index) in another memory layout.
GRAD_LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "C": lambda g: np.array(g, order="C", copy=True),
    "F": lambda g: np.array(g, order="F", copy=True),
    "strided": lambda g: _strided_copy(g),
    "reversed": lambda g: _reverse_all(np.array(_reverse_all(g), order="C")),
    "transposed": lambda g: np.array(g.T, order="C").T,
}


def _strided_copy(g: np.ndarray) -> np.ndarray:
    big = np.zeros(g.shape + (3,), dtype=g.dtype)
    big[..., 1] = g
    return big[..., 1]


def make_param(name: str, dtype: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base, view, mask of the base elements outside the view)."""
    shape, order, view_of = PARAM_LAYOUTS[name]
    rng = np.random.default_rng(seed)
    base = np.array(rng.standard_normal(shape), dtype=dtype, order=order)
    outside = np.ones(shape, dtype=bool)
    view_of(outside)[...] = False
    return base, view_of(base), outside


def tol(dtype: Any) -> dict[str, float]:
    if np.dtype(dtype) == np.float64:
        return {"rtol": 1e-12, "atol": 1e-14}
    return {"rtol": 1e-6, "atol": 1e-7}


def assert_states_match(opt, ref, params, refs, dtype) -> None:
    for p, r in zip(params, refs):
        got, want = opt.state.get(p, {}), ref.state.get(r, {})
        assert set(got) == set(want)
        for key, value in want.items():
            if isinstance(value, np.ndarray):
                assert got[key].shape == p.shape and got[key].dtype == p.dtype
                np.testing.assert_allclose(got[key], value, **tol(dtype))
            else:  # "step" (exact) or AdagradNorm's float64 "b_sq" (summation order varies)
                assert got[key] == pytest.approx(value, rel=1e-12, abs=0)


def run_against_contiguous(cls, kwargs, views, grad_layouts, dtype, steps=5, seed=1):
    """Steps ``views`` (gradients in ``grad_layouts``) and contiguous copies side by side."""
    refs = [np.array(v, order="C", copy=True) for v in views]
    opt = cls(views, **kwargs)
    ref = cls(refs, **kwargs)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        gs = [rng.standard_normal(v.shape).astype(dtype) for v in views]
        opt.step(grads=[layout(g) for layout, g in zip(grad_layouts, gs)])
        ref.step(grads=[np.array(g, order="C") for g in gs])
    for v, r in zip(views, refs):
        np.testing.assert_allclose(v, r, **tol(dtype))
    assert_states_match(opt, ref, views, refs, dtype)
    return opt


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("layout", PARAM_LAYOUTS)
@pytest.mark.parametrize("grad_layout", GRAD_LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layout_is_updated_in_place(cls, kwargs, layout, grad_layout, dtype):
    base, view, outside = make_param(layout, dtype)
    untouched, initial = base[outside].copy(), view.copy()
    address = view.__array_interface__["data"][0]
    strides = view.strides
    run_against_contiguous(cls, kwargs, [view], [GRAD_LAYOUTS[grad_layout]], dtype)
    assert view.__array_interface__["data"][0] == address and view.strides == strides
    assert np.array_equal(base[outside], untouched)  # the gaps of the view
    assert view.size == 0 or not np.array_equal(view, initial)


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_layouts_in_one_optimizer(cls, kwargs, dtype):
    """Every layout in one step (and one AdagradNorm scope), gradient layouts rotating."""
    made = [make_param(name, dtype, seed=i) for i, name in enumerate(PARAM_LAYOUTS)]
    views = [v for _, v, _ in made]
    kept = [b[m].copy() for b, _, m in made]
    layouts = list(GRAD_LAYOUTS.values())
    grad_layouts = [layouts[i % len(layouts)] for i in range(len(views))]
    run_against_contiguous(cls, kwargs, views, grad_layouts, dtype)
    for (base, _, outside), before in zip(made, kept):
        assert np.array_equal(base[outside], before)


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_large_strided_view_on_the_parallel_path(cls, kwargs):
    """A 300k-element strided view (well above the serial threshold) next to an F-order one,
    with reversed and strided gradients."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal(600_001)
    gaps = base[1::2].copy()
    fbase = np.asfortranarray(rng.standard_normal((500, 300)))
    views = [base[::2], fbase]
    run_against_contiguous(
        cls, kwargs, views, [GRAD_LAYOUTS["reversed"], GRAD_LAYOUTS["strided"]], np.float64, 3
    )
    assert np.array_equal(base[1::2], gaps)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize(
    ("layout", "grad_layout"),
    [("F-2d", "reversed"), ("reversed-2d", "F"), ("strided-2d", "transposed"), ("0-d", "C")],
)
def test_sgd_momentum_against_numpy(layout, grad_layout, nesterov):
    """SGD with momentum on an unusual layout equals the heavy-ball / Nesterov formula of torch
    written in NumPy, element by element by index."""
    lr, mu, damp, wd = 0.1, 0.9, 0.0 if nesterov else 0.2, 0.01
    base, view, outside = make_param(layout, np.float64)
    untouched = base[outside].copy()
    theta = np.array(view, copy=True)
    p = fo.Parameter(view)
    opt = fo.SGD([p], lr=lr, momentum=mu, dampening=damp, weight_decay=wd, nesterov=nesterov)
    rng = np.random.default_rng(3)
    buf = None
    for _ in range(8):
        g = rng.standard_normal(view.shape)
        p.grad = GRAD_LAYOUTS[grad_layout](g)
        opt.step()
        d = g + wd * theta
        buf = d.copy() if buf is None else mu * buf + (1 - damp) * d
        theta = theta - lr * (d + mu * buf if nesterov else buf)
        np.testing.assert_allclose(view, theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], buf, rtol=1e-12, atol=1e-14)
    assert np.array_equal(base[outside], untouched)


# --------------------------------------------------------------------------------------------
# zero copy, identity, state layout


@pytest.mark.parametrize("layout", PARAM_LAYOUTS)
def test_parameter_shares_memory_with_the_wrapped_array(layout):
    base, view, _ = make_param(layout, np.float64)
    p = fo.Parameter(view)
    assert np.shares_memory(view, p) or view.size == 0
    assert p.__array_interface__["data"][0] == view.__array_interface__["data"][0]
    assert p.strides == view.strides and p.shape == view.shape
    if view.size:
        view[...] = 7.0  # a write through the user's array shows in the Parameter
        assert np.all(p == 7.0)


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
@pytest.mark.parametrize("layout", ["C-2d", "F-2d", "strided-2d", "reversed-1d", "0-d"])
def test_identity_and_updates_through_the_users_array(cls, kwargs, layout):
    base, view, _ = make_param(layout, np.float64)
    before = base.copy()
    p = fo.Parameter(view)
    opt = cls([p], **kwargs)
    p.grad = np.ones(view.shape)
    opt.step()
    state_ids = {k: id(v) for k, v in opt.state.get(p, {}).items() if isinstance(v, np.ndarray)}
    for _ in range(3):
        p.grad = np.full(view.shape, 0.5)
        opt.step()
    assert opt.param_groups[0]["params"][0] is p
    assert isinstance(p, fo.Parameter) and np.shares_memory(p, base)
    assert not np.array_equal(base, before)  # the update is visible through the base array
    assert np.array_equal(np.asarray(p), view)
    now = {k: id(v) for k, v in opt.state.get(p, {}).items() if isinstance(v, np.ndarray)}
    assert now == state_ids  # state arrays are updated in place, not replaced


@pytest.mark.parametrize(("cls", "kwargs"), [c for c in CONFIGS if c.values[0] is not fo.AdagradNorm])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_arrays_take_the_params_layout(cls, kwargs, order, dtype):
    a = np.zeros((6, 5), dtype=dtype, order=order)
    opt = cls([a], **kwargs)
    opt.step(grads=[np.ones((6, 5), dtype=dtype)])
    arrays = [v for v in opt.state.get(a, {}).values() if isinstance(v, np.ndarray)]
    assert arrays or (cls is fo.SGD and not kwargs.get("momentum"))
    for s in arrays:
        assert s.shape == a.shape and s.dtype == a.dtype
        assert s.flags.c_contiguous if order == "C" else s.flags.f_contiguous
        assert not np.shares_memory(s, a)


# --------------------------------------------------------------------------------------------
# no per-step allocation


def _traced_peak(fn: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


def test_tracemalloc_sees_numpy_allocations():
    """The measurement below can fail: a copy of the parameter shows up as ~8 MB."""
    a = np.zeros(1_000_000)
    assert _traced_peak(lambda: a.copy()) > 7_000_000


ALLOC_CONFIGS = [
    (fo.Adam, {}),
    (fo.Adam, {"amsgrad": True}),
    (fo.AdamW, {}),
    (fo.SGD, {"momentum": 0.9}),
    (fo.Adagrad, {}),
    (fo.RMSprop, {"momentum": 0.9, "centered": True}),
    (fo.Adadelta, {}),
    (fo.NAdam, {}),
    (fo.RAdam, {}),
    (fo.Adamax, {}),
    (fo.Lion, {}),
    (fo.AdagradNorm, {}),
]


@pytest.mark.parametrize(
    ("cls", "kwargs"), ALLOC_CONFIGS, ids=[f"{c.__name__}{sorted(k)}" for c, k in ALLOC_CONFIGS]
)
@pytest.mark.parametrize("via", ["grad-attribute", "grads-argument"])
def test_no_allocation_proportional_to_param_size(cls, kwargs, via):
    """50 steps on a 1e6-element float64 contiguous parameter (8 MB) after a warm-up step:
    peak traced growth stays far below the parameter size."""
    a = np.random.default_rng(4).standard_normal(1_000_000)
    g = np.random.default_rng(5).standard_normal(1_000_000) * 1e-3
    p = fo.Parameter(a)
    p.grad = g
    opt = cls([p], **kwargs)

    def step():
        if via == "grad-attribute":
            opt.step()
        else:
            opt.step(grads=[g])

    step()  # warm-up: state is allocated here

    def fifty():
        for _ in range(50):
            step()

    assert _traced_peak(fifty) < 1_000_000


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (fo.Adam, {"lr": 0.1, "amsgrad": True}),
        (fo.SGD, {"lr": 0.1, "momentum": 0.9}),
        (fo.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ],
)
def test_state_in_another_layout_is_updated_in_place(cls, kwargs):
    """State arrays replaced by F-order copies (a layout other than the C-order parameter's)
    are staged, updated and written back into those very arrays."""
    rng = np.random.default_rng(0)
    p = rng.standard_normal((6, 5))
    q = p.copy()
    opt, ref = cls([p], **kwargs), cls([q], **kwargs)
    g1, g2 = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    opt.step(grads=[g1])
    ref.step(grads=[g1])
    held = {}
    for k, v in list(opt.state[p].items()):
        if isinstance(v, np.ndarray):
            opt.state[p][k] = held[k] = np.asfortranarray(v)
    assert held
    opt.step(grads=[g2])
    ref.step(grads=[g2])
    np.testing.assert_array_equal(p, q)
    for k, a in held.items():
        assert opt.state[p][k] is a
        np.testing.assert_array_equal(a, ref.state[q][k])


PEAK_GROWTH = (
    "import re, sys, numpy as np, ferroptim as fo\n"
    # VmHWM is this process's own peak (ru_maxrss would include the parent's before exec)
    "def peak_mb():\n"
    "    status = open('/proc/self/status').read()\n"
    "    return int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) / 1024\n"
    "n = 8_000_000\n"
    "strided = sys.argv[1] == 'strided'\n"
    # np.ones touches every page, so the peak already counts the arrays themselves
    "p = np.ones(2 * n)[::2] if strided else np.ones(n)\n"
    "g = np.ones(2 * n)[::2] if strided else np.ones(n)\n"
    "opt = fo.SGD([p], lr=1e-3)\n"  # no state: the step itself is all that can allocate
    "before = peak_mb()\n"
    "opt.step(grads=[g])\n"
    "print(peak_mb() - before)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_peak_memory_shows_copies_only_for_odd_layouts(layout):
    """Peak resident memory (which, unlike tracemalloc, sees the Rust core's allocations)
    of a fresh process stepping a 64 MB parameter: a contiguous one is updated in place
    and the peak stays put; a strided one is staged, so the param and grad copies
    (~128 MB) show, which proves the probe can fail."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_GROWTH, layout], capture_output=True, text=True, check=True
    )
    growth_mb = float(result.stdout)
    if layout == "contiguous":
        assert growth_mb < 8, f"a contiguous step raised peak memory by {growth_mb:.1f} MB"
    else:
        assert growth_mb > 64, f"staged copies did not show: {growth_mb:.1f} MB"
