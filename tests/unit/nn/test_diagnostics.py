"""Per-layer diagnostics: what ``loss_and_grad(..., diagnostics=True)`` reports, and
that asking for it changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.nn import MLP, LayerDiagnostics, Params
from chainrule.nn.diagnostics import FLAT_DERIVATIVE, derivative_stats
from chainrule.nn.types import Array


def setup(net: MLP, seed: int = 0) -> tuple[Params, Array, Array]:
    rng = np.random.default_rng(seed)
    params = {
        k: (p + 0.1 * rng.normal(size=p.shape)).astype(np.float64)
        for k, p in net.init(rng, np.float64).items()
    }
    X = rng.normal(size=(8, net.layers[0]))
    k = net.layers[-1]
    y: Array
    if net.head.loss == "cross_entropy":
        y = rng.integers(0, k, size=8)
    elif net.head.loss == "bce":
        y = rng.integers(0, 2, size=(8, k)).astype(np.float64)
    else:
        y = rng.normal(size=(8, k))
    return params, X, y


def test_one_entry_per_dense_layer_with_its_gradient_norm() -> None:
    net = MLP([3, 5, 4, 2], activation=["tanh", "relu"], output="softmax", loss="cross_entropy")
    params, X, y = setup(net)
    _, grads, diagnostics = net.loss_and_grad(params, X, y, diagnostics=True)
    assert isinstance(diagnostics, list) and len(diagnostics) == net.n_dense == 3
    assert all(isinstance(d, LayerDiagnostics) for d in diagnostics)
    assert [d.layer for d in diagnostics] == ["dense1", "dense2", "dense3"]
    assert [d.activation for d in diagnostics] == ["tanh", "relu", "softmax"]
    for i, d in enumerate(diagnostics, start=1):
        assert d.grad_norm == pytest.approx(np.linalg.norm(grads[f"dense{i}.W"]), rel=1e-12)
        assert d.grad_norm > 0


def test_activation_statistics_describe_each_layers_output() -> None:
    net = MLP([3, 5, 2], activation="tanh", output="sigmoid", loss="bce")
    params, X, y = setup(net)
    _, _, (hidden, out) = net.loss_and_grad(params, X, y, diagnostics=True)
    a1 = np.tanh(X @ params["dense1.W"] + params["dense1.b"])
    assert hidden.activation_mean == pytest.approx(a1.mean(), rel=1e-12)
    assert hidden.activation_std == pytest.approx(a1.std(), rel=1e-12)
    assert hidden.mean_abs_derivative == pytest.approx(np.mean(1 - a1**2), rel=1e-12)
    p = 1 / (1 + np.exp(-(a1 @ params["dense2.W"] + params["dense2.b"])))
    assert out.activation_mean == pytest.approx(p.mean(), rel=1e-12)
    assert out.mean_abs_derivative == pytest.approx(np.mean(p * (1 - p)), rel=1e-12)
    assert out.saturated_fraction == 0.0 and out.dead_fraction == 0.0


def test_relu_layer_with_a_very_negative_bias_is_dead() -> None:
    net = MLP([3, 4, 2], activation="relu", output="identity", loss="mse")
    params, X, y = setup(net)
    params["dense1.b"][:] = -100.0
    _, grads, (hidden, _) = net.loss_and_grad(params, X, y, diagnostics=True)
    assert hidden.dead_fraction == 1.0
    assert hidden.saturated_fraction == 1.0
    assert hidden.mean_abs_derivative == 0.0
    assert hidden.activation_mean == 0.0
    # nothing flows back through a dead layer
    assert hidden.grad_norm == 0.0
    assert not grads["dense1.W"].any() and not grads["dense1.b"].any()


def test_partly_dead_relu_layer() -> None:
    net = MLP([3, 4, 2], activation="relu", output="identity", loss="mse")
    params, X, y = setup(net)
    params["dense1.b"][:2] = -100.0  # units 0 and 1 dead, units 2 and 3 alive
    params["dense1.b"][2:] = 100.0
    _, _, (hidden, _) = net.loss_and_grad(params, X, y, diagnostics=True)
    assert hidden.dead_fraction == 0.5
    assert hidden.saturated_fraction == 0.5
    assert hidden.mean_abs_derivative == 0.5


def test_sigmoid_layer_with_huge_weights_saturates() -> None:
    net = MLP([3, 6, 2], activation="sigmoid", output="identity", loss="mse")
    params, X, y = setup(net)
    _, _, (calm, _) = net.loss_and_grad(params, X, y, diagnostics=True)
    params["dense1.W"] *= 1e3
    _, _, (saturated, _) = net.loss_and_grad(params, X, y, diagnostics=True)
    assert calm.saturated_fraction == 0.0
    assert calm.mean_abs_derivative is not None and calm.mean_abs_derivative > 0.15  # σ' ≤ ¼
    assert saturated.saturated_fraction is not None and saturated.saturated_fraction > 0.9
    assert saturated.mean_abs_derivative is not None
    assert saturated.mean_abs_derivative < 0.01 * calm.mean_abs_derivative


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_softmax_output_has_no_derivative_statistics(loss: str) -> None:
    net = MLP([3, 4, 3], activation="tanh", output="softmax", loss=loss)
    params, X, y = setup(net)
    _, _, (hidden, out) = net.loss_and_grad(params, X, y, diagnostics=True)
    assert out.mean_abs_derivative is None
    assert out.saturated_fraction is None
    assert out.dead_fraction is None
    assert out.activation_mean == pytest.approx(1 / 3)  # probability rows sum to 1
    assert hidden.mean_abs_derivative is not None


CONFIGS = [
    ("tanh", "identity", "mse"),
    ("relu", "softmax", "cross_entropy"),
    (["sigmoid", "elu"], "sigmoid", "bce"),
    (["gelu", "identity", "leaky_relu"], "softmax", "mse"),
]


@pytest.mark.parametrize("activation_derivative", [True, False])
@pytest.mark.parametrize(("activation", "output", "loss"), CONFIGS)
def test_asking_for_diagnostics_changes_neither_loss_nor_gradients(
    activation: str | list[str], output: str, loss: str, activation_derivative: bool
) -> None:
    hidden = 1 if isinstance(activation, str) else len(activation)
    net = MLP(
        [3, *[4] * hidden, 3],
        activation=activation,
        output=output,
        loss=loss,
        activation_derivative=activation_derivative,
    )
    params, X, y = setup(net, seed=3)
    plain_loss, plain_grads = net.loss_and_grad(params, X, y)
    loss_value, grads, diagnostics = net.loss_and_grad(params, X, y, diagnostics=True)
    assert loss_value == plain_loss
    assert list(grads) == list(plain_grads)
    for key, g in grads.items():
        np.testing.assert_array_equal(g, plain_grads[key], err_msg=key)
    assert len(diagnostics) == hidden + 1


def test_diagnostics_serialise_to_a_plain_dict() -> None:
    net = MLP([2, 3, 1], activation="relu", output="sigmoid", loss="bce")
    params, X, y = setup(net)
    _, _, diagnostics = net.loss_and_grad(params, X, y, diagnostics=True)
    as_dict = diagnostics[0].to_dict()
    assert as_dict["layer"] == "dense1" and as_dict["activation"] == "relu"
    assert set(as_dict) == {
        "layer",
        "activation",
        "grad_norm",
        "activation_mean",
        "activation_std",
        "mean_abs_derivative",
        "saturated_fraction",
        "dead_fraction",
    }
    assert all(isinstance(v, (str, float)) for v in as_dict.values())


def test_derivative_stats_by_hand() -> None:
    assert FLAT_DERIVATIVE == 1e-3
    # unit 0 is flat on both samples (dead); unit 1 is flat on one of the two
    d = np.array([[0.0, 0.5], [1e-4, -5e-4]])
    mean_abs, saturated, dead = derivative_stats(d)
    assert mean_abs == pytest.approx((0.0 + 0.5 + 1e-4 + 5e-4) / 4)
    assert saturated == 0.75
    assert dead == 0.5
