"""The lecture's formulas, transcribed into NumPy, are what ferroptim computes.

Every reference below is a direct transcription of a formula in
``shared/seed/optimization-lecture.md`` (or of the paper it cites: Adam's Algorithm 1,
Zeiler's AdaDelta Algorithm 1, Ward et al.'s scalar AdaGrad), written in the lecture's
notation. Each test runs the transcription and a ferroptim optimizer on the same problem
and compares the whole trajectory, step by step (at least 20 steps), in float64 and,
where cheap, float32:

* plain GD and minibatch SGD (seeded random partitions of [m], several epochs);
* Polyak's heavy ball and Nesterov's look-ahead form (``SGD(momentum, nesterov)``);
* AdaGrad with ``(B_k + eps I)^{-1}``, RMSProp with ``(B_k + eps I)^{-1/2}``
  (``eps_in_sqrt=True``) and torch's default ``(sqrt(B_k) + eps)^{-1}``;
* Adam (Algorithm 1) and AdaDelta (Algorithm 1);
* scalar AdaGrad (``AdagradNorm``) for every scope, with lr, weight decay, maximize and
  missing gradients;
* the lecture's linear convergence rates of GD, heavy ball and NAG on a quadratic with
  condition number kappa, measured from ferroptim's iterates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ferroptim as fo

DTYPES = [np.float64, np.float32]
STEPS = 30


# --- problems ---------------------------------------------------------------------------


def quadratic(n: int, eigs: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``L(theta) = 1/2 theta^T A theta - b^T theta`` with spectrum ``eigs``; returns A, b, theta0."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * eigs) @ q.T
    a = (a + a.T) / 2
    return a, rng.standard_normal(n), rng.standard_normal(n)


def quad_problem(dtype, seed: int = 0, n: int = 6):
    """A well-conditioned quadratic (eigenvalues in [1, 8]) in ``dtype``: (grad, theta0)."""
    a, b, theta0 = quadratic(n, np.linspace(1.0, 8.0, n), seed)
    a, b = a.astype(dtype), b.astype(dtype)

    def grad(theta: np.ndarray) -> np.ndarray:
        # grad_theta (1/2 theta^T A theta - b^T theta) = A theta - b
        return a @ theta - b

    return grad, theta0.astype(dtype)


def assert_trajectory(actual, expected, dtype, rtol64: float = 1e-12) -> None:
    """Every iterate of ``actual`` matches ``expected``; atol is scaled by the trajectory."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype == np.dtype(dtype)
    assert len(actual) > 20
    scale = float(np.max(np.abs(expected)))
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=rtol64, atol=1e-14 * scale)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * scale)


def run_parameter(opt_factory, theta0: np.ndarray, grad, steps: int = STEPS) -> np.ndarray:
    """Runs ferroptim on a ``fo.Parameter`` (gradients via ``.grad``); returns all iterates."""
    theta = fo.Parameter(theta0.copy())
    opt = opt_factory([theta])
    trajectory = [theta.copy()]
    for _ in range(steps):
        theta.grad = grad(theta.view(np.ndarray))
        opt.step()
        trajectory.append(theta.copy())
    return np.array(trajectory)


def run_grads(opt_factory, theta0: np.ndarray, grad, steps: int = STEPS) -> np.ndarray:
    """Runs ferroptim on a plain ndarray (gradients via ``step(grads=...)``)."""
    theta = theta0.copy()
    opt = opt_factory([theta])
    trajectory = [theta.copy()]
    for _ in range(steps):
        opt.step(grads=[grad(theta)])
        trajectory.append(theta.copy())
    return np.array(trajectory)


# --- plain GD and minibatch SGD ---------------------------------------------------------


def least_squares(dtype, m: int = 43, d: int = 5, seed: int = 1):
    """Data (x_mu, y_mu), mu = 1..m, for l(theta; x, y) = 1/2 (x^T theta - y)^2."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, d))
    y = x @ rng.standard_normal(d) + 0.1 * rng.standard_normal(m)
    return x.astype(dtype), y.astype(dtype), rng.standard_normal(d).astype(dtype)


def grad_l(theta: np.ndarray, x_mu: np.ndarray, y_mu) -> np.ndarray:
    """grad_theta l(theta; x_mu, y_mu) for l = 1/2 (x_mu^T theta - y_mu)^2."""
    return (x_mu @ theta - y_mu) * x_mu


def batch_gradient(theta: np.ndarray, x: np.ndarray, y: np.ndarray, lam) -> np.ndarray:
    """|Lambda|^{-1} sum_{mu in Lambda} grad l, vectorised (what a user hands ferroptim)."""
    xl, yl = x[lam], y[lam]
    return xl.T @ (xl @ theta - yl) / len(lam)


@pytest.mark.parametrize("dtype", DTYPES)
def test_full_batch_gradient_descent(dtype):
    """theta^(k+1) = theta^(k) - eta grad L(theta^(k)), L = m^{-1} sum_mu l(theta; x_mu, y_mu)."""
    x, y, theta0 = least_squares(dtype)
    m, eta = len(y), 0.1
    everyone = np.arange(m)

    theta = theta0.copy()
    expected = [theta.copy()]
    for _ in range(STEPS):
        grad_L = sum(grad_l(theta, x[mu], y[mu]) for mu in range(m)) / m  # noqa: N806
        theta = theta - eta * grad_L
        expected.append(theta.copy())

    actual = run_parameter(lambda p: fo.SGD(p, lr=eta), theta0, lambda t: batch_gradient(t, x, y, everyone))
    assert_trajectory(actual, expected, dtype)
    # GD on a least-squares problem actually made progress: not a vacuous comparison.
    assert np.linalg.norm(actual[-1] - actual[0]) > 0.1 * np.linalg.norm(actual[0])


def minibatch_schedule(m: int, batch: int, epochs: int, seed: int) -> list[np.ndarray]:
    """Lambda_k: per epoch a seeded random partition of [m] into minibatches of size ``batch``
    (the last one shorter when ``batch`` does not divide m)."""
    rng = np.random.default_rng(seed)
    schedule = []
    for _ in range(epochs):
        perm = rng.permutation(m)
        schedule += [perm[i : i + batch] for i in range(0, m, batch)]
    return schedule


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [8, 1, 43])
def test_minibatch_sgd(dtype, batch):
    """theta^(k+1) = theta^(k) - eta |Lambda_k|^{-1} grad sum_{mu in Lambda_k} l(theta; x_mu, y_mu),
    with Lambda_k covering [m] once per epoch (at least 4 epochs and 24 steps)."""
    x, y, theta0 = least_squares(dtype)
    m, eta = len(y), 0.05
    per_epoch = -(-m // batch)
    schedule = minibatch_schedule(m, batch, epochs=max(4, -(-24 // per_epoch)), seed=7)
    for epoch in range(len(schedule) // per_epoch):  # each epoch is a partition of [m]
        lams = schedule[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert sorted(np.concatenate(lams).tolist()) == list(range(m))
    assert len(schedule) >= 24

    theta = theta0.copy()
    expected = [theta.copy()]
    for lam in schedule:
        theta = theta - eta / len(lam) * sum(grad_l(theta, x[mu], y[mu]) for mu in lam)
        expected.append(theta.copy())

    theta = theta0.copy()
    opt = fo.SGD([theta], lr=eta)
    actual = [theta.copy()]
    for lam in schedule:
        opt.step(grads=[batch_gradient(theta, x, y, lam)])
        actual.append(theta.copy())
    assert_trajectory(actual, expected, dtype)


# --- Polyak heavy ball and Nesterov -----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("alpha", "beta"), [(0.1, 0.9), (0.2, 0.5), (0.05, 0.99)])
def test_polyak_heavy_ball(dtype, alpha, beta):
    """theta_{k+1} = theta_k + beta (theta_k - theta_{k-1}) - alpha grad L(theta_k), theta_{-1} =
    theta_0, is SGD(lr=alpha, momentum=beta) (dampening 0).

    ferroptim computes theta - alpha (beta buf + g) rather than theta + beta (theta - theta_prev)
    - alpha g: the same number up to reassociation, so 1e-12 still holds on this contracting
    quadratic (errors of a few ulp per step are not amplified)."""
    grad, theta0 = quad_problem(dtype, seed=2)
    theta_prev, theta = theta0.copy(), theta0.copy()
    expected = [theta.copy()]
    for _ in range(STEPS):
        theta, theta_prev = theta + beta * (theta - theta_prev) - alpha * grad(theta), theta
        expected.append(theta.copy())

    actual = run_parameter(lambda p: fo.SGD(p, lr=alpha, momentum=beta, dampening=0), theta0, grad)
    assert_trajectory(actual, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("alpha", "beta"), [(0.1, 0.9), (0.2, 0.5), (0.05, 0.99)])
def test_nesterov_follows_lookahead_sequence(dtype, alpha, beta):
    """theta_hat_k = theta_k + beta (theta_k - theta_{k-1}); theta_{k+1} = theta_hat_k - alpha
    grad L(theta_hat_k), with theta_{-1} = theta_0 (so theta_hat_0 = theta_0).

    Index alignment: SGD(nesterov=True) keeps buf_k = beta buf_{k-1} + g_k (buf_1 = g_1) and sets
    p_k = p_{k-1} - alpha (g_k + beta buf_k) with g_k = grad L(p_{k-1}). With
    v_k = theta_k - theta_{k-1} = -alpha buf_k one gets theta_hat_{k+1} = theta_hat_k
    - alpha grad L(theta_hat_k) + beta v_{k+1}, which is exactly the p recursion. So the
    parameter after k steps is theta_hat_k (not theta_k), for k = 0, 1, 2, ...
    """
    grad, theta0 = quad_problem(dtype, seed=3)
    theta_prev, theta = theta0.copy(), theta0.copy()  # theta_{-1} = theta_0
    theta_hats, thetas = [], [theta.copy()]
    for _ in range(STEPS + 1):
        theta_hat = theta + beta * (theta - theta_prev)
        theta_hats.append(theta_hat)
        theta, theta_prev = theta_hat - alpha * grad(theta_hat), theta
        thetas.append(theta.copy())

    actual = run_grads(lambda p: fo.SGD(p, lr=alpha, momentum=beta, nesterov=True), theta0, grad)
    # p after k steps == theta_hat_k, k = 0..STEPS.
    assert_trajectory(actual, theta_hats[: STEPS + 1], dtype)
    # ... and it is the look-ahead, not the theta sequence itself (the alignment matters).
    assert not np.allclose(actual[1:], np.array(thetas[1 : STEPS + 1]), rtol=1e-3, atol=0)


# --- AdaGrad ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("eta", "eps"), [(0.5, 1e-10), (0.3, 0.5), (1.0, 1e-3)])
def test_adagrad_diagonal_preconditioner(dtype, eta, eps):
    """theta^(k+1) = theta^(k) - eta (B_k + eps I)^{-1} g^(k), with
    B_k(i,i) = (sum_{j<=k} g^(j)(i)^2)^{1/2} recomputed from all past gradients each step."""
    grad, theta0 = quad_problem(dtype, seed=4)
    n = len(theta0)
    eye = np.eye(n, dtype=dtype)
    theta = theta0.copy()
    past = []
    expected = [theta.copy()]
    for _ in range(STEPS):
        g = grad(theta)
        past.append(g)
        B = np.diag(np.sqrt(np.sum(np.array(past) ** 2, axis=0)))  # noqa: N806
        theta = theta - eta * np.linalg.solve(B + eps * eye, g)
        expected.append(theta.copy())

    actual = run_parameter(lambda p: fo.Adagrad(p, lr=eta, eps=eps), theta0, grad)
    assert_trajectory(actual, expected, dtype)


# --- RMSProp ----------------------------------------------------------------------------


def rmsprop_reference(grad, theta0, eta, gamma, eps, eps_in_sqrt: bool, steps: int = STEPS):
    """B_k = gamma B_{k-1} + (1 - gamma) g_k^2 (B_0 = 0), then either the lecture's
    theta - eta (B_k + eps I)^{-1/2} g_k or torch's theta - eta g_k / (sqrt(B_k) + eps)."""
    theta = theta0.copy()
    B = np.zeros_like(theta)  # noqa: N806  (the diagonal of B_k)
    trajectory = [theta.copy()]
    for _ in range(steps):
        g = grad(theta)
        B = gamma * B + (1 - gamma) * g**2  # noqa: N806
        if eps_in_sqrt:
            precond = np.diag((B + eps) ** -0.5)  # (B_k + eps I)^{-1/2}
            theta = theta - eta * (precond @ g)
        else:
            theta = theta - eta * g / (np.sqrt(B) + eps)
        trajectory.append(theta.copy())
    return np.array(trajectory)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps_in_sqrt", [True, False])
@pytest.mark.parametrize(("eta", "gamma", "eps"), [(0.05, 0.9, 1e-8), (0.02, 0.99, 1e-3)])
def test_rmsprop(dtype, eps_in_sqrt, eta, gamma, eps):
    """RMSprop(lr=eta, alpha=gamma, eps=eps, eps_in_sqrt=...) against both transcriptions."""
    grad, theta0 = quad_problem(dtype, seed=5)
    expected = rmsprop_reference(grad, theta0, eta, gamma, eps, eps_in_sqrt)
    actual = run_parameter(
        lambda p: fo.RMSprop(p, lr=eta, alpha=gamma, eps=eps, eps_in_sqrt=eps_in_sqrt),
        theta0,
        grad,
    )
    assert_trajectory(actual, expected, dtype)


def test_rmsprop_eps_placement_matters_for_large_eps():
    """With eps comparable to B_k, (B + eps I)^{-1/2} and (sqrt(B) + eps)^{-1} give clearly
    different trajectories; each ferroptim mode follows its own formula and not the other."""
    grad, theta0 = quad_problem(np.float64, seed=6)
    eta, gamma, eps = 0.05, 0.9, 0.5
    lecture = run_parameter(
        lambda p: fo.RMSprop(p, lr=eta, alpha=gamma, eps=eps, eps_in_sqrt=True), theta0, grad
    )
    default = run_parameter(lambda p: fo.RMSprop(p, lr=eta, alpha=gamma, eps=eps), theta0, grad)
    assert_trajectory(lecture, rmsprop_reference(grad, theta0, eta, gamma, eps, True), np.float64)
    assert_trajectory(default, rmsprop_reference(grad, theta0, eta, gamma, eps, False), np.float64)
    gap = np.max(np.abs(lecture[1:] - default[1:]), axis=1) / np.max(np.abs(default[1:]), axis=1)
    assert np.all(gap > 1e-3)
    assert gap.max() > 1e-2


# --- Adam -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("alpha", "beta1", "beta2", "eps"),
    [(1e-3, 0.9, 0.999, 1e-8), (0.1, 0.9, 0.999, 1e-8), (0.05, 0.5, 0.9, 1e-3), (0.2, 0.0, 0.99, 0.1)],
)
def test_adam_algorithm_1(dtype, alpha, beta1, beta2, eps):
    """Kingma & Ba, Algorithm 1, line by line, against Adam(lr=alpha, betas=(b1, b2), eps=eps).

    ferroptim (as torch) folds the bias corrections into lr / (1 - beta1^t) and
    sqrt(v) / sqrt(1 - beta2^t): a reassociation of the same expression. Its errors of a few
    ulp per step stay below 1e-12 relative over these 30 steps."""
    grad, theta_0 = quad_problem(dtype, seed=8)
    m = np.zeros_like(theta_0)  # m_0 <- 0
    v = np.zeros_like(theta_0)  # v_0 <- 0
    t = 0
    theta = theta_0.copy()
    expected = [theta.copy()]
    for _ in range(STEPS):
        t = t + 1
        g = grad(theta)  # g_t <- grad f_t(theta_{t-1})
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        theta = theta - alpha * m_hat / (np.sqrt(v_hat) + eps)
        expected.append(theta.copy())

    actual = run_parameter(lambda p: fo.Adam(p, lr=alpha, betas=(beta1, beta2), eps=eps), theta_0, grad)
    assert_trajectory(actual, expected, dtype)


# --- AdaDelta ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("rho", "eps"), [(0.9, 1e-6), (0.95, 1e-2), (0.5, 1e-1)])
def test_adadelta_zeiler_algorithm_1(dtype, rho, eps):
    """Zeiler 2012, Algorithm 1 (no learning rate, i.e. Adadelta's default lr=1)::

    E[g^2]_t = rho E[g^2]_{t-1} + (1 - rho) g_t^2
    dx_t = - RMS[dx]_{t-1} / RMS[g]_t g_t,     RMS[y]_t = sqrt(E[y^2]_t + eps)
    E[dx^2]_t = rho E[dx^2]_{t-1} + (1 - rho) dx_t^2
    x_{t+1} = x_t + dx_t
    """
    grad, x_1 = quad_problem(dtype, seed=9)
    Eg2 = np.zeros_like(x_1)  # noqa: N806
    Edx2 = np.zeros_like(x_1)  # noqa: N806
    x = x_1.copy()
    expected = [x.copy()]
    for _ in range(STEPS):
        g = grad(x)
        Eg2 = rho * Eg2 + (1 - rho) * g**2  # noqa: N806
        dx = -np.sqrt(Edx2 + eps) / np.sqrt(Eg2 + eps) * g
        Edx2 = rho * Edx2 + (1 - rho) * dx**2  # noqa: N806
        x = x + dx
        expected.append(x.copy())

    actual = run_parameter(lambda p: fo.Adadelta(p, rho=rho, eps=eps), x_1, grad)
    assert_trajectory(actual, expected, dtype)
    assert np.linalg.norm(actual[-1] - actual[0]) > 1e-3 * np.linalg.norm(actual[0])


# --- scalar AdaGrad (AdaGrad-Norm) ------------------------------------------------------


SHAPES = [[(3,), (2, 3)], [(4,), ()]]  # two param groups, four arrays of 3 + 6 + 4 + 1 entries


def split(vector: np.ndarray) -> list[np.ndarray]:
    out, start = [], 0
    for shape in (s for group in SHAPES for s in group):
        size = math.prod(shape)
        out.append(vector[start : start + size].reshape(shape))
        start += size
    return out


def norm_problem(dtype, seed: int = 10):
    """A coupled quadratic over all four arrays (flattened and concatenated)."""
    n = sum(math.prod(s) for group in SHAPES for s in group)
    a, b, theta0 = quadratic(n, np.linspace(0.5, 5.0, n), seed)
    a, b = a.astype(dtype), b.astype(dtype)

    def grad(arrays: list[np.ndarray]) -> list[np.ndarray]:
        theta = np.concatenate([x.ravel() for x in arrays])
        return split(a @ theta - b)

    return grad, split(theta0.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b_0", [0.01, 1.0, 20.0])
def test_scalar_adagrad_lecture_form(dtype, b_0):
    """The lecture's algorithm on one vector: b_k^2 = b_{k-1}^2 + ||grad L(theta)||_2^2,
    theta^(k) = theta^(k-1) - b_k^{-1} grad L  (AdagradNorm with lr=1, the default)."""
    grad_arrays, arrays0 = norm_problem(dtype)

    def grad(theta):
        return np.concatenate([g.ravel() for g in grad_arrays(split(theta))])

    theta0 = np.concatenate([x.ravel() for x in arrays0])
    theta = theta0.copy()
    b_sq = b_0**2
    expected, expected_b = [theta.copy()], [b_0]
    for _ in range(STEPS):
        g = grad(theta)
        b_sq = b_sq + float(np.sum(g.astype(np.float64) ** 2))  # ||g^(k)||_2^2
        b_k = math.sqrt(b_sq)
        theta = theta - (1 / b_k) * g
        expected.append(theta.copy())
        expected_b.append(b_k)

    p = fo.Parameter(theta0.copy())
    opt = fo.AdagradNorm([p], b0=b_0)
    actual, actual_b = [p.copy()], [opt.b(p)]
    for _ in range(STEPS):
        p.grad = grad(p.view(np.ndarray))
        opt.step()
        actual.append(p.copy())
        actual_b.append(opt.b(p))
    assert_trajectory(actual, expected, dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(actual_b, expected_b, rtol=rtol)


def adagrad_norm_reference(
    grad, arrays0, scope, steps, *, lrs, wd, maximize, b_0, skip
) -> tuple[list[list[np.ndarray]], list[list[float]]]:
    """Scalar AdaGrad with one b per scope::

        g <- -g (maximize);  g <- g + wd theta
        b_k^2 = b_{k-1}^2 + sum over the scope's params that have a gradient of ||g||_2^2
        theta_k = theta_{k-1} - lr / b_k g

    ``skip(k, i)``: param i has no gradient at step k (it neither moves nor enters b).
    Returns the arrays and the b of every param after each step (index 0: before).
    """
    group_of = [gi for gi, group in enumerate(SHAPES) for _ in group]
    scope_of = {
        "global": [0] * len(group_of),
        "group": group_of,
        "tensor": list(range(len(group_of))),
    }[scope]
    thetas = [x.copy() for x in arrays0]
    b_sq = {s: b_0**2 for s in scope_of}
    history = [[x.copy() for x in thetas]]
    b_history = [[math.sqrt(b_sq[s]) for s in scope_of]]
    for k in range(steps):
        full = grad(thetas)
        g = {}
        for i, theta in enumerate(thetas):
            if skip(k, i):
                continue
            gi = -full[i] if maximize else full[i]
            g[i] = np.asarray(gi + wd * theta)
        for i, gi in g.items():
            b_sq[scope_of[i]] += float(np.sum(gi.astype(np.float64) ** 2))
        for i, gi in g.items():
            thetas[i] = thetas[i] - lrs[group_of[i]] / math.sqrt(b_sq[scope_of[i]]) * gi
        history.append([x.copy() for x in thetas])
        b_history.append([math.sqrt(b_sq[s]) for s in scope_of])
    return history, b_history


NORM_CASES = {
    "lecture": dict(lrs=(1.0, 1.0), wd=0.0, maximize=False, b_0=0.5, with_none=False),
    "lr": dict(lrs=(0.7, 2.5), wd=0.0, maximize=False, b_0=0.5, with_none=False),
    "weight_decay": dict(lrs=(1.0, 0.5), wd=0.3, maximize=False, b_0=1.0, with_none=False),
    "maximize": dict(lrs=(1.0, 1.0), wd=0.0, maximize=True, b_0=0.1, with_none=False),
    "none_grads": dict(lrs=(1.0, 1.0), wd=0.0, maximize=False, b_0=0.5, with_none=True),
    "all": dict(lrs=(0.8, 1.3), wd=0.1, maximize=True, b_0=0.05, with_none=True),
}


def skip_rule(with_none: bool):
    """Param 2 (the first of group 1, i.e. the holder of that group's b) has no gradient at
    steps 1, 4, 7, ...; param 0 (holder of the global b) none at steps 5, 11, 17, ..."""
    if not with_none:
        return lambda k, i: False
    return lambda k, i: (i == 2 and k % 3 == 1) or (i == 0 and k % 6 == 5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scope", ["global", "group", "tensor"])
@pytest.mark.parametrize("case", list(NORM_CASES))
def test_adagrad_norm_scopes(dtype, scope, case):
    """AdagradNorm over four arrays in two param groups, for every scope: trajectories of
    every array and opt.b(p) of every array against the reference, after every step."""
    cfg = NORM_CASES[case]
    grad, arrays0 = norm_problem(dtype)
    skip = skip_rule(cfg["with_none"])
    sign = -1.0 if cfg["maximize"] else 1.0

    def objective_grad(arrays):
        # With maximize, hand over the gradient of -L, so the run still minimises L.
        return [np.asarray(sign * g) for g in grad(arrays)]

    history, b_history = adagrad_norm_reference(
        objective_grad,
        arrays0,
        scope,
        STEPS,
        lrs=cfg["lrs"],
        wd=cfg["wd"],
        maximize=cfg["maximize"],
        b_0=cfg["b_0"],
        skip=skip,
    )

    params = [fo.Parameter(x.copy()) for x in arrays0]
    opt = fo.AdagradNorm(
        [
            {"params": params[:2], "lr": cfg["lrs"][0]},
            {"params": params[2:], "lr": cfg["lrs"][1]},
        ],
        b0=cfg["b_0"],
        weight_decay=cfg["wd"],
        scope=scope,
        maximize=cfg["maximize"],
    )
    actual = [[p.copy() for p in params]]
    actual_b = [[opt.b(p) for p in params]]
    for k in range(STEPS):
        current = objective_grad([p.view(np.ndarray) for p in params])
        for i, p in enumerate(params):
            p.grad = None if skip(k, i) else current[i]
        before = [p.copy() for p in params]
        opt.step()
        for i, p in enumerate(params):
            if skip(k, i):  # no gradient: the param does not move at all
                assert np.array_equal(p, before[i])
        actual.append([p.copy() for p in params])
        actual_b.append([opt.b(p) for p in params])

    for i in range(len(params)):
        assert_trajectory([step[i] for step in actual], [step[i] for step in history], dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(np.array(actual_b), np.array(b_history), rtol=rtol)
    # The scopes really differ: global shares one b, group one per group, tensor one per array.
    distinct = len({round(b, 9) for b in b_history[-1]})
    assert distinct == {"global": 1, "group": 2, "tensor": 4}[scope]


@pytest.mark.parametrize("b0", [0.0, -1.0, -1e-300])
def test_adagrad_norm_rejects_non_positive_b0(b0):
    """The lecture requires b_0 > 0."""
    with pytest.raises(ValueError):
        fo.AdagradNorm([np.zeros(3)], b0=b0)
    with pytest.raises(ValueError):
        fo.AdagradNorm([{"params": [np.zeros(3)]}, {"params": [np.zeros(2)], "b0": b0}])


# --- convergence rates ------------------------------------------------------------------


KAPPA = 50.0
MU, L = 1.0, KAPPA


def rate_problem():
    """A quadratic with spectrum exactly spanning [mu, L] (condition number kappa), its
    gradient and its minimiser theta* = A^{-1} b."""
    n = 12
    a, b, theta0 = quadratic(n, np.linspace(MU, L, n), seed=11)
    return (lambda theta: a @ theta - b), theta0, np.linalg.solve(a, b)


def empirical_rate(trajectory: np.ndarray, theta_star: np.ndarray, k1: int, k2: int) -> float:
    """Geometric mean of ||theta_{k+1} - theta*|| / ||theta_k - theta*|| over k1 <= k < k2."""
    errors = np.linalg.norm(trajectory - theta_star, axis=1)
    assert errors[k2] > 1e-11 * errors[0]  # still far above rounding noise (~1e-15)
    ratios = errors[k1 + 1 : k2 + 1] / errors[k1:k2]
    return float(np.exp(np.mean(np.log(ratios))))


def test_gd_rate():
    """GD with step 2/(L + mu) contracts at (kappa - 1)/(kappa + 1)."""
    grad, theta0, theta_star = rate_problem()
    trajectory = run_grads(lambda p: fo.SGD(p, lr=2 / (L + MU)), theta0, grad, steps=400)
    rate = empirical_rate(trajectory, theta_star, 200, 400)
    assert rate == pytest.approx((KAPPA - 1) / (KAPPA + 1), rel=0.02)


def test_heavy_ball_rate():
    """Heavy ball with alpha = 4/(sqrt(L) + sqrt(mu))^2, beta = ((sqrt(kappa) - 1)/(sqrt(kappa)
    + 1))^2 contracts at (sqrt(kappa) - 1)/(sqrt(kappa) + 1). The extreme eigenvalues give a
    double root, so the error behaves as k r^k and the observed ratio is r (1 + 1/k): about
    1.5% above r on the window used, hence rel=0.04."""
    grad, theta0, theta_star = rate_problem()
    s = math.sqrt(KAPPA)
    alpha = 4 / (math.sqrt(L) + math.sqrt(MU)) ** 2
    beta = ((s - 1) / (s + 1)) ** 2
    trajectory = run_grads(lambda p: fo.SGD(p, lr=alpha, momentum=beta), theta0, grad, steps=100)
    rate = empirical_rate(trajectory, theta_star, 40, 100)
    assert rate == pytest.approx((s - 1) / (s + 1), rel=0.04)
    # ... which beats plain GD's (kappa - 1)/(kappa + 1) by far.
    assert rate < 0.85 * (KAPPA - 1) / (KAPPA + 1)


def test_nesterov_rate():
    """NAG with alpha = 1/L, beta = (sqrt(kappa) - 1)/(sqrt(kappa) + 1) stays within the
    lecture's rate sqrt((sqrt(kappa) - 1)/sqrt(kappa)). On a quadratic the mu-eigenvalue of the
    look-ahead iteration is a double root at 1 - 1/sqrt(kappa) (the lecture's rate squared),
    so the observed ratio is that times (1 + 1/k), hence rel=0.04."""
    grad, theta0, theta_star = rate_problem()
    s = math.sqrt(KAPPA)
    beta = (s - 1) / (s + 1)
    trajectory = run_grads(
        lambda p: fo.SGD(p, lr=1 / L, momentum=beta, nesterov=True), theta0, grad, steps=150
    )
    rate = empirical_rate(trajectory, theta_star, 60, 150)
    assert rate <= math.sqrt((s - 1) / s)
    assert rate == pytest.approx(1 - 1 / s, rel=0.04)


def test_adagrad_norm_scope_starts_from_its_groups_b0():
    """b_0 is the b0 of the group that holds the scope's accumulator, not the default."""
    p, q = np.zeros(3), np.zeros(2)
    opt = fo.AdagradNorm([{"params": [p], "b0": 2.0}, {"params": [q]}], b0=0.01, scope="group")
    assert opt.b(p) == 2.0 and opt.b(q) == 0.01
    g = np.array([1.0, 2.0, 2.0])
    opt.step(grads=[g, None])
    b = np.sqrt(2.0**2 + g @ g)
    assert opt.b(p) == pytest.approx(b, rel=1e-15) and opt.b(q) == 0.01
    np.testing.assert_allclose(p, -g / b, rtol=1e-15)


def _norm_run(steps, opt, params, rng):
    for _ in range(steps):
        opt.step(grads=[rng.standard_normal(p.shape) for p in params])


def test_adagrad_norm_regrouped_scopes_continue_from_their_largest_b():
    """Editing a group's scope mid-run, or appending a parameter, does not restart b:
    every parameter holds its scope's b^2, and a regrouped scope continues from the
    largest b^2 its parameters hold (b only grows)."""
    rng = np.random.default_rng(11)
    p, q, r = np.zeros(3), np.zeros(4), np.zeros(2)
    opt = fo.AdagradNorm([{"params": [p]}, {"params": [q]}], lr=1.0, b0=0.5)
    _norm_run(20, opt, [p, q], rng)
    b_global = opt.b(q)
    assert opt.b(p) == b_global > 1.0
    opt.param_groups[0]["scope"] = "tensor"  # p leaves the global scope with its own b
    assert opt.b(p) == b_global and opt.b(q) == b_global
    g = rng.standard_normal(4)
    before = q.copy()
    opt.step(grads=[None, g])
    b_new = np.sqrt(b_global**2 + g @ g)
    np.testing.assert_allclose(opt.b(q), b_new, rtol=1e-14)
    np.testing.assert_allclose(q, before - g / b_new, rtol=1e-14)
    assert opt.b(p) == b_global  # its own scope had no gradient
    opt.param_groups[1]["params"].append(r)  # a new member joins the global scope
    assert opt.b(r) == opt.b(q)
    opt.param_groups[0]["scope"] = "global"  # regroup: the largest b^2 wins
    assert opt.b(p) == opt.b(q) == pytest.approx(max(b_global, b_new), rel=1e-14)


def test_adagrad_norm_invalid_scope_edited_mid_run_is_a_value_error():
    p = np.zeros(3)
    opt = fo.AdagradNorm([p])
    opt.param_groups[0]["scope"] = "tensr"
    with pytest.raises(ValueError, match=r"param_groups\[0\].*scope"):
        opt.step(grads=[np.ones(3)])
    assert np.array_equal(p, np.zeros(3)) and len(opt.state) == 0
