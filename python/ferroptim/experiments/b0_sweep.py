"""``b0-sweep``: scalar AdaGrad's robustness to ``b0`` (Ward, Wu & Bottou 2018, Figs. 1–2).

AdaGrad-Norm, ``b_k² = b_{k-1}² + ‖g_k‖²``, ``θ_k = θ_{k-1} − g_k / b_k``, starts from
``b0`` and is run against SGD with the fixed step ``1/b0``, over a log grid of ``b0``,
for logistic regression and the two-layer network, with full-batch ("batch") and
minibatch gradients. The lecture's claim: with ``b_k`` fixed to ``b < L/2`` gradient
descent can diverge, while AdaGrad-Norm converges for every ``b0 > 0``, since ``b_k``
grows until it passes ``L``. Written out: one figure per gradient setting,
``b0_sweep_<setting>.png`` (train and test accuracy against ``b0`` at the epoch
snapshots, laid out as Ward et al.'s Fig. 1), ``b0_sweep.csv`` and ``b0_sweep.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ferroptim as fo

from . import models
from .data import Dataset
from .plotting import axes_grid, save
from .training import History, progress_bar, train

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SETTINGS = {"batch": "full-batch gradients", "minibatch": "minibatch gradients"}
METHODS = ("AdaGrad-Norm", "SGD")


def optimizer(method: str, params: Any, b0: float) -> fo.Optimizer:
    """AdaGrad-Norm in the lecture's form (η = 1) from ``b0``, or SGD with step ``1/b0``."""
    if method == "AdaGrad-Norm":
        return fo.AdagradNorm(params, lr=1.0, b0=b0)
    if method == "SGD":
        return fo.SGD(params, lr=1.0 / b0)
    raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")


@dataclass
class Point:
    """One run: a method on a model with one ``b0`` and gradient setting."""

    model: str
    setting: str
    method: str
    b0: float
    history: History


def run(
    data: Dataset,
    *,
    b0s: list[float],
    model_names: list[str],
    setting_names: list[str],
    snapshots: list[int],
    batch_size: int,
    hidden: int,
    seed: int,
    progress: bool = True,
) -> list[Point]:
    """Every (model, setting, method, b0) run, recorded at the snapshot epochs; ``progress``
    shows a bar per model, setting and method (see ``training.progress_bar``)."""
    epochs = max(snapshots)
    points = []
    for model_name in model_names:
        for setting in setting_names:
            for method in METHODS:
                desc = f"{model_name:6} {setting:9} {method:12}"
                bar = progress_bar(epochs * len(b0s), desc, enabled=progress)
                for b0 in b0s:
                    model = models.build(model_name, data.features, data.classes, hidden=hidden, seed=seed)
                    history = train(
                        model,
                        optimizer(method, model.params, b0),
                        data,
                        epochs=epochs,
                        batch_size=None if setting == "batch" else batch_size,
                        seed=seed,
                        record_at=snapshots,
                        progress=bar.update,
                    )
                    points.append(Point(model_name, setting, method, b0, history))
                bar.close()
    return points


def _accuracy(point: Point, split: str, epoch: int) -> float:
    return getattr(point.history, f"{split}_acc")[point.history.epochs.index(epoch)]


def table(points: list[Point], epoch: int) -> str:
    """Test accuracy at ``epoch``: a row per ``b0``, a column pair (AdaGrad-Norm, SGD)
    per model and gradient setting."""
    groups = list(dict.fromkeys((p.model, p.setting) for p in points))
    b0s = sorted({p.b0 for p in points})
    cell = {(p.model, p.setting, p.method, p.b0): _accuracy(p, "test", epoch) for p in points}
    rows = [
        f"test accuracy after epoch {epoch} (AGN: AdaGrad-Norm from b0; SGD: fixed step 1/b0)",
        f"{'':>8}" + "".join(f"{f'{m} {s}':>18}" for m, s in groups),
        f"{'b0':>8}" + "".join(f"{'AGN':>10}{'SGD':>8}" for _ in groups),
    ]
    for b0 in b0s:
        rows.append(
            f"{b0:>8.3g}"
            + "".join(
                f"{cell[(m, s, METHODS[0], b0)]:>10.3f}{cell[(m, s, METHODS[1], b0)]:>8.3f}"
                for m, s in groups
            )
        )
    return "\n".join(rows)


def write(points: list[Point], out: Path, settings: dict[str, Any]) -> dict[str, Path]:
    """Writes one figure per gradient setting, the CSV and the JSON; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "b0_sweep.csv", "json": out / "b0_sweep.json"}
    with paths["csv"].open("w") as f:
        f.write("model,setting,method,b0,epoch,train_loss,train_acc,test_loss,test_acc,diverged_at\n")
        for p in points:
            h = p.history
            for i, epoch in enumerate(h.epochs):
                f.write(
                    f"{p.model},{p.setting},{p.method},{p.b0!r},{epoch},{h.train_loss[i]!r},{h.train_acc[i]!r},"
                    f"{h.test_loss[i]!r},{h.test_acc[i]!r},{'' if h.diverged_at is None else h.diverged_at}\n"
                )
    runs = [
        {
            "model": p.model,
            "setting": p.setting,
            "method": p.method,
            "b0": p.b0,
            "epochs": p.history.epochs,
            "train_acc": p.history.train_acc,
            "test_acc": p.history.test_acc,
            "train_loss": p.history.train_loss,
            "test_loss": p.history.test_loss,
            "diverged_at": p.history.diverged_at,
        }
        for p in points
    ]
    paths["json"].write_text(json.dumps({"settings": settings, "runs": runs}, indent=1) + "\n")
    for setting in dict.fromkeys(p.setting for p in points):
        paths[f"plot_{setting}"] = out / f"b0_sweep_{setting}.png"
        save(plot([p for p in points if p.setting == setting], settings), paths[f"plot_{setting}"])
    return paths


def plot(points: list[Point], settings: dict[str, Any] | None = None, *, ax: Any = None) -> Figure:
    """Train (top) and test (bottom) accuracy against ``b0``, a column per model and
    snapshot epoch, AdaGrad-Norm against SGD with step ``1/b0`` (Ward et al. Fig. 1).

    Args:
        points: what :func:`run` returned, for one gradient setting (``batch`` or
            ``minibatch``; select with ``[p for p in points if p.setting == ...]``).
        settings: the run's settings; its ``dataset`` and ``batch_size`` (each optional)
            go into the title.
        ax: ``2 × (models × snapshots)`` Axes to draw into, in row-major order; by
            default a new figure.

    Returns:
        The figure (``ax``'s when given). The legend stands right of the top row.
    """
    settings = settings or {}
    if len({p.setting for p in points}) != 1:
        raise ValueError("points: plot one gradient setting at a time (batch or minibatch)")
    model_names = list(dict.fromkeys(p.model for p in points))
    snapshots = [e for e in points[0].history.epochs if e > 0]
    fig, axes = axes_grid(ax, 2, len(model_names) * len(snapshots), width=3.0, height=2.6)
    styles = {"AdaGrad-Norm": dict(color="C0", marker="o"), "SGD": dict(color="C3", marker="s", ls="--")}
    for row, split in enumerate(("train", "test")):
        for m, model_name in enumerate(model_names):
            for s, epoch in enumerate(snapshots):
                panel = axes[row][m * len(snapshots) + s]
                for method in METHODS:
                    run = sorted(
                        (p for p in points if p.model == model_name and p.method == method),
                        key=lambda p: p.b0,
                    )
                    label = "AdaGrad-Norm" if method == "AdaGrad-Norm" else "SGD, step 1/b0"
                    panel.plot(
                        [p.b0 for p in run],
                        [_accuracy(p, split, epoch) for p in run],
                        label=label,
                        ms=3,
                        **styles[method],
                    )
                panel.set_xscale("log")
                panel.set_ylim(0, 1.02)
                panel.set_xlabel("b0")
                panel.set_ylabel(f"{split} accuracy")
                panel.set_title(
                    f"{model_name.upper() if model_name == 'mlp' else 'LR'}, epoch {epoch}", fontsize=9
                )
                panel.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0)
    setting = points[0].setting
    if ax is None:
        on = f" on {settings['dataset']}" if "dataset" in settings else ""
        batch = (
            f" (batch size {settings['batch_size']})"
            if setting != "batch" and "batch_size" in settings
            else ""
        )
        fig.suptitle(f"ferroptim b0 sweep{on}: {SETTINGS[setting]}{batch}", fontsize=10)
    return fig
