"""Data-parallel Adam steps on MPI: step time, bytes communicated and optimizer state per
rank, for 1, 2 and 4 ranks on this machine. A benchmark, not a test.

``python benches/bench_distributed.py [--quick] [--out DIR]`` launches itself as
``mpirun -n N --bind-to none --oversubscribe python benches/bench_distributed.py --worker``
for N in 1, 2, 4 (``--quick``: 1 and 2) and collects the workers' numbers. Every rank holds
the same float32 parameters and its own random gradients; each case times

- ``fo.Adam``: the plain unsharded step, no communication (N = 1 only: the baseline);
- ``DistributedOptimizer(fo.Adam)``: an all-reduce (average) of the gradients, then the
  full Adam step on every rank;
- ``ZeroRedundancyOptimizer`` (ZeRO stage 1, Adam): a reduce-scatter of the gradients, Adam
  on this rank's 1/N shard, an all-gather of the parameters;

on one flat parameter of 1e6 and of 1e7 elements, and on 100 tensors of 1e4 (``--quick``:
1e3 elements, and 10 tensors of 100). Every step starts after a barrier; its time is the
slowest rank's; the table gives the median over the timed steps (after two warm-up steps,
the first of which allocates the state; as many steps as fill about 2 s, 5 to 30). With
``--quick``, each case takes 3 steps in each of 3 passes over all cases, so that a burst of
other work on the machine cannot cover every sample of a case. After the timed steps the
parameters must be bit-identical on all ranks (``check_replicas``), else the exit status is 1.

Columns: *payload* is ``last_step_bytes``, the bytes this rank handed to the collectives in
one step. *Ring bytes sent* is what a ring algorithm sends per rank for a gradient of S
bytes: an all-reduce 2(N-1)/N·S, and ZeRO-1's reduce-scatter plus all-gather the same
(N-1)/N·S + (N-1)/N·S (Rajbhandari et al. 2020, section 7); Open MPI picks its own
algorithm, which on one machine copies through shared memory. *State* is the optimizer
state on one rank: ``state_nbytes()`` for ZeRO, the arrays in ``optimizer.state`` for the
others (Adam: ``exp_avg`` and ``exp_avg_sq``, 8 bytes per float32 parameter). *Rank CPU /
wall* is the lowest over the ranks of a rank's CPU time (all its threads) over its wall time
in the timed steps. A rank that waits for another inside MPI polls, so it stays on its CPU:
on a quiet machine the share is about ``cores / ranks``, at most 100% per thread. A share well
below that means other processes took the rank's core, and the time then measures the
machine's load, not the step.

*Memory* is the total a rank allocates for the optimizer, traced by ``tracemalloc`` (NumPy
reports its arrays to it) from building the optimizer through two steps, with Adam on four
float32 arrays (2.5e6 elements each; ``--quick``: 2.5e4), separate or views of one buffer
(``fo.flatten_parameters``): the peak, and what is still held after the steps.

Each rank steps with ``max(1, cores // N)`` ferroptim threads, and ``--bind-to none`` lets
them use every core (Open MPI otherwise pins a single rank to one core). On a 2-core
machine, 2 and 4 ranks share the cores that one rank had to itself: the times show the cost
of the communication, not a speedup. The markdown table goes to ``--out``
(``benches/results/distributed.md``; ``--quick``: ``benches/results/quick/``) and to stdout,
the numbers to ``distributed.json`` beside it. Without ``mpirun`` or mpi4py it says so and
exits 0: the benchmark is skipped.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_model

import ferroptim as fo

FULL_SHAPES: dict[str, list[int]] = {
    "1×1e6": [1_000_000],
    "1×1e7": [10_000_000],
    "100×1e4": [10_000] * 100,
}
QUICK_SHAPES: dict[str, list[int]] = {"1×1e3": [1_000], "10×1e2": [100] * 10}
#: The model of the memory table: four float32 arrays, as separate arrays and as one flat buffer.
FULL_MEMORY_SHAPES = [2_500_000] * 4
QUICK_MEMORY_SHAPES = [25_000] * 4
LAYOUTS = ("separate arrays", "flat buffer")
MEMORY_STEPS = 2
FULL_RANKS = (1, 2, 4)
QUICK_RANKS = (1, 2)
METHODS = ("fo.Adam", "DistributedOptimizer", "ZeRO-1")
WARMUP_STEPS = 2
BUDGET_S = 2.0
FULL_STEPS = (5, 30)  # fewest, most timed steps
QUICK_STEPS = 3
#: With ``--quick``, every case is timed in this many passes over all cases, so that its
#: samples are spread over the run rather than taken within a millisecond.
QUICK_PASSES = 3
WORKER_TIMEOUT_S = 600
LR = 1e-3


# --- one rank ----------------------------------------------------------------------------


def state_nbytes(optimizer: Any) -> int:
    """Bytes of the arrays in an (unsharded) optimizer's state."""
    return sum(
        v.nbytes
        for per_param in optimizer.state.values()
        for v in per_param.values()
        if isinstance(v, np.ndarray)
    )


def build(method: str, params: list[fo.Parameter], comm: Any) -> tuple[Any, Callable[[], int]]:
    """The optimizer of ``method`` over ``params``, and a function giving its state bytes."""
    from ferroptim import distributed as dist

    if method == "fo.Adam":
        adam = fo.Adam(params, lr=LR)
        return adam, lambda: state_nbytes(adam)
    if method == "DistributedOptimizer":
        wrapped = dist.DistributedOptimizer(fo.Adam(params, lr=LR), comm)
        return wrapped, lambda: state_nbytes(wrapped.optimizer)
    zero = dist.ZeroRedundancyOptimizer(params, optimizer_class=fo.Adam, comm=comm, lr=LR)
    return zero, zero.state_nbytes


def time_case(method: str, sizes: list[int], quick: bool, comm: Any) -> dict[str, Any]:
    """Times ``method``'s step on tensors of ``sizes`` on every rank of ``comm``; the
    returned numbers are the same on every rank (maxima over the ranks)."""
    from mpi4py import MPI

    from ferroptim import distributed as dist

    size = comm.size
    values = np.random.default_rng(0).standard_normal(sum(sizes), dtype=np.float32)
    grads = np.random.default_rng(1 + comm.rank).standard_normal(sum(sizes), dtype=np.float32)
    params, start = [], 0
    for n in sizes:
        p = fo.Parameter(values[start : start + n].copy())
        p.grad = grads[start : start + n].copy()
        params.append(p)
        start += n
    del values, grads
    optimizer, state_bytes = build(method, params, comm)

    on_cpu = [0.0, 0.0]  # this rank's CPU time and wall time in the timed steps

    def step() -> float:
        comm.Barrier()
        start, cpu = time.perf_counter(), time.process_time()
        optimizer.step()
        wall = time.perf_counter() - start
        on_cpu[0] += time.process_time() - cpu
        on_cpu[1] += wall
        return comm.allreduce(wall, op=MPI.MAX)

    warmup = [step() for _ in range(WARMUP_STEPS)]
    on_cpu[:] = [0.0, 0.0]
    fewest, most = FULL_STEPS
    steps = QUICK_STEPS if quick else max(fewest, min(most, int(BUDGET_S / max(warmup[-1], 1e-6))))
    times = [step() for _ in range(steps)]
    dist.check_replicas(params, comm)  # raises DistributedError on every rank if they differ
    n = sum(sizes)
    gradient_bytes = 4 * n
    ring = 0 if method == "fo.Adam" else 2 * (size - 1) * gradient_bytes // size
    payload = getattr(optimizer, "last_step_bytes", 0)
    return {
        "ranks": size,
        "threads": fo.get_num_threads(),
        "model": None,  # filled in by the caller
        "method": method,
        "elements": n,
        "tensors": len(sizes),
        "times_s": times,
        "cpu_s": on_cpu[0],
        "wall_s": on_cpu[1],
        "payload_bytes": comm.allreduce(payload, op=MPI.MAX),
        "ring_bytes_sent": ring,
        "state_bytes": comm.allreduce(state_bytes(), op=MPI.MAX),
        "unsharded_state_bytes": 8 * n,  # Adam: exp_avg and exp_avg_sq, float32
    }


def memory_case(method: str, layout: str, sizes: list[int], comm: Any) -> dict[str, Any]:
    """The memory ``method`` allocates on each rank for parameters of ``sizes`` (float32, as
    separate arrays or as views of one buffer from ``fo.flatten_parameters``), traced by
    ``tracemalloc`` from building the optimizer through ``MEMORY_STEPS`` steps: the peak,
    and what is still held after them. The parameters and gradients themselves are
    allocated before tracing starts. Returns the largest over the ranks."""
    from mpi4py import MPI

    rng = np.random.default_rng(1 + comm.rank)
    arrays = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
    params: list[fo.Parameter] = []
    if layout == "flat buffer":
        params += fo.flatten_parameters(arrays).params
        for p, a in zip(params, arrays):
            p.grad = a
    else:
        params += [fo.Parameter(a.copy(), grad=a) for a in arrays]
    gc.collect()
    comm.Barrier()
    tracemalloc.start()
    optimizer, state_bytes = build(method, params, comm)
    for _ in range(MEMORY_STEPS):
        optimizer.step()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "ranks": comm.size,
        "method": method,
        "layout": layout,
        "elements": sum(sizes),
        "tensors": len(sizes),
        "state_bytes": comm.allreduce(state_bytes(), op=MPI.MAX),
        "traced_peak_bytes": comm.allreduce(peak, op=MPI.MAX),
        "traced_current_bytes": comm.allreduce(current, op=MPI.MAX),
    }


def worker(quick: bool, out: Path) -> None:
    """Every case on ``MPI.COMM_WORLD``; rank 0 writes the rows to ``out`` as JSON. An
    exception on any rank aborts the job, so no rank waits forever."""
    import traceback

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        fo.set_num_threads(max(1, (os.cpu_count() or 1) // comm.size))
        cases = [
            (model, sizes, method)
            for model, sizes in (QUICK_SHAPES if quick else FULL_SHAPES).items()
            for method in METHODS
            if not (method == "fo.Adam" and comm.size > 1)
        ]
        rows: list[dict[str, Any]] = []
        for _ in range(QUICK_PASSES if quick else 1):
            for i, (model, sizes, method) in enumerate(cases):
                row = time_case(method, sizes, quick, comm)
                if len(rows) == i:
                    rows.append({**row, "model": model, "times_s": [], "cpu_s": 0.0, "wall_s": 0.0})
                for key in ("times_s", "cpu_s", "wall_s"):
                    rows[i][key] += row[key]
        for row in rows:
            row["steps"] = len(row["times_s"])
            row["median_s"] = statistics.median(row["times_s"])
            # the least a rank was on a CPU while it stepped (its threads' CPU time over the
            # wall time): below 100% when other processes took its core
            row["cpu_share"] = comm.allreduce(row.pop("cpu_s") / row.pop("wall_s"), op=MPI.MIN)
            if comm.rank == 0:
                print(
                    f"  {comm.size} rank(s) {row['model']} {row['method']}: {row['median_s'] * 1e3:.2f} ms",
                    flush=True,
                )
        memory = [
            memory_case(method, layout, QUICK_MEMORY_SHAPES if quick else FULL_MEMORY_SHAPES, comm)
            for layout in LAYOUTS
            for method in METHODS
        ]
        if comm.rank == 0:
            out.write_text(json.dumps({"times": rows, "memory": memory}))
    except Exception:
        print(f"rank {comm.rank} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        comm.Abort(1)


# --- the driver ----------------------------------------------------------------------------


def machine(mpirun: str) -> dict[str, Any]:
    cpu = cpu_model()
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout.splitlines()
    import mpi4py

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "mpi": version[0] if version else "unknown MPI",
        "mpi4py": mpi4py.__version__,
        "numpy": np.__version__,
        "ferroptim": fo.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def human_bytes(n: int) -> str:
    """``n`` bytes in B, kB, MB or GB (powers of 1000), three significant digits."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def table(rows: list[dict[str, Any]]) -> list[str]:
    header = [
        "model",
        "ranks",
        "optimizer",
        "threads/rank",
        "median step",
        "vs fo.Adam, 1 rank",
        "payload / rank / step",
        "ring bytes sent / rank / step",
        "Adam state / rank",
        "state vs unsharded",
        "rank CPU / wall",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    baseline = {r["model"]: r["median_s"] for r in rows if r["method"] == "fo.Adam"}
    for r in sorted(rows, key=lambda r: (list(FULL_SHAPES) + list(QUICK_SHAPES)).index(r["model"])):
        cells = [
            r["model"],
            str(r["ranks"]),
            r["method"],
            str(r["threads"]),
            f"{r['median_s'] * 1e3:.3g} ms",
            f"{r['median_s'] / baseline[r['model']]:.2f}×" if r["model"] in baseline else "—",
            human_bytes(r["payload_bytes"]),
            human_bytes(r["ring_bytes_sent"]),
            human_bytes(r["state_bytes"]),
            f"{r['state_bytes'] / r['unsharded_state_bytes']:.3f}",
            f"{r['cpu_share']:.0%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(rows: list[dict[str, Any]]) -> list[str]:
    header = [
        "layout",
        "ranks",
        "optimizer",
        "Adam state / rank",
        "traced peak / rank",
        "traced after the steps / rank",
        "peak vs DistributedOptimizer",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    baseline = {
        (r["layout"], r["ranks"]): r["traced_peak_bytes"]
        for r in rows
        if r["method"] == "DistributedOptimizer"
    }
    for r in rows:
        cells = [
            r["layout"],
            str(r["ranks"]),
            r["method"],
            human_bytes(r["state_bytes"]),
            human_bytes(r["traced_peak_bytes"]),
            human_bytes(r["traced_current_bytes"]),
            f"{r['traced_peak_bytes'] / baseline[r['layout'], r['ranks']]:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def driver(quick: bool, out: Path) -> int:
    mpirun = shutil.which("mpirun")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpirun = None
    if mpirun is None:
        print("bench_distributed: mpirun or mpi4py is missing, skipping (pip install mpi4py; Open MPI)")
        return 0
    info = machine(mpirun)
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in QUICK_RANKS if quick else FULL_RANKS:
            result_file = Path(tmp) / f"{ranks}.json"
            command = [mpirun, "-n", str(ranks), "--bind-to", "none", "--oversubscribe"]
            if os.geteuid() == 0:
                command.append("--allow-run-as-root")
            command += [sys.executable, __file__, "--worker", "--json", str(result_file)]
            if quick:
                command.append("--quick")
            print(f"mpirun -n {ranks} ...", file=sys.stderr, flush=True)
            try:
                done = subprocess.run(command, timeout=WORKER_TIMEOUT_S, stdout=sys.stderr)
            except subprocess.TimeoutExpired:
                print(f"{ranks} ranks: no result within {WORKER_TIMEOUT_S} s", file=sys.stderr)
                return 1
            if done.returncode != 0 or not result_file.exists():
                print(f"{ranks} ranks failed (exit status {done.returncode})", file=sys.stderr)
                return 1
            result = json.loads(result_file.read_text())
            rows += result["times"]
            memory += result["memory"]
    title = "bench_distributed --quick" if quick else "bench_distributed"
    lines = [
        f"# {title}: data-parallel Adam (float32) on MPI",
        "",
        f"{info['cpu']}, {info['logical_cores']} logical cores; {info['mpi']}, mpi4py {info['mpi4py']}, "
        f"NumPy {info['numpy']}, ferroptim {info['ferroptim']}, Python {info['python']}; {info['date']}.",
        "",
        "Median step time (slowest rank, after a barrier); payload = `last_step_bytes`; ring bytes sent "
        "= 2(N-1)/N × gradient bytes (all-reduce, or ZeRO-1's reduce-scatter + all-gather); "
        "state = the optimizer's arrays on one rank.",
        "",
        *table(rows),
        "",
        f"Memory per rank: Adam on {memory[0]['tensors']} float32 arrays of "
        f"{memory[0]['elements'] // memory[0]['tensors']:,} elements, separate or views of one "
        "buffer (`fo.flatten_parameters`): every array the optimizer allocates, traced by "
        f"`tracemalloc` from its construction through {MEMORY_STEPS} steps (the parameters and "
        "gradients themselves not counted); the largest over the ranks.",
        "",
        *memory_table(memory),
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed.md").write_text("\n".join(lines) + "\n")
    (out / "distributed.json").write_text(
        json.dumps({"machine": info, "rows": rows, "memory": memory}, indent=1) + "\n"
    )
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 and 2 ranks: seconds")
    parser.add_argument("--out", type=Path, help="folder for distributed.md and distributed.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.quick, args.json)
        return 0
    out = args.out or Path(__file__).resolve().parent / "results" / ("quick" if args.quick else "")
    return driver(args.quick, out)


if __name__ == "__main__":
    sys.exit(main())
