"""Single-process training (``chainrule.nn.train``): what it learns and how it stops.

The headline: XOR needs a non-linear hidden layer. With tanh or ReLU the net classifies
every point; with identity hidden layers the whole stack is one linear map, and no line
separates XOR.
"""

import numpy as np
import pytest

from chainrule.data import make_dataset
from chainrule.nn import MLP, SGD, Params, Schedule
from chainrule.nn.train import History, accuracy, train
from chainrule.nn.types import Array

XOR_ROWS = 400
STEPS = 600


def train_xor(activation: str, seed: int, steps: int = STEPS) -> tuple[float, History]:
    """Train [2, 16, 16, 1] (sigmoid output, cross-entropy; the activation lab's net) on
    XOR; the final training accuracy and the history (accuracy every 10 steps)."""
    X, y = make_dataset("xor", XOR_ROWS, np.random.default_rng(seed))
    net = MLP([2, 16, 16, 1], activation, output="sigmoid", loss="bce")
    params = net.init(np.random.default_rng(1000 + seed))
    opt, schedule = SGD(momentum=0.9), Schedule(lr=0.1)
    rng = np.random.default_rng(2000 + seed)
    params, history = train(net, params, X, y, opt, schedule, steps, 32, rng, eval_every=10)
    return accuracy(net, params, X, y), history


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_xor_reaches_100_percent_with_a_nonlinear_hidden_layer(activation: str, seed: int) -> None:
    final, history = train_xor(activation, seed)
    assert final == 1.0
    assert history.accuracy[-1] == 1.0


def best_line_accuracy(X: Array) -> float:
    """What the best straight line scores on XOR: the four corner clusters lie far apart
    (noise 0.1 around (±1, ±1)), any line leaves at least one of them on the wrong side,
    and the best one gives up the smallest."""
    corners = 2 * (X[:, 0] > 0) + (X[:, 1] > 0)
    return float(1.0 - np.bincount(corners, minlength=4).min() / len(X))


@pytest.mark.parametrize("seed", range(5))
def test_xor_is_never_solved_with_identity_hidden_layers(seed: int) -> None:
    X, _ = make_dataset("xor", XOR_ROWS, np.random.default_rng(seed))
    bound = best_line_accuracy(X)
    assert bound < 0.8  # about 75%: three corners of four, for every seed here
    final, history = train_xor("identity", seed)
    # every accuracy measured during training, not only the last one: identity layers
    # multiply out to one linear map, so the net never beats the best line
    assert max(history.accuracy) <= bound + 1e-9
    assert final <= bound + 1e-9


def small_problem(activation: str = "tanh") -> tuple[MLP, Params, Array, Array]:
    X, y = make_dataset("moons", 64, np.random.default_rng(0))
    net = MLP([2, 4, 4, 1], activation, output="sigmoid", loss="bce")
    return net, net.init(np.random.default_rng(1)), X, y


def test_train_returns_new_params_and_leaves_its_input_alone() -> None:
    net, params, X, y = small_problem()
    before = {k: v.copy() for k, v in params.items()}
    trained, history = train(
        net, params, X, y, SGD(), Schedule(lr=0.1), 20, 16, np.random.default_rng(2)
    )
    for key in params:
        np.testing.assert_array_equal(params[key], before[key])
    assert any(not np.array_equal(trained[k], params[k]) for k in params)
    assert len(history.loss) == 20


def test_accuracy_is_measured_every_eval_every_steps_and_after_the_last() -> None:
    net, params, X, y = small_problem()
    _, history = train(
        net, params, X, y, SGD(), Schedule(lr=0.1), 130, 16, np.random.default_rng(2), 50
    )
    assert history.eval_steps == [50, 100, 130]
    assert len(history.accuracy) == 3
    assert all(0.0 <= a <= 1.0 for a in history.accuracy)


def test_train_stops_at_the_first_non_finite_loss() -> None:
    net, params, X, y = small_problem("relu")  # unbounded: big weights make big z
    with np.errstate(over="ignore", invalid="ignore"):  # a step of 1e30 overflows float32
        _, history = train(
            net, params, X, y, SGD(), Schedule(lr=1e30), 50, 16, np.random.default_rng(2)
        )
    assert len(history.loss) < 50
    assert not np.isfinite(history.loss[-1])
    assert all(np.isfinite(history.loss[:-1]))
