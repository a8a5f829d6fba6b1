"""Data-parallel training on MPI: the experiments' two-layer network, every rank on its
share of each minibatch, checked against one process training on the full batch.

Launch (any number of ranks ``N`` that divides the batch size)::

    mpirun -n 4 python -m ferroptim.examples.data_parallel            # DistributedOptimizer
    mpirun -n 4 python -m ferroptim.examples.data_parallel --zero     # ZeroRedundancyOptimizer
    python -m ferroptim.examples.data_parallel                        # one rank

(add ``--oversubscribe`` for more ranks than cores, ``--allow-run-as-root`` as root).
``mpirun -n 4 python -m mpi4py -m ferroptim.examples.data_parallel`` works too: mpi4py's
runner also aborts the whole job when a rank raises.

Each step, every rank draws the same minibatch ``Λ_k`` of ``B`` training rows (one
``fo.MinibatchSampler`` with one seed on all ranks) and takes its own ``B/N`` of them. Its
gradient is the mean over its rows; the optimizer averages these over the ranks, which is
the mean over all ``B`` rows, ``grad L(θ; Λ_k)``, and every rank takes the same step.
The ranks start from different random weights (seed + rank, as independent processes
would); ``broadcast_parameters`` gives all of them rank 0's. Rank 0 prints each step's
loss on the whole minibatch (the mean of the ranks' losses) and the throughput, then
trains the same network alone, with the unsharded optimizer on the full minibatches, and
prints how far apart the two loss curves are: rounding only (about 1e-15 in float64),
since the sums of the gradient run in a different order.

An exception on any rank prints its traceback and calls ``MPI.COMM_WORLD.Abort(1)``, so
the job ends instead of leaving the other ranks waiting in a collective.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import ferroptim as fo
from ferroptim import distributed as dist
from ferroptim._extras import install_hint

if TYPE_CHECKING:
    from mpi4py import MPI

#: The optimizers ``--optimizer`` accepts (case-insensitive), by their class names.
OPTIMIZERS = (
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "AdagradNorm",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Lion",
)


def parser() -> argparse.ArgumentParser:
    """The example's command line."""
    p = argparse.ArgumentParser(
        prog="python -m ferroptim.examples.data_parallel",
        description="Data-parallel training of the two-layer network on MPI (launch with mpirun -n N).",
    )
    p.add_argument(
        "--optimizer",
        type=lambda s: {o.lower(): o for o in OPTIMIZERS}.get(s.lower(), s),
        choices=OPTIMIZERS,
        default="Adam",
        help="the ferroptim optimizer (Adam)",
    )
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (0.01)")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps (50)")
    p.add_argument(
        "--batch-size", type=int, default=128, help="global minibatch size B, split over the ranks (128)"
    )
    p.add_argument("--zero", action="store_true", help="ZeroRedundancyOptimizer: optimizer state sharded")
    p.add_argument("--hidden", type=int, default=128, help="hidden units (128)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="float64 (default)")
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits", help="digits (embedded)")
    p.add_argument("--data-dir", type=Path, help="folder with MNIST's four IDX files")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, weights and minibatches (0)")
    return p


def minibatches(m: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """The row indices of every step's minibatch, epoch after epoch: the same on every
    rank and in the single-process reference (each epoch a fresh seeded permutation;
    an epoch's last, smaller batch is dropped so that every batch splits evenly)."""
    sampler = fo.MinibatchSampler(m, batch_size, seed=seed, drop_last=True)
    while True:
        yield from sampler


def flat_model(args: argparse.Namespace, features: int, classes: int, seed: int) -> tuple[Any, Any]:
    """The two-layer network with its parameters moved into one flat buffer (so the
    gradients are one array to all-reduce in place), and that buffer as one parameter."""
    from ferroptim.experiments.models import TwoLayerNet

    model = TwoLayerNet(features, classes, args.hidden, seed, np.dtype(args.dtype).type)
    flat = fo.flatten_parameters(model.params)
    assert flat.names is not None
    model.params = dict(zip(flat.names, flat.params))
    return model, flat.param


def train(
    args: argparse.Namespace, data: Any, comm: MPI.Intracomm | None
) -> tuple[list[float], list[float], Any]:
    """``args.steps`` steps; returns the loss of each step's whole minibatch (before the
    step), the seconds each step took, and the model. With ``comm`` the ranks of ``comm``
    train data-parallel; without it, one process trains on the full minibatches."""
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    model, param = flat_model(args, data.features, data.classes, args.seed + rank)
    optimizer_class = getattr(fo, args.optimizer)
    optimizer: Any
    if comm is None:
        optimizer = optimizer_class([param], lr=args.lr)
    else:
        dist.broadcast_parameters(model.params, comm)
        if args.zero:
            optimizer = dist.ZeroRedundancyOptimizer(
                [param], optimizer_class=optimizer_class, comm=comm, lr=args.lr
            )
        else:
            optimizer = dist.DistributedOptimizer(optimizer_class([param], lr=args.lr), comm)
    share = args.batch_size // size
    losses, seconds = [], []
    batches = minibatches(len(data.y_train), args.batch_size, args.seed)
    for _ in range(args.steps):
        start = time.perf_counter()
        rows = next(batches)[rank * share : (rank + 1) * share]
        optimizer.zero_grad()
        loss = model.loss_and_grads(data.x_train[rows], data.y_train[rows])
        optimizer.step()
        if comm is not None:
            # every rank's loss is the mean over its B/N rows: their mean is the minibatch's
            loss = comm.allreduce(loss) / size
        seconds.append(time.perf_counter() - start)
        losses.append(loss)
    return losses, seconds, model


def run(args: argparse.Namespace, comm: MPI.Intracomm) -> float:
    """Trains data-parallel over ``comm``, then (on rank 0) alone; returns the largest
    difference between the two loss curves on rank 0 (0.0 on the other ranks)."""
    from ferroptim.experiments import data as datasets

    rank, size = comm.rank, comm.size
    data = datasets.load(args.dataset, args.data_dir, seed=args.seed).astype(args.dtype)
    n_params = args.hidden * (data.features + 1) + data.classes * (args.hidden + 1)
    how = "ZeroRedundancyOptimizer (sharded state)" if args.zero else "DistributedOptimizer (all-reduce)"
    if rank == 0:
        print(
            f"{size} rank(s); two-layer network, {n_params:,} {args.dtype} parameters; "
            f"{args.dataset}: {len(data.y_train)} training samples\n"
            f"{args.optimizer} lr={args.lr} in {how}; batch {args.batch_size} = {size} x "
            f"{args.batch_size // size} rows per rank\n"
            f"{'step':>5} {'loss':>10} {'samples/s':>10}",
            flush=True,
        )
    losses, seconds, model = train(args, data, comm)
    if rank == 0:
        for step, (loss, s) in enumerate(zip(losses, seconds), 1):
            print(f"{step:>5} {loss:>10.6f} {args.batch_size / s:>10.0f}")
    dist.check_replicas(model.params, comm)
    if rank != 0:
        return 0.0
    test_loss, test_acc = model.evaluate(data.x_test, data.y_test)
    steady = seconds[1:] or seconds
    print(
        f"parameters bit-identical on all {size} rank(s) (check_replicas)\n"
        f"throughput {args.batch_size * len(steady) / sum(steady):,.0f} samples/s "
        f"(after step 1); test loss {test_loss:.4f}, accuracy {test_acc:.1%}"
    )
    reference, _, _ = train(args, data, None)
    gap = max(abs(a - b) for a, b in zip(losses, reference))
    print(
        f"one process on the full batch of {args.batch_size}, unsharded fo.{args.optimizer}: "
        f"max |loss difference| over {args.steps} steps = {gap:.3g}",
        flush=True,
    )
    return gap


def main(argv: Sequence[str] | None = None) -> None:
    """Parses ``argv``, then runs on ``MPI.COMM_WORLD``; any exception aborts the job."""
    p = parser()
    args = p.parse_args(argv)
    try:
        from mpi4py import MPI
        from threadpoolctl import threadpool_limits
    except ImportError:
        sys.exit(
            "this example needs mpi4py (and an MPI library such as Open MPI) and the experiments' "
            f"dependencies, the `mpi` and `experiments` extras: {install_hint('mpi,experiments')}"
        )
    comm = MPI.COMM_WORLD
    for name in ("steps", "batch_size", "hidden"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.batch_size % comm.size:
        p.error(f"--batch-size {args.batch_size} must be a multiple of the number of ranks, {comm.size}")
    if args.zero and args.optimizer == "AdagradNorm":
        p.error("AdagradNorm's state is one scalar over all parameters: it cannot be sharded (--zero)")
    try:
        # The matrices of B/N rows are small: BLAS threads in each of the ranks would only
        # spin against each other (and the optimizer's pool) on shared cores.
        with threadpool_limits(1, user_api="blas"):
            run(args, comm)
    except Exception:
        # Without this, the other ranks would wait forever in their next collective.
        sys.stdout.flush()
        print(
            f"rank {comm.rank} of {comm.size} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True
        )
        comm.Abort(1)


if __name__ == "__main__":
    main()
