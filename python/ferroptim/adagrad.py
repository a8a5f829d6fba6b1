"""AdaGrad."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validate import flag, non_negative, state_storage
from .optimizer import Optimizer


class Adagrad(Optimizer):
    r"""AdaGrad (Duchi, Hazan & Singer 2011), as torch.optim.Adagrad.

    The lecture's diagonal preconditioning
    ``theta_{k+1} = theta_k - eta (B_k + eps I)^{-1} g_k`` with
    ``B_k(i,i) = sqrt(sum_{j<=k} g_j(i)^2)``, plus torch's learning-rate decay::

        g <- -g if maximize;  g <- g + weight_decay * theta
        sum <- sum + g^2
        theta <- theta - lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate (the lecture's eta). Default 1e-2.
        lr_decay: learning-rate decay. Default 0.
        weight_decay: L2 penalty. Default 0.
        initial_accumulator_value: starting value of ``sum``. Default 0.
        eps: added to ``sqrt(sum)``. Default 1e-10.
        maximize: maximize the objective instead of minimizing it.
        state_dtype: how the state arrays are stored: ``None`` (the parameter's dtype) or
            ``"bfloat16"`` (float32 parameters only), decoded to float32 for the update
            above and written back with stochastic rounding; see :class:`~ferroptim.Adam`.
        seed: seed of the stochastic rounding of bfloat16 state. Default 0.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: ``step``, ``sum`` (created at construction, as torch).
    """

    state_slots = ("sum",)
    required_state = ("sum",)
    _kernel = staticmethod(_core.adagrad_step)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            maximize=maximize,
            state_dtype=state_dtype,
            seed=seed,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: Any) -> None:
        """Adds a group of parameters, as :meth:`Optimizer.add_param_group`, and creates
        their state (``sum = initial_accumulator_value``) as torch does."""
        with self._lock:  # no other thread sees the group without its state
            super().add_param_group(param_group)
            group = self.param_groups[-1]
            for p in group["params"]:
                self.state[p] = self._init_state(p, group)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
        flag(group, "maximize")
        state_storage(group)

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        # checked again: the group may have been edited since (None would fill NaN)
        non_negative(group, "initial_accumulator_value")
        return {"step": 0.0, "sum": self._state_buffer(p, group, group["initial_accumulator_value"])}
