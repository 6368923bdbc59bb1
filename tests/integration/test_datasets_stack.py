"""Uploaded and new built-in datasets trained by the whole stack (``chainrule up``'s
launcher) against a real Redis: a CSV upload trains, and regression jobs report MSE and R²."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from chainrule.cli.stack import LocalStack
from tests.support.examples import example_spec
from tests.support.jobs import run_job
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(300)

SGD_005 = {"name": "sgd", "lr": 0.05, "momentum": 0.9}


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("stack")) as running:
        yield running


def upload_csv(stack: LocalStack, text: str, label: str, **form: str) -> dict[str, Any]:
    reply = httpx.post(
        f"{stack.gateway_url}/api/v1/datasets",
        files={"file": ("upload.csv", text.encode(), "text/csv")},
        data={"label": label, **form},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def job(dataset: dict[str, Any], model: dict[str, Any], **training: Any) -> dict[str, Any]:
    spec = example_spec("xor")
    spec["name"] = f"on-{dataset.get('name') or 'upload'}"
    spec["dataset"] = dataset
    spec["model"] = model
    spec["training"] = {
        **spec["training"],
        "steps": 300,
        "eval_every": 50,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        **training,
    }
    return spec


def species_csv(rows: int = 300, seed: int = 0) -> str:
    """Three classes named by text, in raw units far from mean 0 / std 1: a height in cm,
    a weight in grams, a count and a ratio; the class shifts each by about two of its
    standard deviations."""
    rng = np.random.default_rng(seed)
    names = ("alpha", "beta", "gamma")
    centres = np.array([[160, 52_000, 3, 0.2], [175, 68_000, 6, 0.5], [190, 84_000, 9, 0.8]])
    spread = np.array([5, 5_000, 1, 0.1])
    lines = ["height_cm,weight_g,count,ratio,species"]
    for k in rng.integers(0, 3, size=rows):
        x = centres[k] + spread * rng.normal(size=4)
        lines.append(",".join(f"{v:.4f}" for v in x) + f",{names[k]}")
    return "\n".join(lines) + "\n"


def test_a_csv_upload_trains(stack: LocalStack) -> None:
    dataset = upload_csv(stack, species_csv(), "species")
    assert dataset["classes"] == ["alpha", "beta", "gamma"] and dataset["features"] == 4

    model = {"layers": [4, 16, 3], "activation": "tanh", "output": "softmax",
             "loss": "cross_entropy"}  # fmt: skip
    result = run_job(stack.gateway_url, job({"id": dataset["id"], "standardize": True}, model))

    assert result["status"] == "SUCCEEDED", result
    assert result["latest_metrics"]["eval_accuracy"] >= 0.9, result["latest_metrics"]


def test_a_regression_csv_upload_reports_mse_and_r2(stack: LocalStack) -> None:
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 10, size=(400, 2))
    y = 0.3 * X[:, 0] - 0.2 * X[:, 1] + 1.0 + rng.normal(0, 0.05, size=400)
    text = "a,b,target\n" + "".join(
        f"{a:.4f},{b:.4f},{t:.5f}\n" for (a, b), t in zip(X, y, strict=True)
    )
    dataset = upload_csv(stack, text, "target", task="regression")
    assert dataset["task"] == "regression" and dataset["classes"] is None

    model = {"layers": [2, 16, 1], "activation": "tanh", "output": "identity", "loss": "mse"}
    result = run_job(
        stack.gateway_url,
        job({"id": dataset["id"], "standardize": True}, model, steps=400, optimizer=SGD_005),
    )

    assert result["status"] == "SUCCEEDED", result
    metrics = result["latest_metrics"]
    assert metrics["eval_r2"] >= 0.95 and metrics["eval_mse"] < 0.1, metrics
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_mse"] / 2, rel=1e-3)


def test_the_builtin_linear_set_trains_as_regression(stack: LocalStack) -> None:
    model = {"layers": [4, 1], "output": "identity", "loss": "mse"}
    result = run_job(
        stack.gateway_url,
        job({"name": "linear", "n_samples": 500}, model, steps=200, optimizer=SGD_005),
    )
    assert result["status"] == "SUCCEEDED", result
    assert result["latest_metrics"]["eval_r2"] >= 0.99, result["latest_metrics"]


@pytest.mark.parametrize(
    ("dataset", "layers"),
    [({"name": "iris", "standardize": True}, [4, 16, 3]),
     ({"name": "breast_cancer", "standardize": True}, [30, 16, 2]),
     ({"name": "blobs"}, [2, 16, 3]),
     ({"name": "circles"}, [2, 16, 2])],
)  # fmt: skip
def test_new_builtin_classification_sets_train(
    stack: LocalStack, dataset: dict[str, Any], layers: list[int]
) -> None:
    model = {"layers": layers, "activation": "tanh", "output": "softmax",
             "loss": "cross_entropy"}  # fmt: skip
    result = run_job(stack.gateway_url, job(dataset, model))
    assert result["status"] == "SUCCEEDED", result
    assert result["latest_metrics"]["eval_accuracy"] >= 0.9, result["latest_metrics"]
