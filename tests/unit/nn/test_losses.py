"""Output heads: loss values against the textbook formulas, dJ/dz, extreme logits and
target validation."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.nn import OUTPUTS, Head
from chainrule.nn.losses import log_softmax, softmax
from chainrule.nn.types import Array


def naive_sigmoid(z: Array) -> Array:
    return 1 / (1 + np.exp(-z))


def naive_softmax(z: Array) -> Array:
    e = np.exp(z)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- values on moderate inputs --------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS)
def test_mse_is_half_the_mean_squared_error_of_the_output(
    output: str, rng: np.random.Generator
) -> None:
    head = Head(output, "mse")
    z, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    y_hat = head.predict(z)
    expected = 0.5 * ((y_hat - y) ** 2).sum() / 5
    assert float(head.objective(z, y)) == pytest.approx(expected, rel=1e-12)
    loss, _, returned_y_hat = head.loss_and_dlogits(z, y)
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(returned_y_hat, y_hat)


def test_bce_is_the_binary_cross_entropy(rng: np.random.Generator) -> None:
    head = Head("sigmoid", "bce")
    z, y = rng.normal(size=(6, 2)) * 3, rng.random(size=(6, 2))
    p = naive_sigmoid(z)
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum() / 6
    assert float(head.objective(z, y)) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_with_labels_and_one_hot(rng: np.random.Generator) -> None:
    head = Head("softmax", "cross_entropy")
    z = rng.normal(size=(5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    expected = -np.log(naive_softmax(z)[np.arange(5), labels]).mean()
    y_labels = head.targets(labels, 5, 4, np.dtype(np.float64))
    y_onehot = head.targets(np.eye(4)[labels], 5, 4, np.dtype(np.float64))
    assert float(head.objective(z, y_labels)) == pytest.approx(expected, rel=1e-12)
    assert float(head.objective(z, y_onehot)) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_with_soft_targets(rng: np.random.Generator) -> None:
    head = Head("softmax", "cross_entropy")
    z = rng.normal(size=(3, 4))
    y = rng.dirichlet(np.ones(4), size=3)
    expected = -(y * np.log(naive_softmax(z))).sum() / 3
    assert float(head.objective(z, y)) == pytest.approx(expected, rel=1e-12)


def test_softmax_and_log_softmax_against_the_definition(rng: np.random.Generator) -> None:
    z = rng.normal(size=(4, 5)) * 4
    np.testing.assert_allclose(softmax(z), naive_softmax(z), rtol=1e-12)
    np.testing.assert_allclose(log_softmax(z), np.log(naive_softmax(z)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0, rtol=1e-14)


# -- dJ/dz ----------------------------------------------------------------------------


def test_fused_heads_start_backprop_with_p_minus_y_over_n(rng: np.random.Generator) -> None:
    z = rng.normal(size=(4, 3))
    y = rng.random(size=(4, 3))
    _, dz, p = Head("sigmoid", "bce").loss_and_dlogits(z, y)
    np.testing.assert_allclose(p, naive_sigmoid(z), rtol=1e-12)
    np.testing.assert_allclose(dz, (naive_sigmoid(z) - y) / 4, rtol=1e-12, atol=1e-15)

    labels = np.array([2, 0, 1, 2])
    _, dz, p = Head("softmax", "cross_entropy").loss_and_dlogits(z, labels)
    np.testing.assert_allclose(dz, (naive_softmax(z) - np.eye(3)[labels]) / 4, atol=1e-15)


def test_mse_through_softmax_uses_the_full_jacobian(rng: np.random.Generator) -> None:
    z, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    _, dz, _ = Head("softmax", "mse").loss_and_dlogits(z, y)
    p = naive_softmax(z)
    for n in range(3):
        jacobian = np.diag(p[n]) - np.outer(p[n], p[n])  # ∂p_i/∂z_j
        np.testing.assert_allclose(dz[n], jacobian @ (p[n] - y[n]) / 3, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("output", OUTPUTS)
def test_dlogits_is_the_derivative_of_the_loss(output: str, rng: np.random.Generator) -> None:
    head = Head(output, "mse")
    z, y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    z[np.abs(z) < 1e-2] = 0.5  # keep the kinked outputs away from their kink
    _, dz, _ = head.loss_and_dlogits(z, y)
    h, numeric = 1e-6, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        plus, minus = z.copy(), z.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (head.objective(plus, y) - head.objective(minus, y)) / (2 * h)
    np.testing.assert_allclose(dz, numeric, rtol=1e-6, atol=1e-9)


def test_float32_logits_give_float32_loss_and_dlogits(rng: np.random.Generator) -> None:
    z = rng.normal(size=(4, 3)).astype(np.float32)
    for head, y in [
        (Head("softmax", "cross_entropy"), np.array([0, 1, 2, 0])),
        (Head("sigmoid", "bce"), np.ones((4, 3), dtype=np.float32)),
        (Head("tanh", "mse"), np.zeros((4, 3), dtype=np.float32)),
    ]:
        _, dz, y_hat = head.loss_and_dlogits(z, y)
        assert head.objective(z, y).dtype == np.float32
        assert dz.dtype == np.float32 and y_hat.dtype == np.float32


# -- extreme logits -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_at_extreme_logits(dtype: type[np.floating]) -> None:
    head = Head("softmax", "cross_entropy")
    z = np.array([[1e4, 0.0], [1e4, 0.0], [-1e4, 1e4]], dtype=dtype)
    with np.errstate(all="raise", under="ignore"):
        right = head.loss_and_dlogits(z[:1], np.array([0]))
        wrong = head.loss_and_dlogits(z[1:2], np.array([1]))
        very_wrong = head.loss_and_dlogits(z[2:], np.array([0]))
    assert right[0] == pytest.approx(0.0, abs=1e-6)  # -log p = log(1 + e^-1e4)
    assert wrong[0] == pytest.approx(1e4, rel=1e-6)
    assert very_wrong[0] == pytest.approx(2e4, rel=1e-6)
    np.testing.assert_allclose(right[1], [[0.0, 0.0]], atol=1e-30)
    np.testing.assert_allclose(wrong[1], [[1.0, -1.0]])  # p − y with p = (1, 0)
    for _, dz, p in (right, wrong, very_wrong):
        assert np.isfinite(dz).all() and np.isfinite(p).all()
        assert dz.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_at_extreme_logits(dtype: type[np.floating]) -> None:
    head = Head("sigmoid", "bce")
    z = np.array([[1e4], [1e4], [-1e4], [-1e4]], dtype=dtype)
    cases = [(1.0, 0.0), (0.0, 1e4), (1.0, 1e4), (0.0, 0.0)]  # (target, expected loss)
    for row, (target, expected) in enumerate(cases):
        with np.errstate(all="raise", under="ignore"):
            loss, dz, p = head.loss_and_dlogits(z[row : row + 1], np.array([[target]], dtype))
        assert loss == pytest.approx(expected, rel=1e-6, abs=1e-6)
        assert np.isfinite(dz).all()
        assert float(dz[0, 0]) == pytest.approx(float(p[0, 0]) - target)


def test_softmax_of_extreme_logits_is_a_finite_distribution() -> None:
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    with np.errstate(all="raise", under="ignore"):
        p = softmax(z)
        log_p = log_softmax(z)
    np.testing.assert_allclose(p, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(log_p[0], [0.0, -2e4, -1e4])
    assert np.isfinite(log_p).all()


@pytest.mark.parametrize("output", OUTPUTS)
def test_mse_at_extreme_logits_is_finite(output: str) -> None:
    z = np.array([[1e4, -1e4], [-1e4, 1e4]])
    with np.errstate(all="raise", under="ignore"):
        loss, dz, y_hat = Head(output, "mse").loss_and_dlogits(z, np.zeros((2, 2)))
    assert np.isfinite(loss) and np.isfinite(dz).all() and np.isfinite(y_hat).all()


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "loss"),
    [("softmax", "bce"), ("sigmoid", "cross_entropy"), ("tanh", "bce"), ("identity", "bce")],
)
def test_mismatched_output_and_loss_name_both(output: str, loss: str) -> None:
    with pytest.raises(ValueError, match="does not go with") as excinfo:
        Head(output, loss)
    assert repr(output) in str(excinfo.value) and repr(loss) in str(excinfo.value)


def test_unknown_loss_and_output_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; expected one of: mse, bce"):
        Head("identity", "hinge")
    with pytest.raises(ValueError, match=r"unknown output 'relu6'.*softmax"):
        Head("relu6", "mse")


@pytest.mark.parametrize(
    ("output", "loss", "y", "message"),
    [
        ("identity", "mse", np.zeros((4, 3)), r"targets have shape \(4, 3\); expected \(4, 2\)"),
        ("identity", "mse", np.zeros(4), r"shape \(4,\); expected \(4, 2\)"),
        ("identity", "mse", np.zeros((3, 2)), r"shape \(3, 2\)"),
        ("identity", "mse", np.array([[0, np.nan]] * 4), "NaN or infinity"),
        ("identity", "mse", np.array([["a", "b"]] * 4), "must be numeric"),
        ("sigmoid", "bce", np.full((4, 2), 1.5), r"bce targets must lie in \[0, 1\].*1\.5"),
        ("sigmoid", "bce", np.full((4, 2), -0.5), r"\[-0\.5, -0\.5\]"),
        ("softmax", "cross_entropy", np.array([0, 1, 0.5, 1]), "whole numbers"),
        ("softmax", "cross_entropy", np.array([0, 1, np.nan, 1]), "whole numbers"),
        ("softmax", "cross_entropy", np.array([0, 1, 2, 1]), r"must lie in \[0, 1\].*\[0, 2\]"),
        ("softmax", "cross_entropy", np.array([0, -1, 1, 1]), r"\[-1, 1\]"),
        ("softmax", "cross_entropy", np.full((4, 2), 0.3), "summing to 1"),
        ("softmax", "cross_entropy", np.zeros((4, 3)), r"\(4,\) class labels or \(4, 2\)"),
    ],
)
def test_bad_targets_are_rejected_with_the_reason(
    output: str, loss: str, y: Array, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Head(output, loss).targets(y, 4, 2, np.dtype(np.float64))


def test_accepted_target_forms() -> None:
    f64 = np.dtype(np.float64)
    labels = Head("softmax", "cross_entropy").targets(np.array([1.0, 0.0, 2.0]), 3, 3, f64)
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0, 2]
    column = Head("sigmoid", "bce").targets([1, 0, 1], 3, 1, f64)
    assert column.shape == (3, 1) and column.dtype == np.float64
    booleans = Head("sigmoid", "bce").targets(np.array([[True], [False]]), 2, 1, f64)
    assert booleans.tolist() == [[1.0], [0.0]]
    as_float32 = Head("identity", "mse").targets(np.zeros((2, 2)), 2, 2, np.dtype(np.float32))
    assert as_float32.dtype == np.float32
