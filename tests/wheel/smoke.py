"""Run by ``check_wheel.py`` inside a fresh virtual environment holding only the wheel and
NumPy: a few steps of SGD (with momentum, Nesterov and weight decay) and Adam/AdamW, in
float32 and float64, against NumPy transcriptions of their update rules as torch.optim
documents them (the lecture's SGD with momentum, and Kingma & Ba's Algorithm 1 with
torch's placement of epsilon). Python 3.9 syntax; prints one line per check."""

from __future__ import annotations

import sys

import numpy as np

import ferroptim as fo

STEPS = 5
TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def sgd_reference(theta, grads, lr, momentum, dampening, weight_decay, nesterov):
    """torch.optim.SGD's update: g ← g + λθ; b ← μb + (1 − τ)g (b = g at the first step);
    g ← g + μb with Nesterov, else g ← b; θ ← θ − ηg."""
    theta, buf = theta.copy(), None
    for g in grads:
        g = g + weight_decay * theta
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
    return theta


def adam_reference(theta, grads, lr, betas, eps, weight_decay, decoupled):
    """Adam (Kingma & Ba, Algorithm 1): m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²,
    θ ← θ − η m/(1 − β₁ᵗ) / (√(v/(1 − β₂ᵗ)) + ε); AdamW first decays θ ← θ(1 − ηλ),
    Adam adds λθ to g."""
    b1, b2 = betas
    theta, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return theta


def run(make, dtype, rng):
    """``STEPS`` steps of the optimizer ``make(params)`` on two parameters of ``dtype``."""
    params = [rng.standard_normal(shape).astype(dtype) for shape in [(7, 5), (13,)]]
    start = [p.copy() for p in params]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for _ in range(STEPS)] for p in params]
    opt = make(params)
    for k in range(STEPS):
        opt.step(grads=[g[k] for g in grads])
    return start, grads, params


def check(name, make, reference, rng):
    for dtype in (np.float32, np.float64):
        start, grads, params = run(make, dtype, rng)
        for theta0, gs, theta in zip(start, grads, params):
            # The reference in float64, compared at the parameter's precision.
            expected = reference(theta0.astype(np.float64), [g.astype(np.float64) for g in gs])
            np.testing.assert_allclose(theta, expected, **TOL[dtype], err_msg=f"{name} {dtype.__name__}")
        print(f"  {name} {np.dtype(dtype).name}: matches NumPy")


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"  ferroptim {fo.__version__} from {fo.__file__} on Python {sys.version.split()[0]}")
    sgd = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)
    check("SGD", lambda p: fo.SGD(p, **sgd), lambda t, g: sgd_reference(t, g, nesterov=False, **sgd), rng)
    nesterov = dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01)
    check(
        "SGD nesterov",
        lambda p: fo.SGD(p, nesterov=True, **nesterov),
        lambda t, g: sgd_reference(t, g, nesterov=True, **nesterov),
        rng,
    )
    adam = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    check(
        "Adam", lambda p: fo.Adam(p, **adam), lambda t, g: adam_reference(t, g, decoupled=False, **adam), rng
    )
    check(
        "AdamW", lambda p: fo.AdamW(p, **adam), lambda t, g: adam_reference(t, g, decoupled=True, **adam), rng
    )


if __name__ == "__main__":
    main()
