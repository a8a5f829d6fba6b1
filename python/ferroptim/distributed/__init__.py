"""Data-parallel training on MPI: gradient all-reduce and sharded optimizer state (ZeRO-1).

Every process (rank) holds a replica of the parameters and computes gradients on its
share ``B/N`` of each minibatch of ``B`` examples. For a mean loss
``L(θ) = B⁻¹ Σ_μ l(θ; x_μ, y_μ)`` (the lecture's minibatch loss over ``Λ_k``), the full
gradient is the average of the ranks' gradients,

    ∇L(θ) = N⁻¹ Σ_r ∇L_r(θ),      L_r = (B/N)⁻¹ Σ_{μ ∈ Λ_k^r} l(θ; x_μ, y_μ),

so after one all-reduce every rank takes the same step as one process on the full batch.

* :class:`DistributedOptimizer` wraps any ferroptim optimizer: one ``Allreduce`` per dtype
  (or per size-capped bucket) over a flat gradient buffer, then the wrapped step, which
  every rank computes on the same bits.
* :class:`ZeroRedundancyOptimizer` is stage 1 of ZeRO (Rajbhandari et al. 2020, "ZeRO:
  Memory Optimizations Toward Training Trillion Parameter Models"): each rank keeps the
  optimizer state of one contiguous shard of the flat parameters only. A step is a
  reduce-scatter of the gradients, a local step on the shard and an all-gather of the
  parameters: the same bytes on the wire as an all-reduce (a ring all-reduce *is* a
  reduce-scatter and an all-gather), and ``1/N`` of the optimizer state per rank.
* :func:`broadcast_parameters`, :func:`broadcast_optimizer_state` put every rank on the same
  start; :func:`check_replicas` verifies that the replicas agree bit for bit.

Failure behaviour: before any communication that could block, the ranks agree on what each
is about to do (an ``allgather`` of each rank's error, gradient layout and hyperparameters).
If any rank fails, every rank raises :class:`DistributedError` naming the failed ranks and
their errors, and no rank is left waiting in a collective. Launch with ``mpirun -n N python
-m mpi4py your_script.py`` so that an exception your own code raises on one rank (outside
ferroptim) aborts the job instead of leaving the others waiting.

Built on mpi4py (the ``mpi`` extra: ``pip install '.[mpi]'`` in a clone), imported on first use: ``import
ferroptim`` never needs it. ``comm`` is an ``mpi4py.MPI.Intracomm`` (default
``MPI.COMM_WORLD``).
"""

from ._collective import DistributedError
from .data_parallel import DistributedOptimizer
from .replicas import broadcast_optimizer_state, broadcast_parameters, check_replicas
from .zero import ZeroRedundancyOptimizer

__all__ = [
    "DistributedError",
    "DistributedOptimizer",
    "ZeroRedundancyOptimizer",
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "check_replicas",
]
