"""The optimizer base class: ``param_groups``, ``state``, ``state_dict``, ``zero_grad``, ``step``.

Subclasses state their hyperparameters and how a fresh state looks; this class
gathers one step's arrays into one call into Rust (``ferroptim._core``), which
checks every array before it writes any, and commits new state only after that
call succeeded. So a bad input raises and leaves parameters and state as they were.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar

import numpy as np

from . import _bfloat16, _core
from ._validate import BF16
from .parameter import FLOAT_DTYPES, Parameter

#: Flags of torch.optim's param groups that only matter to torch; dropped on load.
TORCH_ONLY_FLAGS = ("foreach", "fused", "capturable", "differentiable")


def _reject_set(params: Any) -> None:
    if isinstance(params, (set, frozenset)):
        raise TypeError(
            "optimizer parameters need to be organized in ordered collections, "
            "but the ordering of a set changes between runs; use a list"
        )


def _site(group: int, index: int) -> str:
    return f"param_groups[{group}]['params'][{index}]"


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
    """

    #: State keys, in the order the Rust kernel takes them.
    state_slots: ClassVar[tuple[str, ...]] = ()
    #: State keys every non-empty state has (others are created when settings need them).
    required_state: ClassVar[tuple[str, ...]] = ()
    #: Whether the state keeps torch's per-parameter ``step`` counter.
    counts_steps: ClassVar[bool] = True
    #: Other per-parameter scalars every non-empty state has (NAdam's ``mu_product``).
    scalar_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        # Steps from several Python threads are serialized: the kernel runs without the
        # GIL, and the state commit must not interleave with another step's.
        self._lock = threading.Lock()
        self.defaults = dict(defaults)
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
        for name, default in self.defaults.items():
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

    def step(self, closure: Callable[[], Any] | None = None, *, grads: Sequence[Any] | None = None) -> Any:
        """Performs one optimization step on every parameter that has a gradient.

        Args:
            closure: called first; its return value (the loss) is returned.
            grads: gradients aligned with the parameters of all groups, in order
                (``None`` entries skip a parameter). Without it, each parameter's
                ``.grad`` is used.
        """
        loss = None if closure is None else closure()
        with self._lock:
            self._step(self._gradients(grads))
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The state in torch's layout, with arrays copied:
        ``{"state": {index: {key: value}}, "param_groups": [{..., "params": [indices]}]}``.
        State kept as bfloat16 (``state_dtype="bfloat16"``) is given as float32 arrays,
        which hold it exactly."""
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

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores a ``state_dict()``: continuing then gives bit-identical results.

        Also takes a ``torch.optim`` state dict whose tensors were turned into NumPy
        arrays (torch-only flags such as ``foreach`` are ignored). Everything is
        checked before anything changes. Into groups with ``state_dtype="bfloat16"``,
        state arrays are rounded to float32 and then to the nearest bfloat16 (ties to
        even): exact for the values a bfloat16 ``state_dict()`` holds.
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state dict must be a dict with 'state' and 'param_groups'")
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
            restored = dict(self.defaults)
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
        self.param_groups[:] = groups
        self.state = state

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            text += "".join(f"    {k}: {group[k]}\n" for k in sorted(group) if k != "params")
        return text + ")"

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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

    def _slot_arrays(self, state: dict[str, Any], p: np.ndarray, group: dict[str, Any]) -> list:
        """The state arrays ``group``'s settings use, in ``state_slots`` order
        (``None`` where unused); adds missing ones to ``state`` (a private copy)."""
        return [state.get(name) for name in self.state_slots]

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

    # --- plumbing -------------------------------------------------------------------
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
            raise TypeError(f"{site} must be a numpy.ndarray or ferroptim.Parameter, got {type(p).__name__}")
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
            pairs = enumerate(zip(group["params"], group_grads))
            with_grad = [(i, p, g) for i, (p, g) in pairs if g is not None]
            if with_grad:
                index, params, gs = (list(column) for column in zip(*with_grad))
                yield gi, group, {"group": gi, "index": index, "params": params, "grads": gs}

    def _step(self, grads: list[list[Any]]) -> None:
        calls: list[dict[str, Any]] = []
        pending: list[tuple[Any, dict[str, Any]]] = []
        for gi, group, tensors in self._with_grads(grads):
            olds = [self._current_state(gi, i, p) for i, p in zip(tensors["index"], tensors["params"])]
            # Private copies: the state is committed only once the kernel accepted every array.
            states = [
                dict(old) if old else self._init_state(p, group) for p, old in zip(tensors["params"], olds)
            ]
            call = {k: v for k, v in group.items() if k not in ("params", "param_names")}
            call.update(tensors)
            call["state"] = [self._slot_arrays(st, p, group) for st, p in zip(states, tensors["params"])]
            call.update(self._tensor_args(states, olds, group))
            if group.get("state_dtype") == BF16:
                call["rounding"] = self._rounding_keys(gi, tensors["index"], states)
            calls.append(call)
            pending.extend(zip(tensors["params"], states))
        if calls:
            type(self)._kernel(calls)
        for p, state in pending:
            self._commit(p, state)

    def _rounding_keys(
        self, gi: int, index: list[int], states: list[dict[str, Any]]
    ) -> list[tuple[int, int]]:
        """Per tensor of group ``gi`` with bfloat16 state: its step number and its
        parameter's position in the optimizer (over all groups), which with the group's
        ``seed`` key the stochastic rounding of its state (``src/kernels/state.rs``)."""
        first = sum(len(g["params"]) for g in self.param_groups[:gi])
        return [(int(s.get("step", 0)), first + i) for s, i in zip(states, index)]

    def _current_state(self, gi: int, i: int, p: Any) -> dict[str, Any] | None:
        """The state of a parameter about to step, with the arrays its settings need."""
        state = self.state.get(p)
        if state:
            needed = self.required_state + self.scalar_state
            missing = [name for name in needed if state.get(name) is None]
            if missing:
                raise ValueError(f"state {missing[0]!r} of {_site(gi, i)} is missing")
        return state

    def _commit(self, p: Any, state: dict[str, Any]) -> None:
        """Makes ``state`` the state of ``p``, in place, so a dict held from ``opt.state[p]``
        stays live as in torch."""
        if state:
            current = self.state[p]
            current.clear()
            current.update(state)

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
        required = scalars + self.required_state
        missing = [k for k in required if k not in state]
        if state and missing:
            raise ValueError(f"state of {site} lacks {', '.join(repr(k) for k in missing)}")
        return state


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
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(np.asarray(value).item()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite non-negative number, got {number}")
    return number


def _exported(value: np.ndarray) -> np.ndarray:
    """A copy of a state array for ``state_dict()``: bfloat16 bits as float32."""
    return _bfloat16.to_float32(value) if value.dtype == np.uint16 else value.copy(order="K")


def _state_array(value: Any, p: np.ndarray, what: str, bf16: bool = False) -> np.ndarray:
    """A copy of ``value`` with ``p``'s shape, dtype and memory layout; with ``bf16``, as
    bfloat16 bits (rounded to nearest) instead of ``p``'s dtype."""
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
