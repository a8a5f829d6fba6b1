"""Adam and AdamW."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validate import beta_pair, flag, non_negative, state_storage
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015, Algorithm 1), as torch.optim.Adam.

    Algorithm 1 with AMSGrad (Reddi et al. 2018) and decoupled weight decay
    (Loshchilov & Hutter 2019) as options, in torch's order of operations::

        g <- -g if maximize
        theta <- theta (1 - lr wd)  if decoupled_weight_decay,  else  g <- g + wd theta
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        v_max <- max(v_max, v)                              (amsgrad; replaces v below)
        theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    which is Algorithm 1's ``theta - alpha m_hat / (sqrt(v_hat) + eps)`` with the bias
    corrections ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)`` folded in.

    Args:
        params: arrays or param groups to optimize.
        lr: step size alpha. Default 1e-3.
        betas: ``(beta1, beta2)``, decay rates of the moments, each in [0, 1).
        eps: added to the denominator. Default 1e-8.
        weight_decay: L2 penalty (or decoupled decay). Default 0.
        amsgrad: use AMSGrad's running maximum of ``v``.
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: decay the weights directly, as AdamW.
        state_dtype: how ``exp_avg``, ``exp_avg_sq`` and ``max_exp_avg_sq`` are stored:
            ``None`` (the parameter's dtype) or ``"bfloat16"`` (float32 parameters only;
            20 instead of 28 bytes per element and step). bfloat16 state is decoded to
            float32, updated with exactly the float32 arithmetic above, and written back
            with stochastic rounding, ``(u + r) >> 16`` on the float32 bits ``u`` with 16
            random bits ``r``; ``opt.state[p]`` then holds its bits as ``np.uint16``
            arrays, and ``state_dict()`` gives it as float32. Not in torch.
        seed: seed of the stochastic rounding (bfloat16 state). Default 0. Not in torch.
            The bits ``r`` depend only on (seed, step ``t``, the parameter's position ``j``
            in the optimizer, the state slot ``k`` in the order above, the element's index
            ``i`` in the parameter's memory order), never on threads: with the key
            ``K = sm(sm(sm(sm(seed) ^ t) ^ j) ^ k)`` (``sm`` SplitMix64's output function),
            element ``i = 2048 b + 32 d + 16 h + l`` takes bits ``16 h .. 16 h + 16`` of
            the ``d``-th ``next_u32()`` of rand's ``Xoshiro128PlusPlus::seed_from_u64(K +
            16 b + l)``.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
    """

    state_slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    required_state = ("exp_avg", "exp_avg_sq")
    _kernel = staticmethod(_core.adam_step)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
            state_dtype=state_dtype,
            seed=seed,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        non_negative(group, "lr", "eps", "weight_decay")
        beta_pair(group)
        flag(group, "amsgrad", "maximize", "decoupled_weight_decay")
        state_storage(group)

    def _init_state(self, p: np.ndarray, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": 0.0,
            "exp_avg": self._state_buffer(p, group),
            "exp_avg_sq": self._state_buffer(p, group),
        }

    def _slot_arrays(self, state: dict[str, Any], p: np.ndarray, group: dict[str, Any]) -> list:
        if not group["amsgrad"]:
            return [state["exp_avg"], state["exp_avg_sq"], None]
        if "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = self._state_buffer(p, group)
        return [state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"]]


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW.

    ``theta <- theta (1 - lr weight_decay)`` before the Adam update of :class:`Adam`;
    the same as ``Adam(..., decoupled_weight_decay=True)`` with ``weight_decay=1e-2``
    by default.

    Args:
        params: arrays or param groups to optimize.
        lr: step size alpha. Default 1e-3.
        betas: ``(beta1, beta2)``. Default (0.9, 0.999).
        eps: added to the denominator. Default 1e-8.
        weight_decay: decoupled weight decay. Default 1e-2.
        amsgrad: use AMSGrad's running maximum of ``v``.
        maximize: maximize the objective instead of minimizing it.
        state_dtype: ``None`` or ``"bfloat16"``, as :class:`Adam`.
        seed: seed of the stochastic rounding of bfloat16 state, as :class:`Adam`.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.

    State per parameter: as :class:`Adam`.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            state_dtype=state_dtype,
            seed=seed,
            grad_scale=grad_scale,
            max_grad_norm=max_grad_norm,
            skip_nonfinite=skip_nonfinite,
        )
