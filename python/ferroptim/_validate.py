"""Hyperparameter checks shared by the optimizer classes, with torch's messages."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def _real(value: Any, name: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        float(value)
    except OverflowError:
        raise ValueError(f"Invalid {name} value: {value} does not fit in a float") from None


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
