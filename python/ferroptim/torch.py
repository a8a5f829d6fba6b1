"""ferroptim's optimizers for torch models on CPU: ``torch.optim.Optimizer`` subclasses whose
update runs in ferroptim's Rust kernels, in place on the tensors' memory.

>>> import torch, ferroptim.torch as fot
>>> model = torch.nn.Linear(4, 1)
>>> opt = fot.Adam(model.parameters(), lr=1e-2)
>>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
>>> x, y = torch.randn(32, 4), torch.randn(32, 1)
>>> for _ in range(3):
...     opt.zero_grad()
...     torch.nn.functional.mse_loss(model(x), y).backward()
...     opt.step()
...     sched.step()

Each class (``SGD``, ``Adagrad``, ``RMSprop``, ``Adadelta``, ``Adam``, ``AdamW``, ``NAdam``,
``RAdam``, ``Adamax``, ``Lion``, ``AdagradNorm``) has the constructor of its
``ferroptim`` twin (the same arguments and defaults, ``convention=``, ``state_dtype=``,
``seed=``, ``grad_scale=``, ``max_grad_norm=``, ``skip_nonfinite=``) and behaves as the
``torch.optim`` class of the same name:

- it takes what ``torch.optim`` takes: an iterable of tensors, param-group dicts, or
  ``model.named_parameters()``; ``param_groups`` are torch's dicts of tensors, so
  ``torch.optim.lr_scheduler``, ``torch.amp.GradScaler`` and the step and state-dict hooks
  drive it;
- ``step(closure=None)`` updates every parameter whose ``.grad`` is not ``None`` in one call
  into Rust (the closure runs under ``torch.enable_grad()``); ``zero_grad()`` sets the
  gradients to ``None``;
- ``opt.state[p]`` holds tensors under torch's keys (``exp_avg``, ``momentum_buffer``,
  ...) that share memory with the arrays the kernel updates, and ``step`` as torch stores
  it (a 0-d float32 tensor); ``state_dict()`` has torch's format (with ferroptim's
  settings as extra group keys), and ``load_state_dict`` takes a dict saved by the
  ``torch.optim`` class of the same name, while that class takes ours; both survive
  ``torch.save`` / ``torch.load(weights_only=True)``.

How it works: the optimizer keeps a ferroptim twin (``ferroptim.Adam`` for ``Adam``) over
NumPy views of the tensors (``tensor.detach().numpy()`` shares the memory, for contiguous
and strided tensors alike). A step copies the groups' hyperparameters into the twin's
groups (so schedulers' edits take effect), hands it the gradients as NumPy views, and the
twin's one kernel call updates the tensors and the state in place (then the parameters'
version counters are bumped, as by torch's in-place update). The twin checks every array
before it writes any, so a refused step changes nothing.

Tensors: CPU float32 and float64, contiguous or not. CUDA, MPS and meta tensors, other
dtypes (float16, bfloat16: keep float32 master weights and use ``torch.autocast``; the
*state* can be bfloat16 with ``state_dtype="bfloat16"``), sparse tensors and sparse
gradients are refused with a ``TypeError`` saying what to do; a gradient of another
dtype or shape than its parameter's is refused at the step with nothing changed.
``requires_grad=False`` parameters are accepted, as by torch.optim (they never have a
gradient, so they are skipped).

Differences from torch.optim: no ``foreach``, ``fused``, ``capturable`` or
``differentiable`` arguments (there is one path, fused and parallel); state tensors are
updated in place, so edit them in place (``opt.state[p]["exp_avg"].zero_()``) or through
``load_state_dict``, not by assigning new tensors into ``opt.state[p]``; the ``step``
tensors are written from ferroptim's counters after each step. ``Lion`` and
``AdagradNorm`` have no torch.optim twin: their state is ferroptim's, as tensors
(AdagradNorm's ``b_sq`` a 0-d float64 tensor).

Needs PyTorch: the ``torch`` extra (``pip install '.[torch]'`` in a clone). ``import ferroptim``
never imports it.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

import ferroptim as _fo

from ._extras import install_hint

try:
    import torch
    from torch.autograd.graph import increment_version
except ImportError as _err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"ferroptim.torch needs PyTorch, which is not installed: install the torch extra, "
        f"{install_hint('torch')}, or pip install torch"
    ) from _err

from .optimizer import Optimizer as _NumpyOptimizer
from .optimizer import _site

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "AdagradNorm",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "NAdam",
    "RAdam",
    "RMSprop",
]

_DTYPES = (torch.float32, torch.float64)
#: Group keys that are torch's containers, not hyperparameters.
_NOT_HYPER = ("params", "param_names")


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives its ``step`` (and NAdam's ``mu_product``) tensors:
    float64 when that is torch's default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _check_tensor(t: Any, site: str) -> None:
    """Raises ``TypeError``/``ValueError`` saying what to do for a tensor ferroptim.torch
    cannot update in place."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"optimizer can only optimize Tensors, but {site} is {torch.typename(t)}")
    if not (t.is_leaf or t.retains_grad):
        raise ValueError(f"can't optimize a non-leaf Tensor ({site})")
    if t.device.type != "cpu":
        raise TypeError(
            f"{site} is on device {t.device}; ferroptim.torch updates CPU tensors in place: "
            f"move the model to the CPU (model.cpu()) or use torch.optim on {t.device.type}"
        )
    if t.layout != torch.strided:
        raise TypeError(f"{site} is a {t.layout} tensor; ferroptim.torch updates dense (strided) tensors")
    if t.dtype not in _DTYPES:
        raise TypeError(
            f"{site} has dtype {t.dtype}; ferroptim.torch updates float32 and float64 tensors: keep "
            "float32 parameters (model.float()) and compute in lower precision under torch.autocast; "
            "state_dtype='bfloat16' keeps the optimizer state in bfloat16"
        )


def _grad_array(g: Any, p: torch.Tensor, site: str) -> np.ndarray:
    """The NumPy view of a gradient that ``g.numpy()`` refused, or a ``TypeError`` saying why."""
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"the gradient of {site} is {torch.typename(g)}, not a tensor")
    if g.layout != torch.strided:
        raise TypeError(
            f"the gradient of {site} is sparse ({g.layout}); ferroptim.torch takes dense gradients "
            "(nn.Embedding(..., sparse=False)), or use torch.optim.SparseAdam"
        )
    if g.device.type != "cpu":
        raise TypeError(
            f"the gradient of {site} is on device {g.device}; ferroptim.torch takes CPU gradients"
        )
    if g.dtype != p.dtype:
        raise TypeError(f"the gradient of {site} has dtype {g.dtype}, but the parameter has {p.dtype}")
    return g.detach().numpy()  # a gradient that itself requires grad (create_graph=True)


def _to_numpy(value: Any) -> Any:
    """``value`` with every tensor replaced by a NumPy copy (bfloat16 and float16 as float32)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy().copy()
    if isinstance(value, Mapping):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """A hyperparameter for the twin: a tensor (torch allows ``lr=torch.tensor(...)``) as a number."""
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, tuple) and any(isinstance(v, torch.Tensor) for v in value):
        return tuple(_plain(v) for v in value)
    return value


_ARGS_DOC = """
    The arguments and defaults are those of :class:`ferroptim.{name}` (conventions,
    ``state_dtype``, ``seed``, ``grad_scale``, ``max_grad_norm``, ``skip_nonfinite``
    included); ``params`` is what ``torch.optim`` takes: tensors, param-group dicts or
    ``model.named_parameters()``. The update runs in ferroptim's kernel, in place on the
    tensors' memory; see :mod:`ferroptim.torch`.
"""


def _normalize_group(group: Any) -> None:
    """Makes a param group's ``params`` a list, as torch.optim's ``add_param_group`` reads it."""
    if not isinstance(group, dict):
        raise TypeError(f"param group must be a dict, got {type(group).__name__}")
    if "params" not in group:
        raise ValueError("param group must have a 'params' entry")
    params = group["params"]
    if isinstance(params, torch.Tensor):
        group["params"] = [params]
    elif isinstance(params, (set, frozenset)):
        raise TypeError(
            "optimizer parameters need to be organized in ordered collections, but the ordering "
            "of tensors in sets will change between runs. Please use a list instead."
        )
    elif isinstance(params, Iterable):
        group["params"] = list(params)
    else:
        raise TypeError(f"a param group's 'params' must be tensors, got {type(params).__name__}")


def _adopt(group: dict[str, Any], twin_group: dict[str, Any]) -> None:
    """Gives torch's ``group`` the twin's resolved hyperparameters (convention settings and
    defaults included), keeping tensor values, which torch's schedulers ``fill_``."""
    group.update(
        (k, v)
        for k, v in twin_group.items()
        if k not in _NOT_HYPER and not isinstance(group.get(k), torch.Tensor)
    )


class _Param:
    """One parameter: its tensor, the NumPy view the kernel updates, and what of the twin's
    state ``opt.state[tensor]`` wraps."""

    __slots__ = ("array", "ptr", "probe", "probe_key", "scalars", "size", "tensor", "twin_state", "wrapped")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.array: np.ndarray = tensor.detach().numpy()
        self.ptr = tensor.data_ptr()
        #: The twin's live state dict of the parameter, once it has one.
        self.twin_state: dict[str, Any] | None = None
        #: A state array ``opt.state[tensor]`` wraps, and its key: when the twin's state holds
        #: another there, the state was remade and is wrapped anew.
        self.probe_key: str | None = None
        self.probe: np.ndarray | None = None
        #: The twin's scalar state (``step``, ...) and the 0-d NumPy views of torch's tensors.
        self.scalars: tuple[tuple[str, np.ndarray], ...] = ()
        self.size = 0
        #: The dict ``opt.state[tensor]`` was made, and the tensors put in it, by key: a step
        #: that finds another dict there, or other tensors in it, takes the user's edit.
        self.wrapped: tuple[dict[str, Any], dict[str, Any]] | None = None


class _Adapter(torch.optim.Optimizer):
    """The shell every class of :mod:`ferroptim.torch` shares; see the module docstring."""

    #: The ferroptim class whose kernel the adapter runs.
    _twin_class: ClassVar[type[_NumpyOptimizer]]
    #: Whether a step may write scalar state of parameters without a gradient (AdagradNorm's
    #: ``b_sq`` is shared by its scope).
    _shared_scalars: ClassVar[bool] = False
    #: The dtype of scalar state tensors other than torch's ``step``/``mu_product``.
    _scalar_dtypes: ClassVar[dict[str, torch.dtype]] = {}

    _twin: _NumpyOptimizer | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_twin_class" in cls.__dict__:  # the twin's constructor, as inspect shows it
            cls.__signature__ = inspect.signature(cls._twin_class)  # type: ignore[attr-defined]
            cls.__doc__ = (cls.__doc__ or "") + _ARGS_DOC.format(name=cls._twin_class.__name__)

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._twin = None
        self._params: dict[int, _Param] = {}
        self._layout: list[tuple[list[Any], int, list[_Param]]] = []
        groups = self._torch_groups(params)
        twin_groups = [self._twin_group(group, gi) for gi, group in enumerate(groups)]
        # torch takes tensor hyperparameters (lr=torch.tensor(1e-3)); the twin, numbers
        twin = self._twin_class(twin_groups, *map(_plain, args), **{k: _plain(v) for k, v in kwargs.items()})
        given = inspect.signature(self._twin_class).bind(None, *args, **kwargs).arguments
        defaults = dict(twin.defaults)  # with the tensors given, which schedulers then fill_ as torch's
        defaults.update((k, v) for k, v in given.items() if k in defaults and isinstance(v, torch.Tensor))
        super().__init__(groups, defaults)
        self._twin = twin
        for tg, fg in zip(self.param_groups, twin.param_groups):
            _adopt(tg, fg)
        self._relink()
        self._wrap_all()

    # --- parameters ---------------------------------------------------------------------
    @staticmethod
    def _torch_groups(params: Any) -> list[dict[str, Any]]:
        """``params`` as torch.optim's constructor reads them: a list of group dicts whose
        ``params`` are lists (of tensors, or of ``(name, tensor)`` pairs)."""
        if isinstance(params, torch.Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got {torch.typename(params)}"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            _normalize_group(group)
        return groups

    def _param(self, t: Any, site: str) -> _Param:
        """The cached :class:`_Param` of tensor ``t``, made (after checking ``t``) if new."""
        _check_tensor(t, site)
        entry = self._params.get(id(t))
        if entry is None or entry.tensor is not t:
            entry = self._params[id(t)] = _Param(t)
        return entry

    def _twin_group(self, group: dict[str, Any], gi: int) -> dict[str, Any]:
        """The twin's group for torch's ``group``: its hyperparameters, the NumPy views."""
        arrays: list[Any] = []
        for i, item in enumerate(group["params"]):
            if isinstance(item, tuple) and len(item) == 2:
                name, t = item
                arrays.append((name, self._param(t, _site(gi, i)).array))
            else:
                arrays.append(self._param(item, _site(gi, i)).array)
        twin_group = {k: _plain(v) for k, v in group.items() if k not in _NOT_HYPER}
        twin_group["params"] = arrays
        return twin_group

    def _relink(self) -> None:
        """Caches, per group, torch's params list and the :class:`_Param` of each tensor;
        points the twin's groups at the current views."""
        twin = self._require_twin()
        layout = []
        for gi, (tg, fg) in enumerate(zip(self.param_groups, twin.param_groups)):
            entries = [self._param(t, _site(gi, i)) for i, t in enumerate(tg["params"])]
            views = [e.array for e in entries]
            if len(views) != len(fg["params"]) or any(a is not b for a, b in zip(views, fg["params"])):
                fg["params"] = views
            layout.append((tg["params"], len(entries), entries))
        self._layout = layout

    def _require_twin(self) -> _NumpyOptimizer:
        if self._twin is None:
            raise RuntimeError("the optimizer is not fully constructed")
        return self._twin

    @torch._disable_dynamo
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a param group, as torch.optim's ``add_param_group``; the ferroptim twin checks
        its hyperparameters first, and a refused group changes nothing."""
        if self._twin is None:  # inside torch's constructor: the twin has the groups already
            super().add_param_group(param_group)
            return
        twin = self._twin
        _normalize_group(param_group)
        known = set(self._params)
        gi = len(self.param_groups)
        try:
            twin.add_param_group(self._twin_group(param_group, gi))
            try:
                super().add_param_group(param_group)
            except BaseException:
                for a in twin.param_groups.pop()["params"]:
                    if a in twin.state:
                        del twin.state[a]
                raise
        except BaseException:
            for key in set(self._params) - known:
                del self._params[key]
            raise
        _adopt(param_group, twin.param_groups[-1])
        self._relink()
        self._wrap_all()

    # --- the step -----------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Updates every parameter whose ``.grad`` is not ``None``, in one call into Rust.

        Args:
            closure: re-evaluates the model and returns the loss; run first, under
                ``torch.enable_grad()``.

        Returns the closure's loss (``None`` without one). With ``skip_nonfinite``, whether
        the step was skipped is ``last_step_skipped``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        twin = self._require_twin()
        if len(self._layout) != len(self.param_groups) or any(
            tg["params"] is not cached
            or len(cached) != n
            or any(t is not e.tensor for t, e in zip(cached, entries))
            for tg, (cached, n, entries) in zip(self.param_groups, self._layout)
        ):
            self._relink()  # params lists edited in place of add_param_group
        grads: list[np.ndarray | None] = []
        stepped: list[_Param] = []
        for gi, (tg, fg, (_, _, entries)) in enumerate(
            zip(self.param_groups, twin.param_groups, self._layout)
        ):
            params = fg["params"]
            fg.update(tg)  # the hyperparameters, as schedulers and the user left them
            fg["params"] = params
            for k, v in tg.items():
                if isinstance(v, (torch.Tensor, tuple)) and k != "params":
                    fg[k] = _plain(v)
            with_grad = [e for e in entries if e.tensor.grad is not None]
            if any(e.tensor.data_ptr() != e.ptr for e in with_grad):
                for i, e in enumerate(entries):
                    if e.tensor.data_ptr() != e.ptr:
                        self._rebind(e, gi, i)
            try:
                arrays = [e.tensor.grad.numpy() for e in with_grad]  # type: ignore[union-attr]
            except (RuntimeError, TypeError):  # say which gradient, and why
                arrays = [
                    _grad_array(e.tensor.grad, e.tensor, _site(gi, entries.index(e))) for e in with_grad
                ]
            if len(with_grad) == len(entries):
                grads += arrays
            else:
                by_entry = dict(zip(map(id, with_grad), arrays))
                grads += [by_entry.get(id(e)) for e in entries]
            stepped += with_grad
        for e in stepped:
            if e.wrapped is not None:
                held, tensors = e.wrapped
                st = self.state.get(e.tensor)
                if (
                    st is not held
                    or len(st) != len(tensors)
                    or any(st.get(k) is not t for k, t in tensors.items())
                ):
                    self._take_edited_state(e, st)
        twin.step(grads=grads)
        if stepped and not twin.last_step_skipped:
            # the parameters changed in place, as after torch's own in-place update: autograd
            # then refuses a backward through a graph that saved their old values
            increment_version([e.tensor for e in stepped])
        if self._shared_scalars:
            stepped = [e for _, _, entries in self._layout for e in entries]
        for e in stepped:
            st = e.twin_state
            # the twin's live state, unless it was created or given another array since
            if st is None or len(st) != e.size or st.get(e.probe_key or "") is not e.probe:
                self._wrap(e)
            else:
                for key, view in e.scalars:
                    view[()] = st[key]
        return loss

    def _rebind(self, e: _Param, gi: int, i: int) -> None:
        """Follows a parameter whose ``.data`` was replaced: a new view, the twin's state moved to it."""
        twin = self._require_twin()
        _check_tensor(e.tensor, _site(gi, i))
        old, new = e.array, e.tensor.detach().numpy()
        st = twin.state.get(old)
        params = twin.param_groups[gi]["params"]
        params[next((j for j, a in enumerate(params) if a is old), i)] = new
        if st is not None:
            del twin.state[old]
            twin.state[new] = st
        e.array, e.ptr = new, e.tensor.data_ptr()

    # --- state --------------------------------------------------------------------------
    def _take_edited_state(self, e: _Param, st: dict[str, Any] | None) -> None:
        """Gives the kernel what the user made of ``opt.state[e.tensor]``: a state deleted or
        emptied starts afresh at this step, as in torch.optim; a tensor put in place of one
        the kernel updates is copied into the kernel's array (same shape), a scalar (``step``)
        into the twin's counter."""
        twin = self._require_twin()
        if not st:
            twin.state.pop(e.array, None)
            self._wrap(e)
            return
        own = twin.state.get(e.array) or {}
        _, tensors = e.wrapped or ({}, {})
        for key, value in st.items():
            if key not in own or value is tensors.get(key):
                continue
            kept = own[key]
            if isinstance(kept, np.ndarray):
                if not isinstance(value, torch.Tensor) or tuple(value.shape) != kept.shape:
                    raise ValueError(
                        f"opt.state[p][{key!r}] was replaced by a {type(value).__name__} that is not a "
                        f"tensor of shape {kept.shape}; edit the state tensor in place instead"
                    )
                src = value.detach().cpu()
                if kept.dtype == np.uint16:  # bfloat16 state, kept as its bits
                    kept[...] = src.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
                else:
                    kept[...] = src.to(torch.float64 if kept.dtype == np.float64 else torch.float32).numpy()
            elif kept is not None:
                own[key] = float(value)
        self._wrap(e)

    def _wrap(self, e: _Param) -> None:
        """Makes ``opt.state[e.tensor]`` the twin's state as tensors sharing its arrays' memory."""
        st = self._require_twin().state.get(e.array)
        e.twin_state = st
        if not st:
            e.probe_key, e.probe, e.scalars, e.size, e.wrapped = None, None, (), 0, None
            self.state.pop(e.tensor, None)
            return
        wrapped: dict[str, Any] = {}
        arrays, scalars = [], []
        for key, value in st.items():
            if isinstance(value, np.ndarray):
                t = torch.from_numpy(value)
                wrapped[key] = t.view(torch.bfloat16) if value.dtype == np.uint16 else t
                arrays.append((key, value))
            elif value is None:
                wrapped[key] = None
            else:
                t = torch.tensor(float(value), dtype=self._scalar_dtypes.get(key) or _scalar_dtype())
                wrapped[key] = t
                scalars.append((key, t.numpy()))
        e.probe_key, e.probe = arrays[0] if arrays else (None, None)
        e.scalars, e.size = tuple(scalars), len(st)
        state = self.state[e.tensor]
        state.clear()
        state.update(wrapped)
        e.wrapped = (state, wrapped)

    def _wrap_all(self) -> None:
        for _, _, entries in self._layout:
            for e in entries:
                self._wrap(e)

    @torch._disable_dynamo
    def load_state_dict(self, state_dict: Mapping[str, Any], match: str = "order") -> None:
        """Loads a ``state_dict()`` of this class or of the ``torch.optim`` class of the same
        name (tensors or NumPy arrays); continuing gives the trajectory the saved optimizer
        would have taken. Everything is checked before anything changes.

        Args:
            state_dict: the saved state.
            match: ``"order"`` (torch's way: group by group, position by position) or
                ``"names"`` (by the ``param_names`` that optimizers built from
                ``model.named_parameters()`` save), as :meth:`ferroptim.Optimizer.load_state_dict`.

        Load-state-dict pre hooks see a shallow copy of ``state_dict`` first and may return
        a replacement; post hooks run after the load.
        """
        twin = self._require_twin()
        state_dict = dict(state_dict)
        for pre_hook in list(self._optimizer_load_state_dict_pre_hooks.values()):
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state dict must be a dict with 'state' and 'param_groups'")
        twin.load_state_dict(
            {"state": _to_numpy(state_dict["state"]), "param_groups": _to_numpy(state_dict["param_groups"])},
            match=match,
        )
        for gi, (tg, fg) in enumerate(zip(self.param_groups, twin.param_groups)):
            params = tg["params"]
            tg.clear()
            tg.update((k, v) for k, v in fg.items() if k != "params")
            tg["params"] = params
            if match == "order":  # tensor hyperparameters stay tensors, as torch.optim loads them
                saved = state_dict["param_groups"][gi]
                tg.update((k, v.clone()) for k, v in saved.items() if k in tg and isinstance(v, torch.Tensor))
        self.state = defaultdict(dict)  # type: ignore[var-annotated]
        self._relink()
        self._wrap_all()
        for post_hook in list(self._optimizer_load_state_dict_post_hooks.values()):
            post_hook(self)

    # --- ferroptim's extras -------------------------------------------------------------
    @property
    def last_step_skipped(self) -> bool:
        """Whether the last ``step()`` was skipped for a non-finite gradient (``skip_nonfinite``)."""
        return self._require_twin().last_step_skipped

    @property
    def skipped_steps(self) -> int:
        """How many steps were skipped for a non-finite gradient (``skip_nonfinite``)."""
        return self._require_twin().skipped_steps

    def __getstate__(self) -> dict[str, Any]:
        """Refused: the state lives in the tensors' memory, which a pickle cannot share;
        save ``state_dict()`` instead."""
        raise TypeError(
            f"{type(self).__name__} cannot be pickled or copied (its state lives in the tensors' "
            "memory); save opt.state_dict() with torch.save and load it with load_state_dict"
        )


class SGD(_Adapter):
    r"""SGD with Polyak (heavy-ball) or Nesterov momentum, as ``torch.optim.SGD``::

        b <- momentum b + (1 - dampening) g;   theta <- theta - lr (g + momentum b if nesterov else b)

    State per parameter: ``momentum_buffer`` (with momentum), as torch's.
    """

    _twin_class = _fo.SGD


class Adagrad(_Adapter):
    r"""AdaGrad (Duchi et al. 2011), as ``torch.optim.Adagrad``::

        sum <- sum + g^2;   theta <- theta - lr / (1 + (t - 1) lr_decay) g / (sqrt(sum) + eps)

    State per parameter (created at construction, as torch's): ``step``, ``sum``.
    """

    _twin_class = _fo.Adagrad


class RMSprop(_Adapter):
    r"""RMSprop (Hinton), as ``torch.optim.RMSprop``::

        v <- alpha v + (1 - alpha) g^2;   theta <- theta - lr g / (sqrt(v) + eps)

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum),
    ``grad_avg`` (centered), as torch's.
    """

    _twin_class = _fo.RMSprop


class Adadelta(_Adapter):
    r"""AdaDelta (Zeiler 2012), as ``torch.optim.Adadelta``::

        v <- rho v + (1 - rho) g^2;   d = sqrt(u + eps) / sqrt(v + eps) g;
        u <- rho u + (1 - rho) d^2;   theta <- theta - lr d

    State per parameter: ``step``, ``square_avg``, ``acc_delta``, as torch's.
    """

    _twin_class = _fo.Adadelta


class Adam(_Adapter):
    r"""Adam (Kingma & Ba 2015, Algorithm 1), as ``torch.optim.Adam``::

        m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
        theta <- theta - lr m_hat / (sqrt(v_hat) + eps)

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``
    (amsgrad), as torch's; with ``state_dtype="bfloat16"`` the arrays are bfloat16 tensors.
    """

    _twin_class = _fo.Adam


class AdamW(_Adapter):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``::

        theta <- theta (1 - lr weight_decay), then the Adam update

    State per parameter: as :class:`Adam`.
    """

    _twin_class = _fo.AdamW


class NAdam(_Adapter):
    r"""NAdam (Dozat 2016), Adam with Nesterov momentum, as ``torch.optim.NAdam``::

        mu_t = beta1 (1 - 0.96^(t psi) / 2);
        theta <- theta - lr (mu_{t+1} m_hat + (1 - mu_t) g_hat) / (sqrt(v_hat) + eps)

    State per parameter: ``step``, ``mu_product`` (0-d float32 tensors), ``exp_avg``,
    ``exp_avg_sq``, as torch's.
    """

    _twin_class = _fo.NAdam


class RAdam(_Adapter):
    r"""RAdam (Liu et al. 2020, Algorithm 2), as ``torch.optim.RAdam``: Adam rectified by
    ``r_t`` once ``rho_t > 5``, SGD with momentum before.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``, as torch's.
    """

    _twin_class = _fo.RAdam


class Adamax(_Adapter):
    r"""Adamax (Kingma & Ba 2015, Algorithm 2), as ``torch.optim.Adamax``::

        u <- max(beta2 u, |g| + eps);   theta <- theta - lr / (1 - beta1^t) m / u

    State per parameter: ``step``, ``exp_avg``, ``exp_inf``, as torch's.
    """

    _twin_class = _fo.Adamax


class Lion(_Adapter):
    r"""Lion (Chen et al. 2023, Algorithm 2); not in torch.optim::

        c = beta1 m + (1 - beta1) g;   theta <- theta - lr (sign(c) + weight_decay theta);
        m <- beta2 m + (1 - beta2) g

    State per parameter: ``exp_avg``, as :class:`ferroptim.Lion`.
    """

    _twin_class = _fo.Lion


class AdagradNorm(_Adapter):
    r"""Scalar AdaGrad, AdaGrad-Norm (Ward, Wu & Bottou 2018); not in torch.optim::

        b_k^2 = b_{k-1}^2 + ||g_k||^2;   theta_k = theta_{k-1} - lr / b_k g_k

    State per parameter: ``b_sq``, the ``b^2`` of its scope (a 0-d float64 tensor), as
    :class:`ferroptim.AdagradNorm`; ``opt.b(p)`` is the ``b`` that applies to ``p``.
    """

    _twin_class = _fo.AdagradNorm
    _shared_scalars = True
    _scalar_dtypes: ClassVar[dict[str, torch.dtype]] = {"b_sq": torch.float64}

    def b(self, p: torch.Tensor) -> float:
        """The current ``b`` that applies to parameter ``p``."""
        entry = self._params.get(id(p))
        if entry is None or entry.tensor is not p:
            raise KeyError("the tensor is not a parameter of this optimizer")
        return float(self._require_twin().b(entry.array))  # type: ignore[attr-defined]
