"""The command line: ``python -m ferroptim {rates,compare,b0-sweep,agn-theory}`` (also ``ferroptim ...``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._extras import install_hint

EXTRA = f"the experiments need the `experiments` extra: {install_hint('experiments')}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _names(choices: Sequence[str]):
    """A parser of comma-separated names from ``choices`` (case-insensitive), or ``all``."""
    by_key = {c.lower(): c for c in choices}

    def parse(text: str) -> list[str]:
        if text.strip().lower() == "all":
            return list(choices)
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n.lower() not in by_key]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {unknown or text!r}; choose from {', '.join(choices)} or all"
            )
        return [by_key[n.lower()] for n in names]

    return parse


def _lr_override(methods: Sequence[str]):
    parse_name = _names(methods)

    def parse(text: str) -> tuple[str, float]:
        name, sep, value = text.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=LR, got {text!r}")
        return parse_name(name)[0], _positive_float(value)

    return parse


def _prog() -> str:
    """How the command was invoked: ``python -m ferroptim`` (run as a module), else ``ferroptim``."""
    return "python -m ferroptim" if Path(sys.argv[0]).name == "__main__.py" else "ferroptim"


def parser() -> argparse.ArgumentParser:
    """The argument parser of all four subcommands."""
    from .. import __version__
    from . import b0_sweep, compare, models

    top = argparse.ArgumentParser(
        prog=_prog(),
        description="The lecture's optimization experiments, run with ferroptim's optimizers.",
    )
    top.add_argument("--version", action="version", version=f"ferroptim {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="{rates,compare,b0-sweep,agn-theory}")

    def common(p: argparse.ArgumentParser, out: str) -> None:
        p.add_argument(
            "--seed", type=int, default=0, help="seed of the data split, weights and minibatches (0)"
        )
        p.add_argument(
            "--out", type=Path, default=Path("results") / out, help=f"output folder (results/{out})"
        )

    def training(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dataset",
            choices=["digits", "mnist"],
            default="digits",
            help="digits (embedded, default) or mnist",
        )
        p.add_argument("--data-dir", type=Path, help="folder with MNIST's four IDX files (.gz or plain)")
        p.add_argument(
            "--models", type=_names(list(models.MODELS)), default=list(models.MODELS), help="logreg,mlp"
        )
        p.add_argument("--batch-size", type=_positive_int, default=64, help="minibatch size (64)")
        p.add_argument(
            "--hidden", type=_positive_int, default=128, help="hidden units of the two-layer network (128)"
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    rates = sub.add_parser(
        "rates", help="linear rates of GD, Polyak and Nesterov on a quadratic, against theory"
    )
    rates.add_argument("--kappa", type=_positive_float, default=100.0, help="condition number κ = L/μ (100)")
    rates.add_argument("--dim", type=_positive_int, default=100, help="dimension of θ (100)")
    rates.add_argument(
        "--iters", type=_positive_int, default=100_000, help="most iterations per method (100000)"
    )
    rates.add_argument(
        "--tol", type=_positive_float, default=1e-10, help="stop at error ‖θ_k‖ < tol·‖θ_0‖ (1e-10)"
    )
    common(rates, "rates")

    cmp = sub.add_parser("compare", help="every optimizer on logistic regression and a two-layer network")
    cmp.add_argument("--epochs", type=_positive_int, default=50, help="epochs per run (50)")
    cmp.add_argument(
        "--optimizers",
        type=_names(list(compare.ALL_METHODS)),
        default=list(compare.METHODS),
        help=f"comma-separated from {', '.join(compare.ALL_METHODS)}, or all (default: the lecture's eight)",
    )
    cmp.add_argument(
        "--lr",
        type=_lr_override(list(compare.ALL_METHODS)),
        action="append",
        default=[],
        metavar="NAME=LR",
        help="fix an optimizer's learning rate (repeatable); it is then not tuned",
    )
    cmp.add_argument(
        "--no-tune",
        action="store_true",
        help="use the default learning rates instead of the best of a half-decade grid around them",
    )
    training(cmp)
    common(cmp, "compare")

    sweep = sub.add_parser("b0-sweep", help="AdaGrad-Norm against SGD with step 1/b0 over a grid of b0")
    sweep.add_argument("--b0-min", type=_positive_float, default=1e-2, help="smallest b0 (1e-2)")
    sweep.add_argument("--b0-max", type=_positive_float, default=1e3, help="largest b0 (1e3)")
    sweep.add_argument("--b0-points", type=_positive_int, default=11, help="grid points, log-spaced (11)")
    sweep.add_argument(
        "--epochs",
        type=_positive_int,
        nargs="+",
        default=[5, 20, 60],
        help="snapshot epochs (5 20 60); runs to the last",
    )
    sweep.add_argument(
        "--settings",
        type=_names(list(b0_sweep.SETTINGS)),
        default=list(b0_sweep.SETTINGS),
        help="batch,minibatch: full-batch and/or minibatch gradients",
    )
    training(sweep)
    common(sweep, "b0_sweep")

    theory = sub.add_parser(
        "agn-theory", help="the lecture's AdaGrad-Norm theorems checked run by run (Ward et al. 2018)"
    )
    theory.add_argument(
        "--quick",
        action="store_true",
        help="a reduced grid of b0, ε and fixed steps, 5,000 minibatch steps (a few seconds)",
    )
    theory.add_argument("--no-progress", action="store_true", help="no progress bars")
    common(theory, "agn_theory")
    return top


def _data(args: argparse.Namespace):
    from .data import load

    return load(args.dataset, args.data_dir, seed=args.seed)


def _rates(args: argparse.Namespace) -> dict[str, Path]:
    from . import rates

    results = rates.run(kappa=args.kappa, dim=args.dim, iters=args.iters, tol=args.tol, seed=args.seed)
    print(rates.table(results, args.kappa))
    return rates.write(
        results, args.out, {"kappa": args.kappa, "dim": args.dim, "tol": args.tol, "seed": args.seed}
    )


def _compare(args: argparse.Namespace) -> dict[str, Path]:
    from . import compare

    data = _data(args)
    print(f"{data.name}: {len(data.y_train)} train / {len(data.y_test)} test samples, {data.features} inputs")
    runs = compare.run(
        data,
        model_names=args.models,
        optimizer_names=args.optimizers,
        epochs=args.epochs,
        batch_size=args.batch_size,
        hidden=args.hidden,
        seed=args.seed,
        lrs=dict(args.lr),
        tune=not args.no_tune,
        progress=not args.no_progress,
    )
    print(compare.table(runs))
    settings = _settings(args, data.name, tuned=not args.no_tune)
    return compare.write(runs, args.out, settings)


def _b0_sweep(args: argparse.Namespace) -> dict[str, Path]:
    import numpy as np

    from . import b0_sweep

    data = _data(args)
    if args.b0_min > args.b0_max:
        raise SystemExit(f"--b0-min {args.b0_min} is larger than --b0-max {args.b0_max}")
    b0s = [float(b) for b in np.geomspace(args.b0_min, args.b0_max, args.b0_points)]
    snapshots = sorted(set(args.epochs))
    points = b0_sweep.run(
        data,
        b0s=b0s,
        model_names=args.models,
        setting_names=args.settings,
        snapshots=snapshots,
        batch_size=args.batch_size,
        hidden=args.hidden,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(b0_sweep.table(points, snapshots[-1]))
    return b0_sweep.write(points, args.out, _settings(args, data.name, b0s=b0s))


def _agn_theory(args: argparse.Namespace) -> dict[str, Path]:
    from . import agn_theory

    grid = agn_theory.QUICK if args.quick else {}
    result = agn_theory.run(seed=args.seed, progress=not args.no_progress, **grid)
    print(agn_theory.table(result))
    return agn_theory.write(
        result, args.out, {"command": args.command, "seed": args.seed, "quick": args.quick, **grid}
    )


def _settings(args: argparse.Namespace, dataset: str, **extra: Any) -> dict[str, Any]:
    """The run's settings as plain JSON data."""
    skip = {"command", "out", "data_dir", "no_progress", "dataset"}
    settings = {k: (dict(v) if k == "lr" else v) for k, v in vars(args).items() if k not in skip}
    return {"command": args.command, "dataset": dataset, **settings, **extra}


COMMANDS = {"rates": _rates, "compare": _compare, "b0-sweep": _b0_sweep, "agn-theory": _agn_theory}


def main(argv: Sequence[str] | None = None) -> None:
    """Parses ``argv`` (default: ``sys.argv``), runs the subcommand and says where its files are."""
    try:
        import matplotlib
        import sklearn  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"{EXTRA} ({err})") from None
    matplotlib.use("Agg")  # the figures go to files: no window system needed
    args = parser().parse_args(argv)
    start = time.perf_counter()
    try:
        paths = COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"ferroptim {args.command}: {err}") from None
    print(f"\n{args.command} finished in {time.perf_counter() - start:.1f} s; wrote:", file=sys.stdout)
    for kind, path in paths.items():
        print(f"  {kind:<15} {path}")


if __name__ == "__main__":
    main()
