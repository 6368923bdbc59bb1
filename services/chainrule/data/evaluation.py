"""Holdout metrics of a network on a :class:`~chainrule.data.Split`.

Classification: ``eval_loss`` (the training objective on the holdout rows) and
``eval_accuracy``. Regression: ``eval_loss``, which for the ``mse`` loss is
J = ½·mean((ŷ − y)²), plus ``eval_mse`` = mean((ŷ − y)²), the plain mean squared error
people quote, and ``eval_r2`` = 1 − Σ(ŷ − y)² / Σ(y − ȳ)², the share of the targets'
variance the network explains (1 is a perfect fit, 0 is no better than predicting ȳ,
below 0 is worse). A network that diverged gives NaN or infinite values, not an error.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from chainrule.data.registry import Split, targets
from chainrule.nn import MLP, Params
from chainrule.nn.train import accuracy

EVAL_CHUNK_BYTES = 64 * 1024 * 1024  # the activation memory one chunk of holdout rows takes


def chunk_rows(layers: list[int]) -> int:
    """Holdout rows evaluated at once: a forward pass keeps the inputs and about two
    float32 arrays per layer (the pre-activation and the activation) for every row."""
    return max(1, EVAL_CHUNK_BYTES // (4 * (layers[0] + 2 * sum(layers[1:]))))


def evaluate(net: MLP, params: Params, split: Split, rows: int | None = None) -> dict[str, float]:
    """The holdout metrics of ``net`` with ``params``: eval_loss and eval_accuracy for a
    classification split, eval_loss, eval_mse and eval_r2 for a regression split.

    Evaluated ``rows`` at a time (default :func:`chunk_rows`), so the memory it takes
    is bounded by a chunk, however many rows are held out; the means are exact."""
    X, y = split.X_test, split.y_test
    rows = rows or chunk_rows(net.layers)
    loss, correct, predicted = 0.0, 0.0, []
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, len(X), rows):
            Xc, yc = X[start : start + rows], y[start : start + rows]
            t = targets(yc, net.layers[-1], net.head.loss)
            loss += float(net.objective(params, Xc, t)) * len(Xc)
            if split.task == "classification":
                correct += accuracy(net, params, Xc, yc) * len(Xc)
            else:
                predicted.append(net.predict(params, Xc).reshape(-1).astype(np.float64))
    metrics = {"eval_loss": loss / len(X)}
    if split.task == "classification":
        return {**metrics, "eval_accuracy": round(correct) / len(X)}
    return {**metrics, **regression_metrics(np.concatenate(predicted), y.astype(np.float64))}


def regression_metrics(
    predicted: NDArray[np.float64], actual: NDArray[np.float64]
) -> dict[str, float]:
    """``eval_mse`` and ``eval_r2`` of ``predicted`` against ``actual`` (both ``(N,)``).

    When the targets are all equal (Σ(y − ȳ)² = 0) R² is 1 for an exact fit and 0
    otherwise, as scikit-learn's ``r2_score`` reports it.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        residual = float(np.sum((predicted - actual) ** 2))
        total = float(np.sum((actual - actual.mean()) ** 2))
        mse = residual / len(actual)
        if not np.isfinite(residual):
            r2 = float("nan")  # diverged
        elif total == 0.0:
            r2 = 1.0 if residual == 0.0 else 0.0
        else:
            r2 = 1.0 - residual / total
    return {"eval_mse": mse, "eval_r2": r2}
