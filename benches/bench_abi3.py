"""Per-step time of the abi3 wheel beside the version-specific build of ferroptim.

``make bench-abi3`` (or ``python benches/bench_abi3.py --other DIR``) times ``step()``
of SGD with momentum and of Adam on float32 parameters of a few shapes, from the tiny
(where the binding's per-call and per-parameter work is all there is) to the large (where
the kernels' memory traffic is), with two builds of the same source:

- *native*: the build this interpreter imports, ``make build``'s (``maturin develop
  --release``, compiled for this CPython version);
- *abi3*: the build in ``DIR``, ``make wheel``'s abi3 wheel unpacked there
  (``pip install --no-deps --target DIR dist/ferroptim-*-abi3-*.whl``), compiled against
  CPython 3.9's stable ABI.

Two builds of one package cannot be loaded into one process, so each round runs one child
process per build, in alternating order (native first in even rounds, abi3 first in odd
ones), so that load drift hits both alike. A child times every case, for each the median
over blocks of steps of the time per step. The reported time is the median over rounds,
and the ratio the median over rounds of abi3's time / native's time in the same round
(above 1: the abi3 build is slower). Each child reports which extension module it
loaded, and the run stops if a build's is not the one intended.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model

# (name, number of tensors, elements per tensor)
SHAPES = [("1x16", 1, 16), ("101x16", 101, 16), ("200x1e4", 200, 10_000), ("1x1e6", 1, 1_000_000)]
QUICK_SHAPES = SHAPES[:2]
OPTIMIZERS = ["SGD", "Adam"]


def child(quick: bool) -> None:
    """Times every case with the ferroptim this process imports; prints JSON."""
    import ferroptim as fo
    from ferroptim import _core

    make = {"SGD": lambda p: fo.SGD(p, lr=1e-3, momentum=0.9), "Adam": lambda p: fo.Adam(p, lr=1e-3)}
    rng = np.random.default_rng(0)
    times = {}
    for shape, count, size in QUICK_SHAPES if quick else SHAPES:
        params = [rng.standard_normal(size).astype(np.float32) for _ in range(count)]
        grads = [rng.standard_normal(size).astype(np.float32) * 1e-3 for _ in range(count)]
        for name in OPTIMIZERS:
            opt = make[name](params)
            for _ in range(3):
                opt.step(grads=grads)
            # blocks of about 2 ms, 15 of them (3 in a quick run)
            start = time.perf_counter()
            opt.step(grads=grads)
            block = max(1, int(2e-3 / max(time.perf_counter() - start, 1e-9)))
            per_step = []
            for _ in range(3 if quick else 15):
                start = time.perf_counter()
                for _ in range(block):
                    opt.step(grads=grads)
                per_step.append((time.perf_counter() - start) / block)
            times[f"{name} {shape}"] = statistics.median(per_step)
    print(json.dumps({"core": _core.__file__, "threads": fo.get_num_threads(), "times": times}))


def run_child(build: str, other: Path, quick: bool) -> dict:
    env = dict(os.environ)
    if build == "abi3":
        env["PYTHONPATH"] = os.pathsep.join([str(other), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    args = [sys.executable, __file__, "--child"] + (["--quick"] if quick else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if (other in Path(result["core"]).resolve().parents) != (build == "abi3"):
        sys.exit(f"the {build} run loaded {result['core']}; see --other")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other", type=Path, help="folder holding the abi3 build's ferroptim package")
    ap.add_argument("--rounds", type=int, default=8, help="rounds of one child per build (8)")
    ap.add_argument("--quick", action="store_true", help="2 tiny shapes, 2 rounds: the code path only")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.quick)
        return
    if args.other is None:
        ap.error("--other DIR is required (make bench-abi3 makes one)")
    other = args.other.resolve()
    rounds = 2 if args.quick else args.rounds
    runs: dict[str, list[dict]] = {"native": [], "abi3": []}
    cores = {}
    for r in range(rounds):
        for build in ("native", "abi3") if r % 2 == 0 else ("abi3", "native"):
            result = run_child(build, other, args.quick)
            runs[build].append(result["times"])
            cores[build] = result["core"]
            print(f"round {r + 1}/{rounds}: {build} done", file=sys.stderr, flush=True)
    print(f"# abi3 wheel vs version-specific build: median step time over {rounds} interleaved rounds")
    print()
    print(
        f"{cpu_model()}, {os.cpu_count()} logical cores, "
        f"Python {platform.python_version()}, NumPy {np.__version__}; "
        f"native: {Path(cores['native']).name}, abi3: {Path(cores['abi3']).name}"
    )
    print()
    print("| case (float32) | native | abi3 | abi3 / native |")
    print("|---|---:|---:|---:|")
    for case in runs["native"][0]:
        native = statistics.median(t[case] for t in runs["native"])
        abi3 = statistics.median(t[case] for t in runs["abi3"])
        ratio = statistics.median(a[case] / n[case] for a, n in zip(runs["abi3"], runs["native"]))
        print(f"| {case} | {native * 1e6:.2f} µs | {abi3 * 1e6:.2f} µs | {ratio:.3f} |")


if __name__ == "__main__":
    main()
