"""One training run: epochs of minibatches from ``fo.MinibatchSampler``, metrics per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

import ferroptim as fo

from .data import Dataset
from .models import Model


@dataclass
class History:
    """Metrics at the recorded epochs (0 is the initial model); ``seconds[e]`` is the
    wall time of epoch ``e + 1``'s updates, evaluation excluded."""

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    diverged_at: int | None = None

    def record(self, epoch: int, model: Model, data: Dataset) -> None:
        """Appends the model's full-batch train and test loss and accuracy after ``epoch``."""
        self.epochs.append(epoch)
        for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
            loss, acc = model.evaluate(x, y)
            getattr(self, f"{split}_loss").append(loss)
            getattr(self, f"{split}_acc").append(acc)


class ProgressBar(Protocol):
    """What the experiments use of a tqdm bar."""

    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


class _NoBar:
    """The bar of a run without progress: does nothing, imports nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, *, enabled: bool, unit: str = "epoch") -> ProgressBar:
    """A bar of ``total`` units: tqdm's widget in Jupyter (ipywidgets), its text bar on a
    terminal (none when stderr is not a TTY), and nothing at all when not ``enabled``.
    tqdm is imported only when enabled, so a run without progress prints no tqdm warning."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as widget_tqdm

    # a text bar only on a TTY; the widget always, as Jupyter's streams need not claim to be TTYs
    in_jupyter = issubclass(tqdm, widget_tqdm)
    bar: ProgressBar = tqdm(
        total=total, desc=desc, unit=unit, leave=False, disable=False if in_jupyter else None
    )
    return bar


def _minibatches(
    data: Dataset, sampler: fo.MinibatchSampler, full_batch: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch's ``(x, y)`` minibatches: the whole set, or the sampler's next partition."""
    if full_batch:
        yield data.x_train, data.y_train
        return
    for batch in sampler:
        yield data.x_train[batch], data.y_train[batch]


def train(
    model: Model,
    optimizer: fo.Optimizer,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int | None,
    seed: int,
    record_at: Sequence[int] | None = None,
    progress: Callable[[], object] | None = None,
) -> History:
    """Trains ``model`` for ``epochs`` epochs; ``batch_size=None`` is full-batch gradient
    descent, otherwise each epoch is a fresh random partition of the training set
    (the lecture's ``Λ_k``) drawn by ``fo.MinibatchSampler(m, batch_size, seed)``.

    Metrics are recorded at epoch 0 and after every epoch in ``record_at`` (default:
    all). A run whose parameters stop being finite has diverged: training stops, and
    the remaining records repeat the diverged model's metrics. ``progress`` is called
    after every epoch.
    """
    m = len(data.y_train)
    sampler = fo.MinibatchSampler(m, batch_size or m, seed=seed)
    wanted = set(range(1, epochs + 1) if record_at is None else record_at)
    history = History()
    with np.errstate(all="ignore"):
        history.record(0, model, data)
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            if history.diverged_at is None:
                for x, y in _minibatches(data, sampler, batch_size is None):
                    optimizer.zero_grad()
                    model.loss_and_grads(x, y)
                    optimizer.step()
                if not all(np.isfinite(p).all() for p in model.params.values()):
                    history.diverged_at = epoch
            history.seconds.append(time.perf_counter() - start)
            if epoch in wanted:
                history.record(epoch, model, data)
            if progress is not None:
                progress()
    return history
