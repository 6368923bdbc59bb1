"""Model download and prediction through the real gateway process, on θ written the way
the scheduler (final model) and the parameter servers (checkpoints) write it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from chainrule.nn import Params
from chainrule.spec import JobSpec, build_mlp
from chainrule.store.checkpoints import Checkpoint, CheckpointStore
from tests.support.api import Api, npz, running_gateway, save_model, submit
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(60)

IRIS = example_spec("xor") | {
    "name": "iris-softmax",
    "dataset": {"name": "iris", "holdout": 0.2},
    "model": {"layers": [4, 8, 3], "activation": "relu", "output": "softmax",
              "loss": "cross_entropy"},
}  # fmt: skip
LINEAR = example_spec("xor") | {
    "name": "linear-regression",
    "dataset": {"name": "linear"},
    "model": {"layers": [4, 6, 1], "activation": "tanh", "output": "identity", "loss": "mse"},
}


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_gateway(redis_url, tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def trained(api: Api, spec: dict[str, Any], seed: int = 0) -> tuple[str, Params]:
    """An ended job with a final θ (random, as good as any for the arithmetic)."""
    job_id = submit(api, spec)["id"]
    api.store.set_status(job_id, "RUNNING")
    params = build_mlp(JobSpec.model_validate(spec).model).init(np.random.default_rng(seed))
    save_model(api, job_id, params)
    api.store.set_status(job_id, "SUCCEEDED")
    return job_id, params


def set_preprocess(api: Api, job_id: str, **arrays: Any) -> None:
    api.blobs.set(f"{api.prefix}:job:{job_id}:preprocess", npz(arrays))


def test_predictions_match_the_network_in_process(api: Api) -> None:
    job_id, params = trained(api, example_spec("xor"))
    rows = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [-3.5, 2.25]]

    reply = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": rows})

    assert reply.status_code == 200, reply.text
    body = reply.json()
    net = build_mlp(JobSpec.model_validate(example_spec("xor")).model)
    p = net.predict(params, np.array(rows, dtype=np.float32))[:, 0].astype(np.float64)
    assert body["job_id"] == job_id and body["version"] is None and body["classes"] is None
    assert body["predictions"] == [int(v > 0.5) for v in p]
    np.testing.assert_allclose(
        np.array(body["probabilities"]), np.column_stack([1 - p, p]), rtol=1e-6
    )


def test_predictions_apply_the_jobs_standardization_and_class_names(api: Api) -> None:
    job_id, params = trained(api, IRIS)
    mean, std = np.array([5.8, 3.0, 3.7, 1.2]), np.array([0.8, 0.4, 1.7, 0.0])  # one constant
    classes = np.array(["setosa", "versicolor", "virginica"])
    set_preprocess(api, job_id, feature_mean=mean, feature_std=std, classes=classes)
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])

    body = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": rows.tolist()}).json()

    net = build_mlp(JobSpec.model_validate(IRIS).model)
    x = (rows - mean) / np.where(std == 0, 1.0, std)
    expected = net.predict(params, x.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(np.array(body["probabilities"]), expected, rtol=1e-5)
    assert body["predictions"] == expected.argmax(axis=1).tolist()
    assert body["classes"] == classes.tolist()
    assert np.allclose(np.sum(body["probabilities"], axis=1), 1.0)


def test_a_regression_job_predicts_values(api: Api) -> None:
    job_id, params = trained(api, LINEAR)
    rows = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 2.0, 0.0]]

    body = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": rows}).json()

    net = build_mlp(JobSpec.model_validate(LINEAR).model)
    expected = net.predict(params, np.array(rows, dtype=np.float32))[:, 0]
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-5)
    assert body["probabilities"] is None and body["classes"] is None


def test_a_running_job_predicts_with_its_checkpoints_merged_over_shards(api: Api) -> None:
    job_id = submit(api)["id"]
    api.store.set_status(job_id, "RUNNING")
    params = build_mlp(JobSpec.model_validate(example_spec()).model).init(np.random.default_rng(3))
    names = sorted(params)
    for shard, part in (("0", names[::2]), ("1", names[1::2])):
        checkpoint = Checkpoint({n: params[n] for n in part}, {}, version=7, optimizer="sgd")
        CheckpointStore(api.blobs, api.prefix, shard).save(job_id, checkpoint)

    predicted = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": [[1.0, 0.0]]})
    download = api.http.get(f"/api/v1/jobs/{job_id}/model")

    assert predicted.status_code == 200 and predicted.json()["version"] == 7
    assert download.headers["x-model-version"] == "7"
    with np.load(io.BytesIO(download.content)) as z:
        for name in names:
            np.testing.assert_array_equal(z[name], params[name])

    # shard 1 checkpointed 8 while shard 0 did not (it failed, or is writing): the newest
    # version both hold is still 7, which each shard keeps as its latest or its previous
    ahead = Checkpoint({n: params[n] + 1 for n in names[1::2]}, {}, version=8, optimizer="sgd")
    CheckpointStore(api.blobs, api.prefix, "1").save(job_id, ahead)
    reply = api.http.get(f"/api/v1/jobs/{job_id}/model")
    assert reply.status_code == 200 and reply.headers["x-model-version"] == "7"
    with np.load(io.BytesIO(reply.content)) as z:
        for name in names:
            np.testing.assert_array_equal(z[name], params[name])

    # two checkpoints further on shard 1: the shards share no version, so try again
    ahead.version = 9
    CheckpointStore(api.blobs, api.prefix, "1").save(job_id, ahead)
    reply = api.http.get(f"/api/v1/jobs/{job_id}/model")
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert "share no version" in reply.json()["detail"]


def test_the_model_downloads_as_an_npz_with_the_spec_and_preprocessing(api: Api) -> None:
    job_id, params = trained(api, IRIS)
    mean, std = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 0.5, 0.5, 0.5])
    set_preprocess(api, job_id, feature_mean=mean, feature_std=std,
                   classes=np.array(["a", "b", "c"]))  # fmt: skip

    reply = api.http.get(f"/api/v1/jobs/{job_id}/model")

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert (
        reply.headers["content-disposition"] == f'attachment; filename="iris-softmax-{job_id}.npz"'
    )
    assert "x-model-version" not in reply.headers
    with np.load(io.BytesIO(reply.content), allow_pickle=False) as z:
        assert set(z.files) == {*params, "spec", "feature_mean", "feature_std", "classes"}
        for name, array in params.items():
            np.testing.assert_array_equal(z[name], array)
        assert z["spec"].shape == () and z["spec"].dtype.kind == "U"
        spec = JobSpec.model_validate(json.loads(str(z["spec"])))
        np.testing.assert_array_equal(z["feature_mean"], mean)
        assert z["classes"].tolist() == ["a", "b", "c"]
    assert spec == JobSpec.model_validate(IRIS)


def test_no_model_yet_is_404_with_a_message(api: Api) -> None:
    job_id = submit(api)["id"]

    download = api.http.get(f"/api/v1/jobs/{job_id}/model")
    predicted = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": [[0.0, 1.0]]})

    for reply in (download, predicted):
        assert reply.status_code == 404
        assert reply.json()["detail"].startswith(f"job {job_id} has no model yet")


@pytest.mark.parametrize(
    ("body", "loc", "says"),
    [
        ({"rows": [[0.0, 1.0], [1.0, 2.0, 3.0]]}, ["body", "rows", 1], "row 1 has 3 values; the model takes 2"),
        ({"rows": []}, ["body", "rows"], "at least 1 item"),
        ({"rows": [[0.0, "x"]]}, ["body", "rows", 0, 1], "valid number"),
        ({"rows": [[0.0, 1.0]] * 10_001}, ["body", "rows"], "at most 10000 items"),
        ({"rows": [[0.0, 1.0]], "extra": 1}, ["body", "extra"], "Extra inputs"),
        ({}, ["body", "rows"], "Field required"),
    ],
)  # fmt: skip
def test_bad_rows_are_422_naming_row_and_column(
    api: Api, body: dict[str, Any], loc: list[Any], says: str
) -> None:
    job_id, _ = trained(api, example_spec("xor"))
    reply = api.http.post(f"/api/v1/jobs/{job_id}/predict", json=body)
    assert reply.status_code == 422
    error = reply.json()["detail"][0]
    assert error["loc"] == loc and says in error["msg"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_422(api: Api, value: str) -> None:
    job_id, _ = trained(api, example_spec("xor"))
    content = f'{{"rows": [[0.0, 1.0], [{value}, 0.0]]}}'
    reply = api.http.post(
        f"/api/v1/jobs/{job_id}/predict",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "rows", 1, 0]


def test_a_value_beyond_float32_is_422_naming_row_and_column(api: Api) -> None:
    job_id, _ = trained(api, example_spec("xor"))
    rows = [[0.0, 1.0], [1.0, 2.5e176]]

    reply = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": rows})

    assert reply.status_code == 422
    error = reply.json()["detail"][0]
    assert error["loc"] == ["body", "rows", 1, 1] and "beyond the range of float32" in error["msg"]


def test_a_diverged_model_is_409(api: Api) -> None:
    job_id, params = trained(api, example_spec("xor"))
    save_model(api, job_id, {**params, "dense1.W": np.full_like(params["dense1.W"], np.nan)})

    reply = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": [[0.0, 1.0]]})

    assert reply.status_code == 409 and "diverged" in reply.json()["detail"]
