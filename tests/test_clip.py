"""Gradient clipping: ``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm`` and
``clip_grads_with_norm_`` against ``torch.nn.utils`` and a float64 NumPy transcription of
the formulas.

* norm types 0, 1, 2, 3.5 and inf (also the string ``"inf"``), float32, float64 and mixed
  gradients, clipping active and inactive: the returned norm (value and torch's dtype) and
  the clipped gradients agree with torch within float32 4e-6 / float64 1e-13 relative
  tolerances (torch accumulates float32 norms in float32, ferroptim in float64), and with
  the NumPy transcription within 5e-7 / 1e-13;
* given the same total norm, ``clip_grads_with_norm_`` scales bit-identically to torch's
  (the coefficient ``max_norm / (N + 1e-6)`` in the norm's dtype, clamped to 1);
* empty lists, ``None`` gradients, zero gradients, NaN/Inf gradients with
  ``error_if_nonfinite`` both ways (raising changes nothing);
* F-order, strided, reversed, transposed and 0-d gradients are clipped in place through
  the caller's view;
* the norm and the clipped gradients are bit-identical for 1, 2 and 3 threads on
  gradients large enough to run in parallel;
* bad input (dtype, read-only, shared memory, plain ndarrays in ``parameters``, negative
  or NaN bounds) raises ``TypeError``/``ValueError`` and changes nothing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import ferroptim as fo

INF = math.inf
NORM_TYPES = [0.0, 1.0, 2.0, 3.5, INF, "inf"]
RTOL_TORCH = {np.float32: 4e-6, np.float64: 1e-13}
RTOL_NUMPY = {np.float32: 2e-7, np.float64: 1e-13}


def rtol_torch(arrays: list[np.ndarray]) -> float:
    """torch accumulates float32 norms in float32: float32 tolerance once any array is float32."""
    return RTOL_TORCH[np.float32] if any(a.dtype == np.float32 for a in arrays) else RTOL_TORCH[np.float64]


#: shapes of one gradient set: a matrix, a vector, a 3-D array and a 0-d array
SHAPES = [(40, 30), (300,), (7, 3, 5), ()]


@pytest.fixture(autouse=True)
def restore_num_threads():
    saved = fo.get_num_threads()
    yield
    fo.set_num_threads(saved)


def make_grads(rng: np.random.Generator, dtypes: list[Any], scale: float = 1.0) -> list[np.ndarray]:
    return [
        np.asarray(rng.standard_normal(shape) * scale * rng.uniform(0.5, 2.0), dtype=dt)
        for shape, dt in zip(SHAPES, dtypes)
    ]


def params_with(grads: list[np.ndarray | None]) -> list[fo.Parameter]:
    out = []
    for i, g in enumerate(grads):
        shape, dtype = (g.shape, g.dtype) if g is not None else ((2,), np.float64)
        out.append(fo.Parameter(np.full(shape, float(i), dtype=dtype), None if g is None else g.copy()))
    return out


def torch_params_with(grads: list[np.ndarray | None]) -> list[torch.nn.Parameter]:
    out = []
    for g in grads:
        if g is None:
            out.append(torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)))
            continue
        p = torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype))
        p.grad = torch.from_numpy(g.copy())
        out.append(p)
    return out


def numpy_norm(arrays: list[np.ndarray], p: float) -> float:
    """The definition in float64: the p-norm of the per-array p-norms, each per-array norm
    rounded to its array's dtype (torch's per-tensor norms), the total to the widest."""

    def vector_norm(x: np.ndarray) -> float:
        x = np.abs(np.asarray(x, dtype=np.float64).ravel())
        if p == 0:
            return float(np.count_nonzero(x))
        if p == INF:
            return float(x.max()) if x.size else 0.0
        return float(np.sum(x**p) ** (1.0 / p))

    total = vector_norm(np.array([a.dtype.type(vector_norm(a)) for a in arrays], dtype=np.float64))
    return float(result_dtype(arrays)(total))


def result_dtype(grads: list[np.ndarray]) -> type:
    return np.float64 if any(g.dtype == np.float64 for g in grads) else np.float32


DTYPE_SETS = {
    "float32": [np.float32] * 4,
    "float64": [np.float64] * 4,
    "mixed": [np.float32, np.float64, np.float32, np.float64],
}


# --------------------------------------------------------------------------------------
# Parity with torch.nn.utils and the NumPy transcription
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("dtypes", DTYPE_SETS.values(), ids=DTYPE_SETS.keys())
@pytest.mark.parametrize("max_norm", [0.5, 1e6], ids=["clipping", "not-clipping"])
def test_clip_grad_norm_matches_torch(norm_type, dtypes, max_norm):
    rng = np.random.default_rng(7)
    grads = make_grads(rng, dtypes, scale=3.0)
    params = params_with(grads)
    tparams = torch_params_with(grads)

    norm = fo.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)

    dtype = result_dtype(grads)
    assert type(norm) is dtype and tnorm.numpy().dtype == dtype
    p = float(norm_type)
    np.testing.assert_allclose(norm, tnorm.item(), rtol=rtol_torch(grads))
    np.testing.assert_allclose(norm, numpy_norm(grads, p), rtol=RTOL_NUMPY[dtype])
    coef = min(max_norm / (numpy_norm(grads, p) + 1e-6), 1.0)
    for i, (param, tparam, g) in enumerate(zip(params, tparams, grads)):
        assert param.grad.dtype == g.dtype
        np.testing.assert_allclose(param.grad, tparam.grad.numpy(), rtol=2 * rtol_torch(grads), atol=0)
        np.testing.assert_allclose(param.grad, g * coef, rtol=2 * RTOL_NUMPY[g.dtype.type], atol=0)
        assert np.all(param == i)  # parameters themselves are not touched
    if max_norm == 1e6:
        for param, g in zip(params, grads):
            np.testing.assert_array_equal(param.grad, g)  # the coefficient is exactly 1


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("dtypes", DTYPE_SETS.values(), ids=DTYPE_SETS.keys())
def test_get_total_norm_matches_torch(norm_type, dtypes):
    grads = make_grads(np.random.default_rng(3), dtypes)
    before = [g.copy() for g in grads]
    norm = fo.get_total_norm(grads, norm_type)
    tnorm = torch.nn.utils.get_total_norm([torch.from_numpy(g) for g in grads], norm_type)
    dtype = result_dtype(grads)
    assert type(norm) is dtype and tnorm.numpy().dtype == dtype
    np.testing.assert_allclose(norm, tnorm.item(), rtol=rtol_torch(grads))
    np.testing.assert_allclose(norm, numpy_norm(grads, float(norm_type)), rtol=RTOL_NUMPY[dtype])
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)
    # a single array is taken as a list of one, as torch's
    one = fo.get_total_norm(grads[0], norm_type)
    np.testing.assert_allclose(
        one, torch.nn.utils.get_total_norm(torch.from_numpy(grads[0]), norm_type).item(), rtol=4e-6
    )


@pytest.mark.parametrize("norm_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.3, 2.0, 1e9])
def test_clip_grads_with_norm_scales_bit_identically_to_torch(norm_dtype, max_norm):
    grads = make_grads(np.random.default_rng(11), DTYPE_SETS["mixed"], scale=2.0)
    total = norm_dtype(numpy_norm(grads, 2.0))
    params = params_with(grads)
    tparams = torch_params_with(grads)
    fo.clip_grads_with_norm_(params, max_norm, total)
    torch.nn.utils.clip_grads_with_norm_(tparams, max_norm, torch.tensor(total))
    for param, tparam in zip(params, tparams):
        np.testing.assert_array_equal(param.grad, tparam.grad.numpy())
    # a 0-d array works as the norm too
    params = params_with(grads)
    fo.clip_grads_with_norm_(params, max_norm, np.array(total))
    for param, tparam in zip(params, tparams):
        np.testing.assert_array_equal(param.grad, tparam.grad.numpy())


def test_get_total_norm_then_clip_grads_with_norm_equals_clip_grad_norm_():
    grads = make_grads(np.random.default_rng(5), DTYPE_SETS["mixed"], scale=4.0)
    a, b = params_with(grads), params_with(grads)
    norm = fo.clip_grad_norm_(a, 1.0)
    total = fo.get_total_norm([p.grad for p in b])
    fo.clip_grads_with_norm_(b, 1.0, total)
    assert norm == total and type(norm) is type(total)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.grad, y.grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip_value", [0.0, 0.3, 1.5, 1e9])
def test_clip_grad_value_matches_torch(dtype, clip_value):
    grads = make_grads(np.random.default_rng(9), [dtype] * 4)
    grads[1][:3] = [np.nan, np.inf, -np.inf]
    params = params_with(grads)
    tparams = torch_params_with(grads)
    assert fo.clip_grad_value_(params, clip_value) is None
    torch.nn.utils.clip_grad_value_(tparams, clip_value)
    for param, tparam, g in zip(params, tparams, grads):
        np.testing.assert_array_equal(param.grad, tparam.grad.numpy())
        np.testing.assert_array_equal(param.grad, np.clip(g, -dtype(clip_value), dtype(clip_value)))
    assert np.isnan(params[1].grad[0])


# --------------------------------------------------------------------------------------
# Special values and degenerate inputs
# --------------------------------------------------------------------------------------


def test_empty_list_gives_a_float32_zero_as_torch():
    for fn in (lambda: fo.clip_grad_norm_([], 1.0), lambda: fo.get_total_norm([])):
        norm = fn()
        assert type(norm) is np.float32 and norm == 0
    assert torch.nn.utils.clip_grad_norm_([], 1.0).dtype == torch.float32
    p = fo.Parameter(np.ones(3))  # no gradient: skipped
    assert fo.clip_grad_norm_([p], 1.0) == 0 and p.grad is None
    fo.clip_grad_value_([p], 1.0)
    assert p.grad is None


def test_empty_generator_warns_as_torch():
    with pytest.warns(UserWarning, match="empty generator"):
        fo.clip_grad_norm_((p for p in []), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fo.clip_grad_norm_([], 1.0)


def test_none_gradients_are_skipped():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4), None, rng.standard_normal((2, 2))]
    params = params_with(grads)
    tparams = torch_params_with(grads)
    norm = fo.clip_grad_norm_(params, 0.1)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, 0.1)
    np.testing.assert_allclose(norm, tnorm.item(), rtol=1e-13)
    assert params[1].grad is None
    for param, tparam in zip(params, tparams):
        if param.grad is not None:
            np.testing.assert_allclose(param.grad, tparam.grad.numpy(), rtol=1e-13)
    # and in grads=
    g = [rng.standard_normal(3), None]
    want = g[0] * min(0.1 / (np.linalg.norm(g[0]) + 1e-6), 1.0)
    fo.clip_grad_norm_(None, 0.1, grads=g)
    np.testing.assert_allclose(g[0], want, rtol=1e-13)


def test_size_zero_gradients_count_as_zero_norm():
    grads = [np.zeros((0, 3)), np.array([3.0, 4.0])]
    for p in (1.0, 2.0, 3.5, 0.0):
        torch_norm = torch.nn.utils.get_total_norm([torch.from_numpy(g) for g in grads], p).item()
        assert fo.get_total_norm(grads, p) == pytest.approx(torch_norm, rel=1e-15)
    # torch refuses the inf norm of a size-0 tensor ("no identity"); max |x| over no
    # entries is 0 here, the identity of max over magnitudes
    assert fo.get_total_norm(grads, INF) == 4.0
    assert fo.get_total_norm([np.zeros(0)], INF) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_gradients_stay_zero(dtype):
    params = [fo.Parameter(np.ones(5, dtype=dtype), np.zeros(5, dtype=dtype)) for _ in range(2)]
    params[1].grad[...] = -0.0
    assert fo.clip_grad_norm_(params, 1.0) == 0
    np.testing.assert_array_equal(params[0].grad, 0)
    assert np.all(np.signbit(params[1].grad))  # multiplied by exactly 1, signs kept
    fo.clip_grad_norm_(params, 0.0)  # max_norm 0: coefficient 0 / 1e-6 = 0
    np.testing.assert_array_equal(params[0].grad, 0)


NONFINITE = {
    "nan": lambda g: g.__setitem__(2, np.nan),
    "inf": lambda g: g.__setitem__(2, np.inf),
    "-inf": lambda g: g.__setitem__(0, -np.inf),
    "inf-and-nan": lambda g: g.__setitem__(slice(0, 2), [np.inf, np.nan]),
}


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, INF], ids=str)
@pytest.mark.parametrize("poison", NONFINITE.values(), ids=NONFINITE.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_norms_as_torch(norm_type, poison, dtype):
    rng = np.random.default_rng(2)
    grads = [np.asarray(rng.standard_normal(5), dtype=dtype), np.asarray(rng.standard_normal(3), dtype=dtype)]
    poison(grads[0])
    params = params_with(grads)
    tparams = torch_params_with(grads)
    with pytest.raises(RuntimeError, match="non-finite") as err:
        fo.clip_grad_norm_(params, 1.0, norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as terr:
        torch.nn.utils.clip_grad_norm_(tparams, 1.0, norm_type, error_if_nonfinite=True)
    assert str(err.value) == str(terr.value)
    for param, g in zip(params, grads):
        np.testing.assert_array_equal(param.grad, g)  # nothing changed
    with pytest.raises(RuntimeError, match="non-finite"):
        fo.get_total_norm(grads, norm_type, error_if_nonfinite=True)

    norm = fo.clip_grad_norm_(params, 1.0, norm_type, error_if_nonfinite=False)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, 1.0, norm_type, error_if_nonfinite=False)
    np.testing.assert_array_equal(norm, tnorm.numpy())
    for param, tparam in zip(params, tparams):
        np.testing.assert_array_equal(param.grad, tparam.grad.numpy())


def test_norm_zero_counts_nonzero_entries_as_torch():
    grads = [np.array([0.0, 1.0, -0.0, np.nan]), np.zeros(3), np.array([2.0])]
    tnorm = torch.nn.utils.get_total_norm([torch.from_numpy(g) for g in grads], 0.0)
    assert fo.get_total_norm(grads, 0) == tnorm.item() == 2.0  # two arrays have nonzeros


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_norms_do_not_overflow_before_the_root(dtype):
    # sum g^2 exceeds float32's range, the norm does not; torch's float32 norm gives inf here
    g = np.array([3e20, 4e20], dtype=dtype)
    assert fo.get_total_norm([g]) == pytest.approx(5e20, rel=1e-7)
    p = fo.Parameter(np.zeros(2, dtype=dtype), g.copy())
    fo.clip_grad_norm_([p], 5.0)
    np.testing.assert_allclose(p.grad, [3.0, 4.0], rtol=1e-6)


# --------------------------------------------------------------------------------------
# Input forms
# --------------------------------------------------------------------------------------


def test_input_forms_give_the_same_result():
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    want = [g * min(1.0 / (numpy_norm(grads, 2.0) + 1e-6), 1.0) for g in grads]

    def check(run: Callable[[list[fo.Parameter], list[np.ndarray]], Any]) -> None:
        params = params_with(grads)
        plain = [g.copy() for g in grads]
        run(params, plain)
        got = [p.grad if p.grad is not None else x for p, x in zip(params, plain)]
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-13)

    check(lambda ps, gs: fo.clip_grad_norm_(ps, 1.0))
    check(lambda ps, gs: fo.clip_grad_norm_(iter(ps), 1.0))
    check(lambda ps, gs: fo.clip_grad_norm_(tuple(ps), 1.0))
    check(lambda ps, gs: fo.clip_grad_norm_({"w": ps[0], "b": ps[1]}, 1.0))
    check(lambda ps, gs: fo.clip_grad_norm_([("w", ps[0]), ("b", ps[1])], 1.0))

    def grads_only(ps: list[fo.Parameter], gs: list[np.ndarray]) -> None:
        for p in ps:
            p.grad = None
        fo.clip_grad_norm_(None, 1.0, grads=gs)

    check(grads_only)

    def mixed(ps: list[fo.Parameter], gs: list[np.ndarray]) -> None:
        ps[1].grad = None
        fo.clip_grad_norm_(ps[0], max_norm=1.0, grads=[None, gs[1]])

    check(mixed)

    # the norm of one array
    p = fo.Parameter(np.zeros(2), np.array([3.0, 4.0]))
    assert fo.clip_grad_norm_(p, 1.0) == 5.0
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-6)


def test_optimizer_parameters_clip_then_step_as_torch():
    rng = np.random.default_rng(8)
    start = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    params = [fo.Parameter(x.copy()) for x in start]
    tparams = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in start]
    opt = fo.Adam(params, lr=0.1)
    topt = torch.optim.Adam(tparams, lr=0.1, foreach=False)
    for _ in range(5):
        grads = [rng.standard_normal(x.shape) * 5 for x in start]
        for p, tp, g in zip(params, tparams, grads):
            p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
        norm = fo.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
        tnorm = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
        np.testing.assert_allclose(norm, tnorm.item(), rtol=1e-13)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Layouts and threads
# --------------------------------------------------------------------------------------

#: gradient layouts: (shape of the owning base array, its order, the view of it clipped)
LAYOUTS: dict[str, tuple[tuple[int, ...], str, Callable[[np.ndarray], np.ndarray]]] = {
    "C": ((6, 5), "C", lambda b: b),
    "F": ((6, 5), "F", lambda b: b),
    "strided": ((12, 5), "C", lambda b: b[::2]),
    "reversed": ((6, 5), "C", lambda b: b[::-1, ::-2]),
    "transposed-3d": ((4, 3, 5), "C", lambda b: b.transpose(2, 0, 1)),
    "0-d": ((), "C", lambda b: b),
}


class _Holder:
    """Something with a ``.grad``, for torch's ``clip_grads_with_norm_``."""

    def __init__(self, grad: torch.Tensor) -> None:
        self.grad = grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, INF], ids=str)
def test_layouts_are_clipped_in_place_through_the_view(dtype, norm_type):
    rng = np.random.default_rng(6)
    bases = [
        np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)
        for shape, order, _ in LAYOUTS.values()
    ]
    views = [view(b) for b, (_, _, view) in zip(bases, LAYOUTS.values())]
    originals = [b.copy(order="K") for b in bases]
    tgrads = [torch.from_numpy(np.ascontiguousarray(v).copy()) for v in views]

    norm = fo.clip_grad_norm_(None, 0.5, norm_type, grads=views)
    tnorm = torch.nn.utils.get_total_norm(tgrads, norm_type)
    torch.nn.utils.clip_grads_with_norm_([_Holder(g) for g in tgrads], 0.5, tnorm)  # type: ignore[misc]

    np.testing.assert_allclose(norm, tnorm.item(), rtol=RTOL_TORCH[dtype])
    for view, tg in zip(views, tgrads):
        np.testing.assert_allclose(view, tg.numpy(), rtol=2 * RTOL_TORCH[dtype], atol=0)
    # memory outside the strided view is untouched, and the F-order base stays F-order
    np.testing.assert_array_equal(bases[2][1::2], originals[2][1::2])
    assert bases[1].flags.f_contiguous and not np.array_equal(bases[1], originals[1])


def test_read_only_and_broadcast_arrays_have_a_norm():
    g = np.arange(4.0)
    g.flags.writeable = False
    broadcast = np.broadcast_to(np.array([3.0, 4.0]), (2, 2))
    norm = fo.get_total_norm([g, broadcast])
    tnorm = torch.nn.utils.get_total_norm([torch.tensor(g), torch.tensor(np.array(broadcast))])
    np.testing.assert_allclose(norm, tnorm.item(), rtol=1e-15)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, INF], ids=str)
def test_norm_is_bit_identical_for_any_thread_count(norm_type):
    rng = np.random.default_rng(12)
    grads = [
        rng.standard_normal(300_000).astype(np.float32),
        np.asfortranarray(rng.standard_normal((300, 400))),
        rng.standard_normal(200_003)[::2],
        rng.standard_normal(5).astype(np.float32),
        np.zeros(0),
    ]
    results = []
    for threads in (1, 2, 3):
        fo.set_num_threads(threads)
        work = [
            g.copy(order="K") if g.flags.c_contiguous or g.flags.f_contiguous else g.copy() for g in grads
        ]
        work[2] = np.repeat(work[2], 2)[::2]  # a strided view again
        total = fo.get_total_norm(work, norm_type)
        norm = fo.clip_grad_norm_(None, 1.0, norm_type, grads=work)
        assert norm == total
        results.append((norm, work))
    (norm1, grads1) = results[0]
    for norm, work in results[1:]:
        assert norm.tobytes() == norm1.tobytes()
        for a, b in zip(work, grads1):
            assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(norm1, numpy_norm(grads, norm_type), rtol=1e-13)


# --------------------------------------------------------------------------------------
# Bad input raises and changes nothing
# --------------------------------------------------------------------------------------


def _assert_unchanged(arrays: list[np.ndarray], before: list[np.ndarray]) -> None:
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


CLIPPERS = {
    "norm": lambda **kw: fo.clip_grad_norm_(max_norm=0.1, **kw),
    "with_norm": lambda **kw: fo.clip_grads_with_norm_(max_norm=0.1, total_norm=10.0, **kw),
    "value": lambda **kw: fo.clip_grad_value_(clip_value=0.1, **kw),
}


@pytest.mark.parametrize("clip", CLIPPERS.values(), ids=CLIPPERS.keys())
def test_bad_arrays_raise_and_change_nothing(clip):
    rng = np.random.default_rng(0)
    good = [rng.standard_normal(4) * 10, rng.standard_normal(3).astype(np.float32) * 10]
    before = [g.copy() for g in good]
    read_only = rng.standard_normal(2)
    read_only.flags.writeable = False
    shared = rng.standard_normal(6)
    cases = [
        ([np.arange(3)], TypeError, r"grads\[2\] has dtype int64, expected float32 or float64"),
        ([np.ones(2, dtype=np.float16)], TypeError, "float16"),
        ([[1.0, 2.0]], TypeError, r"grads\[2\] must be a numpy.ndarray, got list"),
        ([np.float64(1.0)], TypeError, "must be a numpy.ndarray"),
        ([read_only], ValueError, r"grads\[2\] is read-only"),
        ([shared[:4], shared[2:]], ValueError, r"grads\[3\] shares memory"),
        ([good[0]], ValueError, r"grads\[2\] shares memory"),
        ([np.broadcast_to(np.ones(1), (3,))], ValueError, "share memory with each other"),
    ]
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            clip(parameters=None, grads=good + extra)
        _assert_unchanged(good, before)


def test_parameters_must_be_parameters():
    with pytest.raises(TypeError, match="plain numpy.ndarray, which has no .grad"):
        fo.clip_grad_norm_(np.ones(3), 1.0)
    with pytest.raises(TypeError, match=r"parameters\[1\] must be a ferroptim.Parameter, got ndarray; wrap"):
        fo.clip_grad_norm_([fo.Parameter(np.ones(2), np.ones(2)), np.ones(2)], 1.0)
    with pytest.raises(TypeError, match=r"parameters\['b'\] must be a ferroptim.Parameter"):
        fo.clip_grad_value_({"b": 3.0}, 1.0)
    with pytest.raises(TypeError, match=r"parameters\['w'\] must be a ferroptim.Parameter, got ndarray"):
        fo.clip_grad_value_([("w", np.ones(2))], 1.0)
    with pytest.raises(TypeError, match="pass parameters"):
        fo.clip_grad_norm_(None, 1.0)
    with pytest.raises(TypeError, match="iterable"):
        fo.clip_grad_norm_(3, 1.0)


def test_bad_numbers_raise_and_change_nothing():
    g = np.array([3.0, 4.0])
    p = fo.Parameter(np.zeros(2), g.copy())
    for kwargs, error, message in [
        (dict(max_norm=-1.0), ValueError, "max_norm must be >= 0"),
        (dict(max_norm=math.nan), ValueError, "max_norm must be >= 0"),
        (dict(max_norm="a"), TypeError, "max_norm must be a number"),
        (dict(max_norm=1.0, norm_type=-2.0), ValueError, "norm_type must be >= 0 or inf"),
        (dict(max_norm=1.0, norm_type=-INF), ValueError, "norm_type must be >= 0 or inf"),
        (dict(max_norm=1.0, norm_type=math.nan), ValueError, "norm_type must be >= 0 or inf"),
        (dict(max_norm=1.0, foreach="yes"), TypeError, "foreach"),
    ]:
        with pytest.raises(error, match=message):
            fo.clip_grad_norm_([p], **kwargs)
        np.testing.assert_array_equal(p.grad, g)
    for value in (-0.5, math.nan):
        with pytest.raises(ValueError, match="clip_value must be >= 0"):
            fo.clip_grad_value_([p], value)
    with pytest.raises(ValueError, match="0-d"):
        fo.clip_grads_with_norm_([p], 1.0, np.ones(2))
    np.testing.assert_array_equal(p.grad, g)
    # foreach is accepted and changes nothing
    fo.clip_grad_norm_([p], 1.0, foreach=True)
    np.testing.assert_allclose(p.grad, g / (5 + 1e-6), rtol=1e-15)
