"""The optimizer base class: ``param_groups``, ``state``, ``state_dict``, ``zero_grad``, ``step``,
and torch's hooks (per optimizer, and the global ``register_optimizer_step_pre_hook`` /
``register_optimizer_step_post_hook`` of ``torch.optim.optimizer``).

Subclasses state their hyperparameters and how a fresh state looks; this class
gathers one step's arrays into one call into Rust (``ferroptim._core``), which
checks every array before it writes any and, after the update, writes the step's new
state and counters itself, before it returns. So a bad input raises and leaves
parameters and state as they were, and an interruption (Ctrl-C) finds a step either
not begun or complete.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from . import _bfloat16, _borrows, _conventions, _core
from ._validate import BF16, GRAD_DEFAULTS, grad_settings, storage_settings
from .hooks import RemovableHandle, register
from .parameter import FLOAT_DTYPES, Parameter, refuse_masked

if TYPE_CHECKING:
    from ._core import _Commit

#: ``grad_settings`` of a group with the defaults: no unscaling, clipping or skipping.
_NO_GRAD_SETTINGS: tuple[float, float | None, bool] = (1.0, None, False)

#: Flags of torch.optim's param groups that only matter to torch; dropped on load.
TORCH_ONLY_FLAGS = ("foreach", "fused", "capturable", "differentiable")

#: Step hooks of every optimizer: pre hooks run before each optimizer's own, post hooks after.
_global_optimizer_pre_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
_global_optimizer_post_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()


def register_optimizer_step_pre_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Registers a step pre hook of every optimizer, as torch's
    ``torch.optim.optimizer.register_optimizer_step_pre_hook``: ``hook(optimizer, args,
    kwargs) -> None or (new_args, new_kwargs)``, run before each optimizer's own pre hooks."""
    return register(_global_optimizer_pre_hooks, hook)


def register_optimizer_step_post_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Registers a step post hook of every optimizer, as torch's
    ``torch.optim.optimizer.register_optimizer_step_post_hook``: ``hook(optimizer, args,
    kwargs) -> None``, run after each optimizer's own post hooks."""
    return register(_global_optimizer_post_hooks, hook)


#: Per thread, the optimizers whose hooked step is running: a subclass's ``step`` that
#: calls ``super().step()`` runs the hooks once.
_stepping = threading.local()
#: The ``step`` functions that already run the hooks.
_hooked_steps: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def _has_step_hooks(optimizer: Any) -> bool:
    """Whether any step hook, global or the optimizer's own, is registered."""
    return bool(
        _global_optimizer_pre_hooks
        or _global_optimizer_post_hooks
        or optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
    )


def _run_pre_hooks(optimizer: Any, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """The global then the optimizer's own step pre hooks; returns the step's arguments,
    which each hook may replace by returning ``(new_args, new_kwargs)``."""
    for pre_hook in list(
        chain(_global_optimizer_pre_hooks.values(), optimizer._optimizer_step_pre_hooks.values())
    ):
        result = pre_hook(optimizer, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(
                    f"{pre_hook} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                )
    return args, kwargs


def _run_post_hooks(optimizer: Any, args: Any, kwargs: Any) -> None:
    """The optimizer's own then the global step post hooks."""
    for post_hook in list(
        chain(optimizer._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values())
    ):
        post_hook(optimizer, args, kwargs)


@contextlib.contextmanager
def _hooks_running(optimizer: Any) -> Iterator[None]:
    """Marks ``optimizer``'s hooked step as running in this thread: a ``step()`` of it called
    inside (a subclass's ``super().step()``, a wrapper's inner step) runs no hooks."""
    running: set[int] = _stepping.__dict__.setdefault("ids", set())
    try:  # added inside: an interruption right after it cannot leave the mark behind
        running.add(id(optimizer))
        yield
    finally:
        running.discard(id(optimizer))


def _with_step_hooks(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an optimizer's ``step`` as torch does: global then per-optimizer pre hooks,
    each of which may return ``(new_args, new_kwargs)`` (``args`` starts with the
    optimizer), the step, then per-optimizer then global post hooks."""

    @functools.wraps(func)
    def step(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if not _has_step_hooks(self):
            return func(*args, **kwargs)  # no hooks: nothing to run around the step
        if id(self) in _stepping.__dict__.setdefault("ids", set()):
            return func(*args, **kwargs)  # inside a hooked step of this optimizer
        args, kwargs = _run_pre_hooks(self, args, kwargs)
        with _hooks_running(self):
            out = func(*args, **kwargs)
        _run_post_hooks(self, args, kwargs)
        return out

    _hooked_steps.add(step)
    return step


def _reject_set(params: Any) -> None:
    if isinstance(params, (set, frozenset)):
        raise TypeError(
            "optimizer parameters need to be organized in ordered collections, "
            "but the ordering of a set changes between runs; use a list"
        )


def _site(group: int, index: int) -> str:
    return f"param_groups[{group}]['params'][{index}]"


_Method = TypeVar("_Method", bound=Callable[..., Any])

#: Every live optimizer, for the fork handlers below.
_LIVE: weakref.WeakSet[Optimizer] = weakref.WeakSet()
_held: list[Optimizer] = []


def _before_fork() -> None:
    """Waits for running steps and holds every optimizer's lock across ``fork()``, so the
    child never inherits a step half done (its arrays still borrowed, its lock held by a
    thread that does not exist in the child, which would block its steps forever); then
    waits for the other native calls that borrow arrays (``_borrows``)."""
    _held[:] = list(_LIVE)
    for opt in _held:
        opt._lock.acquire()
    _borrows.close()  # last: such a call never waits for an optimizer's lock


def _after_fork_in_parent() -> None:
    _borrows.reopen()
    for opt in reversed(_held):
        opt._lock.release()
    _held.clear()


def _after_fork_in_child() -> None:
    _borrows.reopen()
    for opt in _held:
        opt._lock = threading.RLock()
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )


def _serialized(method: _Method) -> _Method:
    """Runs ``method`` holding the optimizer's lock, so that it never sees (or makes) a
    step's state half committed by another thread."""

    @functools.wraps(method)
    def locked(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        return _core.call_holding(self._lock, method, self, *args, **kwargs)

    return locked  # type: ignore[return-value]


class ParamState(MutableMapping):
    """Per-parameter state, keyed by the parameter object itself (by identity),
    as ``torch.optim.Optimizer.state``. NumPy arrays are unhashable, so this is a
    small mapping of ``id(param)`` to ``(param, state)``; ``opt.state[p]`` works for
    plain ndarrays and ``Parameter`` alike."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[Any, dict[str, Any]]] = {}

    def __getitem__(self, param: Any) -> dict[str, Any]:
        """The state of ``param``; like torch's ``defaultdict(dict)``, an empty dict is
        inserted for a parameter that has none yet."""
        entry = self._items.get(id(param))
        if entry is None or entry[0] is not param:
            entry = self._items[id(param)] = (param, {})
        return entry[1]

    def held(self, param: Any) -> dict[str, Any] | None:
        """The state of ``param``, or ``None``; inserts nothing."""
        entry = self._items.get(id(param))
        return entry[1] if entry is not None and entry[0] is param else None

    def commit_to(self, commit: _Commit, params: list[Any], states: list[dict[str, Any]]) -> None:
        """Adds to ``commit`` (see :func:`ferroptim._core.commit`) the writes that make each
        non-empty ``states[i]`` the state of ``params[i]``: into its current state dict, so
        a dict held from ``opt.state[p]`` stays live as in torch, else as a new entry.
        Changes nothing itself."""
        items = self._items
        for param, state in zip(params, states):
            if state:
                entry = items.get(id(param))
                if entry is not None and entry[0] is param:
                    commit.setdefault("replace", []).append((entry[1], state))
                else:
                    commit.setdefault("set", []).append((items, id(param), (param, state)))

    def get(self, param: Any, default: Any = None) -> Any:
        """The state of ``param``, or ``default``; inserts nothing."""
        entry = self._items.get(id(param))
        return entry[1] if entry is not None and entry[0] is param else default

    def __setitem__(self, param: Any, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"a parameter's state must be a dict, got {type(value).__name__}")
        self._items[id(param)] = (param, value)

    def __delitem__(self, param: Any) -> None:
        if id(param) not in self._items or self._items[id(param)][0] is not param:
            raise KeyError("parameter has no state")
        del self._items[id(param)]

    def __iter__(self) -> Iterator[Any]:
        return (param for param, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, param: object) -> bool:
        entry = self._items.get(id(param))
        return entry is not None and entry[0] is param

    def __repr__(self) -> str:
        return f"ParamState({len(self)} parameters)"

    def __getstate__(self) -> list[tuple[Any, dict[str, Any]]]:
        # ids change when unpickled or deep-copied; the (param, state) pairs do not
        return list(self._items.values())

    def __setstate__(self, pairs: list[tuple[Any, dict[str, Any]]]) -> None:
        self._items = {id(param): (param, state) for param, state in pairs}


def check_params(arrays: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raises ``ValueError`` naming a parameter a step could not update: one the kernels
    cannot address (misaligned, over 32 dimensions, elements sharing memory with each
    other), or one that shares memory with an earlier parameter or interleaves with it
    in a way rust-numpy's borrow checker cannot prove disjoint (column blocks
    ``m[:, :3]`` and ``m[:, 3:]`` of one matrix). The verdict is the one a step gives."""
    conflict = _core.check_params(list(arrays), list(names))
    if conflict is None:
        return
    others = [j for j in range(conflict) if np.may_share_memory(arrays[conflict], arrays[j])] or [0]
    shared = [j for j in others if np.shares_memory(arrays[conflict], arrays[j])]
    if shared:
        raise ValueError(
            f"{names[conflict]} shares memory with {names[shared[0]]}; each parameter must be its own memory"
        )
    raise ValueError(
        f"{names[conflict]} interleaves in memory with {names[others[0]]} (as column blocks of one "
        "matrix do); ferroptim's borrow checker cannot prove such views disjoint, so give each "
        "parameter its own array or a contiguous block of a shared buffer"
    )


class Optimizer:
    """Base class of ferroptim's optimizers, with torch.optim's interface.

    Args:
        params: an iterable of arrays, an iterable of param-group dicts
            (``{"params": [...], "lr": ...}``), or a dict mapping names to arrays.
            An array is a writeable float32/float64 ``numpy.ndarray`` or a
            :class:`~ferroptim.Parameter`.
        defaults: the default hyperparameters of every group.

    Threads: ``step``, ``add_param_group``, ``state_dict`` and ``load_state_dict`` of one
    optimizer hold its lock, so calls from several Python threads run one after the other
    and never see a step half committed. Different optimizers step concurrently (the
    kernels run without the GIL). Writing into a parameter from another thread while a
    step runs is a data race: the values are then unspecified, but nothing crashes.
    ``os.fork()`` waits for running steps to finish, so a forked child starts between steps.

    Gradient settings, per param group, of every optimizer (not in torch.optim; applied in
    this order, inside the fused step, never writing the caller's gradient arrays):

    * ``grad_scale`` (default ``None``, i.e. 1): the loss scale ``S`` the gradients carry.
      The kernel multiplies each gradient by ``1 / S`` (computed in float64, rounded to the
      gradient's dtype), as ``torch.amp.GradScaler.unscale_`` does.
    * ``skip_nonfinite`` (default ``False``): when a gradient of a group with this set has
      a NaN or infinite entry after unscaling, the whole step is skipped: no parameter,
      state or ``step`` counter changes (``GradScaler.step`` skips ``optimizer.step()`` in
      the same case). ``last_step_skipped`` then is ``True`` and ``skipped_steps`` counts
      it; neither is part of ``state_dict()``. The check is one deterministic Rust pass.
    * ``max_grad_norm`` (default ``None``): clip as ``torch.nn.utils.clip_grad_norm_``. The
      total 2-norm ``N`` is taken once per step over the unscaled gradients of every
      parameter of the optimizer that has one (all groups, as ``clip_grad_norm_(all
      params)``), with the deterministic reduction of :func:`ferroptim.clip_grad_norm_`;
      each group with a ``max_grad_norm`` then multiplies its gradients by
      ``min(max_grad_norm / (N + 1e-6), 1)`` (computed in ``N``'s dtype), and a group
      without one is not clipped. With one ``max_grad_norm`` for all groups, this is
      ``clip_grad_norm_(params, max_grad_norm)`` followed by ``step()``.

    The gradient the update rule sees is ``(g * (1 / S)) * c``, each product rounded to
    the gradient's dtype, exactly as ``unscale_``, ``clip_grad_norm_`` and ``step`` in torch
    compute it. With the defaults every multiplier is 1, which changes no bit.
    """

    #: State keys, in the order the Rust kernel takes them.
    state_slots: ClassVar[tuple[str, ...]] = ()
    #: State keys every non-empty state has (others are created when settings need them).
    required_state: ClassVar[tuple[str, ...]] = ()
    #: Whether the state keeps torch's per-parameter ``step`` counter.
    counts_steps: ClassVar[bool] = True
    #: Other per-parameter scalars every non-empty state has (NAdam's ``mu_product``).
    scalar_state: ClassVar[tuple[str, ...]] = ()
    #: Hyperparameters a loaded group must have: those torch's step reads and its
    #: ``__setstate__`` does not fill in (``lr`` and the update rule's constants), which
    #: every state dict of the torch class holds.
    required_hyperparameters: ClassVar[tuple[str, ...]] = ()
    #: Hyperparameters a loaded group may lack, with the values torch's ``__setstate__``
    #: gives them (keys newer than the torch that wrote the state dict, as ``maximize``).
    #: A missing key of neither kind (ferroptim's own settings, and torch keys its step
    #: does not read, as Adagrad's ``initial_accumulator_value``) takes ``defaults``' value.
    torch_setdefaults: ClassVar[dict[str, Any]] = {}
    #: Per convention (``"torch"``, ``"optax"``, ``"keras"``, ``"paper"``), the defaults it
    #: gives the settings it changes; empty for a class without conventions (see
    #: ``ferroptim._conventions`` and ``docs/conventions.md``).
    conventions: ClassVar[dict[str, dict[str, Any]]] = {}
    #: The numerics settings (``eps_in_sqrt``, ``eps_root``, ...) the class takes.
    convention_knobs: ClassVar[tuple[str, ...]] = ()

    # Registered hooks by handle id, in call order (torch's attribute names).
    _optimizer_step_pre_hooks: OrderedDict[int, Callable[..., Any]]
    _optimizer_step_post_hooks: OrderedDict[int, Callable[..., Any]]
    _optimizer_state_dict_pre_hooks: OrderedDict[int, Callable[..., Any]]
    _optimizer_state_dict_post_hooks: OrderedDict[int, Callable[..., Any]]
    _optimizer_load_state_dict_pre_hooks: OrderedDict[int, Callable[..., Any]]
    _optimizer_load_state_dict_post_hooks: OrderedDict[int, Callable[..., Any]]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        # Steps from several Python threads are serialized: the kernel runs without the
        # GIL, and the state commit must not interleave with another step's, nor with
        # add_param_group, state_dict or load_state_dict (reentrant: they call each other).
        self._lock = threading.RLock()
        _LIVE.add(self)
        self._init_hooks()
        self.defaults = dict(defaults)
        for name, default in GRAD_DEFAULTS.items():
            self.defaults.setdefault(name, default)
        #: Whether the last ``step()`` was skipped for a non-finite gradient (``skip_nonfinite``).
        self.last_step_skipped = False
        #: How many steps were skipped for a non-finite gradient (``skip_nonfinite``).
        self.skipped_steps = 0
        self.state: ParamState = ParamState()
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, np.ndarray):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of arrays "
                "or dicts, but got a single numpy.ndarray; wrap it in a list"
            )
        _reject_set(params)
        if isinstance(params, Mapping):
            groups: list[Any] = [{"params": list(params.items())}]
        else:
            groups = list(params)
            if not groups:
                raise ValueError("optimizer got an empty parameter list")
            if not isinstance(groups[0], Mapping):
                groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # --- torch.optim's interface ----------------------------------------------------
    @_serialized
    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Adds a group of parameters with its own hyperparameters (missing ones
        take ``defaults``). A parameter already in the optimizer is rejected."""
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        # As torch, the caller's dict becomes the group, so edits to it take effect.
        group = param_group if isinstance(param_group, dict) else dict(param_group)
        if "params" not in group:
            raise ValueError("param group must have a 'params' entry")
        params, names = self._unpack_params(group["params"])
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        if self.param_groups and ("param_names" in group) != ("param_names" in self.param_groups[0]):
            kind = "with names" if "param_names" in group else "without names"
            raise ValueError(
                "all optimizer param groups should be with/without names. "
                f"cannot add param group {kind} to the optimizer"
            )
        for name, default in _conventions.group_defaults(self, group).items():
            group.setdefault(name, default)
        gi = len(self.param_groups)
        for i, p in enumerate(params):
            self._check_param(p, _site(gi, i))
        existing = [p for g in self.param_groups for p in g["params"]]
        known = {id(p) for p in existing}
        if len({id(p) for p in params}) != len(params) or known & {id(p) for p in params}:
            raise ValueError("some parameters appear more than once in the optimizer")
        all_names = [
            _site(g, i) for g, grp in enumerate(self.param_groups) for i in range(len(grp["params"]))
        ] + [_site(gi, i) for i in range(len(params))]
        check_params(existing + params, all_names)
        self._validate_group(group)
        _conventions.validate(self, group)
        grad_settings(group)
        self._append_group(group)

    def _append_group(self, group: dict[str, Any]) -> None:
        """Appends the checked ``group`` to ``param_groups``: one call, so an interruption
        finds it either absent or there."""
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Resets the ``.grad`` of every :class:`Parameter`: to ``None`` (the default,
        as torch), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if isinstance(p, Parameter) and p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad[...] = 0

    @_with_step_hooks
    def step(self, closure: Callable[[], Any] | None = None, *, grads: Sequence[Any] | None = None) -> Any:
        """Performs one optimization step on every parameter that has a gradient.

        Args:
            closure: called first; its return value (the loss) is returned.
            grads: gradients aligned with the parameters of all groups, in order
                (``None`` entries skip a parameter). Without it, each parameter's
                ``.grad`` is used.

        Returns the closure's loss, as torch. With ``skip_nonfinite``, whether the step
        was skipped is ``last_step_skipped`` (see the class docstring).
        """
        loss = None if closure is None else closure()
        _core.call_holding(self._lock, self._step_with, grads)
        return loss

    def _step_with(self, grads: Sequence[np.ndarray | None] | None) -> None:
        self._step(self._gradients(grads))

    @_serialized
    def state_dict(self) -> dict[str, Any]:
        """The state in torch's layout, with arrays copied:
        ``{"state": {index: {key: value}}, "param_groups": [{..., "params": [indices]}]}``;
        a group built from named parameters also has torch's ``"param_names"``. State kept
        as bfloat16 (``state_dtype="bfloat16"``) is given as float32 arrays, which hold it
        exactly.

        State-dict pre hooks run first, post hooks last (each may return a new dict)."""
        for pre_hook in list(self._optimizer_state_dict_pre_hooks.values()):
            pre_hook(self)
        state_dict = self._pack_state()
        for post_hook in list(self._optimizer_state_dict_post_hooks.values()):
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def _pack_state(self) -> dict[str, Any]:
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        # Entries of objects that are not parameters (a stray opt.state[x] lookup) are left out.
        state = {
            index[id(p)]: {k: _exported(v) if isinstance(v, np.ndarray) else v for k, v in s.items()}
            for p, s in self.state.items()
            if id(p) in index
        }
        return {"state": state, "param_groups": groups}

    @_serialized
    def load_state_dict(self, state_dict: Mapping[str, Any], match: str = "order") -> None:
        """Restores a ``state_dict()``: continuing then gives bit-identical results.

        Also takes a ``torch.optim`` state dict whose tensors were turned into NumPy
        arrays (torch-only flags such as ``foreach`` are ignored). Everything is
        checked before anything changes. A saved group without a hyperparameter torch
        cannot step without (``required_hyperparameters``) is refused; one without a key
        torch fills in for state dicts of older versions takes torch's value
        (``torch_setdefaults``), and one without ferroptim's own settings the optimizer's
        defaults.

        Args:
            state_dict: what ``state_dict()`` returned (here, or in torch).
            match: how saved parameters find the optimizer's. ``"order"`` (torch's way):
                group by group, position by position; the groups and their sizes must
                agree. ``"names"``: by the ``param_names`` of both (build the optimizers
                from named parameters, ``{name: array}`` or ``(name, array)`` pairs, as
                torch's ``named_parameters()``), so parameters may be reordered and
                regrouped. Each group takes the hyperparameters of the saved group its
                parameters came from. Missing or unexpected names, state arrays whose
                shape differs from the parameter's, and a group whose parameters come
                from saved groups with different hyperparameters raise ``ValueError``.

        Into groups with ``state_dtype="bfloat16"``, state arrays are rounded to float32 and
        then to the nearest bfloat16 (ties to even): exact for the values a bfloat16
        ``state_dict()`` holds.

        Load-state-dict pre hooks see (a shallow copy of) ``state_dict`` first and may
        return a replacement; post hooks run after the load.
        """
        if match not in ("order", "names"):
            raise ValueError(f"match must be 'order' or 'names', got {match!r}")
        if isinstance(state_dict, Mapping):
            state_dict = dict(state_dict)  # a shallow copy for the hooks to edit, as torch
        for pre_hook in list(self._optimizer_load_state_dict_pre_hooks.values()):
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state dict must be a dict with 'state' and 'param_groups'")
        if match == "names":
            state_dict = self._align_by_names(state_dict)
        self._load_in_order(state_dict)
        for post_hook in list(self._optimizer_load_state_dict_post_hooks.values()):
            post_hook(self)

    def _load_in_order(self, state_dict: Mapping[str, Any]) -> None:
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, Sequence) or len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, "
                f"the optimizer has {len(self.param_groups)}"
            )
        by_index: dict[Any, tuple[Any, str, int]] = {}
        groups = []
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise ValueError(f"loaded param group {gi} is not a dict with 'params'")
            if not isinstance(saved["params"], Sequence) or isinstance(saved["params"], str):
                raise ValueError(f"loaded param group {gi}: 'params' must be a list of parameter ids")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded param group {gi} has {len(saved['params'])} parameters, "
                    f"the optimizer's has {len(group['params'])}"
                )
            for i, (key, p) in enumerate(zip(saved["params"], group["params"])):
                try:
                    repeated = key in by_index
                except TypeError:
                    raise ValueError(f"loaded param group {gi}: id {key!r} is not hashable") from None
                if repeated:
                    raise ValueError(f"loaded state dict lists parameter id {key!r} twice")
                by_index[key] = (p, _site(gi, i), gi)
            missing = [k for k in self.required_hyperparameters if k not in saved]
            if missing:
                raise ValueError(
                    f"loaded param group {gi} has no {', '.join(map(repr, missing))}, which "
                    f"{type(self).__name__} needs to step (torch's state dicts always hold it)"
                )
            restored = _conventions.loaded_defaults(self, saved)
            restored.update(self.torch_setdefaults)
            restored.update(
                (k, _plain_value(v))
                for k, v in saved.items()
                if k not in TORCH_ONLY_FLAGS and k not in ("params", "param_names")
            )
            names = saved.get("param_names", group.get("param_names"))
            if names is not None:
                if len(names) != len(group["params"]):
                    raise ValueError(f"loaded param group {gi} has {len(names)} param_names")
                restored["param_names"] = list(names)
            restored["params"] = group["params"]
            try:
                self._validate_group(restored)
                _conventions.validate(self, restored)
                grad_settings(restored)
            except (TypeError, ValueError) as err:
                raise type(err)(f"loaded param group {gi}: {err}") from None
            groups.append(restored)
        saved_state = state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise ValueError("state dict's 'state' must be a dict")
        state = ParamState()
        for key, entry in saved_state.items():
            if key not in by_index:
                raise ValueError(f"state dict has state for parameter {key!r}, which no group lists")
            p, site, gi = by_index[key]
            state[p] = self._load_param_state(p, site, entry, groups[gi])
        # groups and state change in one native call: an interruption finds both old or both new
        _core.commit({"splice": [(self.param_groups, groups)], "set": [(self.__dict__, "state", state)]})

    def __dir__(self) -> list[str]:
        # The public API only, as tab completion should show it: no private names, and none
        # of the class attributes (the ClassVars above) by which a subclass describes its kernel.
        spec = {n for n, hint in Optimizer.__annotations__.items() if str(hint).startswith("ClassVar")}
        return sorted(n for n in super().__dir__() if not n.startswith("_") and n not in spec)

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            text += "".join(f"    {k}: {group[k]}\n" for k in sorted(group) if k != "params")
        return text + ")"

    def __getstate__(self) -> dict[str, Any]:
        return {
            "defaults": self.defaults,
            "state": self.state,
            "param_groups": self.param_groups,
            "last_step_skipped": self.last_step_skipped,
            "skipped_steps": self.skipped_steps,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("last_step_skipped", False)
        self.__dict__.setdefault("skipped_steps", 0)
        self._lock = threading.RLock()
        _LIVE.add(self)
        self._init_hooks()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass's own step runs the hooks too, as torch patches each class's step.
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if callable(step) and step not in _hooked_steps:
            cls.step = _with_step_hooks(step)  # type: ignore[method-assign]

    # --- hooks, as torch.optim.Optimizer's ----------------------------------------------
    def _init_hooks(self) -> None:
        for name in (
            "_optimizer_step_pre_hooks",
            "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks",
            "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks",
            "_optimizer_load_state_dict_post_hooks",
        ):
            self.__dict__.setdefault(name, OrderedDict())

    def register_step_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Registers ``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)``,
        called before each ``step()`` (after the global pre hooks); ``args`` starts with
        the optimizer, and a returned pair replaces the step's arguments. Returns a
        handle whose ``remove()`` unregisters it."""
        return register(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Registers ``hook(optimizer, args, kwargs) -> None``, called after each
        ``step()`` (before the global post hooks). Returns a handle whose ``remove()``
        unregisters it."""
        return register(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers ``hook(optimizer) -> None``, called first by ``state_dict()``; with
        ``prepend``, before the hooks already registered."""
        return register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers ``hook(optimizer, state_dict) -> state_dict or None``, called last by
        ``state_dict()``; it may edit the dict or return a new one."""
        return register(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers ``hook(optimizer, state_dict) -> state_dict or None``, called first by
        ``load_state_dict()`` with a shallow copy of the dict; it may edit it or return
        a new one (to rename parameters, say)."""
        return register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers ``hook(optimizer) -> None``, called last by ``load_state_dict()``."""
        return register(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    # --- what subclasses provide ------------------------------------------------------
    #: The ``ferroptim._core`` step function of the algorithm.
    _kernel: ClassVar[Callable[..., Any]]

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Raises ``ValueError`` for an invalid hyperparameter of ``group``."""

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        """A fresh state for ``p``: ``step`` 0 and zeros (in ``p``'s layout) for
        ``required_state``."""
        state: dict[str, Any] = {"step": 0.0} if self.counts_steps else {}
        state.update((name, self._state_buffer(p, group)) for name in self.required_state)
        return state

    def _state_buffer(self, p: np.ndarray, group: dict[str, Any], fill: float = 0.0) -> np.ndarray:
        """A new state array for ``p`` holding ``fill``, in ``p``'s memory layout: of
        ``p``'s dtype, or bfloat16 bits (``np.uint16``) when the group's
        ``state_dtype`` is ``"bfloat16"``."""
        like = p.view(np.ndarray)
        if group.get("state_dtype") == BF16:
            bits = _bfloat16.from_float32(np.array([fill], dtype=np.float32))[0]
            return np.full_like(like, bits, dtype=np.uint16)
        return np.zeros_like(like) if fill == 0 else np.full_like(like, fill)

    def _slots_in_use(self, group: dict[str, Any]) -> list[str | None]:
        """``state_slots``, with ``None`` for each slot ``group``'s settings do not use
        (default: all are used)."""
        return list(self.state_slots)

    def _add_missing_slots(self, state: dict[str, Any], p: np.ndarray, group: dict[str, Any]) -> None:
        """Adds to ``state`` (a private copy) zeros for each slot ``group``'s settings use
        that it lacks, as for an option switched on mid-run (torch raises ``KeyError``
        there). A missing required slot is left missing, for the kernel to name."""
        for name in self._slots_in_use(group):
            if name is not None and state.get(name) is None and name not in self.required_state:
                state[name] = self._state_buffer(p, group)

    def _tensor_args(
        self, states: list[dict[str, Any]], olds: list[dict[str, Any] | None], group: dict[str, Any]
    ) -> dict[str, Any]:
        """Per-tensor scalars for the kernel; updates the private state copies
        (``olds`` are the states before this step, ``None`` or empty when new) of
        ``group``'s parameters."""
        if not self.counts_steps:
            return {}
        for s in states:
            s["step"] = float(s["step"]) + 1.0
        return {"step": [s["step"] for s in states]}

    def _live_states(
        self, olds: list[dict[str, Any] | None], group: dict[str, Any]
    ) -> tuple[list[dict[str, Any]] | None, list[str | None] | None]:
        """The states a step can use as they are, and the slots in use: ``olds`` when every
        parameter has one, empty dicts when the settings keep no state (SGD without
        momentum), else ``None``."""
        try:
            used = self._slots_in_use(group)
        except (TypeError, ValueError):  # an edited setting: the general path words it
            return None, None
        if not self.counts_steps and not any(used):
            return [{}] * len(olds), used
        return (olds if all(olds) else None), used  # type: ignore[return-value]

    def _fast_args(self, olds: list[dict[str, Any]], group: dict[str, Any]) -> dict[str, Any] | None:
        """The per-tensor kernel scalars of a step of ``group``'s parameters, whose states
        ``olds`` all exist, computed without touching them; ``None`` where the step needs
        the general path (a ``step`` that is not a good float, a ``state_dtype`` other than
        the default or bfloat16, other per-tensor scalars). :meth:`_step` writes ``step``
        back once the kernel succeeded."""
        storage = group.get("state_dtype")
        if self.scalar_state or (storage is not None and storage != BF16):
            return None
        if not self.counts_steps:
            return {}
        try:
            steps = [old["step"] for old in olds]
        except KeyError:
            return None
        if len(steps) == 1:
            t = steps[0]
            return {"step": [t + 1.0]} if type(t) is float and 0.0 <= t < math.inf else None
        # Every step a finite float >= 0 (a NaN or inf makes the sum non-finite).
        if set(map(type, steps)) != {float} or not (min(steps) >= 0.0 and math.isfinite(sum(steps))):
            return None
        return {"step": [t + 1.0 for t in steps]}

    # --- plumbing -------------------------------------------------------------------
    def _align_by_names(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """``state_dict`` rewritten to follow this optimizer's groups and parameter order,
        matching parameters by ``param_names``; the order-based load then checks and
        restores it. Raises ``ValueError`` listing every name that does not match."""
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, Sequence) or isinstance(saved_groups, str):
            raise ValueError("state dict's 'param_groups' must be a list")
        if not isinstance(saved_state, Mapping):
            raise ValueError("state dict's 'state' must be a dict")
        saved: dict[Any, tuple[int, Any]] = {}  # name -> (saved group, saved parameter id)
        for gi, group in enumerate(saved_groups):
            if not isinstance(group, Mapping) or "params" not in group:
                raise ValueError(f"loaded param group {gi} is not a dict with 'params'")
            for name, key in zip(*_named_ids(group, f"loaded param group {gi}")):
                if name in saved:
                    raise ValueError(f"loaded state dict names parameter {name!r} twice")
                try:
                    hash(key)
                except TypeError:
                    raise ValueError(f"loaded param group {gi}: id {key!r} is not hashable") from None
                saved[name] = (gi, key)
        current: dict[Any, tuple[int, int]] = {}  # name -> (group, index)
        for gi, group in enumerate(self.param_groups):
            names, _ = _named_ids(group, f"the optimizer's param_groups[{gi}]")
            for i, name in enumerate(names):
                if name in current:
                    raise ValueError(f"the optimizer names parameter {name!r} twice")
                current[name] = (gi, i)
        listed = {key for _, key in saved.values()}
        stray = [key for key in saved_state if key not in listed]
        if stray:
            raise ValueError(f"state dict has state for parameter {stray[0]!r}, which no group lists")

        problems = []
        missing = [name for name in current if name not in saved]
        unexpected = [name for name in saved if name not in current]
        if missing:
            problems.append(f"missing from the state dict: {_name_list(missing)}")
        if unexpected:
            problems.append(f"unexpected in the state dict: {_name_list(unexpected)}")
        for name, (gi, i) in current.items():
            entry = saved_state.get(saved[name][1]) if name in saved else None
            shape = np.shape(self.param_groups[gi]["params"][i])
            for key, value in entry.items() if isinstance(entry, Mapping) else ():
                if key != "step" and isinstance(value, np.ndarray) and value.shape != shape:
                    problems.append(
                        f"state {key!r} of {name!r} has shape {value.shape}, but the parameter has {shape}"
                    )
        groups: list[dict[str, Any]] = []
        state: dict[int, Any] = {}
        flat = 0  # the aligned dict's parameter ids count up across the groups, as state_dict()'s
        for gi, group in enumerate(self.param_groups):
            names = group.get("param_names") or []
            sources = sorted({saved[name][0] for name in names if name in saved})
            hyper = _hyperparameters(saved_groups[sources[0]] if sources else group)
            for other in sources[1:]:
                if not _same(_hyperparameters(saved_groups[other]), hyper):
                    problems.append(
                        f"param_groups[{gi}] gathers parameters of loaded groups {sources[0]} and {other}, "
                        "whose hyperparameters differ"
                    )
            ids = list(range(flat, flat + len(names)))
            flat += len(names)
            for new_id, name in zip(ids, names):
                if name in saved and saved[name][1] in saved_state:
                    state[new_id] = saved_state[saved[name][1]]
            groups.append({**hyper, "params": ids, "param_names": list(names)})
        if problems:
            raise ValueError("cannot load the state dict by parameter names: " + "; ".join(problems))
        return {"state": state, "param_groups": groups}

    @staticmethod
    def _unpack_params(params: Any) -> tuple[list[Any], list[str] | None]:
        if isinstance(params, np.ndarray):
            return [params], None
        _reject_set(params)
        if isinstance(params, Mapping):
            params = list(params.items())
        items = list(params)
        named = [isinstance(x, tuple) for x in items]
        if any(named) and not all(named):
            raise ValueError("all optimizer params should be with or without names")
        if items and all(named):
            return [p for _, p in items], [str(n) for n, _ in items]
        return items, None

    @staticmethod
    def _check_param(p: Any, site: str) -> None:
        if not isinstance(p, np.ndarray):
            kind = type(p)
            if kind.__module__.split(".")[0] == "torch":
                raise TypeError(
                    f"{site} must be a numpy.ndarray or ferroptim.Parameter, got {kind.__module__}."
                    f"{kind.__name__}; for torch tensors use ferroptim.torch's optimizers "
                    "(ferroptim.torch.Adam, ...), torch.optim classes that run these kernels on the tensors"
                )
            raise TypeError(f"{site} must be a numpy.ndarray or ferroptim.Parameter, got {kind.__name__}")
        if p.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{site} has dtype {p.dtype}, expected float32 or float64")
        if not p.flags.writeable:
            raise ValueError(f"{site} is read-only (its WRITEABLE flag is off)")

    def _gradients(self, grads: Sequence[Any] | None) -> list[list[Any]]:
        if grads is None:
            per_group = []
            for gi, group in enumerate(self.param_groups):
                row = []
                for i, p in enumerate(group["params"]):
                    if not isinstance(p, Parameter):
                        raise TypeError(
                            f"{_site(gi, i)} is a plain ndarray, which has no .grad; "
                            "wrap it in ferroptim.Parameter or pass grads= to step()"
                        )
                    row.append(p.grad)
                per_group.append(row)
            return per_group
        if isinstance(grads, np.ndarray) or not isinstance(grads, Iterable):
            raise TypeError("grads must be a sequence with one entry (array or None) per parameter")
        # Arithmetic on 0-d arrays yields NumPy scalars; take them as 0-d gradients.
        flat = [np.asarray(g) if isinstance(g, np.generic) else g for g in grads]
        total = sum(len(g["params"]) for g in self.param_groups)
        if len(flat) != total:
            raise ValueError(f"grads has {len(flat)} entries, but the optimizer has {total} parameters")
        per_group, start = [], 0
        for group in self.param_groups:
            per_group.append(flat[start : start + len(group["params"])])
            start += len(group["params"])
        return per_group

    def _with_grads(self, grads: list[list[Any]]) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
        """Per group that has any gradient: its index, the group, and the kernel's
        ``group``/``index``/``params``/``grads`` entries for its parameters with one."""
        for gi, (group, group_grads) in enumerate(zip(self.param_groups, grads)):
            params = group["params"]
            if all(g is not None for g in group_grads):  # the usual case, without the filtering
                if params:
                    yield (
                        gi,
                        group,
                        {
                            "group": gi,
                            "index": list(range(len(params))),
                            "params": list(params),
                            "grads": list(group_grads),
                        },
                    )
                continue
            with_grad = [(i, p, g) for i, (p, g) in enumerate(zip(params, group_grads)) if g is not None]
            if with_grad:
                index, ps, gs = (list(column) for column in zip(*with_grad))
                yield gi, group, {"group": gi, "index": index, "params": ps, "grads": gs}

    def _step(self, grads: list[list[Any]]) -> None:
        """One step over the groups' parameters that have gradients: one kernel call.

        The usual step, where every parameter already has its state, hands the live state
        dicts to the kernel and afterwards counts their ``step`` up. Any other group (a
        parameter without state, a ``step`` or setting to check and word, NAdam's
        ``mu_product``) takes the general path: private copies of the states, created or completed as the
        settings need, committed only after the kernel succeeded. The kernel checks every
        array before it writes any, so a failed step changes nothing either way; when it
        finds a state array missing from a live state, the step is redone on the general
        path, which creates the array or names it.

        Atomic, also when interrupted: Python only prepares the step's bookkeeping (new
        ``step`` counters and states, ``last_step_skipped``) as a commit, changing nothing;
        the kernel's native call writes it after the update, before it returns. An
        asynchronous exception (Ctrl-C, a signal handler or trace function that raises)
        comes only between two bytecodes, so it finds the step either not begun or
        complete; every line after that call only reads."""
        try:
            self._run(grads, fast=True)
        except _core.StateMissing:
            self._run(grads, fast=False)

    def _run(self, grads: list[list[Any]], fast: bool) -> None:
        calls: list[dict[str, Any]] = []
        commit: _Commit = {}
        get = self.state._items.get
        for gi, group, tensors in self._with_grads(grads):
            params = tensors["params"]
            olds = [e[1] if (e := get(id(p))) is not None and e[0] is p else None for p in params]
            call = group.copy()
            call.pop("param_names", None)
            call.update(tensors)  # "params" too
            live, used = self._live_states(olds, group) if fast else (None, None)
            args = self._fast_args(live, group) if live is not None else None
            if live is not None and args is not None:
                call.update(args, state=live, slots=used)
                if group.get("state_dtype") == BF16:
                    try:
                        storage_settings(group)
                    except (TypeError, ValueError) as err:
                        raise type(err)(f"param_groups[{gi}]: {err}") from None
                    steps = args.get("step") or [0.0] * len(live)
                    call["rounding"] = self._rounding_keys(gi, tensors["index"], steps)
                if "step" in args:
                    commit.setdefault("column", []).append((live, "step", args["step"]))
                calls.append(call)
                continue
            self._check_current(gi, tensors["index"], olds)
            try:
                if "state_dtype" in group:
                    storage_settings(group)
                # Private copies: the state is committed only once the kernel accepted every array.
                states = [old.copy() if old else self._init_state(p, group) for p, old in zip(params, olds)]
                for st, p in zip(states, params):
                    self._add_missing_slots(st, p, group)
                call.update(state=states, slots=self._slots_in_use(group))
                call.update(self._tensor_args(states, olds, group))
            except (TypeError, ValueError) as err:
                # a hyperparameter edited into the group after construction, of the wrong type
                raise type(err)(f"param_groups[{gi}]: {err}") from None
            if group.get("state_dtype") == BF16:
                steps = [s.get("step", 0) for s in states]
                call["rounding"] = self._rounding_keys(gi, tensors["index"], steps)
            calls.append(call)
            self.state.commit_to(commit, params, states)
        if not self._unscale_and_clip(calls, commit):
            return
        if calls:
            type(self)._kernel(calls, commit)
        else:
            _core.commit(commit)

    def _unscale_and_clip(self, calls: list[dict[str, Any]], commit: _Commit) -> bool:
        """Applies the groups' ``grad_scale``, ``skip_nonfinite`` and ``max_grad_norm`` (see
        the class docstring) to the kernel ``calls`` of one step: sets each call's
        ``clip_coef``, and returns ``False`` when the step is to be skipped (after updating
        ``last_step_skipped`` and ``skipped_steps`` in one call). Otherwise adds the reset of
        ``last_step_skipped`` to the step's ``commit``. Raises, naming the group, for a bad
        setting. Without any of them set, costs no pass over the gradients."""
        settings = []
        for call in calls:
            gi = call["group"]
            call.pop("clip_coef", None)  # set below only; a group key of that name is not the kernel's
            group = self.param_groups[gi]
            if group.get("grad_scale") is None and group.get("max_grad_norm") is None:
                if group.get("skip_nonfinite", False) is False:  # the defaults: nothing to check
                    settings.append(_NO_GRAD_SETTINGS)
                    continue
            try:
                settings.append(grad_settings(group))
            except (TypeError, ValueError) as err:
                raise type(err)(f"param_groups[{gi}]: {err}") from None
        checks = any(skip for _, _, skip in settings)
        clips = [max_norm for _, max_norm, _ in settings if max_norm is not None]
        if not checks and not clips:
            self._not_skipped(commit)
            return True
        for call in calls:
            for p, g in zip(call["params"], call["grads"]):
                if getattr(g, "shape", None) != p.shape or getattr(g, "dtype", None) != p.dtype:
                    return True  # a malformed gradient: the kernel refuses it, naming it, not a skip
        grads: list[Any] = []
        names: list[str] = []
        scales: list[float] = []
        flags: list[bool] = []
        for call, (scale, _, skip) in zip(calls, settings):
            gi = call["group"]
            grads.extend(call["grads"])
            names.extend(f"the gradient of {_site(gi, i)}" for i in call["index"])
            scales.extend([scale] * len(call["grads"]))
            flags.extend([skip] * len(call["grads"]))
        finite, _, _, coefs = _core.grad_stats(grads, names, scales, flags, clips)
        if not finite:
            self.__dict__.update(last_step_skipped=True, skipped_steps=self.skipped_steps + 1)
            return False
        self._not_skipped(commit)
        coef = iter(coefs)
        for call, (_, max_norm, _) in zip(calls, settings):
            if max_norm is not None:
                call["clip_coef"] = next(coef)
        return True

    def _not_skipped(self, commit: _Commit) -> None:
        """Adds ``last_step_skipped = False`` to the step's ``commit``, when it is not already."""
        if self.last_step_skipped is not False:
            commit.setdefault("set", []).append((self.__dict__, "last_step_skipped", False))

    def _check_current(self, gi: int, index: list[int], olds: list[dict[str, Any] | None]) -> None:
        """Raises if a state about to step lacks an array or scalar its settings need,
        or holds a ``step`` (or other scalar, NAdam's ``mu_product``) that is not a finite
        non-negative number."""
        scalars = (("step",) if self.counts_steps else ()) + self.scalar_state
        needed = scalars + self.required_state
        for i, old in zip(index, olds):
            if old:
                for name in needed:
                    if old.get(name) is None:
                        raise ValueError(f"state {name!r} of {_site(gi, i)} is missing")
                for name in scalars:
                    value = old[name]
                    if type(value) is not float or not 0.0 <= value < math.inf:  # fast path: a good float
                        _scalar(value, f"state {name!r} of {_site(gi, i)}")

    def _rounding_keys(self, gi: int, index: list[int], steps: list[float]) -> list[tuple[int, int]]:
        """Per tensor of group ``gi`` with bfloat16 state: its step number and its
        parameter's position in the optimizer (over all groups), which with the group's
        ``seed`` key the stochastic rounding of its state (``src/kernels/state.rs``)."""
        first = sum(len(g["params"]) for g in self.param_groups[:gi])
        for t, i in zip(steps, index):
            if t >= _BF16_STEPS:
                raise ValueError(_bf16_step_error(f"state 'step' of {_site(gi, i)}", t))
        return [(int(t), first + i) for t, i in zip(steps, index)]

    def _load_param_state(
        self, p: np.ndarray, site: str, entry: Any, group: dict[str, Any]
    ) -> dict[str, Any]:
        if not isinstance(entry, Mapping):
            raise ValueError(f"state of {site} must be a dict, got {type(entry).__name__}")
        scalars = (("step",) if self.counts_steps else ()) + self.scalar_state
        known = set(self.state_slots) | set(scalars)
        state: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in known:
                raise ValueError(f"state of {site} has unknown key {key!r} (expected {sorted(known)})")
            if key in scalars:
                state[key] = _scalar(value, f"state {key!r} of {site}")
            elif value is not None:
                bf16 = group.get("state_dtype") == BF16
                state[key] = _state_array(value, p, f"state {key!r} of {site}", bf16)
        if group.get("state_dtype") == BF16 and state.get("step", 0.0) + 1.0 >= _BF16_STEPS:
            raise ValueError(_bf16_step_error(f"state 'step' of {site}", state["step"]))
        required = scalars + self.required_state
        missing = [k for k in required if k not in state]
        if state and missing:
            raise ValueError(f"state of {site} lacks {', '.join(repr(k) for k in missing)}")
        return state


def _named_ids(group: Mapping[str, Any], where: str) -> tuple[list[Any], list[Any]]:
    """A group's ``param_names`` and ``params``, for matching by name."""
    params = group["params"]
    names = group.get("param_names")
    if names is None:
        if not params:
            return [], []
        raise ValueError(
            f"{where} has no 'param_names'; match='names' needs optimizers built from named "
            "parameters ({name: array} or (name, array) pairs); use match='order'"
        )
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != len(params):
        raise ValueError(f"{where}: 'param_names' must be a list with one name per parameter")
    for name in names:
        try:
            hash(name)
        except TypeError:
            raise ValueError(f"{where}: parameter name {name!r} is not hashable") from None
    return list(names), list(params)


def _name_list(names: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _hyperparameters(group: Mapping[str, Any]) -> dict[str, Any]:
    """A group's hyperparameters as plain values, without parameters, names and torch-only flags."""
    return {
        k: _plain_value(v)
        for k, v in group.items()
        if k not in ("params", "param_names") and k not in TORCH_ONLY_FLAGS
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    try:
        return bool(a == b)
    except ValueError:  # arrays among the values
        return False


def _plain_value(value: Any) -> Any:
    """Hyperparameters as Python numbers: 0-d arrays (a converted torch ``lr`` tensor)
    become floats, tuples stay tuples."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_value(v) for v in value)
    return copy.deepcopy(value)


def _scalar(value: Any, what: str) -> float:
    """``value`` (a number or a one-element numeric array) as a float; raises ``ValueError``
    naming ``what`` for anything else (bools and strings included) and for negative or
    non-finite numbers, ``TypeError`` for a masked array."""
    refuse_masked(value, what)
    try:
        array = np.asarray(value)
        if isinstance(value, (bool, np.bool_)) or array.dtype.kind not in "fiu":
            raise TypeError
        number = float(array.item())
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite non-negative number, got {number}")
    return number


#: Steps of bfloat16 state are below this: the step number keys the stochastic rounding as a u64.
_BF16_STEPS = 2.0**64


def _bf16_step_error(what: str, step: float) -> str:
    return (
        f"{what} is {step:.17g}: with bfloat16 state (state_dtype='bfloat16') the step count keys "
        "the stochastic rounding and must stay below 2**64"
    )


def _exported(value: np.ndarray) -> np.ndarray:
    """A copy of a state array for ``state_dict()``: bfloat16 bits as float32."""
    return _bfloat16.to_float32(value) if value.dtype == np.uint16 else value.copy(order="K")


def _state_array(value: Any, p: np.ndarray, what: str, bf16: bool = False) -> np.ndarray:
    """A copy of ``value`` with ``p``'s shape, dtype and memory layout; with ``bf16``, as
    bfloat16 bits (rounded to nearest) instead of ``p``'s dtype."""
    refuse_masked(value, what)
    try:
        array = np.asarray(value)
    except Exception:
        raise ValueError(f"{what} is not an array") from None
    if array.dtype.kind != "f":
        raise TypeError(f"{what} has dtype {array.dtype}, expected a real floating-point array")
    if array.shape != p.shape:
        raise ValueError(f"{what} has shape {array.shape}, expected {p.shape} (the parameter's shape)")
    if bf16:
        out = np.empty_like(p.view(np.ndarray), dtype=np.uint16)
        out[...] = _bfloat16.from_float32(array.astype(np.float32))
        return out
    out = np.empty_like(p.view(np.ndarray))
    out[...] = array
    return out
