"""The experiments' models, with forward and backward passes in NumPy.

Both minimise the mean softmax cross-entropy ``L(θ) = m⁻¹ Σ_μ l(θ; x_μ, y_μ)`` of the
lecture over a minibatch ``Λ_k``; ``loss_and_grads`` stores ``grad_θ L`` in each
parameter's ``.grad`` for the optimizer to use.
"""

from __future__ import annotations

import numpy as np

import ferroptim as fo


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of ``logits`` against labels ``y``, and its gradient
    with respect to the logits, ``(softmax(logits) - onehot(y)) / n``."""
    n = len(y)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_sum
    loss = -log_p[np.arange(n), y].mean()
    d_logits = np.exp(log_p)
    d_logits[np.arange(n), y] -= 1
    return float(loss), d_logits / n


class Model:
    """A classifier whose parameters are ``fo.Parameter`` arrays, by name."""

    params: dict[str, fo.Parameter]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The class scores of each row of ``x``."""
        raise NotImplementedError

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy on ``(x, y)``; sets every parameter's ``.grad``."""
        raise NotImplementedError

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``(x, y)``, changing nothing."""
        logits = self.logits(x)
        loss, _ = cross_entropy(logits, y)
        return loss, float((logits.argmax(axis=1) == y).mean())


class LogisticRegression(Model):
    """Multinomial logistic regression, ``softmax(x W + b)``, started at zero."""

    def __init__(self, features: int, classes: int, dtype: type = np.float64) -> None:
        self.params = {
            "W": fo.Parameter(np.zeros((features, classes), dtype=dtype)),
            "b": fo.Parameter(np.zeros(classes, dtype=dtype)),
        }

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``x W + b``."""
        return x @ self.params["W"] + self.params["b"]

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> float:
        """Cross-entropy; ``grad_W = xᵀ δ``, ``grad_b = Σ δ`` with ``δ`` the logits' gradient."""
        loss, delta = cross_entropy(self.logits(x), y)
        self.params["W"].grad = x.T @ delta
        self.params["b"].grad = delta.sum(axis=0)
        return loss


class TwoLayerNet(Model):
    """Two fully connected layers, ``softmax(relu(x W1 + b1) W2 + b2)``, with He
    initialisation of ``W1`` and Glorot initialisation of ``W2`` drawn from ``seed``."""

    def __init__(
        self, features: int, classes: int, hidden: int = 128, seed: int = 0, dtype: type = np.float64
    ):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": fo.Parameter(rng.normal(0, np.sqrt(2 / features), (features, hidden)).astype(dtype)),
            "b1": fo.Parameter(np.zeros(hidden, dtype=dtype)),
            "W2": fo.Parameter(
                rng.normal(0, np.sqrt(2 / (hidden + classes)), (hidden, classes)).astype(dtype)
            ),
            "b2": fo.Parameter(np.zeros(classes, dtype=dtype)),
        }

    def _hidden(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.params["W1"] + self.params["b1"], 0)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``relu(x W1 + b1) W2 + b2``."""
        return self._hidden(x) @ self.params["W2"] + self.params["b2"]

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> float:
        """Cross-entropy, back-propagated through both layers."""
        h = self._hidden(x)
        loss, delta = cross_entropy(h @ self.params["W2"] + self.params["b2"], y)
        self.params["W2"].grad = h.T @ delta
        self.params["b2"].grad = delta.sum(axis=0)
        d_h = (delta @ self.params["W2"].T) * (h > 0)
        self.params["W1"].grad = x.T @ d_h
        self.params["b1"].grad = d_h.sum(axis=0)
        return loss


MODELS = {"logreg": "logistic regression", "mlp": "two-layer network"}


def build(
    name: str, features: int, classes: int, *, hidden: int = 128, seed: int = 0, dtype: type = np.float64
):
    """The model ``name`` (a key of ``MODELS``)."""
    if name == "logreg":
        return LogisticRegression(features, classes, dtype)
    if name == "mlp":
        return TwoLayerNet(features, classes, hidden, seed, dtype)
    raise ValueError(f"unknown model {name!r}: expected one of {list(MODELS)}")
