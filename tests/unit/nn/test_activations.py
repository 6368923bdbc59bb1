"""Activations: values, derivatives, their limits at extreme inputs, and dtypes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule.nn import ACTIVATIONS, get_activation
from chainrule.nn.activations import ELU_ALPHA, LEAKY_SLOPE, sigmoid
from chainrule.nn.types import Array

NAMES = list(ACTIVATIONS)
FLOATS = [np.float32, np.float64]
EXTREME_Z = [-1e4, -1e3, -100.0, -30.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 30.0, 100.0, 1e3, 1e4]


@contextmanager
def strict_numerics() -> Iterator[None]:
    """Overflow, invalid operations, division by zero and any warning become errors.

    Underflow stays allowed: e^-10000 rounding to 0 is the correctly rounded result.
    """
    with np.errstate(all="raise", under="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def value_and_derivative(name: str, z: Array) -> tuple[Array, Array]:
    f = get_activation(name)
    a = f.value(z)
    return a, f.derivative(z, a)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_are_finite_warning_free_and_keep_dtype(
    name: str, dtype: type[np.floating]
) -> None:
    z = np.array(EXTREME_Z, dtype=dtype)
    z_before = z.copy()
    with strict_numerics():
        a, d = value_and_derivative(name, z)
    assert a.dtype == dtype and d.dtype == dtype
    assert a.shape == z.shape and d.shape == z.shape
    assert np.isfinite(a).all() and np.isfinite(d).all()
    np.testing.assert_array_equal(z, z_before)  # the input is not written to


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", NAMES)
def test_the_whole_finite_range_is_safe(name: str, dtype: type[np.floating]) -> None:
    """Beyond 1e4: a diverging run can push pre-activations anywhere. (gelu must not
    cube such a z: z³ overflows float32 from |z| ≈ 7e12, and 0·inf in f' is NaN.)"""
    big = float(np.finfo(dtype).max)
    z = np.array([-big, -1e30, -1e13, 1e13, 1e30, big], dtype=dtype)
    with strict_numerics():
        a, d = value_and_derivative(name, z)
    assert np.isfinite(a).all() and np.isfinite(d).all()
    assert a.dtype == dtype and d.dtype == dtype


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", NAMES)
def test_two_dimensional_batches_keep_their_shape(name: str, dtype: type[np.floating]) -> None:
    z = np.linspace(-3, 3, 12, dtype=dtype).reshape(3, 4)
    a, d = value_and_derivative(name, z)
    assert a.shape == (3, 4) and d.shape == (3, 4)
    assert a.dtype == dtype and d.dtype == dtype


# (activation, z, f(z), f'(z)) at |z| = 1e4, where only a stable formula gets these right
LIMITS = [
    ("identity", 1e4, 1e4, 1.0),
    ("sigmoid", 1e4, 1.0, 0.0),
    ("sigmoid", -1e4, 0.0, 0.0),
    ("tanh", 1e4, 1.0, 0.0),
    ("tanh", -1e4, -1.0, 0.0),
    ("relu", 1e4, 1e4, 1.0),
    ("relu", -1e4, 0.0, 0.0),
    ("leaky_relu", 1e4, 1e4, 1.0),
    ("leaky_relu", -1e4, -1e4 * LEAKY_SLOPE, LEAKY_SLOPE),
    ("elu", 1e4, 1e4, 1.0),
    ("elu", -1e4, -ELU_ALPHA, 0.0),
    ("softplus", 1e4, 1e4, 1.0),
    ("softplus", -1e4, 0.0, 0.0),
    ("silu", 1e4, 1e4, 1.0),
    ("silu", -1e4, 0.0, 0.0),
    ("gelu", 1e4, 1e4, 1.0),
    ("gelu", -1e4, 0.0, 0.0),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "z", "value", "derivative"), LIMITS)
def test_limits_at_extreme_inputs(
    name: str, z: float, value: float, derivative: float, dtype: type[np.floating]
) -> None:
    with strict_numerics():
        a, d = value_and_derivative(name, np.array([z], dtype=dtype))
    assert float(a[0]) == pytest.approx(value, rel=1e-6, abs=1e-30)
    assert float(d[0]) == pytest.approx(derivative, rel=1e-6, abs=1e-30)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# (activation, z, f(z), f'(z)) at ordinary points, from the definitions
KNOWN = [
    ("identity", -2.5, -2.5, 1.0),
    ("sigmoid", 0.0, 0.5, 0.25),
    ("sigmoid", 2.0, _sig(2.0), _sig(2.0) * (1 - _sig(2.0))),
    ("tanh", 0.0, 0.0, 1.0),
    ("tanh", 0.5, math.tanh(0.5), 1 - math.tanh(0.5) ** 2),
    ("relu", -1.0, 0.0, 0.0),
    ("relu", 0.0, 0.0, 0.0),  # the kink: f'(0) is taken as 0
    ("relu", 2.0, 2.0, 1.0),
    ("leaky_relu", -2.0, -0.02, 0.01),
    ("leaky_relu", 3.0, 3.0, 1.0),
    ("elu", -1.0, math.exp(-1.0) - 1, math.exp(-1.0)),
    ("elu", 0.5, 0.5, 1.0),
    ("softplus", 0.0, math.log(2.0), 0.5),
    ("softplus", -3.0, math.log1p(math.exp(-3.0)), _sig(-3.0)),
    ("silu", 0.0, 0.0, 0.5),
    ("silu", 1.0, _sig(1.0), _sig(1.0) + _sig(1.0) * (1 - _sig(1.0))),  # σ + zσ(1 − σ)
    ("gelu", 0.0, 0.0, 0.5),
]


@pytest.mark.parametrize(("name", "z", "value", "derivative"), KNOWN)
def test_known_values(name: str, z: float, value: float, derivative: float) -> None:
    a, d = value_and_derivative(name, np.array([z]))
    assert float(a[0]) == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert float(d[0]) == pytest.approx(derivative, rel=1e-12, abs=1e-15)


def test_gelu_is_the_tanh_approximation_of_x_times_normal_cdf() -> None:
    z = np.linspace(-6, 6, 241)
    exact = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in z])
    a = get_activation("gelu").value(z)
    np.testing.assert_allclose(a, exact, atol=1e-3)
    assert not np.allclose(a, exact, atol=1e-6)  # the approximation, not erf itself


def test_sigmoid_is_symmetric_and_exact_in_both_tails() -> None:
    z = np.array([-700.0, -50.0, -5.0, 0.0, 5.0, 50.0, 700.0])
    s = sigmoid(z)
    np.testing.assert_allclose(s + sigmoid(-z), 1.0, rtol=1e-15)
    # in the left tail σ(z) ≈ e^z: a stable form keeps the relative precision
    np.testing.assert_allclose(s[:2], np.exp(z[:2]), rtol=1e-12)


finite_points = st.lists(
    st.floats(min_value=-20, max_value=20, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=20,
)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None, derandomize=True)
@given(points=finite_points)
def test_derivative_matches_central_finite_differences(name: str, points: list[float]) -> None:
    f = get_activation(name)
    z = np.array(points)
    if f.kinked:
        z = z[np.abs(z) > 1e-3]  # a central difference must not straddle the kink at 0
    h = 1e-6
    numeric = (f.value(z + h) - f.value(z - h)) / (2 * h)
    np.testing.assert_allclose(f.derivative(z, f.value(z)), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name: str) -> None:
    z64 = np.linspace(-10, 10, 201)
    a64, d64 = value_and_derivative(name, z64)
    a32, d32 = value_and_derivative(name, z64.astype(np.float32))
    # float32 eps is 6e-8; gelu' loses a little more to 1 − tanh² in its tails
    np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d32, d64, rtol=1e-5, atol=1e-5)


def test_init_scheme_follows_the_activation_family() -> None:
    glorot = {name for name, f in ACTIVATIONS.items() if f.init == "glorot"}
    assert glorot == {"identity", "sigmoid", "tanh"}
    kinked = {name for name, f in ACTIVATIONS.items() if f.kinked}
    assert kinked == {"relu", "leaky_relu", "elu"}


@pytest.mark.parametrize("bad", ["relu6", "ReLU", "", None, ["relu"]])
def test_unknown_activation_names_the_choices(bad: object) -> None:
    with pytest.raises(ValueError, match="unknown activation") as excinfo:
        get_activation(bad)  # type: ignore[arg-type]
    message = str(excinfo.value)
    assert repr(bad) in message
    for name in NAMES:
        assert name in message
