"""The smallest end-to-end check of the math core; the full suite lives beside it."""

import numpy as np

from chainrule.nn import MLP, gradcheck


def test_tanh_softmax_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    net = MLP(layers=[4, 5, 3], activation="tanh", output="softmax", loss="cross_entropy")
    params = net.init(rng, np.float64)
    X = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, size=6)
    assert gradcheck(net, params, X, y) < 1e-6
