"""Shared pytest fixtures. Torch <-> NumPy state-dict converters live in ``tests/_torchref.py``
(plain functions: ``from _torchref import torch_sd_to_numpy, numpy_sd_to_torch``)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator, so every test sees the same numbers on every run."""
    return np.random.default_rng(20260101)
