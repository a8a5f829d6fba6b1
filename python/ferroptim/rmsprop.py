"""RMSprop."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validate import flag, non_negative, state_storage
from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop (Hinton 2012; centered form from Graves 2013), as torch.optim.RMSprop.

    The lecture's ``B_k = gamma B_{k-1} + (1 - gamma) g_k^2`` (``alpha`` is gamma) and
    ``theta <- theta - eta (B + eps I)^{-1/2} g``. torch, and so the default here, puts
    ``eps`` outside the root; ``eps_in_sqrt=True`` is the lecture's form::

        g <- -g if maximize;  g <- g + weight_decay * theta
        square_avg <- alpha square_avg + (1 - alpha) g^2
        grad_avg   <- alpha grad_avg + (1 - alpha) g               (centered)
        v <- square_avg - grad_avg^2  (centered),  else  v <- square_avg
        d <- sqrt(v) + eps,  or  sqrt(v + eps) with eps_in_sqrt
        buf <- momentum buf + g / d;  theta <- theta - lr buf      (momentum > 0)
        theta <- theta - lr g / d                                   (otherwise)

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate (the lecture's eta). Default 1e-2.
        alpha: smoothing constant (the lecture's gamma). Default 0.99.
        eps: added to the denominator. Default 1e-8.
        weight_decay: L2 penalty. Default 0.
        momentum: momentum factor. Default 0.
        centered: normalize by the estimated variance of the gradient.
        maximize: maximize the objective instead of minimizing it.
        eps_in_sqrt: the lecture's ``(B + eps I)^{-1/2}`` instead of torch's
            ``(sqrt(B) + eps)^{-1}``. Not in torch.
        state_dtype: how the state arrays are stored: ``None`` (the parameter's dtype) or
            ``"bfloat16"`` (float32 parameters only), decoded to float32 for the update
            above and written back with stochastic rounding; see :class:`~ferroptim.Adam`.
        seed: seed of the stochastic rounding of bfloat16 state. Default 0.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).
    """

    state_slots = ("square_avg", "grad_avg", "momentum_buffer")
    required_state = ("square_avg",)
    _kernel = staticmethod(_core.rmsprop_step)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
        eps_in_sqrt: bool = False,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            maximize=maximize,
            eps_in_sqrt=eps_in_sqrt,
            state_dtype=state_dtype,
            seed=seed,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "momentum", "weight_decay", "alpha")
        flag(group, "centered", "maximize", "eps_in_sqrt")
        state_storage(group)

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        return {"step": 0.0, "square_avg": self._state_buffer(p, group)}

    def _slots_in_use(self, group: dict[str, Any]) -> list[str | None]:
        centered, momentum = group["centered"], group["momentum"] > 0
        return ["square_avg", "grad_avg" if centered else None, "momentum_buffer" if momentum else None]
