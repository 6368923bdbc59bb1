"""Gradient check: the backward pass against finite differences of the loss.

The analytic gradient is computed in float64. The finite-difference reference is
evaluated in ``np.longdouble`` (80-bit extended precision on x86-64 Linux, float64
elsewhere) so that rounding in J does not swamp small gradient entries.
"""

from __future__ import annotations

import numpy as np

from chainrule.nn.activations import get_activation
from chainrule.nn.mlp import MLP
from chainrule.nn.types import Params

REFERENCE_DTYPE = np.longdouble


def kink_margin(net: MLP, params: Params, X: object) -> float:
    """The smallest |z| over layers whose activation has a kink (ReLU family, ELU);
    inf when there is none. Finite differences are only valid well inside it."""
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    *hidden, z_out = net.pre_activations(p64, np.asarray(X, dtype=np.float64))
    margins = [float(np.abs(z).min()) for z, f in zip(hidden, net.hidden, strict=True) if f.kinked]
    out = net.head.output
    if out != "softmax" and net.head.loss == "mse" and get_activation(out).kinked:
        margins.append(float(np.abs(z_out).min()))
    return min(margins, default=np.inf)


def numeric_grad(net: MLP, params: Params, X: object, y: object, h: float = 1e-3) -> Params:
    """∂J/∂θ by the fourth-order central difference, one parameter at a time::

        J'(θ) ≈ [J(θ − 2h) − 8 J(θ − h) + 8 J(θ + h) − J(θ + 2h)] / 12h

    (truncation error O(h⁴)), with J evaluated in extended precision.
    """
    p_ref = {k: np.array(v, dtype=REFERENCE_DTYPE) for k, v in params.items()}
    x_ref = np.asarray(X, dtype=REFERENCE_DTYPE)

    def loss() -> np.floating:
        return net.objective(p_ref, x_ref, y)

    out: Params = {}
    for key, p in p_ref.items():
        g = np.zeros(p.shape, dtype=np.float64)
        flat, gflat = p.reshape(-1), g.reshape(-1)  # views: writes go to p_ref and g
        for j in range(flat.size):
            orig = flat[j]
            samples = []
            for step in (-2, -1, 1, 2):
                flat[j] = orig + step * h
                samples.append(loss())
            flat[j] = orig
            gflat[j] = float((samples[0] - 8 * samples[1] + 8 * samples[2] - samples[3]) / (12 * h))
        out[key] = g
    return out


def gradcheck(
    net: MLP, params: Params, X: object, y: object, h: float = 2e-4, floor: float = 1e-6
) -> float:
    """The largest relative error |a − n| / max(|a|, |n|, floor) between the analytic
    float64 gradient ``a`` of ``net.loss_and_grad`` and the numeric one ``n``.

    ``floor`` keeps entries that are zero in both (a dead unit's weights) from dividing
    zero by zero. Near a kink (ReLU at z = 0) the step shrinks so that no perturbation
    crosses it; a point exactly on a kink has no derivative to check.
    """
    p64 = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    x64 = np.asarray(X, dtype=np.float64)
    _, analytic = net.loss_and_grad(p64, x64, y)
    scale = max(
        1.0, float(np.abs(x64).max()), *(float(np.abs(p).max(initial=0)) for p in p64.values())
    )
    step = min(h, kink_margin(net, p64, x64) / (100 * scale))
    numeric = numeric_grad(net, p64, x64, y, step)
    worst = 0.0
    for key, a in analytic.items():
        n = numeric[key]
        denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
        worst = max(worst, float((np.abs(a - n) / denom).max(initial=0.0)))
    return worst
