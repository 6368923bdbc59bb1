"""The MLP's public surface: parameter layout, initialisation, purity of the
forward/backward pass, predictions and argument validation."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.nn import MLP, Params
from chainrule.nn.types import Array


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2024)


# -- parameters -----------------------------------------------------------------------


def test_params_are_named_per_dense_layer_with_fan_in_by_fan_out_weights(
    rng: np.random.Generator,
) -> None:
    net = MLP([4, 16, 8, 3], activation=["relu", "tanh"])
    params = net.init(rng)
    assert list(params) == ["dense1.W", "dense1.b", "dense2.W", "dense2.b", "dense3.W", "dense3.b"]
    assert {k: p.shape for k, p in params.items()} == {
        "dense1.W": (4, 16),
        "dense1.b": (16,),
        "dense2.W": (16, 8),
        "dense2.b": (8,),
        "dense3.W": (8, 3),
        "dense3.b": (3,),
    }
    assert net.shapes() == {k: p.shape for k, p in params.items()}
    assert net.n_params() == 4 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3
    assert net.n_dense == 3


def test_init_is_float32_by_default_with_zero_biases(rng: np.random.Generator) -> None:
    params = MLP([3, 5, 2]).init(rng)
    assert {p.dtype for p in params.values()} == {np.dtype(np.float32)}
    assert not params["dense1.b"].any() and not params["dense2.b"].any()
    assert params["dense1.W"].any()


def test_init_can_be_float64_but_nothing_else(rng: np.random.Generator) -> None:
    net = MLP([3, 5, 2])
    assert {p.dtype for p in net.init(rng, np.float64).values()} == {np.dtype(np.float64)}
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got float16"):
        net.init(rng, np.float16)


def test_init_is_determined_by_the_generator() -> None:
    net = MLP([3, 5, 2], activation="relu")
    first = net.init(np.random.default_rng(7))
    again = net.init(np.random.default_rng(7))
    other = net.init(np.random.default_rng(8))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["dense1.W"], other["dense1.W"])


def assert_glorot_uniform(w: Array) -> None:
    fan_in, fan_out = w.shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit  # the whole interval is used
    assert w.std() == pytest.approx(limit / np.sqrt(3.0), rel=0.02)  # uniform's std
    assert abs(w.mean()) < 0.01 * limit


def assert_he_normal(w: Array) -> None:
    std = np.sqrt(2.0 / w.shape[0])
    assert w.std() == pytest.approx(std, rel=0.02)
    assert abs(w.mean()) < 0.01 * std
    # a normal's tails: a uniform with this std would end at √3·σ ≈ 1.73σ
    assert np.abs(w).max() > 3.5 * std
    assert np.mean(np.abs(w) > 2 * std) == pytest.approx(0.0455, abs=0.005)


def test_auto_init_is_glorot_uniform_before_tanh(rng: np.random.Generator) -> None:
    params = MLP([400, 300, 1], activation="tanh").init(rng)
    assert_glorot_uniform(params["dense1.W"])


def test_auto_init_is_he_normal_before_relu(rng: np.random.Generator) -> None:
    params = MLP([500, 400, 1], activation="relu").init(rng)
    assert_he_normal(params["dense1.W"])


def test_auto_init_follows_each_layer_and_the_output(rng: np.random.Generator) -> None:
    net = MLP([300, 300, 300, 300], activation=["relu", "sigmoid"], output="relu")
    params = net.init(rng)
    assert_he_normal(params["dense1.W"])  # before relu
    assert_glorot_uniform(params["dense2.W"])  # before sigmoid
    assert_he_normal(params["dense3.W"])  # before the relu output
    softmax_net = MLP([300, 300, 300], activation="relu", output="softmax", loss="cross_entropy")
    assert_glorot_uniform(softmax_net.init(rng)["dense2.W"])


def test_init_override_replaces_the_automatic_choice(rng: np.random.Generator) -> None:
    he = MLP([500, 400, 1], activation="tanh", init="he").init(rng)
    assert_he_normal(he["dense1.W"])
    glorot = MLP([400, 300, 1], activation="relu", init="glorot").init(rng)
    assert_glorot_uniform(glorot["dense1.W"])


# -- loss_and_grad and predict --------------------------------------------------------

CONFIGS = [
    # (activation, output, loss): identity layers hand arrays through unchanged, the
    # cases most likely to alias an input
    ("identity", "identity", "mse"),
    ("tanh", "softmax", "cross_entropy"),
    ("relu", "sigmoid", "bce"),
    (["elu", "gelu"], "softmax", "mse"),
]


def problem(net: MLP, rng: np.random.Generator, dtype: type[np.floating]) -> tuple[Array, Array]:
    n, k = 5, net.layers[-1]
    X = rng.normal(size=(n, net.layers[0])).astype(dtype)
    if net.head.loss == "cross_entropy":
        return X, rng.integers(0, k, size=n)
    if net.head.loss == "bce":
        return X, rng.integers(0, 2, size=(n, k)).astype(dtype)
    return X, rng.normal(size=(n, k)).astype(dtype)


def perturbed(params: Params, rng: np.random.Generator) -> Params:
    return {k: (p + 0.1 * rng.normal(size=p.shape)).astype(p.dtype) for k, p in params.items()}


@pytest.mark.parametrize(("activation", "output", "loss"), CONFIGS)
def test_backprop_on_rows_of_validated_data_is_loss_and_grad_on_those_rows(
    activation: str | list[str], output: str, loss: str, rng: np.random.Generator
) -> None:
    hidden = 1 if isinstance(activation, str) else len(activation)
    net = MLP([3, *[4] * hidden, 3], activation=activation, output=output, loss=loss)
    params = perturbed(net.init(rng), rng)
    X, y = problem(net, rng, np.float64)  # float64 rows, float32 θ: validate casts once
    x, targets = net.validate(params, X, y)
    assert x.dtype == np.float32
    rows = np.array([4, 0, 4, 2])  # of 5
    for diagnostics in (False, True):
        want = net.loss_and_grad(params, X[rows], y[rows], diagnostics=diagnostics)
        got = net.backprop(params, x[rows], targets[rows], diagnostics=diagnostics)
        assert got[0] == want[0]
        for name, g in want[1].items():
            np.testing.assert_array_equal(got[1][name], g)
        assert got[2:] == want[2:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("activation", "output", "loss"), CONFIGS)
def test_loss_and_grad_mutates_nothing(
    activation: str | list[str],
    output: str,
    loss: str,
    dtype: type[np.floating],
    rng: np.random.Generator,
) -> None:
    hidden = 1 if isinstance(activation, str) else len(activation)
    net = MLP([3, *[4] * hidden, 3], activation=activation, output=output, loss=loss)
    params = perturbed(net.init(rng, dtype), rng)
    X, y = problem(net, rng, dtype)
    params_before = {k: p.copy() for k, p in params.items()}
    X_before, y_before = X.copy(), y.copy()
    for diagnostics in (False, True):
        net.loss_and_grad(params, X, y, diagnostics=diagnostics)
        net.predict(params, X)
        for key, p in params.items():
            np.testing.assert_array_equal(p, params_before[key])
        np.testing.assert_array_equal(X, X_before)
        np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("activation", "output", "loss"), CONFIGS)
def test_gradients_match_params_in_names_shapes_and_dtype(
    activation: str | list[str],
    output: str,
    loss: str,
    dtype: type[np.floating],
    rng: np.random.Generator,
) -> None:
    hidden = 1 if isinstance(activation, str) else len(activation)
    net = MLP([3, *[4] * hidden, 3], activation=activation, output=output, loss=loss)
    params = perturbed(net.init(rng, dtype), rng)
    X, y = problem(net, rng, dtype)
    loss_value, grads = net.loss_and_grad(params, X, y)
    assert list(grads) == list(params)
    for key, g in grads.items():
        assert g.shape == params[key].shape and g.dtype == dtype
        assert np.isfinite(g).all()
    assert isinstance(loss_value, float)
    assert loss_value == pytest.approx(float(net.objective(params, X, y)), rel=1e-6)
    # no gradient is accidentally another parameter's array
    for key, g in grads.items():
        assert not any(np.shares_memory(g, p) for p in params.values()), key


def test_predict_is_the_forward_pass_written_out(rng: np.random.Generator) -> None:
    net = MLP([3, 4, 5, 2], activation=["tanh", "relu"], output="identity")
    params = perturbed(net.init(rng, np.float64), rng)
    X = rng.normal(size=(6, 3))
    a1 = np.tanh(X @ params["dense1.W"] + params["dense1.b"])
    a2 = np.maximum(a1 @ params["dense2.W"] + params["dense2.b"], 0.0)
    expected = a2 @ params["dense3.W"] + params["dense3.b"]
    np.testing.assert_allclose(net.predict(params, X), expected, rtol=1e-12)


def test_softmax_predictions_are_probability_rows(rng: np.random.Generator) -> None:
    net = MLP([4, 8, 3], activation="relu", output="softmax", loss="cross_entropy")
    params = net.init(rng)
    p = net.predict(params, rng.normal(size=(7, 4)))
    assert p.shape == (7, 3) and p.dtype == np.float32
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_sigmoid_predictions_are_probabilities(rng: np.random.Generator) -> None:
    net = MLP([2, 4, 1], output="sigmoid", loss="bce")
    p = net.predict(net.init(rng), rng.normal(size=(9, 2)))
    assert p.shape == (9, 1)
    assert ((p > 0) & (p < 1)).all()


def test_inputs_are_cast_to_the_params_dtype(rng: np.random.Generator) -> None:
    net = MLP([2, 3, 1])
    params32 = net.init(rng)
    X_int = np.array([[1, 2], [3, 4]])
    _, grads = net.loss_and_grad(params32, X_int, [0.5, 1.0])
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    assert net.predict(params32, X_int.astype(np.float64)).dtype == np.float32


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": [3, 4, 2], "activation": "relu6"}, r"unknown activation 'relu6'.*tanh"),
        ({"layers": [3, 4, 4, 2], "activation": ["relu"]}, "has 1 entries; expected 2"),
        ({"layers": [3, 2], "activation": ["relu"]}, "has 1 entries; expected 0"),
        (
            {"layers": [3, 4, 2], "output": "softmax", "loss": "bce"},
            "output 'softmax' does not go with loss 'bce'",
        ),
        (
            {"layers": [3, 4, 2], "output": "sigmoid", "loss": "cross_entropy"},
            "output 'sigmoid' does not go with loss 'cross_entropy'",
        ),
        ({"layers": [3, 4, 2], "loss": "hinge"}, "unknown loss 'hinge'"),
        ({"layers": [3, 4, 2], "output": "relu6"}, "unknown output 'relu6'"),
        ({"layers": [3, 4, 2], "init": "xavier"}, "unknown init 'xavier'"),
        ({"layers": [3]}, r"at least 2 positive integers.*\[3\]"),
        ({"layers": [3, 0, 2]}, r"got \[3, 0, 2\]"),
        ({"layers": [3, 2.5]}, "positive integers"),
        ({"layers": [3, True]}, "positive integers"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLP(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def net() -> MLP:
    return MLP([3, 4, 2], activation="tanh", output="identity", loss="mse")


@pytest.fixture
def params(net: MLP) -> Params:
    return net.init(np.random.default_rng(0))


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros((5, 4)), r"X has shape \(5, 4\); expected \(N, 3\)"),
        (np.zeros(3), r"X has shape \(3,\); expected \(N, 3\)"),
        (np.zeros((2, 5, 3)), r"X has shape \(2, 5, 3\)"),
        (np.zeros((0, 3)), "X is empty"),
        (np.array([[0, 0, 0], [0, np.nan, 0]]), r"NaN or infinity \(first in row 1\)"),
        (np.array([[0, 0, np.inf]]), r"NaN or infinity \(first in row 0\)"),
        (np.array([["a", "b", "c"]]), "X must be numeric"),
    ],
)
def test_bad_inputs(net: MLP, params: Params, X: Array, message: str) -> None:
    y = np.zeros((max(len(X), 1), 2))
    with pytest.raises(ValueError, match=message):
        net.loss_and_grad(params, X, y)
    with pytest.raises(ValueError, match=message):
        net.predict(params, X)


def test_wrong_targets_are_rejected(net: MLP, params: Params) -> None:
    with pytest.raises(ValueError, match=r"targets have shape \(4, 3\); expected \(4, 2\)"):
        net.loss_and_grad(params, np.zeros((4, 3)), np.zeros((4, 3)))


def test_missing_or_extra_param_keys(net: MLP, params: Params) -> None:
    X, y = np.zeros((2, 3)), np.zeros((2, 2))
    missing = {k: v for k, v in params.items() if k != "dense2.b"}
    with pytest.raises(
        ValueError, match=r"exactly the keys.*got \['dense1.W', 'dense1.b', 'dense2.W'\]"
    ):
        net.loss_and_grad(missing, X, y)
    extra = {**params, "dense3.W": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError, match="exactly the keys"):
        net.loss_and_grad(extra, X, y)
    with pytest.raises(ValueError, match="got list"):
        net.loss_and_grad(list(params.values()), X, y)  # type: ignore[call-overload]


def test_wrong_param_shape(net: MLP, params: Params) -> None:
    params["dense1.W"] = params["dense1.W"].T.copy()
    with pytest.raises(ValueError, match=r"'dense1.W' has shape \(4, 3\); expected \(3, 4\)"):
        net.loss_and_grad(params, np.zeros((2, 3)), np.zeros((2, 2)))


def test_mixed_or_unsupported_param_dtypes(net: MLP, params: Params) -> None:
    X, y = np.zeros((2, 3)), np.zeros((2, 2))
    mixed = {**params, "dense2.b": params["dense2.b"].astype(np.float64)}
    with pytest.raises(
        ValueError, match=r"must all be float32 or all float64; got \['float32', 'float64'\]"
    ):
        net.loss_and_grad(mixed, X, y)
    half = {k: p.astype(np.float16) for k, p in params.items()}
    with pytest.raises(ValueError, match=r"got \['float16'\]"):
        net.loss_and_grad(half, X, y)
