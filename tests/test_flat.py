"""Flat parameter buffers (``fo.flatten_parameters``): views, gradient slots, and an
optimizer over the whole buffer against torch.optim over the separate tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ferroptim as fo

SHAPES = [(4, 3), (3,), (), (2, 0), (5, 1, 2)]


def _arrays(rng, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def test_params_are_views_of_one_buffer_with_the_inputs_values(rng):
    arrays = _arrays(rng)
    flat = fo.flatten_parameters(arrays)
    assert flat.data.shape == flat.grad.shape == (sum(a.size for a in arrays),)
    assert flat.data.flags.c_contiguous and flat.grad.flags.c_contiguous
    for a, p, s in zip(arrays, flat.params, flat.slices):
        assert isinstance(p, fo.Parameter) and p.shape == a.shape
        np.testing.assert_array_equal(p, a)
        np.testing.assert_array_equal(flat.data[s], a.reshape(-1))
        assert p.size == 0 or np.shares_memory(p, flat.data)
        assert p.size == 0 or np.shares_memory(p.grad, flat.grad)
        assert not np.shares_memory(p, a)  # the inputs are copied, not aliased
    assert np.shares_memory(flat.param, flat.data) and flat.param.grad is flat.grad


def test_assigning_a_gradient_copies_it_into_the_buffer(rng):
    flat = fo.flatten_parameters(_arrays(rng))
    W = flat.params[0]
    g = rng.standard_normal(W.shape)
    W.grad = g
    np.testing.assert_array_equal(flat.grad[flat.slices[0]], g.reshape(-1))
    assert np.shares_memory(W.grad, flat.grad) and not np.shares_memory(W.grad, g)
    W.grad = None  # zero_grad's way: the slot is zeroed and stays bound
    assert W.grad is not None and not W.grad.any()
    with pytest.raises(ValueError, match="shape"):
        W.grad = np.zeros(3)
    with pytest.raises(TypeError, match="dtype"):
        W.grad = np.zeros(W.shape, np.float32)
    flat.params[2].grad = np.float64(2.5)  # a 0-d parameter takes a NumPy scalar
    assert flat.grad[flat.slices[2]][0] == 2.5
    flat.zero_grad()
    assert not flat.grad.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adam", dict(lr=0.01, weight_decay=0.1)),
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("RMSprop", dict(lr=0.01, centered=True)),
        ("Adagrad", dict(lr=0.1)),
    ],
)
def test_one_step_over_the_buffer_is_torch_over_the_tensors(name, kwargs, dtype, rng):
    arrays = _arrays(rng, dtype)
    flat = fo.flatten_parameters(arrays)
    ours = getattr(fo, name)([flat.param], **kwargs)
    separate = [fo.Parameter(a.copy()) for a in arrays]
    per_tensor = getattr(fo, name)(separate, **kwargs)
    tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    theirs = getattr(torch.optim, name)(tensors, **kwargs)
    for _ in range(5):
        grads = [rng.standard_normal(a.shape).astype(dtype) for a in arrays]
        for p, q, t, g in zip(flat.params, separate, tensors, grads):
            p.grad, q.grad, t.grad = g, g.copy(), torch.from_numpy(g.copy())
        ours.step()
        per_tensor.step()
        theirs.step()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for p, q, t in zip(flat.params, separate, tensors):
        np.testing.assert_array_equal(p, q)  # elementwise updates: the layout changes no bit
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=rtol, atol=rtol)
    state = ours.state[flat.param]
    key = next(k for k, v in state.items() if isinstance(v, np.ndarray))
    for view, q in zip(flat.unflatten(state[key]), separate):
        np.testing.assert_array_equal(view, per_tensor.state[q][key])


def test_the_views_work_with_an_optimizer_and_clipping_too(rng):
    flat = fo.flatten_parameters({"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)})
    assert flat.names == ["W", "b"]
    opt = fo.SGD(flat.params, lr=0.1)
    for p in flat.params:
        p.grad = np.ones(p.shape)
    before = flat.data.copy()
    opt.step()
    np.testing.assert_allclose(flat.data, before - 0.1)
    total = fo.clip_grad_norm_(flat.param, max_norm=1.0)
    assert total == pytest.approx(np.sqrt(8)) and np.linalg.norm(flat.grad) == pytest.approx(1.0, rel=1e-5)
    opt.zero_grad()
    assert not flat.grad.any()


@pytest.mark.parametrize(
    "arrays, kwargs, error, match",
    [
        ([], {}, ValueError, "at least one"),
        ([np.zeros(2), np.zeros(2, np.float32)], {}, TypeError, "several dtypes"),
        ([np.zeros(2, np.int64)], {}, TypeError, "float32 or float64"),
        ([np.zeros(2), [1.0]], {}, TypeError, "array 1"),
        ([("a", np.zeros(2)), np.zeros(2)], {}, ValueError, "names"),
        (np.zeros(3), {}, TypeError, "not one array"),
    ],
)
def test_bad_input_is_refused(arrays, kwargs, error, match):
    with pytest.raises(error, match=match):
        fo.flatten_parameters(arrays, **kwargs)


def test_dtype_casts_mixed_inputs(rng):
    flat = fo.flatten_parameters([np.ones(2), np.ones(3, np.float32)], dtype=np.float32)
    assert flat.data.dtype == np.float32 and all(p.dtype == np.float32 for p in flat.params)
    with pytest.raises(ValueError, match="shape"):
        flat.unflatten(np.zeros(4))
