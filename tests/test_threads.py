"""Threads: results are bit-identical for every thread count; thread settings; fork safety.

Each optimizer runs 10 steps on tensors of 300_000 (C order), 70_000 (F order), 100_000
(a strided view), 5 and 0 elements in two groups, once per thread count; parameters, every
state entry and AdagradNorm's ``b`` (global, group and tensor scope) must agree bit for bit.
Steps of >= 65536 elements run in parallel, so these exercise the parallel path.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

STEPS = 10


@pytest.fixture(autouse=True)
def restore_num_threads():
    saved = fo.get_num_threads()
    yield
    fo.set_num_threads(saved)


CONFIGS = [
    pytest.param(fo.SGD, {"lr": 0.01}, id="SGD"),
    pytest.param(
        fo.SGD,
        {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
        id="SGD-nesterov",
    ),
    pytest.param(fo.SGD, {"lr": 0.01, "momentum": 0.9, "dampening": 0.3}, id="SGD-damp"),
    pytest.param(fo.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 1e-3}, id="Adagrad"),
    pytest.param(fo.RMSprop, {"lr": 0.01}, id="RMSprop"),
    pytest.param(
        fo.RMSprop,
        {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 1e-3},
        id="RMSprop-centered-momentum",
    ),
    pytest.param(fo.RMSprop, {"lr": 0.01, "eps_in_sqrt": True}, id="RMSprop-eps_in_sqrt"),
    pytest.param(fo.Adadelta, {"weight_decay": 1e-3, "maximize": True}, id="Adadelta"),
    pytest.param(fo.Adam, {"lr": 1e-2}, id="Adam"),
    pytest.param(fo.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-2}, id="Adam-ams"),
    pytest.param(fo.AdamW, {"lr": 1e-2}, id="AdamW"),
    pytest.param(fo.NAdam, {"lr": 1e-2, "weight_decay": 1e-3, "momentum_decay": 0.1}, id="NAdam"),
    pytest.param(fo.RAdam, {"lr": 1e-2, "weight_decay": 1e-2, "decoupled_weight_decay": True}, id="RAdamW"),
    pytest.param(fo.Adamax, {"lr": 1e-2, "maximize": True}, id="Adamax"),
    pytest.param(fo.Lion, {"lr": 1e-3, "weight_decay": 0.1}, id="Lion"),
    pytest.param(fo.AdagradNorm, {"scope": "global"}, id="AdagradNorm-global"),
    pytest.param(fo.AdagradNorm, {"scope": "group", "weight_decay": 1e-3}, id="AdagradNorm-group"),
    pytest.param(fo.AdagradNorm, {"scope": "tensor", "maximize": True}, id="AdagradNorm-tensor"),
]

SIZES = (300_000, 70_000, 100_000, 5, 0)


def _fresh_params(dtype: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """The five tensors (C, F-order 2-D, strided view, tiny, empty) and the strided view's base."""
    rng = np.random.default_rng(123)
    big = rng.standard_normal(300_000).astype(dtype)
    fmat = np.asfortranarray(rng.standard_normal((350, 200)).astype(dtype))
    base = rng.standard_normal(200_000).astype(dtype)
    tiny = rng.standard_normal(5).astype(dtype)
    empty = np.zeros(0, dtype=dtype)
    return [big, fmat, base[::2], tiny, empty], base


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["f64", "f32"])
def grads(request) -> list[list[np.ndarray]]:
    """Ten steps of gradients for the five tensors (computed once per dtype)."""
    dtype = request.param
    rng = np.random.default_rng(7)
    shapes = [p.shape for p in _fresh_params(dtype)[0]]
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(STEPS)]


def _run(cls, kwargs, threads: int, grads) -> dict[str, Any]:
    fo.set_num_threads(threads)
    dtype = grads[0][0].dtype
    params, base = _fresh_params(dtype)
    opt = cls(
        [{"params": [params[0], params[3]]}, {"params": [params[1], params[2], params[4]]}],
        **kwargs,
    )
    order = [0, 3, 1, 2, 4]  # params in optimizer order
    bs = []
    for gs in grads:
        opt.step(grads=[gs[i] for i in order])
        if isinstance(opt, fo.AdagradNorm):
            bs.append([opt.b(params[i]) for i in order])
    return {
        "params": [p.copy() for p in params],
        "base": base.copy(),
        "sd": opt.state_dict(),
        "b": bs,
    }


def _assert_identical(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b), f"{where}: arrays differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize(("cls", "kwargs"), CONFIGS)
def test_bit_identical_for_any_thread_count(cls, kwargs, grads):
    serial = _run(cls, kwargs, 1, grads)
    dtype = grads[0][0].dtype
    start = _fresh_params(dtype)[0]
    for p, p0 in zip(serial["params"][:4], start[:4]):
        assert not np.array_equal(p, p0)  # every non-empty tensor actually moved
    for threads in (2, 3):
        _assert_identical(_run(cls, kwargs, threads, grads), serial, f"threads={threads}")


def test_adagrad_norm_scopes_differ_and_agree_across_threads(grads):
    """Sanity of the setup above: the three scopes really give different ``b``s, and the
    global ``b`` covers every tensor (the same value for all)."""
    runs = {s: _run(fo.AdagradNorm, {"scope": s}, 2, grads) for s in ("global", "group", "tensor")}
    last = {s: r["b"][-1] for s, r in runs.items()}
    assert len(set(last["global"])) == 1
    assert last["group"][0] == last["group"][1] and last["group"][2] == last["group"][4]
    assert last["group"][0] != last["group"][2]
    assert len(set(last["tensor"][:4])) == 4
    assert last["global"][0] > max(last["group"])


# --------------------------------------------------------------------------------------------
# settings


def test_get_set_num_threads_roundtrip():
    for n in (1, 2, 3, 7, 1):
        fo.set_num_threads(n)
        assert fo.get_num_threads() == n
        assert isinstance(fo.get_num_threads(), int)


@pytest.mark.parametrize("bad", [0, -1, -8])
def test_set_num_threads_rejects_non_positive(bad):
    fo.set_num_threads(2)
    with pytest.raises(ValueError):
        fo.set_num_threads(bad)
    assert fo.get_num_threads() == 2  # unchanged


def _python(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "FERROPTIM_NUM_THREADS"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_environment_variable_sets_the_thread_count():
    code = "import ferroptim as fo; print(fo.get_num_threads())"
    assert _python(code, FERROPTIM_NUM_THREADS="3") == "3"
    assert _python(code, FERROPTIM_NUM_THREADS="1") == "1"


def test_set_num_threads_overrides_the_environment_variable():
    code = (
        "import numpy as np, ferroptim as fo\n"
        "fo.set_num_threads(2)\n"
        "a = np.zeros(200_000); fo.SGD([a], lr=1.0).step(grads=[np.ones(200_000)])\n"
        "print(fo.get_num_threads(), a.min(), a.max())"
    )
    assert _python(code, FERROPTIM_NUM_THREADS="3").split() == ["2", "-1.0", "-1.0"]


def test_default_without_environment_variable_is_positive():
    assert int(_python("import ferroptim as fo; print(fo.get_num_threads())")) >= 1


# --------------------------------------------------------------------------------------------
# fork


def test_fork_after_a_parallel_step():
    """A child forked after the parent stepped on 2 threads (the pool is alive) steps correctly
    and exits, and the parent keeps working."""
    fo.set_num_threads(2)
    n = 1_000_000
    rng = np.random.default_rng(11)
    p = fo.Parameter(rng.standard_normal(n))
    opt = fo.Adam([p], lr=1e-2)
    p.grad = rng.standard_normal(n)
    opt.step()  # parallel: builds the pool in the parent
    g2 = rng.standard_normal(n)

    ctx = mp.get_context("fork")
    shared = ctx.RawArray("d", n)

    def child() -> None:
        assert fo.get_num_threads() == 2
        p.grad = g2
        opt.step()
        opt.step(grads=[g2])  # twice, so the child's fresh pool is reused too
        np.frombuffer(shared, dtype=np.float64)[:] = p

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(timeout=60)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail("the forked child hung")
    assert proc.exitcode == 0

    p.grad = g2
    opt.step()
    opt.step(grads=[g2])
    result = np.frombuffer(shared, dtype=np.float64)
    assert np.array_equal(result, p)
    assert opt.state[p]["step"] == 3.0


def test_steps_of_one_optimizer_from_two_threads_are_serialized():
    """Two Python threads stepping the same optimizer: the steps run one after the
    other (a lock per optimizer), so the result is two ordinary steps."""
    import threading

    rng = np.random.default_rng(5)
    start = rng.standard_normal(400_000)
    g = rng.standard_normal(400_000)
    shared = fo.Parameter(start.copy(), g)
    opt = fo.Adam([shared], lr=1e-2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                opt.step()
        except BaseException as err:  # noqa: BLE001 - any failure must surface in the test
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    reference = fo.Parameter(start.copy(), g)
    ref_opt = fo.Adam([reference], lr=1e-2)
    for _ in range(10):
        ref_opt.step()
    assert opt.state[shared]["step"] == 10.0
    assert np.array_equal(shared, reference)
    assert np.array_equal(opt.state[shared]["exp_avg_sq"], ref_opt.state[reference]["exp_avg_sq"])


def test_invalid_thread_variable_warns():
    code = "import warnings; warnings.simplefilter('error'); import ferroptim"
    env = dict(os.environ, FERROPTIM_NUM_THREADS="lots")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "FERROPTIM_NUM_THREADS" in result.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_only_large_steps_start_worker_threads():
    """Steps under the serial threshold stay on the calling thread; a large one wakes
    the pool (its threads are named ferroptim-N)."""
    code = (
        "import glob, numpy as np, ferroptim as fo\n"
        "def workers():\n"
        "    names = [open(f).read() for f in glob.glob('/proc/self/task/*/comm')]\n"
        "    return sum(n.startswith('ferroptim-') for n in names)\n"
        "fo.set_num_threads(2)\n"
        "fo.SGD([np.zeros(1000)], lr=0.1).step(grads=[np.ones(1000)])\n"
        "assert workers() == 0, 'a small step started the pool'\n"
        "fo.SGD([np.zeros(1 << 17)], lr=0.1).step(grads=[np.ones(1 << 17)])\n"
        "import time\n"
        "deadline = time.monotonic() + 5\n"  # a new worker names itself once it runs
        "while workers() < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "assert workers() == 2, 'a large step ran serially'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
