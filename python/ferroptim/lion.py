"""Lion."""

from __future__ import annotations

from typing import Any

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import beta_pair, flag, non_negative
from .optimizer import Optimizer

#: What each convention sets (docs/conventions.md): only defaults, as optax ``lion`` (decay
#: ``-lr wd theta`` added to the update) and Keras 3 ``Lion`` compute ferroptim's update.
LION_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": dict(lr=1e-4, weight_decay=0.0),
    "optax": dict(lr=1e-4, weight_decay=1e-3),
    "keras": dict(lr=1e-3, weight_decay=0.0),
    "paper": dict(lr=1e-4, weight_decay=0.0),
}


class Lion(Optimizer):
    r"""Lion, "EvoLved Sign Momentum" (Chen et al. 2023, "Symbolic Discovery of
    Optimization Algorithms", arXiv:2302.06675, Algorithm 2). Not in torch.optim.

    Every coordinate moves by ``lr`` in the direction of the sign of an interpolation
    between the momentum and the gradient; the momentum then decays more slowly. With
    :math:`\eta` = ``lr``, :math:`(\beta_1, \beta_2)` = ``betas``, :math:`\lambda` =
    ``weight_decay``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize} \\
        & c_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        & \theta_t \leftarrow \theta_{t-1}
          - \eta \bigl(\operatorname{sign}(c_t) + \lambda \theta_{t-1}\bigr) \\
        & m_t \leftarrow \beta_2 m_{t-1} + (1 - \beta_2) g_t
        \end{aligned}

    The weight decay is decoupled, applied first as ``theta <- theta (1 - lr wd)``.
    ``sign(0) = 0``, and a NaN stays NaN (as ``numpy.sign``). Lion's updates are larger
    than Adam's, so the paper uses a 3-10x smaller ``lr`` and a 3-10x larger
    ``weight_decay``.

    Args:
        params: arrays or param groups to optimize.
        lr: the size of every coordinate's step. Default 1e-4 (keras: 1e-3; optax has no
            default).
        betas: ``(beta1, beta2)``, the interpolation weight of the update and the decay
            rate of the momentum, each in [0, 1). Default (0.9, 0.99).
        weight_decay: decoupled weight decay. Default 0 (optax: 1e-3).
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.
        convention: ``"torch"`` (ferroptim's, as the paper), ``"optax"``, ``"keras"`` or
            ``"paper"``: that framework's defaults (the update is the same in all four);
            arguments passed explicitly win.

    State per parameter: ``exp_avg`` (the momentum ``m``).
    """

    state_slots = ("exp_avg",)
    required_state = ("exp_avg",)
    counts_steps = False
    _kernel = staticmethod(_core.lion_step)
    required_hyperparameters = ("lr", "betas", "weight_decay")
    torch_setdefaults = {"maximize": False}
    conventions = LION_CONVENTIONS

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = DEFAULT,
        *,
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
    ) -> None:
        resolved = resolve(type(self), convention, dict(lr=lr, weight_decay=weight_decay), ())
        defaults = dict(
            lr=resolved.pop("lr"), betas=betas, weight_decay=resolved.pop("weight_decay"), maximize=maximize
        )
        defaults.update(resolved)  # convention, when not torch's
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "weight_decay")
        beta_pair(group)
        flag(group, "maximize")
