"""NAdam and NAdamW."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import beta_pair, flag, non_negative
from .optimizer import Optimizer

_NADAM_TORCH: dict[str, Any] = dict(
    lr=2e-3, eps=1e-8, momentum_decay=4e-3, decoupled_weight_decay=False, mu_product_float32=True
)
#: What each convention sets (docs/conventions.md): optax ``nadam`` (``scale_by_adam`` with
#: ``nesterov=True``: ``mu_t = beta1``, no schedule, which is ``psi = inf``), Keras 3
#: ``Nadam`` (``u_t = beta_1 (1 - 0.5 * 0.96^t)``: ``psi = 1``), Dozat 2016 (``psi = 1/250``).
NADAM_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": _NADAM_TORCH,
    "optax": {**_NADAM_TORCH, "momentum_decay": float("inf"), "mu_product_float32": False},
    "keras": {
        "lr": 1e-3,
        "eps": 1e-7,
        "momentum_decay": 1.0,
        "decoupled_weight_decay": True,
        "mu_product_float32": False,
    },
    "paper": {**_NADAM_TORCH, "mu_product_float32": False},
}


class NAdam(Optimizer):
    r"""NAdam: Adam with Nesterov momentum (Dozat 2016), as torch.optim.NAdam.

    Adam (Kingma & Ba 2015) whose first moment looks one step ahead, with the momentum
    schedule ``mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay))`` and decoupled weight
    decay (NAdamW, Loshchilov & Hutter 2019) as an option, in torch's order. With
    :math:`\gamma` = ``lr``, :math:`(\beta_1, \beta_2)` = ``betas``, :math:`\psi` =
    ``momentum_decay``, :math:`\lambda` = ``weight_decay``, :math:`\epsilon` = ``eps``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize} \\
        & \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \text{ if }
          \mathtt{decoupled\_weight\_decay}, \text{ else } g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & \mu_t = \beta_1 \bigl(1 - \tfrac12 \, 0.96^{t \psi}\bigr) \\
        & m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
          v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        & d_t \leftarrow \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        & \theta_t \leftarrow \theta_{t-1}
          - \gamma \frac{1 - \mu_t}{1 - \prod_{i \le t} \mu_i} \, \frac{g_t}{d_t}
          - \gamma \frac{\mu_{t+1}}{1 - \prod_{i \le t+1} \mu_i} \, \frac{m_t}{d_t}
        \end{aligned}

    The frameworks differ in the schedule and in the precision of ``prod mu_i``: optax's
    ``nadam`` has no schedule (``mu_t = beta1``, so
    ``m_hat = beta1 m / (1 - beta1^(t+1)) + (1 - beta1) g / (1 - beta1^t)``), which is
    ``momentum_decay = inf``; Keras 3's ``Nadam`` uses ``0.96^t``, ``momentum_decay = 1``;
    Dozat's paper ``0.96^(t/250)``, torch's 4e-3. Only torch rounds ``prod mu_i`` to
    float32 at every step.

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate. Default 2e-3 (keras: 1e-3; optax has no default).
        betas: ``(beta1, beta2)``, decay rates of the moments, each in [0, 1).
        eps: added to the denominator. Default 1e-8 (keras: 1e-7).
        weight_decay: L2 penalty (or decoupled decay). Default 0.
        momentum_decay: ``psi`` of the momentum schedule. Default 4e-3 (optax: ``inf``,
            keras: 1.0).
        decoupled_weight_decay: decay the weights directly (NAdamW). Default ``False``
            (keras: ``True``, as Keras's ``weight_decay``).
        maximize: maximize the objective instead of minimizing it.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.
        convention: ``"torch"`` (default), ``"optax"``, ``"keras"`` or ``"paper"``: that
            framework's defaults and numerics; arguments passed explicitly win. Not in
            torch.
        mu_product_float32: round ``prod mu_i`` to float32 at every step, as torch's
            float32 tensor does, instead of keeping it in float64. Default ``True``
            (optax, keras, paper: ``False``). Not in torch.

    State per parameter: ``step``, ``mu_product`` (``prod_{i<=t} mu_i``, a float that,
    as torch's float32 tensor, is rounded to float32 at every step), ``exp_avg``,
    ``exp_avg_sq``.
    """

    state_slots = ("exp_avg", "exp_avg_sq")
    required_state = ("exp_avg", "exp_avg_sq")
    scalar_state = ("mu_product",)
    _kernel = staticmethod(_core.nadam_step)
    required_hyperparameters = ("lr", "betas", "eps", "weight_decay", "momentum_decay")
    torch_setdefaults = {"maximize": False, "decoupled_weight_decay": False}
    conventions = NADAM_CONVENTIONS
    convention_knobs = ("mu_product_float32",)

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = DEFAULT,
        weight_decay: float = 0,
        momentum_decay: float = DEFAULT,
        decoupled_weight_decay: bool = DEFAULT,
        *,
        maximize: bool = False,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
        mu_product_float32: bool | None = None,
    ) -> None:
        given: dict[str, Any] = dict(lr=lr, eps=eps, momentum_decay=momentum_decay)
        given.update(decoupled_weight_decay=decoupled_weight_decay, mu_product_float32=mu_product_float32)
        resolved = resolve(type(self), convention, given, ("mu_product_float32",))
        defaults = dict(
            lr=resolved.pop("lr"),
            betas=betas,
            eps=resolved.pop("eps"),
            weight_decay=weight_decay,
            momentum_decay=resolved.pop("momentum_decay"),
            decoupled_weight_decay=resolved.pop("decoupled_weight_decay"),
            maximize=maximize,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        defaults.update(resolved)  # convention and mu_product_float32, when not torch's
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
        # the schedule is computed here, so check what was edited into the group since
        # (the caller names the group in the message)
        beta_pair(group)
        non_negative(group, "momentum_decay")
        flag(group, *(("mu_product_float32",) if "mu_product_float32" in group else ()))
        beta1, momentum_decay = group["betas"][0], group["momentum_decay"]
        in_float32 = group.get("mu_product_float32", True)
        for s in states:
            # mu_t as the kernel computes it (NadamHyper::mu in src/kernels/nadam.rs)
            mu = beta1 * (1.0 - 0.5 * 0.96 ** (s["step"] * momentum_decay))
            if in_float32:  # torch's float32 tensor
                s["mu_product"] = float(np.float32(s["mu_product"]) * np.float32(mu))
            else:
                s["mu_product"] = float(s["mu_product"]) * mu
        return {**args, "mu_product": [s["mu_product"] for s in states]}
