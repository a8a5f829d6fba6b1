"""Gradient clipping, as ``torch.nn.utils``: ``clip_grad_norm_``, ``clip_grad_value_``,
``get_total_norm`` and ``clip_grads_with_norm_``.

The norms and the in-place scaling run in Rust (``src/kernels/clip.rs``) in one call,
without the GIL. Every gradient is checked (dtype, layout, writeable, no two sharing
memory) before any is read or written, so a bad input raises and changes nothing.
``os.fork()`` waits for these calls running in other threads (``_borrows``).
"""

from __future__ import annotations

import reprlib
import types
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import _core
from ._borrows import held
from .parameter import Parameter


def _number(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    except OverflowError:  # an int such as 10**400
        raise ValueError(f"{name} does not fit in a float: {reprlib.repr(value)}") from None


def _non_negative(value: Any, name: str) -> float:
    number = _number(value, name)
    if not number >= 0.0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def _norm_type(value: Any) -> float:
    # float() as torch does, so the string "inf" works too
    number = _number(value, "norm_type")
    if not number >= 0.0:
        raise ValueError(f"norm_type must be >= 0 or inf, got {number}")
    return number


def _check_foreach(foreach: Any) -> None:
    if foreach is not None and not isinstance(foreach, (bool, np.bool_)):
        raise TypeError(f"foreach must be None, True or False, got {foreach!r}")


def _gradients(parameters: Any, grads: Any) -> tuple[list[Any], list[str]]:
    """The gradient arrays to clip and their names for messages: the ``.grad`` of each
    :class:`Parameter` in ``parameters`` that has one, then each array in ``grads``."""
    arrays: list[Any] = []
    names: list[str] = []
    if parameters is None and grads is None:
        raise TypeError("pass parameters (ferroptim.Parameter objects) or grads= (gradient arrays)")
    if parameters is not None:
        if isinstance(parameters, np.ndarray) and not isinstance(parameters, Parameter):
            raise TypeError(
                "parameters is a plain numpy.ndarray, which has no .grad; wrap it in "
                "ferroptim.Parameter or pass its gradient with grads="
            )
        if isinstance(parameters, Parameter):
            items: list[tuple[str, Any]] = [("parameters", parameters)]
        elif isinstance(parameters, Mapping):
            items = [(f"parameters[{k!r}]", p) for k, p in parameters.items()]
        elif isinstance(parameters, Iterable):
            is_generator = isinstance(parameters, types.GeneratorType)
            items = [
                # (name, parameter) pairs, as an optimizer takes them, are named by their name
                (f"parameters[{p[0]!r}]", p[1])
                if isinstance(p, tuple) and len(p) == 2
                else (f"parameters[{i}]", p)
                for i, p in enumerate(parameters)
            ]
            if is_generator and not items:
                warnings.warn(
                    "`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=3
                )
        else:
            raise TypeError(f"parameters must be a Parameter or an iterable of them, got {type(parameters)}")
        for name, p in items:
            if not isinstance(p, Parameter):
                hint = (
                    "; wrap it in ferroptim.Parameter or pass its gradient with grads="
                    if isinstance(p, np.ndarray)
                    else ""
                )
                raise TypeError(f"{name} must be a ferroptim.Parameter, got {type(p).__name__}{hint}")
            if p.grad is not None:
                arrays.append(p.grad)
                names.append(f"{name}.grad")
    if grads is not None:
        if isinstance(grads, np.ndarray):
            grads = [grads]
        elif not isinstance(grads, Iterable):
            raise TypeError(f"grads must be an array or an iterable of arrays, got {type(grads).__name__}")
        for i, g in enumerate(grads):
            if g is not None:
                arrays.append(g)
                names.append(f"grads[{i}]")
    return arrays, names


def _norm(value: float, wide: bool) -> np.floating:
    """The norm as a NumPy scalar of torch's result dtype."""
    return np.float64(value) if wide else np.float32(value)


def get_total_norm(
    tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach: bool | None = None
) -> np.floating:
    r"""The norm of the norms of ``tensors``, as ``torch.nn.utils.get_total_norm``::

        N = || (||g_1||_p, ..., ||g_k||_p) ||_p

    that is, the ``p``-norm of all entries viewed as one vector, where ``||x||_p =
    (sum |x|^p)^(1/p)``, ``max |x|`` for ``p = inf`` and the number of nonzeros for
    ``p = 0``. Each array's norm is accumulated in float64 over pieces of fixed size
    merged in a fixed order (the same bits for any thread count) and rounded to the
    array's dtype, as torch's per-tensor norms are; the total is float64 when any array is
    float64, else float32. A NaN entry makes the norm NaN.

    Args:
        tensors: an array, or an iterable of float32/float64 arrays (read only).
        norm_type: ``p``; ``>= 0`` or ``inf`` (``"inf"`` works too). Default 2.
        error_if_nonfinite: raise ``RuntimeError`` when the norm is NaN or infinite.
        foreach: accepted for torch compatibility; ferroptim has one fused path.

    Returns:
        The total norm as a NumPy scalar, ``np.float32`` or ``np.float64`` like torch's
        0-d tensor (``float(norm)`` gives a Python float); 0.0 (float32) for no arrays.
    """
    _check_foreach(foreach)
    p = _norm_type(norm_type)
    if isinstance(tensors, np.ndarray):
        tensors = [tensors]
    elif not isinstance(tensors, Iterable):
        raise TypeError(f"tensors must be an array or an iterable of arrays, got {type(tensors).__name__}")
    # arithmetic on 0-d arrays yields NumPy scalars; read them as 0-d arrays
    arrays = [np.asarray(t) if isinstance(t, np.generic) else t for t in tensors]
    names = [f"tensors[{i}]" for i in range(len(arrays))]
    return _norm(*_core.call_holding(held(), _core.grad_norm, arrays, names, p, bool(error_if_nonfinite)))


def clip_grads_with_norm_(
    parameters: Any,
    max_norm: float,
    total_norm: Any,
    foreach: bool | None = None,
    *,
    grads: Any = None,
) -> None:
    r"""Scales gradients in place given their total norm, as
    ``torch.nn.utils.clip_grads_with_norm_``::

        g <- g * min(max_norm / (total_norm + 1e-6), 1)

    The coefficient is computed in ``total_norm``'s dtype (float32 for an ``np.float32``
    norm, else float64) and rounded to each gradient's dtype.

    Args:
        parameters: a :class:`~ferroptim.Parameter`, an iterable of them (or of ``(name,
            parameter)`` pairs), or a dict of them; the ``.grad`` of each is scaled
            (``None`` gradients are skipped). May be ``None`` when ``grads`` is given.
        max_norm: the largest norm allowed, ``>= 0``.
        total_norm: the norm to clip against, e.g. from :func:`get_total_norm`.
        foreach: accepted for torch compatibility; ferroptim has one fused path.
        grads: gradient arrays to scale as well (plain ndarrays, which have no ``.grad``).
    """
    _check_foreach(foreach)
    bound = _non_negative(max_norm, "max_norm")
    if isinstance(total_norm, np.ndarray) and total_norm.ndim != 0:
        raise ValueError(f"total_norm must be a number or a 0-d array, got shape {total_norm.shape}")
    norm = _number(total_norm, "total_norm")
    wide = np.asarray(total_norm).dtype != np.float32
    arrays, names = _gradients(parameters, grads)
    _core.call_holding(held(), _core.clip_grads_with_norm, arrays, names, bound, norm, bool(wide))


def clip_grad_norm_(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    grads: Any = None,
) -> np.floating:
    r"""Clips gradients in place to a total norm of at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_`` (Pascanu, Mikolov & Bengio 2013, "On the
    difficulty of training recurrent neural networks")::

        N = || (||g_1||_p, ..., ||g_k||_p) ||_p
        g_i <- g_i * min(max_norm / (N + 1e-6), 1)

    :func:`get_total_norm` then :func:`clip_grads_with_norm_`, fused into one call that
    borrows every gradient once. As torch, a NaN norm makes every gradient NaN and an
    infinite one scales them by 0, unless ``error_if_nonfinite``.

    Args:
        parameters: a :class:`~ferroptim.Parameter`, an iterable of them (an optimizer's
            parameters) or of ``(name, parameter)`` pairs, or a dict of them; the ``.grad``
            of each is clipped (``None`` gradients are skipped). May be ``None`` when
            ``grads`` is given. Plain ndarrays are refused: they have no ``.grad``.
        max_norm: the largest total norm allowed, ``>= 0`` (``inf`` clips nothing).
        norm_type: ``p``; ``>= 0`` or ``inf`` (``"inf"`` works too). Default 2.
        error_if_nonfinite: raise ``RuntimeError``, changing nothing, when the total norm
            is NaN or infinite.
        foreach: accepted for torch compatibility; ferroptim has one fused path.
        grads: gradient arrays to clip as well, e.g. the list you pass to
            ``opt.step(grads=...)``; ``None`` entries are skipped. One norm covers
            ``parameters``' gradients and these together.

    Returns:
        The total norm before clipping, an ``np.float64`` when any gradient is float64,
        else ``np.float32`` (torch's 0-d tensor dtype); ``float(norm)`` gives a Python
        float.

    Example::

        norm = fo.clip_grad_norm_(params, max_norm=1.0)
        opt.step()

    Every optimizer also takes ``max_grad_norm=``, which clips the same way inside its step
    without writing the gradient arrays (see :class:`~ferroptim.Optimizer`).
    """
    _check_foreach(foreach)
    bound = _non_negative(max_norm, "max_norm")
    p = _norm_type(norm_type)
    arrays, names = _gradients(parameters, grads)
    return _norm(
        *_core.call_holding(held(), _core.clip_grad_norm, arrays, names, bound, p, bool(error_if_nonfinite))
    )


def clip_grad_value_(
    parameters: Any, clip_value: float, foreach: bool | None = None, *, grads: Any = None
) -> None:
    r"""Clamps every gradient entry in place, as ``torch.nn.utils.clip_grad_value_``::

        g <- clamp(g, -clip_value, clip_value)

    NaN entries stay NaN.

    Args:
        parameters: a :class:`~ferroptim.Parameter`, an iterable of them (or of ``(name,
            parameter)`` pairs), or a dict of them; the ``.grad`` of each is clamped
            (``None`` gradients are skipped). May be ``None`` when ``grads`` is given.
        clip_value: the largest magnitude allowed, ``>= 0``.
        foreach: accepted for torch compatibility; ferroptim has one fused path.
        grads: gradient arrays to clamp as well (plain ndarrays).
    """
    _check_foreach(foreach)
    bound = _non_negative(clip_value, "clip_value")
    arrays, names = _gradients(parameters, grads)
    _core.call_holding(held(), _core.clip_grad_value, arrays, names, bound)


__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]
