"""RAdam."""

from __future__ import annotations

from typing import Any

from . import _core
from ._validate import beta_pair, flag, non_negative
from .optimizer import Optimizer


class RAdam(Optimizer):
    r"""RAdam: rectified Adam (Liu et al. 2020, Algorithm 2), as torch.optim.RAdam.

    Adam whose adaptive learning rate is switched on only once the variance of its
    estimate is tractable (``rho_t > 5``) and then scaled by the rectification
    ``r_t``; before that the step is momentum SGD. In torch's order::

        g <- -g if maximize
        theta <- theta (1 - lr wd)  if decoupled_weight_decay,  else  g <- g + wd theta
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        rho_inf = 2 / (1 - beta2) - 1,  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        theta <- theta - lr m / (1 - beta1^t) * r_t sqrt(1 - beta2^t) / (sqrt(v) + eps)
                                                      if rho_t > 5
        theta <- theta - lr m / (1 - beta1^t)         otherwise

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate. Default 1e-3.
        betas: ``(beta1, beta2)``, decay rates of the moments, each in [0, 1).
        eps: added to the denominator. Default 1e-8.
        weight_decay: L2 penalty (or decoupled decay). Default 0.
        decoupled_weight_decay: decay the weights directly, as AdamW.
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    state_slots = ("exp_avg", "exp_avg_sq")
    required_state = ("exp_avg", "exp_avg_sq")
    _kernel = staticmethod(_core.radam_step)
    required_hyperparameters = ("lr", "betas", "eps", "weight_decay")
    torch_setdefaults = {"maximize": False, "decoupled_weight_decay": False}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "weight_decay")
        beta_pair(group)
        flag(group, "decoupled_weight_decay", "maximize")
