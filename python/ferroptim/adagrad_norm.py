"""Scalar AdaGrad (AdaGrad-Norm)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from ._validate import flag, non_negative
from .optimizer import Optimizer, _scalar, _site

if TYPE_CHECKING:
    from ._core import _Commit

SCOPES = ("global", "group", "tensor")


class AdagradNorm(Optimizer):
    r"""Scalar AdaGrad, "AdaGrad-Norm" (Ward, Wu & Bottou 2018, arXiv:1806.01811).

    The lecture's scalar preconditioner ``B_k = b_k I``; the current gradient enters
    ``b`` before it is used. With :math:`\eta` = ``lr``, :math:`b_0` = ``b0``,
    :math:`\lambda` = ``weight_decay``:

    .. math::

        \begin{aligned}
        & g_k \leftarrow -g_k \text{ if maximize}, \qquad g_k \leftarrow g_k + \lambda \theta_{k-1} \\
        & b_k^2 = b_{k-1}^2 + \lVert g_k \rVert_2^2, \qquad b_0 > 0 \\
        & \theta_k = \theta_{k-1} - \frac{\eta}{b_k} \, g_k
        \end{aligned}

    With ``lr=1`` this is exactly the lecture's algorithm; SGD with the fixed step
    ``1/b0`` is what it is robust against. ``||g_k||^2`` is accumulated in float64
    for float32 parameters too, and reduced in a fixed order, so ``b`` has the same
    bits for every thread count. That order is each parameter's memory order: the same
    values held in an array of another layout (F order, say) can change ``b`` in its
    last bit.

    Args:
        params: arrays or param groups to optimize.
        lr: the numerator eta (1 in the lecture). Default 1.0.
        b0: initial ``b``; must be > 0. Default 0.01.
        weight_decay: L2 penalty. Default 0.
        scope: which gradients one ``b`` covers: ``"global"`` (all parameters of every
            group with global scope, as in the paper's theorem), ``"group"`` (one ``b``
            per param group) or ``"tensor"`` (one per parameter array).
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State: ``{"b_sq": b_k^2}`` (a float) for every parameter, holding the accumulator
    of the scope the parameter belongs to; a step writes the new value to every
    parameter of each scope that had a gradient, so ``opt.state[p]["b_sq"]`` is the
    ``b^2`` that applies to ``p``. Before its first step a scope starts from ``b0**2``
    (the largest ``b0`` among its groups). If the scopes are regrouped mid-run (a
    group's ``scope`` edited, a parameter appended), a scope continues from the
    largest ``b_sq`` its parameters hold, the conservative choice since ``b`` only
    grows. ``opt.b(p)`` returns the current ``b`` that applies to ``p``.
    """

    _kernel = staticmethod(_core.adagrad_norm_step)
    required_hyperparameters = ("lr", "b0", "weight_decay", "scope")
    torch_setdefaults = {"maximize": False}
    counts_steps = False

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        b0: float = 0.01,
        weight_decay: float = 0,
        *,
        scope: str = "global",
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(lr=lr, b0=b0, weight_decay=weight_decay, scope=scope, maximize=maximize)
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "weight_decay", "b0")
        if not group["b0"] > 0 or not math.isfinite(group["b0"]):
            raise ValueError(f"Invalid b0 value: {group['b0']} (must be > 0 and finite)")
        if group["scope"] not in SCOPES:
            raise ValueError(f"Invalid scope {group['scope']!r}: expected one of {SCOPES}")
        flag(group, "maximize")

    def _scope_key(self, gi: int, i: int) -> tuple[Any, ...]:
        """Which accumulator ``param_groups[gi]['params'][i]`` adds to."""
        scope = self.param_groups[gi]["scope"]
        if scope == "global":
            return ("global",)
        if scope == "group":
            return ("group", gi)
        if scope == "tensor":
            return ("tensor", gi, i)
        raise ValueError(f"param_groups[{gi}]: invalid scope {scope!r}, expected one of {SCOPES}")

    def _scopes(self) -> dict[tuple[Any, ...], list[tuple[int, int, Any]]]:
        """Every scope with its members as ``(group index, index in group, parameter)``, in order."""
        scopes: dict[tuple[Any, ...], list[tuple[int, int, Any]]] = {}
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                scopes.setdefault(self._scope_key(gi, i), []).append((gi, i, p))
        return scopes

    def _b_sq(self, members: list[tuple[int, int, Any]]) -> float:
        """A scope's current ``b^2``: the largest its parameters hold, else its ``b0**2``.
        A held value that is not a positive finite number raises ``ValueError`` naming its
        parameter (``opt.state`` is the user's to edit)."""
        held = []
        for gi, i, p in members:
            if (s := self.state.get(p)) and "b_sq" in s:
                b_sq = _scalar(s["b_sq"], f"state 'b_sq' of {_site(gi, i)}")
                if b_sq <= 0:
                    raise ValueError(f"state 'b_sq' of {_site(gi, i)} must be > 0, got {b_sq}")
                held.append(b_sq)
        if held:
            return max(held)
        return max(self._b0(gi) ** 2 for gi, _, _ in members)

    def _b0(self, gi: int) -> float:
        """Group ``gi``'s ``b0``, checked again: groups can be edited after construction."""
        b0 = _scalar(self.param_groups[gi]["b0"], f"param_groups[{gi}]: b0")
        if not b0 > 0:
            raise ValueError(f"param_groups[{gi}]: Invalid b0 value: {b0} (must be > 0 and finite)")
        return b0

    def b(self, param: Any) -> float:
        """The current ``b_k`` that scales the step of ``param``."""
        for members in self._scopes().values():
            if any(p is param for _, _, p in members):
                return math.sqrt(self._b_sq(members))
        raise KeyError("parameter is not in this optimizer")

    def _step(self, grads: list[list[Any]]) -> None:
        """One step; atomic as :meth:`Optimizer._step`: the kernel's call also writes
        the new ``b_sq`` into the state of every parameter of each scope that had a
        gradient (``holders``; a parameter without state gets a new dict, through
        ``commit``)."""
        scopes = self._scopes()
        slot_of = {key: n for n, key in enumerate(scopes)}
        used: set[tuple[Any, ...]] = set()
        calls = []
        for gi, group, tensors in self._with_grads(grads):
            keys = [self._scope_key(gi, i) for i in tensors["index"]]
            used.update(keys)
            call = {k: group[k] for k in ("lr", "weight_decay", "maximize")}
            call["grad_scale"] = group.get("grad_scale")
            call.update(tensors, state=[{}] * len(keys), slots=[], accumulator=[slot_of[k] for k in keys])
            calls.append(call)
        commit: _Commit = {}
        if not self._unscale_and_clip(calls, commit):
            return
        if not calls:
            _core.commit(commit)
            return
        b_sq = [self._b_sq(members) for members in scopes.values()]
        items = self.state._items
        holders: list[list[dict[str, Any]]] = []
        for key, members in scopes.items():
            held = []
            for _, _, p in members if key in used else ():
                entry = items.get(id(p))
                if entry is not None and entry[0] is p:
                    held.append(entry[1])
                else:
                    held.append({})
                    commit.setdefault("set", []).append((items, id(p), (p, held[-1])))
            holders.append(held)
        _core.adagrad_norm_step(calls, b_sq, holders, commit)

    def _load_param_state(
        self, p: np.ndarray, site: str, entry: Any, group: dict[str, Any]
    ) -> dict[str, Any]:
        if not isinstance(entry, dict) or set(entry) - {"b_sq"}:
            raise ValueError(f"state of {site} must be {{'b_sq': float}}, got {entry!r}")
        if "b_sq" not in entry:
            return {}
        b_sq = _scalar(entry["b_sq"], f"state 'b_sq' of {site}")
        if b_sq <= 0:
            raise ValueError(f"state 'b_sq' of {site} must be > 0, got {b_sq}")
        return {"b_sq": b_sq}
