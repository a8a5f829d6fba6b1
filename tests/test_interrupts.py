"""Interrupted calls change all or nothing (README, "Guarantees").

Whatever interrupts ``step()``, ``load_state_dict()``, ``add_param_group()`` or a clip
function (Ctrl-C's SIGINT at any moment, or any exception a signal handler or trace
function raises), the optimizer afterwards equals, bit for bit, either a copy taken before
the call or an uninterrupted twin after it: every parameter, every state entry (arrays,
``step``, ``mu_product``, ``b_sq``), the param groups, ``last_step_skipped`` and
``skipped_steps``. One more step then agrees with the matching twin.

Two ways in: SIGINT from a timer thread at a random (seeded) moment within the time a step
takes, on one large tensor and on many small ones, first steps included; and a
``sys.settrace`` function that raises at its ``n``-th event, for every ``n`` up to the
number of events of the whole call, which reaches every gap between two Python lines
deterministically. No assertion depends on timing: a signal that lands after the call
must find the complete call, one that lands before must find nothing changed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT from os.kill is POSIX")

#: Every optimizer class, with the settings that create each kind of state.
CONFIGS: dict[str, Callable[[Any], fo.Optimizer]] = {
    "SGD": lambda groups: fo.SGD(groups, lr=0.01),
    "SGD momentum": lambda groups: fo.SGD(groups, lr=0.01, momentum=0.9, dampening=0.1),
    "SGD nesterov": lambda groups: fo.SGD(groups, lr=0.01, momentum=0.9, nesterov=True),
    "Adagrad": lambda groups: fo.Adagrad(groups, lr=0.01, lr_decay=0.01, initial_accumulator_value=0.1),
    "RMSprop centered momentum": lambda groups: fo.RMSprop(groups, lr=0.01, momentum=0.9, centered=True),
    "Adadelta": lambda groups: fo.Adadelta(groups, lr=0.5, weight_decay=0.01),
    "Adam": lambda groups: fo.Adam(groups, lr=0.01),
    "Adam amsgrad": lambda groups: fo.Adam(groups, lr=0.01, amsgrad=True),
    "AdamW": lambda groups: fo.AdamW(groups, lr=0.01),
    "NAdam": lambda groups: fo.NAdam(groups, lr=0.01),
    "RAdam": lambda groups: fo.RAdam(groups, lr=0.01),
    "Adamax": lambda groups: fo.Adamax(groups, lr=0.01),
    "Lion": lambda groups: fo.Lion(groups, lr=0.001),
    "AdagradNorm global": lambda groups: fo.AdagradNorm(groups, lr=0.01, scope="global"),
    "AdagradNorm group": lambda groups: fo.AdagradNorm(groups, lr=0.01, scope="group"),
    "AdagradNorm tensor": lambda groups: fo.AdagradNorm(groups, lr=0.01, scope="tensor"),
    "Adam bf16": lambda groups: fo.Adam(groups, lr=0.01, state_dtype="bfloat16", seed=3),
    "SGD momentum bf16": lambda groups: fo.SGD(groups, lr=0.01, momentum=0.9, state_dtype="bfloat16"),
    "RMSprop bf16": lambda groups: fo.RMSprop(groups, lr=0.01, momentum=0.5, state_dtype="bfloat16"),
    "Adam grad settings": lambda groups: fo.Adam(
        groups, lr=0.01, grad_scale=4.0, max_grad_norm=0.5, skip_nonfinite=True
    ),
    "NAdam grad settings": lambda groups: fo.NAdam(groups, lr=0.01, max_grad_norm=0.5, skip_nonfinite=True),
    "AdagradNorm grad settings": lambda groups: fo.AdagradNorm(
        groups, lr=0.01, scope="group", grad_scale=2.0, skip_nonfinite=True
    ),
}
#: Configs whose steps are skipped for a non-finite gradient, so some steps get one.
SKIPPING = {name for name in CONFIGS if name.endswith("grad settings")}


def _canon(x: Any) -> Any:
    """``x`` as nested tuples that are equal exactly when the values are equal bit for bit
    (arrays by dtype, shape and bytes; floats by their hex form), of the same types."""
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes())
    if isinstance(x, float):
        return ("float", x.hex())
    if isinstance(x, dict):
        return ("dict", tuple(sorted((str(k), _canon(v)) for k, v in x.items())))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_canon(v) for v in x))
    return (type(x).__name__, x)


def _observe(opt: fo.Optimizer) -> dict[str, Any]:
    """Everything of ``opt`` a call may change, canonical."""
    params = [p for g in opt.param_groups for p in g["params"]]
    return {
        "params": _canon(params),
        "state": _canon([opt.state.held(p) for p in params]),
        "state entries": len(opt.state),
        "param_groups": _canon([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]),
        "last_step_skipped": _canon(opt.last_step_skipped),
        "skipped_steps": _canon(opt.skipped_steps),
    }


def _which(got: dict[str, Any], before: dict[str, Any], after: dict[str, Any], what: str) -> str:
    """``"before"`` or ``"after"``, whichever observation ``got`` equals; fails naming
    what differs from both."""
    if got == before:
        return "before"
    if got == after:
        return "after"
    parts = {
        key: "as before" if got[key] == before[key] else "as after" if got[key] == after[key] else "neither"
        for key in got
    }
    pytest.fail(f"{what}: the optimizer is torn, neither as before nor as after the call: {parts}")


def _matching(got: dict[str, Any], before: fo.Optimizer, after: fo.Optimizer, what: str) -> fo.Optimizer:
    """``before`` or ``after``, whichever optimizer ``got`` equals (see :func:`_which`)."""
    return before if _which(got, _observe(before), _observe(after), what) == "before" else after


def _layout(
    kind: str, dtype: type = np.float32
) -> tuple[list[dict[str, Any]], list[np.ndarray], list[np.ndarray]]:
    """Param groups (two for the small tensors), a gradient list and another one."""
    rng = np.random.default_rng(7)
    if kind == "large":
        shapes = [(1 << 20,)]
    elif kind == "small":
        shapes = [(4, 8)] * 1500
    else:  # a few tensors, for the traced calls
        shapes = [(3, 4), (5,), (2, 2)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    half = max(1, len(params) // 2) if len(params) > 1 else 1
    groups: list[dict[str, Any]] = [{"params": params[:half]}]
    if params[half:]:
        groups.append({"params": params[half:], "lr": 0.005})
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads2 = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return groups, grads, grads2


def _nonfinite(grads: list[np.ndarray]) -> list[np.ndarray]:
    bad = [g.copy() for g in grads]
    bad[-1].flat[0] = np.nan
    return bad


class _Interrupted(BaseException):
    """Raised by the trace function; a ``BaseException``, as ``KeyboardInterrupt``, so that
    no ``except Exception`` takes it."""


def _sigint_during(call: Callable[[], Any], delay: float) -> None:
    """Runs ``call`` with SIGINT sent to this process after ``delay`` seconds, whose handler
    raises ``KeyboardInterrupt`` as Python's default one does. If the call finishes first,
    waits for the signal, so that it never escapes this function."""
    fired = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        fired.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        call()
    except KeyboardInterrupt:
        pass
    finally:
        while True:  # the one signal, if still to come, lands in this wait
            try:
                while not fired.is_set():
                    time.sleep(1e-4)
                break
            except KeyboardInterrupt:
                pass
        timer.join()
        signal.signal(signal.SIGINT, previous)


def _raise_at(n: int) -> Callable[..., Any]:
    """A trace function that raises ``_Interrupted`` at its ``n``-th event (call, line or
    return, in any frame); Python unsets it then."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        if count == n:
            raise _Interrupted
        return tracer

    return tracer


def _events(call: Callable[[], Any]) -> int:
    """How many events a trace function sees during ``call()``."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        return tracer

    with _no_gc():
        sys.settrace(tracer)
        try:
            call()
        finally:
            sys.settrace(None)
    return count


def _traced(call: Callable[[], Any], n: int) -> bool:
    """Runs ``call()`` with :func:`_raise_at` ``n``; returns whether it was interrupted."""
    with _no_gc():
        sys.settrace(_raise_at(n))
        try:
            call()
        except _Interrupted:
            return True
        finally:
            sys.settrace(None)
    return False


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic collector off, so that the events a call sees do not include the weakref
    callbacks (Python code) of objects it happens to collect: the count is then the same
    on every run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- step -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["large", "small"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_sigint_during_step_changes_all_or_nothing(name: str, layout: str) -> None:
    groups, grads, grads2 = _layout(layout)
    rng = np.random.default_rng(zlib.crc32(f"{name} {layout}".encode()))
    opt = CONFIGS[name](copy.deepcopy(groups))
    for trial in range(5):
        if trial in (0, 2):  # first steps: the state is created by the interrupted step
            opt = CONFIGS[name](copy.deepcopy(groups))
        g = _nonfinite(grads) if name in SKIPPING and trial == 3 else grads
        before = copy.deepcopy(opt)
        after = copy.deepcopy(opt)
        start = time.perf_counter()
        after.step(grads=g)
        delay = rng.uniform(0.0, 1.2) * (time.perf_counter() - start)
        _sigint_during(functools.partial(opt.step, grads=g), delay)
        twin = _matching(_observe(opt), before, after, f"{name}, {layout}, trial {trial}")
        twin.step(grads=grads2)
        opt.step(grads=grads2)
        assert _observe(opt) == _observe(twin), f"{name}, {layout}, trial {trial}: the next step differs"


def _step_scenarios(name: str) -> list[tuple[str, list[list[np.ndarray]], list[np.ndarray], Any]]:
    """(what, gradients of the steps before, gradients of the traced step, an edit to
    the groups before it) for the traced steps of config ``name``."""
    _, grads, grads2 = _layout("few")
    scenarios: list[tuple[str, list[list[np.ndarray]], list[np.ndarray], Any]] = [
        ("first step", [], grads, None),
        ("second step", [grads], grads2, None),
    ]
    if name in SKIPPING:
        scenarios.append(("skipped step", [grads], _nonfinite(grads2), None))
        scenarios.append(("step after a skipped one", [grads, _nonfinite(grads2)], grads2, None))
    if name == "Adam":  # amsgrad switched on mid-run: a new state array in the general path
        scenarios.append(("amsgrad switched on", [grads], grads2, lambda g: g.update(amsgrad=True)))
    if name == "SGD":  # momentum switched on mid-run: the kernel refuses the live state first
        scenarios.append(("momentum switched on", [grads], grads2, lambda g: g.update(momentum=0.9)))
    return scenarios


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_exception_at_every_traced_event_of_step_changes_all_or_nothing(name: str) -> None:
    groups, _, grads2 = _layout("few")
    for what, history, g, edit in _step_scenarios(name):
        base = CONFIGS[name](copy.deepcopy(groups))
        for earlier in history:
            base.step(grads=earlier)
        if edit is not None:
            for group in base.param_groups:
                edit(group)
        after = copy.deepcopy(base)
        events = _events(functools.partial(after.step, grads=g))
        assert events > 20
        ends = {"before": _observe(base), "after": _observe(after)}
        continued = {}  # each end, then one more step
        for end, twin in (("before", base), ("after", after)):
            twin = copy.deepcopy(twin)
            twin.step(grads=grads2)
            continued[end] = _observe(twin)
        for n in range(1, events + 2):
            opt = copy.deepcopy(base)
            # (an exception raised while a generator is finalized is only printed: not every
            # n <= events interrupts the call)
            assert not _traced(functools.partial(opt.step, grads=g), n) or n <= events
            end = _which(_observe(opt), ends["before"], ends["after"], f"{name}, {what}, raised at event {n}")
            opt.step(grads=grads2)
            assert _observe(opt) == continued[end], f"{name}, {what}, event {n}: the next step differs"


# --- load_state_dict and add_param_group --------------------------------------------------


def _named(params: list[np.ndarray]) -> list[dict[str, Any]]:
    half = len(params) // 2
    return [
        {"params": [(f"p{i}", p) for i, p in enumerate(params[:half])]},
        {"params": [(f"p{i + half}", p) for i, p in enumerate(params[half:])], "lr": 0.005},
    ]


def _loading_pair(count: int) -> tuple[fo.Optimizer, dict[str, Any]]:
    """An Adam with state, and the state dict of another one (other state, other lr)."""
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(6) for _ in range(count)]
    grads = [rng.standard_normal(6) for _ in range(count)]
    opt = fo.Adam(_named(params), lr=0.01, amsgrad=True)
    opt.step(grads=grads)
    other = fo.Adam(_named([p.copy() for p in params]), lr=0.02, amsgrad=True)
    for _ in range(3):
        other.step(grads=[g * 2 for g in grads])
    other.param_groups[1]["lr"] = 0.003
    return opt, other.state_dict()


@pytest.mark.parametrize("match", ["order", "names"])
def test_exception_at_every_traced_event_of_load_state_dict_changes_all_or_nothing(match: str) -> None:
    base, saved = _loading_pair(4)
    after = copy.deepcopy(base)
    events = _events(functools.partial(after.load_state_dict, saved, match=match))
    grads = [np.ones(6)] * 4
    ends = {"before": _observe(base), "after": _observe(after)}
    continued = {}  # each end, then one step
    for end, twin in (("before", base), ("after", after)):
        twin = copy.deepcopy(twin)
        twin.step(grads=grads)
        continued[end] = _observe(twin)
    for n in range(1, events + 2):
        opt = copy.deepcopy(base)
        assert not _traced(functools.partial(opt.load_state_dict, saved, match=match), n) or n <= events
        end = _which(_observe(opt), ends["before"], ends["after"], f"load_state_dict, raised at event {n}")
        opt.step(grads=grads)
        assert _observe(opt) == continued[end], f"load_state_dict, event {n}: the next step differs"


def test_sigint_during_load_state_dict_changes_all_or_nothing() -> None:
    base, saved = _loading_pair(1500)
    rng = np.random.default_rng(2)
    for trial in range(8):
        after = copy.deepcopy(base)
        start = time.perf_counter()
        after.load_state_dict(saved)
        delay = rng.uniform(0.0, 1.2) * (time.perf_counter() - start)
        opt = copy.deepcopy(base)
        _sigint_during(functools.partial(opt.load_state_dict, saved), delay)
        _matching(_observe(opt), base, after, f"load_state_dict, trial {trial}")


@pytest.mark.parametrize("name", ["Adagrad", "Adam"])
def test_interrupted_add_param_group_adds_all_or_nothing(name: str) -> None:
    """Adagrad creates the new group's state with it, as torch; the group and its state
    appear together."""
    groups, grads, _ = _layout("few", np.float64)
    base = CONFIGS[name](groups[:1])
    base.step(grads=grads[: len(groups[0]["params"])])
    new_group = {"params": [np.full(7, 0.5) for _ in range(3)], "lr": 0.02}
    after = copy.deepcopy(base)
    added = copy.deepcopy(new_group)
    events = _events(functools.partial(after.add_param_group, added))
    for n in range(1, events + 2):
        opt, added = copy.deepcopy(base), copy.deepcopy(new_group)
        assert not _traced(functools.partial(opt.add_param_group, added), n) or n <= events
        _matching(_observe(opt), base, after, f"{name}.add_param_group, raised at event {n}")
    rng = np.random.default_rng(3)
    big = {"params": [np.full(7, 0.5) for _ in range(1500)], "lr": 0.02}
    after, added = copy.deepcopy(base), copy.deepcopy(big)
    start = time.perf_counter()
    after.add_param_group(added)
    elapsed = time.perf_counter() - start
    for trial in range(6):
        opt, added = copy.deepcopy(base), copy.deepcopy(big)
        _sigint_during(functools.partial(opt.add_param_group, added), rng.uniform(0.0, 1.2) * elapsed)
        _matching(_observe(opt), base, after, f"{name}.add_param_group, trial {trial}")


# --- clip functions --------------------------------------------------------------------


CLIPS: dict[str, Callable[..., Any]] = {
    "clip_grad_norm_": lambda params, grads: fo.clip_grad_norm_(params, 0.5, grads=grads),
    "clip_grad_norm_ inf": lambda params, grads: fo.clip_grad_norm_(
        params, 0.5, norm_type="inf", grads=grads
    ),
    "clip_grads_with_norm_": lambda params, grads: fo.clip_grads_with_norm_(params, 0.5, 40.0, grads=grads),
    "clip_grad_value_": lambda params, grads: fo.clip_grad_value_(params, 0.1, grads=grads),
}


def _clip_inputs(large: bool) -> tuple[list[fo.Parameter], list[np.ndarray]]:
    rng = np.random.default_rng(4)
    shapes = [(1 << 20,)] + [(16,)] * 1500 if large else [(3, 4), (5,)]
    params = [fo.Parameter(np.zeros(s, np.float32)) for s in shapes]
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    grads = [rng.standard_normal(s) for s in shapes[:2]]  # float64, as a second dtype
    return params, grads


def _clip_copy(
    params: list[fo.Parameter], grads: list[np.ndarray]
) -> tuple[list[fo.Parameter], list[np.ndarray]]:
    return copy.deepcopy(params), [g.copy() for g in grads]


def _clip_observed(params: list[fo.Parameter], grads: list[np.ndarray]) -> Any:
    return _canon([p.grad for p in params] + grads)


def _clip_matches(got: Any, before: Any, after: Any, what: str) -> None:
    assert got in (before, after), f"{what}: some gradients are clipped, others not"


@pytest.mark.parametrize("name", list(CLIPS))
def test_interrupted_clip_changes_all_gradients_or_none(name: str) -> None:
    params, grads = _clip_inputs(large=False)
    before = _clip_observed(params, grads)
    done = _clip_copy(params, grads)
    events = _events(functools.partial(CLIPS[name], *done))
    after = _clip_observed(*done)
    assert after != before
    for n in range(1, events + 2):
        trial = _clip_copy(params, grads)
        assert not _traced(functools.partial(CLIPS[name], *trial), n) or n <= events
        _clip_matches(_clip_observed(*trial), before, after, f"{name}, raised at event {n}")
    params, grads = _clip_inputs(large=True)
    before = _clip_observed(params, grads)
    done = _clip_copy(params, grads)
    start = time.perf_counter()
    CLIPS[name](*done)
    elapsed = time.perf_counter() - start
    after = _clip_observed(*done)
    rng = np.random.default_rng(5)
    for attempt in range(6):
        trial = _clip_copy(params, grads)
        _sigint_during(functools.partial(CLIPS[name], *trial), rng.uniform(0.0, 1.2) * elapsed)
        _clip_matches(_clip_observed(*trial), before, after, f"{name}, SIGINT {attempt}")


def test_a_commit_that_cannot_be_made_whole_writes_nothing() -> None:
    """``_core.commit`` (the writes a step's native call makes after its kernel) checks
    everything first: a bad entry after good ones raises with nothing written."""
    from ferroptim import _core

    target: dict[str, Any] = {"a": 1}
    states = [{"step": 1.0}, {"step": 2.0}]
    items: list[Any] = [0]
    good: Any = {"set": [(target, "a", 2)], "splice": [(items, [5, 6])], "replace": [(states[0], {"x": 1})]}
    with pytest.raises(TypeError, match="unhashable"):
        _core.commit({**good, "set": [(target, "a", 2), (target, [], 3)]})
    with pytest.raises(ValueError, match="2 states but 1 values"):
        _core.commit({**good, "column": [(states, "step", [3.0])]})
    assert target == {"a": 1} and items == [0] and states == [{"step": 1.0}, {"step": 2.0}]
    _core.commit({**good, "column": [(states, "step", [3.0, 4.0])]})
    assert target == {"a": 2} and items == [5, 6] and states == [{"x": 1, "step": 3.0}, {"step": 4.0}]


# --- locks ------------------------------------------------------------------------------


def _runs_in_another_thread(call: Callable[[], Any]) -> bool:
    """Whether ``call()`` finishes in another thread (a lock left held would block it)."""
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=30)
    return not worker.is_alive()


def test_an_interrupted_call_never_leaves_a_lock_held() -> None:
    """A step, a state dict and a clipping call hold a lock while they run (their
    optimizer's, and one that ``os.fork()`` waits for). An exception raised at any trace
    event, the one before the release included, leaves no lock held: another thread can
    then step and clip, and a fork does not wait forever."""
    p = fo.Parameter(np.zeros(3))
    opt = fo.SGD([p], lr=0.1, momentum=0.9)
    calls = {
        "step": opt.step,
        "state_dict": opt.state_dict,
        "clip_grad_norm_": lambda: fo.clip_grad_norm_([p], 1.0),
    }
    for name, call in calls.items():
        p.grad = np.ones(3)
        for n in range(1, _events(call) + 2):
            p.grad = np.ones(3)
            _traced(call, n)
            p.grad = np.ones(3)
            assert _runs_in_another_thread(opt.step), f"{name}, raised at event {n}: step blocked"
            assert _runs_in_another_thread(lambda: fo.clip_grad_norm_([p], 1.0)), (
                f"{name}, raised at event {n}: clipping blocked"
            )
