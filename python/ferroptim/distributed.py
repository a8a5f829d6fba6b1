"""Data-parallel training on MPI: gradient all-reduce and sharded optimizer state (ZeRO-1).

Every process (rank) holds a replica of the parameters and computes gradients on its
share ``B/N`` of each minibatch of ``B`` examples. For a mean loss
``L(θ) = B⁻¹ Σ_μ l(θ; x_μ, y_μ)`` (the lecture's minibatch loss over ``Λ_k``), the full
gradient is the average of the ranks' gradients,

    ∇L(θ) = N⁻¹ Σ_r ∇L_r(θ),      L_r = (B/N)⁻¹ Σ_{μ ∈ Λ_k^r} l(θ; x_μ, y_μ),

so after one all-reduce every rank takes the same step as one process on the full batch.

* :class:`DistributedOptimizer` wraps any ferroptim optimizer: one ``Allreduce`` per dtype
  (or per size-capped bucket) over a flat gradient buffer, then the wrapped step, which
  every rank computes on the same bits.
* :class:`ZeroRedundancyOptimizer` is stage 1 of ZeRO (Rajbhandari et al. 2020, "ZeRO:
  Memory Optimizations Toward Training Trillion Parameter Models"): each rank keeps the
  optimizer state of one contiguous shard of the flat parameters only. A step is a
  reduce-scatter of the gradients, a local step on the shard and an all-gather of the
  parameters: the same bytes on the wire as an all-reduce (a ring all-reduce *is* a
  reduce-scatter and an all-gather), and ``1/N`` of the optimizer state per rank.
* :func:`broadcast_parameters`, :func:`broadcast_optimizer_state` put every rank on the same
  start; :func:`check_replicas` verifies that the replicas agree bit for bit.

Failure behaviour: before any communication that could block, the ranks agree on what each
is about to do (an ``allgather`` of each rank's error, gradient layout and hyperparameters).
If any rank fails, every rank raises :class:`DistributedError` naming the failed ranks and
their errors, and no rank is left waiting in a collective. Launch with ``mpirun -n N python
-m mpi4py your_script.py`` so that an exception your own code raises on one rank (outside
ferroptim) aborts the job instead of leaving the others waiting.

Built on mpi4py (``pip install 'ferroptim[mpi]'``), imported on first use: ``import
ferroptim`` never needs it. ``comm`` is an ``mpi4py.MPI.Intracomm`` (default
``MPI.COMM_WORLD``).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from ._validate import GRAD_DEFAULTS, grad_settings
from .adagrad_norm import AdagradNorm
from .adam import Adam
from .flat import _buffered
from .optimizer import Optimizer
from .parameter import FLOAT_DTYPES, Parameter

__all__ = [
    "DistributedError",
    "DistributedOptimizer",
    "ZeroRedundancyOptimizer",
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "check_replicas",
]

#: Operations of :class:`DistributedOptimizer` on the ranks' gradients.
OPS = ("average", "sum")


class DistributedError(RuntimeError):
    """Raised on every rank when one or more ranks failed a collective operation: the
    message names each failed rank and its error (on a failed rank, the original exception
    is the ``__cause__``)."""


# --- communicators and the collective error check ------------------------------------


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(
            "ferroptim.distributed needs mpi4py (and an MPI library such as Open MPI): "
            "pip install 'ferroptim[mpi]'"
        ) from err
    return MPI


def _comm(comm: Any) -> Any:
    MPI = _mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py.MPI.Intracomm, got {type(comm).__name__}")
    return comm


def _root(root: Any, comm: Any) -> int:
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < comm.size:
        raise ValueError(f"root must be a rank in [0, {comm.size}), got {root!r}")
    return int(root)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _agree(comm: Any, error: BaseException | None, what: str, extra: Any = None) -> list[Any]:
    """The collective error check: every rank passes its own error (or ``None``) and any
    small picklable ``extra``; returns every rank's ``extra``, or raises
    :class:`DistributedError` on every rank when any rank had an error."""
    gathered = comm.allgather((None if error is None else _describe(error), extra))
    failed = [(rank, message) for rank, (message, _) in enumerate(gathered) if message is not None]
    if failed:
        lines = "; ".join(f"rank {rank}: {message}" for rank, message in failed)
        raise DistributedError(f"{what} failed on {len(failed)} of {comm.size} ranks: {lines}") from error
    return [e for _, e in gathered]


def _mismatch(comm: Any, values: list[Any], what: str) -> None:
    """Raises :class:`DistributedError` on every rank unless every rank gave rank 0's value
    (``values`` comes from :func:`_agree`, so all ranks see the same list)."""
    differ = [rank for rank, v in enumerate(values) if v != values[0]]
    if differ:
        ranks = ", ".join(map(str, differ))
        raise DistributedError(f"{what} differs between rank 0 and rank(s) {ranks}")


# --- flat buffers -----------------------------------------------------------------------


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


# --- replicas ---------------------------------------------------------------------------


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


# --- the two optimizers -----------------------------------------------------------------


def _group_fingerprint(group: Mapping[str, Any]) -> int:
    """A checksum of a group's hyperparameters that is equal on ranks that agree (reprs of
    numbers are exact; Python's own ``hash`` of strings is salted per process)."""
    items = sorted((k, repr(v)) for k, v in group.items() if k not in ("params", "param_names"))
    return zlib.crc32(repr(items).encode())


def _checked(params: list[np.ndarray], grads: list[Any], groups: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Checks each gradient against its parameter; returns them (NumPy scalars as 0-d)."""
    out = []
    for i, (p, g) in enumerate(zip(params, grads)):
        if isinstance(g, np.generic):
            g = np.asarray(g)
        if g is not None and not (isinstance(g, np.ndarray) and g.dtype == p.dtype and g.shape == p.shape):
            site = _sites(groups)[i]
            if not isinstance(g, np.ndarray):
                raise TypeError(f"the gradient of {site} is a {type(g).__name__}, not a numpy.ndarray")
            if g.dtype != p.dtype:
                raise TypeError(f"the gradient of {site} has dtype {g.dtype}, the parameter {p.dtype}")
            raise ValueError(f"the gradient of {site} has shape {g.shape}, the parameter {p.shape}")
        out.append(g)
    return out


def _layout(groups: Sequence[Mapping[str, Any]]) -> tuple[int, ...]:
    """What every rank must agree on before exchanging gradients: each group's parameter
    shapes and dtypes, and its hyperparameters."""
    return tuple(
        zlib.crc32(repr([(p.shape, p.dtype.char) for p in g["params"]]).encode()) ^ _group_fingerprint(g)
        for g in groups
    )


def _sites(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"param_groups[{gi}]['params'][{i}]" for gi, g in enumerate(groups) for i in range(len(g["params"]))
    ]


def _collect(groups: Sequence[Mapping[str, Any]], grads: Sequence[Any] | None) -> tuple[list[Any], list[Any]]:
    """All parameters of ``groups`` in order and their gradients (``.grad``, or ``grads``)."""
    params = [p for g in groups for p in g["params"]]
    if grads is None:
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{_sites(groups)[i]} is a plain ndarray, which has no .grad; "
                    "wrap it in ferroptim.Parameter or pass grads= to step()"
                )
        return params, [p.grad for p in params]
    if isinstance(grads, np.ndarray) or not isinstance(grads, Iterable):
        raise TypeError("grads must be a sequence with one entry (array or None) per parameter")
    grads = list(grads)
    if len(grads) != len(params):
        raise ValueError(f"grads has {len(grads)} entries, but the optimizer has {len(params)} parameters")
    return params, grads


def _exchange_plan(
    comm: Any,
    groups: Sequence[Mapping[str, Any]],
    grads: Sequence[Any] | None,
    what: str,
    error: BaseException | None = None,
) -> tuple[list[Any], list[Any], np.ndarray]:
    """The collective check before a step's gradient exchange: every rank checks its own
    gradients (and brings any ``error`` it already has), then all agree on the layout.
    Returns the parameters, this rank's checked gradients, and which parameters have a
    gradient on any rank."""
    params: list[Any] = []
    checked: list[Any] = []
    mask = b""
    layout: Any = None
    try:
        params, given = _collect(groups, grads)
        checked = _checked(params, given, groups)
        mask = np.packbits([g is not None for g in checked]).tobytes()
        layout = _layout(groups)
    except (TypeError, ValueError) as err:
        error = err
    gathered = _agree(comm, error, what, (layout, mask))
    _mismatch(comm, [layout for layout, _ in gathered], "the parameters (shapes, dtypes) or hyperparameters")
    union = np.bitwise_or.reduce([np.frombuffer(m, dtype=np.uint8) for _, m in gathered])
    has_grad = np.unpackbits(union, count=len(params)).astype(bool) if params else np.zeros(0, bool)
    return params, checked, has_grad


def _run_closure(comm: Any, closure: Callable[[], Any] | None) -> Any:
    """Runs a step's closure (if given) under the collective error check: if it raises on
    any rank, every rank raises :class:`DistributedError` before the gradient exchange."""
    if closure is None:
        return None
    error: BaseException | None = None
    loss = None
    try:
        loss = closure()
    except Exception as err:
        error = err
    _agree(comm, error, "the closure")
    return loss


class DistributedOptimizer:
    """Data-parallel training with any ferroptim optimizer: averages (or sums) the ranks'
    gradients, then runs the wrapped step, which every rank computes on the same bits.

    ``step()`` first exchanges the gradients of every dtype in one ``Allreduce`` (several
    if the dtype's gradients exceed ``bucket_cap_mb``) over a flat buffer: in place when the
    gradients are views of one buffer laid out back to back (``fo.flatten_parameters``),
    else packed into a buffer kept between steps (one NumPy copy per tensor, never element
    by element). The reduced gradient is written into each ``p.grad`` (as torch's DDP
    leaves it), or, with ``step(grads=...)``, handed to the wrapped step (the caller's
    arrays are left as they were; read-only ``.grad`` arrays are replaced, not written). With
    ``op="average"``, the sum is divided by the number of ranks (IEEE division, the same
    bits everywhere); for a mean loss over the rank's share ``B/N`` of a batch of ``B``
    this is the full batch's gradient. A parameter whose gradient is ``None`` on some ranks
    counts as zeros there; ``None`` on every rank skips it, as the unsharded optimizer does.

    Args:
        optimizer: the ferroptim optimizer to wrap, built over the same parameters (same
            order, shapes, dtypes, hyperparameters) on every rank.
        comm: an ``mpi4py.MPI.Intracomm``; default ``MPI.COMM_WORLD``.
        op: ``"average"`` (default) or ``"sum"``.
        bucket_cap_mb: the most MiB one ``Allreduce`` carries (default 256); ``None`` for one
            call per dtype.

    Every attribute of the wrapped optimizer (``param_groups``, ``state``, ``defaults``,
    ``zero_grad``, ``state_dict``, ``add_param_group``, hooks, ...) is reachable through the
    wrapper, and ``fo.lr_scheduler`` schedulers accept it. ``last_step_bytes`` is the
    number of gradient bytes this rank handed to ``Allreduce`` in the last step.

    Before any communication the ranks check each other (see the module docstring): a
    gradient of the wrong shape or dtype on one rank, or parameters or hyperparameters that
    differ between ranks, make every rank raise :class:`DistributedError` with nothing
    changed. So does an error of the wrapped step on any rank; that step, being
    transactional, changed nothing on the ranks where it failed, while the others stepped:
    call :func:`broadcast_parameters` and :func:`broadcast_optimizer_state` to resynchronise
    after catching it.
    """

    _ferroptim_wrapper = True

    def __init__(
        self, optimizer: Optimizer, comm: Any = None, op: str = "average", bucket_cap_mb: float | None = 256
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a ferroptim Optimizer, got {type(optimizer).__name__}")
        if op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {op!r}")
        if bucket_cap_mb is not None and (
            isinstance(bucket_cap_mb, bool)
            or not isinstance(bucket_cap_mb, (int, float))
            or not bucket_cap_mb > 0
        ):
            raise ValueError(f"bucket_cap_mb must be a positive number or None, got {bucket_cap_mb!r}")
        self.optimizer = optimizer
        self.comm = _comm(comm)
        self.op = op
        self.bucket_cap_mb = bucket_cap_mb
        self.last_step_bytes = 0
        self._buffers: dict[np.dtype, np.ndarray] = {}
        #: After ``synchronize()`` and until the next step: which gradients it reduced.
        self._synchronized: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The wrapped optimizer's ``param_groups``."""
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        """The wrapped optimizer's ``defaults``."""
        return self.optimizer.defaults

    def synchronize(self, grads: Sequence[Any] | None = None) -> list[Any]:
        """All-reduces the gradients (see the class docstring) and writes them into each
        ``p.grad``; returns the reduced gradient of every parameter (``None`` where no rank
        has one). ``step()`` calls it. Call it yourself to look at or clip the reduced
        gradients first (as Horovod's ``synchronize``): the next ``step()`` then takes the
        gradients as they are, ``p.grad`` or its ``grads=`` (what this returned), without
        reducing them again; a ``step()`` with the other kind raises on every rank, and one
        with a closure (which computes new gradients) reduces those. ``zero_grad()`` cancels
        it."""
        comm = self.comm
        self._synchronized = None
        params, local, has_grad = _exchange_plan(comm, self.param_groups, grads, "the gradient all-reduce")
        reduced: list[Any] = [None] * len(params)
        sent = 0
        cap = None if self.bucket_cap_mb is None else int(self.bucket_cap_mb * 2**20)
        dtypes = [p.dtype for p in params]
        for dtype in FLOAT_DTYPES:
            members = [i for i, d in enumerate(dtypes) if d == dtype and has_grad[i]]
            if not members:
                continue
            mine = [local[i] for i in members]
            shapes = [params[i].shape for i in members]
            # in place only in the .grad arrays, and only when they are one writable block
            # (never in the caller's grads=, which step() leaves as they were)
            span = _span(mine) if grads is None and all(g is not None for g in mine) else None
            if span is not None and not span.flags.writeable:
                span = None
            if span is None:
                size = sum(params[i].size for i in members)
                buffer = self._buffers.get(dtype)
                if buffer is None or buffer.size != size:
                    buffer = self._buffers[dtype] = np.empty(size, dtype=dtype)
                _pack(mine, shapes, buffer)
            else:
                buffer = span
            sent += self._allreduce(buffer, cap)
            views = _views(buffer, shapes)
            for i, g, view in zip(members, mine, views):
                reduced[i] = view
                if span is None and grads is None:
                    if g is not None and g.flags.writeable:
                        g[...] = view
                    else:
                        params[i].grad = view.copy()
        self.last_step_bytes = sent
        self._synchronized = "p.grad" if grads is None else "grads="
        return reduced

    def _allreduce(self, buffer: np.ndarray, cap: int | None) -> int:
        MPI = _mpi()
        for piece in _chunks(buffer.size, buffer.itemsize, cap):
            self.comm.Allreduce(MPI.IN_PLACE, buffer[piece], op=MPI.SUM)
        if self.op == "average" and self.comm.size > 1:  # (x / 1 == x: no pass for one rank)
            np.divide(buffer, buffer.dtype.type(self.comm.size), out=buffer)
        return buffer.nbytes

    def step(self, closure: Callable[[], Any] | None = None, *, grads: Sequence[Any] | None = None) -> Any:
        """Runs ``closure`` (if given), all-reduces the gradients and takes the wrapped
        optimizer's step on them; returns the closure's loss."""
        loss = _run_closure(self.comm, closure)
        synchronized, self._synchronized = self._synchronized, None
        reduced: Sequence[Any] | None = grads
        if closure is None and synchronized is not None:  # reduced by synchronize(): as they are
            self._check_synchronized(synchronized, grads)
        else:  # (a closure computes new gradients)
            reduced = self.synchronize(grads)
            self._synchronized = None
        error: BaseException | None = None
        try:
            if grads is None:
                self.optimizer.step()
            else:
                self.optimizer.step(grads=reduced)
        except Exception as err:  # hooks too: every rank must reach the check below
            error = err
        _agree(self.comm, error, "the optimizer step")
        return loss

    def _check_synchronized(self, synchronized: str, grads: Sequence[Any] | None) -> None:
        """Raises on every rank if the step takes other gradients than ``synchronize()``
        reduced (``p.grad`` or its ``grads=``)."""
        error = None
        if synchronized != ("p.grad" if grads is None else "grads="):
            error = ValueError(
                f"synchronize() reduced {synchronized}, but step() was called "
                f"{'without' if grads is None else 'with'} grads=: pass the same gradients to both"
            )
        _agree(self.comm, error, "the step after synchronize()")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The wrapped optimizer's ``zero_grad`` (and the end of a ``synchronize()``)."""
        self._synchronized = None
        self.optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's ``state_dict()`` (the same on every rank)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any], match: str = "order") -> None:
        """The wrapped optimizer's ``load_state_dict``: load the same state on every rank
        (or load on one and call :func:`broadcast_optimizer_state`)."""
        self.optimizer.load_state_dict(state_dict, match=match)

    def __repr__(self) -> str:
        return f"DistributedOptimizer(op={self.op!r}, ranks={self.comm.size}, {self.optimizer!r})"


class _Bucket:
    """The parameters of one dtype of one param group, as one flat vector of ``n`` elements
    cut into one contiguous shard per rank, in rank order."""

    def __init__(self, index: list[int], params: list[np.ndarray], counts: list[int], rank: int) -> None:
        self.index, self.params = index, params
        self.dtype = params[0].dtype
        self.shapes = [p.shape for p in params]
        self.sizes = [p.size for p in params]
        self.offsets = _offsets(self.sizes)
        self.n = self.offsets[-1]
        #: Shard r is ``[bounds[r], bounds[r + 1])``, ``counts[r]`` elements.
        self.counts = counts
        self.bounds = _offsets(counts)
        self.lo, self.hi = self.bounds[rank], self.bounds[rank + 1]
        span = _span(params)
        #: The parameters as one vector: the caller's buffer when they are views of one,
        #: else a private copy (refreshed from the parameters before each step).
        self.private = span is None
        self.data = np.empty(self.n, dtype=self.dtype) if span is None else span
        self.load_shard()  # the shard parameter shows the current values from the start
        self.shard_grad = np.zeros(self.hi - self.lo, dtype=self.dtype)
        self.shard = _buffered(self.data[self.lo : self.hi], self.shard_grad)
        self._send: np.ndarray | None = None

    def pieces(self, lo: int, hi: int) -> Iterator[tuple[int, slice, slice]]:
        """For each parameter overlapping ``[lo, hi)`` of the flat vector: its position in
        the bucket, the slice of its flattened values and the slice of the vector."""
        for k, (start, end) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):
            a, b = max(lo, start), min(hi, end)
            if a < b:
                yield k, slice(a - start, b - start), slice(a, b)

    def load_shard(self) -> None:
        """Copies the parameters' values of this rank's shard into the private vector."""
        if self.private:
            for k, own, flat in self.pieces(self.lo, self.hi):
                self.data[flat] = self.params[k].reshape(-1)[own]

    def send_buffer(self, grads: list[Any]) -> np.ndarray:
        span = _span(grads) if all(g is not None for g in grads) else None
        if span is not None:
            return span
        if self._send is None:
            self._send = np.empty(self.n, dtype=self.dtype)
        _pack(grads, self.shapes, self._send)
        return self._send

    def store(self) -> None:
        """Copies the gathered vector into the parameters (when it is a private copy)."""
        if self.private:
            for p, view in zip(self.params, _views(self.data, self.shapes)):
                p[...] = view


class ZeroRedundancyOptimizer:
    """ZeRO stage 1: every rank keeps the optimizer state of one shard of the parameters.

    Per param group and dtype, the parameters form one flat vector of ``n`` elements; rank
    ``r`` owns the ``r``-th of ``N`` contiguous pieces of ``n // N`` or ``n // N + 1``
    elements (every rank's total differs from another's by at most one element) and
    holds the state of ``optimizer_class`` for that shard only: about ``1/N`` of the
    unsharded state. A step (Rajbhandari et al. 2020, §5.1) is

    1. a reduce-scatter of the gradients: rank ``r`` receives the sum over ranks of its
       shard, divided by ``N`` (the average, as :class:`DistributedOptimizer`);
    2. the optimizer's step on the shard, the same elementwise update as unsharded;
    3. an all-gather of the parameters: every rank receives every updated shard.

    The parameters are updated in place: when they are views of one buffer laid out back to
    back (``fo.flatten_parameters``) the all-gather writes straight into it; otherwise the
    group's parameters are gathered into a flat copy (one more vector per dtype) and copied
    out. ``p.grad`` keeps this rank's own gradient. The trajectory equals
    :class:`DistributedOptimizer`'s up to the rounding of the reduction order (and, with
    ``state_dtype="bfloat16"``, the stochastic rounding stream, keyed by position and rank).

    Args:
        params: arrays or param-group dicts, as for any optimizer (the same on every rank).
        optimizer_class: a ferroptim optimizer class with an elementwise update (all but
            ``AdagradNorm``, whose state is a single scalar with nothing to shard).
        comm: an ``mpi4py.MPI.Intracomm``; default ``MPI.COMM_WORLD``.
        **defaults: the optimizer's hyperparameters (``lr=...``). ``grad_scale``,
            ``skip_nonfinite`` and ``max_grad_norm`` act over all shards, as unsharded: the
            clip norm and the finiteness check are combined across ranks.

    ``param_groups`` are the full groups (edit ``lr`` there, or use a scheduler); ``optim``
    is this rank's optimizer over its shards. ``last_step_bytes`` is the bytes of the two
    vectors this rank handed to the collectives in the last step, the gradients to
    ``Reduce_scatter`` and the parameters to ``Allgatherv`` (twice
    :class:`DistributedOptimizer`'s one vector; a ring algorithm sends ``(N-1)/N`` of each,
    the same bytes on the wire as one all-reduce). ``state_dict()`` works on rank ``to`` after
    :meth:`consolidate_state_dict` and gives a normal state dict of ``optimizer_class`` over
    ``params``; :meth:`load_state_dict` takes one on every rank. Errors follow the module's
    collective check: one rank's bad gradient makes every rank raise
    :class:`DistributedError` with nothing changed.
    """

    _ferroptim_wrapper = True

    def __init__(
        self, params: Any, optimizer_class: type[Optimizer] = Adam, comm: Any = None, **defaults: Any
    ) -> None:
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(f"optimizer_class must be a ferroptim optimizer class, got {optimizer_class!r}")
        if issubclass(optimizer_class, AdagradNorm):
            raise TypeError(
                "AdagradNorm keeps one scalar b² per scope, so there is no state to shard: "
                "use DistributedOptimizer(AdagradNorm(...))"
            )
        self.comm = _comm(comm)
        self.optimizer_class = optimizer_class
        #: The unsharded optimizer over ``params``: it holds the full ``param_groups`` (and
        #: validates them) but never steps, so it never allocates state.
        self._full = optimizer_class(params, **defaults)
        self.last_step_bytes = 0
        self.last_step_skipped = False
        self.skipped_steps = 0
        self._consolidated: dict[str, Any] | None = None
        self._buckets: list[list[_Bucket]] = []
        self._held = [0] * self.comm.size
        for gi in range(len(self._full.param_groups)):
            self._buckets.append(self._make_buckets(gi))
        self.optim = optimizer_class([self._local_group(gi) for gi in range(len(self._buckets))])  # type: ignore[call-arg]

    # --- structure ----------------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The full param groups, as the unsharded optimizer would have them."""
        return self._full.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        """The optimizer's default hyperparameters."""
        return self._full.defaults

    @property
    def state(self) -> Any:
        """This rank's state: of its shard parameters (``optim``), not of ``params``."""
        return self.optim.state

    def _make_buckets(self, gi: int) -> list[_Bucket]:
        params = self._full.param_groups[gi]["params"]
        buckets = []
        for dtype in dict.fromkeys(p.dtype for p in params):
            index = [i for i, p in enumerate(params) if p.dtype == dtype]
            members = [params[i] for i in index]
            counts = self._balance(sum(p.size for p in members))
            buckets.append(_Bucket(index, members, counts, self.comm.rank))
        return buckets

    def _balance(self, n: int) -> list[int]:
        """Shard sizes for a bucket of ``n`` elements: ``n // N`` each, and the ``n % N`` left
        over to the ranks that hold the fewest elements so far (the lowest ranks first), so
        that every rank's total differs from another's by at most one element."""
        ranks = self.comm.size
        counts = [n // ranks] * ranks
        for r in sorted(range(ranks), key=lambda r: (self._held[r], r))[: n % ranks]:
            counts[r] += 1
        for r in range(ranks):
            self._held[r] += counts[r]
        return counts

    def _local_group(self, gi: int) -> dict[str, Any]:
        group = self._settings(self._full.param_groups[gi])
        group["params"] = [b.shard for b in self._buckets[gi]]
        return group

    def _settings(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """A full group's hyperparameters for its local group: the gradient settings are
        applied across ranks by ``step``, so locally they are off; and the ``seed`` of
        bfloat16 state's stochastic rounding is mixed with the rank, so that the ranks'
        shards (which sit at the same positions of their local optimizers) draw different
        rounding streams."""
        settings = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        settings.update(GRAD_DEFAULTS)
        seed = settings.get("seed")
        if type(seed) is int and 0 <= seed < 2**64:  # (a bad seed is left for the step to name)
            settings["seed"] = (seed + self.comm.rank * 0x9E3779B97F4A7C15) % 2**64
        return settings

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Adds a group (the same on every rank), sharded like the others."""
        self._full.add_param_group(param_group)
        gi = len(self._full.param_groups) - 1
        self._buckets.append(self._make_buckets(gi))
        self.optim.add_param_group(self._local_group(gi))

    def shard_sizes(self) -> list[int]:
        """Elements of every rank's shard, summed over the buckets, by rank."""
        return [sum(b.counts[r] for g in self._buckets for b in g) for r in range(self.comm.size)]

    def state_nbytes(self) -> int:
        """Bytes of optimizer state arrays on this rank."""
        return sum(
            v.nbytes for s in self.optim.state.values() for v in s.values() if isinstance(v, np.ndarray)
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears the gradients of ``params``, as ``Optimizer.zero_grad``."""
        self._full.zero_grad(set_to_none)

    # --- the step -----------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None, *, grads: Sequence[Any] | None = None) -> Any:
        """Runs ``closure`` (if given), then reduce-scatter, local step, all-gather; returns
        the closure's loss."""
        MPI = _mpi()
        comm = self.comm
        loss = _run_closure(self.comm, closure)
        groups = self.param_groups
        invalid: BaseException | None = None
        settings = []
        for gi, group in enumerate(groups):
            try:
                settings.append(grad_settings(group))
            except (TypeError, ValueError) as err:
                invalid = type(err)(f"param_groups[{gi}]: {err}")
        params, local, has_grad = _exchange_plan(comm, groups, grads, "ZeroRedundancyOptimizer.step", invalid)
        if not has_grad.all():
            missing = _sites(groups)[int(np.argmin(has_grad))]
            raise DistributedError(
                f"{missing} has no gradient on any rank: ZeroRedundancyOptimizer steps every "
                "parameter of a shard together; give it a zero gradient or leave it out"
            )
        for gi, group in enumerate(groups):
            self.optim.param_groups[gi].update(self._settings(group))
        start = 0
        sent = 0
        per_group = []
        for group in groups:
            per_group.append(local[start : start + len(group["params"])])
            start += len(group["params"])
        for gi, buckets in enumerate(self._buckets):
            for b in buckets:
                send = b.send_buffer([per_group[gi][i] for i in b.index])
                comm.Reduce_scatter(send, b.shard_grad, recvcounts=b.counts, op=MPI.SUM)
                if comm.size > 1:
                    np.divide(b.shard_grad, b.dtype.type(comm.size), out=b.shard_grad)
                sent += send.nbytes
        if not self._apply_grad_settings(settings):
            self.last_step_bytes = sent
            return loss
        error: BaseException | None = None
        try:
            for buckets in self._buckets:
                for b in buckets:
                    b.load_shard()
            self.optim.step()
        except Exception as err:  # hooks too: every rank must reach the check below
            error = err
        _agree(comm, error, "the local optimizer step")
        for buckets in self._buckets:
            for b in buckets:
                comm.Allgatherv(MPI.IN_PLACE, [b.data, (b.counts, b.bounds[:-1])])
                b.store()
                sent += b.data.nbytes
        self.last_step_bytes = sent
        self._consolidated = None
        return loss

    def _apply_grad_settings(self, settings: list[tuple[float, float | None, bool]]) -> bool:
        """The full groups' ``(grad_scale, max_grad_norm, skip_nonfinite)`` (as
        ``grad_settings`` gives them) on the shard gradients, as the unsharded step applies
        them: unscale; count the non-finite entries of the checked groups and take each
        parameter's sum of squares (float64), both summed across ranks in one ``Allreduce``;
        then the clip coefficients from those per-parameter norms, by the unsharded step's
        own code. Returns ``False`` when the step is skipped."""
        MPI = _mpi()
        if all(s == 1.0 and m is None and not k for s, m, k in settings):
            self.last_step_skipped = False
            return True
        counts = [len(g["params"]) for g in self.param_groups]
        first = _offsets(counts)  # each group's first position among all parameters
        sums = np.zeros(first[-1] + 1)  # per parameter, its sum of squares; last: non-finite entries
        dtypes: list[Any] = [None] * first[-1]
        for gi, ((scale, _, skip), buckets) in enumerate(zip(settings, self._buckets)):
            for b in buckets:
                g = b.shard_grad
                if scale != 1.0:
                    g *= g.dtype.type(1.0 / scale)
                if skip:
                    sums[-1] += np.count_nonzero(~np.isfinite(g))
                for k, _, where in b.pieces(b.lo, b.hi):
                    piece = g[where.start - b.lo : where.stop - b.lo].astype(np.float64)
                    sums[first[gi] + b.index[k]] += np.dot(piece, piece)
                for i in b.index:
                    dtypes[first[gi] + i] = b.dtype
        self.comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
        self.last_step_skipped = bool(sums[-1])
        if self.last_step_skipped:
            self.skipped_steps += 1
            return False
        clips = [m for _, m, _ in settings if m is not None]
        if clips:
            # a one-element array holding a parameter's norm (rounded to its dtype, as the
            # unsharded step rounds it) has that norm: grad_stats combines them as unsharded
            norms = [np.sqrt(sums[i : i + 1]).astype(dtype) for i, dtype in enumerate(dtypes)]
            names = [f"the norm of parameter {i}" for i in range(len(norms))]
            n = len(norms)
            coefs = iter(_core.grad_stats(norms, names, [1.0] * n, [False] * n, clips)[3])
            for (_, max_norm, _), buckets in zip(settings, self._buckets):
                if max_norm is not None:
                    coef = next(coefs)
                    for b in buckets:
                        b.shard_grad *= b.dtype.type(coef)
        return True

    # --- state dicts --------------------------------------------------------------------
    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gathers every rank's shard of the state on rank ``to`` (collective: every rank
        calls it), where ``state_dict()`` then returns it as one normal state dict."""
        comm = self.comm
        to = _root(to, comm)
        local = self.optim.state_dict()
        shards = comm.gather(local["state"], root=to)
        if comm.rank != to:
            self._consolidated = None
            return
        slots = set(self.optimizer_class.state_slots)
        state: dict[int, dict[str, Any]] = {}
        number = 0
        for gi, buckets in enumerate(self._buckets):
            n_params = len(self.param_groups[gi]["params"])
            by_position: dict[int, dict[str, Any]] = {}
            for b in buckets:
                key = sum(len(bs) for bs in self._buckets[:gi]) + buckets.index(b)
                parts = [s.get(key) for s in shards]
                if all(p is None for p in parts):
                    continue
                if any(p is None for p in parts):
                    raise RuntimeError("the ranks' shards of one bucket disagree on having state")
                scalars = {k: v for k, v in parts[0].items() if k not in slots}
                arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k in slots}
                for k, i in enumerate(b.index):
                    entry = dict(scalars)
                    for name, flat in arrays.items():
                        entry[name] = flat[b.offsets[k] : b.offsets[k + 1]].reshape(b.shapes[k]).copy()
                    by_position[i] = entry
            for i in range(n_params):
                if i in by_position:
                    state[number + i] = by_position[i]
            number += n_params
        self._consolidated = {"state": state}

    def state_dict(self) -> dict[str, Any]:
        """The consolidated state dict (on the rank given to :meth:`consolidate_state_dict`,
        after it): ``optimizer_class``'s normal layout, loadable by an unsharded optimizer
        over the same parameters or by :meth:`load_state_dict`."""
        if self._consolidated is None:
            raise RuntimeError(
                "the optimizer state is sharded and was not consolidated on this rank since the "
                "last step: call consolidate_state_dict(to=rank) on every rank first"
            )
        groups = self._full.state_dict()["param_groups"]
        return {"state": self._consolidated["state"], "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any], match: str = "order") -> None:
        """Loads a normal (unsharded) state dict of ``optimizer_class`` over ``params`` (one
        from :meth:`state_dict`, or from an unsharded optimizer; ``match`` as for
        ``Optimizer.load_state_dict``): every rank keeps its shard. Collective: every rank
        calls it with the same state dict; if it does not fit, every rank raises
        :class:`DistributedError` and nothing changes."""
        error: BaseException | None = None
        groups = list(self._full.param_groups)
        try:
            self._load(state_dict, match)
        except Exception as err:
            self._full.param_groups[:] = groups  # a refused state dict changes nothing
            error = err
        _agree(self.comm, error, "ZeroRedundancyOptimizer.load_state_dict")

    def _load(self, state_dict: Mapping[str, Any], match: str) -> None:
        full = self._full
        full.load_state_dict(state_dict, match=match)  # checks everything, takes the hyperparameters
        try:
            exported = full.state_dict()["state"]  # bfloat16 state as float32, as saved
        finally:
            full.state.clear()  # the full state lives in the shards only
        slots = set(self.optimizer_class.state_slots)
        local_state: dict[int, dict[str, Any]] = {}
        key = number = 0
        for gi, buckets in enumerate(self._buckets):
            for b in buckets:
                entries = [exported.get(number + i) for i in b.index]
                key += 1
                if all(not e for e in entries):
                    continue
                if any(not e for e in entries):
                    raise ValueError(
                        f"param_groups[{gi}]: some {b.dtype} parameters have state and others none; "
                        "a ZeroRedundancyOptimizer steps them together"
                    )
                scalars = {k: v for k, v in entries[0].items() if k not in slots}
                for e, i in zip(entries, b.index):
                    other = {k: v for k, v in e.items() if k not in slots}
                    if other != scalars:
                        raise ValueError(
                            f"param_groups[{gi}]['params'][{i}] has {other}, but "
                            f"param_groups[{gi}]['params'][{b.index[0]}] has {scalars}: a "
                            "ZeroRedundancyOptimizer keeps one step count per shard"
                        )
                entry = dict(scalars)
                for name in (k for k in entries[0] if k in slots):
                    shard = np.empty(b.hi - b.lo, dtype=entries[0][name].dtype)
                    for k, own, where in b.pieces(b.lo, b.hi):
                        shard[where.start - b.lo : where.stop - b.lo] = entries[k][name].reshape(-1)[own]
                    entry[name] = shard
                local_state[key - 1] = entry
            number += len(self.param_groups[gi]["params"])
        local_groups = self.optim.state_dict()["param_groups"]
        for gi, group in enumerate(local_groups):
            group.update(self._settings(self.param_groups[gi]))
        self.optim.load_state_dict({"state": local_state, "param_groups": local_groups})
        self._consolidated = None

    def __repr__(self) -> str:
        return (
            f"ZeroRedundancyOptimizer(rank {self.comm.rank} of {self.comm.size}, "
            f"shard sizes {self.shard_sizes()}, {self._full!r})"
        )
