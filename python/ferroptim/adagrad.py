"""AdaGrad."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import flag, non_negative, state_storage
from .optimizer import Optimizer

if TYPE_CHECKING:
    from ._core import _Commit

_ADAGRAD_TORCH: dict[str, Any] = dict(lr=1e-2, initial_accumulator_value=0, eps=1e-10, eps_in_sqrt=False)
#: What each convention sets (docs/conventions.md): optax ``adagrad`` (``scale_by_rss``),
#: Keras 3 ``Adagrad``, Duchi et al. as the lecture writes it, ``(B_k + eps I)^{-1}``.
ADAGRAD_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": _ADAGRAD_TORCH,
    "optax": {**_ADAGRAD_TORCH, "initial_accumulator_value": 0.1, "eps": 1e-7, "eps_in_sqrt": True},
    "keras": {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7, "eps_in_sqrt": True},
    "paper": _ADAGRAD_TORCH,
}


class Adagrad(Optimizer):
    r"""AdaGrad (Duchi, Hazan & Singer 2011), as torch.optim.Adagrad.

    The lecture's diagonal preconditioning ``theta_{k+1} = theta_k - eta (B_k + eps
    I)^{-1} g_k`` with ``B_k(i,i) = sqrt(sum_{j<=k} g_j(i)^2)``, plus torch's
    learning-rate decay, with :math:`\gamma` = ``lr``, :math:`\eta` = ``lr_decay``,
    :math:`\lambda` = ``weight_decay``, :math:`\epsilon` = ``eps``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize}, \qquad g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & \mathrm{sum}_t \leftarrow \mathrm{sum}_{t-1} + g_t^2 \\
        & \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 + (t - 1)\eta}
          \, \frac{g_t}{\sqrt{\mathrm{sum}_t} + \epsilon}
        \end{aligned}

    optax's ``adagrad`` and Keras's ``Adagrad`` put ``eps`` under the root,
    ``theta <- theta - lr g / sqrt(sum + eps)`` (``eps_in_sqrt``), and start ``sum`` at 0.1.

    Args:
        params: arrays or param groups to optimize.
        lr: learning rate (the lecture's eta). Default 1e-2 (keras: 1e-3; optax has no
            default).
        lr_decay: learning-rate decay. Default 0.
        weight_decay: L2 penalty. Default 0.
        initial_accumulator_value: starting value of ``sum``. Default 0 (optax, keras: 0.1).
        eps: added to ``sqrt(sum)``. Default 1e-10 (optax, keras: 1e-7, under the root).
        maximize: maximize the objective instead of minimizing it.
        state_dtype: how the state arrays are stored: ``None`` (the parameter's dtype) or
            ``"bfloat16"`` (float32 parameters only), decoded to float32 for the update
            above and written back with stochastic rounding; see :class:`~ferroptim.Adam`.
        seed: seed of the stochastic rounding of bfloat16 state. Default 0.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.
        convention: ``"torch"`` (default), ``"optax"``, ``"keras"`` or ``"paper"`` (the
            lecture's, as torch): that framework's defaults and numerics; arguments
            passed explicitly win. Keras's ``weight_decay`` is decoupled, which Adagrad
            does not implement: with ``"keras"`` it must be 0. Not in torch.
        eps_in_sqrt: ``g / sqrt(sum + eps)`` (optax, Keras) instead of
            ``g / (sqrt(sum) + eps)``. Default ``False`` (optax, keras: ``True``). Not in torch.

    State per parameter: ``step``, ``sum`` (created at construction, as torch).
    """

    state_slots = ("sum",)
    required_state = ("sum",)
    _kernel = staticmethod(_core.adagrad_step)
    required_hyperparameters = ("lr", "lr_decay", "weight_decay", "eps")
    torch_setdefaults = {"maximize": False}
    conventions = ADAGRAD_CONVENTIONS
    convention_knobs = ("eps_in_sqrt",)

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = DEFAULT,
        eps: float = DEFAULT,
        *,
        maximize: bool = False,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
        eps_in_sqrt: bool | None = None,
    ) -> None:
        given = dict(lr=lr, initial_accumulator_value=initial_accumulator_value, eps=eps)
        resolved = resolve(type(self), convention, {**given, "eps_in_sqrt": eps_in_sqrt}, ("eps_in_sqrt",))
        defaults = dict(
            lr=resolved.pop("lr"),
            lr_decay=lr_decay,
            eps=resolved.pop("eps"),
            weight_decay=weight_decay,
            initial_accumulator_value=resolved.pop("initial_accumulator_value"),
            maximize=maximize,
            state_dtype=state_dtype,
            seed=seed,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        defaults.update(resolved)  # convention and eps_in_sqrt, when not torch's
        super().__init__(params, defaults)

    def _append_group(self, group: dict[str, Any]) -> None:
        """Appends ``group`` and creates its parameters' state (``sum =
        initial_accumulator_value``) as torch does, in one native call: neither another
        thread nor an interruption finds the group without its state."""
        commit: _Commit = {"splice": [(self.param_groups, [*self.param_groups, group])]}
        params = group["params"]
        self.state.commit_to(commit, params, [self._init_state(p, group) for p in params])
        _core.commit(commit)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
        flag(group, "maximize")
        state_storage(group)

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        # checked again: the group may have been edited since (None would fill NaN)
        non_negative(group, "initial_accumulator_value")
        return {"step": 0.0, "sum": self._state_buffer(p, group, group["initial_accumulator_value"])}
