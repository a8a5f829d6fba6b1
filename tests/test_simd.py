"""Every SIMD level computes the same bits.

The kernels are compiled for the baseline, AVX2+FMA and AVX-512 and one is picked at
run time (``fo.get_simd_level``). Rust never contracts ``a*b + c`` into an FMA and
vector ``sqrt``/``div`` round like scalar ones, so the levels must agree bit for bit;
a difference would break the torch parity the other tests check at one level only.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_torch_parity import FULL

import ferroptim as fo

CASES = [(name, kwargs) for name, kwargs in FULL.items()] + [
    ("Lion", dict(lr=0.01, weight_decay=0.1)),
    ("AdagradNorm", dict(lr=0.5, b0=0.1, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, eps_in_sqrt=True, maximize=True)),
    ("Adam", dict(lr=0.01, maximize=True, betas=(0.3, 0.6))),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    # loss-scale unscaling and clipping inside the step (tests/test_grad_scaling.py)
    ("Adam", dict(lr=0.01, grad_scale=1000.0, max_grad_norm=1.0, skip_nonfinite=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, grad_scale=3.0, max_grad_norm=0.5)),
    ("Lion", dict(lr=0.01, grad_scale=0.75, max_grad_norm=0.5)),
    ("AdagradNorm", dict(lr=0.5, grad_scale=7.0, max_grad_norm=0.5)),
]
LEVELS = ["baseline", "avx2", "avx512"]


@pytest.fixture
def restore_level():
    before = fo.get_simd_level()
    yield
    fo.set_simd_level(before)


def _run(name: str, kwargs: dict, dtype: type, level: str) -> list[np.ndarray]:
    fo.set_simd_level(level)
    rng = np.random.default_rng(3)
    # Odd sizes leave scalar tails after the vector loops; one is large enough to go parallel.
    params = [fo.Parameter(rng.standard_normal(n).astype(dtype)) for n in (1, 13, 1027, 70_001)]
    opt = getattr(fo, name)(params, **kwargs)
    for _ in range(4):
        for p in params:
            p.grad = (rng.standard_normal(p.shape) * rng.choice([1e-6, 1.0, 1e3])).astype(dtype)
        opt.step()
    out = [np.array(p) for p in params]
    for p in params:
        out += [np.array(v) for v in opt.state[p].values() if isinstance(v, np.ndarray)]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_every_level_gives_the_same_bits(name, kwargs, dtype, restore_level):
    reference = _run(name, kwargs, dtype, "baseline")
    for level in LEVELS[1:]:
        got = _run(name, kwargs, dtype, level)
        for a, b in zip(reference, got):
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=f"{name} at {level}")


def test_levels_are_capped_by_the_cpu(restore_level):
    detected = fo.set_simd_level("avx512")
    assert detected in LEVELS
    assert fo.set_simd_level("baseline") == "baseline" == fo.get_simd_level()
    with pytest.raises(ValueError, match="unknown SIMD level"):
        fo.set_simd_level("sse9")


def test_environment_caps_the_level():
    code = "import ferroptim as fo; print(fo.get_simd_level())"
    env = {"FERROPTIM_SIMD": "baseline", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "baseline"
