"""Other frameworks' conventions: ``convention="torch" | "optax" | "keras" | "paper"``.

References, each independent of ferroptim:

* optax (jax on CPU): ``opt.init`` / ``opt.update`` / ``optax.apply_updates`` from the same
  start, trajectory by trajectory, float64 (``jax_enable_x64``) and float32.
* Keras 3 on the jax backend: the real ``keras.optimizers`` classes, ``apply_gradients`` on a
  ``keras.Variable``.
* "paper": NumPy transcriptions of the lecture's and the papers' formulas.
* each numerics setting alone (with torch's convention): a NumPy transcription of the
  formula it names.

Tolerances. Every reference computes the same formula in the same precision, but in its
own order of operations (optax multiplies by ``rsqrt`` where we divide by ``sqrt``, XLA
and Keras round the per-step scalars in the parameter's dtype where we compute them in
float64): each step may differ by a few units in the last place of the parameter, and the
differences add up over the steps without being amplified (the updates are bounded
functions of the gradients, which are fixed). So after step ``t`` we allow
``8 t`` machine epsilons of the parameter's scale: about 1e-13 in float64 and 3e-5 in
float32 after 30 steps, far below what any of the settings tested here changes (each
"wrong knob" case below shows the difference a wrong setting makes is far larger).
"""

from __future__ import annotations

import inspect
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from test_simd import LEVELS, _run, restore_level  # noqa: E402, F401

import ferroptim as fo  # noqa: E402

jax.config.update("jax_enable_x64", True)

STEPS = 30
DTYPES = [np.float64, np.float32]
SHAPE = (3, 5)


def gradients(dtype: type, steps: int = STEPS, seed: int = 0) -> list[np.ndarray]:
    """A fixed gradient sequence with entries of mixed scale (and a few zeros)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        g = rng.standard_normal(SHAPE) * rng.choice([1e-3, 1.0, 10.0], size=SHAPE)
        g[0, 0] = 0.0 if rng.random() < 0.3 else g[0, 0]
        out.append(g.astype(dtype))
    return out


def start(dtype: type) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(SHAPE).astype(dtype)


def ours(make, dtype: type, grads: list[np.ndarray], lrs: list[float] | None = None) -> list[np.ndarray]:
    """ferroptim's trajectory: the parameter after each step (``lrs``: per-step lr)."""
    p = fo.Parameter(start(dtype))
    opt = make([p])
    out = []
    for t, g in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[t]
        p.grad = g
        opt.step()
        out.append(np.array(p))
    return out


def with_optax(tx, dtype: type, grads: list[np.ndarray]) -> list[np.ndarray]:
    params = jax.numpy.asarray(start(dtype))
    state = tx.init(params)
    out = []
    for g in grads:
        updates, state = tx.update(jax.numpy.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return out


def with_keras(opt, dtype: type, grads: list[np.ndarray], lrs: list[float] | None = None) -> list[np.ndarray]:
    var = keras.Variable(start(dtype), dtype=np.dtype(dtype).name)
    out = []
    for t, g in enumerate(grads):
        if lrs is not None:
            opt.learning_rate = lrs[t]
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        out.append(np.asarray(var.value))
    return out


def close(got: list[np.ndarray], want: list[np.ndarray], dtype: type) -> None:
    """Step ``t`` within ``8 t`` epsilons of the parameter scale (module docstring)."""
    eps = np.finfo(dtype).eps
    for t, (a, b) in enumerate(zip(got, want), start=1):
        assert a.dtype == dtype
        scale = max(1.0, float(np.max(np.abs(b))))
        np.testing.assert_allclose(a, b, rtol=0, atol=8 * t * eps * scale, err_msg=f"step {t}")


def differs(got: list[np.ndarray], want: list[np.ndarray], dtype: type) -> bool:
    try:
        close(got, want, dtype)
    except AssertionError:
        return True
    return False


# Learning rates exactly representable in float32: Keras keeps its learning rate in a
# float32 variable, which would otherwise round a float64 run's lr.
LR = 2.0**-6
DECAYING = [2.0 ** -(5 + t // 5) for t in range(STEPS)]  # halved every 5 steps


# --------------------------------------------------------------------------------------------
# optax


OPTAX_CASES = [
    ("adam", lambda: optax.adam(LR), lambda p: fo.Adam(p, lr=LR, convention="optax")),
    (
        "adam-eps_root",
        lambda: optax.adam(LR, b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-4),
        lambda p: fo.Adam(p, lr=LR, betas=(0.8, 0.95), eps=1e-6, eps_root=1e-4, convention="optax"),
    ),
    (
        "amsgrad",
        lambda: optax.amsgrad(LR, b2=0.9, eps_root=1e-8),
        lambda p: fo.Adam(p, lr=LR, betas=(0.9, 0.9), amsgrad=True, eps_root=1e-8, convention="optax"),
    ),
    (
        "adamw",
        lambda: optax.adamw(LR, weight_decay=0.1),
        lambda p: fo.AdamW(p, lr=LR, weight_decay=0.1, convention="optax"),
    ),
    ("adamw-default-wd", lambda: optax.adamw(LR), lambda p: fo.AdamW(p, lr=LR, convention="optax")),
    ("sgd", lambda: optax.sgd(LR), lambda p: fo.SGD(p, lr=LR, convention="optax")),
    (
        "sgd-momentum",
        lambda: optax.sgd(LR, momentum=0.9),
        lambda p: fo.SGD(p, lr=LR, momentum=0.9, convention="optax"),
    ),
    (
        "sgd-nesterov",
        lambda: optax.sgd(LR, momentum=0.9, nesterov=True),
        lambda p: fo.SGD(p, lr=LR, momentum=0.9, nesterov=True, convention="optax"),
    ),
    ("rmsprop", lambda: optax.rmsprop(LR), lambda p: fo.RMSprop(p, lr=LR, convention="optax")),
    (
        "rmsprop-centered-momentum",
        lambda: optax.rmsprop(LR, decay=0.8, eps=1e-4, centered=True, momentum=0.7),
        lambda p: fo.RMSprop(p, lr=LR, alpha=0.8, eps=1e-4, centered=True, momentum=0.7, convention="optax"),
    ),
    (
        "rmsprop-initial_scale-eps-outside",
        lambda: optax.rmsprop(LR, initial_scale=0.5, eps_in_sqrt=False, momentum=0.5),
        lambda p: fo.RMSprop(
            p, lr=LR, initial_accumulator_value=0.5, eps_in_sqrt=False, momentum=0.5, convention="optax"
        ),
    ),
    ("adagrad", lambda: optax.adagrad(LR), lambda p: fo.Adagrad(p, lr=LR, convention="optax")),
    (
        "adagrad-args",
        lambda: optax.adagrad(LR, initial_accumulator_value=0.0, eps=1e-3),
        lambda p: fo.Adagrad(p, lr=LR, initial_accumulator_value=0.0, eps=1e-3, convention="optax"),
    ),
    ("adadelta", lambda: optax.adadelta(1.0), lambda p: fo.Adadelta(p, convention="optax")),
    (
        "adadelta-args",
        lambda: optax.adadelta(0.5, rho=0.7, eps=1e-4, weight_decay=0.1),
        lambda p: fo.Adadelta(p, lr=0.5, rho=0.7, eps=1e-4, weight_decay=0.1, convention="optax"),
    ),
    ("adamax", lambda: optax.adamax(LR), lambda p: fo.Adamax(p, lr=LR, convention="optax")),
    ("nadam", lambda: optax.nadam(LR), lambda p: fo.NAdam(p, lr=LR, convention="optax")),
    (
        "nadamw",
        lambda: optax.nadamw(LR, b1=0.8, weight_decay=0.1),
        lambda p: fo.NAdam(
            p, lr=LR, betas=(0.8, 0.999), weight_decay=0.1, decoupled_weight_decay=True, convention="optax"
        ),
    ),
    ("lion", lambda: optax.lion(LR), lambda p: fo.Lion(p, lr=LR, convention="optax")),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, theirs, make", OPTAX_CASES, ids=[c[0] for c in OPTAX_CASES])
def test_optax_trajectories(name, theirs, make, dtype):
    grads = gradients(dtype)
    close(ours(make, dtype, grads), with_optax(theirs(), dtype, grads), dtype)


def test_optax_lr_schedules_reach_the_momentum_as_optax_does():
    """optax's rmsprop scales by the learning rate before its ``trace`` (lr inside the
    momentum), its sgd after (lr outside): with a schedule the two forms differ."""
    dtype = np.float64
    grads = gradients(dtype)
    schedule = lambda count: jax.numpy.asarray(DECAYING)[count]  # noqa: E731
    cases = [
        (optax.rmsprop(schedule, momentum=0.9), lambda p: fo.RMSprop(p, momentum=0.9, convention="optax")),
        (optax.sgd(schedule, momentum=0.9), lambda p: fo.SGD(p, momentum=0.9, convention="optax")),
    ]
    for tx, make in cases:
        want = with_optax(tx, dtype, grads)
        close(ours(make, dtype, grads, DECAYING), want, dtype)
    # the other form of the momentum is far off
    wrong = ours(
        lambda p: fo.RMSprop(p, momentum=0.9, convention="optax", lr_in_momentum=False),
        dtype,
        grads,
        DECAYING,
    )
    assert differs(wrong, with_optax(cases[0][0], dtype, grads), dtype)


def test_optax_amsgrad_keeps_the_max_of_v_hat():
    """``max_exp_avg_sq`` holds optax's ``nu_max`` (the max of the bias-corrected v)."""
    dtype = np.float64
    grads = gradients(dtype)
    p = fo.Parameter(start(dtype))
    opt = fo.Adam([p], lr=LR, amsgrad=True, convention="optax")
    tx = optax.amsgrad(LR)
    state = tx.init(jax.numpy.asarray(start(dtype)))
    params = jax.numpy.asarray(start(dtype))
    for g in grads:
        p.grad = g
        opt.step()
        updates, state = tx.update(jax.numpy.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(opt.state[p]["max_exp_avg_sq"], np.asarray(state[0].nu_max), rtol=1e-13)
    # torch's raw maximum takes a different path
    raw = ours(lambda q: fo.Adam(q, lr=LR, amsgrad=True, convention="optax", amsgrad_max="v"), dtype, grads)
    assert differs(raw, with_optax(optax.amsgrad(LR), dtype, grads), dtype)


OPTAX_DEFAULTS = [
    # (optax function, ferroptim class, {optax argument: ferroptim group key})
    (optax.adam, fo.Adam, {"b1": "betas[0]", "b2": "betas[1]", "eps": "eps", "eps_root": "eps_root"}),
    (optax.adamw, fo.AdamW, {"eps": "eps", "eps_root": "eps_root", "weight_decay": "weight_decay"}),
    (optax.rmsprop, fo.RMSprop, {"decay": "alpha", "eps": "eps", "eps_in_sqrt": "eps_in_sqrt"}),
    (optax.rmsprop, fo.RMSprop, {"initial_scale": "initial_accumulator_value"}),
    (optax.adagrad, fo.Adagrad, {"initial_accumulator_value": "initial_accumulator_value", "eps": "eps"}),
    (optax.adadelta, fo.Adadelta, {"rho": "rho", "eps": "eps"}),
    (optax.adamax, fo.Adamax, {"eps": "eps"}),
    (optax.nadam, fo.NAdam, {"b1": "betas[0]", "b2": "betas[1]", "eps": "eps"}),
    (optax.lion, fo.Lion, {"b1": "betas[0]", "b2": "betas[1]", "weight_decay": "weight_decay"}),
]


def _group_value(group: dict, key: str):
    if key.startswith("betas["):
        return group["betas"][int(key[6])]
    return group[key]


@pytest.mark.parametrize(
    "fn, cls, keys",
    OPTAX_DEFAULTS,
    ids=[f"{c.__name__}-{getattr(f, '__name__', 'nadam')}" for f, c, _ in OPTAX_DEFAULTS],
)
def test_optax_defaults(fn, cls, keys):
    """convention="optax" takes the defaults of optax's own signatures."""
    group = cls([np.zeros(2)], convention="optax").param_groups[0]
    signature = inspect.signature(fn).parameters
    for theirs, key in keys.items():
        assert _group_value(group, key) == signature[theirs].default, (theirs, key)


# --------------------------------------------------------------------------------------------
# Keras 3 (jax backend)


KERAS_CASES = [
    ("Adam", lambda: keras.optimizers.Adam(LR), lambda p: fo.Adam(p, lr=LR, convention="keras")),
    (
        "Adam-amsgrad",
        lambda: keras.optimizers.Adam(LR, beta_1=0.8, beta_2=0.9, epsilon=1e-4, amsgrad=True),
        lambda p: fo.Adam(p, lr=LR, betas=(0.8, 0.9), eps=1e-4, amsgrad=True, convention="keras"),
    ),
    (
        "Adam-weight_decay",
        lambda: keras.optimizers.Adam(LR, weight_decay=0.1),
        lambda p: fo.Adam(p, lr=LR, weight_decay=0.1, convention="keras"),
    ),
    ("AdamW", lambda: keras.optimizers.AdamW(LR), lambda p: fo.AdamW(p, lr=LR, convention="keras")),
    (
        "SGD-momentum",
        lambda: keras.optimizers.SGD(LR, momentum=0.9),
        lambda p: fo.SGD(p, lr=LR, momentum=0.9, convention="keras"),
    ),
    (
        "SGD-nesterov",
        lambda: keras.optimizers.SGD(LR, momentum=0.8, nesterov=True),
        lambda p: fo.SGD(p, lr=LR, momentum=0.8, nesterov=True, convention="keras"),
    ),
    ("SGD", lambda: keras.optimizers.SGD(LR), lambda p: fo.SGD(p, lr=LR, convention="keras")),
    ("RMSprop", lambda: keras.optimizers.RMSprop(LR), lambda p: fo.RMSprop(p, lr=LR, convention="keras")),
    (
        "RMSprop-centered-momentum",
        lambda: keras.optimizers.RMSprop(LR, rho=0.8, momentum=0.7, epsilon=1e-4, centered=True),
        lambda p: fo.RMSprop(p, lr=LR, alpha=0.8, momentum=0.7, eps=1e-4, centered=True, convention="keras"),
    ),
    ("Adagrad", lambda: keras.optimizers.Adagrad(LR), lambda p: fo.Adagrad(p, lr=LR, convention="keras")),
    (
        "Adadelta",
        lambda: keras.optimizers.Adadelta(0.5),
        lambda p: fo.Adadelta(p, lr=0.5, convention="keras"),
    ),
    ("Adamax", lambda: keras.optimizers.Adamax(LR), lambda p: fo.Adamax(p, lr=LR, convention="keras")),
    ("Nadam", lambda: keras.optimizers.Nadam(LR), lambda p: fo.NAdam(p, lr=LR, convention="keras")),
    (
        "Nadam-weight_decay",
        lambda: keras.optimizers.Nadam(LR, beta_1=0.8, weight_decay=0.1),
        lambda p: fo.NAdam(p, lr=LR, betas=(0.8, 0.999), weight_decay=0.1, convention="keras"),
    ),
    ("Lion", lambda: keras.optimizers.Lion(LR), lambda p: fo.Lion(p, lr=LR, convention="keras")),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, theirs, make", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_keras_trajectories(name, theirs, make, dtype):
    grads = gradients(dtype)
    close(ours(make, dtype, grads), with_keras(theirs(), dtype, grads), dtype)


@pytest.mark.parametrize(
    "cls, keras_cls", [(fo.SGD, keras.optimizers.SGD), (fo.RMSprop, keras.optimizers.RMSprop)]
)
def test_keras_momentum_keeps_old_steps_at_their_lr(cls, keras_cls):
    """Keras's momentum buffers hold ``lr``-scaled steps; with a changing lr only
    ``lr_in_momentum`` follows them, torch's form does not."""
    dtype = np.float64
    grads = gradients(dtype)
    want = with_keras(keras_cls(DECAYING[0], momentum=0.9), dtype, grads, DECAYING)
    close(ours(lambda p: cls(p, momentum=0.9, convention="keras"), dtype, grads, DECAYING), want, dtype)
    wrong = ours(
        lambda p: cls(p, momentum=0.9, convention="keras", lr_in_momentum=False), dtype, grads, DECAYING
    )
    assert differs(wrong, want, dtype)


KERAS_DEFAULTS = [
    # (Keras class, ferroptim class, {Keras argument: ferroptim group key})
    (
        keras.optimizers.Adam,
        fo.Adam,
        {"learning_rate": "lr", "beta_1": "betas[0]", "beta_2": "betas[1]", "epsilon": "eps"},
    ),
    (
        keras.optimizers.AdamW,
        fo.AdamW,
        {"learning_rate": "lr", "epsilon": "eps", "weight_decay": "weight_decay"},
    ),
    (keras.optimizers.SGD, fo.SGD, {"learning_rate": "lr", "momentum": "momentum"}),
    (keras.optimizers.RMSprop, fo.RMSprop, {"learning_rate": "lr", "rho": "alpha", "epsilon": "eps"}),
    (
        keras.optimizers.Adagrad,
        fo.Adagrad,
        {"learning_rate": "lr", "initial_accumulator_value": "initial_accumulator_value", "epsilon": "eps"},
    ),
    (keras.optimizers.Adadelta, fo.Adadelta, {"learning_rate": "lr", "rho": "rho", "epsilon": "eps"}),
    (keras.optimizers.Adamax, fo.Adamax, {"learning_rate": "lr", "epsilon": "eps"}),
    (keras.optimizers.Nadam, fo.NAdam, {"learning_rate": "lr", "beta_1": "betas[0]", "epsilon": "eps"}),
    (keras.optimizers.Lion, fo.Lion, {"learning_rate": "lr", "beta_1": "betas[0]", "beta_2": "betas[1]"}),
]


@pytest.mark.parametrize(
    "keras_cls, cls, keys", KERAS_DEFAULTS, ids=[c.__name__ for _, c, _ in KERAS_DEFAULTS]
)
def test_keras_defaults(keras_cls, cls, keys):
    """convention="keras" takes the defaults of Keras's own signatures."""
    group = cls([np.zeros(2)], convention="keras").param_groups[0]
    signature = inspect.signature(keras_cls.__init__).parameters
    for theirs, key in keys.items():
        assert _group_value(group, key) == signature[theirs].default, (theirs, key)


# --------------------------------------------------------------------------------------------
# the papers (NumPy transcriptions)


def numpy_trajectory(update, dtype: type, grads: list[np.ndarray], lrs: list[float] | None = None):
    """Runs ``update(theta, g, t, lr) -> theta`` in float64 from the same start."""
    theta = start(dtype).astype(np.float64)
    out = []
    for t, g in enumerate(grads, start=1):
        theta = update(theta, g.astype(np.float64), t, None if lrs is None else lrs[t - 1])
        out.append(theta.copy())
    return out


def adam_algorithm_1(alpha, beta1, beta2, eps):
    """Kingma & Ba 2015, Algorithm 1, line by line."""
    m = v = 0.0

    def update(theta, g, t, _):
        nonlocal m, v
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        return theta - alpha * m_hat / (np.sqrt(v_hat) + eps)

    return update


def heavy_ball(beta):
    """Sutskever et al. 2013, eq. (1)-(2): ``v <- beta v - alpha_k g``, ``theta <- theta + v``
    (the lecture's Polyak momentum, with the step size of the step that took it)."""
    velocity = 0.0

    def update(theta, g, t, alpha):
        nonlocal velocity
        velocity = beta * velocity - alpha * g
        return theta + velocity

    return update


def rmsprop_lecture(eta, gamma, eps):
    """The lecture: ``B_k = gamma B_{k-1} + (1 - gamma) g_k^2``, ``theta - eta (B_k + eps I)^{-1/2} g``."""
    b = 0.0

    def update(theta, g, t, _):
        nonlocal b
        b = gamma * b + (1 - gamma) * g * g
        return theta - eta * g / np.sqrt(b + eps)

    return update


def adagrad_lecture(eta, eps):
    """The lecture: ``theta - eta (B_k + eps I)^{-1} g``, ``B_k = (sum_j g_j^2)^{1/2}``."""
    history: list[np.ndarray] = []

    def update(theta, g, t, _):
        history.append(g)
        b = np.sqrt(sum(h * h for h in history))
        return theta - eta * g / (b + eps)

    return update


def adadelta_zeiler(rho, eps):
    """Zeiler 2012, Algorithm 1 (no learning rate)."""
    eg = ex = 0.0

    def update(theta, g, t, _):
        nonlocal eg, ex
        eg = rho * eg + (1 - rho) * g * g
        dx = -np.sqrt(ex + eps) / np.sqrt(eg + eps) * g
        ex = rho * ex + (1 - rho) * dx * dx
        return theta + dx

    return update


def adamax_algorithm_2(alpha, beta1, beta2, eps):
    """Kingma & Ba 2015, Algorithm 2, with ``eps`` added to ``u`` (0: the algorithm as printed)."""
    m = u = 0.0

    def update(theta, g, t, _):
        nonlocal m, u
        m = beta1 * m + (1 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g))
        return theta - alpha / (1 - beta1**t) * m / (u + eps)

    return update


def nadam_dozat(lr, beta1, beta2, eps, psi):
    """Dozat 2016, Algorithm 2 with the momentum schedule ``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))``
    and Adam's bias correction of ``v``, the products kept exactly."""
    m = v = 0.0
    product = 1.0

    def update(theta, g, t, _):
        nonlocal m, v, product
        mu = beta1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        product *= mu
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = mu_next * m / (1 - product * mu_next) + (1 - mu) * g / (1 - product)
        return theta - lr * m_hat / (np.sqrt(v / (1 - beta2**t)) + eps)

    return update


def nonzero_gradients(dtype):
    return [np.where(g == 0, 0.5, g).astype(dtype) for g in gradients(dtype)]


PAPER_CASES = [
    (
        "Adam",
        lambda p: fo.Adam(p, lr=LR, convention="paper"),
        lambda: adam_algorithm_1(LR, 0.9, 0.999, 1e-8),
        None,
    ),
    (
        "SGD-heavy-ball",
        lambda p: fo.SGD(p, momentum=0.9, convention="paper"),
        lambda: heavy_ball(0.9),
        DECAYING,
    ),
    (
        "RMSprop",
        lambda p: fo.RMSprop(p, lr=LR, convention="paper"),
        lambda: rmsprop_lecture(LR, 0.9, 1e-8),
        None,
    ),
    ("Adagrad", lambda p: fo.Adagrad(p, lr=LR, convention="paper"), lambda: adagrad_lecture(LR, 1e-10), None),
    ("Adadelta", lambda p: fo.Adadelta(p, convention="paper"), lambda: adadelta_zeiler(0.95, 1e-6), None),
    (
        "Adamax",
        lambda p: fo.Adamax(p, convention="paper", eps=0.0),
        lambda: adamax_algorithm_2(2e-3, 0.9, 0.999, 0.0),
        None,
    ),
    (
        "NAdam",
        lambda p: fo.NAdam(p, convention="paper"),
        lambda: nadam_dozat(2e-3, 0.9, 0.999, 1e-8, 1 / 250),
        None,
    ),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, make, reference, lrs", PAPER_CASES, ids=[c[0] for c in PAPER_CASES])
def test_paper_formulas(name, make, reference, lrs, dtype):
    grads = nonzero_gradients(dtype) if name == "Adamax" else gradients(dtype)
    want = numpy_trajectory(reference(), dtype, grads, lrs)
    # a float32 run rounds every operation to float32, the reference rounds nothing
    got = ours(make, dtype, grads, lrs)
    if dtype == np.float64:
        close(got, want, dtype)
    else:
        for t, (a, b) in enumerate(zip(got, want), start=1):
            np.testing.assert_allclose(
                a, b, rtol=0, atol=64 * t * np.finfo(np.float32).eps * max(1.0, np.abs(b).max())
            )


# --------------------------------------------------------------------------------------------
# each setting alone, with torch's convention


def adam_numpy(lr, beta1, beta2, eps, *, eps_root=0.0, eps_hat=False, amsgrad=False, max_of_v_hat=False):
    m = v = vmax = 0.0

    def update(theta, g, t, _):
        nonlocal m, v, vmax
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        bc1, bc2 = 1 - beta1**t, 1 - beta2**t
        if eps_hat:
            vmax = np.maximum(vmax, v)
            second = vmax if amsgrad else v
            return theta - lr * np.sqrt(bc2) / bc1 * m / (np.sqrt(second + eps_root * bc2) + eps)
        vmax = np.maximum(vmax, v / bc2 if max_of_v_hat else v)
        v_hat = (vmax if max_of_v_hat else vmax / bc2) if amsgrad else v / bc2
        return theta - lr * (m / bc1) / (np.sqrt(v_hat + eps_root) + eps)

    return update


SETTING_CASES = [
    (
        "Adam-eps_root",
        lambda p: fo.Adam(p, lr=LR, eps=1e-6, eps_root=1e-3),
        lambda: adam_numpy(LR, 0.9, 0.999, 1e-6, eps_root=1e-3),
        lambda p: fo.Adam(p, lr=LR, eps=1e-6),
    ),
    (
        "Adam-eps_hat",
        lambda p: fo.Adam(p, lr=LR, eps=1e-3, eps_hat=True),
        lambda: adam_numpy(LR, 0.9, 0.999, 1e-3, eps_hat=True),
        lambda p: fo.Adam(p, lr=LR, eps=1e-3),
    ),
    (
        "Adam-eps_hat-eps_root-amsgrad",
        lambda p: fo.Adam(p, lr=LR, eps=1e-3, eps_hat=True, eps_root=1e-3, amsgrad=True),
        lambda: adam_numpy(LR, 0.9, 0.999, 1e-3, eps_hat=True, eps_root=1e-3, amsgrad=True),
        lambda p: fo.Adam(p, lr=LR, eps=1e-3, eps_hat=True, amsgrad=True),
    ),
    (
        "Adam-amsgrad_max",
        lambda p: fo.Adam(p, lr=LR, betas=(0.9, 0.5), amsgrad=True, amsgrad_max="v_hat"),
        lambda: adam_numpy(LR, 0.9, 0.5, 1e-8, amsgrad=True, max_of_v_hat=True),
        lambda p: fo.Adam(p, lr=LR, betas=(0.9, 0.5), amsgrad=True),
    ),
    (
        "Adagrad-eps_in_sqrt",
        lambda p: fo.Adagrad(p, lr=LR, eps=1e-3, eps_in_sqrt=True),
        lambda: adagrad_eps_in_sqrt(LR, 1e-3),
        lambda p: fo.Adagrad(p, lr=LR, eps=1e-3),
    ),
    (
        "RMSprop-initial_accumulator_value",
        lambda p: fo.RMSprop(p, lr=LR, alpha=0.9, eps=1e-8, eps_in_sqrt=True, initial_accumulator_value=2.0),
        lambda: rmsprop_with_start(LR, 0.9, 1e-8, 2.0),
        lambda p: fo.RMSprop(p, lr=LR, alpha=0.9, eps=1e-8, eps_in_sqrt=True),
    ),
    (
        "Adamax-eps_in_max",
        lambda p: fo.Adamax(p, eps=1e-3, eps_in_max=False),
        lambda: adamax_algorithm_2(2e-3, 0.9, 0.999, 1e-3),
        lambda p: fo.Adamax(p, eps=1e-3),
    ),
]


def adagrad_eps_in_sqrt(eta, eps):
    """Keras's Adagrad (from zero): ``accumulator += g^2``, ``theta -= lr g / sqrt(accumulator + eps)``."""
    total = 0.0

    def update(theta, g, t, _):
        nonlocal total
        total = total + g * g
        return theta - eta * g / np.sqrt(total + eps)

    return update


def rmsprop_with_start(eta, gamma, eps, b0):
    b = b0

    def update(theta, g, t, _):
        nonlocal b
        b = gamma * b + (1 - gamma) * g * g
        return theta - eta * g / np.sqrt(b + eps)

    return update


@pytest.mark.parametrize("name, make, reference, without", SETTING_CASES, ids=[c[0] for c in SETTING_CASES])
def test_each_setting_alone(name, make, reference, without):
    """A setting passed with torch's convention changes exactly what it names: the run
    matches the formula with it, and torch's own form does not."""
    dtype = np.float64
    grads = gradients(dtype)
    want = numpy_trajectory(reference(), dtype, grads)
    close(ours(make, dtype, grads), want, dtype)
    assert differs(ours(without, dtype, grads), want, dtype)


def test_nadam_mu_product_float32_alone():
    """torch rounds NAdam's running product to float32; without that, a float64 run is
    Dozat's formula to float64 precision, and torch's rounding is visibly off it."""
    dtype = np.float64
    grads = gradients(dtype)
    want = numpy_trajectory(nadam_dozat(LR, 0.9, 0.999, 1e-8, 4e-3), dtype, grads)
    close(ours(lambda p: fo.NAdam(p, lr=LR, mu_product_float32=False), dtype, grads), want, dtype)
    assert differs(ours(lambda p: fo.NAdam(p, lr=LR), dtype, grads), want, dtype)


def test_sgd_lr_in_momentum_alone():
    dtype = np.float64
    grads = gradients(dtype)
    want = numpy_trajectory(heavy_ball(0.9), dtype, grads, DECAYING)
    close(ours(lambda p: fo.SGD(p, momentum=0.9, lr_in_momentum=True), dtype, grads, DECAYING), want, dtype)
    assert differs(ours(lambda p: fo.SGD(p, momentum=0.9), dtype, grads, DECAYING), want, dtype)


# --------------------------------------------------------------------------------------------
# torch's convention is unchanged; explicit arguments win


ALL_CONVENTION_CLASSES = [
    fo.Adam,
    fo.AdamW,
    fo.SGD,
    fo.RMSprop,
    fo.Adagrad,
    fo.Adadelta,
    fo.Adamax,
    fo.NAdam,
    fo.Lion,
]


@pytest.mark.parametrize("cls", ALL_CONVENTION_CLASSES, ids=lambda c: c.__name__)
def test_torch_convention_keeps_torch_groups(cls):
    plain = cls([np.zeros(2)]).param_groups[0]
    named = cls([np.zeros(2)], convention="torch").param_groups[0]
    assert "convention" not in plain and set(plain) == set(named)
    assert {k: v for k, v in plain.items() if k != "params"} == {
        k: v for k, v in named.items() if k != "params"
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda p: fo.Adam(p, lr=0.01, amsgrad=True, eps_root=0.0, eps_hat=False, amsgrad_max="v"),
        lambda p: fo.SGD(p, lr=0.01, momentum=0.9, nesterov=True, lr_in_momentum=False),
        lambda p: fo.RMSprop(
            p, momentum=0.5, centered=True, lr_in_momentum=False, initial_accumulator_value=0.0
        ),
        lambda p: fo.Adagrad(p, eps_in_sqrt=False),
        lambda p: fo.Adamax(p, eps_in_max=True),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_values_spelled_out_give_torch_bits(make, dtype):
    """torch's values passed explicitly store the settings, and take torch's loops: the
    same bits as torch.optim's class, within the parity tests' tolerance of torch."""
    grads = gradients(dtype)
    cls = type(make([np.zeros(1)]))
    default = {fo.Adam: dict(lr=0.01, amsgrad=True), fo.SGD: dict(lr=0.01, momentum=0.9, nesterov=True)}
    default[fo.RMSprop] = dict(momentum=0.5, centered=True)
    plain = ours(lambda p: cls(p, **default.get(cls, {})), dtype, grads)
    for a, b in zip(ours(make, dtype, grads), plain):
        np.testing.assert_array_equal(a, b)
    p = torch.nn.Parameter(torch.from_numpy(start(dtype)))
    topt = getattr(torch.optim, cls.__name__)([p], **default.get(cls, {}))
    for t, g in enumerate(grads):
        p.grad = torch.from_numpy(g)
        topt.step()
        np.testing.assert_allclose(p.detach().numpy(), plain[t], rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_explicit_arguments_win_over_the_convention():
    g = fo.Adam([np.zeros(2)], convention="keras", eps=1e-8, eps_hat=False).param_groups[0]
    assert (g["eps"], g["eps_hat"], g["decoupled_weight_decay"], g["convention"]) == (
        1e-8,
        False,
        True,
        "keras",
    )
    g = fo.RMSprop([np.zeros(2)], convention="optax", alpha=0.99, eps_in_sqrt=False).param_groups[0]
    assert (g["alpha"], g["eps_in_sqrt"], g["lr_in_momentum"]) == (0.99, False, True)
    g = fo.Adagrad([np.zeros(2)], convention="keras", initial_accumulator_value=0.0).param_groups[0]
    assert (g["initial_accumulator_value"], g["eps"], g["eps_in_sqrt"], g["lr"]) == (0.0, 1e-7, True, 1e-3)
    # an explicit torch setting with torch's convention records the convention
    g = fo.Adam([np.zeros(2)], eps_root=1e-8).param_groups[0]
    assert (g["convention"], g["eps_root"], g["eps_hat"], g["amsgrad_max"]) == ("torch", 1e-8, False, "v")


def test_keras_eps_hat_is_torch_with_a_rescaled_eps():
    """Keras's epsilon-hat is torch's eps divided by sqrt(1 - beta2^t): with eps_hat off and
    eps = 0 the Keras convention and torch take the same steps."""
    dtype = np.float64
    grads = nonzero_gradients(dtype)
    a = ours(lambda p: fo.Adam(p, lr=LR, eps=0.0, convention="keras"), dtype, grads)
    close(a, ours(lambda p: fo.Adam(p, lr=LR, eps=0.0), dtype, grads), dtype)


# --------------------------------------------------------------------------------------------
# state dicts, add_param_group, schedulers, bfloat16, SIMD


def _step_all(opt, params, grads):
    for g in grads:
        for p in params:
            p.grad = g
        opt.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: fo.Adam(p, lr=LR, amsgrad=True, convention="optax", eps_root=1e-6),
        lambda p: fo.AdamW(p, lr=LR, convention="keras"),
        lambda p: fo.SGD(p, lr=LR, momentum=0.9, convention="keras"),
        lambda p: fo.RMSprop(p, lr=LR, momentum=0.5, convention="optax", initial_accumulator_value=0.3),
        lambda p: fo.Adagrad(p, lr=LR, convention="keras"),
        lambda p: fo.Adadelta(p, convention="paper"),
        lambda p: fo.Adamax(p, convention="keras"),
    ],
)
def test_state_dict_and_checkpoint_round_trip(make, tmp_path):
    grads = gradients(np.float64, steps=8)
    p = fo.Parameter(start(np.float64))
    opt = make([p])
    _step_all(opt, [p], grads[:4])
    fo.save({"optimizer": opt.state_dict()}, tmp_path / "ckpt.npz")
    sd = opt.state_dict()
    assert sd["param_groups"][0]["convention"] in ("optax", "keras", "paper")
    # a torch-convention optimizer takes the saved convention and settings
    q = fo.Parameter(np.array(p))
    restored = type(opt)([q])
    restored.load_state_dict(fo.load(tmp_path / "ckpt.npz")["optimizer"])
    assert {k: v for k, v in restored.param_groups[0].items() if k != "params"} == {
        k: v for k, v in opt.param_groups[0].items() if k != "params"
    }
    _step_all(opt, [p], grads[4:])
    _step_all(restored, [q], grads[4:])
    np.testing.assert_array_equal(p, q)


def test_a_torch_state_dict_loads_as_torch_numerics():
    """A torch state dict has no convention: loaded into a Keras-convention Adam, the group
    follows torch's numerics (and says so by having no convention), as torch would."""
    p = torch.nn.Parameter(torch.from_numpy(start(np.float64)))
    topt = torch.optim.Adam([p], lr=LR)
    grads = gradients(np.float64, steps=6)
    for g in grads[:3]:
        p.grad = torch.from_numpy(g)
        topt.step()
    sd = topt.state_dict()
    sd = {
        "state": {
            k: {n: (v.numpy() if n != "step" else float(v)) for n, v in s.items()}
            for k, s in sd["state"].items()
        },
        "param_groups": sd["param_groups"],
    }
    q = fo.Parameter(p.detach().numpy().copy())
    opt = fo.Adam([q], convention="keras")
    opt.load_state_dict(sd)
    group = opt.param_groups[0]
    assert "convention" not in group and group["eps"] == 1e-8
    assert (group["eps_hat"], group["decoupled_weight_decay"], group["amsgrad_max"]) == (False, False, "v")
    for g in grads[3:]:
        p.grad = torch.from_numpy(g)
        topt.step()
        q.grad = g
        opt.step()
    np.testing.assert_allclose(q, p.detach().numpy(), rtol=1e-12)


def test_add_param_group_takes_its_own_convention():
    opt = fo.Adam([np.zeros(2)], lr=0.5)
    opt.add_param_group({"params": [np.zeros(3)], "convention": "keras"})
    opt.add_param_group({"params": [np.zeros(1)]})
    keras_group, torch_group = opt.param_groups[1], opt.param_groups[2]
    assert (keras_group["eps"], keras_group["eps_hat"], keras_group["lr"]) == (1e-7, True, 1e-3)
    assert "convention" not in torch_group and torch_group["lr"] == 0.5
    opt = fo.SGD([np.zeros(2)], convention="keras")
    opt.add_param_group({"params": [np.zeros(3)], "momentum": 0.9})
    assert opt.param_groups[1]["lr_in_momentum"] is True and opt.param_groups[1]["convention"] == "keras"


def test_schedulers_drive_convention_groups():
    """A scheduler writes lr; Keras's lr-scaled momentum keeps the old steps' lr, as
    Keras with the same schedule does."""
    dtype = np.float64
    grads = gradients(dtype)
    p = fo.Parameter(start(dtype))
    opt = fo.SGD([p], lr=2.0**-5, momentum=0.9, convention="keras")
    sched = fo.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    got, lrs = [], []
    for g in grads:
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = g
        opt.step()
        sched.step()
        got.append(np.array(p))
    close(got, with_keras(keras.optimizers.SGD(lrs[0], momentum=0.9), dtype, grads, lrs), dtype)


@pytest.mark.parametrize(
    "make",
    [
        lambda p, **kw: fo.Adam(p, lr=1e-2, amsgrad=True, convention="optax", eps_root=1e-8, **kw),
        lambda p, **kw: fo.AdamW(p, lr=1e-2, amsgrad=True, convention="keras", **kw),
        lambda p, **kw: fo.SGD(p, lr=1e-2, momentum=0.9, convention="keras", **kw),
        lambda p, **kw: fo.RMSprop(p, lr=1e-2, momentum=0.5, centered=True, convention="optax", **kw),
        lambda p, **kw: fo.Adagrad(p, convention="keras", **kw),
    ],
)
def test_bfloat16_state_follows_the_convention(make):
    """bfloat16 state runs the float32 kernel of the convention; after 20 steps the
    parameters stay within bfloat16's relative precision (2^-8) of the float32-state run
    (a wrong form, say torch's, is much further away for these settings)."""
    grads = gradients(np.float32, steps=20)
    a, b = fo.Parameter(start(np.float32)), fo.Parameter(start(np.float32))
    full, low = make([a]), make([b], state_dtype="bfloat16")
    _step_all(full, [a], grads)
    _step_all(low, [b], grads)
    np.testing.assert_allclose(b, a, rtol=0, atol=2e-2 * max(1.0, float(np.abs(a).max())))
    assert low.state[b]["exp_avg" if "exp_avg" in low.state[b] else next(iter(low.state_slots))].dtype in (
        np.uint16,
        np.float32,
    )


SIMD_CASES = [
    ("Adam", dict(lr=0.01, convention="optax", amsgrad=True, eps_root=1e-6)),
    ("Adam", dict(lr=0.01, convention="keras", amsgrad=True)),
    ("Adam", dict(lr=0.01, convention="paper")),
    ("Adam", dict(lr=0.01, eps_root=1e-6)),
    ("Adam", dict(lr=0.01, amsgrad=True, amsgrad_max="v_hat")),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, convention="keras")),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, convention="optax")),
    ("Adagrad", dict(convention="keras")),
    ("Adamax", dict(convention="keras")),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs", SIMD_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SIMD_CASES)])
def test_every_simd_level_gives_the_same_bits(name, kwargs, dtype, restore_level):  # noqa: F811
    reference = _run(name, kwargs, dtype, "baseline")
    for level in LEVELS[1:]:
        for a, b in zip(reference, _run(name, kwargs, dtype, level)):
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=f"{name} at {level}")


# --------------------------------------------------------------------------------------------
# errors: a clear exception, and nothing changes


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: fo.Adam([np.zeros(2)], convention="jax"), ValueError, "unknown convention 'jax'"),
        (lambda: fo.Adam([np.zeros(2)], convention=None), ValueError, "unknown convention None"),
        (lambda: fo.Adam([np.zeros(2)], eps_root=-1e-8), ValueError, "eps_root"),
        (lambda: fo.Adam([np.zeros(2)], eps_root="0"), TypeError, "eps_root"),
        (lambda: fo.Adam([np.zeros(2)], eps_hat=1), TypeError, "eps_hat"),
        (lambda: fo.Adam([np.zeros(2)], amsgrad_max="max"), ValueError, "amsgrad_max"),
        (lambda: fo.Adam([np.zeros(2)], convention="keras", amsgrad_max="v_hat"), ValueError, "eps_hat"),
        (lambda: fo.Adam([np.zeros(2)], eps_in_sqrt=True), TypeError, "eps_in_sqrt"),
        (lambda: fo.SGD([np.zeros(2)], lr_in_momentum="yes"), TypeError, "lr_in_momentum"),
        (lambda: fo.SGD([np.zeros(2)], convention="keras", weight_decay=0.1), ValueError, "decoupled"),
        (
            lambda: fo.RMSprop([np.zeros(2)], initial_accumulator_value=-1.0),
            ValueError,
            "initial_accumulator",
        ),
        (
            lambda: fo.SGD([{"params": [np.zeros(2)], "eps_hat": True}]),
            ValueError,
            "eps_hat .* not a setting of SGD",
        ),
        (
            lambda: fo.RAdam([{"params": [np.zeros(2)], "convention": "optax"}]),
            ValueError,
            "only torch's convention",
        ),
        (lambda: fo.Adagrad([np.zeros(2)], eps_in_max=True), TypeError, "eps_in_max"),
    ],
)
def test_bad_settings_raise(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_add_param_group_changes_nothing():
    opt = fo.Adam([np.zeros(2)], convention="optax")
    before = [dict(g) for g in opt.param_groups]
    for group in ({"convention": "mxnet"}, {"eps_in_max": False}, {"eps_root": -1.0}):
        with pytest.raises(ValueError):
            opt.add_param_group({"params": [np.zeros(3)], **group})
    assert [dict(g) for g in opt.param_groups] == before


@pytest.mark.parametrize(
    "key, value, error",
    [
        ("convention", "jax", ValueError),
        ("eps_root", -1.0, ValueError),
        ("amsgrad_max", "max", ValueError),
        ("eps_hat", "yes", TypeError),
    ],
)
def test_bad_edited_group_raises_at_step_and_changes_nothing(key, value, error):
    p = fo.Parameter(start(np.float64))
    opt = fo.Adam([p], lr=LR, amsgrad=True, convention="optax")
    p.grad = gradients(np.float64, steps=1)[0]
    opt.step()
    snapshot = (np.array(p), {k: np.array(v) for k, v in opt.state[p].items()})
    opt.param_groups[0][key] = value
    with pytest.raises(error, match=key):
        opt.step()
    np.testing.assert_array_equal(p, snapshot[0])
    for k, v in snapshot[1].items():
        np.testing.assert_array_equal(opt.state[p][k], v)


def test_a_bad_saved_convention_is_refused_and_changes_nothing():
    opt = fo.Adam([np.zeros(2)], convention="optax")
    sd = opt.state_dict()
    sd["param_groups"][0]["convention"] = "jax"
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match="loaded param group 0: unknown convention"):
        opt.load_state_dict(sd)
    assert [dict(g) for g in opt.param_groups] == before
