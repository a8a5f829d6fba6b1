"""Gradients and parameters as flat vectors: the caller's buffer when the arrays are views
of one laid out back to back (``fo.flatten_parameters``), else packed, one NumPy copy per
array; and any range of the flat vector of separate arrays, read or written through views of
the arrays themselves."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

import numpy as np


def _owner(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def _span(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """The 1-D view that holds exactly ``arrays``, one after the other, when they are
    C-contiguous views of one contiguous buffer laid out back to back (as
    :func:`ferroptim.flatten_parameters` lays out parameters and gradients); else ``None``."""
    if not arrays:
        return None
    first = arrays[0]
    owner = _owner(first)
    if not owner.flags.c_contiguous or owner.dtype != first.dtype:
        return None
    start = _address(first) - _address(owner)
    end = start
    for a in arrays:
        if (
            not isinstance(a, np.ndarray)
            or a.dtype != first.dtype
            or not a.flags.c_contiguous
            or _owner(a) is not owner
            or _address(a) - _address(owner) != end
        ):
            return None
        end += a.nbytes
    size = first.dtype.itemsize
    return owner.reshape(-1)[start // size : end // size]


def _offsets(sizes: Sequence[int]) -> list[int]:
    return [0, *np.cumsum(sizes, dtype=np.int64).tolist()]


def _pack(arrays: Sequence[np.ndarray | None], shapes: Sequence[tuple[int, ...]], out: np.ndarray) -> None:
    """Copies each array into its slot of ``out`` (zeros for ``None``), one NumPy copy each."""
    present = [a for a in arrays if a is not None]
    if len(present) == len(arrays):
        np.concatenate([np.ravel(a) for a in present], out=out)  # one C loop; ravel copies odd layouts only
        return
    start = 0
    for a, shape in zip(arrays, shapes):
        size = math.prod(shape)
        slot = out[start : start + size]
        if a is None:
            slot[...] = 0
        else:
            slot.reshape(shape)[...] = a
        start += size


def _views(buffer: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(buffer[start : start + size].reshape(shape))
        start += size
    return out


def _cap_bytes(bucket_cap_mb: object) -> int | None:
    """``bucket_cap_mb`` (MiB, or ``None`` for no cap) in bytes; ``ValueError`` unless it is a
    positive number or ``None``."""
    if bucket_cap_mb is None:
        return None
    if (
        isinstance(bucket_cap_mb, bool)
        or not isinstance(bucket_cap_mb, (int, float))
        or not bucket_cap_mb > 0
    ):
        raise ValueError(f"bucket_cap_mb must be a positive number or None, got {bucket_cap_mb!r}")
    return max(1, int(bucket_cap_mb * 2**20))


def _chunks(n: int, itemsize: int, cap_bytes: int | None) -> Iterator[slice]:
    step = n if not cap_bytes else max(1, cap_bytes // itemsize)
    for start in range(0, n, step) if n else ():
        yield slice(start, min(n, start + step))


def _flat_range(a: np.ndarray, start: int, stop: int) -> list[np.ndarray]:
    """Views of ``a`` that hold its elements ``[start, stop)`` in C order, one after the
    other: one view when ``a`` is C-contiguous or 1-D, else at most two partial rows and one
    block of whole rows per dimension. Never a copy."""
    if start >= stop:
        return []
    if a.flags.c_contiguous:
        return [a.reshape(-1)[start:stop]]
    if a.ndim == 1:
        return [a[start:stop]]
    row = math.prod(a.shape[1:])
    first, last = start // row, (stop - 1) // row
    if first == last:
        return _flat_range(a[first], start - first * row, stop - first * row)
    views = _flat_range(a[first], start - first * row, row) if start % row else []
    whole = a[-(-start // row) : stop // row]
    if whole.size:
        views.append(whole)
    if stop % row:
        views += _flat_range(a[last], 0, stop - last * row)
    return views


def _segments(
    arrays: Sequence[np.ndarray | None], offsets: Sequence[int], lo: int, hi: int
) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """The elements ``[lo, hi)`` of the flat vector that ``arrays`` form one after the other
    (each in C order; ``offsets`` from :func:`_offsets`), in order, as ``(start, stop, view)``:
    a view of one array (or ``None`` for an array that is ``None``) holding the flat elements
    ``[start, stop)``."""
    k = bisect.bisect_right(offsets, lo) - 1
    while k < len(arrays) and offsets[k] < hi:
        a, b = max(lo, offsets[k]), min(hi, offsets[k + 1])
        array = arrays[k]
        if a < b and array is None:
            yield a, b, None
        elif a < b:
            for view in _flat_range(np.asarray(array), a - offsets[k], b - offsets[k]):
                yield a, a + view.size, view
                a += view.size
        k += 1


def _read(arrays: Sequence[np.ndarray | None], offsets: Sequence[int], lo: int, out: np.ndarray) -> None:
    """Copies the flat elements ``[lo, lo + out.size)`` of ``arrays`` into ``out`` (zeros for
    ``None``), one NumPy copy per view."""
    for start, stop, view in _segments(arrays, offsets, lo, lo + out.size):
        if view is None:
            out[start - lo : stop - lo] = 0
        else:
            out[start - lo : stop - lo].reshape(view.shape)[...] = view


def _write(arrays: Sequence[np.ndarray], offsets: Sequence[int], lo: int, values: np.ndarray) -> None:
    """Copies ``values`` into the flat elements ``[lo, lo + values.size)`` of ``arrays``."""
    for start, stop, view in _segments(arrays, offsets, lo, lo + values.size):
        if view is not None:
            view[...] = values[start - lo : stop - lo].reshape(view.shape)
