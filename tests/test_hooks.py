"""Optimizer hooks, side by side with torch.optim's.

Every scenario registers the same hooks on a ferroptim and a torch optimizer (and the
global hooks of ``torch.optim.optimizer`` / ``ferroptim.optimizer``) and compares what the
hooks saw and in which order: step pre/post hooks (argument passing, replacement of the
arguments, the error for a bad return value, removal by handle and ``with``), state-dict
and load-state-dict pre/post hooks (``prepend``, returned replacements). Also: a
subclass's own ``step`` runs the hooks once, and copies of an optimizer carry no hooks.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.optim.optimizer as torch_optimizer

import ferroptim as fo
import ferroptim.optimizer as fo_optimizer


def pair() -> tuple[fo.SGD, torch.optim.SGD, fo.Parameter, torch.nn.Parameter]:
    p = fo.Parameter(np.array([1.0, 2.0]), np.array([0.5, -1.0]))
    tp = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    tp.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    return fo.SGD([p], lr=0.1), torch.optim.SGD([tp], lr=0.1), p, tp


def record(log: list[str], label: str, result: Any = None) -> Callable[..., Any]:
    def hook(*args: Any) -> Any:
        log.append(label)
        return result

    return hook


def describe(args: tuple[Any, ...], kwargs: dict[str, Any], opt: Any) -> tuple[Any, ...]:
    """What a step hook saw, in library-neutral terms."""
    return (args[0] is opt, len(args), sorted(kwargs), [type(a).__name__ == "function" for a in args[1:]])


def test_step_hooks_run_in_torchs_order_with_torchs_arguments():
    logs: dict[str, list[Any]] = {}
    for lib, (opt, module) in {
        "fo": (pair()[0], fo_optimizer),
        "torch": (pair()[1], torch_optimizer),
    }.items():
        log: list[Any] = []
        handles = [
            module.register_optimizer_step_pre_hook(record(log, "global pre")),
            module.register_optimizer_step_post_hook(record(log, "global post")),
            opt.register_step_post_hook(record(log, "post 1")),
            opt.register_step_pre_hook(record(log, "pre 1")),
            opt.register_step_pre_hook(record(log, "pre 2")),
            opt.register_step_post_hook(record(log, "post 2")),
            opt.register_step_pre_hook(lambda o, a, k, log=log, opt=opt: log.append(describe(a, k, opt))),
        ]
        try:
            opt.step()
            log.append("--")
            opt.step(lambda: 1.0)
            log.append("--")
            opt.step(closure=lambda: 1.0)
        finally:
            for handle in handles:
                handle.remove()
        logs[lib] = log
    assert logs["fo"] == logs["torch"]
    assert logs["fo"][:4] == ["global pre", "pre 1", "pre 2", (True, 1, [], [])]
    assert logs["fo"][4:7] == ["post 1", "post 2", "global post"]


def test_pre_hook_can_replace_the_arguments():
    opt, topt, p, tp = pair()

    def closure_returning(value: float) -> Callable[[], float]:
        return lambda: value

    for o in (opt, topt):
        o.register_step_pre_hook(lambda o, args, kwargs: (args, {"closure": closure_returning(42.0)}))
    assert opt.step() == topt.step() == 42.0
    np.testing.assert_array_equal(p, tp.detach().numpy())
    # ferroptim's grads= can be swapped too
    q = np.zeros(2)
    sgd = fo.SGD([q], lr=1.0)
    sgd.register_step_pre_hook(lambda o, args, kwargs: (args, {"grads": [np.array([1.0, 2.0])]}))
    sgd.step(grads=[np.array([100.0, 100.0])])
    np.testing.assert_array_equal(q, [-1.0, -2.0])


def test_a_bad_pre_hook_return_is_torchs_runtime_error_and_changes_nothing():
    opt, topt, p, tp = pair()
    for o in (opt, topt):
        o.register_step_pre_hook(lambda o, args, kwargs: 5)
    with pytest.raises(
        RuntimeError, match=r"must return None or a tuple of \(new_args, new_kwargs\), but got 5"
    ):
        opt.step()
    with pytest.raises(
        RuntimeError, match=r"must return None or a tuple of \(new_args, new_kwargs\), but got 5"
    ):
        topt.step()
    np.testing.assert_array_equal(p, [1.0, 2.0])


def test_post_hooks_see_the_updated_parameters():
    opt, _, p, _ = pair()
    seen = []
    opt.register_step_post_hook(lambda o, a, k: seen.append(p.copy()))
    opt.step()
    np.testing.assert_allclose(seen[0], [1.0 - 0.1 * 0.5, 2.0 + 0.1], rtol=1e-15)


def test_handles_remove_hooks():
    for opt, module in ((pair()[0], fo_optimizer), (pair()[1], torch_optimizer)):
        log: list[str] = []
        kept = opt.register_step_pre_hook(record(log, "kept"))
        gone = opt.register_step_pre_hook(record(log, "gone"))
        gone.remove()
        gone.remove()  # a second removal is harmless
        with opt.register_step_post_hook(record(log, "scoped")):
            opt.step()
        opt.step()
        with module.register_optimizer_step_pre_hook(record(log, "global")):
            opt.step()
        opt.step()
        kept.remove()
        opt.step()
        assert log == ["kept", "scoped", "kept", "global", "kept", "kept"], type(opt)
        assert gone.id != kept.id


def test_a_hook_may_remove_itself():
    opt, _, _, _ = pair()
    log: list[str] = []
    handles: list[Any] = []

    def once(o: Any, args: Any, kwargs: Any) -> None:
        log.append("once")
        handles[0].remove()

    handles.append(opt.register_step_pre_hook(once))
    opt.register_step_pre_hook(record(log, "always"))
    opt.step()
    opt.step()
    assert log == ["once", "always", "always"]


def test_global_hooks_apply_to_every_optimizer():
    log: list[str] = []
    a, b = fo.SGD([np.zeros(1)], lr=0.1), fo.Adam([np.zeros(1)], lr=0.1)
    with fo_optimizer.register_optimizer_step_post_hook(lambda o, args, kwargs: log.append(type(o).__name__)):
        a.step(grads=[np.ones(1)])
        b.step(grads=[np.ones(1)])
    a.step(grads=[np.ones(1)])
    assert log == ["SGD", "Adam"]


def test_a_subclass_step_runs_the_hooks_once():
    class Counting(fo.SGD):
        """SGD that counts its steps."""

        calls = 0

        def step(self, closure: Any = None, *, grads: Any = None) -> Any:
            type(self).calls += 1
            return super().step(closure, grads=grads)

    opt = Counting([np.zeros(2)], lr=0.1)
    log: list[str] = []
    opt.register_step_pre_hook(record(log, "pre"))
    opt.register_step_post_hook(record(log, "post"))
    opt.step(grads=[np.ones(2)])
    assert log == ["pre", "post"] and Counting.calls == 1


def test_copies_carry_no_hooks_as_torch():
    opt, topt, _, _ = pair()
    log: list[str] = []
    for o in (opt, topt):
        o.register_step_pre_hook(record(log, "hook"))
    for o in (opt, topt):
        copy.deepcopy(o).step()
    restored = pickle.loads(pickle.dumps(opt))
    restored.step()
    assert log == []
    assert restored.register_step_pre_hook(record(log, "new")) is not None


def test_state_dict_hooks_as_torch():
    results = {}
    for lib, opt in (("fo", pair()[0]), ("torch", pair()[1])):
        log: list[str] = []
        opt.register_state_dict_pre_hook(record(log, "pre 1"))
        opt.register_state_dict_pre_hook(record(log, "pre 0"), prepend=True)

        def add_note(o: Any, sd: dict[str, Any], log: list[str] = log) -> None:
            log.append("post edits")
            sd["note"] = "edited"

        def replace(o: Any, sd: dict[str, Any], log: list[str] = log) -> dict[str, Any]:
            log.append("post replaces")
            return {**sd, "replaced": True}

        opt.register_state_dict_post_hook(add_note)
        opt.register_state_dict_post_hook(replace, prepend=True)
        sd = opt.state_dict()
        results[lib] = (log, sd.get("note"), sd.get("replaced"))
    assert results["fo"] == results["torch"]
    assert results["fo"] == (["pre 0", "pre 1", "post replaces", "post edits"], "edited", True)


def test_load_state_dict_hooks_as_torch():
    results = {}
    for lib, (opt, sd) in {
        "fo": (pair()[0], pair()[0].state_dict()),
        "torch": (pair()[1], pair()[1].state_dict()),
    }.items():
        log: list[Any] = []
        sd["param_groups"][0]["lr"] = 0.5

        def pre(o: Any, loaded: dict[str, Any], log: list[Any] = log, original: Any = sd) -> dict[str, Any]:
            log.append(("pre sees a copy", loaded is not original, loaded == original))
            groups = [{**g, "lr": 0.25} for g in loaded["param_groups"]]
            return {**loaded, "param_groups": groups}

        opt.register_load_state_dict_pre_hook(pre)
        opt.register_load_state_dict_pre_hook(record(log, "first"), prepend=True)
        opt.register_load_state_dict_post_hook(
            lambda o, log=log: log.append(("post", o.param_groups[0]["lr"]))
        )
        opt.load_state_dict(sd)
        results[lib] = log
    assert results["fo"] == results["torch"]
    assert results["fo"] == ["first", ("pre sees a copy", True, True), ("post", 0.25)]


def test_load_pre_hook_can_rename_parameters_for_match_by_names():
    source = fo.SGD({"layer.w": np.zeros(2), "layer.b": np.zeros(1)}, lr=0.1, momentum=0.9)
    source.step(grads=[np.ones(2), np.ones(1)])
    target = fo.SGD({"encoder.b": np.zeros(1), "encoder.w": np.zeros(2)}, lr=0.1, momentum=0.9)

    def rename(o: Any, sd: dict[str, Any]) -> dict[str, Any]:
        groups = [
            {**g, "param_names": [n.replace("layer.", "encoder.") for n in g["param_names"]]}
            for g in sd["param_groups"]
        ]
        return {**sd, "param_groups": groups}

    target.register_load_state_dict_pre_hook(rename)
    target.load_state_dict(source.state_dict(), match="names")
    w = target.param_groups[0]["params"][1]
    np.testing.assert_array_equal(target.state[w]["momentum_buffer"], np.ones(2))


def test_hooks_must_be_callable():
    opt = fo.SGD([np.zeros(1)], lr=0.1)
    with pytest.raises(TypeError, match="hook must be callable"):
        opt.register_step_pre_hook(3)  # type: ignore[arg-type]
