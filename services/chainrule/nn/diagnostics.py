"""Per-layer derivative statistics, read off what the backward pass already computed.

They answer "is my activation's derivative killing the gradient?": a layer whose mean
|f'(z)| is small passes back a small gradient (vanishing), and units whose f'(z) is
near zero for every sample of the batch pass back nothing at all (saturated sigmoid or
tanh units, dead ReLUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from chainrule.nn.activations import Activation, get_activation
from chainrule.nn.types import Array, Params

FLAT_DERIVATIVE = 1e-3
"""f'(z) below this counts as saturated (sigmoid/tanh tails) or dead (ReLU's zero side)."""


@dataclass(frozen=True)
class LayerDiagnostics:
    """Statistics of one dense layer and the activation that follows it, for one batch."""

    layer: str  # "dense1", ...
    activation: str
    grad_norm: float  # ‖∂J/∂W‖ (Frobenius)
    activation_mean: float
    activation_std: float
    # None for a softmax output, whose derivative is a Jacobian, not a number per unit
    mean_abs_derivative: float | None
    saturated_fraction: float | None  # share of (sample, unit) pairs with f'(z) < 1e-3
    dead_fraction: float | None  # share of units with f'(z) < 1e-3 on every sample

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def derivative_stats(d: Array) -> tuple[float, float, float]:
    """(mean |f'|, saturated fraction, dead fraction) of f'(z) values ``d: (N, units)``."""
    flat = np.abs(d) < FLAT_DERIVATIVE
    return float(np.abs(d).mean()), float(flat.mean()), float(flat.all(axis=0).mean())


def layer_diagnostics(
    hidden: Sequence[Activation],
    output: str,
    grads: Params,
    activations: Sequence[Array],
    derivs: Sequence[Array],
    z_out: Array,
    y_hat: Array,
) -> list[LayerDiagnostics]:
    """One entry per dense layer, from what the backward pass computed: the hidden
    layers' activations ``activations`` (a_1 … a_{L-1}) and f'(z) values ``derivs``, the
    output layer's logits ``z_out`` and outputs ``y_hat`` (``output``: its activation)."""
    out: list[LayerDiagnostics] = []
    for i in range(1, len(hidden) + 2):
        d: Array | None
        if i <= len(hidden):
            name, a, d = hidden[i - 1].name, activations[i - 1], derivs[i - 1]
        else:
            name, a = output, y_hat
            d = None if name == "softmax" else get_activation(name).derivative(z_out, y_hat)
        stats = derivative_stats(d) if d is not None else (None, None, None)
        out.append(
            LayerDiagnostics(
                layer=f"dense{i}",
                activation=name,
                grad_norm=float(np.linalg.norm(grads[f"dense{i}.W"])),
                activation_mean=float(a.mean()),
                activation_std=float(a.std()),
                mean_abs_derivative=stats[0],
                saturated_fraction=stats[1],
                dead_fraction=stats[2],
            )
        )
    return out
