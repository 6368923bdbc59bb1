"""The job spec: what is accepted, what is refused, and that the errors name the field."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from chainrule.data import DATASETS as REGISTRY_DATASETS
from chainrule.data import GENERATED, INFO, make_dataset
from chainrule.data.registry import DatasetInfo
from chainrule.nn import SGD, Adam
from chainrule.spec import DATASETS, UPLOADS, JobSpec, build_training, total_steps
from tests.support.examples import example_spec

EXAMPLE: dict[str, Any] = example_spec("xor")
DIGITS_MODEL = {"layers": [64, 32, 10], "output": "softmax", "loss": "cross_entropy"}


def changed(path: tuple[str, ...], value: object) -> dict[str, Any]:
    """EXAMPLE with the field at ``path`` set to ``value`` (removed for ``...``)."""
    spec = copy.deepcopy(EXAMPLE)
    target = spec
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


def refusal(spec: dict[str, Any]) -> tuple[tuple[str | int, ...], str]:
    """The location and message of the one error ``spec`` raises."""
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(spec)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return errors[0]["loc"], errors[0]["msg"]


def test_the_example_spec_builds_its_network_and_optimizer() -> None:
    spec = JobSpec.model_validate(EXAMPLE)

    net, optimizer = build_training(spec)

    assert net.layers == [2, 8, 1] and [f.name for f in net.hidden] == ["tanh"]
    assert (net.head.output, net.head.loss, net.activation_derivative) == ("sigmoid", "bce", True)
    assert optimizer == SGD(momentum=0.9)
    assert spec.training.optimizer.lr == 0.5
    assert spec.dataset.samples == 1000 and spec.dataset.split_sizes() == (800, 200)


def test_a_spec_survives_a_json_round_trip() -> None:
    spec = JobSpec.model_validate(EXAMPLE)
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec


def test_defaults_fill_what_is_left_out() -> None:
    spec = JobSpec.model_validate(
        {
            "name": "short",
            "dataset": {"name": "moons"},
            "model": {"layers": [2, 2], "output": "softmax", "loss": "cross_entropy"},
            "training": {"optimizer": {"name": "adam", "lr": 0.01}},
        }
    )
    assert spec.training.mode == "sync" and spec.training.workers == 1
    assert (spec.training.batch_size, spec.training.seed) == (32, 0)
    assert spec.training.steps is None and spec.training.total_steps(800) == 1000
    assert spec.dataset.holdout == 0.2 and spec.model.activation == "tanh"
    assert build_training(spec)[1] == Adam()


def test_digits_with_one_activation_per_hidden_layer() -> None:
    spec = JobSpec.model_validate(
        {
            **EXAMPLE,
            "dataset": {"name": "digits", "holdout": 0.25},
            "model": {**DIGITS_MODEL, "layers": [64, 32, 16, 10], "activation": ["relu", "gelu"]},
        }
    )
    net, _ = build_training(spec)
    assert [f.name for f in net.hidden] == ["relu", "gelu"]
    assert spec.dataset.samples == 1797 and spec.dataset.split_sizes() == (1348, 449)


def test_dropping_the_activation_derivative_reaches_the_network() -> None:
    spec = JobSpec.model_validate(changed(("model", "activation_derivative"), False))
    assert build_training(spec)[0].activation_derivative is False


@pytest.mark.parametrize(
    ("layers", "output", "loss"),
    [([2, 8, 1], "sigmoid", "bce"), ([2, 8, 2], "softmax", "cross_entropy"),
     ([2, 8, 2], "sigmoid", "bce"), ([2, 8, 1], "identity", "mse"), ([2, 1], "sigmoid", "mse")],
)  # fmt: skip
def test_two_class_sets_take_one_unit_or_one_per_class(
    layers: list[int], output: str, loss: str
) -> None:
    model = {"layers": layers, "output": output, "loss": loss}
    assert JobSpec.model_validate({**EXAMPLE, "model": model}).model.layers == layers


@pytest.mark.parametrize(
    ("path", "value", "loc", "message"),
    [
        (("training", "steps"), 0, ("training", "steps"),
         "steps must be between 1 and 1000000; got 0"),
        (("training", "steps"), 1_000_001, ("training", "steps"), "got 1000001"),
        (("training", "steps"), "100", ("training", "steps"), "valid integer"),
        (("training", "steps"), True, ("training", "steps"), "valid integer"),
        (("training", "workers"), 0, ("training", "workers"), "between 1 and 256; got 0"),
        (("training", "workers"), 257, ("training", "workers"), "between 1 and 256; got 257"),
        (("training", "batch_size"), 65537, ("training", "batch_size"), "between 1 and 65536"),
        (("training", "eval_every"), 0, ("training", "eval_every"), "between 1 and"),
        (("training", "seed"), -1, ("training", "seed"), "seed must be between 0 and"),
        (("training", "mode"), "ssp", ("training", "max_staleness"),
         "mode 'ssp' needs max_staleness (an integer >= 0)"),
        (("training", "max_staleness"), 2, ("training", "max_staleness"),
         "max_staleness applies to mode 'ssp' only; mode is 'sync'"),
        (("training", "epochs"), 3, ("training", "epochs"), "give steps or epochs, not both"),
        (("training", "mode"), "eventual", ("training", "mode"),
         "unknown mode 'eventual'; expected one of: sync, async, ssp"),
        (("training", "optimizer", "lr"), 0, ("training", "optimizer", "lr"),
         "lr must be a finite number > 0; got 0"),
        (("training", "optimizer", "lr"), math.inf, ("training", "optimizer", "lr"), "got inf"),
        (("training", "optimizer", "name"), "rmsprop", ("training", "optimizer", "name"),
         "unknown optimizer 'rmsprop'; expected one of: sgd, adam, adagrad"),
        (("training", "optimizer", "momentum"), 1.0, ("training", "optimizer", "momentum"),
         "momentum must lie in [0, 1); got 1.0"),
        (("training", "optimizer", "momentum"), "high", ("training", "optimizer", "momentum"),
         "momentum must be a number; got 'high'"),
        (("training", "optimizer", "beta1"), 0.9, ("training", "optimizer", "beta1"),
         "unknown sgd option 'beta1'; expected any of: name, lr, momentum, nesterov"),
        (("training", "optimizer", "nesterov"), 1, ("training", "optimizer", "nesterov"),
         "nesterov must be true or false; got 1"),
        (("model", "activation"), "relu6", ("model", "activation"),
         "unknown activation 'relu6'; expected one of: identity, sigmoid, tanh, relu"),
        (("model", "activation"), ["tanh", "relu"], ("model", "activation"),
         "activation lists 2 names; expected 1, one per hidden layer"),
        (("model", "output"), "softmax", ("model", "loss"),
         "output 'softmax' does not go with loss 'bce'; 'bce' expects output 'sigmoid'"),
        (("model", "output"), "tanhh", ("model", "output"), "unknown output 'tanhh'"),
        (("model", "loss"), "hinge", ("model", "loss"),
         "unknown loss 'hinge'; expected one of: mse, bce, cross_entropy"),
        (("model", "init"), "xavier", ("model", "init"), "unknown init 'xavier'"),
        (("model", "layers"), [2], ("model", "layers"), "layers lists 1 sizes; expected 2 to"),
        (("model", "layers"), [2, 0, 1], ("model", "layers", 1),
         "layers[1] must be between 1 and 8192 units; got 0"),
        (("model", "layers"), [2, 8192, 8192, 1], ("model", "layers"), "parameters; at most"),
        (("model", "layers"), [3, 8, 1], ("model", "layers", 0),
         "layers[0] is 3 but dataset 'xor' has 2 input features; set layers[0] to 2"),
        (("model", "layers"), [2, 8, 3], ("model", "layers", 2),
         "layers[2] is 3 output units but dataset 'xor' has 2 classes; with loss 'bce' "
         "expected 1 or 2"),
        (("dataset", "name"), "mnist", ("dataset", "name"),
         "unknown dataset 'mnist'; expected one of: xor, moons, spirals, circles, blobs, "
         "linear, digits, iris, breast_cancer"),
        (("dataset", "holdout"), 0.0, ("dataset", "holdout"),
         "holdout must lie in (0, 0.9]; got 0.0"),
        (("dataset", "holdout"), 0.95, ("dataset", "holdout"), "got 0.95"),
        (("dataset", "n_samples"), 5, ("dataset", "n_samples"),
         "n_samples must be between 10 and 1000000; got 5"),
        (("name",), "two words", ("name",), "name 'two words' must be 1 to 64 letters"),
        (("training", "stepz"), 5, ("training", "stepz"), "Extra inputs are not permitted"),
        (("model", "layer"), [2, 1], ("model", "layer"), "Extra inputs are not permitted"),
        (("training",), ..., ("training",), "Field required"),
    ],
)  # fmt: skip
def test_each_invalid_field_is_refused_by_name(
    path: tuple[str, ...], value: object, loc: tuple[str | int, ...], message: str
) -> None:
    got_loc, got_message = refusal(changed(path, value))
    assert got_loc == loc
    assert message in got_message


def test_softmax_needs_one_unit_per_class() -> None:
    model = {"layers": [2, 8, 1], "output": "softmax", "loss": "cross_entropy"}
    loc, message = refusal({**EXAMPLE, "model": model})
    assert loc == ("model", "layers", 2)
    assert "with loss 'cross_entropy' expected 2" in message


def test_digits_has_a_fixed_size_and_ten_classes() -> None:
    digits = {**EXAMPLE, "dataset": {"name": "digits", "n_samples": 500}, "model": DIGITS_MODEL}
    loc, message = refusal(digits)
    assert loc == ("dataset", "n_samples")
    assert "digits has a fixed 1797 samples, so leave n_samples out (got 500)" in message

    loc, message = refusal({**EXAMPLE, "dataset": {"name": "digits"}})  # the xor network
    assert loc == ("model", "layers", 0) and "has 64 input features" in message


def test_more_workers_than_training_rows_is_refused() -> None:
    spec = changed(("dataset", "n_samples"), 10)
    spec["training"]["workers"] = 9
    loc, message = refusal(spec)
    assert loc == ("training", "workers")
    assert "leaves only 8 training rows after the holdout; workers must be at most 8" in message


def test_nesterov_needs_momentum() -> None:
    ok = changed(("training", "optimizer"), {"name": "sgd", "lr": 0.1, "momentum": 0.5})
    ok["training"]["optimizer"]["nesterov"] = True
    assert JobSpec.model_validate(ok).training.optimizer.options["nesterov"] is True

    loc, message = refusal(changed(("training", "optimizer"), {"name": "sgd", "lr": 0.1,
                                                               "nesterov": True}))  # fmt: skip
    assert loc == ("training", "optimizer", "nesterov")
    assert message == "nesterov needs momentum > 0; got momentum 0"


def test_every_field_error_is_reported_at_once() -> None:
    spec = changed(("training", "steps"), 0)
    spec["model"]["activation"] = "relu6"
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(spec)
    locs = {e["loc"] for e in caught.value.errors()}
    assert locs == {("training", "steps"), ("model", "activation")}


@pytest.mark.parametrize("name", GENERATED)
def test_generated_sets_have_the_shape_the_spec_expects(name: str) -> None:
    X, y = make_dataset(name, 50, np.random.default_rng(0))
    info = DATASETS[name]
    assert X.shape == (50, info.features) and info.samples is None
    if info.classes is None:
        assert name == "linear" and y.dtype == np.float32
    else:
        assert set(np.unique(y)) <= set(range(info.classes)) and y.dtype == np.int64


@pytest.mark.parametrize(
    ("name", "loader"),
    [("digits", "load_digits"), ("iris", "load_iris"), ("breast_cancer", "load_breast_cancer")],
)
def test_bundled_sets_match_scikit_learn(name: str, loader: str) -> None:
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn: the dev extra")

    bundled = getattr(datasets, loader)()
    info = DATASETS[name]
    assert info.samples == bundled.data.shape[0]
    assert info.features == bundled.data.shape[1]
    assert info.classes == len(np.unique(bundled.target))


def test_the_spec_and_the_registry_agree_on_every_dataset() -> None:
    assert tuple(DATASETS) == REGISTRY_DATASETS
    for name, info in DATASETS.items():
        assert (info.features, info.classes) == (INFO[name].features, INFO[name].classes)


# -- datasets: name or uploaded id, regression ---------------------------------------------

LINEAR_MODEL = {"layers": [4, 8, 1], "output": "identity", "loss": "mse"}
UPLOADED = DatasetInfo(features=3, classes=4, samples=100)


def upload_spec(**dataset: object) -> dict[str, Any]:
    model = {"layers": [3, 8, 4], "output": "softmax", "loss": "cross_entropy"}
    return {**EXAMPLE, "dataset": {"id": "3f9a2c71d04e8b15", **dataset}, "model": model}


def with_upload(spec: dict[str, Any], info: DatasetInfo = UPLOADED) -> JobSpec:
    return JobSpec.model_validate(spec, context={UPLOADS: {"3f9a2c71d04e8b15": info}})


def test_linear_is_a_regression_set_for_an_identity_unit_under_mse() -> None:
    spec = JobSpec.model_validate({**EXAMPLE, "dataset": {"name": "linear"}, "model": LINEAR_MODEL})
    assert spec.dataset.info.task == "regression"

    loc, message = refusal({**EXAMPLE, "dataset": {"name": "linear"},
                            "model": {**LINEAR_MODEL, "output": "sigmoid"}})  # fmt: skip
    assert loc == ("model", "output")
    assert message == (
        "dataset 'linear' is a regression set (real-valued targets), so the model needs loss "
        "'mse', output 'identity' and one output unit; got loss 'mse' with output 'sigmoid'"
    )
    loc, message = refusal({**EXAMPLE, "dataset": {"name": "linear"},
                            "model": {"layers": [4, 8, 1], "output": "sigmoid", "loss": "bce"}})  # fmt: skip
    assert loc == ("model", "loss") and "got loss 'bce' with output 'sigmoid'" in message
    loc, message = refusal({**EXAMPLE, "dataset": {"name": "linear"},
                            "model": {**LINEAR_MODEL, "layers": [4, 8, 2]}})  # fmt: skip
    assert loc == ("model", "layers", 2)
    assert "layers[2] is 2 output units but dataset 'linear' is a regression set" in message


@pytest.mark.parametrize(
    ("dataset", "loc", "message"),
    [
        ({}, ("dataset",), "dataset needs a name (a built-in set: xor, moons"),
        ({"name": "xor", "id": "abc"}, ("dataset",),
         "dataset takes a name or an id, not both; got name 'xor' and id 'abc'"),
        ({"id": "../etc"}, ("dataset", "id"),
         "dataset id '../etc' must be 1 to 64 letters, digits, '_' or '-'"),
        ({"id": "abc", "n_samples": 100}, ("dataset", "n_samples"),
         "an uploaded dataset has the rows it was uploaded with, so leave n_samples out"),
        ({"name": "xor", "standardize": "yes"}, ("dataset", "standardize"), "valid boolean"),
    ],
)  # fmt: skip
def test_a_dataset_is_a_name_or_an_upload_id(
    dataset: dict[str, Any], loc: tuple[str, ...], message: str
) -> None:
    got_loc, got_message = refusal({**EXAMPLE, "dataset": dataset})
    assert got_loc == loc and message in got_message


def test_an_upload_validated_without_its_shape_skips_the_shape_checks() -> None:
    spec = JobSpec.model_validate(upload_spec())  # as a job record is read back

    assert spec.dataset.id == "3f9a2c71d04e8b15" and spec.dataset.known_info is None
    assert total_steps(spec) == 2000  # steps need no row count
    with pytest.raises(ValueError, match="shape of uploaded dataset '3f9a2c71d04e8b15'"):
        spec.dataset.split_sizes()


def test_an_upload_validated_with_its_shape_is_checked_like_a_builtin_set() -> None:
    spec = with_upload(upload_spec(holdout=0.25, standardize=True))
    assert spec.dataset.info == UPLOADED and spec.dataset.split_sizes() == (75, 25)
    assert spec.dataset.standardize is True

    with pytest.raises(ValidationError) as caught:
        with_upload({**upload_spec(), "model": {**upload_spec()["model"], "layers": [2, 8, 4]}})
    error = caught.value.errors()[0]
    assert error["loc"] == ("model", "layers", 0)
    assert error["msg"] == (
        "layers[0] is 2 but uploaded dataset '3f9a2c71d04e8b15' has 3 input features; "
        "set layers[0] to 3"
    )
    with pytest.raises(ValidationError) as caught:
        with_upload({**upload_spec(), "model": {**upload_spec()["model"], "layers": [3, 8, 5]}})
    error = caught.value.errors()[0]
    assert error["loc"] == ("model", "layers", 2)
    assert "uploaded dataset '3f9a2c71d04e8b15' has 4 classes" in error["msg"]


def test_an_upload_missing_from_the_known_uploads_is_refused_at_its_id() -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(upload_spec(), context={UPLOADS: {}})
    error = caught.value.errors()[0]
    assert error["loc"] == ("dataset", "id")
    assert error["msg"].startswith("no uploaded dataset '3f9a2c71d04e8b15'; upload one with")


def test_epochs_over_an_upload_count_its_training_rows() -> None:
    spec = upload_spec()
    spec["training"] = {**spec["training"], "steps": None, "epochs": 2, "workers": 2,
                        "batch_size": 10}  # fmt: skip
    bound = with_upload(spec)  # 100 rows, 80 for training: 2 epochs of 20 rows per step
    assert total_steps(bound) == 8

    unbound = JobSpec.model_validate(spec)
    assert total_steps(unbound, train_rows=80) == 8
    with pytest.raises(ValueError, match="not known to this spec"):
        total_steps(unbound)


def test_epochs_that_imply_more_steps_than_the_cap_are_refused_naming_the_estimate() -> None:
    spec = upload_spec()  # 100 rows, 80 for training
    spec["training"] = {**spec["training"], "steps": None, "epochs": 100_000, "workers": 2,
                        "batch_size": 4}  # fmt: skip
    assert total_steps(with_upload(spec)) == 1_000_000  # 8 rows per step: the cap exactly
    spec["training"]["batch_size"] = 3  # 6 rows per step
    with pytest.raises(ValidationError) as caught:
        with_upload(spec)
    error = caught.value.errors()[0]
    assert error["loc"] == ("training", "epochs") and error["type"] == "too_many_steps"
    assert error["msg"] == (
        "epochs=100000 over the 80 training rows of uploaded dataset '3f9a2c71d04e8b15', "
        "at 2 × batch_size 3 rows per step, is 1333334 steps; the limit is 1000000 steps "
        "(as for steps)"
    )


def test_a_regression_upload_needs_the_regression_model() -> None:
    regression = DatasetInfo(features=3, classes=None, samples=50)
    model = {"layers": [3, 8, 1], "output": "identity", "loss": "mse"}
    assert with_upload({**upload_spec(), "model": model}, regression).model.layers == [3, 8, 1]

    with pytest.raises(ValidationError) as caught:
        with_upload(upload_spec(), regression)
    error = caught.value.errors()[0]
    assert error["loc"] == ("model", "loss")
    assert "uploaded dataset '3f9a2c71d04e8b15' is a regression set" in error["msg"]
