"""AdaDelta."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validate import flag, in_unit_interval, non_negative
from .optimizer import Optimizer


class Adadelta(Optimizer):
    r"""AdaDelta (Zeiler 2012, arXiv:1212.5701), as torch.optim.Adadelta.

    The lecture's RMS preconditioner with the step size estimated from past updates::

        g <- -g if maximize;  g <- g + weight_decay * theta
        square_avg <- rho square_avg + (1 - rho) g^2
        delta <- sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
        acc_delta <- rho acc_delta + (1 - rho) delta^2
        theta <- theta - lr delta

    Args:
        params: arrays or param groups to optimize.
        lr: scale of the update. Default 1.0.
        rho: decay rate of both running averages. Default 0.9.
        eps: added inside both square roots. Default 1e-6.
        weight_decay: L2 penalty. Default 0.
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: ``step``, ``square_avg``, ``acc_delta``.
    """

    state_slots = ("square_avg", "acc_delta")
    required_state = ("square_avg", "acc_delta")
    _kernel = staticmethod(_core.adadelta_step)

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults: dict[str, Any] = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "weight_decay")
        in_unit_interval(group["rho"], "rho value", closed=True)
        flag(group, "maximize")

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        zeros = np.zeros_like(p.view(np.ndarray))
        return {"step": 0.0, "square_avg": zeros, "acc_delta": zeros.copy(order="K")}
