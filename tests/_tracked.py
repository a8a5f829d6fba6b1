"""``Tracked``: NumPy arrays that carry a bound on their rounding error, for references.

A reference optimizer written with ``Tracked`` values computes in the parameter's dtype (so
overflow, underflow and NaN happen where they happen in float32 or float64) and, beside each
value, a first-order running bound on the distance of the computed value from the exact
real-number result of the formula: every operation adds its own rounding (``u |x|``, plus
half the smallest subnormal for products and quotients) to the propagated bounds of its
operands. Two correct implementations of one formula, in whatever order of operations, then
differ by at most a few times that bound, which is what ``assert_matches`` checks: tight in
float64, ulp-scaled in float32, and exactly as loose as the formula's conditioning.

Where the bound is infinite (a square root or a quotient whose operand could be zero within
its error, an overflow), nothing can be said about the value and it is not compared. A
non-finite value reached from exact operands (``0/0`` of exact zeros, ``x/0``, an infinite
input) is certain, and must match exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: How many bounds apart two correct implementations may be (theirs and this reference's).
SLACK = 4.0


def unit_roundoff(dtype: Any) -> float:
    return float(np.finfo(dtype).eps) / 2


def _tiny(dtype: Any) -> float:
    return float(np.finfo(dtype).smallest_subnormal)


def _as_tracked(x: Any, dtype: Any) -> Tracked:
    return x if isinstance(x, Tracked) else Tracked.exact(np.asarray(x, dtype=dtype))


class Tracked:
    """An array ``val`` and an elementwise bound ``err`` (float64) on its absolute error."""

    __slots__ = ("err", "val")

    def __init__(self, val: np.ndarray, err: np.ndarray) -> None:
        self.val = np.asarray(val)
        self.err = np.asarray(err, dtype=np.float64)

    @classmethod
    def exact(cls, value: Any) -> Tracked:
        """A value known exactly (an input array, a Python float hyperparameter)."""
        val = np.array(value, copy=True)
        if val.dtype.kind != "f":
            val = val.astype(np.float64)
        return cls(val, np.zeros(val.shape))

    @property
    def dtype(self) -> np.dtype:
        return self.val.dtype

    def _finish(self, val: np.ndarray, err: np.ndarray, certain: np.ndarray) -> Tracked:
        with np.errstate(all="ignore"):
            err = np.where(np.isnan(err), np.inf, err)
            # a non-finite value is known exactly only when it follows from exact operands
            err = np.where(np.isfinite(val), err, np.inf)
            err = np.where(certain, 0.0, err)
        return Tracked(val, err)

    def _other(self, other: Any) -> Tracked:
        other = _as_tracked(other, self.dtype)
        if other.dtype != self.dtype:
            raise TypeError(f"mixed dtypes {self.dtype} and {other.dtype}: cast explicitly")
        return other

    def _exact_zero(self) -> np.ndarray:
        return (self.val == 0) & (self.err == 0)

    def _exact_specials(self, other: Tracked) -> np.ndarray:
        exact = (self.err == 0) & (other.err == 0)
        return exact & ~(np.isfinite(self.val) & np.isfinite(other.val))

    def __add__(self, other: Any) -> Tracked:
        b = self._other(other)
        u = unit_roundoff(self.dtype)
        with np.errstate(all="ignore"):
            val = self.val + b.val
            err = self.err + b.err + u * np.abs(val)
        return self._finish(val, err, self._exact_specials(b) & ~np.isfinite(val))

    __radd__ = __add__

    def __neg__(self) -> Tracked:
        return Tracked(-self.val, self.err)

    def __sub__(self, other: Any) -> Tracked:
        return self + (-self._other(other))

    def __rsub__(self, other: Any) -> Tracked:
        return self._other(other) + (-self)

    def __mul__(self, other: Any) -> Tracked:
        b = self._other(other)
        u, tiny = unit_roundoff(self.dtype), _tiny(self.dtype)
        with np.errstate(all="ignore"):
            val = self.val * b.val
            err = (
                self.err * np.abs(b.val)
                + np.abs(self.val) * b.err
                + self.err * b.err
                + u * np.abs(val)
                + np.where(self._exact_zero() | b._exact_zero(), 0.0, tiny)  # underflow
            )
        return self._finish(val, err, self._exact_specials(b) & ~np.isfinite(val))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Tracked:
        b = self._other(other)
        u, tiny = unit_roundoff(self.dtype), _tiny(self.dtype)
        with np.errstate(all="ignore"):
            val = self.val / b.val
            low = np.abs(b.val) - b.err  # the smallest the divisor can be
            underflow = np.where(self._exact_zero(), 0.0, tiny)
            err = np.where(
                low > 0, (self.err + np.abs(val) * b.err) / low + u * np.abs(val) + underflow, np.inf
            )
            by_exact_zero = (b.val == 0) & (b.err == 0) & (self.err == 0)
        certain = (self._exact_specials(b) | by_exact_zero) & ~np.isfinite(val)
        return self._finish(val, err, certain)

    def __rtruediv__(self, other: Any) -> Tracked:
        return self._other(other) / self

    def sqrt(self) -> Tracked:
        u = unit_roundoff(self.dtype)
        with np.errstate(all="ignore"):
            val = np.sqrt(self.val)
            low = self.val - self.err
            err = np.where(
                low >= 0,
                self.err / (np.sqrt(np.maximum(low, 0)) + np.sqrt(self.val)) + u * np.abs(val),
                np.inf,
            )
            err = np.where((self.val == 0) & (self.err == 0), 0.0, err)
            certain = (self.err == 0) & ~np.isfinite(val)
            certain |= (self.val + self.err < 0) & ~np.isnan(self.val + self.err)  # surely negative
        return self._finish(val, err, certain)

    def __pow__(self, t: float) -> Tracked:
        """``self ** t`` for a positive scalar exponent (libm's pow: within 1 ulp)."""
        u = unit_roundoff(self.dtype)
        with np.errstate(all="ignore"):
            val = self.val**t
            err = np.where(self.val != 0, t * np.abs(val / self.val) * self.err, 0.0) + 2 * u * np.abs(val)
        return self._finish(val, err, (self.err == 0) & ~np.isfinite(val))

    def __abs__(self) -> Tracked:
        return Tracked(np.abs(self.val), self.err)

    def sign(self) -> Tracked:
        """``numpy.sign`` (NaN stays NaN), exact where the value is surely on one side of
        zero, or exactly zero; where another implementation's value (within ``SLACK``
        bounds) could be on the other side, the sign is unknown: an infinite bound."""
        with np.errstate(all="ignore"):
            val = np.sign(self.val)
            sure = (np.abs(self.val) > SLACK * self.err) | (self.err == 0)
            err = np.where(sure, 0.0, np.inf)
        return Tracked(val, err)

    def maximum(self, other: Any) -> Tracked:
        """NaN-propagating maximum, as torch.maximum (1-Lipschitz in each operand)."""
        b = self._other(other)
        val = np.maximum(self.val, b.val)
        return self._finish(val, np.maximum(self.err, b.err), self._exact_specials(b) & ~np.isfinite(val))

    def astype(self, dtype: Any) -> Tracked:
        """Conversion, rounding to ``dtype`` when it is narrower."""
        dtype = np.dtype(dtype)
        with np.errstate(all="ignore"):
            val = self.val.astype(dtype)
            rounding = 0.0 if dtype.itemsize >= self.dtype.itemsize else unit_roundoff(dtype)
            err = self.err + rounding * np.abs(val) + (_tiny(dtype) if rounding else 0.0)
        return self._finish(val, err, (self.err == 0) & ~np.isfinite(self.val))

    def total(self) -> Tracked:
        """The sum of all elements (any summation order: n terms, n roundings each at most)."""
        u = unit_roundoff(self.dtype)
        with np.errstate(all="ignore"):
            val = np.sum(self.val)
            err = np.sum(self.err) + self.val.size * u * np.sum(np.abs(self.val))
        return self._finish(val, err, (np.sum(self.err) == 0) & ~np.isfinite(val))


def const(value: float, dtype: Any) -> Tracked:
    """A Python-float hyperparameter as the kernels see it: rounded to ``dtype``."""
    return Tracked.exact(np.float64(value)).astype(dtype)


def assert_matches(actual: np.ndarray, expected: Tracked, what: str) -> None:
    """``actual`` is within ``SLACK`` bounds of ``expected`` wherever the bound is finite;
    certain non-finite values (bound 0) match exactly, sign of infinity and NaN included."""
    actual = np.asarray(actual)
    assert actual.shape == expected.val.shape, f"{what}: shape {actual.shape} != {expected.val.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    ref, err = expected.val.astype(np.float64), expected.err
    got = actual.astype(np.float64)
    finite = np.isfinite(err)
    special = finite & ~np.isfinite(ref)
    same_special = np.where(np.isnan(ref), np.isnan(got), got == ref)
    bad = special & ~same_special
    with np.errstate(all="ignore"):
        close = np.abs(got - ref) <= SLACK * err + 2 * _tiny(expected.dtype)
    bad |= finite & ~special & ~close
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ from the reference; "
            f"first at {i}: got {got[i]!r}, expected {ref[i]!r} +- {SLACK * err[i]:.3g}"
        )
