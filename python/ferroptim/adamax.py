"""Adamax."""

from __future__ import annotations

from typing import Any

from . import _core
from ._validate import beta_pair, flag, non_negative
from .optimizer import Optimizer


class Adamax(Optimizer):
    r"""Adamax: Adam with the infinity norm (Kingma & Ba 2015, Algorithm 2), as
    torch.optim.Adamax.

    The second moment of :class:`Adam` replaced by an exponentially weighted infinity
    norm, which needs no bias correction; torch adds ``eps`` to ``|g|``::

        g <- -g if maximize;  g <- g + weight_decay * theta
        m <- beta1 m + (1 - beta1) g
        u <- max(beta2 u, |g| + eps)
        theta <- theta - lr / (1 - beta1^t) * m / u

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate (Algorithm 2's alpha). Default 2e-3.
        betas: ``(beta1, beta2)``, decay rates of the moment and the norm, each in [0, 1).
        eps: added to ``|g|``. Default 1e-8.
        weight_decay: L2 penalty. Default 0.
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: ``step``, ``exp_avg``, ``exp_inf``.
    """

    state_slots = ("exp_avg", "exp_inf")
    required_state = ("exp_avg", "exp_inf")
    _kernel = staticmethod(_core.adamax_step)

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "weight_decay")
        beta_pair(group)
        flag(group, "maximize")
