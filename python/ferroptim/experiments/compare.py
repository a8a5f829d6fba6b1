"""``compare``: every optimizer on the same models and data (Kingma & Ba 2015, Fig. 2).

Each optimizer trains each model from the same initial weights on the same sequence
of minibatches (one ``fo.MinibatchSampler`` seed for all), so the curves differ only
by the update rule. Written out: ``compare.png`` (training cost against epoch, one
panel per model), ``compare.csv`` (one row per model, optimizer and epoch) and
``compare.json`` (the settings, every curve and the summary table).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import ferroptim as fo

from . import models
from .data import Dataset
from .plotting import axes_grid, save
from .training import History, progress_bar, train

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Method:
    """An optimizer as the lecture names it: a ferroptim class and its settings."""

    cls: Callable[..., fo.Optimizer]
    kwargs: dict[str, Any]

    def build(self, params: Any, lr: float | None = None) -> fo.Optimizer:
        """The optimizer over ``params``, with ``lr`` replacing the default when given."""
        return self.cls(params, **{**self.kwargs, **({} if lr is None else {"lr": lr})})


#: The lecture's optimizers, with learning rates at the centre of ``TUNE_FACTORS``'s grid
#: for both models on digits (AdaGrad-Norm's ``lr`` is the lecture's numerator η = 1
#: times a factor; its ``b0`` is the subject of ``b0-sweep``).
#:
#: :meta hide-value:
METHODS: dict[str, Method] = {
    "SGD": Method(fo.SGD, {"lr": 1.5}),
    "Momentum": Method(fo.SGD, {"lr": 0.3, "momentum": 0.9}),
    "Nesterov": Method(fo.SGD, {"lr": 0.3, "momentum": 0.9, "nesterov": True}),
    "AdaGrad": Method(fo.Adagrad, {"lr": 0.3}),
    "RMSProp": Method(fo.RMSprop, {"lr": 1e-2}),
    "AdaDelta": Method(fo.Adadelta, {"lr": 10.0}),
    "Adam": Method(fo.Adam, {"lr": 1e-2}),
    "AdaGrad-Norm": Method(fo.AdagradNorm, {"lr": 10.0, "b0": 1.0}),
}

#: torch's other optimizers that ferroptim implements, run with ``--optimizers``; their
#: learning rates are Adam's for the Adam family and a tenth of it for Lion (its update
#: has the sign's unit size per coordinate), AdamW with torch's default decay 0.01.
MORE_METHODS: dict[str, Method] = {
    "NAdam": Method(fo.NAdam, {"lr": 1e-2}),
    "RAdam": Method(fo.RAdam, {"lr": 1e-2}),
    "Adamax": Method(fo.Adamax, {"lr": 1e-2}),
    "Lion": Method(fo.Lion, {"lr": 1e-3}),
    "AdamW": Method(fo.AdamW, {"lr": 1e-2, "weight_decay": 1e-2}),
}

#: Every optimizer ``run`` knows by name.
ALL_METHODS: dict[str, Method] = {**METHODS, **MORE_METHODS}


@dataclass
class Run:
    """One model trained by one optimizer."""

    model: str
    optimizer: str
    lr: float
    history: History

    @property
    def ms_per_epoch(self) -> float:
        """Mean wall time of one epoch's updates, in milliseconds."""
        return 1e3 * float(np.mean(self.history.seconds)) if self.history.seconds else float("nan")


#: With ``tune``, each default learning rate is scaled by these factors (half decades).
TUNE_FACTORS = (0.1, 10**-0.5, 1.0, 10**0.5, 10.0)


def run(
    data: Dataset,
    *,
    model_names: list[str],
    optimizer_names: list[str],
    epochs: int,
    batch_size: int,
    hidden: int,
    seed: int,
    lrs: dict[str, float] | None = None,
    tune: bool = False,
    progress: bool = True,
) -> list[Run]:
    """Trains every model with every optimizer and returns the runs in that order.

    ``lrs`` overrides default learning rates by optimizer name. With ``tune``, as in
    Kingma & Ba's experiments, each optimizer (without an override) is run at its
    default learning rate times each of ``TUNE_FACTORS`` and the run with the lowest
    mean log training cost over its epochs (fast and steady descent) is kept.
    ``progress`` shows a bar per model and optimizer (see ``training.progress_bar``).
    """
    runs = []
    for model_name in model_names:
        for name in optimizer_names:
            method = ALL_METHODS[name]
            if lrs and name in lrs:
                grid = [lrs[name]]
            else:
                grid = [method.kwargs["lr"] * f for f in (TUNE_FACTORS if tune else (1.0,))]
            bar = progress_bar(epochs * len(grid), f"{model_name:6} {name:12}", enabled=progress)
            candidates = []
            for lr in grid:
                model = models.build(model_name, data.features, data.classes, hidden=hidden, seed=seed)
                optimizer = method.build(model.params, lr)
                history = train(
                    model,
                    optimizer,
                    data,
                    epochs=epochs,
                    batch_size=batch_size,
                    seed=seed,
                    progress=bar.update,
                )
                candidates.append(Run(model_name, name, lr, history))
            bar.close()
            runs.append(min(candidates, key=lambda r: _score(r.history)))
    return runs


def _score(history: History) -> float:
    """The mean log training cost after epoch 0; a diverged (NaN) run ranks last."""
    cost = np.log(history.train_loss[1:])
    return float(cost.mean()) if np.isfinite(cost).all() else float("inf")


def table(runs: list[Run]) -> str:
    """The summary as a text table: final train loss, test accuracy, time per epoch."""
    lines = [f"{'model':<7} {'optimizer':<13} {'lr':>7} {'train loss':>10} {'test acc':>8} {'ms/epoch':>8}"]
    for r in runs:
        h = r.history
        lines.append(
            f"{r.model:<7} {r.optimizer:<13} {r.lr:>7.3g} {h.train_loss[-1]:>10.4f} "
            f"{h.test_acc[-1]:>8.3f} {r.ms_per_epoch:>8.2f}"
        )
    return "\n".join(lines)


def write(runs: list[Run], out: Path, settings: dict[str, Any]) -> dict[str, Path]:
    """Writes the plot, CSV and JSON into ``out``; returns their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"plot": out / "compare.png", "csv": out / "compare.csv", "json": out / "compare.json"}
    with paths["csv"].open("w") as f:
        f.write("model,optimizer,lr,epoch,train_loss,train_acc,test_loss,test_acc,seconds\n")
        for r in runs:
            h = r.history
            for i, epoch in enumerate(h.epochs):
                seconds = h.seconds[epoch - 1] if epoch > 0 else 0.0
                f.write(
                    f"{r.model},{r.optimizer},{r.lr!r},{epoch},{h.train_loss[i]!r},{h.train_acc[i]!r},"
                    f"{h.test_loss[i]!r},{h.test_acc[i]!r},{seconds!r}\n"
                )
    summary = [
        {
            "model": r.model,
            "optimizer": r.optimizer,
            "lr": r.lr,
            "ms_per_epoch": r.ms_per_epoch,
            **asdict(r.history),
        }
        for r in runs
    ]
    paths["json"].write_text(
        json.dumps({"settings": settings, "runs": summary}, indent=1, allow_nan=True) + "\n"
    )
    save(plot(runs, settings), paths["plot"])
    return paths


def plot(runs: list[Run], settings: dict[str, Any] | None = None, *, ax: Any = None) -> Figure:
    """Training cost against epoch, one panel per model, log scale (Kingma & Ba Fig. 2).

    Args:
        runs: what :func:`run` returned.
        settings: the run's settings; its ``dataset``, ``batch_size`` and ``seed`` (each
            optional) go into the titles.
        ax: one Axes per model to draw into (an Axes when there is one model); by default
            a new figure.

    Returns:
        The figure (``ax``'s when given). The legend stands right of the last panel.
    """
    settings = settings or {}
    model_names = list(dict.fromkeys(r.model for r in runs))
    fig, axes = axes_grid(ax, 1, len(model_names), width=5.4, height=3.6)
    dataset = f", {settings['dataset']}" if "dataset" in settings else ""
    for panel, model_name in zip(axes[0], model_names):
        for r in runs:
            if r.model == model_name:
                panel.plot(r.history.epochs, r.history.train_loss, label=r.optimizer, lw=1.6)
        panel.set_yscale("log")
        panel.set_xlabel("epoch")
        panel.set_ylabel("training cost (mean cross-entropy)")
        panel.set_title(f"{models.MODELS[model_name]}{dataset}")
        panel.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    described = [
        f"{settings['dataset']}" if "dataset" in settings else "",
        f"minibatch {settings['batch_size']}" if "batch_size" in settings else "",
        f"seed {settings['seed']}" if "seed" in settings else "",
    ]
    if ax is None and any(described):
        fig.suptitle("ferroptim: " + ", ".join(d for d in described if d), fontsize=10)
    return fig
