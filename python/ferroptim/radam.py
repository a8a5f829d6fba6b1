"""RAdam."""

from __future__ import annotations

from typing import Any

from . import _core
from ._validate import beta_pair, flag, non_negative
from .optimizer import Optimizer


class RAdam(Optimizer):
    r"""RAdam: rectified Adam (Liu et al. 2020, Algorithm 2), as torch.optim.RAdam.

    Adam whose adaptive learning rate is switched on only once the variance of its
    estimate is tractable (``rho_t > 5``) and then scaled by the rectification ``r_t``;
    before that the step is momentum SGD. In torch's order, with :math:`\gamma` =
    ``lr``, :math:`(\beta_1, \beta_2)` = ``betas``, :math:`\lambda` = ``weight_decay``,
    :math:`\epsilon` = ``eps``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize} \\
        & \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \text{ if }
          \mathtt{decoupled\_weight\_decay}, \text{ else } g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
          v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        & \rho_\infty = \frac{2}{1 - \beta_2} - 1, \qquad
          \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        & r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        & \theta_t \leftarrow \theta_{t-1} - \gamma \frac{m_t}{1 - \beta_1^t} \,
          \frac{r_t \sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} \text{ if } \rho_t > 5, \text{ else }
          \theta_t \leftarrow \theta_{t-1} - \gamma \frac{m_t}{1 - \beta_1^t}
        \end{aligned}

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
