"""Gradients and parameters as flat vectors: the caller's buffer when the arrays are views
of one laid out back to back (``fo.flatten_parameters``), else packed, one NumPy copy per
array."""

from __future__ import annotations

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


def _chunks(n: int, itemsize: int, cap_bytes: int | None) -> Iterator[slice]:
    step = n if not cap_bytes else max(1, cap_bytes // itemsize)
    for start in range(0, n, step) if n else ():
        yield slice(start, min(n, start + step))
