"""AdaDelta."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import flag, in_unit_interval, non_negative
from .optimizer import Optimizer

_ADADELTA_TORCH: dict[str, Any] = dict(lr=1.0, rho=0.9, eps=1e-6)
#: What each convention sets (docs/conventions.md): optax ``adadelta``, Keras 3
#: ``Adadelta``, Zeiler 2012 (rho 0.95, eps 1e-6, no learning rate). Only defaults: the
#: update is the same in all four.
ADADELTA_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": _ADADELTA_TORCH,
    "optax": _ADADELTA_TORCH,
    "keras": dict(lr=1e-3, rho=0.95, eps=1e-7),
    "paper": {**_ADADELTA_TORCH, "rho": 0.95},
}


class Adadelta(Optimizer):
    r"""AdaDelta (Zeiler 2012, arXiv:1212.5701), as torch.optim.Adadelta.

    The lecture's RMS preconditioner with the step size estimated from past updates.
    With :math:`\gamma` = ``lr``, :math:`\rho` = ``rho``, :math:`\lambda` =
    ``weight_decay``, :math:`\epsilon` = ``eps``, :math:`v` = ``square_avg`` and
    :math:`u` = ``acc_delta``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize}, \qquad g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & v_t \leftarrow \rho v_{t-1} + (1 - \rho) g_t^2 \\
        & \Delta x_t \leftarrow \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}} \, g_t \\
        & u_t \leftarrow \rho u_{t-1} + (1 - \rho) \Delta x_t^2 \\
        & \theta_t \leftarrow \theta_{t-1} - \gamma \Delta x_t
        \end{aligned}

    Args:
        params: arrays or param groups to optimize.
        lr: scale of the update. Default 1.0 (keras: 1e-3; optax has no default; Zeiler's
            AdaDelta has no learning rate, which is 1.0).
        rho: decay rate of both running averages. Default 0.9 (keras, paper: 0.95).
        eps: added inside both square roots. Default 1e-6 (keras: 1e-7).
        weight_decay: L2 penalty. Default 0.
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.
        convention: ``"torch"`` (default), ``"optax"``, ``"keras"`` or ``"paper"``: that
            framework's defaults (the update is the same in all four); arguments passed
            explicitly win. Keras's ``weight_decay`` is decoupled, which Adadelta does not
            implement: with ``"keras"`` it must be 0. Not in torch.

    State per parameter: ``step``, ``square_avg``, ``acc_delta``.
    """

    state_slots = ("square_avg", "acc_delta")
    required_state = ("square_avg", "acc_delta")
    _kernel = staticmethod(_core.adadelta_step)
    required_hyperparameters = ("lr", "rho", "eps", "weight_decay")
    torch_setdefaults = {"maximize": False}

    conventions = ADADELTA_CONVENTIONS

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        rho: float = DEFAULT,
        eps: float = DEFAULT,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
    ) -> None:
        resolved = resolve(type(self), convention, dict(lr=lr, rho=rho, eps=eps), ())
        defaults: dict[str, Any] = dict(
            lr=resolved.pop("lr"),
            rho=resolved.pop("rho"),
            eps=resolved.pop("eps"),
            weight_decay=weight_decay,
            maximize=maximize,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        defaults.update(resolved)  # convention, when not torch's
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "weight_decay")
        in_unit_interval(group["rho"], "rho value", closed=True)
        flag(group, "maximize")

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        zeros = np.zeros_like(p.view(np.ndarray))
        return {"step": 0.0, "square_avg": zeros, "acc_delta": zeros.copy(order="K")}
