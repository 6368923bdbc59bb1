"""The seed question: what ``activation_derivative=False`` (every f'(z) taken as 1)
computes, and when that is still the true gradient."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.nn import MLP, Params, gradcheck
from chainrule.nn.types import Array


def both(layers: list[int], **kwargs: object) -> tuple[MLP, MLP]:
    """The same network with and without the activation derivative."""
    exact = MLP(layers, **kwargs)  # type: ignore[arg-type]
    dropped = MLP(layers, activation_derivative=False, **kwargs)  # type: ignore[arg-type]
    return exact, dropped


def problem(net: MLP, seed: int = 0, n: int = 8) -> tuple[Params, Array, object]:
    rng = np.random.default_rng(seed)
    params = {k: p + 0.3 * rng.normal(size=p.shape) for k, p in net.init(rng, np.float64).items()}
    X = rng.normal(size=(n, net.layers[0]))
    k = net.layers[-1]
    y: object
    if net.head.loss == "cross_entropy":
        y = rng.integers(0, k, size=n)
    elif net.head.loss == "bce":
        y = rng.integers(0, 2, size=(n, k)).astype(np.float64)
    else:
        y = rng.normal(size=(n, k))
    return params, X, y


def grads_of(net: MLP, params: Params, X: Array, y: object) -> tuple[float, Params]:
    return net.loss_and_grad(params, X, y)


def max_relative_difference(a: Params, b: Params) -> float:
    return max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-12)) for k in a)


@pytest.mark.parametrize(
    ("output", "loss", "target"),
    [
        ("identity", "mse", "values"),
        ("sigmoid", "bce", "values"),
        ("softmax", "cross_entropy", "labels"),
        ("softmax", "cross_entropy", "one-hot"),
    ],
)
def test_without_hidden_layers_a_cancelling_head_gives_the_true_gradient(
    output: str, loss: str, target: str
) -> None:
    exact, dropped = both([4, 3], output=output, loss=loss)
    params, X, y = problem(exact)
    if target == "one-hot":
        y = np.eye(3)[np.asarray(y)]
    loss_exact, g_exact = grads_of(exact, params, X, y)
    loss_dropped, g_dropped = grads_of(dropped, params, X, y)
    assert loss_dropped == loss_exact
    for key in g_exact:
        np.testing.assert_allclose(g_dropped[key], g_exact[key], rtol=1e-12, atol=1e-15)
    assert gradcheck(dropped, params, X, y) < 1e-6  # and it is the gradient


def test_sigmoid_with_mse_drops_sigma_prime_and_is_not_the_gradient() -> None:
    exact, dropped = both([4, 2], output="sigmoid", loss="mse")
    params, X, y = problem(exact)
    _, g_exact = grads_of(exact, params, X, y)
    _, g_dropped = grads_of(dropped, params, X, y)
    y_hat = exact.predict(params, X)
    n = len(X)
    # what the dropped version computes: the error fed back as if σ were linear
    np.testing.assert_allclose(g_dropped["dense1.W"], X.T @ ((y_hat - y) / n), rtol=1e-12)
    # the true gradient keeps σ' = ŷ(1 − ŷ)
    true_dz = (y_hat - y) / n * y_hat * (1 - y_hat)
    np.testing.assert_allclose(g_exact["dense1.W"], X.T @ true_dz, rtol=1e-12)
    assert max_relative_difference(g_dropped, g_exact) > 0.5
    assert gradcheck(exact, params, X, y) < 1e-6
    assert gradcheck(dropped, params, X, y) > 1e-2


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "gelu"])
def test_a_nonlinear_hidden_layer_makes_it_a_different_direction(activation: str) -> None:
    exact, dropped = both([4, 5, 2], activation=activation, output="identity", loss="mse")
    params, X, y = problem(exact, seed=1)
    loss_exact, g_exact = grads_of(exact, params, X, y)
    loss_dropped, g_dropped = grads_of(dropped, params, X, y)
    assert loss_dropped == loss_exact  # the forward pass is the same
    # the last layer sees no hidden f' ...
    np.testing.assert_allclose(g_dropped["dense2.W"], g_exact["dense2.W"], rtol=1e-12)
    np.testing.assert_allclose(g_dropped["dense2.b"], g_exact["dense2.b"], rtol=1e-12)
    # ... the first one does
    diff = np.abs(g_dropped["dense1.W"] - g_exact["dense1.W"]).max()
    assert diff > 0.1 * np.abs(g_exact["dense1.W"]).max()
    assert gradcheck(dropped, params, X, y) > 1e-2


def test_tanh_hidden_layer_dropped_gradient_is_the_linear_backprop() -> None:
    exact, dropped = both([4, 5, 2], activation="tanh", output="identity", loss="mse")
    params, X, y = problem(exact, seed=2)
    _, g_dropped = grads_of(dropped, params, X, y)
    _, g_exact = grads_of(exact, params, X, y)
    a1 = np.tanh(X @ params["dense1.W"] + params["dense1.b"])
    dz2 = (a1 @ params["dense2.W"] + params["dense2.b"] - y) / len(X)
    da1 = dz2 @ params["dense2.W"].T
    np.testing.assert_allclose(g_dropped["dense1.W"], X.T @ da1, rtol=1e-12)  # tanh' taken as 1
    np.testing.assert_allclose(g_exact["dense1.W"], X.T @ (da1 * (1 - a1**2)), rtol=1e-12)


def test_dead_relu_units_still_get_an_update_when_the_derivative_is_dropped() -> None:
    exact, dropped = both([3, 4, 2], activation="relu", output="identity", loss="mse")
    params, X, y = problem(exact)
    params["dense1.b"][:] = -100.0  # every hidden unit dead
    _, g_exact = grads_of(exact, params, X, y)
    _, g_dropped = grads_of(dropped, params, X, y)
    assert not g_exact["dense1.W"].any()
    assert np.abs(g_dropped["dense1.W"]).max() > 0


@pytest.mark.parametrize(
    ("depth", "output", "loss"),
    [
        (1, "identity", "mse"),
        (2, "identity", "mse"),
        (3, "sigmoid", "bce"),
        (2, "softmax", "cross_entropy"),
    ],
)
def test_identity_hidden_layers_give_the_same_gradient_either_way(
    depth: int, output: str, loss: str
) -> None:
    layers = [3, *[4] * depth, 2]
    exact, dropped = both(layers, activation="identity", output=output, loss=loss)
    params, X, y = problem(exact, seed=depth)
    loss_exact, g_exact = grads_of(exact, params, X, y)
    loss_dropped, g_dropped = grads_of(dropped, params, X, y)
    assert loss_dropped == loss_exact
    for key in g_exact:
        np.testing.assert_array_equal(g_dropped[key], g_exact[key], err_msg=key)
    assert gradcheck(dropped, params, X, y) < 1e-6


def test_identity_layers_collapse_to_one_linear_map() -> None:
    """Why identity's constant derivative is a problem: the network stays linear."""
    net = MLP([2, 8, 8, 1], activation="identity", output="identity")
    params, X, _ = problem(net)
    W = params["dense1.W"] @ params["dense2.W"] @ params["dense3.W"]
    b = (params["dense1.b"] @ params["dense2.W"] + params["dense2.b"]) @ params[
        "dense3.W"
    ] + params["dense3.b"]
    np.testing.assert_allclose(net.predict(params, X), X @ W + b, rtol=1e-10)
