"""``ZeroRedundancyOptimizer``: ZeRO stage 1 on MPI, every rank keeping the optimizer state of
one shard of the flat parameters."""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import _core
from .._validate import GRAD_DEFAULTS, grad_settings
from ..adagrad_norm import AdagradNorm
from ..adam import Adam
from ..flat import _buffered
from ..hooks import RemovableHandle, register
from ..optimizer import Optimizer, _has_step_hooks, _hooks_running, _run_post_hooks, _run_pre_hooks
from ._collective import DistributedError, _agree, _comm, _exchange_plan, _mpi, _root, _run_closure, _sites
from ._flat import _offsets, _pack, _span, _views


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
    ``params``; :meth:`load_state_dict` takes one on every rank. The ranks check each other
    before communicating (see ``ferroptim.distributed``): one rank's bad gradient, read-only
    parameter or raising pre hook makes every rank raise :class:`DistributedError` with
    nothing changed.
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
        self._optimizer_step_pre_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
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
        """The state of this rank's shard parameters (``optim``), not of ``params``."""
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
        if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
            seed = int(seed)
            if 0 <= seed < 2**64:  # (a bad seed is left for the step to name)
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
        the closure's loss.

        Step hooks run as for any optimizer, with this one as their first argument: the
        global and the ``register_step_pre_hook`` ones first (a pre hook that raises on any
        rank makes every rank raise :class:`DistributedError`), the post hooks after the
        all-gather, on each rank as code after ``step()`` would run. ``optim``'s step runs
        no hooks."""
        args: tuple[Any, ...] = (self,) if closure is None else (self, closure)
        kwargs: dict[str, Any] = {} if grads is None else {"grads": grads}
        hooked = _has_step_hooks(self)
        error: BaseException | None = None
        if hooked:
            try:
                args, kwargs = _run_pre_hooks(self, args, kwargs)
                closure, grads = _step_arguments(*args[1:], **kwargs)
            except Exception as err:
                error = err
        loss = self._step(closure, grads, error)
        if hooked:
            _run_post_hooks(self, args, kwargs)
        return loss

    def register_step_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Registers ``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)``,
        called before each ``step()`` (after the global pre hooks), as
        ``Optimizer.register_step_pre_hook``. Returns a handle whose ``remove()``
        unregisters it."""
        return register(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Registers ``hook(optimizer, args, kwargs) -> None``, called after each ``step()``
        (before the global post hooks). Returns a handle whose ``remove()`` unregisters it."""
        return register(self._optimizer_step_post_hooks, hook)

    def _step(
        self, closure: Callable[[], Any] | None, grads: Sequence[Any] | None, error: BaseException | None
    ) -> Any:
        MPI = _mpi()
        comm = self.comm
        loss, invalid = _run_closure(self.comm, closure, error)
        groups = self.param_groups
        settings = []
        for gi, group in enumerate(groups):
            try:
                settings.append(grad_settings(group))
            except (TypeError, ValueError) as err:
                invalid = invalid or type(err)(f"param_groups[{gi}]: {err}")
            for i, p in enumerate(group["params"]):
                if not p.flags.writeable:  # the all-gather writes every parameter
                    site = f"param_groups[{gi}]['params'][{i}]"
                    invalid = invalid or ValueError(f"{site} is read-only (its WRITEABLE flag is off)")
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
                    with np.errstate(all="ignore"):  # on this rank's shard only: must never trap
                        np.divide(b.shard_grad, b.dtype.type(comm.size), out=b.shard_grad)
                sent += send.nbytes
        with np.errstate(all="ignore"):  # on this rank's shard only: must never trap
            go_on = self._apply_grad_settings(settings)
        if not go_on:
            self.last_step_bytes = sent
            return loss
        error = None
        try:
            for buckets in self._buckets:
                for b in buckets:
                    b.load_shard()
            with _hooks_running(self.optim):  # this step's hooks ran in step()
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


def _step_arguments(
    closure: Callable[[], Any] | None = None, *, grads: Sequence[Any] | None = None
) -> tuple[Callable[[], Any] | None, Sequence[Any] | None]:
    """``step()``'s arguments, as a pre hook may have replaced them."""
    return closure, grads
