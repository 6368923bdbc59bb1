"""Activation functions, each with its value and its derivative side by side.

Every activation is one small object: ``value(z)`` is f(z) and ``derivative(z, a)``
is f'(z), written in the cheapest form given both the pre-activation ``z`` and the
cached output ``a = f(z)`` (``tanh' = 1 - a**2``, ``relu' = z > 0``). All of them are
numerically stable for |z| up to 1e4 and beyond: no overflow warnings, no NaN.

Arrays keep their dtype: float32 in, float32 out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from chainrule.nn.types import Array

InitScheme = Literal["glorot", "he"]

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
_GELU_C = float(np.sqrt(2.0 / np.pi))
_GELU_K = 0.044715
# past |z| = 10 the inner tanh is exactly ±1 (even in extended precision), so z is
# clamped there before cubing: same values, no overflow of z³ for huge |z|
_GELU_CLAMP = 10.0


@dataclass(frozen=True)
class Activation:
    """An elementwise f with its derivative f'.

    ``init`` names the weight initialisation that keeps the variance of the signal
    through a layer followed by this activation (Glorot for sigmoid/tanh-like,
    He for the ReLU family).
    """

    name: str
    value: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array]
    init: InitScheme
    kinked: bool = False  # f' jumps somewhere: finite differences must not straddle it


def sigmoid(z: Array) -> Array:
    """σ(z) = 1 / (1 + e^-z) without ever exponentiating a positive number."""
    e = np.exp(-np.abs(z))  # in (0, 1]: cannot overflow
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _identity(z: Array) -> Array:
    return z


def _identity_grad(z: Array, a: Array) -> Array:
    return np.ones_like(z)  # d/dz z = 1: the constant derivative


def _sigmoid_grad(z: Array, a: Array) -> Array:
    return a * (1.0 - a)  # σ' = σ(1 - σ)


def _tanh(z: Array) -> Array:
    return np.tanh(z)


def _tanh_grad(z: Array, a: Array) -> Array:
    d = a * a
    np.subtract(1.0, d, out=d)  # tanh' = 1 - tanh², one temporary
    return d


def _relu(z: Array) -> Array:
    return np.maximum(z, 0.0)


def _relu_grad(z: Array, a: Array) -> Array:
    return (z > 0).astype(z.dtype)  # 1 on the open half-line, 0 elsewhere (0 at the kink)


def _leaky_relu(z: Array) -> Array:
    return np.where(z > 0, z, LEAKY_SLOPE * z)


def _leaky_relu_grad(z: Array, a: Array) -> Array:
    return np.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype)


def _elu(z: Array) -> Array:
    return np.where(z > 0, z, ELU_ALPHA * np.expm1(np.minimum(z, 0.0)))


def _elu_grad(z: Array, a: Array) -> Array:
    return np.where(z > 0, 1.0, a + ELU_ALPHA).astype(z.dtype)  # α·e^z = a + α for z ≤ 0


def _softplus(z: Array) -> Array:
    out: Array = np.logaddexp(z.dtype.type(0), z)  # log(1 + e^z), stable both ways
    return out


def _softplus_grad(z: Array, a: Array) -> Array:
    return sigmoid(z)  # softplus' = σ


def _silu(z: Array) -> Array:
    return z * sigmoid(z)


def _silu_grad(z: Array, a: Array) -> Array:
    s = sigmoid(z)
    return s + a * (1.0 - s)  # (zσ)' = σ + zσ(1 - σ) = σ + a(1 - σ)


def _gelu_tanh(z: Array) -> tuple[Array, Array]:
    zc = np.clip(z, -_GELU_CLAMP, _GELU_CLAMP)
    return zc, np.tanh(_GELU_C * (zc + _GELU_K * zc**3))


def _gelu(z: Array) -> Array:
    # tanh approximation: ½ z (1 + tanh(√(2/π)(z + 0.044715 z³)))
    return 0.5 * z * (1.0 + _gelu_tanh(z)[1])


def _gelu_grad(z: Array, a: Array) -> Array:
    zc, t = _gelu_tanh(z)
    # product rule, then chain rule through tanh: ½(1 + t) + ½ z (1 - t²) c (1 + 3k z²)
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_K * zc * zc)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", _identity, _identity_grad, "glorot"),
        Activation("sigmoid", sigmoid, _sigmoid_grad, "glorot"),
        Activation("tanh", _tanh, _tanh_grad, "glorot"),
        Activation("relu", _relu, _relu_grad, "he", kinked=True),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_grad, "he", kinked=True),
        Activation("elu", _elu, _elu_grad, "he", kinked=True),  # f'' jumps at 0
        Activation("softplus", _softplus, _softplus_grad, "he"),
        Activation("silu", _silu, _silu_grad, "he"),
        Activation("gelu", _gelu, _gelu_grad, "he"),
    )
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; ValueError naming the choices otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; expected one of: {', '.join(ACTIVATIONS)}"
        ) from None
