"""bfloat16 in NumPy, which has no such dtype: arrays of ``np.uint16`` holding the bits.

bfloat16 is the upper half of a float32 (sign, 8 exponent bits, 7 mantissa bits), so
decoding is exact; these helpers encode with round-to-nearest-even, as torch's
``tensor.to(torch.bfloat16)``. Steps write state back with stochastic rounding
instead, in Rust (``src/kernels/state.rs``).
"""

from __future__ import annotations

import numpy as np


def to_float32(bits: np.ndarray) -> np.ndarray:
    """The float32 values of bfloat16 bits (exact), in the same memory layout."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def from_float32(values: np.ndarray) -> np.ndarray:
    """bfloat16 bits of float32 ``values`` rounded to nearest, ties to even; NaN stays a
    (quiet) NaN, values beyond the largest bfloat16 become infinite."""
    u = values.view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet_nan = (u >> np.uint32(16)) | np.uint32(0x40)
    return np.where(np.isnan(values), quiet_nan, rounded).astype(np.uint16)
