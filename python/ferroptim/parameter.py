"""``Parameter``: a NumPy array that carries its gradient, like ``torch.nn.Parameter``."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def refuse_masked(value: Any, what: str) -> None:
    """Raises ``TypeError`` for a ``numpy.ma.MaskedArray`` (``np.ma.masked`` included),
    whose mask ferroptim would ignore; the Rust core refuses one handed to a step or a
    clipping function in the same words."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{what} {_core.MASKED}")


def _plain(x: Any) -> Any:
    """``x`` as a plain ndarray when it is a ``Parameter``; anything else unchanged."""
    return np.ndarray.view(x, np.ndarray) if isinstance(x, Parameter) else x


class Parameter(np.ndarray):
    """A float32/float64 array that an optimizer updates in place, with a ``.grad``.

    ``Parameter(a)`` wraps the ndarray ``a`` without copying: ``np.shares_memory(a, p)``
    holds and every optimizer update is visible through ``a``. ``p.grad`` is ``None``
    until set, and must then be an array (or, for a 0-d parameter, a NumPy scalar) of ``p``'s
    shape and dtype.

    Arithmetic, indexing and NumPy functions on a ``Parameter`` return plain ndarrays,
    just as operations on a ``torch.nn.Parameter`` return plain tensors; in-place
    operations (``p -= 1``) keep the ``Parameter``.

    Args:
        data: a writeable float32 or float64 ``numpy.ndarray`` (wrapped, not copied),
            or anything ``np.asarray`` turns into one (copied).
        grad: an optional initial gradient.
    """

    __hash__ = object.__hash__  # type: ignore[assignment]  # by identity, as torch's; == stays elementwise

    def __new__(cls, data: Any, grad: np.ndarray | None = None) -> Parameter:
        refuse_masked(data, "data")
        array = data if isinstance(data, np.ndarray) else np.asarray(data)
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter needs a float32 or float64 array, got dtype {array.dtype}")
        self = array.view(cls)
        self.grad = grad
        return self

    def __array_finalize__(self, obj: Any) -> None:
        self.__dict__.setdefault("_grad", None)

    @property
    def grad(self) -> np.ndarray | None:
        """The gradient the next ``step()`` uses, or ``None``."""
        return self.__dict__.get("_grad")

    @grad.setter
    def grad(self, value: np.ndarray | None) -> None:
        if isinstance(value, np.generic):
            value = np.asarray(value)  # arithmetic on 0-d arrays yields NumPy scalars
        if value is not None:
            if not isinstance(value, np.ndarray):
                raise TypeError(f"grad must be a numpy.ndarray or None, got {type(value).__name__}")
            refuse_masked(value, "grad")
            if value.dtype != self.dtype:
                raise TypeError(f"grad has dtype {value.dtype}, but the parameter has {self.dtype}")
            if value.shape != self.shape:
                raise ValueError(f"grad has shape {value.shape}, but the parameter has {self.shape}")
        self.__dict__["_grad"] = value

    @property
    def data(self) -> np.ndarray:  # type: ignore[override]
        """The values as a plain ndarray view (torch's ``p.data``)."""
        return self.view(np.ndarray)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + repr(self.view(np.ndarray))

    # --- results are plain arrays -------------------------------------------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*(_plain(x) for x in inputs), **kwargs)
        if out is not None:
            # In place (p -= 1, np.add(a, b, out=p)): hand back the caller's objects.
            return out[0] if len(out) == 1 else out
        return result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        result = super().__array_function__(func, types, args, kwargs)
        if kwargs.get("out") is not None:
            return kwargs["out"]  # in place: hand back the caller's object
        return _plain(result)

    def __getitem__(self, key: Any) -> Any:
        return _plain(super().__getitem__(key))

    def copy(self, order: Any = "C") -> np.ndarray:  # type: ignore[override]
        """A copy of the values as a plain ndarray (torch's ``p.detach().clone()``)."""
        return self.view(np.ndarray).copy(order)

    def astype(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """``ndarray.astype``, returning a plain ndarray."""
        return self.view(np.ndarray).astype(*args, **kwargs)

    def reshape(self, *args: Any, **kwargs: Any) -> np.ndarray:  # type: ignore[override]
        """``ndarray.reshape``, returning a plain ndarray (a view where NumPy gives one)."""
        return self.view(np.ndarray).reshape(*args, **kwargs)

    def ravel(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """``ndarray.ravel``, returning a plain ndarray."""
        return self.view(np.ndarray).ravel(*args, **kwargs)

    def flatten(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """``ndarray.flatten``, returning a plain ndarray."""
        return self.view(np.ndarray).flatten(*args, **kwargs)

    def transpose(self, *axes: Any) -> np.ndarray:  # type: ignore[override]
        """``ndarray.transpose``, returning a plain ndarray view."""
        return self.view(np.ndarray).transpose(*axes)

    @property
    def T(self) -> np.ndarray:  # type: ignore[override]  # noqa: N802
        """The transposed values, as a plain ndarray view."""
        return self.view(np.ndarray).T

    # --- copies and pickles keep the gradient ---------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_parameter, (self.view(np.ndarray).copy(order="K"), self.grad))

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Parameter:
        grad = None if self.grad is None else self.grad.copy(order="K")
        return Parameter(self.view(np.ndarray).copy(order="K"), grad)


def _returns_plain(name: str) -> Any:
    method = getattr(np.ndarray, name)

    def plain(self: Parameter, *args: Any, **kwargs: Any) -> Any:
        return _plain(method(np.ndarray.view(self, np.ndarray), *args, **kwargs))

    plain.__name__ = plain.__qualname__ = name
    plain.__doc__ = method.__doc__
    return plain


# Array methods that are not ufuncs and would otherwise hand back a Parameter.
for _name in ("dot", "view", "swapaxes", "take", "diagonal", "squeeze", "repeat", "compress", "choose"):
    setattr(Parameter, _name, _returns_plain(_name))


def _rebuild_parameter(data: np.ndarray, grad: np.ndarray | None) -> Parameter:
    return Parameter(data, grad)
