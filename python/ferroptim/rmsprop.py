"""RMSprop."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import flag, non_negative, state_storage
from .optimizer import Optimizer

_RMSPROP_TORCH: dict[str, Any] = dict(
    lr=1e-2, alpha=0.99, eps=1e-8, eps_in_sqrt=False, lr_in_momentum=False, initial_accumulator_value=0.0
)
#: What each convention sets (docs/conventions.md): optax ``rmsprop`` (``scale_by_rms``,
#: then ``scale_by_learning_rate``, then ``trace``), Keras 3 ``RMSprop``, Hinton's lecture
#: 6e (decay 0.9) with the lecture's ``(B + eps I)^{-1/2}``.
RMSPROP_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": _RMSPROP_TORCH,
    "optax": {**_RMSPROP_TORCH, "alpha": 0.9, "eps_in_sqrt": True, "lr_in_momentum": True},
    "keras": {
        **_RMSPROP_TORCH,
        "lr": 1e-3,
        "alpha": 0.9,
        "eps": 1e-7,
        "eps_in_sqrt": True,
        "lr_in_momentum": True,
    },
    "paper": {**_RMSPROP_TORCH, "alpha": 0.9, "eps_in_sqrt": True},
}


class RMSprop(Optimizer):
    r"""RMSprop (Hinton 2012; centered form from Graves 2013), as torch.optim.RMSprop.

    The lecture's ``B_k = gamma B_{k-1} + (1 - gamma) g_k^2`` (``alpha`` is gamma) and
    ``theta <- theta - eta (B + eps I)^{-1/2} g``. torch, and so the default here, puts
    ``eps`` outside the root; ``eps_in_sqrt=True`` is the lecture's form. With :math:`\gamma` = ``lr``,
    :math:`\alpha` = ``alpha``, :math:`\mu` = ``momentum``, :math:`\lambda` =
    ``weight_decay``, :math:`\epsilon` = ``eps``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize}, \qquad g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & v_t \leftarrow \alpha v_{t-1} + (1 - \alpha) g_t^2 \qquad (\mathtt{square\_avg}) \\
        & \tilde v_t \leftarrow v_t - \bar g_t^2, \quad
          \bar g_t \leftarrow \alpha \bar g_{t-1} + (1 - \alpha) g_t \ (\mathtt{grad\_avg})
          \text{ if centered, else } \tilde v_t \leftarrow v_t \\
        & d_t \leftarrow \sqrt{\tilde v_t} + \epsilon, \text{ or } \sqrt{\tilde v_t + \epsilon}
          \text{ with } \mathtt{eps\_in\_sqrt} \\
        & b_t \leftarrow \mu b_{t-1} + g_t / d_t, \quad \theta_t \leftarrow \theta_{t-1} - \gamma b_t
          \text{ if } \mu > 0, \text{ else } \theta_t \leftarrow \theta_{t-1} - \gamma g_t / d_t
        \end{aligned}

    With ``lr_in_momentum`` (optax, whose ``trace`` follows ``scale_by_learning_rate``,
    and Keras) the buffer accumulates ``lr g / d`` and ``theta <- theta - buf``: the same
    steps while ``lr`` is constant.

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate (the lecture's eta). Default 1e-2 (keras: 1e-3; optax has no
            default).
        alpha: smoothing constant (the lecture's gamma; optax's ``decay``, Keras's
            ``rho``). Default 0.99 (optax, keras, paper: 0.9).
        eps: added to the denominator. Default 1e-8 (keras: 1e-7).
        weight_decay: L2 penalty. Default 0.
        momentum: momentum factor. Default 0.
        centered: normalize by the estimated variance of the gradient.
        maximize: maximize the objective instead of minimizing it.
        eps_in_sqrt: the lecture's ``(B + eps I)^{-1/2}`` instead of torch's
            ``(sqrt(B) + eps)^{-1}``. Default ``False`` (optax, keras, paper: ``True``).
            Not in torch.
        convention: ``"torch"`` (default), ``"optax"``, ``"keras"`` or ``"paper"``: that
            framework's defaults and numerics; arguments passed explicitly win. Keras's
            ``weight_decay`` is decoupled, which RMSprop does not implement: with
            ``"keras"`` it must be 0. Not in torch.
        lr_in_momentum: the momentum buffer accumulates ``lr g / d`` (optax, Keras)
            instead of ``g / d``. Default ``False`` (optax, keras: ``True``). Not in torch.
        initial_accumulator_value: the value ``square_avg`` starts at (optax's
            ``initial_scale``). Default 0. Not in torch.
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
    required_hyperparameters = ("lr", "alpha", "eps", "weight_decay")
    torch_setdefaults = {"momentum": 0, "centered": False, "maximize": False}
    conventions = RMSPROP_CONVENTIONS
    convention_knobs = ("eps_in_sqrt", "lr_in_momentum")

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        alpha: float = DEFAULT,
        eps: float = DEFAULT,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
        eps_in_sqrt: bool | None = None,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
        lr_in_momentum: bool | None = None,
        initial_accumulator_value: float | None = None,
    ) -> None:
        given = dict(lr=lr, alpha=alpha, eps=eps, eps_in_sqrt=eps_in_sqrt, lr_in_momentum=lr_in_momentum)
        given.update(initial_accumulator_value=initial_accumulator_value)
        # eps_in_sqrt is always in the groups (it predates the conventions)
        resolved = resolve(type(self), convention, given, ("lr_in_momentum", "initial_accumulator_value"))
        defaults = dict(
            lr=resolved.pop("lr"),
            momentum=momentum,
            alpha=resolved.pop("alpha"),
            eps=resolved.pop("eps"),
            centered=centered,
            weight_decay=weight_decay,
            maximize=maximize,
            eps_in_sqrt=resolved.pop("eps_in_sqrt"),
            state_dtype=state_dtype,
            seed=seed,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        defaults.update(resolved)  # convention and its settings, when not torch's
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "momentum", "weight_decay", "alpha")
        flag(group, "centered", "maximize", "eps_in_sqrt")
        if "initial_accumulator_value" in group:
            non_negative(group, "initial_accumulator_value")
        state_storage(group)

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        fill = group.get("initial_accumulator_value", 0.0)
        if fill != 0.0:  # checked again: the group may have been edited since
            non_negative(group, "initial_accumulator_value")
        return {"step": 0.0, "square_avg": self._state_buffer(p, group, fill)}

    def _slots_in_use(self, group: dict[str, Any]) -> list[str | None]:
        centered, momentum = group["centered"], group["momentum"] > 0
        return ["square_avg", "grad_avg" if centered else None, "momentum_buffer" if momentum else None]
