"""ferroptim.lr_scheduler against torch.optim.lr_scheduler.

Every case is one function of the scheduler module ``S`` and an optimizer, so the very
same call builds torch's scheduler on a torch optimizer and ferroptim's on a ferroptim
optimizer with the same param groups. The lrs are Python floats on both sides and
ferroptim repeats torch's arithmetic, so the stepped lrs are compared exactly.
``lr_at`` (the closed form) is compared with the stepped lrs to a relative 1e-12: the
chainable recursion and the closed form round differently (a few ulps after 200
steps). ``WarmupCosineLR`` is checked against a NumPy transcription of its formula.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

import ferroptim as fo
from ferroptim import lr_scheduler as fo_sched

STEPS = 200
GROUP_LRS = (0.1, 0.03)


class Halving:
    """A callable object: its attributes are saved in the state dict, as torch does."""

    def __init__(self, every: int) -> None:
        self.every = every

    def __call__(self, epoch: int) -> float:
        return 0.5 ** (epoch // self.every)


def warm_then_decay(epoch: int) -> float:
    return min(1.0, (epoch + 1) / 10) * 0.97**epoch


# name -> (optimizer kind, builder). The builder gets the scheduler module and the optimizer.
CASES: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "LambdaLR": ("sgd", lambda S, o: S.LambdaLR(o, warm_then_decay)),
    "LambdaLR-per-group": ("sgd", lambda S, o: S.LambdaLR(o, [Halving(7), lambda e: 1 / (1 + 0.05 * e)])),
    "MultiplicativeLR": ("sgd", lambda S, o: S.MultiplicativeLR(o, lambda e: 0.99)),
    "MultiplicativeLR-varying": ("sgd", lambda S, o: S.MultiplicativeLR(o, lambda e: 1.0 - 0.3 / (e + 3))),
    "StepLR": ("sgd", lambda S, o: S.StepLR(o, step_size=30)),
    "StepLR-gamma": ("sgd", lambda S, o: S.StepLR(o, step_size=7, gamma=0.7)),
    "MultiStepLR": ("sgd", lambda S, o: S.MultiStepLR(o, milestones=[30, 80, 120], gamma=0.5)),
    "MultiStepLR-repeated": ("sgd", lambda S, o: S.MultiStepLR(o, milestones=[150, 0, 40, 40], gamma=0.3)),
    "ConstantLR": ("sgd", lambda S, o: S.ConstantLR(o)),
    "ConstantLR-long": ("sgd", lambda S, o: S.ConstantLR(o, factor=0.7, total_iters=57)),
    "LinearLR": ("sgd", lambda S, o: S.LinearLR(o)),
    "LinearLR-warmup": ("sgd", lambda S, o: S.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=73)),
    "LinearLR-decay": ("sgd", lambda S, o: S.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=150)),
    "ExponentialLR": ("sgd", lambda S, o: S.ExponentialLR(o, gamma=0.97)),
    "ExponentialLR-grow": ("sgd", lambda S, o: S.ExponentialLR(o, gamma=1.01)),
    "PolynomialLR": ("sgd", lambda S, o: S.PolynomialLR(o)),
    "PolynomialLR-power": ("sgd", lambda S, o: S.PolynomialLR(o, total_iters=150, power=2.5)),
    "PolynomialLR-sqrt": ("sgd", lambda S, o: S.PolynomialLR(o, total_iters=199, power=0.5)),
    "CosineAnnealingLR": ("sgd", lambda S, o: S.CosineAnnealingLR(o, T_max=200)),
    "CosineAnnealingLR-periodic": ("sgd", lambda S, o: S.CosineAnnealingLR(o, T_max=37, eta_min=0.001)),
    "CosineAnnealingLR-short": ("sgd", lambda S, o: S.CosineAnnealingLR(o, T_max=5, eta_min=0.02)),
    "CosineAnnealingWarmRestarts": ("sgd", lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=10)),
    "CosineAnnealingWarmRestarts-mult": (
        "sgd",
        lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-3),
    ),
    "CosineAnnealingWarmRestarts-mult3": (
        "sgd",
        lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=3),
    ),
    "CyclicLR": ("sgd", lambda S, o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=20)),
    "CyclicLR-triangular2": (
        "sgd",
        lambda S, o: S.CyclicLR(
            o,
            base_lr=[0.01, 0.002],
            max_lr=[0.1, 0.05],
            step_size_up=13,
            step_size_down=29,
            mode="triangular2",
        ),
    ),
    "CyclicLR-exp_range": (
        "adam",
        lambda S, o: S.CyclicLR(
            o,
            0.001,
            0.01,
            step_size_up=11,
            mode="exp_range",
            gamma=0.995,
            base_momentum=0.85,
            max_momentum=0.95,
        ),
    ),
    "CyclicLR-scale_fn": (
        "rmsprop",
        lambda S, o: S.CyclicLR(
            o, 0.001, 0.01, step_size_up=9, scale_fn=lambda x: 1 / (1 + 0.1 * x), scale_mode="iterations"
        ),
    ),
    "CyclicLR-no-momentum": (
        "adagrad",
        lambda S, o: S.CyclicLR(o, 0.001, 0.01, step_size_up=17, step_size_down=3, cycle_momentum=False),
    ),
    "OneCycleLR": ("sgd", lambda S, o: S.OneCycleLR(o, max_lr=0.5, total_steps=STEPS)),
    "OneCycleLR-linear": (
        "adam",
        lambda S, o: S.OneCycleLR(
            o, max_lr=[0.3, 0.1], epochs=10, steps_per_epoch=21, anneal_strategy="linear", pct_start=0.25
        ),
    ),
    "OneCycleLR-three-phase": (
        "sgd",
        lambda S, o: S.OneCycleLR(o, max_lr=0.2, total_steps=STEPS + 1, three_phase=True, div_factor=10.0),
    ),
    "OneCycleLR-no-momentum": (
        "adagrad",
        lambda S, o: S.OneCycleLR(o, max_lr=0.2, total_steps=STEPS, cycle_momentum=False, pct_start=0.1),
    ),
    "SequentialLR": (
        "sgd",
        lambda S, o: S.SequentialLR(
            o,
            [S.LinearLR(o, start_factor=0.1, total_iters=10), S.CosineAnnealingLR(o, T_max=60)],
            milestones=[10],
        ),
    ),
    "SequentialLR-many": (
        "sgd",
        lambda S, o: S.SequentialLR(
            o,
            [
                S.ConstantLR(o, factor=0.5, total_iters=4),
                S.ExponentialLR(o, gamma=0.98),
                S.MultiplicativeLR(o, lambda e: 0.995),
                S.StepLR(o, step_size=9, gamma=0.8),
                S.CosineAnnealingWarmRestarts(o, T_0=8, T_mult=2),
            ],
            milestones=[7, 40, 90, 130],
        ),
    ),
    "SequentialLR-cyclic": (
        "sgd",
        lambda S, o: S.SequentialLR(
            o,
            [
                S.PolynomialLR(o, total_iters=20, power=1.5),
                S.CyclicLR(o, 0.001, 0.02, step_size_up=15, cycle_momentum=False),
                S.LambdaLR(o, lambda e: 0.9**e),
            ],
            milestones=[25, 120],
        ),
    ),
    "ChainedScheduler": (
        "sgd",
        lambda S, o: S.ChainedScheduler(
            [S.LinearLR(o, start_factor=0.2, total_iters=20), S.ExponentialLR(o, gamma=0.99)]
        ),
    ),
    "ChainedScheduler-three": (
        "sgd",
        lambda S, o: S.ChainedScheduler(
            [
                S.ConstantLR(o, factor=0.1, total_iters=2),
                S.MultiStepLR(o, milestones=[50, 100], gamma=0.5),
                S.CosineAnnealingLR(o, T_max=70, eta_min=0.001),
            ],
            optimizer=o,
        ),
    ),
    "ChainedScheduler-absolute": (
        "sgd",
        lambda S, o: S.ChainedScheduler(
            [S.ExponentialLR(o, gamma=0.9), S.LambdaLR(o, lambda e: 1 / (e + 1)), S.StepLR(o, 5, gamma=0.5)]
        ),
    ),
    "ChainedScheduler-sequential": (
        "sgd",
        lambda S, o: S.ChainedScheduler(
            [
                S.SequentialLR(
                    o, [S.LinearLR(o, 0.5, total_iters=5), S.ExponentialLR(o, 0.97)], milestones=[5]
                ),
                S.MultiplicativeLR(o, lambda e: 0.999),
            ]
        ),
    ),
}


def build(kind: str, lib: str, lrs: tuple[float, ...] = GROUP_LRS) -> Any:
    """An optimizer of ``kind`` with one param group per lr, from torch or ferroptim."""
    if lib == "torch":
        groups = [{"params": [torch.zeros(3, requires_grad=True)], "lr": lr} for lr in lrs]
        return {
            "sgd": torch.optim.SGD,
            "adam": torch.optim.Adam,
            "rmsprop": torch.optim.RMSprop,
            "adagrad": torch.optim.Adagrad,
        }[kind](groups)
    groups = [{"params": [np.zeros(3)], "lr": lr} for lr in lrs]
    return {"sgd": fo.SGD, "adam": fo.Adam, "rmsprop": fo.RMSprop, "adagrad": fo.Adagrad}[kind](groups)


def momentum(group: dict[str, Any]) -> Any:
    if "betas" in group:
        return group["betas"][0]
    return group.get("momentum")


def trace(opt: Any, scheduler: Any, steps: int, metrics: list[float] | None = None) -> list[tuple]:
    """The lrs (as ``get_last_lr()`` and as the groups hold them) and the momentums after
    construction and after each of ``steps`` steps."""
    rows = []
    for k in range(steps + 1):
        if k > 0:
            if isinstance(opt, torch.optim.Optimizer):
                opt.step()  # torch warns when a scheduler steps before its optimizer
            if metrics is None:
                scheduler.step()
            else:
                scheduler.step(metrics[k - 1])
        groups = opt.param_groups
        rows.append(
            (
                tuple(scheduler.get_last_lr()),
                tuple(g["lr"] for g in groups),
                tuple(momentum(g) for g in groups),
            )
        )
    return rows


def pair(name: str) -> tuple[Any, Any, Any, Any]:
    kind, make = CASES[name]
    topt, fopt = build(kind, "torch"), build(kind, "ferroptim")
    return topt, make(torch_sched, topt), fopt, make(fo_sched, fopt)


@pytest.mark.parametrize("name", CASES)
def test_matches_torch_exactly(name: str) -> None:
    topt, tsched, fopt, fsched = pair(name)
    expected, got = trace(topt, tsched, STEPS), trace(fopt, fsched, STEPS)
    for k, (want, have) in enumerate(zip(expected, got)):
        assert have == want, f"step {k}"
        assert all(type(lr) is float for lr in have[0]), f"step {k}: lrs are Python floats"


@pytest.mark.parametrize("name", CASES)
def test_lr_at_matches_the_stepped_lrs(name: str) -> None:
    _, _, opt, scheduler = pair(name)
    # read the closed form first: it must not move the scheduler or the optimizer
    before = (scheduler.state_dict(), [dict(g) for g in opt.param_groups])
    closed = [scheduler.lr_at(k) for k in range(STEPS + 1)]
    assert (scheduler.state_dict(), [dict(g) for g in opt.param_groups]) == before
    stepped = [row[0] for row in trace(opt, scheduler, STEPS)]
    scale = max(GROUP_LRS)
    for k, (want, have) in enumerate(zip(stepped, closed)):
        np.testing.assert_allclose(have, want, rtol=1e-12, atol=1e-15 * scale, err_msg=f"step {k}")
    # and later too, from a scheduler that has moved on
    np.testing.assert_allclose(scheduler.lr_at(17), closed[17], rtol=0, atol=0)


def is_plain(value: Any) -> bool:
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) is list:
        return all(is_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) in (int, str) and is_plain(v) for k, v in value.items())
    return False


@pytest.mark.parametrize("at", [0, 1, 37, 150])
@pytest.mark.parametrize("name", CASES)
def test_state_dict_continues_identically(name: str, at: int) -> None:
    kind, make = CASES[name]
    opt = build(kind, "ferroptim")
    scheduler = make(fo_sched, opt)
    trace(opt, scheduler, at)
    saved_opt, saved = opt.state_dict(), scheduler.state_dict()
    assert is_plain(saved), saved
    # a fresh optimizer and scheduler (whose construction moves the lrs), then load both
    fresh_opt = build(kind, "ferroptim", lrs=(0.5, 0.25))
    fresh = make(fo_sched, fresh_opt)
    fresh_opt.load_state_dict(saved_opt)
    fresh.load_state_dict(saved)
    assert fresh.state_dict() == saved
    assert trace(fresh_opt, fresh, 40) == trace(opt, scheduler, 40)


@pytest.mark.parametrize("name", ["StepLR-gamma", "CosineAnnealingLR-periodic", "OneCycleLR", "CyclicLR"])
def test_loads_torch_state_dicts(name: str) -> None:
    topt, tsched, fopt, fsched = pair(name)
    trace(topt, tsched, 23)
    trace(fopt, fsched, 5)
    for group, saved in zip(fopt.param_groups, topt.state_dict()["param_groups"]):
        group.update({k: v for k, v in saved.items() if k != "params"})
    fsched.load_state_dict(tsched.state_dict())
    assert trace(fopt, fsched, 50) == trace(topt, tsched, 50)


PLATEAU_CASES: dict[str, Callable[[Any, Any], Any]] = {
    "default": lambda S, o: S.ReduceLROnPlateau(o),
    "patient-cooldown": lambda S, o: S.ReduceLROnPlateau(o, factor=0.5, patience=3, cooldown=4, min_lr=1e-3),
    "abs": lambda S, o: S.ReduceLROnPlateau(
        o, patience=2, threshold=0.05, threshold_mode="abs", min_lr=[0.01, 0]
    ),
    "max": lambda S, o: S.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=1, eps=1e-3),
    "max-abs": lambda S, o: S.ReduceLROnPlateau(
        o, mode="max", threshold_mode="abs", threshold=0.01, patience=0
    ),
}


def plateau_metrics() -> list[float]:
    """A noisy loss that falls, stalls, jumps and falls again; and its negation's mirror."""
    rng = np.random.default_rng(5)
    trend = np.concatenate([np.linspace(1.0, 0.3, 60), np.full(60, 0.3), np.linspace(0.5, 0.1, 80)])
    return [float(x) for x in trend + 0.02 * rng.standard_normal(STEPS)]


@pytest.mark.parametrize("name", PLATEAU_CASES)
def test_reduce_lr_on_plateau_matches_torch(name: str) -> None:
    make = PLATEAU_CASES[name]
    metrics = plateau_metrics()
    if "max" in name:
        metrics = [-m for m in metrics]
    topt, fopt = build("sgd", "torch"), build("sgd", "ferroptim")
    expected = trace(topt, make(torch_sched, topt), STEPS, metrics)
    scheduler = make(fo_sched, fopt)
    got = trace(fopt, scheduler, STEPS, metrics)
    assert got == expected
    assert len({row[0] for row in got}) > 2, "the metrics must cause reductions"
    with pytest.raises(NotImplementedError, match="metrics"):
        scheduler.lr_at(3)
    # state dict round trip mid-way
    opt = build("sgd", "ferroptim")
    scheduler = make(fo_sched, opt)
    trace(opt, scheduler, 90, metrics)
    saved, saved_opt = scheduler.state_dict(), opt.state_dict()
    assert is_plain(saved)
    fresh_opt = build("sgd", "ferroptim")
    fresh = make(fo_sched, fresh_opt)
    fresh_opt.load_state_dict(saved_opt)
    fresh.load_state_dict(saved)
    rest = metrics[90:]
    assert trace(fresh_opt, fresh, len(rest), rest) == trace(opt, scheduler, len(rest), rest)


@pytest.mark.parametrize(
    "make",
    [
        lambda S, o: S.StepLR(o, step_size=3, gamma=0.5, last_epoch=5),
        lambda S, o: S.ExponentialLR(o, gamma=0.9, last_epoch=6),
        lambda S, o: S.LinearLR(o, start_factor=0.25, total_iters=12, last_epoch=4),
        lambda S, o: S.PolynomialLR(o, total_iters=20, power=2.0, last_epoch=3),
        lambda S, o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01, last_epoch=7),
        lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2, last_epoch=9),
        lambda S, o: S.MultiplicativeLR(o, lambda e: 0.9, last_epoch=2),
        lambda S, o: S.CyclicLR(o, 0.01, 0.1, step_size_up=5, last_epoch=12),
    ],
)
def test_resuming_with_last_epoch_matches_torch(make: Callable[[Any, Any], Any]) -> None:
    topt, fopt = build("sgd", "torch"), build("sgd", "ferroptim")
    for opt in (topt, fopt):
        for group, lr in zip(opt.param_groups, (0.2, 0.07)):
            group["initial_lr"] = lr
            # what a resumed CyclicLR expects in its groups
            group.update(momentum=0.9, max_momentum=0.9, base_momentum=0.8)
    assert trace(fopt, make(fo_sched, fopt), 50) == trace(topt, make(torch_sched, topt), 50)


@pytest.mark.parametrize(
    "make, jumps",
    [
        (lambda S, o: S.StepLR(o, step_size=4, gamma=0.5), [3, 12, 5, 40]),
        (lambda S, o: S.CosineAnnealingLR(o, T_max=30, eta_min=0.001), [7, 29, 31, 2]),
        (lambda S, o: S.LinearLR(o, 0.1, total_iters=10), [4, 20, 9]),
        (lambda S, o: S.LambdaLR(o, lambda e: 1 / (1 + e)), [10, 3]),
        (lambda S, o: S.CyclicLR(o, 0.01, 0.1, step_size_up=6), [4, 9, 30]),
    ],
)
def test_step_with_epoch_matches_torch(make: Callable[[Any, Any], Any], jumps: list[int]) -> None:
    """The deprecated ``step(epoch)``: a jump with the closed form where torch has one."""
    rows = []
    for S, opt in ((torch_sched, build("sgd", "torch")), (fo_sched, build("sgd", "ferroptim"))):
        scheduler = make(S, opt)
        row = []
        for epoch in jumps:
            with pytest.warns(UserWarning):
                scheduler.step(epoch)
            row.append((tuple(scheduler.get_last_lr()), tuple(momentum(g) for g in opt.param_groups)))
            scheduler.step()
            row.append((tuple(scheduler.get_last_lr()), tuple(momentum(g) for g in opt.param_groups)))
        rows.append(row)
    assert rows[0] == rows[1]


def test_warm_restarts_with_fractional_epochs_match_torch() -> None:
    rows = []
    for S, opt in ((torch_sched, build("sgd", "torch")), (fo_sched, build("sgd", "ferroptim"))):
        scheduler = S.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2, eta_min=0.001)
        iters = 7
        rows.append([])
        for epoch in range(30):
            for i in range(iters):
                scheduler.step(epoch + i / iters)
                rows[-1].append(tuple(scheduler.get_last_lr()))
    assert rows[0] == rows[1]


def test_a_scheduler_subclass_written_for_torch_works() -> None:
    """torch's extension point: a subclass that overrides ``get_lr()``."""

    def make(S: Any, opt: Any) -> Any:
        class SquareRootDecay(S.LRScheduler):
            def get_lr(self) -> list[float]:
                return [base / math.sqrt(self.last_epoch + 1) for base in self.base_lrs]

        return SquareRootDecay(opt)

    topt, fopt = build("sgd", "torch"), build("sgd", "ferroptim")
    assert trace(fopt, make(fo_sched, fopt), 30) == trace(topt, make(torch_sched, topt), 30)


# --- WarmupCosineLR ---------------------------------------------------------------------------
def warmup_cosine_reference(
    base_lr: float, k: np.ndarray, W: int, T: int, s: float, eta_min: float
) -> np.ndarray:
    """The formula of WarmupCosineLR's docstring, in NumPy."""
    warm = base_lr * (s + (1 - s) * k / max(W, 1))
    cosine = eta_min + (base_lr - eta_min) * (1 + np.cos(np.pi * (k - W) / (T - W))) / 2
    return np.where(k < W, warm, np.where(k <= T, cosine, eta_min))


WARMUP_COSINE = [
    dict(warmup_steps=10, total_steps=150),
    dict(warmup_steps=25, total_steps=100, warmup_start_factor=0.1, eta_min=0.001),
    dict(warmup_steps=0, total_steps=200, eta_min=0.01),
    dict(warmup_steps=199, total_steps=200, warmup_start_factor=0.5),
]


@pytest.mark.parametrize("args", WARMUP_COSINE)
def test_warmup_cosine_matches_its_formula(args: dict[str, Any]) -> None:
    opt = build("adam", "ferroptim")
    scheduler = fo.lr_scheduler.WarmupCosineLR(opt, **args)
    stepped = np.array([row[0] for row in trace(opt, scheduler, 260)])
    W, T = args["warmup_steps"], args["total_steps"]
    s, eta_min = args.get("warmup_start_factor", 0.0), args.get("eta_min", 0.0)
    k = np.arange(261)
    for g, base_lr in enumerate(GROUP_LRS):
        reference = warmup_cosine_reference(base_lr, k, W, T, s, eta_min)
        np.testing.assert_allclose(stepped[:, g], reference, rtol=1e-14, atol=1e-17)
    np.testing.assert_array_equal([scheduler.lr_at(int(i)) for i in k], stepped)
    assert stepped[T + 1 :].tolist() == [[eta_min] * 2] * (260 - T)


@pytest.mark.parametrize("args", [a for a in WARMUP_COSINE if a.get("warmup_start_factor", 0) > 0])
def test_warmup_cosine_is_torchs_linear_then_cosine(args: dict[str, Any]) -> None:
    W, T = args["warmup_steps"], args["total_steps"]
    topt = build("sgd", "torch")
    torch_scheduler = torch_sched.SequentialLR(
        topt,
        [
            torch_sched.LinearLR(topt, start_factor=args["warmup_start_factor"], total_iters=W),
            torch_sched.CosineAnnealingLR(topt, T_max=T - W, eta_min=args.get("eta_min", 0.0)),
        ],
        milestones=[W],
    )
    fopt = build("sgd", "ferroptim")
    ours = [row[0] for row in trace(fopt, fo.lr_scheduler.WarmupCosineLR(fopt, **args), T)]
    # torch's chainable recursion rounds differently from the closed form
    np.testing.assert_allclose(
        ours, [row[0] for row in trace(topt, torch_scheduler, T)], rtol=1e-12, atol=1e-16
    )


# --- momentum cycling -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("cls", ["CyclicLR", "OneCycleLR"])
def test_momentum_cycles_like_torch(kind: str, cls: str) -> None:
    def make(S: Any, o: Any) -> Any:
        if cls == "CyclicLR":
            return S.CyclicLR(o, 0.001, 0.01, step_size_up=8, base_momentum=[0.7, 0.8], max_momentum=0.95)
        return S.OneCycleLR(o, max_lr=0.1, total_steps=STEPS, base_momentum=0.8, max_momentum=[0.9, 0.99])

    topt, fopt = build(kind, "torch"), build(kind, "ferroptim")
    expected, got = trace(topt, make(torch_sched, topt), STEPS), trace(fopt, make(fo_sched, fopt), STEPS)
    assert got == expected
    assert len({row[2] for row in got}) > 5, "momentum moves"
    if kind == "adam":
        assert all(g["betas"][1] == 0.999 for g in fopt.param_groups)


def test_cycled_momentum_reaches_the_kernels() -> None:
    """An SGD run under OneCycleLR equals torch's, momentum and lr changing every step."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(5)
    tw = torch.tensor(w0, requires_grad=True)
    fw = fo.Parameter(w0.copy())
    topt, fopt = torch.optim.SGD([tw], lr=0.1), fo.SGD([fw], lr=0.1)
    tsched = torch_sched.OneCycleLR(topt, max_lr=0.5, total_steps=40)
    fsched = fo.lr_scheduler.OneCycleLR(fopt, max_lr=0.5, total_steps=40)
    for _ in range(40):
        grad = rng.standard_normal(5)
        tw.grad = torch.tensor(grad)
        fw.grad = grad
        topt.step()
        fopt.step()
        tsched.step()
        fsched.step()
    np.testing.assert_allclose(fw, tw.detach().numpy(), rtol=1e-13, atol=1e-15)


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda S, o: S.LinearLR(o, start_factor=0), ValueError, "start_factor"),
        (lambda S, o: S.LinearLR(o, end_factor=1.5), ValueError, "end_factor"),
        (lambda S, o: S.ConstantLR(o, factor=1.5), ValueError, "factor"),
        (lambda S, o: S.LambdaLR(o, [lambda e: 1.0]), ValueError, "lr_lambdas"),
        (lambda S, o: S.MultiplicativeLR(o, 0.9), TypeError, "function"),
        (lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "T_0"),
        (lambda S, o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=0), ValueError, "T_mult"),
        (lambda S, o: S.OneCycleLR(o, max_lr=0.1), ValueError, "total_steps"),
        (lambda S, o: S.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
        (
            lambda S, o: S.OneCycleLR(o, 0.1, total_steps=10, anneal_strategy="exp"),
            ValueError,
            "anneal_strategy",
        ),
        (lambda S, o: S.CyclicLR(o, 0.01, 0.1, mode="sawtooth"), ValueError, "mode"),
        (lambda S, o: S.CyclicLR(o, [0.01], 0.1), ValueError, "base_lr"),
        (lambda S, o: S.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor"),
        (lambda S, o: S.ReduceLROnPlateau(o, mode="median"), ValueError, "median"),
        (lambda S, o: S.ReduceLROnPlateau(o, threshold_mode="log"), ValueError, "log"),
        (lambda S, o: S.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lr"),
        (
            lambda S, o: S.SequentialLR(o, [S.StepLR(o, 3), S.StepLR(o, 5)], milestones=[]),
            ValueError,
            "milestone",
        ),
        (
            lambda S, o: S.SequentialLR(o, [S.ReduceLROnPlateau(o)], milestones=[]),
            ValueError,
            "ReduceLROnPlateau",
        ),
        (lambda S, o: S.ChainedScheduler([]), ValueError, "scheduler"),
        (lambda S, o: S.StepLR(o, step_size=5, last_epoch=3), KeyError, "initial_lr"),
    ],
)
def test_bad_arguments_raise_like_torch(make: Callable[[Any, Any], Any], error: type, match: str) -> None:
    topt = build("sgd", "torch")
    with pytest.raises(error):
        make(torch_sched, topt)
    with pytest.raises(error, match=match):
        make(fo_sched, build("sgd", "ferroptim"))


@pytest.mark.parametrize(
    "make",
    [
        lambda S, o: S.CyclicLR(o, 0.01, 0.1, mode="sawtooth"),
        lambda S, o: S.CyclicLR(o, 0.01, [0.1, 0.2, 0.3]),
        lambda S, o: S.CyclicLR(o, 0.01, 0.1, max_momentum=[0.9]),
        lambda S, o: S.OneCycleLR(o, 0.1, total_steps=10, anneal_strategy="exp"),
        lambda S, o: S.OneCycleLR(o, 0.1, total_steps=10, last_epoch=-2),
        lambda S, o: S.LinearLR(o, start_factor=2.0),
        lambda S, o: S.WarmupCosineLR(o, 10, 5),
    ],
)
def test_a_refused_scheduler_changes_nothing(make: Callable[[Any, Any], Any]) -> None:
    opt = build("sgd", "ferroptim")
    groups = [dict(g) for g in opt.param_groups]
    with pytest.raises((TypeError, ValueError)):
        make(fo_sched, opt)
    assert [dict(g) for g in opt.param_groups] == groups


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda S, o: S.StepLR(o, step_size=0), ValueError, "step_size"),
        (lambda S, o: S.StepLR(o, step_size=2.5), TypeError, "step_size"),
        (lambda S, o: S.ExponentialLR(o, gamma="0.9"), TypeError, "gamma"),
        (lambda S, o: S.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
        (lambda S, o: S.PolynomialLR(o, total_iters=0), ValueError, "total_iters"),
        (lambda S, o: S.ConstantLR(o, factor=0.0), ValueError, "factor"),
        (lambda S, o: S.MultiStepLR(o, milestones=[3, "5"]), TypeError, "milestone"),
        (lambda S, o: S.CyclicLR(o, 0.01, 0.1, step_size_up=0), ValueError, "step_size_up"),
        (lambda S, o: S.SequentialLR(o, [S.StepLR(o, 3), S.StepLR(o, 5)], [0]), ValueError, "milestone"),
        (
            lambda S, o: S.SequentialLR(o, [S.StepLR(o, 3), S.StepLR(o, 5), S.StepLR(o, 7)], [9, 4]),
            ValueError,
            "sort",
        ),
        (lambda S, o: S.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
        (lambda S, o: S.WarmupCosineLR(o, warmup_steps=10, total_steps=10), ValueError, "total_steps"),
        (lambda S, o: S.WarmupCosineLR(o, 5, 50, warmup_start_factor=2.0), ValueError, "warmup_start_factor"),
        (lambda S, o: S.StepLR(o.param_groups, 5), TypeError, "not a ferroptim Optimizer"),
    ],
)
def test_arguments_torch_would_fail_on_later_are_refused(
    make: Callable[[Any, Any], Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        make(fo_sched, build("sgd", "ferroptim"))


def test_cycle_momentum_needs_momentum() -> None:
    for S, opt in ((torch_sched, build("adagrad", "torch")), (fo_sched, build("adagrad", "ferroptim"))):
        with pytest.raises(ValueError, match="momentum"):
            S.CyclicLR(opt, 0.01, 0.1)
        with pytest.raises(ValueError, match="momentum"):
            S.OneCycleLR(opt, 0.1, total_steps=10)
    assert "initial_lr" not in opt.param_groups[0] and opt.param_groups[0]["lr"] == GROUP_LRS[0]


def test_one_cycle_past_its_end_raises_and_changes_nothing() -> None:
    opt = build("sgd", "ferroptim")
    scheduler = fo.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5)
    trace(opt, scheduler, 5)
    state, lrs = scheduler.state_dict(), [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match="Tried to step 6 times"):
        scheduler.step()
    with pytest.raises(ValueError, match="total steps"):
        scheduler.lr_at(6)
    assert scheduler.state_dict() == state and [dict(g) for g in opt.param_groups] == lrs


@pytest.mark.parametrize("step", [-1, 2.0, "3"])
def test_lr_at_needs_a_step_number(step: Any) -> None:
    scheduler = fo.lr_scheduler.StepLR(build("sgd", "ferroptim"), 3)
    with pytest.raises(TypeError if not isinstance(step, int) else ValueError, match="step"):
        scheduler.lr_at(step)


def test_bad_state_dicts_are_refused_and_change_nothing() -> None:
    opt = build("sgd", "ferroptim")
    scheduler = fo.lr_scheduler.SequentialLR(
        opt, [fo.lr_scheduler.LinearLR(opt, 0.5), fo.lr_scheduler.StepLR(opt, 4)], milestones=[5]
    )
    trace(opt, scheduler, 3)
    good = scheduler.state_dict()
    bad = [
        ({**good, "gamma": 0.5}, ValueError, "no state 'gamma'"),
        ({**good, "_last_lr": [0.1]}, ValueError, "_last_lr"),
        ({**good, "_schedulers": good["_schedulers"][:1]}, ValueError, "_schedulers"),
        (
            {**good, "_schedulers": [good["_schedulers"][0], {**good["_schedulers"][1], "base_lrs": 3}]},
            ValueError,
            "base_lrs",
        ),
        ({**good, "last_epoch": 2.5}, TypeError, "last_epoch"),
        ({**good, "_last_lr": [np.zeros(2), 0.1]}, TypeError, "plain data"),
        ([("last_epoch", 1)], TypeError, "dict"),
    ]
    for state, error, match in bad:
        with pytest.raises(error, match=match):
            scheduler.load_state_dict(state)  # type: ignore[arg-type]
        assert scheduler.state_dict() == good


def test_lambdas_are_not_saved_but_callable_objects_are() -> None:
    opt = build("sgd", "ferroptim")
    halving = Halving(3)
    scheduler = fo.lr_scheduler.LambdaLR(opt, [halving, lambda e: 1.0])
    assert scheduler.state_dict()["lr_lambdas"] == [{"every": 3}, None]
    saved = scheduler.state_dict()
    saved["lr_lambdas"] = [{"every": 5}, None]
    scheduler.load_state_dict(saved)
    assert halving.every == 5


def test_optimizer_step_uses_the_scheduled_lr() -> None:
    w = fo.Parameter(np.zeros(2))
    opt = fo.SGD([w], lr=1.0)
    scheduler = fo.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    for _ in range(4):
        w.grad = np.ones(2)
        opt.step()
        scheduler.step()
    np.testing.assert_array_equal(w, -(1 + 0.5 + 0.25 + 0.125) * np.ones(2))


def test_warnings_are_torchs_only() -> None:
    """No warning in ordinary use."""
    opt = build("sgd", "ferroptim")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = fo.lr_scheduler.CosineAnnealingLR(opt, 10)
        for _ in range(3):
            scheduler.step()
        scheduler.lr_at(5)
