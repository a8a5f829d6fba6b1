"""Property-based tests (hypothesis) of every optimizer class.

1. ``test_steps_match_the_reference``: random param-group structures over parameters of
   random shapes (0-d, size 0, a large first dimension that takes the parallel path), both
   dtypes, C/F/strided/reversed/transposed layouts with each gradient laid out independently
   of its parameter, random hyperparameters with their edge values (lr=0, betas at 0,
   huge eps, eps=0, weight decay with maximize, ...), ``None`` gradients, a few steps:
   parameters and every state entry equal a NumPy transcription of the update.
2. ``test_malformed_step_raises_and_changes_nothing``: one input of a valid setup is
   corrupted (gradient dtype, shape or type, a read-only parameter, a gradient aliasing its
   parameter, a state array replaced or removed, a hyperparameter of the wrong type, a
   ``grads`` list of the wrong length): ``TypeError``/``ValueError`` naming the parameter
   (or group), and parameters, gradients, state and param groups are unchanged.
3. ``test_corrupted_state_dict_is_refused`` does the same for ``load_state_dict``.

The references are transcriptions of torch.optim's documented algorithms (the lecture's
formulas, with torch's options), written here independently of ferroptim's kernels. They
compute with ``Tracked`` arrays (``tests/_tracked.py``): in the parameter's dtype, with a
running bound on their rounding error, so results are compared within a few rounding units
of the computation (float64 tightly, float32 ulp-scaled).

A new optimizer joins with one ``Entry`` in ``REGISTRY``: its class, torch's defaults, a
strategy for its keyword arguments, and its reference update.

Example counts come from hypothesis profiles: ``ci`` (the default) keeps the whole module at
a few tens of seconds; ``HYPOTHESIS_PROFILE=thorough`` runs ten times as many.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from _tracked import SLACK, Tracked, assert_matches, const
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ferroptim as fo

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
    database=None,
)
settings.register_profile(
    "thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# --------------------------------------------------------------------------------------------
# NumPy references. Each per-tensor update takes the group's hyperparameters ``h``, the
# parameter ``p`` and gradient ``g`` (Tracked) and the parameter's state ``s`` (a dict of
# Tracked arrays and the float ``step``, torch's keys), updates ``s`` and returns the new ``p``.


def _grad(h: dict[str, Any], p: Tracked, g: Tracked) -> Tracked:
    """torch's first two lines: ``g <- -g`` when maximizing, then ``g <- g + weight_decay p``."""
    if h["maximize"]:
        g = -g
    if h["weight_decay"] != 0:
        g = g + const(h["weight_decay"], p.dtype) * p
    return g


def _zeros(p: Tracked) -> Tracked:
    return Tracked.exact(np.zeros_like(p.val))


def sgd_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """SGD (torch.optim.SGD's algorithm): ``b_1 = g_1``, ``b_t = mu b_{t-1} + (1 - tau) g_t``;
    Nesterov uses ``g + mu b``; ``theta <- theta - lr * (that)``."""
    dt = p.dtype
    g = _grad(h, p, g)
    if h["momentum"] != 0:
        if "momentum_buffer" not in s:
            b = g
        else:
            b = const(h["momentum"], dt) * s["momentum_buffer"] + const(1 - h["dampening"], dt) * g
        s["momentum_buffer"] = b
        g = g + const(h["momentum"], dt) * b if h["nesterov"] else b
    return p - const(h["lr"], dt) * g


def adagrad_init(h: dict[str, Any], p: np.ndarray) -> dict[str, Any]:
    """Adagrad's state exists from construction: ``sum = initial_accumulator_value``."""
    total = np.full(p.shape, h["initial_accumulator_value"], dtype=p.dtype)
    return {
        "step": 0.0,
        "sum": Tracked(total, np.full(p.shape, abs(float(total.flat[0])) if total.size else 0)),
    }


def adagrad_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """AdaGrad (Duchi et al.; the lecture's ``(B_k + eps I)^-1``, ``B_k = sqrt(sum g^2)``) with
    torch's decay: ``clr = lr / (1 + (t - 1) lr_decay)``, ``theta <- theta - clr g / (sqrt(sum) + eps)``."""
    dt = p.dtype
    s["step"] += 1
    g = _grad(h, p, g)
    s["sum"] = s["sum"] + g * g
    one = Tracked.exact(1.0)
    clr = (
        Tracked.exact(h["lr"]) / (one + Tracked.exact(s["step"] - 1) * Tracked.exact(h["lr_decay"]))
    ).astype(dt)
    return p - clr * g / (s["sum"].sqrt() + const(h["eps"], dt))


def rmsprop_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """RMSprop: ``v <- alpha v + (1 - alpha) g^2``; centered subtracts ``(E g)^2``; torch puts
    eps outside the root, the lecture (``eps_in_sqrt``) inside; momentum buffers ``g / denom``."""
    dt = p.dtype
    s["step"] += 1
    g = _grad(h, p, g)
    alpha, rest = const(h["alpha"], dt), const(1 - h["alpha"], dt)
    s["square_avg"] = alpha * s.get("square_avg", _zeros(p)) + rest * g * g
    variance = s["square_avg"]
    if h["centered"]:
        s["grad_avg"] = alpha * s.get("grad_avg", _zeros(p)) + rest * g
        variance = variance - s["grad_avg"] * s["grad_avg"]
    eps = const(h["eps"], dt)
    denom = (variance + eps).sqrt() if h["eps_in_sqrt"] else variance.sqrt() + eps
    if h["momentum"] > 0:
        s["momentum_buffer"] = const(h["momentum"], dt) * s.get("momentum_buffer", _zeros(p)) + g / denom
        return p - const(h["lr"], dt) * s["momentum_buffer"]
    return p - const(h["lr"], dt) * g / denom


def adadelta_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """AdaDelta (Zeiler 2012, Algorithm 1): ``dx = RMS[dx]_{t-1} / RMS[g]_t * g`` with
    ``RMS[x] = sqrt(E[x^2] + eps)``; ``theta <- theta - lr dx``."""
    dt = p.dtype
    s["step"] += 1
    g = _grad(h, p, g)
    rho, rest, eps = const(h["rho"], dt), const(1 - h["rho"], dt), const(h["eps"], dt)
    s["square_avg"] = rho * s.get("square_avg", _zeros(p)) + rest * g * g
    acc = s.get("acc_delta", _zeros(p))
    delta = (acc + eps).sqrt() / (s["square_avg"] + eps).sqrt() * g
    s["acc_delta"] = rho * acc + rest * delta * delta
    return p - const(h["lr"], dt) * delta


def _decayed(h: dict[str, Any], p: Tracked, g: Tracked, decoupled: bool) -> tuple[Tracked, Tracked]:
    """The Adam family's first lines: ``g <- -g`` when maximizing, then either decoupled
    weight decay ``theta <- theta (1 - lr wd)`` (``1 - lr wd`` in float64) or L2 ``g <- g + wd theta``."""
    if h["maximize"]:
        g = -g
    if h["weight_decay"] != 0:
        if decoupled:
            one, lr, wd = (Tracked.exact(x) for x in (1.0, h["lr"], h["weight_decay"]))
            p = p * (one - lr * wd).astype(p.dtype)
        else:
            g = g + const(h["weight_decay"], p.dtype) * p
    return p, g


def _adam_moments(h: dict[str, Any], g: Tracked, s: dict[str, Any]) -> None:
    """``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2`` (zeros when new)."""
    dt = g.dtype
    beta1, beta2 = h["betas"]
    s["exp_avg"] = const(beta1, dt) * s.get("exp_avg", _zeros(g)) + const(1 - beta1, dt) * g
    s["exp_avg_sq"] = const(beta2, dt) * s.get("exp_avg_sq", _zeros(g)) + const(1 - beta2, dt) * g * g


def adam_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """Adam (Kingma & Ba, Algorithm 1): ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)``,
    ``theta <- theta - lr m_hat / (sqrt(v_hat) + eps)``; AMSGrad keeps ``max(v)`` (torch keeps
    the maximum of the uncorrected ``v`` and corrects it with the current ``t``); decoupled
    weight decay (AdamW) first scales ``theta`` by ``1 - lr wd``."""
    dt = p.dtype
    s["step"] += 1
    t = s["step"]
    beta1, beta2 = h["betas"]
    p, g = _decayed(h, p, g, h["decoupled_weight_decay"])
    _adam_moments(h, g, s)
    v = s["exp_avg_sq"]
    if h["amsgrad"]:
        s["max_exp_avg_sq"] = s.get("max_exp_avg_sq", _zeros(p)).maximum(v)
        v = s["max_exp_avg_sq"]
    one = Tracked.exact(1.0)
    m_hat = s["exp_avg"] / (one - Tracked.exact(beta1) ** t).astype(dt)
    v_hat = v / (one - Tracked.exact(beta2) ** t).astype(dt)
    return p - const(h["lr"], dt) * m_hat / (v_hat.sqrt() + const(h["eps"], dt))


def nadam_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """NAdam (Dozat 2016) as torch.optim.NAdam: the momentum schedule
    ``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))`` (float64) and its running product, kept in
    ``mu_product`` as torch's float32 tensor keeps it (rounded to float32, times ``mu_t``
    rounded to float32, at every step); with ``d = sqrt(v / (1 - beta2^t)) + eps``,
    ``theta <- theta - lr (1 - mu_t) / (1 - prod_{i<=t} mu_i) g / d
    - lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i) m / d``, the coefficients in float64 (the
    product with ``mu_{t+1}`` too); NAdamW's decoupled decay first."""
    dt = p.dtype
    s["step"] += 1
    t = s["step"]
    beta1, beta2 = h["betas"]
    psi = h["momentum_decay"]
    p, g = _decayed(h, p, g, h["decoupled_weight_decay"])
    _adam_moments(h, g, s)
    s["mu_product"] = float(
        np.float32(s.get("mu_product", 1.0)) * np.float32(beta1 * (1.0 - 0.5 * 0.96 ** (t * psi)))
    )
    one, half, lr, beta = (Tracked.exact(x) for x in (1.0, 0.5, h["lr"], beta1))
    mu = beta * (one - half * Tracked.exact(0.96) ** (t * psi))
    mu_next = beta * (one - half * Tracked.exact(0.96) ** ((t + 1) * psi))
    mu_product = Tracked.exact(s["mu_product"])
    grad_step = (lr * (one - mu) / (one - mu_product)).astype(dt)
    avg_step = (lr * mu_next / (one - mu_product * mu_next)).astype(dt)
    bias_correction2 = (one - Tracked.exact(beta2) ** t).astype(dt)
    d = (s["exp_avg_sq"] / bias_correction2).sqrt() + const(h["eps"], dt)
    return p - grad_step * g / d - avg_step * s["exp_avg"] / d


def radam_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """RAdam (Liu et al. 2020, Algorithm 2) as torch.optim.RAdam: with
    ``rho_inf = 2 / (1 - beta2) - 1`` and ``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)``
    (float64), ``theta <- theta - lr m_hat r_t sqrt(1 - beta2^t) / (sqrt(v) + eps)`` when
    ``rho_t > 5``, with ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``,
    else ``theta <- theta - lr m_hat`` (momentum SGD); ``m_hat = m / (1 - beta1^t)``."""
    dt = p.dtype
    s["step"] += 1
    t = s["step"]
    beta1, beta2 = h["betas"]
    p, g = _decayed(h, p, g, h["decoupled_weight_decay"])
    _adam_moments(h, g, s)
    one, two, four, five = (Tracked.exact(x) for x in (1.0, 2.0, 4.0, 5.0))
    bias_correction2 = one - Tracked.exact(beta2) ** t
    m_hat = s["exp_avg"] / (one - Tracked.exact(beta1) ** t).astype(dt)
    rho_inf = two / (one - Tracked.exact(beta2)) - one
    rho_t = rho_inf - Tracked.exact(2.0 * t) * Tracked.exact(beta2) ** t / bias_correction2
    lr = const(h["lr"], dt)
    if not rho_t.val > five.val + SLACK * rho_t.err:
        if rho_t.val >= five.val - SLACK * rho_t.err:  # either side of the switch, within rounding
            return Tracked(p.val, np.full(p.val.shape, np.inf))
        return p - m_hat * lr
    r_t = ((rho_t - four) * (rho_t - two) * rho_inf / ((rho_inf - four) * (rho_inf - two) * rho_t)).sqrt()
    adaptive = bias_correction2.sqrt().astype(dt) / (s["exp_avg_sq"].sqrt() + const(h["eps"], dt))
    return p - m_hat * lr * adaptive * r_t.astype(dt)


def adamax_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """Adamax (Kingma & Ba, Algorithm 2) as torch.optim.Adamax: ``u <- max(beta2 u, |g| + eps)``
    (NaN-propagating), ``theta <- theta - lr / (1 - beta1^t) m / u``."""
    dt = p.dtype
    s["step"] += 1
    t = s["step"]
    beta1, beta2 = h["betas"]
    g = _grad(h, p, g)
    s["exp_avg"] = const(beta1, dt) * s.get("exp_avg", _zeros(p)) + const(1 - beta1, dt) * g
    s["exp_inf"] = (const(beta2, dt) * s.get("exp_inf", _zeros(p))).maximum(abs(g) + const(h["eps"], dt))
    one = Tracked.exact(1.0)
    clr = (Tracked.exact(h["lr"]) / (one - Tracked.exact(beta1) ** t)).astype(dt)
    return p - clr * (s["exp_avg"] / s["exp_inf"])


def lion_reference(h: dict[str, Any], p: Tracked, g: Tracked, s: dict[str, Any]) -> Tracked:
    """Lion (Chen et al. 2023, Algorithm 2): ``c = beta1 m + (1 - beta1) g``,
    ``theta <- theta (1 - lr wd)``, ``theta <- theta - lr sign(c)``, ``m <- beta2 m + (1 - beta2) g``.
    No ``step``. Where ``c`` is within rounding of zero its sign, and so the parameter, is unknown."""
    dt = p.dtype
    beta1, beta2 = h["betas"]
    p, g = _decayed(h, p, g, decoupled=True)
    m = s.get("exp_avg", _zeros(p))
    c = const(beta1, dt) * m + const(1 - beta1, dt) * g
    s["exp_avg"] = const(beta2, dt) * m + const(1 - beta2, dt) * g
    return p - const(h["lr"], dt) * c.sign()


def scope_key(groups: list[dict[str, Any]], gi: int, i: int) -> tuple[Any, ...]:
    """Which ``b`` covers parameter ``i`` of group ``gi``: one for all global-scope parameters,
    one per group, or one per tensor."""
    kind = groups[gi]["scope"]
    return ("global",) if kind == "global" else ("group", gi) if kind == "group" else ("tensor", gi, i)


def adagrad_norm_reference(
    groups: list[dict[str, Any]], params: list[list[Tracked]], grads: list[list[Any]], state: dict
) -> None:
    """AdaGrad-Norm (Ward et al. 2018): ``b_k^2 = b_{k-1}^2 + ||g_k||^2`` summed over the scope
    (all global-scope parameters, a group, or one tensor) in float64, starting from the
    largest ``b0^2`` of the scope's groups; ``theta <- theta - lr / b_k g_k``. ``state`` maps a
    scope key to its ``b^2`` (Tracked float64)."""

    members: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for gi, group_params in enumerate(params):
        for i in range(len(group_params)):
            members.setdefault(scope_key(groups, gi, i), []).append((gi, i))
    effective: dict[tuple[int, int], Tracked] = {}
    for key, sites in members.items():
        with_grad = [(gi, i) for gi, i in sites if grads[gi][i] is not None]
        if not with_grad:
            continue
        b0 = max(groups[gi]["b0"] for gi, _ in sites)
        b_sq = state.get(key, Tracked.exact(np.float64(b0) ** 2) + Tracked.exact(0.0))
        for gi, i in with_grad:
            g = _grad(groups[gi], params[gi][i], Tracked.exact(grads[gi][i]))
            effective[gi, i] = g
            wide = g.astype(np.float64)
            b_sq = b_sq + (wide * wide).total()
        state[key] = b_sq
        for gi, i in with_grad:
            dt = params[gi][i].dtype
            step = (Tracked.exact(groups[gi]["lr"]) / b_sq.sqrt()).astype(dt)
            params[gi][i] = params[gi][i] - step * effective[gi, i]


# --------------------------------------------------------------------------------------------
# hyperparameter strategies, with the edge values each range has

LR = st.sampled_from([0.0, 1e-3, 0.1, 1.0]) | st.floats(1e-4, 2.0)
WEIGHT_DECAY = st.sampled_from([0.0, 0.0, 1e-2, 1.0])
EPS = st.sampled_from([0.0, 1e-8, 1e-3, 1.0, 1e30])
FLAG = st.booleans()


@st.composite
def sgd_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kw = {
        "lr": draw(LR),
        "momentum": draw(st.sampled_from([0.0, 0.5, 0.9, 1.0])),
        "dampening": draw(st.sampled_from([0.0, 0.0, 0.5, 1.0])),
        "weight_decay": draw(WEIGHT_DECAY),
        "maximize": draw(FLAG),
    }
    # always given: a group's nesterov must fit its own momentum, whatever the defaults say
    kw["nesterov"] = kw["momentum"] > 0 and kw["dampening"] == 0 and draw(FLAG)
    return kw


ADAGRAD_KWARGS = st.fixed_dictionaries(
    {
        "lr": LR,
        "lr_decay": st.sampled_from([0.0, 0.1, 10.0]),
        "weight_decay": WEIGHT_DECAY,
        "initial_accumulator_value": st.sampled_from([0.0, 0.1, 1.0]),
        "eps": st.sampled_from([0.0, 1e-10, 1e-3, 1e30]),
        "maximize": FLAG,
    }
)
RMSPROP_KWARGS = st.fixed_dictionaries(
    {
        "lr": LR,
        "alpha": st.sampled_from([0.0, 0.5, 0.99, 1.0]),
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "momentum": st.sampled_from([0.0, 0.9]),
        "centered": FLAG,
        "maximize": FLAG,
        "eps_in_sqrt": FLAG,
    }
)
ADADELTA_KWARGS = st.fixed_dictionaries(
    {
        "lr": LR,
        "rho": st.sampled_from([0.0, 0.5, 0.9, 1.0]),
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "maximize": FLAG,
    }
)
BETA = st.sampled_from([0.0, 0.5, 0.9, 0.999])
ADAM_KWARGS = st.fixed_dictionaries(
    {
        "lr": LR,
        "betas": st.tuples(BETA, BETA),
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "amsgrad": FLAG,
        "maximize": FLAG,
    },
    optional={"decoupled_weight_decay": FLAG},
)
ADAMW_KWARGS = ADAM_KWARGS.map(lambda kw: {k: v for k, v in kw.items() if k != "decoupled_weight_decay"})
NADAM_KWARGS = st.fixed_dictionaries(
    {
        "lr": LR,
        "betas": st.tuples(BETA, BETA),
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "momentum_decay": st.sampled_from([0.0, 4e-3, 0.1, 10.0]),
        "maximize": FLAG,
    },
    optional={"decoupled_weight_decay": FLAG},
)
RADAM_KWARGS = st.fixed_dictionaries(
    {"lr": LR, "betas": st.tuples(BETA, BETA), "eps": EPS, "weight_decay": WEIGHT_DECAY, "maximize": FLAG},
    optional={"decoupled_weight_decay": FLAG},
)
ADAMAX_KWARGS = st.fixed_dictionaries(
    {"lr": LR, "betas": st.tuples(BETA, BETA), "eps": EPS, "weight_decay": WEIGHT_DECAY, "maximize": FLAG}
)
LION_KWARGS = st.fixed_dictionaries(
    {"lr": LR, "betas": st.tuples(BETA, BETA), "weight_decay": WEIGHT_DECAY, "maximize": FLAG}
)
ADAGRAD_NORM_KWARGS = st.fixed_dictionaries(
    {
        "lr": LR,
        "b0": st.sampled_from([1e-2, 1.0, 1e3]),
        "weight_decay": WEIGHT_DECAY,
        "scope": st.sampled_from(["global", "group", "tensor"]),
        "maximize": FLAG,
    }
)


# --------------------------------------------------------------------------------------------
# the registry


def per_tensor(update: Callable[..., Tracked]) -> Callable[..., None]:
    """A whole-step reference from a per-tensor update; ``state`` maps ``(group, index)`` to
    the parameter's state dict."""

    def reference(
        groups: list[dict], params: list[list[Tracked]], grads: list[list[Any]], state: dict
    ) -> None:
        for gi, (h, group_params) in enumerate(zip(groups, params)):
            for i, p in enumerate(group_params):
                if grads[gi][i] is not None:
                    s = state.setdefault((gi, i), {"step": 0.0})
                    g = Tracked.exact(grads[gi][i])
                    if h.get("grad_scale") is not None:  # the loss scale's 1/S, rounded to the dtype
                        g = g * const(1.0 / h["grad_scale"], g.dtype)
                    params[gi][i] = update(h, p, g, s)

    return reference


def with_grad_scale(kwargs: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """``kwargs``, sometimes with a loss scale ``grad_scale`` the step divides gradients by."""
    scales = st.sampled_from([None, 1.0, 1024.0, 0.3])
    return st.tuples(kwargs, scales).map(
        lambda ks: ks[0] if ks[1] is None else {**ks[0], "grad_scale": ks[1]}
    )


@dataclass(frozen=True)
class Entry:
    """One optimizer class under test."""

    cls: type
    #: torch's defaults (what a group without an explicit value uses).
    defaults: dict[str, Any]
    #: keyword arguments of the constructor and of a param group.
    kwargs: st.SearchStrategy[dict[str, Any]]
    #: ``reference(groups, params, grads, state)``: one step of every group, in place.
    reference: Callable[..., None]
    #: the state a parameter gets at construction (Adagrad), else ``None``.
    init: Callable[[dict[str, Any], np.ndarray], dict[str, Any]] | None = None
    #: the state arrays every non-empty state must have (torch raises without them; the
    #: others are optional buffers that start at zero when missing).
    required: tuple[str, ...] = ()
    #: hyperparameters read only where a state starts (Adagrad's at construction, AdagradNorm's
    #: at a scope's first step); later steps ignore edits to them, as torch's do.
    init_only: tuple[str, ...] = ()
    #: whether the per-parameter state carries torch's ``step``.
    counts_steps: bool = True
    #: per-parameter float state besides ``step`` that every non-empty state has (NAdam's
    #: ``mu_product``); compared exactly, as ``step``.
    scalars: tuple[str, ...] = ()
    #: how many steps an example takes, at least and at most (RAdam's rectification
    #: starts at step 6 and its momentum-SGD steps come before).
    steps: tuple[int, int] = (1, 3)
    #: the state is per scope (AdagradNorm's ``b_sq``), not per parameter.
    scoped: bool = False

    def __str__(self) -> str:
        return self.cls.__name__


COMMON = {"weight_decay": 0.0, "maximize": False}
#: The state storage settings of the optimizers that can keep bfloat16 state.
STORAGE = {"state_dtype": None, "seed": 0}
ADAM_DEFAULTS = {**COMMON, "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False}
REGISTRY = [
    Entry(
        fo.SGD,
        {**COMMON, **STORAGE, "lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False},
        with_grad_scale(sgd_kwargs()),
        per_tensor(sgd_reference),
        counts_steps=False,
    ),
    Entry(
        fo.Adagrad,
        {**COMMON, **STORAGE, "lr": 1e-2, "lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
        with_grad_scale(ADAGRAD_KWARGS),
        per_tensor(adagrad_reference),
        init=adagrad_init,
        required=("sum",),
        init_only=("initial_accumulator_value",),
    ),
    Entry(
        fo.RMSprop,
        {
            **COMMON,
            **STORAGE,
            "lr": 1e-2,
            "alpha": 0.99,
            "eps": 1e-8,
            "momentum": 0.0,
            "centered": False,
            "eps_in_sqrt": False,
        },
        with_grad_scale(RMSPROP_KWARGS),
        per_tensor(rmsprop_reference),
        required=("square_avg",),
    ),
    Entry(
        fo.Adadelta,
        {**COMMON, "lr": 1.0, "rho": 0.9, "eps": 1e-6},
        with_grad_scale(ADADELTA_KWARGS),
        per_tensor(adadelta_reference),
        required=("square_avg", "acc_delta"),
    ),
    Entry(
        fo.Adam,
        {**ADAM_DEFAULTS, **STORAGE, "decoupled_weight_decay": False},
        with_grad_scale(ADAM_KWARGS),
        per_tensor(adam_reference),
        required=("exp_avg", "exp_avg_sq"),
    ),
    Entry(
        fo.AdamW,
        {**ADAM_DEFAULTS, **STORAGE, "weight_decay": 1e-2, "decoupled_weight_decay": True},
        with_grad_scale(ADAMW_KWARGS),
        per_tensor(adam_reference),
        required=("exp_avg", "exp_avg_sq"),
    ),
    Entry(
        fo.NAdam,
        {
            **COMMON,
            "lr": 2e-3,
            "betas": (0.9, 0.999),
            "eps": 1e-8,
            "momentum_decay": 4e-3,
            "decoupled_weight_decay": False,
        },
        NADAM_KWARGS,
        per_tensor(nadam_reference),
        required=("exp_avg", "exp_avg_sq"),
        scalars=("mu_product",),
    ),
    Entry(
        fo.RAdam,
        {**COMMON, "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "decoupled_weight_decay": False},
        RADAM_KWARGS,
        per_tensor(radam_reference),
        required=("exp_avg", "exp_avg_sq"),
        steps=(6, 8),
    ),
    Entry(
        fo.Adamax,
        {**COMMON, "lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8},
        ADAMAX_KWARGS,
        per_tensor(adamax_reference),
        required=("exp_avg", "exp_inf"),
    ),
    Entry(
        fo.Lion,
        {**COMMON, "lr": 1e-4, "betas": (0.9, 0.99)},
        LION_KWARGS,
        per_tensor(lion_reference),
        required=("exp_avg",),
        counts_steps=False,
    ),
    Entry(
        fo.AdagradNorm,
        {**COMMON, "lr": 1.0, "b0": 0.01, "scope": "global"},
        ADAGRAD_NORM_KWARGS,
        adagrad_norm_reference,
        init_only=("b0",),
        counts_steps=False,
        scoped=True,
    ),
]
ENTRIES = [pytest.param(e, id=str(e)) for e in REGISTRY]


def test_registry_covers_every_optimizer():
    exported = {getattr(fo, n) for n in fo.__all__}
    classes = {c for c in exported if isinstance(c, type) and issubclass(c, fo.Optimizer)} - {fo.Optimizer}
    assert classes <= {e.cls for e in REGISTRY}, "add an Entry for every optimizer class"


#: The settings every class adds to torch's (grad_scale etc., applied inside the step).
SCALING = {"grad_scale": None, "max_grad_norm": None, "skip_nonfinite": False}


@pytest.mark.parametrize("entry", ENTRIES)
def test_registry_defaults_are_the_classes(entry: Entry) -> None:
    assert entry.cls([np.zeros(1)]).defaults == {**entry.defaults, **SCALING}


# --------------------------------------------------------------------------------------------
# arrays

LAYOUTS = ("C", "F", "strided", "reversed", "transposed")
SHAPES = st.one_of(
    st.just(()),
    st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple),
    st.sampled_from([(0,), (1,), (3, 0, 2), (70_001,), (33_000, 3)]),
)


def values(seed: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Normal values over six decades, with some exact zeros (seeded: fast for big shapes)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)
    return np.asarray(np.where(rng.random(shape) < 0.1, 0.0, x), dtype=dtype)


def laid_out(data: np.ndarray, layout: str) -> np.ndarray:
    """A new array equal to ``data`` with the given memory layout."""
    if data.ndim == 0:
        return data.copy()
    if layout == "C":
        return np.ascontiguousarray(data)
    if layout == "F":
        return np.asfortranarray(data)
    if layout == "strided":
        base = np.zeros((*data.shape[:-1], 2 * data.shape[-1] + 1), dtype=data.dtype)
        out = base[..., 1::2]
    elif layout == "reversed":
        out = np.empty_like(data)[::-1]
    else:  # transposed: C order of the reversed axes, seen through .T
        out = np.empty(data.shape[::-1], dtype=data.dtype).T
    out[...] = data
    return out


@dataclass
class Setup:
    """A drawn optimizer problem: its arrays, groups and gradients per step."""

    entry: Entry
    defaults: dict[str, Any]
    groups: list[list[int]]  # parameter indices per group
    overrides: list[dict[str, Any]]  # per-group keyword arguments
    params: list[np.ndarray]
    grads: list[list[np.ndarray | None]]  # per step, per parameter (in optimizer order)
    use_parameter: bool = False

    def build(self) -> Any:
        if self.use_parameter:
            self.params = [fo.Parameter(p) for p in self.params]
        groups = [{"params": [self.params[i] for i in g], **o} for g, o in zip(self.groups, self.overrides)]
        return self.entry.cls(groups, **self.defaults)

    @property
    def order(self) -> list[int]:
        return [i for g in self.groups for i in g]

    def hypers(self) -> list[dict[str, Any]]:
        """Every group's hyperparameters, from torch's defaults and the drawn arguments."""
        base = {**self.entry.defaults, **self.defaults}
        return [{**base, **o} for o in self.overrides]

    def step(self, opt: Any, k: int) -> None:
        grads = [self.grads[k][i] for i in self.order]
        if self.use_parameter:
            for i, g in zip(self.order, grads):
                self.params[i].grad = g
            opt.step()
        else:
            opt.step(grads=grads)


@st.composite
def setups(draw: st.DrawFn, entry: Entry, steps: tuple[int, int] | None = None) -> Setup:
    n = draw(st.integers(1, 4))
    shapes = [draw(SHAPES) for _ in range(n)]
    # at most one large tensor, so that an example stays fast
    big = [i for i, s in enumerate(shapes) if int(np.prod(s)) > 1000]
    for i in big[1:]:
        shapes[i] = (3,)
    dtypes = [draw(st.sampled_from(FLOATS)) for _ in range(n)]
    seed = draw(st.integers(0, 2**32 - 1))
    params = [
        laid_out(values(seed + i, s, d), draw(st.sampled_from(LAYOUTS)))
        for i, (s, d) in enumerate(zip(shapes, dtypes))
    ]
    group_of = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    groups = [[i for i in range(n) if group_of[i] == g] for g in range(3)]
    groups = [g for g in groups if g]
    defaults = draw(entry.kwargs)
    overrides = [draw(st.just({}) | entry.kwargs) for _ in groups]
    grads = []
    for k in range(draw(st.integers(*(steps or entry.steps)))):
        row: list[np.ndarray | None] = []
        for i in range(n):
            if draw(st.integers(0, 4)) == 0:
                row.append(None)
            else:
                g = values(seed + 1000 * (k + 1) + i, shapes[i], dtypes[i])
                row.append(laid_out(g, draw(st.sampled_from(LAYOUTS))))
        grads.append(row)
    return Setup(entry, defaults, groups, overrides, params, grads, use_parameter=draw(st.booleans()))


# --------------------------------------------------------------------------------------------
# 1. steps against the references


def _reference_state(entry: Entry, setup: Setup) -> tuple[list[list[Tracked]], dict]:
    params = [[Tracked.exact(setup.params[i]) for i in g] for g in setup.groups]
    state: dict = {}
    if entry.init is not None:
        for gi, (g, h) in enumerate(zip(setup.groups, setup.hypers())):
            for i, index in enumerate(g):
                s = entry.init(h, setup.params[index])
                state[gi, i] = s
    return params, state


def _compare(
    entry: Entry, setup: Setup, opt: Any, params: list[list[Tracked]], state: dict, when: str
) -> None:
    for gi, g in enumerate(setup.groups):
        for i, index in enumerate(g):
            p = setup.params[index]
            where = f"{when}, param_groups[{gi}]['params'][{i}] {p.dtype}{p.shape}"
            assert_matches(np.asarray(p), params[gi][i], where)
            got = opt.state.get(p) or {}
            if entry.scoped:
                continue
            want = state.get((gi, i), {})
            if not entry.counts_steps:
                want = {k: v for k, v in want.items() if k != "step"}
            assert set(got) == set(want), f"{where}: state keys {sorted(got)} != {sorted(want)}"
            for key, value in want.items():
                if key in ("step", *entry.scalars):
                    assert got[key] == value, f"{where}: {key} {got[key]} != {value}"
                else:
                    assert_matches(got[key], value, f"{where}, state {key!r}")
    if entry.scoped:
        for gi, g in enumerate(setup.groups):
            for i, index in enumerate(g):
                key = scope_key(setup.hypers(), gi, i)
                got = opt.state.get(setup.params[index]) or {}
                if key in state:
                    assert_matches(np.float64(got["b_sq"]), state[key], f"{when}: b_sq of {key}")
                else:
                    assert "b_sq" not in got


@pytest.mark.parametrize("entry", ENTRIES)
@given(data=st.data())
def test_steps_match_the_reference(entry: Entry, data: st.DataObject) -> None:
    setup = data.draw(setups(entry))
    opt = setup.build()
    params, state = _reference_state(entry, setup)
    for k, row in enumerate(setup.grads):
        setup.step(opt, k)
        grads = [[row[i] for i in g] for g in setup.groups]
        entry.reference(setup.hypers(), params, grads, state)
        _compare(entry, setup, opt, params, state, f"step {k + 1}")


# --------------------------------------------------------------------------------------------
# 2. malformed steps


def snapshot(opt: Any, params: list[np.ndarray]) -> dict[str, Any]:
    """Everything a step could change, copied: parameters, gradients, state, param groups."""
    return {
        "params": [np.array(p, copy=True) for p in params],
        "grads": [None if getattr(p, "grad", None) is None else np.array(p.grad, copy=True) for p in params],
        "state": {
            i: {
                k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                for k, v in (opt.state.get(p) or {}).items()
            }
            for i, p in enumerate(params)
        },
        "groups": [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups],
    }


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Bitwise equality of nested snapshots (NaN equals NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=True), f"{where}: changed"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (
            f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        )
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


def _site(gi: int, i: int) -> str:
    return f"param_groups[{gi}]['params'][{i}]"


BAD_DTYPES = [np.int32, np.int64, np.float16, np.complex64, np.complex128, np.bool_]
GRAD_CORRUPTIONS = ("dtype", "other-float", "shape", "not-array", "alias", "read-only-param")
STATE_CORRUPTIONS = ("state-shape", "state-dtype", "state-missing", "state-not-array", "state-step")
GROUP_CORRUPTIONS = ("hyper-type", "grads-length")
SCOPED_CORRUPTIONS = ("state-b_sq",)


@st.composite
def malformed_steps(draw: st.DrawFn, entry: Entry) -> tuple[Setup, str, int, Any]:
    """A setup that stepped validly, one parameter (with a gradient) to corrupt, and how."""
    setup = draw(setups(entry, steps=(1, 2)))
    kinds = GRAD_CORRUPTIONS + GROUP_CORRUPTIONS + (SCOPED_CORRUPTIONS if entry.scoped else STATE_CORRUPTIONS)
    kind = draw(st.sampled_from(kinds))
    target = draw(st.integers(0, len(setup.params) - 1))
    return setup, kind, target, draw(st.sampled_from(BAD_DTYPES))


@pytest.mark.parametrize("entry", ENTRIES)
@given(data=st.data())
def test_malformed_step_raises_and_changes_nothing(entry: Entry, data: st.DataObject) -> None:
    setup, kind, target, bad_dtype = data.draw(malformed_steps(entry))
    opt = setup.build()
    for k in range(len(setup.grads) - 1):
        setup.step(opt, k)
    gi = next(g for g, members in enumerate(setup.groups) if target in members)
    i = setup.groups[gi].index(target)
    site = _site(gi, i)
    p = setup.params[target]
    grads = [setup.grads[-1][j] for j in setup.order]
    position = setup.order.index(target)
    if grads[position] is None:
        grads[position] = laid_out(values(7, p.shape, p.dtype), "C")
    match = re.escape(site)
    state = opt.state.get(p) or {}
    arrays = sorted(k for k, v in state.items() if isinstance(v, np.ndarray))
    if kind in ("state-shape", "state-dtype", "state-not-array"):
        assume(arrays)
    if kind == "dtype":
        grads[position] = np.ones(p.shape, dtype=bad_dtype)
    elif kind == "other-float":
        grads[position] = grads[position].astype(np.float32 if p.dtype == np.float64 else np.float64)
    elif kind == "shape":
        grads[position] = np.zeros((*p.shape, 2), dtype=p.dtype)
    elif kind == "not-array":
        grads[position] = data.draw(st.sampled_from([p.tolist() if p.ndim else [1.0], "grad", object()]))
    elif kind == "alias":
        assume(p.size > 0)
        grads[position] = p
    elif kind == "read-only-param":
        p.flags.writeable = False
    elif kind == "state-shape":
        state[data.draw(st.sampled_from(arrays))] = np.zeros((*p.shape, 2), dtype=p.dtype)
    elif kind == "state-dtype":
        state[data.draw(st.sampled_from(arrays))] = np.zeros(p.shape, dtype=bad_dtype)
    elif kind == "state-missing":
        required = [k for k in (*entry.required, "step", *entry.scalars) if k in state]
        assume(required and len(state) > 1)  # an emptied state is a fresh one, as torch's
        del state[data.draw(st.sampled_from(required))]
    elif kind == "state-step":
        scalars = [k for k in ("step", *entry.scalars) if k in state]
        assume(scalars)
        state[data.draw(st.sampled_from(scalars))] = data.draw(
            st.sampled_from(["3", None, -1.0, float("nan"), np.zeros(2)])
        )
    elif kind == "state-not-array":
        state[data.draw(st.sampled_from(arrays))] = "zeros"
    elif kind == "state-b_sq":
        assume("b_sq" in state)
        state["b_sq"] = data.draw(st.sampled_from(["abc", None, -1.0, 0.0, float("nan"), float("inf")]))
    elif kind == "hyper-type":
        name = data.draw(
            st.sampled_from(
                sorted(k for k in opt.param_groups[gi] if k not in ("params", "scope", *entry.init_only))
            )
        )
        bad = ["0.1", None, [0.1, 0.2, 0.3]]
        if name in ("grad_scale", "max_grad_norm"):
            bad = [b for b in bad if b is not None]  # None is their default: off
        opt.param_groups[gi][name] = data.draw(st.sampled_from(bad))
        match = re.escape(f"param_groups[{gi}]")
    elif kind == "grads-length":
        grads.append(data.draw(st.sampled_from([None, grads[0]])))
        match = "grads"
    before = snapshot(opt, setup.params)
    try:
        with pytest.raises((TypeError, ValueError), match=match):
            opt.step(grads=grads)
        assert_same(snapshot(opt, setup.params), before, kind)
    finally:
        p.flags.writeable = True


# --------------------------------------------------------------------------------------------
# 3. corrupted state dicts

LOAD_CORRUPTIONS = (
    "drop-state",
    "drop-groups",
    "extra-group",
    "missing-group",
    "group-params-length",
    "group-not-dict",
    "unknown-param-id",
    "entry-not-dict",
    "hyper-type",
    "hyper-value",
    "state-shape",
    "state-dtype",
    "state-string",
    "state-missing-key",
    "state-unknown-key",
    "step-bad",
)


@pytest.mark.parametrize("entry", ENTRIES)
@given(data=st.data())
def test_corrupted_state_dict_is_refused(entry: Entry, data: st.DataObject) -> None:
    setup = data.draw(setups(entry, steps=(1, 2)))
    opt = setup.build()
    for k in range(len(setup.grads)):
        setup.step(opt, k)
    sd = opt.state_dict()
    kind = data.draw(st.sampled_from(LOAD_CORRUPTIONS))
    match: str | None = None
    entries = sorted(sd["state"])
    sites = {
        index: _site(gi, i) for gi, g in enumerate(sd["param_groups"]) for i, index in enumerate(g["params"])
    }
    if kind == "drop-state":
        del sd["state"]
    elif kind == "drop-groups":
        del sd["param_groups"]
    elif kind == "extra-group":
        sd["param_groups"].append(copy.deepcopy(sd["param_groups"][-1]))
        match = "groups"
    elif kind == "missing-group":
        sd["param_groups"].pop()
        match = "groups"
    elif kind == "group-params-length":
        gi = data.draw(st.integers(0, len(sd["param_groups"]) - 1))
        sd["param_groups"][gi]["params"].append(max(sites) + 1)
        match = f"group {gi}"
    elif kind == "group-not-dict":
        gi = data.draw(st.integers(0, len(sd["param_groups"]) - 1))
        sd["param_groups"][gi] = sd["param_groups"][gi]["params"]
        match = f"group {gi}"
    elif kind == "unknown-param-id":
        sd["state"][max(sites) + 1] = copy.deepcopy(sd["state"][entries[0]]) if entries else {}
        match = "no group lists"
    elif kind in ("hyper-type", "hyper-value"):
        gi = data.draw(st.integers(0, len(sd["param_groups"]) - 1))
        group = sd["param_groups"][gi]
        name = data.draw(st.sampled_from(sorted(k for k in group if k not in ("params",))))
        bad = ["0.1", None, object()] if kind == "hyper-type" else [-1.0, float("nan")]
        if name in ("grad_scale", "max_grad_norm"):
            bad = [b for b in bad if b is not None]  # None is their default: off
        if name == "betas":
            group[name] = (data.draw(st.sampled_from(bad)), 0.9)
        elif isinstance(group[name], bool) or name == "scope":
            group[name] = data.draw(st.sampled_from(["yes", 2, None]))
        else:
            group[name] = data.draw(st.sampled_from(bad))
        match = f"group {gi}"
    else:  # corruptions of one parameter's state
        assume(entries)
        index = data.draw(st.sampled_from(entries))
        entry_state = sd["state"][index]
        match = re.escape(sites[index])
        arrays = sorted(k for k, v in entry_state.items() if isinstance(v, np.ndarray))
        if kind == "entry-not-dict":
            sd["state"][index] = list(entry_state.values())
        elif kind == "state-unknown-key":
            entry_state["momentum"] = np.zeros(1)
        elif kind == "step-bad":
            first = "b_sq" if entry.scoped else "step"
            scalars = [k for k in (first, *entry.scalars) if k in entry_state]
            assume(scalars)
            entry_state[data.draw(st.sampled_from(scalars))] = data.draw(
                st.sampled_from(["3", -1.0, float("nan"), [1.0, 2.0], None])
            )
        elif kind == "state-missing-key":
            required = [k for k in (*entry.required, "step", *entry.scalars) if k in entry_state]
            assume(required and len(entry_state) > 1)  # an emptied state is a fresh one, as torch's
            del entry_state[data.draw(st.sampled_from(required))]
        else:
            assume(arrays)
            name = data.draw(st.sampled_from(arrays))
            shape = entry_state[name].shape
            if kind == "state-shape":
                entry_state[name] = np.zeros((*shape, 2))
            elif kind == "state-dtype":
                entry_state[name] = np.zeros(
                    shape, dtype=data.draw(st.sampled_from(BAD_DTYPES[:2] + BAD_DTYPES[3:]))
                )
            else:
                entry_state[name] = data.draw(st.sampled_from(["zeros", [["a"]], {"a": 1}]))
    before = snapshot(opt, setup.params)
    saved = opt.state_dict()
    with pytest.raises((TypeError, ValueError), match=match):
        opt.load_state_dict(sd)
    assert_same(snapshot(opt, setup.params), before, kind)
    assert_same(opt.state_dict(), saved, kind)
