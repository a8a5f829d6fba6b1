"""State dicts of every ferroptim optimizer.

Checks, for each optimizer configuration and both float dtypes:

* ``state_dict()`` has torch's layout and returns copies;
* a ``state_dict()`` / ``load_state_dict()`` round trip continues a run bit-identically
  (params and state), also when some parameters had no state at the save point;
* interchange with ``torch.optim`` (single-tensor path, ``foreach=False``) mid-run, in both
  directions: torch -> ferroptim and ferroptim -> torch continue as the uninterrupted
  other library would, within float64 1e-12 / float32 1e-6 relative tolerances;
* malformed state dicts raise ``ValueError``/``TypeError`` and change nothing;
* torch-only group flags are dropped on load, and a 0-d array ``lr`` loads as a float.

The torch <-> NumPy state-dict converters are the shared ones in ``tests/_torchref.py``,
written independently of the library.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from _torchref import numpy_sd_to_torch, torch_sd_to_numpy

import ferroptim as fo

# --------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------

#: (id, ferroptim class, torch class or None, constructor kwargs, group-1 overrides)
CASES = [
    ("sgd", fo.SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=0.01), dict(lr=0.05)),
    (
        "sgd_momentum",
        fo.SGD,
        torch.optim.SGD,
        dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
        dict(lr=0.05, momentum=0.5),
    ),
    (
        "sgd_nesterov",
        fo.SGD,
        torch.optim.SGD,
        dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True),
        dict(lr=0.05),
    ),
    (
        "adagrad",
        fo.Adagrad,
        torch.optim.Adagrad,
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
        dict(lr=0.05),
    ),
    ("rmsprop", fo.RMSprop, torch.optim.RMSprop, dict(lr=0.01), dict(lr=0.02, alpha=0.9)),
    (
        "rmsprop_centered_momentum",
        fo.RMSprop,
        torch.optim.RMSprop,
        dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.01),
        dict(lr=0.02),
    ),
    (
        "adadelta",
        fo.Adadelta,
        torch.optim.Adadelta,
        dict(lr=1.0, rho=0.9, weight_decay=0.01),
        dict(rho=0.8),
    ),
    ("adam", fo.Adam, torch.optim.Adam, dict(lr=0.01), dict(lr=0.02, betas=(0.8, 0.99))),
    (
        "adam_amsgrad",
        fo.Adam,
        torch.optim.Adam,
        dict(lr=0.01, amsgrad=True, weight_decay=0.01),
        dict(lr=0.02),
    ),
    ("adamw", fo.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1), dict(lr=0.02)),
    ("nadam", fo.NAdam, torch.optim.NAdam, dict(lr=0.01), dict(lr=0.02, betas=(0.8, 0.99))),
    (
        "nadamw",
        fo.NAdam,
        torch.optim.NAdam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, momentum_decay=0.1),
        dict(lr=0.02, momentum_decay=4e-3, maximize=True),
    ),
    ("radam", fo.RAdam, torch.optim.RAdam, dict(lr=0.01, weight_decay=0.01), dict(lr=0.02)),
    (
        "radamw",
        fo.RAdam,
        torch.optim.RAdam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.02, betas=(0.5, 0.6)),
    ),
    ("adamax", fo.Adamax, torch.optim.Adamax, dict(lr=0.01, weight_decay=0.01), dict(betas=(0.8, 0.9))),
    ("lion", fo.Lion, None, dict(lr=0.01, weight_decay=0.1), dict(lr=0.02, maximize=True)),
    (
        "adagradnorm_global",
        fo.AdagradNorm,
        None,
        dict(lr=1.0, b0=0.5, scope="global"),
        dict(lr=0.5),
    ),
    (
        "adagradnorm_group",
        fo.AdagradNorm,
        None,
        dict(lr=1.0, b0=0.5, scope="group", weight_decay=0.01),
        dict(lr=0.5, b0=2.0),
    ),
    (
        "adagradnorm_tensor",
        fo.AdagradNorm,
        None,
        dict(lr=1.0, b0=0.5, scope="tensor", maximize=True),
        dict(lr=0.5),
    ),
]
CASE_BY_ID = {c[0]: c for c in CASES}
ALL_IDS = [c[0] for c in CASES]
TORCH_IDS = [c[0] for c in CASES if c[2] is not None]

#: State keys each configuration keeps (torch's names; AdagradNorm's documented one).
STATE_KEYS = {
    "sgd": set(),
    "sgd_momentum": {"momentum_buffer"},
    "sgd_nesterov": {"momentum_buffer"},
    "adagrad": {"step", "sum"},
    "rmsprop": {"step", "square_avg"},
    "rmsprop_centered_momentum": {"step", "square_avg", "momentum_buffer", "grad_avg"},
    "adadelta": {"step", "square_avg", "acc_delta"},
    "adam": {"step", "exp_avg", "exp_avg_sq"},
    "adam_amsgrad": {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    "adamw": {"step", "exp_avg", "exp_avg_sq"},
    "nadam": {"step", "mu_product", "exp_avg", "exp_avg_sq"},
    "nadamw": {"step", "mu_product", "exp_avg", "exp_avg_sq"},
    "radam": {"step", "exp_avg", "exp_avg_sq"},
    "radamw": {"step", "exp_avg", "exp_avg_sq"},
    "adamax": {"step", "exp_avg", "exp_inf"},
    "lion": {"exp_avg"},
    "adagradnorm_global": {"b_sq"},
    "adagradnorm_group": {"b_sq"},
    "adagradnorm_tensor": {"b_sq"},
}

#: State entries that are one number (torch: 0-d tensors; ferroptim: Python floats).
SCALAR_STATE = ("step", "b_sq", "mu_product")

DTYPES = [np.float32, np.float64]

#: Two param groups: [(3, 4), (5,)] and [(2, 3), ()] (a 0-d parameter included).
SHAPES = [[(3, 4), (5,)], [(2, 3), ()]]
N_PARAMS = sum(len(g) for g in SHAPES)
LATE = 1  # this parameter gets no gradient during the first LATE_STEPS steps
LATE_STEPS = 3


def tol(dtype, ref=None):
    """rtol per dtype; atol scaled by the reference array's magnitude, since entries
    that cancel to near zero carry the rounding error of their larger summands."""
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref is not None and np.size(ref) else 1.0
    if np.dtype(dtype) == np.float64:
        return dict(rtol=1e-12, atol=1e-14 * scale)
    return dict(rtol=1e-6, atol=1e-7 * scale)


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for g in SHAPES for s in g]


def make_grads(dtype, steps, seed=1, skip=((LATE, range(LATE_STEPS)), (3, (12,)))):
    """``steps`` lists of gradients, one per parameter; ``None`` where a parameter
    gets no gradient (``skip``: (param index, steps))."""
    rng = np.random.default_rng(seed)
    shapes = [s for g in SHAPES for s in g]
    out = []
    for k in range(steps):
        row = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for i, ks in skip:
            if k in ks:
                row[i] = None
        out.append(row)
    return out


def groups_of(params, over):
    n0 = len(SHAPES[0])
    return [{"params": list(params[:n0])}, {"params": list(params[n0:]), **over}]


def make_fo(case_id, params):
    _, cls, _, kw, over = CASE_BY_ID[case_id]
    return cls(groups_of(params, over), **kw)


def make_torch(case_id, tparams):
    _, _, tcls, kw, over = CASE_BY_ID[case_id]
    kw = {k: v for k, v in kw.items() if k != "scope"}
    return tcls(groups_of(tparams, over), foreach=False, **kw)


def to_torch_params(arrays):
    return [torch.nn.Parameter(torch.from_numpy(np.array(a, copy=True))) for a in arrays]


def torch_step(topt, tparams, grads):
    for p, g in zip(tparams, grads):
        p.grad = None if g is None else torch.from_numpy(np.array(g, copy=True))
    topt.step()


# --------------------------------------------------------------------------------------
# State-dict converters and comparisons (independent of the library)
# --------------------------------------------------------------------------------------


def assert_same_run(opt_a, params_a, opt_b, params_b):
    """Two optimizers hold bit-identical parameters and state."""
    for i, (x, y) in enumerate(zip(params_a, params_b)):
        assert np.array_equal(x, y), f"param {i}"
    assert_sd_equal(opt_a.state_dict(), opt_b.state_dict())


def step_both_and_compare(opt_a, params_a, opt_b, params_b, grads):
    """Steps both optimizers through the same gradients; they must stay bit-identical."""
    for g in grads:
        opt_a.step(grads=g)
        opt_b.step(grads=g)
    assert_same_run(opt_a, params_a, opt_b, params_b)


def assert_sd_equal(a, b):
    """Exact equality of two NumPy state dicts (arrays bit-identical, same dtype)."""
    assert set(a) == set(b) == {"state", "param_groups"}
    assert len(a["param_groups"]) == len(b["param_groups"])
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        assert set(ga) == set(gb)
        for k in ga:
            assert ga[k] == gb[k], k
    assert set(a["state"]) == set(b["state"])
    for idx in a["state"]:
        sa, sb = a["state"][idx], b["state"][idx]
        assert set(sa) == set(sb), idx
        for k in sa:
            va, vb = sa[k], sb[k]
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                assert isinstance(va, np.ndarray) and isinstance(vb, np.ndarray), (idx, k)
                assert va.dtype == vb.dtype and va.shape == vb.shape, (idx, k)
                assert np.array_equal(va, vb), (idx, k)
            else:
                assert va == vb, (idx, k)


def assert_state_close(fo_sd, np_torch_sd, dtype):
    """ferroptim's state dict against torch's (converted), within tolerance."""
    assert set(fo_sd["state"]) == set(np_torch_sd["state"])
    for idx, ours in fo_sd["state"].items():
        theirs = np_torch_sd["state"][idx]
        theirs = {k: v for k, v in theirs.items() if v is not None}
        assert set(ours) == set(theirs), idx
        for k, v in ours.items():
            if k in SCALAR_STATE:  # NAdam's mu_product too: torch keeps it in float32, as ours
                assert float(v) == float(theirs[k]), (idx, k)
            else:
                assert v.dtype == np.dtype(dtype)
                ref = theirs[k]
                np.testing.assert_allclose(v, ref, **tol(dtype, ref), err_msg=f"{idx} {k}")


def assert_params_close(arrays, tparams, dtype):
    for i, (a, t) in enumerate(zip(arrays, tparams)):
        ref = t.detach().numpy()
        np.testing.assert_allclose(a, ref, **tol(dtype, ref), err_msg=f"param {i}")


# --------------------------------------------------------------------------------------
# 1. Layout, copies, round trip
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_id", ALL_IDS)
def test_state_dict_layout(case_id, dtype):
    """torch's layout: integer indices numbering params across groups in order, each
    group's hyperparameters plus "params", state arrays shaped/typed as their param."""
    params = make_params(dtype)
    opt = make_fo(case_id, params)
    for g in make_grads(dtype, 5):
        opt.step(grads=g)
    sd = opt.state_dict()
    assert isinstance(sd, dict)
    assert set(sd) == {"state", "param_groups"}
    groups = sd["param_groups"]
    assert isinstance(groups, list) and len(groups) == len(SHAPES)
    assert [g["params"] for g in groups] == [[0, 1], [2, 3]]
    for g in groups:
        assert all(type(i) is int for i in g["params"])
    for g, live in zip(groups, opt.param_groups):
        assert set(g) == set(live)
        for k, v in live.items():
            if k != "params":
                assert g[k] == v, k
    assert all(type(i) is int and 0 <= i < N_PARAMS for i in sd["state"])
    for idx, s in sd["state"].items():
        assert set(s) <= STATE_KEYS[case_id], (idx, set(s))
        for k, v in s.items():
            if k in SCALAR_STATE:
                assert isinstance(v, float) and not isinstance(v, np.floating), (idx, k)
            else:
                assert isinstance(v, np.ndarray), (idx, k)
                assert v.shape == params[idx].shape and v.dtype == params[idx].dtype, (idx, k)
                assert not np.shares_memory(v, opt.state[params[idx]][k])
    if case_id.startswith("adagradnorm"):
        # Every parameter holds the b_sq of its scope (AdagradNorm's documented rule):
        # one value for all (global), one per group ([0, 1] and [2, 3]), or one each.
        assert set(sd["state"]) == set(range(N_PARAMS))
        values = [sd["state"][i]["b_sq"] for i in range(N_PARAMS)]
        assert [np.sqrt(v) for v in values] == [opt.b(p) for p in params]
        distinct = {"global": 1, "group": 2, "tensor": N_PARAMS}[CASE_BY_ID[case_id][3]["scope"]]
        assert len(set(values)) == distinct
    elif STATE_KEYS[case_id]:
        assert set(sd["state"]) == set(range(N_PARAMS))
        for idx, s in sd["state"].items():
            assert set(s) == STATE_KEYS[case_id], idx
            if "step" in s:
                assert s["step"] == (5.0 - LATE_STEPS if idx == LATE else 5.0)
    else:
        assert sd["state"] == {}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_id", ALL_IDS)
def test_round_trip_bit_identical(case_id, dtype):
    """Save after N steps, keep going K steps (run A); a fresh optimizer on the saved
    params that loads the saved dict and takes the same K steps matches A bit for bit.
    The saved dict is a copy (not changed by later steps), and the loaded state does not
    alias it."""
    n, k = 6, 7
    grads = make_grads(dtype, n + k, skip=((LATE, range(LATE_STEPS)), (3, (n + 1,))))
    params = make_params(dtype)
    opt = make_fo(case_id, params)
    for g in grads[:n]:
        opt.step(grads=g)
    saved_params = [p.copy() for p in params]
    saved = opt.state_dict()
    snapshot = copy.deepcopy(saved)
    for g in grads[n:]:
        opt.step(grads=g)
    assert_sd_equal(saved, snapshot)  # stepping did not write into the returned dict

    params2 = [p.copy() for p in saved_params]
    opt2 = make_fo(case_id, params2)
    opt2.load_state_dict(saved)
    # Scribble over the loaded dict: the optimizer must hold its own copies.
    for s in saved["state"].values():
        for key, v in s.items():
            if isinstance(v, np.ndarray):
                v[...] = np.nan
            else:
                s[key] = 1e30
    for g in saved["param_groups"]:
        g["lr"] = 1e30
    for g in grads[n:]:
        opt2.step(grads=g)

    assert_same_run(opt, params, opt2, params2)
    for group in opt2.param_groups:
        assert all(any(p is q for q in params2) for p in group["params"])


@pytest.mark.parametrize("case_id", ALL_IDS)
def test_state_dict_groups_are_copies(case_id):
    """Editing the returned param groups does not change the optimizer's."""
    params = make_params(np.float64)
    opt = make_fo(case_id, params)
    opt.step(grads=make_grads(np.float64, 1, skip=())[0])
    before = copy.deepcopy(opt.param_groups[0])
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 123.0
    sd["param_groups"][0]["params"].append(7)
    assert opt.param_groups[0]["lr"] == before["lr"]
    assert len(opt.param_groups[0]["params"]) == len(before["params"])


# --------------------------------------------------------------------------------------
# 2./3. Interchange with torch.optim mid-run
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_id", TORCH_IDS)
def test_torch_to_ferroptim(case_id, dtype):
    """torch runs 10 steps; its state dict (as NumPy) is loaded into ferroptim, whose
    params take torch's values; both continue 10 steps and agree."""
    grads = make_grads(dtype, 20)
    tparams = to_torch_params(make_params(dtype))
    topt = make_torch(case_id, tparams)
    for g in grads[:10]:
        torch_step(topt, tparams, g)

    np_sd = torch_sd_to_numpy(topt.state_dict())
    params = [t.detach().numpy().copy() for t in tparams]
    opt = make_fo(case_id, params)
    opt.load_state_dict(np_sd)
    assert_state_close(opt.state_dict(), np_sd, dtype)

    for g in grads[10:]:
        torch_step(topt, tparams, g)
        opt.step(grads=g)
    assert_params_close(params, tparams, dtype)
    assert_state_close(opt.state_dict(), torch_sd_to_numpy(topt.state_dict()), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_id", TORCH_IDS)
def test_ferroptim_to_torch(case_id, dtype):
    """ferroptim runs 10 steps; its state dict (as tensors) is loaded into torch, whose
    params take ferroptim's values; both continue 10 steps and agree."""
    grads = make_grads(dtype, 20)
    params = make_params(dtype)
    opt = make_fo(case_id, params)
    for g in grads[:10]:
        opt.step(grads=g)

    tparams = to_torch_params(params)
    topt = make_torch(case_id, tparams)
    topt.load_state_dict(numpy_sd_to_torch(opt.state_dict()))
    assert_state_close(opt.state_dict(), torch_sd_to_numpy(topt.state_dict()), dtype)

    for g in grads[10:]:
        opt.step(grads=g)
        torch_step(topt, tparams, g)
    assert_params_close(params, tparams, dtype)
    assert_state_close(opt.state_dict(), torch_sd_to_numpy(topt.state_dict()), dtype)


@pytest.mark.parametrize("case_id", TORCH_IDS)
def test_torch_ferroptim_torch_round_trip(case_id):
    """torch -> ferroptim -> torch mid-run matches an uninterrupted torch run (float64)."""
    dtype = np.float64
    grads = make_grads(dtype, 21)
    ref = to_torch_params(make_params(dtype))
    ref_opt = make_torch(case_id, ref)
    for g in grads:
        torch_step(ref_opt, ref, g)

    tparams = to_torch_params(make_params(dtype))
    topt = make_torch(case_id, tparams)
    for g in grads[:7]:
        torch_step(topt, tparams, g)
    params = [t.detach().numpy().copy() for t in tparams]
    opt = make_fo(case_id, params)
    opt.load_state_dict(torch_sd_to_numpy(topt.state_dict()))
    for g in grads[7:14]:
        opt.step(grads=g)
    tparams2 = to_torch_params(params)
    topt2 = make_torch(case_id, tparams2)
    topt2.load_state_dict(numpy_sd_to_torch(opt.state_dict()))
    for g in grads[14:]:
        torch_step(topt2, tparams2, g)

    assert_params_close([t.detach().numpy() for t in tparams2], ref, dtype)
    got, want = topt2.state_dict(), ref_opt.state_dict()
    assert_state_close(torch_sd_to_numpy(got), torch_sd_to_numpy(want), dtype)


# --------------------------------------------------------------------------------------
# 4. Malformed state dicts
# --------------------------------------------------------------------------------------


def _last_state_index(sd):
    return max(sd["state"]) if sd["state"] else None


def _array_key(sd):
    idx = _last_state_index(sd)
    keys = sorted(k for k, v in sd["state"][idx].items() if isinstance(v, np.ndarray))
    return idx, keys[0]


def _set_array(make):
    def corrupt(sd, params):
        idx, key = _array_key(sd)
        sd["state"][idx][key] = make(sd["state"][idx][key], params[idx])

    return corrupt


def _set_scalar(name, value):
    def corrupt(sd, params):
        sd["state"][_last_state_index(sd)][name] = value

    return corrupt


def _set_group(**values):
    def corrupt(sd, params):
        sd["param_groups"][-1].update(values)

    return corrupt


def _del(key):
    def corrupt(sd, params):
        del sd[key]

    return corrupt


def _extra_state(sd, params):
    idx = _last_state_index(sd)
    sd["state"][99] = copy.deepcopy(sd["state"][idx]) if idx is not None else {}


def _unknown_key(sd, params):
    idx = _last_state_index(sd)
    if idx is None:
        sd["state"][3] = {"bogus": np.zeros_like(params[3])}
    else:
        sd["state"][idx]["bogus"] = np.zeros_like(params[idx])


def _state_not_dict(sd, params):
    idx = _last_state_index(sd)
    sd["state"][3 if idx is None else idx] = [1.0, 2.0]


STRUCTURAL = {
    "missing_state": _del("state"),
    "missing_param_groups": _del("param_groups"),
    "state_not_dict": lambda sd, params: sd.update(state=[1, 2]),
    "one_group_fewer": lambda sd, params: sd["param_groups"].pop(),
    "one_group_more": lambda sd, params: sd["param_groups"].append(
        {**copy.deepcopy(sd["param_groups"][-1]), "params": [4, 5]}
    ),
    "group_not_dict": lambda sd, params: sd["param_groups"].__setitem__(-1, [2, 3]),
    "param_fewer": lambda sd, params: sd["param_groups"][-1]["params"].pop(),
    "param_more": lambda sd, params: sd["param_groups"][-1]["params"].append(4),
    "state_for_unlisted_index": _extra_state,
    "unknown_state_key": _unknown_key,
    "state_entry_not_dict": _state_not_dict,
    "maximize_not_bool": _set_group(maximize="yes"),
    "lr_negative": _set_group(lr=-1.0),
    "lr_not_number": _set_group(lr="fast"),
}
ARRAY = {
    "array_wrong_shape": _set_array(lambda v, p: np.zeros(p.shape + (2,), p.dtype)),
    "array_transposed_shape": _set_array(
        lambda v, p: np.zeros(p.shape[::-1] + (1,) if p.ndim < 2 else p.shape[::-1], p.dtype)
    ),
    "array_complex": _set_array(lambda v, p: v.astype(np.complex128)),
    "array_string": _set_array(lambda v, p: np.full(p.shape, "x")),
    "array_object_none": _set_array(lambda v, p: np.full(p.shape, None, dtype=object)),
}
STEP = {
    "step_negative": _set_scalar("step", -1.0),
    "step_string": _set_scalar("step", "three"),
    "step_nan": _set_scalar("step", math.nan),
    "step_none": _set_scalar("step", None),
    "step_vector": _set_scalar("step", np.array([1.0, 2.0], np.float32)),
}
MU_PRODUCT = {
    "mu_product_negative": _set_scalar("mu_product", -0.5),
    "mu_product_string": _set_scalar("mu_product", "small"),
    "mu_product_nan": _set_scalar("mu_product", math.nan),
    "mu_product_none": _set_scalar("mu_product", None),
    "mu_product_vector": _set_scalar("mu_product", np.array([0.5, 0.25], np.float32)),
    "mu_product_missing": lambda sd, params: sd["state"][_last_state_index(sd)].pop("mu_product"),
}
B_SQ = {
    "b_sq_zero": _set_scalar("b_sq", 0.0),
    "b_sq_negative": _set_scalar("b_sq", -1.0),
    "b_sq_string": _set_scalar("b_sq", "big"),
    "b_sq_nan": _set_scalar("b_sq", math.nan),
}
HYPER = {
    "SGD": {
        "momentum_negative": _set_group(momentum=-0.5),
        "weight_decay_negative": _set_group(weight_decay=-1.0),
    },
    "Adagrad": {"eps_negative": _set_group(eps=-1.0), "lr_decay_negative": _set_group(lr_decay=-1)},
    "RMSprop": {
        "alpha_negative": _set_group(alpha=-1.0),
        "momentum_negative": _set_group(momentum=-1),
    },
    "Adadelta": {"rho_above_one": _set_group(rho=1.5)},
    "NAdam": {
        "momentum_decay_negative": _set_group(momentum_decay=-1.0),
        "decoupled_not_bool": _set_group(decoupled_weight_decay=1),
        "betas_not_pair": _set_group(betas=(0.9,)),
    },
    "RAdam": {"beta2_one": _set_group(betas=(0.9, 1.0)), "eps_negative": _set_group(eps=-1.0)},
    "Adamax": {
        "beta1_above_one": _set_group(betas=(1.5, 0.9)),
        "weight_decay_nan": _set_group(weight_decay=math.nan),
    },
    "Lion": {
        "beta1_negative": _set_group(betas=(-0.1, 0.99)),
        "weight_decay_negative": _set_group(weight_decay=-1.0),
    },
    "Adam": {
        "beta1_above_one": _set_group(betas=(1.5, 0.9)),
        "beta2_one": _set_group(betas=(0.9, 1.0)),
        "betas_not_pair": _set_group(betas=(0.9,)),
        "eps_negative": _set_group(eps=-1.0),
    },
    "AdagradNorm": {
        "b0_zero": _set_group(b0=0.0),
        "b0_negative": _set_group(b0=-1.0),
        "scope_unknown": _set_group(scope="layer"),
    },
}
HYPER["AdamW"] = HYPER["Adam"]
HYPER_SGD_NESTEROV = {"nesterov_without_momentum": _set_group(momentum=0.0)}


def _malformed_table():
    rows = []
    for case_id, cls, *_ in CASES:
        table = dict(STRUCTURAL)
        keys = STATE_KEYS[case_id]
        if keys - set(SCALAR_STATE):
            table.update(ARRAY)
        if "step" in keys:
            table.update(STEP)
        if "mu_product" in keys:
            table.update(MU_PRODUCT)
        if "b_sq" in keys:
            table.update(B_SQ)
        table.update(HYPER[cls.__name__])
        if case_id == "sgd_nesterov":
            table.update(HYPER_SGD_NESTEROV)
        for name, fn in table.items():
            rows.append(pytest.param(case_id, name, fn, id=f"{case_id}-{name}"))
    return rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("case_id", "name", "corrupt"), _malformed_table())
def test_malformed_state_dict_changes_nothing(case_id, name, corrupt, dtype):
    """A corrupted state dict (taken from a different run, so that a partial load would
    show) raises ValueError/TypeError; the optimizer's state, groups and later steps are
    exactly those of a twin that never saw it."""
    grads = make_grads(dtype, 6)
    params = make_params(dtype)
    opt = make_fo(case_id, params)
    twin_params = make_params(dtype)
    twin = make_fo(case_id, twin_params)
    for g in grads[:4]:
        opt.step(grads=g)
        twin.step(grads=g)

    donor_params = make_params(dtype, seed=5)
    donor = make_fo(case_id, donor_params)
    donor.param_groups[0]["lr"] *= 0.5
    for g in make_grads(dtype, 8, seed=7, skip=()):
        donor.step(grads=g)
    bad = donor.state_dict()
    corrupt(bad, donor_params)

    before = opt.state_dict()
    groups_before = [list(g["params"]) for g in opt.param_groups]
    with pytest.raises((ValueError, TypeError)):
        opt.load_state_dict(bad)
    assert_sd_equal(opt.state_dict(), before)
    for g, ps in zip(opt.param_groups, groups_before):
        assert len(g["params"]) == len(ps) and all(a is b for a, b in zip(g["params"], ps))

    step_both_and_compare(opt, params, twin, twin_params, grads[4:])


@pytest.mark.parametrize("bad", [None, [1, 2], "state", [("state", {}), ("param_groups", [])]])
def test_state_dict_not_a_mapping(bad):
    """Something that is not a dict at all is rejected, and nothing changes."""
    params = make_params(np.float64)
    opt = make_fo("adam", params)
    for g in make_grads(np.float64, 4):
        opt.step(grads=g)
    before = opt.state_dict()
    with pytest.raises((ValueError, TypeError)):
        opt.load_state_dict(bad)
    assert_sd_equal(opt.state_dict(), before)


@pytest.mark.parametrize("case_id", ALL_IDS)
def test_valid_donor_state_dict_loads(case_id):
    """Control for the malformed-state-dict test: the uncorrupted donor dict loads, and
    afterwards the optimizer reports exactly the donor's state dict."""
    dtype = np.float64
    opt = make_fo(case_id, make_params(dtype))
    for g in make_grads(dtype, 4):
        opt.step(grads=g)
    donor = make_fo(case_id, make_params(dtype, seed=5))
    donor.param_groups[0]["lr"] *= 0.5
    for g in make_grads(dtype, 8, seed=7, skip=()):
        donor.step(grads=g)
    opt.load_state_dict(donor.state_dict())
    assert_sd_equal(opt.state_dict(), donor.state_dict())


# --------------------------------------------------------------------------------------
# 5. torch-only flags and tensor-valued lr
# --------------------------------------------------------------------------------------

TORCH_FLAGS = dict(foreach=False, fused=None, capturable=False, differentiable=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_id", ALL_IDS)
def test_torch_flags_dropped_and_0d_lr(case_id, dtype):
    """Groups carrying foreach/fused/capturable/differentiable and an ``lr`` given as a
    0-d array load as plain groups with a float ``lr``; the run continues exactly as
    after loading the same dict without the flags and with a float ``lr``."""
    grads = make_grads(dtype, 10)
    params = make_params(dtype)
    opt = make_fo(case_id, params)
    for g in grads[:5]:
        opt.step(grads=g)
    sd = opt.state_dict()
    plain = copy.deepcopy(sd)
    plain["param_groups"][1]["lr"] = 0.0375
    flagged = copy.deepcopy(plain)
    for g in flagged["param_groups"]:
        g.update(TORCH_FLAGS)
    flagged["param_groups"][1]["lr"] = np.asarray(0.0375)

    params_a = [p.copy() for p in params]
    a = make_fo(case_id, params_a)
    a.load_state_dict(flagged)
    params_b = [p.copy() for p in params]
    b = make_fo(case_id, params_b)
    b.load_state_dict(plain)

    for groups in (a.param_groups, a.state_dict()["param_groups"]):
        for g in groups:
            assert not set(TORCH_FLAGS) & set(g), set(g)
    lr = a.param_groups[1]["lr"]
    assert type(lr) is float and lr == 0.0375
    step_both_and_compare(a, params_a, b, params_b, grads[5:])


@pytest.mark.parametrize("case_id", ["adam", "adamw", "sgd_momentum", "nadam", "radam", "adamax"])
def test_real_torch_tensor_lr_loads_as_float(case_id):
    """A torch optimizer built with a tensor ``lr`` (and its foreach flag etc.): its
    converted state dict loads with a Python float ``lr`` and no torch-only flags."""
    _, cls, tcls, kw, over = CASE_BY_ID[case_id]
    dtype = np.float64
    tparams = to_torch_params(make_params(dtype))
    lr = torch.tensor(0.015, dtype=torch.float64)
    tkw = {**kw, "lr": lr}
    groups = groups_of(tparams, {k: v for k, v in over.items() if k != "lr"})
    topt = tcls(groups, foreach=False, **tkw)
    for g in make_grads(dtype, 3):
        torch_step(topt, tparams, g)
    np_sd = torch_sd_to_numpy(topt.state_dict())
    assert isinstance(np_sd["param_groups"][0]["lr"], np.ndarray)  # the premise

    opt = make_fo(case_id, [t.detach().numpy().copy() for t in tparams])
    opt.load_state_dict(np_sd)
    for g in opt.param_groups:
        assert type(g["lr"]) is float and g["lr"] == 0.015
        assert not set(TORCH_FLAGS) & set(g)
    assert_state_close(opt.state_dict(), np_sd, dtype)


def _adam_with_state():
    a, b = np.zeros(3), np.zeros(2)
    opt = fo.Adam([a, b], lr=0.1, amsgrad=True)
    opt.step(grads=[np.ones(3), np.ones(2)])
    return opt, a, b


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda sd: sd["state"][0].pop("exp_avg"),
        lambda sd: sd["state"][1].pop("exp_avg_sq"),
        lambda sd: sd["state"][0].update(step=True),
        lambda sd: sd["param_groups"][0].update(params=0),
        lambda sd: sd["param_groups"][0].update(params=[0, 0]),
        lambda sd: sd["param_groups"][0].update(params=[[0], 1]),
    ],
    ids=["no-exp_avg", "no-exp_avg_sq", "bool-step", "params-int", "params-repeated", "params-unhashable"],
)
def test_incomplete_or_ambiguous_state_dict_is_refused(corrupt):
    """A state dict that would make every later step fail, or that maps ids ambiguously,
    is refused at load with a ValueError, and the optimizer is unchanged."""
    opt, a, b = _adam_with_state()
    sd = opt.state_dict()
    before = opt.state_dict()
    corrupt(sd)
    with pytest.raises(ValueError):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i in before["state"]:
        for k, v in before["state"][i].items():
            assert np.array_equal(after["state"][i][k], v)
    opt.step(grads=[np.ones(3), np.ones(2)])  # still steps


def test_amsgrad_turned_on_by_a_loaded_group_creates_its_buffer():
    """torch raises KeyError when a loaded group enables amsgrad without max_exp_avg_sq;
    here the missing buffer starts at zero, as it would have on a fresh run."""
    opt, a, b = _adam_with_state()
    sd = opt.state_dict()
    for s in sd["state"].values():
        s.pop("max_exp_avg_sq")
    opt.load_state_dict(sd)
    opt.step(grads=[np.ones(3), np.ones(2)])
    np.testing.assert_array_equal(opt.state[a]["max_exp_avg_sq"], opt.state[a]["exp_avg_sq"])


def test_loaded_state_takes_the_params_dtype():
    """float64 state loaded into an optimizer over float32 parameters is converted (as
    torch casts loaded state to the parameter's dtype), so the next step is valid."""
    p32 = np.ones(4, dtype=np.float32)
    src = fo.Adam([np.ones(4)], lr=0.1)
    src.step(grads=[np.full(4, 0.5)])
    opt = fo.Adam([p32], lr=0.1)
    opt.load_state_dict(src.state_dict())
    assert opt.state[p32]["exp_avg"].dtype == np.float32
    opt.step(grads=[np.full(4, 0.5, dtype=np.float32)])
    assert opt.state[p32]["step"] == 2.0


# --------------------------------------------------------------------------------------
# Hyperparameters a loaded group lacks
# --------------------------------------------------------------------------------------


def test_loaded_group_without_lr_is_refused_and_changes_nothing():
    """Regression: a group without ``lr`` took the constructor's ``lr`` (0.1 here), which is
    neither the saved value nor the group's own. torch cannot step such a group; the load
    is refused naming the group and the key, and nothing changes."""
    a, b = np.ones(3), np.ones(3)
    opt = fo.SGD([{"params": [a], "lr": 0.01}, {"params": [b]}], lr=0.1, momentum=0.9)
    opt.step(grads=[np.ones(3), np.ones(3)])
    sd = opt.state_dict()
    del sd["param_groups"][0]["lr"]
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"loaded param group 0 has no 'lr'"):
        opt.load_state_dict(sd)
    assert_sd_equal(opt.state_dict(), before)
    assert opt.param_groups[0]["lr"] == 0.01


#: Every torch optimizer ferroptim has, with flags set away from their defaults, so that a
#: key filled from the optimizer's own defaults would differ from torch's ``setdefault``.
FLAGGED = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True, "weight_decay": 0.01}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "maximize": True, "initial_accumulator_value": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True, "maximize": True}),
    ("Adadelta", {"lr": 0.5, "maximize": True, "weight_decay": 0.01}),
    ("Adamax", {"lr": 0.01, "maximize": True}),
    ("NAdam", {"lr": 0.01, "maximize": True, "decoupled_weight_decay": True, "weight_decay": 0.01}),
    ("RAdam", {"lr": 0.01, "maximize": True, "decoupled_weight_decay": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "maximize": True, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.01, "amsgrad": True, "maximize": True}),
]


def _torch_group_keys(name: str, kwargs: dict) -> list[str]:
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    return [
        k for k in getattr(torch.optim, name)([p], **kwargs).state_dict()["param_groups"][0] if k != "params"
    ]


@pytest.mark.parametrize(
    ("name", "kwargs", "key"),
    [pytest.param(n, kw, k, id=f"{n}-{k}") for n, kw in FLAGGED for k in _torch_group_keys(n, kw)],
)
def test_loaded_torch_group_without_a_key_follows_torch(name, kwargs, key):
    """A torch state dict whose group lacks ``key`` (as one written by an older torch lacks
    newer keys): torch's own ``load_state_dict`` then ``step`` is the reference. Where torch
    cannot step (``lr`` and the update rule's constants), ferroptim refuses the load with a
    ``ValueError`` naming the group and the key and changes nothing; where torch's
    ``__setstate__`` fills the key in, ferroptim loads it with torch's value."""
    rng = np.random.default_rng(3)
    start, grad = rng.standard_normal(3), rng.standard_normal(3)
    tp = torch.tensor(start, requires_grad=True)
    topt = getattr(torch.optim, name)([tp], **kwargs)
    tp.grad = torch.tensor(grad)
    topt.step()
    sd = topt.state_dict()
    del sd["param_groups"][0][key]

    tq = tp.detach().clone().requires_grad_(True)  # continues from the saved step
    ref = getattr(torch.optim, name)([tq], **kwargs)
    try:
        ref.load_state_dict(copy.deepcopy(sd))
        tq.grad = torch.tensor(grad)
        ref.step()
        torch_steps = True
    except KeyError:
        torch_steps = False

    p = start.copy()
    opt = getattr(fo, name)([p], **kwargs)
    opt.step(grads=[grad])
    before = opt.state_dict()
    if not torch_steps:
        with pytest.raises(ValueError, match=rf"loaded param group 0 has no '{key}'"):
            opt.load_state_dict(torch_sd_to_numpy(sd))
        assert_sd_equal(opt.state_dict(), before)
        return
    opt.load_state_dict(torch_sd_to_numpy(sd))
    group, torch_group = opt.param_groups[0], ref.param_groups[0]
    if key in fo.optimizer.TORCH_ONLY_FLAGS:
        assert key not in group
    elif key in opt.defaults and key in torch_group:
        assert group[key] == torch_group[key]
    opt.step(grads=[grad])
    np.testing.assert_allclose(p, tq.detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["Lion", "AdagradNorm"])
def test_loaded_group_without_a_needed_key_is_refused_beyond_torch(name):
    """The optimizers torch does not have refuse a loaded group without one of their
    update rule's constants, as the torch ones do."""
    opt = getattr(fo, name)([np.ones(3)])
    opt.step(grads=[np.ones(3)])
    for key in opt.required_hyperparameters:
        sd = opt.state_dict()
        del sd["param_groups"][0][key]
        before = opt.state_dict()
        with pytest.raises(ValueError, match=rf"loaded param group 0 has no '{key}'"):
            opt.load_state_dict(sd)
        assert_sd_equal(opt.state_dict(), before)
