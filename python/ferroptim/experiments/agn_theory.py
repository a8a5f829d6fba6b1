r"""``agn-theory``: the lecture's AdaGrad-Norm theorems, checked run by run.

The lecture's three "Scalar AdaGrad" slides state results of Ward, Wu & Bottou 2018
(arXiv:1806.01811) for AdaGrad-Norm with ``η = 1``, written here with the paper's
indexing (``docs/experiments.md`` derives each statement and the corrections to the
slides)::

    b_k² = b_{k−1}² + ‖g_{k−1}‖²,    θ_k = θ_{k−1} − g_{k−1} / b_k,    g_{k−1} = ∇F(θ_{k−1})

with ``a_k = ‖∇F(θ_k)‖²`` and ``F(θ)`` standing for ``F(θ) − F*``:

1. ``min_{0≤k<T} a_k ≤ ε`` for ``T = 1 + ⌈2ε⁻¹F(θ₀)(b₀ + 2F(θ₀))⌉`` if ``b₀ ≥ L`` and
   ``T = 1 + ⌈ε⁻¹(L² − b₀² + 4(F(θ₀) + (3/4 + log(L/b₀))L)²)⌉`` if ``b₀ < L``;
2. gradient descent with the fixed step ``1/b`` can diverge if ``b < L/2`` and needs at
   most ``T = 2bε⁻¹F(θ₀)`` iterations if ``b ≥ L``;
3. the proof's ingredients: the two sum inequalities, the lemma that after
   ``N = ⌈ε⁻¹(L² − b₀²)⌉ + 1`` iterations ``min_{k<N} a_k ≤ ε`` or ``b_N ≥ L``, and, with
   ``k₀`` the first index with ``b_{k₀} ≥ L``, ``b_k ≤ b_{k₀−1} + 2F(θ_{k₀−1})`` for
   ``k ≥ k₀`` and ``F(θ_{k₀−1}) ≤ F(θ₀) + (L/2)(1 + 2 log(b_{k₀−1}/b₀))``;
4. with minibatch gradients, ``b_k ≈ c_g √k`` and ``min_ℓ ‖∇F(θ_ℓ)‖²`` falls like ``c_g/√N``.

Every problem has an exact smoothness constant ``L`` and an exact (or Newton-solved)
``F*``. ``fo.AdagradNorm(lr=1, b0=b0)`` does every AdaGrad-Norm update and
``fo.SGD(lr=1/b)`` every fixed-step one; the run functions take the AdaGrad-Norm
optimizer as a factory so that tests can substitute deliberately wrong ones. Written
out: ``agn_theory.png``, ``agn_theory.csv`` (one row per check) and ``agn_theory.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import ferroptim as fo

from .plotting import axes_grid, save
from .training import progress_bar


class StepsizeOptimizer(Protocol):
    """What the runs need from an AdaGrad-Norm optimizer: ``step()`` from ``θ.grad``,
    and ``b(θ)``, the ``b_k`` that scaled the last step."""

    def step(self) -> Any: ...

    def b(self, param: Any) -> float: ...


#: Builds an AdaGrad-Norm optimizer over ``[θ]`` starting from ``b0``.
Factory = Callable[[list[fo.Parameter], float], StepsizeOptimizer]


def adagrad_norm(params: list[fo.Parameter], b0: float) -> fo.AdagradNorm:
    """ferroptim's AdaGrad-Norm in the lecture's form: ``η = 1``, one global ``b``."""
    return fo.AdagradNorm(params, lr=1.0, b0=b0)


# --- problems with exact L and F* ---------------------------------------------------


@dataclass
class Problem:
    """A smooth ``F`` with its smoothness constant ``L`` (the smallest one: each
    ``L_note`` says where it is attained), its infimum ``F*`` and a start ``θ₀``."""

    name: str
    description: str
    F: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    L: float
    F_star: float
    theta0: np.ndarray
    L_note: str

    def gap(self, theta: np.ndarray) -> float:
        """``F(θ) − F*``."""
        return self.F(theta) - self.F_star


def quadratic(name: str, eigenvalues: np.ndarray, theta0_eig: np.ndarray, seed: int) -> Problem:
    """``F(θ) = ½ θᵀAθ`` with ``A = Q diag(λ) Qᵀ`` (``Q`` a random rotation), ``F* = 0``,
    ``L = max λ`` (``∇F`` is linear: ``‖∇F(x) − ∇F(y)‖ ≤ ‖A‖‖x − y‖`` with equality along
    the top eigenvector); ``θ₀ = Q theta0_eig``."""
    d = len(eigenvalues)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    A = (q * eigenvalues) @ q.T
    spread = f"{eigenvalues.min():.3g}..{eigenvalues.max():.3g}"
    return Problem(
        name,
        f"½θᵀAθ, d = {d}, eigenvalues {spread}",
        lambda t: 0.5 * float(t @ A @ t),
        lambda t: A @ t,
        float(eigenvalues.max()),
        0.0,
        q @ theta0_eig,
        "L = λ_max(A), the Hessian everywhere",
    )


def quadratic_spread(seed: int, dim: int = 40) -> Problem:
    """Eigenvalues log-spaced from 10⁻² to 1, a standard normal start."""
    lam = np.geomspace(1e-2, 1.0, dim)
    return quadratic("quad", lam, np.random.default_rng(seed + 1).normal(size=dim), seed)


def quadratic_slow(seed: int) -> Problem:
    """Eigenvalue 1 (that is ``L``) and 19 eigenvalues 0.01 that carry the start
    (``‖θ₀‖ = 1``, ``F(θ₀) ≈ 0.005``): with ``b ≥ L`` the gradient shrinks by only
    ``1 − 0.01/b`` per step, and the bound of claim 1 comes within a factor ``2e ≈ 5.4``
    of the observed count (``docs/experiments.md`` derives why)."""
    lam = np.array([1.0] + [1e-2] * 19)
    start = np.random.default_rng(seed + 1).normal(size=20)
    start[0] = 1e-3
    start[1:] /= np.linalg.norm(start[1:])
    return quadratic("quad-slow", lam, start, seed)


def logistic_digits(lam: float = 0.1) -> Problem:
    """Mean logistic loss with ℓ2 penalty on scikit-learn's digits, 0–4 against 5–9:
    ``F(θ) = m⁻¹ Σ log(1 + exp(−y_i x_iᵀθ)) + (λ/2)‖θ‖²``, ``x_i`` the 64 pixels in
    [0, 1] and a 1, ``y_i = ±1``, ``θ₀ = 0``.

    The Hessian is ``m⁻¹ Σ σ_i(1 − σ_i) x_i x_iᵀ + λI ≼ XᵀX/(4m) + λI`` since
    ``σ(1 − σ) ≤ 1/4``, with equality at ``θ = 0`` where every margin is 0: so
    ``L = ‖X‖₂²/(4m) + λ`` is the smallest constant. The penalty makes ``F`` strongly
    convex, so ``F*`` is attained; Newton's method finds it to rounding.
    """
    X, y, L, grad_rows = _logistic(lam)
    m = len(y)

    def F(t: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -y * (X @ t)).mean() + 0.5 * lam * t @ t)

    def grad(t: np.ndarray) -> np.ndarray:
        return grad_rows(t, slice(None))

    theta = np.zeros(X.shape[1])
    for _ in range(50):
        s = _sigmoid(X @ theta)
        hessian = (X.T * (s * (1 - s))) @ X / m + lam * np.eye(X.shape[1])
        newton = np.linalg.solve(hessian, grad(theta))
        theta -= newton
        if np.linalg.norm(newton) < 1e-13:
            break
    return Problem(
        "logreg",
        f"ℓ2-logistic on digits 0–4 vs 5–9, m = {m}, d = {X.shape[1]}, λ = {lam:g}",
        F,
        grad,
        L,
        F(theta),
        np.zeros(X.shape[1]),
        "L = ‖X‖²/(4m) + λ, the Hessian at θ = 0",
    )


def nonconvex(seed: int, dim: int = 20, alpha: float = 1.0, omega: float = 2.0) -> Problem:
    """``F(θ) = ½‖θ‖² + α Σ_i (1 − cos(ω (Qθ)_i))``, ``Q`` a random rotation: many local
    minima. The Hessian is ``I + αω² Qᵀ diag(cos(ωQθ)) Q``, between ``1 − αω²`` and
    ``1 + αω²``, the top attained at ``θ = 0``: ``L = 1 + αω²``, and ``F ≥ 0 = F(0)``."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))

    def F(t: np.ndarray) -> float:
        return float(0.5 * t @ t + alpha * np.sum(1 - np.cos(omega * (q @ t))))

    def grad(t: np.ndarray) -> np.ndarray:
        return t + alpha * omega * q.T @ np.sin(omega * (q @ t))

    start = np.random.default_rng(seed + 1).normal(scale=3.0, size=dim)
    return Problem(
        "nonconvex",
        f"½‖θ‖² + Σ(1 − cos 2(Qθ)_i), d = {dim}, Hessian eigenvalues in [−3, 5]",
        F,
        grad,
        1 + alpha * omega**2,
        0.0,
        start,
        "L = 1 + αω², the Hessian at θ = 0",
    )


def problems(seed: int) -> list[Problem]:
    """The batch-gradient problems of claims 1–3."""
    return [quadratic_spread(seed), quadratic_slow(seed), logistic_digits(), nonconvex(seed)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


def _logistic(lam: float) -> tuple[np.ndarray, np.ndarray, float, Callable[[np.ndarray, Any], np.ndarray]]:
    """The digits as ``X`` (pixels in [0, 1] and a 1) and ``y = ±1`` (0–4 against 5–9), the
    smallest ``L``, and the ℓ2-logistic gradient over the rows ``rows`` of ``X``."""
    from .data import digits

    every = digits(test_fraction=0.0)
    X = np.hstack([every.x_train, np.ones((len(every.y_train), 1))])
    y = np.where(every.y_train >= 5, 1.0, -1.0)

    def grad_rows(t: np.ndarray, rows: Any) -> np.ndarray:
        x, yy = X[rows], y[rows]
        return x.T @ (-yy * _sigmoid(-yy * (x @ t))) / len(yy) + lam * t

    return X, y, float(np.linalg.norm(X, 2) ** 2 / (4 * len(y)) + lam), grad_rows


# --- runs ---------------------------------------------------------------------------


@dataclass
class Trace:
    """One run on a problem: ``a[k] = ‖∇F(θ_k)‖²``, ``gap[k] = F(θ_k) − F*`` and
    ``b[k] = b_k`` (for fixed steps ``b``) for ``k = 0 … len(a) − 1``."""

    problem: str
    method: str
    b0: float
    a: np.ndarray
    gap: np.ndarray
    b: np.ndarray
    diverged: bool

    def first_below(self, eps: float) -> int | None:
        """The first ``k`` with ``a_k ≤ ε``, or None."""
        hits = np.flatnonzero(self.a <= eps)
        return int(hits[0]) if len(hits) else None


def run_gradient(
    problem: Problem, b0: float, *, until: float, max_iter: int, factory: Factory | None = None
) -> Trace:
    """AdaGrad-Norm from ``b0``, built by ``factory`` (default ``adagrad_norm``), on the
    full gradient; stops once ``a_k ≤ until``, after ``max_iter`` steps, or when
    ``F − F*`` passes ``10¹⁰(F(θ₀) − F* + 1)`` (diverged)."""
    theta = fo.Parameter(problem.theta0.copy())
    opt = (factory or adagrad_norm)([theta], b0)
    return _trace(problem, "AdaGrad-Norm", b0, theta, opt, until, max_iter, opt.b)


def run_fixed(problem: Problem, b: float, *, until: float, max_iter: int) -> Trace:
    """Gradient descent with the fixed step ``1/b`` (``fo.SGD(lr=1/b)``)."""
    theta = fo.Parameter(problem.theta0.copy())
    return _trace(problem, "GD", b, theta, fo.SGD([theta], lr=1.0 / b), until, max_iter, lambda _: b)


def _trace(
    problem: Problem,
    method: str,
    b0: float,
    theta: fo.Parameter,
    opt: Any,
    until: float,
    max_iter: int,
    b_of: Callable[[Any], float],
) -> Trace:
    a, gap, b = [], [], [b0]
    limit = 1e10 * (problem.gap(problem.theta0) + 1)
    diverged = False
    with np.errstate(all="ignore"):
        for k in range(max_iter + 1):
            g = problem.grad(theta)
            a.append(float(g @ g))
            gap.append(problem.gap(theta))
            if not gap[-1] < limit:
                diverged = True
                break
            if a[-1] <= until or k == max_iter:
                break
            theta.grad = g
            opt.step()
            b.append(float(b_of(theta)))
    return Trace(problem.name, method, b0, np.array(a), np.array(gap), np.array(b[: len(a)]), diverged)


# --- claim 1: iteration bound ---------------------------------------------------------


def bound_T(L: float, F0: float, b0: float, eps: float) -> int:
    """The lecture's (and Ward et al.'s) bound on the iterations to ``min a_k ≤ ε``."""
    if b0 >= L:
        return 1 + math.ceil(2 / eps * F0 * (b0 + 2 * F0))
    return 1 + math.ceil((L**2 - b0**2 + 4 * (F0 + (0.75 + math.log(L / b0)) * L) ** 2) / eps)


@dataclass
class Claim1:
    """One (problem, ``b₀``, ``ε``): the observed ``T_obs = 1 + first k with a_k ≤ ε``
    (None: not reached by the run's end) against the bound."""

    problem: str
    b0: float
    eps: float
    bound: int
    observed: int | None
    ok: bool

    @property
    def ratio(self) -> float:
        """``T / T_obs`` (≥ 1 where the bound holds)."""
        return self.bound / self.observed if self.observed else float("nan")


# --- claim 3: the proof's ingredients -------------------------------------------------


@dataclass
class Claim3:
    """The proof's quantities on one AdaGrad-Norm run (``F`` meaning ``F − F*``)."""

    problem: str
    b0: float
    eps: float
    k0: int | None
    b_before: float  # b_{k₀−1} (b₀ when k₀ = 0)
    F_before: float  # F(θ_{k₀−1}) (F(θ₀) when k₀ = 0)
    b_max: float  # max_{k ≥ k₀} b_k over the run
    lemma_N: int
    lemma_ok: bool
    printed_F_bound: float  # (L/2)(1 + 2 log(b_{k₀−1}/b₀)), as the slide prints it
    corrected_F_bound: float  # F(θ₀) + (L/2)(1 + 2 log(b_{k₀−1}/b₀))
    log_sum: float  # Σ a_ℓ / Σ_{i≤ℓ} a_i over the run
    log_printed: float  # log Σ a_i + 1
    log_corrected: float  # log(Σ a_i / a_1) + 1
    sqrt_sum: float  # Σ a_ℓ / sqrt(Σ_{i≤ℓ} a_i)
    sqrt_bound: float  # 2 sqrt(Σ a_i)

    @property
    def b_ok(self) -> bool:
        return self.k0 is None or self.b_max <= (self.b_before + 2 * self.F_before) * (1 + 1e-12)

    @property
    def F_ok(self) -> bool:
        return not self.k0 or self.F_before <= self.corrected_F_bound * (1 + 1e-12) + 1e-12

    @property
    def F_printed_ok(self) -> bool:
        return not self.k0 or self.F_before <= self.printed_F_bound

    @property
    def sums_ok(self) -> bool:
        return self.log_sum <= self.log_corrected * (1 + 1e-12) and self.sqrt_sum <= self.sqrt_bound * (
            1 + 1e-12
        )

    @property
    def ok(self) -> bool:
        return self.lemma_ok and self.b_ok and self.F_ok and self.sums_ok


def claim3(problem: Problem, trace: Trace, eps: float) -> Claim3:
    """Evaluates the proof's ingredients on ``trace`` (its ``a_k`` and the optimizer's ``b_k``)."""
    L, F0 = problem.L, trace.gap[0]
    above = np.flatnonzero(trace.b >= L)
    k0 = int(above[0]) if len(above) else None
    before = max((k0 or 0) - 1, 0)
    b_before, F_before = float(trace.b[before]), float(trace.gap[before])
    b_max = float(trace.b[k0 or 0 :].max()) if k0 is not None else float("nan")
    N = max(math.ceil((L**2 - trace.b0**2) / eps) + 1, 0)
    reached = trace.first_below(eps)
    lemma_ok = (reached is not None and reached < N) or (N < len(trace.b) and trace.b[N] >= L)
    if reached is None and N >= len(trace.b):
        lemma_ok = True  # the run ended before N: nothing to check
    growth = 0.5 * L * (1 + 2 * math.log(b_before / trace.b0))
    a = trace.a[:-1] if len(trace.a) > 1 else trace.a  # the gradients that made steps
    S = np.cumsum(a)
    return Claim3(
        problem=problem.name,
        b0=trace.b0,
        eps=eps,
        k0=k0,
        b_before=b_before,
        F_before=F_before,
        b_max=b_max,
        lemma_N=N,
        lemma_ok=bool(lemma_ok),
        printed_F_bound=growth,
        corrected_F_bound=F0 + growth,
        log_sum=float(np.sum(a / S)),
        log_printed=float(math.log(S[-1]) + 1),
        log_corrected=float(math.log(S[-1] / a[0]) + 1),
        sqrt_sum=float(np.sum(a / np.sqrt(S))),
        sqrt_bound=float(2 * math.sqrt(S[-1])),
    )


# --- claim 2: fixed steps ----------------------------------------------------------------


def regime(b: float, L: float) -> str:
    """Where ``b`` sits against ``L/2`` and ``L``."""
    return "b < L/2" if b < L / 2 else ("L/2 ≤ b < L" if b < L else "b ≥ L")


@dataclass
class Claim2:
    """GD with step ``1/b`` on one problem at one ``ε``, beside AdaGrad-Norm from ``b₀ = b``."""

    problem: str
    b: float
    eps: float
    regime: str
    diverged: bool
    observed: int | None
    bound: float | None  # 2bε⁻¹F(θ₀) for b ≥ L; 2b²F(θ₀)/((2b − L)ε) for L/2 < b < L (derived)
    agn_observed: int | None

    @property
    def ok(self) -> bool:
        if self.bound is None:
            return True
        return self.observed is not None and self.observed <= math.ceil(self.bound)


def fixed_bound(b: float, L: float, F0: float, eps: float) -> float | None:
    """Iterations within which ``min a_k ≤ ε`` for GD with step ``1/b``: the lecture's
    ``2bF(θ₀)/ε`` for ``b ≥ L``; ``2b²F(θ₀)/((2b − L)ε)`` for ``L/2 < b < L`` (the same
    descent argument); none below ``L/2``."""
    if b >= L:
        return 2 * b * F0 / eps
    if b > L / 2:
        return 2 * b**2 * F0 / ((2 * b - L) * eps)
    return None


# --- claim 4: minibatch gradients ---------------------------------------------------------


@dataclass
class StochasticProblem:
    """A finite sum ``F = m⁻¹ Σ f_i`` with minibatch gradients ``g = B⁻¹ Σ_{i∈Λ} ∇f_i``."""

    name: str
    description: str
    grad_rows: Callable[[np.ndarray, Any], np.ndarray]  # (θ, rows) -> their mean gradient
    m: int
    theta0: np.ndarray
    L: float


def least_squares(seed: int, m: int = 1000, dim: int = 20, noise: float = 5.0) -> StochasticProblem:
    """``F(θ) = (2m)⁻¹ ‖Aθ − y‖²``, ``A`` standard normal, ``y = Aθ_true + noise``;
    ``L = λ_max(AᵀA)/m``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, dim))
    y = A @ rng.normal(size=dim) + noise * rng.normal(size=m)

    def grad_rows(t: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return A[rows].T @ (A[rows] @ t - y[rows]) / len(rows)

    L = float(np.linalg.norm(A, 2) ** 2 / m)
    return StochasticProblem(
        "least-squares", f"(2m)⁻¹‖Aθ − y‖², m = {m}, d = {dim}", grad_rows, m, np.zeros(dim), L
    )


def logistic_minibatch(lam: float = 0.1) -> StochasticProblem:
    """The ℓ2-logistic loss of ``logistic_digits`` as a finite sum over the 1,797 digits."""
    X, y, L, grad_rows = _logistic(lam)
    return StochasticProblem(
        "logreg", f"ℓ2-logistic on digits, m = {len(y)}", grad_rows, len(y), np.zeros(X.shape[1]), L
    )


@dataclass
class Claim4:
    """One minibatch AdaGrad-Norm run: ``b_k`` fitted by ``c√k`` and the rate."""

    problem: str
    b0: float
    batch_size: int
    b: np.ndarray  # b_k, k = 0..N
    min_grad_sq: np.ndarray  # min_{ℓ<N} ‖∇F(θ_ℓ)‖² for N = 1..steps
    c: float
    r2: float
    slope: float
    c_g: float  # sqrt(mean_k ‖g_k‖²) over the run's own minibatch gradients
    rate_slope: float

    @property
    def ok(self) -> bool:
        return self.r2 >= 0.99 and 0.45 <= self.slope <= 0.55 and 0.9 <= self.c / self.c_g <= 1.1


def fit_sqrt(b: np.ndarray) -> tuple[float, float, float]:
    """``b_k ≈ c√k`` by least squares over all ``k ≥ 1``: ``c`` and the ``R²`` of that fit;
    and the slope of ``log b_k`` against ``log k`` over ``k ≥ N/10``, past the first
    steps' larger gradients (``b_k² = b₀² + Σ_{j<k} ‖g_j‖²`` keeps their lump, which
    flattens the slope early on)."""
    k = np.arange(1, len(b))
    root, bk = np.sqrt(k), b[1:]
    c = float(root @ bk / (root @ root))
    r2 = 1 - float(np.sum((bk - c * root) ** 2) / np.sum((bk - bk.mean()) ** 2))
    late = k >= len(b) // 10
    slope = float(np.polyfit(np.log(k[late]), np.log(bk[late]), 1)[0])
    return c, r2, slope


def run_stochastic(
    problem: StochasticProblem,
    *,
    steps: int,
    batch_size: int,
    b0: float,
    seed: int,
    factory: Factory | None = None,
    progress: Callable[[], object] | None = None,
) -> Claim4:
    """AdaGrad-Norm with minibatch gradients (rows drawn uniformly without replacement,
    independently each step, so ``E g_k = ∇F(θ_k)``); records ``b_k``, ``‖g_k‖²`` and
    the full gradient's ``‖∇F(θ_k)‖²``."""
    rng = np.random.default_rng(seed)
    theta = fo.Parameter(problem.theta0.copy())
    opt = (factory or adagrad_norm)([theta], b0)
    everything = np.arange(problem.m)
    b, g_sq, full_sq = [b0], [], []
    for k in range(steps):
        full = problem.grad_rows(theta, everything)
        full_sq.append(float(full @ full))
        g = problem.grad_rows(theta, rng.choice(problem.m, batch_size, replace=False))
        g_sq.append(float(g @ g))
        theta.grad = g
        opt.step()
        b.append(float(opt.b(theta)))
        if progress is not None and (k + 1) % 1000 == 0:
            progress()
    bs = np.array(b)
    c, r2, slope = fit_sqrt(bs)
    min_sq = np.minimum.accumulate(np.array(full_sq))
    n = np.unique(np.geomspace(10, steps, 30).astype(int))
    rate_slope = float(np.polyfit(np.log(n), np.log(min_sq[n - 1]), 1)[0])
    return Claim4(
        problem.name,
        b0,
        batch_size,
        bs,
        min_sq,
        c,
        r2,
        slope,
        float(math.sqrt(np.mean(g_sq))),
        rate_slope,
    )


# --- the experiment ---------------------------------------------------------------------


@dataclass
class Result:
    """Every check of one run of the experiment."""

    problems: list[Problem]
    claim1: list[Claim1] = field(default_factory=list)
    claim2: list[Claim2] = field(default_factory=list)
    claim3: list[Claim3] = field(default_factory=list)
    claim4: list[Claim4] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    fixed: list[Trace] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Each check that does not hold, as text (claims 1–4; empty when all hold)."""
        out = [f"claim 1 {c.problem} b0={c.b0:.3g} ε={c.eps:.3g}" for c in self.claim1 if not c.ok]
        out += [f"claim 2 {c.problem} b={c.b:.3g} ε={c.eps:.3g}" for c in self.claim2 if not c.ok]
        for c in self.claim3:
            for name in ("lemma_ok", "b_ok", "F_ok", "sums_ok"):
                if not getattr(c, name):
                    out.append(f"claim 3 {name[:-3]} {c.problem} b0={c.b0:.3g}")
        out += [f"claim 4 {c.problem}" for c in self.claim4 if not c.ok]
        return out


#: b₀ (and the fixed b) as multiples of L, on both sides of L.
B0_FACTORS = (0.01, 0.1, 0.5, 1.0, 2.0, 10.0)
#: ε as fractions of ‖∇F(θ₀)‖².
EPS_FRACTIONS = (0.35, 1e-2, 1e-4)
#: The b of the fixed steps 1/b, as multiples of L, below L/2, between L/2 and L, and above L.
FIXED_FACTORS = (0.25, 0.75, 1.0, 2.0, 10.0)
#: ``--quick``: a reduced grid for claims 1–3 and 5,000 minibatch steps for claim 4.
QUICK: dict[str, Any] = dict(
    b0_factors=(0.1, 1.0, 10.0), eps_fractions=(0.35, 1e-2), fixed_factors=(0.25, 0.75, 2.0), steps=5000
)


def run(
    *,
    seed: int = 0,
    b0_factors: Iterable[float] = B0_FACTORS,
    eps_fractions: Iterable[float] = EPS_FRACTIONS,
    fixed_factors: Iterable[float] = FIXED_FACTORS,
    problem_list: list[Problem] | None = None,
    stochastic: list[StochasticProblem] | None = None,
    steps: int = 10_000,
    batch_size: int = 8,
    max_iter: int = 200_000,
    factory: Factory | None = None,
    progress: bool = True,
) -> Result:
    """Claims 1–3 on ``problem_list`` (default ``problems(seed)``) over ``b0_factors × L``
    and ``eps_fractions × ‖∇F(θ₀)‖²``, and claim 4 on ``stochastic`` (default: digits
    logistic regression and least squares) over ``steps`` minibatch steps, with the
    AdaGrad-Norm optimizers built by ``factory`` (default ``fo.AdagradNorm``)."""
    b0_factors, eps_fractions, fixed_factors = list(b0_factors), list(eps_fractions), list(fixed_factors)
    probs = problems(seed) if problem_list is None else problem_list
    stoch = [logistic_minibatch(), least_squares(seed)] if stochastic is None else stochastic
    total = len(probs) * (len(b0_factors) + len(fixed_factors)) + len(stoch)
    bar = progress_bar(total, "agn-theory", enabled=progress, unit="run")
    result = Result(probs)
    for p in probs:
        F0, a0 = p.gap(p.theta0), float(np.sum(p.grad(p.theta0) ** 2))
        epsilons = [f * a0 for f in eps_fractions]
        agn: dict[float, Trace] = {}
        for factor in b0_factors:
            b0 = factor * p.L
            cap = min(max_iter, max(bound_T(p.L, F0, b0, e) for e in epsilons))
            trace = run_gradient(p, b0, until=min(epsilons), max_iter=cap, factory=factory)
            agn[factor] = trace
            result.traces.append(trace)
            for eps in epsilons:
                T, k = bound_T(p.L, F0, b0, eps), trace.first_below(eps)
                observed = None if k is None else k + 1
                # not reached: a failure if the run got past T, else undecided (counted as held)
                ok = observed <= T if observed is not None else len(trace.a) < T and not trace.diverged
                result.claim1.append(Claim1(p.name, b0, eps, T, observed, ok))
            result.claim3.append(claim3(p, trace, min(epsilons)))
            bar.update()
        eps = epsilons[len(epsilons) // 2]
        for factor in fixed_factors:
            b = factor * p.L
            bound = fixed_bound(b, p.L, F0, eps)
            cap = min(max_iter, math.ceil(bound) + 1 if bound is not None else 2_000)
            trace = run_fixed(p, b, until=eps, max_iter=cap)
            result.fixed.append(trace)
            k = trace.first_below(eps)
            same = agn.get(factor) or run_gradient(p, b, until=eps, max_iter=cap, factory=factory)
            k_agn = same.first_below(eps)
            result.claim2.append(
                Claim2(
                    p.name,
                    b,
                    eps,
                    regime(b, p.L),
                    trace.diverged,
                    None if k is None else k + 1,
                    bound,
                    None if k_agn is None else k_agn + 1,
                )
            )
            bar.update()
    for sp in stoch:
        result.claim4.append(
            run_stochastic(sp, steps=steps, batch_size=batch_size, b0=0.1 * sp.L, seed=seed, factory=factory)
        )
        bar.update()
    bar.close()
    return result


# --- output ----------------------------------------------------------------------------


def _mark(bound: float, ok: bool, k0: int | None) -> str:
    """A bound with ✓/✗, or — where it does not apply (``k₀`` is 0 or never came)."""
    return f"{bound:.3g}{'✓' if ok else '✗'}" if k0 else "—"


def _n(value: int | float | None) -> str:
    return "—" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def table(result: Result) -> str:
    """The four claims as text tables."""
    lines = ["Problems (L exact, F* exact or Newton-solved; F0 = F(θ0) − F*):"]
    for p in result.problems:
        lines.append(f"  {p.name:<10} L = {p.L:<8.4g} F0 = {p.gap(p.theta0):<8.4g} {p.description}")
    a0 = {p.name: float(np.sum(p.grad(p.theta0) ** 2)) for p in result.problems}
    L = {p.name: p.L for p in result.problems}
    fractions = list(dict.fromkeys(round(c.eps / a0[c.problem], 12) for c in result.claim1))
    lines += [
        "",
        "Claim 1: T_obs = 1 + first k with ‖∇F(θ_k)‖² ≤ ε, against the bound T, for ε = f·‖∇F(θ0)‖²",
        f"{'problem':<10} {'b0/L':>5}"
        + "".join(f"{f'f = {f:g}: T_obs / T':>24}" for f in fractions)
        + f"{'min T/T_obs':>12}  ok",
    ]
    for (name, b0), cells in _group(result.claim1, lambda c: (c.problem, c.b0)).items():
        lines.append(
            f"{name:<10} {b0 / L[name]:>5.3g}"
            + "".join(f"{_n(c.observed):>12} / {c.bound:<9.3g}" for c in cells)
            + f"{min(c.ratio for c in cells):>12.3g}  {'✓' if all(c.ok for c in cells) else '✗'}"
        )
    lines += [
        "",
        "Claim 2: GD with the fixed step 1/b (ε = middle of the grid); bound 2bF0/ε for b ≥ L,",
        "2b²F0/((2b − L)ε) for L/2 < b < L (derived); AGN: AdaGrad-Norm from b0 = b",
        f"{'problem':<10} {'b/L':>5} {'regime':<12} {'GD':>9} {'bound':>9} {'AGN':>7}  ok",
    ]
    for c2 in result.claim2:
        gd = "diverged" if c2.diverged else _n(c2.observed) if c2.observed else "not yet"
        lines.append(
            f"{c2.problem:<10} {c2.b / L[c2.problem]:>5.3g} {c2.regime:<12} {gd:>9} {_n(c2.bound):>9} "
            f"{_n(c2.agn_observed):>7}  {'✓' if c2.ok else '✗'}"
        )
    lines += [
        "",
        "Claim 3: k0 = first k with b_k ≥ L; max b_k (k ≥ k0) against b_{k0−1} + 2F(θ_{k0−1});",
        "F(θ_{k0−1}) against the slide's (L/2)(1 + 2 log(b_{k0−1}/b0)) and F(θ0) + that;",
        "lemma: min_{k<N} a_k ≤ ε or b_N ≥ L; sums: Σ a/S ≤ 1 + log(S_T/a_1), Σ a/√S ≤ 2√S_T",
        f"{'problem':<10} {'b0/L':>5} {'k0':>4} {'max b':>8} {'bound':>8} {'F(k0−1)':>8} "
        f"{'slide':>7} {'fixed':>8} {'N':>7} {'lemma':>5} {'sums':>4}",
    ]
    for c3 in result.claim3:
        lines.append(
            f"{c3.problem:<10} {c3.b0 / L[c3.problem]:>5.3g} {_n(c3.k0):>4} "
            f"{_n(None if c3.k0 is None else c3.b_max):>8} "
            f"{c3.b_before + 2 * c3.F_before:>8.4g} {c3.F_before:>8.3g} "
            f"{_mark(c3.printed_F_bound, c3.F_printed_ok, c3.k0):>7} "
            f"{_mark(c3.corrected_F_bound, c3.F_ok, c3.k0):>8} "
            f"{c3.lemma_N:>7} {'✓' if c3.lemma_ok else '✗':>5} "
            f"{'✓' if c3.sums_ok else '✗':>4}"
        )
    printed_log = sum(c.log_sum > c.log_printed for c in result.claim3)
    lines.append(
        f"the slide's Σ a/S ≤ log S_T + 1 (no a_1) fails on {printed_log} of {len(result.claim3)} runs"
    )
    lines += [
        "",
        "Claim 4: minibatch AdaGrad-Norm; b_k ≈ c√k fit, ĉ_g = RMS of the run's ‖g_k‖,",
        "rate: slope of log min_{ℓ<N} ‖∇F(θ_ℓ)‖² against log N (the lecture: −1/2)",
        f"{'problem':<14} {'steps':>6} {'B':>3} {'c':>8} {'R²':>7} {'slope':>6} {'c/ĉ_g':>6} {'rate':>6}  ok",
    ]
    for c4 in result.claim4:
        lines.append(
            f"{c4.problem:<14} {len(c4.b) - 1:>6} {c4.batch_size:>3} {c4.c:>8.4g} {c4.r2:>7.4f} "
            f"{c4.slope:>6.3f} {c4.c / c4.c_g:>6.3f} {c4.rate_slope:>6.3f}  {'✓' if c4.ok else '✗'}"
        )
    failures = result.failures()
    lines.append("")
    lines.append("every check holds" if not failures else "FAILED: " + "; ".join(failures))
    return "\n".join(lines)


def _group(items: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def write(result: Result, out: Path, settings: dict[str, Any]) -> dict[str, Path]:
    """Writes ``agn_theory.png``, ``agn_theory.csv`` (one row per check) and
    ``agn_theory.json`` (settings, checks and the runs' curves); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"plot": out / "agn_theory.png", "csv": out / "agn_theory.csv", "json": out / "agn_theory.json"}
    with paths["csv"].open("w") as f:
        f.write("claim,problem,b0,eps,quantity,observed,bound,ok\n")
        for c1 in result.claim1:
            f.write(f"1,{c1.problem},{c1.b0!r},{c1.eps!r},iterations,{_n(c1.observed)},{c1.bound},{c1.ok}\n")
        for c2 in result.claim2:
            f.write(
                f"2,{c2.problem},{c2.b!r},{c2.eps!r},GD iterations ({c2.regime}),"
                f"{'diverged' if c2.diverged else _n(c2.observed)},{_n(c2.bound)},{c2.ok}\n"
            )
        for c3 in result.claim3:
            rows = [
                ("max b_k for k >= k0", c3.b_max, c3.b_before + 2 * c3.F_before, c3.b_ok),
                ("F(theta_{k0-1}) - F*, corrected", c3.F_before, c3.corrected_F_bound, c3.F_ok),
                ("F(theta_{k0-1}) - F*, as printed", c3.F_before, c3.printed_F_bound, c3.F_printed_ok),
                ("sum a/S, corrected", c3.log_sum, c3.log_corrected, c3.log_sum <= c3.log_corrected),
                ("sum a/S, as printed", c3.log_sum, c3.log_printed, c3.log_sum <= c3.log_printed),
                ("sum a/sqrt(S)", c3.sqrt_sum, c3.sqrt_bound, c3.sqrt_sum <= c3.sqrt_bound),
                (f"lemma N = {c3.lemma_N}", "", "", c3.lemma_ok),
            ]
            for name, observed, bound, ok in rows:
                f.write(f"3,{c3.problem},{c3.b0!r},{c3.eps!r},{name},{observed!r},{bound!r},{ok}\n")
        for c4 in result.claim4:
            for name, observed, bound, ok in (
                ("R2 of b_k = c sqrt(k)", c4.r2, 0.99, c4.r2 >= 0.99),
                ("log-log slope of b_k", c4.slope, 0.5, 0.45 <= c4.slope <= 0.55),
                ("c / c_g", c4.c / c4.c_g, 1.0, 0.9 <= c4.c / c4.c_g <= 1.1),
                ("log-log slope of min |grad F|^2", c4.rate_slope, -0.5, True),
            ):
                f.write(f"4,{c4.problem},{c4.b0!r},,{name},{observed!r},{bound!r},{ok}\n")
    payload = {
        "settings": settings,
        "problems": [
            {"name": p.name, "description": p.description, "L": p.L, "L_note": p.L_note, "F_star": p.F_star}
            for p in result.problems
        ],
        "claim1": [{**_public(c), "ratio": c.ratio} for c in result.claim1],
        "claim2": [{**_public(c), "ok": c.ok} for c in result.claim2],
        "claim3": [
            {**_public(c), "b_ok": c.b_ok, "F_ok": c.F_ok, "F_printed_ok": c.F_printed_ok, "ok": c.ok}
            for c in result.claim3
        ],
        "claim4": [
            {
                **{k: v for k, v in _public(c).items() if k not in ("b", "min_grad_sq")},
                "b": c.b[:: max(1, len(c.b) // 1000)].tolist(),
                "ok": c.ok,
            }
            for c in result.claim4
        ],
        "failures": result.failures(),
    }
    paths["json"].write_text(json.dumps(payload, indent=1, allow_nan=True, default=_plain) + "\n")
    save(plot(result), paths["plot"])
    return paths


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, for ``json``."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON data: {value!r}")


def _public(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if not isinstance(v, np.ndarray)}


def plot(result: Result, *, ax: Any = None) -> Any:
    """Six panels: claim 1 (observed against bound, log-log, with ``y = x``), claim 2
    (``F − F*`` of GD with step ``1/b`` and AdaGrad-Norm), claim 3 (``b_k`` with its
    bound), claim 4 (``b_k`` with ``c_g√k``; the rate against ``c_g/√N``). ``ax``: six
    matplotlib axes to draw on, in row-major order (default: a new 2×3 figure). Returns
    the figure."""
    fig, grid = axes_grid(ax, 2, 3, width=4.4, height=3.6)
    axes = grid.ravel()
    _plot_claim1(result, axes[0])
    _plot_claim2(result, axes[1])
    _plot_claim3(result, axes[2])
    _plot_b_sqrt(result, axes[3])
    _plot_rate(result, axes[4])
    _plot_sums(result, axes[5])
    return fig


def _plot_claim1(result: Result, ax: Any) -> None:
    names = [p.name for p in result.problems]
    for i, name in enumerate(names):
        pts = [c for c in result.claim1 if c.problem == name and c.observed]
        ax.loglog([c.bound for c in pts], [c.observed for c in pts], "o", color=f"C{i}", ms=4, label=name)
    lo = min(min(c.observed or 1 for c in result.claim1), 1)
    hi = max(c.bound for c in result.claim1)
    ax.loglog([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel("bound T")
    ax.set_ylabel("observed T_obs")
    ax.set_title("claim 1: iterations to ‖∇F‖² ≤ ε", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)


def _plot_claim2(result: Result, ax: Any) -> None:
    name = result.problems[0].name
    L = result.problems[0].L
    for i, t in enumerate(tr for tr in result.fixed if tr.problem == name):
        ax.semilogy(t.gap + 1e-300, color=f"C{i}", lw=1.2, label=f"GD, b = {t.b0 / L:g}L")
        agn = next((a for a in result.traces if a.problem == name and math.isclose(a.b0, t.b0)), None)
        if agn is not None:
            ax.semilogy(agn.gap + 1e-300, color=f"C{i}", ls=":", lw=1.2)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_ylim(1e-8, 1e8)
    ax.set_xlabel("iteration k")
    ax.set_ylabel("F(θ_k) − F*")
    ax.set_title(f"claim 2 on {name}: GD (solid), AdaGrad-Norm (dotted)", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(True, alpha=0.3)


def _plot_claim3(result: Result, ax: Any) -> None:
    for i, p in enumerate(result.problems):
        pairs = [(t, c) for t, c in zip(result.traces, result.claim3) if t.problem == p.name and t.b0 < p.L]
        if not pairs:
            continue
        t, c = pairs[0]
        k = np.arange(len(t.b))
        ax.loglog(k + 1, t.b / p.L, color=f"C{i}", lw=1.2, label=f"{p.name}, b0 = {t.b0 / p.L:g}L")
        if c.k0:
            ax.axhline((c.b_before + 2 * c.F_before) / p.L, color=f"C{i}", ls="--", lw=0.8)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("k + 1")
    ax.set_ylabel("b_k / L")
    ax.set_title("claim 3: b_k and its bound b_{k0−1} + 2F(θ_{k0−1}) (dashed)", fontsize=8)
    ax.legend(fontsize=6)
    ax.grid(True, alpha=0.3)


def _plot_b_sqrt(result: Result, ax: Any) -> None:
    for i, c in enumerate(result.claim4):
        k = np.arange(1, len(c.b))
        ax.loglog(k, c.b[1:], color=f"C{i}", lw=1.4, label=f"{c.problem}: b_k (fit c = {c.c:.3g})")
        ax.loglog(k, c.c_g * np.sqrt(k), color=f"C{i}", ls="--", lw=1, label=f"ĉ_g√k, ĉ_g = {c.c_g:.3g}")
    ax.set_xlabel("step k")
    ax.set_ylabel("b_k")
    ax.set_title("claim 4: minibatch b_k ≈ c_g √k", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(True, alpha=0.3)


def _plot_rate(result: Result, ax: Any) -> None:
    for i, c in enumerate(result.claim4):
        n = np.arange(1, len(c.min_grad_sq) + 1)
        ax.loglog(n, c.min_grad_sq, color=f"C{i}", lw=1.4, label=f"{c.problem} (slope {c.rate_slope:.2f})")
        ax.loglog(n, c.c_g / np.sqrt(n), color=f"C{i}", ls="--", lw=1, label="ĉ_g / √N")
    ax.set_xlabel("N")
    ax.set_ylabel("min_{ℓ<N} ‖∇F(θ_ℓ)‖²")
    ax.set_title("claim 4: rate against c_g/√N", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(True, alpha=0.3)


def _plot_sums(result: Result, ax: Any) -> None:
    c3 = result.claim3
    checks = [
        ("Σa/S ≤\n1 + log(S_T/a_1)", [c.log_sum / c.log_corrected for c in c3]),
        (
            "Σa/S ≤\n1 + log S_T (slide)",
            [c.log_sum / c.log_printed if c.log_printed > 0 else np.inf for c in c3],
        ),
        ("Σa/√S ≤ 2√S_T", [c.sqrt_sum / c.sqrt_bound for c in c3]),
    ]
    for x, (_, ratios) in enumerate(checks):
        r = np.array(ratios)
        shown = np.where(np.isfinite(r), r, 1e3)
        jitter = np.linspace(-0.2, 0.2, len(r))
        ax.semilogy(x + jitter, shown, "o", ms=3, color=f"C{x}")
        ax.text(x, 2e3, f"{int(np.sum(r > 1))}/{len(r)} fail", ha="center", fontsize=7)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.set_xticks(range(len(checks)), [label for label, _ in checks], fontsize=7)
    ax.set_ylim(top=1e4)
    ax.set_ylabel("left side / right side (≤ 1 holds; 10³: right side ≤ 0)")
    ax.set_title("claim 3: the sum inequalities on each run's a_k", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
