"""``DistributedOptimizer``: any ferroptim optimizer, data-parallel over the ranks of an MPI
communicator, with one all-reduce of the gradients per dtype before its step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..optimizer import Optimizer
from ..parameter import FLOAT_DTYPES
from ._collective import _agree, _comm, _exchange_plan, _mpi, _run_closure
from ._flat import _cap_bytes, _chunks, _pack, _span, _views

#: Operations of :class:`DistributedOptimizer` on the ranks' gradients.
OPS = ("average", "sum")


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

    Before any communication the ranks check each other (see ``ferroptim.distributed``): a
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
        _cap_bytes(bucket_cap_mb)
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
        it. The returned arrays are views of a buffer the next exchange reuses."""
        comm = self.comm
        self._synchronized = None
        params, local, has_grad = _exchange_plan(comm, self.param_groups, grads, "the gradient all-reduce")
        reduced: list[Any] = [None] * len(params)
        sent = 0
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
            sent += self._allreduce(buffer, _cap_bytes(self.bucket_cap_mb))
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
            with np.errstate(all="ignore"):  # as the kernels: IEEE results, never a trap
                np.divide(buffer, buffer.dtype.type(self.comm.size), out=buffer)
        return buffer.nbytes

    def step(self, closure: Callable[[], Any] | None = None, *, grads: Sequence[Any] | None = None) -> Any:
        """Runs ``closure`` (if given), all-reduces the gradients and takes the wrapped
        optimizer's step on them; returns the closure's loss."""
        loss, _ = _run_closure(self.comm, closure)
        synchronized = self._synchronized
        reduced: Sequence[Any] | None = grads
        if closure is None and synchronized is not None:  # reduced by synchronize(): as they are
            self._check_synchronized(synchronized, grads)  # (a refused step keeps them so)
            self._synchronized = None
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
