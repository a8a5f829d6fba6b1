"""Hyperparameter checks shared by the optimizer classes, with torch's messages."""

from __future__ import annotations

import numbers
import reprlib
from typing import Any

import numpy as np


def _real(value: Any, name: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        float(value)
    except OverflowError:
        raise ValueError(f"Invalid {name} value: {reprlib.repr(value)} does not fit in a float") from None


def non_negative(group: dict[str, Any], *names: str) -> None:
    """Each named hyperparameter is a real number ``>= 0`` (NumPy scalars included; a
    0-d array, as a converted torch tensor, is replaced by its value)."""
    for name in names:
        value = group[name]
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
            group[name] = value.item()
        _real(group[name], name)
        if not group[name] >= 0.0:  # also rejects NaN
            raise ValueError(f"Invalid {name} value: {group[name]}")


def in_unit_interval(value: Any, name: str, *, closed: bool) -> None:
    """``value`` lies in ``[0, 1]`` (closed) or ``[0, 1)``."""
    _real(value, name)
    if not (0.0 <= value < 1.0 or (closed and value == 1.0)):
        raise ValueError(f"Invalid {name}: {value} (must be in [0, 1{']' if closed else ')'})")


def beta_pair(group: dict[str, Any]) -> None:
    """``group["betas"]`` is a pair ``(beta1, beta2)``, each in ``[0, 1)``; a list
    becomes a tuple, as torch keeps it."""
    value = group["betas"]
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {value!r}")
    group["betas"] = tuple(value)
    for i, beta in enumerate(value):
        in_unit_interval(beta, f"beta parameter at index {i}", closed=False)


def flag(group: dict[str, Any], *names: str) -> None:
    """Each named hyperparameter is a bool."""
    for name in names:
        if not isinstance(group[name], (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {group[name]!r}")


#: The ``state_dtype`` of optimizers that keep their state as bfloat16 bits.
BF16 = "bfloat16"
_STATE_DTYPES = ("float32", "float64", BF16)


def _dtype_name(value: Any) -> str | None:
    if isinstance(value, str) and value == BF16:
        return value
    try:
        return np.dtype(value).name  # np.float32, "float32", "f4"; ml_dtypes.bfloat16 when installed
    except (TypeError, ValueError):
        return None


def state_storage(group: dict[str, Any]) -> None:
    """``group["state_dtype"]`` is ``None`` (the parameters' dtype), ``"float32"`` or
    ``"float64"`` (the same, for parameters of that dtype) or ``"bfloat16"`` (for float32
    parameters), normalized to that name; ``group["seed"]`` is an integer in ``[0, 2**64)``."""
    storage_settings(group)
    name = group["state_dtype"]
    if name is not None:
        needs = "float32" if name == BF16 else name
        for i, p in enumerate(group["params"]):
            if p.dtype != needs:
                raise ValueError(
                    f"state_dtype={name!r} needs {needs} parameters, but params[{i}] of the group is "
                    f"{p.dtype}" + ("; bfloat16 state is for float32 parameters" if name == BF16 else "")
                )


def storage_settings(group: dict[str, Any]) -> None:
    """The part of :func:`state_storage` that does not look at the parameters: cheap
    enough for every step to repeat, as the group may have been edited since."""
    value = group.get("state_dtype")
    if value is not None and value not in _STATE_DTYPES:
        name = _dtype_name(value)
        if name not in _STATE_DTYPES:
            raise ValueError(
                f"Invalid state_dtype: {value!r} (expected None, 'float32', 'float64' or 'bfloat16')"
            )
        group["state_dtype"] = name
    seed = group.get("seed", 0)
    if type(seed) is not int:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        seed = group["seed"] = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"Invalid seed value: {seed} (must be in [0, 2**64))")


#: The per-group gradient settings every optimizer takes (see ``Optimizer._unscale_and_clip``).
GRAD_DEFAULTS: dict[str, Any] = {"grad_scale": None, "max_grad_norm": None, "skip_nonfinite": False}


def grad_settings(group: dict[str, Any]) -> tuple[float, float | None, bool]:
    """Checks a group's ``grad_scale`` (``None`` or a finite number ``> 0``),
    ``max_grad_norm`` (``None`` or a number ``>= 0``, ``inf`` included) and
    ``skip_nonfinite`` (a bool), and returns them as ``(grad_scale or 1.0, max_grad_norm,
    skip_nonfinite)``. A group without these keys has the defaults (a torch state dict)."""
    scale = group.get("grad_scale")
    if scale is not None:
        if isinstance(scale, np.ndarray) and scale.ndim == 0 and scale.dtype.kind in "fiu":
            scale = group["grad_scale"] = scale.item()
        _real(scale, "grad_scale")
        if not (0.0 < float(scale) < float("inf")):  # also rejects NaN
            raise ValueError(f"Invalid grad_scale value: {scale} (must be a finite number > 0)")
    max_norm = group.get("max_grad_norm")
    if max_norm is not None:
        if isinstance(max_norm, np.ndarray) and max_norm.ndim == 0 and max_norm.dtype.kind in "fiu":
            max_norm = group["max_grad_norm"] = max_norm.item()
        _real(max_norm, "max_grad_norm")
        if not float(max_norm) >= 0.0:
            raise ValueError(f"Invalid max_grad_norm value: {max_norm} (must be >= 0)")
    skip = group.get("skip_nonfinite", False)
    if not isinstance(skip, (bool, np.bool_)):
        raise TypeError(f"skip_nonfinite must be True or False, got {skip!r}")
    return (
        (1.0 if scale is None else float(scale)),
        (None if max_norm is None else float(max_norm)),
        bool(skip),
    )
