"""Optimizer state stored as bfloat16 (``state_dtype="bfloat16"``), written back with
stochastic rounding.

The reference is independent of the Rust code: NumPy transcriptions of SplitMix64 and
xoshiro128++ (checked against the published outputs of their reference C code) draw the
rounding bits from the documented stream keyed by ``(seed, step, parameter position,
state slot)``; each step decodes the state to float32, applies torch's update in NumPy
float32 arithmetic (torch's order of operations) and rounds the new state with those
bits. Parameters and state must match bit for bit, on every step.

Also: bit-identical results for any thread count, tensor size and SIMD level; the
float32 ``state_dict`` and an exact resume; round-to-nearest-even on load (against
torch's ``.to(torch.bfloat16)``); the quality cost on the experiments' two-layer
network; and the errors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import ferroptim as fo
from ferroptim.experiments.data import digits
from ferroptim.experiments.models import TwoLayerNet

F32 = np.float32


# --- the rounding stream in NumPy --------------------------------------------------------------
U64 = np.uint64
PHI = U64(0x9E3779B97F4A7C15)


def splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output for the states ``x`` (before its increment), elementwise."""
    with np.errstate(over="ignore"):
        z = x.astype(U64) + PHI
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def _rotl32(x: np.ndarray, n: int) -> np.ndarray:
    return (x << np.uint32(n)) | (x >> np.uint32(32 - n))


def xoshiro128pp(state: np.ndarray, draws: int) -> np.ndarray:
    """``draws`` outputs of the xoshiro128++ generators whose states are the rows of the
    ``(4, lanes)`` uint32 array ``state`` (advanced in place): shape ``(draws, lanes)``."""
    s0, s1, s2, s3 = state
    out = np.empty((draws, state.shape[1]), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for k in range(draws):
            out[k] = _rotl32(s0 + s3, 7) + s0
            t = s1 << np.uint32(9)
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3[:] = _rotl32(s3, 11)
    return out


def seed_from_u64(seeds: np.ndarray) -> np.ndarray:
    """The xoshiro128++ states rand's ``Xoshiro128PlusPlus::seed_from_u64`` makes of each
    seed: the low and high halves of two SplitMix64 outputs. Shape ``(4, len(seeds))``."""
    with np.errstate(over="ignore"):
        a, b = splitmix(seeds), splitmix(seeds + PHI)
    mask = U64(0xFFFFFFFF)
    return np.stack([a & mask, a >> U64(32), b & mask, b >> U64(32)]).astype(np.uint32)


def test_numpy_generators_match_the_reference_outputs():
    # SplitMix64 seeded with 0 (Vigna's splitmix64.c): its first output
    assert int(splitmix(np.array([0], dtype=U64))[0]) == 0xE220A8397B1DCDAF
    # xoshiro128++ from the state (1, 2, 3, 4): the reference xoshiro128plusplus.c's outputs
    state = np.array([[1], [2], [3], [4]], dtype=np.uint32)
    assert xoshiro128pp(state, 5)[:, 0].tolist() == [641, 1573767, 3222811527, 3517856514, 836907274]
    # rand's Xoshiro128PlusPlus::seed_from_u64(0), as rand's own tests pin it
    first = xoshiro128pp(seed_from_u64(np.array([0], dtype=U64)), 4)[:, 0].tolist()
    assert first == [1179900579, 1938959192, 3089844957, 3657088315]


def rounding_key(seed: int, step: int, param: int, slot: int) -> int:
    """``K = sm(sm(sm(sm(seed) ^ step) ^ param) ^ slot)``."""
    k = splitmix(np.array([seed], dtype=U64))
    for word in (step, param, slot):
        k = splitmix(k ^ U64(word))
    return int(k[0])


def rounding_bits(seed: int, step: int, param: int, slot: int, n: int) -> np.ndarray:
    """The documented stream: in blocks of 2048 elements, block ``b`` has the sixteen
    generators ``Xoshiro128PlusPlus::seed_from_u64(K + 16 b + j)``; element
    ``2048 b + 32 k + 16 h + j`` takes bits ``16 h .. 16 h + 16`` of draw ``k`` of lane ``j``."""
    blocks = (n + 2047) // 2048
    key = U64(rounding_key(seed, step, param, slot))
    with np.errstate(over="ignore"):
        seeds = key + np.arange(16 * blocks, dtype=U64)
    words = xoshiro128pp(seed_from_u64(seeds), 64)  # (draw k, lane 16 b + j)
    words = words.reshape(64, blocks, 16).transpose(1, 0, 2)  # (b, k, j)
    halves = np.stack([words & np.uint32(0xFFFF), words >> np.uint32(16)], axis=2)  # (b, k, h, j)
    return halves.astype(np.uint16).reshape(-1)[:n]


# --- bfloat16 reference ------------------------------------------------------------------------
def decode(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(F32)


def stochastic_round(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    u = x.view(np.uint32)
    rounded = ((u + r.astype(np.uint32)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), ((u >> 16) | 0x40).astype(np.uint16), rounded)


def lerp(start, end, w):
    """torch's lerp, in float32."""
    w = F32(w)
    return start + w * (end - start) if w < 0.5 else end - (end - start) * (F32(1) - w)


def effective_grad(g, p, h):
    g = -g if h.get("maximize") else g
    return g + F32(h["weight_decay"]) * p if h.get("weight_decay", 0) != 0 else g


def adam_ref(p, g, state, h, t):
    b1, b2 = h["betas"]
    lr, wd = h["lr"], h.get("weight_decay", 0.0)
    decoupled = h.get("decoupled_weight_decay", False) and wd != 0
    if decoupled:
        p = p * F32(1.0 - lr * wd)
    g = effective_grad(g, p, {**h, "weight_decay": 0.0 if decoupled else wd})
    m = lerp(state["exp_avg"], g, 1.0 - b1)
    v = state["exp_avg_sq"] * F32(b2) + F32(1.0 - b2) * g * g
    new = {"exp_avg": m, "exp_avg_sq": v}
    second = v
    if h.get("amsgrad"):
        second = new["max_exp_avg_sq"] = np.maximum(state["max_exp_avg_sq"], v)
    denom = np.sqrt(second) / F32((1.0 - b2**t) ** 0.5) + F32(h["eps"])
    return p + F32(-(lr / (1.0 - b1**t))) * m / denom, new


def sgd_ref(p, g, state, h, t):
    mom = F32(h["momentum"])
    g = effective_grad(g, p, h)
    b = g if t == 1 else state["momentum_buffer"] * mom + F32(1.0 - h.get("dampening", 0.0)) * g
    d = g + mom * b if h.get("nesterov") else b
    return p + F32(-h["lr"]) * d, {"momentum_buffer": b}


def adagrad_ref(p, g, state, h, t):
    g = effective_grad(g, p, h)
    total = state["sum"] + g * g
    clr = h["lr"] / (1.0 + (t - 1) * h.get("lr_decay", 0.0))
    return p + F32(-clr) * g / (np.sqrt(total) + F32(h.get("eps", 1e-10))), {"sum": total}


def rmsprop_ref(p, g, state, h, t):
    alpha, eps = h["alpha"], F32(h["eps"])
    g = effective_grad(g, p, h)
    new = {"square_avg": state["square_avg"] * F32(alpha) + F32(1.0 - alpha) * g * g}
    variance = new["square_avg"]
    if h.get("centered"):
        new["grad_avg"] = lerp(state["grad_avg"], g, 1.0 - alpha)
        variance = variance + -new["grad_avg"] * new["grad_avg"]
    denom = np.sqrt(variance) + eps
    if h.get("momentum", 0) > 0:
        new["momentum_buffer"] = state["momentum_buffer"] * F32(h["momentum"]) + g / denom
        return p + F32(-h["lr"]) * new["momentum_buffer"], new
    return p + F32(-h["lr"]) * g / denom, new


Reference = Callable[..., tuple[np.ndarray, dict[str, np.ndarray]]]
CASES: list[tuple[str, Reference, dict[str, Any]]] = [
    ("Adam", adam_ref, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8)),
    (
        "Adam",
        adam_ref,
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, amsgrad=True, weight_decay=0.1, maximize=True),
    ),
    ("AdamW", adam_ref, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    ("SGD", sgd_ref, dict(lr=0.05, momentum=0.9)),
    ("SGD", sgd_ref, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", sgd_ref, dict(lr=0.05, momentum=0.5, dampening=0.3, maximize=True)),
    ("Adagrad", adagrad_ref, dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3)),
    ("RMSprop", rmsprop_ref, dict(lr=0.01, alpha=0.9, eps=1e-8)),
    (
        "RMSprop",
        rmsprop_ref,
        dict(lr=0.01, alpha=0.99, eps=1e-6, centered=True, momentum=0.9, weight_decay=0.1),
    ),
    # one optional buffer: the fused pass must tell grad_avg from momentum_buffer
    ("RMSprop", rmsprop_ref, dict(lr=0.01, alpha=0.9, eps=1e-8, centered=True)),
    ("RMSprop", rmsprop_ref, dict(lr=0.01, alpha=0.9, eps=1e-8, momentum=0.8)),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]
SLOTS = {
    "Adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    "AdamW": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    "SGD": ("momentum_buffer",),
    "Adagrad": ("sum",),
    "RMSprop": ("square_avg", "grad_avg", "momentum_buffer"),
}
# Odd sizes; the largest is cut into several pieces and takes the parallel path.
SIZES = [(3, 5), (1,), (70_001,)]


def _to_bf16_nearest(values: np.ndarray) -> np.ndarray:
    """bfloat16 bits of float32 values, rounded to nearest even by torch."""
    bf16 = torch.from_numpy(np.ascontiguousarray(values)).to(torch.bfloat16)
    return bf16.view(torch.int16).numpy().view(np.uint16)


def _initial_state(name: str, h: dict[str, Any], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    zeros = np.zeros(shape, dtype=F32)
    if name == "Adagrad":
        return {"sum": np.full(shape, h["initial_accumulator_value"], dtype=F32)}
    return {k: zeros for k in SLOTS[name]}


@pytest.mark.parametrize(("name", "reference", "h"), CASES, ids=IDS)
def test_bf16_state_matches_the_float32_update_rounded_stochastically(name, reference, h):
    rng = np.random.default_rng(11)
    seed = 12345
    params = [fo.Parameter(rng.standard_normal(s).astype(F32)) for s in SIZES]
    ctor = {k: v for k, v in h.items()}
    # two groups: positions 0 and 1 in the first, 2 in the second
    opt = getattr(fo, name)(
        [{"params": params[:2]}, {"params": params[2:]}], **ctor, state_dtype="bfloat16", seed=seed
    )
    ref_h = {**h, "decoupled_weight_decay": True} if name == "AdamW" else h
    ref_p = [np.array(p) for p in params]
    # The reference state, as bfloat16 bits: Adagrad's initial sum rounded to nearest (torch).
    ref_bits = [{k: _to_bf16_nearest(v) for k, v in _initial_state(name, h, p.shape).items()} for p in params]
    for t in range(1, 5):
        grads = [(rng.standard_normal(p.shape) * rng.choice([1e-3, 1.0, 30.0])).astype(F32) for p in params]
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        for position, (p, g) in enumerate(zip(params, grads)):
            state = {k: decode(v) for k, v in ref_bits[position].items()}
            ref_p[position], new = reference(ref_p[position], g, state, ref_h, t)
            for k, value in new.items():
                slot = SLOTS[name].index(k)
                r = rounding_bits(seed, t, position, slot, value.size).reshape(value.shape)
                ref_bits[position][k] = stochastic_round(np.ascontiguousarray(value, dtype=F32), r)
            np.testing.assert_array_equal(np.asarray(p).view(np.uint32), ref_p[position].view(np.uint32))
            got = opt.state[p]
            for k, bits in ref_bits[position].items():
                if k in new:
                    assert got[k].dtype == np.uint16
                    np.testing.assert_array_equal(
                        got[k], bits, err_msg=f"{name} {k} step {t} param {position}"
                    )


def test_rounding_is_unbiased_and_to_a_neighbour():
    """One SGD-momentum step stores the gradient: over many seeds its mean is the
    float32 gradient, and every draw is one of the two bfloat16 values around it."""
    g = np.linspace(-3, 3, 1001, dtype=F32)
    g = g + F32(1e-3)  # few of these are bfloat16 values
    draws = []
    for seed in range(200):
        p = fo.Parameter(np.zeros_like(g))
        p.grad = g
        opt = fo.SGD([p], lr=0.1, momentum=0.9, state_dtype="bfloat16", seed=seed)
        opt.step()
        draws.append(decode(opt.state[p]["momentum_buffer"]))
    draws_arr = np.stack(draws)
    down = decode((g.view(np.uint32) >> 16).astype(np.uint16))
    up = decode(((g.view(np.uint32) >> 16) + 1).astype(np.uint16))
    assert np.all((draws_arr == down) | (draws_arr == up))
    spacing = np.abs(up - down).astype(np.float64)
    # The mean of 200 draws of a two-point variable is within 5 standard deviations.
    error = np.abs(draws_arr.astype(np.float64).mean(axis=0) - g.astype(np.float64))
    assert np.all(error <= 5 * spacing * 0.5 / np.sqrt(200) + 1e-12)
    # A value that is already bfloat16 is kept exactly by every draw.
    exact = decode(np.array([0x3F80, 0xC120], dtype=np.uint16))
    p = fo.Parameter(np.zeros(2, dtype=F32))
    p.grad = exact
    opt = fo.SGD([p], lr=0.1, momentum=0.9, state_dtype="bfloat16", seed=5)
    opt.step()
    np.testing.assert_array_equal(decode(opt.state[p]["momentum_buffer"]), exact)


# --- determinism ---------------------------------------------------------------------------------
def _train(name: str, kwargs: dict[str, Any], sizes: list[int], steps: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    params = [fo.Parameter(rng.standard_normal(n).astype(F32)) for n in sizes]
    opt = getattr(fo, name)(params, **kwargs, state_dtype="bfloat16", seed=9)
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(F32)
        opt.step()
    out = [np.array(p) for p in params]
    for p in params:
        out += [np.array(v) for v in opt.state[p].values() if isinstance(v, np.ndarray)]
    return out


DETERMINISM = [
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adagrad", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
]


@pytest.fixture
def restore_threads_and_level():
    threads, level = fo.get_num_threads(), fo.get_simd_level()
    yield
    fo.set_num_threads(threads)
    fo.set_simd_level(level)


@pytest.mark.parametrize(("name", "kwargs"), DETERMINISM, ids=[n for n, _ in DETERMINISM])
def test_any_thread_count_and_simd_level_give_the_same_bits(name, kwargs, restore_threads_and_level):
    sizes = [1, 13, 1027, 150_001]
    fo.set_num_threads(1)
    fo.set_simd_level("baseline")
    reference = _train(name, kwargs, sizes)
    for threads, level in [(2, "baseline"), (3, "avx2"), (1, "avx512"), (2, "avx512")]:
        fo.set_num_threads(threads)
        fo.set_simd_level(level)
        for a, b in zip(reference, _train(name, kwargs, sizes)):
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=f"{threads} {level}")


def test_bits_depend_on_the_element_not_on_the_tensor_size():
    """Element i's rounding depends on (seed, step, position, slot, i): the first 1000
    elements of a long parameter round as a 1000-element parameter does."""
    rng = np.random.default_rng(2)
    long = rng.standard_normal(100_003).astype(F32)
    g = rng.standard_normal(100_003).astype(F32)
    p, q = fo.Parameter(long.copy()), fo.Parameter(long[:1000].copy())
    a = fo.Adam([p], lr=1e-2, state_dtype="bfloat16")
    b = fo.Adam([q], lr=1e-2, state_dtype="bfloat16")
    p.grad, q.grad = g, g[:1000].copy()
    a.step(), b.step()
    for k in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(a.state[p][k][:1000], b.state[q][k])
    # ... and another seed draws other bits
    r = fo.Parameter(long[:1000].copy())
    c = fo.Adam([r], lr=1e-2, state_dtype="bfloat16", seed=1)
    r.grad = g[:1000].copy()
    c.step()
    assert not np.array_equal(c.state[r]["exp_avg"], b.state[q]["exp_avg"])


def test_layouts_follow_the_parameter():
    """Fortran-ordered and strided parameters: the state follows the parameter's memory
    order, and the element index is the index in that order."""
    rng = np.random.default_rng(8)
    base = rng.standard_normal((40, 30)).astype(F32)
    g = rng.standard_normal((40, 30)).astype(F32)
    f = fo.Parameter(np.asfortranarray(base))
    c = fo.Parameter(np.ascontiguousarray(base.T))  # the same memory order as f
    opt_f = fo.RMSprop([f], lr=0.01, state_dtype="bfloat16")
    opt_c = fo.RMSprop([c], lr=0.01, state_dtype="bfloat16")
    f.grad, c.grad = np.asfortranarray(g), np.ascontiguousarray(g.T)
    opt_f.step(), opt_c.step()
    assert opt_f.state[f]["square_avg"].flags.f_contiguous
    np.testing.assert_array_equal(opt_f.state[f]["square_avg"].T, opt_c.state[c]["square_avg"])
    np.testing.assert_array_equal(np.asarray(f).T, np.asarray(c))


# --- state_dict ------------------------------------------------------------------------------------
def _model(seed: int = 0) -> list[fo.Parameter]:
    rng = np.random.default_rng(seed)
    return [fo.Parameter(rng.standard_normal(s).astype(F32)) for s in [(7, 3), (100_000,)]]


def _steps(opt: fo.Optimizer, params: list[fo.Parameter], rng: np.random.Generator, n: int) -> None:
    for _ in range(n):
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(F32)
        opt.step()


@pytest.mark.parametrize(("name", "kwargs"), DETERMINISM, ids=[n for n, _ in DETERMINISM])
def test_state_dict_is_float32_and_resume_is_bit_identical(name, kwargs):
    params = _model()
    opt = getattr(fo, name)(params, **kwargs, state_dtype="bfloat16", seed=4)
    rng = np.random.default_rng(1)
    _steps(opt, params, rng, 3)
    sd = opt.state_dict()
    assert sd["param_groups"][0]["state_dtype"] == "bfloat16" and sd["param_groups"][0]["seed"] == 4
    for i, p in enumerate(params):
        for k, v in opt.state[p].items():
            if isinstance(v, np.ndarray):
                assert sd["state"][i][k].dtype == np.float32
                np.testing.assert_array_equal(sd["state"][i][k], decode(v))
    saved = copy.deepcopy(sd)
    snapshot = [np.array(p) for p in params]
    rng_state = copy.deepcopy(rng.bit_generator.state)
    _steps(opt, params, rng, 3)

    resumed = [fo.Parameter(s.copy()) for s in snapshot]
    opt2 = getattr(fo, name)(resumed, **kwargs)  # float32 state until the load
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["state_dtype"] == "bfloat16"
    rng.bit_generator.state = rng_state
    _steps(opt2, resumed, rng, 3)
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))
        for k, v in opt.state[p].items():
            np.testing.assert_array_equal(v, opt2.state[q][k])


def test_loading_rounds_to_nearest_even_like_torch():
    p = fo.Parameter(np.zeros(6, dtype=F32))
    opt = fo.Adam([p], state_dtype="bfloat16")
    values = np.array([1.0 + 2**-8, 1.0 + 3 * 2**-8, -0.1, 3.0e38, np.inf, np.nan], dtype=F32)
    sd = {"state": {0: {"step": 2.0, "exp_avg": values, "exp_avg_sq": values[::-1].copy()}}}
    sd["param_groups"] = opt.state_dict()["param_groups"]
    opt.load_state_dict(sd)
    want = _to_bf16_nearest(values)
    bits = opt.state[p]["exp_avg"]
    np.testing.assert_array_equal(bits[:5], want[:5])
    assert np.isnan(decode(bits)[5])
    # f32 state dicts load into bfloat16 groups, and bfloat16 ones into float32 groups
    sd["param_groups"][0]["state_dtype"] = None
    opt.load_state_dict(sd)
    assert opt.state[p]["exp_avg"].dtype == np.float32


# --- quality ---------------------------------------------------------------------------------------
def _accuracy(state_dtype: str | None) -> float:
    data = digits(seed=0).astype(F32)
    model = TwoLayerNet(data.features, data.classes, hidden=64, seed=0, dtype=F32)
    opt = fo.Adam(model.params.values(), lr=3e-3, state_dtype=state_dtype, seed=0)
    sampler = fo.MinibatchSampler(len(data.y_train), 64, seed=0)
    for _ in range(40):
        for batch in sampler:
            model.loss_and_grads(data.x_train[batch], data.y_train[batch])
            opt.step()
    return model.evaluate(data.x_test, data.y_test)[1]


def test_bf16_state_trains_the_two_layer_net_as_well_as_float32():
    full, low = _accuracy(None), _accuracy("bfloat16")
    assert full > 0.95
    assert abs(full - low) <= 0.01, (full, low)


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [fo.Adam, fo.AdamW, fo.SGD, fo.Adagrad, fo.RMSprop])
@pytest.mark.parametrize("bad", ["int8", "float16", "bf16", 3, object()])
def test_bad_state_dtype_is_named(cls, bad):
    with pytest.raises(ValueError, match="state_dtype"):
        cls([np.zeros(3, dtype=F32)], state_dtype=bad)


@pytest.mark.parametrize("cls", [fo.Adam, fo.SGD, fo.Adagrad, fo.RMSprop])
def test_bf16_state_needs_float32_parameters(cls):
    with pytest.raises(ValueError, match="bfloat16 state is for float32 parameters"):
        cls([np.zeros(3, dtype=F32), np.zeros(3)], state_dtype="bfloat16")
    with pytest.raises(ValueError, match="float32 parameters"):
        cls([np.zeros(3)], state_dtype=np.float32)
    opt = cls([np.zeros(3, dtype=F32)], state_dtype="bfloat16")
    with pytest.raises(ValueError, match="float32 parameters"):
        opt.add_param_group({"params": [np.zeros(2)]})
    assert len(opt.param_groups) == 1


def test_accepted_spellings_and_seed():
    for spelling in (np.float32, "float32", np.dtype("float32")):
        assert fo.Adam([np.zeros(2, dtype=F32)], state_dtype=spelling).defaults["state_dtype"] == spelling
        assert (
            fo.Adam([np.zeros(2, dtype=F32)], state_dtype=spelling).param_groups[0]["state_dtype"]
            == "float32"
        )
    assert fo.SGD([np.zeros(2)], state_dtype=np.float64).param_groups[0]["state_dtype"] == "float64"
    with pytest.raises(ValueError, match="seed"):
        fo.Adam([np.zeros(2, dtype=F32)], state_dtype="bfloat16", seed=-1)
    with pytest.raises(TypeError, match="seed"):
        fo.Adam([np.zeros(2, dtype=F32)], state_dtype="bfloat16", seed=1.5)
    with pytest.raises(TypeError):
        fo.NAdam([np.zeros(2, dtype=F32)], state_dtype="bfloat16")


def test_mismatched_state_is_refused_and_changes_nothing():
    p = fo.Parameter(np.ones(4, dtype=F32))
    opt = fo.Adam([p], lr=0.1)
    p.grad = np.ones(4, dtype=F32)
    opt.step()
    before = np.array(p), {k: np.copy(v) for k, v in opt.state[p].items()}
    opt.param_groups[0]["state_dtype"] = "bfloat16"  # the float32 state stays
    with pytest.raises(TypeError, match=r"uint16 \(bfloat16 bits"):
        opt.step()
    np.testing.assert_array_equal(np.asarray(p), before[0])
    assert opt.state[p]["step"] == before[1]["step"]
    # An optimizer without bfloat16 state refuses the setting at the Rust boundary too.
    q = fo.Parameter(np.ones(4, dtype=F32))
    nadam = fo.NAdam([q])
    nadam.param_groups[0]["state_dtype"] = "bfloat16"
    q.grad = np.ones(4, dtype=F32)
    with pytest.raises(ValueError, match="cannot keep its state as bfloat16"):
        nadam.step()
    np.testing.assert_array_equal(np.asarray(q), np.ones(4, dtype=F32))
