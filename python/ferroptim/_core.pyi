"""Type stubs of the compiled core, ``ferroptim._core`` (checked with ``mypy.stubtest``).

Each ``*_step`` function takes one dict per param group: the group's hyperparameters
(torch's names) plus ``group`` (its index), ``index`` (each tensor's position in the
group), ``params``, ``grads``, ``state`` (per tensor, its state dict, from which the
arrays are read by slot name) and ``slots`` (which of the algorithm's state slots the
group's settings use; a used one absent from a state dict, or ``None``, raises
``StateMissing``), and per-tensor scalars: ``step``
(already incremented) for Adagrad and the Adam family, ``mu_product`` (the running
product of the momentum schedule, this step's included) for NAdam, ``first`` (momentum
buffer is new) for SGD.
Every array is checked and borrowed before any is written; then the whole step runs
as one parallel region with the GIL released. Each also takes the step's bookkeeping as a
``commit`` (see :func:`commit`), which it makes after the update, before it returns: no
Python code, and so no asynchronous exception (Ctrl-C), runs between the two.
"""

from collections.abc import Callable, Iterator
from typing import Any, TypedDict, TypeVar, final

import numpy as np
import numpy.typing as npt

_T = TypeVar("_T")

__all__ = [
    "check_params",
    "commit",
    "call_holding",
    "clip_grad_norm",
    "clip_grad_value",
    "clip_grads_with_norm",
    "grad_norm",
    "grad_stats",
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
    "get_simd_level",
    "set_simd_level",
    "Batches",
    "MinibatchSampler",
    "StateMissing",
    "MASKED",
    "_stream_axpy",
]

#: How a ``numpy.ma.MaskedArray`` is refused (``TypeError``), after the array's name.
MASKED: str

class _Commit(TypedDict, total=False):
    """Writes into Python objects, made in this order by one native call."""

    #: ``(mapping, key, value)``: ``mapping[key] = value``.
    set: list[tuple[dict[Any, Any], Any, Any]]
    #: ``(state, contents)``: ``state.clear(); state.update(contents)``.
    replace: list[tuple[dict[str, Any], dict[str, Any]]]
    #: ``(states, key, values)``: ``states[i][key] = values[i]`` for every ``i``.
    column: list[tuple[list[dict[str, Any]], str, list[Any]]]
    #: ``(list, items)``: ``list[:] = items``.
    splice: list[tuple[list[Any], list[Any]]]

def commit(commit: _Commit) -> None:
    """Makes the writes of ``commit`` in one native call, in which no Python code runs, so
    an asynchronous exception finds none or all of them made. Raises, writing nothing,
    for an unhashable key or a column whose lists differ in length."""

def call_holding(lock: Any, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """Calls ``function(*args, **kwargs)`` holding ``lock`` (a ``threading.Lock`` or
    ``RLock``), acquired and released by this native call, so that no asynchronous exception
    can land between the call and the release, as it can in ``with lock:``."""

class StateMissing(ValueError):
    """A state array that the group's settings use is absent from its parameter's state
    dict (or ``None``)."""

def sgd_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """SGD, with or without (Nesterov) momentum, on every group."""

def adagrad_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """AdaGrad on every group."""

def rmsprop_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """RMSprop on every group."""

def adadelta_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """AdaDelta on every group."""

def adam_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """Adam / AdamW / AMSGrad on every group."""

def nadam_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """NAdam / NAdamW on every group."""

def radam_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """RAdam on every group."""

def adamax_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """Adamax on every group."""

def lion_step(groups: list[dict[str, Any]], commit: _Commit | None = None) -> None:
    """Lion on every group."""

def adagrad_norm_step(
    groups: list[dict[str, Any]],
    b_sq: list[float],
    holders: list[list[dict[str, Any]]] = ...,
    commit: _Commit | None = None,
) -> list[float]:
    """Scalar AdaGrad; each group also has ``accumulator`` (per tensor, an index into
    ``b_sq``). Once the step is done, each state dict in ``holders[a]`` becomes ``{"b_sq":
    new value of accumulator a}`` and ``commit`` is made. Returns the accumulators' new
    values."""

def check_params(arrays: list[Any], names: list[str]) -> int | None:
    """Raises ``ValueError`` (naming the array) for a layout the kernels cannot address;
    returns the position of the first array that cannot be updated in the same step as
    the arrays before it (rust-numpy's borrow checker refuses it), or ``None``."""

def _stream_axpy(y: npt.NDArray[np.floating[Any]], x: npt.NDArray[np.floating[Any]], a: float) -> None:
    """``y += a * x`` in place on the optimizers' thread pool, with the GIL released.

    A benchmark helper, not API: ``benches/bench_step.py`` times it as the streaming
    bandwidth ceiling (read ``x``, read ``y``, write ``y``: 12 bytes per float32
    element). ``y`` and ``x`` are C-contiguous, aligned arrays of one shape and one
    dtype (float32 or float64), in separate memory."""

def set_num_threads(threads: int) -> None:
    """Sets the number of threads every following step runs on."""

def get_simd_level() -> str:
    """The instruction set the kernels run with: ``"avx512"``, ``"avx2"`` or ``"baseline"``."""

def set_simd_level(level: str) -> str:
    """Caps the instruction set the kernels run with; returns the level now used."""

def get_num_threads() -> int:
    """The number of threads steps run on."""

@final
class MinibatchSampler:
    """A seeded, reproducible random partition of ``range(m)`` into minibatches, one
    fresh permutation per epoch (the lecture's ``Λ_k``)."""

    def __new__(cls, m: int, batch_size: int, seed: int = 0, drop_last: bool = False) -> MinibatchSampler: ...
    @property
    def m(self) -> int:
        """The number of samples ``m`` that each epoch partitions."""
    @property
    def batch_size(self) -> int:
        """The size of every minibatch but possibly the last."""
    @property
    def seed(self) -> int:
        """The seed that, with the epoch number, fixes every permutation."""
    @property
    def drop_last(self) -> bool:
        """Whether an epoch's last, smaller minibatch is dropped."""
    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` draws; it counts up by one per ``iter()``."""
    def set_epoch(self, epoch: int) -> None:
        """Makes the next ``iter()`` draw epoch ``epoch``."""
    def permutation(self, epoch: int) -> npt.NDArray[np.int64]:
        """The permutation of ``range(m)`` that epoch ``epoch`` visits, batch after batch."""
    def __len__(self) -> int: ...
    def __iter__(self) -> Batches: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __setstate__(self, epoch: int) -> None: ...

@final
class Batches(Iterator[npt.NDArray[np.int64]]):
    """One epoch of a ``MinibatchSampler``: its minibatches in order."""

    def __iter__(self) -> Batches: ...
    def __next__(self) -> npt.NDArray[np.int64]: ...
    def __len__(self) -> int: ...

def grad_norm(
    grads: list[Any], names: list[str], norm_type: float, error_if_nonfinite: bool
) -> tuple[float, bool]:
    """The total ``norm_type``-norm of ``grads`` and whether it is a float64 one (any
    array is float64); ``names`` name the arrays in messages."""

def grad_stats(
    grads: list[Any],
    names: list[str],
    grad_scales: list[float],
    check_finite: list[bool],
    max_norms: list[float],
) -> tuple[bool, float, bool, list[float]]:
    """Reads ``grads``, each multiplied by ``1 / grad_scales[i]`` (not written): whether
    those whose ``check_finite`` flag is set are all finite, their total 2-norm (when
    ``max_norms`` is not empty), whether it is a float64 one, and torch's clip coefficient
    for each of ``max_norms``."""

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
