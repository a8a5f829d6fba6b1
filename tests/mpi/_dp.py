"""What the MPI tests share: the communicator, the optimizers under test, a small two-layer
tanh/softmax network with its NumPy gradients, one deterministic dataset, and checks that
compare arrays across ranks.

Every rank builds the same dataset (same seed) and takes its slice of each minibatch; with
a mean loss over equal slices, the average of the ranks' gradients is the full-batch gradient
up to rounding, which is what the references (one unsharded optimizer on the full batch,
computed on every rank) rely on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

import ferroptim as fo

COMM = MPI.COMM_WORLD
RANK = COMM.rank
SIZE = COMM.size

#: Samples per minibatch: divisible by 2, 3 and 4, so every rank's slice has the same size.
BATCH = 24
STEPS = 20
#: Input features, hidden units, classes: 4*5 + 5 + 5*3 + 3 = 43 elements, a prime, so no
#: rank count divides the flat size evenly.
D, H, K = 4, 5, 3

#: Every optimizer class, with hyperparameters that make each of its terms matter within 20
#: steps (lr large enough to move, weight decay non-zero where it has one).
OPTIMIZERS: list[tuple[str, type[fo.Optimizer], dict[str, Any]]] = [
    ("SGD", fo.SGD, {"lr": 0.1}),
    ("SGD-momentum", fo.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}),
    ("SGD-nesterov", fo.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("Adam", fo.Adam, {"lr": 1e-2, "weight_decay": 1e-3}),
    ("AdamW", fo.AdamW, {"lr": 1e-2, "weight_decay": 1e-2}),
    ("Adam-amsgrad", fo.Adam, {"lr": 1e-2, "amsgrad": True}),
    ("Adagrad", fo.Adagrad, {"lr": 0.1, "lr_decay": 1e-3, "weight_decay": 1e-3}),
    ("AdagradNorm", fo.AdagradNorm, {"lr": 0.5}),
    ("RMSprop", fo.RMSprop, {"lr": 1e-2}),
    ("RMSprop-centered", fo.RMSprop, {"lr": 1e-2, "centered": True}),
    ("RMSprop-momentum", fo.RMSprop, {"lr": 1e-2, "momentum": 0.9}),
    ("RMSprop-centered-momentum", fo.RMSprop, {"lr": 1e-2, "centered": True, "momentum": 0.9}),
    ("Adadelta", fo.Adadelta, {"lr": 1.0, "weight_decay": 1e-3}),
    ("Adamax", fo.Adamax, {"lr": 1e-2}),
    ("NAdam", fo.NAdam, {"lr": 1e-2}),
    ("RAdam", fo.RAdam, {"lr": 1e-2}),
    ("Lion", fo.Lion, {"lr": 1e-3, "weight_decay": 1e-2}),
]
#: Those whose state is elementwise, so that it can be sharded (AdagradNorm's is one scalar).
ELEMENTWISE = [case for case in OPTIMIZERS if case[1] is not fo.AdagradNorm]

#: Tolerances of a trajectory against one computed with the gradients reduced in another order.
#: MPI sums the ranks' partial means in an order of its own, and the reference takes one mean
#: over the whole batch: the gradients differ by a few ulp (relative 1e-16 in float64, 6e-8 in
#: float32), and 20 steps of an adaptive optimizer (g / sqrt(v), Lion's sign) amplify that by
#: at most a few orders of magnitude while parameters are O(1). A real error (a gradient not
#: averaged, a rank's slice missing, state not carried over) moves parameters by 1e-3 or more.
TOL = {np.float64: {"rtol": 1e-9, "atol": 1e-11}, np.float32: {"rtol": 2e-4, "atol": 2e-5}}


def dataset(dtype: Any, steps: int = STEPS, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` minibatches of ``batch`` samples: inputs ``(steps, batch, D)`` and labels
    ``(steps, batch)``, the same on every rank."""
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((steps, batch, D)).astype(dtype)
    y = rng.integers(0, K, size=(steps, batch))
    return x, y


def init_params(dtype: Any, seed: int = 7) -> list[np.ndarray]:
    """``[W1, b1, W2, b2]`` of the network, the same for the same seed."""
    rng = np.random.default_rng(seed)
    shapes = [(D, H), (H,), (H, K), (K,)]
    return [(0.5 * rng.standard_normal(shape)).astype(dtype) for shape in shapes]


def gradients(params: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Gradients of the mean cross-entropy of ``softmax(tanh(x W1 + b1) W2 + b2)`` over the
    samples of ``x``, in the parameters' dtype."""
    w1, b1, w2, b2 = (np.asarray(p) for p in params)
    hidden = np.tanh(x @ w1 + b1)
    logits = hidden @ w2 + b2
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    dlogits = probs
    dlogits[np.arange(len(y)), y] -= 1
    dlogits /= len(y)
    dhidden = (dlogits @ w2.T) * (1 - hidden * hidden)
    grads = [x.T @ dhidden, dhidden.sum(axis=0), hidden.T @ dlogits, dlogits.sum(axis=0)]
    return [g.astype(w1.dtype, copy=False) for g in grads]


def local_slice(batch: np.ndarray, rank: int = RANK, size: int = SIZE) -> np.ndarray:
    """This rank's contiguous share of a minibatch (the batch divides evenly)."""
    n = len(batch) // size
    return batch[rank * n : (rank + 1) * n]


def assert_replicas(arrays: Sequence[np.ndarray], what: str = "parameter") -> None:
    """Asserts that every rank holds the same bytes in ``arrays`` (independent of the
    library's own ``check_replicas``): gathers every rank's bytes and compares with rank 0's."""
    mine = [(a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes()) for a in arrays]
    every = COMM.allgather(mine)
    for rank, theirs in enumerate(every):
        for i, (a, b) in enumerate(zip(every[0], theirs)):
            assert a == b, f"{what} {i} differs between rank 0 and rank {rank}"
        assert len(theirs) == len(every[0]), f"rank {rank} has {len(theirs)} {what}s, rank 0 {len(every[0])}"


def assert_close(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], dtype: Any, what: str) -> None:
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, **TOL[np.dtype(dtype).type], err_msg=f"{what}, parameter {i}")


def state_arrays_nbytes(optimizer: fo.Optimizer) -> int:
    """Bytes of every NumPy array in an optimizer's ``state`` (scalars such as ``step`` left out)."""
    return sum(v.nbytes for s in optimizer.state.values() for v in s.values() if isinstance(v, np.ndarray))


class RecordingComm(MPI.Intracomm):
    """``COMM_WORLD`` (the same communicator) that records the buffer-based collectives it is
    asked for: ``calls`` holds ``(name, address of the receive buffer, its bytes)``."""

    calls: list[tuple[str, int, int]]

    def __new__(cls, comm: MPI.Intracomm = COMM) -> RecordingComm:
        self = super().__new__(cls, comm)
        self.calls = []
        return self

    def _record(self, name: str, buffer: Any) -> None:
        array = buffer[0] if isinstance(buffer, (list, tuple)) else buffer
        array = np.asarray(array)
        self.calls.append((name, int(array.__array_interface__["data"][0]), array.nbytes))

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: Any = MPI.SUM) -> None:
        self._record("Allreduce", recvbuf)
        super().Allreduce(sendbuf, recvbuf, op)

    def Reduce_scatter(self, sendbuf: Any, recvbuf: Any, recvcounts: Any = None, op: Any = MPI.SUM) -> None:
        self._record("Reduce_scatter", sendbuf)
        super().Reduce_scatter(sendbuf, recvbuf, recvcounts, op)

    def Allgatherv(self, sendbuf: Any, recvbuf: Any) -> None:
        self._record("Allgatherv", recvbuf)
        super().Allgatherv(sendbuf, recvbuf)

    def named(self, name: str) -> list[tuple[str, int, int]]:
        return [c for c in self.calls if c[0] == name]


def address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def shard_counts(bucket_sizes: Sequence[int], size: int = SIZE) -> list[list[int]]:
    """The documented split of ZeroRedundancyOptimizer, bucket by bucket (a bucket is one dtype
    of one param group, in order): ``n // N`` elements per rank, and the ``n % N`` left over to
    the ranks that hold the fewest elements so far, lowest rank first."""
    held = [0] * size
    out = []
    for n in bucket_sizes:
        counts = [n // size] * size
        for r in sorted(range(size), key=lambda r: (held[r], r))[: n % size]:
            counts[r] += 1
        held = [h + c for h, c in zip(held, counts)]
        out.append(counts)
    return out


def own_range(counts: Sequence[int], rank: int = RANK) -> tuple[int, int]:
    """``[lo, hi)`` of ``rank``'s contiguous piece of a bucket split into ``counts``."""
    lo = sum(counts[:rank])
    return lo, lo + counts[rank]
