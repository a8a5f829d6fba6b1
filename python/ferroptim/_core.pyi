"""Type stubs of the compiled core, ``ferroptim._core`` (checked with ``mypy.stubtest``).

Each ``*_step`` function takes one dict per param group: the group's hyperparameters
(torch's names) plus ``group`` (its index), ``index`` (each tensor's position in the
group), ``params``, ``grads`` and ``state`` (per tensor, its state arrays in the
algorithm's slot order, ``None`` where unused), and per-tensor scalars: ``step``
(already incremented) for Adagrad and the Adam family, ``mu_product`` (the running
product of the momentum schedule, this step's included) for NAdam, ``first`` (momentum
buffer is new) for SGD.
Every array is checked and borrowed before any is written; then the whole step runs
as one parallel region with the GIL released.
"""

from typing import Any

__all__ = [
    "check_params",
    "adadelta_step",
    "adagrad_norm_step",
    "adagrad_step",
    "adam_step",
    "adamax_step",
    "lion_step",
    "nadam_step",
    "radam_step",
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

def nadam_step(groups: list[dict[str, Any]]) -> None:
    """NAdam / NAdamW on every group."""

def radam_step(groups: list[dict[str, Any]]) -> None:
    """RAdam on every group."""

def adamax_step(groups: list[dict[str, Any]]) -> None:
    """Adamax on every group."""

def lion_step(groups: list[dict[str, Any]]) -> None:
    """Lion on every group."""

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
