"""Helpers for comparing ferroptim with torch.optim: state-dict converters.

- ``torch_sd_to_numpy(sd)``: a torch.optim state dict with every tensor turned into a NumPy
  array (``.numpy()`` copies; the 0-d float32 ``step`` tensors become 0-d arrays), which
  ``ferroptim``'s ``load_state_dict`` accepts.
- ``numpy_sd_to_torch(sd)``: a ferroptim state dict with every ndarray turned into a tensor
  and every ``step`` number into ``torch.tensor(step)`` (a float32 0-d tensor, as torch
  stores it), which ``torch.optim``'s ``load_state_dict`` accepts. Other scalar state
  (NAdam's ``mu_product``) stays a Python float: torch.optim.NAdam turns it into the
  float32 tensor it keeps itself, where a tensor would be cast to the parameter's dtype.

Both return new containers; nothing is shared with the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, order="C", copy=True))
    if isinstance(value, dict):
        return {k: _to_torch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value


def torch_sd_to_numpy(sd: dict[str, Any]) -> dict[str, Any]:
    """A torch.optim ``state_dict()`` with tensors replaced by NumPy copies."""
    return {
        "state": {i: _to_numpy(entry) for i, entry in sd["state"].items()},
        "param_groups": [_to_numpy(dict(g)) for g in sd["param_groups"]],
    }


def numpy_sd_to_torch(sd: dict[str, Any]) -> dict[str, Any]:
    """A ferroptim ``state_dict()`` with arrays as tensors and ``step`` as a float32 tensor."""
    state = {}
    for i, entry in sd["state"].items():
        converted = {}
        for key, value in entry.items():
            if key == "step":
                converted[key] = torch.tensor(float(value), dtype=torch.float32)
            else:
                converted[key] = _to_torch(value)
        state[i] = converted
    return {"state": state, "param_groups": [_to_torch(dict(g)) for g in sd["param_groups"]]}
