"""Reliability: Python threads, fork, memory, numerical extremes, and docstrings.

- Threads: two optimizers stepped from two Python threads at once (each step releases the
  GIL and shares the one rayon pool) give bit for bit what sequential runs give; steps of
  one optimizer from two threads are serialized by its lock, as are ``state_dict``,
  ``load_state_dict`` and ``add_param_group``, so a checkpointing thread never sees a half
  committed step; a thread writing into a parameter during a step is a data race that
  must not crash the interpreter.
- fork: a child forked after the parent stepped on its thread pool steps correctly (for
  every optimizer), and one forked while another thread is stepping starts between two
  steps and steps on; timeouts guard against hangs.
- Memory: 100,000 steps keep the resident set flat; 10,000 optimizers created, stepped and
  dropped leave no traced allocations behind (subprocesses, so other tests do not blur RSS).
- Numerical extremes against torch.optim: huge gradients that overflow float32 moments,
  subnormal gradients (no flush to zero), ``eps = 0`` with a zero gradient (``0/0``), and
  AdagradNorm's float64 norm when the float32 norm would overflow.
- Regressions for the bugs ``tests/test_properties.py`` found: corrupted live state
  (``step``, AdagradNorm's ``b_sq``), wrongly typed hyperparameters edited into a group, a
  string ``step`` in a loaded state dict.
- Every public name of ``ferroptim`` and every public method has a docstring.
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
import subprocess
import sys
import textwrap
import threading
from typing import Any

import numpy as np
import pytest
import torch

import ferroptim as fo

N_BIG = 150_000  # above the 65536-element threshold: steps use the pool

CONFIGS = [
    pytest.param(fo.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True}, id="SGD"),
    pytest.param(fo.Adagrad, {"lr": 0.1, "lr_decay": 0.01}, id="Adagrad"),
    pytest.param(fo.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}, id="RMSprop"),
    pytest.param(fo.Adadelta, {"weight_decay": 1e-3}, id="Adadelta"),
    pytest.param(fo.Adam, {"lr": 1e-2, "amsgrad": True}, id="Adam"),
    pytest.param(fo.AdamW, {"lr": 1e-2}, id="AdamW"),
    pytest.param(fo.AdagradNorm, {"scope": "group"}, id="AdagradNorm"),
]


@pytest.fixture(autouse=True)
def two_threads():
    saved = fo.get_num_threads()
    fo.set_num_threads(2)
    yield
    fo.set_num_threads(saved)


def _problem(seed: int, steps: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Two float32/float64 tensors (one F-order) and ``steps`` gradients for them."""
    rng = np.random.default_rng(seed)
    params = [
        rng.standard_normal(N_BIG),
        np.asfortranarray(rng.standard_normal((300, 300)).astype(np.float32)),
    ]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(steps)]
    return params, grads


def _run(opt: Any, grads: list[list[np.ndarray]]) -> None:
    for g in grads:
        opt.step(grads=g)


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"


def _same_state(a: Any, b: Any) -> None:
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys()
        for key in sa[k]:
            assert np.array_equal(sa[k][key], sb[k][key]), key


# --------------------------------------------------------------------------------------------
# Python threads


def test_two_optimizers_in_two_threads_match_sequential_runs():
    """Every pair of different optimizer classes, stepped at once from two threads, gives the
    bits of each one stepped alone."""
    classes = [c.values for c in CONFIGS]
    pairs = list(zip(classes, classes[1:] + classes[:1]))
    for (cls_a, kw_a), (cls_b, kw_b) in pairs:
        (pa, ga), (pb, gb) = _problem(1, 4), _problem(2, 4)
        alone_a, alone_b = [p.copy(order="K") for p in pa], [p.copy(order="K") for p in pb]
        ref_a, ref_b = cls_a(alone_a, **kw_a), cls_b(alone_b, **kw_b)
        _run(ref_a, ga)
        _run(ref_b, gb)
        opt_a, opt_b = cls_a(pa, **kw_a), cls_b(pb, **kw_b)
        errors: list[BaseException] = []

        def work(opt: Any, grads: list, errors: list = errors) -> None:
            try:
                _run(opt, grads)
            except BaseException as err:  # noqa: BLE001 - any failure must surface
                errors.append(err)

        _join(
            [threading.Thread(target=work, args=(opt_a, ga)), threading.Thread(target=work, args=(opt_b, gb))]
        )
        assert not errors, errors
        for p, q in zip(pa + pb, alone_a + alone_b):
            assert np.array_equal(p, q), (cls_a.__name__, cls_b.__name__)
        _same_state(opt_a, ref_a)
        _same_state(opt_b, ref_b)


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_one_optimizer_from_two_threads_is_serialized(cls, kwargs):
    """Two threads stepping one optimizer: its lock runs the steps one after the other, so the
    result is that of ``2 x 3`` ordinary steps (the gradient is the same for every step)."""
    (params, grads), (twins, _) = _problem(3, 1), _problem(3, 1)
    opt, ref = cls(params, **kwargs), cls(twins, **kwargs)
    _join([threading.Thread(target=_run, args=(opt, grads * 3)) for _ in range(2)])
    _run(ref, grads * 6)
    for p, q in zip(params, twins):
        assert np.array_equal(p, q)
    _same_state(opt, ref)


def test_state_dict_from_another_thread_is_never_half_a_step():
    """Regression: ``state_dict()`` did not take the optimizer's lock, so a checkpointing
    thread could copy some parameters' state before a step and others after it."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        params = [np.zeros(4) for _ in range(40)]
        opt = fo.Adam(params, lr=0.1)
        done = threading.Event()
        torn: list[set] = []

        def stepper() -> None:
            for _ in range(300):
                opt.step(grads=[np.ones(4)] * 40)
            done.set()

        def checkpointer() -> None:
            while not done.is_set():
                steps = {s["step"] for s in opt.state_dict()["state"].values()}
                if len(steps) > 1:
                    torn.append(steps)

        _join([threading.Thread(target=stepper), threading.Thread(target=checkpointer)])
    finally:
        sys.setswitchinterval(switch)
    assert not torn, f"a state_dict mixed steps {torn[0]}"


def test_load_state_dict_waits_for_a_running_step():
    """``load_state_dict`` from another thread lands between steps: afterwards every
    parameter's state is the loaded one or a later step of it, never a mixture."""
    params = [np.zeros(N_BIG // 10) for _ in range(10)]
    opt = fo.Adam(params, lr=0.1)
    opt.step(grads=[np.ones(N_BIG // 10)] * 10)
    saved = opt.state_dict()
    done = threading.Event()

    def stepper() -> None:
        for _ in range(50):
            opt.step(grads=[np.ones(N_BIG // 10)] * 10)
        done.set()

    def loader() -> None:
        while not done.is_set():
            opt.load_state_dict(saved)

    _join([threading.Thread(target=stepper), threading.Thread(target=loader)])
    assert len({s["step"] for s in opt.state_dict()["state"].values()}) == 1


def test_a_thread_writing_into_a_parameter_during_steps_does_not_crash():
    """A documented data race (as with any in-place library): the values it leaves are
    unspecified, but the interpreter survives and the optimizer keeps working."""
    p = np.zeros(4 * N_BIG)
    opt = fo.Adam([p], lr=1e-3)
    g = np.ones_like(p)
    done = threading.Event()

    def writer() -> None:
        while not done.is_set():
            p[::7] = 1.0
            p[...] += 0.5

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(30):
            opt.step(grads=[g])
    finally:
        done.set()
        t.join(timeout=60)
    assert not t.is_alive()
    assert np.isfinite(p).all()
    assert opt.state[p]["step"] == 30.0
    p[...] = 0.0  # still a working optimizer: one more step moves every element by -lr
    exp_avg, exp_avg_sq = opt.state[p]["exp_avg"].copy(), opt.state[p]["exp_avg_sq"].copy()
    opt.step(grads=[g])
    m = 0.9 * exp_avg + 0.1 * g
    v = 0.999 * exp_avg_sq + 0.001 * g * g
    want = -1e-3 * (m / (1 - 0.9**31)) / (np.sqrt(v / (1 - 0.999**31)) + 1e-8)
    np.testing.assert_allclose(p, want, rtol=1e-12)


def test_arrays_shared_by_two_optimizers_in_two_threads():
    """A parameter held by two optimizers stepped at once from two threads: each step either
    runs or is refused with ``ValueError`` (the array is in use), never a crash, and a
    refused step leaves its optimizer's state as it was."""
    shared = np.zeros(N_BIG)
    opts = [fo.SGD([shared], lr=1.0), fo.SGD([shared], lr=1.0)]
    g = np.ones(N_BIG)
    outcomes: list[list[str]] = [[], []]

    def work(k: int) -> None:
        for _ in range(40):
            try:
                opts[k].step(grads=[g])
                outcomes[k].append("ok")
            except ValueError as err:
                assert "in use by another call" in str(err), str(err)
                assert "of this step" not in str(err), str(err)
                outcomes[k].append("refused")

    _join([threading.Thread(target=work, args=(k,)) for k in range(2)])
    done = sum(o.count("ok") for o in outcomes)
    assert np.array_equal(shared, np.full(N_BIG, -float(done)))


# --------------------------------------------------------------------------------------------
# fork


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method")
@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_forked_child_steps_after_parallel_steps_in_the_parent(cls, kwargs):
    params, grads = _problem(4, 3)
    opt = cls(params, **kwargs)
    _run(opt, grads[:2])  # parallel steps: the parent's pool is running
    ctx = mp.get_context("fork")
    out = [ctx.RawArray("d", p.size) for p in params]

    def child() -> None:
        _run(opt, grads[2:] * 2)
        for buffer, p in zip(out, params):
            np.frombuffer(buffer)[:] = p.ravel(order="K")

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(timeout=90)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail("the forked child hung")
    assert proc.exitcode == 0
    _run(opt, grads[2:] * 2)  # the parent continues exactly as the child did
    for buffer, p in zip(out, params):
        assert np.array_equal(np.frombuffer(buffer), p.ravel(order="K").astype(np.float64))


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_while_another_thread_steps_waits_for_the_step():
    """Regression: forking while another Python thread was inside ``step()`` gave a child
    whose optimizer lock was held by a thread that does not exist there, so the child's first
    step blocked forever. ``fork()`` now waits for the running step: the child starts between
    two steps (every state at the same ``step``, parameters exactly that many steps from the
    start) and steps on."""
    params = [np.zeros(N_BIG), np.zeros(N_BIG // 2, np.float32)]
    grads = [np.full(N_BIG, 0.5), np.full(N_BIG // 2, -0.5, np.float32)]
    opt = fo.Adam(params, lr=1e-3)
    stop = threading.Event()

    def stepper() -> None:
        while not stop.is_set():
            opt.step(grads=grads)

    def child() -> None:
        steps = {opt.state[p]["step"] for p in params}
        assert len(steps) == 1, steps
        twins = [np.zeros_like(p) for p in params]
        twin = fo.Adam(twins, lr=1e-3)
        for _ in range(int(steps.pop()) + 1):
            twin.step(grads=grads)
        opt.step(grads=grads)
        assert all(np.array_equal(p, q) for p, q in zip(params, twins))

    ctx = mp.get_context("fork")
    thread = threading.Thread(target=stepper)
    thread.start()
    try:
        for _ in range(5):
            proc = ctx.Process(target=child)
            proc.start()
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
                pytest.fail("the forked child hung")
            assert proc.exitcode == 0
    finally:
        stop.set()
        thread.join(timeout=60)


#: Each native call that borrows arrays outside a step: ``call(g)`` reads or writes ``g``.
BORROWING_CALLS = [
    pytest.param(lambda g: fo.clip_grads_with_norm_(None, 1.0, 1.0, grads=[g]), id="clip_grads_with_norm_"),
    pytest.param(lambda g: fo.clip_grad_norm_(None, 1e30, grads=[g]), id="clip_grad_norm_"),
    pytest.param(lambda g: fo.clip_grad_value_(None, 1e30, grads=[g]), id="clip_grad_value_"),
    pytest.param(lambda g: fo.get_total_norm([g]), id="get_total_norm"),
]


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("call", BORROWING_CALLS)
def test_fork_while_another_thread_clips_waits_for_the_call(call):
    """Regression: forking while another thread was inside a clipping function gave a child
    that inherited rust-numpy's borrow of the gradient, without the thread that would
    release it: every later use of that array in the child was refused ("shares memory").
    ``fork()`` now waits for these calls as for steps, so the child can write and step with
    the gradient."""
    g = np.ones(4 * N_BIG, np.float32)
    stop = threading.Event()

    def clipper() -> None:
        while not stop.is_set():
            call(g)

    def child() -> None:
        p = np.zeros_like(g)
        fo.SGD([p], lr=1.0).step(grads=[g])  # reads g
        fo.clip_grad_value_(None, 1e30, grads=[g])  # writes g
        assert np.array_equal(p, -g)

    ctx = mp.get_context("fork")
    thread = threading.Thread(target=clipper)
    thread.start()
    try:
        for _ in range(5):
            proc = ctx.Process(target=child)
            proc.start()
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
                pytest.fail("the forked child hung")
            assert proc.exitcode == 0
    finally:
        stop.set()
        thread.join(timeout=60)


def test_array_in_use_by_a_clipping_call_in_another_thread_is_named_as_such():
    """Regression: an array held by a call running in another thread was refused with the
    message for arrays of one step sharing memory. A step (and an optimizer's construction)
    that meets a gradient a clipping call in another thread is writing now says the array is
    in use by another call."""
    g = np.ones(4 * N_BIG, np.float32)
    stop = threading.Event()

    def clipper() -> None:
        while not stop.is_set():
            fo.clip_grad_value_(None, 1e30, grads=[g])

    thread = threading.Thread(target=clipper)
    thread.start()
    refusals: list[str] = []
    try:
        for _ in range(2000):
            try:
                fo.SGD([np.zeros_like(g)], lr=1.0).step(grads=[g])
                fo.SGD([g], lr=0.0)  # construction checks the parameters' borrows too
            except ValueError as err:
                refusals.append(str(err))
                if len(refusals) >= 3:
                    break
    finally:
        stop.set()
        thread.join(timeout=60)
    assert refusals, "the clipping thread never held the gradient during a step"
    for message in refusals:
        assert "in use by another call" in message and "of this step" not in message, message
        assert "shares memory" not in message and "interleaves" not in message, message


# --------------------------------------------------------------------------------------------
# memory


RSS = """
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
"""


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", RSS + textwrap.dedent(code)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_100k_steps_keep_resident_memory_flat():
    """100,000 Adam (AMSGrad) steps over two groups, both dtypes, a staged (strided) layout,
    plus a refused step every 1,000: resident memory after the first 10,000 steps does not
    grow by more than 2 MiB (20 bytes a step)."""
    out = _python(
        """
        import numpy as np, ferroptim as fo
        base = np.zeros(64)
        params = [np.zeros((8, 8)), np.zeros(10, np.float32), base[::2]]
        grads = [np.full((8, 8), 0.1), np.full(10, 0.1, np.float32), np.full(32, 0.1)]
        opt = fo.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 1e-4}], amsgrad=True)
        bad = [grads[0], grads[1], np.zeros(3)]
        for k in range(100_000):
            opt.step(grads=grads)
            if k % 1000 == 0:
                try:
                    opt.step(grads=bad)
                except ValueError:
                    pass
            if k == 10_000:
                start = rss()
        print(rss() - start, opt.state[params[0]]["step"])
        """
    )
    growth, steps = out.split()
    assert float(steps) == 100_000
    assert int(growth) <= 2 << 20, f"resident memory grew by {int(growth) / 2**20:.1f} MiB"


def test_10k_optimizers_created_and_dropped_leak_nothing():
    """10,000 optimizers of every class, each stepped once (with state, pool and borrow
    tracking) and dropped: tracemalloc sees no growth beyond 64 KiB, and RSS none beyond 4 MiB."""
    out = _python(
        """
        import gc, tracemalloc, numpy as np, ferroptim as fo
        classes = [fo.SGD, fo.Adagrad, fo.RMSprop, fo.Adadelta, fo.Adam, fo.AdamW, fo.AdagradNorm]
        def cycle(n):
            for k in range(n):
                p = fo.Parameter(np.zeros(16))
                opt = classes[k % len(classes)]([p], lr=0.1, **({"momentum": 0.9} if k % 7 == 0 else {}))
                p.grad = np.ones(16)
                opt.step()
                opt.load_state_dict(opt.state_dict())
                del opt, p
        cycle(1000)
        gc.collect()
        tracemalloc.start()
        before, rss_before = tracemalloc.get_traced_memory()[0], rss()
        cycle(10_000)
        gc.collect()
        print(tracemalloc.get_traced_memory()[0] - before, rss() - rss_before)
        """
    )
    traced, resident = map(int, out.split())
    assert traced <= 64 << 10, f"{traced} bytes of Python allocations survived"
    assert resident <= 4 << 20, f"resident memory grew by {resident / 2**20:.1f} MiB"


# --------------------------------------------------------------------------------------------
# numerical extremes, against torch.optim

TORCH_CONFIGS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("Adagrad", {"lr": 0.1}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("Adadelta", {}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
]


def _assert_like_torch(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """The same non-finite values (NaN, and infinities with their sign) in the same places,
    and finite values equal to a few ulps (torch's vectorized kernels fuse multiply-adds)."""
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)), (what, ours, theirs)
    infinite = np.isinf(ours) | np.isinf(theirs)
    assert np.array_equal(ours[infinite], theirs[infinite]), (what, ours, theirs)
    finite = np.isfinite(ours) & np.isfinite(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=64 * np.finfo(ours.dtype).eps, err_msg=what)


def _against_torch(name: str, kwargs: dict[str, Any], p0: np.ndarray, grads: list[np.ndarray]) -> None:
    """Steps ferroptim and torch.optim on the same values; every parameter and state element
    must agree (``_assert_like_torch``)."""
    p = p0.copy()
    opt = getattr(fo, name)([p], **kwargs)
    t = torch.from_numpy(p0.copy()).requires_grad_(True)
    topt = getattr(torch.optim, name)([t], **kwargs)
    for g in grads:
        opt.step(grads=[g])
        t.grad = torch.from_numpy(g.copy())
        topt.step()
    _assert_like_torch(p, t.detach().numpy(), "param")
    for key, value in topt.state[t].items():
        if key != "step":
            _assert_like_torch(opt.state[p][key], value.numpy(), key)


@pytest.mark.parametrize(
    ("name", "kwargs"), TORCH_CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_CONFIGS)]
)
@pytest.mark.parametrize(
    ("dtype", "huge"), [(np.float32, 1e30), (np.float64, 1e200)], ids=["f32-1e30", "f64-1e200"]
)
def test_huge_gradients_overflow_as_in_torch(name, kwargs, dtype, huge):
    """``g^2`` overflows to inf: Adam's ``exp_avg_sq`` becomes inf and its step 0 (``m/inf``),
    RMSprop/Adagrad steps become 0 or NaN, all exactly as torch computes them."""
    p0 = np.array([0.5, -0.25, 1.0, 0.0], dtype=dtype)
    grads = [np.array([huge, -huge, 1.0, 0.0], dtype=dtype), np.array([1.0, huge, -huge, 2.0], dtype=dtype)]
    _against_torch(name, kwargs, p0, grads)


@pytest.mark.parametrize(
    ("name", "kwargs"), TORCH_CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_CONFIGS)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_subnormal_gradients_are_not_flushed(name, kwargs, dtype):
    """Subnormal gradients and parameters are computed with, not flushed to zero (torch's
    default): results equal torch's, and a subnormal gradient moves the parameter."""
    tiny = np.finfo(dtype).smallest_subnormal
    p0 = np.array([tiny * 3, 0.0, 1.0, -tiny], dtype=dtype)
    g = np.array([tiny * 5, -tiny * 1000, tiny, 7 * tiny], dtype=dtype)
    assert g[0] != 0 and g[0] < np.finfo(dtype).smallest_normal
    _against_torch(name, kwargs, p0, [g, g * 2])
    p = p0.copy()
    fo.SGD([p], lr=1.0).step(grads=[g])
    assert np.array_equal(p, p0 - g) and p[1] != 0


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("Adagrad", {"eps": 0.0}),
        ("RMSprop", {"eps": 0.0}),
        ("RMSprop", {"eps": 0.0, "centered": True}),
        ("Adadelta", {"eps": 0.0}),
        ("Adam", {"eps": 0.0}),
        ("Adam", {"eps": 0.0, "amsgrad": True}),
        ("AdamW", {"eps": 0.0}),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_eps_zero_with_a_zero_gradient_is_nan_as_in_torch(name, kwargs, dtype):
    """``eps = 0`` and a zero gradient: the update is ``0/0``, NaN, in torch and here alike
    (AdaDelta's numerator ``sqrt(acc_delta + eps)`` is 0 too). Elements with a gradient
    are unaffected by their neighbours' NaN."""
    p0 = np.array([1.0, 2.0], dtype=dtype)
    grads = [np.array([0.0, 0.5], dtype=dtype)]
    _against_torch(name, kwargs, p0, grads)
    p = p0.copy()
    getattr(fo, name)([p], **kwargs).step(grads=grads)
    assert np.isnan(p[0]) and (np.isfinite(p[1]) or name == "Adadelta")


@pytest.mark.parametrize("scope", ["global", "group", "tensor"])
def test_adagrad_norm_accumulates_in_float64_past_float32_overflow(scope):
    """A float32 gradient whose squared norm (1e40 .. 9e76) overflows float32: ``b`` is the
    float64 norm, so the step is the right finite ``-lr g / b`` (computed here in float64)."""
    g = np.array([3e38, -3e38, 1e20, 0.0], dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(g * g))  # the float32 norm overflows
    p = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    opt = fo.AdagradNorm([p], lr=0.5, b0=2.0, scope=scope)
    opt.step(grads=[g])
    wide = g.astype(np.float64)
    b_sq = 4.0 + np.sum(wide * wide)
    assert opt.state[p]["b_sq"] == pytest.approx(b_sq, rel=1e-15)
    want = (np.array([1.0, 2.0, 3.0, 4.0]) - 0.5 / np.sqrt(b_sq) * wide).astype(np.float32)
    np.testing.assert_allclose(p, want, rtol=2e-7)
    assert np.isfinite(p).all() and p[0] < 1.0 and p[1] > 2.0


# --------------------------------------------------------------------------------------------
# regressions found by tests/test_properties.py


@pytest.mark.parametrize(
    "cls", [fo.Adagrad, fo.RMSprop, fo.Adadelta, fo.Adam, fo.AdamW, fo.NAdam, fo.RAdam, fo.Adamax]
)
@pytest.mark.parametrize("bad", ["missing", "3", None, -1.0, float("nan"), np.zeros(2)], ids=repr)
def test_corrupted_live_step_raises_naming_the_parameter(cls, bad):
    """A state ``step`` deleted, or set to something that is not a finite non-negative number,
    raised KeyError/bare TypeError, or was used (-1 and NaN made every parameter NaN)."""
    p = np.zeros(3)
    opt = cls([np.zeros(2), p], lr=0.1)
    opt.step(grads=[np.ones(2), np.ones(3)])
    if isinstance(bad, str) and bad == "missing":
        del opt.state[p]["step"]
    else:
        opt.state[p]["step"] = bad
    before = p.copy()
    with pytest.raises(ValueError, match=r"'step' of param_groups\[0\]\['params'\]\[1\]"):
        opt.step(grads=[np.ones(2), np.ones(3)])
    assert np.array_equal(p, before)


@pytest.mark.parametrize("bad", ["missing", "3", None, True, -1.0, float("nan"), np.zeros(2)], ids=repr)
def test_corrupted_live_mu_product_raises_naming_the_parameter(bad):
    """NAdam's state ``mu_product`` set to a string, a bool, a negative number or NaN was
    used (NaN made the parameter NaN); a 2-element array raised naming only the group."""
    p = np.zeros(3)
    opt = fo.NAdam([np.zeros(2), p], lr=0.1)
    opt.step(grads=[np.ones(2), np.ones(3)])
    if isinstance(bad, str) and bad == "missing":
        del opt.state[p]["mu_product"]
    else:
        opt.state[p]["mu_product"] = bad
    before = p.copy()
    with pytest.raises(ValueError, match=r"'mu_product' of param_groups\[0\]\['params'\]\[1\]"):
        opt.step(grads=[np.ones(2), np.ones(3)])
    assert np.array_equal(p, before)


@pytest.mark.parametrize("bad", ["abc", None, -1.0, 0.0, float("nan"), float("inf")], ids=repr)
def test_corrupted_live_b_sq_raises_naming_the_parameter(bad):
    """AdagradNorm's state ``b_sq`` set to something that is not a positive finite number
    raised a bare TypeError/ValueError, or was used (-1, 0 and NaN gave wrong or NaN steps)."""
    p = np.zeros(3)
    opt = fo.AdagradNorm([np.zeros(2), p], scope="tensor")
    opt.step(grads=[np.ones(2), np.ones(3)])
    opt.state[p]["b_sq"] = bad
    before = p.copy()
    with pytest.raises(ValueError, match=r"'b_sq' of param_groups\[0\]\['params'\]\[1\]"):
        opt.step(grads=[np.ones(2), np.ones(3)])
    assert np.array_equal(p, before)


def test_hyperparameter_of_the_wrong_type_edited_into_a_group_names_the_group():
    """RMSprop's ``momentum`` edited to a string raised a bare TypeError from a comparison."""
    p = np.zeros(3)
    opt = fo.RMSprop([{"params": [np.zeros(2)]}, {"params": [p]}], momentum=0.9)
    opt.step(grads=[np.ones(2), np.ones(3)])
    opt.param_groups[1]["momentum"] = "0.1"
    before = p.copy()
    with pytest.raises(TypeError, match=r"param_groups\[1\]"):
        opt.step(grads=[np.ones(2), np.ones(3)])
    assert np.array_equal(p, before)


@pytest.mark.parametrize("bad", [None, "abc", -1.0])
def test_adagrad_initial_accumulator_value_edited_into_a_group_is_checked(bad):
    """A parameter that reaches its first step without state (its state was not in a loaded
    state dict) gets ``sum = initial_accumulator_value`` then: None silently filled ``sum``
    with NaN, a negative value was used, a string raised NumPy's bare ValueError."""
    p = np.zeros(3)
    opt = fo.Adagrad([p])
    opt.load_state_dict({"state": {}, "param_groups": opt.state_dict()["param_groups"]})
    opt.param_groups[0]["initial_accumulator_value"] = bad
    with pytest.raises((TypeError, ValueError), match=r"param_groups\[0\]: .*initial_accumulator_value"):
        opt.step(grads=[np.ones(3)])
    assert not p.any() and not opt.state.get(p)


@pytest.mark.parametrize("bad", ["0.1", None, 0.0, -1.0])
def test_adagrad_norm_b0_edited_into_a_group_is_checked(bad):
    """AdagradNorm's ``b0`` edited to a string or None raised a bare TypeError from ``float()``;
    0 or a negative value was used silently (the class requires b0 > 0)."""
    p = np.zeros(3)
    opt = fo.AdagradNorm([{"params": [np.zeros(2)]}, {"params": [p]}], scope="group")
    opt.param_groups[1]["b0"] = bad
    with pytest.raises(ValueError, match=r"param_groups\[1\]: .*b0"):
        opt.step(grads=[np.ones(2), np.ones(3)])
    assert not p.any()


def test_load_state_dict_refuses_a_string_step():
    """'3' was parsed as the number 3 by ``load_state_dict``."""
    p = np.zeros(3)
    opt = fo.Adam([p])
    opt.step(grads=[np.ones(3)])
    sd = opt.state_dict()
    sd["state"][0]["step"] = "3"
    with pytest.raises(ValueError, match=r"'step' of param_groups\[0\]\['params'\]\[0\] must be a number"):
        opt.load_state_dict(sd)
    assert opt.state[p]["step"] == 1.0


# --------------------------------------------------------------------------------------------
# docstrings


def _public_members(obj: Any) -> list[tuple[str, Any]]:
    """The public methods and properties a class defines itself (inherited NumPy ones are
    NumPy's to document)."""
    return [
        (name, value)
        for name, value in vars(obj).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, (property, staticmethod)))
    ]


# --- live state between steps ----------------------------------------------------------
# A step whose parameters all have state hands the live state dicts to the kernel, which
# reads each array by name (optimizer.py, _run); an array the settings use and a state
# lacks sends the step down the general path, which creates it. These pin both paths.


def test_state_array_replaced_between_steps_is_the_one_updated():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(5) for _ in range(3)]
    a, b = np.ones(5), np.ones(5)
    ref = fo.Adam([a], lr=0.1)
    opt = fo.Adam([b], lr=0.1)
    for o in (ref, opt):
        o.step(grads=[grads[0]])
    replacement = opt.state[b]["exp_avg"].copy()
    opt.state[b]["exp_avg"] = replacement
    for g in grads[1:]:
        ref.step(grads=[g])
        opt.step(grads=[g])
    assert opt.state[b]["exp_avg"] is replacement
    np.testing.assert_array_equal(replacement, ref.state[a]["exp_avg"])
    np.testing.assert_array_equal(b, a)
    assert opt.state[b]["step"] == 3.0


def test_sgd_momentum_buffer_reset_to_none_restarts_as_torch():
    """torch's SGD takes ``momentum_buffer = None`` as "no buffer yet" and starts it from
    the gradient; ferroptim's general path does the same."""
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4) for _ in range(4)]
    p = np.linspace(-1, 1, 4)
    t = torch.tensor(p, requires_grad=True)
    opt = fo.SGD([p], lr=0.1, momentum=0.9, dampening=0.2)
    topt = torch.optim.SGD([t], lr=0.1, momentum=0.9, dampening=0.2)
    for k, g in enumerate(grads):
        if k == 2:
            opt.state[p]["momentum_buffer"] = None
            topt.state[t]["momentum_buffer"] = None
        opt.step(grads=[g])
        t.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_array_equal(p, t.detach().numpy())


def test_rmsprop_options_switched_on_mid_run_start_their_buffers_at_zero():
    rng = np.random.default_rng(2)
    g1, g2 = rng.standard_normal(3), rng.standard_normal(3)
    p = np.ones(3)
    opt = fo.RMSprop([p], lr=0.01, alpha=0.9)
    opt.step(grads=[g1])
    assert set(opt.state[p]) == {"step", "square_avg"}
    v = 0.1 * g1**2
    opt.param_groups[0].update(centered=True, momentum=0.5)
    before = p.copy()
    opt.step(grads=[g2])
    # the lecture's RMSProp with a centred second moment and momentum, from zero buffers
    v = 0.9 * v + 0.1 * g2**2
    g_avg = 0.1 * g2
    buf = (g2 / (np.sqrt(v - g_avg * g_avg) + 1e-8)) * 1.0
    np.testing.assert_allclose(opt.state[p]["grad_avg"], g_avg, rtol=1e-15)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], buf, rtol=1e-14)
    np.testing.assert_allclose(p, before - 0.01 * buf, rtol=1e-14)
    assert opt.state[p]["step"] == 2.0


@pytest.mark.parametrize("name", fo.__all__ + [f"distributed.{name}" for name in fo.distributed.__all__])
def test_every_public_name_and_method_has_a_docstring(name):
    obj = fo
    for part in name.split("."):
        obj = getattr(obj, part)
    assert (obj.__doc__ or "").strip(), f"ferroptim.{name} has no docstring"
    if inspect.isclass(obj):
        for klass in obj.__mro__:
            if klass.__module__.startswith("ferroptim"):
                for member, value in _public_members(klass):
                    doc = (value.fget if isinstance(value, property) else value).__doc__
                    assert (doc or "").strip(), f"{klass.__name__}.{member} has no docstring"
