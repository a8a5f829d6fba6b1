"""SGD with Polyak or Nesterov momentum."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import BF16, flag, non_negative, state_storage
from .optimizer import Optimizer, _scalar

_SGD_TORCH: dict[str, Any] = dict(lr=1e-3, lr_in_momentum=False)
#: What each convention sets (docs/conventions.md): optax ``sgd`` (``trace`` before
#: ``scale_by_learning_rate``), Keras 3 ``SGD``, the heavy ball of Sutskever et al. 2013.
SGD_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": _SGD_TORCH,
    "optax": _SGD_TORCH,
    "keras": {"lr": 0.01, "lr_in_momentum": True},
    "paper": {**_SGD_TORCH, "lr_in_momentum": True},
}


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (torch.optim.SGD).

    The lecture's SGD, ``theta_{k+1} = theta_k - lr * g_k`` with ``g_k`` the (minibatch)
    gradient, and its momentum forms, computed as torch does, with :math:`\gamma` =
    ``lr``, :math:`\mu` = ``momentum``, :math:`\tau` = ``dampening``, :math:`\lambda` =
    ``weight_decay``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize}, \qquad g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & b_t \leftarrow g_t \ (t = 1), \qquad b_t \leftarrow \mu b_{t-1} + (1 - \tau) g_t \ (t > 1) \\
        & g_t \leftarrow g_t + \mu b_t \text{ if nesterov, else } g_t \leftarrow b_t \\
        & \theta_t \leftarrow \theta_{t-1} - \gamma g_t
        \end{aligned}

    With ``dampening=0``, ``SGD(momentum=beta)`` is Polyak's heavy ball (Polyak 1964)
    ``theta_{k+1} = theta_k + beta (theta_k - theta_{k-1}) - lr grad L(theta_k)``, and
    ``SGD(momentum=beta, nesterov=True)`` is Nesterov's accelerated gradient (Nesterov
    1983; Sutskever et al. 2013) whose parameters follow the lecture's look-ahead
    points ``theta_hat_k = theta_k + beta (theta_k - theta_{k-1})``.

    With ``lr_in_momentum`` (``convention="keras"`` or ``"paper"``) the buffer holds
    steps, the velocity ``v`` of Sutskever et al. and Keras (``v <- beta v - lr g``,
    ``theta <- theta + v``; ``momentum_buffer`` holds ``-v``):

    .. math::

        \begin{aligned}
        & b_t \leftarrow \gamma g_t \ (t = 1), \qquad
          b_t \leftarrow \mu b_{t-1} + (1 - \tau) \gamma g_t \ (t > 1) \\
        & \theta_t \leftarrow \theta_{t-1} - (\gamma g_t + \mu b_t) \text{ if nesterov, else }
          \theta_t \leftarrow \theta_{t-1} - b_t
        \end{aligned}

    It takes the same steps as torch's form while ``lr`` is constant; with a schedule,
    the old steps keep their old ``lr`` (the lecture's heavy ball) instead of being
    rescaled by the new one.

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate (the lecture's alpha). Default 1e-3 (keras: 0.01; optax has
            no default).
        momentum: momentum factor beta. Default 0.
        dampening: dampening of the gradient entering the buffer. Default 0.
        weight_decay: L2 penalty. Default 0.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
        maximize: maximize the objective instead of minimizing it.
        state_dtype: how the state arrays are stored: ``None`` (the parameter's dtype) or
            ``"bfloat16"`` (float32 parameters only), decoded to float32 for the update
            above and written back with stochastic rounding; see :class:`~ferroptim.Adam`.
        seed: seed of the stochastic rounding of bfloat16 state. Default 0.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.
        convention: ``"torch"`` (default), ``"optax"`` (as torch), ``"keras"`` or
            ``"paper"``: that framework's defaults and numerics; arguments passed
            explicitly win. Keras's ``weight_decay`` is decoupled, which SGD does not
            implement: with ``"keras"`` it must be 0. Not in torch.
        lr_in_momentum: the buffer accumulates ``lr * g`` (Keras, Sutskever et al.)
            instead of ``g`` (torch, optax's ``trace``). Default ``False`` (keras, paper:
            ``True``). Not in torch.

    State per parameter: ``momentum_buffer`` (when ``momentum != 0``), and with bfloat16
    state a ``step`` counter, which keys the rounding.
    """

    state_slots = ("momentum_buffer",)
    counts_steps = False
    _kernel = staticmethod(_core.sgd_step)
    required_hyperparameters = ("lr", "momentum", "dampening", "weight_decay")
    torch_setdefaults = {"nesterov": False, "maximize": False}

    conventions = SGD_CONVENTIONS
    convention_knobs = ("lr_in_momentum",)

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
        lr_in_momentum: bool | None = None,
    ) -> None:
        resolved = resolve(
            type(self), convention, dict(lr=lr, lr_in_momentum=lr_in_momentum), ("lr_in_momentum",)
        )
        defaults = dict(
            lr=resolved.pop("lr"),
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            state_dtype=state_dtype,
            seed=seed,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        defaults.update(resolved)  # convention and lr_in_momentum, when not torch's
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "momentum", "dampening", "weight_decay")
        flag(group, "nesterov", "maximize")
        state_storage(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _slots_in_use(self, group: dict[str, Any]) -> list[str | None]:
        # A missing momentum buffer (none yet, or reset to None as torch allows) is created
        # by the general step and filled with the gradient by the kernel, as torch does.
        return ["momentum_buffer" if group["momentum"] != 0 else None]

    def _fast_args(self, olds: list[dict[str, Any]], group: dict[str, Any]) -> dict[str, Any] | None:
        if group.get("state_dtype") is not None:
            return None
        return {"first": [False] * len(olds)}

    def _tensor_args(
        self, states: list[dict[str, Any]], olds: list[dict[str, Any] | None], group: dict[str, Any]
    ) -> dict[str, Any]:
        if group["state_dtype"] == BF16 and group["momentum"] != 0:
            for s in states:
                s["step"] = float(s.get("step", 0.0)) + 1.0
        return {"first": [not old or old.get("momentum_buffer") is None for old in olds]}

    def _load_param_state(
        self, p: np.ndarray, site: str, entry: Any, group: dict[str, Any]
    ) -> dict[str, Any]:
        # A bfloat16 state's step counter (not torch's), kept only while the state is bfloat16.
        if not isinstance(entry, dict) or "step" not in entry:
            return super()._load_param_state(p, site, entry, group)
        state = super()._load_param_state(p, site, {k: v for k, v in entry.items() if k != "step"}, group)
        if group["state_dtype"] == BF16 and state:
            state["step"] = _scalar(entry["step"], f"state 'step' of {site}")
        return state
