"""Side-by-side step time of ferroptim and torch.optim (CPU), in one process.

``python benches/bench_step.py [--quick]`` prints, for each optimizer and model shape,
the median time per ``step()`` of ferroptim and of torch's single-tensor (default on
CPU), foreach and fused paths, and the ratio torch / ferroptim (> 1: ferroptim is
faster). Absolute times on shared machines are noisy; the ratios, measured
interleaved in the same process, are the result.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import ferroptim as fo

CASES: dict[str, tuple[Callable, Callable, dict, list[str]]] = {
    "SGD momentum": (fo.SGD, torch.optim.SGD, dict(lr=1e-3, momentum=0.9), ["foreach", "fused"]),
    "Adagrad": (fo.Adagrad, torch.optim.Adagrad, dict(lr=1e-2), ["foreach", "fused"]),
    "RMSprop": (fo.RMSprop, torch.optim.RMSprop, dict(lr=1e-3), ["foreach"]),
    "Adadelta": (fo.Adadelta, torch.optim.Adadelta, dict(), ["foreach"]),
    "Adam": (fo.Adam, torch.optim.Adam, dict(lr=1e-3), ["foreach", "fused"]),
    "AdamW amsgrad": (fo.AdamW, torch.optim.AdamW, dict(lr=1e-3, amsgrad=True), ["foreach", "fused"]),
}

SHAPES = {"1 x 1e7": (1, 10_000_000), "100 x 1e5": (100, 100_000), "1000 x 1e3": (1000, 1_000)}


def median_step(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up: allocates state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and cases")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    repeats = 5 if args.quick else 15
    dtype = np.dtype(args.dtype)
    torch.set_num_threads(fo.get_num_threads())
    print(f"threads: ferroptim {fo.get_num_threads()}, torch {torch.get_num_threads()}; dtype {dtype}")
    print(
        f"{'optimizer':<14} {'model':<11} {'ferroptim':>10} {'torch':>10} {'foreach':>10} {'fused':>10}  "
        "speedup vs torch / foreach / fused"
    )
    rng = np.random.default_rng(0)
    for name, (fo_cls, torch_cls, kwargs, variants) in CASES.items():
        for shape_name, (count, size) in SHAPES.items():
            values = [rng.standard_normal(size).astype(dtype) for _ in range(count)]
            grads = [rng.standard_normal(size).astype(dtype) for _ in range(count)]
            fo_params = [fo.Parameter(v.copy(), g) for v, g in zip(values, grads)]
            fo_opt = fo_cls(fo_params, **kwargs)
            timings = {"ferroptim": median_step(fo_opt.step, repeats)}
            del fo_opt, fo_params
            for variant in ["default", *variants]:
                params = [torch.tensor(v) for v in values]
                for p, g in zip(params, grads):
                    p.grad = torch.tensor(g)
                flags = {"foreach": False} if variant == "default" else {variant: True}
                opt = torch_cls(params, **kwargs, **flags)
                with torch.no_grad():
                    timings[variant] = median_step(opt.step, repeats)
                del opt, params
            ours = timings["ferroptim"]
            cells = [
                f"{1e3 * timings[k]:>8.2f}ms" if k in timings else f"{'-':>10}"
                for k in ("default", "foreach", "fused")
            ]
            ratios = " / ".join(
                f"{timings[k] / ours:.1f}x" if k in timings else "-" for k in ("default", "foreach", "fused")
            )
            print(f"{name:<14} {shape_name:<11} {1e3 * ours:>8.2f}ms {' '.join(cells)}  {ratios}")
            if args.quick:
                break


if __name__ == "__main__":
    main()
