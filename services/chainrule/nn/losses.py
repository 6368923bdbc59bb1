"""Output layer + loss, averaged over the batch.

A :class:`Head` turns the last layer's pre-activations ``z: (N, K)`` into predictions
and, given targets, into the loss J and ``dJ/dz``, the gradient that starts backprop.

- ``mse``: J = (1/N) Σₙ ½‖ŷₙ − yₙ‖², with any output activation (softmax included,
  through its full Jacobian, never by assuming a cross-entropy that is not there).
- ``bce`` with ``sigmoid``: J = (1/N) Σₙ Σₖ softplus(zₙₖ) − yₙₖ zₙₖ, which is the
  usual −[y log ŷ + (1 − y) log(1 − ŷ)] without ever taking log(0).
- ``cross_entropy`` with ``softmax``: J = −(1/N) Σₙ log p(yₙ) through a max-subtracted
  log-sum-exp.

The two fused pairs have dJ/dz = (ŷ − y)/N: the output activation's derivative cancels
against the loss's, which is why they are fused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainrule.nn.activations import ACTIVATIONS, get_activation
from chainrule.nn.types import Array

OUTPUTS = (*ACTIVATIONS, "softmax")
LOSSES = ("mse", "bce", "cross_entropy")
# loss -> the output activations it makes sense with
VALID_OUTPUTS: dict[str, tuple[str, ...]] = {
    "mse": OUTPUTS,
    "bce": ("sigmoid",),
    "cross_entropy": ("softmax",),
}


def softmax(z: Array) -> Array:
    """Row-wise softmax of ``z: (N, K)``, max-subtracted so exp never overflows."""
    e: Array = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def log_softmax(z: Array) -> Array:
    """Row-wise log-softmax through the max-subtracted log-sum-exp."""
    shifted: Array = z - z.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


@dataclass(frozen=True)
class Head:
    """The output activation and the loss, validated as a pair."""

    output: str
    loss: str

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of: {', '.join(LOSSES)}")
        if self.output not in OUTPUTS:
            raise ValueError(
                f"unknown output {self.output!r}; expected one of: {', '.join(OUTPUTS)}"
            )
        allowed = VALID_OUTPUTS[self.loss]
        if self.output not in allowed:
            raise ValueError(
                f"output {self.output!r} does not go with loss {self.loss!r}; "
                f"{self.loss!r} expects output {' or '.join(repr(o) for o in allowed)}"
            )

    @property
    def fused(self) -> bool:
        """True when dJ/dz = (ŷ − y)/N because f' cancels against the loss."""
        return self.loss in ("bce", "cross_entropy")

    @property
    def is_classifier(self) -> bool:
        return self.loss in ("bce", "cross_entropy")

    def predict(self, z: Array) -> Array:
        """ŷ = f(z): probabilities for the classifiers, f(z) for mse."""
        if self.output == "softmax":
            return softmax(z)
        return get_activation(self.output).value(z)

    def targets(self, y: object, n: int, k: int, dtype: np.dtype) -> Array:
        """Validate targets for ``n`` rows and ``k`` outputs; return them ready for the loss.

        cross_entropy takes integer classes (N,) or probability rows (N, K) such as
        one-hot; bce takes (N, K) values in [0, 1]; mse takes (N, K) finite values.
        (N,) is accepted for K = 1 everywhere.
        """
        y_arr = np.asarray(y)
        if not (np.issubdtype(y_arr.dtype, np.number) or y_arr.dtype == np.bool_):
            raise ValueError(f"targets must be numeric; got dtype {y_arr.dtype}")
        if self.loss == "cross_entropy" and y_arr.shape == (n,):
            return _class_labels(y_arr, k)
        if y_arr.shape == (n,) and k == 1:
            y_arr = y_arr.reshape(n, 1)
        if y_arr.shape != (n, k):
            allowed = (
                f"({n},) class labels or ({n}, {k})"
                if self.loss == "cross_entropy"
                else (f"({n}, {k})" + (f" or ({n},)" if k == 1 else ""))
            )
            raise ValueError(f"targets have shape {y_arr.shape}; expected {allowed}")
        y_arr = y_arr.astype(dtype, copy=False)
        if not np.all(np.isfinite(y_arr)):
            raise ValueError("targets contain NaN or infinity; all values must be finite")
        if self.loss in ("bce", "cross_entropy") and (y_arr.min() < 0 or y_arr.max() > 1):
            raise ValueError(
                f"{self.loss} targets must lie in [0, 1]; got values in "
                f"[{y_arr.min():g}, {y_arr.max():g}]"
            )
        if self.loss == "cross_entropy" and not np.allclose(y_arr.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError(
                "cross_entropy targets of shape (N, K) must be one-hot or rows summing to 1"
            )
        return y_arr

    def objective(self, z: Array, y: Array) -> np.floating:
        """J for logits ``z: (N, K)`` and validated targets, in the dtype of ``z``."""
        n = z.shape[0]
        if self.loss == "cross_entropy":
            log_p = log_softmax(z)
            picked = log_p[np.arange(n), y] if y.ndim == 1 else (y * log_p).sum(axis=1)
            return -picked.sum() / n  # type: ignore[no-any-return]
        if self.loss == "bce":
            # −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y·z, never log(0)
            return (np.logaddexp(z.dtype.type(0), z) - y * z).sum() / n  # type: ignore[no-any-return]
        diff = self.predict(z) - y
        return 0.5 * (diff * diff).sum() / n  # type: ignore[no-any-return]

    def loss_and_dlogits(
        self, z: Array, y: Array, activation_derivative: bool = True
    ) -> tuple[float, Array, Array]:
        """Return (J, dJ/dz, ŷ) for logits ``z: (N, K)`` and validated targets ``y``.

        With ``activation_derivative=False`` the output activation's f'(z) is taken
        as 1 (only matters for mse; the fused pairs have no f' left to drop).
        """
        loss = float(self.objective(z, y))
        n = z.shape[0]
        if self.fused:
            p = self.predict(z)
            dz = p.copy()
            if y.ndim == 1:  # integer classes
                dz[np.arange(n), y] -= 1.0
            else:
                dz -= y
            dz /= n  # backprop through softmax + CE, sigmoid + BCE: (p − y)/N
            return loss, dz, p
        y_hat = self.predict(z)
        d_yhat = (y_hat - y) / n  # backprop through ½‖ŷ − y‖²
        if not activation_derivative:
            return loss, d_yhat, y_hat
        if self.output == "softmax":
            # backprop through softmax: J_softmax·g = p ⊙ (g − ⟨g, p⟩)
            dz = y_hat * (d_yhat - (d_yhat * y_hat).sum(axis=1, keepdims=True))
        else:
            dz = d_yhat * get_activation(self.output).derivative(z, y_hat)  # backprop through f
        return loss, dz, y_hat


def _class_labels(y: Array, k: int) -> Array:
    if np.issubdtype(y.dtype, np.floating) and (
        not np.all(np.isfinite(y)) or not np.all(y == np.round(y))
    ):
        bad = y[~np.isfinite(y) | (y != np.round(y))][0]
        raise ValueError(f"class labels of shape (N,) must be whole numbers; got {bad!r}")
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(
            f"class labels must lie in [0, {k - 1}] for {k} outputs; "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    return labels
