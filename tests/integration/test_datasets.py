"""Uploaded datasets: the store against the real Redis, and the real gateway process
taking uploads over loopback HTTP (upload, list, read, delete, refusals, jobs that use
them)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from chainrule.data import ParsedDataset, parse_csv
from chainrule.store import DatasetMeta, DatasetNotFoundError, DatasetStore, binary_client
from tests.support.api import running_gateway
from tests.support.examples import example_spec
from tests.support.real_redis import delete_prefixed

pytestmark = pytest.mark.timeout(60)

MAX_UPLOAD = 64 * 1024  # the gateway below refuses larger files
IRIS_LIKE = b"sepal,petal,species\n" + b"".join(
    f"{5 + i % 3 * 0.5},{1 + i % 3},{('setosa', 'versicolor', 'virginica')[i % 3]}\n".encode()
    for i in range(60)
)


def meta(dataset_id: str, created_at: float) -> DatasetMeta:
    return DatasetMeta(
        id=dataset_id, name="iris.csv", format="csv", task="classification", rows=60,
        features=2, feature_names=["sepal", "petal"], label="species",
        classes=["setosa", "versicolor", "virginica"], created_at=created_at, size=1234,
    )  # fmt: skip


# -- the store ----------------------------------------------------------------------------


@pytest.fixture
def dataset_store(redis_url: str, key_prefix: str) -> Iterator[DatasetStore]:
    client = binary_client(redis_url)
    try:
        yield DatasetStore(client, prefix=key_prefix)
    finally:
        delete_prefixed(client, key_prefix)
        client.close()


def test_the_store_keeps_metadata_and_bytes_and_lists_newest_first(
    dataset_store: DatasetStore,
) -> None:
    data = parse_csv(IRIS_LIKE, "species").to_bytes()
    dataset_store.put(meta("aaaa", 100.0), data)
    dataset_store.put(meta("bbbb", 200.0), b"\x00\xffbinary")

    assert dataset_store.get("aaaa") == meta("aaaa", 100.0)
    assert dataset_store.data("aaaa") == data
    assert ParsedDataset.from_bytes(dataset_store.data("aaaa")).rows == 60
    assert dataset_store.data("bbbb") == b"\x00\xffbinary"
    assert [m.id for m in dataset_store.list()] == ["bbbb", "aaaa"]
    assert [m.id for m in dataset_store.list(limit=1, offset=1)] == ["aaaa"]
    assert dataset_store.count() == 2


def test_deleting_removes_every_key_of_the_dataset(
    dataset_store: DatasetStore, redis_url: str, key_prefix: str
) -> None:
    dataset_store.put(meta("aaaa", 100.0), b"data")
    client = redis.Redis.from_url(redis_url)

    assert dataset_store.delete("aaaa") is True
    assert dataset_store.delete("aaaa") is False
    assert dataset_store.get("aaaa") is None and dataset_store.list() == []
    assert list(client.scan_iter(match=f"{key_prefix}:*")) == []
    with pytest.raises(DatasetNotFoundError, match="no uploaded dataset 'aaaa'"):
        dataset_store.data("aaaa")
    client.close()


def test_ids_that_could_reach_other_keys_find_nothing(dataset_store: DatasetStore) -> None:
    assert dataset_store.get("a:b") is None and dataset_store.delete("*") is False
    with pytest.raises(ValueError, match="dataset id 'a:b' must be"):
        dataset_store.put(meta("a:b", 1.0), b"")


# -- the gateway --------------------------------------------------------------------------


@dataclass
class Gateway:
    http: httpx.Client
    client: redis.Redis
    prefix: str

    def dataset_keys(self) -> set[str]:
        found = self.client.scan_iter(match=f"{self.prefix}:dataset*")
        return {k.decode() if isinstance(k, bytes) else str(k) for k in found}

    def job_keys(self) -> set[str]:
        return {str(k) for k in self.client.scan_iter(match=f"{self.prefix}:job*")}


@pytest.fixture(scope="module")
def gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    log_dir = tmp_path_factory.mktemp("gateway")
    with running_gateway(redis_url, log_dir, max_upload_bytes=str(MAX_UPLOAD)) as api:
        yield Gateway(api.http, api.client, api.prefix)


def upload(
    gateway: Gateway, data: bytes, filename: str = "iris.csv", **form: str
) -> httpx.Response:
    fields = {"label": "species", **form}
    return gateway.http.post(
        "/api/v1/datasets", files={"file": (filename, data, "text/csv")}, data=fields
    )


def uploaded(gateway: Gateway, data: bytes = IRIS_LIKE, **form: str) -> dict[str, Any]:
    reply = upload(gateway, data, **form)
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_the_dataset_routes_are_documented(gateway: Gateway) -> None:
    paths = gateway.http.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/datasets"]) == {"get", "post"}
    assert set(paths["/api/v1/datasets/{dataset_id}"]) == {"get", "delete"}


def test_an_upload_is_listed_read_and_deleted(gateway: Gateway) -> None:
    before = time.time()
    reply = upload(gateway, IRIS_LIKE)

    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert reply.headers["location"].endswith(f"/api/v1/datasets/{created['id']}")
    assert {k: created[k] for k in ("name", "format", "task", "rows", "features", "label")} == {
        "name": "iris.csv", "format": "csv", "task": "classification", "rows": 60,
        "features": 2, "label": "species",
    }  # fmt: skip
    assert created["classes"] == ["setosa", "versicolor", "virginica"]
    assert created["feature_names"] == ["sepal", "petal"] and created["size"] == len(IRIS_LIKE)
    assert before - 1 <= datetime.fromisoformat(created["created_at"]).timestamp() <= time.time()
    dataset_id = created["id"]
    assert {
        f"{gateway.prefix}:dataset:{dataset_id}",
        f"{gateway.prefix}:dataset:{dataset_id}:data",
        f"{gateway.prefix}:datasets",
    } <= gateway.dataset_keys()

    listed = gateway.http.get("/api/v1/datasets").json()
    assert listed["data"][0] == created and listed["count"] >= 1
    assert gateway.http.get(f"/api/v1/datasets/{dataset_id}").json() == created

    assert gateway.http.delete(f"/api/v1/datasets/{dataset_id}").status_code == 204
    gone = gateway.http.get(f"/api/v1/datasets/{dataset_id}")
    assert gone.status_code == 404 and gone.json() == {"detail": f"no dataset '{dataset_id}'"}
    assert gateway.http.delete(f"/api/v1/datasets/{dataset_id}").status_code == 404
    assert not {k for k in gateway.dataset_keys() if dataset_id in k}


@pytest.mark.parametrize(
    "query", ["offset=6479275279185344076972032", "offset=-1", "limit=0", "limit=501"]
)
def test_paging_out_of_range_is_a_422_naming_the_range(gateway: Gateway, query: str) -> None:
    reply = gateway.http.get(f"/api/v1/datasets?{query}")
    assert reply.status_code == 422, reply.text
    name = query.split("=")[0]
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["query", name] and "ctx" in error  # the bound it broke


def test_a_regression_csv_and_an_npz_archive_are_accepted(gateway: Gateway) -> None:
    regression = uploaded(gateway, b"x1,x2,price\n1,2,3.5\n2,3,4.25\n3,1,0.5\n",
                          label="price", task="regression", name="prices")  # fmt: skip
    assert (regression["task"], regression["classes"], regression["name"]) == (
        "regression", None, "prices",
    )  # fmt: skip

    buffer = io.BytesIO()
    np.savez(buffer, X=np.arange(12.0).reshape(6, 2), y=np.array([0, 1, 2, 0, 1, 2]))
    reply = gateway.http.post(
        "/api/v1/datasets", files={"file": ("points.npz", buffer.getvalue(), "application/zip")}
    )
    assert reply.status_code == 201, reply.text
    archive = reply.json()
    assert (archive["format"], archive["rows"], archive["features"], archive["label"]) == (
        "npz", 6, 2, "y",
    )  # fmt: skip
    assert archive["classes"] == ["0", "1", "2"] and archive["feature_names"] == ["x0", "x1"]


@pytest.mark.parametrize(
    ("data", "form", "status", "row", "column", "says"),
    [
        (b"", {}, 422, None, None, "the file is empty"),
        (b"1,2,3\n4,5,6\n", {}, 422, 1, None, "row 1 holds numbers (1, 2, 3), not column names"),
        (b"a,b,kind\n1,2,x\n3,4,y\n", {}, 422, 1, "species",
         "no column named 'species' to use as the label; the columns are: a, b, kind"),
        (b"a,b,species\n1,2,x\n3,4\n", {}, 422, 3, "species",
         "row 3 has 2 cells but the header has 3 columns"),
        (b"a,b,species\n1,2,x\n3,four,y\n", {}, 422, 3, "b",
         "row 3, column 'b': 'four' is not a number"),
        (b"a,b,species\n1,nan,x\n3,4,y\n", {}, 422, 2, "b",
         "row 2, column 'b' is 'nan': NaN and infinity are not allowed"),
        (b"a,b,species\n1,2,x\n3,inf,y\n", {}, 422, 3, "b", "row 3, column 'b' is 'inf'"),
        (b"a,b,species\n1,,x\n3,4,y\n", {}, 422, 2, "b", "row 2, column 'b' is empty"),
        (b"a,species\n1,2\n2,3\n", {"task": "ranking"}, 422, None, None,
         "unknown task 'ranking'; expected one of: classification, regression"),
        (b"a,species\n1,2\n2,3\n", {"label": ""}, 422, None, None,
         "a CSV upload needs the form field label, the name of the column that holds the "
         "targets; the file's columns are: a, species"),
        (b"a,species\n" + b"1,x\n" * (MAX_UPLOAD // 4), {}, 413, None, None,
         f"the file has {10 + 4 * (MAX_UPLOAD // 4)} bytes; the limit is {MAX_UPLOAD} bytes "
         "(CHAINRULE_MAX_UPLOAD_BYTES)"),
    ],
)  # fmt: skip
def test_each_malformed_csv_gets_a_4xx_naming_where_and_stores_nothing(
    gateway: Gateway,
    data: bytes,
    form: dict[str, str],
    status: int,
    row: int | None,
    column: str | None,
    says: str,
) -> None:
    keys_before = gateway.dataset_keys()

    reply = upload(gateway, data, **form)

    assert reply.status_code == status, reply.text
    body = reply.json()
    assert says in body["detail"]
    assert (body["row"], body["column"]) == (row, column)
    assert gateway.dataset_keys() == keys_before


def test_a_body_far_over_the_limit_is_refused_before_it_is_read(gateway: Gateway) -> None:
    keys_before = gateway.dataset_keys()
    reply = upload(gateway, b"a,species\n" + b"1,x\n" * MAX_UPLOAD)
    assert reply.status_code == 413
    assert reply.json()["detail"] == (
        f"the upload is larger than the limit of {MAX_UPLOAD} bytes (CHAINRULE_MAX_UPLOAD_BYTES)"
    )
    assert gateway.dataset_keys() == keys_before


def test_a_malformed_npz_gets_422_and_stores_nothing(gateway: Gateway) -> None:
    keys_before = gateway.dataset_keys()
    buffer = io.BytesIO()
    np.savez(buffer, X=np.array([[1.0, np.inf], [2.0, 3.0]]), y=np.array([0, 1]))

    reply = gateway.http.post(
        "/api/v1/datasets", files={"file": ("bad.npz", buffer.getvalue(), "application/zip")}
    )

    assert reply.status_code == 422
    assert reply.json() == {
        "detail": "X[0, 1] is inf: NaN and infinity are not allowed; every feature must be a "
        "finite number",
        "row": 0,
        "column": "x1",
    }
    assert gateway.dataset_keys() == keys_before


def job_on(dataset: dict[str, Any], layers: list[int], **training: Any) -> dict[str, Any]:
    """The example job with ``dataset`` in place of its own, and a softmax network."""
    spec = example_spec()
    spec["dataset"] = dataset
    spec["model"] = {"layers": layers, "output": "softmax", "loss": "cross_entropy"}
    spec["training"] = {**spec["training"], **training}
    return spec


def test_a_job_on_an_uploaded_dataset_is_checked_against_its_shape(gateway: Gateway) -> None:
    dataset_id = uploaded(gateway)["id"]  # 60 rows, 2 features, 3 classes
    spec = job_on({"id": dataset_id, "holdout": 0.25, "standardize": True}, [2, 8, 3],
                  steps=None, epochs=3, workers=1, batch_size=9)  # fmt: skip

    reply = gateway.http.post("/api/v1/jobs", json=spec)

    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["spec"]["dataset"]["id"] == dataset_id and job["spec"]["dataset"]["standardize"]
    assert job["total_steps"] == 15  # 3 epochs of 45 training rows, 9 rows per step


@pytest.mark.parametrize(
    ("layers", "loc", "says"),
    [
        ([4, 8, 3], ["body", "model", "layers", 0],
         "layers[0] is 4 but uploaded dataset '{id}' has 2 input features; set layers[0] to 2"),
        ([2, 8, 2], ["body", "model", "layers", 2],
         "layers[2] is 2 output units but uploaded dataset '{id}' has 3 classes; "
         "with loss 'cross_entropy' expected 3"),
    ],
)  # fmt: skip
def test_a_job_that_does_not_fit_its_upload_gets_422_and_is_not_stored(
    gateway: Gateway, layers: list[int], loc: list[str | int], says: str
) -> None:
    dataset_id = uploaded(gateway)["id"]
    spec = job_on({"id": dataset_id}, layers)
    jobs_before = gateway.job_keys()

    reply = gateway.http.post("/api/v1/jobs", json=spec)

    assert reply.status_code == 422, reply.text
    errors = reply.json()["detail"]
    assert [e["loc"] for e in errors] == [loc]
    assert errors[0]["msg"] == says.format(id=dataset_id)
    assert gateway.job_keys() == jobs_before


def test_a_job_on_an_unknown_upload_gets_422_at_the_id(gateway: Gateway) -> None:
    spec = job_on({"id": "0123456789abcdef"}, [2, 8, 3])

    reply = gateway.http.post("/api/v1/jobs", json=spec)

    assert reply.status_code == 422
    errors = reply.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "dataset", "id"]]
    assert errors[0]["msg"].startswith("no uploaded dataset '0123456789abcdef'")
