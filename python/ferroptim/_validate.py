"""Hyperparameter checks shared by the optimizer classes, with torch's messages."""

from __future__ import annotations

from typing import Any


def non_negative(group: dict[str, Any], *names: str) -> None:
    """Each named hyperparameter is a real number ``>= 0``."""
    for name in names:
        value = group[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not value >= 0.0:  # also rejects NaN
            raise ValueError(f"Invalid {name} value: {value}")


def in_unit_interval(value: Any, name: str, *, closed: bool) -> None:
    """``value`` lies in ``[0, 1]`` (closed) or ``[0, 1)``."""
    non_negative({name: value}, name)
    if value > 1.0 or (not closed and value == 1.0):
        raise ValueError(f"Invalid {name}: {value} (must be in [0, 1{']' if closed else ')'})")


def flag(group: dict[str, Any], *names: str) -> None:
    """Each named hyperparameter is a bool."""
    for name in names:
        if not isinstance(group[name], bool):
            raise TypeError(f"{name} must be True or False, got {group[name]!r}")
