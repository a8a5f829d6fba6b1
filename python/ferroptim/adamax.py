"""Adamax."""

from __future__ import annotations

from typing import Any

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import beta_pair, flag, non_negative
from .optimizer import Optimizer

_ADAMAX_TORCH: dict[str, Any] = dict(lr=2e-3, eps=1e-8, eps_in_max=True)
#: What each convention sets (docs/conventions.md): optax ``adamax`` (``scale_by_adamax``),
#: Keras 3 ``Adamax``, Kingma & Ba's Algorithm 2 (which has no eps; it is added to u).
ADAMAX_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": _ADAMAX_TORCH,
    "optax": _ADAMAX_TORCH,
    "keras": dict(lr=1e-3, eps=1e-7, eps_in_max=False),
    "paper": {**_ADAMAX_TORCH, "eps_in_max": False},
}


class Adamax(Optimizer):
    r"""Adamax: Adam with the infinity norm (Kingma & Ba 2015, Algorithm 2), as
    torch.optim.Adamax.

    The second moment of :class:`Adam` replaced by an exponentially weighted infinity
    norm, which needs no bias correction; torch adds ``eps`` to ``|g|``. With
    :math:`\gamma` = ``lr``, :math:`(\beta_1, \beta_2)` = ``betas``, :math:`\lambda` =
    ``weight_decay``, :math:`\epsilon` = ``eps``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize}, \qquad g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        & u_t \leftarrow \max(\beta_2 u_{t-1}, \lvert g_t \rvert + \epsilon) \\
        & \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \, \frac{m_t}{u_t}
        \end{aligned}

    Keras's ``Adamax``, and Algorithm 2 (which has no ``eps``; ``eps=0`` is it exactly),
    add ``eps`` outside the maximum (``eps_in_max=False``):

    .. math::

        u_t \leftarrow \max(\beta_2 u_{t-1}, \lvert g_t \rvert), \qquad
        \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \, \frac{m_t}{u_t + \epsilon}

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate (Algorithm 2's alpha). Default 2e-3 (keras: 1e-3; optax has no
            default).
        betas: ``(beta1, beta2)``, decay rates of the moment and the norm, each in [0, 1).
        eps: added to ``|g|``. Default 1e-8 (keras: 1e-7).
        weight_decay: L2 penalty. Default 0.
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.
        convention: ``"torch"`` (default), ``"optax"`` (as torch), ``"keras"`` or
            ``"paper"``: that framework's defaults and numerics; arguments passed
            explicitly win. Keras's ``weight_decay`` is decoupled, which Adamax does not
            implement: with ``"keras"`` it must be 0. Not in torch.
        eps_in_max: ``u <- max(beta2 u, |g| + eps)`` (torch, optax) instead of dividing by
            ``u + eps``. Default ``True`` (keras, paper: ``False``). Not in torch.

    State per parameter: ``step``, ``exp_avg``, ``exp_inf``.
    """

    state_slots = ("exp_avg", "exp_inf")
    required_state = ("exp_avg", "exp_inf")
    _kernel = staticmethod(_core.adamax_step)
    required_hyperparameters = ("lr", "betas", "eps", "weight_decay")
    torch_setdefaults = {"maximize": False}

    conventions = ADAMAX_CONVENTIONS
    convention_knobs = ("eps_in_max",)

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = DEFAULT,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
        eps_in_max: bool | None = None,
    ) -> None:
        resolved = resolve(
            type(self), convention, dict(lr=lr, eps=eps, eps_in_max=eps_in_max), ("eps_in_max",)
        )
        defaults = dict(
            lr=resolved.pop("lr"),
            betas=betas,
            eps=resolved.pop("eps"),
            weight_decay=weight_decay,
            maximize=maximize,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        defaults.update(resolved)  # convention and eps_in_max, when not torch's
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "weight_decay")
        beta_pair(group)
        flag(group, "maximize")
