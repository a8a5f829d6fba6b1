"""Shared pytest fixtures. Torch <-> NumPy state-dict converters live in ``tests/_torchref.py``
(plain functions: ``from _torchref import torch_sd_to_numpy, numpy_sd_to_torch``)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator, so every test sees the same numbers on every run."""
    return np.random.default_rng(20260101)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs ``tests/test_conventions.py`` last. Its jax and Keras references start XLA's
    thread pool, after which ``os.fork()`` (the fork tests of ``test_reliability.py`` and
    ``test_threads.py``) may deadlock, as jax warns; importing jax alone starts no thread."""
    items.sort(key=lambda item: item.path.name == "test_conventions.py")
