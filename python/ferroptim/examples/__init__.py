"""Runnable examples: ``python -m ferroptim.examples.<name>``.

- ``data_parallel``: the experiments' two-layer network trained data-parallel on MPI
  (``mpirun -n 4 python -m ferroptim.examples.data_parallel``), checked against one
  process training on the full batch.
"""
