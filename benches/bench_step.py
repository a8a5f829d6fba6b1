"""One optimizer step of ferroptim beside torch.optim and naive NumPy, on CPU, in one run.

``python benches/bench_step.py [--quick] [--out DIR]`` times, for every optimizer, shape
and dtype (a *case*), the median ``step()`` of

- ferroptim;
- torch.optim with ``foreach=False`` (its default on CPU), ``foreach=True`` and
  ``fused=True`` where torch has them (``—`` where a mode does not exist or raises);
- a naive NumPy transcription of the update, written as a user would, one tensor at
  a time with in-place operators (``m *= b1; m += (1 - b1) * g; ...``);
- ``y += a*x`` on as many elements, with ferroptim's pool (``_core._stream_axpy``):
  the streaming bandwidth ceiling, since an in-place step reads and writes at least
  that much memory.

Ratios are torch (or NumPy) time / ferroptim time: above 1, ferroptim is faster.
Effective GB/s = bytes per element × elements / median time, where bytes per element
counts each array the step reads plus each it writes, times its element size (issue
3's table: SGD 12 bytes per float32 element, SGD with momentum and AdaGrad 20, Adam and
AdaDelta 28; ``y += a*x`` 12). ``% ceiling`` is ferroptim's GB/s over the ceiling's,
measured on the same number of elements of the same dtype in the same rounds.

Timing: every contestant of a case has its own copy of the parameters (gradients are
shared, read only). Each takes a first step (which allocates its state), after which its
parameters must agree with ferroptim's: that checks that all do the same work. After up
to three more warm-up steps each (one for slow steps), the contestants run round-robin,
a block of steps each per round, so load drift hits all alike; the median over rounds of
the time per step is reported. Blocks are long enough (1 ms) for the clock, and rounds
fill a time budget of 1 s per case (3 rounds at least, for the largest cases; 40 at
most). The ceiling of a shape is the median over the rounds of all its cases. torch
runs on as many threads as ferroptim (``torch.set_num_threads(fo.get_num_threads())``),
with its default OpenMP wait policy; since the threads of both pools spin for a while
after a step and would take the cores from the contestant timed next, the race pauses
5 ms (untimed) after every block.

Shapes: one tensor of 1e3, 1e5, 1e7 or 3e7 elements; 1000 tensors of 1e3; 200 of 1e4;
and a ResNet-like list of 161 tensors, 12.5M elements: the parameter tensors of
torchvision's ResNet-50 (a 7×7 stem convolution, 16 bottleneck blocks of 1×1, 3×3 and
1×1 convolutions with 4 downsampling 1×1 convolutions, a batch norm's weight and bias
after every convolution, and a 1000-way fc layer), with base width 44 instead of 64.

It also measures the Python overhead: ferroptim's step over 1 and over 101 parameters
of 16 elements, and the slope per extra parameter. Each case is checked against issue
3's targets (``target`` column). The markdown and JSON go to ``--out``
(``benches/results/``; ``--quick`` writes to ``benches/results/quick/``), and the
markdown is printed as it is measured. The full run takes a few minutes on 2 cores and
about 6 GB of memory at most (1×3e7 float64), freed between cases.

``--quick`` runs tiny shapes with 3 rounds, every code path, in seconds, with torch on
one thread (its timings there mean nothing): ``make test`` runs it so that this script
cannot rot. The exit status is 1 if a contestant disagreed with ferroptim.

"Adam bf16 state" is ``fo.Adam(params, state_dtype="bfloat16")`` (issue 3, item 6),
compared with torch's fused Adam whose state has the parameters' dtype; its row reads
``n/a (not supported by this build)`` while that option raises ``TypeError``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# After each parallel region, torch's OpenMP threads spin for a while (libgomp's default
# wait policy). With as many threads as cores they take the cores from whoever is timed
# next, ferroptim's pool and the ceiling included (1x1e7 float32 Adam, one session,
# interleaved: 0.55-0.60x torch fused with OMP_WAIT_POLICY=ACTIVE, 0.79-0.95x with
# PASSIVE). PASSIVE, though, makes torch pay a thread wake-up per parallel region, which
# slows its per-tensor loops (1000x1e3), and rayon's idle workers spin briefly too. So
# torch keeps its default policy, and after every timed block the race pauses (untimed)
# until every pool's threads have gone idle: each block starts on quiet cores.
SETTLE_S = 0.005

from _machine import cpu_model  # noqa: E402

import ferroptim as fo  # noqa: E402
from ferroptim import _core  # noqa: E402

TORCH_MODES = ("foreach=False", "foreach=True", "fused=True")
MODE_FLAGS = {
    "foreach=False": {"foreach": False},
    "foreach=True": {"foreach": True},
    "fused=True": {"fused": True},
}
DTYPES = ("float32", "float64")
WARMUP_STEPS = 3  # at most, after the first step; fewer once they take WARMUP_S
WARMUP_S = 0.01
NA = "—"

Arrays = list[np.ndarray]
Step = Callable[[], object]


# --- the shapes --------------------------------------------------------------------------


def resnet_like(base_width: int = 44, classes: int = 1000) -> list[tuple[int, ...]]:
    """The parameter shapes of torchvision's ResNet-50 (He et al. 2016) with base width
    ``base_width`` (64 there): 161 tensors; 12.5M elements at width 44."""
    shapes: list[tuple[int, ...]] = [(base_width, 3, 7, 7), (base_width,), (base_width,)]
    in_channels = base_width
    for stage, blocks in enumerate((3, 4, 6, 3)):
        planes = base_width * 2**stage
        for block in range(blocks):
            convs = [(planes, in_channels, 1, 1), (planes, planes, 3, 3), (4 * planes, planes, 1, 1)]
            if block == 0:
                convs.append((4 * planes, in_channels, 1, 1))  # the downsampling shortcut
            for conv in convs:
                shapes += [conv, (conv[0],), (conv[0],)]  # the convolution, its batch norm
            in_channels = 4 * planes
    return [*shapes, (classes, in_channels), (classes,)]


FULL_SHAPES: dict[str, list[tuple[int, ...]]] = {
    "1×1e3": [(1_000,)],
    "1×1e5": [(100_000,)],
    "1×1e7": [(10_000_000,)],
    "1×3e7": [(30_000_000,)],
    "1000×1e3": [(1_000,)] * 1000,
    "200×1e4": [(10_000,)] * 200,
    "ResNet-like": resnet_like(),
}
# Tiny, but with the same code paths: a serial step, a pooled one (>= 65536 elements), and
# 161 tensors (94K elements).
QUICK_SHAPES: dict[str, list[tuple[int, ...]]] = {
    "1×1e3": [(1_000,)],
    "1×1e5": [(100_000,)],
    "ResNet-like/16": resnet_like(base_width=4, classes=10),
}


# --- naive NumPy ---------------------------------------------------------------------------


def numpy_sgd(params: Arrays, grads: Arrays, lr: float, momentum: float) -> Step:
    """SGD with heavy-ball momentum, one tensor at a time."""
    bufs: list[np.ndarray | None] = [None] * len(params)

    def step() -> None:
        for i, (p, g) in enumerate(zip(params, grads)):
            buf = bufs[i]
            if buf is None:
                buf = bufs[i] = g.copy()
            else:
                buf *= momentum
                buf += g
            p -= lr * buf

    return step


def numpy_adagrad(params: Arrays, grads: Arrays, lr: float, eps: float) -> Step:
    """AdaGrad: ``sum += g^2; p -= lr g / (sqrt(sum) + eps)``."""
    sums = [np.zeros_like(p) for p in params]

    def step() -> None:
        for p, g, s in zip(params, grads, sums):
            s += g * g
            p -= lr * g / (np.sqrt(s) + eps)

    return step


def numpy_rmsprop(params: Arrays, grads: Arrays, lr: float, alpha: float, eps: float) -> Step:
    """RMSprop: ``v = alpha v + (1 - alpha) g^2; p -= lr g / (sqrt(v) + eps)``."""
    square_avgs = [np.zeros_like(p) for p in params]

    def step() -> None:
        for p, g, v in zip(params, grads, square_avgs):
            v *= alpha
            v += (1 - alpha) * g * g
            p -= lr * g / (np.sqrt(v) + eps)

    return step


def numpy_adadelta(params: Arrays, grads: Arrays, lr: float, rho: float, eps: float) -> Step:
    """AdaDelta (Zeiler 2012, Algorithm 1)."""
    square_avgs = [np.zeros_like(p) for p in params]
    acc_deltas = [np.zeros_like(p) for p in params]

    def step() -> None:
        for p, g, v, u in zip(params, grads, square_avgs, acc_deltas):
            v *= rho
            v += (1 - rho) * g * g
            delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
            u *= rho
            u += (1 - rho) * delta * delta
            p -= lr * delta

    return step


def numpy_adam(params: Arrays, grads: Arrays, lr: float, weight_decay: float = 0.0) -> Step:
    """Adam (Kingma & Ba 2015, Algorithm 1); with ``weight_decay``, AdamW's decoupled decay."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    exp_avgs = [np.zeros_like(p) for p in params]
    exp_avg_sqs = [np.zeros_like(p) for p in params]
    t = 0

    def step() -> None:
        nonlocal t
        t += 1
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
            if weight_decay:
                p *= 1 - lr * weight_decay
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            p -= lr / bias_correction1 * m / (np.sqrt(v / bias_correction2) + eps)

    return step


def numpy_adagrad_norm(params: Arrays, grads: Arrays, lr: float, b0: float) -> Step:
    """AdaGrad-Norm with one global ``b``: ``b^2 += ||g||^2; p -= lr / b g``."""
    b_sq = b0 * b0

    def step() -> None:
        nonlocal b_sq
        b_sq += sum(float(np.vdot(g, g)) for g in grads)
        b = math.sqrt(b_sq)
        for p, g in zip(params, grads):
            p -= lr / b * g

    return step


# --- the optimizers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Algorithm:
    """One row family: how each library builds the optimizer, and its memory traffic."""

    name: str
    #: Builds ferroptim's optimizer over ``fo.Parameter`` s.
    ferroptim: Callable[[list[fo.Parameter]], Any]
    #: torch's class and keyword arguments, or ``None``.
    torch_cls: type | None
    torch_kwargs: dict[str, Any]
    #: The torch modes that exist for this algorithm.
    modes: tuple[str, ...]
    #: Builds the naive NumPy step over (params, grads), or ``None``.
    numpy: Callable[[Arrays, Arrays], Step] | None
    #: Bytes per element for an element size (issue 3's table: reads + writes).
    bytes_per_element: Callable[[int], int]
    #: Whether ferroptim's result is compared with the others' after warm-up, and how closely.
    tolerance: float | None = None
    #: The parameter dtypes the algorithm exists for.
    dtypes: tuple[str, ...] = ("float32", "float64")
    #: ferroptim steps ``fo.flatten_parameters(values).param``: every tensor in one buffer.
    flat: bool = False


def _streams(count: int) -> Callable[[int], int]:
    return lambda itemsize: count * itemsize


ALGORITHMS = [
    Algorithm(
        "SGD momentum",
        lambda ps: fo.SGD(ps, lr=1e-3, momentum=0.9),
        torch.optim.SGD,
        dict(lr=1e-3, momentum=0.9),
        TORCH_MODES,
        lambda ps, gs: numpy_sgd(ps, gs, lr=1e-3, momentum=0.9),
        _streams(5),  # read param, grad, momentum_buffer; write param, momentum_buffer
    ),
    Algorithm(
        "Adagrad",
        lambda ps: fo.Adagrad(ps, lr=1e-2),
        torch.optim.Adagrad,
        dict(lr=1e-2),
        TORCH_MODES,
        lambda ps, gs: numpy_adagrad(ps, gs, lr=1e-2, eps=1e-10),
        _streams(5),  # read param, grad, sum; write param, sum
    ),
    Algorithm(
        "RMSprop",
        lambda ps: fo.RMSprop(ps, lr=1e-2),
        torch.optim.RMSprop,
        dict(lr=1e-2),
        TORCH_MODES[:2],
        lambda ps, gs: numpy_rmsprop(ps, gs, lr=1e-2, alpha=0.99, eps=1e-8),
        _streams(5),  # read param, grad, square_avg; write param, square_avg
    ),
    Algorithm(
        "Adadelta",
        lambda ps: fo.Adadelta(ps),
        torch.optim.Adadelta,
        {},
        TORCH_MODES[:2],
        lambda ps, gs: numpy_adadelta(ps, gs, lr=1.0, rho=0.9, eps=1e-6),
        _streams(7),  # read param, grad, square_avg, acc_delta; write param, square_avg, acc_delta
    ),
    Algorithm(
        "Adam",
        lambda ps: fo.Adam(ps, lr=1e-3),
        torch.optim.Adam,
        dict(lr=1e-3),
        TORCH_MODES,
        lambda ps, gs: numpy_adam(ps, gs, lr=1e-3),
        _streams(7),  # read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq
    ),
    Algorithm(
        "AdamW",
        lambda ps: fo.AdamW(ps, lr=1e-3, weight_decay=1e-2),
        torch.optim.AdamW,
        dict(lr=1e-3, weight_decay=1e-2),
        TORCH_MODES,
        lambda ps, gs: numpy_adam(ps, gs, lr=1e-3, weight_decay=1e-2),
        _streams(7),
    ),
    Algorithm(
        # The same Adam, with ferroptim's parameters in one flat buffer (fo.flatten_parameters)
        # and the optimizer over the whole buffer; torch and NumPy still see separate tensors.
        "Adam flat buffer",
        lambda ps: fo.Adam(ps, lr=1e-3),
        torch.optim.Adam,
        dict(lr=1e-3),
        TORCH_MODES,
        lambda ps, gs: numpy_adam(ps, gs, lr=1e-3),
        _streams(7),
        flat=True,
    ),
    Algorithm(
        "AdagradNorm",
        lambda ps: fo.AdagradNorm(ps, lr=1.0, b0=0.01),
        None,
        {},
        (),
        lambda ps, gs: numpy_adagrad_norm(ps, gs, lr=1.0, b0=0.01),
        _streams(4),  # pass 1 reads grad; pass 2 reads param, grad and writes param
    ),
    Algorithm(
        # Parameters stay in their dtype; exp_avg and exp_avg_sq are 2-byte bfloat16.
        # torch has no such option: its comparison is fused Adam with state in the parameter dtype.
        "Adam bf16 state",
        lambda ps: fo.Adam(ps, lr=1e-3, state_dtype="bfloat16"),
        torch.optim.Adam,
        dict(lr=1e-3),
        TORCH_MODES[2:],
        None,
        lambda itemsize: 3 * itemsize + 2 * 2 * 2,
        tolerance=3e-2,  # stochastically rounded bfloat16 moments: close, not equal
        dtypes=("float32",),  # bfloat16 state is for float32 parameters
    ),
]


# --- targets (issue 3) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A requirement on some cases: a ratio against a torch mode, a fraction of the
    ceiling (both at least ``bound``), or a step time (at most ``bound`` seconds)."""

    algorithms: tuple[str, ...] | None  # None: every algorithm
    shapes: tuple[str, ...]
    measure: str  # a torch mode, "ceiling" or "time"
    bound: float


TARGETS = [
    Target(("Adam",), ("1×1e7", "1×3e7"), "fused=True", 1.0),
    Target(("Adam",), ("1×1e7", "1×3e7"), "ceiling", 0.9),
    Target(("Adam bf16 state",), ("1×3e7",), "fused=True", 1.25),  # <= 0.8× fused time
    Target(("Adam", "Adam flat buffer"), ("1000×1e3",), "fused=True", 10.0),
    Target(("Adam", "Adam flat buffer"), ("ResNet-like",), "fused=True", 1.25),
    Target(None, ("1×1e3",), "time", 5e-6),
    Target(("SGD momentum", "Adagrad"), ("1×1e7", "1×3e7"), "fused=True", 1.0),
    Target(("SGD momentum", "Adagrad"), ("1×1e7", "1×3e7"), "ceiling", 0.9),
    Target(("RMSprop", "Adadelta"), ("1×1e7", "1×3e7"), "foreach=False", 3.0),
    Target(("RMSprop", "Adadelta"), ("1×1e7", "1×3e7"), "ceiling", 0.9),
]
PER_PARAM_TARGET = 0.3e-6  # seconds per extra parameter in step()


def check_targets(case: dict[str, Any]) -> dict[str, Any]:
    """``{"status": "met" | "missed" | "n/a" | "", "details": [...]}`` for one case
    (float64 cases are held to the same bounds)."""
    details = []
    for t in TARGETS:
        if case["shape"] not in t.shapes or (
            t.algorithms is not None and case["algorithm"] not in t.algorithms
        ):
            continue
        if t.measure == "time":
            value, ok = case["time"], None if case["time"] is None else case["time"] <= t.bound
            text = f"step {fmt_time(value)} (≤ {fmt_time(t.bound)})"
        elif t.measure == "ceiling":
            value = case["fraction_of_ceiling"]
            ok = None if value is None else value >= t.bound
            text = f"{fmt_percent(value)} of ceiling (≥ {t.bound:.0%})"
        else:
            value = case["ratios"].get(t.measure)
            ok = None if value is None else value >= t.bound
            text = f"{fmt_ratio(value)} vs {t.measure} (≥ {t.bound:g}×)"
        details.append({"measure": t.measure, "bound": t.bound, "value": value, "met": ok, "text": text})
    if not details:
        status = ""
    elif all(d["met"] for d in details):
        status = "met"
    elif any(d["met"] is False for d in details):
        status = "missed"
    else:
        status = "n/a"
    return {"status": status, "details": details}


def target_cell(target: dict[str, Any]) -> str:
    if target["status"] in ("", "met"):
        return target["status"]
    unmet = [d["text"] for d in target["details"] if not d["met"]]
    return f"{target['status']}: " + "; ".join(unmet)


# --- formatting ---------------------------------------------------------------------------


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return NA
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_ratio(ratio: float | None) -> str:
    return NA if ratio is None else f"{ratio:.2f}×"


def fmt_percent(fraction: float | None) -> str:
    return NA if fraction is None else f"{fraction:.0%}"


def fmt_gbps(gbps: float | None) -> str:
    return NA if gbps is None else f"{gbps:.1f}"


def md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Contestant:
    """One library's optimizer in a case: its step, and the parameters it updates."""

    label: str
    step: Step
    params: Arrays  # NumPy views of the parameters, to compare after warm-up
    inner: int = 1  # steps per timed block
    samples: list[float] = field(default_factory=list)

    def block(self) -> float:
        """Runs one timed block; returns the time per step. A block of several (short)
        steps starts with one untimed step, which warms the caches after the pause."""
        step, inner = self.step, self.inner
        if inner > 1:
            step()
        start = time.perf_counter()
        for _ in range(inner):
            step()
        elapsed = (time.perf_counter() - start) / inner
        self.samples.append(elapsed)
        return elapsed


@dataclass(frozen=True)
class Settings:
    """How long to measure."""

    block_s: float  # the least time one timed block takes
    budget_s: float  # the time the rounds of one case aim to fill
    min_rounds: int
    max_rounds: int


FULL = Settings(block_s=1e-3, budget_s=1.0, min_rounds=3, max_rounds=40)
QUICK = Settings(block_s=2e-4, budget_s=0.02, min_rounds=3, max_rounds=3)


def race(contestants: list[Contestant], settings: Settings) -> None:
    """Warms every contestant up, sizes its blocks, then times them round-robin."""
    round_s = 0.0
    for c in contestants:
        # Steps of a millisecond or less get a few warm-up steps; slow ones need one only,
        # since the step that allocated their state has already touched all their memory.
        spent, steps = 0.0, 0
        while steps < 1 or (steps < WARMUP_STEPS and spent < WARMUP_S):
            start = time.perf_counter()
            c.step()
            once = time.perf_counter() - start
            spent, steps = spent + once, steps + 1
        c.inner = max(1, min(10_000, math.ceil(settings.block_s / max(once, 1e-9))))
        round_s += c.inner * once
    rounds = max(settings.min_rounds, min(settings.max_rounds, round(settings.budget_s / max(round_s, 1e-9))))
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(contestants)  # who goes first rotates, too
            for c in contestants[shift:] + contestants[:shift]:
                c.block()
                time.sleep(SETTLE_S)  # untimed: the threads of the pools stop spinning
    finally:
        gc.enable()


def median(c: Contestant | None) -> float | None:
    return statistics.median(c.samples) if c is not None and c.samples else None


# --- one case ------------------------------------------------------------------------------


def make_data(shapes: list[tuple[int, ...]], dtype: np.dtype, seed: int) -> tuple[Arrays, Arrays]:
    """Parameters and gradients, standard normal (the gradients shared by every library)."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s, dtype=np.float64).astype(dtype, copy=False) for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float64).astype(dtype, copy=False) for s in shapes]
    return values, grads


def ferroptim_contestant(algo: Algorithm, values: Arrays, grads: Arrays) -> Contestant:
    if algo.flat:
        flat = fo.flatten_parameters(values)
        for p, g in zip(flat.params, grads):
            p.grad = g  # copied into the flat gradient buffer, once
        return Contestant(
            "ferroptim", algo.ferroptim([flat.param]).step, [p.view(np.ndarray) for p in flat.params]
        )
    params = [fo.Parameter(v.copy(), g) for v, g in zip(values, grads)]
    return Contestant("ferroptim", algo.ferroptim(params).step, [p.view(np.ndarray) for p in params])


def torch_contestant(algo: Algorithm, mode: str, values: Arrays, grads: Arrays) -> Contestant:
    assert algo.torch_cls is not None
    params = [torch.from_numpy(v.copy()) for v in values]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g)
    opt = algo.torch_cls(params, **algo.torch_kwargs, **MODE_FLAGS[mode])
    return Contestant(f"torch {mode}", opt.step, [p.numpy() for p in params])


def numpy_contestant(algo: Algorithm, values: Arrays, grads: Arrays) -> Contestant:
    assert algo.numpy is not None
    params = [v.copy() for v in values]
    return Contestant("NumPy", algo.numpy(params, grads), params)


def ceiling_contestant(elements: int, dtype: np.dtype) -> Contestant:
    y = np.zeros(elements, dtype)
    x = np.full(elements, 0.5, dtype)
    return Contestant("ceiling", lambda: _core._stream_axpy(y, x, 1e-3), [])


def disagreement(reference: Contestant, other: Contestant, start: Arrays, tolerance: float) -> str | None:
    """Why ``other``'s parameters differ from ``reference``'s after the same steps, or ``None``.
    The updates (not the parameters) are compared, relative to the largest one, on a sample."""
    stride = max(1, sum(p.size for p in start) // 200_000)
    for i, (a, b, p0) in enumerate(zip(reference.params, other.params, start)):
        a, b, p0 = (np.asarray(x, dtype=np.float64).reshape(-1)[::stride] for x in (a, b, p0))
        update = np.abs(a - p0).max(initial=0.0)
        error = np.abs(a - b).max(initial=0.0)
        if not error <= tolerance * update:
            return f"tensor {i}: max |difference| {error:.3g}, max |update| {update:.3g}"
    return None


def run_case(
    algo: Algorithm,
    shape_name: str,
    values: Arrays,
    grads: Arrays,
    settings: Settings,
    problems: list[str],
) -> dict[str, Any]:
    """Times one algorithm on one shape and dtype; returns the case's record."""
    dtype = values[0].dtype
    elements = sum(v.size for v in values)
    case: dict[str, Any] = {
        "algorithm": algo.name,
        "shape": shape_name,
        "dtype": str(dtype),
        "tensors": len(values),
        "elements": elements,
        "bytes_per_element": algo.bytes_per_element(dtype.itemsize),
        "times": {},
        "unavailable": {},
    }
    contestants: list[Contestant] = []

    def enter(label: str, build: Callable[[], Contestant]) -> None:
        try:
            contestants.append(build())
        except Exception as e:  # an option this build or this torch lacks
            case["unavailable"][label] = f"{type(e).__name__}: {e}"

    enter("ferroptim", lambda: ferroptim_contestant(algo, values, grads))
    ours = next((c for c in contestants if c.label == "ferroptim"), None)
    if ours is not None:
        for mode in algo.modes:
            enter(f"torch {mode}", lambda mode=mode: torch_contestant(algo, mode, values, grads))
        if algo.numpy is not None:
            enter("NumPy", lambda: numpy_contestant(algo, values, grads))
        enter("ceiling", lambda: ceiling_contestant(elements, dtype))
        # A contestant that raises in its first steps (torch fused on a dtype it lacks) drops out.
        for c in list(contestants):
            try:
                with torch.no_grad():
                    c.step()
            except Exception as e:
                case["unavailable"][c.label] = f"{type(e).__name__}: {e}"
                contestants.remove(c)
        tolerance = algo.tolerance or (1e-3 if dtype == np.float32 else 1e-8)
        for c in contestants:
            if c is not ours and c.label != "ceiling":
                why = disagreement(ours, c, values, tolerance)
                if why is not None:
                    problems.append(f"{algo.name} {shape_name} {dtype}: {c.label} disagrees: {why}")
        race(contestants, settings)
    by_label = {c.label: c for c in contestants}
    case["times"] = {label: median(c) for label, c in by_label.items()}
    time_ = case["time"] = case["times"].get("ferroptim")
    case["ratios"] = {
        label: t / time_
        for label, t in ((m, case["times"].get(f"torch {m}")) for m in TORCH_MODES)
        if t is not None and time_
    }
    if case["times"].get("NumPy") and time_:
        case["ratios"]["NumPy"] = case["times"]["NumPy"] / time_
    case["gbps"] = case["bytes_per_element"] * elements / time_ / 1e9 if time_ else None
    ceiling = by_label.get("ceiling")
    case["ceiling_samples"] = list(ceiling.samples) if ceiling is not None else []
    contestants.clear()  # free the arrays before the next case allocates its own
    gc.collect()
    return case


CASE_HEADER = [
    "optimizer",
    "shape",
    "B/elem",
    "ferroptim",
    "vs foreach=False",
    "vs foreach=True",
    "vs fused",
    "vs NumPy",
    "GB/s",
    "% ceiling",
    "target",
]


def ceiling_gbps(times: list[float], elements: int, dtype: np.dtype) -> float:
    """GB/s of ``y += a*x`` (read x, read y, write y) at the median of ``times``."""
    return 3 * dtype.itemsize * elements / statistics.median(times) / 1e9


def finish_shape(group: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Sets the fraction of the ceiling and the targets of one shape's cases (one dtype).
    The ceiling is the median over every round of all of them: timed beside each
    algorithm in turn, so it saw the same load, and from 8x more samples than one case."""
    samples = [t for case in group for t in case.pop("ceiling_samples")]
    ceiling = None
    if samples:
        elements, dtype = group[0]["elements"], np.dtype(group[0]["dtype"])
        gbps = ceiling_gbps(samples, elements, dtype)
        ceiling = {
            "dtype": str(dtype),
            "elements": elements,
            "time": statistics.median(samples),
            "gbps": gbps,
        }
    for case in group:
        case["ceiling_gbps"] = ceiling["gbps"] if ceiling else None
        case["fraction_of_ceiling"] = case["gbps"] / ceiling["gbps"] if ceiling and case["gbps"] else None
        case["target"] = check_targets(case)
    return ceiling


def case_row(case: dict[str, Any]) -> str:
    if case["time"] is None:
        why = case["unavailable"].get("ferroptim", "")
        ours = "n/a (not supported by this build)" if why.startswith("TypeError") else f"n/a ({why[:60]})"
        return md_row([case["algorithm"], case["shape"], str(case["bytes_per_element"]), ours, *[NA] * 7])
    return md_row(
        [
            case["algorithm"],
            case["shape"],
            str(case["bytes_per_element"]),
            fmt_time(case["time"]),
            *(fmt_ratio(case["ratios"].get(m)) for m in (*TORCH_MODES, "NumPy")),
            fmt_gbps(case["gbps"]),
            fmt_percent(case["fraction_of_ceiling"]),
            target_cell(case["target"]),
        ]
    )


# --- per-parameter overhead ----------------------------------------------------------------


def overhead(algo: Algorithm, dtype: np.dtype, settings: Settings) -> dict[str, Any]:
    """ferroptim's step over 1 and over 101 parameters of 16 elements, interleaved."""
    record: dict[str, Any] = {"algorithm": algo.name, "dtype": str(dtype)}
    contestants = []
    try:
        for count in (1, 101):
            values, grads = make_data([(16,)] * count, dtype, seed=count)
            c = ferroptim_contestant(algo, values, grads)
            c.label = f"{count} params"
            contestants.append(c)
    except Exception as e:
        record["unavailable"] = f"{type(e).__name__}: {e}"
        return record
    race(contestants, settings)
    one, many = (median(c) for c in contestants)
    assert one is not None and many is not None
    slope = (many - one) / 100
    record.update(one=one, many=many, per_param=slope, met=slope <= PER_PARAM_TARGET)
    return record


def overhead_row(r: dict[str, Any]) -> str:
    if "unavailable" in r:
        return md_row([r["algorithm"], r["dtype"], "n/a", NA, NA, ""])
    target = "met" if r["met"] else f"missed: > {fmt_time(PER_PARAM_TARGET)}"
    return md_row(
        [
            r["algorithm"],
            r["dtype"],
            fmt_time(r["one"]),
            fmt_time(r["many"]),
            fmt_time(r["per_param"]),
            target,
        ]
    )


# --- the run ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = cpu_model()
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "ferroptim_threads": fo.get_num_threads(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ferroptim": fo.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes, 3 rounds: every code path, in seconds"
    )
    parser.add_argument("--out", type=Path, help="folder for bench_step.md and bench_step.json")
    parser.add_argument("--threads", type=int, help="threads for ferroptim and torch (default: ferroptim's)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these optimizers (e.g. Adam SGD)")
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES))
    args = parser.parse_args(argv)

    # torch's modules hold millions of objects: load the ones its optimizers import lazily,
    # then freeze them all, so that each gc.collect() stays short.
    torch.optim.SGD([torch.zeros(1)])
    gc.collect()
    gc.freeze()
    if args.threads:
        fo.set_num_threads(args.threads)
    # Quick runs are for the code, not the numbers: torch's OpenMP barriers can stall for
    # milliseconds per operation on a busy 2-core machine, so torch gets one thread there.
    torch.set_num_threads(1 if args.quick and not args.threads else fo.get_num_threads())
    settings = QUICK if args.quick else FULL
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    algorithms = [a for a in ALGORITHMS if not args.only or any(a.name.startswith(o) for o in args.only)]
    out = args.out or Path(__file__).resolve().parent / "results" / ("quick" if args.quick else "")
    info = machine()

    lines: list[str] = []

    def emit(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    title = "bench_step --quick" if args.quick else "bench_step"
    emit(f"# {title}: one optimizer step, ferroptim vs torch.optim vs NumPy")
    emit()
    emit(
        f"{info['cpu']}, {info['logical_cores']} logical cores; "
        f"threads: ferroptim {info['ferroptim_threads']}, "
        f"torch {info['torch_threads']}; torch {info['torch']}, NumPy {info['numpy']}, "
        f"ferroptim {info['ferroptim']}, Python {info['python']}; {info['date']}."
    )
    emit()
    emit(
        "Median step time of ferroptim; `vs X` = X's time / ferroptim's (> 1: ferroptim is faster); "
        "GB/s = bytes per element (reads + writes) × elements / median time; % ceiling = that over "
        "the GB/s of `y += a*x` (12 B/elem in float32) on as many elements, timed in the same rounds "
        "(the ceiling table below); "
        f"`{NA}`: no such mode. Targets: issue 3."
    )
    problems: list[str] = []
    cases: list[dict[str, Any]] = []
    ceilings: list[dict[str, Any]] = []
    for dtype_name in args.dtype:
        dtype = np.dtype(dtype_name)
        emit()
        emit(f"## {dtype_name}")
        emit()
        emit(md_row(CASE_HEADER))
        emit(md_row(["---"] * 2 + ["---:"] * 8 + ["---"]))
        # Shapes outermost: each shape's data is made once for all algorithms.
        for seed, (shape_name, shape_list) in enumerate(shapes.items()):
            values, grads = make_data(shape_list, dtype, seed)
            print(f"measuring {dtype_name} {shape_name} ...", file=sys.stderr, flush=True)
            group = [
                run_case(algo, shape_name, values, grads, settings, problems)
                for algo in algorithms
                if dtype_name in algo.dtypes
            ]
            del values, grads
            gc.collect()
            ceiling = finish_shape(group)
            if ceiling is not None:
                ceilings.append(ceiling)
            for case in group:
                emit(case_row(case))
            cases += group

    emit()
    emit("## Streaming ceiling: `y += a*x` on ferroptim's pool (12 B/elem float32, 24 float64)")
    emit()
    emit(md_row(["dtype", "elements", "median time", "GB/s"]))
    emit(md_row(["---", "---:", "---:", "---:"]))
    for c in sorted(ceilings, key=lambda c: (c["dtype"], c["elements"])):
        emit(md_row([c["dtype"], f"{c['elements']:,}", fmt_time(c["time"]), fmt_gbps(c["gbps"])]))

    emit()
    emit("## Python overhead: ferroptim `step()` over 1 and 101 parameters of 16 elements")
    emit()
    emit(md_row(["optimizer", "dtype", "1 param", "101 params", "per extra param", "target (≤ 0.3 µs)"]))
    emit(md_row(["---", "---", "---:", "---:", "---:", "---"]))
    overheads = []
    for dtype_name in args.dtype:
        for algo in algorithms:
            r = overhead(algo, np.dtype(dtype_name), settings)
            overheads.append(r)
            emit(overhead_row(r))

    emit()
    emit("## Targets (issue 3)")
    emit()
    statuses = [c["target"]["status"] for c in cases] + [
        "met" if r["met"] else "missed" for r in overheads if "met" in r
    ]
    emit(
        f"{statuses.count('met')} met, {statuses.count('missed')} missed, "
        f"{statuses.count('n/a')} not measurable here (a mode or option missing)."
    )
    for c in cases:
        if c["target"]["status"] == "missed":
            emit(f"- missed: {c['algorithm']} {c['shape']} {c['dtype']}: {target_cell(c['target'])[8:]}")
    for r in overheads:
        if r.get("met") is False:
            emit(f"- missed: {r['algorithm']} {r['dtype']}, each extra parameter: {fmt_time(r['per_param'])}")
    if problems:
        emit()
        emit("## Disagreements (a contestant's parameters differ from ferroptim's after warm-up)")
        emit()
        for p in problems:
            emit(f"- {p}")

    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_step.md").write_text("\n".join(lines) + "\n")
    record = {
        "machine": info,
        "mode": "quick" if args.quick else "full",
        "settings": vars(settings),
        "convention": "GB/s = bytes_per_element * elements / median time; "
        "ratios = other time / ferroptim time",
        "cases": cases,
        "ceiling": ceilings,
        "overhead": overheads,
        "problems": problems,
    }
    (out / "bench_step.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"\nwrote {out / 'bench_step.md'} and {out / 'bench_step.json'}", file=sys.stderr)
    gc.unfreeze()  # let torch's extension objects be torn down normally at exit
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
