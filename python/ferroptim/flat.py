"""Flat parameter buffers: every parameter a view into one contiguous array, every
gradient a view into a second one (the layout of DeepSpeed's CPU Adam and apex).

An optimizer over ``flat.param``, the whole buffer as one parameter, steps two big
arrays (and its state, flat too) in one kernel call, however many tensors the model
has; ``flat.grad`` is one array to clip or all-reduce.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .parameter import FLOAT_DTYPES, Parameter, refuse_masked


class BufferedParameter(Parameter):
    """A :class:`Parameter` whose gradient lives in a slot of a gradient buffer.

    ``p.grad`` is always that slot (a view of the buffer). Assigning an array copies
    it in (same shape and dtype required); assigning ``None`` (as ``zero_grad`` does)
    fills the slot with zeros, so a buffered parameter always has a gradient.
    """

    @property
    def grad(self) -> np.ndarray | None:
        """The gradient slot, a view of the flat gradient buffer."""
        return self.__dict__.get("_grad")

    @grad.setter
    def grad(self, value: np.ndarray | None) -> None:
        slot = self.__dict__.get("_grad")
        if slot is None:  # construction: bind the slot
            self.__dict__["_grad"] = value
            return
        if value is None:
            slot[...] = 0
            return
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            raise TypeError(f"grad must be a numpy.ndarray or None, got {type(value).__name__}")
        refuse_masked(value, "grad")
        if value.dtype != self.dtype:
            raise TypeError(f"grad has dtype {value.dtype}, but the parameter has {self.dtype}")
        if value.shape != self.shape:
            raise ValueError(f"grad has shape {value.shape}, but the parameter has {self.shape}")
        if value is not slot:
            slot[...] = value


def _buffered(data: np.ndarray, grad: np.ndarray) -> BufferedParameter:
    p = np.ndarray.view(data, BufferedParameter)
    p.__dict__["_grad"] = None
    p.grad = grad
    return p


class FlatParameters:
    """Parameters laid out in one contiguous buffer, and their gradients in another.

    Built by :func:`flatten_parameters`. Attributes:

    * ``data``, ``grad``: the two 1-D buffers;
    * ``params``: one :class:`BufferedParameter` per input array, in order (a view of
      ``data`` with the input's shape, whose ``.grad`` is the matching view of ``grad``);
      use these in the model;
    * ``param``: the whole ``data`` buffer as one :class:`BufferedParameter` whose
      ``.grad`` is ``grad``; give it to the optimizer;
    * ``names``: the names, when built from a mapping or ``(name, array)`` pairs;
    * ``slices``: where each parameter sits in the buffers.
    """

    def __init__(
        self, data: np.ndarray, grad: np.ndarray, shapes: list[tuple[int, ...]], names: list[str] | None
    ):
        self.data, self.grad, self.names = data, grad, names
        self.slices: list[slice] = []
        start = 0
        for shape in shapes:
            size = int(np.prod(shape, dtype=np.int64))
            self.slices.append(slice(start, start + size))
            start += size
        self.params = [
            _buffered(data[s].reshape(shape), grad[s].reshape(shape)) for s, shape in zip(self.slices, shapes)
        ]
        self.param = _buffered(data, grad)

    def unflatten(self, buffer: np.ndarray) -> list[np.ndarray]:
        """Views of a flat array laid out like ``data`` (a state buffer of an optimizer over
        ``param``, say), one per parameter with its shape."""
        buffer = np.asarray(buffer)
        if buffer.shape != self.data.shape:
            raise ValueError(f"expected an array of shape {self.data.shape}, got {buffer.shape}")
        return [buffer[s].reshape(p.shape) for s, p in zip(self.slices, self.params)]

    def zero_grad(self) -> None:
        """Sets every gradient to zero, in one pass over the gradient buffer."""
        self.grad[...] = 0

    def __iter__(self) -> Iterator[BufferedParameter]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __repr__(self) -> str:
        return (
            f"FlatParameters({len(self.params)} parameters, {self.data.size} elements of {self.data.dtype})"
        )


def flatten_parameters(arrays: Iterable[Any] | Mapping[str, Any], dtype: Any = None) -> FlatParameters:
    """Copies ``arrays`` into one contiguous buffer and returns the parameters as views of
    it, with their gradients as views of a second buffer (zeros to start with).

    ``arrays`` is a sequence of arrays (or ``fo.Parameter``s), a mapping of names to
    arrays, or ``(name, array)`` pairs. All must have one floating dtype, float32 or
    float64, unless ``dtype`` is given, to which all are cast. The inputs are left as they
    were: train with ``flat.params`` (in the model) and ``flat.param`` (in the optimizer).

    >>> import numpy as np, ferroptim as fo
    >>> flat = fo.flatten_parameters({"W": np.ones((3, 2)), "b": np.zeros(2)})
    >>> W, b = flat.params
    >>> opt = fo.Adam([flat.param], lr=1e-3)   # one tensor, however many parameters
    >>> W.grad = np.full((3, 2), 0.5); b.grad = np.ones(2); opt.step()
    """
    if isinstance(arrays, np.ndarray):
        raise TypeError("flatten_parameters takes a sequence or mapping of arrays, not one array")
    items: list[Any] = list(arrays.items()) if isinstance(arrays, Mapping) else list(arrays)
    named = [isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in items]
    if any(named) and not all(named):
        raise ValueError("give all arrays with names or none")
    names = [n for n, _ in items] if items and all(named) else None
    given = [a for _, a in items] if names is not None else items
    if not given:
        raise ValueError("flatten_parameters needs at least one array")
    for i, a in enumerate(given):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"array {i} must be a numpy.ndarray, got {type(a).__name__}")
        refuse_masked(a, f"array {i}")
    values: list[np.ndarray] = [np.ndarray.view(a, np.ndarray) for a in given]
    if dtype is None:
        dtypes = {a.dtype for a in values}
        if len(dtypes) > 1:
            raise TypeError(
                f"arrays have several dtypes ({', '.join(sorted(map(str, dtypes)))}): pass dtype=, "
                "or flatten each dtype apart"
            )
        target = values[0].dtype
    else:
        target = np.dtype(dtype)
    if target not in FLOAT_DTYPES:
        raise TypeError(f"flat buffers need float32 or float64, got {target}")
    shapes = [tuple(a.shape) for a in values]
    total = sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
    data = np.empty(total, dtype=target)
    grad = np.zeros(total, dtype=target)
    start = 0
    for a in values:
        data[start : start + a.size] = a.reshape(-1)
        start += a.size
    return FlatParameters(data, grad, shapes, names)
