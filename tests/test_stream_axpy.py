"""``_core._stream_axpy``, the bandwidth probe of ``benches/bench_step.py``: ``y += a * x``
in place, against NumPy, for every thread count; bad arrays raise and change nothing."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _core


@pytest.fixture(autouse=True)
def restore_num_threads():
    saved = fo.get_num_threads()
    yield
    fo.set_num_threads(saved)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("shape", [(0,), (7,), (300_001,), (250, 401)])
def test_adds_a_times_x(rng, dtype, threads, shape):
    fo.set_num_threads(threads)
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    a = -0.37
    want = y + dtype(a) * x  # one rounding per operation, as the kernel does
    _core._stream_axpy(y, x, a)
    np.testing.assert_array_equal(y, want)


def _y_x() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(6, dtype=np.float32), np.ones(6, dtype=np.float32)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda y, x: (y, x.astype(np.float64)), TypeError, "x has dtype float64, expected the dtype of y"),
        (lambda y, x: (y.astype(np.int64), x), TypeError, "y has dtype int64"),
        (lambda y, x: (y.tolist(), x), TypeError, "y must be a numpy.ndarray, got list"),
        (lambda y, x: (y, x[:5]), ValueError, r"x has shape \[5\], expected \[6\]"),
        (lambda y, x: (y, y), ValueError, "x shares memory"),
        (lambda y, x: (y[::2], x[::2]), ValueError, "is not a C-contiguous"),
        (lambda y, x: (y.reshape(2, 3).T, x.reshape(3, 2)), ValueError, "is not a C-contiguous"),
    ],
    ids=["x-dtype", "y-dtype", "not-array", "shape", "aliased", "strided", "transposed"],
)
def test_bad_arrays_raise_and_change_nothing(make, error, match):
    y, x = _y_x()
    y_arg, x_arg = make(y, x)
    before = np.array(y_arg, copy=True)
    with pytest.raises(error, match=match):
        _core._stream_axpy(y_arg, x_arg, 2.0)
    np.testing.assert_array_equal(np.asarray(y_arg), before)


def test_read_only_y_raises():
    y, x = _y_x()
    y.flags.writeable = False
    with pytest.raises(ValueError, match="y is read-only"):
        _core._stream_axpy(y, x, 2.0)
    np.testing.assert_array_equal(y, np.arange(6))
