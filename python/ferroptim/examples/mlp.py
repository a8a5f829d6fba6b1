"""Train a two-layer network on a synthetic spiral with several ferroptim optimizers.

``python -m ferroptim.examples.mlp [--epochs N] [--seed S]``: forward and backward
passes are written in NumPy; the optimizers update the weights in place. Prints the
training loss per epoch and a final table of loss and accuracy per optimizer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import ferroptim as fo


def spiral(n_per_class: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The classic interleaved-spirals classification set (2-D inputs)."""
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.normal(0, 0.2, n_per_class)
        xs.append(np.c_[r * np.sin(t), r * np.cos(t)])
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs), np.concatenate(ys)


class TwoLayerNet:
    """``softmax(relu(x W1 + b1) W2 + b2)`` with cross-entropy loss, as fo.Parameters."""

    def __init__(self, inputs: int, hidden: int, classes: int, rng: np.random.Generator) -> None:
        self.W1 = fo.Parameter(rng.normal(0, np.sqrt(2 / inputs), (inputs, hidden)))
        self.b1 = fo.Parameter(np.zeros(hidden))
        self.W2 = fo.Parameter(rng.normal(0, np.sqrt(1 / hidden), (hidden, classes)))
        self.b2 = fo.Parameter(np.zeros(classes))

    def parameters(self) -> dict[str, fo.Parameter]:
        return {"W1": self.W1, "b1": self.b1, "W2": self.W2, "b2": self.b2}

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy on (x, y); stores each parameter's gradient in ``.grad``."""
        h = np.maximum(x @ self.W1 + self.b1, 0)
        logits = h @ self.W2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        n = len(y)
        loss = -np.log(p[np.arange(n), y]).mean()
        d_logits = p
        d_logits[np.arange(n), y] -= 1
        d_logits /= n
        self.W2.grad = h.T @ d_logits
        self.b2.grad = d_logits.sum(axis=0)
        d_h = (d_logits @ self.W2.T) * (h > 0)
        self.W1.grad = x.T @ d_h
        self.b1.grad = d_h.sum(axis=0)
        return float(loss)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        h = np.maximum(x @ self.W1 + self.b1, 0)
        return float(((h @ self.W2 + self.b2).argmax(axis=1) == y).mean())


OPTIMIZERS: dict[str, Callable[[dict[str, fo.Parameter]], fo.Optimizer]] = {
    "SGD": lambda p: fo.SGD(p, lr=0.5),
    "SGD+momentum": lambda p: fo.SGD(p, lr=0.1, momentum=0.9),
    "Nesterov": lambda p: fo.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "Adagrad": lambda p: fo.Adagrad(p, lr=0.1),
    "RMSprop": lambda p: fo.RMSprop(p, lr=3e-3),
    "Adadelta": lambda p: fo.Adadelta(p, lr=1.0),
    "Adam": lambda p: fo.Adam(p, lr=1e-2),
    "NAdam": lambda p: fo.NAdam(p, lr=1e-2),
    "RAdam": lambda p: fo.RAdam(p, lr=3e-2),
    "Adamax": lambda p: fo.Adamax(p, lr=2e-2),
    "Lion": lambda p: fo.Lion(p, lr=3e-3),
    "AdagradNorm": lambda p: fo.AdagradNorm(p, lr=1.0, b0=0.1),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data_rng = np.random.default_rng(args.seed)
    x, y = spiral(300, 3, data_rng)
    print(f"spiral: {len(y)} points, 3 classes; two-layer net, 64 hidden units; {args.epochs} epochs")
    results = []
    for name, make in OPTIMIZERS.items():
        rng = np.random.default_rng(args.seed + 1)
        net = TwoLayerNet(2, 64, 3, rng)
        opt = make(net.parameters())
        start = time.perf_counter()
        losses = []
        for _ in range(args.epochs):
            order = rng.permutation(len(y))
            total = 0.0
            for batch in np.array_split(order, max(1, len(y) // args.batch_size)):
                opt.zero_grad()
                total += net.loss_and_grads(x[batch], y[batch]) * len(batch)
                opt.step()
            losses.append(total / len(y))
        seconds = time.perf_counter() - start
        results.append((name, losses, net.accuracy(x, y), seconds))
        shown = " ".join(f"{v:.3f}" for v in losses[:: max(1, args.epochs // 6)])
        print(f"  {name:<13} loss by epoch: {shown}")

    print(f"\n{'optimizer':<13} {'final loss':>10} {'accuracy':>9} {'ms/epoch':>9}")
    for name, losses, acc, seconds in results:
        print(f"{name:<13} {losses[-1]:>10.4f} {acc:>9.3f} {1e3 * seconds / args.epochs:>9.2f}")


if __name__ == "__main__":
    main()
