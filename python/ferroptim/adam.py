"""Adam and AdamW."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._conventions import DEFAULT, resolve
from ._validate import beta_pair, flag, non_negative, state_storage
from .optimizer import Optimizer

_ADAM_TORCH: dict[str, Any] = dict(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0,
    decoupled_weight_decay=False,
    eps_root=0.0,
    eps_hat=False,
    amsgrad_max="v",
)
#: What each convention sets (docs/conventions.md): optax ``adam``/``amsgrad``
#: (``scale_by_adam``, ``scale_by_amsgrad``), Keras 3 ``Adam``, Kingma & Ba's Algorithm 1.
ADAM_CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": _ADAM_TORCH,
    "optax": {**_ADAM_TORCH, "amsgrad_max": "v_hat"},
    "keras": {**_ADAM_TORCH, "eps": 1e-7, "decoupled_weight_decay": True, "eps_hat": True},
    "paper": _ADAM_TORCH,
}
_ADAM_KNOBS = ("eps_root", "eps_hat", "amsgrad_max")


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015, Algorithm 1), as torch.optim.Adam.

    Algorithm 1 with AMSGrad (Reddi et al. 2018) and decoupled weight decay (Loshchilov
    & Hutter 2019) as options, in torch's order of operations. With :math:`\gamma` =
    ``lr``, :math:`(\beta_1, \beta_2)` = ``betas``, :math:`\lambda` = ``weight_decay``,
    :math:`\epsilon` = ``eps``:

    .. math::

        \begin{aligned}
        & g_t \leftarrow -g_t \text{ if maximize} \\
        & \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \text{ if }
          \mathtt{decoupled\_weight\_decay}, \text{ else } g_t \leftarrow g_t + \lambda \theta_{t-1} \\
        & m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        & v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        & v_t^{\max} \leftarrow \max(v_{t-1}^{\max}, v_t) \text{ and } v_t \leftarrow v_t^{\max}
          \text{ if amsgrad} \\
        & \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \,
          \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}
        \end{aligned}

    which is Algorithm 1's :math:`\theta_t = \theta_{t-1} - \alpha \hat m_t / (\sqrt{\hat
    v_t} + \epsilon)` with the bias corrections :math:`\hat m_t = m_t / (1 - \beta_1^t)`,
    :math:`\hat v_t = v_t / (1 - \beta_2^t)` folded in.

    Other frameworks' conventions (``convention=``, ``docs/conventions.md``):

    .. math::

        \begin{aligned}
        & \text{optax, paper: } \theta_t \leftarrow \theta_{t-1}
          - \gamma \, \hat m_t / \bigl(\sqrt{\hat v_t + \epsilon_{\mathrm{root}}} + \epsilon\bigr) \\
        & \text{keras } (\mathtt{eps\_hat}): \ \theta_t \leftarrow \theta_{t-1}
          - \gamma \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} \, \frac{m_t}{\sqrt{v_t} + \epsilon} \\
        & \mathtt{amsgrad\_max="v\_hat"} \text{ (optax): } \hat v_t^{\max} \leftarrow
          \max(\hat v_{t-1}^{\max}, \hat v_t) \text{ in place of } \hat v_t
        \end{aligned}

    ``"optax"`` and ``"paper"`` (Algorithm 1 as printed) divide ``m`` and ``v`` by their
    bias corrections elementwise, in optax's ``scale_by_adam`` order; the mathematics is
    torch's, the rounding that order's. ``"keras"`` is Keras 3's ``Adam``: ``eps`` is
    Kingma & Ba's epsilon-hat (end of their section 2), default 1e-7, and
    ``weight_decay`` is decoupled.

    Args:
        params: arrays or param groups to optimize.
        lr: step size alpha. Default 1e-3 (every convention; optax has no default).
        betas: ``(beta1, beta2)``, decay rates of the moments, each in [0, 1).
            Default (0.9, 0.999).
        eps: added to the denominator. Default 1e-8 (keras: 1e-7).
        weight_decay: L2 penalty (or decoupled decay). Default 0.
        amsgrad: use AMSGrad's running maximum of ``v``.
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: decay the weights directly, as AdamW. Default ``False``
            (keras: ``True``, as Keras's ``weight_decay``).
        convention: ``"torch"`` (default), ``"optax"``, ``"keras"`` or ``"paper"``: the
            defaults and numerics of that framework; every argument passed explicitly
            wins over it. Not in torch.
        eps_root: optax's ``eps_root``, added to ``v_hat`` under the square root (keeps the
            update differentiable at ``v = 0``). Default 0.0. Not in torch.
        eps_hat: ``eps`` is Keras's epsilon-hat, added to ``sqrt(v)`` before the bias
            correction of ``v``. Default ``False`` (keras: ``True``). Not in torch.
        amsgrad_max: what AMSGrad's maximum keeps: ``"v"``, the raw second moment (torch,
            Keras, Reddi et al.), or ``"v_hat"``, the bias-corrected one (optax's
            ``scale_by_amsgrad``; ``max_exp_avg_sq`` then holds ``v_hat``). Default ``"v"``
            (optax: ``"v_hat"``). Not in torch.
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
    required_hyperparameters = ("lr", "betas", "eps", "weight_decay")
    torch_setdefaults = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False}

    conventions = ADAM_CONVENTIONS
    convention_knobs = _ADAM_KNOBS

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        betas: tuple[float, float] = DEFAULT,
        eps: float = DEFAULT,
        weight_decay: float = DEFAULT,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = DEFAULT,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
        eps_root: float | None = None,
        eps_hat: bool | None = None,
        amsgrad_max: str | None = None,
    ) -> None:
        given: dict[str, Any] = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        given.update(decoupled_weight_decay=decoupled_weight_decay)
        given.update(eps_root=eps_root, eps_hat=eps_hat, amsgrad_max=amsgrad_max)
        resolved = resolve(type(self), convention, given, _ADAM_KNOBS)
        defaults = dict(
            lr=resolved.pop("lr"),
            betas=resolved.pop("betas"),
            eps=resolved.pop("eps"),
            weight_decay=resolved.pop("weight_decay"),
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=resolved.pop("decoupled_weight_decay"),
            state_dtype=state_dtype,
            seed=seed,
        )
        defaults.update(grad_scale=grad_scale, max_grad_norm=max_grad_norm, skip_nonfinite=skip_nonfinite)
        defaults.update(resolved)  # convention and its numerics settings, when not torch's
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

    def _slots_in_use(self, group: dict[str, Any]) -> list[str | None]:
        return ["exp_avg", "exp_avg_sq", "max_exp_avg_sq" if group["amsgrad"] else None]


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW.

    ``theta <- theta (1 - lr weight_decay)`` before the Adam update of :class:`Adam`;
    the same as ``Adam(..., decoupled_weight_decay=True)`` with ``weight_decay=1e-2``
    by default. optax's ``adamw`` (``-lr * (update + wd theta)``) and Keras's ``AdamW``
    (``theta - theta wd lr``) decay by the same ``lr * wd``; Loshchilov & Hutter's
    Algorithm 2 scales ``wd`` by the schedule multiplier only, which here is
    ``weight_decay = wd / lr`` in every convention.

    Args:
        params: arrays or param groups to optimize.
        lr: step size alpha. Default 1e-3.
        betas: ``(beta1, beta2)``. Default (0.9, 0.999).
        eps: added to the denominator. Default 1e-8 (keras: 1e-7).
        weight_decay: decoupled weight decay. Default 1e-2 (optax: 1e-4, keras: 0.004).
        amsgrad: use AMSGrad's running maximum of ``v``.
        maximize: maximize the objective instead of minimizing it.
        state_dtype: ``None`` or ``"bfloat16"``, as :class:`Adam`.
        seed: seed of the stochastic rounding of bfloat16 state, as :class:`Adam`.
        grad_scale, max_grad_norm, skip_nonfinite: loss-scale unscaling, clipping by the
            global gradient norm, and skipping steps with a NaN/inf gradient, all inside
            the step (see :class:`~ferroptim.Optimizer`). Not in torch.
        convention, eps_root, eps_hat, amsgrad_max: another framework's defaults and
            numerics, as :class:`Adam`. Not in torch.

    State per parameter: as :class:`Adam`.
    """

    torch_setdefaults = {**Adam.torch_setdefaults, "decoupled_weight_decay": True}

    conventions = {
        "torch": {**ADAM_CONVENTIONS["torch"], "weight_decay": 1e-2},
        "optax": {**ADAM_CONVENTIONS["optax"], "weight_decay": 1e-4},
        "keras": {**ADAM_CONVENTIONS["keras"], "weight_decay": 0.004},
        "paper": {**ADAM_CONVENTIONS["paper"], "weight_decay": 1e-2},
    }

    def __init__(
        self,
        params: Any,
        lr: float = DEFAULT,
        betas: tuple[float, float] = DEFAULT,
        eps: float = DEFAULT,
        weight_decay: float = DEFAULT,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        state_dtype: Any = None,
        seed: int = 0,
        grad_scale: float | None = None,
        max_grad_norm: float | None = None,
        skip_nonfinite: bool = False,
        convention: str = "torch",
        eps_root: float | None = None,
        eps_hat: bool | None = None,
        amsgrad_max: str | None = None,
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
            convention=convention,
            eps_root=eps_root,
            eps_hat=eps_hat,
            amsgrad_max=amsgrad_max,
        )
