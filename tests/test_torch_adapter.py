"""``ferroptim.torch`` against ``torch.optim``: parity over torch's own optimizer test
configurations, state dicts swapped mid-run in both directions, schedulers, GradScaler,
hooks, ``torch.save``, and the refusals.

Parity: for every class with a torch.optim twin, every configuration that
``torch.testing._internal.common_optimizers.optim_db`` gives for the CPU in float32 and
float64 (those using torch-only options, ``capturable``, ``differentiable`` and
``fused``, are skipped with the reason; ``foreach`` picks a torch code path and is
dropped). The same small ``nn.Module`` is trained by ferroptim.torch and by torch.optim
(``foreach=False``, its CPU default) for 20 steps with an ``ExponentialLR`` stepping in
between, ferroptim.torch fed the gradients of torch's model; after every step the
parameters and every state entry agree to the tolerances of ``tests/test_torch_parity.py``.
After step 10 each state dict is loaded into the other library's optimizer on a copy of
the model: ours loaded from torch's follows torch's run, and torch's loaded from ours
follows torch's loaded from its own (torch casts NAdam's float32 ``mu_product`` to a
float64 parameter's dtype on loading, so that run leaves torch's unbroken one). Lion and
AdagradNorm, which torch lacks, are held to their NumPy ferroptim twin (tested against
the papers in ``tests/test_papers.py``) fed the same gradients.
"""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:  # torch's own optimizer test configurations (needs the expecttest package)
    from torch.testing._internal import common_optimizers
except ImportError as err:
    common_optimizers = None
    WHY_NO_OPTIM_DB = f"torch.testing._internal.common_optimizers cannot be imported: {err}"

import ferroptim as fo  # noqa: E402
import ferroptim.torch as fot  # noqa: E402

STEPS = 20
SWAP_AT = 10
# rtol, and atol as a factor of max(1, max |reference|): as tests/test_torch_parity.py.
TOL = {torch.float64: (1e-12, 1e-14), torch.float32: (1e-6, 1e-6)}
TORCH_ONLY = ("capturable", "differentiable", "fused")
CLASSES = ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "RAdam", "Adamax")


def _configs() -> list[Any]:
    if common_optimizers is None:
        return [pytest.param("", None, {}, marks=pytest.mark.skip(reason=WHY_NO_OPTIM_DB))]
    cases = []
    for info in common_optimizers.optim_db:
        name = info.optim_cls.__name__
        if name not in CLASSES:
            continue
        for dtype in (torch.float32, torch.float64):
            for inp in info.optim_inputs_func(device="cpu", dtype=dtype):
                kwargs = dict(inp.kwargs)
                kwargs.pop("foreach", None)
                used = [k for k in TORCH_ONLY if kwargs.get(k)]
                marks = [pytest.mark.skip(reason=f"torch-only option {used}")] if used else []
                for k in TORCH_ONLY:
                    kwargs.pop(k, None)
                ident = f"{name}-{str(dtype)[6:]}-{inp.desc}"
                cases.append(pytest.param(name, dtype, kwargs, id=ident, marks=marks))
    return cases


def _model(dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """A small MLP with a transposed (non-contiguous) weight, a bias and a layer norm."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3)
    ).to(dtype)
    with torch.no_grad():  # a non-contiguous parameter: a transposed view of its storage
        w = model[3].weight
        model[3].weight = torch.nn.Parameter(w.detach().t().contiguous().t())
    assert not model[3].weight.is_contiguous()
    return model


def _batch(step: int, dtype: torch.dtype) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(8, 6, generator=g, dtype=dtype), torch.randn(8, 3, generator=g, dtype=dtype)


def _backward(model: torch.nn.Module, step: int, dtype: torch.dtype) -> None:
    x, y = _batch(step, dtype)
    torch.nn.functional.mse_loss(model(x), y).backward()


def _assert_close(ours: Any, ref: Any, dtype: torch.dtype, what: str) -> None:
    rtol, factor = TOL[dtype]
    a, b = ours.detach().double().numpy(), ref.detach().double().numpy()
    atol = factor * max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    assert a.shape == b.shape, what
    if not np.all(np.abs(a - b) <= atol + rtol * np.abs(b)):  # NaN fails too
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def _assert_same(opt: Any, model: torch.nn.Module, ref_opt: Any, ref_model: torch.nn.Module, dtype, where):
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        _assert_close(p, q, dtype, f"{where}: parameter {name}")
        ours, ref = opt.state[p], ref_opt.state[q]
        assert sorted(ours) == sorted(ref), f"{where}: state keys of {name}"
        for key, value in ref.items():
            if key == "step":
                assert ours[key].dtype == value.dtype and ours[key].item() == value.item(), where
            elif isinstance(value, torch.Tensor):
                _assert_close(ours[key], value, dtype, f"{where}: state {key!r} of {name}")
            else:
                assert ours[key] == value, f"{where}: state {key!r} of {name}"


def _shares_memory(opt: Any) -> None:
    """Every state tensor of ``opt`` is the memory its ferroptim twin's kernel updates."""
    twin_arrays = {id(a) for st in opt._twin.state.values() for a in st.values() if isinstance(a, np.ndarray)}
    pointers = {
        a.__array_interface__["data"][0]
        for st in opt._twin.state.values()
        for a in st.values()
        if isinstance(a, np.ndarray)
    }
    for st in opt.state.values():
        for value in st.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                assert value.data_ptr() in pointers
    assert twin_arrays or not any(opt.state.values())


def _run(
    lib: Any, name: str, model: torch.nn.Module, kwargs: dict[str, Any], sd: Any = None, sched_sd: Any = None
):
    """An optimizer of ``lib`` (``fot`` or ``torch.optim``) on ``model`` with its scheduler,
    optionally loaded from a state dict (a deep copy) and a scheduler's state dict."""
    flags = {"foreach": False} if lib is torch.optim else {}
    # its own copy of a tensor lr, which torch's schedulers fill_ in place
    opt = getattr(lib, name)(model.parameters(), **copy.deepcopy(kwargs), **flags)
    if sd is not None:
        opt.load_state_dict(copy.deepcopy(sd))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    if sched_sd is not None:
        sched.load_state_dict(sched_sd)
    return opt, model, sched


@pytest.mark.parametrize(("name", "dtype", "kwargs"), _configs())
def test_parity_with_torch_optim(name: str, dtype: torch.dtype, kwargs: dict[str, Any]) -> None:
    ref = _run(torch.optim, name, _model(dtype), kwargs)
    ours = _run(fot, name, _model(dtype), kwargs)
    pairs = [(ours, ref)]  # (run, the torch.optim run it must follow)
    for step in range(1, STEPS + 1):
        runs = {id(r): r for pair in pairs for r in pair}.values()
        for opt, model, _ in runs:
            opt.zero_grad()
            _backward(model, step, dtype)
        for (_, model, _), (_, ref_model, _) in pairs:
            # the reference's gradients: the updates are compared on the same input, so that
            # ulps of the parameters are not amplified by the backward pass (in float32 centered
            # RMSprop, sqrt(v - m^2) cancels)
            for p, q in zip(model.parameters(), ref_model.parameters()):
                p.grad.copy_(q.grad)
        for opt, _, _ in runs:
            opt.step()
        for _, _, sched in runs:
            sched.step()
        for (opt, model, _), (ref_opt, ref_model, _) in pairs:
            _assert_same(opt, model, ref_opt, ref_model, dtype, f"step {step}")
        if step == SWAP_AT:
            # torch's state dict into ferroptim.torch; ours into torch.optim, which must go on as
            # torch.optim does from its own state dict (torch casts NAdam's float32 mu_product to
            # a float64 parameter's dtype on loading, so that is not torch's unbroken run)
            torch_sd, ours_sd = ref[0].state_dict(), ours[0].state_dict()
            ref_sched, sched = ref[2].state_dict(), ours[2].state_dict()
            into_ours = _run(fot, name, copy.deepcopy(ref[1]), kwargs, torch_sd, ref_sched)
            into_torch = _run(torch.optim, name, copy.deepcopy(ours[1]), kwargs, ours_sd, sched)
            torch_reloaded = _run(torch.optim, name, copy.deepcopy(ref[1]), kwargs, torch_sd, ref_sched)
            pairs += [(into_ours, ref), (into_torch, torch_reloaded)]
    _shares_memory(ours[0])


@pytest.mark.parametrize("name", ["Lion", "AdagradNorm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_classes_without_torch_twin_follow_the_numpy_twin(name: str, dtype: torch.dtype) -> None:
    """Lion and AdagradNorm step as their NumPy ferroptim class does on the same gradients
    (the same kernel, so the same bits), with a scheduler, and survive a state-dict round trip."""
    kwargs = {"Lion": dict(lr=1e-2, weight_decay=0.1), "AdagradNorm": dict(lr=0.5, b0=0.1)}[name]
    model = _model(dtype)
    arrays = [p.detach().numpy().copy(order="K") for p in model.parameters()]  # same layouts
    opt = getattr(fot, name)(model.parameters(), **kwargs)
    twin = getattr(fo, name)(arrays, **kwargs)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    twin_sched = fo.lr_scheduler.ExponentialLR(twin, gamma=0.9)
    for step in range(1, STEPS + 1):
        opt.zero_grad()
        _backward(model, step, dtype)
        grads = [p.grad.numpy().copy(order="K") for p in model.parameters()]
        opt.step()
        twin.step(grads=grads)
        sched.step()
        twin_sched.step()
        for p, a in zip(model.parameters(), arrays):
            np.testing.assert_array_equal(p.detach().numpy(), a)
            if name == "AdagradNorm":
                assert opt.b(p) == twin.b(a)
            for key, value in twin.state[a].items():
                np.testing.assert_array_equal(np.asarray(opt.state[p][key]), value)
        if step == SWAP_AT:
            sd = opt.state_dict()
            buffer = io.BytesIO()
            torch.save(sd, buffer)
            buffer.seek(0)
            fresh = getattr(fot, name)(model.parameters(), **kwargs)
            fresh.load_state_dict(torch.load(buffer, weights_only=True))
            opt = fresh
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
            sched.load_state_dict(twin_sched.state_dict())


# --- torch's machinery drives it ---------------------------------------------------------


def _snapshot(opt: Any, model: torch.nn.Module) -> list[Any]:
    params = [p.detach().clone() for p in model.parameters()]
    state = {
        id(p): {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}
        for p, st in opt.state.items()
    }
    return [params, state]


def _assert_unchanged(before: list[Any], opt: Any, model: torch.nn.Module) -> None:
    params, state = before
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p.detach(), q)
    assert {id(p) for p in opt.state} == set(state)
    for p, st in opt.state.items():
        assert sorted(st) == sorted(state[id(p)])
        for k, v in st.items():
            assert torch.equal(v, state[id(p)][k]) if isinstance(v, torch.Tensor) else v == state[id(p)][k]


def test_named_parameters_groups_closure_and_zero_grad() -> None:
    model, ref_model = _model(torch.float64), _model(torch.float64)
    groups = [
        {"params": list(model[0].named_parameters()), "lr": 0.05},
        {"params": [(f"3.{n}", p) for n, p in model[3].named_parameters()]},
    ]
    opt = fot.SGD(groups, lr=0.1, momentum=0.9)
    ref = torch.optim.SGD(
        [
            {"params": list(ref_model[0].named_parameters()), "lr": 0.05},
            {"params": [(f"3.{n}", p) for n, p in ref_model[3].named_parameters()]},
        ],
        lr=0.1,
        momentum=0.9,
        foreach=False,
    )
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    assert all(isinstance(p, torch.nn.Parameter) for g in opt.param_groups for p in g["params"])
    for step in range(1, 6):

        def closure(m: torch.nn.Module = model, step: int = step) -> Any:
            assert torch.is_grad_enabled()
            x, y = _batch(step, torch.float64)
            loss = torch.nn.functional.mse_loss(m(x), y)
            loss.backward()
            return loss

        opt.zero_grad()
        with torch.no_grad():
            loss = opt.step(closure)
        assert isinstance(loss, torch.Tensor)
        ref.zero_grad()
        ref.step(lambda step=step: _backward(ref_model, step, torch.float64))
        assert all(p.grad is not None for g in opt.param_groups for p in g["params"])
    opt.zero_grad()
    assert all(p.grad is None for g in opt.param_groups for p in g["params"])
    assert model[2].weight.grad is not None  # not the optimizer's
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert (
        ref.state_dict()["param_groups"][1]["param_names"]
        == opt.state_dict()["param_groups"][1]["param_names"]
    )


def test_parameters_without_grad_are_skipped_and_requires_grad_false_accepted() -> None:
    frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    used = torch.nn.Parameter(torch.zeros(3))
    opt = fot.Adam([frozen, used], lr=0.1)
    ref_used = torch.nn.Parameter(torch.zeros(3))
    ref = torch.optim.Adam([torch.nn.Parameter(torch.ones(3), requires_grad=False), ref_used], lr=0.1)
    for _ in range(3):
        used.grad = torch.full((3,), 0.5)
        ref_used.grad = torch.full((3,), 0.5)
        opt.step()
        ref.step()
    assert torch.equal(frozen, torch.ones(3)) and frozen not in opt.state
    torch.testing.assert_close(used, ref_used)
    assert opt.state[used]["step"].item() == 3.0 and opt.state[used]["step"].dtype == torch.float32


def test_schedulers_hooks_and_grad_scaler_drive_it() -> None:
    model, ref_model = _model(torch.float32), _model(torch.float32)
    opt = fot.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(ref_model.parameters(), lr=1e-2, foreach=False)
    scheds = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=30) for o in (opt, ref)]
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0**10) for _ in range(2)]
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    for step in range(1, 13):
        for o, m, s, sc in ((opt, model, scheds[0], scalers[0]), (ref, ref_model, scheds[1], scalers[1])):
            o.zero_grad()
            x, y = _batch(step, torch.float32)
            loss = torch.nn.functional.mse_loss(m(x), y)
            if step == 5:
                loss = loss * float("inf")  # an overflow: GradScaler skips the step, lowers the scale
            sc.scale(loss).backward()
            sc.step(o)
            sc.update()
            s.step()
        assert opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
        assert opt.param_groups[0]["betas"] == ref.param_groups[0]["betas"]
        for p, q in zip(model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert scalers[0].get_scale() == scalers[1].get_scale() < 2.0**10
    assert calls == ["pre", "post"] * 11  # step 5 was skipped by the scaler


def test_state_dict_survives_torch_save_and_weights_only_load() -> None:
    model = _model(torch.float32)
    opt = fot.NAdam(model.parameters(), lr=1e-2)
    for step in range(1, 4):
        opt.zero_grad()
        _backward(model, step, torch.float32)
        opt.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["optimizer"]
    ref = torch.optim.NAdam(copy.deepcopy(model).parameters())
    ref.load_state_dict(loaded)
    st = loaded["state"][0]
    assert sorted(st) == ["exp_avg", "exp_avg_sq", "mu_product", "step"]
    assert st["step"].dtype == torch.float32 and st["mu_product"].dtype == torch.float32
    fresh = fot.NAdam(model.parameters())
    fresh.load_state_dict(loaded)
    assert fresh.param_groups[0]["lr"] == 1e-2
    for p in model.parameters():
        assert torch.equal(fresh.state[p]["exp_avg"], opt.state[p]["exp_avg"])


def test_bfloat16_state_is_a_bfloat16_tensor_view() -> None:
    p = torch.nn.Parameter(torch.linspace(-1, 1, 40))
    opt = fot.Adam([p], lr=1e-2, state_dtype="bfloat16")
    p.grad = torch.linspace(1, 2, 40)
    opt.step()
    exp_avg = opt.state[p]["exp_avg"]
    assert exp_avg.dtype == torch.bfloat16
    torch.testing.assert_close(exp_avg.float(), 0.1 * p.grad, rtol=1e-2, atol=0)
    ref = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())])
    ref.load_state_dict(opt.state_dict())  # torch casts the state to the parameter's dtype
    assert ref.state[ref.param_groups[0]["params"][0]]["exp_avg"].dtype == torch.float32


def test_add_param_group_and_replaced_data() -> None:
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2))
    opt = fot.Adagrad([a], lr=0.5, initial_accumulator_value=0.1)
    opt.add_param_group({"params": b, "lr": 0.25})
    assert sorted(opt.state[b]) == ["step", "sum"] and torch.equal(opt.state[b]["sum"], torch.full((2,), 0.1))
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": -1.0})
    assert len(opt.param_groups) == 2
    a.data = torch.ones(3)  # a new tensor behind the parameter, as model.load_state_dict(assign=True) does
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    opt.step()
    expected = 1.0 - 0.5 * 1.0 / (np.sqrt(1.1) + 1e-10)
    torch.testing.assert_close(a.detach(), torch.full((3,), expected, dtype=torch.float32))
    assert opt.state[a]["step"].item() == 1.0


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.float16)),
        lambda: torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16)),
        lambda: torch.nn.Parameter(torch.zeros(3, device="meta")),
        lambda: torch.zeros(3, 3).to_sparse().requires_grad_(),
        lambda: torch.zeros(3, requires_grad=True) * 2,
        lambda: np.zeros(3),
    ],
    ids=["float16", "bfloat16", "meta", "sparse", "non-leaf", "ndarray"],
)
def test_refused_parameters(make: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as err:
        fot.Adam([torch.nn.Parameter(torch.zeros(2)), make()])
    assert "param_groups[0]['params'][1]" in str(err.value)


def test_refused_gradients_change_nothing() -> None:
    model = _model(torch.float32)
    opt = fot.Adam(model.parameters(), lr=1e-2)
    for step in (1, 2):
        opt.zero_grad()
        _backward(model, step, torch.float32)
        opt.step()
    last = list(model.parameters())[-1]
    bad = [
        (torch.float64, None, TypeError),  # another dtype
        (None, (7,), ValueError),  # another shape
    ]
    for dtype, shape, error in bad:
        opt.zero_grad()
        _backward(model, 3, torch.float32)
        before = _snapshot(opt, model)
        last.grad.data = torch.zeros(shape or last.shape, dtype=dtype or last.dtype)
        with pytest.raises(error):
            opt.step()
        _assert_unchanged(before, opt, model)
    emb = torch.nn.Embedding(5, 3, sparse=True)
    opt = fot.SGD(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    before = emb.weight.detach().clone()
    with pytest.raises(TypeError, match="sparse"):
        opt.step()
    assert torch.equal(emb.weight.detach(), before)


def test_numpy_api_names_ferroptim_torch_for_tensors() -> None:
    with pytest.raises(TypeError, match="ferroptim.torch"):
        fo.Adam(torch.nn.Linear(2, 2).parameters())
    w = np.zeros(2)
    with pytest.raises(TypeError, match="got torch.Tensor .*ferroptim.torch"):
        fo.Adam([w]).step(grads=[torch.ones(2, dtype=torch.float64)])
    assert not w.any()


def test_pickling_is_refused_with_a_pointer_to_state_dict() -> None:
    opt = fot.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(TypeError, match="state_dict"):
        copy.deepcopy(opt)


def test_readme_example_runs(tmp_path: Any, monkeypatch: Any) -> None:
    """The README's ferroptim.torch example trains, and torch.optim.AdamW loads its checkpoint."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## torch models: `ferroptim.torch`") :]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    ref = torch.optim.AdamW(namespace["model"].parameters())
    ref.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    assert ref.state_dict()["state"][0]["step"].item() == 100.0


def test_state_dict_hooks_run_as_torchs() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    opt = fot.RMSprop([p], lr=0.1, momentum=0.5)
    p.grad = torch.ones(3)
    opt.step()
    seen: list[str] = []
    opt.register_state_dict_pre_hook(lambda o: seen.append("sd pre"))
    opt.register_state_dict_post_hook(lambda o, sd: sd["param_groups"][0].update(tag=1) or sd)
    opt.register_load_state_dict_pre_hook(lambda o, sd: seen.append("load pre"))
    opt.register_load_state_dict_post_hook(lambda o: seen.append("load post"))
    sd = opt.state_dict()
    assert sd["param_groups"][0]["tag"] == 1 and sorted(sd["state"][0]) == [
        "momentum_buffer",
        "square_avg",
        "step",
    ]
    opt.load_state_dict(copy.deepcopy(sd))
    assert seen == ["sd pre", "load pre", "load post"]
    assert opt.param_groups[0]["tag"] == 1 and opt.state[p]["step"].item() == 1.0


def test_in_step_clipping_and_skipping_match_torchs_clip_then_step() -> None:
    model, ref_model = _model(torch.float64), _model(torch.float64)
    opt = fot.Adam(model.parameters(), lr=1e-2, max_grad_norm=0.5, skip_nonfinite=True)
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2, foreach=False)
    for step in range(1, 6):
        for o, m in ((opt, model), (ref, ref_model)):
            o.zero_grad()
            _backward(m, step, torch.float64)
        torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 0.5)
        opt.step()
        ref.step()
        for p, q in zip(model.parameters(), ref_model.parameters()):
            _assert_close(p, q, torch.float64, f"step {step}")
    opt.zero_grad()
    _backward(model, 6, torch.float64)
    next(model.parameters()).grad[0, 0] = float("nan")
    before = _snapshot(opt, model)
    opt.step()
    assert opt.last_step_skipped and opt.skipped_steps == 1
    _assert_unchanged(before, opt, model)


def test_a_step_bumps_the_version_as_torchs_in_place_update() -> None:
    """A backward through a graph that saved a parameter's value from before the step is
    refused, as with torch.optim (the kernel writes the memory behind autograd's back)."""
    for lib in (torch.optim, fot):
        w = torch.nn.Parameter(torch.ones(3))
        opt = lib.SGD([w], lr=0.1)
        loss = (w * w).sum()  # saves w
        w.grad = torch.ones(3)
        opt.step()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


# --- the user's edits of opt.state and param_groups, as torch.optim takes them -----------------


def _edit_and_step(module: Any, edit: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = module.Adam([p], lr=0.1)
    for _ in range(3):
        p.grad = torch.full((3,), 5.0)
        opt.step()
    edit(opt, p)
    for _ in range(2):
        p.grad = torch.ones(3)
        opt.step()
    return p.detach().clone(), opt.state_dict()["state"]


STATE_EDITS = {
    "del opt.state[p]": lambda opt, p: opt.state.__delitem__(p),
    "opt.state.clear()": lambda opt, p: opt.state.clear(),
    "opt.state[p] = {}": lambda opt, p: opt.state.__setitem__(p, {}),
    "opt.state = defaultdict(dict)": lambda opt, p: setattr(
        opt, "state", __import__("collections").defaultdict(dict)
    ),
    "exp_avg replaced": lambda opt, p: opt.state[p].__setitem__("exp_avg", torch.full((3,), 0.25)),
    "step replaced": lambda opt, p: opt.state[p].__setitem__("step", torch.tensor(10.0)),
}


@pytest.mark.parametrize("edit", list(STATE_EDITS))
def test_edited_state_is_what_the_next_step_uses(edit: str) -> None:
    """Deleting or emptying a parameter's state restarts it, and a state tensor put in place
    of another is used, as in torch.optim; the state dict then holds what the kernel uses."""
    ours, our_state = _edit_and_step(fot, STATE_EDITS[edit])
    ref, ref_state = _edit_and_step(torch.optim, STATE_EDITS[edit])
    torch.testing.assert_close(ours, ref)
    assert our_state.keys() == ref_state.keys()
    for i in ref_state:
        assert our_state[i].keys() == ref_state[i].keys()
        for key in ref_state[i]:
            torch.testing.assert_close(our_state[i][key], ref_state[i][key], msg=f"{edit}: {key}")


def test_a_parameter_swapped_in_the_params_list_is_the_one_updated() -> None:
    results = []
    for module in (torch.optim, fot):
        a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
        opt = module.SGD([a], lr=1.0)
        a.grad = torch.ones(3)
        opt.step()
        opt.param_groups[0]["params"][0] = b
        a.grad, b.grad = torch.ones(3), torch.ones(3)
        opt.step()
        results.append((a.detach().clone(), b.detach().clone()))
    torch.testing.assert_close(results[1], results[0])
