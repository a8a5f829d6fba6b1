"""What the ranks agree on before they communicate: the mpi4py import, the communicator,
the collective error check, and the check of a step's gradients and hyperparameters."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._extras import install_hint
from ..parameter import Parameter


class DistributedError(RuntimeError):
    """Raised on every rank when one or more ranks failed a collective operation: the
    message names each failed rank and its error (on a failed rank, the original exception
    is the ``__cause__``)."""


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(
            "ferroptim.distributed needs mpi4py (and an MPI library such as Open MPI), the `mpi` extra: "
            + install_hint("mpi")
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
    :class:`DistributedError` on every rank when any rank had an error. ``what`` names the
    check: ranks that meet in different checks (one passed a closure to ``step()``, another
    did not) raise too, instead of going on out of step."""
    gathered = comm.allgather((what, None if error is None else _describe(error), extra))
    places = [w for w, _, _ in gathered]
    if any(w != what for w in places):
        where = "; ".join(f"rank {rank}: {w}" for rank, w in enumerate(places))
        raise DistributedError(f"the ranks called different collective steps ({where})") from error
    failed = [(rank, message) for rank, (_, message, _) in enumerate(gathered) if message is not None]
    if failed:
        lines = "; ".join(f"rank {rank}: {message}" for rank, message in failed)
        raise DistributedError(f"{what} failed on {len(failed)} of {comm.size} ranks: {lines}") from error
    return [e for _, _, e in gathered]


def _mismatch(comm: Any, values: list[Any], what: str) -> None:
    """Raises :class:`DistributedError` on every rank unless every rank gave rank 0's value
    (``values`` comes from :func:`_agree`, so all ranks see the same list)."""
    differ = [rank for rank, v in enumerate(values) if v != values[0]]
    if differ:
        ranks = ", ".join(map(str, differ))
        raise DistributedError(f"{what} differs between rank 0 and rank(s) {ranks}")


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


def _run_closure(
    comm: Any, closure: Callable[[], Any] | None, error: BaseException | None = None
) -> tuple[Any, BaseException | None]:
    """Runs a step's closure (if given, and if this rank has no ``error`` yet, from a step
    pre hook) under the collective error check: if either fails on any rank, every rank
    raises :class:`DistributedError` before the gradient exchange. Returns the loss and
    the error still to be checked (without a closure, ``error`` waits for the exchange's
    check)."""
    if closure is None:
        return None, error
    loss = None
    if error is None:
        try:
            loss = closure()
        except Exception as err:
            error = err
    _agree(comm, error, "the step's pre hooks or closure")
    return loss, None
