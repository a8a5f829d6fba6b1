"""Reading and writing any range of the flat vector that separate arrays of any layout form
(``ferroptim.distributed._flat``, used by ZeroRedundancyOptimizer's exchanges in rounds), against
``np.ravel`` and ``np.concatenate``. Pure NumPy: no MPI."""

from __future__ import annotations

import numpy as np

from ferroptim.distributed._flat import _flat_range, _offsets, _read, _write


def layouts() -> list[np.ndarray | None]:
    """A 0-d, a size-0, a Fortran-order 3-d, a strided, a reversed 3-d view, a column view,
    two views of one buffer, ``None`` (zeros), a C-order array and an empty 3-d one."""
    buf = np.linspace(-1.0, 1.0, 12)
    return [
        np.array(0.5),
        np.zeros(0),
        np.asfortranarray(np.arange(24.0).reshape(2, 3, 4)),
        np.arange(10.0)[::2],
        np.arange(24.0).reshape(2, 3, 4)[:, ::-1, 1:],
        np.arange(12.0).reshape(4, 3)[:, 1:],
        buf[5:].reshape(7, 1),
        buf[:5],
        None,
        np.arange(6.0),
        np.zeros((2, 0, 3)),
    ]


NONE_SIZE = 3


def flat_of(arrays: list[np.ndarray | None]) -> np.ndarray:
    return np.concatenate([np.zeros(NONE_SIZE) if a is None else np.ravel(a) for a in arrays])


def test_flat_range_gives_views_of_the_range_in_c_order() -> None:
    for a in (x for x in layouts() if x is not None):
        for start in range(a.size + 1):
            for stop in range(start, a.size + 1):
                views = _flat_range(a, start, stop)
                assert all(np.shares_memory(v, a) for v in views)
                got = np.concatenate([np.ravel(v) for v in views]) if views else np.zeros(0)
                np.testing.assert_array_equal(got, np.ravel(a)[start:stop])


def test_read_and_write_every_range() -> None:
    arrays = layouts()
    offsets = _offsets([NONE_SIZE if a is None else a.size for a in arrays])
    flat = flat_of(arrays)
    n = flat.size
    none = slice(offsets[8], offsets[9])
    for lo in range(n + 1):
        for hi in range(lo, n + 1):
            out = np.full(hi - lo, np.nan)
            _read(arrays, offsets, lo, out)
            np.testing.assert_array_equal(out, flat[lo:hi], err_msg=f"read [{lo}, {hi})")
            targets = layouts()
            values = -1.0 - np.arange(hi - lo)
            _write(targets, offsets, lo, values)
            expected = flat.copy()
            expected[lo:hi] = values
            expected[none] = 0  # a None array takes nothing
            np.testing.assert_array_equal(flat_of(targets), expected, err_msg=f"write [{lo}, {hi})")
