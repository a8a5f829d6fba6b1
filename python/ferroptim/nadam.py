"""NAdam and NAdamW."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validate import beta_pair, flag, non_negative
from .optimizer import Optimizer


class NAdam(Optimizer):
    r"""NAdam: Adam with Nesterov momentum (Dozat 2016), as torch.optim.NAdam.

    Adam (Kingma & Ba 2015) whose first moment looks one step ahead, with the momentum
    schedule ``mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay))`` and decoupled weight
    decay (NAdamW, Loshchilov & Hutter 2019) as an option, in torch's order::

        g <- -g if maximize
        theta <- theta (1 - lr wd)  if decoupled_weight_decay,  else  g <- g + wd theta
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        d <- sqrt(v / (1 - beta2^t)) + eps
        theta <- theta - lr (1 - mu_t) / (1 - prod_{i<=t} mu_i) * g / d
                       - lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i) * m / d

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate. Default 2e-3.
        betas: ``(beta1, beta2)``, decay rates of the moments, each in [0, 1).
        eps: added to the denominator. Default 1e-8.
        weight_decay: L2 penalty (or decoupled decay). Default 0.
        momentum_decay: ``psi`` of the momentum schedule. Default 4e-3.
        decoupled_weight_decay: decay the weights directly (NAdamW).
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: ``step``, ``mu_product`` (``prod_{i<=t} mu_i``, a float that,
    as torch's float32 tensor, is rounded to float32 at every step), ``exp_avg``,
    ``exp_avg_sq``.
    """

    state_slots = ("exp_avg", "exp_avg_sq")
    required_state = ("exp_avg", "exp_avg_sq")
    scalar_state = ("mu_product",)
    _kernel = staticmethod(_core.nadam_step)

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
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
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "weight_decay", "momentum_decay")
        beta_pair(group)
        flag(group, "decoupled_weight_decay", "maximize")

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        return {**super()._init_state(p, group), "mu_product": 1.0}

    def _tensor_args(
        self, states: list[dict[str, Any]], olds: list[dict[str, Any] | None], group: dict[str, Any]
    ) -> dict[str, Any]:
        args = super()._tensor_args(states, olds, group)
        try:  # the schedule is computed here, so check what was edited into the group since
            beta_pair(group)
            non_negative(group, "momentum_decay")
        except (TypeError, ValueError) as err:
            gi = next(i for i, g in enumerate(self.param_groups) if g is group)
            raise type(err)(f"param_groups[{gi}]: {err}") from None
        beta1, momentum_decay = group["betas"][0], group["momentum_decay"]
        for s in states:
            # mu_t as the kernel computes it (NadamHyper::mu in src/kernels/nadam.rs)
            mu = beta1 * (1.0 - 0.5 * 0.96 ** (s["step"] * momentum_decay))
            s["mu_product"] = float(np.float32(s["mu_product"]) * np.float32(mu))
        return {**args, "mu_product": [s["mu_product"] for s in states]}
