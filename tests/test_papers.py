"""Algorithms beyond the lecture, against NumPy transcriptions of their papers.

Each reference is the paper's algorithm written line by line in NumPy, independent of
ferroptim and of torch; each test runs it and a ferroptim optimizer on the same problem
(the lecture tests' quadratic) and compares the whole trajectory, step by step (30
steps), in float64 and float32:

* Lion (Chen et al. 2023, Algorithm 2), which torch.optim does not have: several
  hyperparameter sets with weight decay and maximize, gradients through ``.grad`` and
  ``grads=``, and two param groups with different hyperparameters and missing gradients;
* NAdam (Dozat 2016, with torch's momentum schedule), RAdam (Liu et al. 2020,
  Algorithm 2, on both sides of the ``rho_t > 5`` switch) and Adamax (Kingma & Ba 2015,
  Algorithm 2); ``tests/test_torch_parity.py`` compares these three with torch.optim.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from test_lecture import STEPS, assert_trajectory, quad_problem, run_grads, run_parameter

import ferroptim as fo

DTYPES = [np.float64, np.float32]


def trajectory(update, theta0: np.ndarray, grad, steps: int = STEPS) -> list[np.ndarray]:
    """Iterates of ``theta <- update(theta, grad(theta), t)`` for t = 1..steps."""
    theta = theta0.copy()
    out = [theta.copy()]
    for t in range(1, steps + 1):
        theta = update(theta, grad(theta), t)
        out.append(theta.copy())
    return out


# --- Lion ---------------------------------------------------------------------------------


def lion_reference(lr: float, beta1: float, beta2: float, wd: float, maximize: bool):
    """Chen et al. 2023, Algorithm 2, line by line; returns ``update(theta, g, t)``."""
    m = None

    def update(theta, g, t):
        nonlocal m
        if m is None:
            m = np.zeros_like(theta)  # m_0 <- 0
        if maximize:
            g = -g
        c = beta1 * m + (1 - beta1) * g  # c_t <- beta1 m_{t-1} + (1 - beta1) g_t
        theta = theta - lr * (
            np.sign(c) + wd * theta
        )  # theta_t <- theta_{t-1} - eta (sign(c_t) + lambda theta_{t-1})
        m = beta2 * m + (1 - beta2) * g  # m_t <- beta2 m_{t-1} + (1 - beta2) g_t
        return theta

    return update


LION_CASES = [
    dict(lr=1e-4, beta1=0.9, beta2=0.99, wd=0.0, maximize=False),  # the defaults
    dict(lr=0.01, beta1=0.9, beta2=0.99, wd=0.0, maximize=False),
    dict(lr=0.03, beta1=0.95, beta2=0.98, wd=0.5, maximize=False),
    dict(lr=0.01, beta1=0.5, beta2=0.9, wd=0.1, maximize=True),
    dict(lr=0.02, beta1=0.0, beta2=0.0, wd=0.0, maximize=False),  # signSGD
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LION_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("run", [run_parameter, run_grads], ids=["grad-attribute", "grads-argument"])
def test_lion_algorithm_2(dtype, case, run):
    grad, theta0 = quad_problem(dtype, seed=11)
    expected = trajectory(lion_reference(**case), theta0, grad)

    make = partial(
        fo.Lion,
        lr=case["lr"],
        betas=(case["beta1"], case["beta2"]),
        weight_decay=case["wd"],
        maximize=case["maximize"],
    )
    # the first case is Lion's defaults: built without arguments, it checks them too
    assert_trajectory(run(fo.Lion if case is LION_CASES[0] else make, theta0, grad), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lion_param_groups_and_missing_gradients(dtype):
    """Two groups with their own lr, betas, weight decay and maximize, stepped together; a
    parameter without a gradient at a step keeps its value and its momentum."""
    rng = np.random.default_rng(3)
    shapes = [(3, 4), (5,), (2, 2)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    groups = [
        dict(lr=0.01, beta1=0.9, beta2=0.99, wd=0.1, maximize=False),
        dict(lr=0.05, beta1=0.5, beta2=0.8, wd=0.0, maximize=True),
    ]
    opt = fo.Lion(
        [
            {"params": params[:2]},
            {"params": params[2:], "lr": 0.05, "betas": (0.5, 0.8), "weight_decay": 0.0, "maximize": True},
        ],
        lr=0.01,
        weight_decay=0.1,
    )
    refs = [lion_reference(**groups[0]), lion_reference(**groups[0]), lion_reference(**groups[1])]
    expected = [p.copy() for p in params]
    for t in range(1, STEPS + 1):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        if t % 4 == 0:
            grads[t % 3] = None
        opt.step(grads=grads)
        for i, g in enumerate(grads):
            if g is not None:
                expected[i] = refs[i](expected[i], g, t)
        for p, e in zip(params, expected):
            np.testing.assert_allclose(p, e, **({"rtol": 1e-12} if dtype == np.float64 else {"rtol": 1e-5}))
    assert set(opt.state[params[0]]) == {"exp_avg"}  # Lion counts no steps


# --- NAdam, RAdam, Adamax -------------------------------------------------------------------


def nadam_reference(lr, beta1, beta2, eps, psi):
    """Dozat's NAdam with the schedule ``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))``, as
    torch.optim.NAdam documents it. The running product of ``mu`` is kept in float32, as
    torch (and so ferroptim) keeps its ``mu_product`` state."""
    m = v = None
    product = np.float32(1.0)

    def mu(t):
        return beta1 * (1 - 0.5 * 0.96 ** (t * psi))

    def update(theta, g, t):
        nonlocal m, v, product
        if m is None:
            m, v = np.zeros_like(theta), np.zeros_like(theta)
        product = np.float32(product * np.float32(mu(t)))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = mu(t + 1) * m / (1 - float(product) * mu(t + 1)) + (1 - mu(t)) * g / (1 - float(product))
        v_hat = v / (1 - beta2**t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)

    return update


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("lr", "beta1", "beta2", "eps", "psi"),
    [(2e-3, 0.9, 0.999, 1e-8, 4e-3), (0.05, 0.9, 0.999, 1e-8, 0.5), (0.02, 0.5, 0.9, 1e-3, 0.0)],
)
def test_nadam_dozat(dtype, lr, beta1, beta2, eps, psi):
    grad, theta0 = quad_problem(dtype, seed=12)
    expected = trajectory(nadam_reference(lr, beta1, beta2, eps, psi), theta0, grad)
    make = partial(fo.NAdam, lr=lr, betas=(beta1, beta2), eps=eps, momentum_decay=psi)
    assert_trajectory(run_parameter(make, theta0, grad), expected, dtype)


def radam_reference(lr, beta1, beta2, eps):
    """Liu et al. 2020, Algorithm 2 (with torch's ``eps`` in the adaptive rate)."""
    m = v = None
    rho_inf = 2 / (1 - beta2) - 1

    def update(theta, g, t):
        nonlocal m, v
        if m is None:
            m, v = np.zeros_like(theta), np.zeros_like(theta)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        if rho_t > 5:
            l_t = math.sqrt(1 - beta2**t) / (np.sqrt(v) + eps)
            r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            return theta - lr * r_t * m_hat * l_t
        return theta - lr * m_hat

    return update


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("lr", "beta1", "beta2", "eps"),
    [(1e-3, 0.9, 0.999, 1e-8), (0.05, 0.9, 0.99, 1e-8), (0.05, 0.5, 0.6, 1e-3)],
    ids=["default", "rectified-from-step-6", "never-rectified"],
)
def test_radam_algorithm_2(dtype, lr, beta1, beta2, eps):
    grad, theta0 = quad_problem(dtype, seed=13)
    expected = trajectory(radam_reference(lr, beta1, beta2, eps), theta0, grad)
    make = partial(fo.RAdam, lr=lr, betas=(beta1, beta2), eps=eps)
    assert_trajectory(run_grads(make, theta0, grad), expected, dtype)


def adamax_reference(lr, beta1, beta2, eps):
    """Kingma & Ba 2015, Algorithm 2; torch adds ``eps`` to ``|g|`` (``eps=0`` is the paper)."""
    m = u = None

    def update(theta, g, t):
        nonlocal m, u
        if m is None:
            m, u = np.zeros_like(theta), np.zeros_like(theta)
        m = beta1 * m + (1 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g) + eps)
        return theta - (lr / (1 - beta1**t)) * m / u

    return update


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("lr", "beta1", "beta2", "eps"),
    [(2e-3, 0.9, 0.999, 1e-8), (0.05, 0.9, 0.999, 0.0), (0.05, 0.5, 0.8, 1e-3)],
)
def test_adamax_algorithm_2(dtype, lr, beta1, beta2, eps):
    grad, theta0 = quad_problem(dtype, seed=14)
    expected = trajectory(adamax_reference(lr, beta1, beta2, eps), theta0, grad)
    make = partial(fo.Adamax, lr=lr, betas=(beta1, beta2), eps=eps)
    assert_trajectory(run_parameter(make, theta0, grad), expected, dtype)
