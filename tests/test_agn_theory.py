"""``agn-theory``: the lecture's AdaGrad-Norm claims hold on every run of a reduced grid
with ``fo.AdagradNorm``, and fail with deliberately wrong AdaGrad-Norms. References:
the paper's recursion and the bounds written out here in NumPy, and a counterexample
to the slide's first sum inequality worked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import ferroptim as fo

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from ferroptim.experiments import agn_theory, cli  # noqa: E402

#: ``--quick``'s grid: three b₀, two ε, three fixed steps, 5,000 minibatch steps.
GRID = dict(**agn_theory.QUICK, progress=False)


class NormNotSquared:
    """Wrong: ``b_k² = b_{k−1}² + ‖g‖`` (the norm, not its square)."""

    def __init__(self, params: list[fo.Parameter], b0: float) -> None:
        self.theta, self.b_sq = params[0], b0**2

    def step(self) -> None:
        g = self.theta.grad
        self.b_sq += float(np.linalg.norm(g))
        self.theta -= g / math.sqrt(self.b_sq)

    def b(self, param: object) -> float:
        return math.sqrt(self.b_sq)


class StaleB:
    """Wrong: ``θ_k = θ_{k−1} − g/b_{k−1}``, the step taken before ``b`` sees ``g``."""

    def __init__(self, params: list[fo.Parameter], b0: float) -> None:
        self.theta, self.b_sq = params[0], b0**2

    def step(self) -> None:
        g = self.theta.grad
        self.theta -= g / math.sqrt(self.b_sq)
        self.b_sq += float(g @ g)

    def b(self, param: object) -> float:
        return math.sqrt(self.b_sq)


@pytest.fixture(scope="module")
def result() -> agn_theory.Result:
    return agn_theory.run(seed=0, **GRID)


def test_every_claim_holds_with_fo_adagrad_norm(result):
    assert result.failures() == []
    assert all(c.observed is not None for c in result.claim1)  # every ε was reached: no check left open
    assert all(c.observed <= c.bound for c in result.claim2 if c.bound is not None)
    for c in result.claim4:
        assert c.r2 >= 0.99 and 0.45 <= c.slope <= 0.55, c


@pytest.mark.parametrize("fake", [NormNotSquared, StaleB], ids=lambda f: f.__name__)
def test_a_wrong_adagrad_norm_fails_the_checks(fake):
    """Both fakes break the bound on ``b_k`` (claim 3) and ``b_k ≈ c_g√k`` (claim 4)."""
    failures = agn_theory.run(seed=0, factory=fake, **GRID).failures()
    assert any(f.startswith("claim 3 b ") for f in failures), failures
    assert any(f.startswith("claim 4 ") for f in failures), failures


def test_norm_not_squared_breaks_b_k_against_sqrt_k():
    """``Σ‖g‖`` instead of ``Σ‖g‖²`` still grows like k, so ``b_k ∝ √k`` survives,
    but ``c`` is no longer the gradients' RMS ``ĉ_g``: claim 4's ``b_k ≈ c_g√k`` fails."""
    problem = agn_theory.least_squares(0)
    right = agn_theory.run_stochastic(problem, steps=2000, batch_size=8, b0=0.1 * problem.L, seed=0)
    wrong = agn_theory.run_stochastic(
        problem, steps=2000, batch_size=8, b0=0.1 * problem.L, seed=0, factory=NormNotSquared
    )
    assert 0.9 <= right.c / right.c_g <= 1.1
    assert not 0.9 <= wrong.c / wrong.c_g <= 1.1 and not wrong.ok


def test_stale_b_breaks_the_bound_on_b():
    """The first step ``g/b₀`` with ``b₀ = L/10`` overshoots, and ``b`` then jumps past
    ``b_{k₀−1} + 2F(θ_{k₀−1})``."""
    problem = agn_theory.quadratic_spread(0)
    trace = agn_theory.run_gradient(problem, 0.1 * problem.L, until=1e-6, max_iter=500, factory=StaleB)
    assert not agn_theory.claim3(problem, trace, 1e-6).b_ok


def test_runs_follow_the_papers_recursion():
    """The recorded ``b_k`` and ``a_k`` of a ferroptim run against the paper's
    ``b_k² = b_{k−1}² + ‖∇F(θ_{k−1})‖²``, ``θ_k = θ_{k−1} − ∇F(θ_{k−1})/b_k`` in NumPy."""
    problem = agn_theory.nonconvex(3)
    b0 = 0.3 * problem.L
    trace = agn_theory.run_gradient(problem, b0, until=0.0, max_iter=60)
    theta, b_sq, a, b = problem.theta0.copy(), b0**2, [], [b0]
    for _ in range(60):
        g = problem.grad(theta)
        a.append(g @ g)
        b_sq += g @ g
        theta = theta - g / math.sqrt(b_sq)
        b.append(math.sqrt(b_sq))
    a.append(problem.grad(theta) @ problem.grad(theta))
    np.testing.assert_allclose(trace.a, a, rtol=1e-9)
    np.testing.assert_allclose(trace.b, b, rtol=1e-12)


def test_bound_matches_the_formula():
    L, F0 = 2.0, 3.0
    assert agn_theory.bound_T(L, F0, 4.0, 0.5) == 1 + math.ceil(2 / 0.5 * 3 * (4 + 6))
    expected = 1 + math.ceil((4 - 0.25 + 4 * (3 + (0.75 + math.log(4)) * 2) ** 2) / 0.1)
    assert agn_theory.bound_T(L, F0, 0.5, 0.1) == expected


def test_fixed_step_below_half_L_diverges_on_the_quadratic(result):
    rows = {(c.problem, c.regime): c for c in result.claim2}
    assert rows[("quad", "b < L/2")].diverged and rows[("quad-slow", "b < L/2")].diverged
    assert not rows[("quad", "L/2 ≤ b < L")].diverged
    trace = agn_theory.run_fixed(agn_theory.quadratic_spread(0), 0.45, until=0.0, max_iter=3000)
    assert trace.diverged


def test_the_slides_F_bound_fails_where_F0_exceeds_half_L(result):
    """With ``k₀ = 1`` the slide's ``F(θ_{k₀−1}) ≤ (L/2)(1 + 2 log(b_{k₀−1}/b₀))`` reads
    ``F(θ₀) ≤ L/2``; on ``quad`` (``F(θ₀) ≈ 4.8``, ``L = 1``) it is false, and the
    corrected bound with ``F(θ₀)`` added holds."""
    rows = [c for c in result.claim3 if c.problem == "quad" and c.k0 == 1]
    assert rows
    for c in rows:
        assert c.printed_F_bound == pytest.approx(0.5) and c.F_before > 0.5
        assert not c.F_printed_ok and c.F_ok


def test_the_slides_log_inequality_needs_a1_at_least_one():
    """``a = (0.01, 0.01)``: ``Σ a_ℓ/Σ_{i≤ℓ} a_i = 1 + 1/2``, but ``log(0.02) + 1 < 0``;
    the scale-free ``1 + log(Σa/a₁) = 1 + log 2`` holds."""
    a = np.array([0.01, 0.01])
    S = np.cumsum(a)
    assert np.sum(a / S) == pytest.approx(1.5)
    assert np.sum(a / S) > math.log(S[-1]) + 1
    assert np.sum(a / S) <= 1 + math.log(S[-1] / a[0])


def test_logistic_L_is_attained_at_zero():
    """``‖X‖²/(4m) + λ`` is the Hessian's norm at ``θ = 0`` by finite differences of the gradient."""
    problem = agn_theory.logistic_digits()
    d = len(problem.theta0)
    rng = np.random.default_rng(0)
    v = rng.normal(size=d)
    for _ in range(100):  # power iteration on the finite-difference Hessian at 0
        hv = (problem.grad(1e-5 * v) - problem.grad(-1e-5 * v)) / 2e-5
        v = hv / np.linalg.norm(hv)
    hv = (problem.grad(1e-5 * v) - problem.grad(-1e-5 * v)) / 2e-5
    assert float(v @ hv) == pytest.approx(problem.L, rel=1e-6)
    assert np.linalg.norm(problem.grad(np.zeros(d)) - problem.grad(np.zeros(d))) == 0
    gap = [problem.gap(rng.normal(size=d)) for _ in range(5)]
    assert min(gap) > 0  # F* is below F at random points


def test_command_writes_table_plot_csv_json(tmp_path, capsys):
    cli.main(["agn-theory", "--quick", "--no-progress", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "Claim 1" in printed and "every check holds" in printed
    payload = json.loads((tmp_path / "agn_theory.json").read_text())
    assert payload["failures"] == [] and payload["settings"]["quick"] is True
    assert {p["name"] for p in payload["problems"]} == {"quad", "quad-slow", "logreg", "nonconvex"}
    rows = (tmp_path / "agn_theory.csv").read_text().splitlines()
    assert rows[0] == "claim,problem,b0,eps,quantity,observed,bound,ok"
    assert {r.split(",")[0] for r in rows[1:]} == {"1", "2", "3", "4"}
    assert (tmp_path / "agn_theory.png").stat().st_size > 20_000


def test_plot_returns_the_figure_and_draws_on_given_axes(result):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3)
    assert agn_theory.plot(result, ax=axes) is fig
    assert all(ax.has_data() for ax in axes.ravel())
    plt.close(fig)
