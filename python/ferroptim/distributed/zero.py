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
from ..flat import BufferedParameter, _buffered
from ..hooks import RemovableHandle, register
from ..optimizer import Optimizer, _has_step_hooks, _hooks_running, _run_post_hooks, _run_pre_hooks
from ._collective import DistributedError, _agree, _comm, _exchange_plan, _mpi, _root, _run_closure, _sites
from ._flat import _cap_bytes, _flat_range, _offsets, _read, _span, _write


class _Bucket:
    """The parameters of one dtype of one param group, as one flat vector of ``n`` elements
    cut into one contiguous shard per rank, in rank order.

    The vector is never copied whole. When the parameters are views of one buffer laid out
    back to back, it is that buffer (``span``); otherwise its pieces are read and written
    through views of the parameters (``_segments``). The local optimizer steps ``shards``:
    views of this rank's shard in the parameters (one per parameter it overlaps), each with
    its slice of ``shard_grad`` as ``.grad``; only where a parameter that is neither
    C-contiguous nor 1-D has a part of the shard that no single view holds does that part
    get a staged copy (``staged``), read before and written back after the local step."""

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
        self.rank = rank
        self.lo, self.hi = self.bounds[rank], self.bounds[rank + 1]
        #: The flat vector when the parameters are views of one buffer back to back, else ``None``.
        self.span = _span(params)
        #: This rank's shard of the reduced gradient.
        self.shard_grad = np.zeros(self.hi - self.lo, dtype=self.dtype)
        #: Where each of ``shards`` starts in the flat vector.
        self.starts: list[int] = []
        self.shards: list[BufferedParameter] = []
        #: ``(start, staged copy)`` of the shard's parts that no single view holds.
        self.staged: list[tuple[int, np.ndarray]] = []
        for start, stop, view in self._parts():
            if view is None:  # a part no single view holds: a staged copy
                view = np.empty(stop - start, dtype=self.dtype)
                _read(self.params, self.offsets, start, view)
                self.staged.append((start, view))
            grad = self.shard_grad[start - self.lo : stop - self.lo].reshape(view.shape)
            self.starts.append(start)
            self.shards.append(_buffered(view, grad))

    def _parts(self) -> Iterator[tuple[int, int, np.ndarray | None]]:
        """This rank's shard as ``(start, stop, view)``: a view of the parameters holding the
        flat elements ``[start, stop)``, or ``None`` where it takes more than one view of a
        parameter (whose views could interleave in memory). An empty shard is one empty part,
        so that every rank's local optimizer has a parameter (and state) for every bucket."""
        if self.span is not None:
            yield self.lo, self.hi, self.span[self.lo : self.hi]
            return
        if self.lo == self.hi:
            yield self.lo, self.hi, np.empty(0, dtype=self.dtype)
            return
        for k, own, where in self.pieces(self.lo, self.hi):
            views = _flat_range(np.asarray(self.params[k]), own.start, own.stop)
            yield where.start, where.stop, views[0] if len(views) == 1 else None

    def pieces(self, lo: int, hi: int) -> Iterator[tuple[int, slice, slice]]:
        """For each parameter overlapping ``[lo, hi)`` of the flat vector: its position in
        the bucket, the slice of its flattened values and the slice of the vector."""
        for k, (start, end) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):
            a, b = max(lo, start), min(hi, end)
            if a < b:
                yield k, slice(a - start, b - start), slice(a, b)

    def rounds(self, cap: int | None) -> Iterator[tuple[list[int], list[int]]]:
        """The exchange through a staging buffer of at most ``cap`` bytes (``None``: the
        whole vector), in rounds; for each, where every rank's next piece of its shard
        starts in the flat vector and how many elements it has (the same on every rank)."""
        most = max(self.counts)
        ranks = len(self.counts)
        per_rank = most if cap is None else max(1, cap // (ranks * self.dtype.itemsize))
        for done in range(0, most, per_rank):
            yield [b + done for b in self.bounds[:-1]], [min(per_rank, max(0, c - done)) for c in self.counts]

    def staging_size(self, cap: int | None) -> int:
        """Elements of the largest round of :meth:`rounds` (the first)."""
        first = next(self.rounds(cap), None)
        return 0 if first is None else sum(first[1])


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

    The parameters are updated in place, and no full-size copy of them or of the gradients
    is kept. The local optimizer steps views of this rank's shard in the parameters
    themselves (one per parameter the shard overlaps). When the parameters, or the
    gradients, are views of one buffer laid out back to back (``fo.flatten_parameters``), the
    all-gather writes straight into that buffer, or the reduce-scatter reads straight from
    it. Otherwise the exchange runs in rounds through one staging buffer of at most
    ``bucket_cap_mb``: each round packs every rank's next piece of its shard (copied from
    the arrays, one NumPy copy per view), and then reduce-scatters or all-gathers it.
    ``p.grad`` keeps this rank's own gradient. The trajectory equals
    :class:`DistributedOptimizer`'s up to the rounding of the reduction order (and, with
    ``state_dtype="bfloat16"``, the stochastic rounding stream, keyed by position and rank).

    **Memory per rank.** For ``n`` elements of ``b`` bytes over ``N`` ranks, beyond the
    parameters and gradients, it holds:

    - the optimizer state of the shard, ``s·n·b/N`` for ``s`` state arrays (Adam: 2);
    - the shard's reduced gradient, ``n·b/N``;
    - one staging buffer for all buckets, ``min(cap, n·b)`` with ``cap`` =
      ``bucket_cap_mb`` MiB (never less than one element per rank), kept between steps;
      none when both the parameters and the gradients are flat buffers.

    In total that is ``(s + 1)·n·b/N + min(cap, n·b)``.
    :class:`DistributedOptimizer` holds ``s·n·b`` of state plus, for separate gradient
    arrays, an ``n·b`` packing buffer. So ZeRO holds less from two ranks on for optimizers
    with two or more state arrays (Adam, AdamW, NAdam, RAdam, Adamax, Adadelta). For those
    with one (SGD with momentum, Adagrad, RMSprop, Lion) it holds less from three ranks on,
    and at most as much at two. The bound has one exception: a parameter that is neither
    C-contiguous nor 1-D, where no single view holds its part of the shard. That part is a
    staged copy, which adds at most ``n·b/N``. Beyond the bound, ``max_grad_norm`` and
    ``skip_nonfinite`` allocate transient copies of at most the shard's size during a step.

    Args:
        params: arrays or param-group dicts, as for any optimizer (the same on every rank).
        optimizer_class: a ferroptim optimizer class with an elementwise update (all but
            ``AdagradNorm``, whose state is a single scalar with nothing to shard).
        comm: an ``mpi4py.MPI.Intracomm``; default ``MPI.COMM_WORLD``.
        bucket_cap_mb: the most MiB of the staging buffer (default 25, torch DDP's bucket
            size); ``None`` for one round of the whole vector.
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
        self,
        params: Any,
        optimizer_class: type[Optimizer] = Adam,
        comm: Any = None,
        bucket_cap_mb: float | None = 25,
        **defaults: Any,
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
        self.bucket_cap_mb = bucket_cap_mb
        self._cap = _cap_bytes(bucket_cap_mb)
        #: The staging buffer of the exchanges that cannot work in place (bytes, grown on demand).
        self._staging = np.empty(0, dtype=np.uint8)
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
        group["params"] = [p for b in self._buckets[gi] for p in b.shards]
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
                self._reduce_scatter(b, [per_group[gi][i] for i in b.index])
                if comm.size > 1:
                    with np.errstate(all="ignore"):  # on this rank's shard only: must never trap
                        np.divide(b.shard_grad, b.dtype.type(comm.size), out=b.shard_grad)
                sent += b.n * b.dtype.itemsize
        with np.errstate(all="ignore"):  # on this rank's shard only: must never trap
            go_on = self._apply_grad_settings(settings)
        if not go_on:
            self.last_step_bytes = sent
            return loss
        error = None
        try:
            for buckets in self._buckets:
                for b in buckets:
                    for start, staged in b.staged:
                        _read(b.params, b.offsets, start, staged)
            with _hooks_running(self.optim):  # this step's hooks ran in step()
                self.optim.step()
            for buckets in self._buckets:
                for b in buckets:
                    for start, staged in b.staged:
                        _write(b.params, b.offsets, start, staged)
        except Exception as err:  # hooks too: every rank must reach the check below
            error = err
        _agree(comm, error, "the local optimizer step")
        for buckets in self._buckets:
            for b in buckets:
                self._all_gather(b)
                sent += b.n * b.dtype.itemsize
        self.last_step_bytes = sent
        self._consolidated = None
        return loss

    def _stage(self, b: _Bucket, size: int) -> np.ndarray:
        """The first ``size`` elements of the staging buffer, as ``b``'s dtype; the buffer
        grows to the largest round of any bucket that needs it, and is kept."""
        nbytes = b.staging_size(self._cap) * b.dtype.itemsize
        if self._staging.nbytes < nbytes:
            self._staging = np.empty(0, dtype=np.uint8)  # (free the old one first)
            self._staging = np.empty(nbytes, dtype=np.uint8)
        return self._staging[: size * b.dtype.itemsize].view(b.dtype)

    def _reduce_scatter(self, b: _Bucket, grads: list[Any]) -> None:
        """Sums every rank's gradients of each shard into that rank's ``shard_grad``: in one
        ``Reduce_scatter`` from the gradients' buffer when they are views of one laid out back
        to back; otherwise in rounds, each rank's next piece of every shard packed into the
        staging buffer (``None`` gradients as zeros)."""
        MPI = _mpi()
        span = _span(grads) if all(g is not None for g in grads) else None
        if span is not None:
            self.comm.Reduce_scatter(span, b.shard_grad, recvcounts=b.counts, op=MPI.SUM)
            return
        for starts, counts in b.rounds(self._cap):
            displs = _offsets(counts)
            send = self._stage(b, displs[-1])
            for r, start in enumerate(starts):
                _read(grads, b.offsets, start, send[displs[r] : displs[r + 1]])
            own = starts[b.rank] - b.lo
            received = b.shard_grad[own : own + counts[b.rank]]
            self.comm.Reduce_scatter(send, received, recvcounts=counts, op=MPI.SUM)

    def _all_gather(self, b: _Bucket) -> None:
        """Gives every rank every updated shard: in one in-place ``Allgatherv`` when the
        parameters are views of one buffer laid out back to back; otherwise in rounds, each
        rank's next piece of its shard gathered in the staging buffer and copied into the
        parameters."""
        MPI = _mpi()
        if b.span is not None:
            self.comm.Allgatherv(MPI.IN_PLACE, [b.span, (b.counts, b.bounds[:-1])])
            return
        for starts, counts in b.rounds(self._cap):
            displs = _offsets(counts)
            gathered = self._stage(b, displs[-1])
            _read(b.params, b.offsets, starts[b.rank], gathered[displs[b.rank] : displs[b.rank + 1]])
            self.comm.Allgatherv(MPI.IN_PLACE, [gathered, (counts, displs[:-1])])
            for r, start in enumerate(starts):
                if r != b.rank:
                    _write(b.params, b.offsets, start, gathered[displs[r] : displs[r + 1]])

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
    def _keyed_buckets(self) -> Iterator[tuple[int, _Bucket, range]]:
        """Every bucket, with its group's index and the keys of its ``shards`` in the local
        optimizer's state dict."""
        key = 0
        for gi, buckets in enumerate(self._buckets):
            for b in buckets:
                yield gi, b, range(key, key + len(b.shards))
                key += len(b.shards)

    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gathers every rank's shard of the state on rank ``to`` (collective: every rank
        calls it), where ``state_dict()`` then returns it as one normal state dict."""
        comm = self.comm
        to = _root(to, comm)
        local = self.optim.state_dict()["state"]
        mine = [[local.get(k) for k in keys] for _, _, keys in self._keyed_buckets()]
        gathered = comm.gather(mine, root=to)
        if comm.rank != to:
            self._consolidated = None
            return
        slots = set(self.optimizer_class.state_slots)
        first = _offsets([len(g["params"]) for g in self.param_groups])  # of each group's parameters
        state: dict[int, dict[str, Any]] = {}
        for number, (gi, b, _) in enumerate(self._keyed_buckets()):
            parts = [entry for buckets in gathered for entry in buckets[number]]  # rank by rank, in order
            if all(p is None for p in parts):
                continue
            if any(p is None for p in parts):
                raise RuntimeError("the ranks' shards of one bucket disagree on having state")
            scalars = {k: v for k, v in parts[0].items() if k not in slots}
            arrays = {k: np.concatenate([np.ravel(p[k]) for p in parts]) for k in parts[0] if k in slots}
            for k, i in enumerate(b.index):
                entry = dict(scalars)
                for name, flat in arrays.items():
                    entry[name] = flat[b.offsets[k] : b.offsets[k + 1]].reshape(b.shapes[k]).copy()
                state[first[gi] + i] = entry
        state = dict(sorted(state.items()))
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
        first = _offsets([len(g["params"]) for g in self.param_groups])
        for gi, b, keys in self._keyed_buckets():
            entries = [exported.get(first[gi] + i) for i in b.index]
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
            names = [k for k in entries[0] if k in slots]
            for key, start, shard in zip(keys, b.starts, b.shards):
                entry = dict(scalars)
                for name in names:  # this shard's part of the slot, as the unsharded arrays lay it out
                    values = np.empty(shard.size, dtype=entries[0][name].dtype)
                    _read([e[name] for e in entries], b.offsets, start, values)
                    entry[name] = values.reshape(shard.shape)
                local_state[key] = entry
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
