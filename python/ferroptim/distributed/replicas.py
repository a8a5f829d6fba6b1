"""Replicas: put every rank on root's parameters and optimizer state, and check that the
ranks' parameters agree bit for bit."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..optimizer import Optimizer
from ..parameter import FLOAT_DTYPES
from ._collective import DistributedError, _agree, _comm, _mismatch, _root
from ._flat import _pack, _span, _views
from .data_parallel import DistributedOptimizer
from .zero import ZeroRedundancyOptimizer


def _items(params: Any) -> tuple[list[np.ndarray], list[str]]:
    """Arrays and names of a sequence of arrays, a mapping name -> array, or pairs."""
    if isinstance(params, np.ndarray):
        params = [params]
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    arrays, names = [], []
    for i, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, array = item
        else:
            name, array = f"params[{i}]", item
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
        arrays.append(array)
        names.append(name)
    return arrays, names


def _signature(arrays: Sequence[np.ndarray], names: Sequence[str]) -> list[tuple[str, tuple[int, ...], str]]:
    return [(n, tuple(a.shape), a.dtype.str) for a, n in zip(arrays, names)]


def broadcast_parameters(params: Any, comm: Any = None, root: int = 0) -> None:
    """Copies ``root``'s values of ``params`` into every rank's arrays, in place.

    ``params``: a sequence of arrays (or ``fo.Parameter``s), a mapping of names to arrays,
    or ``(name, array)`` pairs, with the same names, shapes and dtypes on every rank (else
    every rank raises :class:`DistributedError`). Arrays of one dtype travel in one
    ``Bcast``: in place when they are views of one flat buffer, else packed."""
    comm = _comm(comm)
    error: BaseException | None = None
    signature: Any = None
    try:
        root = _root(root, comm)
        arrays, names = _items(params)
        for a, n in zip(arrays, names):
            if a.dtype not in FLOAT_DTYPES and a.dtype.kind not in "iub":
                raise TypeError(f"{n} has dtype {a.dtype}, which cannot be broadcast")
            if not a.flags.writeable:
                raise ValueError(f"{n} is read-only")
        signature = _signature(arrays, names)
    except (TypeError, ValueError) as err:
        error = err
    signatures = _agree(comm, error, "broadcast_parameters", signature)
    _mismatch(comm, signatures, "the parameters (names, shapes, dtypes)")
    for dtype in dict.fromkeys(a.dtype for a in arrays):
        members = [a for a in arrays if a.dtype == dtype]
        span = _span(members)
        if span is not None:
            comm.Bcast(span, root=root)
            continue
        shapes = [a.shape for a in members]
        buffer = np.empty(sum(a.size for a in members), dtype=dtype)
        if comm.rank == root:
            _pack(members, shapes, buffer)
        comm.Bcast(buffer, root=root)
        if comm.rank != root:
            for a, view in zip(members, _views(buffer, shapes)):
                a[...] = view


def check_replicas(params: Any, comm: Any = None) -> None:
    """Raises :class:`DistributedError` on every rank unless every array of ``params`` (as
    for :func:`broadcast_parameters`) holds the same bits on every rank; the message names
    the first parameter that differs and the ranks that differ from rank 0."""
    comm = _comm(comm)
    error: BaseException | None = None
    digests: Any = None
    try:
        arrays, names = _items(params)
        digests = [
            (n, a.shape, a.dtype.str, hashlib.blake2b(np.ascontiguousarray(a).tobytes()).digest())
            for a, n in zip(arrays, names)
        ]
    except (TypeError, ValueError) as err:
        error = err
    gathered = _agree(comm, error, "check_replicas", digests)
    for i, (name, *_) in enumerate(gathered[0]):
        differ = [r for r, d in enumerate(gathered) if len(d) <= i or d[i] != gathered[0][i]]
        if differ:
            ranks = ", ".join(map(str, differ))
            raise DistributedError(f"replicas differ: {name} on rank(s) {ranks} is not rank 0's")
    _mismatch(comm, [len(d) for d in gathered], "the number of parameters")


class _ArrayRef:
    """Stands for the ``index``-th array of a state dict sent in pieces."""

    __slots__ = ("index", "shape", "dtype")

    def __init__(self, index: int, shape: tuple[int, ...], dtype: str) -> None:
        self.index, self.shape, self.dtype = index, shape, dtype

    def __getstate__(self) -> tuple[int, tuple[int, ...], str]:
        return self.index, self.shape, self.dtype

    def __setstate__(self, state: tuple[int, tuple[int, ...], str]) -> None:
        self.index, self.shape, self.dtype = state


def _split_arrays(node: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(node, np.ndarray):
        arrays.append(np.ascontiguousarray(node))
        return _ArrayRef(len(arrays) - 1, node.shape, node.dtype.str)
    if isinstance(node, Mapping):
        return {k: _split_arrays(v, arrays) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_split_arrays(v, arrays) for v in node)
    return node


def _join_arrays(node: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(node, _ArrayRef):
        return arrays[node.index]
    if isinstance(node, Mapping):
        return {k: _join_arrays(v, arrays) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_join_arrays(v, arrays) for v in node)
    return node


def _bcast_tree(tree: Any, comm: Any, root: int) -> Any:
    """``comm.bcast`` of a structure holding arrays, the arrays sent as buffers (one
    ``Bcast`` each) rather than pickled."""
    arrays: list[np.ndarray] = []
    skeleton = _split_arrays(tree, arrays) if comm.rank == root else None
    skeleton, refs = comm.bcast((skeleton, _refs(skeleton)) if comm.rank == root else None, root=root)
    buffers = arrays if comm.rank == root else [np.empty(r.shape, dtype=r.dtype) for r in refs]
    for buffer in buffers:
        comm.Bcast(buffer, root=root)
    return _join_arrays(skeleton, buffers)


def _refs(node: Any) -> list[_ArrayRef]:
    out: list[_ArrayRef] = []

    def walk(n: Any) -> None:
        if isinstance(n, _ArrayRef):
            out.append(n)
        elif isinstance(n, Mapping):
            for v in n.values():
                walk(v)
        elif isinstance(n, (list, tuple)):
            for v in n:
                walk(v)

    walk(node)
    return sorted(out, key=lambda r: r.index)


def broadcast_optimizer_state(optimizer: Any, comm: Any = None, root: int = 0) -> None:
    """Loads ``root``'s ``optimizer.state_dict()`` (hyperparameters and state) into every
    rank's optimizer. ``optimizer`` is a ferroptim optimizer or a
    :class:`DistributedOptimizer`, built over the same parameters on every rank. If the
    state dict does not fit some rank's optimizer, every rank raises
    :class:`DistributedError` (ranks whose load succeeded keep root's state)."""
    comm = _comm(comm)
    inner = optimizer.optimizer if isinstance(optimizer, DistributedOptimizer) else optimizer
    error: BaseException | None = None
    state_dict = None
    try:
        root = _root(root, comm)
        if isinstance(inner, ZeroRedundancyOptimizer):
            raise TypeError(
                "a ZeroRedundancyOptimizer's state is sharded: load a consolidated state dict "
                "on every rank with load_state_dict() instead"
            )
        if not isinstance(inner, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a ferroptim optimizer")
        if comm.rank == root:
            state_dict = inner.state_dict()
    except Exception as err:  # state-dict hooks too: every rank must reach the check below
        error = err
    _agree(comm, error, "broadcast_optimizer_state")
    state_dict = _bcast_tree(state_dict, comm, root)
    error = None
    if comm.rank != root:
        try:
            inner.load_state_dict(state_dict)
        except Exception as err:
            error = err
    _agree(comm, error, "broadcast_optimizer_state (load_state_dict)")
