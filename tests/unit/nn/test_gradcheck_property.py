"""The backward pass against finite differences, across every activation, every valid
output/loss pair and depths 0-3, on random tiny networks (hypothesis).

Each (activation, output, loss, depth) combination is its own parametrized test, so a
combination cannot be skipped by the random draw; hypothesis varies the layer widths,
the batch size and the seed. Parameters are perturbed after initialisation so that the
biases (zero at init) take part.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chainrule.nn import (
    ACTIVATIONS,
    MLP,
    OUTPUTS,
    VALID_OUTPUTS,
    Params,
    gradcheck,
    numeric_grad,
)
from chainrule.nn.gradcheck import kink_margin
from chainrule.nn.types import Array

ACTIVATION_NAMES = list(ACTIVATIONS)
# every (output, loss) pair the head accepts: mse with each of the 10 outputs, bce +
# sigmoid, cross_entropy + softmax (checked with integer labels and with one-hot rows)
PAIRS = [(output, loss) for loss, outputs in VALID_OUTPUTS.items() for output in outputs]
TOLERANCE = 1e-6
# finite differences are only meaningful away from a ReLU/ELU kink
KINK_MARGIN = 1e-6

widths = st.lists(st.integers(1, 6), min_size=4, max_size=4)
out_widths = st.integers(1, 6)
batches = st.integers(1, 6)
seeds = st.integers(0, 2**32 - 1)


def make_problem(
    net: MLP, batch: int, seed: int, dtype: type[np.floating] = np.float64
) -> tuple[Params, Array, list[object]]:
    """Perturbed initial params, inputs and the targets to try for ``net``'s loss."""
    rng = np.random.default_rng(seed)
    params = {
        key: (p + 0.2 * rng.normal(size=p.shape)).astype(dtype)
        for key, p in net.init(rng, np.float64).items()
    }
    X = rng.normal(size=(batch, net.layers[0]))
    k = net.layers[-1]
    targets: list[object]
    if net.head.loss == "mse":
        targets = [rng.normal(size=(batch, k))]
    elif net.head.loss == "bce":
        # soft labels in [0, 1) and hard 0/1 labels
        targets = [rng.random(size=(batch, k)), rng.integers(0, 2, size=(batch, k))]
    else:
        labels = rng.integers(0, k, size=batch)
        targets = [labels, np.eye(k)[labels]]  # integer classes and the same as one-hot
    return params, X, targets


def output_width(output: str, k: int) -> int:
    return max(k, 2) if output == "softmax" else k  # a 1-way softmax is a constant


def check(net: MLP, params: Params, X: Array, targets: list[object]) -> None:
    assume(kink_margin(net, params, X) > KINK_MARGIN)
    for y in targets:
        error = gradcheck(net, params, X, y)
        assert error < TOLERANCE, f"relative error {error:.3g} for targets {y!r}"


def test_pairs_are_every_output_with_mse_and_the_two_fused_heads() -> None:
    assert {output for output, loss in PAIRS if loss == "mse"} == set(OUTPUTS)
    assert "softmax" in OUTPUTS and set(ACTIVATIONS) < set(OUTPUTS)
    assert {pair for pair in PAIRS if pair[1] != "mse"} == {
        ("sigmoid", "bce"),
        ("softmax", "cross_entropy"),
    }
    assert len(PAIRS) == len(ACTIVATIONS) + 3  # 12: 10 outputs with mse, 2 fused


@pytest.mark.parametrize(("output", "loss"), PAIRS)
@settings(max_examples=8, deadline=None, derandomize=True)
@given(widths=widths, k=out_widths, batch=batches, seed=seeds)
def test_gradcheck_without_hidden_layers(
    output: str, loss: str, widths: list[int], k: int, batch: int, seed: int
) -> None:
    net = MLP([widths[0], output_width(output, k)], output=output, loss=loss)
    check(net, *make_problem(net, batch, seed))


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize(("output", "loss"), PAIRS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@settings(max_examples=6, deadline=None, derandomize=True)
@given(widths=widths, k=out_widths, batch=batches, seed=seeds)
def test_gradcheck_every_activation_output_loss_and_depth(
    activation: str,
    output: str,
    loss: str,
    depth: int,
    widths: list[int],
    k: int,
    batch: int,
    seed: int,
) -> None:
    layers = [*widths[: depth + 1], output_width(output, k)]
    net = MLP(layers, activation=activation, output=output, loss=loss)
    check(net, *make_problem(net, batch, seed))


@pytest.mark.parametrize(("output", "loss"), PAIRS)
@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    activations=st.lists(st.sampled_from(ACTIVATION_NAMES), min_size=2, max_size=3, unique=True),
    widths=widths,
    k=out_widths,
    batch=batches,
    seed=seeds,
)
def test_gradcheck_with_a_different_activation_per_hidden_layer(
    output: str, loss: str, activations: list[str], widths: list[int], k: int, batch: int, seed: int
) -> None:
    layers = [*widths[: len(activations) + 1], output_width(output, k)]
    net = MLP(layers, activation=activations, output=output, loss=loss)
    assert [f.name for f in net.hidden] == activations
    check(net, *make_problem(net, batch, seed))


@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_gradcheck_through_all_nine_activations_in_one_network(output: str, loss: str) -> None:
    names = ACTIVATION_NAMES
    net = MLP([3] * (len(names) + 1) + [3], activation=names, output=output, loss=loss)
    params, X, targets = make_problem(net, batch=4, seed=7)
    assert kink_margin(net, params, X) > KINK_MARGIN
    for y in targets:
        assert gradcheck(net, params, X, y) < TOLERANCE


@pytest.mark.parametrize(("output", "loss"), PAIRS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@settings(max_examples=3, deadline=None, derandomize=True)
@given(depth=st.integers(0, 3), widths=widths, k=out_widths, batch=batches, seed=seeds)
def test_float32_params_give_float32_gradients_close_to_float64(
    activation: str,
    output: str,
    loss: str,
    depth: int,
    widths: list[int],
    k: int,
    batch: int,
    seed: int,
) -> None:
    layers = [*widths[: depth + 1], output_width(output, k)]
    net = MLP(layers, activation=activation, output=output, loss=loss)
    params32, X, targets = make_problem(net, batch, seed, np.float32)
    # the same point in float64, so only the arithmetic's precision differs
    params64 = {key: p.astype(np.float64) for key, p in params32.items()}
    X32 = X.astype(np.float32)
    assume(kink_margin(net, params64, X32) > 1e-3)  # float32 rounding must not cross a kink
    for y in targets:
        loss32, grads32 = net.loss_and_grad(params32, X32, y)
        loss64, grads64 = net.loss_and_grad(params64, X32.astype(np.float64), y)
        assert loss32 == pytest.approx(loss64, rel=1e-4, abs=1e-5)
        # rounding in float32 is relative to the largest terms, not to each entry
        scale = max(1.0, *(float(np.abs(g).max()) for g in grads64.values()))
        for key, g64 in grads64.items():
            assert grads32[key].dtype == np.float32
            np.testing.assert_allclose(grads32[key], g64, rtol=1e-3, atol=1e-5 * scale, err_msg=key)


# -- the checker itself ----------------------------------------------------------------


def test_gradcheck_flags_a_wrong_gradient() -> None:
    """Dropping tanh' in the hidden layer gives a direction that is not the gradient;
    the check must say so, or passing it would prove nothing."""
    exact = MLP([3, 4, 2], activation="tanh", output="identity", loss="mse")
    dropped = MLP(
        [3, 4, 2], activation="tanh", output="identity", loss="mse", activation_derivative=False
    )
    params, X, (y,) = make_problem(exact, batch=5, seed=3)
    assert gradcheck(exact, params, X, y) < TOLERANCE
    assert gradcheck(dropped, params, X, y) > 1e-2


def test_numeric_grad_of_a_linear_least_squares_layer_is_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    net = MLP([3, 2], output="identity", loss="mse")
    params = {"dense1.W": rng.normal(size=(3, 2)), "dense1.b": rng.normal(size=2)}
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    residual = (X @ params["dense1.W"] + params["dense1.b"] - y) / 5  # dJ/dz for ½‖z − y‖²/N
    numeric = numeric_grad(net, params, X, y)
    np.testing.assert_allclose(numeric["dense1.W"], X.T @ residual, rtol=1e-10)
    np.testing.assert_allclose(numeric["dense1.b"], residual.sum(axis=0), rtol=1e-10)


def test_gradcheck_leaves_params_and_inputs_alone() -> None:
    net = MLP([3, 4, 2], activation="relu", output="softmax", loss="cross_entropy")
    params, X, (y, _) = make_problem(net, batch=4, seed=1)
    before = {key: p.copy() for key, p in params.items()}
    X_before = X.copy()
    gradcheck(net, params, X, y)
    for key, p in params.items():
        np.testing.assert_array_equal(p, before[key])
    np.testing.assert_array_equal(X, X_before)


def test_kink_margin_is_the_smallest_pre_activation_of_kinked_layers() -> None:
    rng = np.random.default_rng(5)
    relu_net = MLP([3, 4, 2], activation="relu", output="identity", loss="mse")
    params = relu_net.init(rng, np.float64)
    X = rng.normal(size=(6, 3))
    z1 = X @ params["dense1.W"] + params["dense1.b"]
    assert kink_margin(relu_net, params, X) == pytest.approx(np.abs(z1).min())
    smooth_net = MLP([3, 4, 2], activation="tanh", output="identity", loss="mse")
    assert kink_margin(smooth_net, params, X) == np.inf


def test_gradcheck_passes_just_beside_a_relu_kink() -> None:
    """One pre-activation sits 1e-5 from ReLU's kink: the step must shrink so that no
    finite-difference sample crosses it."""
    net = MLP([3, 4, 2], activation="relu", output="identity", loss="mse")
    params, X, (y,) = make_problem(net, batch=5, seed=11)
    z1 = X @ params["dense1.W"] + params["dense1.b"]
    params["dense1.b"][0] -= z1[0, 0] - 1e-5  # now z1[0, 0] == 1e-5
    assert kink_margin(net, params, X) == pytest.approx(1e-5, rel=1e-6)
    assert gradcheck(net, params, X, y) < TOLERANCE
