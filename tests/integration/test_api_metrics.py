"""A job's metric series and diagnostics through the real gateway process: paging by
step, min/max downsampling, and evenly thinned diagnostics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest

from chainrule.store.diagnostics import DiagnosticsStore
from tests.support.api import Api, point, running_gateway, running_job

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_gateway(redis_url, tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def job_with_points(api: Api, points: list[dict[str, Any]]) -> str:
    job_id = running_job(api)
    with api.client.pipeline(transaction=False):
        for p in points:
            api.store.append_metrics(job_id, p)
    return job_id


def test_the_series_pages_by_step_until_next_start_step_is_null(api: Api) -> None:
    job_id = job_with_points(api, [point(s) for s in range(1, 26)])
    steps: list[int] = []
    start: int | None = 0
    pages = 0
    while start is not None:
        page = api.http.get(
            f"/api/v1/jobs/{job_id}/metrics", params={"start_step": start, "limit": 10}
        ).json()
        steps += [p["step"] for p in page["points"]]
        start, pages = page["next_start_step"], pages + 1

    assert steps == list(range(1, 26)) and pages == 3
    assert page["count"] == 25 and page["latest"]["step"] == 25
    assert page["names"] == ["loss", "lr", "samples_per_s", "active_workers"]


def test_the_series_from_a_step_and_the_names_present(api: Api) -> None:
    points = [point(s) for s in range(1, 11)]
    points[4] |= {"eval_loss": 0.4, "eval_accuracy": 0.8}
    job_id = job_with_points(api, points)

    reply = api.http.get(f"/api/v1/jobs/{job_id}/metrics", params={"start_step": 5}).json()

    assert [p["step"] for p in reply["points"]] == list(range(5, 11))
    assert reply["points"][0]["eval_accuracy"] == 0.8 and reply["next_start_step"] is None
    assert reply["names"] == [
        "loss", "lr", "samples_per_s", "active_workers", "eval_loss", "eval_accuracy"]  # fmt: skip


def test_steps_recomputed_after_a_rollback_show_their_latest_point(api: Api) -> None:
    first = [point(s, loss=1.0) for s in range(1, 6)]
    rerun = [point(s, loss=2.0, restored_from=3) for s in range(4, 8)]  # rolled back to 3
    job_id = job_with_points(api, first + rerun)

    reply = api.http.get(f"/api/v1/jobs/{job_id}/metrics").json()

    assert [(p["step"], p["loss"]) for p in reply["points"]] == [
        (1, 1.0), (2, 1.0), (3, 1.0), (4, 2.0), (5, 2.0), (6, 2.0), (7, 2.0)]  # fmt: skip
    assert reply["count"] == 7 and reply["latest"]["step"] == 7


def test_an_empty_series(api: Api) -> None:
    job_id = running_job(api)
    reply = api.http.get(f"/api/v1/jobs/{job_id}/metrics").json()
    assert reply == {
        "job_id": job_id, "count": 0, "names": [], "latest": None, "points": [],
        "next_start_step": None, "thinned": 0}  # fmt: skip


def test_a_short_metric_comes_back_whole(api: Api) -> None:
    points = [point(s, loss=float(s)) for s in range(1, 6)]
    points[2]["loss"] = math.nan
    job_id = job_with_points(api, points)

    reply = api.http.get(f"/api/v1/jobs/{job_id}/metrics/loss").json()

    assert reply == {
        "job_id": job_id, "name": "loss", "count": 5, "downsampled": False, "bucket_size": 1,
        "points": [{"step": s, "value": None if s == 3 else float(s)} for s in range(1, 6)],
    }  # fmt: skip


def test_a_long_metric_is_downsampled_keeping_each_buckets_min_and_max(api: Api) -> None:
    n, max_points = 1000, 100
    values = [math.sin(s / 30) + (5.0 if s == 777 else 0.0) - (5.0 if s == 123 else 0.0)
              for s in range(n)]  # fmt: skip
    job_id = job_with_points(api, [point(s, loss=values[s]) for s in range(n)])

    reply = api.http.get(
        f"/api/v1/jobs/{job_id}/metrics/loss", params={"max_points": max_points}
    ).json()

    assert reply["downsampled"] is True and reply["count"] == n
    size = reply["bucket_size"]
    assert size == 20 and len(reply["points"]) <= max_points
    kept = [(p["step"], p["value"]) for p in reply["points"]]
    assert [s for s, _ in kept] == sorted(s for s, _ in kept)
    for start in range(0, n, size):
        bucket = [(s, values[s]) for s in range(start, min(start + size, n))]
        lowest, highest = min(bucket, key=lambda b: b[1]), max(bucket, key=lambda b: b[1])
        in_bucket = [(s, v) for s, v in kept if start <= s < start + size]
        assert in_bucket == sorted({lowest, highest})
    assert (777, values[777]) in kept and (123, values[123]) in kept  # spike and dip survive


def test_downsampling_starts_at_start_step(api: Api) -> None:
    job_id = job_with_points(api, [point(s, loss=float(s % 7)) for s in range(1, 101)])

    reply = api.http.get(
        f"/api/v1/jobs/{job_id}/metrics/loss", params={"start_step": 51, "max_points": 10}
    ).json()

    assert reply["count"] == 50 and reply["bucket_size"] == 10
    assert reply["points"][0]["step"] >= 51 and len(reply["points"]) <= 10


def test_an_unknown_metric_is_404_listing_the_names(api: Api) -> None:
    job_id = job_with_points(api, [point(1)])

    reply = api.http.get(f"/api/v1/jobs/{job_id}/metrics/accuracy")
    empty = api.http.get(f"/api/v1/jobs/{running_job(api)}/metrics/loss")

    assert reply.status_code == 404
    assert reply.json()["detail"] == (
        f"job {job_id} has no metric 'accuracy'; it has: loss, lr, samples_per_s, active_workers"
    )
    assert empty.status_code == 404 and "none yet" in empty.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        ("/metrics", {"limit": 0}, "limit"),
        ("/metrics", {"limit": 10_001}, "limit"),
        ("/metrics", {"start_step": -1}, "start_step"),
        ("/metrics/loss", {"max_points": 1}, "max_points"),
        ("/metrics/loss", {"max_points": 10_001}, "max_points"),
        ("/diagnostics", {"max_points": 0}, "max_points"),
    ],
)
def test_bad_series_parameters_are_422_naming_them(
    api: Api, path: str, params: dict[str, Any], where: str
) -> None:
    job_id = job_with_points(api, [point(1)])
    reply = api.http.get(f"/api/v1/jobs/{job_id}{path}", params=params)
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["query", where]


def layer(name: str, step: int) -> dict[str, Any]:
    return {
        "layer": name, "activation": "tanh" if name == "dense1" else "sigmoid",
        "grad_norm": 1.0 / step, "activation_mean": 0.1, "activation_std": 0.5,
        "mean_abs_derivative": 0.5, "saturated_fraction": 0.01 * (step % 10),
        "dead_fraction": 0.0,
    }  # fmt: skip


def test_diagnostics_are_thinned_evenly_with_first_and_last_kept(api: Api) -> None:
    job_id = running_job(api)
    diagnostics = DiagnosticsStore(api.client, api.prefix)
    for step in range(1, 101):
        diagnostics.append(job_id, step, [layer("dense1", step), layer("dense2", step)])

    whole = api.http.get(f"/api/v1/jobs/{job_id}/diagnostics").json()
    thinned = api.http.get(f"/api/v1/jobs/{job_id}/diagnostics", params={"max_points": 10}).json()
    later = api.http.get(f"/api/v1/jobs/{job_id}/diagnostics", params={"start_step": 91}).json()

    assert whole["layers"] == ["dense1", "dense2"] and whole["downsampled"] is False
    assert [p["step"] for p in whole["points"]] == list(range(1, 101))
    assert whole["points"][4]["layers"][0] == layer("dense1", 5)
    steps = [p["step"] for p in thinned["points"]]
    assert thinned["downsampled"] is True and len(steps) == 10
    assert steps[0] == 1 and steps[-1] == 100
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert gaps <= {11, 12}  # evenly spaced
    assert [p["step"] for p in later["points"]] == list(range(91, 101))


def test_a_softmax_output_has_null_derivative_statistics(api: Api) -> None:
    job_id = running_job(api)
    softmax = layer("dense2", 1) | {
        "activation": "softmax", "mean_abs_derivative": None, "saturated_fraction": None,
        "dead_fraction": None}  # fmt: skip
    DiagnosticsStore(api.client, api.prefix).append(job_id, 1, [softmax])

    reply = api.http.get(f"/api/v1/jobs/{job_id}/diagnostics").json()

    assert reply["points"] == [{"step": 1, "layers": [softmax]}]


def test_no_diagnostics_yet(api: Api) -> None:
    job_id = running_job(api)
    reply = api.http.get(f"/api/v1/jobs/{job_id}/diagnostics").json()
    assert reply == {"job_id": job_id, "layers": [], "points": [], "downsampled": False}
