r"""``rates``: linear convergence of GD, Polyak's heavy ball and Nesterov on a quadratic.

The problem is ``L(θ) = ½ θᵀAθ`` with ``A = Q diag(λ) Qᵀ`` symmetric positive definite,
eigenvalues from ``μ = 1`` to ``L = κ`` (``Q`` a random rotation), minimiser ``θ* = 0``.
Each method runs through ``fo.SGD`` with its textbook optimal hyperparameters; the
error ``‖θ_k − θ*‖`` shrinks like ``ρ^k`` and the measured ``ρ`` is printed beside
the lecture's.

The hyperparameters (derived in ``docs/experiments.md``):

* GD: ``α = 2/(L+μ)``, rate ``(κ−1)/(κ+1)``;
* Polyak's heavy ball ``θ_{k+1} = θ_k − αAθ_k + β(θ_k − θ_{k−1})``:
  ``α = 4/(√L + √μ)²``, ``β = ((√κ−1)/(√κ+1))²``, rate ``(√κ−1)/(√κ+1)``;
* Nesterov ``θ̂_k = θ_k + β(θ_k − θ_{k−1})``, ``θ_{k+1} = θ̂_k − αAθ̂_k``: ``α = 1/L``,
  ``β = (√κ−1)/(√κ+1)``; the lecture's ``sqrt((√κ−1)/√κ)`` bounds it on every smooth
  strongly convex function, and on a quadratic it reaches ``1 − 1/√κ``.

``fo.SGD(momentum=β)`` is exactly the heavy ball, and ``nesterov=True`` is exactly NAG
held at its look-ahead point ``θ̂``, whose error is the one recorded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import ferroptim as fo

from .plotting import axes_grid, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Method:
    """A method, its optimal hyperparameters for ``κ``, and the lecture's rate."""

    name: str
    settings: dict[str, Any]
    formula: str
    theory: float
    note: str = ""


def methods(kappa: float, L: float) -> list[Method]:
    """GD, Polyak and Nesterov with their optimal hyperparameters for ``μ = L/κ``."""
    mu, sk = L / kappa, math.sqrt(kappa)
    q = (sk - 1) / (sk + 1)
    return [
        Method("GD", {"lr": 2 / (L + mu)}, "(κ−1)/(κ+1)", (kappa - 1) / (kappa + 1)),
        Method(
            "Polyak", {"lr": 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, "momentum": q**2}, "(√κ−1)/(√κ+1)", q
        ),
        Method(
            "Nesterov",
            {"lr": 1 / L, "momentum": q, "nesterov": True},
            "sqrt((√κ−1)/√κ)",
            math.sqrt((sk - 1) / sk),
            note=f"a bound for all smooth strongly convex L; on quadratics 1−1/√κ = {1 - 1 / sk:.4f}",
        ),
    ]


def quadratic(kappa: float, dim: int, seed: int) -> np.ndarray:
    """``A = Q diag(λ) Qᵀ`` with ``λ`` evenly spaced from 1 to ``κ`` and ``Q`` a random rotation."""
    if not kappa >= 1:
        raise ValueError(f"the condition number κ must be >= 1, got {kappa}")
    if dim < 2:
        raise ValueError(f"the dimension must be >= 2 so that both μ and L appear, got {dim}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return (q * np.linspace(1.0, kappa, dim)) @ q.T


def errors(A: np.ndarray, method: Method, theta0: np.ndarray, iters: int, tol: float) -> np.ndarray:
    """``‖θ_k‖`` for ``k = 0, 1, …`` under ``method``, until it falls below ``tol·‖θ_0‖``
    or after ``iters`` steps; the gradient is ``Aθ``."""
    theta = fo.Parameter(theta0.copy())
    opt = fo.SGD([theta], **method.settings)
    out = [float(np.linalg.norm(theta))]
    for _ in range(iters):
        theta.grad = A @ theta
        opt.step()
        out.append(float(np.linalg.norm(theta)))
        if out[-1] < tol * out[0]:
            break
    return np.asarray(out)


def measured_rate(err: np.ndarray) -> float:
    """The linear rate ``ρ`` of a least-squares fit ``log e_k ≈ c + k log ρ`` over the
    second half of the run, after the fast components have died out."""
    k = np.arange(len(err))[len(err) // 2 :]
    slope = np.polyfit(k, np.log(err[len(err) // 2 :]), 1)[0]
    return float(np.exp(slope))


@dataclass
class Result:
    """One method's run on the quadratic."""

    method: Method
    errors: np.ndarray
    rate: float


def run(
    kappa: float = 100.0, dim: int = 100, iters: int = 100_000, tol: float = 1e-10, seed: int = 0
) -> list[Result]:
    """Runs every method on the same quadratic from the same random start."""
    A = quadratic(kappa, dim, seed)
    theta0 = np.random.default_rng(seed + 1).normal(size=dim)
    out = []
    for method in methods(kappa, L=kappa):
        err = errors(A, method, theta0, iters, tol)
        out.append(Result(method, err, measured_rate(err)))
    return out


def table(results: list[Result], kappa: float) -> str:
    """Measured against theoretical rates, as text."""
    lines = [
        f"κ = {kappa:g}",
        f"{'method':<9} {'iterations':>10} {'measured ρ':>11} {'lecture ρ':>10} {'ratio':>7}  formula",
    ]
    for r in results:
        m, k = r.method, len(r.errors) - 1
        lines.append(
            f"{m.name:<9} {k:>10} {r.rate:>11.4f} {m.theory:>10.4f} {r.rate / m.theory:>7.3f}  {m.formula}"
        )
    lines += [f"{r.method.name}: {r.method.note}" for r in results if r.method.note]
    return "\n".join(lines)


def plot(results: list[Result], settings: dict[str, Any] | None = None, *, ax: Any = None) -> Figure:
    """Error against iteration, log scale, each method's measured run (solid) beside its
    lecture rate (dashed, through the run's middle iterate).

    Args:
        results: what :func:`run` returned.
        settings: the run's settings; its ``kappa`` and ``dim`` (each optional) go into
            the title.
        ax: the Axes to draw into; by default a new figure.

    Returns:
        The figure (``ax``'s when given).
    """
    settings = settings or {}
    fig, axes = axes_grid(ax, 1, 1, width=6.5, height=4.2)
    panel = axes[0][0]
    for i, r in enumerate(results):
        k = np.arange(len(r.errors))
        mid = len(k) // 2  # the theory line passes through the run where the fit starts
        panel.semilogy(
            k, r.errors, color=f"C{i}", lw=1.8, label=f"{r.method.name}: measured ρ = {r.rate:.4f}"
        )
        panel.semilogy(
            k,
            r.errors[mid] * r.method.theory ** (k - mid),
            color=f"C{i}",
            ls="--",
            lw=1,
            label=f"{r.method.name}: lecture {r.method.formula} = {r.method.theory:.4f}",
        )
    panel.set_ylim(bottom=min(r.errors.min() for r in results) / 10)
    panel.set_xlabel("iteration k")
    panel.set_ylabel("error ‖θ_k − θ*‖")
    described = [
        f"κ = {settings['kappa']:g}" if "kappa" in settings else "",
        f"dimension {settings['dim']}" if "dim" in settings else "",
    ]
    panel.set_title(", ".join(["½θᵀAθ"] + [d for d in described if d]))
    panel.grid(True, which="both", alpha=0.3)
    panel.legend(fontsize=7, loc="upper right")
    return fig


def write(results: list[Result], out: Path, settings: dict[str, Any]) -> dict[str, Path]:
    """Writes ``rates.png`` (:func:`plot`) and ``rates.json``; returns their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"plot": out / "rates.png", "json": out / "rates.json"}
    payload = {
        "settings": settings,
        "methods": [
            {
                "method": r.method.name,
                "hyperparameters": r.method.settings,
                "measured_rate": r.rate,
                "lecture_rate": r.method.theory,
                "formula": r.method.formula,
                "errors": r.errors.tolist(),
            }
            for r in results
        ],
    }
    paths["json"].write_text(json.dumps(payload, indent=1) + "\n")
    save(plot(results, settings), paths["plot"])
    return paths
