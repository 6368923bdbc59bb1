"""Optimizers: a few steps against values worked out by hand, purity of ``update``,
state layout and hyper-parameter validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chainrule.nn import SGD, Adagrad, Adam, Optimizer, OptState, Params, make_optimizer


def scalar_steps(opt: Optimizer, p0: float, grads: list[float], lr: float) -> list[float]:
    """θ after each step, for one scalar parameter."""
    params = {"w": np.array([p0])}
    state = opt.init(params)
    out = []
    for g in grads:
        opt.update_(params, {"w": np.array([g])}, state, lr)
        out.append(float(params["w"][0]))
    return out


# -- hand-computed trajectories -------------------------------------------------------


def test_plain_sgd_steps_against_the_gradient() -> None:
    params = {"W": np.array([[1.0, -2.0]]), "b": np.array([0.5])}
    opt = make_optimizer("sgd")
    state = opt.init(params)
    assert set(state) == {"step"}  # no buffers without momentum
    opt.update_(params, {"W": np.array([[0.5, 0.25]]), "b": np.array([-1.0])}, state, 0.1)
    np.testing.assert_allclose(params["W"], [[0.95, -2.025]])
    np.testing.assert_allclose(params["b"], [0.6])
    opt.update_(params, {"W": np.array([[-1.0, 2.0]]), "b": np.array([0.0])}, state, 0.1)
    np.testing.assert_allclose(params["W"], [[1.05, -2.225]])
    np.testing.assert_allclose(params["b"], [0.6])
    assert int(state["step"]) == 2


def test_sgd_with_momentum() -> None:
    # v ← 0.9v + g: 1, 2.9, 5.61;  θ ← θ − 0.1v: 0.9, 0.61, 0.049
    steps = scalar_steps(make_optimizer("sgd", momentum=0.9), 1.0, [1.0, 2.0, 3.0], lr=0.1)
    assert steps == pytest.approx([0.9, 0.61, 0.049], abs=1e-12)


def test_sgd_with_nesterov_momentum() -> None:
    # v: 1, 2.9, 5.61;  the step uses g + 0.9v: 1.9, 4.61, 8.049
    opt = make_optimizer("sgd", momentum=0.9, nesterov=True)
    steps = scalar_steps(opt, 1.0, [1.0, 2.0, 3.0], lr=0.1)
    assert steps == pytest.approx([0.81, 0.349, -0.4559], abs=1e-12)


def test_sgd_with_weight_decay_adds_lambda_theta() -> None:
    # g + 0.1θ: 0.5 + 0.2 = 0.7 → θ = 1.93;  0.5 + 0.193 = 0.693 → θ = 1.8607
    steps = scalar_steps(make_optimizer("sgd", weight_decay=0.1), 2.0, [0.5, 0.5], lr=0.1)
    assert steps == pytest.approx([1.93, 1.8607], abs=1e-12)


def test_adam_with_bias_correction() -> None:
    beta1, beta2, eps, lr = 0.9, 0.999, 1e-8, 0.1
    # step 1, g = 2: m = 0.2, v = 0.004, m̂ = 0.2/0.1 = 2, v̂ = 0.004/0.001 = 4
    p1 = 0.5 - lr * 2.0 / (math.sqrt(4.0) + eps)
    # step 2, g = −1: m = 0.9·0.2 − 0.1 = 0.08, v = 0.999·0.004 + 0.001 = 0.004996
    m_hat = 0.08 / (1 - beta1**2)
    v_hat = 0.004996 / (1 - beta2**2)
    p2 = p1 - lr * m_hat / (math.sqrt(v_hat) + eps)
    steps = scalar_steps(make_optimizer("adam"), 0.5, [2.0, -1.0], lr)
    assert steps == pytest.approx([p1, p2], rel=1e-12)
    assert steps == pytest.approx([0.4, 0.3733663], abs=1e-7)


@pytest.mark.parametrize("g", [1e-4, -1e-2, 1.0, -37.0, 1e4])
def test_adam_first_step_moves_by_lr_whatever_the_gradient_scale(g: float) -> None:
    # m̂ = g and v̂ = g² after bias correction, so the step is lr·g/|g|; without the
    # correction it would be lr·0.1/√0.001 ≈ 3.16·lr
    (p1,) = scalar_steps(make_optimizer("adam"), 0.0, [g], lr=0.01)
    assert p1 == pytest.approx(-0.01 * math.copysign(1.0, g), rel=1e-3)


def test_adam_with_weight_decay() -> None:
    # g + 0.5θ = 0 + 0.5·2 = 1 at step 1: the step is lr in the direction of −θ
    (p1,) = scalar_steps(make_optimizer("adam", weight_decay=0.5), 2.0, [0.0], lr=0.01)
    assert p1 == pytest.approx(1.99, abs=1e-9)


def test_adagrad_divides_by_the_root_of_the_summed_squares() -> None:
    # G = 4 → θ = 1 − 0.1·2/2 = 0.9;  G = 5 → θ = 0.9 − 0.1·1/√5
    steps = scalar_steps(make_optimizer("adagrad"), 1.0, [2.0, 1.0], lr=0.1)
    assert steps == pytest.approx([0.9, 0.9 - 0.1 / math.sqrt(5.0)], rel=1e-9)
    assert steps[1] == pytest.approx(0.8552786, abs=1e-7)


def test_adagrad_initial_accumulator() -> None:
    opt = make_optimizer("adagrad", initial_accumulator=0.1)
    assert opt.init({"w": np.zeros(2)})["sum_sq/w"].tolist() == [0.1, 0.1]
    (p1,) = scalar_steps(opt, 1.0, [2.0], lr=0.1)
    assert p1 == pytest.approx(1.0 - 0.2 / math.sqrt(4.1), rel=1e-9)


# -- update vs update_ ----------------------------------------------------------------

CONFIGS = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.5, "nesterov": True, "weight_decay": 1e-2}),
    ("adam", {}),
    ("adam", {"beta1": 0.5, "beta2": 0.9, "weight_decay": 1e-3}),
    ("adagrad", {"initial_accumulator": 0.1}),
]


def copy_all(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in arrays.items()}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert a[key].dtype == b[key].dtype, key


@pytest.mark.parametrize(("name", "hyper"), CONFIGS)
def test_update_is_pure_and_equals_update_in_place(name: str, hyper: dict[str, float]) -> None:
    rng = np.random.default_rng(0)
    opt = make_optimizer(name, **hyper)
    params: Params = {
        "dense1.W": rng.normal(size=(3, 2)).astype(np.float32),
        "dense1.b": rng.normal(size=2).astype(np.float32),
    }
    state: OptState = opt.init(params)
    in_place_params, in_place_state = copy_all(params), copy_all(state)
    W_array = in_place_params["dense1.W"]
    for step in range(1, 4):
        grads = {k: rng.normal(size=p.shape).astype(np.float32) for k, p in params.items()}
        snapshot = (copy_all(params), copy_all(grads), copy_all(state))
        new_params, new_state = opt.update(params, grads, state, lr=0.05)
        assert_same(params, snapshot[0])  # nothing the caller holds has changed
        assert_same(grads, snapshot[1])
        assert_same(state, snapshot[2])
        opt.update_(in_place_params, grads, in_place_state, lr=0.05)
        assert_same(new_params, in_place_params)
        assert_same(new_state, in_place_state)
        assert int(new_state["step"]) == step
        assert not np.array_equal(new_params["dense1.W"], params["dense1.W"])
        params, state = new_params, new_state
    assert in_place_params["dense1.W"] is W_array  # same array, changed in place
    assert {p.dtype for p in params.values()} == {np.dtype(np.float32)}
    assert {s.dtype for k, s in state.items() if k != "step"} <= {np.dtype(np.float32)}


def test_state_has_one_buffer_per_parameter() -> None:
    params = {"dense1.W": np.zeros((2, 3)), "dense1.b": np.zeros(3)}
    adam_state = Adam().init(params)
    assert set(adam_state) == {"step", "m/dense1.W", "m/dense1.b", "v/dense1.W", "v/dense1.b"}
    assert adam_state["m/dense1.W"].shape == (2, 3)
    assert adam_state["step"].shape == () and adam_state["step"].dtype == np.int64
    assert set(SGD(momentum=0.9).init(params)) == {"step", "velocity/dense1.W", "velocity/dense1.b"}
    assert set(Adagrad().init(params)) == {"step", "sum_sq/dense1.W", "sum_sq/dense1.b"}


def test_bad_update_arguments_change_nothing() -> None:
    opt = make_optimizer("adam")
    params = {"w": np.ones(2)}
    state = opt.init(params)
    for lr in (-0.1, math.nan, math.inf):
        with pytest.raises(
            ValueError, match=f"learning rate must be a finite number >= 0; got {lr}"
        ):
            opt.update_(params, {"w": np.ones(2)}, state, lr)
    with pytest.raises(ValueError, match=r"grads have keys \['v'\]; expected \['w'\]"):
        opt.update_(params, {"v": np.ones(2)}, state, 0.1)
    assert int(state["step"]) == 0
    np.testing.assert_array_equal(params["w"], [1.0, 1.0])


def test_zero_learning_rate_counts_the_step_but_keeps_theta() -> None:
    opt = make_optimizer("sgd", momentum=0.9)
    params = {"w": np.ones(2)}
    state = opt.init(params)
    opt.update_(params, {"w": np.ones(2)}, state, 0.0)
    np.testing.assert_array_equal(params["w"], [1.0, 1.0])
    np.testing.assert_array_equal(state["velocity/w"], [1.0, 1.0])
    assert int(state["step"]) == 1


# -- make_optimizer -------------------------------------------------------------------


def test_make_optimizer_builds_the_named_optimizer() -> None:
    assert make_optimizer("sgd", momentum=0.5, nesterov=True) == SGD(momentum=0.5, nesterov=True)
    assert make_optimizer("adam", beta2=0.99) == Adam(beta2=0.99)
    assert make_optimizer("adagrad", eps=1e-6) == Adagrad(eps=1e-6)


@pytest.mark.parametrize(
    ("name", "hyper", "message"),
    [
        ("rmsprop", {}, r"unknown optimizer 'rmsprop'; expected one of: sgd, adam, adagrad"),
        ("sgd", {"beta1": 0.9}, r"unknown sgd option\(s\) beta1; expected any of: momentum"),
        ("adam", {"momentum": 0.9, "foo": 1}, r"unknown adam option\(s\) foo, momentum"),
        ("sgd", {"momentum": 1.0}, r"momentum must lie in \[0, 1\); got 1.0"),
        ("sgd", {"momentum": 1.5}, r"momentum must lie in \[0, 1\); got 1.5"),
        ("sgd", {"momentum": -0.1}, r"momentum must lie in \[0, 1\); got -0.1"),
        ("sgd", {"momentum": math.nan}, r"momentum must lie in \[0, 1\); got nan"),
        ("sgd", {"nesterov": True}, "nesterov needs momentum > 0; got momentum 0"),
        ("sgd", {"weight_decay": -1.0}, r"weight_decay must lie in \[0, inf\); got -1.0"),
        ("adam", {"beta1": 1.0}, r"beta1 must lie in \[0, 1\); got 1.0"),
        ("adam", {"beta2": -0.5}, r"beta2 must lie in \[0, 1\); got -0.5"),
        ("adam", {"eps": 0.0}, "eps must lie in .*; got 0.0"),
        ("adagrad", {"initial_accumulator": -1.0}, "initial_accumulator must lie in .*; got -1.0"),
    ],
)
def test_make_optimizer_rejects_bad_names_and_values(
    name: str, hyper: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, **hyper)
