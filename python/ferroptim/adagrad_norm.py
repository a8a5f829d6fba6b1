"""Scalar AdaGrad (AdaGrad-Norm)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _core
from ._validate import flag, non_negative
from .optimizer import Optimizer, _scalar

SCOPES = ("global", "group", "tensor")


class AdagradNorm(Optimizer):
    r"""Scalar AdaGrad, "AdaGrad-Norm" (Ward, Wu & Bottou 2018, arXiv:1806.01811).

    The lecture's scalar preconditioner ``B_k = b_k I``; the current gradient enters
    ``b`` before it is used::

        g <- -g if maximize;  g <- g + weight_decay * theta
        b_k^2 = b_{k-1}^2 + ||g_k||_2^2,    b_0 > 0
        theta_k = theta_{k-1} - lr / b_k * g_k

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

    State: ``b_sq`` (``b_k^2``, a float) for each scope, kept in the state of the
    scope's first parameter, as torch's LBFGS keeps its global state: the first
    parameter of the first global-scope group, the first parameter of each
    group-scope group, every parameter of a tensor-scope group. Before the first
    step ``b_sq`` is ``b0**2`` (``b0`` of the holder's group). ``opt.b(p)`` returns
    the current ``b`` that applies to ``p``.
    """

    _kernel = staticmethod(_core.adagrad_norm_step)
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
    ) -> None:
        defaults = dict(lr=lr, b0=b0, weight_decay=weight_decay, scope=scope, maximize=maximize)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "weight_decay", "b0")
        if not group["b0"] > 0 or not math.isfinite(group["b0"]):
            raise ValueError(f"Invalid b0 value: {group['b0']} (must be > 0 and finite)")
        if group["scope"] not in SCOPES:
            raise ValueError(f"Invalid scope {group['scope']!r}: expected one of {SCOPES}")
        flag(group, "maximize")

    def _holder(self, gi: int, i: int) -> Any:
        """The parameter whose state keeps the ``b_sq`` that applies to ``param_groups[gi]['params'][i]``."""
        group = self.param_groups[gi]
        if group["scope"] == "tensor":
            return group["params"][i]
        if group["scope"] == "group":
            return group["params"][0]
        first = next(g for g in self.param_groups if g["scope"] == "global" and g["params"])
        return first["params"][0]

    def _holder_group(self, holder: Any) -> dict[str, Any]:
        return next(g for g in self.param_groups if any(p is holder for p in g["params"]))

    def _b_sq(self, holder: Any) -> float:
        state = self.state.get(holder)
        if state and "b_sq" in state:
            return float(state["b_sq"])
        return float(self._holder_group(holder)["b0"]) ** 2

    def b(self, param: Any) -> float:
        """The current ``b_k`` that scales the step of ``param``."""
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p is param:
                    return math.sqrt(self._b_sq(self._holder(gi, i)))
        raise KeyError("parameter is not in this optimizer")

    def _step(self, grads: list[list[Any]]) -> None:
        holders: list[Any] = []
        slot_of: dict[int, int] = {}
        calls = []
        for gi, group, tensors in self._with_grads(grads):
            accumulator = []
            for i in tensors["index"]:
                holder = self._holder(gi, i)
                if id(holder) not in slot_of:
                    slot_of[id(holder)] = len(holders)
                    holders.append(holder)
                accumulator.append(slot_of[id(holder)])
            call = {k: group[k] for k in ("lr", "weight_decay", "maximize")}
            call.update(tensors, state=[[]] * len(accumulator), accumulator=accumulator)
            calls.append(call)
        if not calls:
            return
        b_sq = _core.adagrad_norm_step(calls, [self._b_sq(h) for h in holders])
        for holder, value in zip(holders, b_sq):
            self._commit(holder, {"b_sq": value})

    def _load_param_state(self, p: np.ndarray, site: str, entry: Any) -> dict[str, Any]:
        if not isinstance(entry, dict) or set(entry) - {"b_sq"}:
            raise ValueError(f"state of {site} must be {{'b_sq': float}}, got {entry!r}")
        if "b_sq" not in entry:
            return {}
        b_sq = _scalar(entry["b_sq"], f"state 'b_sq' of {site}")
        if b_sq <= 0:
            raise ValueError(f"state 'b_sq' of {site} must be > 0, got {b_sq}")
        return {"b_sq": b_sq}
