"""Type stubs of the compiled core, ``ferroptim._core`` (checked with ``mypy.stubtest``).

Each ``*_step`` function takes one dict per param group: the group's hyperparameters
(torch's names) plus ``group`` (its index), ``index`` (each tensor's position in the
group), ``params``, ``grads`` and ``state`` (per tensor, its state arrays in the
algorithm's slot order, ``None`` where unused), and per-tensor scalars: ``step``
(already incremented) for Adagrad and Adam, ``first`` (momentum buffer is new) for SGD.
Every array is checked and borrowed before any is written; then the whole step runs
as one parallel region with the GIL released.
"""

from typing import Any

__all__ = [
    "check_params",
    "clip_grad_norm",
    "clip_grad_value",
    "clip_grads_with_norm",
    "grad_norm",
    "adadelta_step",
    "adagrad_norm_step",
    "adagrad_step",
    "adam_step",
    "rmsprop_step",
    "sgd_step",
    "get_num_threads",
    "set_num_threads",
]

def sgd_step(groups: list[dict[str, Any]]) -> None:
    """SGD, with or without (Nesterov) momentum, on every group."""

def adagrad_step(groups: list[dict[str, Any]]) -> None:
    """AdaGrad on every group."""

def rmsprop_step(groups: list[dict[str, Any]]) -> None:
    """RMSprop on every group."""

def adadelta_step(groups: list[dict[str, Any]]) -> None:
    """AdaDelta on every group."""

def adam_step(groups: list[dict[str, Any]]) -> None:
    """Adam / AdamW / AMSGrad on every group."""

def adagrad_norm_step(groups: list[dict[str, Any]], b_sq: list[float]) -> list[float]:
    """Scalar AdaGrad; each group also has ``accumulator`` (per tensor, an index into
    ``b_sq``). Returns the accumulators' new values."""

def check_params(arrays: list[Any], names: list[str]) -> int | None:
    """Raises ``ValueError`` (naming the array) for a layout the kernels cannot address;
    returns the position of the first array that cannot be updated in the same step as
    the arrays before it (rust-numpy's borrow checker refuses it), or ``None``."""

def set_num_threads(threads: int) -> None:
    """Sets the number of threads every following step runs on."""

def get_num_threads() -> int:
    """The number of threads steps run on."""

def grad_norm(
    grads: list[Any], names: list[str], norm_type: float, error_if_nonfinite: bool
) -> tuple[float, bool]:
    """The total ``norm_type``-norm of ``grads`` and whether it is a float64 one (any
    array is float64); ``names`` name the arrays in messages."""

def clip_grad_norm(
    grads: list[Any], names: list[str], max_norm: float, norm_type: float, error_if_nonfinite: bool
) -> tuple[float, bool]:
    """Clips ``grads`` in place to a total norm of at most ``max_norm``; returns the norm
    before clipping and whether it is a float64 one."""

def clip_grads_with_norm(
    grads: list[Any], names: list[str], max_norm: float, total_norm: float, wide: bool
) -> None:
    """Scales ``grads`` in place by ``min(max_norm / (total_norm + 1e-6), 1)``, computed in
    float64 when ``wide``, else float32."""

def clip_grad_value(grads: list[Any], names: list[str], clip_value: float) -> None:
    """Clamps ``grads`` in place to ``[-clip_value, clip_value]``."""
